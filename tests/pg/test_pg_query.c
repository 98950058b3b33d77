/*
 * test_pg_query.c — connecting, queries, parameters, results, errors, scripts, against a real
 * PostgreSQL started for this program.
 */
#include "pgtest.h"

/* ---- connect and a first query ---- */

static int t_basic(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    assert_true(ll_pg_is_ok(c));
    assert_true(ll_pg_server_version(c) >= 100000);
    assert_true(ll_pg_backend_pid(c) > 0);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", pgt_server.port);
    assert_string_equal(ll_pg_peer(c), want);

    ll_pg_result *r = pgt_q(c, "SELECT 1 AS one, 'two'::text AS two, NULL::int AS three, "
                               "2.5::float8 AS four, true AS five");
    assert_int_equal(ll_pg_result_rows(r), 1);
    assert_int_equal(ll_pg_result_cols(r), 5);
    assert_string_equal(ll_pg_result_colname(r, 1), "two");
    assert_int_equal(ll_pg_result_colindex(r, "four"), 3);
    assert_int_equal(ll_pg_result_colindex(r, "nope"), -1);
    assert_int_equal(ll_pg_result_coltype(r, 0), 23); /* int4 */
    int64_t i = 0;
    assert_int_equal(ll_pg_int64(r, 0, 0, &i), 0);
    assert_int_equal(i, 1);
    assert_string_equal(ll_pg_text(r, 0, 1), "two");
    assert_int_equal(ll_pg_len(r, 0, 1), 3);
    assert_true(ll_pg_isnull(r, 0, 2));
    assert_null(ll_pg_text(r, 0, 2));
    assert_int_equal(ll_pg_int64(r, 0, 2, &i), LL_ENOENT);
    double d = 0;
    assert_int_equal(ll_pg_double(r, 0, 3, &d), 0);
    assert_true(d == 2.5);
    bool b = false;
    assert_int_equal(ll_pg_bool(r, 0, 4, &b), 0);
    assert_true(b);
    assert_int_equal(ll_pg_int64(r, 0, 1, &i), LL_EINVAL); /* "two" is not a number */
    assert_int_equal(ll_pg_int64(r, 1, 0, &i), LL_ERANGE); /* no such row */
    assert_int_equal(ll_pg_int64(r, 0, 9, &i), LL_ERANGE);
    assert_int_equal(ll_pg_result_affected(r), 1);
    assert_string_equal(ll_pg_result_command(r), "SELECT 1");
    ll_pg_result_free(r);
    ll_pg_close(c);
    return 0;
}

static void test_basic(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_basic, NULL), 0);
    lt_teardown(&t);
}

/* ---- the Unix socket, and a URI ---- */

static int t_unix_and_uri(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect_to(pgt_server.unix_conninfo);
    assert_non_null(strstr(ll_pg_peer(c), ".s.PGSQL."));
    assert_int_equal(pgt_int(c, "SELECT 40 + 2"), 42);
    ll_pg_close(c);
    char uri[256];
    snprintf(uri, sizeof uri, "postgresql://postgres@127.0.0.1:%d/postgres?application_name=lltest",
             pgt_server.port);
    c = pgt_connect_to(uri);
    ll_pg_result *r = pgt_q(c, "SELECT current_setting('application_name')");
    assert_string_equal(ll_pg_text(r, 0, 0), "lltest");
    ll_pg_result_free(r);
    ll_pg_close(c);
    /* a host name goes through libloop's resolver and reaches libpq as hostaddr */
    snprintf(uri, sizeof uri, "host=localhost port=%d user=postgres dbname=postgres",
             pgt_server.port);
    ll_future *f = ll_pg_connect(uri, NULL);
    int rc = ll_await(f);
    if (rc == 0) {
        c = ll_future_take(f);
        assert_int_equal(pgt_int(c, "SELECT 7"), 7);
        ll_pg_close(c);
    } else {
        /* localhost may resolve to ::1 first, where this server does not listen: libpq then
         * tries the next address; only a resolver failure is an error here */
        fprintf(stderr, "localhost: %s\n", ll_future_errmsg(f));
        assert_int_not_equal(rc, LL_ENOTFOUND);
    }
    ll_future_free(f);
    return 0;
}

static void test_unix_and_uri(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_unix_and_uri, NULL), 0);
    lt_teardown(&t);
}

/* ---- parameters ---- */

