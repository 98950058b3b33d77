/*
 * test_combinators.c — gather (both modes, cancelled, empty, NULL inputs), wait (each condition,
 * timeout), as_completed, wait_for (both outcomes of the race), shield, task groups (failing
 * child, cancelled parent, inherited deadline, freed group), out of memory and misuse.
 *
 * Assertions run in the test body, never inside a task: tasks record what they saw.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"

/* ---- helpers ---- */

/* A task that sleeps `delay` then returns `value`, or fails with `code`; records how it ended. */
typedef struct job {
    double delay;
    int code;         /* 0: succeed */
    uintptr_t value;
    double cleanup;   /* when cancelled: a shielded cleanup of this many seconds */
    int sleep_rc;     /* what its sleep returned */
    bool cleaned;     /* the cleanup ran to its end */
    bool ignore_cancel;
} job;

static int job_fn(void *arg) {
    job *j = arg;
    j->sleep_rc = ll_sleep(j->delay);
    if (j->sleep_rc && j->ignore_cancel) j->sleep_rc = 0; /* finishes anyway */
    if (j->sleep_rc) {
        if (j->cleanup > 0) {
            ll_scope s;
            ll_scope_enter_shielded(&s, ll_deadline_in(5));
            ll_sleep(j->cleanup);
            ll_scope_exit(&s);
        }
        j->cleaned = true;
        return j->sleep_rc;
    }
    if (j->code) return ll_task_fail(j->code, "job failed after %.0f ms", j->delay * 1e3);
    ll_task_return((void *)j->value, NULL);
    return 0;
}

static ll_future *start(lt_ctx *c, job *j) {
    ll_spawn_opts o = {.loop = c->loop};
    ll_future *f = ll_spawn_ex(job_fn, j, &o);
    assert_non_null(f);
    return f;
}

static void free_all(ll_future **fs, size_t n) {
    for (size_t i = 0; i < n; i++) ll_future_free(fs[i]);
}

static void cancel_cb(void *arg) {
    ll_future_cancel(arg);
}

/* ---- gather ---- */

static void test_gather_all_succeed(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[3] = {{.delay = 0.02, .value = 10},
                {.delay = 0.001, .value = 11},
                {.delay = 0.01, .value = 12}};
    ll_future *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = start(&c, &j[i]);
    ll_future *g = ll_gather(fs, 3, LL_GATHER_FAIL_FAST);
    assert_non_null(g);
    assert_string_equal(ll_future_label(g), "gather");
    assert_int_equal(ll_loop_run_until(c.loop, g), 0);
    for (int i = 0; i < 3; i++) assert_int_equal((uintptr_t)ll_future_value(fs[i]), 10 + i);
    assert_null(ll_future_value(g)); /* no failure */
    ll_future_free(g);
    free_all(fs, 3);
    lt_teardown(&c);
}

/* the first failure settles the gather with its code and a prefixed message; the rest are
 * cancelled, and the gather settles only once they have stopped (their cleanup is over) */
static void test_gather_fail_fast(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[3] = {{.delay = 0.001, .value = 1},
                {.delay = 0.02, .code = LL_EPROTO},
                {.delay = 5, .cleanup = 0.01}};
    ll_future *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = start(&c, &j[i]);
    ll_future *g = ll_gather(fs, 3, LL_GATHER_FAIL_FAST);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run_until(c.loop, g), LL_EPROTO);
    assert_true(ll_now() - t0 < 2.0); /* did not wait for the 5 s job */
    assert_int_equal(ll_future_get_state(g), LL_FUTURE_FAILED);
    assert_string_equal(ll_future_errmsg(g), "gather: item 1: job failed after 20 ms");
    /* the third was asked to stop when the gather failed, and had finished its cleanup by the
     * time the gather settled */
    assert_true(j[2].cleaned);
    assert_int_equal(ll_future_get_state(fs[2]), LL_FUTURE_CANCELLED);
    assert_int_equal(j[2].sleep_rc, LL_ECANCELED);
    assert_int_equal(ll_future_code(fs[0]), 0); /* already done: kept its outcome */
    assert_int_equal(ll_future_code(fs[1]), LL_EPROTO);
    ll_future_free(g);
    free_all(fs, 3);
    lt_teardown(&c);
}

