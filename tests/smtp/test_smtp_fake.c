/*
 * test_smtp_fake.c — misbehaving servers, written with libloop's server API: refusals (4xx/5xx) at
 * every stage, a connection dropped mid-DATA, no STARTTLS when it is required, plaintext injected
 * after the STARTTLS go-ahead, endless multi-line replies, replies that never come or trickle in,
 * 421 with the pool reconnecting, and proof of pipelining (a server that answers nothing until the
 * whole envelope has arrived).
 */
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "libloop/smtp.h"

static char certdir[64], cert[128], key[128];

static int group_setup(void **st) {
    (void)st;
    snprintf(certdir, sizeof certdir, "/tmp/ll-smtpfake-XXXXXX");
    if (!mkdtemp(certdir)) return -1;
    snprintf(cert, sizeof cert, "%s/cert.pem", certdir);
    snprintf(key, sizeof key, "%s/key.pem", certdir);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
             "-nodes -keyout %s -out %s -days 2 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null", key, cert);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **st) {
    (void)st;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", certdir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef enum {
    M_REFUSE_GREETING, M_EHLO_421, M_MAIL_550, M_RCPT_MIXED, M_DATA_554, M_FINAL_451,
    M_DROP_MID_DATA, M_NO_STARTTLS, M_INJECT, M_ENDLESS, M_SILENT_AFTER_EHLO, M_SILENT_GREETING,
    M_TRICKLE_GREETING, M_PIPELINE_CHECK, M_421_THEN_OK, M_SILENT_FINAL, M_NORMAL,
    M_CLOSE_AFTER_FIRST, M_STALL_DATA, M_PIPE_421, M_PIPE_SLOW_FINAL
} mode;

typedef struct fake {
    mode m;
    int conns;
    int rcpts_seen;
    bool tls;
    char first_after_tls[128];
    char log[8192];
} fake;

static int readline(ll_stream *s, char *buf, size_t n) {
    ll_future *f = ll_stream_read_until(s, "\r\n", 2, buf, n - 1);
    int rc = ll_await(f);
    size_t k = rc ? 0 : (uintptr_t)ll_future_value(f);
    ll_future_free(f);
    if (rc) return rc;
    buf[k] = 0;
    return (int)k;
}

static int say(ll_stream *s, const char *text) { return lt_await_free(ll_stream_write(s, text, strlen(text))); }

static void log_line(fake *fk, const char *l) {
    strncat(fk->log, l, sizeof fk->log - strlen(fk->log) - 1);
}

