/*
 * test_smtp_aiosmtpd.c — libloop-smtp against a real server (aiosmtpd, tests/harness/smtpserver.py):
 * STARTTLS (the default) and implicit TLS with verification, every AUTH mechanism, credentials
 * refused on plaintext, per-recipient results, the session pool, 50 recipients, and the exact bytes
 * the server received, read back and parsed with Python's email package.
 */
#include <stdlib.h>
#include <string.h>
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

#define NEED_SERVER()                                      \
    do {                                                   \
        if (!have_srv) {                                   \
            print_message("aiosmtpd not available\n");    \
            skip();                                        \
        }                                                  \
    } while (0)

typedef struct tcase {
    const char *url;
    ll_smtp_opts opts;
    ll_tls_opts tls;
    const char *from;
    const char *rcpt[60];
    size_t nrcpt;
    const char *data;
    int want_connect;      /* expected code of the connect */
    int want_send;         /* expected code of the send */
    char msg[1024];        /* the failure message */
    ll_smtp_result res;    /* copy of the counts */
    char rcpt_info[8][160];
    bool tls_after;
} tcase;

static void tcase_init(tcase *t, const char *url) {
    memset(t, 0, sizeof *t);
    t->url = url;
    t->tls.ca_file = srv.cert;
    t->opts.tls = &t->tls;
    t->opts.helo_name = "client.test";
    t->from = "sender@client.test";
    t->rcpt[0] = "alice@example.test";
    t->nrcpt = 1;
    t->data = "From: sender@client.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n";
}

static int one_send(void *arg) {
    tcase *t = arg;
    ll_future *cf = ll_smtp_connect(t->url, &t->opts);
    int rc = ll_await(cf);
    LT_CHECKF(rc == t->want_connect, "connect: %d %s", rc, ll_future_errmsg(cf));
    if (rc) {
        snprintf(t->msg, sizeof t->msg, "%s", ll_future_errmsg(cf));
        ll_future_free(cf);
        return 0;
    }
    ll_smtp_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    t->tls_after = ll_smtp_conn_is_tls(c);
    ll_smtp_mail m = {t->from, t->rcpt, t->nrcpt, t->data, strlen(t->data)};
    ll_future *sf = ll_smtp_conn_send(c, &m);
    rc = ll_await(sf);
    snprintf(t->msg, sizeof t->msg, "%s", ll_future_errmsg(sf));
    const ll_smtp_result *r = ll_smtp_result_of(sf);
    if (r) {
        t->res = *r;
        for (size_t i = 0; i < r->nrcpt && i < 8; i++)
            snprintf(t->rcpt_info[i], sizeof t->rcpt_info[i], "%s %d %d %s %s", r->rcpt[i].address,
                     (int)r->rcpt[i].status, r->rcpt[i].code, r->rcpt[i].enhanced, r->rcpt[i].text);
    }
    ll_future_free(sf);
    ll_future *q = ll_smtp_close(c);
    LT_CHECK(ll_await(q) == 0);
    ll_future_free(q);
    LT_CHECKF(rc == t->want_send, "send: %d %s", rc, t->msg);
    return 0;
}

static void run_case(tcase *t) {
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, one_send, t), 0);
    lt_teardown(&ctx);
}

static void inspect_last(char *out, size_t n, const char *dkim) {
    assert_true(lt_smtp_inspect(&srv, lt_smtp_count(&srv), dkim, out, n));
    if (getenv("LT_VERBOSE")) print_message("%s\n", out);
}

