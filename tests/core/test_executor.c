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

/* The job on `loop`, with an arg the caller keeps (arg_free NULL). */
static ll_future *run_on(ll_loop *loop, ll_work_fn fn, void *arg, ll_value_free value_free) {
    ll_executor_opts o = {.loop = loop};
    return ll_executor_run(fn, arg, NULL, value_free, &o);
}

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
    ll_future *f = ll_executor_run(square, o, NULL, free, NULL);
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
    ll_future *f = run_on(c.loop, square, &o, free);
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
        jobs[i] = run_on(c.loop, nap, (void *)(uintptr_t)100000, NULL);
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
    ll_future *f = run_on(c.loop, fail_with, (void *)(intptr_t)LL_ENOENT, free);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_ENOENT);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_FAILED);
    assert_non_null(strstr(ll_future_errmsg(f), "no such file or directory"));
    assert_null(ll_future_value(f));
    ll_future_free(f);
    /* a positive return is not a libloop code: it becomes LL_EIO */
    f = run_on(c.loop, fail_with, (void *)(intptr_t)3, free);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_EIO);
    ll_future_free(f);
    f = run_on(c.loop, NULL, NULL, NULL); /* a bad argument is a failed future, named */
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    assert_string_equal(ll_future_errmsg(f), "ll_executor_run: fn is NULL");
    ll_future_free(f);
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
    ll_future *running = run_on(c.loop, gated, &g, counted_free);
    gate_wait_started(&g); /* the single worker is busy now */
    ll_future *queued = run_on(c.loop, counted, &queued_runs, counted_free);
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
    ll_future *f = ll_executor_run(gated, arg, NULL, counted_free, NULL);
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
    /* the job must be running, not queued (a queued job is removed and never gives a value): wait
     * for a worker to take it, which is slow under valgrind */
    for (;;) {
        pthread_mutex_lock(&g.lock);
        bool started = g.started;
        pthread_mutex_unlock(&g.lock);
        if (started) break;
        ll_future *z = ll_sleep_future(c.loop, 0.005);
        ll_loop_run_until(c.loop, z);
        ll_future_free(z);
    }
    ll_future *later = ll_loop_call_later(c.loop, 0.001, cancel_cb, t);
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
    ll_future_free(run_on(loop, gated, &g, counted_free));
    gate_wait_started(&g);
    for (int i = 0; i < 5; i++)
        ll_future_free(run_on(loop, counted, &queued_runs, counted_free));
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


/* ---- the job owns its arg ---- */

/* A job's own state: allocated for it, freed by arg_free (on whichever thread the job ends). */
typedef struct owned {
    gate *g;          /* NULL: return at once */
    int *frees;       /* bumped atomically by arg_free */
} owned;

static int arg_frees, late_values;
static void owned_free(void *p) {
    owned *o = p;
    __atomic_add_fetch(o->frees, 1, __ATOMIC_SEQ_CST);
    free(o);
}
static void late_value_free(void *p) {
    __atomic_add_fetch(&late_values, 1, __ATOMIC_SEQ_CST);
    free(p);
}

static owned *owned_new(gate *g) {
    owned *o = malloc(sizeof *o);
    assert_non_null(o);
    o->g = g;
    o->frees = &arg_frees;
    return o;
}

static int owned_job(void *arg, void **value) {
    owned *o = arg;
    if (o->g) gated(o->g, value);
    else *value = strdup("value");
    return 0;
}

static int frees_now(void) {
    return __atomic_load_n(&arg_frees, __ATOMIC_SEQ_CST);
}

/* The task gives the job 50 ms: its await returns at the deadline while the job runs on, on
 * memory it owns; the task returns (its stack is recycled) and the job ends later. */
static int await_with_deadline(void *arg) {
    ll_future *f = ll_executor_run(owned_job, owned_new(arg), owned_free, late_value_free, NULL);
    ll_time t0 = ll_now();
    int rc = ll_await_timeout(f, 0.05);
    double took = ll_now() - t0;
    LT_CHECKF(rc == LL_ETIMEDOUT, "rc %d", rc);
    LT_CHECK(ll_future_get_state(f) == LL_FUTURE_CANCELLED);
    /* the deadline gives control back at the deadline: 50 ms, 400 ms tolerance (loaded machine) */
    LT_CHECKF(took < 0.45, "took %.3f s", took);
    LT_CHECK(frees_now() == 1); /* the job still runs: its arg is alive */
    ll_future_free(f);
    return 0;
}

static void test_job_owns_arg(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(ll_executor_set_threads(c.loop, 1), 0);
    arg_frees = late_values = 0;
    /* a job that ran: arg_free once, on the worker, right after the job */
    ll_executor_opts eo = {.loop = c.loop, .label = "my job"};
    ll_future *f = ll_executor_run(owned_job, owned_new(NULL), owned_free, free, &eo);
    assert_string_equal(ll_future_label(f), "my job");
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_string_equal(ll_future_value(f), "value");
    assert_int_equal(frees_now(), 1);
    ll_future_free(f);

    /* cancelled at its deadline while running */
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    lt_run_checked(c.loop, await_with_deadline, &g);
    assert_int_equal(frees_now(), 1);
    /* removed from the queue (the single worker is busy): its arg is freed at once, on the loop */
    f = ll_executor_run(owned_job, owned_new(NULL), owned_free, late_value_free, &eo);
    assert_int_equal(ll_future_cancel(f), 0);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_CANCELLED);
    assert_int_equal(frees_now(), 2);
    ll_future_free(f);
    /* submitting without a function still frees the arg */
    f = ll_executor_run(NULL, owned_new(NULL), owned_free, NULL, &eo);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    assert_int_equal(frees_now(), 3);
    ll_future_free(f);
    /* the running job ends: its arg is freed, its late value destroyed */
    gate_open(&g);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(frees_now(), 4);
    assert_int_equal(late_values, 1);
    lt_teardown(&c);
}

