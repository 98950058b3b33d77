/*
 * test_smtp_mime.c — the MIME builder and the DKIM signer. The built messages are checked on their
 * own (line lengths, CRLF, no Bcc header, injection refused) and after a trip through a real
 * server: aiosmtpd records the bytes, Python's email package parses them (decoded headers, parts,
 * file names, Content-IDs, payload digests) and python3-dkim verifies the signatures, rsa-sha256
 * and ed25519-sha256 — implementations independent of ours.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "harness/harness.h"
#include "harness/smtpserver.h"
#include "libloop/smtp.h"
#include "libloop/mime.h"

static lt_smtp srv;
static bool have_srv;
static char keydir[64];

static bool sh(const char *cmd) { return system(cmd) == 0; }

static int group_setup(void **st) {
    (void)st;
    have_srv = lt_smtp_start(&srv);
    snprintf(keydir, sizeof keydir, "/tmp/ll-dkim-XXXXXX");
    if (!mkdtemp(keydir)) return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null"
             " && openssl pkey -in rsa.pem -pubout -out rsa.pub 2>/dev/null"
             " && openssl genpkey -algorithm ED25519 -out ed.pem 2>/dev/null"
             " && openssl pkey -in ed.pem -pubout -out ed.pub 2>/dev/null", keydir);
    return sh(cmd) ? 0 : -1;
}

static int group_teardown(void **st) {
    (void)st;
    lt_smtp_stop(&srv);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", keydir);
    sh(cmd);
    return 0;
}

static char *slurp(const char *name) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", keydir, name);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 8192);
    size_t n = fread(buf, 1, 8191, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static const char *SUBJECT = "Grüße aus Köln — a subject line long enough that it must be folded "
                             "across several lines, with ünïcödé all along the way";
static const char *FILENAME = "Bericht für März 2026 — sehr lange Dateinamen sind erlaubt.pdf";
static unsigned char attachment[3000];
static unsigned char image[700];

static ll_smtp_mime *sample(void) {
    ll_smtp_mime *m = ll_smtp_mime_new();
    assert_non_null(m);
    assert_int_equal(ll_smtp_mime_set_from(m, "Jörg Müller", "joerg@example.test"), 0);
    assert_int_equal(ll_smtp_mime_add_to(m, "Alice \"Al\" Example", "alice@example.test"), 0);
    assert_int_equal(ll_smtp_mime_add_to(m, NULL, "bob@example.test"), 0);
    assert_int_equal(ll_smtp_mime_add_cc(m, "Carol", "carol@example.test"), 0);
    assert_int_equal(ll_smtp_mime_add_bcc(m, "secret-dave@example.test"), 0);
    assert_int_equal(ll_smtp_mime_set_reply_to(m, NULL, "replies@example.test"), 0);
    assert_int_equal(ll_smtp_mime_set_subject(m, SUBJECT), 0);
    assert_int_equal(ll_smtp_mime_add_header(m, "X-Campaign", "spring"), 0);
    assert_int_equal(ll_smtp_mime_set_text(m, "Hallo Alice,\nschöne Grüße.\n.\nLine with trailing space \n"), 0);
    assert_int_equal(ll_smtp_mime_set_html(m, "<p>Hallo <b>Alice</b> <img src=\"cid:logo@x\"></p>\n"), 0);
    for (size_t i = 0; i < sizeof attachment; i++) attachment[i] = (unsigned char)(i * 7 + 3);
    for (size_t i = 0; i < sizeof image; i++) image[i] = (unsigned char)(i ^ 0x5a);
    assert_int_equal(ll_smtp_mime_attach(m, FILENAME, "application/pdf", attachment, sizeof attachment), 0);
    assert_int_equal(ll_smtp_mime_attach(m, "plain.txt", "text/plain", "--=_ll_ boundary-like text\r\n", 28), 0);
    assert_int_equal(ll_smtp_mime_add_inline(m, "logo@x", "image/png", image, sizeof image), 0);
    return m;
}

static void sha256_hex(const void *p, size_t n, char *out) {
    unsigned char d[32];
    unsigned int l;
    EVP_Digest(p, n, d, &l, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_build_shape(void **st) {
    (void)st;
    ll_smtp_mime *m = sample();
    char *msg = NULL, *err = NULL;
    size_t len = 0;
    assert_int_equal(ll_smtp_mime_build(m, &msg, &len, &err), 0);
    assert_int_equal(strlen(msg), len);
    /* CRLF only, lines at most 78 (998 is the hard limit; the builder keeps to 78) */
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\n') {
            assert_true(i > 0 && msg[i - 1] == '\r');
            col = 0;
        } else if (msg[i] == '\r') {
            assert_true(i + 1 < len && msg[i + 1] == '\n');
        } else {
            col++;
            if (col > 78) fail_msg("line longer than 78 at %zu: %.80s", i, msg + i - col + 1);
        }
        assert_true((unsigned char)msg[i] < 0x80); /* everything encoded */
    }
    assert_null(strstr(msg, "secret-dave"));
    assert_null(strstr(msg, "Bcc"));
    assert_non_null(strstr(msg, "multipart/mixed"));
    assert_non_null(strstr(msg, "multipart/related"));
    assert_non_null(strstr(msg, "multipart/alternative"));
    assert_non_null(strstr(msg, "filename*0*=UTF-8''Bericht%20f%C3%BCr"));
    assert_non_null(strstr(msg, "=?UTF-8?B?"));
    ll_free(msg);
    /* envelope: To, Cc and Bcc */
    ll_smtp_mail mail;
    assert_int_equal(ll_smtp_mime_mail(m, &mail, &err), 0);
    assert_int_equal(mail.nrcpt, 4);
    assert_string_equal(mail.rcpt[3], "secret-dave@example.test");
    assert_string_equal(mail.from, "joerg@example.test");
    ll_smtp_mime_free(m);
}

