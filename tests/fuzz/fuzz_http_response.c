/*
 * fuzz_http_response.c — the HTTP response core: status line, headers, chunked framing, trailers,
 * interim responses, content decoding (gzip/deflate through zlib), limits.
 *
 * Input: byte 0 chooses the mode (bit 0: the request was a HEAD; bit 1: the peer closes after the
 * bytes; bit 2: small limits; bit 3: split into single bytes), the rest is what the server sent.
 * The bytes are parsed twice: in one piece and in random splits (sizes from a generator seeded by
 * the input). Invariant: the outcome does not depend on how the bytes arrive — same code, status,
 * headers done, completion, reuse verdict, body bytes and decoded bytes — and every limit holds.
 */
#include <string.h>
#include "fuzz.h"
#include "http_internal.h"

typedef struct outcome {
    int rc;                /* the first failure (parser or decoder), 0 when none */
    int status;
    bool headers_done, done, reusable;
    uint64_t body_len, body_hash;       /* as framed on the wire, after de-chunking */
    uint64_t decoded_len, decoded_hash; /* after Content-Encoding */
    ll__http_decoder *dec;
    const ll_http_limits *lim;
} outcome;

static int sink(void *arg, const char *data, size_t n, char *err) {
    (void)err;
    outcome *o = arg;
    o->decoded_len += n;
    o->decoded_hash = fuzz_hash(o->decoded_hash, data, n);
    FUZZ_CHECK(o->decoded_len <= o->lim->max_decoded);
    return 0;
}

static int on_headers(void *arg, ll__http_parser *p, char *err) {
    outcome *o = arg;
    o->status = ll__http_parser_status(p);
    FUZZ_CHECK(o->status >= 100 && o->status <= 999);
    const ll_http_headers *h = ll__http_parser_headers(p);
    FUZZ_CHECK(ll_http_headers_count(h) <= o->lim->max_headers);
    const char *n, *v;
    for (size_t i = 0; ll_http_headers_at(h, i, &n, &v) == 0; i++) {
        /* what reaches the caller never carries a line break */
        FUZZ_CHECK(!strpbrk(n, "\r\n") && !strpbrk(v, "\r\n"));
        FUZZ_CHECK(ll__http_is_token(n, strlen(n)));
    }
    const char *ce = ll_http_headers_get(h, "content-encoding");
    if (ce) {
        int rc = ll__http_decoder_new(&o->dec, ce, o->lim->max_encodings, o->lim->max_decoded, err);
        if (rc) return rc;
    }
    return 0;
}

static int on_body(void *arg, const char *data, size_t n, char *err) {
    outcome *o = arg;
    o->body_len += n;
    o->body_hash = fuzz_hash(o->body_hash, data, n);
    FUZZ_CHECK(o->body_len <= o->lim->max_body);
    if (o->dec) return ll__http_decoder_feed(o->dec, data, n, sink, o, err);
    return sink(o, data, n, err);
}

static void parse(const uint8_t *resp, size_t len, int mode, fuzz_rng *rng, size_t max_piece,
                  const ll_http_limits *lim, outcome *o) {
    memset(o, 0, sizeof *o);
    o->lim = lim;
    ll__http_parser_cb cb = {on_headers, on_body};
    ll__http_parser *p = ll__http_parser_new(lim, &cb, o);
    FUZZ_CHECK(p != NULL);
    ll__http_parser_start(p, mode & 1);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off;
        if (rng) {
            size_t k = fuzz_rng_len(rng, max_piece);
            if (k < n) n = k;
        }
        size_t used = 0;
        o->rc = ll__http_parser_feed(p, (const char *)resp + off, n, &used);
        FUZZ_CHECK(used <= n);
        off += used;
        if (o->rc || ll__http_parser_done(p)) break;
        FUZZ_CHECK(used == n); /* a response that is not complete takes every byte it is given */
    }
    if (!o->rc && (mode & 2) && !ll__http_parser_done(p)) o->rc = ll__http_parser_eof(p);
    if (o->rc) FUZZ_CHECK(ll__http_parser_errmsg(p)[0] != '\0'); /* a failure says why */
    o->headers_done = ll__http_parser_headers_done(p);
    o->done = ll__http_parser_done(p);
    o->reusable = ll__http_parser_reusable(p);
    FUZZ_CHECK(!o->reusable || o->done);
    FUZZ_CHECK(!o->done || o->headers_done);
    FUZZ_CHECK(ll__http_parser_body_bytes(p) == o->body_len);
    if (!o->rc && o->done && o->dec) {
        char err[LL__HTTP_ERRLEN];
        o->rc = ll__http_decoder_finish(o->dec, sink, o, err);
        if (o->rc) FUZZ_CHECK(err[0] != '\0');
    }
    ll__http_decoder_free(o->dec);
    o->dec = NULL;
    ll__http_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0];
    const uint8_t *resp = data + 1;
    size_t len = size - 1;
    ll_http_limits lim = {0};
    if (mode & 4)
        lim = (ll_http_limits){.max_header_line = 64, .max_headers = 4, .max_header_bytes = 256,
                               .max_body = 1024, .max_decoded = 4096, .max_encodings = 2};
    /* what the parser fills in for zero fields, so the checks above compare with real limits */
    ll_http_limits eff = lim;
    if (!eff.max_header_line) eff.max_header_line = LL__HTTP_MAX_HEADER_LINE;
    if (!eff.max_headers) eff.max_headers = LL__HTTP_MAX_HEADERS;
    if (!eff.max_header_bytes) eff.max_header_bytes = LL__HTTP_MAX_HEADER_BYTES;
    if (!eff.max_body) eff.max_body = LL__HTTP_MAX_BODY;
    if (!eff.max_decoded) eff.max_decoded = LL__HTTP_MAX_BODY;
    if (!eff.max_encodings) eff.max_encodings = LL__HTTP_MAX_ENCODINGS;
    outcome whole, split;
    parse(resp, len, mode, NULL, 0, &eff, &whole);
    fuzz_rng rng;
    fuzz_rng_seed(&rng, data, size);
    parse(resp, len, mode, &rng, (mode & 8) ? 1 : 37, &eff, &split);
    /* Input that is both malformed and over a limit may be reported either way, depending on
     * which is seen first (llhttp reports a bad byte inside a span before our length check sees
     * the span): the same failure or success otherwise. */
    FUZZ_CHECK(whole.rc == split.rc ||
               ((whole.rc == LL_EHTTP_PROTO || whole.rc == LL_ETOOLARGE) &&
                (split.rc == LL_EHTTP_PROTO || split.rc == LL_ETOOLARGE)));
    FUZZ_CHECK(whole.status == split.status);
    FUZZ_CHECK(whole.headers_done == split.headers_done);
    FUZZ_CHECK(whole.done == split.done);
    FUZZ_CHECK(whole.reusable == split.reusable);
    if (whole.rc) return 0; /* bytes passed on before a failure found later depend on the split */
    FUZZ_CHECK(whole.body_len == split.body_len && whole.body_hash == split.body_hash);
    FUZZ_CHECK(whole.decoded_len == split.decoded_len &&
               whole.decoded_hash == split.decoded_hash);
    return 0;
}
