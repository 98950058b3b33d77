/*
 * test_process.c — subprocesses: exit codes, signal deaths, spawn errors, 10 MB through stdin,
 * stdout and stderr at once without deadlock, stdio modes, cwd and environment, terminate, kill on
 * close, cancellation, the polling fallback, and that descriptors and handles come back.
 *
 * The 10 MB test runs this very program as the child (argv[1] == "--helper"): it reads stdin in
 * chunks and writes each chunk to stdout and a transformed copy to stderr as it goes, so a parent
 * that wrote all the input before reading would deadlock on full pipes.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness/harness.h"
#include "libloop/process.h"

static char self_exe[4096];

/* ---- the child side of the big test ---- */

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int helper_main(void) {
    static unsigned char buf[65536], x[65536];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 10;
        if (n == 0) break;
        for (ssize_t i = 0; i < n; i++) x[i] = buf[i] ^ 0x5a;
        if (write_all(1, buf, (size_t)n) || write_all(2, x, (size_t)n)) return 11;
    }
    return 3;
}

/* ---- helpers ---- */

/* Inside a task: run argv to the end and return the output (caller frees), asserting success. */
static ll_process_output *run_proc(const char *const *argv, const void *input, size_t len,
                              const ll_process_opts *o) {
    ll_future *f = ll_process_run(argv, input, len, o);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "run %s: %s\n", argv[0], ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    ll_process_output *out = ll_future_take(f);
    ll_future_free(f);
    return out;
}

/* Inside a task: spawn, or fail the test. */
static ll_process *spawn(const char *const *argv, const ll_process_opts *o) {
    ll_future *f = ll_process_spawn(argv, o);
    assert_true(ll_future_done(f)); /* settled when the call returns */
    if (ll_future_code(f)) fprintf(stderr, "spawn: %s\n", ll_future_errmsg(f));
    assert_int_equal(ll_future_code(f), 0);
    ll_process *p = ll_future_take(f);
    ll_future_free(f);
    return p;
}

static ll_exit_status wait_exit(ll_process *p) {
    ll_future *f = ll_process_wait(p);
    assert_int_equal(ll_await(f), 0);
    ll_exit_status st = *(ll_exit_status *)ll_future_value(f);
    ll_future_free(f);
    return st;
}

/* Run the loop until no handle is left (a killed child is reaped in the background). */
static void settle(lt_ctx *c) {
    for (int i = 0; i < 200; i++) {
        ll_loop_stats st;
        ll_loop_get_stats(c->loop, &st);
        if (st.handles == 0 && st.tasks == 0) return;
        ll_future *f = ll_sleep_future(c->loop, 0.01);
        ll_loop_run_until(c->loop, f);
        ll_future_free(f);
    }
}

static void task_test(ll_task_fn fn) {
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_task(c.loop, fn, NULL), 0);
    settle(&c);
    lt_teardown(&c);
}

/* ---- exit codes and signals ---- */

static int t_exit_codes(void *arg) {
    (void)arg;
    const char *t[] = {"true", NULL};
    ll_process *p = spawn(t, NULL);
    assert_true(ll_process_pid(p) > 0);
    ll_exit_status st = wait_exit(p);
    assert_true(st.exited);
    assert_false(st.signaled);
    assert_int_equal(st.code, 0);
    ll_exit_status again;
    assert_int_equal(ll_process_status(p, &again), 0);
    assert_int_equal(again.code, 0);
    assert_int_equal(ll_process_signal(p, SIGTERM), LL_ESRCH); /* reaped: never signalled */
    ll_process_close(p);

    const char *f[] = {"false", NULL};
    p = spawn(f, NULL);
    st = wait_exit(p);
    assert_true(st.exited);
    assert_int_equal(st.code, 1);
    ll_process_close(p);

    const char *e42[] = {"sh", "-c", "exit 42", NULL};
    ll_process_output *o = run_proc(e42, NULL, 0, NULL);
    assert_true(o->status.exited);
    assert_int_equal(o->status.code, 42); /* a non-zero exit is not a failure of the run */
    ll_process_output_free(o);
    return 0;
}

static void test_exit_codes(void **state) {
    (void)state;
    task_test(t_exit_codes);
}

