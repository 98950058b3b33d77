/*
 * test_stream.c — streams over TCP, Unix sockets and pipes: echo, the read operations, back-pressure,
 * distinct errors naming the peer (EOF, refused, reset, broken pipe, deadline), close while awaited,
 * descriptor reuse, timings.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "harness/harness.h"
#include "libloop/poll.h"
#include "libloop/server.h"
#include "libloop/stream.h"

/* ---- helpers ---- */

static ll_server *start_tcp(ll_server_handler h, void *arg) {
    ll_future *f = ll_server_open("127.0.0.1", 0, h, arg, NULL);
    assert_int_equal(ll_future_code(f), 0);
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    assert_non_null(srv);
    assert_true(ll_server_port(srv) > 0);
    return srv;
}

static void stop_server(ll_loop *loop, ll_server *srv) {
    ll_future *f = ll_server_close(srv, 0);
    assert_int_equal(ll_loop_run_until(loop, f), 0);
    ll_future_free(f);
}

/* Inside a task: connect or fail the test. */
static ll_stream *dial(const char *host, uint16_t port) {
    ll_future *f = ll_stream_connect(host, port, NULL);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "dial: %s\n", ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    ll_stream *s = ll_future_take(f);
    ll_future_free(f);
    return s;
}

static uint16_t free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- echo ---- */

typedef struct {
    uint16_t port;
    const char *path;
} target;

static int echo_client(void *arg) {
    target *t = arg;
    ll_stream *s;
    if (t->path) {
        ll_future *f = ll_stream_connect_unix(t->path, NULL);
        assert_int_equal(ll_await(f), 0);
        s = ll_future_take(f);
        ll_future_free(f);
    } else {
        s = dial("127.0.0.1", t->port);
    }
    assert_int_equal(lt_await_free(ll_stream_write(s, "hello\nworld\n", 12)), 0);
    char buf[64];
    ll_future *r = ll_stream_read_exactly(s, buf, 3);
    assert_int_equal(ll_await(r), 0);
    assert_int_equal((uintptr_t)ll_future_value(r), 3);
    assert_memory_equal(buf, "hel", 3);
    ll_future_free(r);
    r = ll_stream_read_until(s, "\n", 1, buf, sizeof buf);
    assert_int_equal(ll_await(r), 0);
    assert_int_equal((uintptr_t)ll_future_value(r), 3);
    assert_memory_equal(buf, "lo\n", 3);
    ll_future_free(r);
    r = ll_stream_read_until(s, "ld\n", 3, buf, sizeof buf);
    assert_int_equal(ll_await(r), 0);
    assert_int_equal((uintptr_t)ll_future_value(r), 6);
    assert_memory_equal(buf, "world\n", 6);
    ll_future_free(r);
    /* half close: the server sees EOF, finishes, and we see EOF */
    assert_int_equal(lt_await_free(ll_stream_shutdown(s)), 0);
    char msg[256];
    assert_int_equal(lt_await_msg(ll_stream_read(s, buf, sizeof buf), msg, sizeof msg), LL_EOF);
    assert_non_null(strstr(msg, "end of stream"));
    assert_non_null(strstr(msg, ll_stream_peer(s)));
    /* EOF is sticky */
    assert_int_equal(lt_await_free(ll_stream_read(s, buf, sizeof buf)), LL_EOF);
    /* writing after shutdown is refused */
    assert_int_equal(lt_await_free(ll_stream_write(s, "x", 1)), LL_ESTATE);
    ll_stream_timings tm;
    ll_stream_get_timings(s, &tm);
    assert_true(tm.connect >= 0 && tm.total >= tm.connect && tm.tls == 0);
    ll_stream_close(s);
    return 0;
}

static void test_echo_tcp(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = start_tcp(lt_echo_handler, NULL);
    target t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_task(c.loop, echo_client, &t), 0);
    assert_int_equal(ll_server_accepted(srv), 1);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

