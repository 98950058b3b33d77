/* pg_typed.c — typed parameters (checked by the compiler), binary results read with type-checked
 * getters, streamed rows and executemany. Needs a server: LL_PG_URL="host=... user=..." */
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

    /* one row back, every value typed; ll_pg_param_text(42, 2) would not compile */
    ll_future *f = ll_pg_fetchrow(c, "SELECT $1 + 1, upper($2), $3 + interval '1 day'",
                                  LL_PG_PARAMS(ll_pg_param_int8(41), ll_pg_param_text("hi", -1),
                                               ll_pg_param_timestamptz(0)));
    int rc = ll_await(f);
    if (rc == 0) {
        ll_pg_result *r = ll_pg_result_of(f);
        int64_t n = 0, ts = 0;
        const char *s = NULL;
        ll_pg_get_int8(r, 0, 0, &n);
        ll_pg_get_text(r, 0, 1, &s, NULL);
        ll_pg_get_timestamptz(r, 0, 2, &ts);
        printf("%lld %s %lld\n", (long long)n, s, (long long)(ts / 1000000));
        double d;
        printf("reading an int8 as a float8: %s\n", ll_err_name(ll_pg_get_float8(r, 0, 0, &d)));
    } else {
        fprintf(stderr, "%s\n", ll_future_errmsg(f));
    }
    ll_future_free(f);

    /* executemany: three rows, pipelined, in one transaction */
    ll_future *e = ll_pg_exec(c, "CREATE TEMP TABLE pets (name text, legs int4)");
    ll_await(e);
    ll_future_free(e);
    ll_pg_param rows[] = {ll_pg_param_text("cat", -1), ll_pg_param_int4(4),
                          ll_pg_param_text("hen", -1), ll_pg_param_int4(2),
                          ll_pg_param_text("eel", -1), ll_pg_param_int4(0)};
    ll_pg_many_opts mo = {.atomic = true};
    ll_pg_many_error err;
    if (ll_pg_executemany(c, "INSERT INTO pets VALUES ($1, $2)", 2, 3, rows, &mo, &err))
        fprintf(stderr, "row %zu: %s\n", err.row, err.message);

    /* streamed: one chunk of two rows at a time, whatever the table's size */
    ll_pg_rows *it;
    ll_pg_rows_opts ro = {.chunk_rows = 2};
    if (ll_pg_rows_open(&it, c, "SELECT name, legs FROM pets ORDER BY name", 0, NULL, &ro) == 0) {
        ll_pg_result *chunk;
        while (ll_pg_rows_next(it, &chunk) == 0) {
            for (int i = 0; i < ll_pg_result_rows(chunk); i++) {
                const char *name;
                int32_t legs;
                ll_pg_get_text(chunk, i, 0, &name, NULL);
                ll_pg_get_int4(chunk, i, 1, &legs);
                printf("%s has %d legs\n", name, (int)legs);
            }
            ll_pg_result_free(chunk);
        }
    }
    ll_pg_rows_close(it);
    ll_pg_close(c);
    return rc;
}

int main(void) {
    const char *url = getenv("LL_PG_URL");
    if (!url) {
        printf("pg_typed: set LL_PG_URL to a PostgreSQL conninfo to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
