/*
 * buf.c — the growable byte buffer the HTTP core serialises into and collects bodies in, and the
 * error-message helper. Growth doubles (amortised O(1) appends); the data is kept NUL-terminated
 * so a body can be handed out as a C string without a copy.
 */
#include <stdio.h>
#include <string.h>
#include "http_internal.h"

int ll__http_errf(char *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, LL__HTTP_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

int ll__hbuf_reserve(ll__hbuf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1) return LL_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *d = ll_realloc(b->data, cap);
    if (!d) return LL_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int ll__hbuf_reserve_exact(ll__hbuf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1) return LL_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    char *d = ll_realloc(b->data, need);
    if (!d) return LL_ENOMEM;
    b->data = d;
    b->cap = need;
    return 0;
}

int ll__hbuf_append(ll__hbuf *b, const void *p, size_t n) {
    if (ll__hbuf_reserve(b, n)) return LL_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int ll__hbuf_appends(ll__hbuf *b, const char *s) {
    return ll__hbuf_append(b, s, strlen(s));
}

int ll__hbuf_printf(ll__hbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[128];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    int rc = 0;
    if (n < 0) rc = LL_EINVAL;
    else if ((size_t)n < sizeof small) rc = ll__hbuf_append(b, small, (size_t)n);
    else if ((rc = ll__hbuf_reserve(b, (size_t)n)) == 0) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
    }
    va_end(ap);
    return rc;
}

void ll__hbuf_free(ll__hbuf *b) {
    ll_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *ll__hbuf_steal(ll__hbuf *b, size_t *len) {
    char *d = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

bool ll__http_value_ok(const char *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    }
    return true;
}

bool ll__http_str_ok(const char *s) { return !s || ll__http_value_ok(s, strlen(s)); }

const char *ll__http_esc(char *out, size_t cap, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (!cap) return "";
    if (!s) s = "", n = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ctl = c < 0x20 || c == 0x7f;
        size_t need = ctl ? 4 : 1;
        if (o + need + 4 > cap) { /* room for "..." and the terminator */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ctl) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = 0;
    return out;
}