static void test_gather_collect(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[4] = {{.delay = 0.001, .value = 7},
                {.delay = 0.005, .code = LL_EIO},
                {.delay = 5},
                {.delay = 0.03, .value = 8}};
    ll_future *fs[4];
    for (int i = 0; i < 4; i++) fs[i] = start(&c, &j[i]);
    ll_future *later = ll_loop_call_later(c.loop, 0.01, cancel_cb, fs[2]); /* one input is cancelled */
    ll_future *g = ll_gather(fs, 4, LL_GATHER_COLLECT);
    assert_int_equal(ll_loop_run_until(c.loop, g), 0);
    assert_int_equal((uintptr_t)ll_future_value(g), 2); /* failed + cancelled */
    /* collect waited for all: every input keeps its own outcome */
    assert_int_equal(ll_future_code(fs[0]), 0);
    assert_int_equal(ll_future_code(fs[1]), LL_EIO);
    assert_int_equal(ll_future_get_state(fs[2]), LL_FUTURE_CANCELLED);
    assert_int_equal((uintptr_t)ll_future_value(fs[3]), 8);
    ll_future_free(later);
    ll_future_free(g);
    free_all(fs, 4);
    lt_teardown(&c);
}

typedef struct {
    ll_future **fs;
    size_t n;
    size_t done_when_settled;
} settle_obs;

static void count_done(ll_future *f, void *arg) {
    (void)f;
    settle_obs *o = arg;
    for (size_t i = 0; i < o->n; i++)
        if (ll_future_done(o->fs[i])) o->done_when_settled++;
}

/* cancelling the gather cancels every input and settles only when they all have stopped */
static void test_gather_cancelled(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[3] = {{.delay = 5, .cleanup = 0.02},
                {.delay = 5, .cleanup = 0.005},
                {.delay = 0.001, .value = 3}};
    ll_future *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = start(&c, &j[i]);
    for (int mode = LL_GATHER_FAIL_FAST; mode <= LL_GATHER_COLLECT; mode++) {
        ll_future *g = ll_gather(fs, 3, mode);
        settle_obs obs = {fs, 3, 0};
        assert_int_equal(ll_future_add_done(g, count_done, &obs), 0);
        ll_future *later = ll_loop_call_later(c.loop, 0.01, cancel_cb, g);
        assert_int_equal(ll_loop_run_until(c.loop, g), LL_ECANCELED);
        assert_int_equal(ll_future_get_state(g), LL_FUTURE_CANCELLED);
        ll_loop_run(c.loop); /* deliver the callback */
        assert_int_equal(obs.done_when_settled, 3);
        assert_true(j[0].cleaned && j[1].cleaned);
        assert_int_equal(ll_future_get_state(fs[0]), LL_FUTURE_CANCELLED);
        assert_int_equal((uintptr_t)ll_future_value(fs[2]), 3);
        ll_future_free(later);
        ll_future_free(g);
        if (mode == LL_GATHER_FAIL_FAST) { /* fresh inputs for the second round */
            free_all(fs, 2);
            j[0].cleaned = j[1].cleaned = false;
            fs[0] = start(&c, &j[0]);
            fs[1] = start(&c, &j[1]);
        }
    }
    free_all(fs, 3);
    lt_teardown(&c);
}

static void test_gather_empty_and_null(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *g = ll_gather(NULL, 0, LL_GATHER_FAIL_FAST);
    assert_true(ll_future_done(g)); /* at once */
    assert_int_equal(ll_future_code(g), 0);
    ll_future_free(g);

    /* a NULL input is "failed with LL_ENOMEM": fail-fast fails at once and cancels the others */
    job j = {.delay = 5};
    ll_future *fs[2] = {start(&c, &j), NULL};
    g = ll_gather(fs, 2, LL_GATHER_FAIL_FAST);
    assert_int_equal(ll_loop_run_until(c.loop, g), LL_ENOMEM);
    assert_string_equal(ll_future_errmsg(g), "gather: item 1: out of memory");
    assert_int_equal(ll_loop_run_until(c.loop, fs[0]), LL_ECANCELED);
    ll_future_free(g);
    ll_future_free(fs[0]);

    /* collect counts it */
    j.delay = 0.001;
    fs[0] = start(&c, &j);
    g = ll_gather(fs, 2, LL_GATHER_COLLECT);
    assert_int_equal(ll_loop_run_until(c.loop, g), 0);
    assert_int_equal((uintptr_t)ll_future_value(g), 1);
    ll_future_free(g);
    ll_future_free(fs[0]);
    lt_teardown(&c);
}