static void test_injection_and_errors(void **st) {
    (void)st;
    ll_smtp_mime *m = ll_smtp_mime_new();
    assert_int_equal(ll_smtp_mime_set_subject(m, "hi\r\nBcc: evil@example.test"), LL_EINVAL);
    assert_int_equal(ll_smtp_mime_set_from(m, "Name\nX-Evil: 1", "a@b.test"), LL_EINVAL);
    assert_int_equal(ll_smtp_mime_add_to(m, NULL, "a@b.test\r\nRCPT TO:<x@y>"), LL_EINVAL);
    assert_int_equal(ll_smtp_mime_add_header(m, "X-Ok", "v\r\nBcc: x"), LL_EINVAL);
    assert_int_equal(ll_smtp_mime_add_header(m, "Bcc", "x@y.test"), LL_EINVAL);
    assert_int_equal(ll_smtp_mime_add_header(m, "Content-Type", "text/evil"), LL_EINVAL);
    assert_int_equal(ll_smtp_mime_attach(m, "a\r\nb.txt", NULL, "x", 1), LL_EINVAL);
    char *msg = NULL, *err = NULL;
    size_t len;
    assert_int_equal(ll_smtp_mime_build(m, &msg, &len, &err), LL_EINVAL);
    assert_non_null(strstr(err, "From"));
    ll_free(err);
    ll_smtp_mime_set_from(m, NULL, "a@b.test");
    assert_int_equal(ll_smtp_mime_build(m, &msg, &len, &err), LL_EINVAL);
    assert_non_null(strstr(err, "recipient"));
    ll_free(err);
    ll_smtp_mime_free(m);
    ll_smtp_mime_free(NULL);
    ll_smtp_dkim_opts o = {.domain = "example.test", .selector = "s", .key_pem = "not a key"};
    assert_null(ll_smtp_dkim_new(&o, &err));
    assert_non_null(strstr(err, "PEM"));
    ll_free(err);
}

/* Send the message through aiosmtpd and return the inspection of what it received. */
typedef struct sendcase {
    ll_smtp_mail mail;
    int rc;
    char msg[512];
} sendcase;

