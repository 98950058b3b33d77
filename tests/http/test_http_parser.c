/*
 * test_http_parser.c — the response parser (llhttp with limits) and the content decoder (zlib),
 * each fed whole, one byte at a time and in random splits: the outcome must not depend on how the
 * bytes arrive. Then limits, malformed input, allocation failures.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "harness/harness.h"
#include "http_internal.h"

typedef struct result {
    int rc;
    int status, version;
    char reason[64];
    char hdrs[2048];  /* "name: value\n" for each header, in order */
    ll__hbuf body;
    bool done, reusable, suspect;
    unsigned interim;
    size_t used;      /* bytes taken by the parser */
    char err[LL__HTTP_ERRLEN];
} result;

static int on_headers(void *arg, ll__http_parser *p, char *err) {
    (void)err;
    result *r = arg;
    r->status = ll__http_parser_status(p);
    r->version = ll__http_parser_version(p);
    snprintf(r->reason, sizeof r->reason, "%s", ll__http_parser_reason(p));
    const ll_http_headers *h = ll__http_parser_headers(p);
    const char *n, *v;
    for (size_t i = 0; ll_http_headers_at(h, i, &n, &v) == 0; i++) {
        size_t l = strlen(r->hdrs);
        snprintf(r->hdrs + l, sizeof r->hdrs - l, "%s: %s\n", n, v);
    }
    return 0;
}

static int on_body(void *arg, const char *d, size_t n, char *err) {
    (void)err;
    result *r = arg;
    return ll__hbuf_append(&r->body, d, n);
}

enum { WHOLE, BYTES, RANDOM };

/* Feed `len` bytes in the given way; at the end, signal EOF if asked and not done. */
static void run(const char *resp, size_t len, int mode, unsigned *seed, bool head,
                const ll_http_limits *lim, bool eof, result *r) {
    memset(r, 0, sizeof *r);
    ll__http_parser_cb cb = {on_headers, on_body};
    ll__http_parser *p = ll__http_parser_new(lim, &cb, r);
    assert_non_null(p);
    ll__http_parser_start(p, head);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        if (mode == BYTES) n = 1;
        if (mode == RANDOM) n = 1 + (size_t)rand_r(seed) % (n < 23 ? n : 23);
        size_t used = 0;
        r->rc = ll__http_parser_feed(p, resp + off, n, &used);
        r->used += used;
        off += used;
        if (r->rc || used < n || ll__http_parser_done(p)) break;
    }
    if (!r->rc && eof && !ll__http_parser_done(p)) r->rc = ll__http_parser_eof(p);
    if (r->rc) snprintf(r->err, sizeof r->err, "%s", ll__http_parser_errmsg(p));
    r->done = ll__http_parser_done(p);
    r->reusable = ll__http_parser_reusable(p);
    r->suspect = ll__http_parser_suspect(p);
    r->interim = ll__http_parser_interim(p);
    ll__http_parser_free(p);
}

typedef struct pcase {
    const char *name;
    const char *resp;
    bool head, eof;
    int rc;
    int status;
    const char *body;
    bool reusable, suspect;
    unsigned interim;
    size_t extra; /* bytes after the response, not consumed */
    const char *hdrs; /* NULL: not checked */
} pcase;