/* Answer commands normally from here on: EHLO, MAIL, RCPT, DATA (+ body), RSET, NOOP, QUIT. */
static int normal(ll_stream *s, fake *fk, int conn) {
    char line[1024];
    for (;;) {
        int n = readline(s, line, sizeof line);
        if (n < 0) return 0;
        log_line(fk, line);
        if (!strncmp(line, "EHLO", 4)) {
            if (fk->m == M_ENDLESS) {
                for (;;)
                    if (say(s, "250-and another capability line\r\n")) return 0;
            }
            if (fk->m == M_SILENT_AFTER_EHLO) {
                ll_sleep(10);
                return 0;
            }
            say(s, fk->m == M_PIPELINE_CHECK || fk->m == M_PIPE_421 || fk->m == M_PIPE_SLOW_FINAL ? "250-fake\r\n250 PIPELINING\r\n"
                                                                     : "250-fake\r\n250 8BITMIME\r\n");
        } else if (!strncmp(line, "MAIL", 4)) {
            if (fk->m == M_MAIL_550) say(s, "550 5.7.1 sender refused\r\n");
            else if (fk->m == M_421_THEN_OK && conn == 1) {
                say(s, "421 4.3.2 shutting down\r\n");
                return 0;
            } else if (fk->m == M_PIPELINE_CHECK) {
                /* answer nothing until MAIL and all 50 RCPTs are in: a client that waited for
                 * each reply would never get here */
                char tmp[256];
                for (int i = 0; i < 50; i++) {
                    if (readline(s, tmp, sizeof tmp) < 0) return 0;
                    if (!strncmp(tmp, "RCPT", 4)) fk->rcpts_seen++;
                }
                say(s, "250 ok\r\n");
                for (int i = 0; i < 50; i++) say(s, "250 ok\r\n");
            } else say(s, "250 2.1.0 ok\r\n");
        } else if (!strncmp(line, "RCPT", 4)) {
            if (fk->m == M_RCPT_MIXED && strstr(line, "bad")) say(s, "550 5.1.1 no such user\r\n");
            else if (fk->m == M_RCPT_MIXED && strstr(line, "later")) say(s, "452 4.2.2 mailbox full\r\n");
            else say(s, "250 2.1.5 ok\r\n");
        } else if (!strncmp(line, "DATA", 4)) {
            if (fk->m == M_DATA_554) {
                say(s, "554 5.5.1 no valid recipients\r\n");
                continue;
            }
            say(s, "354 go ahead\r\n");
            if (fk->m == M_STALL_DATA) { /* stops reading: the client's writes back up */
                ll_sleep(10);
                return 0;
            }
            if (fk->m == M_DROP_MID_DATA && conn == 1) {
                readline(s, line, sizeof line); /* one line of the body, then gone */
                ll_stream_reset(s);
                return 0;
            }
            while ((n = readline(s, line, sizeof line)) >= 0 && strcmp(line, ".\r\n") != 0) {
            }
            if (fk->m == M_SILENT_FINAL) {
                ll_sleep(10);
                return 0;
            }
            if (fk->m == M_PIPE_SLOW_FINAL && conn == 1) ll_sleep(0.4);
            if (fk->m == M_PIPE_421 && conn == 1) {
                /* the next envelope came with the terminator: log it, then close with 421
                 * without answering it */
                ll_scope sc;
                ll_scope_enter(&sc, ll_deadline_in(1));
                for (int k = 0; k < 2 && readline(s, line, sizeof line) > 0; k++) {
                    log_line(fk, "PIPED "); /* RSET, then MAIL FROM */
                    log_line(fk, line);
                }
                ll_scope_exit(&sc);
                say(s, "421 4.3.2 closing\r\n");
                return 0;
            }
            say(s, fk->m == M_FINAL_451 ? "451 4.3.0 try again\r\n" : "250 2.0.0 queued\r\n");
            if (fk->m == M_CLOSE_AFTER_FIRST && conn == 1) return 0; /* idle close, no 421 */
        } else if (!strncmp(line, "RSET", 4) || !strncmp(line, "NOOP", 4)) {
            say(s, "250 ok\r\n");
        } else if (!strncmp(line, "QUIT", 4)) {
            say(s, "221 bye\r\n");
            return 0;
        } else {
            say(s, "500 what\r\n");
        }
    }
}

