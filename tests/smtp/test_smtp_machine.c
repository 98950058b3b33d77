/*
 * test_smtp_machine.c — the handshake and transaction state machines and SASL, sans-I/O: scripted
 * server replies in (each fed byte by byte through the reply parser), the exact command bytes out.
 */
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "smtp_internal.h"

/* Parse one reply from text (byte by byte) into r (owned by p). */
static const ll__smtp_reply *reply(ll__smtp_parser *p, const char *text) {
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i++) {
        size_t used;
        int rc = ll__smtp_parser_feed(p, text + i, 1, &used);
        assert_true(rc >= 0);
        if (rc == 1) {
            assert_int_equal(i, n - 1);
            return &p->cur;
        }
    }
    fail_msg("incomplete reply: %s", text);
    return NULL;
}

#define EHLO_TLS "250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
#define EHLO_AUTH "250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n"

static void test_starttls_required(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_hs h;
    ll__smtp_hs_init(&h, LL_SMTP_STARTTLS_REQUIRED, "client.example");
    h.user = "tim";
    h.pass = "secret";
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, "220 mx ESMTP\r\n")), LL__HS_CONTINUE);
    assert_string_equal(h.out.data, "EHLO client.example\r\n");
    ll__sbuf_reset(&h.out);
    /* STARTTLS goes alone, even with PIPELINING offered and AUTH wanted */
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, EHLO_TLS)), LL__HS_CONTINUE);
    assert_string_equal(h.out.data, "STARTTLS\r\n");
    ll__sbuf_reset(&h.out);
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, "220 go ahead\r\n")), LL__HS_NEED_TLS);
    assert_int_equal(h.out.len, 0);
    assert_int_equal(h.state, LL__HS_TLS);
    /* after the handshake: capabilities forgotten, EHLO again */
    assert_int_equal(ll__smtp_hs_tls_done(&h), 0);
    assert_false(h.caps.pipelining || h.caps.starttls);
    assert_string_equal(h.out.data, "EHLO client.example\r\n");
    ll__sbuf_reset(&h.out);
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, EHLO_AUTH)), LL__HS_CONTINUE);
    assert_string_equal(h.out.data, "AUTH PLAIN AHRpbQBzZWNyZXQ=\r\n");
    ll__sbuf_reset(&h.out);
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, "235 2.7.0 ok\r\n")), LL__HS_DONE);
    assert_true(h.caps.pipelining && h.caps.size && h.tls);
    ll__smtp_hs_free(&h);
    ll__smtp_parser_free(&p);
}

static int run_to_fail(ll_smtp_security sec, const char *ehlo, const char *starttls_reply,
                       const char *user, bool allow_plain, char *err) {
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_hs h;
    ll__smtp_hs_init(&h, sec, "c.example");
    h.user = user;
    h.pass = "pw";
    h.allow_plaintext_auth = allow_plain;
    int rc = ll__smtp_hs_reply(&h, reply(&p, "220 hi\r\n"));
    if (rc == 0) rc = ll__smtp_hs_reply(&h, reply(&p, ehlo));
    if (rc == 0 && h.state == LL__HS_HELO) rc = ll__smtp_hs_reply(&h, reply(&p, "250 hello\r\n"));
    if (rc == 0 && h.state == LL__HS_STARTTLS) rc = ll__smtp_hs_reply(&h, reply(&p, starttls_reply));
    strcpy(err, h.err);
    if (rc == LL__HS_CONTINUE && h.state == LL__HS_AUTH) rc = 100; /* would authenticate */
    ll__smtp_hs_free(&h);
    ll__smtp_parser_free(&p);
    return rc;
}

