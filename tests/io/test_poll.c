/*
 * test_poll.c — the fd watcher (ll_poll, ll_poller): readiness as futures, level-triggered,
 * several waits on one poller, cancellation, deadlines, weak waits that do not keep the loop
 * alive, switching descriptors (even to a new socket with the same number), freeing with waits
 * pending (also from a wait's own done callback), a closed descriptor, and ll_loop_free closing a
 * poller the application left open.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "harness/harness.h"
#include "libloop/poll.h"

static void make_pipe(int fds[2]) {
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void close_pair(int fds[2]) {
    close(fds[0]);
    close(fds[1]);
}

/* ---- readiness ---- */

static void test_read_ready_level_triggered(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p[2];
    make_pipe(p);
    /* nothing to read: the wait stays pending while the loop has other work */
    ll_future *f = ll_poll(p[0], LL_POLL_READ, NULL);
    assert_non_null(f);
    ll_future *nap = ll_sleep_future(c.loop, 0.02);
    assert_int_equal(ll_loop_run_until(c.loop, nap), 0);
    ll_future_free(nap);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_PENDING);
    assert_string_equal(ll_future_label(f), "poll read");
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal(ll_poll_events(f), LL_POLL_READ);
    ll_future_free(f);
    /* level-triggered: the byte is still there, so a new wait resolves at once */
    f = ll_poll(p[0], LL_POLL_READ | LL_POLL_WRITE, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal(ll_poll_events(f), LL_POLL_READ); /* a read end is never writable */
    ll_future_free(f);
    close_pair(p);
    lt_teardown(&c);
}

static void test_write_ready_and_both(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ll_future *f = ll_poll(sv[0], LL_POLL_WRITE, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal(ll_poll_events(f), LL_POLL_WRITE);
    ll_future_free(f);
    assert_int_equal(write(sv[1], "x", 1), 1);
    f = ll_poll(sv[0], LL_POLL_READ | LL_POLL_WRITE, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal(ll_poll_events(f), LL_POLL_READ | LL_POLL_WRITE);
    ll_future_free(f);
    /* the peer closing shows as readable: the next read says what happened */
    char b[4];
    assert_int_equal(read(sv[0], b, sizeof b), 1);
    close(sv[1]);
    f = ll_poll(sv[0], LL_POLL_READ, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal(ll_poll_events(f), LL_POLL_READ);
    assert_int_equal(read(sv[0], b, sizeof b), 0);
    ll_future_free(f);
    close(sv[0]);
    lt_teardown(&c);
}

/* Two waits on one poller, each resolving with its own events. */
static void test_poller_two_waits(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ll_poller *p = ll_poller_new(sv[0], NULL);
    assert_non_null(p);
    assert_int_equal(ll_poller_fd(p), sv[0]);
    ll_future *r = ll_poller_wait(p, LL_POLL_READ);
    ll_future *w = ll_poller_wait(p, LL_POLL_WRITE);
    assert_int_equal(ll_loop_run_until(c.loop, w), 0);
    assert_int_equal(ll_poll_events(w), LL_POLL_WRITE);
    assert_int_equal(ll_future_get_state(r), LL_FUTURE_PENDING);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(ll_loop_run_until(c.loop, r), 0);
    assert_int_equal(ll_poll_events(r), LL_POLL_READ);
    ll_future_free(r);
    ll_future_free(w);
    /* a wait again after both settled: the same poller re-arms */
    r = ll_poller_wait(p, LL_POLL_READ);
    assert_int_equal(ll_loop_run_until(c.loop, r), 0);
    ll_future_free(r);
    ll_poller_free(p);
    close_pair(sv);
    lt_teardown(&c);
}

/* ---- cancellation, deadlines, keeping the loop alive ---- */

typedef struct {
    int fd;
    int rc;
    double took;
    char msg[256];
} deadline_arg;

static int await_under_deadline(void *arg) {
    deadline_arg *a = arg;
    ll_time t0 = ll_now();
    a->rc = lt_await_msg(ll_poll(a->fd, LL_POLL_READ, NULL), a->msg, sizeof a->msg);
    a->took = ll_now() - t0;
    return 0;
}

static void test_deadline(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p[2];
    make_pipe(p);
    deadline_arg a = {.fd = p[0]};
    ll_future *t = ll_spawn_ex(await_under_deadline, &a,
                               &(ll_spawn_opts){.loop = c.loop, .deadline = ll_deadline_in(0.1)});
    assert_int_equal(ll_loop_run_until(c.loop, t), 0);
    ll_future_free(t);
    assert_int_equal(a.rc, LL_ETIMEDOUT);
    /* control back at the deadline; 0.4 s of slack for a loaded machine */
    assert_true(a.took >= 0.09);
    assert_true(a.took < 0.5);
    /* the wait is gone: the loop has nothing left (teardown checks the handle count too) */
    assert_int_equal(ll_loop_run(c.loop), 0);
    close_pair(p);
    lt_teardown(&c);
}

static void test_cancel(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p[2];
    make_pipe(p);
    ll_poller *pl = ll_poller_new(p[0], NULL);
    ll_future *f = ll_poller_wait(pl, LL_POLL_READ);
    assert_int_equal(ll_future_cancel(f), 0);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_CANCELLED);
    ll_future_free(f);
    /* a cancelled wait watches nothing: the loop has no work, run returns at once */
    double t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < 0.5);
    /* and a byte arriving later settles nothing */
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(ll_loop_run(c.loop), 0);
    ll_poller_free(pl);
    close_pair(p);
    lt_teardown(&c);
}

static void write_byte(void *arg) {
    int fd = *(int *)arg;
    assert_int_equal(write(fd, "x", 1), 1);
}

static void test_keep_alive(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p[2];
    make_pipe(p);
    /* an idle poller does not keep the loop alive */
    ll_poller *pl = ll_poller_new(p[0], NULL);
    assert_int_equal(ll_loop_run(c.loop), 0);
    /* a weak wait does not either; the wait stays pending */
    ll_poller_set_ref(pl, false);
    ll_future *f = ll_poller_wait(pl, LL_POLL_READ);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_PENDING);
    /* made strong, it keeps the loop running until the byte written 30 ms later arrives */
    ll_poller_set_ref(pl, true);
    ll_future *later = ll_loop_call_later(c.loop, 0.03, write_byte, &p[1]);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(ll_poll_events(f), LL_POLL_READ);
    ll_future_free(f);
    ll_future_free(later);
    /* weak from the start through the options */
    char b;
    assert_int_equal(read(p[0], &b, 1), 1);
    f = ll_poll(p[0], LL_POLL_READ, &(ll_poll_opts){.weak = true});
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_PENDING);
    assert_int_equal(ll_future_cancel(f), 0);
    ll_future_free(f);
    ll_poller_free(pl);
    close_pair(p);
    lt_teardown(&c);
}

