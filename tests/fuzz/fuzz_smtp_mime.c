/*
 * fuzz_smtp_mime.c — the MIME builder with arbitrary header text, names, file names and bodies.
 *
 * Input: fields separated by NUL bytes: subject, display name, file name, text, html (missing
 * fields are left unset). Invariants: a setter either refuses (CR/LF in a header field) or the build
 * succeeds; the message is 7-bit ASCII with CRLF line ends only; no line passes 998 bytes; header
 * lines pass 78 only where an address or a token cannot be folded (never for text we encode); the
 * Bcc address appears nowhere in the message but is in the envelope; and every multipart boundary
 * occurs only as a delimiter line ("--b" CRLF, once "--b--"), so in no part's content.
 */
#include <string.h>
#include "fuzz.h"
#include "smtp_internal.h"

/* The boundary a header block [h, end) declares ("Content-Type: multipart/...; boundary=..."),
 * as "--b" in out; false when it declares none. */
static bool declared(const char *h, const char *end, char out[80]) {
    /* a header line of its own, not the text of another header (a subject may say anything) */
    const char *ct = NULL;
    if ((size_t)(end - h) >= 24 && memcmp(h, "Content-Type: multipart/", 24) == 0) ct = h;
    else if ((ct = memmem(h, (size_t)(end - h), "\nContent-Type: multipart/", 25)) != NULL) ct++;
    if (!ct) return false;
    const char *p = memmem(ct, (size_t)(end - ct), "boundary=\"", 10);
    FUZZ_CHECK(p);
    p += 10;
    const char *q = memchr(p, '"', (size_t)(end - p));
    FUZZ_CHECK(q && q - p > 0 && q - p < 71); /* RFC 2046: 1 to 70 characters */
    out[0] = out[1] = '-';
    memcpy(out + 2, p, (size_t)(q - p));
    out[2 + (q - p)] = 0;
    return true;
}

/* Every boundary declared, by the message's headers or a part's: "--b" occurs only as a
 * delimiter line, "--b" CRLF (at least once) or the closing "--b--" (exactly once). */
static void check_boundaries(const char *msg, size_t len, size_t hdr_end) {
    char bs[8][80];
    int nb = declared(msg, msg + hdr_end, bs[0]) ? 1 : 0;
    for (int k = 0; k < nb; k++) {
        const char *b = bs[k];
        size_t bl = strlen(b);
        int opens = 0, closes = 0;
        for (const char *o = msg; (o = memmem(o, len - (size_t)(o - msg), b, bl)) != NULL; o += bl) {
            FUZZ_CHECK(o == msg || o[-1] == '\n');
            size_t rest = len - (size_t)(o - msg) - bl;
            if (rest >= 2 && memcmp(o + bl, "--", 2) == 0) {
                FUZZ_CHECK(rest == 2 || (rest >= 4 && memcmp(o + bl + 2, "\r\n", 2) == 0));
                closes++;
            } else {
                FUZZ_CHECK(rest >= 2 && memcmp(o + bl, "\r\n", 2) == 0);
                opens++;
                /* the part's own headers may declare a nested multipart */
                const char *ph = o + bl + 2;
                const char *pe = memmem(ph, len - (size_t)(ph - msg), "\r\n\r\n", 4);
                if (pe && nb < 8 && declared(ph, pe + 2, bs[nb])) nb++;
            }
        }
        FUZZ_CHECK(opens >= 1 && closes == 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = fuzz_strndup(data, size);
    const char *field[5] = {NULL, NULL, NULL, NULL, NULL};
    size_t nf = 0;
    const char *p = buf;
    while (nf < 5 && p <= buf + size) {
        field[nf++] = p;
        p += strlen(p) + 1;
    }
    ll_smtp_mime *m = ll_smtp_mime_new();
    FUZZ_CHECK(m);
    FUZZ_CHECK(ll_smtp_mime_set_from(m, NULL, "from@example.test") == 0);
    FUZZ_CHECK(ll_smtp_mime_add_bcc(m, "hidden-bcc@example.test") == 0);
    bool injected = false;
    for (size_t i = 0; i < nf && i < 3; i++) injected = injected || strpbrk(field[i], "\r\n");
    int rc = 0;
    if (nf > 0 && ll_smtp_mime_set_subject(m, field[0])) rc = 1;
    if (nf > 1 && ll_smtp_mime_add_to(m, field[1], "to@example.test")) rc = 1;
    if (nf > 2 && field[2][0] && ll_smtp_mime_attach(m, field[2], NULL, field[2], strlen(field[2]))) rc = 1;
    if (nf > 3) FUZZ_CHECK(ll_smtp_mime_set_text(m, field[3]) == 0);
    if (nf > 4) FUZZ_CHECK(ll_smtp_mime_set_html(m, field[4]) == 0);
    FUZZ_CHECK(rc == (injected ? 1 : 0) || (rc == 0 && !injected));
    char *out = NULL, *err = NULL;
    size_t len = 0;
    FUZZ_CHECK(ll_smtp_mime_build(m, &out, &len, &err) == 0);
    FUZZ_CHECK(out && strlen(out) == len);
    size_t col = 0;
    bool in_headers = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)out[i];
        FUZZ_CHECK(c < 0x80 && c != 0);
        if (c == '\r') {
            FUZZ_CHECK(i + 1 < len && out[i + 1] == '\n');
            continue;
        }
        if (c == '\n') {
            FUZZ_CHECK(i > 0 && out[i - 1] == '\r');
            if (col == 0) in_headers = false;
            col = 0;
            continue;
        }
        col++;
        FUZZ_CHECK(col <= 998);
        if (in_headers) FUZZ_CHECK(col <= 78);
    }
    /* (unless the input itself carries the text, as a name, a file name or a body) */
    if (!memmem(data, size, "hidden-bcc", 10)) FUZZ_CHECK(!strstr(out, "hidden-bcc"));
    const char *eoh = strstr(out, "\r\n\r\n");
    FUZZ_CHECK(eoh);
    check_boundaries(out, len, (size_t)(eoh - out) + 2);
    ll_free(out);
    ll_smtp_mail mail;
    char *merr = NULL;
    FUZZ_CHECK(ll_smtp_mime_mail(m, &mail, &merr) == 0);
    bool bcc = false;
    for (size_t i = 0; i < mail.nrcpt; i++)
        bcc = bcc || strcmp(mail.rcpt[i], "hidden-bcc@example.test") == 0;
    FUZZ_CHECK(bcc && strcmp(mail.from, "from@example.test") == 0);
    ll_free(merr);
    ll_free(err);
    ll_smtp_mime_free(m);
    free(buf);
    return 0;
}
