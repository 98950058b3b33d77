/* pg_gather.c — one connection, many tasks at once: their queries are pipelined (one round trip),
 * each task gets its own result. Needs a server: LL_PG_URL="host=... user=..." */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/pg.h>

static ll_pg_conn *conn;

static int square(void *arg) {                /* a task: one query, read like sequential code */
    char n[16];
    snprintf(n, sizeof n, "%d", (int)(intptr_t)arg);
    ll_future *f = ll_pg_query(conn, "SELECT $1::int * $1::int", 1, n);
    int rc = ll_await(f);
    if (rc == 0) {
        int64_t v;
        ll_pg_int64(ll_pg_result_of(f), 0, 0, &v);
        ll_task_return((void *)(intptr_t)v, NULL);
    } else {
        rc = ll_task_fail_from(f);            /* keeps "postgres 127.0.0.1:5432: ERROR ..." */
    }
    ll_future_free(f);
    return rc;
}

static int main_task(void *url) {
    ll_future *cf = ll_pg_connect(url, NULL);
    if (ll_await(cf)) {
        fprintf(stderr, "%s\n", ll_future_errmsg(cf));
        ll_future_free(cf);
        return 1;
    }
    conn = ll_future_take(cf);                /* the connection is ours now */
    ll_future_free(cf);

    ll_future *fs[10];
    for (intptr_t i = 0; i < 10; i++) fs[i] = ll_spawn(square, (void *)i);
    ll_future *all = ll_gather(fs, 10, LL_GATHER_FAIL_FAST);
    int rc = ll_await_timeout(all, 5.0);      /* one deadline for the lot */
    for (int i = 0; i < 10; i++) {
        if (rc == 0) printf("%d squared is %ld\n", i, (long)(intptr_t)ll_future_value(fs[i]));
        ll_future_free(fs[i]);
    }
    if (rc) fprintf(stderr, "%s\n", ll_future_errmsg(all));
    ll_future_free(all);

    /* errors carry the server's fields */
    ll_future *f = ll_pg_query(conn, "SELECT 1/0", 0);
    if (ll_await(f) == LL_EPG_SERVER)
        printf("SQLSTATE %s: %s\n", ll_pg_error_sqlstate(f), ll_pg_error_message(f));
    ll_future_free(f);
    ll_pg_close(conn);
    return rc;
}

int main(void) {
    const char *url = getenv("LL_PG_URL");
    if (!url) {
        printf("pg_gather: set LL_PG_URL to a PostgreSQL conninfo to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