/* Inputs outlive the gather and the gather outlives the caller's references: nothing leaks. */
static void test_gather_lifetimes(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[2] = {{.delay = 0.01}, {.delay = 0.02}};
    ll_future *fs[2] = {start(&c, &j[0]), start(&c, &j[1])};
    ll_future *g = ll_gather(fs, 2, LL_GATHER_COLLECT);
    ll_future_free(g); /* dropped before anything settled */
    ll_future *g2 = ll_gather(fs, 2, LL_GATHER_FAIL_FAST);
    free_all(fs, 2); /* the inputs are now held only by the gathers */
    assert_int_equal(ll_loop_run_until(c.loop, g2), 0);
    ll_future_free(g2);
    ll_loop_run(c.loop);

    /* settled early (fail-fast), inputs still running and released later */
    ll_future *a = ll_future_new(c.loop), *b = ll_future_new(c.loop);
    ll_future *in[2] = {a, b};
    g = ll_gather(in, 2, LL_GATHER_FAIL_FAST);
    ll_future_fail(a, LL_EIO, "disk on fire");
    assert_int_equal(ll_loop_run_until(c.loop, g), LL_EIO);
    assert_string_equal(ll_future_errmsg(g), "gather: item 0: disk on fire");
    assert_int_equal(ll_future_get_state(b), LL_FUTURE_CANCELLED); /* no hook: cancelled at once */
    ll_future_free(g);
    ll_future_free(a);
    ll_future_free(b);
    lt_teardown(&c);
}

/* ---- wait ---- */

static void test_wait_first_completed(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[3] = {{.delay = 0.5}, {.delay = 0.01}, {.delay = 5}};
    ll_future *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = start(&c, &j[i]);
    ll_future *w = ll_wait(fs, 3, LL_WAIT_FIRST_COMPLETED, -1);
    assert_string_equal(ll_future_label(w), "wait");
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run_until(c.loop, w), 0);
    assert_true(ll_now() - t0 < 0.4);
    assert_int_equal((uintptr_t)ll_future_value(w), 1);
    assert_false(ll_future_done(fs[0]));
    assert_true(ll_future_done(fs[1]));
    assert_false(ll_future_done(fs[2])); /* never cancelled by wait */
    ll_future_free(w);
    ll_future_cancel(fs[0]);
    ll_future_cancel(fs[2]);
    ll_loop_run(c.loop);
    free_all(fs, 3);
    lt_teardown(&c);
}

static void test_wait_first_failed_and_all(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[3] = {{.delay = 0.001, .value = 1}, {.delay = 0.02, .code = LL_EPIPE}, {.delay = 5}};
    ll_future *fs[3];
    for (int i = 0; i < 3; i++) fs[i] = start(&c, &j[i]);
    ll_future *w = ll_wait(fs, 3, LL_WAIT_FIRST_FAILED, 10);
    assert_int_equal(ll_loop_run_until(c.loop, w), 0); /* a failed input does not fail wait */
    assert_int_equal((uintptr_t)ll_future_value(w), 2);
    assert_int_equal(ll_future_code(fs[1]), LL_EPIPE);
    assert_false(ll_future_done(fs[2]));
    ll_future_free(w);

    /* without a failure, FIRST_FAILED is ALL_COMPLETED */
    job k[2] = {{.delay = 0.001}, {.delay = 0.01}};
    ll_future *ks[2] = {start(&c, &k[0]), start(&c, &k[1])};
    w = ll_wait(ks, 2, LL_WAIT_FIRST_FAILED, -1);
    assert_int_equal(ll_loop_run_until(c.loop, w), 0);
    assert_int_equal((uintptr_t)ll_future_value(w), 2);
    ll_future_free(w);

    ll_future *later = ll_loop_call_later(c.loop, 0.01, cancel_cb, fs[2]);
    w = ll_wait(fs, 3, LL_WAIT_ALL_COMPLETED, -1);
    assert_int_equal(ll_loop_run_until(c.loop, w), 0);
    assert_int_equal((uintptr_t)ll_future_value(w), 3);
    ll_future_free(w);
    ll_future_free(later);
    free_all(fs, 3);
    free_all(ks, 2);
    lt_teardown(&c);
}

