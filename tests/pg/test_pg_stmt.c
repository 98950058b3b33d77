/*
 * test_pg_stmt.c — explicit prepared statements (ll_pg_prepare, ll_pg_stmt_*) against a real
 * PostgreSQL: types and columns as the server describes them, many executions with typed
 * parameters converted to the statement's types, text and binary results, errors, freeing
 * (DEALLOCATE on the server), and a statement whose session is gone failing clearly instead of
 * running something else.
 */
#include "pgtest.h"

static ll_pg_stmt *prepare(ll_pg_conn *c, const char *sql, const ll_pg_prepare_opts *o) {
    ll_future *f = ll_pg_prepare(c, sql, o);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "prepare %s: %s\n", sql, ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    assert_non_null(ll_pg_stmt_of(f));
    ll_pg_stmt *s = ll_future_take(f);
    ll_future_free(f);
    return s;
}

static int64_t count_prepared(ll_pg_conn *c) {
    return pgt_int(c, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'll_p%'");
}

static int t_basic(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_stmt *s = prepare(c, "SELECT $1::int4 + $2 AS sum, $3::text AS label", NULL);
    assert_ptr_equal(ll_pg_stmt_conn(s), c);
    assert_string_equal(ll_pg_stmt_sql(s), "SELECT $1::int4 + $2 AS sum, $3::text AS label");
    assert_int_equal(ll_pg_stmt_nparams(s), 3);
    assert_int_equal(ll_pg_stmt_param_type(s, 0), 23);
    assert_int_equal(ll_pg_stmt_param_type(s, 1), 23);
    assert_int_equal(ll_pg_stmt_param_type(s, 2), 25);
    assert_int_equal(ll_pg_stmt_param_type(s, 3), 0);
    assert_int_equal(ll_pg_stmt_cols(s), 2);
    assert_string_equal(ll_pg_stmt_colname(s, 0), "sum");
    assert_string_equal(ll_pg_stmt_colname(s, 1), "label");
    assert_null(ll_pg_stmt_colname(s, 2));
    assert_int_equal(ll_pg_stmt_coltype(s, 0), 23);
    assert_int_equal(ll_pg_stmt_coltype(s, 1), 25);
    assert_int_equal(count_prepared(c), 1);

    /* many executions, pipelined; int8 and int2 arguments go as the statement's int4 */
    ll_future *fs[40];
    for (int i = 0; i < 40; i++)
        fs[i] = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int8(i), ll_pg_param_int2(1000),
                                                 ll_pg_param_text("row", -1)),
                                 NULL);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(ll_await(fs[i]), 0);
        ll_pg_result *r = ll_pg_result_of(fs[i]);
        assert_true(ll_pg_result_binary(r, 0));
        int32_t v;
        assert_int_equal(ll_pg_get_int4(r, 0, 0, &v), 0);
        assert_int_equal(v, i + 1000);
        const char *t;
        assert_int_equal(ll_pg_get_text(r, 0, 1, &t, NULL), 0);
        assert_string_equal(t, "row");
        ll_future_free(fs[i]);
    }
    /* still one server statement: executions never prepare again */
    assert_int_equal(count_prepared(c), 1);

    /* text results; NULL arguments */
    ll_pg_query_opts to = {.text_results = true};
    ll_future *f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int4(1), ll_pg_param_null(),
                                                    ll_pg_param_text(NULL, 0)),
                                    &to);
    assert_int_equal(ll_await(f), 0);
    assert_false(ll_pg_result_binary(ll_pg_result_of(f), 0));
    assert_true(ll_pg_isnull(ll_pg_result_of(f), 0, 0));
    assert_true(ll_pg_isnull(ll_pg_result_of(f), 0, 1));
    ll_future_free(f);

    /* fetchval / fetchrow */
    f = ll_pg_stmt_fetchval(s, LL_PG_PARAMS(ll_pg_param_int4(40), ll_pg_param_int4(2),
                                            ll_pg_param_text("x", 1)));
    assert_int_equal(ll_await(f), 0);
    int32_t v;
    assert_int_equal(ll_pg_get_int4(ll_pg_result_of(f), 0, 0, &v), 0);
    assert_int_equal(v, 42);
    ll_future_free(f);
    ll_pg_stmt *none = prepare(c, "SELECT 1 WHERE $1::bool", NULL);
    f = ll_pg_stmt_fetchrow(none, LL_PG_PARAMS(ll_pg_param_bool(false)));
    assert_int_equal(ll_await(f), LL_ENOENT);
    ll_future_free(f);
    f = ll_pg_stmt_fetchrow(none, LL_PG_PARAMS(ll_pg_param_bool(true)));
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    ll_pg_stmt_free(none);

    /* refused before anything is sent: wrong count, out of range, wrong type */
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int4(1)), NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "takes 3 parameters, 1 given"));
    ll_future_free(f);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int8(INT64_C(5000000000)), ll_pg_param_int4(1),
                                         ll_pg_param_text("x", -1)),
                         NULL);
    assert_int_equal(ll_await(f), LL_ERANGE);
    assert_non_null(strstr(ll_future_errmsg(f), "parameter $1"));
    assert_non_null(strstr(ll_future_errmsg(f), "5000000000"));
    ll_future_free(f);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int4(1), ll_pg_param_timestamptz(0),
                                         ll_pg_param_text("x", -1)),
                         NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    fprintf(stderr, "wrong type: %s\n", ll_future_errmsg(f));
    assert_non_null(strstr(ll_future_errmsg(f), "parameter $2: a timestamptz value where the "
                                                "statement takes int4"));
    ll_future_free(f);
    f = ll_pg_stmt_query(s, 3, NULL, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    f = ll_pg_stmt_query(NULL, 0, NULL, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "stmt is NULL"));
    ll_future_free(f);
    /* the connection is fine after all that */
    assert_int_equal(pgt_int(c, "SELECT 5"), 5);

    /* free: DEALLOCATE on the server; an execution in flight still completes */
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int4(2), ll_pg_param_int4(3),
                                         ll_pg_param_text("late", -1)),
                         NULL);
    ll_pg_stmt_free(s);
    assert_int_equal(ll_await(f), 0);
    assert_int_equal(ll_pg_get_int4(ll_pg_result_of(f), 0, 0, &v), 0);
    assert_int_equal(v, 5);
    ll_future_free(f);
    assert_int_equal(count_prepared(c), 0);
    ll_pg_stmt_free(NULL);
    ll_pg_close(c);
    return 0;
}

