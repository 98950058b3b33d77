/*
 * test_task.c — tasks and ll_await: results, nesting, cancellation, deadlines, context values,
 * many tasks, misuse.
 */
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"

static int return_42(void *arg) {
    (void)arg;
    ll_task_return((void *)(uintptr_t)42, NULL);
    return 0;
}

static void test_spawn_and_result(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_spawn_opts o = {.loop = c.loop, .name = "answer"};
    ll_future *f = ll_spawn_ex(return_42, NULL, &o);
    assert_non_null(f);
    assert_false(ll_future_done(f)); /* tasks first run from the loop */
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal((uintptr_t)ll_future_value(f), 42);
    ll_future_free(f);
    lt_teardown(&c);
}

/* three levels deep: each awaits its child and adds one */
static int depth(void *arg) {
    intptr_t level = (intptr_t)arg;
    if (level == 3) {
        ll_task_return((void *)(intptr_t)100, NULL);
        return 0;
    }
    ll_future *child = ll_spawn(depth, (void *)(level + 1));
    int rc = ll_await(child);
    if (rc) {
        rc = ll_task_fail_from(child);
        ll_future_free(child);
        return rc;
    }
    intptr_t v = (intptr_t)ll_future_value(child);
    ll_future_free(child);
    ll_task_return((void *)(v + 1), NULL);
    return 0;
}

static void test_nested_three_deep(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *f = ll_spawn_ex(depth, (void *)0, &o);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal((intptr_t)ll_future_value(f), 103);
    ll_future_free(f);
    lt_teardown(&c);
}

static int fails(void *arg) {
    (void)arg;
    return ll_task_fail(LL_EPROTO, "bad reply from %s", "127.0.0.1:6380");
}

static void test_failure_message(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *f = ll_spawn_ex(fails, NULL, &o);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_EPROTO);
    assert_string_equal(ll_future_errmsg(f), "bad reply from 127.0.0.1:6380");
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_FAILED);
    ll_future_free(f);
    lt_teardown(&c);
}

static void test_await_outside_task(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *f = ll_future_new(c.loop);
    assert_int_equal(ll_await(f), LL_ENOTASK);
    assert_int_equal(ll_sleep(0.01), LL_ENOTASK);
    assert_int_equal(ll_yield(), LL_ENOTASK);
    assert_false(ll_future_done(f));
    ll_future_free(f);
    lt_teardown(&c);
}

typedef struct {
    int await_rc;
    int cleanup_rc;
    int later_rc;
} cancel_obs;

static int cancellable(void *arg) {
    cancel_obs *o = arg;
    o->await_rc = ll_sleep(10);
    /* sticky: a second await is cancelled too */
    o->later_rc = ll_sleep(10);
    /* cleanup may await inside a shielded scope */
    ll_scope s;
    ll_scope_enter_shielded(&s, ll_deadline_in(1));
    o->cleanup_rc = ll_sleep(0.001);
    ll_scope_exit(&s);
    return o->await_rc;
}

static void cancel_it(void *arg) {
    ll_future_cancel(arg);
}

static void test_cancel_while_awaiting(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    cancel_obs obs = {1, 1, 1};
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *f = ll_spawn_ex(cancellable, &obs, &o);
    ll_future *later = ll_loop_call_later(c.loop, 0.01, cancel_it, f);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_ECANCELED);
    assert_true(ll_now() - t0 < 2.0);
    assert_int_equal(obs.await_rc, LL_ECANCELED);
    assert_int_equal(obs.later_rc, LL_ECANCELED);
    assert_int_equal(obs.cleanup_rc, 0);
    assert_int_equal(ll_future_get_state(f), LL_FUTURE_CANCELLED);
    ll_future_free(later);
    ll_future_free(f);
    lt_teardown(&c);
}

static int finishes_anyway(void *arg) {
    (void)arg;
    ll_sleep(10);
    return 0; /* really finished: not cancelled */
}

