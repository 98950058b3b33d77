/*
 * test_loop.c — the event loop: call_soon order, call_later timing and cancellation, when run and
 * run_until return, embedding in an application's ev_loop, loops on two threads, call_soon from
 * another thread, ll_run() and its SIGINT handling.
 */
#include <ev.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness/harness.h"

/* ---- call_soon ---- */

typedef struct order {
    int seen[64];
    int n;
    ll_loop *loop;
} order;

typedef struct soon_arg {
    order *o;
    int id;
} soon_arg;

static void record(void *arg) {
    soon_arg *a = arg;
    a->o->seen[a->o->n++] = a->id;
}

/* A callback that queues another one: it must run after everything already queued. */
static soon_arg late = {NULL, 100};
static void record_and_queue(void *arg) {
    soon_arg *a = arg;
    record(a);
    late.o = a->o;
    assert_int_equal(ll_loop_call_soon(a->o->loop, record, &late), 0);
}

static void test_call_soon_fifo(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    order o = {.loop = c.loop};
    soon_arg args[10];
    for (int i = 0; i < 10; i++) {
        args[i] = (soon_arg){&o, i};
        assert_int_equal(ll_loop_call_soon(c.loop, i == 2 ? record_and_queue : record, &args[i]), 0);
    }
    assert_int_equal(o.n, 0); /* nothing runs inside call_soon */
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(o.n, 11);
    for (int i = 0; i < 10; i++) assert_int_equal(o.seen[i], i);
    assert_int_equal(o.seen[10], 100);
    assert_int_equal(ll_loop_call_soon(c.loop, NULL, NULL), LL_EINVAL);
    lt_teardown(&c);
}

/* ---- call_later ---- */

typedef struct fired {
    int count;
    ll_time at;
    pthread_t thread;
} fired;

static void on_fire(void *arg) {
    fired *f = arg;
    f->count++;
    f->at = ll_now();
    f->thread = pthread_self();
}

static void test_call_later_timing(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fired a = {0}, b = {0};
    ll_time t0 = ll_now();
    ll_future *fb = ll_loop_call_later(c.loop, 0.08, on_fire, &b);
    ll_future *fa = ll_loop_call_later(c.loop, 0.04, on_fire, &a);
    assert_non_null(fa);
    assert_non_null(fb);
    assert_string_equal(ll_future_label(fa), "call_later");
    assert_int_equal(ll_loop_run_until(c.loop, fa), 0);
    assert_int_equal(a.count, 1);
    assert_int_equal(b.count, 0);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(b.count, 1);
    /* Never early; late by at most 250 ms (a noisy 2-core machine). */
    assert_true(a.at - t0 >= 0.04);
    assert_true(a.at - t0 < 0.04 + 0.25);
    assert_true(b.at - t0 >= 0.08);
    assert_true(b.at - t0 < 0.08 + 0.25);
    assert_true(b.at >= a.at);
    assert_int_equal(ll_future_get_state(fb), LL_FUTURE_RESOLVED);
    ll_future_free(fa);
    ll_future_free(fb);
    lt_teardown(&c);
}

static void test_call_later_cancel(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fired a = {0};
    ll_future *f = ll_loop_call_later(c.loop, 0.5, on_fire, &a);
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.handles, 1);
    assert_int_equal(ll_future_cancel(f), 0);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_CANCELLED);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0); /* the timer is gone: nothing to wait for */
    assert_true(ll_now() - t0 < 0.3);
    assert_int_equal(a.count, 0);
    assert_int_equal(ll_future_cancel(f), LL_EALREADY);
    ll_future_free(f);
    lt_teardown(&c);
}

/* A fire-and-forget timer (its future dropped at once) still fires, and one still pending when the
 * loop is freed is cancelled and released by ll_loop_free. */