static void test_echo_unix(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    char dir[] = "/tmp/ll-unix-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/echo.sock", dir);
    ll_future *f = ll_server_open_unix(path, lt_echo_handler, NULL, NULL);
    assert_int_equal(ll_future_code(f), 0);
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    assert_int_equal(ll_server_port(srv), 0);
    target t = {.path = path};
    assert_int_equal(lt_run_task(c.loop, echo_client, &t), 0);
    stop_server(c.loop, srv);
    assert_int_equal(access(path, F_OK), -1); /* the socket file is removed */
    rmdir(dir);
    lt_teardown(&c);
}

/* ---- many operations ---- */

/* The last of the three numbers in tcp_wmem / tcp_rmem: how far the kernel may grow a buffer
 * (4 MiB when it cannot be read). */
static size_t kernel_buffer_max(const char *path) {
    unsigned long lo = 0, def = 0, max = 4ul << 20;
    FILE *fp = fopen(path, "r");
    if (fp) {
        if (fscanf(fp, "%lu %lu %lu", &lo, &def, &max) != 3) max = 4ul << 20;
        fclose(fp);
    }
    return max > (64ul << 20) ? (64ul << 20) : (size_t)max;
}

static int big_client(void *arg) {
    target *t = arg;
    ll_stream *s = dial("localhost", t->port);
    /* more than the kernel can buffer between us and the echo server (our send buffer and its
     * receive buffer at their autotuning maxima) plus our 256 KiB, so the writes must meet
     * back-pressure whatever the scheduling (4 MiB could fit when the echo kept pace) */
    size_t n = kernel_buffer_max("/proc/sys/net/ipv4/tcp_wmem") +
               kernel_buffer_max("/proc/sys/net/ipv4/tcp_rmem") + 1024 * 1024;
    n = (n + 65535) / 65536 * 65536;
    char *out = malloc(n), *in = malloc(n);
    for (size_t i = 0; i < n; i++) out[i] = (char)(i * 7 + i / 251);
    ll_stream_set_high_water(s, 256 * 1024);
    /* write in pieces, honouring back-pressure, while another task reads the echo */
    ll_future *r = ll_stream_read_exactly(s, in, n);
    bool saw_pressure = false;
    for (size_t off = 0; off < n; off += 65536) {
        ll_future *w = ll_stream_write(s, out + off, 65536);
        if (!ll_future_done(w)) saw_pressure = true;
        assert_int_equal(lt_await_free(w), 0);
        assert_true(ll_stream_write_pending(s) <= 256 * 1024);
    }
    assert_int_equal(lt_await_free(ll_stream_drain(s)), 0);
    assert_int_equal(ll_stream_write_pending(s), 0);
    assert_int_equal(ll_await(r), 0);
    assert_int_equal((uintptr_t)ll_future_value(r), n);
    ll_future_free(r);
    assert_memory_equal(in, out, n);
    assert_true(saw_pressure);
    free(out);
    free(in);
    ll_stream_close(s);
    return 0;
}

