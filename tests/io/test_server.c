/*
 * test_server.c — servers: port 0, counters, a host name to resolve, bind errors, graceful close
 * (handlers that finish within the grace period, handlers cancelled after it), 10,000 concurrent
 * connections with the descriptor count back where it started, and descriptor exhaustion
 * (RLIMIT_NOFILE 64, 100 connections): clean LL_EMFILE errors, later connections succeed.
 *
 * The big tests fork: the 10,000-connection server runs in a child process with its own loop (each
 * process then needs ~10,000 descriptors, within the usual hard limit), and the descriptor-limit
 * test runs entirely in a child whose limit it lowers.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#include "harness/harness.h"
#include "libloop/server.h"
#include "libloop/stream.h"

static ll_server *take_server(ll_future *f) {
    if (ll_future_code(f)) fprintf(stderr, "%s\n", ll_future_errmsg(f));
    assert_int_equal(ll_future_code(f), 0);
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    return srv;
}

/* connect, send, expect the echo */
static int ping(const char *host, uint16_t port) {
    ll_future *f = ll_stream_connect(host, port, NULL);
    int rc = ll_await(f);
    if (rc) {
        ll_future_free(f);
        return rc;
    }
    ll_stream *s = ll_future_take(f);
    ll_future_free(f);
    char b[4];
    rc = lt_await_free(ll_stream_write(s, "ping", 4));
    if (!rc) rc = lt_await_free(ll_stream_read_exactly(s, b, 4));
    if (!rc && memcmp(b, "ping", 4) != 0) rc = LL_EPROTO;
    ll_stream_close(s);
    return rc;
}

/* ---- basics ---- */

typedef struct {
    uint16_t port;
    const char *host;
} target;

static int ping_task(void *arg) {
    target *t = arg;
    return ping(t->host, t->port);
}

static void test_localhost_and_counters(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server_opts o = {.name = "echo"};
    ll_future *f = ll_server_open("localhost", 0, lt_echo_handler, NULL, &o);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0); /* resolved on the loop */
    ll_server *srv = take_server(f);
    target t = {ll_server_port(srv), "127.0.0.1"};
    assert_true(t.port > 0);
    for (int i = 0; i < 3; i++) assert_int_equal(lt_run_task(c.loop, ping_task, &t), 0);
    assert_int_equal(ll_server_accepted(srv), 3);
    ll_future *cf = ll_server_close(srv, 1);
    assert_int_equal(ll_loop_run_until(c.loop, cf), 0);
    ll_future_free(cf);
    lt_teardown(&c);
}

static void test_bind_error(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = take_server(ll_server_open("127.0.0.1", 0, lt_echo_handler, NULL, NULL));
    ll_future *f = ll_server_open("127.0.0.1", ll_server_port(srv), lt_echo_handler, NULL, NULL);
    assert_int_equal(ll_future_code(f), LL_EADDRINUSE);
    char want[128];
    snprintf(want, sizeof want, "listen on 127.0.0.1:%u: address already in use",
             ll_server_port(srv));
    assert_string_equal(ll_future_errmsg(f), want);
    ll_future_free(f);
    f = ll_server_open("nonexistent.invalid", 0, lt_echo_handler, NULL, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_ENOTFOUND);
    assert_string_equal(ll_future_errmsg(f), "listen: resolve nonexistent.invalid: host name not "
                                             "found");
    ll_future_free(f);
    ll_future *cf = ll_server_close(srv, 0);
    assert_int_equal(ll_loop_run_until(c.loop, cf), 0);
    ll_future_free(cf);
    lt_teardown(&c);
}

/* ---- a handler that closes its own stream ---- */

static int closing_handler(ll_stream *s, void *arg) {
    int *seen = arg;
    lt_await_free(ll_stream_write(s, "bye", 3));
    lt_await_free(ll_stream_drain(s));
    ll_stream_close(s); /* closes now; the server frees the stream later */
    char b[4];
    *seen = lt_await_free(ll_stream_read(s, b, sizeof b));
    return 0;
}

static int bye_client(void *arg) {
    target *t = arg;
    ll_future *f = ll_stream_connect(t->host, t->port, NULL);
    assert_int_equal(ll_await(f), 0);
    ll_stream *s = ll_future_take(f);
    ll_future_free(f);
    char b[8];
    assert_int_equal(lt_await_free(ll_stream_read_exactly(s, b, 3)), 0);
    assert_memory_equal(b, "bye", 3);
    assert_int_equal(lt_await_free(ll_stream_read(s, b, 1)), LL_EOF);
    ll_stream_close(s);
    return 0;
}