static void test_call_later_fire_and_forget(void **state) {
    (void)state;
    lt_track_begin();
    int fds = lt_count_fds();
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    fired a = {0}, b = {0};
    ll_future_free(ll_loop_call_later(loop, 0.01, on_fire, &a));
    ll_future_free(ll_loop_call_later(loop, 30, on_fire, &b));
    ll_future *f = ll_sleep_future(loop, 0.05);
    assert_int_equal(ll_loop_run_until(loop, f), 0);
    ll_future_free(f);
    assert_int_equal(a.count, 1);
    assert_int_equal(ll_loop_free(loop), 0);
    assert_int_equal(b.count, 0);
    assert_int_equal(lt_track_end(), 0);
    assert_int_equal(lt_count_fds(), fds);
}

/* ---- run and run_until ---- */

static int sleep_then_count(void *arg) {
    int rc = ll_sleep(0.02);
    if (rc == 0) (*(int *)arg)++;
    return rc;
}

static void test_run_returns_when_done(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(ll_loop_run(c.loop), 0); /* empty loop: at once */
    int done = 0;
    fired a = {0};
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *fs[5];
    for (int i = 0; i < 5; i++) fs[i] = ll_spawn_ex(sleep_then_count, &done, &o);
    ll_future *later = ll_loop_call_later(c.loop, 0.06, on_fire, &a);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    double took = ll_now() - t0;
    assert_int_equal(done, 5);
    assert_int_equal(a.count, 1);
    assert_true(took >= 0.06 && took < 0.06 + 0.5); /* the longest timer; tolerance 500 ms */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ll_future_code(fs[i]), 0);
        ll_future_free(fs[i]);
    }
    ll_future_free(later);
    lt_teardown(&c);
}

static void stop_it(void *arg) {
    ll_loop_stop(arg);
}

static void test_run_stop(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *f = ll_sleep_future(c.loop, 30);
    ll_future *later = ll_loop_call_later(c.loop, 0.01, stop_it, c.loop);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < 1.0);
    assert_false(ll_future_done(f));
    /* stopped before f settled: run_until says so rather than waiting 30 s */
    ll_future *later2 = ll_loop_call_later(c.loop, 0.01, stop_it, c.loop);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_EBUSY);
    assert_int_equal(ll_future_cancel(f), 0);
    ll_future_free(f);
    ll_future_free(later);
    ll_future_free(later2);
    lt_teardown(&c);
}

static int await_forever(void *arg) {
    return ll_await(arg);
}

static int run_inside(void *arg) {
    ll_loop *loop = arg;
    ll_future *f = ll_future_new(loop);
    int rc = ll_loop_run_until(loop, f); /* re-entering the loop from a task */
    ll_future_free(f);
    if (rc != LL_EBUSY) return LL_EINVAL;
    return ll_loop_run(loop) == LL_EBUSY ? 0 : LL_EINVAL;
}

static void test_run_until_deadlock(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    /* a future nobody will settle, awaited by nobody */
    ll_future *orphan = ll_future_new(c.loop);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run_until(c.loop, orphan), LL_EBUSY);
    /* a task waiting for it: the loop runs out of work, the task can never finish */
    ll_spawn_opts o = {.loop = c.loop, .name = "stuck"};
    ll_future *t = ll_spawn_ex(await_forever, orphan, &o);
    assert_int_equal(ll_loop_run_until(c.loop, t), LL_EBUSY);
    assert_true(ll_now() - t0 < 1.0);
    assert_false(ll_future_done(t));
    /* now settle it: the same task finishes */
    assert_int_equal(ll_future_fail(orphan, LL_EIO, "made up"), 0);
    assert_int_equal(ll_loop_run_until(c.loop, t), LL_EIO);
    assert_string_equal(ll_future_errmsg(t), "i/o error");
    ll_future_free(t);
    ll_future_free(orphan);
    /* run and run_until refuse to be re-entered from a task */
    assert_int_equal(lt_run_task(c.loop, run_inside, c.loop), 0);
    assert_int_equal(ll_loop_run_until(NULL, NULL), LL_EINVAL);
    lt_teardown(&c);
}

