/* pg_pool.c — a pool of 4 connections serving 200 concurrent one-shot queries, and a connection
 * borrowed for a few statements. Needs a server: LL_PG_URL="host=... user=..." */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/pg.h>

static int main_task(void *url) {
    ll_pg_pool_opts o = {.max_size = 4, .acquire_timeout = 5};
    ll_pg_pool *pool = ll_pg_pool_new(url, &o);
    if (!pool) return 1;

    ll_future *fs[200];
    char ids[200][16];
    for (int i = 0; i < 200; i++) {           /* 200 queries, at most 4 connections */
        snprintf(ids[i], sizeof ids[i], "%d", i);
        fs[i] = ll_pg_pool_query(pool, "SELECT $1::int + 1", 1, ids[i]);
    }
    ll_future *all = ll_gather(fs, 200, LL_GATHER_FAIL_FAST);
    int rc = ll_await(all);
    long sum = 0;
    for (int i = 0; i < 200; i++) {
        int64_t v = 0;
        if (rc == 0) ll_pg_int64(ll_pg_result_of(fs[i]), 0, 0, &v);
        sum += (long)v;
        ll_future_free(fs[i]);
    }
    if (rc) fprintf(stderr, "%s\n", ll_future_errmsg(all));
    ll_future_free(all);

    /* a connection of our own for a while; released connections are reset (ROLLBACK, UNLISTEN *,
     * RESET ALL, advisory locks released) before the next user gets them */
    ll_future *af = ll_pg_pool_acquire(pool);
    if (rc == 0 && (rc = ll_await(af)) == 0) {
        ll_pg_conn *c = ll_future_value(af);
        ll_future *q = ll_pg_query(c, "SET application_name = 'pg_pool example'", 0);
        rc = ll_await(q);
        ll_future_free(q);
        ll_pg_pool_release(pool, c);
    }
    ll_future_free(af);

    ll_pg_pool_stats st;
    ll_pg_pool_get_stats(pool, &st);
    printf("sum %ld, %zu connections opened for %llu leases\n", sum, (size_t)st.created,
           (unsigned long long)st.acquired);
    ll_pg_pool_free(pool);
    return rc;
}

int main(void) {
    const char *url = getenv("LL_PG_URL");
    if (!url) {
        printf("pg_pool: set LL_PG_URL to a PostgreSQL conninfo to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