static int handler(ll_stream *s, void *arg) {
    fake *fk = arg;
    int conn = ++fk->conns;
    char line[1024];
    switch (fk->m) {
        case M_REFUSE_GREETING: say(s, "554 5.3.2 not accepting mail\r\n"); return 0;
        case M_SILENT_GREETING: ll_sleep(10); return 0;
        case M_TRICKLE_GREETING: {
            const char *g = "220 this greeting comes one byte at a time\r\n";
            for (const char *p = g; *p; p++) {
                if (lt_await_free(ll_stream_write(s, p, 1))) return 0;
                if (ll_sleep(0.05)) return 0;
            }
            return 0;
        }
        case M_EHLO_421:
            say(s, "220 fake\r\n");
            readline(s, line, sizeof line);
            say(s, "421 4.3.2 too busy\r\n");
            return 0;
        case M_NO_STARTTLS:
        case M_INJECT: {
            say(s, "220 fake\r\n");
            readline(s, line, sizeof line);
            say(s, fk->m == M_INJECT ? "250-fake\r\n250 STARTTLS\r\n" : "250-fake\r\n250 PIPELINING\r\n");
            if (fk->m == M_NO_STARTTLS) return normal(s, fk, conn);
            if (readline(s, line, sizeof line) < 0 || strcmp(line, "STARTTLS\r\n")) return 0;
            /* the go-ahead and, in the same write, a forged EHLO answer in plaintext */
            say(s, "220 go ahead\r\n250-forged\r\n250-X-INJECTED\r\n250 AUTH PLAIN\r\n");
            ll_tls_opts t = {.cert_file = cert, .key_file = key};
            if (lt_await_free(ll_stream_starttls(s, &t))) return 0;
            fk->tls = true;
            if (readline(s, line, sizeof line) < 0) return 0;
            snprintf(fk->first_after_tls, sizeof fk->first_after_tls, "%.100s", line);
            say(s, "250-fake over tls\r\n250 8BITMIME\r\n");
            return normal(s, fk, conn);
        }
        default:
            say(s, "220 fake ESMTP\r\n");
            return normal(s, fk, conn);
    }
}

typedef struct run {
    fake fk;
    ll_smtp_security sec;
    double greeting_timeout, command_timeout, final_timeout, message_timeout;
    int connect_rc, send_rc;
    char msg[1024];
    ll_smtp_result res;
    char rinfo[4][128];
    bool has_injected, has_8bit;
    double took;
    const char *rcpt[60];
    size_t nrcpt;
    bool use_client;
    int retries;
    double data_timeout;
    size_t big;
} run;

static int run_task(void *arg) {
    run *r = arg;
    ll_future *sf = ll_server_open("127.0.0.1", 0, handler, &r->fk, NULL);
    LT_CHECK(ll_await(sf) == 0);
    ll_server *srv = ll_future_take(sf);
    ll_future_free(sf);
    char url[64];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%u", (unsigned)ll_server_port(srv));
    ll_tls_opts tls = {.ca_file = cert};
    ll_smtp_opts o = {.security = r->sec ? r->sec : LL_SMTP_PLAIN, .tls = &tls,
                      .greeting_timeout = r->greeting_timeout, .command_timeout = r->command_timeout,
                      .final_timeout = r->final_timeout, .message_timeout = r->message_timeout,
                      .data_timeout = r->data_timeout,
                      .retries = r->retries, .retry_backoff = 0.01};
    if (!r->nrcpt) {
        r->rcpt[0] = "a@example.test";
        r->nrcpt = 1;
    }
    const char *data = "Subject: t\r\n\r\nbody line one\r\nbody line two\r\n";
    char *big = NULL;
    if (r->big) { /* lines of 78 'x' */
        big = malloc(r->big);
        LT_CHECK(big != NULL);
        memset(big, 'x', r->big);
        for (size_t i = 78; i + 1 < r->big; i += 80) big[i] = '\r', big[i + 1] = '\n';
        data = big;
    }
    ll_smtp_mail m = {"s@example.test", r->rcpt, r->nrcpt, data, r->big ? r->big : strlen(data)};
    ll_time t0 = ll_now();
    ll_future *f;
    ll_smtp_client *cl = NULL;
    if (r->use_client) {
        cl = ll_smtp_client_new(url, &o, NULL);
        LT_CHECK(cl != NULL);
        f = ll_smtp_send(cl, &m);
        r->send_rc = ll_await(f);
    } else {
        ll_future *cf = ll_smtp_connect(url, &o);
        r->connect_rc = ll_await(cf);
        r->took = ll_now() - t0;
        if (r->connect_rc) {
            snprintf(r->msg, sizeof r->msg, "%s", ll_future_errmsg(cf));
            ll_future_free(cf);
            goto out;
        }
        ll_smtp_conn *c = ll_future_take(cf);
        ll_future_free(cf);
        r->has_injected = ll_smtp_conn_has(c, "X-INJECTED") || ll_smtp_conn_has(c, "AUTH");
        r->has_8bit = ll_smtp_conn_has(c, "8BITMIME");
        t0 = ll_now();
        f = ll_smtp_conn_send(c, &m);
        r->send_rc = ll_await(f);
        ll_future_free(ll_smtp_close(c));
    }
    r->took = ll_now() - t0;
    snprintf(r->msg, sizeof r->msg, "%s", ll_future_errmsg(f));
    const ll_smtp_result *res = ll_smtp_result_of(f);
    if (res) {
        r->res = *res;
        for (size_t i = 0; i < res->nrcpt && i < 4; i++)
            snprintf(r->rinfo[i], sizeof r->rinfo[i], "%d %d %s %s", (int)res->rcpt[i].status,
                     res->rcpt[i].code, res->rcpt[i].enhanced, res->rcpt[i].text);
    }
    ll_future_free(f);
    ll_smtp_client_free(cl);
out:
    free(big);
    ll_future *cl_f = ll_server_close(srv, 0.5);
    ll_await(cl_f);
    ll_future_free(cl_f);
    return 0;
}

