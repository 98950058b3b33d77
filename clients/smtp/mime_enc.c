/*
 * mime_enc.c — the encodings the MIME builder needs, hand-written because no library we use does
 * them for building (OpenSSL gives base64, which is used): RFC 2047 encoded words, header folding,
 * RFC 2231 parameters, quoted-printable (RFC 2045 6.7), base64 in 76-column lines.
 *
 * Header lines are folded before column 78 and can never exceed 998: text that cannot be folded at
 * a space within the limit (a long word, non-ASCII) is sent as encoded words, each at most 75
 * characters on a line of its own, and an encoded word never splits a UTF-8 sequence.
 */
#include <string.h>
#include "smtp_internal.h"
#include "mime_internal.h"

static bool plain_text_ok(const char *s, size_t max_word) {
    /* ASCII printable (and spaces), no "=?" (would read as an encoded word), words that fold. */
    size_t word = 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7e) return false;
        if (c == '=' && p[1] == '?') return false;
        word = c == ' ' ? 0 : word + 1;
        if (word > max_word) return false;
    }
    return true;
}

/* Length of the longest prefix of s (at most max bytes) that ends on a UTF-8 boundary. */
static size_t utf8_prefix(const char *s, size_t n, size_t max) {
    if (n <= max) return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return k ? k : max;
}

int ll__mime_encoded_words(ll__sbuf *out, const char *s, size_t col) {
    size_t n = strlen(s);
    size_t i = 0;
    /* 39 bytes -> 52 base64 characters + 12 for "=?UTF-8?B?" and "?=": 64 per word, so a word
     * fits after "Subject: " and on a continuation line. */
    do {
        size_t k = utf8_prefix(s + i, n - i, 39);
        if (i > 0 || col + 64 > 78) {
            if (ll__sbuf_appends(out, "\r\n ")) return LL_ENOMEM;
        }
        if (ll__sbuf_appends(out, "=?UTF-8?B?") || ll__b64_encode(out, s + i, k) ||
            ll__sbuf_appends(out, "?="))
            return LL_ENOMEM;
        i += k;
    } while (i < n);
    return 0;
}

int ll__mime_header_text(ll__sbuf *out, const char *name, const char *value) {
    if (ll__sbuf_printf(out, "%s:", name)) return LL_ENOMEM;
    size_t col = strlen(name) + 1;
    /* a word must fit on the first line after "Name: " as well as on a continuation line */
    size_t max_word = col + 2 < 70 ? 76 - col - 1 : 0;
    if (!plain_text_ok(value, max_word)) {
        if (ll__sbuf_putc(out, ' ')) return LL_ENOMEM;
        if (ll__mime_encoded_words(out, value, col + 1)) return LL_ENOMEM;
        return ll__sbuf_appends(out, "\r\n");
    }
    /* Fold at spaces before column 78. */
    const char *p = value;
    while (*p) {
        const char *sp = strchr(p, ' ');
        size_t wl = sp ? (size_t)(sp - p) : strlen(p);
        if (col + 1 + wl > 78 && col > strlen(name) + 1) {
            if (ll__sbuf_appends(out, "\r\n")) return LL_ENOMEM;
            col = 0;
        }
        if (ll__sbuf_putc(out, ' ') || ll__sbuf_append(out, p, wl)) return LL_ENOMEM;
        col += 1 + wl;
        p += wl;
        while (*p == ' ') p++;
    }
    return ll__sbuf_appends(out, "\r\n");
}

