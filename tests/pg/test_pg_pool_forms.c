/*
 * test_pg_pool_forms.c — every query form on a pool against a real PostgreSQL (typed query,
 * fetchrow/fetchval, streamed rows, executemany, prepared statements) gives its connection back
 * on every path: success, a server error, a cancellation, a deadline, a failed acquire. After
 * each, the pool's counts are back where they were (nothing lent, nobody waiting, every open
 * connection idle), and the release hook ran once per use.
 */
#include "pgtest.h"

static int releases;

static ll_future *on_release(ll_pg_conn *c, void *arg) {
    (void)arg;
    releases++;
    return ll_pg_exec(c, "SELECT 1");
}

/* Wait (at most 5 s) for the pool to be at rest: nothing lent, nobody waiting, every open
 * connection idle (a release's reset runs after the call returned). Returns the idle count. */
static size_t at_rest(ll_pg_pool *p) {
    ll_pg_pool_stats st;
    for (int i = 0; i < 500; i++) {
        ll_pg_pool_get_stats(p, &st);
        if (st.in_use == 0 && st.waiting == 0 && st.idle == st.open) break;
        ll_sleep(0.01);
    }
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.idle, st.open);
    return st.idle;
}

/* Wait (at most 5 s; the machine is loaded) until the pool has `in_use` connections lent and
 * `waiting` callers waiting, and assert it. */
static void wait_counts(ll_pg_pool *p, size_t in_use, size_t waiting) {
    ll_pg_pool_stats st;
    for (int i = 0; i < 500; i++) {
        ll_pg_pool_get_stats(p, &st);
        if (st.in_use == in_use && st.waiting == waiting) break;
        ll_sleep(0.01);
    }
    assert_int_equal(st.in_use, in_use);
    assert_int_equal(st.waiting, waiting);
}

static ll_pg_pool *new_pool(unsigned max, double acquire_timeout) {
    ll_pg_pool_opts o = {.max_size = max, .acquire_timeout = acquire_timeout,
                         .on_release = on_release};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &o);
    assert_non_null(p);
    return p;
}

static ll_pg_conn *hold(ll_pg_pool *p) {
    ll_future *a = ll_pg_pool_acquire(p);
    assert_int_equal(ll_await(a), 0);
    ll_pg_conn *c = ll_future_value(a);
    ll_future_free(a);
    return c;
}

