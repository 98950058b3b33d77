/*
 * url.c — URLs with liburiparser: parsing absolute http(s) URLs into what a request needs
 * (scheme, host, port, request target, credentials), resolving a Location against the current URL,
 * and percent-encoding query parameters and form bodies.
 *
 * Design notes:
 * - uriparser does the RFC 3986 work (syntax, reference resolution, dot segments, escaping); this
 *   file only maps its result onto HTTP. Every allocation it makes goes through libloop's allocator
 *   hook (its Mm variants), so allocation failures are injected here as everywhere else.
 * - Strict by default: a URL with a space, CR, LF or any control character is refused, not
 *   repaired, because a repaired URL is not the one the caller checked. A Location header from a
 *   server is the exception browsers make: stray spaces and non-ASCII bytes are percent-encoded
 *   before resolution (control characters are still refused).
 * - The host is lower-cased, the fragment dropped (it is never sent), the port defaulted by scheme.
 *   `href` is the canonical form without credentials: it is what messages and loop detection use.
 */
#include <string.h>
#include <uriparser/Uri.h>
#include "http_internal.h"

/* ---- uriparser through the allocator hook ---- */

static void *mm_malloc(UriMemoryManager *m, size_t n) {
    (void)m;
    return ll_malloc(n);
}
static void *mm_calloc(UriMemoryManager *m, size_t n, size_t s) {
    (void)m;
    return ll_calloc(n, s);
}
static void *mm_realloc(UriMemoryManager *m, void *p, size_t n) {
    (void)m;
    return ll_realloc(p, n);
}
static void *mm_reallocarray(UriMemoryManager *m, void *p, size_t n, size_t s) {
    (void)m;
    if (s && n > SIZE_MAX / s) return NULL;
    return ll_realloc(p, n * s);
}
static void mm_free(UriMemoryManager *m, void *p) { (void)m; ll_free(p); }
static UriMemoryManager mm = {mm_malloc, mm_calloc, mm_realloc, mm_reallocarray, mm_free, NULL};

static int uri_code(int urc) { return urc == URI_ERROR_MALLOC ? LL_ENOMEM : LL_EINVAL; }

static char *range_dup(const UriTextRangeA *r) {
    size_t n = r->first ? (size_t)(r->afterLast - r->first) : 0;
    char *s = ll_malloc(n + 1);
    if (!s) return NULL;
    if (n) memcpy(s, r->first, n);
    s[n] = 0;
    return s;
}

static bool range_eq_ci(const UriTextRangeA *r, const char *want) {
    if (!r->first) return false;
    return ll__http_name_eq(r->first, (size_t)(r->afterLast - r->first), want);
}

void ll__http_url_free(ll__http_url *u) {
    if (!u) return;
    ll_free(u->buf);
    memset(u, 0, sizeof *u);
}

/* "host", "host:port", "[v6]:port" (the port when not the scheme's default, or always) */
static int hostport(ll__hbuf *out, const char *host, uint16_t port, bool ipv6, bool tls,
                    bool always_port) {
    int rc = ipv6 ? ll__hbuf_append(out, "[", 1) : 0;
    if (!rc) rc = ll__hbuf_appends(out, host);
    if (!rc && ipv6) rc = ll__hbuf_append(out, "]", 1);
    if (!rc && (always_port || port != (tls ? 443 : 80))) {
        char d[8];
        int n = 0;
        d[n++] = ':';
        char rev[6];
        int k = 0;
        unsigned v = port;
        do rev[k++] = (char)('0' + v % 10), v /= 10;
        while (v);
        while (k) d[n++] = rev[--k];
        rc = ll__hbuf_append(out, d, (size_t)n);
    }
    return rc;
}

int ll__http_url_hostport(const ll__http_url *u, ll__hbuf *out, bool always_port) {
    return hostport(out, u->host, u->port, u->ipv6, u->tls, always_port);
}

/* Lay out every string of u in one allocation (scheme, host, target, user, password, href, key):
 * a copy is then one malloc and a memcpy, and a free one free. The arguments may point into u's
 * current buffer, which is released only once the new one is built. port/tls/ipv6 must be set. */
