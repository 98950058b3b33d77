/*
 * fuzz_smtp_data.c — the DATA encoder (CRLF normalisation and dot-stuffing, RFC 5321 4.5.2) and
 * the checks of what may reach the wire (addresses, EHLO names, command text).
 *
 * Input: the message body, encoded whole and in random splits. Invariants: the output is the same
 * either way; it contains no bare CR and no bare LF; it ends with exactly one terminator
 * "\r\n.\r\n" and has no other line consisting of a single dot; un-stuffing it (dropping the
 * terminator and the leading dot of each line that starts with one) gives the input with its line
 * ends normalised to CRLF (and a final CRLF added when missing). The address and line checks
 * accept nothing holding CR, LF or NUL.
 */
#include <string.h>
#include "fuzz.h"
#include "smtp_internal.h"

static void encode(const uint8_t *in, size_t n, fuzz_rng *rng, ll__sbuf *out) {
    ll__smtp_dot e;
    ll__smtp_dot_init(&e);
    size_t off = 0;
    while (off < n) {
        size_t k = n - off;
        if (rng) {
            size_t piece = fuzz_rng_len(rng, 17);
            if (piece < k) k = piece;
        }
        FUZZ_CHECK(ll__smtp_dot_encode(&e, in + off, k, out) == 0);
        off += k;
    }
    FUZZ_CHECK(ll__smtp_dot_finish(&e, out) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ll__sbuf whole = {0}, split = {0}, want = {0}, back = {0};
    encode(data, size, NULL, &whole);
    fuzz_rng rng;
    fuzz_rng_seed(&rng, data, size);
    encode(data, size, &rng, &split);
    FUZZ_CHECK(whole.len == split.len && memcmp(whole.data, split.data, whole.len) == 0);

    const char *o = whole.data;
    size_t n = whole.len;
    FUZZ_CHECK(n >= 3 && memcmp(o + n - 3, ".\r\n", 3) == 0);
    FUZZ_CHECK(n == 3 || (n >= 5 && memcmp(o + n - 5, "\r\n.\r\n", 5) == 0));
    for (size_t i = 0; i < n; i++) {
        if (o[i] == '\r') FUZZ_CHECK(i + 1 < n && o[i + 1] == '\n');
        if (o[i] == '\n') FUZZ_CHECK(i > 0 && o[i - 1] == '\r');
    }
    /* un-stuff line by line, up to the terminator, which must be the only ".\r\n" line */
    size_t i = 0;
    for (;;) {
        const char *eol = memmem(o + i, n - i, "\r\n", 2);
        FUZZ_CHECK(eol);
        size_t len = (size_t)(eol - (o + i));
        if (len == 1 && o[i] == '.') {
            FUZZ_CHECK(i + 3 == n); /* the terminator, and last */
            break;
        }
        if (len && o[i] == '.') {
            FUZZ_CHECK(len >= 2 && o[i + 1] == '.'); /* stuffed */
            FUZZ_CHECK(ll__sbuf_append(&back, o + i + 1, len - 1) == 0);
        } else {
            FUZZ_CHECK(ll__sbuf_append(&back, o + i, len) == 0);
        }
        FUZZ_CHECK(ll__sbuf_append(&back, "\r\n", 2) == 0);
        i += len + 2;
    }
    /* the input with every CRLF, bare CR and bare LF as CRLF, and a final line end */
    for (size_t j = 0; j < size; j++) {
        if (data[j] == '\r') {
            if (j + 1 < size && data[j + 1] == '\n') j++;
            FUZZ_CHECK(ll__sbuf_append(&want, "\r\n", 2) == 0);
        } else if (data[j] == '\n') {
            FUZZ_CHECK(ll__sbuf_append(&want, "\r\n", 2) == 0);
        } else {
            FUZZ_CHECK(ll__sbuf_putc(&want, (char)data[j]) == 0);
        }
    }
    if (want.len && !(want.len >= 2 && memcmp(want.data + want.len - 2, "\r\n", 2) == 0))
        FUZZ_CHECK(ll__sbuf_append(&want, "\r\n", 2) == 0);
    FUZZ_CHECK(back.len == want.len && (want.len == 0 || memcmp(back.data, want.data, want.len) == 0));

    /* the wire checks refuse any CR, LF or NUL */
    char err[LL__SMTP_ERRLEN];
    char *s = fuzz_strndup(data, size);
    bool has_break = memchr(data, '\r', size) || memchr(data, '\n', size) || memchr(data, 0, size);
    if (ll__smtp_check_line("line", (const char *)data, size, err) == 0) FUZZ_CHECK(!has_break);
    if (ll__smtp_check_address("address", s, true, err) == 0) FUZZ_CHECK(!strpbrk(s, "\r\n<>"));
    if (ll__smtp_check_helo(s, err) == 0) FUZZ_CHECK(!strpbrk(s, "\r\n "));
    free(s);
    ll__sbuf_free(&whole);
    ll__sbuf_free(&split);
    ll__sbuf_free(&want);
    ll__sbuf_free(&back);
    return 0;
}
