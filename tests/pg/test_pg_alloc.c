/*
 * test_pg_alloc.c — every allocation of the client failing in turn: connect, pipelined queries,
 * a transaction, a script, notifications, a pool. Each failure must end as an error (never a
 * crash), and nothing allocated through libloop's hook may be left once the loop is freed.
 * (libpq's own memory comes from malloc and is not counted here: valgrind and ASan check it.)
 */
#include "pgtest.h"

static int workload(void *arg) {
    long *n = arg;
    lt_fail_after(*n);
    /* a short cancel deadline: when the cancel request itself cannot be made (no memory), the
     * connection is closed after it */
    ll_pg_opts co = {.cancel_timeout = 0.2};
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, &co);
    int rc = ll_await(cf);
    ll_pg_conn *c = rc == 0 ? ll_future_take(cf) : NULL;
    ll_future_free(cf);
    if (c) {
        ll_future *q[4];
        q[0] = ll_pg_query(c, "SELECT $1::int", 1, "1");
        q[1] = ll_pg_query(c, "SELECT 1/0", 0);
        q[2] = ll_pg_exec(c, "SELECT 2; SELECT 3");
        q[3] = ll_pg_query(c, "SELECT $1::text, $2::text", 2, "a", NULL);
        for (int i = 0; i < 4; i++) {
            if (ll_await(q[i]) == 0) {
                ll_pg_result *r = ll_future_value(q[i]);
                int64_t v;
                (void)ll_pg_int64(r, 0, 0, &v);
            } else {
                (void)ll_pg_error_sqlstate(q[i]);
            }
            ll_future_free(q[i]);
        }
        ll_future *bf = ll_pg_begin(c, NULL);
        if (ll_await(bf) == 0) {
            ll_pg_tx *tx = ll_future_value(bf);
            ll_future *s = ll_pg_savepoint(tx, "x");
            (void)ll_await(s);
            ll_future_free(s);
            ll_future *e = ll_pg_commit(tx);
            (void)ll_await(e);
            ll_future_free(e);
        }
        ll_future_free(bf);
        ll_future *l = ll_pg_listen(c, "ch");
        (void)ll_await(l);
        ll_future_free(l);
        ll_future *nf = ll_pg_notify(c, "ch", "p");
        (void)ll_await(nf);
        ll_future_free(nf);
        ll_future *w = ll_pg_next_notification(c);
        (void)ll_await_timeout(w, 1);
        ll_future_free(w);
        /* a query cut by its deadline: the cancel request goes through the executor */
        ll_future *slow = ll_pg_query(c, "SELECT pg_sleep(5)", 0);
        (void)ll_await_timeout(slow, 0.01);
        ll_future_free(slow);
        ll_pg_close(c);
    }
    /* batch_sync: a segment with an error in the middle (its neighbours are re-run) */
    ll_pg_opts bo = {.batch_sync = true};
    cf = ll_pg_connect(pgt_server.conninfo, &bo);
    c = ll_await(cf) == 0 ? ll_future_take(cf) : NULL;
    ll_future_free(cf);
    if (c) {
        ll_future *q[3];
        q[0] = ll_pg_query(c, "SELECT 1", 0);
        q[1] = ll_pg_query(c, "SELECT 1/0", 0);
        q[2] = ll_pg_query(c, "SELECT $1::int", 1, "3");
        for (int i = 0; i < 3; i++) {
            (void)ll_await(q[i]);
            ll_future_free(q[i]);
        }
        ll_pg_close(c);
    }
    ll_pg_pool_opts po = {.max_size = 2};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &po);
    if (p) {
        ll_future *fs[3];
        for (int i = 0; i < 3; i++) fs[i] = ll_pg_pool_query(p, "SELECT 1", 0);
        for (int i = 0; i < 3; i++) {
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
    assert_true(pgt_alloc_failures(workload) > 50); /* the workload did allocate, and every failure point was visited */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_alloc_failures),
    };
    return PGT_RUN(tests);
}