static int t_query_forms(void *arg) {
    (void)arg;
    releases = 0;
    ll_pg_pool *p = new_pool(2, 0);
    ll_future *f = ll_pg_pool_query_typed(p, "SELECT 1", 0, NULL, NULL);
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    size_t base = at_rest(p);
    assert_int_equal(base, 1);
    int uses = 1;

    /* success and a server error */
    f = ll_pg_pool_query_typed(p, "SELECT $1::int8 * 3", LL_PG_PARAMS(ll_pg_param_int8(14)), NULL);
    assert_int_equal(ll_await(f), 0);
    int64_t v;
    assert_int_equal(ll_pg_get_int8(ll_pg_result_of(f), 0, 0, &v), 0);
    assert_int_equal(v, 42);
    ll_future_free(f);
    uses++;
    assert_int_equal(at_rest(p), base);
    f = ll_pg_pool_query_typed(p, "SELECT 1 / $1", LL_PG_PARAMS(ll_pg_param_int4(0)), NULL);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    assert_string_equal(ll_pg_error_sqlstate(f), "22012");
    ll_future_free(f);
    uses++;
    assert_int_equal(at_rest(p), base);

    /* fetchrow / fetchval: a row, no row */
    f = ll_pg_pool_fetchval(p, "SELECT $1::text", LL_PG_PARAMS(ll_pg_param_text("v", -1)));
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    f = ll_pg_pool_fetchrow(p, "SELECT 1 WHERE false", 0, NULL);
    assert_int_equal(ll_await(f), LL_ENOENT);
    ll_future_free(f);
    uses += 2;
    assert_int_equal(at_rest(p), base);

    /* a script: the last statement's result; the first error stops it */
    f = ll_pg_pool_exec(p, "CREATE TEMP TABLE pf_x (a int); INSERT INTO pf_x VALUES (1), (2); "
                           "SELECT count(*) FROM pf_x");
    assert_int_equal(ll_await(f), 0);
    assert_string_equal(ll_pg_text(ll_pg_result_of(f), 0, 0), "2");
    ll_future_free(f);
    f = ll_pg_pool_exec(p, "SELECT 1; SELECT 1 / 0; SELECT 2");
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    ll_future_free(f);
    uses += 2;
    assert_int_equal(at_rest(p), base);
    f = ll_pg_pool_exec(NULL, "SELECT 1");
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);

    /* a refused parameter: failed before any acquire */
    ll_pg_pool_stats st0, st1;
    ll_pg_pool_get_stats(p, &st0);
    f = ll_pg_pool_query_typed(p, "SELECT $1", LL_PG_PARAMS(ll_pg_param_text("a\0b", 3)), NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    ll_future_free(f);
    ll_pg_pool_get_stats(p, &st1);
    assert_int_equal(st1.acquired, st0.acquired);

    /* cancelled while the query runs, and cut by a deadline: the connection comes back (or is
     * closed: a query still being stopped is never lent) */
    f = ll_pg_pool_query_typed(p, "SELECT pg_sleep(10)", 0, NULL, NULL);
    ll_sleep(0.1);
    ll_future_cancel(f);
    assert_int_equal(ll_await(f), LL_ECANCELED);
    ll_future_free(f);
    at_rest(p);
    f = ll_pg_pool_fetchval(p, "SELECT pg_sleep(10)", 0, NULL);
    ll_time t0 = ll_now();
    assert_int_equal(ll_await_timeout(f, 0.2), LL_ETIMEDOUT);
    assert_true(ll_now() - t0 < 0.2 + 1.0); /* generous: a loaded machine, sanitizers */
    ll_future_free(f);
    at_rest(p);

    /* cancelled while waiting for a connection: nobody left waiting, nothing lent */
    ll_pg_conn *c1 = hold(p), *c2 = hold(p);
    f = ll_pg_pool_query_typed(p, "SELECT 1", 0, NULL, NULL);
    wait_counts(p, 2, 1);
    ll_future_cancel(f);
    assert_int_equal(ll_await(f), LL_ECANCELED);
    ll_future_free(f);
    ll_pg_pool_get_stats(p, &st0);
    assert_int_equal(st0.waiting, 0);
    ll_pg_pool_release(p, c1);
    ll_pg_pool_release(p, c2);
    at_rest(p);
    /* and everything works after all that */
    f = ll_pg_pool_fetchval(p, "SELECT 7", 0, NULL);
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    at_rest(p);
    ll_pg_pool_free(p);
    pgt_settle();
    assert_true(releases >= uses); /* every give-back ran the hook (the hold()s too) */
    return 0;
}

