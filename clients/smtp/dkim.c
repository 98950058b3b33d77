/*
 * dkim.c — DKIM signing (RFC 6376) with relaxed/relaxed canonicalisation, rsa-sha256 and
 * ed25519-sha256 (RFC 8463); keys, hashes and signatures are OpenSSL's.
 *
 * The signer takes a complete message with CRLF line ends (what the MIME builder makes):
 * - body: relaxed (runs of spaces/tabs become one space, trailing whitespace and trailing empty
 *   lines go, a non-empty body ends in CRLF), hashed with SHA-256 into bh=;
 * - headers: for each name in h=, the last occurrence not yet used (RFC 6376 5.4.2), relaxed
 *   (lower-case name, unfolded, whitespace runs squeezed, no whitespace around the colon); a name
 *   with no occurrence left is hashed as nothing, which "signs it as absent" so it cannot be added
 *   later;
 * - then the DKIM-Signature header itself, relaxed, with an empty b=, without its CRLF.
 * rsa-sha256 signs that data with SHA-256 (PKCS#1 v1.5); ed25519-sha256 signs its SHA-256 digest
 * with PureEdDSA (RFC 8463 3). The header is folded at spaces, b= in pieces; relaxed
 * canonicalisation makes the verifier see the same bytes either way.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include "mime_internal.h"

struct ll_smtp_dkim {
    EVP_PKEY *key;
    bool ed25519;
    char *domain, *selector, *headers;
};

static void set_err(char **err, const char *fmt, const char *a) {
    if (err) *err = ll_format(fmt, a);
}

ll_smtp_dkim *ll_smtp_dkim_new(const ll_smtp_dkim_opts *o, char **err) {
    if (err) *err = NULL;
    if (!o || !o->domain || !o->selector || !o->key_pem) {
        set_err(err, "ll_smtp_dkim_new: %s", "domain, selector and key_pem are required");
        return NULL;
    }
    const char *hs = o->headers ? o->headers
                                : "From:To:Cc:Reply-To:Subject:Date:Message-ID:MIME-Version:Content-Type";
    if (ll__smtp_check_line("d=", o->domain, strlen(o->domain), NULL) ||
        ll__smtp_check_line("s=", o->selector, strlen(o->selector), NULL) ||
        ll__smtp_check_line("h=", hs, strlen(hs), NULL) || strchr(o->domain, ';') ||
        strchr(o->selector, ';') || strchr(hs, ';')) {
        set_err(err, "ll_smtp_dkim_new: %s", "domain, selector or headers contain CR, LF, NUL or ';'");
        return NULL;
    }
    BIO *b = BIO_new_mem_buf(o->key_pem, -1);
    EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!key) {
        set_err(err, "ll_smtp_dkim_new: %s", "key_pem is not a PEM private key OpenSSL can read");
        return NULL;
    }
    int type = EVP_PKEY_get_base_id(key);
    if (type != EVP_PKEY_RSA && type != EVP_PKEY_ED25519) {
        EVP_PKEY_free(key);
        set_err(err, "ll_smtp_dkim_new: %s", "the key must be RSA or Ed25519");
        return NULL;
    }
    ll_smtp_dkim *d = ll_calloc(1, sizeof *d);
    if (d) {
        d->key = key;
        d->ed25519 = type == EVP_PKEY_ED25519;
        d->domain = ll_strdup(o->domain);
        d->selector = ll_strdup(o->selector);
        d->headers = ll_strdup(hs);
    }
    if (!d || !d->domain || !d->selector || !d->headers) {
        ll_smtp_dkim_free(d);
        if (!d) EVP_PKEY_free(key);
        set_err(err, "%s", "out of memory");
        return NULL;
    }
    return d;
}

void ll_smtp_dkim_free(ll_smtp_dkim *d) {
    if (!d) return;
    EVP_PKEY_free(d->key);
    ll_free(d->domain);
    ll_free(d->selector);
    ll_free(d->headers);
    ll_free(d);
}

static bool wsp(char c) { return c == ' ' || c == '\t'; }

/* Relaxed body canonicalisation (RFC 6376 3.4.4). */
static int canon_body(ll__sbuf *out, const char *s, size_t n) {
    size_t i = 0;
    size_t empty_run = 0; /* empty lines seen but not yet written */
    while (i < n) {
        const char *e = memchr(s + i, '\n', n - i);
        size_t end = e ? (size_t)(e - s) : n;
        size_t le = end;
        if (le > i && s[le - 1] == '\r') le--;
        ll__sbuf line = {0};
        bool sp = false;
        for (size_t k = i; k < le; k++) {
            if (wsp(s[k])) {
                sp = true;
                continue;
            }
            if (sp && line.len && ll__sbuf_putc(&line, ' ')) return LL_ENOMEM;
            if (sp && !line.len && ll__sbuf_putc(&line, ' ')) return LL_ENOMEM;
            sp = false;
            if (ll__sbuf_putc(&line, s[k])) return LL_ENOMEM;
        }
        /* trailing whitespace dropped (sp left pending) */
        if (line.len == 0) {
            empty_run++;
        } else {
            for (; empty_run; empty_run--)
                if (ll__sbuf_appends(out, "\r\n")) return LL_ENOMEM;
            if (ll__sbuf_append(out, line.data, line.len) || ll__sbuf_appends(out, "\r\n"))
                return LL_ENOMEM;
        }
        ll__sbuf_free(&line);
        i = e ? end + 1 : n;
    }
    return 0;
}