static void test_starttls_default(void **st) {
    (void)st;
    NEED_SERVER();
    int before = lt_smtp_count(&srv);
    tcase t;
    tcase_init(&t, srv.url);
    t.rcpt[1] = "bob@example.test";
    t.nrcpt = 2;
    /* bare LFs, a dot line, no final newline: normalised and stuffed on the wire */
    t.data = "From: sender@client.test\nTo: alice@example.test\nSubject: dots\n\n.leading dot\n.\nend";
    run_case(&t);
    assert_true(t.tls_after);
    assert_int_equal(t.res.accepted, 2);
    assert_int_equal(t.res.code, 250);
    assert_int_equal(lt_smtp_count(&srv), before + 1);
    char out[8192];
    inspect_last(out, sizeof out, NULL);
    assert_non_null(strstr(out, "tls: True"));
    assert_non_null(strstr(out, "rcpt: alice@example.test,bob@example.test"));
    assert_non_null(strstr(out, "from: sender@client.test"));
    assert_non_null(strstr(out, "crlf_only: True"));
    assert_non_null(strstr(out, "header:Subject: dots"));
    assert_non_null(strstr(out, "text='.leading dot\\r\\n.\\r\\nend\\r\\n'"));
    /* opportunistic with a server that offers STARTTLS: upgraded too (and verified); plain: never */
    tcase_init(&t, srv.url);
    t.opts.security = LL_SMTP_STARTTLS_OPPORTUNISTIC;
    run_case(&t);
    assert_true(t.tls_after);
    inspect_last(out, sizeof out, NULL);
    assert_non_null(strstr(out, "tls: True"));
    tcase_init(&t, srv.url);
    t.opts.security = LL_SMTP_PLAIN;
    run_case(&t);
    assert_false(t.tls_after);
    inspect_last(out, sizeof out, NULL);
    assert_non_null(strstr(out, "tls: False"));
}

static void test_implicit_tls(void **st) {
    (void)st;
    NEED_SERVER();
    tcase t;
    tcase_init(&t, srv.tls_url);
    run_case(&t);
    assert_true(t.tls_after);
    char out[8192];
    inspect_last(out, sizeof out, NULL);
    assert_non_null(strstr(out, "tls: True"));
}

static void test_verification_on_by_default(void **st) {
    (void)st;
    NEED_SERVER();
    /* no CA given: the server's self-signed certificate is refused, over STARTTLS and smtps */
    tcase t;
    tcase_init(&t, srv.url);
    t.opts.tls = NULL;
    t.want_connect = LL_ECERT;
    run_case(&t);
    assert_non_null(strstr(t.msg, "127.0.0.1"));
    tcase_init(&t, srv.tls_url);
    t.opts.tls = NULL;
    t.want_connect = LL_ECERT;
    run_case(&t);
    /* the CA is trusted but the name is not the certificate's: refused too (host-name check) */
    tcase_init(&t, srv.url);
    t.tls.server_name = "not-the-server.example";
    t.want_connect = LL_ECERT;
    run_case(&t);
    tcase_init(&t, srv.tls_url);
    t.tls.server_name = "not-the-server.example";
    t.want_connect = LL_ECERT;
    run_case(&t);
}

static void test_auth_mechanisms(void **st) {
    (void)st;
    NEED_SERVER();
    const char *mechs[] = {"PLAIN", "LOGIN", "CRAM-MD5", NULL};
    for (int i = 0; i < 4; i++) {
        tcase t;
        tcase_init(&t, srv.url);
        t.opts.username = "user";
        if (i < 3) {
            t.opts.password = "secret";
            t.opts.auth_mechanism = mechs[i];
        } else {
            t.opts.oauth_token = "token";
        }
        run_case(&t);
        char out[8192];
        inspect_last(out, sizeof out, NULL);
        if (!strstr(out, "auth: user")) fail_msg("mechanism %d: %s", i, out);
    }
    /* wrong password, wrong token: LL_ESMTP_AUTH with the server's text */
    tcase t;
    tcase_init(&t, srv.url);
    t.opts.username = "user";
    t.opts.password = "wrong";
    t.want_connect = LL_ESMTP_AUTH;
    run_case(&t);
    assert_non_null(strstr(t.msg, "535"));
    tcase_init(&t, srv.url);
    t.opts.username = "user";
    t.opts.oauth_token = "expired";
    t.want_connect = LL_ESMTP_AUTH;
    run_case(&t);
    assert_non_null(strstr(t.msg, "535"));
}