static void go(run *r) {
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, run_task, r), 0);
    ll_loop_run(ctx.loop); /* QUITs in the background */
    lt_teardown(&ctx);
}

static void test_refusals_at_every_stage(void **st) {
    (void)st;
    run r = {.fk.m = M_REFUSE_GREETING};
    go(&r);
    assert_int_equal(r.connect_rc, LL_ESMTP_REPLY);
    assert_non_null(strstr(r.msg, "554 5.3.2 not accepting mail"));

    r = (run){.fk.m = M_EHLO_421};
    go(&r);
    assert_int_equal(r.connect_rc, LL_ESMTP_REPLY);
    assert_non_null(strstr(r.msg, "421 4.3.2 too busy"));

    r = (run){.fk.m = M_MAIL_550};
    go(&r);
    assert_int_equal(r.send_rc, LL_ESMTP_REPLY);
    assert_int_equal(r.res.rejected, 1);
    assert_non_null(strstr(r.rinfo[0], "1 550 5.7.1 sender refused"));

    r = (run){.fk.m = M_RCPT_MIXED, .rcpt = {"good@x.test", "bad@x.test", "later@x.test"}, .nrcpt = 3};
    go(&r);
    assert_int_equal(r.send_rc, LL_ESMTP_PARTIAL);
    assert_int_equal(r.res.accepted, 1);
    assert_non_null(strstr(r.rinfo[1], "1 550 5.1.1 no such user"));
    assert_non_null(strstr(r.rinfo[2], "2 452 4.2.2 mailbox full"));
    assert_non_null(strstr(r.msg, "1 of 3 recipients accepted"));

    r = (run){.fk.m = M_DATA_554};
    go(&r);
    assert_int_equal(r.send_rc, LL_ESMTP_REPLY);
    assert_non_null(strstr(r.rinfo[0], "1 554 5.5.1"));

    r = (run){.fk.m = M_FINAL_451};
    go(&r);
    assert_int_equal(r.send_rc, LL_ESMTP_REPLY);
    assert_int_equal(r.res.deferred, 1);
    assert_non_null(strstr(r.rinfo[0], "2 451 4.3.0 try again"));
}

static void test_drop_mid_data(void **st) {
    (void)st;
    /* one session: the send fails, the recipient is deferred with the reason */
    run r = {.fk.m = M_DROP_MID_DATA};
    go(&r);
    assert_true(r.send_rc == LL_EOF || r.send_rc == LL_ECONNRESET || r.send_rc == LL_EPIPE);
    assert_int_equal(r.res.deferred, 1);
    /* through the pool with retries off: one attempt, deferred */
    r = (run){.fk.m = M_DROP_MID_DATA, .use_client = true, .retries = -1};
    go(&r);
    assert_true(r.send_rc == LL_EOF || r.send_rc == LL_ECONNRESET || r.send_rc == LL_EPIPE);
    assert_int_equal(r.fk.conns, 1);
    assert_int_equal(r.res.attempts, 1);
    assert_int_equal(r.res.deferred, 1);
    /* through the pool: retried on a new connection, delivered */
    r = (run){.fk.m = M_DROP_MID_DATA, .use_client = true, .retries = 2};
    go(&r);
    assert_int_equal(r.send_rc, 0);
    assert_int_equal(r.fk.conns, 2);
    assert_int_equal(r.res.attempts, 2);
}