static int t_signal_death(void *arg) {
    (void)arg;
    const char *argv[] = {"sh", "-c", "kill -9 $$", NULL};
    ll_process_output *o = run_proc(argv, NULL, 0, NULL);
    assert_false(o->status.exited);
    assert_true(o->status.signaled);
    assert_int_equal(o->status.signal, SIGKILL);
    ll_process_output_free(o);
    const char *segv[] = {"sh", "-c", "kill -SEGV $$", NULL};
    o = run_proc(segv, NULL, 0, NULL);
    assert_true(o->status.signaled);
    assert_int_equal(o->status.signal, SIGSEGV);
    ll_process_output_free(o);
    return 0;
}

static void test_signal_death(void **state) {
    (void)state;
    task_test(t_signal_death);
}

/* ---- spawn errors ---- */

static void test_spawn_errors(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    const char *missing[] = {"nosuchprog-libloop", NULL};
    ll_process_opts o = {.loop = c.loop, .stdout_mode = LL_STDIO_PIPE};
    ll_future *f = ll_process_spawn(missing, &o);
    assert_true(ll_future_done(f));
    assert_int_equal(ll_future_code(f), LL_ENOENT);
    assert_string_equal(ll_future_errmsg(f), "spawn nosuchprog-libloop: no such file or directory");
    ll_future_free(f);

    const char *ls[] = {"ls", NULL};
    o.cwd = "/nonexistent-libloop-dir";
    f = ll_process_spawn(ls, &o);
    assert_int_equal(ll_future_code(f), LL_ENOENT);
    assert_string_equal(ll_future_errmsg(f),
                        "spawn ls: cwd /nonexistent-libloop-dir: no such file or directory");
    ll_future_free(f);

    /* a file without execute permission, and one that is executable but no program */
    char path[64];
    snprintf(path, sizeof path, "/tmp/libloop-noexec-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x01\x02junk", 6), 6);
    close(fd);
    chmod(path, 0644);
    const char *notexec[] = {path, NULL};
    o.cwd = NULL;
    f = ll_process_spawn(notexec, &o);
    assert_int_equal(ll_future_code(f), LL_EACCES);
    char want[160];
    snprintf(want, sizeof want, "spawn %s: permission denied", path);
    assert_string_equal(ll_future_errmsg(f), want);
    ll_future_free(f);
    chmod(path, 0755);
    f = ll_process_spawn(notexec, &o);
    assert_int_equal(ll_future_code(f), LL_ENOEXEC);
    snprintf(want, sizeof want, "spawn %s: exec format error", path);
    assert_string_equal(ll_future_errmsg(f), want);
    ll_future_free(f);
    unlink(path);

    const char *none[] = {NULL};
    f = ll_process_spawn(none, &o);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    ll_future_free(f);

    ll_process_opts bad = {.loop = c.loop, .stdout_mode = LL_STDIO_STDOUT};
    f = ll_process_spawn(ls, &bad);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    ll_future_free(f);

    /* the same errors through ll_process_run */
    f = ll_process_run(missing, "x", 1, &o);
    assert_int_equal(ll_future_code(f), LL_ENOENT);
    assert_string_equal(ll_future_errmsg(f), "spawn nosuchprog-libloop: no such file or directory");
    ll_future_free(f);
    lt_teardown(&c); /* every pipe made for the failed spawns was closed */
}

/* ---- 10 MB in, 10 MB out on each of stdout and stderr ---- */

#define BIG (10 * 1024 * 1024)

static int t_big(void *arg) {
    (void)arg;
    unsigned char *input = malloc(BIG);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < BIG; i++) { /* xorshift: no period a pipe size could hide */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        input[i] = (unsigned char)x;
    }
    const char *argv[] = {self_exe, "--helper", NULL};
    ll_time t0 = ll_now();
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(60)); /* a deadlock would hit this, not hang the suite */
    ll_process_output *o = run_proc(argv, input, BIG, NULL);
    assert_int_equal(ll_scope_exit(&s), 0);
    double took = ll_now() - t0;
    assert_true(took < 60);
    assert_true(o->status.exited);
    assert_int_equal(o->status.code, 3);
    assert_int_equal(o->out_len, BIG);
    assert_int_equal(o->err_len, BIG);
    assert_memory_equal(o->out, input, BIG);
    for (size_t i = 0; i < BIG; i++) input[i] ^= 0x5a;
    assert_memory_equal(o->err, input, BIG);
    ll_process_output_free(o);
    free(input);
    return 0;
}