static void test_plaintext_credentials(void **st) {
    (void)st;
    NEED_SERVER();
    int before = lt_smtp_count(&srv);
    tcase t;
    tcase_init(&t, "smtp://plainuser:secret@127.0.0.1");
    char url[128];
    snprintf(url, sizeof url, "smtp://plainuser:secret@127.0.0.1:%d", srv.port);
    t.url = url;
    t.opts.security = LL_SMTP_PLAIN;
    t.want_connect = LL_ESMTP_INSECURE;
    run_case(&t);
    assert_non_null(strstr(t.msg, "plaintext"));
    /* allowed explicitly: AUTH PLAIN without TLS */
    tcase_init(&t, url);
    t.opts.security = LL_SMTP_PLAIN;
    t.opts.allow_plaintext_auth = true;
    run_case(&t);
    assert_false(t.tls_after);
    assert_int_equal(lt_smtp_count(&srv), before + 1);
    char out[8192];
    inspect_last(out, sizeof out, NULL);
    assert_non_null(strstr(out, "tls: False"));
    assert_non_null(strstr(out, "auth: plainuser"));
}

static void test_per_recipient_results(void **st) {
    (void)st;
    NEED_SERVER();
    tcase t;
    tcase_init(&t, srv.url);
    t.rcpt[0] = "alice@example.test";
    t.rcpt[1] = "reject-me@example.test";
    t.rcpt[2] = "defer-me@example.test";
    t.rcpt[3] = "bob@example.test";
    t.nrcpt = 4;
    t.want_send = LL_ESMTP_PARTIAL;
    run_case(&t);
    assert_int_equal(t.res.nrcpt, 4);
    assert_int_equal(t.res.accepted, 2);
    assert_int_equal(t.res.rejected, 1);
    assert_int_equal(t.res.deferred, 1);
    assert_non_null(strstr(t.rcpt_info[1], "reject-me@example.test 1 550 5.1.1"));
    assert_non_null(strstr(t.rcpt_info[2], "defer-me@example.test 2 451 4.2.0"));
    assert_non_null(strstr(t.msg, "2 of 4 recipients accepted"));
    assert_non_null(strstr(t.msg, "reject-me@example.test"));
    char out[8192];
    inspect_last(out, sizeof out, NULL);
    assert_non_null(strstr(out, "rcpt: alice@example.test,bob@example.test"));
    /* nobody accepted: no DATA, LL_ESMTP_REPLY */
    int before = lt_smtp_count(&srv);
    tcase_init(&t, srv.url);
    t.rcpt[0] = "reject-1@example.test";
    t.want_send = LL_ESMTP_REPLY;
    run_case(&t);
    assert_int_equal(t.res.rejected, 1);
    assert_int_equal(lt_smtp_count(&srv), before);
}

static void test_fifty_recipients_and_8bit(void **st) {
    (void)st;
    NEED_SERVER();
    tcase t;
    tcase_init(&t, srv.url);
    static char addrs[50][40];
    for (int i = 0; i < 50; i++) {
        snprintf(addrs[i], sizeof addrs[i], "user%02d@example.test", i);
        t.rcpt[i] = addrs[i];
    }
    t.nrcpt = 50;
    t.data = "Subject: caf\xc3\xa9\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nna\xc3\xafve\r\n";
    run_case(&t);
    assert_int_equal(t.res.accepted, 50);
    char out[16384];
    inspect_last(out, sizeof out, NULL);
    assert_non_null(strstr(out, "user00@example.test,user01@example.test"));
    assert_non_null(strstr(out, "user49@example.test"));
    assert_non_null(strstr(out, "BODY=8BITMIME"));
    assert_non_null(strstr(out, "SIZE="));
}

static void test_smtputf8(void **st) {
    (void)st;
    NEED_SERVER();
    tcase t;
    tcase_init(&t, srv.url);
    t.from = "jörg@example.test";
    t.rcpt[0] = "élève@école.test";
    run_case(&t);
    char out[8192];
    inspect_last(out, sizeof out, NULL);
    assert_non_null(strstr(out, "from: jörg@example.test"));
    assert_non_null(strstr(out, "rcpt: élève@école.test"));
    assert_non_null(strstr(out, "SMTPUTF8"));
}