static int send_one(void *arg) {
    sendcase *sc = arg;
    ll_tls_opts tls = {.ca_file = srv.cert};
    ll_smtp_opts o = {.tls = &tls};
    ll_future *cf = ll_smtp_connect(srv.url, &o);
    LT_CHECKF(ll_await(cf) == 0, "%s", ll_future_errmsg(cf));
    ll_smtp_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    ll_future *f = ll_smtp_conn_send(c, &sc->mail);
    sc->rc = ll_await(f);
    snprintf(sc->msg, sizeof sc->msg, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    ll_future *q = ll_smtp_close(c);
    ll_await(q);
    ll_future_free(q);
    return 0;
}

static void send_and_inspect(ll_smtp_mail *mail, const char *dkim_pub, char *out, size_t n) {
    sendcase sc = {.mail = *mail};
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, send_one, &sc), 0);
    lt_teardown(&ctx);
    if (sc.rc) fail_msg("send: %s", sc.msg);
    char pub[128];
    if (dkim_pub) snprintf(pub, sizeof pub, "%s/%s", keydir, dkim_pub);
    assert_true(lt_smtp_inspect(&srv, lt_smtp_count(&srv), dkim_pub ? pub : NULL, out, n));
    if (getenv("LT_VERBOSE")) {
        FILE *vf = fopen("/tmp/ll-smtp-inspect.txt", "a");
        if (vf) {
            fputs(out, vf);
            fclose(vf);
        }
    }
}

static void test_parsed_by_python(void **st) {
    (void)st;
    if (!have_srv) skip();
    ll_smtp_mime *m = sample();
    ll_smtp_mail mail;
    char *err = NULL;
    assert_int_equal(ll_smtp_mime_mail(m, &mail, &err), 0);
    static char out[32768];
    send_and_inspect(&mail, NULL, out, sizeof out);
    assert_non_null(strstr(out, "rcpt: alice@example.test,bob@example.test,carol@example.test,secret-dave@example.test"));
    assert_null(strstr(out, "header:Bcc"));
    char want[512];
    snprintf(want, sizeof want, "header:Subject: %s\n", SUBJECT);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "header:From: Jörg Müller <joerg@example.test>"));
    assert_non_null(strstr(out, "header:To: \"Alice \\\"Al\\\" Example\" <alice@example.test>, bob@example.test"));
    assert_non_null(strstr(out, "header:Cc: Carol <carol@example.test>"));
    assert_non_null(strstr(out, "header:Reply-To: replies@example.test"));
    assert_non_null(strstr(out, "header:X-Campaign: spring"));
    assert_non_null(strstr(out, "header:Message-ID: <"));
    assert_non_null(strstr(out, "@example.test>"));
    char h[65];
    sha256_hex(attachment, sizeof attachment, h);
    snprintf(want, sizeof want, "application/pdf disp=attachment file=%s cid=None len=3000 sha256=%s", FILENAME, h);
    assert_non_null(strstr(out, want));
    sha256_hex(image, sizeof image, h);
    snprintf(want, sizeof want, "image/png disp=inline file=None cid=<logo@x> len=700 sha256=%s", h);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "text='Hallo Alice,\\r\\nschöne Grüße.\\r\\n.\\r\\nLine with trailing space \\r\\n'"));
    assert_non_null(strstr(out, "cte=quoted-printable"));
    assert_non_null(strstr(out, "text/html"));
    assert_non_null(strstr(out, "text='--=_ll_ boundary-like text\\r\\n'"));
    assert_non_null(strstr(out, "defects: 0"));
    ll_smtp_mime_free(m);
}

static void test_base64_when_smaller(void **st) {
    (void)st;
    if (!have_srv) skip();
    ll_smtp_mime *m = ll_smtp_mime_new();
    ll_smtp_mime_set_from(m, NULL, "a@example.test");
    ll_smtp_mime_add_to(m, NULL, "b@example.test");
    ll_smtp_mime_set_subject(m, "日本語の件名");
    ll_smtp_mime_set_text(m, "日本語のテキストです。日本語のテキストです。");
    ll_smtp_mail mail;
    char *err = NULL;
    assert_int_equal(ll_smtp_mime_mail(m, &mail, &err), 0);
    static char out[16384];
    send_and_inspect(&mail, NULL, out, sizeof out);
    assert_non_null(strstr(out, "cte=base64 text='日本語のテキストです。日本語のテキストです。'"));
    assert_non_null(strstr(out, "header:Subject: 日本語の件名"));
    ll_smtp_mime_free(m);
}