static const pcase cases[] = {
    {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello", false, false,
     0, 200, "hello", true, false, 0, 0, "Content-Length: 5\nX-A: 1\n"},
    {"chunked + ext + trailers",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n"
     "5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
     false, false, 0, 200, "hello world", true, false, 0, 0, "Transfer-Encoding: chunked\n"},
    {"close-delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", false,
     true, 0, 200, "until the end", false, false, 0, 0, NULL},
    {"head with length", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true, false, 0, 200, "",
     true, false, 0, 0, NULL},
    {"head chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, false, 0, 200,
     "", true, false, 0, 0, NULL},
    {"204 ignores length", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", false, false, 0,
     204, "", true, false, 0, 0, NULL},
    {"304", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", false, false, 0, 304, "", true,
     false, 0, 0, NULL},
    {"100 continue skipped",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", false,
     false, 0, 201, "ok", true, false, 1, 0, "Content-Length: 2\n"},
    {"103 + 102 skipped",
     "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
     false, false, 0, 200, "", true, false, 2, 0, "Content-Length: 0\n"},
    {"te + cl: read, not reused",
     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     "4\r\nabcd\r\n0\r\n\r\n",
     false, false, 0, 200, "abcd", false, true, 0, 0, NULL},
    {"http/1.0 close", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", false, false, 0, 200, "hi",
     false, false, 0, 0, NULL},
    {"http/1.0 keep-alive",
     "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi", false, false, 0,
     200, "hi", true, false, 0, 0, NULL},
    {"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
     false, false, 0, 200, "hi", false, false, 0, 0, NULL},
    {"bytes after the response", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA", false,
     false, 0, 200, "hi", true, false, 0, 5, NULL},
    {"repeated headers kept",
     "HTTP/1.1 404 Not Found\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Sp:   padded  \r\n"
     "Content-Length: 0\r\n\r\n",
     false, false, 0, 404, "", true, false, 0, 0,
     "Set-Cookie: a=1\nset-cookie: b=2\nX-Sp: padded\nContent-Length: 0\n"},
    {"empty reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", false, false, 0, 200, "", true,
     false, 0, 0, NULL},
    /* errors */
    {"garbage status line", "HELLO THERE\r\n\r\n", false, false, LL_EHTTP_PROTO, 0, "", false,
     false, 0, 0, NULL},
    {"binary garbage", "\x16\x03\x01\x02\x00\x01", false, false, LL_EHTTP_PROTO, 0, "", false,
     false, 0, 0, NULL},
    {"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false,
     false, LL_EHTTP_PROTO, 200, "", false, false, 0, 0, NULL},
    {"chunk size overflow",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", false,
     false, LL_EHTTP_PROTO, 200, "", false, false, 0, 0, NULL},
    {"absurd chunk size",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\nabc", false, false,
     LL_ETOOLARGE, 200, "", false, false, 0, 0, NULL},
    {"content-length over the limit",
     "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nabc", false, false, LL_ETOOLARGE, 0,
     "", false, false, 0, 0, NULL},
    {"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, true,
     LL_ETRUNCATED, 200, "abc", false, false, 0, 0, NULL},
    {"truncated chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", false,
     true, LL_ETRUNCATED, 200, "ab", false, false, 0, 0, NULL},
    {"truncated head", "HTTP/1.1 200 OK\r\nContent-Le", false, true, LL_ETRUNCATED, 0, "", false,
     false, 0, 0, NULL},
    {"nothing at all", "", false, true, LL_EHTTP_STALE, 0, "", false, false, 0, 0, NULL},
    {"101 refused", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
     false, false, LL_EHTTP_PROTO, 0, "", false, false, 0, 0, NULL},
    {"http/2 version", "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, false,
     LL_EHTTP_PROTO, 0, "", false, false, 0, 0, NULL},
    {"duplicate content-length",
     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", false, false,
     LL_EHTTP_PROTO, 0, "", false, false, 0, 0, NULL},
    {"bad header name", "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", false, false, LL_EHTTP_PROTO,
     0, "", false, false, 0, 0, NULL},
};

static void check(const pcase *c, const result *r, const char *how) {
    if (r->rc != c->rc)
        fail_msg("%s (%s): rc %d (%s), want %d", c->name, how, r->rc, r->err, c->rc);
    if (c->rc) {
        assert_true(r->err[0] != 0);
        return;
    }
    if (r->status != c->status) fail_msg("%s (%s): status %d", c->name, how, r->status);
    if (strcmp(r->body.data ? r->body.data : "", c->body) != 0)
        fail_msg("%s (%s): body '%s'", c->name, how, r->body.data ? r->body.data : "");
    if (r->reusable != c->reusable) fail_msg("%s (%s): reusable %d", c->name, how, r->reusable);
    if (r->suspect != c->suspect) fail_msg("%s (%s): suspect %d", c->name, how, r->suspect);
    if (r->interim != c->interim) fail_msg("%s (%s): interim %u", c->name, how, r->interim);
    if (!r->done) fail_msg("%s (%s): not done", c->name, how);
    if (r->used != strlen(c->resp) - c->extra) fail_msg("%s (%s): used %zu", c->name, how, r->used);
    if (c->hdrs && strcmp(r->hdrs, c->hdrs) != 0)
        fail_msg("%s (%s): headers\n%s", c->name, how, r->hdrs);
}

