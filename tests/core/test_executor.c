/*
 * test_executor.c — the thread pool: results delivered on the loop thread, parallel jobs while the
 * loop stays responsive, failures, cancelling queued and running jobs, freeing a loop with jobs
 * still queued.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "harness/harness.h"

static pthread_t loop_thread;

/* ---- results on the loop thread ---- */

typedef struct job_obs {
    int ran_on_loop_thread; /* a job must never run on the loop thread */
    int cb_on_loop_thread;
    int cb_calls;
} job_obs;

static int square(void *arg, void **value) {
    job_obs *o = arg;
    if (pthread_equal(pthread_self(), loop_thread)) o->ran_on_loop_thread++;
    int *v = malloc(sizeof *v);
    if (!v) return LL_ENOMEM;
    *v = 7 * 7;
    *value = v;
    return 0;
}

static void on_done(ll_future *f, void *arg) {
    job_obs *o = arg;
    o->cb_calls++;
    if (pthread_equal(pthread_self(), loop_thread)) o->cb_on_loop_thread++;
    (void)f;
}

static int await_job(void *arg) {
    job_obs *o = arg;
    ll_future *f = ll_run_in_executor(square, o, free);
    int rc = ll_await(f);
    if (rc == 0 && !pthread_equal(pthread_self(), loop_thread)) rc = LL_EINVAL;
    if (rc == 0 && *(int *)ll_future_value(f) != 49) rc = LL_ERANGE;
    ll_future_free(f);
    return rc;
}

static void test_results_on_loop_thread(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    loop_thread = pthread_self();
    job_obs o = {0};
    ll_future *f = ll_run_in_executor_on(c.loop, square, &o, free);
    assert_non_null(f);
    assert_string_equal(ll_future_label(f), "executor job");
    assert_int_equal(ll_future_add_done(f, on_done, &o), 0);
    assert_int_equal(ll_loop_run(c.loop), 0); /* a job in flight keeps the loop running */
    assert_int_equal(ll_future_code(f), 0);
    assert_int_equal(*(int *)ll_future_value(f), 49);
    assert_int_equal(o.cb_calls, 1);
    assert_int_equal(o.cb_on_loop_thread, 1);
    ll_future_free(f);
    /* inside a task: the task resumes on the loop thread */
    assert_int_equal(lt_run_task(c.loop, await_job, &o), 0);
    assert_int_equal(o.ran_on_loop_thread, 0);
    assert_int_equal(ll_executor_set_threads(c.loop, 2), LL_ESTATE); /* already started */
    lt_teardown(&c);
}

/* ---- parallel jobs, responsive loop ---- */

static int nap(void *arg, void **value) {
    (void)value;
    usleep((useconds_t)(uintptr_t)arg);
    return 0;
}

typedef struct ticker {
    ll_loop *loop;
    ll_future **jobs;
    int njobs;
    ll_time last;
    double max_gap;
    int ticks;
    ll_future *timer;
} ticker;

static bool all_done(ticker *t) {
    for (int i = 0; i < t->njobs; i++)
        if (!ll_future_done(t->jobs[i])) return false;
    return true;
}

static void tick(void *arg) {
    ticker *t = arg;
    ll_time now = ll_now();
    if (now - t->last > t->max_gap) t->max_gap = now - t->last;
    t->last = now;
    t->ticks++;
    ll_future_free(t->timer);
    t->timer = all_done(t) ? NULL : ll_loop_call_later(t->loop, 0.01, tick, t);
}

static void test_parallel_jobs_timer_on_time(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(ll_executor_set_threads(c.loop, 0), LL_EINVAL);
    assert_int_equal(ll_executor_set_threads(c.loop, 4), 0);
    enum { N = 16 };
    ll_future *jobs[N];
    ll_time t0 = ll_now();
    for (int i = 0; i < N; i++) {
        jobs[i] = ll_run_in_executor_on(c.loop, nap, (void *)(uintptr_t)100000, NULL);
        assert_non_null(jobs[i]);
    }
    ticker t = {.loop = c.loop, .jobs = jobs, .njobs = N, .last = ll_now()};
    t.timer = ll_loop_call_later(c.loop, 0.01, tick, &t);
    assert_int_equal(ll_loop_run(c.loop), 0);
    double took = ll_now() - t0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(ll_future_code(jobs[i]), 0);
        ll_future_free(jobs[i]);
    }
    assert_null(t.timer);
    /* 16 jobs of 100 ms on 4 workers: 400 ms in parallel, 1.6 s in series. Tolerance: the
     * parallel time plus 800 ms (a noisy 2-core machine, valgrind). */
    assert_true(took >= 0.4);
    assert_true(took < 1.2);
    /* The 10 ms timer kept firing meanwhile: no gap beyond 10 ms + 150 ms tolerance. */
    assert_true(t.ticks >= 10);
    print_message("parallel: %.3f s, %d ticks, max gap %.1f ms\n", took, t.ticks, t.max_gap * 1e3);
    assert_true(t.max_gap < 0.16);
    lt_teardown(&c);
}

/* ---- failures ---- */

static int fail_with(void *arg, void **value) {
    *value = malloc(16); /* a value from a failing job is destroyed, not leaked */
    return (int)(intptr_t)arg;
}

