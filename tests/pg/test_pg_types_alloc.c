/*
 * test_pg_types_alloc.c — every allocation failing in turn in the typed paths: typed queries,
 * fetchval, getters that keep memory (numeric, arrays), streamed rows, executemany, a pool with
 * hooks. Each failure must end as an error (never a crash) and leave nothing allocated through
 * libloop's hook once the loop is freed.
 */
#include "pgtest.h"

static ll_future *hook(ll_pg_conn *c, void *arg) {
    (void)arg;
    return ll_pg_exec(c, "SET application_name = 'h'");
}

static int workload(void *arg) {
    long *n = arg;
    lt_fail_after(*n);
    ll_pg_opts co = {.cancel_timeout = 0.2};
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, &co);
    ll_pg_conn *c = ll_await(cf) == 0 ? ll_future_take(cf) : NULL;
    ll_future_free(cf);
    if (c) {
        const char *strs[] = {"a", NULL, "b,c"};
        int64_t ints[] = {1, 2};
        ll_future *f = ll_pg_query_typed(
            c, "SELECT $1, $2, $3, $4::numeric, $5",
            LL_PG_PARAMS(ll_pg_param_text_array(strs, 3), ll_pg_param_int8_array(ints, NULL, 2),
                         ll_pg_param_text("x", -1), ll_pg_param_numeric("1.25"),
                         ll_pg_param_jsonb("{}", -1)),
            NULL);
        if (ll_await(f) == 0) {
            ll_pg_result *r = ll_pg_result_of(f);
            const char *const *sv;
            const int64_t *iv;
            const char *s;
            size_t k;
            (void)ll_pg_get_text_array(r, 0, 0, &sv, &k);
            (void)ll_pg_get_int8_array(r, 0, 1, &iv, NULL, &k);
            (void)ll_pg_get_text(r, 0, 3, &s, NULL);
        }
        ll_future_free(f);
        f = ll_pg_fetchval(c, "SELECT $1", LL_PG_PARAMS(ll_pg_param_int4(1)));
        (void)ll_await(f);
        ll_future_free(f);
        ll_pg_rows *it;
        ll_pg_rows_opts ro = {.chunk_rows = 2};
        if (ll_pg_rows_open(&it, c, "SELECT g FROM generate_series(1, 5) g", 0, NULL, &ro) == 0) {
            ll_pg_result *chunk;
            while (ll_pg_rows_next(it, &chunk) == 0) ll_pg_result_free(chunk);
        }
        ll_pg_rows_close(it);
        ll_pg_param rows[] = {ll_pg_param_int4(1), ll_pg_param_int4(2), ll_pg_param_int4(0)};
        ll_pg_many_opts mo = {.atomic = true};
        (void)ll_pg_executemany(c, "SELECT 1 / $1", 1, 3, rows, &mo, NULL);
        (void)ll_pg_executemany(c, "SELECT 1 / $1", 1, 3, rows, NULL, NULL);
        ll_pg_close(c);
    }
    ll_pg_pool_opts po = {.max_size = 1, .on_connect = hook, .on_release = hook};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &po);
    if (p) {
        ll_future *fs[2];
        for (int i = 0; i < 2; i++)
            fs[i] = ll_pg_pool_fetchval(p, "SELECT $1", LL_PG_PARAMS(ll_pg_param_int8(i)));
        for (int i = 0; i < 2; i++) {
            (void)ll_await(fs[i]);
            ll_future_free(fs[i]);
        }
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