static void test_parser_splits(void **state) {
    (void)state;
    lt_track_begin();
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const pcase *c = &cases[i];
        size_t len = strlen(c->resp);
        result r;
        run(c->resp, len, WHOLE, &seed, c->head, NULL, c->eof, &r);
        check(c, &r, "whole");
        ll__hbuf_free(&r.body);
        run(c->resp, len, BYTES, &seed, c->head, NULL, c->eof, &r);
        check(c, &r, "byte by byte");
        ll__hbuf_free(&r.body);
        for (int k = 0; k < 50; k++) {
            run(c->resp, len, RANDOM, &seed, c->head, NULL, c->eof, &r);
            check(c, &r, "random splits");
            ll__hbuf_free(&r.body);
        }
    }
    assert_int_equal(lt_track_end(), 0);
}

static void test_parser_reason_and_version(void **state) {
    (void)state;
    result r;
    unsigned seed = 1;
    const char *s = "HTTP/1.0 418 I'm a teapot\r\nConnection: keep-alive\r\n"
                    "Content-Length: 0\r\n\r\n";
    run(s, strlen(s), BYTES, &seed, false, NULL, false, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 418);
    assert_int_equal(r.version, 10);
    assert_string_equal(r.reason, "I'm a teapot");
    ll__hbuf_free(&r.body);
}

/* A response head of n headers "X-Hnnnn: vvv..." with the given value length. */
static char *make_head(size_t nheaders, size_t vlen, const char *tail) {
    ll__hbuf b = {0};
    ll__hbuf_appends(&b, "HTTP/1.1 200 OK\r\n");
    for (size_t i = 0; i < nheaders; i++) {
        ll__hbuf_printf(&b, "X-H%04zu: ", i);
        for (size_t k = 0; k < vlen; k++) ll__hbuf_append(&b, "v", 1);
        ll__hbuf_appends(&b, "\r\n");
    }
    ll__hbuf_appends(&b, tail);
    return ll__hbuf_steal(&b, NULL);
}

