/*
 * test_pg_pool_reset.c — the pool after misuse: an abandoned acquire does not starve it, a
 * password never appears in a message (pool key, timeouts, connect errors), a returned session is
 * like a fresh one (temp tables, PREPAREd statements, SET ROLE, settings, LISTEN, advisory
 * locks), a custom reset SQL (DISCARD ALL) keeps the statement cache coherent.
 */
#include "harness/faultproxy.h"
#include "pgtest.h"

static ll_pg_conn *acquire(ll_pg_pool *p) {
    ll_future *f = ll_pg_pool_acquire(p);
    ll_pg_conn *c = ll_await(f) == 0 ? ll_future_value(f) : NULL;
    if (!c) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return c;
}

/* ---- an abandoned acquire ---- */

static int t_abandoned_acquire(void *arg) {
    (void)arg;
    ll_pg_pool_opts po = {.max_size = 1, .acquire_timeout = 2};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &po);
    ll_pg_conn *c = acquire(p);
    LT_CHECK(c);
    /* a waiter whose caller walks away without waiting */
    ll_future *gone = ll_pg_pool_acquire(p);
    LT_CHECK(ll_future_get_state(gone) == LL_FUTURE_PENDING);
    ll_future_free(gone);
    /* a waiter cancelled just as the connection comes back */
    ll_future *late = ll_pg_pool_acquire(p);
    LT_CHECK(ll_pg_pool_release(p, c) == 0);
    ll_future_cancel(late);
    int rc = ll_await(late);
    if (rc == 0) ll_pg_pool_release(p, ll_future_value(late)); /* it won the race: give back */
    ll_future_free(late);
    /* the connection went to nobody else: the next caller gets it */
    for (int i = 0; i < 3; i++) {
        ll_time t0 = ll_now();
        ll_pg_conn *again = acquire(p);
        LT_CHECKF(again, "%s", lt_last_err);
        LT_CHECK(ll_now() - t0 < 1.5);
        LT_CHECK(pgt_int(again, "SELECT 1") == 1);
        LT_CHECK(ll_pg_pool_release(p, again) == 0);
    }
    ll_pg_pool_stats st;
    ll_pg_pool_get_stats(p, &st);
    LT_CHECK(st.open == 1 && st.waiting == 0);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

static void test_abandoned_acquire(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_abandoned_acquire, NULL);
    lt_teardown(&t);
}

/* ---- a password never printed ---- */

