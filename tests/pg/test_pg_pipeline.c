/*
 * test_pg_pipeline.c — automatic pipelining across tasks, error isolation inside a pipeline,
 * transactions on a shared connection, prepared statements and their re-preparation.
 */
#include "pgtest.h"

/* ---- many tasks, one connection ---- */

typedef struct {
    ll_pg_conn *c;
    int id;
    int max_pending;
} worker_arg;

static int worker(void *p) {
    worker_arg *a = p;
    for (int i = 0; i < 5; i++) {
        char x[16], y[16];
        snprintf(x, sizeof x, "%d", a->id);
        snprintf(y, sizeof y, "%d", i);
        ll_future *f = ll_pg_query(a->c, "SELECT $1::int * 1000 + $2::int", 2, x, y);
        if ((int)ll_pg_pending(a->c) > a->max_pending) a->max_pending = (int)ll_pg_pending(a->c);
        int rc = ll_await(f);
        if (rc) {
            rc = ll_task_fail_from(f);
            ll_future_free(f);
            return rc;
        }
        int64_t v;
        assert_int_equal(ll_pg_int64(ll_future_value(f), 0, 0, &v), 0);
        assert_int_equal(v, a->id * 1000 + i);
        ll_future_free(f);
    }
    return 0;
}

static int t_many_tasks(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    enum { N = 200 };
    static worker_arg args[N];
    ll_future *fs[N];
    for (int i = 0; i < N; i++) {
        args[i] = (worker_arg){c, i, 0};
        fs[i] = ll_spawn(worker, &args[i]);
    }
    ll_future *all = ll_gather(fs, N, LL_GATHER_FAIL_FAST);
    assert_int_equal(ll_await(all), 0);
    ll_future_free(all);
    int maxp = 0;
    for (int i = 0; i < N; i++) {
        ll_future_free(fs[i]);
        if (args[i].max_pending > maxp) maxp = args[i].max_pending;
    }
    /* the tasks' queries were in flight together (one round trip for many) */
    assert_true(maxp >= N / 2);
    assert_int_equal(ll_pg_pending(c), 0);

    /* one task sending a batch without waiting: replies in order, each to its own future */
    ll_future *q[100];
    for (int i = 0; i < 100; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        q[i] = ll_pg_query(c, "SELECT $1::int", 1, v);
    }
    assert_int_equal(ll_pg_pending(c), 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(ll_await(q[i]), 0);
        int64_t v;
        assert_int_equal(ll_pg_int64(ll_future_value(q[i]), 0, 0, &v), 0);
        assert_int_equal(v, i);
        ll_future_free(q[i]);
    }
    ll_pg_close(c);
    return 0;
}

static void test_many_tasks(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_many_tasks, NULL), 0);
    lt_teardown(&t);
}

/* ---- an error in the middle of a pipeline affects nobody else ---- */

static int t_error_isolation(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE iso (x int)");
    ll_future *a = ll_pg_query(c, "INSERT INTO iso VALUES (1)", 0);
    ll_future *b = ll_pg_query(c, "SELECT 1/0", 0);
    ll_future *b2 = ll_pg_query(c, "INSERT INTO iso VALUES ('x')", 0); /* fails too */
    ll_future *d = ll_pg_query(c, "INSERT INTO iso VALUES (3)", 0);
    assert_int_equal(ll_pg_pending(c), 4); /* all in flight before any reply */
    assert_int_equal(ll_await(a), 0);
    assert_int_equal(ll_await(b), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(b), "22012");
    assert_int_equal(ll_await(b2), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(b2), "22P02");
    assert_int_equal(ll_await(d), 0);
    ll_future_free(a);
    ll_future_free(b);
    ll_future_free(b2);
    ll_future_free(d);
    /* both inserts committed on their own */
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM iso"), 2);
    ll_pg_close(c);
    return 0;
}

static void test_error_isolation(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_error_isolation, NULL), 0);
    lt_teardown(&t);
}

/* ---- transactions on a shared connection ---- */

typedef struct {
    ll_pg_conn *c;
    ll_time tx_end, other_done;
    int mode; /* 0 rollback, 1 fail, 2 commit */
} tx_arg;