static void test_handler_closes_its_stream(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int seen = 0;
    ll_server *srv = take_server(ll_server_open("127.0.0.1", 0, closing_handler, &seen, NULL));
    target t = {ll_server_port(srv), "127.0.0.1"};
    assert_int_equal(lt_run_task(c.loop, bye_client, &t), 0);
    ll_future *cf = ll_server_close(srv, 5);
    assert_int_equal(ll_loop_run_until(c.loop, cf), 0);
    ll_future_free(cf);
    assert_int_equal(seen, LL_ECLOSED);
    lt_teardown(&c);
}

/* ---- leftovers at ll_loop_free ---- */

static void test_loop_free_closes_leftovers(void **state) {
    (void)state;
    int before = lt_count_fds();
    ll_loop *loop = ll_loop_new();
    ll_server *srv = take_server(ll_server_open("127.0.0.1", 0, lt_echo_handler, NULL, NULL));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ll_stream *s = ll_stream_from_fd(loop, sv[0], NULL);
    assert_non_null(s);
    char byte;
    ll_future *r = ll_stream_read(s, &byte, 1);
    ll_future_free(r); /* a read still pending */
    /* a connection that got as far as the server's handler, and one still connecting */
    ll_future *f = ll_stream_connect("127.0.0.1", ll_server_port(srv), NULL);
    assert_int_equal(ll_loop_run_until(loop, f), 0);
    ll_stream *kept = ll_future_take(f);
    ll_future_free(f);
    assert_non_null(kept);
    ll_future_free(ll_stream_connect("127.0.0.1", ll_server_port(srv), NULL));
    ll_loop_free(loop); /* closes the server, both streams and the connect; nothing leaks */
    close(sv[1]);
    assert_int_equal(lt_count_fds(), before);
}

/* ---- graceful close ---- */

typedef struct {
    double work;     /* seconds each handler works */
    int finished;    /* handlers that completed their work */
    int cancelled;   /* handlers whose work was cancelled */
} slow_env;

static int slow_handler(ll_stream *s, void *arg) {
    slow_env *e = arg;
    char b[1];
    lt_await_free(ll_stream_read_exactly(s, b, 1));
    int rc = ll_sleep(e->work);
    if (rc == 0) {
        e->finished++;
        return lt_await_free(ll_stream_write(s, "done", 4));
    }
    e->cancelled++;
    return rc;
}

typedef struct {
    uint16_t port;
    int rc;
    char got[8];
} client_t;

static int slow_client(void *arg) {
    client_t *c = arg;
    ll_future *f = ll_stream_connect("127.0.0.1", c->port, NULL);
    if ((c->rc = ll_await(f))) {
        ll_future_free(f);
        return 0;
    }
    ll_stream *s = ll_future_take(f);
    ll_future_free(f);
    lt_await_free(ll_stream_write(s, "x", 1));
    c->rc = lt_await_free(ll_stream_read_exactly(s, c->got, 4));
    ll_stream_close(s);
    return 0;
}

/* busy: seconds the program spends outside the loop just before the close, which leaves libev's
 * cached time that stale: the grace must still be measured from the close, on the real clock. */
static void run_close_case(double work, double grace, int want_finished, int want_rc, double busy) {
    lt_ctx c;
    lt_setup(&c);
    slow_env e = {.work = work};
    ll_server *srv = take_server(ll_server_open("127.0.0.1", 0, slow_handler, &e, NULL));
    client_t cl[3];
    ll_future *tasks[3];
    ll_spawn_opts so = {.loop = c.loop};
    for (int i = 0; i < 3; i++) {
        cl[i] = (client_t){.port = ll_server_port(srv)};
        tasks[i] = ll_spawn_ex(slow_client, &cl[i], &so);
    }
    while (ll_server_connections(srv) < 3 || e.finished + e.cancelled > 0) {
        ll_future *z = ll_sleep_future(c.loop, 0.01);
        ll_loop_run_until(c.loop, z);
        ll_future_free(z);
        if (ll_server_connections(srv) == 3) break;
    }
    ll_time until = ll_now() + busy;
    while (ll_now() < until) {
    }
    ll_time t0 = ll_now();
    ll_future *cf = ll_server_close(srv, grace);
    ll_future *again = ll_server_close(srv, grace); /* same future */
    assert_ptr_equal(cf, again);
    ll_future_free(again);
    assert_int_equal(ll_loop_run_until(c.loop, cf), 0);
    double took = ll_now() - t0;
    ll_future_free(cf);
    assert_int_equal(e.finished, want_finished);
    assert_int_equal(e.cancelled, 3 - want_finished);
    assert_true(took < (work < grace ? work : grace) + 2.0); /* tolerance: noisy machine */
    if (want_finished == 0) assert_true(took >= grace - 0.01); /* never cut short */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ll_loop_run_until(c.loop, tasks[i]), 0);
        ll_future_free(tasks[i]);
        assert_int_equal(cl[i].rc, want_rc);
    }
    lt_teardown(&c);
}

