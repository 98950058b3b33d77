/*
 * test_http_faults.c — libloop-http against nginx behind the fault proxy (tests/harness/
 * faultproxy.h): a reset in the middle of a reply, a server frozen under a deadline, a trickling
 * server under a deadline, the head deadline and the low-speed limit. Each case asserts the
 * error, that the deadline held (control back within a stated tolerance), that the session and
 * the proxy are left with no open connection, and (lt_teardown) that the loop is empty and the
 * descriptor count is back.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "harness/faultproxy.h"
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "libloop/http.h"

static lt_nginx ngx;
static bool have_ngx;
static lt_proxy *px;
static char base[64];

/* A deadline gives control back within this of its time (the machine is small and shared). */
#define SLACK (lt_under_valgrind() ? 1.0 : 0.15)

static void run_in_task(ll_task_fn fn, void *arg) {
    lt_ctx c;
    lt_setup(&c);
    int rc = lt_run_checked(c.loop, fn, arg);
    assert_int_equal(rc, 0);
    lt_teardown(&c);
}

static int fetch(ll_http_session *s, const ll_http_request *req, double *took) {
    ll_time t0 = ll_now();
    ll_future *f = ll_http_send(s, req);
    int rc = ll_await(f);
    *took = ll_now() - t0;
    if (rc) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return rc;
}