/* ---- freeing, switching descriptors, bad descriptors ---- */

static void free_in_done(ll_future *f, void *arg) {
    (void)f;
    ll_poller_free(arg);
}

static void test_free_with_waits(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p[2];
    make_pipe(p);
    ll_poller *pl = ll_poller_new(p[0], NULL);
    ll_future *a = ll_poller_wait(pl, LL_POLL_READ);
    ll_future *b = ll_poller_wait(pl, LL_POLL_READ);
    ll_poller_free(pl);
    assert_int_equal(ll_future_code(a), LL_ECLOSED);
    assert_non_null(strstr(ll_future_errmsg(a), "watcher was freed"));
    assert_int_equal(ll_future_code(b), LL_ECLOSED);
    ll_future_free(a);
    ll_future_free(b);
    /* freed from a done callback of its own wait, with a second wait still pending */
    pl = ll_poller_new(p[1], NULL);
    a = ll_poller_wait(pl, LL_POLL_WRITE);
    b = ll_poller_wait(pl, LL_POLL_READ); /* a pipe's write end: never readable */
    assert_int_equal(ll_future_add_done(a, free_in_done, pl), 0);
    assert_int_equal(ll_loop_run_until(c.loop, a), 0);
    assert_int_equal(ll_loop_run(c.loop), 0); /* runs the callback */
    assert_int_equal(ll_future_code(b), LL_ECLOSED);
    ll_future_free(a);
    ll_future_free(b);
    ll_poller_free(NULL);
    close_pair(p);
    lt_teardown(&c);
}