static void test_close_within_grace(void **state) {
    (void)state;
    run_close_case(0.1, 5.0, 3, 0, 0); /* handlers finish and reply */
}

static void test_close_cancels_after_grace(void **state) {
    (void)state;
    run_close_case(30.0, 0.1, 0, LL_EOF, 0); /* handlers cancelled; clients see the end */
}

static void test_close_grace_after_busy_loop(void **state) {
    (void)state;
    run_close_case(30.0, 0.3, 0, LL_EOF, 0.2); /* the full 0.3 s of grace, not 0.1 */
}

/* ---- 10,000 concurrent connections ---- */

static bool under_valgrind(void) {
    const char *v = getenv("LIBLOOP_VALGRIND");
#ifdef RUNNING_ON_VALGRIND
    if (RUNNING_ON_VALGRIND) return true;
#endif
    return v && *v == '1';
}

static void raise_nofile(rlim_t want) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* The child: an echo server on a loop of its own; writes its port to `out`, runs until killed. */
static void server_child(int out) {
    ll_loop *loop = ll_loop_new();
    ll_server_opts o = {.stack_size = 32768, .backlog = 65535};
    ll_future *f = ll_server_open("127.0.0.1", 0, lt_echo_handler, NULL, &o);
    if (ll_future_code(f)) _exit(2);
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    uint16_t port = ll_server_port(srv);
    if (write(out, &port, sizeof port) != sizeof port) _exit(3);
    close(out);
    ll_loop_handle_signals(loop, true);
    ll_loop_run(loop); /* SIGTERM cancels the tasks; the server stays until we exit */
    _exit(0);
}

typedef struct {
    uint16_t port;
    int total;
    int connected;
    int done;
    int failures;
    int first_error;
    char errmsg[256];
    ll_event *all_connected;
} crowd;

static int crowd_member(void *arg) {
    crowd *cr = arg;
    ll_stream_opts o = {.connect_timeout = 60};
    ll_future *f = ll_stream_connect("127.0.0.1", cr->port, &o);
    int rc = ll_await(f);
    ll_stream *s = rc ? NULL : ll_future_take(f);
    if (rc && !cr->first_error) {
        cr->first_error = rc;
        snprintf(cr->errmsg, sizeof cr->errmsg, "%s", ll_future_errmsg(f));
    }
    ll_future_free(f);
    if (s) {
        char b[8];
        rc = lt_await_free(ll_stream_write(s, "12345678", 8));
        if (!rc) rc = lt_await_free(ll_stream_read_exactly(s, b, 8));
    }
    if (rc) cr->failures++;
    if (++cr->connected == cr->total) ll_event_set(cr->all_connected);
    ll_event_wait(cr->all_connected); /* every connection is open at the same time */
    ll_stream_close(s);
    cr->done++;
    return 0;
}

static void test_ten_thousand_connections(void **state) {
    (void)state;
    int n = under_valgrind() ? 500 : 10000;
    raise_nofile((rlim_t)n + 200);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 100) {
        int scaled = (int)rl.rlim_cur - 100;
        fprintf(stderr, "test_ten_thousand_connections: RLIMIT_NOFILE hard limit %llu: scaled down "
                        "from %d to %d connections\n", (unsigned long long)rl.rlim_max, n, scaled);
        n = scaled;
    }
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        server_child(p[1]);
    }
    close(p[1]);
    uint16_t port = 0;
    assert_int_equal(read(p[0], &port, sizeof port), sizeof port);
    close(p[0]);

    lt_ctx c;
    lt_setup(&c);
    crowd cr = {.port = port, .total = n, .all_connected = ll_event_new()};
    ll_future **fs = calloc((size_t)n, sizeof *fs);
    ll_spawn_opts so = {.loop = c.loop, .stack_size = 32768};
    ll_time t0 = ll_now();
    for (int i = 0; i < n; i++) fs[i] = ll_spawn_ex(crowd_member, &cr, &so);
    /* in the middle: every connection is open */
    while (cr.connected < n) {
        ll_future *z = ll_sleep_future(c.loop, 0.05);
        ll_loop_run_until(c.loop, z);
        ll_future_free(z);
        if (ll_now() - t0 > 120) break;
    }
    for (int i = 0; i < n; i++) {
        assert_int_equal(ll_loop_run_until(c.loop, fs[i]), 0);
        ll_future_free(fs[i]);
    }
    free(fs);
    if (cr.failures) fprintf(stderr, "%d failures, first: %s\n", cr.failures, cr.errmsg);
    assert_int_equal(cr.failures, 0);
    assert_int_equal(cr.done, n);
    ll_event_free(cr.all_connected);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    lt_teardown(&c); /* the descriptor count is back where it started */
}