static int tx_owner(void *p) {
    tx_arg *a = p;
    ll_future *bf = ll_pg_begin(a->c, NULL);
    assert_int_equal(ll_await(bf), 0);
    ll_pg_tx *tx = ll_future_value(bf);
    ll_future_free(bf);
    assert_ptr_equal(ll_pg_tx_conn(tx), a->c);
    assert_true(ll_pg_in_transaction(a->c));
    pgt_ok(a->c, "INSERT INTO txt VALUES ('owner')");
    ll_sleep(0.05); /* the other task's insert is made now, and must wait */
    pgt_ok(a->c, "INSERT INTO txt VALUES ('owner2')");
    /* inside the transaction only the owner's rows are visible */
    assert_int_equal(pgt_int(a->c, "SELECT count(*) FROM txt"), 2);
    if (a->mode == 1) {
        a->tx_end = ll_now();
        return ll_task_fail(LL_EINVAL, "something went wrong"); /* rolled back for us */
    }
    ll_future *e = a->mode == 2 ? ll_pg_commit(tx) : ll_pg_rollback(tx);
    a->tx_end = ll_now();
    assert_int_equal(ll_await(e), 0);
    ll_future_free(e);
    return 0;
}

static int tx_other(void *p) {
    tx_arg *a = p;
    ll_sleep(0.02); /* the owner's transaction is open by now */
    pgt_ok(a->c, "INSERT INTO txt VALUES ('other')");
    a->other_done = ll_now();
    return 0;
}

static int t_tx_shared(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE txt (who text)");
    for (int mode = 0; mode < 3; mode++) {
        pgt_ok(c, "DELETE FROM txt");
        tx_arg a = {c, 0, 0, mode};
        ll_future *o = ll_spawn(tx_owner, &a);
        ll_future *x = ll_spawn(tx_other, &a);
        int orc = ll_await(o);
        assert_int_equal(orc, mode == 1 ? LL_EINVAL : 0);
        assert_int_equal(ll_await(x), 0);
        ll_future_free(o);
        ll_future_free(x);
        /* the other task's insert was not part of the transaction, and waited for its end */
        assert_true(a.other_done >= a.tx_end);
        ll_pg_result *r = pgt_q(c, "SELECT who FROM txt ORDER BY who");
        if (mode == 2) {
            assert_int_equal(ll_pg_result_rows(r), 3);
        } else {
            assert_int_equal(ll_pg_result_rows(r), 1);
            assert_string_equal(ll_pg_text(r, 0, 0), "other");
        }
        ll_pg_result_free(r);
        assert_false(ll_pg_in_transaction(c));
    }
    ll_pg_close(c);
    return 0;
}

static void test_tx_shared(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_tx_shared, NULL), 0);
    lt_teardown(&t);
}

/* ---- savepoints, aborted transactions, misuse ---- */

