/*
 * test_alloc.c — allocation failures (curl's torture mode): a full cycle of loop creation, spawn,
 * await, gather, executor, timers and context values is run again and again, failing the 0th,
 * 1st, 2nd, ... allocation, until a run needs no refused allocation. Every run must end in an
 * error code or in success: never a crash, a hang (LL_EBUSY from run_until), or a leak (the
 * tracking allocator counts what is left; ASan and valgrind check the rest).
 */
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"

typedef struct cycle {
    int soon_ran;
    int later_ran;
    intptr_t sum;
    bool finished;
} cycle;

static int job(void *arg, void **value) {
    intptr_t *v = malloc(sizeof *v);
    if (!v) return LL_ENOMEM;
    *v = (intptr_t)arg;
    *value = v;
    return 0;
}

static int kid(void *arg) {
    int rc = ll_yield();
    if (rc) return rc;
    ll_future *j = ll_executor_run(job, arg, NULL, free, NULL);
    rc = ll_await(j);
    if (rc) {
        rc = ll_task_fail_from(j);
        ll_future_free(j);
        return rc ? rc : LL_ENOMEM; /* NULL future: LL_ENOMEM */
    }
    intptr_t v = *(intptr_t *)ll_future_value(j);
    ll_future_free(j);
    ll_task_return((void *)(v * 2), NULL);
    return 0;
}

static void on_soon(void *arg) {
    ((cycle *)arg)->soon_ran++;
}

static void on_later(void *arg) {
    ((cycle *)arg)->later_ran++;
}

static const ll_ctxvar request = {"request", NULL};

enum { KIDS = 3 };

/* Cancel and wait for the kids that exist, then drop them. */
static void reap(ll_future **kids) {
    for (int i = 0; i < KIDS; i++)
        if (kids[i]) ll_future_cancel(kids[i]);
    for (int i = 0; i < KIDS; i++) {
        if (!kids[i]) continue;
        ll_scope s; /* even a cancelled task may await: shielded, bounded */
        ll_scope_enter_shielded(&s, ll_deadline_in(5));
        ll_await(kids[i]);
        ll_scope_exit(&s);
        ll_future_free(kids[i]);
    }
}

static int cycle_main(void *arg) {
    cycle *c = arg;
    int rc = ll_ctxvar_set(&request, c);
    if (rc) return rc;
    if ((rc = ll_sleep(0.0005))) return rc;
    ll_future *kids[KIDS] = {0};
    ll_spawn_opts o = {.name = "kid", .stack_size = 32 * 1024};
    for (int i = 0; i < KIDS; i++) {
        kids[i] = ll_spawn_ex(kid, (void *)(intptr_t)(i + 1), &o);
        if (!kids[i]) {
            reap(kids);
            return LL_ENOMEM;
        }
    }
    ll_future *g = ll_gather(kids, KIDS, LL_GATHER_FAIL_FAST);
    rc = ll_await(g);
    if (rc) {
        if (g) rc = ll_task_fail_from(g);
        ll_future_free(g);
        reap(kids);
        return rc;
    }
    ll_future_free(g);
    for (int i = 0; i < KIDS; i++) {
        c->sum += (intptr_t)ll_future_value(kids[i]);
        ll_future_free(kids[i]);
    }
    if ((rc = ll_loop_call_soon(NULL, on_soon, c))) return rc;
    ll_future *later = ll_loop_call_later(NULL, 0.0005, on_later, c);
    rc = ll_await(later);
    ll_future_free(later);
    if (rc) return rc;
    if (ll_ctxvar_get(&request) != c) return LL_EINVAL;
    c->finished = true;
    return 0;
}

typedef struct outcome {
    int rc;
    cycle c;
} outcome;

static outcome run_cycle(bool debug, lt_warnings *w) {
    outcome out = {0};
    ll_loop *loop = ll_loop_new();
    if (!loop) {
        out.rc = LL_ENOMEM;
        return out;
    }
    if (debug) {
        lt_collect_warnings(loop, w);
        ll_loop_set_debug(loop, true, 1e6);
    }
    assert_int_equal(ll_executor_set_threads(loop, 2), 0);
    ll_spawn_opts o = {.loop = loop, .name = "cycle"};
    ll_future *f = ll_spawn_ex(cycle_main, &out.c, &o);
    if (!f) {
        out.rc = LL_ENOMEM;
    } else {
        out.rc = ll_loop_run_until(loop, f);
        ll_future_free(f);
    }
    assert_int_equal(ll_loop_free(loop), 0);
    return out;
}