static void dkim_case(const char *key, const char *pub) {
    char *pem = slurp(key);
    char *err = NULL;
    ll_smtp_dkim_opts o = {.domain = "example.test", .selector = "sel", .key_pem = pem};
    ll_smtp_dkim *d = ll_smtp_dkim_new(&o, &err);
    if (!d) fail_msg("%s", err);
    ll_smtp_mime *m = sample();
    ll_smtp_mime_set_dkim(m, d);
    ll_smtp_mail mail;
    assert_int_equal(ll_smtp_mime_mail(m, &mail, &err), 0);
    static char out[32768];
    send_and_inspect(&mail, pub, out, sizeof out);
    if (!strstr(out, "dkim: pass")) fail_msg("%s", out);
    /* the same message changed by one byte in the body after signing: the verifier says no */
    char *copy = malloc(mail.len);
    memcpy(copy, mail.data, mail.len);
    char *p = strstr(copy, "Hallo Alice");
    assert_non_null(p);
    p[0] = 'J';
    ll_smtp_mail bad = mail;
    bad.data = copy;
    send_and_inspect(&bad, pub, out, sizeof out);
    assert_non_null(strstr(out, "dkim: fail"));
    free(copy);
    ll_smtp_mime_free(m);
    ll_smtp_dkim_free(d);
    free(pem);
}

static void test_dkim_rsa(void **st) {
    (void)st;
    if (!have_srv) skip();
    dkim_case("rsa.pem", "rsa.pub");
}

static void test_dkim_ed25519(void **st) {
    (void)st;
    if (!have_srv) skip();
    dkim_case("ed.pem", "ed.pub");
}

/* Chosen headers (ll_smtp_dkim_opts.headers): a header outside the list may change and the
 * signature still verifies; one in the list may not; a listed header that was absent is signed as
 * absent, so adding it later breaks the signature (RFC 6376 5.4). Verified by python3-dkim. */
static void test_dkim_chosen_headers(void **st) {
    (void)st;
    if (!have_srv) skip();
    char *pem = slurp("rsa.pem");
    char *err = NULL;
    ll_smtp_dkim_opts o = {.domain = "example.test", .selector = "sel", .key_pem = pem,
                           .headers = "From:Subject:X-Campaign:X-Absent"};
    ll_smtp_dkim *d = ll_smtp_dkim_new(&o, &err);
    if (!d) fail_msg("%s", err);
    ll_smtp_mime *m = sample();
    ll_smtp_mime_set_dkim(m, d);
    ll_smtp_mail mail;
    assert_int_equal(ll_smtp_mime_mail(m, &mail, &err), 0);
    static char out[32768];
    send_and_inspect(&mail, "rsa.pub", out, sizeof out);
    if (!strstr(out, "dkim: pass")) fail_msg("%s", out);
    char *copy = malloc(mail.len + 32);
    ll_smtp_mail changed = mail;
    changed.data = copy;
    /* To is not signed: changing it keeps the signature valid */
    memcpy(copy, mail.data, mail.len);
    char *p = strstr(copy, "\r\nTo: ");
    assert_non_null(p);
    p = strstr(p, "Example");
    assert_non_null(p);
    p[0] = 'e';
    send_and_inspect(&changed, "rsa.pub", out, sizeof out);
    if (!strstr(out, "dkim: pass")) fail_msg("unsigned header changed: %s", out);
    /* X-Campaign is signed */
    memcpy(copy, mail.data, mail.len);
    p = strstr(copy, "X-Campaign: spring");
    assert_non_null(p);
    p[12] = 'S';
    send_and_inspect(&changed, "rsa.pub", out, sizeof out);
    assert_non_null(strstr(out, "dkim: fail"));
    /* X-Absent was signed as absent: adding it after signing breaks the signature */
    p = strstr(mail.data, "\r\n\r\n");
    assert_non_null(p);
    size_t head = (size_t)(p - (const char *)mail.data) + 2;
    memcpy(copy, mail.data, head);
    memcpy(copy + head, "X-Absent: now here\r\n", 20);
    memcpy(copy + head + 20, (const char *)mail.data + head, mail.len - head);
    changed.len = mail.len + 20;
    send_and_inspect(&changed, "rsa.pub", out, sizeof out);
    assert_non_null(strstr(out, "dkim: fail"));
    free(copy);
    ll_smtp_mime_free(m);
    ll_smtp_dkim_free(d);
    free(pem);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_shape),      cmocka_unit_test(test_injection_and_errors),
        cmocka_unit_test(test_parsed_by_python), cmocka_unit_test(test_base64_when_smaller),
        cmocka_unit_test(test_dkim_rsa),         cmocka_unit_test(test_dkim_ed25519),
        cmocka_unit_test(test_dkim_chosen_headers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