static int t_savepoints(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE sp (x int)");
    ll_future *bf = ll_pg_begin(c, "ISOLATION LEVEL SERIALIZABLE");
    assert_int_equal(ll_await(bf), 0);
    ll_pg_tx *tx = ll_future_value(bf);
    ll_future_free(bf);
    ll_pg_result *r = pgt_q(c, "SHOW transaction_isolation");
    assert_string_equal(ll_pg_text(r, 0, 0), "serializable");
    ll_pg_result_free(r);
    /* a second begin by the same task is refused */
    bf = ll_pg_begin(c, NULL);
    assert_int_equal(ll_await(bf), LL_ESTATE);
    ll_future_free(bf);
    pgt_ok(c, "INSERT INTO sp VALUES (1)");
    ll_future *s = ll_pg_savepoint(tx, "a \"b\"");
    assert_int_equal(ll_await(s), 0);
    ll_future_free(s);
    pgt_ok(c, "INSERT INTO sp VALUES (2)");
    ll_future *bad = ll_pg_query(c, "SELECT 1/0", 0);
    assert_int_equal(ll_await(bad), LL_EPG_SERVER);
    ll_future_free(bad);
    bad = ll_pg_query(c, "SELECT 1", 0); /* the transaction is aborted until rollback to */
    assert_int_equal(ll_await(bad), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(bad), "25P02");
    ll_future_free(bad);
    s = ll_pg_savepoint_rollback(tx, "a \"b\"");
    assert_int_equal(ll_await(s), 0);
    ll_future_free(s);
    s = ll_pg_savepoint_release(tx, "a \"b\"");
    assert_int_equal(ll_await(s), 0);
    ll_future_free(s);
    ll_future *e = ll_pg_commit(tx);
    assert_int_equal(ll_await(e), 0);
    ll_future_free(e);
    assert_int_equal(pgt_int(c, "SELECT sum(x) FROM sp"), 1);

    /* committing a transaction that failed reports it */
    bf = ll_pg_begin(c, NULL);
    assert_int_equal(ll_await(bf), 0);
    tx = ll_future_value(bf);
    ll_future_free(bf);
    bad = ll_pg_query(c, "INSERT INTO sp VALUES (1/0)", 0);
    assert_int_equal(ll_await(bad), LL_EPG_SERVER);
    ll_future_free(bad);
    e = ll_pg_commit(tx);
    assert_int_equal(ll_await(e), LL_EPG_SERVER);
    assert_non_null(strstr(ll_future_errmsg(e), "rolled back"));
    ll_future_free(e);
    assert_false(ll_pg_in_transaction(c));
    /* the ended transaction cannot be used */
    e = ll_pg_commit(tx);
    assert_int_equal(ll_await(e), LL_ESTATE);
    ll_future_free(e);
    /* a BEGIN that fails leaves no transaction behind */
    bf = ll_pg_begin(c, "ISOLATION LEVEL NONSENSE");
    assert_int_equal(ll_await(bf), LL_EPG_SERVER);
    ll_future_free(bf);
    assert_false(ll_pg_in_transaction(c));
    assert_int_equal(pgt_int(c, "SELECT 5"), 5);
    ll_pg_close(c);
    return 0;
}

static void test_savepoints(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_savepoints, NULL), 0);
    /* outside a task */
    ll_future *f = ll_pg_begin(NULL, NULL);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    ll_future_free(f);
    lt_teardown(&t);
}

/* a task cancelled inside its transaction: rolled back, connection usable */
static int tx_cancelled(void *p) {
    ll_pg_conn *c = p;
    ll_future *bf = ll_pg_begin(c, NULL);
    assert_int_equal(ll_await(bf), 0);
    ll_future_free(bf);
    pgt_ok(c, "INSERT INTO txc VALUES (1)");
    ll_future *q = ll_pg_query(c, "SELECT pg_sleep(10)", 0);
    int rc = ll_await(q); /* cancelled here */
    ll_future_free(q);
    return rc;
}

static int t_tx_cancel(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE txc (x int)");
    ll_future *t = ll_spawn(tx_cancelled, c);
    ll_sleep(0.2);
    ll_time t0 = ll_now();
    ll_future_cancel(t);
    assert_int_equal(ll_await(t), LL_ECANCELED);
    assert_true(ll_now() - t0 < 3.0);
    ll_future_free(t);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM txc"), 0);
    assert_false(ll_pg_in_transaction(c));
    ll_pg_close(c);
    return 0;
}

static void test_tx_cancel(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_tx_cancel, NULL), 0);
    lt_teardown(&t);
}

/* ---- prepared statements ---- */

static int64_t prepared_count(ll_pg_conn *c) {
    /* through ll_pg_exec: the simple protocol never makes a statement of its own */
    ll_future *f = ll_pg_exec(c, "SELECT count(*) FROM pg_prepared_statements");
    assert_int_equal(ll_await(f), 0);
    int64_t v = -1;
    assert_int_equal(ll_pg_int64(ll_future_value(f), 0, 0, &v), 0);
    ll_future_free(f);
    return v;
}

