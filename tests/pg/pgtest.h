/*
 * pgtest.h — what the PostgreSQL test programs share (header-only, static): the server started
 * once per program by the group setup, and small helpers used inside tasks.
 */
#ifndef LL_TEST_PGTEST_H
#define LL_TEST_PGTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "harness/pgserver.h"
#include "libloop/pg.h"

static lt_pg pgt_server;
static bool pgt_up;

static inline int pgt_group_setup(void **state) {
    (void)state;
    pgt_up = lt_pg_start(&pgt_server);
    return pgt_up ? 0 : -1;
}

static inline int pgt_group_teardown(void **state) {
    (void)state;
    lt_pg_stop(&pgt_server);
    return 0;
}

/* Inside a task: connect to conninfo or fail the test with the error. */
static inline ll_pg_conn *pgt_connect_to(const char *conninfo) {
    ll_future *f = ll_pg_connect(conninfo, NULL);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "connect: %s\n", ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    ll_pg_conn *c = ll_future_take(f);
    ll_future_free(f);
    assert_non_null(c);
    return c;
}

static inline ll_pg_conn *pgt_connect(void) {
    return pgt_connect_to(pgt_server.conninfo);
}

/* Inside a task: run sql and return its result (the test fails on error). Free with
 * ll_pg_result_free. */
static inline ll_pg_result *pgt_q(ll_pg_conn *c, const char *sql) {
    ll_future *f = ll_pg_query(c, sql, 0);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "%s: %s\n", sql, ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    ll_pg_result *r = ll_future_take(f);
    ll_future_free(f);
    return r;
}

/* Inside a task: run sql, expect success, drop the result. */
static inline void pgt_ok(ll_pg_conn *c, const char *sql) {
    ll_pg_result_free(pgt_q(c, sql));
}

/* Inside a task: the one int64 value of a one-row, one-column query. */
static inline int64_t pgt_int(ll_pg_conn *c, const char *sql) {
    ll_pg_result *r = pgt_q(c, sql);
    int64_t v = -1;
    assert_int_equal(ll_pg_result_rows(r), 1);
    assert_int_equal(ll_pg_int64(r, 0, 0, &v), 0);
    ll_pg_result_free(r);
    return v;
}

/* Inside a task: let work still going on in the background (connections a closed pool is
 * closing, a cancel request on its way in its own task) end until nothing is open and this is the
 * only task, at most 10 s. */
static inline void pgt_settle(void) {
    ll_loop_stats st;
    for (int i = 0; i < 1000; i++) {
        ll_loop_get_stats(ll_loop_current(), &st);
        if (st.handles == 0 && st.tasks <= 1) return;
        ll_sleep(0.01);
    }
}

/* test_NAME: runs the task t_NAME on a fresh loop and proves the loop cleaned up. */
#define PGT_TASK_TEST(name)                                                                        \
    static void test_##name(void **state) {                                                        \
        (void)state;                                                                               \
        lt_ctx t;                                                                                  \
        lt_setup(&t);                                                                              \
        assert_int_equal(lt_run_task(t.loop, t_##name, NULL), 0);                                  \
        lt_teardown(&t);                                                                           \
    }

/* Inside a task: a typed query (binary results unless text) that must succeed; free the result
 * with ll_pg_result_free. */
static inline ll_pg_result *pgt_typed(ll_pg_conn *c, const char *sql, int n,
                                      const ll_pg_param *params, bool text) {
    ll_pg_query_opts o = {.text_results = text};
    ll_future *f = ll_pg_query_typed(c, sql, n, params, &o);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "%s: %s\n", sql, ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    ll_pg_result *r = ll_future_take(f);
    ll_future_free(f);
    return r;
}

#define PGT_TEST(fn) cmocka_unit_test(fn)
#define PGT_RUN(tests) cmocka_run_group_tests(tests, pgt_group_setup, pgt_group_teardown)

/* Runs `workload` (a task given a pointer to the index of the allocation that must fail) once for
 * every allocation it makes, failing that one (every 7th under valgrind or ASan): each run must leave
 * nothing allocated. Returns how many failure points were visited. */
static inline long pgt_alloc_failures(ll_task_fn workload) {
    long step = (lt_under_valgrind() || lt_under_asan()) ? 7 : 1;
    long n;
    for (n = 0; n < 5000; n += step) {
        lt_track_begin();
        lt_ctx t;
        lt_setup(&t);
        ll_spawn_opts o = {.loop = t.loop};
        ll_future *f = ll_spawn_ex(workload, &n, &o);
        if (f) ll_loop_run_until(t.loop, f);
        ll_future_free(f);
        lt_fail_reset();
        long used = lt_alloc_count();
        lt_teardown(&t);
        long leaked = lt_track_end();
        if (leaked) fprintf(stderr, "failing allocation %ld: %ld allocations leaked\n", n, leaked);
        assert_int_equal(leaked, 0);
        if (used < n) break; /* the whole workload ran without reaching a failure */
    }
    if (getenv("PGT_VERBOSE")) fprintf(stderr, "%ld failure points\n", n);
    return n;
}

#endif