static void test_big_transfer_backpressure(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = start_tcp(lt_echo_handler, NULL);
    target t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_task(c.loop, big_client, &t), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* The server sends a fixed script, then closes. */
static int script_handler(ll_stream *s, void *arg) {
    const char *text = arg;
    return lt_await_free(ll_stream_write(s, text, strlen(text)));
}

static int parse_client(void *arg) {
    target *t = arg;
    ll_stream *s = dial("127.0.0.1", t->port);
    char buf[16], msg[256];
    /* a line longer than the limit */
    assert_int_equal(lt_await_msg(ll_stream_read_until(s, "\r\n", 2, buf, 8), msg, sizeof msg),
                     LL_ETOOLARGE);
    assert_non_null(strstr(msg, "no delimiter within 8 bytes"));
    /* nothing was consumed: a parser reads the buffered bytes itself */
    size_t len;
    const char *p = ll_stream_peek(s, &len);
    assert_true(len >= 8);
    assert_memory_equal(p, "toolongline", len < 11 ? len : 11);
    /* wait for the whole first line with fill */
    while (!(len >= 13 && memchr(p, '\n', len))) {
        ll_future *f = ll_stream_fill(s);
        assert_int_equal(ll_await(f), 0);
        assert_true((uintptr_t)ll_future_value(f) > len);
        ll_future_free(f);
        p = ll_stream_peek(s, &len);
    }
    assert_memory_equal(p, "toolongline\r\n", 13);
    ll_stream_consume(s, 13);
    assert_int_equal(lt_await_free(ll_stream_read_exactly(s, buf, 5)), 0);
    assert_memory_equal(buf, "ab\ncd", 5);
    /* the stream ends before 10 more bytes */
    assert_int_equal(lt_await_msg(ll_stream_read_exactly(s, buf, 10), msg, sizeof msg), LL_EOF);
    assert_non_null(strstr(msg, "after 3 of 10 bytes"));
    assert_memory_equal(buf, "efg", 3);
    /* fill at EOF */
    assert_int_equal(lt_await_free(ll_stream_fill(s)), LL_EOF);
    assert_true(ll_stream_at_eof(s));
    assert_false(ll_stream_alive(s));
    ll_stream_close(s);
    return 0;
}

static void test_read_until_peek_fill(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = start_tcp(script_handler, "toolongline\r\nab\ncdefg");
    target t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_task(c.loop, parse_client, &t), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* ---- errors ---- */

static int refused_client(void *arg) {
    uint16_t port = *(uint16_t *)arg;
    char msg[256], want[128];
    ll_future *f = ll_stream_connect("127.0.0.1", port, NULL);
    assert_int_equal(lt_await_msg(f, msg, sizeof msg), LL_ECONNREFUSED);
    snprintf(want, sizeof want, "connect to 127.0.0.1:%u: connection refused", port);
    assert_string_equal(msg, want);
    /* a name: each address is listed with its reason */
    f = ll_stream_connect("localhost", port, NULL);
    assert_int_equal(lt_await_msg(f, msg, sizeof msg), LL_ECONNREFUSED);
    snprintf(want, sizeof want, "connect to localhost:%u: 127.0.0.1:%u: connection refused", port,
             port);
    assert_string_equal(msg, want);
    /* a Unix socket that does not exist */
    f = ll_stream_connect_unix("/nonexistent/dir/x.sock", NULL);
    assert_int_equal(lt_await_msg(f, msg, sizeof msg), LL_ENOENT);
    assert_string_equal(msg, "connect to /nonexistent/dir/x.sock: no such file or directory");
    return 0;
}

static void test_connection_refused(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    uint16_t port = free_port();
    assert_int_equal(lt_run_task(c.loop, refused_client, &port), 0);
    lt_teardown(&c);
}

static int silent_handler(ll_stream *s, void *arg) {
    (void)arg;
    char b[16];
    return lt_await_free(ll_stream_read(s, b, sizeof b)); /* waits until the client goes */
}

static int deadline_client(void *arg) {
    target *t = arg;
    ll_stream *s = dial("127.0.0.1", t->port);
    char buf[16];
    ll_scope sc;
    ll_time t0 = ll_now();
    ll_scope_enter(&sc, ll_deadline_in(0.2));
    ll_future *r = ll_stream_read(s, buf, sizeof buf);
    int rc = ll_await(r);
    ll_future_free(r);
    assert_int_equal(ll_scope_exit(&sc), LL_ETIMEDOUT);
    assert_int_equal(rc, LL_ETIMEDOUT);
    double took = ll_now() - t0;
    assert_true(took >= 0.19 && took < 2.0); /* tolerance: 2 noisy cores */
    /* the stream is still usable after a cancelled read */
    assert_int_equal(lt_await_free(ll_stream_write(s, "x", 1)), 0);
    ll_stream_close(s);
    return 0;
}

static void test_silent_server_deadline(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = start_tcp(silent_handler, NULL);
    target t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_task(c.loop, deadline_client, &t), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* The server sends a little, then aborts with RST. */
static int reset_handler(ll_stream *s, void *arg) {
    (void)arg;
    char b[16];
    lt_await_free(ll_stream_read(s, b, 1)); /* the client's go */
    lt_await_free(ll_stream_write(s, "partial", 7));
    lt_await_free(ll_stream_drain(s));
    ll_sleep(0.05);
    ll_stream_reset(s);
    return 0;
}

static int reset_read_client(void *arg) {
    target *t = arg;
    ll_stream *s = dial("127.0.0.1", t->port);
    char buf[64], msg[256], want[128];
    assert_int_equal(lt_await_free(ll_stream_write(s, "g", 1)), 0);
    assert_int_equal(lt_await_free(ll_stream_read_exactly(s, buf, 7)), 0);
    assert_int_equal(lt_await_msg(ll_stream_read_exactly(s, buf, 10), msg, sizeof msg),
                     LL_ECONNRESET);
    snprintf(want, sizeof want, "read from %s: connection reset by peer", ll_stream_peer(s));
    assert_string_equal(msg, want);
    snprintf(want, sizeof want, "127.0.0.1:%u", t->port);
    assert_string_equal(ll_stream_peer(s), want);
    /* sticky */
    assert_int_equal(lt_await_free(ll_stream_read(s, buf, 1)), LL_ECONNRESET);
    assert_false(ll_stream_alive(s));
    ll_stream_close(s);
    return 0;
}

static void test_reset_mid_read(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = start_tcp(reset_handler, NULL);
    target t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_task(c.loop, reset_read_client, &t), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

static int reset_write_client(void *arg) {
    target *t = arg;
    ll_stream *s = dial("127.0.0.1", t->port);
    char buf[64];
    assert_int_equal(lt_await_free(ll_stream_write(s, "g", 1)), 0);
    assert_int_equal(lt_await_free(ll_stream_read_exactly(s, buf, 7)), 0);
    ll_sleep(0.2); /* the reset has arrived */
    static char chunk[65536];
    int rc = 0;
    for (int i = 0; i < 1000 && rc == 0; i++) rc = lt_await_free(ll_stream_write(s, chunk, sizeof chunk));
    if (rc == 0) rc = lt_await_free(ll_stream_drain(s));
    assert_true(rc == LL_EPIPE || rc == LL_ECONNRESET);
    /* sticky, and the message names the peer */
    char msg[256];
    assert_int_equal(lt_await_msg(ll_stream_write(s, "x", 1), msg, sizeof msg), rc);
    assert_non_null(strstr(msg, "write to 127.0.0.1:"));
    ll_stream_close(s);
    return 0;
}

static void test_reset_mid_write_no_sigpipe(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    signal(SIGPIPE, SIG_DFL); /* would kill us if the library let it */
    ll_server *srv = start_tcp(reset_handler, NULL);
    target t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_task(c.loop, reset_write_client, &t), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* ---- liveness: unasked bytes make a stream not idle ---- */

/* On the client's go, a reply nobody asked for (as a late answer to a cancelled request). */
static int unasked_handler(ll_stream *s, void *arg) {
    (void)arg;
    char b[16];
    if (lt_await_free(ll_stream_read(s, b, 1))) return -1;
    if (lt_await_free(ll_stream_write(s, "late reply\n", 11))) return -1;
    lt_await_free(ll_stream_read(s, b, 1)); /* until the client closes */
    return 0;
}

static int unasked_client(void *arg) {
    target *t = arg;
    ll_stream *s = dial("127.0.0.1", t->port);
    char buf[16];
    LT_CHECK(ll_stream_alive(s));
    LT_CHECK(lt_await_free(ll_stream_write(s, "g", 1)) == 0);
    LT_CHECK(lt_await_free(ll_poll(ll_stream_fd(s), LL_POLL_READ, NULL)) == 0);
    LT_CHECK(!ll_stream_alive(s));
    LT_CHECK(!ll_stream_alive(s)); /* asking again changes nothing */
    /* nothing was lost: the bytes are there for a read, and a partial read leaves it not idle */
    LT_CHECK(lt_await_free(ll_stream_read_exactly(s, buf, 5)) == 0);
    LT_CHECK(memcmp(buf, "late ", 5) == 0);
    LT_CHECK(!ll_stream_alive(s));
    LT_CHECK(lt_await_free(ll_stream_read_exactly(s, buf, 6)) == 0);
    LT_CHECK(memcmp(buf, "reply\n", 6) == 0);
    LT_CHECK(ll_stream_alive(s));
    /* a read in progress owns what arrives: the stream is in use, not broken */
    ll_future *r = ll_stream_read(s, buf, sizeof buf);
    LT_CHECK(ll_stream_alive(s));
    ll_future_cancel(r);
    ll_await(r);
    ll_future_free(r);
    ll_stream_close(s);
    return 0;
}

static void test_alive_unasked_bytes(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = start_tcp(unasked_handler, NULL);
    target t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_checked(c.loop, unasked_client, &t), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

static int unasked_pipe_client(void *arg) {
    int *p = arg;
    ll_stream *r = ll_stream_from_fd(NULL, p[0], "pipe reader");
    char b[4];
    LT_CHECK(ll_stream_alive(r));
    LT_CHECK(write(p[1], "xy", 2) == 2);
    LT_CHECK(!ll_stream_alive(r));
    LT_CHECK(lt_await_free(ll_stream_read_exactly(r, b, 2)) == 0);
    LT_CHECK(ll_stream_alive(r));
    close(p[1]);
    LT_CHECK(!ll_stream_alive(r)); /* hang-up */
    ll_stream_close(r);
    return 0;
}

static void test_alive_unasked_bytes_pipe(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(lt_run_checked(c.loop, unasked_pipe_client, p), 0);
    lt_teardown(&c);
}

/* ---- close, reuse, pipes ---- */

typedef struct {
    ll_stream *s;
    int rc;
    char msg[256];
} reader;

static int reader_task(void *arg) {
    reader *r = arg;
    char buf[8];
    r->rc = lt_await_msg(ll_stream_read(r->s, buf, sizeof buf), r->msg, sizeof r->msg);
    return 0;
}

static int closer_task(void *arg) {
    ll_sleep(0.02);
    ll_stream_close(arg);
    return 0;
}

static void test_close_while_awaited_and_fd_reuse(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int old_fd = sv[0];
    reader r = {.s = ll_stream_from_fd(c.loop, sv[0], "pair")};
    assert_non_null(r.s);
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *t1 = ll_spawn_ex(reader_task, &r, &o);
    ll_future *t2 = ll_spawn_ex(closer_task, r.s, &o);
    assert_int_equal(ll_loop_run_until(c.loop, t1), 0);
    assert_int_equal(r.rc, LL_ECLOSED);
    assert_string_equal(r.msg, "read from pair: stream closed");
    assert_int_equal(ll_loop_run_until(c.loop, t2), 0);
    ll_future_free(t1);
    ll_future_free(t2);
    /* the descriptor number comes back for a new stream; the peer writes before it is adopted */
    int sv2[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2), 0);
    assert_int_equal(sv2[0], old_fd);
    assert_int_equal(send(sv[1], "old", 3, MSG_NOSIGNAL), -1); /* the old pair is gone */
    assert_int_equal(write(sv2[1], "new", 3), 3);
    reader r2 = {.s = ll_stream_from_fd(c.loop, sv2[0], NULL)};
    ll_future *t3 = ll_spawn_ex(reader_task, &r2, &o);
    assert_int_equal(ll_loop_run_until(c.loop, t3), 0);
    assert_int_equal(r2.rc, 0);
    ll_future_free(t3);
    ll_stream_close(r2.s);
    close(sv[1]);
    close(sv2[1]);
    lt_teardown(&c);
}

static void close_in_callback(ll_future *f, void *arg) {
    (void)f;
    ll_stream_close(arg);
}

static void test_close_from_done_callback(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ll_stream *s = ll_stream_from_fd(c.loop, sv[0], NULL);
    char buf[8], msg[256];
    ll_future *r = ll_stream_read(s, buf, sizeof buf);
    /* a second read while one is pending is refused */
    ll_future *r2 = ll_stream_read(s, buf, 1);
    assert_int_equal(ll_future_code(r2), LL_EBUSY);
    snprintf(msg, sizeof msg, "%s", ll_future_errmsg(r2));
    assert_non_null(strstr(msg, "another read is in progress"));
    ll_future_free(r2);
    assert_int_equal(ll_future_add_done(r, close_in_callback, s), 0);
    assert_int_equal(write(sv[1], "hi", 2), 2);
    assert_int_equal(ll_loop_run_until(c.loop, r), 0);
    assert_int_equal((uintptr_t)ll_future_value(r), 2);
    ll_loop_run(c.loop); /* the callback closes the stream */
    ll_future_free(r);
    close(sv[1]);
    lt_teardown(&c);
}

static int pipe_task(void *arg) {
    int *p = arg; /* p[0] read end, p[1] write end */
    ll_stream *w = ll_stream_from_fd(NULL, p[1], "pipe writer");
    ll_stream *r = ll_stream_from_fd(NULL, p[0], "pipe reader");
    size_t n = 1 << 20;
    char *out = malloc(n), *in = malloc(n);
    for (size_t i = 0; i < n; i++) out[i] = (char)(i % 253);
    ll_future *rd = ll_stream_read_exactly(r, in, n);
    assert_int_equal(lt_await_free(ll_stream_write(w, out, n)), 0);
    assert_int_equal(lt_await_free(ll_stream_shutdown(w)), 0); /* closes the write end */
    assert_int_equal(ll_stream_fd(w), -1);
    assert_int_equal(ll_await(rd), 0);
    ll_future_free(rd);
    assert_memory_equal(in, out, n);
    char b[4];
    assert_int_equal(lt_await_free(ll_stream_read(r, b, 4)), LL_EOF);
    ll_stream_close(w);
    ll_stream_close(r);
    /* a pipe whose reader is gone: EPIPE, no SIGPIPE */
    int q[2];
    assert_int_equal(pipe(q), 0);
    close(q[0]);
    ll_stream *w2 = ll_stream_from_fd(NULL, q[1], "orphan pipe");
    char msg[256];
    assert_int_equal(lt_await_msg(ll_stream_write(w2, "x", 1), msg, sizeof msg), LL_EPIPE);
    assert_string_equal(msg, "write to orphan pipe: broken pipe");
    ll_stream_close(w2);
    free(out);
    free(in);
    return 0;
}

static void test_pipes(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(lt_run_task(c.loop, pipe_task, p), 0);
    lt_teardown(&c);
}

static int cancel_connect_task(void *arg) {
    (void)arg;
    /* a connection cancelled while resolving through the resolver leaves nothing behind */
    ll_future *f = ll_stream_connect("localhost", 9, NULL);
    ll_future_cancel(f);
    assert_int_equal(ll_await(f), LL_ECANCELED);
    ll_future_free(f);
    /* a stream never taken from its future is closed with it */
    return 0;
}

static void test_cancel_connect_and_untaken_value(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_task(c.loop, cancel_connect_task, NULL), 0);
    ll_server *srv = start_tcp(lt_echo_handler, NULL);
    ll_future *f = ll_stream_connect("127.0.0.1", ll_server_port(srv), NULL);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f); /* closes the stream */
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* A listener with a full backlog that never accepts: SYNs go unanswered, connects hang. */
static int full_listener(uint16_t *port, int *fillers, int nfill) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 0), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    for (int i = 0; i < nfill; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50000);
    return fd;
}

static int timeout_client(void *arg) {
    uint16_t port = *(uint16_t *)arg;
    char msg[256], want[128];
    ll_stream_opts o = {.connect_timeout = 0.2};
    ll_time t0 = ll_now();
    assert_int_equal(lt_await_msg(ll_stream_connect("127.0.0.1", port, &o), msg, sizeof msg),
                     LL_ETIMEDOUT);
    snprintf(want, sizeof want, "connect to 127.0.0.1:%u: timed out after 0.2 s connecting", port);
    assert_string_equal(msg, want);
    assert_true(ll_now() - t0 < 2.0);
    /* the task's deadline bounds it too, with the same kind of message */
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.2));
    int rc = lt_await_msg(ll_stream_connect("127.0.0.1", port, NULL), msg, sizeof msg);
    ll_scope_exit(&sc);
    assert_int_equal(rc, LL_ETIMEDOUT);
    return 0;
}