/* The statement's types convert what is passed: enums and composites from text, numeric from
 * integers and floats, varchar and jsonb from text, explicit types at prepare. */
static int t_conversions(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE conv (m text, p text, n numeric, v varchar(10), j jsonb, "
              "f4 float4, i2 int2)");
    pgt_ok(c, "DROP TYPE IF EXISTS smood");
    pgt_ok(c, "CREATE TYPE smood AS ENUM ('sad', 'ok')");
    pgt_ok(c, "DROP TYPE IF EXISTS spair");
    pgt_ok(c, "CREATE TYPE spair AS (a int, b text)");
    ll_pg_stmt *s = prepare(c,
                            "INSERT INTO conv VALUES ($1::smood::text, $2::spair::text, $3, $4, "
                            "$5, $6, $7) RETURNING n::text, j->>'k'",
                            NULL);
    assert_int_equal(ll_pg_stmt_nparams(s), 7);
    assert_int_equal(ll_pg_stmt_param_type(s, 2), 1700);
    assert_int_equal(ll_pg_stmt_param_type(s, 3), 1043);
    assert_int_equal(ll_pg_stmt_param_type(s, 4), 3802);
    assert_int_equal(ll_pg_stmt_cols(s), 2);
    const char *hostile = "x,\"y\" (z)";
    char comp[64];
    snprintf(comp, sizeof comp, "(7,\"x,\\\"y\\\" (z)\")");
    ll_pg_query_opts to = {.text_results = true};
    ll_future *f = ll_pg_stmt_query(
        s, LL_PG_PARAMS(ll_pg_param_text("ok", -1), ll_pg_param_text(comp, -1),
                        ll_pg_param_int8(-12), ll_pg_param_text("short", -1),
                        ll_pg_param_text("{\"k\": \"v\"}", -1), ll_pg_param_float8(0.5),
                        ll_pg_param_int8(7)),
        &to);
    int rc = ll_await(f);
    if (rc) fprintf(stderr, "insert: %s\n", ll_future_errmsg(f));
    assert_int_equal(rc, 0);
    assert_string_equal(ll_pg_text(ll_pg_result_of(f), 0, 0), "-12");
    assert_string_equal(ll_pg_text(ll_pg_result_of(f), 0, 1), "v");
    ll_future_free(f);
    /* a float into numeric, NaN too; a bad enum label is the server's error */
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_text("sad", -1), ll_pg_param_null(),
                                         ll_pg_param_float8(2.25), ll_pg_param_null(),
                                         ll_pg_param_null(), ll_pg_param_int4(3),
                                         ll_pg_param_null()),
                         &to);
    assert_int_equal(ll_await(f), 0);
    assert_string_equal(ll_pg_text(ll_pg_result_of(f), 0, 0), "2.25");
    ll_future_free(f);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_text("happy", -1), ll_pg_param_null(),
                                         ll_pg_param_numeric("NaN"), ll_pg_param_null(),
                                         ll_pg_param_null(), ll_pg_param_null(),
                                         ll_pg_param_null()),
                         &to);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f), "22P02"); /* invalid input value for enum */
    ll_future_free(f);
    /* out of range for the statement's int2 / float4; bytes for text refused */
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_null(), ll_pg_param_null(), ll_pg_param_null(),
                                         ll_pg_param_null(), ll_pg_param_null(), ll_pg_param_null(),
                                         ll_pg_param_int4(40000)),
                         NULL);
    assert_int_equal(ll_await(f), LL_ERANGE);
    assert_non_null(strstr(ll_future_errmsg(f), "parameter $7"));
    ll_future_free(f);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_null(), ll_pg_param_null(), ll_pg_param_null(),
                                         ll_pg_param_null(), ll_pg_param_null(),
                                         ll_pg_param_float8(1e300), ll_pg_param_null()),
                         NULL);
    assert_int_equal(ll_await(f), LL_ERANGE);
    ll_future_free(f);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_bytea("ab", 2), ll_pg_param_null(),
                                         ll_pg_param_null(), ll_pg_param_null(), ll_pg_param_null(),
                                         ll_pg_param_null(), ll_pg_param_null()),
                         NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM conv"), 2);
    /* the composite came back whole: the hostile text is one field */
    ll_pg_result *r = pgt_q(c, "SELECT (p::spair).b FROM conv WHERE p IS NOT NULL");
    assert_string_equal(ll_pg_text(r, 0, 0), hostile);
    ll_pg_result_free(r);
    ll_pg_stmt_free(s);

    /* explicit parameter types: the server would infer text for a bare $1 */
    unsigned types[] = {20};
    ll_pg_prepare_opts po = {.ntypes = 1, .types = types};
    s = prepare(c, "SELECT $1", &po);
    assert_int_equal(ll_pg_stmt_param_type(s, 0), 20);
    assert_int_equal(ll_pg_stmt_coltype(s, 0), 20);
    f = ll_pg_stmt_fetchval(s, LL_PG_PARAMS(ll_pg_param_int2(-3)));
    assert_int_equal(ll_await(f), 0);
    int64_t v;
    assert_int_equal(ll_pg_get_int8(ll_pg_result_of(f), 0, 0, &v), 0);
    assert_int_equal(v, -3);
    ll_future_free(f);
    ll_pg_stmt_free(s);
    ll_pg_prepare_opts bad = {.ntypes = 1, .types = NULL};
    f = ll_pg_prepare(c, "SELECT $1", &bad);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    pgt_ok(c, "DROP TYPE spair");
    pgt_ok(c, "DROP TYPE smood");
    ll_pg_close(c);
    return 0;
}