static void test_big_io_no_deadlock(void **state) {
    (void)state;
    task_test(t_big);
}

/* The same with the process API: the caller spawns with pipes and calls communicate. */
static int t_communicate(void *arg) {
    (void)arg;
    const char *argv[] = {self_exe, "--helper", NULL};
    ll_process_opts po = {.stdin_mode = LL_STDIO_PIPE, .stdout_mode = LL_STDIO_PIPE,
                          .stderr_mode = LL_STDIO_PIPE};
    ll_process *p = spawn(argv, &po);
    size_t n = 3 * 1024 * 1024 + 17;
    char *input = malloc(n);
    for (size_t i = 0; i < n; i++) input[i] = (char)('a' + i % 26);
    ll_future *f = ll_process_communicate(p, input, n, 0);
    assert_int_equal(ll_await(f), 0);
    ll_process_output *o = ll_future_value(f);
    assert_int_equal(o->out_len, n);
    assert_memory_equal(o->out, input, n);
    assert_int_equal(o->err_len, n);
    assert_int_equal(o->out[n], 0); /* NUL-terminated */
    assert_int_equal(o->status.code, 3);
    ll_future_free(f);
    ll_process_close(p);
    /* an output limit */
    const char *yes[] = {"sh", "-c", "head -c 100000 /dev/zero", NULL};
    po.stdin_mode = LL_STDIO_NULL;
    p = spawn(yes, &po);
    f = ll_process_communicate(p, NULL, 0, 1000);
    assert_int_equal(ll_await(f), LL_ETOOLARGE);
    assert_string_equal(ll_future_errmsg(f), "communicate with sh: stdout exceeds 1000 bytes");
    ll_future_free(f);
    ll_process_close(p);
    free(input);
    return 0;
}

static void test_communicate(void **state) {
    (void)state;
    task_test(t_communicate);
}

/* ---- stdio modes, cwd, environment ---- */

static int t_stdio_modes(void *arg) {
    (void)arg;
    /* stderr merged into stdout, in the order written */
    const char *both[] = {"sh", "-c", "echo out; echo err >&2; echo out2", NULL};
    ll_process_opts o = {.stderr_mode = LL_STDIO_STDOUT};
    ll_process_output *r = run_proc(both, NULL, 0, &o);
    assert_string_equal(r->out, "out\nerr\nout2\n");
    assert_null(r->err);
    ll_process_output_free(r);
    /* stdin from /dev/null: cat ends at once */
    const char *cat[] = {"cat", NULL};
    r = run_proc(cat, NULL, 0, NULL);
    assert_int_equal(r->out_len, 0);
    assert_string_equal(r->out, "");
    ll_process_output_free(r);
    /* stdout to /dev/null */
    const char *echo[] = {"sh", "-c", "echo hidden; echo shown >&2", NULL};
    o = (ll_process_opts){.stdout_mode = LL_STDIO_NULL};
    r = run_proc(echo, NULL, 0, &o);
    assert_null(r->out);
    assert_string_equal(r->err, "shown\n");
    ll_process_output_free(r);
    /* cwd */
    const char *pwd[] = {"pwd", NULL};
    o = (ll_process_opts){.cwd = "/"};
    r = run_proc(pwd, NULL, 0, &o);
    assert_string_equal(r->out, "/\n");
    ll_process_output_free(r);
    /* the environment replaces the parent's */
    const char *env[] = {"sh", "-c", "echo \"$LL_TEST_VAR|$HOME\"", NULL};
    char *envp[] = {"LL_TEST_VAR=hello", "PATH=/usr/bin:/bin", NULL};
    o = (ll_process_opts){.env = envp};
    r = run_proc(env, NULL, 0, &o);
    assert_string_equal(r->out, "hello|\n");
    ll_process_output_free(r);
    /* a child that stops reading early: the rest of the input is dropped, not an error */
    size_t n = 1024 * 1024;
    char *big = calloc(1, n);
    const char *head[] = {"head", "-c", "5", NULL};
    r = run_proc(head, big, n, NULL);
    assert_int_equal(r->out_len, 5);
    ll_process_output_free(r);
    free(big);
    /* SIGPIPE is back to its default in the child although we ignore it: `yes` dies of it
     * quietly instead of complaining about a broken pipe */
    const char *yes[] = {"sh", "-c", "yes | head -c 10 >/dev/null; echo ok", NULL};
    r = run_proc(yes, NULL, 0, NULL);
    assert_string_equal(r->out, "ok\n");
    assert_string_equal(r->err, "");
    ll_process_output_free(r);
    return 0;
}

