/* pg_transaction.c — a transfer in a transaction, with a savepoint; a task that fails inside its
 * transaction is rolled back automatically. Needs a server: LL_PG_URL="host=... user=..." */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/pg.h>

static int run(ll_pg_conn *c, const char *sql) {
    ll_future *f = ll_pg_query(c, sql, 0);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "%s\n", ll_future_errmsg(f));
    ll_future_free(f);
    return rc;
}

static int transfer(void *arg) {
    ll_pg_conn *c = arg;
    ll_future *bf = ll_pg_begin(c, "ISOLATION LEVEL SERIALIZABLE");
    int rc = ll_await(bf);
    ll_pg_tx *tx = ll_future_value(bf);
    ll_future_free(bf);
    if (rc) return rc;
    /* from here on, other tasks' queries on c wait: nothing of theirs runs inside this */
    if ((rc = run(c, "UPDATE accounts SET balance = balance - 10 WHERE id = 1"))) return rc;
    ll_future *sp = ll_pg_savepoint(tx, "before_bonus");
    ll_await(sp);
    ll_future_free(sp);
    ll_future *bonus = ll_pg_query(c, "UPDATE accounts SET balance = balance / 0 WHERE id = 2", 0);
    if (ll_await(bonus) == LL_EPG_SERVER) {   /* undo just that part */
        ll_future *rb = ll_pg_savepoint_rollback(tx, "before_bonus");
        ll_await(rb);
        ll_future_free(rb);
    }
    ll_future_free(bonus);
    if ((rc = run(c, "UPDATE accounts SET balance = balance + 10 WHERE id = 2"))) return rc;
    ll_future *cf = ll_pg_commit(tx);
    rc = ll_await(cf);                        /* LL_EPG_UNKNOWN_OUTCOME if the connection died */
    if (rc) fprintf(stderr, "%s\n", ll_future_errmsg(cf));
    ll_future_free(cf);
    return rc;
}

static int gives_up(void *arg) {
    ll_pg_conn *c = arg;
    ll_future *bf = ll_pg_begin(c, NULL);
    int rc = ll_await(bf);
    ll_future_free(bf);
    if (rc) return rc;
    run(c, "UPDATE accounts SET balance = 0");
    return ll_task_fail(LL_EINVAL, "changed my mind"); /* rolled back when the task ends */
}

static int main_task(void *url) {
    ll_future *cf = ll_pg_connect(url, NULL);
    int rc = ll_await(cf);
    ll_pg_conn *c = ll_future_take(cf);
    if (rc) fprintf(stderr, "%s\n", ll_future_errmsg(cf));
    ll_future_free(cf);
    if (rc) return rc;
    run(c, "CREATE TEMP TABLE accounts (id int PRIMARY KEY, balance int)");
    run(c, "INSERT INTO accounts VALUES (1, 100), (2, 0)");
    ll_future *t1 = ll_spawn(transfer, c);
    rc = ll_await(t1);
    ll_future_free(t1);
    ll_future *t2 = ll_spawn(gives_up, c);
    ll_await(t2);
    ll_future_free(t2);
    ll_future *q = ll_pg_query(c, "SELECT id, balance FROM accounts ORDER BY id", 0);
    if (ll_await(q) == 0) {
        ll_pg_result *r = ll_pg_result_of(q);
        for (int i = 0; i < ll_pg_result_rows(r); i++)
            printf("account %s: %s\n", ll_pg_text(r, i, 0), ll_pg_text(r, i, 1));
    }
    ll_future_free(q);
    ll_pg_close(c);
    return rc;
}

int main(void) {
    const char *url = getenv("LL_PG_URL");
    if (!url) {
        printf("pg_transaction: set LL_PG_URL to a PostgreSQL conninfo to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