/* The loop returns as soon as its goal is met by ready work (a task ending, ll_loop_stop() from a
 * task), even while an unrelated long timer would keep the poll asleep. */
static int quick(void *arg) {
    (void)arg;
    return ll_yield();
}

static int stops_loop(void *arg) {
    ll_loop_stop(arg);
    return 0;
}

static void test_return_promptly(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *idle = ll_sleep_future(c.loop, 30);
    ll_spawn_opts o = {.loop = c.loop};
    ll_time t0 = ll_now();
    ll_future *t = ll_spawn_ex(quick, NULL, &o);
    assert_int_equal(ll_loop_run_until(c.loop, t), 0);
    ll_future_free(t);
    t = ll_spawn_ex(stops_loop, c.loop, &o);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_future_done(t));
    ll_future_free(t);
    assert_true(ll_now() - t0 < 1.0); /* not 30 s */
    assert_false(ll_future_done(idle));
    ll_future_cancel(idle);
    ll_future_free(idle);
    lt_teardown(&c);
}

/* ---- embedding ---- */

typedef struct embed_obs {
    ll_loop *loop;
    int app_timer_fired;
    int task_done;
    ll_time task_end;
    fired later;
} embed_obs;

static int embedded_task(void *arg) {
    embed_obs *o = arg;
    if (ll_loop_current() != o->loop) return LL_EINVAL;
    int rc = ll_sleep(0.03);
    if (rc) return rc;
    ll_future *child = ll_spawn(sleep_then_count, &o->task_done);
    rc = ll_await(child);
    ll_future_free(child);
    o->task_end = ll_now();
    return rc;
}

static void app_timer_cb(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)ev, (void)revents;
    (*(int *)w->data)++;
}

static void test_embedded(void **state) {
    (void)state;
    int fds = lt_count_fds();
    struct ev_loop *ev = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(ev);
    ll_loop *loop = ll_loop_new_embedded(ev);
    assert_non_null(loop);
    assert_ptr_equal(ll_loop_ev(loop), ev);
    assert_int_equal(ll_loop_run(loop), LL_EINVAL); /* the application runs this one */
    embed_obs o = {.loop = loop};
    ll_spawn_opts so = {.loop = loop};
    ll_future *t = ll_spawn_ex(embedded_task, &o, &so);
    ll_future *later = ll_loop_call_later(loop, 0.02, on_fire, &o.later);
    /* the application's own watcher in the same ev_loop */
    ev_timer app;
    ev_timer_init(&app, app_timer_cb, 0.01, 0.);
    app.data = &o.app_timer_fired;
    ev_timer_start(ev, &app);
    ll_time t0 = ll_now();
    ev_run(ev, 0); /* returns when neither libloop nor the application has anything left */
    assert_true(ll_now() - t0 < 2.0);
    assert_int_equal(o.app_timer_fired, 1);
    assert_int_equal(o.later.count, 1);
    assert_true(pthread_equal(o.later.thread, pthread_self()));
    assert_int_equal(o.task_done, 1);
    assert_true(o.task_end - t0 >= 0.05);
    assert_int_equal(ll_future_code(t), 0);
    ll_future_free(t);
    ll_future_free(later);
    /* a fire-and-forget timer still pending when the loop is freed must not stay in the ev_loop */
    fired never = {0};
    ll_future_free(ll_loop_call_later(loop, 0.05, on_fire, &never));
    ll_loop_stats st;
    ll_loop_get_stats(loop, &st);
    assert_int_equal(st.tasks, 0);
    assert_int_equal(st.futures, 1);
    assert_int_equal(st.handles, 1);
    assert_int_equal(ll_loop_free(loop), 0);
    /* the ev_loop is still the application's and still works. Its cached time is from the end of
     * the last ev_run: refresh it, or the 0.1 s timer counts from a moment already past (under
     * valgrind the code above takes more than 10 ms and the >= 0.09 check below failed). */
    ev_now_update(ev);
    ev_timer_set(&app, 0.1, 0.);
    ev_timer_start(ev, &app);
    t0 = ll_now();
    ev_run(ev, 0);
    assert_int_equal(o.app_timer_fired, 2);
    assert_true(ll_now() - t0 >= 0.09);
    assert_int_equal(never.count, 0);
    ev_loop_destroy(ev);
    assert_int_equal(lt_count_fds(), fds);
}

