/*
 * test_pg_copy_cancel.c — COPY given up half-way: a writer task cancelled without finishing sends
 * CopyFail and leaves the connection usable; a COPY TO abandoned after one chunk is cancelled on
 * the server instead of drained; ll_pg_copy_finish cut by a deadline leaks nothing; a second COPY
 * asked for while one is ending waits its turn like a query.
 */
#include "pgtest.h"

static ll_pg_copy *start_copy(ll_pg_conn *c, const char *sql) {
    ll_future *f = ll_pg_copy_start(c, sql);
    ll_pg_copy *cp = ll_await(f) == 0 ? ll_future_value(f) : NULL;
    if (!cp) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return cp;
}

/* ---- a writer cancelled without finishing ---- */

static int writer(void *arg) {
    ll_pg_conn *c = arg;
    ll_pg_copy *cp = start_copy(c, "COPY cc_in FROM STDIN");
    if (!cp) return -1;
    for (int i = 0;; i++) {
        char row[32];
        int n = snprintf(row, sizeof row, "%d\n", i);
        ll_future *w = ll_pg_copy_write(cp, row, (size_t)n);
        int rc = ll_await(w);
        ll_future_free(w);
        if (rc) return rc; /* cancelled: returns without ll_pg_copy_finish */
        if (i % 100 == 0 && ll_sleep(0.001)) return LL_ECANCELED;
    }
}

static int t_writer_cancelled(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE cc_in (x int)");
    ll_future *t = ll_spawn(writer, c);
    ll_sleep(0.2);
    ll_future_cancel(t);
    (void)ll_await(t);
    ll_future_free(t);
    /* CopyFail went out: the load is rolled back and the connection answers at once */
    ll_time t0 = ll_now();
    LT_CHECK(pgt_int(c, "SELECT count(*) FROM cc_in") == 0);
    LT_CHECKF(ll_now() - t0 < 2, "the next query waited %.3f s", ll_now() - t0);
    LT_CHECK(ll_pg_is_ok(c));
    /* and a new COPY works */
    ll_pg_copy *cp = start_copy(c, "COPY cc_in FROM STDIN");
    LT_CHECKF(cp, "%s", lt_last_err);
    ll_future *w = ll_pg_copy_write(cp, "1\n2\n", 4);
    LT_CHECK(ll_await(w) == 0);
    ll_future_free(w);
    ll_future *ff = ll_pg_copy_finish(cp, NULL);
    LT_CHECK(ll_await(ff) == 0);
    LT_CHECK(ll_pg_result_affected(ll_pg_result_of(ff)) == 2);
    ll_future_free(ff);
    ll_pg_close(c);
    return 0;
}

static void test_writer_cancelled(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_writer_cancelled, NULL);
    lt_teardown(&t);
}

/* ---- a COPY TO abandoned after one chunk ---- */

#define BIG_COPY                                                                                  \
    "COPY (SELECT a, b, 'some text to make rows longer' FROM generate_series(1, 10000) a, "      \
    "generate_series(1, 10000) b) TO STDOUT"

static int reader_one_chunk(void *arg) {
    ll_pg_conn *c = arg;
    /* 100 million rows (a join of two small series: nothing is materialised, the first rows
     * come at once); drained, they would take minutes */
    ll_pg_copy *cp = start_copy(c, BIG_COPY);
    if (!cp) return -1;
    ll_future *r = ll_pg_copy_read(cp);
    int rc = ll_await(r);
    ll_future_free(r);
    return rc; /* and gone, without finish */
}

/* How long "did not drain" may take: 3 s, or 10 s under valgrind (everything runs ~20x slower on a
 * loaded machine: finish plus the next query took 3.04 s there). Draining the 100 million rows would
 * take minutes either way, so the bound still tells the two apart. */
static double no_drain_bound(void) {
    return lt_under_valgrind() ? 10.0 : 3.0;
}

