/*
 * test_smtp_proxyfaults.c — libloop-smtp's pooled client (ll_smtp_client: sessions, retries with
 * backoff) against aiosmtpd through the fault proxy, under the *caller's* deadline (a task scope,
 * ll_await_timeout), where test_smtp_faults.c covers one session under the client's own phase
 * timeouts:
 *   - a server frozen while the client would retry for longer than the deadline: control comes
 *     back at the deadline, the message is not reported delivered, the frozen session is not
 *     reused (the next send works once the network does); and frozen before the first session
 *     exists (the deadline falls in the greeting), the message still says a deadline passed;
 *   - message data trickling to the server (1 byte per ms) under a deadline;
 *   - the connection reset in the middle of the replies to a pipelined envelope, with retries:
 *     the send ends either delivered (every recipient accepted, after a retry) or failed with
 *     no recipient reported delivered — never half reported;
 * each asserting the deadline held (within SLACK), that the proxy is left with no open connection,
 * that the loop is empty and the descriptor count back (lt_teardown), and that every allocation
 * libloop made was freed (lt_track).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/faultproxy.h"
#include "harness/harness.h"
#include "harness/smtpserver.h"
#include "libloop/smtp.h"

/* Control back within this past a deadline (a small, shared machine; sanitizers slow it more). */
#define SLACK ((lt_under_valgrind() || lt_under_asan()) ? 1.0 : 0.3)

static lt_smtp srv;
static bool have_srv;
static lt_proxy *px;
static char url[96];

static int group_setup(void **st) {
    (void)st;
    have_srv = lt_smtp_start(&srv);
    if (have_srv) {
        px = lt_proxy_start("127.0.0.1", srv.port);
        snprintf(url, sizeof url, "smtp://127.0.0.1:%d", px ? lt_proxy_port(px) : 0);
    }
    return 0;
}
static int group_teardown(void **st) {
    (void)st;
    lt_proxy_stop(px);
    lt_smtp_stop(&srv);
    return 0;
}

/* The fault lifted, fn as a whole tracked test (lt_run_tracked: loop, descriptors, allocations). */
static void run(ll_task_fn fn) {
    lt_proxy_set(px, NULL);
    lt_run_tracked(fn, NULL);
}

/* The proxy's sockets live in this process: wait until it has closed them (at most 3 s). */
static bool proxy_idle(void) {
    for (int i = 0; i < 300 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return lt_proxy_open_connections(px) == 0;
}

static const char *rcpt2[] = {"alice@example.test", "bob@example.test"};

static int send_one(ll_smtp_client *cl, const char *data, size_t len, double deadline, double *took,
                    size_t *accepted) {
    ll_smtp_mail m = {"s@client.test", rcpt2, 2, data, len};
    ll_time t0 = ll_now();
    ll_future *f = ll_smtp_send(cl, &m);
    int rc = deadline > 0 ? ll_await_timeout(f, deadline) : ll_await(f);
    *took = ll_now() - t0;
    const ll_smtp_result *r = ll_smtp_result_of(f);
    *accepted = r ? r->accepted : 0;
    snprintf(lt_last_err, sizeof lt_last_err, "%s", rc ? ll_future_errmsg(f) : "");
    ll_future_free(f);
    return rc;
}

static const char small[] = "Subject: proxy fault\r\n\r\nbody\r\n";

/* Frozen both ways, after a healthy send; retries (3, 0.2 s backoff) and command timeouts (2 s)
 * would take far longer than the caller's 0.6 s. */
static int t_client_freeze(void *arg) {
    (void)arg;
    ll_smtp_opts o = {.security = LL_SMTP_PLAIN, .max_sessions = 2, .retries = 3, .retry_backoff = 0.2,
                      .command_timeout = 2, .final_timeout = 2};
    ll_smtp_client *cl = ll_smtp_client_new(url, &o, NULL);
    LT_CHECK(cl);
    double took;
    size_t acc;
    LT_CHECKF(send_one(cl, small, strlen(small), -1, &took, &acc) == 0 && acc == 2, "%s", lt_last_err);
    lt_fault fz = {.kind = LT_FAULT_FREEZE, .dir = 0};
    lt_proxy_set(px, &fz);
    int rc = send_one(cl, small, strlen(small), 0.6, &took, &acc);
    LT_CHECKF(rc == LL_ETIMEDOUT, "%s %s", ll_err_name(rc), lt_last_err);
    LT_CHECKF(took >= 0.59 && took < 0.6 + SLACK, "took %.3f s for a 0.6 s deadline", took);
    LT_CHECK(acc == 0); /* never reported delivered */
    /* the same under a task scope rather than ll_await_timeout */
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.5));
    rc = send_one(cl, small, strlen(small), -1, &took, &acc);
    ll_scope_exit(&sc);
    LT_CHECKF(rc == LL_ETIMEDOUT, "%s %s", ll_err_name(rc), lt_last_err);
    LT_CHECKF(took >= 0.49 && took < 0.5 + SLACK, "took %.3f s for a 0.5 s deadline", took);
    lt_proxy_set(px, NULL);
    /* the frozen sessions are not trusted again: the next send works */
    LT_CHECKF(send_one(cl, small, strlen(small), 5, &took, &acc) == 0 && acc == 2, "%s", lt_last_err);
    ll_smtp_client_free(cl);
    LT_CHECK(proxy_idle());
    /* frozen before the first session exists: the deadline falls in the greeting, which a pooled
     * connect is waiting for; the message still says a deadline passed */
    cl = ll_smtp_client_new(url, &o, NULL);
    LT_CHECK(cl);
    lt_proxy_set(px, &fz);
    rc = send_one(cl, small, strlen(small), 0.5, &took, &acc);
    lt_proxy_set(px, NULL);
    LT_CHECKF(rc == LL_ETIMEDOUT, "%s %s", ll_err_name(rc), lt_last_err);
    LT_CHECKF(took >= 0.49 && took < 0.5 + SLACK, "took %.3f s for a 0.5 s deadline", took);
    LT_CHECKF(strstr(lt_last_err, "timed out") || strstr(lt_last_err, "deadline"), "%s", lt_last_err);
    ll_smtp_client_free(cl);
    LT_CHECK(proxy_idle());
    return 0;
}

