/*
 * test_http_proxyfaults.c — libloop-http against nginx behind the fault proxy, under the *caller's*
 * deadline (a task scope, ll_await_timeout) and with several requests in flight, where
 * test_http_faults.c covers one request under the client's own timeouts:
 *   - a reply trickling in (1 byte per 10 ms) under a task scope;
 *   - a server frozen under ll_await_timeout while a fan-out (ll_http_fetch_all) has requests in
 *     flight on several connections;
 *   - the connection reset in the middle of a gzip-encoded reply (the decoder mid-stream), and in
 *     the middle of a fan-out: every URL ends with the right bytes or a clear error;
 * each asserting the deadline held (within SLACK), that the session and the proxy are left with no
 * open connection and the session works again, that the loop is empty and the descriptor count
 * back (lt_teardown), and that every allocation libloop made was freed (lt_track).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "harness/faultproxy.h"
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "libloop/http.h"

#define SLACK ((lt_under_valgrind() || lt_under_asan()) ? 1.0 : 0.3)

static lt_nginx ngx;
static bool have_ngx;
static lt_proxy *px;
static char base[64];

static void run(ll_task_fn fn) {
    lt_proxy_set(px, NULL);
    /* connections an earlier failed case left behind would count in this one's descriptors */
    for (int i = 0; i < 300 && lt_proxy_open_connections(px); i++) usleep(10000);
    lt_run_tracked(fn, NULL);
}

/* Nothing in use, no connection left but kept-alive idle ones (none when `none`), and the proxy
 * has no connection the session has let go of (its sockets live in this process, so the
 * descriptor check counts them). An idle connection the proxy has already closed is fine: the
 * session finds it stale before reusing it. */
static bool no_orphans(ll_http_session *s, bool none) {
    ll_http_stats st;
    for (int i = 0; i < 300; i++) {
        ll_http_session_get_stats(s, &st);
        if (st.in_use == 0 && st.open == st.idle && (!none || st.open == 0) &&
            lt_proxy_open_connections(px) <= st.open)
            return true;
        ll_sleep(0.01);
    }
    snprintf(lt_last_err, sizeof lt_last_err, "session: %zu open, %zu idle, %zu in use; proxy: %zu open",
             st.open, st.idle, st.in_use, lt_proxy_open_connections(px));
    return false;
}
static bool all_closed(ll_http_session *s) { return no_orphans(s, true); }

static int get(ll_http_session *s, const char *path, size_t *len) {
    char url[128];
    snprintf(url, sizeof url, "%s%s", base, path);
    ll_future *f = ll_http_get(s, url);
    int rc = ll_await(f);
    *len = rc ? 0 : ll_http_response_body_len(ll_http_response_of(f));
    snprintf(lt_last_err, sizeof lt_last_err, "%s", rc ? ll_future_errmsg(f) : "");
    ll_future_free(f);
    return rc;
}

static int t_trickle_scope(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    LT_CHECK(s);
    size_t len;
    LT_CHECKF(get(s, "/small.txt", &len) == 0, "%s", lt_last_err);
    lt_fault tr = {.kind = LT_FAULT_TRICKLE, .dir = 2, .interval = 0.01};
    lt_proxy_set(px, &tr);
    ll_time t0 = ll_now();
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.5));
    int rc = get(s, "/64k.bin", &len);
    ll_scope_exit(&sc);
    double took = ll_now() - t0;
    lt_proxy_set(px, NULL);
    LT_CHECKF(rc == LL_ETIMEDOUT, "%s %s", ll_err_name(rc), lt_last_err);
    LT_CHECKF(took >= 0.49 && took < 0.5 + SLACK, "took %.3f s for a 0.5 s deadline", took);
    LT_CHECK(all_closed(s)); /* a connection with half a reply is never reused */
    LT_CHECKF(get(s, "/1k.bin", &len) == 0 && len == 1024, "%s", lt_last_err);
    ll_http_session_free(s);
    for (int i = 0; i < 300 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return 0;
}

static void test_trickle_under_task_deadline(void **st) {
    (void)st;
    if (!have_ngx || !px) skip();
    run(t_trickle_scope);
}

static const char *const paths[] = {"/small.txt", "/1k.bin", "/64k.bin", "/1m.bin", "/chain/2",
                                    "/status/404", "/1k.bin", "/64k.bin"};
enum { NPATHS = sizeof paths / sizeof *paths };
static const size_t sizes[NPATHS] = {13, 1024, 65536, 1048576, 13, 0, 1024, 65536};

static ll_future *fan_out(ll_http_session *s, char **urls) {
    for (int i = 0; i < NPATHS; i++) {
        urls[i] = ll_format("%s%s", base, paths[i]);
    }
    ll_http_fetch_opts fo = {.concurrency = 4};
    return ll_http_fetch_all(s, (const char *const *)urls, NPATHS, &fo);
}