static void test_wait_timeout(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *fs[2] = {ll_future_new(c.loop), ll_future_new(c.loop)};
    ll_time t0 = ll_now();
    ll_future *w = ll_wait(fs, 2, LL_WAIT_ALL_COMPLETED, 0.05);
    ll_future_resolve(fs[1], NULL, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, w), 0);
    double took = ll_now() - t0;
    assert_true(took >= 0.049 && took < 1.0); /* tolerance: a loaded 2-core machine */
    assert_int_equal((uintptr_t)ll_future_value(w), 1);
    assert_false(ll_future_done(fs[0])); /* not cancelled */
    ll_future_free(w);

    /* cancelling a wait cancels only the wait */
    w = ll_wait(fs, 2, LL_WAIT_ALL_COMPLETED, 10);
    assert_int_equal(ll_future_cancel(w), 0);
    assert_int_equal(ll_future_get_state(w), LL_FUTURE_CANCELLED);
    assert_false(ll_future_done(fs[0]));
    ll_future_free(w);
    ll_future_resolve(fs[0], NULL, NULL);
    ll_loop_run(c.loop);
    free_all(fs, 2);
    lt_teardown(&c);
}

/* ---- as_completed ---- */

typedef struct {
    ll_future **fs;
    size_t n;
    int order[8];
    int count;
    int rcs[8];
    int end_rc;
    double deadline;
} iter_obs;

static int iterate(void *arg) {
    iter_obs *o = arg;
    ll_scope s;
    ll_scope_enter(&s, o->deadline > 0 ? ll_deadline_in(o->deadline) : LL_NEVER);
    ll_as_completed *it = ll_as_completed_new(o->fs, o->n);
    if (!it) return LL_ENOMEM;
    ll_future *done;
    int rc;
    while ((rc = ll_as_completed_next(it, &done)) == 0) {
        for (size_t i = 0; i < o->n; i++)
            if (o->fs[i] == done) o->order[o->count] = (int)i;
        o->rcs[o->count++] = ll_future_code(done);
    }
    o->end_rc = rc;
    ll_as_completed_free(it);
    ll_scope_exit(&s);
    return 0;
}

static void test_as_completed_order(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[4] = {{.delay = 0.06}, {.delay = 0.001}, {.delay = 0.03, .code = LL_EIO},
                {.delay = 0.015}};
    ll_future *fs[4];
    for (int i = 0; i < 4; i++) fs[i] = start(&c, &j[i]);
    iter_obs o = {.fs = fs, .n = 4};
    assert_int_equal(lt_run_task(c.loop, iterate, &o), 0);
    assert_int_equal(o.count, 4);
    assert_int_equal(o.end_rc, LL_EOF);
    int expect[4] = {1, 3, 2, 0};
    for (int i = 0; i < 4; i++) assert_int_equal(o.order[i], expect[i]);
    assert_int_equal(o.rcs[2], LL_EIO);
    free_all(fs, 4);
    lt_teardown(&c);
}

static void test_as_completed_deadline(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[2] = {{.delay = 0.001}, {.delay = 5}};
    ll_future *fs[2] = {start(&c, &j[0]), start(&c, &j[1])};
    iter_obs o = {.fs = fs, .n = 2, .deadline = 0.03};
    assert_int_equal(lt_run_task(c.loop, iterate, &o), 0);
    assert_int_equal(o.count, 1);
    assert_int_equal(o.order[0], 0);
    assert_int_equal(o.end_rc, LL_ETIMEDOUT);
    assert_false(ll_future_done(fs[1])); /* the iterator never cancels its inputs */
    ll_future_cancel(fs[1]);
    ll_loop_run(c.loop);
    free_all(fs, 2);
    lt_teardown(&c);
}

/* ---- wait_for ---- */

static void test_wait_for_completes_first(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j = {.delay = 0.005, .value = 99};
    ll_future *f = start(&c, &j);
    ll_future *w = ll_wait_for(f, 2.0);
    assert_int_equal(ll_loop_run_until(c.loop, w), 0);
    assert_int_equal((uintptr_t)ll_future_value(w), 99); /* borrowed from f */
    ll_future_free(f); /* w keeps the value alive */
    assert_int_equal((uintptr_t)ll_future_value(w), 99);
    ll_future_free(w);
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.handles, 0); /* its timer is gone */

    /* a failure passes through unchanged */
    j = (job){.delay = 0.001, .code = LL_ECONNRESET};
    f = start(&c, &j);
    w = ll_wait_for(f, 2.0);
    assert_int_equal(ll_loop_run_until(c.loop, w), LL_ECONNRESET);
    assert_string_equal(ll_future_errmsg(w), "job failed after 1 ms");
    ll_future_free(w);
    ll_future_free(f);
    lt_teardown(&c);
}