static void test_cancel_then_finish(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *f = ll_spawn_ex(finishes_anyway, NULL, &o);
    ll_future *later = ll_loop_call_later(c.loop, 0.005, cancel_it, f);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    assert_int_equal(ll_future_cancel(f), LL_EALREADY); /* cancelling a finished future */
    ll_future_free(later);
    ll_future_free(f);
    lt_teardown(&c);
}

static int never_runs(void *arg) {
    *(int *)arg = 1;
    return 0;
}

static void test_cancel_before_start(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int ran = 0;
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *f = ll_spawn_ex(never_runs, &ran, &o);
    assert_int_equal(ll_future_cancel(f), 0);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_ECANCELED);
    assert_int_equal(ran, 0);
    ll_future_free(f);
    lt_teardown(&c);
}

/* A deadline set by the parent cuts an await three calls deep inside a child task. */
static int level3(void) { return ll_sleep(5); }
static int level2(void) { return level3(); }
static int level1(void) { return level2(); }
static int deep_child(void *arg) {
    (void)arg;
    return level1();
}

static int deadline_parent(void *arg) {
    int *scope_rc = arg;
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.05));
    ll_future *child = ll_spawn(deep_child, NULL);
    int rc = ll_await(child);
    int child_rc = ll_future_code(child);
    ll_future_free(child);
    *scope_rc = ll_scope_exit(&s);
    assert_int_equal(child_rc, LL_ETIMEDOUT);
    return rc;
}

static void test_deadline_three_deep(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int scope_rc = 0;
    ll_time t0 = ll_now();
    int rc = lt_run_task(c.loop, deadline_parent, &scope_rc);
    double took = ll_now() - t0;
    assert_true(rc == LL_ETIMEDOUT || rc == LL_ECANCELED);
    assert_int_equal(scope_rc, LL_ETIMEDOUT);
    assert_true(took >= 0.049 && took < 1.0); /* tolerance: a loaded 2-core machine */
    lt_teardown(&c);
}

static int timeout_race(void *arg) {
    int *results = arg;
    /* completes before the timeout */
    ll_future *f1 = ll_sleep_future(NULL, 0.001);
    results[0] = ll_await_timeout(f1, 1.0);
    ll_future_free(f1);
    /* times out first: the inner sleep is cancelled */
    ll_future *f2 = ll_sleep_future(NULL, 5);
    results[1] = ll_await_timeout(f2, 0.01);
    results[2] = ll_future_get_state(f2);
    ll_future_free(f2);
    /* the scope ended: awaiting works again */
    results[3] = ll_sleep(0.001);
    return 0;
}

static void test_timeout_race(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int r[4] = {9, 9, 9, 9};
    assert_int_equal(lt_run_task(c.loop, timeout_race, r), 0);
    assert_int_equal(r[0], 0);
    assert_int_equal(r[1], LL_ETIMEDOUT);
    assert_int_equal(r[2], LL_FUTURE_CANCELLED);
    assert_int_equal(r[3], 0);
    lt_teardown(&c);
}

static const ll_ctxvar request_id = {"request_id", free};

static int ctx_child(void *arg) {
    const char *seen = ll_ctxvar_get(&request_id);
    strcpy(arg, seen ? seen : "(none)");
    ll_ctxvar_set(&request_id, strdup("child-value"));
    return 0;
}

static int ctx_parent(void *arg) {
    char *out = arg;
    ll_ctxvar_set(&request_id, strdup("req-7"));
    ll_future *f = ll_spawn(ctx_child, out);
    ll_await(f);
    ll_future_free(f);
    /* the child's set did not leak into the parent */
    assert_string_equal(ll_ctxvar_get(&request_id), "req-7");
    return 0;
}

static void test_context_values(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    char seen[64] = "";
    assert_int_equal(lt_run_task(c.loop, ctx_parent, seen), 0);
    assert_string_equal(seen, "req-7");
    lt_teardown(&c);
}