static void test_downgrades_refused(void **st) {
    (void)st;
    char err[LL__SMTP_ERRLEN];
    /* no STARTTLS offered */
    assert_int_equal(run_to_fail(LL_SMTP_STARTTLS_REQUIRED, "250-mx\r\n250 PIPELINING\r\n", "", NULL,
                                 false, err), LL_ESMTP_NOTLS);
    assert_non_null(strstr(err, "does not offer STARTTLS"));
    /* EHLO refused: HELO has no STARTTLS */
    assert_int_equal(run_to_fail(LL_SMTP_STARTTLS_REQUIRED, "502 what\r\n", "", NULL, false, err),
                     LL_ESMTP_NOTLS);
    /* STARTTLS refused */
    assert_int_equal(run_to_fail(LL_SMTP_STARTTLS_REQUIRED, EHLO_TLS, "454 4.7.0 TLS not available\r\n",
                                 NULL, false, err), LL_ESMTP_NOTLS);
    assert_non_null(strstr(err, "454 4.7.0 TLS not available"));
    /* opportunistic: refused STARTTLS goes on in plaintext, but not with credentials */
    assert_int_equal(run_to_fail(LL_SMTP_STARTTLS_OPPORTUNISTIC, EHLO_TLS, "454 no\r\n", NULL, false,
                                 err), LL__HS_DONE);
    assert_int_equal(run_to_fail(LL_SMTP_STARTTLS_OPPORTUNISTIC, EHLO_TLS, "454 no\r\n", "u", false,
                                 err), LL_ESMTP_INSECURE);
    /* plain with credentials: refused unless allowed */
    assert_int_equal(run_to_fail(LL_SMTP_PLAIN, EHLO_AUTH, "", "u", false, err), LL_ESMTP_INSECURE);
    assert_int_equal(run_to_fail(LL_SMTP_PLAIN, EHLO_AUTH, "", "u", true, err), 100);
    /* plain never sends STARTTLS even when offered */
    assert_int_equal(run_to_fail(LL_SMTP_PLAIN, EHLO_TLS, "", NULL, false, err), LL__HS_DONE);
    /* a refused greeting names the server's text */
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_hs h;
    ll__smtp_hs_init(&h, LL_SMTP_PLAIN, "c");
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, "554 5.7.1 go away\r\n")), LL_ESMTP_REPLY);
    assert_non_null(strstr(h.err, "554 5.7.1 go away"));
    ll__smtp_hs_free(&h);
    ll__smtp_parser_free(&p);
}

static void test_helo_fallback(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_hs h;
    ll__smtp_hs_init(&h, LL_SMTP_IMPLICIT_TLS, "c.example");
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, "220 old\r\n")), 0);
    ll__sbuf_reset(&h.out);
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, "500 unknown command\r\n")), 0);
    assert_string_equal(h.out.data, "HELO c.example\r\n");
    assert_int_equal(ll__smtp_hs_reply(&h, reply(&p, "250 old\r\n")), LL__HS_DONE);
    assert_false(h.caps.esmtp);
    ll__smtp_hs_free(&h);
    ll__smtp_parser_free(&p);
}