/* ---- cancelling queued jobs is constant time ---- */

static void test_cancel_queued_constant_time(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(ll_executor_set_threads(c.loop, 1), 0);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    ll_future *blocker = run_on(c.loop, gated, &g, free);
    gate_wait_started(&g);
    enum { N = 100000 };
    ll_future **fs = malloc(N * sizeof *fs);
    assert_non_null(fs);
    int runs = 0;
    for (int i = 0; i < N; i++) fs[i] = run_on(c.loop, counted, &runs, free);
    /* cancel the newest half, last first: a list scanned from the head costs N/2 * 3N/4 steps */
    ll_time t0 = ll_now();
    for (int i = N - 1; i >= N / 2; i--) assert_int_equal(ll_future_cancel(fs[i]), 0);
    double took = ll_now() - t0;
    print_message("50,000 cancels over a 100,000-job queue: %.3f s\n", took);
    /* constant time: ~10 ms here; 2 s of tolerance for valgrind and a loaded machine (the linear
     * scan took 14 s) */
    assert_true(took < 2.0);
    gate_open(&g);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(runs, N / 2);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ll_future_code(fs[i]), i < N / 2 ? 0 : LL_ECANCELED);
        ll_future_free(fs[i]);
    }
    free(fs);
    ll_future_free(blocker);
    lt_teardown(&c);
}

/* ---- submitting from a done callback while the loop is freed ---- */

typedef struct resubmit {
    int code;
    int calls;
} resubmit;

static void submit_again(ll_future *f, void *arg) {
    (void)f;
    resubmit *r = arg;
    r->calls++;
    ll_executor_opts eo = {.loop = ll_future_loop(f)};
    ll_future *again = ll_executor_run(owned_job, owned_new(NULL), owned_free, free, &eo);
    r->code = ll_future_code(again);
    ll_future_free(again);
}

static void test_submit_during_free(void **state) {
    (void)state;
    lt_track_begin();
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    assert_int_equal(ll_executor_set_threads(loop, 1), 0);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    arg_frees = 0;
    ll_future_free(run_on(loop, gated, &g, free));
    gate_wait_started(&g);
    resubmit r = {0, 0};
    ll_future *queued = run_on(loop, counted, &(int){0}, free);
    assert_int_equal(ll_future_add_done(queued, submit_again, &r), 0);
    ll_future_free(queued);
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_soon, &g), 0);
    assert_int_equal(ll_loop_free(loop), 0); /* the callback runs in here */
    pthread_join(opener, NULL);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.code, LL_ECLOSED); /* no new executor behind the loop's back */
    assert_int_equal(frees_now(), 1);     /* and the refused job's arg was freed */
    assert_int_equal(lt_track_end(), 0);
}

/* ---- ll_loop_free does not wait for a job that does not return ---- */

static void test_free_detaches_hung_job(void **state) {
    (void)state;
    int fds = lt_count_fds();
    lt_track_begin();
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    assert_int_equal(ll_executor_set_threads(loop, 2), 0);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    arg_frees = late_values = 0;
    ll_executor_opts eo = {.loop = loop};
    ll_future *hung = ll_executor_run(owned_job, owned_new(&g), owned_free, late_value_free, &eo);
    ll_future_free(ll_executor_run(owned_job, owned_new(NULL), owned_free, free, &eo));
    gate_wait_started(&g);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_free(loop), 0);
    double took = ll_now() - t0;
    print_message("ll_loop_free with a hung job: %.3f s\n", took);
    /* the grace is 0.2 s; 0.8 s of tolerance. The job is hung: without the detach, forever. */
    assert_true(took < 1.0);
    assert_int_equal(ll_future_get_state(hung), LL_FUTURE_CANCELLED);
    ll_future_free(hung); /* the future outlives its loop: safe */
    assert_int_equal(frees_now(), 1); /* the quick job ended; the hung one still owns its arg */
    /* The job returns long after its loop is gone: its thread frees the arg, the value and the
     * executor, and nothing crashes. */
    gate_open(&g);
    for (int i = 0; i < 500 && lt_track_live() > 0; i++) usleep(10000);
    assert_int_equal(frees_now(), 2);
    assert_int_equal(__atomic_load_n(&late_values, __ATOMIC_SEQ_CST), 1);
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
        cmocka_unit_test(test_job_owns_arg),
        cmocka_unit_test(test_cancel_queued_constant_time),
        cmocka_unit_test(test_submit_during_free),
        cmocka_unit_test(test_free_detaches_hung_job),
    };
    return cmocka_run_group_tests_name("executor", tests, NULL, NULL);
}
