/*
 * request.c — serialising requests: the request line, the headers, chunk framing, Basic auth.
 *
 * Design notes:
 * - Everything that goes on the wire is checked here, once, before any byte is produced: the
 *   method must be a token, and no control byte (CR, LF, NUL, 0x01-0x1F, DEL; HTAB aside) may hide
 *   in the target, the Host or any header name or value (header lists already refuse them; the check is repeated because a header list
 *   is not the only source of strings). A refused request appends nothing.
 * - The caller's headers override the defaults of the same name (User-Agent, Accept-Encoding,
 *   Content-Type, Authorization); framing headers (Host, Content-Length, Transfer-Encoding) are
 *   always ours, because a caller's Content-Length that disagrees with the body would desynchronise
 *   the connection for the next request.
 * - HTTP/1.1 keeps connections alive by default, so no Connection header is sent.
 */
#include <string.h>
#include <openssl/evp.h>
#include "http_internal.h"

/* No control byte but HTAB (RFC 9110 5.5): CR/LF would split the message, the others are refused
 * by servers or end up raw in their logs. */
static bool clean(const char *s) {
    return s && ll__http_str_ok(s);
}

static bool user_has(const ll_http_headers *h, const char *name) {
    return h && ll_http_headers_get(h, name) != NULL;
}

static bool framing_header(const char *name, size_t n) {
    return ll__http_name_eq(name, n, "host") || ll__http_name_eq(name, n, "content-length") ||
           ll__http_name_eq(name, n, "transfer-encoding");
}

static int header(ll__hbuf *out, const char *name, const char *value) {
    int rc = ll__hbuf_appends(out, name);
    if (!rc) rc = ll__hbuf_append(out, ": ", 2);
    if (!rc) rc = ll__hbuf_appends(out, value);
    if (!rc) rc = ll__hbuf_append(out, "\r\n", 2);
    return rc;
}

int ll__http_request_write(ll__hbuf *out, const ll__http_req_head *h, char *err) {
    const char *method = h->method ? h->method : "GET";
    if (!ll__http_is_token(method, strlen(method)))
        return ll__http_errf(err, LL_EINVAL, "invalid method (not an HTTP token)");
    if (!clean(h->url->target) || !clean(h->url->host) || !clean(h->url->href))
        return ll__http_errf(err, LL_EINVAL, "a control character in the URL (refused)");
    const char *opt[] = {h->user_agent, h->accept_encoding, h->authorization,
                         h->proxy_authorization, h->content_type, h->cookie};
    for (size_t i = 0; i < sizeof opt / sizeof *opt; i++)
        if (opt[i] && !clean(opt[i]))
            return ll__http_errf(err, LL_EINVAL, "a control character in a header value (refused)");
    if (h->headers) {
        for (size_t i = 0; i < h->headers->n; i++) {
            const ll__hdr *x = &h->headers->v[i];
            char e[80];
            if (!ll__http_is_token(x->name, x->nlen) || !ll__http_value_ok(x->value, x->vlen) ||
                strlen(x->value) != x->vlen)
                return ll__http_errf(err, LL_EINVAL, "invalid header '%s' (refused)",
                                     ll__http_esc(e, sizeof e, x->name, x->nlen));
        }
    }
    size_t start = out->len;
    int rc = ll__hbuf_reserve(out, 256); /* one allocation for a typical head */
    if (!rc) rc = ll__hbuf_appends(out, method);
    if (!rc) rc = ll__hbuf_append(out, " ", 1);
    if (!rc) rc = ll__hbuf_appends(out, h->absolute_form ? h->url->href : h->url->target);
    if (!rc) rc = ll__hbuf_appends(out, " HTTP/1.1\r\nHost: ");
    if (!rc) rc = ll__http_url_hostport(h->url, out, false);
    if (!rc) rc = ll__hbuf_appends(out, "\r\n");
#define DEFAULT(name, value)                                                      \
    if (!rc && (value) && *(value) && !user_has(h->headers, name))                \
        rc = header(out, name, value);
    DEFAULT("User-Agent", h->user_agent)
    DEFAULT("Accept-Encoding", h->accept_encoding)
    DEFAULT("Authorization", h->authorization)
    DEFAULT("Proxy-Authorization", h->proxy_authorization)
    if (h->body_mode != LL__BODY_NONE) DEFAULT("Content-Type", h->content_type)
    DEFAULT("Cookie", h->cookie)
#undef DEFAULT
    if (!rc && h->expect_continue) rc = ll__hbuf_appends(out, "Expect: 100-continue\r\n");
    if (!rc && h->body_mode == LL__BODY_LENGTH)
        rc = ll__hbuf_printf(out, "Content-Length: %llu\r\n",
                             (unsigned long long)h->content_length);
    if (!rc && h->body_mode == LL__BODY_CHUNKED)
        rc = ll__hbuf_appends(out, "Transfer-Encoding: chunked\r\n");
    if (h->headers) {
        for (size_t i = 0; i < h->headers->n && !rc; i++) {
            const ll__hdr *x = &h->headers->v[i];
            if (framing_header(x->name, x->nlen)) continue;
            rc = ll__hbuf_append(out, x->name, x->nlen);
            if (!rc) rc = ll__hbuf_append(out, ": ", 2);
            if (!rc) rc = ll__hbuf_append(out, x->value, x->vlen);
            if (!rc) rc = ll__hbuf_append(out, "\r\n", 2);
        }
    }
    if (!rc) rc = ll__hbuf_appends(out, "\r\n");
    if (rc) {
        out->len = start;
        if (out->data) out->data[start] = 0;
        return ll__http_errf(err, LL_ENOMEM, "out of memory writing the request");
    }
    return 0;
}