static int assemble(ll__http_url *u, const char *scheme, const char *host, const char *target,
                    const char *user, const char *password) {
    ll__hbuf b = {0};
    size_t o_scheme = 0, o_host = 0, o_target = 0, o_user = 0, o_pass = 0, o_href, o_key;
    int rc = ll__hbuf_reserve(&b, 2 * (strlen(host) + strlen(target)) + 64);
#define PUT(off, str) \
    if (!rc) {        \
        off = b.len;  \
        rc = ll__hbuf_append(&b, str, strlen(str) + 1); \
    }
    PUT(o_scheme, scheme)
    PUT(o_host, host)
    PUT(o_target, target)
    if (user) PUT(o_user, user)
    if (password) PUT(o_pass, password)
#undef PUT
    o_href = b.len;
    if (!rc) rc = ll__hbuf_appends(&b, scheme);
    if (!rc) rc = ll__hbuf_append(&b, "://", 3);
    if (!rc) rc = hostport(&b, host, u->port, u->ipv6, u->tls, false);
    if (!rc) rc = ll__hbuf_append(&b, target, strlen(target) + 1);
    o_key = b.len;
    if (!rc) rc = ll__hbuf_appends(&b, scheme);
    if (!rc) rc = ll__hbuf_append(&b, "://", 3);
    if (!rc) rc = hostport(&b, host, u->port, u->ipv6, u->tls, true);
    if (!rc) rc = ll__hbuf_append(&b, "", 1);
    if (rc) {
        ll__hbuf_free(&b);
        return LL_ENOMEM;
    }
    ll_free(u->buf);
    u->buflen = b.len;
    u->buf = ll__hbuf_steal(&b, NULL);
    u->scheme = u->buf + o_scheme;
    u->host = u->buf + o_host;
    u->target = u->buf + o_target;
    u->user = user ? u->buf + o_user : NULL;
    u->password = password ? u->buf + o_pass : NULL;
    u->href = u->buf + o_href;
    u->key = u->buf + o_key;
    return 0;
}

/* Fill u from a parsed absolute URI. */
static int from_uri(ll__http_url *u, UriUriA *uri, const char *shown, char *err) {
    memset(u, 0, sizeof *u);
    if (!uri->scheme.first)
        return ll__http_errf(err, LL_EINVAL, "URL %s: not absolute (no scheme)", shown);
    bool tls;
    if (range_eq_ci(&uri->scheme, "http")) tls = false;
    else if (range_eq_ci(&uri->scheme, "https")) tls = true;
    else {
        int n = (int)(uri->scheme.afterLast - uri->scheme.first);
        return ll__http_errf(err, LL_EINVAL, "URL %s: unsupported scheme '%.*s' (http, https)",
                             shown, n, uri->scheme.first);
    }
    if (!uri->hostText.first || uri->hostText.first == uri->hostText.afterLast)
        return ll__http_errf(err, LL_EINVAL, "URL %s: no host", shown);
    if (uri->hostData.ipFuture.first)
        return ll__http_errf(err, LL_EINVAL, "URL %s: unsupported IP literal", shown);
    for (const char *c = uri->hostText.first; c < uri->hostText.afterLast; c++)
        if (*c == '%') return ll__http_errf(err, LL_EINVAL, "URL %s: percent sign in host", shown);
    unsigned port = tls ? 443 : 80;
    if (uri->portText.first && uri->portText.first != uri->portText.afterLast) {
        port = 0;
        for (const char *c = uri->portText.first; c < uri->portText.afterLast; c++) {
            port = port * 10 + (unsigned)(*c - '0');
            if (port > 65535) break;
        }
        if (port == 0 || port > 65535)
            return ll__http_errf(err, LL_EINVAL, "URL %s: bad port", shown);
    }
    u->tls = tls;
    u->port = (uint16_t)port;
    u->ipv6 = uri->hostData.ip6 != NULL;
    ll__hbuf t = {0};
    int rc = 0;
    if (!uri->pathHead) rc = ll__hbuf_appends(&t, "/");
    for (UriPathSegmentA *s = uri->pathHead; s && !rc; s = s->next) {
        rc = ll__hbuf_appends(&t, "/");
        if (!rc && s->text.first)
            rc = ll__hbuf_append(&t, s->text.first, (size_t)(s->text.afterLast - s->text.first));
    }
    if (!rc && uri->query.first) {
        rc = ll__hbuf_appends(&t, "?");
        if (!rc)
            rc = ll__hbuf_append(&t, uri->query.first,
                                 (size_t)(uri->query.afterLast - uri->query.first));
    }
    char *host = range_dup(&uri->hostText), *user = NULL, *pass = NULL;
    if (rc || !t.data || !host) goto nomem;
    for (char *c = host; *c; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c + 32);
    if (uri->userInfo.first) {
        const char *f = uri->userInfo.first, *l = uri->userInfo.afterLast;
        const char *colon = memchr(f, ':', (size_t)(l - f));
        UriTextRangeA ur = {f, colon ? colon : l};
        if (!(user = range_dup(&ur))) goto nomem;
        uriUnescapeInPlaceA(user);
        if (colon) {
            UriTextRangeA pr = {colon + 1, l};
            if (!(pass = range_dup(&pr))) goto nomem;
            uriUnescapeInPlaceA(pass);
        }
    }
    if (assemble(u, tls ? "https" : "http", host, t.data, user, pass)) goto nomem;
    ll__hbuf_free(&t);
    ll_free(host);
    ll_free(user);
    ll_free(pass);
    return 0;
nomem:
    ll__hbuf_free(&t);
    ll_free(host);
    ll_free(user);
    ll_free(pass);
    ll__http_url_free(u);
    return ll__http_errf(err, LL_ENOMEM, "URL %s: out of memory", shown);
}