static int sleeper(void *arg) {
    (void)arg;
    return ll_sleep(0.01);
}

static void test_100k_tasks(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    /* valgrind runs ~50x slower: 10,000 tasks prove the same there */
    const int N = lt_under_valgrind() ? 10000 : 100000;
    ll_future **fs = calloc((size_t)N, sizeof *fs);
    ll_spawn_opts o = {.loop = c.loop, .stack_size = 32 * 1024};
    for (int i = 0; i < N; i++) {
        fs[i] = ll_spawn_ex(sleeper, NULL, &o);
        assert_non_null(fs[i]);
    }
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.tasks, N);
    assert_int_equal(ll_loop_run(c.loop), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ll_future_code(fs[i]), 0);
        ll_future_free(fs[i]);
    }
    free(fs);
    lt_teardown(&c);
}

static void test_misuse(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *f = ll_future_new(c.loop);
    assert_int_equal(ll_future_resolve(f, NULL, NULL), 0);
    assert_int_equal(ll_future_resolve(f, NULL, NULL), LL_ESTATE); /* resolving twice */
    assert_int_equal(ll_future_fail(f, LL_EIO, "x"), LL_ESTATE);
    assert_int_equal(ll_future_cancel(f), LL_EALREADY);
    ll_future_free(f);
    /* NULL handles */
    assert_int_equal(ll_future_resolve(NULL, NULL, NULL), LL_EINVAL);
    assert_int_equal(ll_future_cancel(NULL), LL_EINVAL);
    assert_int_equal(ll_future_code(NULL), LL_ENOMEM);
    assert_true(ll_future_done(NULL));
    assert_null(ll_future_value(NULL));
    ll_future *nf = ll_spawn_ex(NULL, NULL, NULL); /* a bad argument: a failed future, not NULL */
    assert_int_equal(ll_future_code(nf), LL_EINVAL);
    ll_future_free(nf);
    ll_future_free(NULL);
    assert_int_equal(ll_loop_free(NULL), 0);
    assert_int_equal(ll_loop_run(NULL), LL_EINVAL);
    assert_string_equal(ll_strerror(LL_ECONNREFUSED), "connection refused");
    assert_string_equal(ll_err_name(LL_ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(ll_strerror(-999999), "unknown error");
    lt_teardown(&c);
}

/* ---- ll_yield honours the deadline ---- */

typedef struct yielder {
    int rc;           /* what ll_yield returned when the child stopped */
    int yields;
} yielder;

/* Busy but polite: yields between slices of work, and stops when ll_yield says so. */
static int busy_child(void *arg) {
    yielder *y = arg;
    ll_time give_up = ll_now() + 2.0;
    while (ll_now() < give_up) {
        y->yields++;
        if ((y->rc = ll_yield()) != 0) return y->rc;
    }
    return 0;
}

static int parent_with_deadline(void *arg) {
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.05));
    ll_time t0 = ll_now();
    ll_future *child = ll_spawn(busy_child, arg);
    int rc = ll_await(child);
    double took = ll_now() - t0;
    ll_future_free(child);
    ll_scope_exit(&s);
    LT_CHECKF(rc == LL_ETIMEDOUT, "rc %d", rc);
    /* the deadline: 50 ms, with 400 ms of tolerance (the child alone would run 2 s) */
    LT_CHECKF(took < 0.45, "took %.3f s", took);
    /* a shielded scope with its own deadline may outlive it, up to its own deadline */
    ll_scope sh;
    ll_scope_enter_shielded(&sh, ll_deadline_in(0.05));
    LT_CHECK(ll_yield() == 0);
    ll_time until = ll_now() + 0.06;
    while (ll_now() < until) {
    }
    LT_CHECK(ll_yield() == LL_ETIMEDOUT);
    LT_CHECK(ll_scope_exit(&sh) == LL_ETIMEDOUT);
    return 0;
}