static void test_wait_for_times_out(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j = {.delay = 5, .cleanup = 0.02};
    ll_future *f = start(&c, &j);
    ll_future *w = ll_wait_for(f, 0.02);
    settle_obs obs = {&f, 1, 0};
    ll_future_add_done(w, count_done, &obs);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run_until(c.loop, w), LL_ETIMEDOUT);
    double took = ll_now() - t0;
    assert_true(took >= 0.039 && took < 2.0); /* timeout + the input's cleanup */
    assert_non_null(strstr(ll_future_errmsg(w), "timed out after 0.02 s"));
    assert_true(j.cleaned); /* the input had stopped before the result settled */
    ll_loop_run(c.loop);
    assert_int_equal(obs.done_when_settled, 1);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_CANCELLED);
    ll_future_free(w);
    ll_future_free(f);

    /* the input finishes despite the cancel: its own outcome wins, as with ll_await */
    j = (job){.delay = 5, .ignore_cancel = true, .value = 5};
    f = start(&c, &j);
    w = ll_wait_for(f, 0.01);
    assert_int_equal(ll_loop_run_until(c.loop, w), 0);
    assert_int_equal((uintptr_t)ll_future_value(w), 5);
    ll_future_free(w);
    ll_future_free(f);

    /* cancelling the result cancels the input: cancelled, not timed out */
    ll_future *p = ll_future_new(c.loop);
    w = ll_wait_for(p, 10);
    ll_future_cancel(w);
    assert_int_equal(ll_loop_run_until(c.loop, w), LL_ECANCELED);
    assert_int_equal(ll_future_get_state(p), LL_FUTURE_CANCELLED);
    ll_future_free(w);
    ll_future_free(p);
    lt_teardown(&c);
}

/* ---- shield ---- */

typedef struct {
    ll_future *inner;
    int rc;
} shield_obs;

static int await_shielded(void *arg) {
    shield_obs *o = arg;
    ll_future *s = ll_shield(o->inner);
    o->rc = ll_await(s);
    ll_future_free(s);
    return o->rc;
}

static void test_shield(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    /* mirrors the input */
    ll_future *in = ll_future_new(c.loop);
    ll_future *s = ll_shield(in);
    ll_future_resolve(in, (void *)(uintptr_t)4, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, s), 0);
    assert_int_equal((uintptr_t)ll_future_value(s), 4);
    ll_future_free(s);
    ll_future_free(in);

    /* a task awaiting a shielded job is cancelled: the job carries on and completes */
    job j = {.delay = 0.03, .value = 6};
    shield_obs o = {.inner = start(&c, &j)};
    ll_spawn_opts so = {.loop = c.loop};
    ll_future *t = ll_spawn_ex(await_shielded, &o, &so);
    ll_future *later = ll_loop_call_later(c.loop, 0.005, cancel_cb, t);
    assert_int_equal(ll_loop_run_until(c.loop, t), LL_ECANCELED);
    assert_int_equal(o.rc, LL_ECANCELED);
    assert_false(ll_future_done(o.inner));
    assert_int_equal(ll_loop_run_until(c.loop, o.inner), 0);
    assert_int_equal(j.sleep_rc, 0); /* never interrupted */
    assert_int_equal((uintptr_t)ll_future_value(o.inner), 6);
    ll_future_free(later);
    ll_future_free(t);
    ll_future_free(o.inner);
    lt_teardown(&c);
}

/* ---- task groups ---- */

typedef struct {
    job jobs[4];
    int njobs;
    int wait_rc;
    char errmsg[128];
    int spawn_after_rc;
    bool all_stopped; /* every child had finished when wait returned */
    double deadline;
    double child_deadline_left;
} group_obs;

static int deadline_probe(void *arg) {
    group_obs *o = arg;
    o->child_deadline_left = ll_task_deadline() - ll_now();
    return ll_sleep(5);
}