/* Show at most 200 bytes of a URL in messages. */
#define SHOWN(s) (strlen(s) > 200 ? "(long URL)" : (s))

int ll__http_url_parse(ll__http_url *u, const char *s, char *err) {
    memset(u, 0, sizeof *u);
    if (!s || !*s) return ll__http_errf(err, LL_EINVAL, "empty URL");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '\r' || *c == '\n')
            return ll__http_errf(err, LL_EINVAL, "URL contains CR or LF (refused)");
        if (*c < 0x20 || *c == 0x7f || *c == ' ')
            return ll__http_errf(err, LL_EINVAL, "URL contains a space or control character");
    }
    /* "127.0.0.1:80/x" or "example.com/x": say what is missing, not where uriparser stopped */
    if (!strstr(s, "://"))
        return ll__http_errf(err, LL_EINVAL, "URL %s: no scheme (expected http:// or https://)",
                             SHOWN(s));
    UriUriA uri;
    const char *epos = NULL;
    int urc = uriParseSingleUriExMmA(&uri, s, s + strlen(s), &epos, &mm);
    if (urc != URI_SUCCESS) {
        if (urc == URI_ERROR_MALLOC) return ll__http_errf(err, LL_ENOMEM, "URL: out of memory");
        return ll__http_errf(err, LL_EINVAL, "URL %s: syntax error at offset %d", SHOWN(s),
                             epos ? (int)(epos - s) : 0);
    }
    /* Resolving the URL against itself removes dot segments (RFC 3986 5.2.2). That, rather than
     * uriNormalizeSyntax, because the latter leaks when an allocation fails (uriparser 0.9.7);
     * scheme and host are lower-cased by from_uri. */
    int rc;
    UriUriA abs;
    if (!uri.scheme.first) {
        rc = ll__http_errf(err, LL_EINVAL, "URL %s: not absolute (no scheme)", SHOWN(s));
    } else if ((urc = uriAddBaseUriExMmA(&abs, &uri, &uri, URI_RESOLVE_STRICTLY, &mm)) != 0) {
        rc = ll__http_errf(err, uri_code(urc), "URL %s: cannot normalise", SHOWN(s));
    } else {
        rc = from_uri(u, &abs, SHOWN(s), err);
        uriFreeUriMembersMmA(&abs, &mm);
    }
    uriFreeUriMembersMmA(&uri, &mm);
    return rc;
}

/* Percent-encode what browsers tolerate in a Location but RFC 3986 does not: spaces, non-ASCII
 * bytes and a few delimiters. Control characters stay refused. */
static int escape_lenient(const char *ref, size_t len, ll__hbuf *out, char *err) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)ref[i];
        if (c == '\r' || c == '\n' || c == 0)
            return ll__http_errf(err, LL_EINVAL, "Location contains CR, LF or NUL (refused)");
        if (c < 0x20 || c == 0x7f)
            return ll__http_errf(err, LL_EINVAL, "Location contains a control character");
        int rc;
        if (c == ' ' || c >= 0x80 || strchr("\"<>\\^`{|}", c)) {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = ll__hbuf_append(out, e, 3);
        } else {
            rc = ll__hbuf_append(out, &ref[i], 1);
        }
        if (rc) return ll__http_errf(err, LL_ENOMEM, "out of memory");
    }
    if (!out->data && ll__hbuf_append(out, "", 0))
        return ll__http_errf(err, LL_ENOMEM, "out of memory");
    return 0;
}

