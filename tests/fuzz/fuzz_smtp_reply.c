/*
 * fuzz_smtp_reply.c — the SMTP reply parser with its limits, the EHLO capability parser, the
 * one-line description used in messages, and the handshake state machine driven by the replies.
 *
 * Input: byte 0 picks small limits (bit 0), single-byte pieces (bit 1), the security mode (bits
 * 2-4) and whether credentials are set (bit 5); the rest is what the server sent. The bytes are
 * parsed whole and in random splits. Invariants: the same replies and the same final code either
 * way; a reply has a code in 200..599 (or 1xx), at most max_lines lines of at most max_line bytes,
 * an enhanced code "c.d.d" whose class matches the reply's or none; its description is one line;
 * everything the handshake asks to send is whole CRLF-ended command lines; credentials are never
 * sent before TLS when TLS is required, nor in plaintext unless allowed.
 */
#include <string.h>
#include "fuzz.h"
#include "smtp_internal.h"

typedef struct outcome {
    int rc;
    size_t n;
    uint64_t hash;
} outcome;

static void check_reply(const ll__smtp_reply *r, size_t max_line, size_t max_lines) {
    FUZZ_CHECK(r->code >= 100 && r->code <= 599);
    FUZZ_CHECK(r->nlines >= 1 && r->nlines <= max_lines);
    /* a bare CR inside a line is kept in the text (it never reaches the wire or a message
     * unescaped: describe() replaces control bytes); the line structure is what must hold */
    if (r->enhanced[0]) {
        FUZZ_CHECK(r->enhanced[0] - '0' == r->code / 100 && r->enhanced[1] == '.');
        FUZZ_CHECK(strlen(r->enhanced) < sizeof r->enhanced);
    }
    size_t line = 0;
    for (size_t i = 0; i < r->text.len; i++) {
        if (r->text.data[i] == '\n') line = 0;
        else FUZZ_CHECK(++line <= max_line);
    }
    char d[LL__SMTP_ERRLEN];
    ll__smtp_reply_describe(r, d, sizeof d);
    FUZZ_CHECK(!strpbrk(d, "\r\n"));
}

/* Every byte the client would send is a run of whole "...\r\n" lines without stray CR/LF/NUL. */
static void check_out(const ll__sbuf *out) {
    if (!out->len) return;
    FUZZ_CHECK(out->len >= 2 && memcmp(out->data + out->len - 2, "\r\n", 2) == 0);
    for (size_t i = 0; i < out->len; i++) {
        char c = out->data[i];
        FUZZ_CHECK(c != '\0');
        if (c == '\r') FUZZ_CHECK(i + 1 < out->len && out->data[i + 1] == '\n');
        if (c == '\n') FUZZ_CHECK(i > 0 && out->data[i - 1] == '\r');
    }
}

static void parse(const uint8_t *data, size_t size, int mode, fuzz_rng *rng, outcome *o) {
    memset(o, 0, sizeof *o);
    size_t max_line = (mode & 1) ? 40 : LL__SMTP_MAX_LINE, max_lines = (mode & 1) ? 3 : LL__SMTP_MAX_LINES;
    ll__smtp_parser p;
    ll__smtp_parser_init(&p, max_line, max_lines);
    static const ll_smtp_security secs[] = {LL_SMTP_STARTTLS_REQUIRED, LL_SMTP_STARTTLS_OPPORTUNISTIC,
                                            LL_SMTP_IMPLICIT_TLS, LL_SMTP_PLAIN};
    ll_smtp_security sec = secs[(mode >> 2) & 3];
    ll__smtp_hs hs;
    ll__smtp_hs_init(&hs, sec, "client.example");
    if (mode & 32) {
        hs.user = "user";
        hs.pass = "secret";
    }
    bool hs_live = rng == NULL; /* drive the handshake once, on the whole parse */
    size_t off = 0;
    while (off < size && !o->rc) {
        size_t k = size - off;
        if (rng) {
            size_t piece = fuzz_rng_len(rng, (mode & 2) ? 1 : 31);
            if (piece < k) k = piece;
        }
        size_t used = 0;
        int rc = ll__smtp_parser_feed(&p, (const char *)data + off, k, &used);
        FUZZ_CHECK(used <= k);
        off += used;
        if (rc < 0) {
            o->rc = rc;
            FUZZ_CHECK(p.err[0] != '\0' || rc == LL_ENOMEM);
            break;
        }
        if (rc == 1) {
            const ll__smtp_reply *r = &p.cur;
            check_reply(r, max_line, max_lines);
            o->n++;
            o->hash = fuzz_hash(o->hash, &r->code, sizeof r->code);
            o->hash = fuzz_hash(o->hash, r->enhanced, strlen(r->enhanced));
            if (r->text.len) o->hash = fuzz_hash(o->hash, r->text.data, r->text.len);
            ll__smtp_caps caps = {0};
            if (ll__smtp_caps_parse(&caps, r) == 0 && caps.keywords.len)
                FUZZ_CHECK(caps.keywords.data[0] == '\n');
            ll__smtp_caps_free(&caps);
            if (hs_live) {
                bool tls_before = hs.tls;
                ll__sbuf_reset(&hs.out);
                int h = ll__smtp_hs_reply(&hs, r);
                check_out(&hs.out);
                if (hs.out.len && strstr(hs.out.data, "AUTH "))
                    FUZZ_CHECK(tls_before || sec == LL_SMTP_PLAIN || sec == LL_SMTP_STARTTLS_OPPORTUNISTIC ||
                               hs.allow_plaintext_auth);
                if (h == LL__HS_NEED_TLS) {
                    FUZZ_CHECK(sec != LL_SMTP_PLAIN && hs.out.len == 0);
                    ll__sbuf_reset(&hs.out);
                    if (ll__smtp_hs_tls_done(&hs) == 0) check_out(&hs.out);
                } else if (h < 0 || h == LL__HS_DONE) {
                    if (h < 0) FUZZ_CHECK(hs.err[0] != '\0');
                    if (h == LL__HS_DONE && sec == LL_SMTP_STARTTLS_REQUIRED) FUZZ_CHECK(hs.tls);
                    hs_live = false;
                }
            }
        } else {
            FUZZ_CHECK(used == k);
        }
    }
    ll__smtp_hs_free(&hs);
    ll__smtp_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0];
    outcome whole, split;
    parse(data + 1, size - 1, mode, NULL, &whole);
    fuzz_rng rng;
    fuzz_rng_seed(&rng, data, size);
    parse(data + 1, size - 1, mode, &rng, &split);
    FUZZ_CHECK(whole.rc == split.rc);
    FUZZ_CHECK(whole.n == split.n && whole.hash == split.hash);
    return 0;
}