/* SASL exchanges: the bytes of each step. */
static void test_sasl(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    char err[LL__SMTP_ERRLEN];
    ll__sbuf out = {0};
    /* CRAM-MD5: the RFC 2195 example */
    ll__smtp_sasl s = {.user = "tim", .pass = "tanstaaftanstaaf"};
    assert_int_equal(ll__smtp_sasl_pick(&s, LL__AUTH_CRAM_MD5, NULL, err), 0);
    assert_int_equal(ll__smtp_sasl_start(&s, &out, err), 0);
    assert_string_equal(out.data, "AUTH CRAM-MD5\r\n");
    ll__sbuf_reset(&out);
    assert_int_equal(ll__smtp_sasl_step(&s, reply(&p, "334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n"), &out, err), 0);
    ll__sbuf dec = {0};
    out.len -= 2;
    assert_int_equal(ll__b64_decode(&dec, out.data, out.len), 0);
    assert_string_equal(dec.data, "tim b913a602c7eda7a495b4e6e7334d3890");
    ll__sbuf_free(&dec);
    ll__sbuf_reset(&out);
    assert_int_equal(ll__smtp_sasl_step(&s, reply(&p, "235 ok\r\n"), &out, err), 1);
    /* LOGIN: two prompts */
    ll__smtp_sasl l = {.user = "u", .pass = "p"};
    assert_int_equal(ll__smtp_sasl_pick(&l, LL__AUTH_LOGIN | LL__AUTH_CRAM_MD5, NULL, err), 0);
    assert_int_equal(l.mech, LL__AUTH_LOGIN);
    ll__smtp_sasl_start(&l, &out, err);
    assert_string_equal(out.data, "AUTH LOGIN\r\n");
    ll__sbuf_reset(&out);
    ll__smtp_sasl_step(&l, reply(&p, "334 VXNlcm5hbWU6\r\n"), &out, err);
    assert_string_equal(out.data, "dQ==\r\n");
    ll__sbuf_reset(&out);
    ll__smtp_sasl_step(&l, reply(&p, "334 UGFzc3dvcmQ6\r\n"), &out, err);
    assert_string_equal(out.data, "cA==\r\n");
    ll__sbuf_reset(&out);
    assert_int_equal(ll__smtp_sasl_step(&l, reply(&p, "535 5.7.8 bad credentials\r\n"), &out, err),
                     LL_ESMTP_AUTH);
    assert_non_null(strstr(err, "535 5.7.8 bad credentials"));
    /* XOAUTH2: initial response; a 334 error is answered with an empty line */
    ll__smtp_sasl x = {.user = "me@example.com", .token = "tok"};
    assert_int_equal(ll__smtp_sasl_pick(&x, LL__AUTH_PLAIN | LL__AUTH_XOAUTH2, NULL, err), 0);
    assert_int_equal(x.mech, LL__AUTH_XOAUTH2);
    ll__smtp_sasl_start(&x, &out, err);
    assert_string_equal(out.data, "AUTH XOAUTH2 dXNlcj1tZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB0b2sBAQ==\r\n");
    ll__sbuf_reset(&out);
    assert_int_equal(ll__smtp_sasl_step(&x, reply(&p, "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n"), &out, err), 0);
    assert_string_equal(out.data, "\r\n");
    /* a forced mechanism the server does not offer */
    ll__smtp_sasl f = {.user = "u", .pass = "p"};
    assert_int_equal(ll__smtp_sasl_pick(&f, LL__AUTH_PLAIN, "CRAM-MD5", err), LL_ESMTP_AUTH);
    ll__sbuf_free(&out);
    ll__smtp_parser_free(&p);
}

static ll__smtp_caps caps_of(ll__smtp_parser *p, const char *ehlo) {
    ll__smtp_caps c;
    memset(&c, 0, sizeof c);
    assert_int_equal(ll__smtp_caps_parse(&c, reply(p, ehlo)), 0);
    return c;
}