static void test_failing_job(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *f = ll_run_in_executor_on(c.loop, fail_with, (void *)(intptr_t)LL_ENOENT, free);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_ENOENT);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_FAILED);
    assert_non_null(strstr(ll_future_errmsg(f), "no such file or directory"));
    assert_null(ll_future_value(f));
    ll_future_free(f);
    /* a positive return is not a libloop code: it becomes LL_EIO */
    f = ll_run_in_executor_on(c.loop, fail_with, (void *)(intptr_t)3, free);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_EIO);
    ll_future_free(f);
    assert_null(ll_run_in_executor_on(c.loop, NULL, NULL, NULL));
    lt_teardown(&c);
}

/* ---- cancellation ---- */

typedef struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started, open;
    int runs;
} gate;

static int gated(void *arg, void **value) {
    gate *g = arg;
    pthread_mutex_lock(&g->lock);
    g->started = true;
    g->runs++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open) pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    *value = strdup("late value");
    return 0;
}

static void gate_wait_started(gate *g) {
    pthread_mutex_lock(&g->lock);
    while (!g->started) pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static int value_frees;
static void counted_free(void *p) {
    value_frees++;
    free(p);
}

static int counted(void *arg, void **value) {
    (*(int *)arg)++;
    *value = strdup("never");
    return 0;
}

static void open_gate_cb(void *arg) {
    gate_open(arg);
}

static void test_cancel_queued_and_running(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(ll_executor_set_threads(c.loop, 1), 0);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    int queued_runs = 0;
    value_frees = 0;
    ll_future *running = ll_run_in_executor_on(c.loop, gated, &g, counted_free);
    gate_wait_started(&g); /* the single worker is busy now */
    ll_future *queued = ll_run_in_executor_on(c.loop, counted, &queued_runs, counted_free);
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.handles, 2);

    /* a queued job is removed: it never runs */
    assert_int_equal(ll_future_cancel(queued), 0);
    assert_int_equal(ll_future_get_state(queued), LL_FUTURE_CANCELLED);
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.handles, 1);

    /* a running job: its future is cancelled at once; the value comes later and is destroyed */
    assert_int_equal(ll_future_cancel(running), 0);
    assert_int_equal(ll_future_get_state(running), LL_FUTURE_CANCELLED);
    assert_int_equal(value_frees, 0);
    ll_future_free(running); /* dropping our reference while the job still runs is fine */
    ll_future_free(ll_loop_call_later(c.loop, 0.02, open_gate_cb, &g));
    assert_int_equal(ll_loop_run(c.loop), 0); /* returns once the late result was delivered */
    assert_int_equal(value_frees, 1);
    assert_int_equal(queued_runs, 0);
    assert_int_equal(g.runs, 1);
    assert_int_equal(ll_future_code(queued), LL_ECANCELED);
    ll_future_free(queued);
    lt_teardown(&c);
}

/* A task awaiting a job is cancelled: its await returns LL_ECANCELED at once, the job finishes on
 * its own and its value is destroyed. */
static int await_gated(void *arg) {
    ll_future *f = ll_run_in_executor(gated, arg, counted_free);
    int rc = ll_await(f);
    ll_future_free(f);
    return rc;
}

static void cancel_cb(void *arg) {
    ll_future_cancel(arg);
}

static void test_cancel_task_awaiting_job(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    value_frees = 0;
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *t = ll_spawn_ex(await_gated, &g, &o);
    ll_future *later = ll_loop_call_later(c.loop, 0.02, cancel_cb, t);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run_until(c.loop, t), LL_ECANCELED);
    assert_true(ll_now() - t0 < 1.0);
    assert_int_equal(value_frees, 0); /* the job is still blocked */
    gate_open(&g);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(value_frees, 1);
    ll_future_free(later);
    ll_future_free(t);
    lt_teardown(&c);
}

/* ---- freeing the loop with jobs queued ---- */

static void *open_soon(void *arg) {
    usleep(20000);
    gate_open(arg);
    return NULL;
}

static void test_free_with_jobs_queued(void **state) {
    (void)state;
    int fds = lt_count_fds();
    lt_track_begin();
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    lt_warnings w;
    lt_collect_warnings(loop, &w);
    ll_loop_set_debug(loop, true, 1e6); /* reports anything left alive at free */
    assert_int_equal(ll_executor_set_threads(loop, 1), 0);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    int queued_runs = 0;
    value_frees = 0;
    ll_future_free(ll_run_in_executor_on(loop, gated, &g, counted_free));
    gate_wait_started(&g);
    for (int i = 0; i < 5; i++)
        ll_future_free(ll_run_in_executor_on(loop, counted, &queued_runs, counted_free));
    ll_loop_stats st;
    ll_loop_get_stats(loop, &st);
    assert_int_equal(st.handles, 6);
    /* The running job cannot be interrupted: the free waits for it (let it finish soon) and
     * destroys its value; the queued ones never run. */
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_soon, &g), 0);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_free(loop), 0);
    assert_true(ll_now() - t0 < 2.0);
    pthread_join(opener, NULL);
    assert_int_equal(queued_runs, 0);
    assert_int_equal(value_frees, 1);
    assert_null(strstr(w.text, "still alive"));
    assert_int_equal(lt_track_end(), 0);
    assert_int_equal(lt_count_fds(), fds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_on_loop_thread),
        cmocka_unit_test(test_parallel_jobs_timer_on_time),
        cmocka_unit_test(test_failing_job),
        cmocka_unit_test(test_cancel_queued_and_running),
        cmocka_unit_test(test_cancel_task_awaiting_job),
        cmocka_unit_test(test_free_with_jobs_queued),
    };
    return cmocka_run_group_tests_name("executor", tests, NULL, NULL);
}