static void torture(bool debug) {
    int fds = lt_count_fds();
    int failures = 0;
    long i;
    for (i = 0; i < 5000; i++) {
        lt_warnings w;
        lt_track_begin();
        lt_fail_after(i);
        outcome out = run_cycle(debug, &w);
        long used = lt_alloc_count();
        lt_fail_reset();
        long leaked = lt_track_end();
        if (leaked || (out.rc != 0 && out.rc != LL_ENOMEM && out.rc != LL_ESTACK))
            print_message("fail at %ld: rc %s, %ld allocation(s) leaked\n", i,
                          ll_err_name(out.rc), leaked);
        assert_int_equal(leaked, 0);
        assert_int_not_equal(out.rc, LL_EBUSY); /* a lost wake-up: the cycle could never finish */
        assert_true(out.rc == 0 || out.rc == LL_ENOMEM || out.rc == LL_ESTACK);
        if (out.rc == 0) {
            /* success even though an allocation failed is fine (e.g. a message), but then the
             * work must really have been done */
            assert_true(out.c.finished);
            assert_int_equal(out.c.sum, 2 + 4 + 6);
            assert_int_equal(out.c.soon_ran, 1);
            assert_int_equal(out.c.later_ran, 1);
        } else {
            failures++;
            assert_false(out.c.finished);
        }
        if (out.rc == 0 && used <= i) break; /* no allocation was refused: done */
    }
    print_message("%s: %ld runs, %d ended in an error\n", debug ? "debug" : "plain", i + 1,
                  failures);
    assert_true(i < 5000);
    assert_true(failures > 10); /* the cycle really allocates */
    assert_int_equal(lt_count_fds(), fds);
}

static void test_fail_each_allocation(void **state) {
    (void)state;
    torture(false);
}

/* Debug mode allocates more (creator names, messages) and warns: the same must hold. */
static void test_fail_each_allocation_debug(void **state) {
    (void)state;
    torture(true);
}

/* Futures and call_soon records are recycled per loop: a freed one is handed out again without an
 * allocation, at most a bounded number are kept, and ll_loop_free releases them all. */
static void count_soon(void *arg) {
    ++*(int *)arg;
}

static void test_recycled_records(void **state) {
    (void)state;
    enum { N = 5000 }; /* more than the loop keeps */
    lt_track_begin();
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    static ll_future *fs[N];
    for (int i = 0; i < N; i++) assert_non_null(fs[i] = ll_future_new(loop));
    int ran = 0;
    for (int i = 0; i < N; i++) assert_int_equal(ll_loop_call_soon(loop, count_soon, &ran), 0);
    assert_int_equal(ll_loop_run(loop), 0);
    assert_int_equal(ran, N);
    long live_all = lt_track_live();
    for (int i = 0; i < N; i++) ll_future_free(fs[i]);
    long kept = lt_track_live();
    assert_true(kept < live_all - N / 2); /* most went back to the allocator: the lists are bounded */
    assert_true(kept > 0);                /* some are kept for reuse */
    /* reuse: no allocation, and a recycled future is as good as new */
    lt_fail_after(0); /* every allocation from now on fails */
    for (int i = 0; i < 100; i++) {
        ll_future *f = ll_future_new(loop);
        assert_non_null(f);
        assert_int_equal(ll_future_get_state(f), LL_FUTURE_PENDING);
        assert_null(ll_future_value(f));
        assert_string_equal(ll_future_label(f), "future");
        assert_int_equal(ll_loop_call_soon(loop, count_soon, &ran), 0);
        assert_int_equal(ll_future_resolve(f, NULL, NULL), 0);
        assert_int_equal(ll_loop_run(loop), 0);
        ll_future_free(f);
    }
    assert_int_equal(ran, N + 100);
    lt_fail_reset();
    assert_int_equal(ll_loop_free(loop), 0);
    assert_int_equal(lt_track_end(), 0); /* the loop released what it kept */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_each_allocation),
        cmocka_unit_test(test_fail_each_allocation_debug),
        cmocka_unit_test(test_recycled_records),
    };
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