/* 50 recipients with PIPELINING: one write for the envelope, then DATA, then the body. */
static void test_pipelined_50(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_caps c = caps_of(&p, "250-mx\r\n250-PIPELINING\r\n250 SIZE 100000\r\n");
    const char *rc[50];
    char addrs[50][32];
    for (int i = 0; i < 50; i++) {
        snprintf(addrs[i], sizeof addrs[i], "user%d@example.com", i);
        rc[i] = addrs[i];
    }
    const char *data = "Subject: hi\n\n.dot\nbody";
    ll__smtp_txn t;
    assert_int_equal(ll__smtp_txn_start(&t, &c, "me@example.com", rc, 50, data, strlen(data), true), 0);
    /* one write: RSET, MAIL, 50 RCPT */
    assert_true(strncmp(t.out.data, "RSET\r\nMAIL FROM:<me@example.com> SIZE=25\r\nRCPT TO:<user0@example.com>\r\n", 71) == 0);
    size_t lines = 0;
    for (size_t i = 0; i < t.out.len; i++) lines += t.out.data[i] == '\n';
    assert_int_equal(lines, 52);
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "250 reset\r\n")), LL__TX_CONTINUE);
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "250 2.1.0 ok\r\n")), LL__TX_CONTINUE);
    for (int i = 0; i < 50; i++) {
        const char *r = i == 7 ? "550 5.1.1 no such user\r\n" : i == 9 ? "451 4.2.0 later\r\n" : "250 ok\r\n";
        int want = i == 49 ? LL__TX_CONTINUE : LL__TX_CONTINUE;
        assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, r)), want);
        if (i < 49) assert_int_equal(t.out.len, 0);
    }
    assert_string_equal(t.out.data, "DATA\r\n");
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "354 go\r\n")), LL__TX_SEND_BODY);
    /* the body in pieces of at most 5 input bytes, concatenated */
    ll__sbuf body = {0};
    int k;
    while ((k = ll__smtp_txn_body(&t, 5)) == 1) ll__sbuf_append(&body, t.out.data, t.out.len);
    assert_int_equal(k, 0);
    assert_string_equal(body.data, "Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n");
    ll__sbuf_free(&body);
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "250 2.0.0 queued as X\r\n")), LL__TX_COMPLETE);
    assert_int_equal(t.accepted, 48);
    ll_smtp_result *res = ll__smtp_result_new(t.rcpt, t.nrcpt, t.code, t.enhanced, t.text, 1);
    assert_int_equal(res->accepted, 48);
    assert_int_equal(res->rejected, 1);
    assert_int_equal(res->deferred, 1);
    assert_int_equal(res->rcpt[7].code, 550);
    assert_string_equal(res->rcpt[7].enhanced, "5.1.1");
    assert_string_equal(res->rcpt[7].text, "no such user");
    assert_int_equal(res->rcpt[9].status, LL_SMTP_RCPT_DEFERRED);
    assert_string_equal(res->text, "queued as X");
    ll__smtp_result_free(res);
    ll__smtp_txn_free(&t);
    ll__smtp_caps_free(&c);
    ll__smtp_parser_free(&p);
}

/* Without PIPELINING, one command per reply; no recipient accepted: no DATA. */
static void test_lockstep_none_accepted(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_caps c = caps_of(&p, "250-mx\r\n250 8BITMIME\r\n");
    const char *rc[] = {"a@x.example", "b@x.example"};
    ll__smtp_txn t;
    assert_int_equal(ll__smtp_txn_start(&t, &c, "", rc, 2, "x\xc3\xa9", 3, true), 0);
    assert_string_equal(t.out.data, "RSET\r\n");
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "250 ok\r\n")), 0);
    assert_string_equal(t.out.data, "MAIL FROM:<> BODY=8BITMIME\r\n");
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "250 ok\r\n")), 0);
    assert_string_equal(t.out.data, "RCPT TO:<a@x.example>\r\n");
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "550 no\r\n")), 0);
    assert_string_equal(t.out.data, "RCPT TO:<b@x.example>\r\n");
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "553 no\r\n")), LL__TX_COMPLETE);
    assert_int_equal(t.out.len, 0); /* no DATA */
    assert_int_equal(t.accepted, 0);
    ll__smtp_txn_free(&t);
    ll__smtp_caps_free(&c);
    ll__smtp_parser_free(&p);
}