static int group_parent(void *arg) {
    group_obs *o = arg;
    ll_scope s;
    ll_scope_enter(&s, o->deadline > 0 ? ll_deadline_in(o->deadline) : LL_NEVER);
    ll_taskgroup *g = ll_taskgroup_new();
    if (!g) return LL_ENOMEM;
    char name[32];
    for (int i = 0; i < o->njobs; i++) {
        snprintf(name, sizeof name, "child-%d", i);
        ll_taskgroup_spawn(g, job_fn, &o->jobs[i], name);
    }
    if (o->deadline > 0) ll_taskgroup_spawn(g, deadline_probe, o, "probe");
    o->wait_rc = ll_taskgroup_wait(g);
    o->all_stopped = true;
    for (int i = 0; i < o->njobs; i++)
        if (o->jobs[i].sleep_rc != 0 && !o->jobs[i].cleaned) o->all_stopped = false;
    snprintf(o->errmsg, sizeof o->errmsg, "%s", ll_taskgroup_errmsg(g));
    o->spawn_after_rc = ll_taskgroup_spawn(g, job_fn, &o->jobs[0], "late");
    ll_taskgroup_free(g);
    ll_scope_exit(&s);
    return o->wait_rc;
}

static void test_taskgroup_success(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    group_obs o = {.njobs = 3, .jobs = {{.delay = 0.01}, {.delay = 0.001}, {.delay = 0.02}}};
    assert_int_equal(lt_run_task(c.loop, group_parent, &o), 0);
    assert_int_equal(o.wait_rc, 0);
    assert_string_equal(o.errmsg, "");
    assert_int_equal(o.spawn_after_rc, LL_ESTATE); /* finished waiting */
    for (int i = 0; i < 3; i++) assert_int_equal(o.jobs[i].sleep_rc, 0);
    lt_teardown(&c);
}

static void test_taskgroup_child_fails(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    group_obs o = {.njobs = 4,
                   .jobs = {{.delay = 5, .cleanup = 0.01},
                            {.delay = 0.01, .code = LL_EPROTO},
                            {.delay = 5},
                            {.delay = 0.001}}};
    ll_time t0 = ll_now();
    assert_int_equal(lt_run_task(c.loop, group_parent, &o), LL_EPROTO);
    assert_true(ll_now() - t0 < 2.0);
    assert_int_equal(o.wait_rc, LL_EPROTO);
    assert_non_null(strstr(o.errmsg, "'child-1': job failed after 10 ms"));
    /* siblings still running were cancelled and had stopped when wait returned */
    assert_int_equal(o.jobs[0].sleep_rc, LL_ECANCELED);
    assert_int_equal(o.jobs[2].sleep_rc, LL_ECANCELED);
    assert_int_equal(o.jobs[3].sleep_rc, 0);
    assert_true(o.all_stopped);
    assert_true(o.jobs[0].cleaned);
    assert_int_equal(o.spawn_after_rc, LL_ESTATE);
    lt_teardown(&c);
}

static void test_taskgroup_parent_cancelled(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    group_obs o = {.njobs = 3,
                   .jobs = {{.delay = 5, .cleanup = 0.03},
                            {.delay = 5, .cleanup = 0.001},
                            {.delay = 5}}};
    ll_spawn_opts so = {.loop = c.loop, .name = "parent"};
    ll_future *p = ll_spawn_ex(group_parent, &o, &so);
    ll_future *later = ll_loop_call_later(c.loop, 0.01, cancel_cb, p);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run_until(c.loop, p), LL_ECANCELED);
    double took = ll_now() - t0;
    assert_true(took >= 0.039 && took < 2.0); /* waited for the 30 ms cleanup */
    assert_int_equal(o.wait_rc, LL_ECANCELED);
    assert_true(o.all_stopped); /* children cancelled AND awaited */
    for (int i = 0; i < 3; i++) assert_int_equal(o.jobs[i].sleep_rc, LL_ECANCELED);
    assert_string_equal(o.errmsg, ""); /* cancelled children are not failures */
    assert_int_equal(o.spawn_after_rc, LL_ESTATE);
    ll_future_free(later);
    ll_future_free(p);
    lt_teardown(&c);
}

static void test_taskgroup_deadline(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    group_obs o = {.njobs = 1, .jobs = {{.delay = 5, .cleanup = 0.005}}, .deadline = 0.05};
    ll_time t0 = ll_now();
    int rc = lt_run_task(c.loop, group_parent, &o);
    double took = ll_now() - t0;
    assert_int_equal(rc, LL_ETIMEDOUT);
    assert_int_equal(o.wait_rc, LL_ETIMEDOUT);
    assert_true(took >= 0.049 && took < 2.0);
    /* the child inherited the parent's deadline */
    assert_true(o.child_deadline_left > 0.0 && o.child_deadline_left <= 0.05);
    assert_true(o.all_stopped);
    lt_teardown(&c);
}