static int t_rows_forms(void *arg) {
    (void)arg;
    releases = 0;
    ll_pg_pool *p = new_pool(1, 1.5);
    ll_future *f = ll_pg_pool_query_typed(p, "SELECT 1", 0, NULL, NULL);
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    size_t base = at_rest(p);

    /* read to the end: the connection is held for the stream, given back at close */
    ll_pg_pool_rows *it;
    ll_pg_rows_opts o = {.chunk_rows = 1000};
    ll_pg_param n = ll_pg_param_int8(10000);
    assert_int_equal(ll_pg_pool_rows_open(&it, p, "SELECT g FROM generate_series(1, $1) g", 1, &n,
                                          &o),
                     0);
    ll_pg_pool_stats st;
    ll_pg_pool_get_stats(p, &st);
    assert_int_equal(st.in_use, 1);
    int64_t count = 0, last = 0;
    ll_pg_result *r;
    int rc;
    while ((rc = ll_pg_pool_rows_next(it, &r)) == 0) {
        for (int i = 0; i < ll_pg_result_rows(r); i++) {
            assert_int_equal(ll_pg_get_int8(r, i, 0, &last), 0);
            count++;
        }
        ll_pg_result_free(r);
    }
    assert_int_equal(rc, LL_EOF);
    assert_int_equal(count, 10000);
    assert_int_equal(last, 10000);
    assert_int_equal(ll_pg_pool_rows_close(it), 0);
    assert_int_equal(at_rest(p), base);

    /* closed early, after one chunk */
    assert_int_equal(ll_pg_pool_rows_open(&it, p, "SELECT g FROM generate_series(1, $1) g", 1, &n,
                                          &o),
                     0);
    assert_int_equal(ll_pg_pool_rows_next(it, &r), 0);
    ll_pg_result_free(r);
    assert_int_equal(ll_pg_pool_rows_close(it), 0);
    assert_int_equal(at_rest(p), base);

    /* a server error at open */
    rc = ll_pg_pool_rows_open(&it, p, "SELECT * FROM pool_forms_no_table", 0, NULL, NULL);
    assert_int_equal(rc, LL_EPG_SERVER);
    assert_non_null(strstr(ll_pg_pool_rows_errmsg(it), "pool_forms_no_table"));
    assert_int_equal(ll_pg_pool_rows_next(it, &r), LL_ESTATE);
    ll_pg_pool_rows_close(it);
    assert_int_equal(at_rest(p), base);

    /* a deadline in the middle of the stream */
    o.chunk_rows = 100;
    assert_int_equal(ll_pg_pool_rows_open(&it, p,
                                          "SELECT g FROM generate_series(1, 1000) g "
                                          "WHERE g <= 300 OR pg_sleep(10) IS NOT NULL",
                                          0, NULL, &o),
                     0);
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.5));
    ll_time t0 = ll_now();
    int got = 0;
    while ((rc = ll_pg_pool_rows_next(it, &r)) == 0) {
        got += ll_pg_result_rows(r);
        ll_pg_result_free(r);
    }
    assert_int_equal(ll_scope_exit(&s), LL_ETIMEDOUT);
    assert_true(rc == LL_ETIMEDOUT || rc == LL_ECANCELED);
    assert_int_equal(got, 300);
    assert_true(ll_now() - t0 < 0.5 + 1.0); /* generous: a loaded machine, sanitizers */
    ll_pg_pool_rows_close(it);
    at_rest(p);

    /* no connection in time (acquire_timeout 1.5 s: a connect on the loaded machine may take
     * most of a second): *out still set, the reason kept, nothing to give back */
    ll_pg_conn *c = hold(p);
    rc = ll_pg_pool_rows_open(&it, p, "SELECT 1", 0, NULL, NULL);
    assert_int_equal(rc, LL_ETIMEDOUT);
    assert_non_null(it);
    assert_true(strlen(ll_pg_pool_rows_errmsg(it)) > 0);
    fprintf(stderr, "acquire timed out: %s\n", ll_pg_pool_rows_errmsg(it));
    assert_int_equal(ll_pg_pool_rows_close(it), 0);
    ll_pg_pool_release(p, c);
    at_rest(p);
    assert_int_equal(ll_pg_pool_rows_open(NULL, p, "SELECT 1", 0, NULL, NULL), LL_EINVAL);
    assert_int_equal(ll_pg_pool_rows_close(NULL), 0);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

/* A task streaming from the pool is cancelled: it closes its stream, the connection comes back. */
static int streamer(void *arg) {
    ll_pg_pool *p = arg;
    ll_pg_pool_rows *it;
    ll_pg_rows_opts o = {.chunk_rows = 10};
    int rc = ll_pg_pool_rows_open(&it, p,
                                  "SELECT g FROM generate_series(1, 100) g "
                                  "WHERE g <= 10 OR pg_sleep(10) IS NOT NULL",
                                  0, NULL, &o);
    ll_pg_result *r;
    while (rc == 0 && (rc = ll_pg_pool_rows_next(it, &r)) == 0) ll_pg_result_free(r);
    ll_pg_pool_rows_close(it);
    return rc;
}