static void test_set_fd(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p1[2], p2[2];
    make_pipe(p1);
    make_pipe(p2);
    ll_poller *pl = ll_poller_new(-1, NULL);
    ll_future *f = ll_poller_wait(pl, LL_POLL_READ);
    assert_int_equal(ll_loop_run(c.loop), 0); /* no descriptor: nothing watched */
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_PENDING);
    ll_poller_set_fd(pl, p1[0]);
    /* the pending wait carries over to the descriptor; a byte on p2 means nothing to it */
    assert_int_equal(write(p2[1], "x", 1), 1);
    ll_future *nap = ll_sleep_future(c.loop, 0.02);
    assert_int_equal(ll_loop_run_until(c.loop, nap), 0);
    ll_future_free(nap);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_PENDING);
    ll_poller_set_fd(pl, p2[0]);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f);
    /* a new pipe with the same descriptor number as the watched one (libpq reconnecting) */
    f = ll_poller_wait(pl, LL_POLL_READ);
    int old = p1[0];
    int p3[2];
    make_pipe(p3);
    close(p1[0]);
    assert_int_equal(dup2(p3[0], old), old);
    close(p3[0]);
    p3[0] = old;
    ll_poller_set_fd(pl, old);
    assert_int_equal(write(p3[1], "y", 1), 1);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal(ll_poll_events(f), LL_POLL_READ);
    ll_future_free(f);
    ll_poller_free(pl);
    close(p1[1]);
    close_pair(p2);
    close_pair(p3);
    lt_teardown(&c);
}

static void test_bad_arguments(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *f = ll_poll(-1, LL_POLL_READ, NULL);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "ll_poll: fd -1"));
    ll_future_free(f);
    f = ll_poll(0, 0, NULL);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    ll_future_free(f);
    f = ll_poller_wait(NULL, LL_POLL_READ);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "poller is NULL"));
    ll_future_free(f);
    assert_null(ll_poller_new(-2, NULL));
    ll_poller *pl = ll_poller_new(0, NULL);
    f = ll_poller_wait(pl, 0);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    ll_future_free(f);
    ll_poller_free(pl);
    assert_int_equal(ll_poll_events(NULL), 0);
    /* a descriptor that is not open: the wait fails, naming it, instead of hanging */
    int p[2];
    make_pipe(p);
    close_pair(p);
    f = ll_poll(p[0], LL_POLL_READ, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_EBADF);
    assert_non_null(strstr(ll_future_errmsg(f), "not an open descriptor"));
    ll_future_free(f);
    lt_teardown(&c);
}

/* ll_loop_free frees a poller the application left open and fails its wait. */
static void test_loop_free_closes(void **state) {
    (void)state;
    int before = lt_count_fds();
    ll_loop *loop = ll_loop_new();
    int p[2];
    make_pipe(p);
    ll_poller *pl = ll_poller_new(p[0], &(ll_poll_opts){.loop = loop});
    ll_future *f = ll_poller_wait(pl, LL_POLL_READ);
    ll_future *g = ll_poll(p[0], LL_POLL_READ, &(ll_poll_opts){.loop = loop, .weak = true});
    ll_loop_stats st;
    ll_loop_get_stats(loop, &st);
    assert_int_equal(st.handles, 2);
    ll_future_free(f); /* dropping our references leaves the waits pending */
    ll_future_free(g);
    assert_int_equal(ll_loop_free(loop), 0);
    close_pair(p);
    assert_int_equal(lt_count_fds(), before);
}

/* ---- from tasks ---- */

static int reader_task(void *arg) {
    int fd = *(int *)arg;
    char b[8];
    for (int i = 0; i < 3; i++) {
        int rc = lt_await_free(ll_poll(fd, LL_POLL_READ, NULL));
        LT_CHECK(rc == 0);
        LT_CHECK(read(fd, b, sizeof b) == 1);
    }
    return 0;
}

static int writer_task(void *arg) {
    int fd = *(int *)arg;
    for (int i = 0; i < 3; i++) {
        LT_CHECK(ll_sleep(0.005) == 0);
        LT_CHECK(lt_await_free(ll_poll(fd, LL_POLL_WRITE, NULL)) == 0);
        LT_CHECK(write(fd, "z", 1) == 1);
    }
    return 0;
}

static int two_tasks(void *arg) {
    int *p = arg;
    ll_future *fs[2] = {ll_spawn(reader_task, &p[0]), ll_spawn(writer_task, &p[1])};
    ll_future *all = ll_gather(fs, 2, LL_GATHER_FAIL_FAST);
    int rc = ll_await_timeout(all, 5.0);
    ll_future_free(all);
    ll_future_free(fs[0]);
    ll_future_free(fs[1]);
    LT_CHECK(rc == 0);
    return 0;
}

static void test_tasks(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int p[2];
    make_pipe(p);
    assert_int_equal(lt_run_checked(c.loop, two_tasks, p), 0);
    close_pair(p);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_ready_level_triggered),
        cmocka_unit_test(test_write_ready_and_both),
        cmocka_unit_test(test_poller_two_waits),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_free_with_waits),
        cmocka_unit_test(test_set_fd),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_loop_free_closes),
        cmocka_unit_test(test_tasks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