/* Prepare errors are the server's; the connection goes on. */
static int t_prepare_errors(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_future *f1 = ll_pg_prepare(c, "SELEC 1", NULL);
    ll_future *f2 = ll_pg_prepare(c, "SELECT * FROM no_such_table_here", NULL);
    ll_future *f3 = ll_pg_query(c, "SELECT 3", 0); /* pipelined behind them, unaffected */
    assert_int_equal(ll_await(f1), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f1), "42601");
    assert_int_equal(ll_await(f2), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f2), "42P01");
    assert_null(ll_pg_stmt_of(f2));
    assert_int_equal(ll_await(f3), 0);
    assert_string_equal(ll_pg_text(ll_pg_result_of(f3), 0, 0), "3");
    ll_future_free(f1);
    ll_future_free(f2);
    ll_future_free(f3);
    assert_int_equal(count_prepared(c), 0);
    f1 = ll_pg_prepare(NULL, "SELECT 1", NULL);
    assert_int_equal(ll_await(f1), LL_EINVAL);
    ll_future_free(f1);
    /* a prepare future freed without taking the statement frees (and deallocates) it */
    f1 = ll_pg_prepare(c, "SELECT 1", NULL);
    assert_int_equal(ll_await(f1), 0);
    assert_int_equal(count_prepared(c), 1);
    ll_future_free(f1);
    assert_int_equal(count_prepared(c), 0);
    ll_pg_close(c);
    return 0;
}