static int t_prepared(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE pt (a int)");
    pgt_ok(c, "INSERT INTO pt VALUES (1)");
    int64_t base = prepared_count(c);
    for (int i = 0; i < 3; i++) {
        ll_pg_result *r = pgt_q(c, "SELECT * FROM pt");
        assert_int_equal(ll_pg_result_cols(r), 1);
        ll_pg_result_free(r);
    }
    assert_int_equal(prepared_count(c), base + 1); /* prepared once, reused */

    /* a schema change invalidates the cached plan (0A000): re-prepared by itself */
    pgt_ok(c, "ALTER TABLE pt ADD COLUMN b int DEFAULT 7");
    ll_pg_result *r = pgt_q(c, "SELECT * FROM pt");
    assert_int_equal(ll_pg_result_cols(r), 2);
    ll_pg_result_free(r);

    /* the statements vanished (26000): re-prepared by itself */
    ll_future *d = ll_pg_exec(c, "DEALLOCATE ALL");
    assert_int_equal(ll_await(d), 0);
    ll_future_free(d);
    r = pgt_q(c, "SELECT * FROM pt");
    assert_int_equal(ll_pg_result_cols(r), 2);
    ll_pg_result_free(r);

    /* inside a transaction block no retry: the error is reported */
    ll_future *bf = ll_pg_begin(c, NULL);
    assert_int_equal(ll_await(bf), 0);
    ll_pg_tx *tx = ll_future_value(bf);
    ll_future_free(bf);
    pgt_ok(c, "ALTER TABLE pt ADD COLUMN c int");
    ll_future *q = ll_pg_query(c, "SELECT * FROM pt", 0);
    assert_int_equal(ll_await(q), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(q), "0A000");
    ll_future_free(q);
    ll_future *e = ll_pg_rollback(tx);
    assert_int_equal(ll_await(e), 0);
    ll_future_free(e);

    /* a statement that does not prepare, used twice in the same pipeline */
    ll_future *x1 = ll_pg_query(c, "SELEC 1", 0);
    ll_future *x2 = ll_pg_query(c, "SELEC 1", 0);
    assert_int_equal(ll_await(x1), LL_EPG_SERVER);
    assert_int_equal(ll_await(x2), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(x1), "42601");
    assert_string_equal(ll_pg_error_sqlstate(x2), "42601");
    ll_future_free(x1);
    ll_future_free(x2);
    assert_int_equal(pgt_int(c, "SELECT 3"), 3);
    ll_pg_close(c);

    /* a cache of two: least recently used statements are deallocated */
    ll_pg_opts o = {.stmt_cache_size = 2};
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, &o);
    assert_int_equal(ll_await(cf), 0);
    c = ll_future_take(cf);
    ll_future_free(cf);
    for (int i = 0; i < 10; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT %d", i);
        assert_int_equal(pgt_int(c, sql), i);
    }
    assert_int_equal(prepared_count(c), 2);
    ll_pg_close(c);

    /* unnamed statements only */
    ll_pg_opts u = {.unnamed_statements = true};
    cf = ll_pg_connect(pgt_server.conninfo, &u);
    assert_int_equal(ll_await(cf), 0);
    c = ll_future_take(cf);
    ll_future_free(cf);
    for (int i = 0; i < 3; i++) assert_int_equal(pgt_int(c, "SELECT 11"), 11);
    assert_int_equal(prepared_count(c), 0);
    ll_pg_close(c);
    return 0;
}

static void test_prepared(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_prepared, NULL), 0);
    lt_teardown(&t);
}

/* ---- batch_sync: one Sync per burst, neighbours of a failure re-run ---- */

static ll_pg_conn *connect_batched(void) {
    ll_pg_opts o = {.batch_sync = true};
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, &o);
    assert_int_equal(ll_await(cf), 0);
    ll_pg_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    return c;
}

