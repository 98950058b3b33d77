/*
 * test_pg_many.c — executemany against a real PostgreSQL: 10,000 rows pipelined, a failing row in
 * the middle reported with its index (atomic: nothing stays; not atomic: the others stay), a
 * parameter refused by the encoder mid-batch reported with its row, parameter types changing
 * between rows, a deadline cutting it with the connection reused, and the rows left after a
 * deadline each stopped by a cancel request (rows with a Sync each form one request).
 */
#include "pgtest.h"

#define NROWS 10000

static ll_pg_param *make_rows(int64_t *ids, char (*names)[24], int dup_at) {
    ll_pg_param *p = malloc(NROWS * 2 * sizeof *p);
    for (int i = 0; i < NROWS; i++) {
        ids[i] = i == dup_at ? 0 : i; /* a second 0: a unique violation at row dup_at */
        snprintf(names[i], 24, "name %d", i);
        p[2 * i] = ll_pg_param_int8(ids[i]);
        p[2 * i + 1] = ll_pg_param_text(names[i], -1);
    }
    return p;
}

static int64_t count_rows(ll_pg_conn *c) {
    return pgt_int(c, "SELECT count(*) FROM many_t");
}

static int t_many(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TABLE many_t (id int8 PRIMARY KEY, name text NOT NULL)");
    int64_t *ids = malloc(NROWS * sizeof *ids);
    char(*names)[24] = malloc(NROWS * sizeof *names);

    /* all good */
    ll_pg_param *p = make_rows(ids, names, -1);
    ll_pg_many_error e;
    int rc = ll_pg_executemany(c, "INSERT INTO many_t VALUES ($1, $2)", 2, NROWS, p, NULL, &e);
    if (rc) fprintf(stderr, "executemany: %s\n", e.message);
    assert_int_equal(rc, 0);
    assert_int_equal(e.code, 0);
    assert_int_equal(count_rows(c), NROWS);
    assert_int_equal(pgt_int(c, "SELECT sum(id) FROM many_t"), (int64_t)NROWS * (NROWS - 1) / 2);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM many_t WHERE name = 'name ' || id"), NROWS);
    pgt_ok(c, "TRUNCATE many_t");
    free(p);

    /* row 5000 fails; not atomic: the other rows stay */
    p = make_rows(ids, names, 5000);
    rc = ll_pg_executemany(c, "INSERT INTO many_t VALUES ($1, $2)", 2, NROWS, p, NULL, &e);
    assert_int_equal(rc, LL_EPG_SERVER);
    assert_int_equal(e.row, 5000);
    assert_string_equal(e.sqlstate, "23505");
    assert_non_null(strstr(e.message, "duplicate key"));
    assert_int_equal(count_rows(c), NROWS - 1);
    pgt_ok(c, "TRUNCATE many_t");

    /* atomic: nothing stays, the transaction is over */
    ll_pg_many_opts o = {.atomic = true, .window = 100};
    rc = ll_pg_executemany(c, "INSERT INTO many_t VALUES ($1, $2)", 2, NROWS, p, &o, &e);
    assert_int_equal(rc, LL_EPG_SERVER);
    assert_int_equal(e.row, 5000);
    assert_string_equal(e.sqlstate, "23505");
    assert_false(ll_pg_in_transaction(c));
    assert_int_equal(count_rows(c), 0);
    free(p);
    /* atomic and good */
    p = make_rows(ids, names, -1);
    rc = ll_pg_executemany(c, "INSERT INTO many_t VALUES ($1, $2)", 2, NROWS, p, &o, &e);
    assert_int_equal(rc, 0);
    assert_int_equal(count_rows(c), NROWS);
    free(p);
    /* zero rows, bad arguments */
    assert_int_equal(ll_pg_executemany(c, "SELECT 1", 0, 0, NULL, NULL, &e), 0);
    assert_int_equal(ll_pg_executemany(NULL, "SELECT 1", 0, 1, NULL, NULL, &e), LL_EINVAL);
    free(ids);
    free(names);
    ll_pg_close(c);
    return 0;
}

/* A deadline cuts it: back on time, the connection reused. */
static int t_many_deadline(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_param p[20];
    for (int i = 0; i < 20; i++) p[i] = ll_pg_param_float8(0.2);
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.5));
    ll_time t0 = ll_now();
    ll_pg_many_error e;
    int rc = ll_pg_executemany(c, "SELECT pg_sleep($1)", 1, 20, p, NULL, &e);
    double took = ll_now() - t0;
    assert_int_equal(ll_scope_exit(&s), LL_ETIMEDOUT);
    assert_true(rc == LL_ETIMEDOUT || rc == LL_ECANCELED);
    assert_true(e.row >= 1 && e.row < 5);
    assert_true(took < 0.5 + 1.0); /* generous: a loaded 2-core machine, sanitizers */
    assert_int_equal(pgt_int(c, "SELECT 3"), 3);
    ll_pg_close(c);
    return 0;
}