/* MAIL refused with PIPELINING: the RCPT replies are read, every recipient takes MAIL's answer. */
static void test_mail_refused_and_421(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_caps c = caps_of(&p, "250-mx\r\n250 PIPELINING\r\n");
    const char *rc[] = {"a@x.example", "b@x.example"};
    ll__smtp_txn t;
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", rc, 2, "hi", 2, false), 0);
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "452 4.3.1 full\r\n")), 0);
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "503 5.5.1 need MAIL\r\n")), 0);
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "503 5.5.1 need MAIL\r\n")), LL__TX_COMPLETE);
    assert_int_equal(t.rcpt[0].code, 452);
    assert_int_equal(t.rcpt[1].code, 452);
    ll__smtp_txn_free(&t);
    /* 421 after the first RCPT: the second stays unanswered, the session is closing */
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", rc, 2, "hi", 2, false), 0);
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "250 ok\r\n")), 0);
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "421 4.3.2 shutting down\r\n")), LL__TX_COMPLETE);
    assert_true(t.closing);
    assert_int_equal(t.rcpt[0].code, 421);
    assert_int_equal(t.rcpt[1].code, 0);
    ll__smtp_txn_free(&t);
    /* DATA refused: the accepted recipient takes DATA's refusal */
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", rc, 2, "hi", 2, false), 0);
    ll__smtp_txn_reply(&t, reply(&p, "250 ok\r\n"));
    ll__smtp_txn_reply(&t, reply(&p, "250 ok\r\n"));
    ll__smtp_txn_reply(&t, reply(&p, "550 no\r\n"));
    assert_int_equal(ll__smtp_txn_reply(&t, reply(&p, "554 5.6.0 no data today\r\n")), LL__TX_COMPLETE);
    assert_int_equal(t.rcpt[0].code, 554);
    assert_int_equal(t.rcpt[1].code, 550);
    assert_int_equal(t.accepted, 0);
    ll__smtp_txn_free(&t);
    ll__smtp_caps_free(&c);
    ll__smtp_parser_free(&p);
}

static void test_txn_refusals_before_sending(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_caps c = caps_of(&p, "250-mx\r\n250 SIZE 10\r\n");
    ll__smtp_txn t;
    const char *bad[] = {"a@x.example\r\nRCPT TO:<evil@x.example>"};
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", bad, 1, "hi", 2, false), LL_EINVAL);
    assert_int_equal(t.out.len, 0);
    ll__smtp_txn_free(&t);
    const char *ok[] = {"a@x.example"};
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x\nexample", ok, 1, "hi", 2, false), LL_EINVAL);
    ll__smtp_txn_free(&t);
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", ok, 1, "0123456789X", 11, false), LL_EMSGSIZE);
    ll__smtp_txn_free(&t);
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", ok, 1, "h\xc3\xa9", 3, false), LL_ESMTP_PROTO);
    assert_non_null(strstr(t.err, "8BITMIME"));
    ll__smtp_txn_free(&t);
    const char *utf[] = {"j\xc3\xb6rg@x.example"};
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", utf, 1, "hi", 2, false), LL_ESMTP_PROTO);
    assert_non_null(strstr(t.err, "SMTPUTF8"));
    ll__smtp_txn_free(&t);
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", ok, 1, "a\0b", 3, false), LL_EINVAL);
    ll__smtp_txn_free(&t);
    ll__smtp_caps_free(&c);
    /* SMTPUTF8 offered: the parameter is sent */
    c = caps_of(&p, "250-mx\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n");
    assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.example", utf, 1, "hi", 2, false), 0);
    assert_string_equal(t.out.data, "MAIL FROM:<s@x.example> SMTPUTF8\r\n");
    ll__smtp_txn_free(&t);
    ll__smtp_caps_free(&c);
    ll__smtp_parser_free(&p);
}

/* Feed `bytes` (several replies) in random pieces; each complete reply goes to *cur, which moves
 * from a to b once a is complete: what a pipelined session's reader does. */
static void feed_two(ll__smtp_parser *p, const char *bytes, ll__smtp_txn *a, ll__smtp_txn *b,
                     int *ra, int *rb, unsigned seed) {
    size_t n = strlen(bytes), off = 0;
    srand(seed);
    while (off < n) {
        size_t k = 1 + (size_t)rand() % 7;
        if (k > n - off) k = n - off;
        size_t done = 0;
        while (done < k) {
            size_t used = 0;
            int rc = ll__smtp_parser_feed(p, bytes + off + done, k - done, &used);
            assert_true(rc >= 0);
            done += used;
            if (rc == 1) {
                if (a->state != LL__TX_DONE) *ra = ll__smtp_txn_reply(a, &p->cur);
                else *rb = ll__smtp_txn_reply(b, &p->cur);
            }
        }
        off += k;
    }
}