static int t_params(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_future *f = ll_pg_query(c, "SELECT $1::int + $2::int, $3::text IS NULL, $4::text", 4, "40",
                               "2", NULL, "it's \"quoted\"");
    assert_int_equal(ll_await(f), 0);
    ll_pg_result *r = ll_future_value(f);
    int64_t v;
    bool isnull;
    assert_int_equal(ll_pg_int64(r, 0, 0, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(ll_pg_bool(r, 0, 1, &isnull), 0);
    assert_true(isnull);
    assert_string_equal(ll_pg_text(r, 0, 2), "it's \"quoted\"");
    ll_future_free(f);

    /* many parameters (more than the on-stack array of ll_pg_query) through queryv */
    const char *vals[40];
    char bufs[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(bufs[i], sizeof bufs[i], "%d", i);
        vals[i] = bufs[i];
    }
    char sql[1024] = "SELECT 0";
    for (int i = 1; i <= 40; i++) {
        char add[32];
        snprintf(add, sizeof add, "+$%d::int", i);
        strcat(sql, add);
    }
    f = ll_pg_queryv(c, sql, 40, vals);
    assert_int_equal(ll_await(f), 0);
    assert_int_equal(ll_pg_int64(ll_future_value(f), 0, 0, &v), 0);
    assert_int_equal(v, 780);
    ll_future_free(f);

    /* bad arguments fail the future, they do not crash */
    f = ll_pg_queryv(c, "SELECT 1", 2, NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    f = ll_pg_query(NULL, "SELECT 1", 0);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    ll_pg_close(c);
    return 0;
}

static void test_params(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_params, NULL), 0);
    lt_teardown(&t);
}

/* ---- bytea, binary-safe both ways ---- */

static int t_bytea(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE blobs (id int, b bytea)");
    unsigned char data[256];
    for (int i = 0; i < 256; i++) data[i] = (unsigned char)(255 - i); /* includes 0 and '\\' */
    const char *vals[2] = {"1", (const char *)data};
    int lens[2] = {0, (int)sizeof data};
    int fmts[2] = {0, 1};
    ll_future *f = ll_pg_query_params(c, "INSERT INTO blobs VALUES ($1, $2)", 2, vals, lens, fmts);
    if (ll_await(f)) fprintf(stderr, "insert: %s\n", ll_future_errmsg(f));
    assert_int_equal(ll_future_code(f), 0);
    assert_int_equal(ll_pg_result_affected(ll_future_value(f)), 1);
    ll_future_free(f);

    ll_pg_result *r = pgt_q(c, "SELECT b, length(b), '\\x00ff'::bytea FROM blobs WHERE id = 1");
    const uint8_t *got;
    size_t len;
    assert_int_equal(ll_pg_bytea(r, 0, 0, &got, &len), 0);
    assert_int_equal(len, sizeof data);
    assert_memory_equal(got, data, sizeof data);
    const uint8_t *again;
    assert_int_equal(ll_pg_bytea(r, 0, 0, &again, &len), 0);
    assert_ptr_equal(again, got); /* decoded once, kept by the result */
    int64_t n;
    assert_int_equal(ll_pg_int64(r, 0, 1, &n), 0);
    assert_int_equal(n, 256);
    assert_int_equal(ll_pg_bytea(r, 0, 2, &got, &len), 0);
    assert_int_equal(len, 2);
    assert_int_equal(got[0], 0);
    assert_int_equal(got[1], 255);
    ll_pg_result_free(r);

    /* the old escape output format decodes too */
    pgt_ok(c, "SET bytea_output = 'escape'");
    r = pgt_q(c, "SELECT b FROM blobs WHERE id = 1");
    assert_int_equal(ll_pg_bytea(r, 0, 0, &got, &len), 0);
    assert_int_equal(len, sizeof data);
    assert_memory_equal(got, data, sizeof data);
    ll_pg_result_free(r);
    ll_pg_close(c);
    return 0;
}

static void test_bytea(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_bytea, NULL), 0);
    lt_teardown(&t);
}

/* ---- server errors ---- */