/* ---- threads ---- */

typedef struct thread_obs {
    pthread_barrier_t *barrier;
    int tasks_ok;
    int wrong_loop;
    int run_rc, free_rc;
    size_t left_tasks, left_futures, left_handles;
    pthread_t self;
} thread_obs;

static _Thread_local ll_loop *my_loop;

static int thread_task(void *arg) {
    thread_obs *o = arg;
    for (int i = 0; i < 5; i++) {
        if (ll_loop_current() != my_loop) o->wrong_loop++;
        if (!pthread_equal(pthread_self(), o->self)) o->wrong_loop++;
        int rc = (i % 2) ? ll_yield() : ll_sleep(0.002);
        if (rc) return rc;
    }
    o->tasks_ok++;
    return 0;
}

static void *thread_main(void *arg) {
    thread_obs *o = arg;
    o->self = pthread_self();
    my_loop = ll_loop_new();
    if (!my_loop) return NULL;
    if (ll_loop_current() != my_loop) o->wrong_loop++;
    pthread_barrier_wait(o->barrier); /* both loops exist and run at the same time */
    ll_future *fs[50];
    ll_spawn_opts so = {.loop = my_loop, .stack_size = 32 * 1024};
    for (int i = 0; i < 50; i++) fs[i] = ll_spawn_ex(thread_task, o, &so);
    o->run_rc = ll_loop_run(my_loop);
    for (int i = 0; i < 50; i++) ll_future_free(fs[i]);
    ll_loop_stats st;
    ll_loop_get_stats(my_loop, &st);
    o->left_tasks = st.tasks;
    o->left_futures = st.futures;
    o->left_handles = st.handles;
    o->free_rc = ll_loop_free(my_loop);
    if (ll_loop_current() != NULL) o->wrong_loop++;
    return NULL;
}

static void test_two_threads(void **state) {
    (void)state;
    int fds = lt_count_fds();
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    thread_obs obs[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        memset(&obs[i], 0, sizeof obs[i]);
        obs[i].barrier = &barrier;
        obs[i].run_rc = obs[i].free_rc = 1;
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &obs[i]), 0);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(obs[i].tasks_ok, 50);
        assert_int_equal(obs[i].wrong_loop, 0);
        assert_int_equal(obs[i].run_rc, 0);
        assert_int_equal(obs[i].free_rc, 0);
        assert_int_equal(obs[i].left_tasks, 0);
        assert_int_equal(obs[i].left_futures, 0);
        assert_int_equal(obs[i].left_handles, 0);
    }
    assert_null(ll_loop_current()); /* the threads' loops never became this thread's */
    assert_int_equal(lt_count_fds(), fds);
}

/* Threads that make a loop and exit leave nothing behind (their alternate signal stacks
 * included): the address space stays flat over many such threads. */
static void *short_lived(void *arg) {
    ll_loop *loop = ll_loop_new();
    ll_future *f = ll_sleep_future(loop, 0.0001);
    *(int *)arg += ll_loop_run_until(loop, f) == 0;
    ll_future_free(f);
    ll_loop_free(loop);
    return NULL;
}

static long vm_size_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

