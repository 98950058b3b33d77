/*
 * test_smtp_reply.c — the sans-I/O reply parser, capability parsing, the DATA encoder and the
 * input checks, fed byte by byte and in random splits.
 */
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "smtp_internal.h"

/* Feed `in` split at random points (split == 0: whole, 1: byte by byte, else random), collecting
 * every reply's description joined by '|'. Returns the first error code or 0. */
static int parse_all(const char *in, size_t n, int split, char *out, size_t outn, size_t max_line,
                     size_t max_lines) {
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, max_line, max_lines);
    out[0] = 0;
    size_t i = 0;
    int rc = 0;
    while (i < n) {
        size_t k = split == 0 ? n - i : split == 1 ? 1 : 1 + (size_t)rand() % 7;
        if (k > n - i) k = n - i;
        size_t off = 0;
        while (off < k) {
            size_t used;
            rc = ll__smtp_parser_feed(&p, in + i + off, k - off, &used);
            off += used;
            if (rc < 0) goto done;
            if (rc == 1) {
                char d[512];
                ll__smtp_reply_describe(&p.cur, d, sizeof d);
                strncat(out, d, outn - strlen(out) - 2);
                strncat(out, "|", outn - strlen(out) - 1);
            }
        }
        i += k;
    }
    rc = ll__smtp_parser_midway(&p) ? 1 : 0;
done:
    if (rc < 0) snprintf(out, outn, "ERR %s", p.err);
    ll__smtp_parser_free(&p);
    return rc;
}

static void check_all_splits(const char *in, const char *want, int want_rc) {
    char out[4096];
    for (int split = 0; split < 40; split++) {
        int rc = parse_all(in, strlen(in), split, out, sizeof out, 0, 0);
        if (rc != want_rc || strcmp(out, want) != 0) {
            print_error("split %d: rc %d, got \"%s\", want \"%s\"\n", split, rc, out, want);
            fail();
        }
    }
}

static void test_single_and_multi(void **st) {
    (void)st;
    check_all_splits("220 mx.example.com ESMTP ready\r\n", "220 mx.example.com ESMTP ready|", 0);
    check_all_splits("250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
                     "250 mx.example.com / PIPELINING / SIZE 1000|", 0);
    /* two replies back to back, a bare LF, a bare code */
    check_all_splits("250 ok\r\n354 go ahead\n250\r\n", "250 ok|354 go ahead|250|", 0);
    /* an incomplete reply is reported as midway */
    check_all_splits("250-first\r\n250 sec", "", 1);
}

static void test_enhanced(void **st) {
    (void)st;
    check_all_splits("550-5.1.1 no such user\r\n550 5.1.1 try again\r\n",
                     "550 5.1.1 no such user / try again|", 0);
    /* a class that does not match the code is text, not an enhanced code */
    check_all_splits("250 5.1.1 odd\r\n", "250 5.1.1 odd|", 0);
    check_all_splits("451 4.3.0 try later\r\n", "451 4.3.0 try later|", 0);
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    size_t used;
    const char *s = "552 5.3.4 too big\r\n";
    assert_int_equal(ll__smtp_parser_feed(&p, s, strlen(s), &used), 1);
    assert_int_equal(p.cur.code, 552);
    assert_string_equal(p.cur.enhanced, "5.3.4");
    assert_string_equal(p.cur.text.data, "too big");
    ll__smtp_parser_free(&p);
}

static void test_malformed(void **st) {
    (void)st;
    char out[512];
    const char *bad[] = {"250-a\r\n251 b\r\n", "2x0 hi\r\n", "600 hi\r\n", "250xhi\r\n",
                         "25\r\n", "250 a\0b\r\n", "250 a\rb\r\n"};
    size_t lens[] = {0, 0, 0, 0, 0, 10, 0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t n = lens[i] ? lens[i] : strlen(bad[i]);
        for (int split = 0; split < 3; split++) {
            int rc = parse_all(bad[i], n, split, out, sizeof out, 0, 0);
            if (rc != LL_ESMTP_PROTO) {
                print_error("case %zu split %d: rc %d (%s)\n", i, split, rc, out);
                fail();
            }
        }
    }
    parse_all("250-a\r\n251 b\r\n", 14, 0, out, sizeof out, 0, 0);
    assert_non_null(strstr(out, "code changed"));
}