/* A statement never runs on a session it was not prepared on, and never silently changes. */
static int t_stale(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE st (a int)");
    pgt_ok(c, "INSERT INTO st VALUES (1)");
    ll_pg_stmt *s = prepare(c, "SELECT * FROM st", NULL);
    ll_pg_stmt *s2 = prepare(c, "SELECT 2", NULL);
    assert_int_equal(ll_pg_stmt_cols(s), 1);
    /* the table changes shape: the statement fails (0A000) instead of returning other columns */
    pgt_ok(c, "ALTER TABLE st ADD COLUMN b text");
    ll_future *f = ll_pg_stmt_query(s, 0, NULL, NULL);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f), "0A000");
    ll_future_free(f);
    /* deallocated by hand: "does not exist", never another statement */
    pgt_ok(c, "DEALLOCATE ALL");
    ll_pg_stmt *s3 = prepare(c, "SELECT 3", NULL); /* a new name, not the old one reused */
    f = ll_pg_stmt_query(s2, 0, NULL, NULL);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f), "26000");
    ll_future_free(f);
    f = ll_pg_stmt_fetchval(s3, 0, NULL);
    assert_int_equal(ll_await(f), 0);
    int32_t v;
    assert_int_equal(ll_pg_get_int4(ll_pg_result_of(f), 0, 0, &v), 0);
    assert_int_equal(v, 3);
    ll_future_free(f);
    /* inside a transaction: the executions run in it */
    ll_pg_stmt *ins = prepare(c, "INSERT INTO st (a) VALUES ($1)", NULL);
    ll_future *b = ll_pg_begin(c, NULL);
    assert_int_equal(ll_await(b), 0);
    ll_pg_tx *tx = ll_future_value(b);
    f = ll_pg_stmt_query(ins, LL_PG_PARAMS(ll_pg_param_int4(9)), NULL);
    assert_int_equal(ll_await(f), 0);
    assert_int_equal(ll_pg_result_affected(ll_pg_result_of(f)), 1);
    ll_future_free(f);
    ll_pg_stmt_free(ins); /* its DEALLOCATE waits for the transaction's end, outside it */
    f = ll_pg_rollback(tx);
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    ll_future_free(b);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM st"), 1);
    /* the connection closes: its statements fail with LL_ECLOSED, and are only freed */
    ll_pg_close(c);
    assert_null(ll_pg_stmt_conn(s));
    f = ll_pg_stmt_query(s3, 0, NULL, NULL);
    assert_int_equal(ll_await(f), LL_ECLOSED);
    assert_non_null(strstr(ll_future_errmsg(f), "closed"));
    ll_future_free(f);
    ll_pg_stmt_free(s);
    ll_pg_stmt_free(s2);
    ll_pg_stmt_free(s3);
    return 0;
}

/* A deadline on an execution: back on time, the statement and the connection still usable; a
 * cancelled prepare settles at once. */
