/*
 * test_pg_api.c — the PostgreSQL client's side of the API conventions (issue 9): a NULL pool,
 * connection or transaction is named in an LL_EINVAL failure (never "out of memory"), a query
 * future is read through ll_pg_result_of and nothing else can be read as a result, and libpq's
 * multi-line messages arrive as one readable line.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include "harness/faultproxy.h"
#include "pgtest.h"

static bool msg_is(ll_future *f, int code, const char *msg) {
    return f && lt_await_msg(f, lt_last_err, sizeof lt_last_err) == code && strcmp(lt_last_err, msg) == 0;
}

static int t_null_args(void *arg) {
    (void)arg;
    LT_CHECK(msg_is(ll_pg_pool_query(NULL, "SELECT 1", 0), LL_EINVAL,
                    "ll_pg_pool_query: pool is NULL"));
    LT_CHECK(msg_is(ll_pg_pool_queryv(NULL, "SELECT 1", 0, NULL), LL_EINVAL,
                    "ll_pg_pool_queryv: pool is NULL"));
    LT_CHECK(msg_is(ll_pg_pool_acquire(NULL), LL_EINVAL, "ll_pg_pool_acquire: pool is NULL"));
    LT_CHECK(msg_is(ll_pg_query(NULL, "SELECT 1", 0), LL_EINVAL, "ll_pg_query: conn is NULL"));
    LT_CHECK(msg_is(ll_pg_exec(NULL, "SELECT 1"), LL_EINVAL, "ll_pg_exec: conn is NULL"));
    LT_CHECK(msg_is(ll_pg_begin(NULL, NULL), LL_EINVAL, "ll_pg_begin: conn is NULL"));
    LT_CHECK(msg_is(ll_pg_commit(NULL), LL_EINVAL, "ll_pg_commit: tx is NULL"));
    LT_CHECK(msg_is(ll_pg_savepoint_release(NULL, "a"), LL_EINVAL,
                    "ll_pg_savepoint_release: tx is NULL"));
    LT_CHECK(msg_is(ll_pg_next_notification(NULL), LL_EINVAL,
                    "ll_pg_next_notification: conn is NULL"));
    LT_CHECK(msg_is(ll_pg_copy_read(NULL), LL_EINVAL, "ll_pg_copy_read: copy is NULL"));
    LT_CHECK(msg_is(ll_pg_connect(NULL, NULL), LL_EINVAL, "ll_pg_connect: conninfo is NULL"));

    ll_pg_pool *pool = ll_pg_pool_new(pgt_server.conninfo, NULL);
    LT_CHECK(pool != NULL);
    LT_CHECK(msg_is(ll_pg_pool_query(pool, NULL, 0), LL_EINVAL, "ll_pg_pool_query: sql is NULL"));
    ll_pg_pool_free(pool);
    ll_pg_pool_free(NULL); /* a no-op */
    pgt_settle();
    return 0;
}

static void test_null_args(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_checked(t.loop, t_null_args, NULL), 0);
    lt_teardown(&t);
}

static int t_result_of(void *arg) {
    (void)arg;
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, NULL);
    LT_CHECK(ll_await(cf) == 0);
    LT_CHECK(ll_pg_result_of(cf) == NULL); /* a connection is not a result */
    ll_pg_conn *c = ll_future_take(cf);
    ll_future_free(cf);

    ll_future *q = ll_pg_query(c, "SELECT 6 * 7", 0);
    LT_CHECK(ll_pg_result_of(q) == NULL); /* pending */
    LT_CHECK(ll_await(q) == 0);
    ll_pg_result *r = ll_pg_result_of(q);
    int64_t v = 0;
    LT_CHECK(r != NULL && ll_pg_int64(r, 0, 0, &v) == 0 && v == 42);
    ll_future_free(q);

    ll_future *tf = ll_pg_begin(c, NULL);
    LT_CHECK(ll_await(tf) == 0);
    LT_CHECK(ll_pg_result_of(tf) == NULL); /* a transaction is not a result: NULL, no crash */
    ll_pg_tx *tx = ll_future_value(tf);
    ll_future *e = ll_pg_query(c, "SELECT nonsense_column", 0);
    LT_CHECK(ll_await(e) == LL_EPG_SERVER);
    LT_CHECK(ll_pg_result_of(e) == NULL); /* failed */
    ll_future_free(e);
    ll_future *rb = ll_pg_rollback(tx);
    LT_CHECK(ll_await(rb) == 0);
    LT_CHECK(ll_pg_result_of(rb) != NULL);
    ll_future_free(rb);
    ll_future_free(tf);
    LT_CHECK(ll_pg_result_of(NULL) == NULL);
    ll_pg_close(c);
    return 0;
}

static void test_result_of(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_checked(t.loop, t_result_of, NULL), 0);
    lt_teardown(&t);
}

/* A loopback port nobody listens on: bound to port 0, read back, closed. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int t_one_line_messages(void *arg) {
    (void)arg;
    int port = closed_port();
    LT_CHECK(port > 0);
    char ci[256];
    /* two hosts: libpq reports each failure on lines of their own, with tab-indented hints */
    snprintf(ci, sizeof ci, "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres",
             port, port);
    ll_future *f = ll_pg_connect(ci, NULL);
    int rc = ll_await(f);
    const char *m = ll_future_errmsg(f);
    snprintf(lt_last_err, sizeof lt_last_err, "%s", m);
    LT_CHECK(rc != 0);
    LT_CHECK(strchr(m, '\n') == NULL && strchr(m, '\t') == NULL);
    LT_CHECK(strstr(m, "  ") == NULL);
    LT_CHECK(strstr(m, "refused") != NULL);
    ll_future_free(f);
    return 0;
}

static void test_one_line_messages(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_checked(t.loop, t_one_line_messages, NULL), 0);
    lt_teardown(&t);
}

/* A connect timeout is measured from the call, even right after the loop was blocked (libev's cached
 * time then lags the clock: a timer armed on it would fire at once), and printed as given. */
static int t_connect_timeout_after_blocking(void *arg) {
    (void)arg;
    lt_proxy *px = lt_proxy_start("127.0.0.1", pgt_server.port);
    LT_CHECK(px != NULL);
    lt_fault freeze = {.kind = LT_FAULT_FREEZE, .dir = 0};
    lt_proxy_set(px, &freeze); /* the server never answers the startup packet */
    char ci[256];
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres",
             lt_proxy_port(px));
    usleep(1500 * 1000); /* block the loop, as a program starting a server synchronously does */
    ll_pg_opts o = {.connect_timeout = 1};
    ll_time t0 = ll_now();
    ll_future *f = ll_pg_connect(ci, &o);
    int rc = ll_await(f);
    double took = ll_now() - t0;
    snprintf(lt_last_err, sizeof lt_last_err, "%s (after %.3f s)", ll_future_errmsg(f), took);
    LT_CHECK(rc == LL_ETIMEDOUT);
    LT_CHECK(took >= 0.95); /* never early; the late side is generous: the machine is loaded */
    LT_CHECK(took < 5);
    LT_CHECK(strstr(ll_future_errmsg(f), "timed out after 1 s") != NULL);
    ll_future_free(f);
    lt_proxy_stop(px);
    return 0;
}

static void test_connect_timeout_after_blocking(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_checked(t.loop, t_connect_timeout_after_blocking, NULL), 0);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_null_args),
        PGT_TEST(test_result_of),
        PGT_TEST(test_one_line_messages),
        PGT_TEST(test_connect_timeout_after_blocking),
    };
    return PGT_RUN(tests);
}
