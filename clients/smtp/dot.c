/*
 * dot.c — the DATA encoder (RFC 5321 4.5.2), streaming and sans-I/O.
 *
 * Line endings are normalised on the way: CRLF stays, a bare LF or a bare CR becomes CRLF, so a
 * lone CR or LF never reaches the wire (the "SMTP smuggling" class: servers that read a bare LF as
 * a line end could otherwise see a "\n.\n" the client never meant as the end). A line starting with
 * '.' gets one more. finish() closes an unterminated last line and adds exactly one ".\r\n".
 * The state (start of line, a CR pending) carries across calls, so any split of the input gives
 * the same bytes.
 */
#include <string.h>
#include "smtp_internal.h"

void ll__smtp_dot_init(ll__smtp_dot *e) {
    e->bol = true;
    e->cr = false;
}

int ll__smtp_dot_encode(ll__smtp_dot *e, const void *in, size_t n, ll__sbuf *out) {
    const char *s = in;
    /* Worst case: every byte a bare LF (2 bytes) or a dot at a line start. */
    if (ll__sbuf_reserve(out, n + n / 8 + 16)) return LL_ENOMEM;
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (e->cr) {
            e->cr = false;
            if (ll__sbuf_append(out, "\r\n", 2)) return LL_ENOMEM;
            e->bol = true;
            if (c == '\n') {
                i++;
                continue;
            }
        }
        if (c == '\r') {
            e->cr = true;
            i++;
            continue;
        }
        if (c == '\n') {
            if (ll__sbuf_append(out, "\r\n", 2)) return LL_ENOMEM;
            e->bol = true;
            i++;
            continue;
        }
        if (e->bol && c == '.' && ll__sbuf_putc(out, '.')) return LL_ENOMEM;
        /* Copy the run up to the next line end in one go (memchr: the scan is most of the
         * work for a large body). */
        const char *lf = memchr(s + i, '\n', n - i);
        size_t j = lf ? (size_t)(lf - s) : n;
        const char *cr = memchr(s + i, '\r', j - i);
        if (cr) j = (size_t)(cr - s);
        if (ll__sbuf_append(out, s + i, j - i)) return LL_ENOMEM;
        e->bol = false;
        i = j;
    }
    return 0;
}

int ll__smtp_dot_finish(ll__smtp_dot *e, ll__sbuf *out) {
    if (e->cr || !e->bol) {
        if (ll__sbuf_append(out, "\r\n", 2)) return LL_ENOMEM;
    }
    e->cr = false;
    e->bol = true;
    return ll__sbuf_append(out, ".\r\n", 3);
}