static int t_errors(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE u (id int PRIMARY KEY)");
    pgt_ok(c, "INSERT INTO u VALUES (1)");
    ll_future *f = ll_pg_query(c, "INSERT INTO u VALUES ($1)", 1, "1");
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_true(ll_pg_is_unique_violation(f));
    assert_string_equal(ll_pg_error_sqlstate(f), "23505");
    assert_non_null(strstr(ll_pg_error_message(f), "duplicate key value"));
    assert_non_null(strstr(ll_pg_error_detail(f), "(id)=(1)"));
    assert_string_equal(ll_pg_error_field(f, 'n'), "u_pkey"); /* the constraint */
    const char *msg = ll_future_errmsg(f);
    char peer[64];
    snprintf(peer, sizeof peer, "postgres 127.0.0.1:%d: ERROR 23505: duplicate key", pgt_server.port);
    assert_non_null(strstr(msg, peer));
    assert_non_null(strstr(msg, "DETAIL: Key (id)=(1) already exists."));
    ll_future_free(f);

    /* a hint */
    f = ll_pg_query(c, "SELECT * FROM nosuchtable", 0);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f), "42P01");
    assert_false(ll_pg_is_unique_violation(f));
    assert_null(ll_pg_error_detail(f));
    ll_future_free(f);
    f = ll_pg_query(c, "SELECT lenght('x')", 0);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_non_null(ll_pg_error_hint(f));
    assert_non_null(strstr(ll_future_errmsg(f), "HINT: "));
    ll_future_free(f);

    /* the connection is fine afterwards */
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM u"), 1);
    /* error accessors on futures that did not fail that way */
    f = ll_pg_query(c, "SELECT 1", 0);
    assert_null(ll_pg_error_sqlstate(f)); /* pending */
    assert_int_equal(ll_await(f), 0);
    assert_null(ll_pg_error_sqlstate(f));
    ll_future_free(f);
    assert_null(ll_pg_error_sqlstate(NULL));
    ll_pg_close(c);
    return 0;
}

static void test_errors(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_errors, NULL), 0);
    lt_teardown(&t);
}

/* ---- scripts (simple protocol) mixed with pipelined queries ---- */

static int t_exec(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_future *before = ll_pg_query(c, "SELECT 1", 0);
    ll_future *script = ll_pg_exec(c, "CREATE TEMP TABLE s (x int); INSERT INTO s VALUES (1), (2);"
                                      " SELECT sum(x) FROM s");
    ll_future *after = ll_pg_query(c, "SELECT count(*) FROM s", 0);
    assert_int_equal(ll_await(script), 0);
    int64_t v;
    assert_int_equal(ll_pg_int64(ll_future_value(script), 0, 0, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(ll_await(before), 0);
    assert_int_equal(ll_await(after), 0);
    assert_int_equal(ll_pg_int64(ll_future_value(after), 0, 0, &v), 0);
    assert_int_equal(v, 2); /* ran after the script */
    ll_future_free(before);
    ll_future_free(script);
    ll_future_free(after);
    /* the first error stops a script */
    script = ll_pg_exec(c, "INSERT INTO s VALUES (3); SELECT 1/0; INSERT INTO s VALUES (4)");
    assert_int_equal(ll_await(script), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(script), "22012");
    ll_future_free(script);
    /* a script is one implicit transaction: the first insert was rolled back too */
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM s"), 2);
    ll_pg_close(c);
    return 0;
}

static void test_exec(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_exec, NULL), 0);
    lt_teardown(&t);
}

/* ---- the connection's future owns it until taken; close is safe with work pending ---- */

static int t_ownership(void *arg) {
    (void)arg;
    /* a connection nobody takes is closed with its future */
    ll_future *f = ll_pg_connect(pgt_server.conninfo, NULL);
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    /* closing with queries in flight fails them with LL_ECLOSED */
    ll_pg_conn *c = pgt_connect();
    ll_future *q1 = ll_pg_query(c, "SELECT pg_sleep(0.05)", 0);
    ll_future *q2 = ll_pg_query(c, "SELECT 2", 0);
    ll_pg_close(c);
    assert_int_equal(ll_await(q1), LL_ECLOSED);
    assert_int_equal(ll_await(q2), LL_ECLOSED);
    assert_non_null(strstr(ll_future_errmsg(q2), "connection closed"));
    ll_future_free(q1);
    ll_future_free(q2);
    ll_pg_close(NULL);
    /* cancelling a connect in progress */
    f = ll_pg_connect(pgt_server.conninfo, NULL);
    assert_int_equal(ll_future_cancel(f), 0);
    assert_int_equal(ll_await(f), LL_ECANCELED);
    ll_future_free(f);
    return 0;
}

static void test_ownership(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_ownership, NULL), 0);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_basic),  PGT_TEST(test_unix_and_uri), PGT_TEST(test_params),
        PGT_TEST(test_bytea),  PGT_TEST(test_errors),       PGT_TEST(test_exec),
        PGT_TEST(test_ownership),
    };
    return PGT_RUN(tests);
}