static void test_injection_refused(void **st) {
    (void)st;
    NEED_SERVER();
    int before = lt_smtp_count(&srv);
    tcase t;
    tcase_init(&t, srv.url);
    t.rcpt[0] = "alice@example.test>\r\nRCPT TO:<mallory@example.test";
    t.want_send = LL_EINVAL;
    run_case(&t);
    assert_non_null(strstr(t.msg, "CR"));
    tcase_init(&t, srv.url);
    t.from = "x@y.test\nDATA";
    t.want_send = LL_EINVAL;
    run_case(&t);
    tcase_init(&t, srv.url);
    t.opts.helo_name = "evil\r\nMAIL FROM:<x@y>";
    t.want_connect = LL_EINVAL;
    run_case(&t);
    tcase_init(&t, srv.url);
    t.opts.username = "user\r\nQUIT";
    t.opts.password = "secret";
    t.want_connect = LL_EINVAL;
    run_case(&t);
    assert_int_equal(lt_smtp_count(&srv), before);
}

/* ---- the session pool ---- */

typedef struct pool_case {
    int n;
    unsigned sessions;
    ll_smtp_client_stats stats;
    int ok, partial;
} pool_case;

static int pool_send(void *arg) {
    pool_case *pc = arg;
    ll_tls_opts tls = {.ca_file = srv.cert};
    ll_smtp_opts o = {.tls = &tls, .max_sessions = pc->sessions, .max_messages_per_session = 7,
                      .retries = 1, .retry_backoff = 0.01};
    char *err = NULL;
    ll_smtp_client *cl = ll_smtp_client_new(srv.url, &o, &err);
    LT_CHECKF(cl != NULL, "%s", err ? err : "?");
    ll_future **fs = calloc((size_t)pc->n, sizeof *fs);
    char (*bodies)[128] = calloc((size_t)pc->n, 128);
    for (int i = 0; i < pc->n; i++) {
        snprintf(bodies[i], 128, "Subject: pooled %d\r\n\r\nbody %d\r\n", i, i);
        const char *rc[2] = {"alice@example.test", i == 3 ? "defer-x@example.test" : "bob@example.test"};
        ll_smtp_mail m = {"pool@client.test", rc, 2, bodies[i], strlen(bodies[i])};
        fs[i] = ll_smtp_send(cl, &m);
    }
    /* the caller's memory is not needed once the calls returned */
    memset(bodies, 0, (size_t)pc->n * 128);
    for (int i = 0; i < pc->n; i++) {
        int rc = ll_await(fs[i]);
        if (rc == 0) pc->ok++;
        else if (rc == LL_ESMTP_PARTIAL) {
            const ll_smtp_result *r = ll_smtp_result_of(fs[i]);
            LT_CHECK(r && r->accepted == 1 && r->deferred == 1 && r->attempts == 2);
            pc->partial++;
        }
        ll_future_free(fs[i]);
    }
    free(fs);
    free(bodies);
    ll_smtp_client_get_stats(cl, &pc->stats);
    ll_smtp_client_free(cl);
    return 0;
}

static void test_pool(void **st) {
    (void)st;
    NEED_SERVER();
    int before = lt_smtp_count(&srv);
    pool_case pc = {.n = 40, .sessions = 4};
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, pool_send, &pc), 0);
    /* the pool's sessions say QUIT in the background after ll_smtp_client_free */
    ll_loop_run(ctx.loop);
    lt_teardown(&ctx);
    assert_int_equal(pc.ok, 39);
    assert_int_equal(pc.partial, 1);
    /* 40 messages; the retry of message 3 went to its deferred recipient only, who was deferred
     * again, so it sent no DATA (the accepted one got exactly one copy) */
    assert_true(lt_smtp_wait_count(&srv, before + 40, 5));
    assert_int_equal(lt_smtp_count(&srv), before + 40);
    assert_true(pc.stats.sessions >= 4 && pc.stats.sessions <= 4 + 40 / 7 + 2);
    assert_int_equal(pc.stats.sent, 39);
    assert_int_equal(pc.stats.failed, 1);
}