static int t_deadline(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_stmt *s = prepare(c, "SELECT pg_sleep($1)", NULL);
    assert_int_equal(ll_pg_stmt_param_type(s, 0), 701);
    ll_future *f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int4(10)), NULL);
    ll_time t0 = ll_now();
    assert_int_equal(ll_await_timeout(f, 0.3), LL_ETIMEDOUT);
    assert_true(ll_now() - t0 < 0.3 + 1.0); /* generous: a loaded machine, sanitizers */
    ll_future_free(f);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_float8(0.01)), NULL);
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    f = ll_pg_prepare(c, "SELECT 1", NULL);
    ll_future_cancel(f);
    assert_int_equal(ll_await(f), LL_ECANCELED);
    ll_future_free(f);
    assert_int_equal(pgt_int(c, "SELECT 4"), 4);
    ll_pg_stmt_free(s);
    ll_pg_close(c);
    pgt_settle();
    return 0;
}

/* With batch_sync, executions share Syncs; a failing one makes its neighbours run again by
 * themselves, still by the statement's name: each gets its own outcome. */
static int t_batch(void *arg) {
    (void)arg;
    ll_pg_opts co = {.batch_sync = true};
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, &co);
    assert_int_equal(ll_await(cf), 0);
    ll_pg_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    ll_pg_stmt *s = prepare(c, "SELECT 60 / $1::int4", NULL);
    ll_future *fs[40];
    for (int i = 0; i < 40; i++)
        fs[i] = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int4(i % 5)), NULL);
    for (int i = 0; i < 40; i++) {
        int rc = ll_await(fs[i]);
        if (i % 5 == 0) {
            assert_int_equal(rc, LL_EPG_SERVER);
            assert_string_equal(ll_pg_error_sqlstate(fs[i]), "22012");
        } else {
            assert_int_equal(rc, 0);
            int32_t v;
            assert_int_equal(ll_pg_get_int4(ll_pg_result_of(fs[i]), 0, 0, &v), 0);
            assert_int_equal(v, 60 / (i % 5));
        }
        ll_future_free(fs[i]);
    }
    assert_int_equal(count_prepared(c), 1);
    ll_pg_stmt_free(s);
    ll_pg_close(c);
    return 0;
}

static ll_pg_conn *hold_conn(ll_pg_pool *p) {
    ll_future *a = ll_pg_pool_acquire(p);
    assert_int_equal(ll_await(a), 0);
    ll_pg_conn *c = ll_future_value(a);
    ll_future_free(a);
    return c;
}

/* Statements on a pool: one prepared on a lent connection ends with the lend; a pool's runs on
 * any connection, concurrently, and gives each back. */
