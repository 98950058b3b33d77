/*
 * reply.c — the SMTP reply parser (RFC 5321 4.2), sans-I/O.
 *
 * A reply is one or more lines "NNN-text" ... "NNN text" (or a bare "NNN"). The parser checks
 * what a hostile or broken server could abuse: every line of one reply carries the same code, the
 * code is three digits with a first digit of 2 to 5, a line is at most max_line bytes and a reply at
 * most max_lines lines (an endless multi-line reply fails instead of eating memory), and there is
 * no NUL and no bare CR (found by fuzzing: it would reach the caller's text and logs). Lines end in CRLF; a bare LF is accepted as well (old servers), a CR before it dropped.
 *
 * It consumes bytes up to the end of one reply and never further, so the adapter decides what
 * happens to the rest: after a STARTTLS go-ahead it is discarded, not parsed.
 *
 * RFC 3463 enhanced status codes (RFC 2034: each line starts with one when the server offers
 * ENHANCEDSTATUSCODES) are recognised on the first line when their class matches the reply's
 * first digit, kept apart, and taken off the text of every line that repeats them.
 */
#include <stdio.h>
#include <string.h>
#include "smtp_internal.h"

void ll__smtp_parser_init(ll__smtp_parser *p, size_t max_line, size_t max_lines) {
    memset(p, 0, sizeof *p);
    p->max_line = max_line ? max_line : LL__SMTP_MAX_LINE;
    p->max_lines = max_lines ? max_lines : LL__SMTP_MAX_LINES;
}

void ll__smtp_reply_free(ll__smtp_reply *r) {
    ll__sbuf_free(&r->text);
    memset(r, 0, sizeof *r);
}

void ll__smtp_parser_free(ll__smtp_parser *p) {
    ll__sbuf_free(&p->line);
    ll__smtp_reply_free(&p->cur);
}

bool ll__smtp_parser_midway(const ll__smtp_parser *p) {
    return p->line.len > 0 || (p->cur.nlines > 0 && !p->complete);
}

/* "X.Y.Z" with X in 2,4,5, Y 1-3 digits, Z 1-3 digits, followed by a space or the end. Returns
 * the length or 0. */
static size_t enhanced_len(const char *s, size_t n, int cls) {
    size_t i = 0;
    if (n < 5 || s[0] != (char)('0' + cls) || s[1] != '.') return 0;
    i = 2;
    size_t d = 0;
    while (i < n && d < 4 && s[i] >= '0' && s[i] <= '9') i++, d++;
    if (d == 0 || d > 3 || i >= n || s[i] != '.') return 0;
    i++;
    d = 0;
    while (i < n && d < 4 && s[i] >= '0' && s[i] <= '9') i++, d++;
    if (d == 0 || d > 3) return 0;
    if (i < n && s[i] != ' ') return 0;
    return i;
}

/* One complete line (without its end). Returns 1 when it was the last line of the reply. */
static int take_line(ll__smtp_parser *p, const char *s, size_t n) {
    ll__smtp_reply *r = &p->cur;
    if (memchr(s, 0, n)) return ll__smtp_errf(p->err, LL_ESMTP_PROTO, "NUL byte in a reply");
    if (memchr(s, '\r', n))
        return ll__smtp_errf(p->err, LL_ESMTP_PROTO, "bare CR in a reply line");
    if (n < 3 || s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
        return ll__smtp_errf(p->err, LL_ESMTP_PROTO, "malformed reply line \"%.*s\"",
                             (int)(n > 60 ? 60 : n), s);
    if (n > 3 && s[3] != ' ' && s[3] != '-')
        return ll__smtp_errf(p->err, LL_ESMTP_PROTO, "malformed reply line \"%.*s\"",
                             (int)(n > 60 ? 60 : n), s);
    int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (r->nlines == 0) {
        r->code = code;
    } else if (code != r->code) {
        return ll__smtp_errf(p->err, LL_ESMTP_PROTO,
                             "reply code changed within a multi-line reply (%d, then %d)", r->code,
                             code);
    }
    if (r->nlines + 1 > p->max_lines)
        return ll__smtp_errf(p->err, LL_ESMTP_PROTO, "reply longer than %zu lines", p->max_lines);
    bool last = n == 3 || s[3] == ' ';
    const char *t = n > 4 ? s + 4 : s + n;
    size_t tn = n > 4 ? n - 4 : 0;
    if (r->nlines == 0) {
        size_t e = enhanced_len(t, tn, code / 100);
        if (e && e < sizeof r->enhanced) {
            memcpy(r->enhanced, t, e);
            r->enhanced[e] = 0;
        }
    }
    if (r->enhanced[0]) {
        size_t e = strlen(r->enhanced);
        if (tn >= e && memcmp(t, r->enhanced, e) == 0 && (tn == e || t[e] == ' ')) {
            t += e;
            tn -= e;
            if (tn && *t == ' ') t++, tn--;
        }
    }
    if (r->nlines > 0 && ll__sbuf_putc(&r->text, '\n')) return LL_ENOMEM;
    if (ll__sbuf_append(&r->text, t, tn)) return LL_ENOMEM;
    r->nlines++;
    return last ? 1 : 0;
}

int ll__smtp_parser_feed(ll__smtp_parser *p, const char *d, size_t n, size_t *used) {
    *used = 0;
    if (p->complete) {
        /* The previous reply was read: start a new one. */
        ll__sbuf_reset(&p->cur.text);
        p->cur.code = 0;
        p->cur.enhanced[0] = 0;
        p->cur.nlines = 0;
        p->complete = false;
    }
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(d + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (d + i)) : n - i;
        /* +1 for a CR that may precede the LF */
        if (p->line.len + take > p->max_line + 1) {
            *used = i;
            return ll__smtp_errf(p->err, LL_ESMTP_PROTO, "reply line longer than %zu bytes",
                                 p->max_line);
        }
        if (ll__sbuf_append(&p->line, d + i, take)) return LL_ENOMEM;
        i += take;
        if (!nl) break;
        i++; /* the LF */
        size_t ln = p->line.len;
        if (ln && p->line.data[ln - 1] == '\r') ln--;
        if (ln > p->max_line) {
            *used = i;
            return ll__smtp_errf(p->err, LL_ESMTP_PROTO, "reply line longer than %zu bytes",
                                 p->max_line);
        }
        int rc = take_line(p, p->line.data, ln);
        ll__sbuf_reset(&p->line);
        if (rc < 0) {
            *used = i;
            return rc;
        }
        if (rc == 1) {
            p->complete = true;
            *used = i;
            return 1;
        }
    }
    *used = i;
    return 0;
}

void ll__smtp_reply_describe(const ll__smtp_reply *r, char *out, size_t n) {
    int k = snprintf(out, n, "%d%s%s", r->code, r->enhanced[0] ? " " : "", r->enhanced);
    if (k < 0 || (size_t)k >= n) return;
    size_t o = (size_t)k;
    if (r->text.len && o + 1 < n) out[o++] = ' ';
    for (size_t i = 0; i < r->text.len && o + 1 < n; i++) {
        char c = r->text.data[i];
        if (c == '\n') {
            if (o + 3 >= n) break;
            memcpy(out + o, " / ", 3);
            o += 3;
            continue;
        }
        out[o++] = (c < 0x20 || c == 0x7f) ? '?' : c;
    }
    out[o] = 0;
}