/* A row whose parameter cannot be encoded (a zero byte in text) in the middle of a batch: that
 * row is reported; not atomic: every other row stays; atomic: nothing does. Types that change
 * between rows (int4 then int8, NULLs) need another statement and still run in order. */
static int t_many_encode(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TABLE many_e (id int8, v text)");
    enum { N = 1000, BAD = 701 };
    ll_pg_param *p = malloc(N * 2 * sizeof *p);
    for (int i = 0; i < N; i++) {
        p[2 * i] = i < 300 ? ll_pg_param_int4(i) : ll_pg_param_int8(i);
        p[2 * i + 1] = i % 7 == 0 ? ll_pg_param_null() : ll_pg_param_text("v", -1);
    }
    p[2 * BAD + 1] = ll_pg_param_text("a\0b", 3);
    ll_pg_many_error e;
    int rc = ll_pg_executemany(c, "INSERT INTO many_e VALUES ($1, $2)", 2, N, p, NULL, &e);
    assert_int_equal(rc, LL_EINVAL);
    assert_int_equal(e.code, LL_EINVAL);
    assert_int_equal(e.row, BAD);
    assert_non_null(strstr(e.message, "row 701: parameter $2: text contains a zero byte"));
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM many_e"), N - 1);
    assert_int_equal(pgt_int(c, "SELECT sum(id) FROM many_e"), (int64_t)N * (N - 1) / 2 - BAD);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM many_e WHERE v IS NULL"), (N + 6) / 7);
    pgt_ok(c, "TRUNCATE many_e");
    ll_pg_many_opts o = {.atomic = true};
    rc = ll_pg_executemany(c, "INSERT INTO many_e VALUES ($1, $2)", 2, N, p, &o, &e);
    assert_int_equal(rc, LL_EINVAL);
    assert_int_equal(e.row, BAD);
    assert_false(ll_pg_in_transaction(c));
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM many_e"), 0);
    /* atomic and good, with the types changing: every row in order */
    p[2 * BAD + 1] = ll_pg_param_text("v", -1);
    rc = ll_pg_executemany(c, "INSERT INTO many_e VALUES ($1, $2)", 2, N, p, &o, &e);
    assert_int_equal(rc, 0);
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM many_e"), N);
    assert_int_equal(pgt_int(c, "SELECT sum(id) FROM many_e"), (int64_t)N * (N - 1) / 2);
    free(p);
    ll_pg_close(c);
    return 0;
}

/* Rows with a Sync each are one request: after a deadline, every row still to run is stopped by
 * a cancel request of its own. Were they left to run, the 10 s of rows would outlast
 * cancel_timeout (2 s here) and the connection would be closed; instead it is reused at once
 * and no row ran to its end. */
static int t_many_cancel_rows(void *arg) {
    (void)arg;
    ll_pg_opts co = {.cancel_timeout = 2};
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, &co);
    assert_int_equal(ll_await(cf), 0);
    ll_pg_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    pgt_ok(c, "CREATE TABLE many_s (id int8)");
    ll_pg_param p[10];
    for (int i = 0; i < 10; i++) p[i] = ll_pg_param_int8(i);
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.3));
    ll_pg_many_error e;
    int rc = ll_pg_executemany(c, "INSERT INTO many_s SELECT $1 FROM pg_sleep(1)", 1, 10, p, NULL,
                               &e);
    assert_int_equal(ll_scope_exit(&s), LL_ETIMEDOUT);
    assert_true(rc == LL_ETIMEDOUT || rc == LL_ECANCELED);
    assert_int_equal(e.row, 0);
    assert_int_equal(pgt_int(c, "SELECT 3"), 3); /* the connection survived cancel_timeout */
    assert_int_equal(pgt_int(c, "SELECT count(*) FROM many_s"), 0);
    ll_pg_close(c);
    return 0;
}

#define RUN(name) PGT_TASK_TEST(name) /* pgtest.h */
RUN(many)
RUN(many_deadline)
RUN(many_encode)
RUN(many_cancel_rows)

int main(void) {
    const struct CMUnitTest tests[] = {PGT_TEST(test_many), PGT_TEST(test_many_deadline),
                                       PGT_TEST(test_many_encode), PGT_TEST(test_many_cancel_rows)};
    return PGT_RUN(tests);
}