/* RFC 2920: the next message's MAIL/RCPT in the same write as this message's data; the final
 * reply is this message's, the rest the next one's, whatever the server said to either. */
static void test_envelope_follows_data(void **st) {
    (void)st;
    for (unsigned seed = 1; seed <= 20; seed++) {
        ll__smtp_parser p;
        ll__smtp_parser_init(&p, 0, 0);
        ll__smtp_caps c = caps_of(&p, "250-mx\r\n250 PIPELINING\r\n");
        const char *ra_[] = {"a1@x.test"};
        const char *rb_[] = {"b1@x.test", "b2@x.test"};
        ll__smtp_txn a, b;
        assert_int_equal(ll__smtp_txn_start(&a, &c, "s@x.test", ra_, 1, "hi\n.\n", 5, false), 0);
        assert_string_equal(a.out.data, "MAIL FROM:<s@x.test>\r\nRCPT TO:<a1@x.test>\r\n");
        assert_int_equal(ll__smtp_txn_reply(&a, reply(&p, "250 ok\r\n")), LL__TX_CONTINUE);
        assert_int_equal(ll__smtp_txn_reply(&a, reply(&p, "250 ok\r\n")), LL__TX_CONTINUE);
        assert_string_equal(a.out.data, "DATA\r\n");
        assert_int_equal(ll__smtp_txn_reply(&a, reply(&p, "354 go\r\n")), LL__TX_SEND_BODY);
        assert_int_equal(ll__smtp_txn_start(&b, &c, "s@x.test", rb_, 2, "b\r\n", 3, true), 0);
        /* not before the terminator */
        assert_int_equal(ll__smtp_txn_follow(&a, &b), LL_ESTATE);
        assert_int_equal(ll__smtp_txn_body(&a, 1024), 1);
        assert_true(a.body_done);
        assert_int_equal(ll__smtp_txn_follow(&a, &b), 0);
        assert_string_equal(a.out.data, "hi\r\n..\r\n.\r\nRSET\r\nMAIL FROM:<s@x.test>\r\n"
                                        "RCPT TO:<b1@x.test>\r\n"
                                        "RCPT TO:<b2@x.test>\r\n");
        assert_int_equal(b.out.len, 0);
        assert_int_equal(ll__smtp_txn_body(&a, 1024), 0);
        /* a's data refused, b's second recipient refused, one read of all five replies */
        int ra = -100, rb = -100;
        feed_two(&p, "554 5.6.0 a rejected\r\n250 2.0.0 flushed\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n"
                     "550 5.1.1 no b2\r\n",
                 &a, &b, &ra, &rb, seed);
        assert_int_equal(ra, LL__TX_COMPLETE);
        assert_int_equal(a.code, 554);
        assert_int_equal(a.rcpt[0].code, 554);
        assert_string_equal(a.rcpt[0].text, "a rejected");
        assert_int_equal(rb, LL__TX_CONTINUE);
        assert_int_equal(b.rcpt[0].code, 250);
        assert_int_equal(b.rcpt[1].code, 550);
        assert_string_equal(b.rcpt[1].enhanced, "5.1.1");
        assert_string_equal(b.out.data, "DATA\r\n");
        assert_int_equal(ll__smtp_txn_reply(&b, reply(&p, "354 go\r\n")), LL__TX_SEND_BODY);
        ll__smtp_txn_free(&a);
        ll__smtp_txn_free(&b);
        ll__smtp_caps_free(&c);
        ll__smtp_parser_free(&p);
    }
    /* refused: no PIPELINING, or a next transaction whose envelope is not all queued (without
     * PIPELINING, RSET goes out alone) */
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_caps plain = caps_of(&p, "250 mx\r\n");
    ll__smtp_caps pipe = caps_of(&p, "250-mx\r\n250 PIPELINING\r\n");
    const char *r1[] = {"a@x.test"};
    for (int k = 0; k < 2; k++) {
        const ll__smtp_caps *cc = k == 0 ? &plain : &pipe;
        ll__smtp_txn a, b;
        assert_int_equal(ll__smtp_txn_start(&a, cc, "s@x.test", r1, 1, "x", 1, false), 0);
        ll__smtp_txn_reply(&a, reply(&p, "250 ok\r\n"));
        ll__smtp_txn_reply(&a, reply(&p, "250 ok\r\n"));
        assert_int_equal(ll__smtp_txn_reply(&a, reply(&p, "354 go\r\n")), LL__TX_SEND_BODY);
        assert_int_equal(ll__smtp_txn_body(&a, 100), 1);
        /* k == 1: this one pipelines, the next was started for a session without PIPELINING
         * (its RSET queued alone, its MAIL not yet) */
        assert_int_equal(ll__smtp_txn_start(&b, &plain, "s@x.test", r1, 1, "y", 1, k == 1), 0);
        assert_int_equal(ll__smtp_txn_follow(&a, &b), LL_ESTATE);
        assert_string_equal(a.out.data, "x\r\n.\r\n"); /* nothing appended */
        ll__smtp_txn_free(&a);
        ll__smtp_txn_free(&b);
    }
    ll__smtp_caps_free(&plain);
    ll__smtp_caps_free(&pipe);
    ll__smtp_parser_free(&p);
}