/* A display name: atext and spaces as is, other ASCII as a quoted string, else encoded words. */
static bool is_atext_phrase(const char *s) {
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(c == ' ' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-/=?^_`{|}~", c)))
            return false;
        if (c == '=' && p[1] == '?') return false;
    }
    return true;
}

int ll__mime_mailbox(ll__sbuf *out, const char *name, const char *addr, size_t *col) {
    size_t start = out->len;
    if (name && *name) {
        size_t nl = strlen(name), ql = nl + 2; /* as a quoted string, with its escapes */
        for (const char *p = name; *p; p++) ql += *p == '"' || *p == '\\';
        if (*col + nl <= 76 && is_atext_phrase(name)) {
            if (ll__sbuf_appends(out, name)) return LL_ENOMEM;
        } else if (*col + ql <= 76 && plain_text_ok(name, 76)) {
            if (ll__sbuf_putc(out, '"')) return LL_ENOMEM;
            for (const char *p = name; *p; p++) {
                if ((*p == '"' || *p == '\\') && ll__sbuf_putc(out, '\\')) return LL_ENOMEM;
                if (ll__sbuf_putc(out, *p)) return LL_ENOMEM;
            }
            if (ll__sbuf_putc(out, '"')) return LL_ENOMEM;
        } else {
            if (ll__mime_encoded_words(out, name, *col)) return LL_ENOMEM;
        }
        /* the column after the name: count from the last line break written */
        size_t k = out->len;
        while (k > start && out->data[k - 1] != '\n') k--;
        size_t c = k > start ? out->len - k : *col + (out->len - start);
        /* "<addr>" goes on a line of its own when it would pass column 78 */
        if (c + 3 + strlen(addr) > 78) {
            if (ll__sbuf_printf(out, "\r\n <%s>", addr)) return LL_ENOMEM;
            *col = 3 + strlen(addr);
        } else {
            if (ll__sbuf_printf(out, " <%s>", addr)) return LL_ENOMEM;
            *col = c + 3 + strlen(addr);
        }
        return 0;
    }
    if (ll__sbuf_appends(out, addr)) return LL_ENOMEM;
    *col += strlen(addr);
    return 0;
}

int ll__mime_address_header(ll__sbuf *out, const char *name, const ll__mime_addr *a, size_t n) {
    if (ll__sbuf_printf(out, "%s: ", name)) return LL_ENOMEM;
    size_t col = strlen(name) + 2;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            if (ll__sbuf_putc(out, ',')) return LL_ENOMEM;
            col++;
            size_t need = strlen(a[i].addr) + (a[i].name ? strlen(a[i].name) + 3 : 0);
            if (col + 1 + need > 78) {
                if (ll__sbuf_appends(out, "\r\n ")) return LL_ENOMEM;
                col = 1;
            } else {
                if (ll__sbuf_putc(out, ' ')) return LL_ENOMEM;
                col++;
            }
        }
        if (ll__mime_mailbox(out, a[i].name, a[i].addr, &col)) return LL_ENOMEM;
    }
    return ll__sbuf_appends(out, "\r\n");
}

/* RFC 2231: name="value" when the value is short printable ASCII without quotes; else
 * name*0*=UTF-8''%xx..;\r\n name*1*=... in pieces that keep each line under 78. */
int ll__mime_param(ll__sbuf *out, const char *name, const char *value) {
    bool simple = strlen(value) < 60;
    for (const char *p = value; *p && simple; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') simple = false;
    }
    if (simple) return ll__sbuf_printf(out, ";\r\n %s=\"%s\"", name, value) ? LL_ENOMEM : 0;
    static const char hex[] = "0123456789ABCDEF";
    ll__sbuf enc = {0};
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("!#$&+-.^_`|~", *p);
        int rc = keep ? ll__sbuf_putc(&enc, (char)*p)
                      : ll__sbuf_printf(&enc, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
        if (rc) {
            ll__sbuf_free(&enc);
            return LL_ENOMEM;
        }
    }
    size_t i = 0, part = 0;
    int rc = 0;
    while (!rc && i < enc.len) {
        size_t k = enc.len - i > 50 ? 50 : enc.len - i;
        /* never split a %XX escape */
        if (i + k < enc.len) {
            if (k >= 1 && enc.data[i + k - 1] == '%') k -= 1;
            else if (k >= 2 && enc.data[i + k - 2] == '%') k -= 2;
        }
        rc = ll__sbuf_printf(out, ";\r\n %s*%zu*=%s%.*s", name, part, part == 0 ? "UTF-8''" : "",
                             (int)k, enc.data + i);
        i += k;
        part++;
    }
    ll__sbuf_free(&enc);
    return rc ? LL_ENOMEM : 0;
}

int ll__mime_base64_lines(ll__sbuf *out, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i += 57) {
        size_t k = n - i > 57 ? 57 : n - i;
        if (ll__b64_encode(out, p + i, k) || ll__sbuf_appends(out, "\r\n")) return LL_ENOMEM;
    }
    return 0;
}

int ll__mime_qp(ll__sbuf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            if (ll__sbuf_appends(out, "\r\n")) return LL_ENOMEM;
            col = 0;
            i++;
            continue;
        }
        bool at_eol = i + 1 == n || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
        bool enc = c == '=' || c > 126 || (c < 32 && c != '\t') || ((c == ' ' || c == '\t') && at_eol) ||
                   (c == '.' && col == 0);
        size_t w = enc ? 3 : 1;
        if (col + w > 75) {
            if (ll__sbuf_appends(out, "=\r\n")) return LL_ENOMEM;
            col = 0;
        }
        int rc = enc ? ll__sbuf_printf(out, "=%c%c", hex[c >> 4], hex[c & 15]) : ll__sbuf_putc(out, (char)c);
        if (rc) return LL_ENOMEM;
        col += w;
    }
    return 0;
}

int ll__mime_crlf(ll__sbuf *out, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\r') {
            if (i + 1 < n && s[i + 1] == '\n') i++;
            if (ll__sbuf_appends(out, "\r\n")) return LL_ENOMEM;
        } else if (c == '\n') {
            if (ll__sbuf_appends(out, "\r\n")) return LL_ENOMEM;
        } else if (ll__sbuf_putc(out, c)) {
            return LL_ENOMEM;
        }
    }
    return 0;
}