static void test_421_reconnects(void **st) {
    (void)st;
    run r = {.fk.m = M_421_THEN_OK, .use_client = true, .retries = 2};
    go(&r);
    assert_int_equal(r.send_rc, 0);
    assert_int_equal(r.fk.conns, 2);
}

static void test_no_starttls_when_required(void **st) {
    (void)st;
    run r = {.fk.m = M_NO_STARTTLS, .sec = LL_SMTP_STARTTLS_REQUIRED};
    go(&r);
    assert_int_equal(r.connect_rc, LL_ESMTP_NOTLS);
    assert_non_null(strstr(r.msg, "STARTTLS"));
    assert_null(strstr(r.fk.log, "MAIL"));
    /* opportunistic goes on in plaintext */
    r = (run){.fk.m = M_NO_STARTTLS, .sec = LL_SMTP_STARTTLS_OPPORTUNISTIC};
    go(&r);
    assert_int_equal(r.send_rc, 0);
}

static void test_plaintext_injected_after_starttls(void **st) {
    (void)st;
    run r = {.fk.m = M_INJECT, .sec = LL_SMTP_STARTTLS_REQUIRED};
    go(&r);
    assert_int_equal(r.connect_rc, 0);
    assert_true(r.fk.tls);
    /* the client's first words over TLS are a new EHLO, and the forged answer was never read */
    assert_true(strncmp(r.fk.first_after_tls, "EHLO ", 5) == 0);
    assert_false(r.has_injected);
    assert_true(r.has_8bit);
    assert_int_equal(r.send_rc, 0);
}

static void test_endless_reply(void **st) {
    (void)st;
    run r = {.fk.m = M_ENDLESS};
    go(&r);
    assert_int_equal(r.connect_rc, LL_ESMTP_PROTO);
    assert_non_null(strstr(r.msg, "longer than 100 lines"));
}

/* Timing tolerance: a phase deadline returns within 0.5 s of its time on a loaded machine. */
static void test_replies_that_never_come(void **st) {
    (void)st;
    run r = {.fk.m = M_SILENT_GREETING, .greeting_timeout = 0.3};
    go(&r);
    assert_int_equal(r.connect_rc, LL_ETIMEDOUT);
    assert_non_null(strstr(r.msg, "greeting"));
    assert_true(r.took >= 0.29 && r.took < 0.8);

    r = (run){.fk.m = M_SILENT_AFTER_EHLO, .command_timeout = 0.3};
    go(&r);
    assert_int_equal(r.connect_rc, LL_ETIMEDOUT);
    assert_non_null(strstr(r.msg, "EHLO"));
    assert_true(r.took >= 0.29 && r.took < 0.8);

    /* a greeting trickling in one byte per 50 ms is cut by its phase deadline, not kept alive */
    r = (run){.fk.m = M_TRICKLE_GREETING, .greeting_timeout = 0.5};
    go(&r);
    assert_int_equal(r.connect_rc, LL_ETIMEDOUT);
    assert_true(r.took >= 0.49 && r.took < 1.0);

    r = (run){.fk.m = M_SILENT_FINAL, .final_timeout = 0.3};
    go(&r);
    assert_int_equal(r.send_rc, LL_ETIMEDOUT);
    assert_non_null(strstr(r.msg, "message data"));
    assert_int_equal(r.res.deferred, 1);
    assert_true(r.took >= 0.29 && r.took < 0.8);

    /* the server stops reading after 354: 24 MiB back up in the socket buffers; data_timeout */
    r = (run){.fk.m = M_STALL_DATA, .data_timeout = 0.5, .big = 24u << 20};
    go(&r);
    assert_int_equal(r.send_rc, LL_ETIMEDOUT);
    assert_non_null(strstr(r.msg, "sending the message data timed out after 0.5 s"));
    assert_int_equal(r.res.deferred, 1);
    /* took also covers copying and checking 24 MiB before the data phase starts (seconds of it
     * under valgrind) */
    double upper = lt_under_valgrind() ? 30 : 2.5;
    if (!(r.took >= 0.49 && r.took < upper)) fail_msg("took %.3f s", r.took);

    /* the per-message deadline bounds everything, retries included */
    r = (run){.fk.m = M_SILENT_FINAL, .message_timeout = 0.4, .use_client = true, .retries = 5};
    go(&r);
    assert_int_equal(r.send_rc, LL_ETIMEDOUT);
    assert_true(r.took >= 0.39 && r.took < 0.9);
}