/* Relaxed header canonicalisation of one field "Name: value\r\n folded" (RFC 6376 3.4.2). */
static int canon_header(ll__sbuf *out, const char *h, size_t n, bool crlf) {
    const char *colon = memchr(h, ':', n);
    if (!colon) return LL_EINVAL;
    size_t nl = (size_t)(colon - h);
    while (nl && wsp(h[nl - 1])) nl--;
    for (size_t i = 0; i < nl; i++)
        if (ll__sbuf_putc(out, (char)tolower((unsigned char)h[i]))) return LL_ENOMEM;
    if (ll__sbuf_putc(out, ':')) return LL_ENOMEM;
    size_t i = (size_t)(colon - h) + 1;
    bool sp = false, started = false;
    for (; i < n; i++) {
        char c = h[i];
        if (c == '\r' || c == '\n') continue; /* unfold */
        if (wsp(c)) {
            sp = true;
            continue;
        }
        if (sp && started && ll__sbuf_putc(out, ' ')) return LL_ENOMEM;
        sp = false;
        started = true;
        if (ll__sbuf_putc(out, c)) return LL_ENOMEM;
    }
    return crlf ? ll__sbuf_appends(out, "\r\n") : 0;
}

typedef struct field {
    const char *p;
    size_t n;
    bool used;
} field;