static int t_rows_cancel(void *arg) {
    (void)arg;
    ll_pg_pool *p = new_pool(2, 0);
    ll_future *t = ll_spawn(streamer, p);
    wait_counts(p, 1, 0);
    ll_sleep(0.1); /* into the stream's slow rows */
    ll_future_cancel(t);
    int rc = ll_await(t);
    assert_true(rc == LL_ECANCELED);
    ll_future_free(t);
    at_rest(p);
    ll_future *f = ll_pg_pool_fetchval(p, "SELECT 1", 0, NULL);
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    at_rest(p);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

#define NROWS 1000

static int t_many_forms(void *arg) {
    (void)arg;
    ll_pg_pool *p = new_pool(2, 1.5);
    ll_future *f = ll_pg_pool_exec(p, "DROP TABLE IF EXISTS pool_forms_t; "
                                      "CREATE TABLE pool_forms_t (id int8 PRIMARY KEY, name text)");
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    size_t base = at_rest(p);
    static char names[NROWS][16];
    ll_pg_param *params = calloc(2 * NROWS, sizeof *params);
    for (int i = 0; i < NROWS; i++) {
        snprintf(names[i], sizeof names[i], "n%d", i);
        params[2 * i] = ll_pg_param_int8(i);
        params[2 * i + 1] = ll_pg_param_text(names[i], -1);
    }
    ll_pg_many_error e;
    int rc = ll_pg_pool_executemany(p, "INSERT INTO pool_forms_t VALUES ($1, $2)", 2, NROWS, params,
                                    NULL, &e);
    assert_int_equal(rc, 0);
    assert_int_equal(e.code, 0);
    assert_int_equal(at_rest(p), base);

    /* a failing row in the middle: its index and SQLSTATE; without atomic the others stay */
    for (int i = 0; i < NROWS; i++) params[2 * i] = ll_pg_param_int8(NROWS + i);
    params[2 * 500] = ll_pg_param_int8(7); /* exists */
    rc = ll_pg_pool_executemany(p, "INSERT INTO pool_forms_t VALUES ($1, $2)", 2, NROWS, params,
                                NULL, &e);
    assert_int_equal(rc, LL_EPG_SERVER);
    assert_int_equal(e.row, 500);
    assert_string_equal(e.sqlstate, "23505");
    assert_int_equal(at_rest(p), base);
    f = ll_pg_pool_fetchval(p, "SELECT count(*) FROM pool_forms_t", 0, NULL);
    assert_int_equal(ll_await(f), 0);
    int64_t n;
    assert_int_equal(ll_pg_get_int8(ll_pg_result_of(f), 0, 0, &n), 0);
    assert_int_equal(n, 2 * NROWS - 1);
    ll_future_free(f);
    /* atomic: nothing stays */
    for (int i = 0; i < NROWS; i++) params[2 * i] = ll_pg_param_int8(3 * NROWS + i);
    params[2 * 600] = ll_pg_param_int8(7);
    ll_pg_many_opts ao = {.atomic = true};
    rc = ll_pg_pool_executemany(p, "INSERT INTO pool_forms_t VALUES ($1, $2)", 2, NROWS, params,
                                &ao, &e);
    assert_int_equal(rc, LL_EPG_SERVER);
    if (e.row != 600) fprintf(stderr, "atomic: row %zu code %d: %s\n", e.row, e.code, e.message);
    assert_int_equal(e.row, 600);
    assert_int_equal(at_rest(p), base);
    f = ll_pg_pool_fetchval(p, "SELECT count(*) FROM pool_forms_t", 0, NULL);
    assert_int_equal(ll_await(f), 0);
    assert_int_equal(ll_pg_get_int8(ll_pg_result_of(f), 0, 0, &n), 0);
    assert_int_equal(n, 2 * NROWS - 1);
    ll_future_free(f);
    free(params);

    /* a deadline */
    ll_pg_param sp[20];
    for (int i = 0; i < 20; i++) sp[i] = ll_pg_param_float8(0.2);
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.5));
    ll_time t0 = ll_now();
    rc = ll_pg_pool_executemany(p, "SELECT pg_sleep($1)", 1, 20, sp, NULL, &e);
    assert_int_equal(ll_scope_exit(&s), LL_ETIMEDOUT);
    assert_true(rc == LL_ETIMEDOUT || rc == LL_ECANCELED);
    assert_true(ll_now() - t0 < 0.5 + 1.0); /* generous: a loaded machine, sanitizers */
    at_rest(p);

    /* no connection in time: reported as row 0 */
    ll_pg_conn *c1 = hold(p), *c2 = hold(p);
    rc = ll_pg_pool_executemany(p, "SELECT $1", 1, 1, sp, NULL, &e);
    assert_int_equal(rc, LL_ETIMEDOUT);
    assert_int_equal(e.code, LL_ETIMEDOUT);
    assert_int_equal(e.row, 0);
    assert_true(strlen(e.message) > 0);
    ll_pg_pool_release(p, c1);
    ll_pg_pool_release(p, c2);
    at_rest(p);
    assert_int_equal(ll_pg_pool_executemany(NULL, "SELECT 1", 0, 0, NULL, NULL, &e), LL_EINVAL);
    f = ll_pg_pool_query(p, "DROP TABLE pool_forms_t", 0);
    assert_int_equal(ll_await(f), 0);
    ll_future_free(f);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

