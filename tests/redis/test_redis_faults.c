/*
 * test_redis_faults.c — a real redis-server behind the fault proxy (tests/harness/faultproxy.h):
 * the connection reset in the middle of a reply, a frozen server under a deadline, a trickling
 * reply under a deadline. Deadlines return on time; what was in flight fails with a clear error;
 * the connection recovers (reconnect) or survives (the late reply is discarded).
 */
#include "redistest.h"
#include "harness/faultproxy.h"

static double slack(void) { return (lt_under_valgrind() || lt_under_asan()) ? 1.0 : 0.5; }

static lt_proxy *proxy;
static char purl[64];

static bool start_proxy(void) {
    proxy = lt_proxy_start("127.0.0.1", rt_server.port);
    if (!proxy) return false;
    snprintf(purl, sizeof purl, "redis://127.0.0.1:%d", lt_proxy_port(proxy));
    return true;
}

static void set_fault(lt_fault_kind k, int dir, long bytes, double interval) {
    lt_fault f = {.kind = k, .dir = dir, .bytes = bytes, .interval = interval};
    lt_proxy_set(proxy, &f);
}

/* A 200 KB value, and the connection reset after 1000 bytes of its reply. */
static int t_reset_mid_reply(void *arg) {
    (void)arg;
    LT_CHECK(start_proxy());
    ll_redis_opts o = {.backoff_initial = 0.02, .backoff_max = 0.1};
    ll_redis_conn *c = rt_connect_opts(purl, &o);
    LT_CHECK(c);
    size_t n = 200000;
    char *big = malloc(n);
    memset(big, 'x', n);
    ll_future *f = ll_redis_commandf(c, "SET big %b", big, n);
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    free(big);
    set_fault(LT_FAULT_RESET_AFTER, 2, 1000, 0);
    ll_future *g = ll_redis_commandf(c, "GET big"), *behind = ll_redis_commandf(c, "PING");
    ll_time t0 = ll_now();
    int rc = ll_await(g);
    LT_CHECKF(rc == LL_EREDIS_CONN, "%d %s", rc, ll_future_errmsg(g));
    LT_CHECK(strstr(ll_future_errmsg(g), "connection lost") && strstr(ll_future_errmsg(g), purl + 8));
    LT_CHECK(ll_await(behind) == LL_EREDIS_CONN);
    LT_CHECK(ll_now() - t0 < 1.0 + slack());
    ll_future_free(g);
    ll_future_free(behind);
    set_fault(LT_FAULT_NONE, 0, 0, 0);
    f = rt_cmd(c, "STRLEN big");
    LT_CHECK(rt_int(f) == (long long)n);
    ll_future_free(f);
    ll_redis_stats st;
    ll_redis_get_stats(c, &st);
    LT_CHECK(st.reconnects >= 1);
    ll_redis_close(c);
    lt_proxy_stop(proxy);
    return 0;
}
RT_TEST(test_reset_mid_reply, t_reset_mid_reply)

/* Frozen server side: the deadline returns on time, the grace closes the link, it recovers. */
static int t_freeze_under_deadline(void *arg) {
    (void)arg;
    LT_CHECK(start_proxy());
    ll_redis_opts o = {.abandon_grace = 0.4, .backoff_initial = 0.02, .backoff_max = 0.1};
    ll_redis_conn *c = rt_connect_opts(purl, &o);
    LT_CHECK(c);
    set_fault(LT_FAULT_FREEZE, 2, 0, 0);
    ll_future *other = ll_redis_commandf(c, "PING");
    ll_future *g = ll_redis_commandf(c, "GET x");
    ll_time t0 = ll_now();
    LT_CHECK(ll_await_timeout(g, 0.2) == LL_ETIMEDOUT);
    double took = ll_now() - t0;
    LT_CHECKF(took >= 0.19 && took < 0.2 + slack(), "took %.3f", took);
    ll_future_free(g);
    LT_CHECK(ll_await(other) == LL_EREDIS_CONN);
    took = ll_now() - t0;
    LT_CHECKF(took < 0.6 + slack(), "took %.3f", took);
    ll_future_free(other);
    set_fault(LT_FAULT_NONE, 0, 0, 0);
    ll_future *f = rt_cmd(c, "PING");
    LT_CHECK(rt_str_is(f, "PONG"));
    ll_future_free(f);
    ll_redis_close(c);
    lt_proxy_stop(proxy);
    return 0;
}
RT_TEST(test_freeze_under_deadline, t_freeze_under_deadline)

/* A reply trickling in a byte at a time: the deadline returns on time; the link keeps making
 * progress, so it is not given up; the late reply is discarded and the next command gets its own. */
static int t_trickle_under_deadline(void *arg) {
    (void)arg;
    LT_CHECK(start_proxy());
    ll_redis_opts o = {.abandon_grace = 0.5};
    ll_redis_conn *c = rt_connect_opts(purl, &o);
    LT_CHECK(c);
    char val[300];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = 0;
    LT_CHECK(rt_ok(c, "SET tr %s", val));
    set_fault(LT_FAULT_TRICKLE, 2, 0, 0.005); /* about 1.5 s for the reply */
    ll_future *g = ll_redis_commandf(c, "GET tr");
    ll_time t0 = ll_now();
    LT_CHECK(ll_await_timeout(g, 0.2) == LL_ETIMEDOUT);
    double took = ll_now() - t0;
    LT_CHECKF(took < 0.2 + slack(), "took %.3f", took);
    ll_future_free(g);
    ll_future *next = ll_redis_commandf(c, "ECHO mine");
    ll_sleep(0.8); /* longer than the grace: still trickling, so still alive */
    set_fault(LT_FAULT_NONE, 0, 0, 0);
    LT_CHECK(ll_await(next) == 0 && rt_str_is(next, "mine"));
    ll_future_free(next);
    ll_redis_stats st;
    ll_redis_get_stats(c, &st);
    LT_CHECKF(st.reconnects == 0 && st.discarded == 1, "reconnects %llu discarded %llu",
              (unsigned long long)st.reconnects, (unsigned long long)st.discarded);
    ll_redis_close(c);
    lt_proxy_stop(proxy);
    return 0;
}
RT_TEST(test_trickle_under_deadline, t_trickle_under_deadline)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_mid_reply),
        cmocka_unit_test(test_freeze_under_deadline),
        cmocka_unit_test(test_trickle_under_deadline),
    };
    return RT_RUN(tests);
}