static void test_pipelining(void **st) {
    (void)st;
    static char addrs[50][32];
    run r = {.fk.m = M_PIPELINE_CHECK, .command_timeout = 5};
    for (int i = 0; i < 50; i++) {
        snprintf(addrs[i], sizeof addrs[i], "r%d@example.test", i);
        r.rcpt[i] = addrs[i];
    }
    r.nrcpt = 50;
    go(&r);
    assert_int_equal(r.send_rc, 0);
    assert_int_equal(r.fk.rcpts_seen, 50);
    assert_int_equal(r.res.accepted, 50);
}

/* ---- the pool's upkeep: NOOP before reusing an idle session, a limit of messages per session,
 * a session the server closed while idle, a send cancelled half-way ---- */

typedef struct pool_run {
    fake fk;
    double noop_after, pause;
    unsigned max_messages;
    int n;
    int rcs[4];
    unsigned attempts[4];
    bool cancel;
    bool together;      /* all n sends at once, then await them */
    const char *first_rcpt; /* the first message's recipient (else a@example.test) */
    double cancel_took;
    ll_smtp_client_stats stats;
} pool_run;

static int pool_task(void *arg) {
    pool_run *p = arg;
    ll_future *sf = ll_server_open("127.0.0.1", 0, handler, &p->fk, NULL);
    LT_CHECK(ll_await(sf) == 0);
    ll_server *srv = ll_future_take(sf);
    ll_future_free(sf);
    char url[64];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%u", (unsigned)ll_server_port(srv));
    ll_smtp_opts o = {.security = LL_SMTP_PLAIN, .noop_after = p->noop_after,
                      .max_messages_per_session = p->max_messages, .max_sessions = 1,
                      .retries = 1, .retry_backoff = 0.01};
    ll_smtp_client *cl = ll_smtp_client_new(url, &o, NULL);
    LT_CHECK(cl != NULL);
    const char *rcpt[] = {"a@example.test"};
    const char *data = "Subject: t\r\n\r\nbody\r\n";
    ll_smtp_mail m = {"s@example.test", rcpt, 1, data, strlen(data)};
    ll_future *fs[4] = {NULL};
    if (p->together)
        for (int i = 0; i < p->n; i++) fs[i] = ll_smtp_send(cl, &m);
    for (int i = 0; i < p->n; i++) {
        const char *first[] = {p->first_rcpt};
        ll_smtp_mail m0 = m;
        if (i == 0 && p->first_rcpt) m0.rcpt = first;
        ll_future *f = p->together ? fs[i] : ll_smtp_send(cl, &m0);
        if (p->cancel) {
            ll_sleep(0.1);
            ll_time t0 = ll_now();
            ll_future_cancel(f);
            p->rcs[i] = ll_await(f);
            p->cancel_took = ll_now() - t0;
        } else {
            p->rcs[i] = ll_await(f);
        }
        const ll_smtp_result *r = ll_smtp_result_of(f);
        p->attempts[i] = r ? r->attempts : 0;
        ll_future_free(f);
        ll_sleep(p->pause);
    }
    ll_smtp_client_get_stats(cl, &p->stats);
    ll_smtp_client_free(cl);
    ll_sleep(0.05); /* the QUIT of the last session */
    ll_future *cf = ll_server_close(srv, 0.5);
    ll_await(cf);
    ll_future_free(cf);
    return 0;
}