char *ll_smtp_dkim_sign(const ll_smtp_dkim *d, const char *msg, size_t len, char **err) {
    if (err) *err = NULL;
    if (!d || !msg) {
        set_err(err, "ll_smtp_dkim_sign: %s", "signer or message is NULL");
        return NULL;
    }
    /* Split the header fields. */
    field *f = NULL;
    size_t nf = 0, cap = 0, i = 0;
    while (i < len) {
        if (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n') {
            i += 2; /* the empty line */
            break;
        }
        size_t start = i;
        for (;;) {
            const char *e = memchr(msg + i, '\n', len - i);
            i = e ? (size_t)(e - msg) + 1 : len;
            if (i >= len || !wsp(msg[i])) break; /* continuation lines start with WSP */
        }
        if (nf == cap) {
            cap = cap ? cap * 2 : 32;
            field *nv = ll_realloc(f, cap * sizeof *f);
            if (!nv) {
                ll_free(f);
                set_err(err, "%s", "out of memory");
                return NULL;
            }
            f = nv;
        }
        f[nf++] = (field){msg + start, i - start, false};
    }
    char *result = NULL;
    ll__sbuf body = {0}, data = {0}, hdr = {0}, bh = {0}, sigb64 = {0};
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    int rc = canon_body(&body, msg + i, len - i);
    if (!rc && !EVP_Digest(body.data ? body.data : "", body.len, digest, &dlen, EVP_sha256(), NULL))
        rc = LL_EIO;
    if (!rc) rc = ll__b64_encode(&bh, digest, dlen);
    /* The selected header fields, bottom-up per name. */
    const char *h = d->headers;
    ll__sbuf hlist = {0};
    while (!rc && *h) {
        const char *e = strchr(h, ':');
        size_t hn = e ? (size_t)(e - h) : strlen(h);
        for (size_t k = nf; k-- > 0;) {
            if (f[k].used || f[k].n <= hn || f[k].p[hn] != ':' || strncasecmp(f[k].p, h, hn)) continue;
            f[k].used = true;
            rc = canon_header(&data, f[k].p, f[k].n, true);
            break;
        }
        if (!rc) rc = (hlist.len && ll__sbuf_putc(&hlist, ':')) || ll__sbuf_append(&hlist, h, hn);
        h += hn;
        if (*h == ':') h++;
    }
    /* The signature header with an empty b=. */
    if (!rc)
        rc = ll__sbuf_printf(&hdr, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;\r\n\tt=%lld; h=",
                             d->ed25519 ? "ed25519-sha256" : "rsa-sha256", d->domain, d->selector,
                             (long long)time(NULL));
    /* h= folded at colons */
    size_t col = 16;
    for (size_t k = 0; !rc && k < hlist.len; k++) {
        if (hlist.data[k] == ':' && col > 60) {
            rc = ll__sbuf_appends(&hdr, ":\r\n\t");
            col = 1;
            continue;
        }
        rc = ll__sbuf_putc(&hdr, hlist.data[k]);
        col++;
    }
    if (!rc) rc = ll__sbuf_printf(&hdr, ";\r\n\tbh=%s;\r\n\tb=", bh.data);
    if (!rc) rc = canon_header(&data, hdr.data, hdr.len, false);
    /* Sign. */
    unsigned char *sig = NULL;
    size_t slen = 0;
    if (!rc) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        bool ok = ctx != NULL;
        if (ok && d->ed25519) {
            unsigned char hd[32];
            unsigned int hl = 0;
            ok = EVP_Digest(data.data, data.len, hd, &hl, EVP_sha256(), NULL) &&
                 EVP_DigestSignInit(ctx, NULL, NULL, NULL, d->key) &&
                 EVP_DigestSign(ctx, NULL, &slen, hd, hl) && (sig = ll_malloc(slen)) != NULL &&
                 EVP_DigestSign(ctx, sig, &slen, hd, hl);
        } else if (ok) {
            ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, d->key) &&
                 EVP_DigestSignUpdate(ctx, data.data, data.len) &&
                 EVP_DigestSignFinal(ctx, NULL, &slen) && (sig = ll_malloc(slen)) != NULL &&
                 EVP_DigestSignFinal(ctx, sig, &slen);
        }
        EVP_MD_CTX_free(ctx);
        if (!ok) rc = LL_ETLS;
    }
    if (!rc) rc = ll__b64_encode(&sigb64, sig, slen);
    for (size_t k = 0; !rc && k < sigb64.len; k += 70) {
        size_t n = sigb64.len - k > 70 ? 70 : sigb64.len - k;
        rc = (k && ll__sbuf_appends(&hdr, "\r\n\t")) || ll__sbuf_append(&hdr, sigb64.data + k, n);
    }
    if (!rc) rc = ll__sbuf_appends(&hdr, "\r\n");
    if (!rc) result = ll__sbuf_steal(&hdr, NULL);
    if (!result) set_err(err, "ll_smtp_dkim_sign: %s", rc == LL_ETLS ? "OpenSSL could not sign" :
                         rc == LL_EINVAL ? "malformed header field" : "out of memory");
    ll_free(sig);
    ll_free(f);
    ll__sbuf_free(&body);
    ll__sbuf_free(&data);
    ll__sbuf_free(&hdr);
    ll__sbuf_free(&bh);
    ll__sbuf_free(&sigb64);
    ll__sbuf_free(&hlist);
    return result;
}