static void test_stdio_modes_cwd_env(void **state) {
    (void)state;
    task_test(t_stdio_modes);
}

/* Streams by hand: write a line, read the reply, shut stdin down to end the child. */
static int t_streams(void *arg) {
    (void)arg;
    const char *cat[] = {"cat", NULL};
    ll_process_opts po = {.stdin_mode = LL_STDIO_PIPE, .stdout_mode = LL_STDIO_PIPE};
    ll_process *p = spawn(cat, &po);
    assert_null(ll_process_stderr(p));
    ll_future *w = ll_stream_write(ll_process_stdin(p), "ping\n", 5);
    assert_int_equal(ll_await(w), 0);
    ll_future_free(w);
    char line[16];
    ll_future *r = ll_stream_read_until(ll_process_stdout(p), "\n", 1, line, sizeof line);
    assert_int_equal(ll_await(r), 0);
    assert_int_equal((uintptr_t)ll_future_value(r), 5);
    assert_memory_equal(line, "ping\n", 5);
    ll_future_free(r);
    ll_future *sh = ll_stream_shutdown(ll_process_stdin(p));
    assert_int_equal(ll_await(sh), 0);
    ll_future_free(sh);
    r = ll_stream_read(ll_process_stdout(p), line, sizeof line);
    assert_int_equal(ll_await(r), LL_EOF);
    ll_future_free(r);
    ll_exit_status st = wait_exit(p);
    assert_int_equal(st.code, 0);
    ll_process_close(p);
    return 0;
}

static void test_pipes_as_streams(void **state) {
    (void)state;
    task_test(t_streams);
}

/* ---- terminate, kill on close, cancellation ---- */

static int t_terminate(void *arg) {
    (void)arg;
    const char *argv[] = {"sleep", "10", NULL};
    ll_process *p = spawn(argv, NULL);
    ll_sleep(0.02);
    ll_time t0 = ll_now();
    assert_int_equal(ll_process_terminate(p), 0);
    ll_exit_status st = wait_exit(p);
    assert_true(ll_now() - t0 < 2.0); /* tolerance: a loaded machine */
    assert_true(st.signaled);
    assert_int_equal(st.signal, SIGTERM);
    ll_process_close(p);
    p = spawn(argv, NULL);
    assert_int_equal(ll_process_kill(p), 0);
    st = wait_exit(p);
    assert_int_equal(st.signal, SIGKILL);
    ll_process_close(p);
    return 0;
}

static void test_terminate_and_kill(void **state) {
    (void)state;
    task_test(t_terminate);
}

static bool pid_gone(int pid) {
    return kill(pid, 0) != 0 && errno == ESRCH;
}

typedef struct cancel_ctx {
    ll_process *p;
    int rc;
} cancel_ctx;

static int waits_forever(void *arg) {
    cancel_ctx *x = arg;
    ll_future *f = ll_process_wait(x->p);
    x->rc = ll_await(f);
    ll_future_free(f);
    return x->rc;
}

static void cancel_cb(void *arg) {
    ll_future_cancel(arg);
}

static void test_cancel_wait_leaves_child(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    const char *argv[] = {"sleep", "10", NULL};
    ll_process_opts o = {.loop = c.loop};
    ll_future *sf = ll_process_spawn(argv, &o);
    cancel_ctx x = {.p = ll_future_take(sf)};
    ll_future_free(sf);
    int pid = ll_process_pid(x.p);
    ll_spawn_opts so = {.loop = c.loop};
    ll_future *t = ll_spawn_ex(waits_forever, &x, &so);
    ll_future *later = ll_loop_call_later(c.loop, 0.02, cancel_cb, t);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run_until(c.loop, t), LL_ECANCELED);
    assert_true(ll_now() - t0 < 2.0);
    assert_int_equal(x.rc, LL_ECANCELED);
    /* the documented rule: cancelling a wait does not kill the child */
    assert_int_equal(kill(pid, 0), 0);
    assert_int_equal(ll_process_status(x.p, NULL), LL_EAGAIN);
    /* closing the process does: it is killed and reaped in the background */
    ll_process_close(x.p);
    settle(&c);
    assert_true(pid_gone(pid));
    ll_future_free(later);
    ll_future_free(t);
    lt_teardown(&c);
}