int ll__http_url_resolve(ll__http_url *out, const ll__http_url *base, const char *ref, size_t len,
                         char *err) {
    memset(out, 0, sizeof *out);
    ll__hbuf esc = {0};
    int rc = escape_lenient(ref, len, &esc, err);
    if (rc) {
        ll__hbuf_free(&esc);
        return rc;
    }
    UriUriA rel, b, abs;
    const char *epos = NULL;
    int urc = uriParseSingleUriExMmA(&rel, esc.data, esc.data + esc.len, &epos, &mm);
    if (urc != URI_SUCCESS) {
        rc = urc == URI_ERROR_MALLOC
                 ? ll__http_errf(err, LL_ENOMEM, "out of memory")
                 : ll__http_errf(err, LL_EINVAL, "malformed Location '%.200s'", esc.data);
        ll__hbuf_free(&esc);
        return rc;
    }
    urc = uriParseSingleUriExMmA(&b, base->href, base->href + strlen(base->href), NULL, &mm);
    if (urc != URI_SUCCESS) {
        uriFreeUriMembersMmA(&rel, &mm);
        ll__hbuf_free(&esc);
        return ll__http_errf(err, uri_code(urc), "cannot parse base URL %s", base->href);
    }
    urc = uriAddBaseUriExMmA(&abs, &rel, &b, URI_RESOLVE_STRICTLY, &mm);
    if (urc == URI_SUCCESS) {
        /* resolution keeps the reference's userinfo only when it names an authority itself */
        rc = from_uri(out, &abs, SHOWN(esc.data), err);
        uriFreeUriMembersMmA(&abs, &mm);
    } else {
        rc = ll__http_errf(err, uri_code(urc), "cannot resolve Location '%.200s'", esc.data);
    }
    uriFreeUriMembersMmA(&rel, &mm);
    uriFreeUriMembersMmA(&b, &mm);
    ll__hbuf_free(&esc);
    return rc;
}

/* Compose name=value&... with uriparser (unreserved characters kept, the rest %XX, spaces '+'). */
static char *compose(const char *const *pairs) {
    size_t n = 0;
    while (pairs && pairs[n]) n += pairs[n + 1] ? 2 : 1;
    if (n == 0) return ll_strdup("");
    size_t items = (n + 1) / 2;
    UriQueryListA *list = ll_calloc(items, sizeof *list);
    if (!list) return NULL;
    for (size_t i = 0; i < items; i++) {
        list[i].key = pairs[2 * i];
        list[i].value = 2 * i + 1 < n ? pairs[2 * i + 1] : NULL;
        list[i].next = i + 1 < items ? &list[i + 1] : NULL;
    }
    char *out = NULL;
    int urc = uriComposeQueryMallocExMmA(&out, list, URI_TRUE, URI_FALSE, &mm);
    ll_free(list);
    return urc == URI_SUCCESS ? out : NULL;
}

char *ll__http_form_encode(const char *const *pairs) { return compose(pairs); }

int ll__http_url_add_query(ll__http_url *u, const char *const *pairs, char *err) {
    if (!pairs || !pairs[0]) return 0;
    char *q = compose(pairs);
    if (!q) return ll__http_errf(err, LL_ENOMEM, "out of memory encoding query parameters");
    ll__hbuf t = {0};
    bool has_q = strchr(u->target, '?') != NULL;
    size_t tl = strlen(u->target);
    int rc = ll__hbuf_appends(&t, u->target);
    if (!rc && (!has_q || (tl && u->target[tl - 1] != '?' && u->target[tl - 1] != '&')))
        rc = ll__hbuf_appends(&t, has_q ? "&" : "?");
    if (!rc) rc = ll__hbuf_appends(&t, q);
    ll_free(q);
    if (rc) {
        ll__hbuf_free(&t);
        return ll__http_errf(err, LL_ENOMEM, "out of memory encoding query parameters");
    }
    rc = assemble(u, u->scheme, u->host, t.data, u->user, u->password);
    ll__hbuf_free(&t);
    if (rc) return ll__http_errf(err, LL_ENOMEM, "out of memory encoding query parameters");
    return 0;
}

int ll__http_url_copy(ll__http_url *dst, const ll__http_url *src) {
    *dst = *src;
    if (!src->buf) return 0;
    if (!(dst->buf = ll_malloc(src->buflen))) {
        memset(dst, 0, sizeof *dst);
        return LL_ENOMEM;
    }
    memcpy(dst->buf, src->buf, src->buflen);
#define REBASE(f) dst->f = src->f ? dst->buf + (src->f - src->buf) : NULL
    REBASE(scheme);
    REBASE(host);
    REBASE(target);
    REBASE(user);
    REBASE(password);
    REBASE(href);
    REBASE(key);
#undef REBASE
    return 0;
}

bool ll__http_same_origin(const ll__http_url *a, const ll__http_url *b) {
    return a->tls == b->tls && a->port == b->port && strcmp(a->host, b->host) == 0;
}

char *ll_http_form_encode(const char *const *pairs) { return compose(pairs); }