static void test_client_freeze_under_deadline(void **st) {
    (void)st;
    if (!have_srv || !px) skip();
    run(t_client_freeze);
}

/* 64 KB of message data trickling toward the server, 1 byte per ms: a minute's worth, cut at the
 * caller's 0.5 s. */
static int t_trickle_data(void *arg) {
    (void)arg;
    size_t n = 65536;
    char *big = malloc(n);
    LT_CHECK(big);
    memcpy(big, "Subject: big\r\n\r\n", 16);
    memset(big + 16, 'x', n - 16);
    for (size_t i = 16 + 78; i + 1 < n; i += 80) big[i] = '\r', big[i + 1] = '\n';
    ll_smtp_opts o = {.security = LL_SMTP_PLAIN, .max_sessions = 1, .retries = 2, .retry_backoff = 0.1};
    ll_smtp_client *cl = ll_smtp_client_new(url, &o, NULL);
    LT_CHECK(cl);
    double took;
    size_t acc;
    LT_CHECKF(send_one(cl, small, strlen(small), -1, &took, &acc) == 0, "%s", lt_last_err);
    lt_fault tr = {.kind = LT_FAULT_TRICKLE, .dir = 1, .interval = 0.001};
    lt_proxy_set(px, &tr);
    int rc = send_one(cl, big, n, 0.5, &took, &acc);
    lt_proxy_set(px, NULL);
    free(big);
    LT_CHECKF(rc == LL_ETIMEDOUT, "%s %s", ll_err_name(rc), lt_last_err);
    LT_CHECKF(took >= 0.49 && took < 0.5 + SLACK, "took %.3f s for a 0.5 s deadline", took);
    LT_CHECK(acc == 0);
    LT_CHECKF(send_one(cl, small, strlen(small), 5, &took, &acc) == 0 && acc == 2, "%s", lt_last_err);
    ll_smtp_client_free(cl);
    LT_CHECK(proxy_idle());
    return 0;
}

static void test_trickle_data_under_deadline(void **st) {
    (void)st;
    if (!have_srv || !px) skip();
    run(t_trickle_data);
}

/* Reset after n bytes of replies (n = 1..120: the cut falls in the greeting, EHLO's reply, the
 * envelope's or the final reply), with one retry allowed and the proxy healthy again for it. */
static int t_reset_mid_reply(void *arg) {
    (void)arg;
    int delivered = 0, failed = 0;
    /* pass 0: one retry, through a healthy proxy; pass 1: no retry, so the cut is what the caller
     * sees */
    for (int pass = 0; pass < 2; pass++) {
        for (long bytes = 5; bytes <= 125; bytes += 8) {
            ll_smtp_opts o = {.security = LL_SMTP_PLAIN, .max_sessions = 1, .retries = pass ? 0 : 1,
                              .retry_backoff = 0.05};
            ll_smtp_client *cl = ll_smtp_client_new(url, &o, NULL);
            LT_CHECK(cl);
            lt_fault rs = {.kind = LT_FAULT_RESET_AFTER, .dir = 2, .bytes = bytes};
            lt_proxy_set(px, &rs);
            ll_smtp_mail m = {"s@client.test", rcpt2, 2, small, strlen(small)};
            ll_time t0 = ll_now();
            ll_future *f = ll_smtp_send(cl, &m);
            /* lift the fault once the first attempt's connection is gone */
            while (!ll_future_done(f) && (ll_now() - t0 < 0.05 || lt_proxy_open_connections(px) > 0) &&
                   ll_now() - t0 < 2)
                ll_sleep(0.005);
            if (!pass) lt_proxy_set(px, NULL);
            int rc = ll_await_timeout(f, 5);
            lt_proxy_set(px, NULL);
            const ll_smtp_result *r = ll_smtp_result_of(f);
            if (rc == 0) {
                LT_CHECK(r && r->accepted == 2);
                delivered++;
            } else {
                /* failed: a clear error, and no recipient reported delivered */
                LT_CHECKF(rc != LL_ETIMEDOUT, "cut after %ld bytes: %s", bytes, ll_future_errmsg(f));
                LT_CHECKF(ll_future_errmsg(f)[0], "cut after %ld bytes: no message", bytes);
                LT_CHECKF(!r || r->accepted == 0, "cut after %ld bytes: %zu accepted yet failed", bytes,
                          r->accepted);
                failed++;
            }
            ll_future_free(f);
            ll_smtp_client_free(cl);
            LT_CHECK(proxy_idle());
        }
    }
    if (getenv("LT_VERBOSE")) fprintf(stderr, "reset mid-reply: %d delivered, %d failed\n", delivered, failed);
    LT_CHECKF(delivered > 0 && failed > 0, "delivered %d, failed %d", delivered, failed);
    return 0;
}

static void test_reset_mid_reply_retried(void **st) {
    (void)st;
    if (!have_srv || !px) skip();
    run(t_reset_mid_reply);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_freeze_under_deadline),
        cmocka_unit_test(test_trickle_data_under_deadline),
        cmocka_unit_test(test_reset_mid_reply_retried),
    };
    return cmocka_run_group_tests_name("smtp proxy faults", tests, group_setup, group_teardown);
}