typedef struct run_cancel {
    int rc;
    double took;
} run_cancel;

static int run_with_deadline(void *arg) {
    run_cancel *x = arg;
    const char *argv[] = {"sleep", "10", NULL};
    ll_time t0 = ll_now();
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.1));
    ll_future *f = ll_process_run(argv, NULL, 0, NULL);
    x->rc = ll_await(f);
    ll_future_free(f);
    ll_scope_exit(&s);
    x->took = ll_now() - t0;
    return 0;
}

static void test_run_process_deadline_kills(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    run_cancel x = {0};
    assert_int_equal(lt_run_task(c.loop, run_with_deadline, &x), 0);
    assert_int_equal(x.rc, LL_ETIMEDOUT);
    assert_true(x.took >= 0.099 && x.took < 2.0);
    /* the child was killed and reaped before the await returned: nothing is left */
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.handles, 0);
    lt_teardown(&c);
}

static void test_close_kills_running_child(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    const char *argv[] = {"sleep", "10", NULL};
    ll_process_opts o = {.loop = c.loop, .stdout_mode = LL_STDIO_PIPE, .stdin_mode = LL_STDIO_PIPE};
    ll_future *sf = ll_process_spawn(argv, &o);
    ll_process *p = ll_future_take(sf);
    ll_future_free(sf);
    int pid = ll_process_pid(p);
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.handles, 3); /* the process and its two pipes */
    ll_process_close(p);
    settle(&c);
    assert_true(pid_gone(pid)); /* killed and reaped: no zombie */
    lt_teardown(&c);
}

/* A process nobody waits for does not keep ll_loop_run going; the loop's free reaps it. */
static void test_loop_free_reaps(void **state) {
    (void)state;
    int fds = lt_count_fds();
    ll_loop *loop = ll_loop_new();
    const char *argv[] = {"sleep", "10", NULL};
    ll_process_opts o = {.loop = loop};
    ll_future *sf = ll_process_spawn(argv, &o);
    ll_process *p = ll_future_take(sf);
    ll_future_free(sf);
    int pid = ll_process_pid(p);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run(loop), 0);
    assert_true(ll_now() - t0 < 1.0);
    assert_int_equal(ll_loop_free(loop), 0);
    assert_true(pid_gone(pid));
    assert_int_equal(lt_count_fds(), fds);
}

/* ---- the fallback without pidfd ---- */

static int t_poll_mode(void *arg) {
    (void)arg;
    const char *argv[] = {"sh", "-c", "sleep 0.05; exit 7", NULL};
    ll_process_output *o = run_proc(argv, "in", 2, NULL);
    assert_int_equal(o->status.code, 7);
    ll_process_output_free(o);
    const char *sl[] = {"sleep", "10", NULL};
    ll_process *p = spawn(sl, NULL);
    ll_process_terminate(p);
    ll_exit_status st = wait_exit(p);
    assert_int_equal(st.signal, SIGTERM);
    ll_process_close(p);
    return 0;
}

static void test_polling_fallback(void **state) {
    (void)state;
    setenv("LIBLOOP_PROCESS_REAP", "poll", 1);
    task_test(t_poll_mode);
    unsetenv("LIBLOOP_PROCESS_REAP");
}

/* ---- a loop on another thread (not libev's default loop) reaps its own children ---- */

typedef struct thread_res {
    int rc;
    int code;
    char out[32];
} thread_res;

static int thread_main_task(void *arg) {
    thread_res *r = arg;
    const char *argv[] = {"sh", "-c", "echo thread; exit 5", NULL};
    ll_future *f = ll_process_run(argv, NULL, 0, NULL);
    r->rc = ll_await(f);
    if (r->rc == 0) {
        ll_process_output *o = ll_future_value(f);
        r->code = o->status.code;
        snprintf(r->out, sizeof r->out, "%s", o->out);
    }
    ll_future_free(f);
    return 0;
}