static void test_parser_limits(void **state) {
    (void)state;
    unsigned seed = 7;
    result r;
    ll_http_limits lim = {.max_header_line = 100, .max_headers = 10, .max_header_bytes = 1000,
                          .max_body = 16};
    /* a line of exactly the limit passes ("X-H0000: " + 89 v + CRLF... name 7 + value 89 + 4) */
    char *s = make_head(1, 89, "Content-Length: 0\r\n\r\n");
    for (int mode = WHOLE; mode <= RANDOM; mode++) {
        run(s, strlen(s), mode, &seed, false, &lim, false, &r);
        assert_int_equal(r.rc, 0);
        ll__hbuf_free(&r.body);
    }
    free(s);
    s = make_head(1, 92, "Content-Length: 0\r\n\r\n");
    for (int mode = WHOLE; mode <= RANDOM; mode++) {
        run(s, strlen(s), mode, &seed, false, &lim, false, &r);
        assert_int_equal(r.rc, LL_ETOOLARGE);
        assert_non_null(strstr(r.err, "header line longer than 100"));
        ll__hbuf_free(&r.body);
    }
    free(s);
    /* a 1 MB header: refused long before it has all arrived */
    s = make_head(1, 1 << 20, "\r\n");
    run(s, strlen(s), RANDOM, &seed, false, NULL, false, &r);
    assert_int_equal(r.rc, LL_ETOOLARGE);
    assert_true(r.used < 16384);
    ll__hbuf_free(&r.body);
    free(s);
    /* header count */
    s = make_head(10, 3, "\r\n");
    run(s, strlen(s), WHOLE, &seed, false, &lim, true, &r);
    assert_int_equal(r.rc, 0);
    ll__hbuf_free(&r.body);
    free(s);
    s = make_head(11, 3, "\r\n");
    run(s, strlen(s), WHOLE, &seed, false, &lim, true, &r);
    assert_int_equal(r.rc, LL_ETOOLARGE);
    assert_non_null(strstr(r.err, "more than 10 header lines"));
    ll__hbuf_free(&r.body);
    free(s);
    /* total head size: 9 lines of 98 bytes fit 1000, exactly; 10 do not */
    ll_http_limits lim2 = {.max_header_bytes = 17 + 9 * 98 + 2};
    s = make_head(9, 87, "\r\n");
    assert_int_equal(strlen(s), lim2.max_header_bytes);
    for (int mode = WHOLE; mode <= RANDOM; mode++) {
        run(s, strlen(s), mode, &seed, false, &lim2, true, &r);
        assert_int_equal(r.rc, 0);
        ll__hbuf_free(&r.body);
    }
    free(s);
    s = make_head(9, 88, "\r\n");
    for (int mode = WHOLE; mode <= RANDOM; mode++) {
        run(s, strlen(s), mode, &seed, false, &lim2, true, &r);
        assert_int_equal(r.rc, LL_ETOOLARGE);
        assert_non_null(strstr(r.err, "response head larger than"));
        assert_true(r.used <= lim2.max_header_bytes);
        ll__hbuf_free(&r.body);
    }
    free(s);
    /* body limit: exactly the limit is fine, one more byte is not, chunked or not */
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n0123456789abcdef";
    run(ok, strlen(ok), BYTES, &seed, false, &lim, false, &r);
    assert_int_equal(r.rc, 0);
    ll__hbuf_free(&r.body);
    const char *big = "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n0123456789abcdefg";
    run(big, strlen(big), BYTES, &seed, false, &lim, false, &r);
    assert_int_equal(r.rc, LL_ETOOLARGE);
    ll__hbuf_free(&r.body);
    const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "8\r\n01234567\r\n8\r\n89abcdef\r\n1\r\ng\r\n0\r\n\r\n";
    run(ch, strlen(ch), RANDOM, &seed, false, &lim, false, &r);
    assert_int_equal(r.rc, LL_ETOOLARGE);
    assert_string_equal(r.body.data, "0123456789abcdef");
    ll__hbuf_free(&r.body);
    const char *close = "HTTP/1.1 200 OK\r\n\r\n0123456789abcdefg";
    run(close, strlen(close), RANDOM, &seed, false, &lim, true, &r);
    assert_int_equal(r.rc, LL_ETOOLARGE);
    ll__hbuf_free(&r.body);
}

/* A callback error stops the parse with the callback's code and message. */
static int refuse_headers(void *arg, ll__http_parser *p, char *err) {
    (void)arg;
    (void)p;
    return ll__http_errf(err, LL_EHTTP_DECODE, "unsupported Content-Encoding 'br'");
}

static void test_parser_callback_error(void **state) {
    (void)state;
    ll__http_parser_cb cb = {refuse_headers, NULL};
    ll__http_parser *p = ll__http_parser_new(NULL, &cb, NULL);
    ll__http_parser_start(p, false);
    const char *s = "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx";
    size_t used;
    assert_int_equal(ll__http_parser_feed(p, s, strlen(s), &used), LL_EHTTP_DECODE);
    assert_string_equal(ll__http_parser_errmsg(p), "unsupported Content-Encoding 'br'");
    /* the same parser serves the next response after start() */
    ll__http_parser_cb cb2 = {NULL, NULL};
    ll__http_parser_free(p);
    p = ll__http_parser_new(NULL, &cb2, NULL);
    for (int i = 0; i < 3; i++) {
        ll__http_parser_start(p, false);
        const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
        assert_int_equal(ll__http_parser_feed(p, ok, strlen(ok), &used), 0);
        assert_int_equal(used, strlen(ok));
        assert_true(ll__http_parser_done(p));
        assert_true(ll__http_parser_reusable(p));
    }
    ll__http_parser_free(p);
}

/* ---- the decoder ---- */

static size_t zcompress(const void *in, size_t n, unsigned char *out, size_t cap, int wbits) {
    z_stream z = {0};
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    return len;
}

static int collect(void *arg, const char *d, size_t n, char *err) {
    (void)err;
    return ll__hbuf_append(arg, d, n);
}

