/*
 * test_pg_tx_order.c — a task that ends inside a failed transaction: its automatic ROLLBACK is
 * written before the other tasks' queries held behind the transaction, so none of them runs in the
 * dead transaction (they would fail with 25P02 "current transaction is aborted"). Also when the
 * ROLLBACK itself has to wait (the task was cancelled in the middle of a query, whose cancel must
 * be confirmed before anything is written).
 */
#include "pgtest.h"

typedef struct {
    ll_pg_conn *c;
    int rc;
} other_arg;

typedef struct {
    ll_pg_conn *c;
    bool slow; /* cancelled in a slow query, or ends by itself after a failed one */
} owner_arg;

static int owner(void *arg) {
    owner_arg *oa = arg;
    ll_pg_conn *c = oa->c;
    bool slow = oa->slow;
    ll_future *bf = ll_pg_begin(c, NULL);
    if (ll_await(bf)) {
        ll_future_free(bf);
        return -1;
    }
    ll_future_free(bf);
    /* either the transaction is dead from here, or the task is cancelled in this query (which
     * kills the transaction too) */
    ll_future *q = ll_pg_query(c, slow ? "SELECT pg_sleep(10)" : "SELECT 1/0", 0);
    (void)ll_await(q);
    ll_future_free(q);
    if (!slow) ll_sleep(0.1); /* the other tasks queue their queries behind the transaction */
    return -1;                /* ends without COMMIT or ROLLBACK */
}

static int other(void *arg) {
    other_arg *o = arg;
    ll_future *q = ll_pg_query(o->c, "SELECT 2", 0);
    o->rc = ll_await(q);
    if (o->rc) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(q));
    ll_future_free(q);
    return 0;
}

static int t_rollback_first(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    for (int round = 0; round < 20; round++) {
        owner_arg ow = {c, round % 2 == 1};
        ll_future *of = ll_spawn(owner, &ow);
        ll_sleep(0.02); /* BEGIN and the failing query are written */
        other_arg oa[3] = {{c, 1}, {c, 1}, {c, 1}};
        ll_future *tf[3];
        for (int i = 0; i < 3; i++) tf[i] = ll_spawn(other, &oa[i]);
        ll_sleep(0.05);
        ll_future_cancel(of); /* a no-op for the one that ends by itself */
        (void)ll_await(of);
        ll_future_free(of);
        for (int i = 0; i < 3; i++) {
            ll_await(tf[i]);
            ll_future_free(tf[i]);
            LT_CHECKF(oa[i].rc == 0, "round %d task %d: %s", round, i, lt_last_err);
        }
        LT_CHECK(!ll_pg_in_transaction(c));
    }
    ll_pg_close(c);
    pgt_settle();
    return 0;
}

static void test_rollback_first(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_rollback_first, NULL);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_rollback_first),
    };
    return PGT_RUN(tests);
}