static void test_short_lived_threads(void **state) {
    (void)state;
    /* under valgrind the client's address space is not the process's; ThreadSanitizer keeps
     * state for every thread that ever ran */
    if (lt_under_valgrind() || lt_under_tsan()) {
        skip();
        return;
    }
    int ok = 0;
    pthread_t th;
    for (int i = 0; i < 3; i++) { /* warm up: glibc caches thread stacks */
        assert_int_equal(pthread_create(&th, NULL, short_lived, &ok), 0);
        pthread_join(th, NULL);
    }
    long before = vm_size_kb();
    for (int i = 0; i < 40; i++) {
        assert_int_equal(pthread_create(&th, NULL, short_lived, &ok), 0);
        pthread_join(th, NULL);
    }
    long after = vm_size_kb();
    print_message("VmSize %ld kB -> %ld kB over 40 threads\n", before, after);
    assert_int_equal(ok, 43);
    assert_true(before > 0);
    assert_true(after - before < 1024); /* a leaked 64 KiB per thread would be 2.5 MiB */
}

typedef struct ts_obs {
    ll_loop *loop;
    int next_expected;
    int out_of_order;
    int wrong_thread;
    pthread_t loop_thread;
} ts_obs;

typedef struct ts_item {
    ts_obs *o;
    int seq;
} ts_item;

enum { TS_N = 2000 };
static ts_item ts_items[TS_N];

static void ts_cb(void *arg) {
    ts_item *it = arg;
    ts_obs *o = it->o;
    if (!pthread_equal(pthread_self(), o->loop_thread)) o->wrong_thread++;
    if (it->seq != o->next_expected) o->out_of_order++;
    o->next_expected = it->seq + 1;
    if (it->seq == TS_N - 1) ll_loop_unref(o->loop); /* the producer is done */
}

static void *ts_producer(void *arg) {
    ts_obs *o = arg;
    for (int i = 0; i < TS_N; i++) {
        ts_items[i] = (ts_item){o, i};
        while (ll_loop_call_soon_threadsafe(o->loop, ts_cb, &ts_items[i]) != 0) usleep(100);
        if (i % 200 == 0) usleep(1000); /* let the loop go to sleep in between */
    }
    return NULL;
}

static void test_call_soon_threadsafe(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ts_obs o = {.loop = c.loop, .loop_thread = pthread_self()};
    ll_loop_ref(c.loop); /* a thread of ours will call in */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ts_producer, &o), 0);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < 10.0);
    pthread_join(th, NULL);
    assert_int_equal(o.next_expected, TS_N);
    assert_int_equal(o.out_of_order, 0);
    assert_int_equal(o.wrong_thread, 0);
    assert_int_equal(ll_loop_call_soon_threadsafe(NULL, ts_cb, NULL), LL_EINVAL);
    lt_teardown(&c);
}

/* ---- ll_run ---- */

static int sleep_long(void *arg) {
    (void)arg;
    return ll_sleep(30);
}

static int main_ok(void *arg) {
    int rc = ll_sleep(0.01);
    if (rc) return rc;
    ll_task *t = ll_task_current();
    if (strcmp(ll_task_name(t), "main") != 0) return LL_EINVAL;
    /* a forgotten background task: ll_run cancels and cleans it up */
    ll_future_free(ll_spawn(sleep_long, arg));
    ll_task_return(strdup("result"), free);
    return 0;
}

static int main_fails(void *arg) {
    (void)arg;
    return ll_task_fail(LL_EPROTO, "bad greeting from %s", "127.0.0.1:25");
}

static void test_ll_run(void **state) {
    (void)state;
    int fds = lt_count_fds();
    lt_track_begin();
    assert_null(ll_loop_current());
    ll_time t0 = ll_now();
    assert_int_equal(ll_run(main_ok, NULL), 0);
    assert_true(ll_now() - t0 < 2.0); /* the background task was cancelled, not waited for */
    assert_null(ll_loop_current());
    assert_int_equal(ll_run(main_fails, NULL), LL_EPROTO);
    assert_int_equal(ll_run(NULL, NULL), LL_EINVAL);
    assert_int_equal(lt_track_end(), 0);
    assert_int_equal(lt_count_fds(), fds);
}