/* Decode `len` bytes fed in the given way. */
static int decode(const char *ce, const unsigned char *in, size_t len, int mode, unsigned *seed,
                  uint64_t max_out, ll__hbuf *out, char *err) {
    ll__http_decoder *d;
    memset(out, 0, sizeof *out);
    int rc = ll__http_decoder_new(&d, ce, 0, max_out, err);
    if (rc) return rc;
    assert_non_null(d);
    size_t off = 0;
    while (off < len && !rc) {
        size_t n = len - off;
        if (mode == BYTES) n = 1;
        if (mode == RANDOM) n = 1 + (size_t)rand_r(seed) % (n < 50 ? n : 50);
        rc = ll__http_decoder_feed(d, (const char *)in + off, n, collect, out, err);
        off += n;
    }
    if (!rc) rc = ll__http_decoder_finish(d, collect, out, err);
    ll__http_decoder_free(d);
    return rc;
}

static void test_decode_formats(void **state) {
    (void)state;
    lt_track_begin();
    char text[5000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + (i * 7 + i / 13) % 26);
    static unsigned char gz[8000], zl[8000], raw[8000], gz2[16000], twice[16000];
    size_t gzn = zcompress(text, sizeof text, gz, sizeof gz, 15 + 16);
    size_t zln = zcompress(text, sizeof text, zl, sizeof zl, 15);
    size_t rawn = zcompress(text, sizeof text, raw, sizeof raw, -15);
    /* two gzip members back to back */
    memcpy(gz2, gz, gzn);
    memcpy(gz2 + gzn, gz, gzn);
    /* gzip of gzip: "Content-Encoding: gzip, gzip" */
    size_t twicen = zcompress(gz, gzn, twice, sizeof twice, 15 + 16);
    struct {
        const char *ce;
        const unsigned char *in;
        size_t n;
        size_t copies;
    } fmts[] = {
        {"gzip", gz, gzn, 1},        {"x-gzip", gz, gzn, 1},   {"deflate", zl, zln, 1},
        {"Deflate", raw, rawn, 1},   {"gzip", gz2, 2 * gzn, 2}, {"gzip, gzip", twice, twicen, 1},
        {"identity, gzip", gz, gzn, 1},
    };
    unsigned seed = 99;
    char err[LL__HTTP_ERRLEN];
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++) {
        for (int mode = WHOLE; mode <= RANDOM; mode++) {
            ll__hbuf out;
            int rc = decode(fmts[i].ce, fmts[i].in, fmts[i].n, mode, &seed, 0, &out, err);
            if (rc) fail_msg("%s mode %d: %s", fmts[i].ce, mode, err);
            assert_int_equal(out.len, sizeof text * fmts[i].copies);
            assert_memory_equal(out.data, text, sizeof text);
            ll__hbuf_free(&out);
        }
    }
    ll__http_decoder *d;
    assert_int_equal(ll__http_decoder_new(&d, "identity", 0, 0, err), 0);
    assert_null(d);
    assert_int_equal(ll__http_decoder_new(&d, "br", 0, 0, err), LL_EHTTP_DECODE);
    assert_non_null(strstr(err, "unsupported Content-Encoding 'br'"));
    assert_int_equal(ll__http_decoder_new(&d, "gzip, gzip, gzip, gzip", 3, 0, err),
                     LL_EHTTP_DECODE);
    assert_non_null(strstr(err, "more than 3 stacked"));
    assert_int_equal(ll__http_decoder_new(&d, "gzip, gzip, gzip", 3, 0, err), 0);
    ll__http_decoder_free(d);
    /* corrupt and truncated */
    ll__hbuf out;
    unsigned char bad[64];
    memcpy(bad, gz, 64);
    bad[20] ^= 0xff;
    bad[21] ^= 0x55;
    assert_int_equal(decode("gzip", (unsigned char *)"not gzip at all", 15, WHOLE, &seed, 0, &out,
                            err), LL_EHTTP_DECODE);
    ll__hbuf_free(&out);
    int rc = decode("gzip", gz, gzn - 10, RANDOM, &seed, 0, &out, err);
    assert_int_equal(rc, LL_EHTTP_DECODE);
    assert_non_null(strstr(err, "truncated"));
    ll__hbuf_free(&out);
    /* an empty body with a Content-Encoding is fine */
    assert_int_equal(decode("gzip", gz, 0, WHOLE, &seed, 0, &out, err), 0);
    assert_int_equal(out.len, 0);
    ll__hbuf_free(&out);
    assert_int_equal(lt_track_end(), 0);
}