static void test_connect_timeout(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    uint16_t port;
    int fillers[3];
    int lfd = full_listener(&port, fillers, 3);
    assert_int_equal(lt_run_task(c.loop, timeout_client, &port), 0);
    for (int i = 0; i < 3; i++) close(fillers[i]);
    close(lfd);
    lt_teardown(&c);
}

/* The loop was busy (libev's cached time is 0.2 s stale) when the connect started: its 0.3 s
 * timer must still fire at the absolute deadline, and say 0.3 s. */
static int stale_clock_client(void *arg) {
    uint16_t port = *(uint16_t *)arg;
    char msg[256], want[128];
    ll_stream_opts o = {.connect_timeout = 0.3};
    ll_time t0 = ll_now();
    int rc = lt_await_msg(ll_stream_connect("127.0.0.1", port, &o), msg, sizeof msg);
    double took = ll_now() - t0;
    LT_CHECKF(rc == LL_ETIMEDOUT, "rc %d: %s", rc, msg);
    snprintf(want, sizeof want, "connect to 127.0.0.1:%u: timed out after 0.3 s connecting", port);
    LT_CHECKF(strcmp(msg, want) == 0, "%s", msg);
    /* not early (10 ms of clock slack), and late by at most 1 s on a loaded machine */
    LT_CHECKF(took >= 0.29 && took < 1.3, "took %.3f s", took);
    return 0;
}