static void test_limits(void **st) {
    (void)st;
    char out[512];
    /* line length: 20 bytes allowed, 21 refused (even when the line never ends) */
    char line[64];
    snprintf(line, sizeof line, "250 %s\r\n", "0123456789abcdef");
    assert_int_equal(parse_all(line, strlen(line), 1, out, sizeof out, 20, 0), 0);
    snprintf(line, sizeof line, "250 %s", "0123456789abcdefXXXXXXXXXXX");
    assert_int_equal(parse_all(line, strlen(line), 1, out, sizeof out, 20, 0), LL_ESMTP_PROTO);
    assert_non_null(strstr(out, "longer than 20 bytes"));
    /* an endless multi-line reply stops at the line limit */
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 5);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        size_t used;
        rc = ll__smtp_parser_feed(&p, "250-more\r\n", 10, &used);
    }
    assert_int_equal(rc, LL_ESMTP_PROTO);
    assert_non_null(strstr(p.err, "longer than 5 lines"));
    ll__smtp_parser_free(&p);
}

/* The parser never reads past the end of a reply (what follows a STARTTLS go-ahead). */
static void test_stops_at_reply_end(void **st) {
    (void)st;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    const char *s = "220 go ahead\r\n250 injected\r\n";
    size_t used;
    assert_int_equal(ll__smtp_parser_feed(&p, s, strlen(s), &used), 1);
    assert_int_equal(used, 14);
    ll__smtp_parser_free(&p);
}

static void parse_caps(ll__smtp_caps *c, const char *text) {
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, 0, 0);
    size_t used;
    assert_int_equal(ll__smtp_parser_feed(&p, text, strlen(text), &used), 1);
    assert_int_equal(ll__smtp_caps_parse(c, &p.cur), 0);
    ll__smtp_parser_free(&p);
}

static void test_caps(void **st) {
    (void)st;
    ll__smtp_caps c;
    memset(&c, 0, sizeof c);
    parse_caps(&c, "250-mx.example.com hello\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n"
                   "250-8BITMIME\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250-AUTH=LOGIN\r\n"
                   "250-ENHANCEDSTATUSCODES\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n");
    assert_true(c.esmtp && c.pipelining && c.eightbitmime && c.starttls && c.smtputf8 && c.size);
    assert_int_equal(c.max_size, 35882577);
    assert_int_equal(c.auth, LL__AUTH_PLAIN | LL__AUTH_LOGIN | LL__AUTH_CRAM_MD5);
    assert_true(ll__smtp_caps_has(&c, "enhancedstatuscodes"));
    assert_true(ll__smtp_caps_has(&c, "AUTH"));
    assert_false(ll__smtp_caps_has(&c, "CHUNKING"));
    /* the greeting line is not a keyword */
    assert_false(ll__smtp_caps_has(&c, "mx.example.com"));
    parse_caps(&c, "250-x\r\n250 AUTH XOAUTH2\r\n");
    assert_false(c.pipelining || c.starttls);
    assert_int_equal(c.auth, LL__AUTH_XOAUTH2);
    ll__smtp_caps_clear(&c);
    assert_false(ll__smtp_caps_has(&c, "AUTH"));
    ll__smtp_caps_free(&c);
}

/* The DATA encoder against a straightforward reference, for random inputs in random splits. */
static void reference_encode(const char *in, size_t n, ll__sbuf *out) {
    bool bol = true;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < n && in[i + 1] == '\n') i++;
            ll__sbuf_append(out, "\r\n", 2);
            bol = true;
            continue;
        }
        if (bol && c == '.') ll__sbuf_putc(out, '.');
        ll__sbuf_putc(out, c);
        bol = false;
    }
    if (!bol) ll__sbuf_append(out, "\r\n", 2);
    ll__sbuf_append(out, ".\r\n", 3);
}