static void *thread_body(void *arg) {
    ll_loop *loop = ll_loop_new();
    ll_spawn_opts o = {.loop = loop};
    ll_future *f = ll_spawn_ex(thread_main_task, arg, &o);
    ll_loop_run_until(loop, f);
    ll_future_free(f);
    ll_loop_free(loop);
    return NULL;
}

static int t_with_thread(void *arg) {
    (void)arg;
    thread_res r = {.rc = 1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, thread_body, &r), 0);
    const char *argv[] = {"sh", "-c", "sleep 0.05; exit 6", NULL};
    ll_process_output *o = run_proc(argv, NULL, 0, NULL);
    assert_int_equal(o->status.code, 6);
    ll_process_output_free(o);
    pthread_join(th, NULL);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.code, 5);
    assert_string_equal(r.out, "thread\n");
    return 0;
}

static void test_loops_on_two_threads(void **state) {
    (void)state;
    task_test(t_with_thread);
}

/* ---- many at once ---- */

static int one_child(void *arg) {
    intptr_t i = (intptr_t)arg;
    char script[64];
    snprintf(script, sizeof script, "echo %ld; exit %ld", (long)i, (long)(i % 100));
    const char *argv[] = {"sh", "-c", script, NULL};
    ll_process_output *o = run_proc(argv, NULL, 0, NULL);
    char want[32];
    snprintf(want, sizeof want, "%ld\n", (long)i);
    assert_string_equal(o->out, want);
    assert_int_equal(o->status.code, (int)(i % 100));
    ll_process_output_free(o);
    return 0;
}

static int t_many(void *arg) {
    (void)arg;
    enum { N = 50 };
    ll_future *fs[N];
    for (intptr_t i = 0; i < N; i++) fs[i] = ll_spawn(one_child, (void *)i);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ll_await(fs[i]), 0);
        ll_future_free(fs[i]);
    }
    return 0;
}

static void test_fifty_at_once(void **state) {
    (void)state;
    task_test(t_many);
}

/* ---- out of memory ---- */

static void test_out_of_memory(void **state) {
    (void)state;
    /* Fail the n-th allocation for growing n until a run needs no more than n: every path ends in
     * success or LL_ENOMEM, the child is always reaped, and each teardown proves nothing leaked. */
    bool clean_run = false;
    for (long n = 0; n < 500 && !clean_run; n++) {
        lt_ctx c;
        lt_setup(&c);
        const char *argv[] = {"sh", "-c", "cat; echo err >&2", NULL};
        ll_process_opts o = {.loop = c.loop};
        lt_fail_after(n);
        ll_future *f = ll_process_run(argv, "in", 2, &o);
        int rc = f ? ll_loop_run_until(c.loop, f) : LL_ENOMEM;
        clean_run = lt_alloc_count() <= n;
        lt_fail_reset();
        assert_true(rc == 0 || rc == LL_ENOMEM);
        if (rc == 0) {
            ll_process_output *out = ll_future_value(f);
            assert_string_equal(out->out, "in");
            assert_string_equal(out->err, "err\n");
        }
        if (clean_run) assert_int_equal(rc, 0);
        ll_future_free(f);
        settle(&c);
        lt_teardown(&c);
    }
    assert_true(clean_run);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--helper") == 0) return helper_main();
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0) return 1;
    self_exe[n] = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_signal_death),
        cmocka_unit_test(test_spawn_errors),
        cmocka_unit_test(test_big_io_no_deadlock),
        cmocka_unit_test(test_communicate),
        cmocka_unit_test(test_stdio_modes_cwd_env),
        cmocka_unit_test(test_pipes_as_streams),
        cmocka_unit_test(test_terminate_and_kill),
        cmocka_unit_test(test_cancel_wait_leaves_child),
        cmocka_unit_test(test_run_process_deadline_kills),
        cmocka_unit_test(test_close_kills_running_child),
        cmocka_unit_test(test_loop_free_reaps),
        cmocka_unit_test(test_polling_fallback),
        cmocka_unit_test(test_loops_on_two_threads),
        cmocka_unit_test(test_fifty_at_once),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