/* The session has no connection left, and the proxy's side of them closes too. */
static bool all_closed(ll_http_session *s) {
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    if (st.open != 0) return false;
    for (int i = 0; i < 100 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return lt_proxy_open_connections(px) == 0;
}

typedef struct fcase {
    lt_fault fault;
    ll_http_request req;   /* url: a path */
    int code;
    const char *msg;
    double deadline;       /* > 0: the error must come at this time, within SLACK */
} fcase;

static int t_case(void *arg) {
    fcase *c = arg;
    ll_http_session *s = ll_http_session_new(NULL);
    char url[256];
    snprintf(url, sizeof url, "%s%s", base, c->req.url);
    /* a healthy request first: a kept-alive connection exists when the fault starts */
    ll_http_request ok = {.url = url};
    double took;
    lt_proxy_set(px, NULL);
    LT_CHECKF(fetch(s, &ok, &took) == 0, "%s", lt_last_err);
    lt_proxy_set(px, &c->fault);
    ll_http_request q = c->req;
    q.url = url;
    int rc = fetch(s, &q, &took);
    lt_proxy_set(px, NULL);
    LT_CHECKF(rc == c->code, "got %s (%s), want %s", ll_err_name(rc), lt_last_err,
              ll_err_name(c->code));
    LT_CHECKF(!c->msg || strstr(lt_last_err, c->msg), "%s", lt_last_err);
    if (c->deadline > 0)
        LT_CHECKF(took >= c->deadline - 0.01 && took < c->deadline + SLACK,
                  "took %.3f s for a %.3f s deadline", took, c->deadline);
    else LT_CHECKF(took < 5, "took %.3f s", took);
    /* a failed request never leaves its connection behind */
    LT_CHECK(all_closed(s));
    /* and the session works again once the network does */
    LT_CHECKF(fetch(s, &ok, &took) == 0, "%s", lt_last_err);
    ll_http_session_free(s);
    /* the proxy shares our process: its sockets count in the descriptor check */
    for (int i = 0; i < 200 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return 0;
}

static void test_faults(void **state) {
    (void)state;
    if (!have_ngx || !px) skip();
    fcase cases[] = {
        /* reset after 100 KB of a 1 MiB reply */
        {{LT_FAULT_RESET_AFTER, 2, 100000, 0, 0}, {.url = "/1m.bin"}, LL_ECONNRESET, "127.0.0.1:",
         0},
        /* the server frozen (nothing comes back): the total deadline, then a task deadline */
        {{LT_FAULT_FREEZE, 2, 0, 0, 0}, {.url = "/1k.bin", .timeouts.total = 0.5}, LL_ETIMEDOUT,
         "deadline", 0.5},
        {{LT_FAULT_FREEZE, 2, 0, 0, 0}, {.url = "/1k.bin", .timeouts.first_byte = 0.4},
         LL_EHTTP_TIMEOUT_FIRST_BYTE, "no response from", 0.4},
        /* trickling 1 byte per 10 ms: the total deadline, the head deadline, the low-speed limit */
        {{LT_FAULT_TRICKLE, 2, 0, 0.01, 0}, {.url = "/1k.bin", .timeouts.total = 0.6},
         LL_ETIMEDOUT, "deadline", 0.6},
        {{LT_FAULT_TRICKLE, 2, 0, 0.01, 0}, {.url = "/1k.bin", .timeouts.head = 0.5},
         LL_EHTTP_TIMEOUT_FIRST_BYTE, "was not complete within 0.5 s", 0.5},
        {{LT_FAULT_TRICKLE, 2, 0, 0.01, 0},
         {.url = "/1k.bin", .timeouts.low_speed_limit = 1000, .timeouts.low_speed_time = 0.5},
         LL_EHTTP_TIMEOUT_READ, "too slow", 0.5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lt_failure[0] = 0;
        run_in_task(t_case, &cases[i]);
    }
}

/* Frozen in the middle of a streamed body: the idle read timeout and a task deadline. */
static int t_freeze_mid_body(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    char url[256];
    snprintf(url, sizeof url, "%s/1m.bin", base);
    for (int variant = 0; variant < 2; variant++) {
        /* slow the reply first, so little of it sits in buffers when the freeze comes */
        lt_fault slow = {LT_FAULT_BANDWIDTH, 2, 0, 0, 200000};
        lt_proxy_set(px, &slow);
        ll_http_request q = {.url = url, .stream = true,
                             .timeouts.idle_read = variant == 0 ? 0.4 : -1};
        ll_future *f = ll_http_send(s, &q);
        LT_CHECKF(ll_await(f) == 0, "%s", ll_future_errmsg(f));

        ll_http_response *r = ll_future_take(f);
        ll_future_free(f);
        const char *d;
        size_t n;
        LT_CHECK(ll_http_response_next(r, &d, &n) == 0);
        lt_fault fz = {LT_FAULT_FREEZE, 0, 0, 0, 0};
        lt_proxy_set(px, &fz);
        ll_time t0 = ll_now();
        int rc;
        ll_scope sc;
        ll_scope_enter(&sc, variant == 0 ? LL_NEVER : ll_deadline_in(0.4));
        while ((rc = ll_http_response_next(r, &d, &n)) == 0) {
        }
        ll_scope_exit(&sc);
        double took = ll_now() - t0;
        int want = variant == 0 ? LL_EHTTP_TIMEOUT_READ : LL_ETIMEDOUT;
        LT_CHECKF(rc == want, "variant %d: %s (%s)", variant, ll_err_name(rc),
                  ll_http_response_errmsg(r));
        /* the kernel buffers may still hold data after the freeze: the timer starts when they
         * run dry, so only the upper bound is tight */
        LT_CHECKF(took < 0.4 + SLACK + 0.2, "took %.3f s", took);
        ll_http_response_free(r);
        lt_proxy_set(px, NULL);
        LT_CHECK(all_closed(s));
    }
    ll_http_session_free(s);
    for (int i = 0; i < 200 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return 0;
}

static void test_freeze_mid_body(void **state) {
    (void)state;
    if (!have_ngx || !px) skip();
    run_in_task(t_freeze_mid_body, NULL);
}

/* A per-request connect timeout, against a blackholed listener (connect() hangs): the request's
 * value, not the session's 10 s, bounds the connect made for it. */
static int t_connect_timeout(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    char url[256];
    snprintf(url, sizeof url, "%s/1k.bin", base);
    lt_fault bh = {LT_FAULT_BLACKHOLE, 0, 0, 0, 0};
    lt_proxy_set(px, &bh);
    ll_sleep(0.5); /* the proxy's thread fills its accept queue (up to 100 ms per probe) */
    ll_http_request q = {.url = url, .timeouts.connect = 0.3, .timeouts.total = 5};
    double took;
    int rc = fetch(s, &q, &took);
    lt_proxy_set(px, NULL);
    LT_CHECKF(rc == LL_EHTTP_TIMEOUT_CONNECT, "%s (%s)", ll_err_name(rc), lt_last_err);
    LT_CHECKF(took >= 0.29 && took < 0.3 + SLACK, "took %.3f s", took);
    ll_http_session_free(s);
    /* the abandoned connect may still be in the proxy's accept queue: let it be accepted, see the
     * end of stream and close (its sockets are in our process: the descriptor check counts them) */
    ll_sleep(0.3);
    for (int i = 0; i < 300 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return 0;
}

static void test_connect_timeout(void **state) {
    (void)state;
    if (!have_ngx || !px) skip();
    run_in_task(t_connect_timeout, NULL);
}

static int group_setup(void **state) {
    (void)state;
    have_ngx = lt_nginx_start(&ngx);
    if (have_ngx) {
        px = lt_proxy_start("127.0.0.1", ngx.port);
        if (px) snprintf(base, sizeof base, "http://127.0.0.1:%d", lt_proxy_port(px));
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    lt_proxy_stop(px);
    lt_nginx_stop(&ngx);
    return 0;
}

int main(void) {
    /* The proxy forwards with write(2): a client that has closed its end makes it raise SIGPIPE
     * in this process (the proxy is a thread of the test). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_freeze_mid_body),
        cmocka_unit_test(test_connect_timeout),
    };
    return cmocka_run_group_tests_name("http faults", tests, group_setup, group_teardown);
}