static int t_freeze_fanout(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    LT_CHECK(s);
    size_t len;
    LT_CHECKF(get(s, "/small.txt", &len) == 0, "%s", lt_last_err);
    /* slow first so requests are in flight on several connections, then freeze everything */
    lt_fault slow = {.kind = LT_FAULT_BANDWIDTH, .dir = 2, .rate = 100000};
    lt_proxy_set(px, &slow);
    char *urls[NPATHS];
    ll_future *f = fan_out(s, urls);
    ll_sleep(0.1);
    lt_fault fz = {.kind = LT_FAULT_FREEZE, .dir = 0};
    lt_proxy_set(px, &fz);
    ll_time t0 = ll_now();
    int rc = ll_await_timeout(f, 0.5);
    double took = ll_now() - t0;
    lt_proxy_set(px, NULL);
    /* a fan-out cut by its caller's deadline resolves with its batch (ll_http_fetch_all never fails
     * because a fetch did): the unfinished fetches carry the cancellation, none is reported done */
    const ll_http_batch *b = rc == 0 ? ll_http_batch_of(f) : NULL;
    LT_CHECKF(rc == LL_ETIMEDOUT || b, "%s %s", ll_err_name(rc), ll_future_errmsg(f));
    LT_CHECKF(took >= 0.49 && took < 0.5 + SLACK, "took %.3f s for a 0.5 s deadline", took);
    int cut = 0;
    for (int i = 0; b && i < NPATHS; i++) {
        int c = ll_http_batch_code(b, i);
        if (c == LL_ECANCELED || c == LL_ETIMEDOUT) {
            cut++;
            /* not started or cut, each says so (a slot never started once had no message) */
            LT_CHECKF(ll_http_batch_errmsg(b, i)[0], "%s: %s without a message", paths[i], ll_err_name(c));
        }
        else LT_CHECKF(c == 0 && ll_http_batch_response(b, i), "%s: %s", paths[i], ll_err_name(c));
        if (c == 0 && i != 5)
            LT_CHECKF(ll_http_response_body_len(ll_http_batch_response(b, i)) == sizes[i], "%s", paths[i]);
    }
    LT_CHECK(!b || cut > 0); /* 1m.bin cannot have finished */
    ll_future_free(f);
    for (int i = 0; i < NPATHS; i++) ll_free(urls[i]);
    /* the connections of cut fetches are closed; finished ones may stay, idle */
    LT_CHECK(no_orphans(s, false));
    LT_CHECKF(get(s, "/1k.bin", &len) == 0 && len == 1024, "%s", lt_last_err);
    ll_http_session_free(s);
    for (int i = 0; i < 300 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return 0;
}

static void test_freeze_fanout_under_deadline(void **st) {
    (void)st;
    if (!have_ngx || !px) skip();
    run(t_freeze_fanout);
}

static int t_reset_mid_reply(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    LT_CHECK(s);
    size_t len;
    /* gzip-encoded 300 KiB of text, cut after 20 KB on the wire: the decoder is mid-stream */
    LT_CHECKF(get(s, "/text/big.txt", &len) == 0 && len > 0, "%s", lt_last_err);
    size_t whole = len;
    lt_fault rs = {.kind = LT_FAULT_RESET_AFTER, .dir = 2, .bytes = 20000};
    lt_proxy_set(px, &rs);
    ll_time t0 = ll_now();
    int rc = get(s, "/text/big.txt", &len);
    lt_proxy_set(px, NULL);
    LT_CHECKF(rc == LL_ECONNRESET, "%s %s", ll_err_name(rc), lt_last_err);
    LT_CHECKF(strstr(lt_last_err, "127.0.0.1:"), "%s", lt_last_err);
    LT_CHECK(ll_now() - t0 < 2);
    LT_CHECK(all_closed(s));
    LT_CHECKF(get(s, "/text/big.txt", &len) == 0 && len == whole, "%s", lt_last_err);

    /* a fan-out cut after 200 KB (somewhere in /1m.bin or before): each URL has its exact bytes
     * or a clear error; none is reported done with a short body */
    rs.bytes = 200000;
    lt_proxy_set(px, &rs);
    char *urls[NPATHS];
    ll_future *f = fan_out(s, urls);
    LT_CHECKF(ll_await_timeout(f, 10) == 0, "%s", ll_future_errmsg(f));
    lt_proxy_set(px, NULL);
    const ll_http_batch *b = ll_http_batch_of(f);
    int failed = 0;
    for (int i = 0; i < NPATHS; i++) {
        const ll_http_response *r = ll_http_batch_response(b, i);
        if (ll_http_batch_code(b, i) == 0) {
            LT_CHECK(r);
            int stt = ll_http_response_status(r);
            LT_CHECKF(stt == (i == 5 ? 404 : 200), "%s: %d", paths[i], stt);
            if (i != 5) LT_CHECKF(ll_http_response_body_len(r) == sizes[i], "%s: %zu bytes", paths[i],
                                  ll_http_response_body_len(r));
        } else {
            failed++;
            LT_CHECKF(ll_http_batch_errmsg(b, i) && ll_http_batch_errmsg(b, i)[0], "%s: no message", paths[i]);
        }
    }
    LT_CHECK(failed > 0); /* 1m.bin alone is past the cut */
    ll_future_free(f);
    for (int i = 0; i < NPATHS; i++) ll_free(urls[i]);
    LT_CHECK(no_orphans(s, false));
    ll_http_session_free(s);
    for (int i = 0; i < 300 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return 0;
}

static void test_reset_mid_reply(void **st) {
    (void)st;
    if (!have_ngx || !px) skip();
    run(t_reset_mid_reply);
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
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trickle_under_task_deadline),
        cmocka_unit_test(test_freeze_fanout_under_deadline),
        cmocka_unit_test(test_reset_mid_reply),
    };
    return cmocka_run_group_tests_name("http proxy faults", tests, group_setup, group_teardown);
}
