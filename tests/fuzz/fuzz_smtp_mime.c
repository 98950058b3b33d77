/*
 * fuzz_smtp_mime.c — the MIME builder with arbitrary header text, names, file names and bodies.
 *
 * Input: fields separated by NUL bytes: subject, display name, file name, text, html (missing
 * fields are left unset). Invariants: a setter either refuses (CR/LF in a header field) or the build
 * succeeds; the message is 7-bit ASCII with CRLF line ends only; no line passes 998 bytes; header
 * lines pass 78 only where an address or a token cannot be folded (never for text we encode); and
 * the Bcc address appears nowhere in the message.
 */
#include <string.h>
#include "fuzz.h"
#include "smtp_internal.h"

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
    ll_free(out);
    ll_free(err);
    ll_smtp_mime_free(m);
    free(buf);
    return 0;
}
