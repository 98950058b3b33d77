/*
 * test_smtp_faults.c — libloop-smtp against aiosmtpd through the fault proxy
 * (tests/harness/faultproxy.h): a connection reset in the middle of a reply, a server frozen
 * while a deadline runs, a reply trickling in under a deadline. Each must give control back with a
 * clear error at the deadline (tolerance: 0.5 s on a loaded machine), and leave nothing behind.
 */
#include <stdlib.h>
#include <string.h>
#include "harness/faultproxy.h"
#include "harness/harness.h"
#include "harness/smtpserver.h"
#include "libloop/smtp.h"

static lt_smtp srv;
static bool have_srv;

static int group_setup(void **st) {
    (void)st;
    have_srv = lt_smtp_start(&srv);
    return 0;
}
static int group_teardown(void **st) {
    (void)st;
    lt_smtp_stop(&srv);
    return 0;
}

typedef struct fcase {
    lt_proxy *px;
    lt_fault before_connect, after_connect;
    double greeting_timeout, command_timeout, final_timeout, connect_timeout, data_timeout;
    size_t big;           /* message size (0: a small one) */
    int connect_rc, send_rc;
    double took;
    char msg[512];
    size_t deferred;
} fcase;

static int fault_task(void *arg) {
    fcase *fc = arg;
    char url[96];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%d", lt_proxy_port(fc->px));
    ll_smtp_opts o = {.security = LL_SMTP_PLAIN, .greeting_timeout = fc->greeting_timeout,
                      .command_timeout = fc->command_timeout, .final_timeout = fc->final_timeout,
                      .connect_timeout = fc->connect_timeout, .data_timeout = fc->data_timeout};
    lt_proxy_set(fc->px, &fc->before_connect);
    ll_sleep(0.1); /* the proxy's thread applies the fault (a blackhole fills its accept queue) */
    ll_time t0 = ll_now();
    ll_future *cf = ll_smtp_connect(url, &o);
    fc->connect_rc = ll_await(cf);
    fc->took = ll_now() - t0;
    snprintf(fc->msg, sizeof fc->msg, "%s", ll_future_errmsg(cf));
    if (fc->connect_rc) {
        ll_future_free(cf);
        return 0;
    }
    ll_smtp_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    lt_proxy_set(fc->px, &fc->after_connect);
    const char *rcpt[] = {"alice@example.test", "bob@example.test"};
    const char *data = "Subject: fault\r\n\r\nbody\r\n";
    char *big = NULL;
    if (fc->big) {
        big = malloc(fc->big);
        memset(big, 'x', fc->big);
        for (size_t i = 78; i < fc->big; i += 80) big[i] = '\r', big[i + 1] = '\n';
        data = big;
    }
    ll_smtp_mail m = {"s@client.test", rcpt, 2, data, fc->big ? fc->big : strlen(data)};
    t0 = ll_now();
    ll_future *f = ll_smtp_conn_send(c, &m);
    fc->send_rc = ll_await(f);
    fc->took = ll_now() - t0;
    snprintf(fc->msg, sizeof fc->msg, "%s", ll_future_errmsg(f));
    const ll_smtp_result *r = ll_smtp_result_of(f);
    fc->deferred = r ? r->deferred : 99;
    ll_future_free(f);
    ll_future_free(ll_smtp_close(c));
    free(big);
    return 0;
}

static void run_fault(fcase *fc) {
    lt_ctx ctx;
    lt_setup(&ctx);
    fc->px = lt_proxy_start("127.0.0.1", srv.port);
    assert_non_null(fc->px);
    assert_int_equal(lt_run_checked(ctx.loop, fault_task, fc), 0);
    ll_loop_run(ctx.loop);
    /* a frozen proxy holds its sockets until it stops: stop it before counting descriptors */
    lt_proxy_stop(fc->px);
    lt_teardown(&ctx);
}

static void test_reset_mid_reply(void **st) {
    (void)st;
    if (!have_srv) skip();
    /* the EHLO reply is cut after 10 bytes by a reset */
    fcase fc = {.before_connect = {.kind = LT_FAULT_RESET_AFTER, .dir = 2, .bytes = 40}};
    run_fault(&fc);
    assert_true(fc.connect_rc == LL_ECONNRESET || fc.connect_rc == LL_EOF);
    assert_non_null(strstr(fc.msg, "smtp 127.0.0.1"));
    /* during the envelope's replies: the send fails, both recipients deferred */
    fc = (fcase){.after_connect = {.kind = LT_FAULT_RESET_AFTER, .dir = 2, .bytes = 12}};
    run_fault(&fc);
    assert_int_equal(fc.connect_rc, 0);
    assert_true(fc.send_rc == LL_ECONNRESET || fc.send_rc == LL_EOF);
    assert_int_equal(fc.deferred, 2);
}

static void test_freeze_under_deadline(void **st) {
    (void)st;
    if (!have_srv) skip();
    fcase fc = {.after_connect = {.kind = LT_FAULT_FREEZE, .dir = 0}, .command_timeout = 0.4};
    run_fault(&fc);
    assert_int_equal(fc.connect_rc, 0);
    assert_int_equal(fc.send_rc, LL_ETIMEDOUT);
    assert_non_null(strstr(fc.msg, "timed out after 0.4 s"));
    assert_true(fc.took >= 0.39 && fc.took < 0.9);
    assert_int_equal(fc.deferred, 2);
}

static void test_trickle_under_deadline(void **st) {
    (void)st;
    if (!have_srv) skip();
    /* the greeting arrives one byte per 50 ms: the 0.4 s greeting deadline cuts it */
    fcase fc = {.before_connect = {.kind = LT_FAULT_TRICKLE, .dir = 2, .interval = 0.05},
                .greeting_timeout = 0.4};
    run_fault(&fc);
    assert_int_equal(fc.connect_rc, LL_ETIMEDOUT);
    assert_non_null(strstr(fc.msg, "greeting"));
    assert_true(fc.took >= 0.39 && fc.took < 0.9);
}

static void test_connect_deadline(void **st) {
    (void)st;
    if (!have_srv) skip();
    /* connect() that never completes (the proxy stops accepting): cut by connect_timeout */
    fcase fc = {.before_connect = {.kind = LT_FAULT_BLACKHOLE}, .connect_timeout = 0.4,
                .greeting_timeout = 2};
    run_fault(&fc);
    assert_int_equal(fc.connect_rc, LL_ETIMEDOUT);
    assert_non_null(strstr(fc.msg, "connect"));
    assert_true(fc.took >= 0.39 && fc.took < 0.9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_mid_reply),
        cmocka_unit_test(test_freeze_under_deadline),
        cmocka_unit_test(test_trickle_under_deadline),
        cmocka_unit_test(test_connect_deadline),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
