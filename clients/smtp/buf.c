/*
 * buf.c — the growable byte buffer the SMTP core writes commands, replies and messages into, the
 * error-message helper, and base64 through OpenSSL (nothing hand-written).
 */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include "smtp_internal.h"

int ll__smtp_errf(char *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, LL__SMTP_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

int ll__sbuf_reserve(ll__sbuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) return LL_ENOMEM;
        cap *= 2;
    }
    char *p = ll_realloc(b->data, cap);
    if (!p) return LL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ll__sbuf_append(ll__sbuf *b, const void *p, size_t n) {
    if (ll__sbuf_reserve(b, n)) return LL_ENOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int ll__sbuf_appends(ll__sbuf *b, const char *s) { return ll__sbuf_append(b, s, strlen(s)); }

int ll__sbuf_putc(ll__sbuf *b, char c) {
    if (b->len + 2 > b->cap && ll__sbuf_reserve(b, 1)) return LL_ENOMEM;
    b->data[b->len++] = c;
    b->data[b->len] = 0;
    return 0;
}

int ll__sbuf_printf(ll__sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return LL_EINVAL;
    if (ll__sbuf_reserve(b, (size_t)n)) return LL_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void ll__sbuf_reset(ll__sbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

void ll__sbuf_free(ll__sbuf *b) {
    ll_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *ll__sbuf_steal(ll__sbuf *b, size_t *len) {
    if (!b->data && ll__sbuf_reserve(b, 0)) return NULL;
    if (b->len == 0) b->data[0] = 0;
    char *p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

int ll__b64_encode(ll__sbuf *out, const void *p, size_t n) {
    /* EVP_EncodeBlock takes an int length: encode in slices that are a multiple of 3 bytes. */
    const unsigned char *s = p;
    while (n > 0) {
        size_t k = n > 3 * (1u << 20) ? 3 * (1u << 20) : n;
        if (ll__sbuf_reserve(out, 4 * ((k + 2) / 3))) return LL_ENOMEM;
        int w = EVP_EncodeBlock((unsigned char *)out->data + out->len, s, (int)k);
        out->len += (size_t)w;
        out->data[out->len] = 0;
        s += k;
        n -= k;
    }
    if (!out->data && ll__sbuf_reserve(out, 0)) return LL_ENOMEM;
    return 0;
}

int ll__b64_decode(ll__sbuf *out, const char *s, size_t n) {
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    if (n % 4 || n > (size_t)1 << 30) return LL_EINVAL;
    if (ll__sbuf_reserve(out, n / 4 * 3)) return LL_ENOMEM;
    if (n == 0) return 0;
    int w = EVP_DecodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)s, (int)n);
    if (w < 0) return LL_EINVAL;
    /* EVP_DecodeBlock counts the padding as data bytes: take them off. */
    if (s[n - 1] == '=') w--;
    if (s[n - 2] == '=') w--;
    out->len += (size_t)w;
    out->data[out->len] = 0;
    return 0;
}