/* The SIZE parameter counts the bytes as sent (a bare CR or LF becomes CRLF); the 8-bit check sees
 * a high byte wherever it is (inside the eight-byte words it scans, or in the tail). */
static void test_size_and_8bit_scan(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    ll__smtp_caps c = caps_of(&p, "250-mx\r\n250-PIPELINING\r\n250 SIZE 100000\r\n");
    const char *r1[] = {"a@x.test"};
    const char *cases[][2] = {{"a\rb\r\nc\n", "SIZE=9"}, {"\n\r", "SIZE=4"}, {"\r\n\r\n", "SIZE=4"},
                              {"", "SIZE=0"}, {"\r", "SIZE=2"}, {"x\n\nx", "SIZE=6"}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ll__smtp_txn t;
        assert_int_equal(ll__smtp_txn_start(&t, &c, "s@x.test", r1, 1, cases[k][0], strlen(cases[k][0]),
                                            false), 0);
        char want[64];
        snprintf(want, sizeof want, "MAIL FROM:<s@x.test> %s\r\n", cases[k][1]);
        assert_true(strncmp(t.out.data, want, strlen(want)) == 0);
        ll__smtp_txn_free(&t);
    }
    char buf[40];
    for (size_t n = 0; n <= sizeof buf; n++) {
        memset(buf, 'a', sizeof buf);
        assert_true(ll__smtp_is_ascii(buf, n));
        for (size_t i = 0; i < n; i++) {
            memset(buf, 'a', sizeof buf);
            buf[i] = (char)0x80;
            assert_false(ll__smtp_is_ascii(buf, n));
            if (i + 1 < n) assert_true(ll__smtp_is_ascii(buf + i + 1, n - i - 1));
        }
    }
    ll__smtp_caps_free(&c);
    ll__smtp_parser_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starttls_required), cmocka_unit_test(test_downgrades_refused),
        cmocka_unit_test(test_helo_fallback),     cmocka_unit_test(test_sasl),
        cmocka_unit_test(test_pipelined_50),      cmocka_unit_test(test_lockstep_none_accepted),
        cmocka_unit_test(test_mail_refused_and_421), cmocka_unit_test(test_txn_refusals_before_sending),
        cmocka_unit_test(test_envelope_follows_data), cmocka_unit_test(test_size_and_8bit_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