/* ---- descriptor exhaustion ---- */

typedef struct {
    uint16_t port;
    int connected, emfile, other, finished;
    bool clean_messages;
    char other_msg[256];
    ll_event *release;
} limit_env;

static int limited_client(void *arg) {
    limit_env *e = arg;
    ll_future *f = ll_stream_connect("127.0.0.1", e->port, NULL);
    int rc = ll_await(f);
    if (rc == LL_EMFILE) {
        e->emfile++;
        char want[128];
        snprintf(want, sizeof want, "connect to 127.0.0.1:%u: socket: too many open files",
                 e->port);
        if (strcmp(ll_future_errmsg(f), want) != 0) e->clean_messages = false;
    } else if (rc) {
        e->other++;
        snprintf(e->other_msg, sizeof e->other_msg, "%s", ll_future_errmsg(f));
    }
    ll_stream *s = rc ? NULL : ll_future_take(f);
    ll_future_free(f);
    if (s) e->connected++;
    e->finished++;
    ll_event_wait(e->release);
    ll_stream_close(s);
    return 0;
}

/* Runs in the child; returns the exit status (0: all good). */
static int limit_child(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64; /* the soft limit only: valgrind refuses to lower its own hard limit */
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return 10;
    ll_loop *loop = ll_loop_new();
    ll_future *f = ll_server_open("127.0.0.1", 0, lt_echo_handler, NULL, NULL);
    if (ll_future_code(f)) return 11;
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    limit_env e = {.port = ll_server_port(srv), .clean_messages = true, .release = ll_event_new()};
    ll_future *tasks[100];
    ll_spawn_opts so = {.loop = loop};
    for (int i = 0; i < 100; i++) tasks[i] = ll_spawn_ex(limited_client, &e, &so);
    while (e.finished < 100) {
        ll_future *z = ll_sleep_future(loop, 0.02);
        ll_loop_run_until(loop, z);
        ll_future_free(z);
    }
    int status = 0;
    if (getenv("LIBLOOP_TEST_VERBOSE"))
        fprintf(stderr, "limit: connected %d, LL_EMFILE %d\n", e.connected, e.emfile);
    if (e.emfile == 0 || e.connected == 0 || e.other != 0 || !e.clean_messages) {
        fprintf(stderr, "limit: connected %d emfile %d other %d (%s) clean %d\n", e.connected,
                e.emfile, e.other, e.other_msg, e.clean_messages);
        status = 12;
    }
    ll_event_set(e.release); /* every connection closes: descriptors are free again */
    for (int i = 0; i < 100; i++) {
        ll_loop_run_until(loop, tasks[i]);
        ll_future_free(tasks[i]);
    }
    /* now 100 more, one after the other, all succeed (the server resumed accepting) */
    target t = {e.port, "127.0.0.1"};
    for (int i = 0; i < 100 && status == 0; i++) {
        ll_spawn_opts o = {.loop = loop};
        ll_future *pf = ll_spawn_ex(ping_task, &t, &o);
        int rc = ll_loop_run_until(loop, pf);
        if (rc) {
            fprintf(stderr, "limit: ping %d after release: %s (server: %zu open, %llu accepted)\n",
                    i, ll_future_errmsg(pf), ll_server_connections(srv),
                    (unsigned long long)ll_server_accepted(srv));
            status = 13;
        }
        ll_future_free(pf);
    }
    ll_future *cf = ll_server_close(srv, 0);
    ll_loop_run_until(loop, cf);
    ll_future_free(cf);
    ll_event_free(e.release);
    ll_loop_stats st;
    ll_loop_get_stats(loop, &st);
    if (st.handles || st.tasks) status = 14;
    ll_loop_free(loop);
    return status;
}

static void test_descriptor_limit(void **state) {
    (void)state;
    if (under_valgrind()) {
        /* valgrind emulates RLIMIT_NOFILE by closing descriptors the kernel already handed out
         * (an accepted connection is then reset): the test would measure valgrind */
        fprintf(stderr, "test_descriptor_limit: skipped under valgrind\n");
        skip();
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(limit_child());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_localhost_and_counters),
        cmocka_unit_test(test_bind_error),
        cmocka_unit_test(test_handler_closes_its_stream),
        cmocka_unit_test(test_loop_free_closes_leftovers),
        cmocka_unit_test(test_close_within_grace),
        cmocka_unit_test(test_close_cancels_after_grace),
        cmocka_unit_test(test_close_grace_after_busy_loop),
        cmocka_unit_test(test_descriptor_limit),
        cmocka_unit_test(test_ten_thousand_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