static void test_yield_honours_deadline(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    yielder y = {0, 0};
    assert_int_equal(lt_run_checked(c.loop, parent_with_deadline, &y), 0);
    assert_int_equal(y.rc, LL_ETIMEDOUT);
    assert_true(y.yields > 0);
    lt_teardown(&c);
}

/* ll_sleep runs a timer of its own in the task record (libloop/task.c): a cancel or a deadline
 * must stop it, or ll_loop_run would wait for it (and it would fire into a released stack). */
static int long_sleep(void *arg) {
    (void)arg;
    return ll_sleep(30);
}

static int shielded_sleep(void *arg) {
    (void)arg;
    ll_scope s;
    ll_scope_enter_shielded(&s, ll_deadline_in(30));
    int rc = ll_sleep(30); /* not cancellable: shutdown destroys the task while it sleeps */
    ll_scope_exit(&s);
    return rc;
}

static int odd_sleeps(void *arg) {
    (void)arg;
    LT_CHECK(ll_sleep(-1) == 0);
    LT_CHECK(ll_sleep(0.0 / 0.0) == 0); /* NaN: at once, like a negative duration */
    LT_CHECK(ll_sleep(0) == 0);
    ll_time t0 = ll_now();
    LT_CHECK(ll_sleep(0.02) == 0);
    LT_CHECK(ll_now() - t0 >= 0.02); /* never early: the deadline is re-checked when it fires */
    return 0;
}

static void test_sleep_timer_stops(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    /* cancelled: ll_loop_run (not run_until) returns as soon as nothing else is alive */
    ll_spawn_opts o = {.loop = c.loop};
    ll_future *f = ll_spawn_ex(long_sleep, NULL, &o);
    ll_future *later = ll_loop_call_later(c.loop, 0.01, cancel_it, f);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < 2.0); /* generous: the machine is loaded; the sleep was 30 s */
    assert_int_equal(ll_future_code(f), LL_ECANCELED);
    ll_future_free(later);
    ll_future_free(f);
    /* cut by the task's deadline */
    ll_spawn_opts d = {.loop = c.loop, .deadline = ll_deadline_in(0.03)};
    f = ll_spawn_ex(long_sleep, NULL, &d);
    t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < 2.0);
    assert_int_equal(ll_future_code(f), LL_ETIMEDOUT);
    ll_future_free(f);
    f = ll_spawn_ex(odd_sleeps, NULL, &o);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f);
    assert_int_equal(lt_failure[0], 0);
    /* 1,000 sleepers that shutdown destroys (shielded: they ignore its cancel): the timers in
     * their records must be stopped before their stacks are released, or the next run would wait
     * 30 s for them and then fire into released memory */
    for (int i = 0; i < 1000; i++) ll_future_free(ll_spawn_ex(shielded_sleep, NULL, &o));
    assert_int_equal(ll_loop_run_until(c.loop, later = ll_sleep_future(c.loop, 0.01)), 0);
    ll_future_free(later);
    assert_int_equal(ll_loop_shutdown(c.loop, ll_deadline_in(0.05)), LL_ETIMEDOUT);
    t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < 2.0);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawn_and_result),
        cmocka_unit_test(test_nested_three_deep),
        cmocka_unit_test(test_failure_message),
        cmocka_unit_test(test_await_outside_task),
        cmocka_unit_test(test_cancel_while_awaiting),
        cmocka_unit_test(test_cancel_then_finish),
        cmocka_unit_test(test_cancel_before_start),
        cmocka_unit_test(test_deadline_three_deep),
        cmocka_unit_test(test_timeout_race),
        cmocka_unit_test(test_context_values),
        cmocka_unit_test(test_100k_tasks),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_yield_honours_deadline),
        cmocka_unit_test(test_sleep_timer_stops),
    };
    return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