/* Prepared statements on the pool: success, server error, cancel, deadline. */
static int t_stmt_forms(void *arg) {
    (void)arg;
    ll_pg_pool *p = new_pool(2, 0);
    ll_future *f = ll_pg_pool_prepare(p, "SELECT pg_sleep($1), $2::int4 AS v", NULL);
    assert_int_equal(ll_await(f), 0);
    ll_pg_stmt *s = ll_future_take(f);
    ll_future_free(f);
    size_t base = at_rest(p);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_float8(0), ll_pg_param_int8(5)), NULL);
    assert_int_equal(ll_await(f), 0);
    int32_t v;
    assert_int_equal(ll_pg_get_int4(ll_pg_result_of(f), 0, 1, &v), 0);
    assert_int_equal(v, 5);
    ll_future_free(f);
    assert_int_equal(at_rest(p), base);
    f = ll_pg_stmt_fetchrow(s, LL_PG_PARAMS(ll_pg_param_float8(-1), ll_pg_param_text("x", -1)));
    assert_int_equal(ll_await(f), LL_EPG_SERVER); /* 'x' is no int4 */
    ll_future_free(f);
    assert_int_equal(at_rest(p), base);
    f = ll_pg_stmt_query(s, LL_PG_PARAMS(ll_pg_param_float8(10), ll_pg_param_int4(1)), NULL);
    ll_sleep(0.1);
    ll_future_cancel(f);
    assert_int_equal(ll_await(f), LL_ECANCELED);
    ll_future_free(f);
    at_rest(p);
    f = ll_pg_stmt_fetchval(s, LL_PG_PARAMS(ll_pg_param_float8(10), ll_pg_param_int4(1)));
    assert_int_equal(ll_await_timeout(f, 0.2), LL_ETIMEDOUT);
    ll_future_free(f);
    at_rest(p);
    /* a pool prepare cancelled or failing gives its connection back too */
    f = ll_pg_pool_prepare(p, "SELECT * FROM pool_forms_nothing", NULL);
    assert_int_equal(ll_await(f), LL_EPG_SERVER);
    ll_future_free(f);
    at_rest(p);
    f = ll_pg_pool_prepare(p, "SELECT 1", NULL);
    ll_future_cancel(f);
    assert_int_equal(ll_await(f), LL_ECANCELED);
    ll_future_free(f);
    at_rest(p);
    ll_pg_stmt_free(s);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

PGT_TASK_TEST(query_forms)
PGT_TASK_TEST(rows_forms)
PGT_TASK_TEST(rows_cancel)
PGT_TASK_TEST(many_forms)
PGT_TASK_TEST(stmt_forms)

/* Outside a task the awaiting forms refuse at once. */
static void test_notask(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, NULL);
    ll_pg_pool_rows *it = (ll_pg_pool_rows *)&it;
    assert_int_equal(ll_pg_pool_rows_open(&it, p, "SELECT 1", 0, NULL, NULL), LL_ENOTASK);
    assert_null(it);
    assert_int_equal(ll_pg_pool_executemany(p, "SELECT 1", 0, 1, NULL, NULL, NULL), LL_ENOTASK);
    ll_pg_pool_free(p);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {PGT_TEST(test_query_forms), PGT_TEST(test_rows_forms),
                                       PGT_TEST(test_rows_cancel), PGT_TEST(test_many_forms),
                                       PGT_TEST(test_stmt_forms),  PGT_TEST(test_notask)};
    return PGT_RUN(tests);
}