/* A deferred recipient (451) is retried with a pause that doubles: retries 2, backoff 0.15 s -> at
 * least 0.15 + 0.3 s before the send gives up; then it is reported deferred, never as sent.
 * (Lower bound only: a loaded machine makes it slower, never faster.) */
typedef struct backoff_case {
    int rc;
    double took;
    unsigned attempts;
    size_t accepted, deferred;
} backoff_case;

static int backoff_send(void *arg) {
    backoff_case *bc = arg;
    ll_tls_opts tls = {.ca_file = srv.cert};
    ll_smtp_opts o = {.tls = &tls, .retries = 2, .retry_backoff = 0.15};
    ll_smtp_client *cl = ll_smtp_client_new(srv.url, &o, NULL);
    LT_CHECK(cl != NULL);
    const char *rcpt[] = {"alice@example.test", "defer-me@example.test"};
    const char *data = "Subject: backoff\r\n\r\nx\r\n";
    ll_smtp_mail m = {"s@client.test", rcpt, 2, data, strlen(data)};
    ll_time t0 = ll_now();
    ll_future *f = ll_smtp_send(cl, &m);
    bc->rc = ll_await(f);
    bc->took = ll_now() - t0;
    const ll_smtp_result *r = ll_smtp_result_of(f);
    if (r) {
        bc->attempts = r->attempts;
        bc->accepted = r->accepted;
        bc->deferred = r->deferred;
    }
    ll_future_free(f);
    ll_smtp_client_free(cl);
    return 0;
}

static void test_retry_backoff(void **st) {
    (void)st;
    NEED_SERVER();
    backoff_case bc = {0};
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, backoff_send, &bc), 0);
    ll_loop_run(ctx.loop);
    lt_teardown(&ctx);
    assert_int_equal(bc.rc, LL_ESMTP_PARTIAL);
    assert_int_equal(bc.attempts, 3);
    assert_int_equal(bc.accepted, 1);
    assert_int_equal(bc.deferred, 1);
    assert_true(bc.took >= 0.45);
    assert_true(bc.took < 10);
}

/* ---- the next envelope pipelined behind the previous message's data (RFC 2920) ----
 * 30 sends at once on 2 sessions to a server offering PIPELINING (EHLO name "pipelining..."):
 * each reused session sends the next waiting message's MAIL/RCPT with the previous message's
 * terminator. Some messages lose a recipient (550), some are refused after their data (554): each
 * future still carries exactly its own message's results, and the server's record of each queued
 * message (found by the queue id in the final reply) is that message. */
#define PIPE_N 30
typedef struct pipe_case {
    int rc[PIPE_N];
    int code[PIPE_N][2];
    char enh[PIPE_N][2][16];
    unsigned attempts[PIPE_N];
    int queued[PIPE_N];    /* the server's record number, 0 when not queued */
    ll_smtp_client_stats stats;
} pipe_case;

static bool pipe_reject_rcpt(int i) { return i % 4 == 1; }
static bool pipe_reject_data(int i) { return i % 5 == 2; }