static int t_pool(void *arg) {
    (void)arg;
    ll_pg_pool_opts po = {.max_size = 3};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &po);
    assert_non_null(p);
    ll_future *a = ll_pg_pool_acquire(p);
    assert_int_equal(ll_await(a), 0);
    ll_pg_conn *c = ll_future_value(a);
    ll_future_free(a);
    ll_pg_stmt *cs = prepare(c, "SELECT pg_backend_pid()", NULL);
    ll_pg_pool_release(p, c);
    assert_null(ll_pg_stmt_conn(cs));
    ll_future *f = ll_pg_stmt_query(cs, 0, NULL, NULL);
    assert_int_equal(ll_await(f), LL_ESTATE);
    assert_non_null(strstr(ll_future_errmsg(f), "given back to its pool"));
    ll_future_free(f);
    ll_pg_stmt_free(cs);
    /* the reset deallocated its server statement */
    a = ll_pg_pool_acquire(p);
    assert_int_equal(ll_await(a), 0);
    c = ll_future_value(a);
    ll_future_free(a);
    assert_int_equal(count_prepared(c), 0);
    ll_pg_pool_release(p, c);

    f = ll_pg_pool_prepare(p, "SELECT $1::int8 * 2 AS twice, pg_backend_pid()", NULL);
    assert_int_equal(ll_await(f), 0);
    ll_pg_stmt *s = ll_future_take(f);
    ll_future_free(f);
    assert_null(ll_pg_stmt_conn(s));
    assert_int_equal(ll_pg_stmt_param_type(s, 0), 20);
    assert_string_equal(ll_pg_stmt_colname(s, 0), "twice");
    ll_future *fs[30];
    for (int i = 0; i < 30; i++)
        fs[i] = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int4(i)), NULL);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(ll_await(fs[i]), 0);
        int64_t v;
        assert_int_equal(ll_pg_get_int8(ll_pg_result_of(fs[i]), 0, 0, &v), 0);
        assert_int_equal(v, 2 * i);
        ll_future_free(fs[i]);
    }
    f = ll_pg_stmt_fetchval(s, LL_PG_PARAMS(ll_pg_param_text("x", -1)));
    assert_int_equal(ll_await(f), LL_EPG_SERVER); /* 'x' is no int8: the server says so */
    ll_future_free(f);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_bool(true)), NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    ll_pg_pool_stats st;
    for (int i = 0; i < 500; i++) { /* the last release's reset runs after the query settled */
        ll_pg_pool_get_stats(p, &st);
        if (st.in_use == 0 && st.idle == st.open) break;
        ll_sleep(0.01);
    }
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.idle, st.open);
    /* each connection prepared it at most once in its cache, under the statement's types (the
     * pool may have made a connection it then did not need: at least one has it) */
    ll_pg_conn *cs3[3];
    int64_t total = 0;
    size_t open = 3; /* take all the pool may have (it may have made some it then did not use) */
    for (size_t i = 0; i < open; i++) {
        a = ll_pg_pool_acquire(p);
        assert_int_equal(ll_await(a), 0);
        cs3[i] = ll_future_value(a);
        ll_future_free(a);
        ll_pg_result *r = pgt_q(cs3[i], "SELECT count(*) FROM pg_prepared_statements WHERE "
                                        "statement LIKE 'SELECT $1::int8 * 2%'");
        int64_t n;
        assert_int_equal(ll_pg_int64(r, 0, 0, &n), 0);
        assert_true(n <= 1);
        total += n;
        ll_pg_result_free(r);
    }
    assert_true(total >= 1);
    for (size_t i = 0; i < open; i++) ll_pg_pool_release(p, cs3[i]);
    /* a pool statement outlives its pool: later calls fail clearly */
    f = ll_pg_pool_prepare(p, "SELEC", NULL);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    ll_future_free(f);
    ll_pg_pool_free(p);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_int8(1)), NULL);
    assert_int_equal(ll_await(f), LL_EPOOLCLOSED);
    ll_future_free(f);
    ll_pg_stmt_free(s);

    /* unnamed_statements (PgBouncer): a pool's statement runs unnamed, nothing stays prepared */
    ll_pg_pool_opts uo = {.max_size = 1, .conn = {.unnamed_statements = true}};
    p = ll_pg_pool_new(pgt_server.conninfo, &uo);
    f = ll_pg_pool_prepare(p, "SELECT $1::int4 + 1", NULL);
    assert_int_equal(ll_await(f), 0);
    s = ll_future_take(f);
    ll_future_free(f);
    for (int i = 0; i < 3; i++) {
        f = ll_pg_stmt_fetchval(s, LL_PG_PARAMS(ll_pg_param_int8(i)));
        assert_int_equal(ll_await(f), 0);
        int32_t v;
        assert_int_equal(ll_pg_get_int4(ll_pg_result_of(f), 0, 0, &v), 0);
        assert_int_equal(v, i + 1);
        ll_future_free(f);
    }
    c = hold_conn(p);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM pg_prepared_statements"), 0);
    ll_pg_pool_release(p, c);
    ll_pg_stmt_free(s);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

PGT_TASK_TEST(basic)
PGT_TASK_TEST(conversions)
PGT_TASK_TEST(prepare_errors)
PGT_TASK_TEST(stale)
PGT_TASK_TEST(deadline)
PGT_TASK_TEST(batch)
PGT_TASK_TEST(pool)

int main(void) {
    const struct CMUnitTest tests[] = {PGT_TEST(test_basic),    PGT_TEST(test_conversions),
                                       PGT_TEST(test_prepare_errors), PGT_TEST(test_stale),
                                       PGT_TEST(test_deadline), PGT_TEST(test_batch),
                                       PGT_TEST(test_pool)};
    return PGT_RUN(tests);
}