static void test_taskgroup_free_cancels(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    job j[2] = {{.delay = 5}, {.delay = 5, .cleanup = 0.001}};
    ll_taskgroup *g = ll_taskgroup_new();
    assert_non_null(g);
    /* from outside any task */
    assert_int_equal(ll_taskgroup_spawn(g, job_fn, &j[0], NULL), 0);
    assert_int_equal(ll_taskgroup_spawn(g, job_fn, &j[1], "second"), 0);
    ll_future *tick = ll_sleep_future(c.loop, 0.005); /* let them start */
    assert_int_equal(ll_loop_run_until(c.loop, tick), 0);
    ll_future_free(tick);
    ll_taskgroup_free(g);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < 2.0);
    assert_int_equal(j[0].sleep_rc, LL_ECANCELED);
    assert_true(j[1].cleaned);
    lt_teardown(&c);
}

typedef struct {
    ll_taskgroup *g;
    job jobs[2];
    int wait_rc;
} freed_obs;

static int freed_waiter(void *arg) {
    freed_obs *o = arg;
    ll_taskgroup_spawn(o->g, job_fn, &o->jobs[0], "a");
    ll_taskgroup_spawn(o->g, job_fn, &o->jobs[1], "b");
    o->wait_rc = ll_taskgroup_wait(o->g); /* the group is gone when this returns LL_ECLOSED */
    return 0;
}

static void free_group(void *arg) {
    ll_taskgroup_free(arg);
}

static void test_taskgroup_freed_while_waited(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    freed_obs o = {.g = ll_taskgroup_new(), .jobs = {{.delay = 5}, {.delay = 5, .cleanup = 0.001}}};
    ll_future *later = ll_loop_call_later(c.loop, 0.01, free_group, o.g);
    ll_time t0 = ll_now();
    assert_int_equal(lt_run_task(c.loop, freed_waiter, &o), 0);
    assert_int_equal(o.wait_rc, LL_ECLOSED);
    assert_int_equal(ll_loop_run(c.loop), 0); /* the cancelled children finish on their own */
    assert_true(ll_now() - t0 < 2.0);
    assert_int_equal(o.jobs[0].sleep_rc, LL_ECANCELED);
    assert_true(o.jobs[1].cleaned);
    ll_future_free(later);
    lt_teardown(&c);
}

static int fail_at_once(void *arg) {
    return ll_task_fail((int)(intptr_t)arg, "failed at once");
}

static int two_failures(void *arg) {
    char *errmsg = arg;
    ll_taskgroup *g = ll_taskgroup_new();
    /* both fail in the same loop step, before the first failure can cancel the second */
    ll_taskgroup_spawn(g, fail_at_once, (void *)(intptr_t)LL_EPIPE, "first");
    ll_taskgroup_spawn(g, fail_at_once, (void *)(intptr_t)LL_EIO, "second");
    int rc = ll_taskgroup_wait(g);
    snprintf(errmsg, 128, "%s", ll_taskgroup_errmsg(g));
    ll_taskgroup_free(g);
    return rc;
}

/* Only the first failure is the group's; in debug mode the other is reported, not lost. */
static void test_taskgroup_second_failure(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_loop_set_debug(c.loop, true, 0);
    lt_warnings w;
    lt_collect_warnings(c.loop, &w);
    char errmsg[128] = "";
    assert_int_equal(lt_run_task(c.loop, two_failures, errmsg), LL_EPIPE);
    assert_non_null(strstr(errmsg, "'first': failed at once"));
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.text, "'second' also failed (EIO: failed at once)"));
    lt_teardown(&c);
}

/* ---- out of memory ---- */

/* Fail every allocation from the n-th on, for increasing n, until the call succeeds: each failure
 * must return NULL (or a failed future) and leak nothing. */
