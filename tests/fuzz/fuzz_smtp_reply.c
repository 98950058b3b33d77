/*
 * fuzz_smtp_reply.c — the SMTP reply parser and the DATA encoder (libloop-smtp's sans-I/O core).
 *
 * Input: byte 0 picks small limits (bit 0: 40-byte lines, 4 lines); the rest is what a server sent,
 * and also a message body for the encoder.
 * Parser invariants: the same replies (code, enhanced code, text) and the same final outcome whether
 * the bytes come whole or in random splits; every reply respects the limits; codes are 200..599;
 * the text holds no CR, LF only between lines; nothing is consumed past a reply's end.
 * Encoder invariants: the same bytes whole or split; no bare CR or LF on the wire; the only
 * "\r\n.\r\n" is the terminator at the end; undoing the stuffing gives back the input with its line
 * ends made CRLF.
 */
#include <string.h>
#include "fuzz.h"
#include "smtp_internal.h"

typedef struct outcome {
    int rc;
    size_t n;
    uint64_t hash;
} outcome;

static outcome parse(const char *d, size_t n, fuzz_rng *rng, bool split, size_t ml, size_t mn) {
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, ml, mn);
    outcome o = {0, 0, 1469598103934665603ull};
    size_t i = 0;
    while (i < n && o.rc >= 0) {
        size_t k = split ? fuzz_rng_len(rng, 9) : n - i;
        if (k > n - i) k = n - i;
        size_t off = 0;
        while (off < k) {
            size_t used = 0;
            int rc = ll__smtp_parser_feed(&p, d + i + off, k - off, &used);
            FUZZ_CHECK(used <= k - off);
            off += used;
            if (rc < 0) {
                FUZZ_CHECK(p.err[0]);
                o.rc = rc;
                break;
            }
            if (rc == 0) {
                FUZZ_CHECK(off == k);
                break;
            }
            const ll__smtp_reply *r = &p.cur;
            FUZZ_CHECK(r->code >= 200 && r->code <= 599);
            FUZZ_CHECK(r->nlines >= 1 && r->nlines <= p.max_lines);
            FUZZ_CHECK(!r->text.data || !memchr(r->text.data, '\r', r->text.len));
            if (r->enhanced[0]) FUZZ_CHECK(r->enhanced[0] == (char)('0' + r->code / 100));
            o.n++;
            o.hash = fuzz_hash(o.hash, &r->code, sizeof r->code);
            o.hash = fuzz_hash(o.hash, r->enhanced, strlen(r->enhanced));
            o.hash = fuzz_hash(o.hash, r->text.data ? r->text.data : "", r->text.len);
        }
        i += k;
    }
    ll__smtp_parser_free(&p);
    return o;
}

static void encode(const char *d, size_t n, fuzz_rng *rng, bool split, ll__sbuf *out) {
    ll__smtp_dot e;
    ll__smtp_dot_init(&e);
    size_t i = 0;
    while (i < n) {
        size_t k = split ? fuzz_rng_len(rng, 7) : n - i;
        if (k > n - i) k = n - i;
        FUZZ_CHECK(ll__smtp_dot_encode(&e, d + i, k, out) == 0);
        i += k;
    }
    FUZZ_CHECK(ll__smtp_dot_finish(&e, out) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    bool small = data[0] & 1;
    const char *d = (const char *)data + 1;
    size_t n = size - 1;
    fuzz_rng rng;
    fuzz_rng_seed(&rng, data, size);
    size_t ml = small ? 40 : 0, mn = small ? 4 : 0;
    outcome a = parse(d, n, &rng, false, ml, mn);
    outcome b = parse(d, n, &rng, true, ml, mn);
    FUZZ_CHECK(a.rc == b.rc);
    FUZZ_CHECK(a.n == b.n && a.hash == b.hash);

    ll__sbuf w = {0}, s = {0}, norm = {0};
    encode(d, n, &rng, false, &w);
    encode(d, n, &rng, true, &s);
    FUZZ_CHECK(w.len == s.len && memcmp(w.data, s.data, w.len) == 0);
    FUZZ_CHECK(w.len >= 3 && memcmp(w.data + w.len - 3, ".\r\n", 3) == 0);
    for (size_t i = 0; i < w.len; i++) {
        if (w.data[i] == '\r') FUZZ_CHECK(i + 1 < w.len && w.data[i + 1] == '\n');
        if (w.data[i] == '\n') FUZZ_CHECK(i > 0 && w.data[i - 1] == '\r');
    }
    const char *term = NULL;
    for (const char *p = w.data; (p = strstr(p, "\r\n.\r\n")) != NULL; p++) term = p;
    if (term) FUZZ_CHECK(term == w.data + w.len - 5);
    /* undo: drop the terminator, un-stuff leading dots; compare with the CRLF-normalised input */
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < n && d[i + 1] == '\n') i++;
            ll__sbuf_append(&norm, "\r\n", 2);
        } else {
            ll__sbuf_putc(&norm, c);
        }
    }
    if (norm.len && (norm.len < 2 || memcmp(norm.data + norm.len - 2, "\r\n", 2) != 0))
        ll__sbuf_append(&norm, "\r\n", 2);
    ll__sbuf back = {0};
    size_t body = w.len - 3;
    bool bol = true;
    for (size_t i = 0; i < body; i++) {
        if (bol && w.data[i] == '.') {
            FUZZ_CHECK(i + 1 < body && w.data[i + 1] == '.');
            i++;
        }
        ll__sbuf_putc(&back, w.data[i]);
        bol = w.data[i] == '\n';
    }
    FUZZ_CHECK(back.len == norm.len && (norm.len == 0 || memcmp(back.data, norm.data, norm.len) == 0));
    ll__sbuf_free(&w);
    ll__sbuf_free(&s);
    ll__sbuf_free(&norm);
    ll__sbuf_free(&back);
    return 0;
}