static void test_dot_encoder(void **st) {
    (void)st;
    struct { const char *in, *want; } cases[] = {
        {"", ".\r\n"},
        {"a", "a\r\n.\r\n"},
        {"a\r\n", "a\r\n.\r\n"},
        {".", "..\r\n.\r\n"},
        {"a\n.\nb", "a\r\n..\r\nb\r\n.\r\n"},
        {"x\r.\ry\r", "x\r\n..\r\ny\r\n.\r\n"},
        {"\r\n.\r\n", "\r\n..\r\n.\r\n"},
        {"a\r\n\r\n..b\n", "a\r\n\r\n...b\r\n.\r\n"},
        {"no.dot at.start", "no.dot at.start\r\n.\r\n"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        ll__sbuf out = {0};
        ll__smtp_dot e;
        ll__smtp_dot_init(&e);
        for (const char *p = cases[c].in; *p; p++) ll__smtp_dot_encode(&e, p, 1, &out);
        ll__smtp_dot_finish(&e, &out);
        assert_string_equal(out.data, cases[c].want);
        ll__sbuf_free(&out);
    }
    srand(7);
    const char alphabet[] = "ab.\r\n";
    for (int round = 0; round < 2000; round++) {
        char in[64];
        size_t n = (size_t)rand() % sizeof in;
        for (size_t i = 0; i < n; i++) in[i] = alphabet[rand() % 5];
        ll__sbuf want = {0}, got = {0};
        reference_encode(in, n, &want);
        ll__smtp_dot e;
        ll__smtp_dot_init(&e);
        size_t i = 0;
        while (i < n) {
            size_t k = 1 + (size_t)rand() % 5;
            if (k > n - i) k = n - i;
            ll__smtp_dot_encode(&e, in + i, k, &got);
            i += k;
        }
        ll__smtp_dot_finish(&e, &got);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.data, want.data, want.len);
        /* no bare CR or LF, and exactly one terminator: the only "\r\n.\r\n" is at the end */
        for (size_t j = 0; j < got.len; j++) {
            if (got.data[j] == '\r') assert_true(j + 1 < got.len && got.data[j + 1] == '\n');
            if (got.data[j] == '\n') assert_true(j > 0 && got.data[j - 1] == '\r');
        }
        const char *term = strstr(got.data, "\r\n.\r\n");
        if (got.len >= 5) assert_true(term == NULL || term == got.data + got.len - 5);
        if (got.len > 3) assert_false(strncmp(got.data, ".\r\n", 3) == 0);
        ll__sbuf_free(&want);
        ll__sbuf_free(&got);
    }
}

static void test_checks(void **st) {
    (void)st;
    char err[LL__SMTP_ERRLEN];
    assert_int_equal(ll__smtp_check_address("recipient", "a@b.example", false, err), 0);
    assert_int_equal(ll__smtp_check_address("sender", "", true, err), 0);
    assert_int_equal(ll__smtp_check_address("recipient", "", false, err), LL_EINVAL);
    assert_int_equal(ll__smtp_check_address("recipient", "a@b\r\nRCPT TO:<x@y>", false, err),
                     LL_EINVAL);
    assert_non_null(strstr(err, "CR"));
    assert_int_equal(ll__smtp_check_address("recipient", "a@b\nx", false, err), LL_EINVAL);
    assert_int_equal(ll__smtp_check_address("recipient", "a@b>x", false, err), LL_EINVAL);
    assert_int_equal(ll__smtp_check_address("recipient", "nodomain", false, err), LL_EINVAL);
    assert_int_equal(ll__smtp_check_address("recipient", "üser@exämple.de", false, err), 0);
    assert_int_equal(ll__smtp_check_helo("client.example", err), 0);
    assert_int_equal(ll__smtp_check_helo("a b", err), LL_EINVAL);
    assert_int_equal(ll__smtp_check_helo("a\r\nQUIT", err), LL_EINVAL);
    assert_int_equal(ll__smtp_check_line("header", "x\0y", 3, err), LL_EINVAL);
    assert_non_null(strstr(err, "NUL"));
}

static void test_base64(void **st) {
    (void)st;
    ll__sbuf b = {0};
    assert_int_equal(ll__b64_encode(&b, "\0tim\0tanstaaf", 13), 0);
    assert_string_equal(b.data, "AHRpbQB0YW5zdGFhZg==");
    ll__sbuf d = {0};
    assert_int_equal(ll__b64_decode(&d, b.data, b.len), 0);
    assert_int_equal(d.len, 13);
    assert_memory_equal(d.data, "\0tim\0tanstaaf", 13);
    ll__sbuf_reset(&d);
    assert_int_equal(ll__b64_decode(&d, "abc", 3), LL_EINVAL);
    ll__sbuf_free(&b);
    ll__sbuf_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_and_multi), cmocka_unit_test(test_enhanced),
        cmocka_unit_test(test_malformed),        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_stops_at_reply_end), cmocka_unit_test(test_caps),
        cmocka_unit_test(test_dot_encoder),      cmocka_unit_test(test_checks),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