static void test_decode_bomb(void **state) {
    (void)state;
    lt_track_begin();
    /* 64 MiB of zeros compress to ~64 KiB; the limit of 1 MiB stops it without inflating it all */
    size_t n = 64u << 20;
    char *zeros = calloc(1, n);
    static unsigned char bomb[1 << 18];
    size_t bn = zcompress(zeros, n, bomb, sizeof bomb, 15 + 16);
    free(zeros);
    assert_true(bn < sizeof bomb);
    unsigned seed = 3;
    char err[LL__HTTP_ERRLEN];
    ll__hbuf out;
    int rc = decode("gzip", bomb, bn, RANDOM, &seed, 1 << 20, &out, err);
    assert_int_equal(rc, LL_ETOOLARGE);
    assert_non_null(strstr(err, "decoded body exceeds the limit of 1048576 bytes"));
    assert_true(out.len <= (1u << 20));
    ll__hbuf_free(&out);
    /* the same bomb, gzipped again, is stopped by the inner layer as well */
    static unsigned char bomb2[1 << 18];
    size_t b2n = zcompress(bomb, bn, bomb2, sizeof bomb2, 15 + 16);
    rc = decode("gzip, gzip", bomb2, b2n, WHOLE, &seed, 1 << 20, &out, err);
    assert_int_equal(rc, LL_ETOOLARGE);
    ll__hbuf_free(&out);
    assert_int_equal(lt_track_end(), 0);
}

/* ---- allocation failures in the parser and the decoder ---- */

static int parse_and_decode(void) {
    static unsigned char body[2000];
    char text[3000];
    memset(text, 'x', sizeof text);
    size_t bn = zcompress(text, sizeof text, body, sizeof body, 15 + 16);
    ll__hbuf resp = {0};
    if (ll__hbuf_printf(&resp, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nSet-Cookie: a\r\n"
                               "Content-Length: %zu\r\n\r\n", bn) ||
        ll__hbuf_append(&resp, body, bn)) {
        ll__hbuf_free(&resp);
        return LL_ENOMEM;
    }
    result r;
    memset(&r, 0, sizeof r);
    ll__http_parser_cb cb = {on_headers, on_body};
    ll__http_parser *p = ll__http_parser_new(NULL, &cb, &r);
    int rc = p ? 0 : LL_ENOMEM;
    if (!rc) {
        ll__http_parser_start(p, false);
        size_t used;
        rc = ll__http_parser_feed(p, resp.data, resp.len, &used);
    }
    ll__http_decoder *d = NULL;
    char err[LL__HTTP_ERRLEN];
    ll__hbuf out = {0};
    if (!rc) rc = ll__http_decoder_new(&d, "gzip", 0, 0, err);
    if (!rc) rc = ll__http_decoder_feed(d, r.body.data, r.body.len, collect, &out, err);
    if (!rc) rc = ll__http_decoder_finish(d, collect, &out, err);
    if (!rc && out.len != sizeof text) rc = LL_EIO;
    ll__http_decoder_free(d);
    ll__http_parser_free(p);
    ll__hbuf_free(&out);
    ll__hbuf_free(&r.body);
    ll__hbuf_free(&resp);
    return rc;
}

static void test_alloc_failures(void **state) {
    (void)state;
    int ok = 0;
    for (long n = 0; n < 500 && !ok; n++) {
        lt_track_begin();
        lt_fail_after(n);
        int rc = parse_and_decode();
        lt_fail_reset();
        long leaked = lt_track_end();
        if (leaked) fail_msg("failing allocation %ld leaked %ld", n, leaked);
        if (rc == 0) ok = 1;
        else if (rc != LL_ENOMEM) fail_msg("allocation %ld: rc %d", n, rc);
    }
    assert_int_equal(ok, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_splits),
        cmocka_unit_test(test_parser_reason_and_version),
        cmocka_unit_test(test_parser_limits),
        cmocka_unit_test(test_parser_callback_error),
        cmocka_unit_test(test_decode_formats),
        cmocka_unit_test(test_decode_bomb),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests_name("http parser", tests, NULL, NULL);
}
