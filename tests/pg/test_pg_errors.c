/*
 * test_pg_errors.c — errors keep what the server said: connect errors with their SQLSTATE and
 * fields (unknown database 3D000, unknown role 28000 as an authentication error), invalid
 * conninfo values as LL_EINVAL, a text parameter with a zero byte refused before anything is
 * sent, a notification resolved into an abandoned waiter not lost, a listener whose backend is
 * terminated told the server's reason (57P01).
 */
#include "pgtest.h"

static ll_future *connect_to(const char *fmt, const char *a) {
    char ci[512];
    snprintf(ci, sizeof ci, fmt, pgt_server.port, a);
    ll_future *f = ll_pg_connect(ci, NULL);
    (void)ll_await(f);
    return f;
}

static int t_connect_errors(void *arg) {
    (void)arg;
    ll_future *f = connect_to("host=127.0.0.1 port=%d user=postgres dbname=%s", "no_such_db");
    LT_CHECKF(ll_future_code(f) == LL_EPG_CONN, "%s", ll_future_errmsg(f));
    LT_CHECK(ll_pg_error_sqlstate(f) && strcmp(ll_pg_error_sqlstate(f), "3D000") == 0);
    LT_CHECK(ll_pg_error_message(f) && strstr(ll_pg_error_message(f), "no_such_db"));
    LT_CHECK(strstr(ll_future_errmsg(f), "3D000"));
    LT_CHECK(strstr(ll_future_errmsg(f), "127.0.0.1"));
    ll_future_free(f);

    f = connect_to("host=127.0.0.1 port=%d user=%s dbname=postgres", "no_such_role");
    LT_CHECKF(ll_future_code(f) == LL_EPG_AUTH, "%s", ll_future_errmsg(f));
    LT_CHECK(ll_pg_error_sqlstate(f) && strcmp(ll_pg_error_sqlstate(f), "28000") == 0);
    LT_CHECK(strstr(ll_future_errmsg(f), "no_such_role"));
    ll_future_free(f);

    /* values libpq itself refuses: the caller's mistake, LL_EINVAL, with libpq's reason */
    f = connect_to("host=127.0.0.1 port=%d user=postgres port=%s", "abc");
    LT_CHECKF(ll_future_code(f) == LL_EINVAL, "%s", ll_future_errmsg(f));
    LT_CHECK(strstr(ll_future_errmsg(f), "abc"));
    ll_future_free(f);
    f = connect_to("host=127.0.0.1 port=%d user=postgres sslmode=%s", "bogus");
    LT_CHECKF(ll_future_code(f) == LL_EINVAL, "%s", ll_future_errmsg(f));
    LT_CHECK(strstr(ll_future_errmsg(f), "bogus"));
    ll_future_free(f);
    f = connect_to("host=localhost port=%d user=postgres sslmode=%s", "bogus"); /* resolved */
    LT_CHECKF(ll_future_code(f) == LL_EINVAL, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return 0;
}

static void test_connect_errors(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_connect_errors, NULL);
    lt_teardown(&t);
}

static int t_text_param_nul(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    const char v[] = "abc\0def";
    const char *vals[1] = {v};
    int lens[1] = {7};
    ll_future *f = ll_pg_query_params(c, "SELECT $1::text", 1, vals, lens, NULL);
    LT_CHECKF(ll_future_code(f) == LL_EINVAL, "%s", ll_future_errmsg(f));
    LT_CHECK(strstr(ll_future_errmsg(f), "$1"));
    ll_future_free(f);
    int fmts[1] = {0};
    f = ll_pg_query_params(c, "SELECT $1::text", 1, vals, lens, fmts);
    LT_CHECK(ll_future_code(f) == LL_EINVAL);
    ll_future_free(f);
    /* a text value with a length and no terminator is sent exactly */
    char unterminated[3] = {'x', 'y', 'z'};
    const char *uv[1] = {unterminated};
    int ul[1] = {2};
    f = ll_pg_query_params(c, "SELECT $1::text", 1, uv, ul, NULL);
    LT_CHECK(ll_await(f) == 0);
    LT_CHECK(strcmp(ll_pg_text(ll_future_value(f), 0, 0), "xy") == 0);
    ll_future_free(f);
    /* nothing was sent for the refused ones: the connection is fine */
    LT_CHECK(pgt_int(c, "SELECT 4") == 4);
    ll_pg_close(c);
    return 0;
}

static void test_text_param_nul(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_text_param_nul, NULL);
    lt_teardown(&t);
}

static int t_abandoned_waiter(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_conn *sender = pgt_connect();
    ll_future *l = ll_pg_listen(c, "chan");
    LT_CHECK(ll_await(l) == 0);
    ll_future_free(l);
    /* a waiter whose caller dropped its future before anything arrived */
    ll_future *w = ll_pg_next_notification(c);
    LT_CHECK(ll_future_get_state(w) == LL_FUTURE_PENDING);
    ll_future_free(w);
    ll_future *n = ll_pg_notify(sender, "chan", "first");
    LT_CHECK(ll_await(n) == 0);
    ll_future_free(n);
    n = ll_pg_notify(sender, "chan", "second");
    LT_CHECK(ll_await(n) == 0);
    ll_future_free(n);
    /* both arrive, in order: the first one was not swallowed by the abandoned waiter */
    const char *want[2] = {"first", "second"};
    for (int i = 0; i < 2; i++) {
        w = ll_pg_next_notification(c);
        LT_CHECK(ll_await_timeout(w, 5) == 0);
        ll_pg_notification *note = ll_future_value(w);
        LT_CHECKF(strcmp(note->payload, want[i]) == 0, "got %s", note->payload);
        ll_future_free(w);
    }
    ll_pg_close(c);
    ll_pg_close(sender);
    return 0;
}

static void test_abandoned_waiter(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_abandoned_waiter, NULL);
    lt_teardown(&t);
}

static int t_listener_terminated(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_conn *admin = pgt_connect();
    ll_future *l = ll_pg_listen(c, "chan2");
    LT_CHECK(ll_await(l) == 0);
    ll_future_free(l);
    ll_future *w = ll_pg_next_notification(c);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", ll_pg_backend_pid(c));
    ll_future *k = ll_pg_query(admin, "SELECT pg_terminate_backend($1::int)", 1, pid);
    LT_CHECK(ll_await(k) == 0);
    ll_future_free(k);
    LT_CHECK(ll_await_timeout(w, 5) == LL_EPG_CONN);
    LT_CHECKF(ll_pg_error_sqlstate(w) && strcmp(ll_pg_error_sqlstate(w), "57P01") == 0, "%s",
              ll_future_errmsg(w));
    LT_CHECK(strstr(ll_future_errmsg(w), "terminating connection"));
    ll_future_free(w);
    /* what comes later says so too */
    ll_future *q = ll_pg_query(c, "SELECT 1", 0);
    LT_CHECK(ll_await(q) == LL_EPG_CONN);
    ll_future_free(q);
    ll_pg_close(c);
    ll_pg_close(admin);
    return 0;
}

static void test_listener_terminated(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_listener_terminated, NULL);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_connect_errors),
        PGT_TEST(test_text_param_nul),
        PGT_TEST(test_abandoned_waiter),
        PGT_TEST(test_listener_terminated),
    };
    return PGT_RUN(tests);
}