static void go_pool(pool_run *p) {
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, pool_task, p), 0);
    ll_loop_run(ctx.loop);
    lt_teardown(&ctx);
}

static void test_pool_upkeep(void **st) {
    (void)st;
    /* idle longer than noop_after: NOOP first; two messages per session: QUIT, then a new one */
    pool_run p = {.fk.m = M_NORMAL, .noop_after = 0.05, .pause = 0.15, .max_messages = 2, .n = 3};
    go_pool(&p);
    for (int i = 0; i < 3; i++) assert_int_equal(p.rcs[i], 0);
    assert_non_null(strstr(p.fk.log, "NOOP"));
    assert_non_null(strstr(p.fk.log, "QUIT"));
    assert_int_equal(p.fk.conns, 2);
    /* the server closed the idle session: noticed before use, a new session, no retry needed */
    p = (pool_run){.fk.m = M_CLOSE_AFTER_FIRST, .noop_after = 100, .pause = 0.1, .n = 2};
    go_pool(&p);
    assert_int_equal(p.rcs[0], 0);
    assert_int_equal(p.rcs[1], 0);
    assert_int_equal(p.attempts[1], 1);
    assert_int_equal(p.fk.conns, 2);
}

/* The second message's envelope went out with the first one's terminator; the server answered the
 * data with 421 and closed without answering that envelope: the first message is retried, the
 * second goes back to wait for a session (not a retry: its one transaction is on the new
 * session), and neither takes the other's replies. */
static void test_pipelined_envelope_lost_with_session(void **st) {
    (void)st;
    pool_run p = {.fk.m = M_PIPE_421, .noop_after = 100, .max_messages = 100, .n = 2,
                  .together = true};
    go_pool(&p);
    assert_non_null(strstr(p.fk.log, "PIPED RSET\r\nPIPED MAIL FROM:<s@example.test>"));
    assert_int_equal(p.fk.conns, 2);
    assert_int_equal(p.rcs[0], 0);
    assert_int_equal(p.attempts[0], 2);
    assert_int_equal(p.rcs[1], 0);
    assert_int_equal(p.attempts[1], 1);
    assert_int_equal(p.stats.sent, 2);
    assert_int_equal(p.stats.retries, 1);
    assert_int_equal(p.stats.pipelined, 0); /* the hand-off fell through */
}

/* The second message is claimed (its envelope rides on the first one's terminator), then given up
 * while the first waits for its slow final reply: the second's caller gets control back at once,
 * the first is unaffected, and the session, whose replies to the given-up envelope were never
 * read, is not reused. */
typedef struct gone_run {
    fake fk;
    int rc0, rc1;
    double took1;
    ll_smtp_client_stats stats;
} gone_run;