static int t_batch_sync(void *arg) {
    (void)arg;
    ll_pg_conn *c = connect_batched();
    pgt_ok(c, "CREATE TEMP TABLE bt (x int UNIQUE)");
    /* one burst, one segment: an error in the middle */
    ll_future *q[6];
    q[0] = ll_pg_query(c, "INSERT INTO bt VALUES (1)", 0);
    q[1] = ll_pg_query(c, "INSERT INTO bt VALUES (2)", 0);
    q[2] = ll_pg_query(c, "SELECT 1/0", 0);
    q[3] = ll_pg_query(c, "INSERT INTO bt VALUES (4)", 0);
    q[4] = ll_pg_query(c, "INSERT INTO bt VALUES (1)", 0); /* a duplicate of the first */
    q[5] = ll_pg_query(c, "SELECT 6", 0);
    int want[6] = {0, 0, LL_EPG_SERVER, 0, LL_EPG_SERVER, 0};
    for (int i = 0; i < 6; i++) {
        int rc = ll_await(q[i]);
        if (rc != want[i]) fprintf(stderr, "query %d: %s\n", i, ll_future_errmsg(q[i]));
        assert_int_equal(rc, want[i]);
    }
    assert_string_equal(ll_pg_error_sqlstate(q[2]), "22012");
    assert_string_equal(ll_pg_error_sqlstate(q[4]), "23505");
    int64_t v;
    assert_int_equal(ll_pg_int64(ll_future_value(q[5]), 0, 0, &v), 0);
    assert_int_equal(v, 6);
    for (int i = 0; i < 6; i++) ll_future_free(q[i]);
    /* every query had the outcome it would have had alone: 1, 2 and 4 are there */
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM bt"), 3);
    assert_int_equal(pgt_int(c, "SELECT sum(x) FROM bt"), 7);

    /* a statement that cannot be batched gets a segment of its own */
    ll_future *a = ll_pg_query(c, "INSERT INTO bt VALUES (10)", 0);
    ll_future *ddl = ll_pg_query(c, "CREATE TEMP TABLE bt2 (y int)", 0);
    ll_future *bad = ll_pg_query(c, "INSERT INTO bt2 VALUES (1/0)", 0);
    assert_int_equal(ll_await(a), 0);
    assert_int_equal(ll_await(ddl), 0);
    assert_int_equal(ll_await(bad), LL_EPG_SERVER);
    ll_future_free(a);
    ll_future_free(ddl);
    ll_future_free(bad);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM bt WHERE x = 10"), 1);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM bt2"), 0);

    /* inside a transaction an error aborts it as usual: nothing is re-run */
    ll_future *bf = ll_pg_begin(c, NULL);
    assert_int_equal(ll_await(bf), 0);
    ll_pg_tx *tx = ll_future_value(bf);
    ll_future_free(bf);
    ll_future *t1 = ll_pg_query(c, "INSERT INTO bt VALUES (20)", 0);
    ll_future *t2 = ll_pg_query(c, "SELECT 1/0", 0);
    ll_future *t3 = ll_pg_query(c, "INSERT INTO bt VALUES (21)", 0);
    assert_int_equal(ll_await(t1), 0);
    assert_int_equal(ll_await(t2), LL_EPG_SERVER);
    assert_int_equal(ll_await(t3), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(t3), "25P02");
    ll_future_free(t1);
    ll_future_free(t2);
    ll_future_free(t3);
    ll_future *rb = ll_pg_rollback(tx);
    assert_int_equal(ll_await(rb), 0);
    ll_future_free(rb);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM bt WHERE x >= 20"), 0);

    /* cancelling a batched query */
    ll_future *slow = ll_pg_query(c, "SELECT pg_sleep(30)", 0);
    ll_sleep(0.1);
    ll_time t0 = ll_now();
    ll_future_cancel(slow);
    assert_int_equal(ll_await(slow), LL_ECANCELED);
    assert_true(ll_now() - t0 < 3.0);
    ll_future_free(slow);

    /* many tasks, many bursts */
    enum { N = 100 };
    static worker_arg args[N];
    ll_future *fs[N];
    for (int i = 0; i < N; i++) {
        args[i] = (worker_arg){c, i, 0};
        fs[i] = ll_spawn(worker, &args[i]);
    }
    ll_future *all = ll_gather(fs, N, LL_GATHER_FAIL_FAST);
    assert_int_equal(ll_await(all), 0);
    ll_future_free(all);
    for (int i = 0; i < N; i++) ll_future_free(fs[i]);
    ll_pg_close(c);
    return 0;
}

static void test_batch_sync(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_batch_sync, NULL), 0);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_many_tasks), PGT_TEST(test_error_isolation), PGT_TEST(test_tx_shared),
        PGT_TEST(test_savepoints), PGT_TEST(test_tx_cancel),       PGT_TEST(test_prepared),
        PGT_TEST(test_batch_sync),
    };
    return PGT_RUN(tests);
}