/* ---- SIGINT ---- */

static int sigint_sleep_rc = 1;
static int sigint_ready_fd = -1;

static int main_sleeps(void *arg) {
    (void)arg;
    lt_child_notify(sigint_ready_fd);
    sigint_sleep_rc = ll_sleep(60);
    /* cleanup still works inside a shielded scope */
    ll_scope s;
    ll_scope_enter_shielded(&s, ll_deadline_in(1));
    int cleanup = ll_sleep(0.001);
    ll_scope_exit(&s);
    if (cleanup != 0) return LL_EINVAL;
    return sigint_sleep_rc;
}

static int sigint_child(void *arg, int ready_fd) {
    (void)arg;
    sigint_ready_fd = ready_fd;
    int rc = ll_run(main_sleeps, NULL);
    if (rc != LL_ECANCELED || sigint_sleep_rc != LL_ECANCELED) return 1;
    return -rc; /* 125: cancelled, as the shell sees it */
}

static void test_sigint(void **state) {
    (void)state;
    lt_child ch;
    ll_time t0 = ll_now();
    lt_child_start(&ch, sigint_child, NULL);
    assert_true(lt_child_wait_ready(&ch, 10.0));
    assert_int_equal(kill(ch.pid, SIGINT), 0);
    assert_true(lt_child_wait(&ch, 10.0));
    assert_true(ll_now() - t0 < 10.0);
    if (ch.outlen) print_message("child stderr: %s\n", ch.out);
    assert_true(WIFEXITED(ch.status));
    assert_int_equal(WEXITSTATUS(ch.status), -LL_ECANCELED);
}

/* A second SIGINT while the first one's cleanup is still running kills the process as usual. */
static int main_slow_cleanup(void *arg) {
    (void)arg;
    lt_child_notify(sigint_ready_fd); /* signals are handled now */
    int rc = ll_sleep(60);
    ll_scope s;
    ll_scope_enter_shielded(&s, ll_deadline_in(20));
    lt_child_notify(sigint_ready_fd); /* cancelled once, now cleaning up */
    ll_sleep(15);
    ll_scope_exit(&s);
    return rc;
}

static int sigint_twice_child(void *arg, int ready_fd) {
    (void)arg;
    sigint_ready_fd = ready_fd;
    ll_run(main_slow_cleanup, NULL);
    return 3; /* not reached */
}

static void test_sigint_twice(void **state) {
    (void)state;
    lt_child ch;
    ll_time t0 = ll_now();
    lt_child_start(&ch, sigint_twice_child, NULL);
    assert_true(lt_child_wait_ready(&ch, 10));
    assert_int_equal(kill(ch.pid, SIGINT), 0);
    assert_true(lt_child_wait_ready(&ch, 10)); /* the first SIGINT cancelled main */
    assert_int_equal(kill(ch.pid, SIGINT), 0);
    assert_true(lt_child_wait(&ch, 10.0));
    assert_true(ll_now() - t0 < 12.0); /* not the 15 s cleanup */
    assert_true(WIFSIGNALED(ch.status));
    assert_int_equal(WTERMSIG(ch.status), SIGINT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_soon_fifo),
        cmocka_unit_test(test_call_later_timing),
        cmocka_unit_test(test_call_later_cancel),
        cmocka_unit_test(test_call_later_fire_and_forget),
        cmocka_unit_test(test_run_returns_when_done),
        cmocka_unit_test(test_run_stop),
        cmocka_unit_test(test_run_until_deadlock),
        cmocka_unit_test(test_return_promptly),
        cmocka_unit_test(test_embedded),
        cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_short_lived_threads),
        cmocka_unit_test(test_call_soon_threadsafe),
        cmocka_unit_test(test_ll_run),
        cmocka_unit_test(test_sigint),
        cmocka_unit_test(test_sigint_twice),
    };
    return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
