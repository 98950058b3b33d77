/* pg_prepare.c — explicit prepared statements (on a connection and on a pool) and the pool forms
 * of streamed rows and executemany. Needs a server: LL_PG_URL="host=... user=..." */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/pg.h>

static int main_task(void *url) {
    ll_future *cf = ll_pg_connect(url, NULL);
    if (ll_await(cf)) {
        fprintf(stderr, "%s\n", ll_future_errmsg(cf));
        ll_future_free(cf);
        return 1;
    }
    ll_pg_conn *c = ll_future_take(cf);
    ll_future_free(cf);

    /* prepare once: the server says what it takes and returns */
    ll_future *f = ll_pg_prepare(c, "SELECT $1::int4 * 2 AS twice, repeat($2, 2) AS echo", NULL);
    if (ll_await(f)) {
        fprintf(stderr, "%s\n", ll_future_errmsg(f));
        ll_future_free(f);
        ll_pg_close(c);
        return 1;
    }
    ll_pg_stmt *s = ll_future_take(f);
    ll_future_free(f);
    for (int i = 0; i < ll_pg_stmt_nparams(s); i++)
        printf("$%d: type %u\n", i + 1, ll_pg_stmt_param_type(s, i));
    for (int i = 0; i < ll_pg_stmt_cols(s); i++)
        printf("column %s: type %u\n", ll_pg_stmt_colname(s, i), ll_pg_stmt_coltype(s, i));

    /* run it many times; an int8 goes as the statement's int4 (range checked) */
    for (int64_t n = 1; n <= 3; n++) {
        f = ll_pg_stmt_fetchrow(s, LL_PG_PARAMS(ll_pg_param_int8(n), ll_pg_param_text("ab", -1)));
        if (ll_await(f) == 0) {
            ll_pg_result *r = ll_pg_result_of(f);
            int32_t twice = 0;
            const char *echo = NULL;
            ll_pg_get_int4(r, 0, 0, &twice);
            ll_pg_get_text(r, 0, 1, &echo, NULL);
            printf("%lld -> %d %s\n", (long long)n, (int)twice, echo);
        } else {
            fprintf(stderr, "%s\n", ll_future_errmsg(f));
        }
        ll_future_free(f);
    }
    ll_pg_stmt_free(s); /* DEALLOCATE on the server */
    ll_pg_close(c);

    /* the same on a pool: each form takes a connection and gives it back */
    ll_pg_pool *pool = ll_pg_pool_new(url, NULL);
    f = ll_pg_pool_prepare(pool, "SELECT $1::int8 + 1", NULL);
    if (ll_await(f) == 0) {
        ll_pg_stmt *ps = ll_future_take(f);
        ll_future *v = ll_pg_stmt_fetchval(ps, LL_PG_PARAMS(ll_pg_param_int8(41)));
        int64_t n = 0;
        if (ll_await(v) == 0) ll_pg_get_int8(ll_pg_result_of(v), 0, 0, &n);
        printf("pool statement: %lld\n", (long long)n);
        ll_future_free(v);
        ll_pg_stmt_free(ps);
    }
    ll_future_free(f);

    ll_pg_param rows[] = {ll_pg_param_int8(1), ll_pg_param_int8(2), ll_pg_param_int8(3)};
    ll_pg_many_error err;
    if (ll_pg_pool_executemany(pool, "SELECT $1 * 10", 1, 3, rows, NULL, &err))
        fprintf(stderr, "row %zu: %s\n", err.row, err.message);

    ll_pg_pool_rows *it;
    ll_pg_rows_opts ro = {.chunk_rows = 2};
    int64_t sum = 0;
    if (ll_pg_pool_rows_open(&it, pool, "SELECT g FROM generate_series(1, 5) g", 0, NULL, &ro) ==
        0) {
        ll_pg_result *chunk;
        while (ll_pg_pool_rows_next(it, &chunk) == 0) {
            for (int i = 0; i < ll_pg_result_rows(chunk); i++) {
                int64_t g = 0;
                ll_pg_get_int8(chunk, i, 0, &g);
                sum += g;
            }
            ll_pg_result_free(chunk);
        }
    } else {
        fprintf(stderr, "%s\n", ll_pg_pool_rows_errmsg(it));
    }
    ll_pg_pool_rows_close(it); /* the connection goes back here */
    printf("streamed from the pool: sum %lld\n", (long long)sum);
    ll_pg_pool_free(pool);
    return 0;
}

int main(void) {
    const char *url = getenv("LL_PG_URL");
    if (!url) {
        printf("pg_prepare: set LL_PG_URL to a PostgreSQL conninfo to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