static void test_connect_timeout_busy_loop(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    uint16_t port;
    int fillers[3];
    int lfd = full_listener(&port, fillers, 3);
    ll_future *tick = ll_sleep_future(c.loop, 0.001);
    assert_int_equal(ll_loop_run_until(c.loop, tick), 0);
    ll_future_free(tick);
    ll_time until = ll_now() + 0.2; /* busy outside the loop: its cached time goes stale */
    while (ll_now() < until) {
    }
    assert_int_equal(lt_run_checked(c.loop, stale_clock_client, &port), 0);
    for (int i = 0; i < 3; i++) close(fillers[i]);
    close(lfd);
    lt_teardown(&c);
}

/* Every allocation of a connect + write + read_until, failed in turn: each attempt ends with a
 * clean error or success, and nothing leaks (lt_teardown; ASan and valgrind for memory). */
static void test_out_of_memory(void **state) {
    (void)state;
    for (long n = 0; n < 400; n++) {
        lt_ctx c;
        lt_setup(&c);
        ll_server *srv = start_tcp(script_handler, "hello\n");
        uint16_t port = ll_server_port(srv);
        lt_fail_after(n);
        ll_future *f = ll_stream_connect("127.0.0.1", port, NULL);
        int rc = f ? ll_loop_run_until(c.loop, f) : LL_ENOMEM;
        ll_stream *s = rc == 0 ? ll_future_take(f) : NULL;
        if (rc) assert_true(rc == LL_ENOMEM || ll_future_code(f) == LL_ENOMEM);
        ll_future_free(f);
        if (s) {
            char buf[16];
            ll_future *w = ll_stream_write(s, "abc", 3);
            assert_true(!w || ll_future_done(w));
            ll_future_free(w);
            ll_future *r = ll_stream_read_until(s, "\n", 1, buf, sizeof buf);
            if (r) {
                rc = ll_loop_run_until(c.loop, r);
                /* the server may have failed to start its task and closed: EOF or reset */
                assert_true(rc == 0 || rc == LL_ENOMEM || rc == LL_EOF || rc == LL_ECONNRESET);
                if (rc == 0) assert_memory_equal(buf, "hello\n", 6);
            }
            ll_future_free(r);
            ll_stream_close(s);
        }
        bool injected = lt_alloc_count() > n;
        lt_fail_reset();
        stop_server(c.loop, srv);
        lt_teardown(&c);
        if (!injected) {
            if (getenv("LIBLOOP_TEST_VERBOSE")) fprintf(stderr, "oom: %ld allocations\n", n);
            return; /* every allocation of the path has been failed once */
        }
    }
    fail_msg("more than 400 allocations on the connect path");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_tcp),
        cmocka_unit_test(test_echo_unix),
        cmocka_unit_test(test_big_transfer_backpressure),
        cmocka_unit_test(test_read_until_peek_fill),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_connect_timeout_busy_loop),
        cmocka_unit_test(test_silent_server_deadline),
        cmocka_unit_test(test_reset_mid_read),
        cmocka_unit_test(test_alive_unasked_bytes),
        cmocka_unit_test(test_alive_unasked_bytes_pipe),
        cmocka_unit_test(test_reset_mid_write_no_sigpipe),
        cmocka_unit_test(test_close_while_awaited_and_fd_reuse),
        cmocka_unit_test(test_close_from_done_callback),
        cmocka_unit_test(test_pipes),
        cmocka_unit_test(test_cancel_connect_and_untaken_value),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