static int t_no_password(void *arg) {
    lt_proxy *px = arg;
    ll_pg_conn *admin = pgt_connect();
    ll_future *s = ll_pg_exec(admin, "DROP ROLE IF EXISTS " LT_PG_PW_ROLE "; CREATE ROLE "
                                     LT_PG_PW_ROLE " LOGIN PASSWORD 'right'");
    LT_CHECK(ll_await(s) == 0);
    ll_future_free(s);
    ll_pg_close(admin);
    char ci[512];
    /* a wrong password: the error names the user, never the password */
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=%s password=hunter2 dbname=postgres",
             pgt_server.port, LT_PG_PW_ROLE);
    ll_pg_pool_opts po = {.max_size = 1, .acquire_timeout = 10}; /* SCRAM is slow under valgrind */
    ll_pg_pool *p = ll_pg_pool_new(ci, &po);
    ll_future *f = ll_pg_pool_acquire(p);
    LT_CHECKF(ll_await(f) == LL_EPG_AUTH, "%s", ll_future_errmsg(f));
    LT_CHECKF(!strstr(ll_future_errmsg(f), "hunter2"), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    ll_pg_pool_free(p);
    /* nobody answers (the connect hangs): the pool's timeout names the server, not the secret */
    lt_proxy_set(px, &(lt_fault){.kind = LT_FAULT_BLACKHOLE});
    ll_sleep(0.2);
    snprintf(ci, sizeof ci,
             "host=127.0.0.1 port=%d user=%s password=hunter2 dbname=postgres connect_timeout=5",
             lt_proxy_port(px), LT_PG_PW_ROLE);
    po.acquire_timeout = 1;
    p = ll_pg_pool_new(ci, &po);
    f = ll_pg_pool_acquire(p);
    LT_CHECK(ll_await(f) == LL_ETIMEDOUT);
    LT_CHECKF(!strstr(ll_future_errmsg(f), "hunter2"), "%s", ll_future_errmsg(f));
    LT_CHECKF(strstr(ll_future_errmsg(f), "port="), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    ll_pg_pool_free(p);
    lt_proxy_set(px, NULL);
    /* a URI with the password in it */
    snprintf(ci, sizeof ci, "postgresql://%s:hunter2@127.0.0.1:%d/no_such_db", LT_PG_PW_ROLE,
             pgt_server.port);
    p = ll_pg_pool_new(ci, &po);
    f = ll_pg_pool_acquire(p);
    LT_CHECK(ll_await(f) != 0);
    LT_CHECKF(!strstr(ll_future_errmsg(f), "hunter2"), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

static void test_no_password(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_proxy *px = lt_proxy_start("127.0.0.1", pgt_server.port);
    assert_non_null(px);
    lt_run_checked(t.loop, t_no_password, px);
    lt_proxy_stop(px);
    lt_teardown(&t);
}

/* ---- a returned session is like a fresh one ---- */

static int64_t count(ll_pg_conn *c, const char *sql) {
    return pgt_int(c, sql);
}

static int dirty_the_session(ll_pg_conn *c) {
    ll_future *s = ll_pg_exec(c, "CREATE TEMP TABLE leftover (x int); "
                                 "PREPARE mine AS SELECT 42; "
                                 "SET work_mem = '7MB'; "
                                 "SET application_name = 'dirty'; "
                                 "LISTEN leftover_chan; "
                                 "SELECT pg_advisory_lock(4242); "
                                 "SET ROLE llpg_other");
    int rc = ll_await(s);
    if (rc) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(s));
    ll_future_free(s);
    return rc;
}

static int check_fresh(ll_pg_conn *c) {
    ll_pg_result *r = pgt_q(c, "SELECT current_user = session_user, current_setting('work_mem'), "
                               "current_setting('application_name')");
    LT_CHECK(strcmp(ll_pg_text(r, 0, 0), "t") == 0);
    LT_CHECKF(strcmp(ll_pg_text(r, 0, 1), "7MB") != 0, "work_mem %s", ll_pg_text(r, 0, 1));
    LT_CHECK(strcmp(ll_pg_text(r, 0, 2), "dirty") != 0);
    ll_pg_result_free(r);
    LT_CHECK(count(c, "SELECT count(*) FROM pg_class WHERE relname = 'leftover' AND "
                      "relpersistence = 't'") == 0);
    LT_CHECK(count(c, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'mine'") == 0);
    LT_CHECK(count(c, "SELECT count(*) FROM pg_listening_channels()") == 0);
    LT_CHECK(count(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                      "pid = pg_backend_pid()") == 0);
    return 0;
}

typedef struct {
    const char *reset_sql;
} reset_case;

static int t_fresh_session(void *arg) {
    reset_case *rc_ = arg;
    ll_pg_conn *admin = pgt_connect();
    ll_future *s = ll_pg_exec(admin, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE "
                                     "rolname = 'llpg_other') THEN CREATE ROLE llpg_other; END IF; "
                                     "END $$; GRANT llpg_other TO postgres");
    LT_CHECK(ll_await(s) == 0);
    ll_future_free(s);
    ll_pg_close(admin);
    ll_pg_pool_opts po = {.max_size = 1, .reset_sql = rc_->reset_sql};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &po);
    for (int round = 0; round < 3; round++) {
        ll_pg_conn *c = acquire(p);
        LT_CHECKF(c, "%s", lt_last_err);
        if (round > 0) LT_CHECK(check_fresh(c) == 0);
        /* a cached (named) statement the library prepared: it must keep working after a reset,
         * whatever the reset did to prepared statements */
        ll_future *q = ll_pg_query(c, "SELECT $1::int + 1", 1, "41");
        LT_CHECKF(ll_await(q) == 0, "%s", ll_future_errmsg(q));
        ll_future_free(q);
        LT_CHECKF(dirty_the_session(c) == 0, "%s", lt_last_err);
        LT_CHECK(ll_pg_pool_release(p, c) == 0);
    }
    ll_pg_pool_stats st;
    ll_pg_pool_get_stats(p, &st);
    LT_CHECK(st.created == 1); /* the same connection, reset each time */
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

static void test_fresh_session(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    reset_case rc = {NULL};
    lt_run_checked(t.loop, t_fresh_session, &rc);
    lt_teardown(&t);
}

static void test_custom_reset(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    reset_case rc = {"DISCARD ALL"};
    lt_run_checked(t.loop, t_fresh_session, &rc);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_abandoned_acquire),
        PGT_TEST(test_no_password),
        PGT_TEST(test_fresh_session),
        PGT_TEST(test_custom_reset),
    };
    return PGT_RUN(tests);
}