int ll__http_connect_write(ll__hbuf *out, const ll__http_url *target,
                           const char *proxy_authorization, char *err) {
    if (!clean(target->host) || (proxy_authorization && !clean(proxy_authorization)))
        return ll__http_errf(err, LL_EINVAL, "a control character in the CONNECT request (refused)");
    size_t start = out->len;
    int rc = ll__hbuf_appends(out, "CONNECT ");
    if (!rc) rc = ll__http_url_hostport(target, out, true);
    if (!rc) rc = ll__hbuf_appends(out, " HTTP/1.1\r\nHost: ");
    if (!rc) rc = ll__http_url_hostport(target, out, true);
    if (!rc) rc = ll__hbuf_appends(out, "\r\n");
    if (!rc && proxy_authorization)
        rc = ll__hbuf_printf(out, "Proxy-Authorization: %s\r\n", proxy_authorization);
    if (!rc) rc = ll__hbuf_appends(out, "\r\n");
    if (rc) {
        out->len = start;
        if (out->data) out->data[start] = 0;
        return ll__http_errf(err, LL_ENOMEM, "out of memory writing the CONNECT request");
    }
    return 0;
}

int ll__http_chunk_write(ll__hbuf *out, const void *data, size_t n) {
    if (n == 0) return ll__hbuf_appends(out, "0\r\n\r\n");
    size_t start = out->len;
    int rc = ll__hbuf_printf(out, "%zx\r\n", n);
    if (!rc) rc = ll__hbuf_append(out, data, n);
    if (!rc) rc = ll__hbuf_append(out, "\r\n", 2);
    if (rc) {
        out->len = start;
        if (out->data) out->data[start] = 0;
    }
    return rc;
}

bool ll__http_method_is(const char *method, const char *want) {
    return method && strcmp(method, want) == 0;
}

bool ll__http_method_idempotent(const char *method) {
    static const char *const idem[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    if (!method) return true;
    for (size_t i = 0; i < sizeof idem / sizeof *idem; i++)
        if (strcmp(method, idem[i]) == 0) return true;
    return false;
}

char *ll__http_basic_auth(const char *user, const char *password) {
    if (!user) user = "";
    if (!password) password = "";
    size_t ul = strlen(user), pl = strlen(password), n = ul + 1 + pl;
    char *plain = ll_malloc(n + 1);
    if (!plain) return NULL;
    memcpy(plain, user, ul);
    plain[ul] = ':';
    memcpy(plain + ul + 1, password, pl + 1);
    size_t enc = 4 * ((n + 2) / 3);
    char *out = ll_malloc(6 + enc + 1);
    if (out) {
        memcpy(out, "Basic ", 6);
        EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)plain, (int)n);
    }
    memset(plain, 0, n); /* do not leave the password lying in freed memory */
    ll_free(plain);
    return out;
}