static int pipe_send(void *arg) {
    pipe_case *pc = arg;
    ll_tls_opts tls = {.ca_file = srv.cert};
    ll_smtp_opts o = {.tls = &tls, .helo_name = "pipelining.client.test", .max_sessions = 2,
                      .max_messages_per_session = 1000, .retries = -1};
    char *err = NULL;
    ll_smtp_client *cl = ll_smtp_client_new(srv.url, &o, &err);
    LT_CHECKF(cl != NULL, "%s", err ? err : "?");
    ll_future *fs[PIPE_N];
    for (int i = 0; i < PIPE_N; i++) {
        char a[64], b[64], body[160];
        snprintf(a, sizeof a, "ok%d@example.test", i);
        snprintf(b, sizeof b, "%s%d@example.test", pipe_reject_rcpt(i) ? "reject" : "bob", i);
        snprintf(body, sizeof body, "Subject: piped %d\r\n%s\r\nbody %d\r\n", i,
                 pipe_reject_data(i) ? "X-Test-Reject: yes" : "X-Test: no", i);
        const char *rc[2] = {a, b};
        ll_smtp_mail m = {"pipe@client.test", rc, 2, body, strlen(body)};
        fs[i] = ll_smtp_send(cl, &m);
    }
    for (int i = 0; i < PIPE_N; i++) {
        pc->rc[i] = ll_await(fs[i]);
        const ll_smtp_result *r = ll_smtp_result_of(fs[i]);
        LT_CHECKF(r && r->nrcpt == 2, "message %d: %s", i, ll_future_errmsg(fs[i]));
        if (r) {
            for (int k = 0; k < 2; k++) {
                pc->code[i][k] = r->rcpt[k].code;
                snprintf(pc->enh[i][k], 16, "%s", r->rcpt[k].enhanced);
            }
            pc->attempts[i] = r->attempts;
            const char *q = r->text ? strstr(r->text, "queued as ") : NULL;
            pc->queued[i] = q ? atoi(q + 10) : 0;
        }
        ll_future_free(fs[i]);
    }
    ll_smtp_client_get_stats(cl, &pc->stats);
    ll_smtp_client_free(cl);
    return 0;
}

static void test_pool_pipelined(void **st) {
    (void)st;
    NEED_SERVER();
    static pipe_case pc;
    memset(&pc, 0, sizeof pc);
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, pipe_send, &pc), 0);
    ll_loop_run(ctx.loop);
    lt_teardown(&ctx);
    for (int i = 0; i < PIPE_N; i++) {
        bool rr = pipe_reject_rcpt(i), rd = pipe_reject_data(i);
        assert_int_equal(pc.attempts[i], 1);
        assert_int_equal(pc.code[i][0], rd ? 554 : 250);
        assert_int_equal(pc.code[i][1], rr ? 550 : rd ? 554 : 250);
        if (rr) assert_string_equal(pc.enh[i][1], "5.1.1");
        if (rd) assert_string_equal(pc.enh[i][0], "5.6.0");
        if (!rr && !rd) assert_int_equal(pc.rc[i], 0);
        else if (!rd) assert_int_equal(pc.rc[i], LL_ESMTP_PARTIAL);
        else assert_true(pc.rc[i] != 0);
        /* the server's record under this message's queue id is this message */
        assert_int_equal(pc.queued[i] != 0, !rd);
        if (rd) continue;
        char out[8192], want[64];
        assert_true(lt_smtp_inspect(&srv, pc.queued[i], NULL, out, sizeof out));
        snprintf(want, sizeof want, "header:Subject: piped %d\n", i);
        assert_non_null(strstr(out, want));
        if (rr) snprintf(want, sizeof want, "rcpt: ok%d@example.test\n", i);
        else snprintf(want, sizeof want, "rcpt: ok%d@example.test,bob%d@example.test\n", i, i);
        assert_non_null(strstr(out, want));
    }
    /* the two sessions carried everything, and most envelopes rode on the previous data */
    assert_int_equal(pc.stats.sessions, 2);
    assert_true(pc.stats.pipelined >= PIPE_N / 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starttls_default),     cmocka_unit_test(test_implicit_tls),
        cmocka_unit_test(test_verification_on_by_default), cmocka_unit_test(test_auth_mechanisms),
        cmocka_unit_test(test_plaintext_credentials), cmocka_unit_test(test_per_recipient_results),
        cmocka_unit_test(test_fifty_recipients_and_8bit), cmocka_unit_test(test_smtputf8),
        cmocka_unit_test(test_injection_refused),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_pipelined),
        cmocka_unit_test(test_retry_backoff),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