static int gone_task(void *arg) {
    gone_run *g = arg;
    ll_future *sf = ll_server_open("127.0.0.1", 0, handler, &g->fk, NULL);
    LT_CHECK(ll_await(sf) == 0);
    ll_server *srv = ll_future_take(sf);
    ll_future_free(sf);
    char url[64];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%u", (unsigned)ll_server_port(srv));
    ll_smtp_opts o = {.security = LL_SMTP_PLAIN, .max_sessions = 1, .retries = -1};
    ll_smtp_client *cl = ll_smtp_client_new(url, &o, NULL);
    LT_CHECK(cl != NULL);
    const char *rcpt[] = {"a@example.test"};
    const char *data = "Subject: t\r\n\r\nbody\r\n";
    ll_smtp_mail m = {"s@example.test", rcpt, 1, data, strlen(data)};
    ll_future *f0 = ll_smtp_send(cl, &m), *f1 = ll_smtp_send(cl, &m);
    ll_sleep(0.2); /* the first is waiting for its final reply, the second is claimed */
    ll_time t0 = ll_now();
    ll_future_cancel(f1);
    g->rc1 = ll_await(f1);
    g->took1 = ll_now() - t0;
    g->rc0 = ll_await(f0);
    ll_future_free(f0);
    ll_future_free(f1);
    ll_smtp_client_get_stats(cl, &g->stats);
    ll_smtp_client_free(cl);
    ll_sleep(0.05);
    ll_future *cf = ll_server_close(srv, 0.5);
    ll_await(cf);
    ll_future_free(cf);
    return 0;
}

static void test_pipelined_waiter_gives_up(void **st) {
    (void)st;
    gone_run g = {.fk.m = M_PIPE_SLOW_FINAL};
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, gone_task, &g), 0);
    ll_loop_run(ctx.loop);
    lt_teardown(&ctx);
    assert_int_equal(g.rc1, LL_ECANCELED);
    assert_true(g.took1 < 0.5); /* generous: the loop is idle but the machine is loaded */
    assert_int_equal(g.rc0, 0);
    assert_int_equal(g.stats.sent, 1);
    assert_int_equal(g.stats.pipelined, 0);
    assert_int_equal(g.stats.open, 0); /* the session with unread replies was closed */
    /* the given-up envelope did go out behind the first message's data */
    const char *m1 = strstr(g.fk.log, "MAIL FROM");
    assert_non_null(m1);
    assert_non_null(strstr(m1 + 1, "MAIL FROM"));
    assert_int_equal(g.fk.conns, 1);
}

/* A transaction that ended before DATA (its only recipient refused) leaves the server's state to
 * RSET: the next message on the session starts with RSET (here without PIPELINING: its own round
 * trip), and is delivered. */
static void test_rset_after_refused_envelope(void **st) {
    (void)st;
    pool_run p = {.fk.m = M_RCPT_MIXED, .noop_after = 100, .max_messages = 10, .n = 2,
                  .first_rcpt = "bad@x.test"};
    go_pool(&p);
    assert_int_equal(p.rcs[0], LL_ESMTP_REPLY);
    assert_int_equal(p.rcs[1], 0);
    assert_int_equal(p.fk.conns, 1);
    assert_non_null(strstr(p.fk.log, "RCPT TO:<bad@x.test>\r\nRSET\r\nMAIL FROM:<s@example.test>\r\n"
                                     "RCPT TO:<a@example.test>\r\nDATA\r\n"));
}

static void test_cancel_mid_send(void **st) {
    (void)st;
    /* the server never answers the data; the caller cancels: control back at once, the session is
     * dropped (its state is unknown), nothing left behind (lt_teardown) */
    pool_run p = {.fk.m = M_SILENT_FINAL, .cancel = true, .n = 1};
    go_pool(&p);
    assert_int_equal(p.rcs[0], LL_ECANCELED);
    assert_true(p.cancel_took < 0.5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals_at_every_stage), cmocka_unit_test(test_drop_mid_data),
        cmocka_unit_test(test_421_reconnects),          cmocka_unit_test(test_no_starttls_when_required),
        cmocka_unit_test(test_plaintext_injected_after_starttls), cmocka_unit_test(test_endless_reply),
        cmocka_unit_test(test_replies_that_never_come), cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_pool_upkeep),             cmocka_unit_test(test_cancel_mid_send),
        cmocka_unit_test(test_pipelined_envelope_lost_with_session),
        cmocka_unit_test(test_pipelined_waiter_gives_up), cmocka_unit_test(test_rset_after_refused_envelope),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
