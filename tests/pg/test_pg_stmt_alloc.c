/*
 * test_pg_stmt_alloc.c — every allocation failing in turn in prepared statements (a connection's
 * and a pool's) and the pool forms of streamed rows and executemany. Each failure must end as an
 * error (never a crash), give every pooled connection back, and leave nothing allocated through
 * libloop's hook once the loop is freed.
 */
#include "pgtest.h"

static int workload(void *arg) {
    long *n = arg;
    lt_fail_after(*n);
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, NULL);
    ll_pg_conn *c = ll_await(cf) == 0 ? ll_future_take(cf) : NULL;
    ll_future_free(cf);
    if (c) {
        ll_future *f = ll_pg_prepare(c, "SELECT $1::int4 + $2, $3::numeric", NULL);
        ll_pg_stmt *s = ll_await(f) == 0 ? ll_future_take(f) : NULL;
        ll_future_free(f);
        if (s) {
            f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int8(1), ll_pg_param_int2(2),
                                                 ll_pg_param_float8(0.5)),
                                 NULL);
            (void)ll_await(f);
            ll_future_free(f);
            f = ll_pg_stmt_fetchval(s, LL_PG_PARAMS(ll_pg_param_int8(1), ll_pg_param_null(),
                                                    ll_pg_param_int4(3)));
            (void)ll_await(f);
            ll_future_free(f);
            ll_pg_stmt_free(s);
        }
        ll_pg_close(c);
    }
    ll_pg_pool_opts po = {.max_size = 1};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &po);
    if (p) {
        ll_future *f = ll_pg_pool_prepare(p, "SELECT $1::int8", NULL);
        ll_pg_stmt *s = ll_await(f) == 0 ? ll_future_take(f) : NULL;
        ll_future_free(f);
        if (s) {
            f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int4(5)), NULL);
            (void)ll_await(f);
            ll_future_free(f);
            ll_pg_stmt_free(s);
        }
        ll_pg_pool_rows *it;
        ll_pg_rows_opts ro = {.chunk_rows = 2};
        if (ll_pg_pool_rows_open(&it, p, "SELECT g FROM generate_series(1, 5) g", 0, NULL, &ro) ==
            0) {
            ll_pg_result *chunk;
            while (ll_pg_pool_rows_next(it, &chunk) == 0) ll_pg_result_free(chunk);
        }
        ll_pg_pool_rows_close(it);
        ll_pg_param rows[] = {ll_pg_param_int4(1), ll_pg_param_int4(0)};
        (void)ll_pg_pool_executemany(p, "SELECT 1 / $1", 1, 2, rows, NULL, NULL);
        ll_pg_pool_stats st;
        ll_pg_pool_get_stats(p, &st);
        assert_int_equal(st.in_use, 0); /* every form gave its connection back */
        ll_pg_pool_free(p);
    }
    lt_fail_reset();
    pgt_settle();
    return 0;
}

static void test_alloc_failures(void **state) {
    (void)state;
    assert_true(pgt_alloc_failures(workload) > 50);
}

int main(void) {
    const struct CMUnitTest tests[] = {PGT_TEST(test_alloc_failures)};
    return PGT_RUN(tests);
}