static void test_out_of_memory(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    for (int which = 0; which < 5; which++) {
        bool ok = false;
        for (long n = 0; !ok && n < 64; n++) {
            ll_future *in[2] = {ll_future_new(c.loop), ll_future_new(c.loop)};
            /* a second callback on in[0] makes add_done allocate */
            ll_future *pre = ll_shield(in[0]);
            assert_non_null(in[0]);
            assert_non_null(pre);
            lt_fail_after(n);
            ll_future *out = NULL;
            ll_as_completed *it = NULL;
            switch (which) {
            case 0: out = ll_gather(in, 2, LL_GATHER_FAIL_FAST); break;
            case 1: out = ll_wait(in, 2, LL_WAIT_ALL_COMPLETED, 1); break;
            case 2: out = ll_wait_for(in[0], 1); break;
            case 3: out = ll_shield(in[0]); break;
            case 4: it = ll_as_completed_new(in, 2); break;
            }
            lt_fail_reset();
            ok = out != NULL || it != NULL;
            ll_future_resolve(in[0], NULL, NULL);
            ll_future_resolve(in[1], NULL, NULL);
            if (out) assert_int_equal(ll_loop_run_until(c.loop, out), 0);
            ll_loop_run(c.loop);
            ll_as_completed_free(it);
            ll_future_free(out);
            ll_future_free(pre);
            free_all(in, 2);
            ll_loop_stats st;
            ll_loop_get_stats(c.loop, &st);
            assert_int_equal(st.futures, 0);
            assert_int_equal(st.handles, 0);
        }
        assert_true(ok);
    }
    lt_teardown(&c);
}

/* ---- misuse ---- */

static void test_misuse(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    /* misuse is reported in the future (NULL means out of memory) */
    ll_future *g = ll_gather(NULL, 2, LL_GATHER_FAIL_FAST);
    assert_int_equal(ll_future_code(g), LL_EINVAL);
    ll_future_free(g);
    ll_future *p = ll_future_new(c.loop);
    g = ll_gather(&p, 1, 7);
    assert_int_equal(ll_future_code(g), LL_EINVAL);
    assert_string_equal(ll_future_errmsg(g), "ll_gather: unknown mode 7");
    ll_future_free(g);
    ll_future *w = ll_wait(&p, 1, 0, -1);
    assert_int_equal(ll_future_code(w), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(w), "unknown condition"));
    ll_future_free(w);
    ll_future_free(p);
    /* a NULL input mirrors "out of memory" */
    assert_null(ll_wait_for(NULL, 1));
    assert_null(ll_shield(NULL));
    /* as_completed outside a task / NULL */
    ll_future *done = (ll_future *)&c;
    assert_int_equal(ll_as_completed_next(NULL, &done), LL_EINVAL);
    assert_null(done);
    ll_as_completed *it = ll_as_completed_new(NULL, 0);
    assert_non_null(it);
    assert_int_equal(ll_as_completed_next(it, &done), LL_ENOTASK);
    ll_as_completed_free(it);
    ll_as_completed_free(NULL);
    /* task groups */
    assert_int_equal(ll_taskgroup_spawn(NULL, job_fn, NULL, NULL), LL_EINVAL);
    assert_int_equal(ll_taskgroup_wait(NULL), LL_EINVAL);
    assert_string_equal(ll_taskgroup_errmsg(NULL), "");
    ll_taskgroup *tg = ll_taskgroup_new();
    assert_int_equal(ll_taskgroup_spawn(tg, NULL, NULL, NULL), LL_EINVAL);
    assert_int_equal(ll_taskgroup_wait(tg), LL_ENOTASK);
    ll_taskgroup_free(tg);
    ll_taskgroup_free(NULL);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_all_succeed),
        cmocka_unit_test(test_gather_fail_fast),
        cmocka_unit_test(test_gather_collect),
        cmocka_unit_test(test_gather_cancelled),
        cmocka_unit_test(test_gather_empty_and_null),
        cmocka_unit_test(test_gather_lifetimes),
        cmocka_unit_test(test_wait_first_completed),
        cmocka_unit_test(test_wait_first_failed_and_all),
        cmocka_unit_test(test_wait_timeout),
        cmocka_unit_test(test_as_completed_order),
        cmocka_unit_test(test_as_completed_deadline),
        cmocka_unit_test(test_wait_for_completes_first),
        cmocka_unit_test(test_wait_for_times_out),
        cmocka_unit_test(test_shield),
        cmocka_unit_test(test_taskgroup_success),
        cmocka_unit_test(test_taskgroup_child_fails),
        cmocka_unit_test(test_taskgroup_parent_cancelled),
        cmocka_unit_test(test_taskgroup_deadline),
        cmocka_unit_test(test_taskgroup_free_cancels),
        cmocka_unit_test(test_taskgroup_freed_while_waited),
        cmocka_unit_test(test_taskgroup_second_failure),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests_name("combinators", tests, NULL, NULL);
}