static int t_reader_abandoned(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_future *t = ll_spawn(reader_one_chunk, c);
    LT_CHECK(ll_await(t) == 0);
    ll_future_free(t);
    /* the server was asked to stop: the next query does not wait for gigabytes to be drained */
    ll_time t0 = ll_now();
    LT_CHECK(pgt_int(c, "SELECT 8") == 8);
    LT_CHECKF(ll_now() - t0 < no_drain_bound(), "the next query waited %.3f s", ll_now() - t0);
    /* finishing a COPY TO early does the same, and resolves */
    ll_pg_copy *cp = start_copy(c, BIG_COPY);
    LT_CHECKF(cp, "%s", lt_last_err);
    ll_future *r = ll_pg_copy_read(cp);
    LT_CHECK(ll_await(r) == 0);
    ll_future_free(r);
    t0 = ll_now();
    ll_future *ff = ll_pg_copy_finish(cp, NULL);
    LT_CHECKF(ll_await(ff) == 0, "%s", ll_future_errmsg(ff));
    ll_future_free(ff);
    LT_CHECK(pgt_int(c, "SELECT 9") == 9);
    LT_CHECKF(ll_now() - t0 < no_drain_bound(), "finish and the next query took %.3f s", ll_now() - t0);
    ll_pg_close(c);
    pgt_settle();
    return 0;
}

static void test_reader_abandoned(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_reader_abandoned, NULL);
    lt_teardown(&t);
}

/* ---- finish cut by a deadline leaks nothing ---- */

static int t_finish_deadline(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE cc_fin (x int)");
    for (int i = 0; i < 20; i++) {
        ll_pg_copy *cp = start_copy(c, "COPY cc_fin FROM STDIN");
        LT_CHECKF(cp, "%s", lt_last_err);
        ll_future *w = ll_pg_copy_write(cp, "1\n", 2);
        LT_CHECK(ll_await(w) == 0);
        ll_future_free(w);
        ll_future *ff = ll_pg_copy_finish(cp, NULL);
        int rc = ll_await_timeout(ff, 0); /* the deadline has passed already */
        LT_CHECK(rc == 0 || rc == LL_ETIMEDOUT);
        ll_future_free(ff);
    }
    /* every COPY ended in the background and the connection is usable */
    LT_CHECK(pgt_int(c, "SELECT 1") == 1);
    LT_CHECK(pgt_int(c, "SELECT count(*) FROM cc_fin") <= 20);
    ll_pg_close(c);
    pgt_settle();
    return 0;
}

static void test_finish_deadline(void **state) {
    (void)state;
    lt_track_begin();
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_finish_deadline, NULL);
    lt_teardown(&t);
    assert_int_equal(lt_track_end(), 0); /* (ASan and valgrind check libpq's memory) */
}

/* ---- a second COPY while one is ending ---- */

static int t_second_copy(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    pgt_ok(c, "CREATE TEMP TABLE cc_two (x int)");
    ll_pg_copy *cp = start_copy(c, "COPY cc_two FROM STDIN");
    LT_CHECKF(cp, "%s", lt_last_err);
    ll_future *w = ll_pg_copy_write(cp, "1\n2\n3\n", 6);
    LT_CHECK(ll_await(w) == 0);
    ll_future_free(w);
    ll_future *ff = ll_pg_copy_finish(cp, NULL); /* ending */
    ll_future *second = ll_pg_copy_start(c, "COPY cc_two TO STDOUT");
    LT_CHECK(ll_future_get_state(second) == LL_FUTURE_PENDING); /* queued, not LL_ESTATE */
    LT_CHECK(ll_await(ff) == 0);
    LT_CHECK(ll_pg_result_affected(ll_pg_result_of(ff)) == 3);
    ll_future_free(ff);
    LT_CHECKF(ll_await(second) == 0, "%s", ll_future_errmsg(second));
    ll_pg_copy *cp2 = ll_future_value(second);
    ll_future_free(second);
    LT_CHECK(!ll_pg_copy_is_in(cp2));
    size_t got = 0;
    for (;;) {
        ll_future *r = ll_pg_copy_read(cp2);
        int rc = ll_await(r);
        if (rc == 0) got += ((ll_pg_copy_data *)ll_future_value(r))->len;
        ll_future_free(r);
        if (rc) {
            LT_CHECK(rc == LL_EOF);
            break;
        }
    }
    LT_CHECK(got == 6);
    ff = ll_pg_copy_finish(cp2, NULL);
    LT_CHECK(ll_await(ff) == 0);
    ll_future_free(ff);
    LT_CHECK(pgt_int(c, "SELECT 2") == 2);
    ll_pg_close(c);
    return 0;
}

static void test_second_copy(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_second_copy, NULL);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_writer_cancelled),
        PGT_TEST(test_reader_abandoned),
        PGT_TEST(test_finish_deadline),
        PGT_TEST(test_second_copy),
    };
    return PGT_RUN(tests);
}
