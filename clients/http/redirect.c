/*
 * redirect.c — what to do with a 301/302/303/307/308: the next URL, method and body, whether
 * credentials may follow, and loop detection.
 *
 * The rules (RFC 9110 15.4, as browsers and curl apply them):
 * - 303: the next request is a GET without a body (a HEAD stays a HEAD).
 * - 301, 302: a POST becomes a GET without a body (what every user agent does, and what the RFC
 *   allows "for historical reasons"); other methods are kept with their body.
 * - 307, 308: method and body are kept. A streamed upload cannot be sent twice: the redirect is
 *   refused with a message saying so.
 * - From https to http: refused unless the session allows it (a downgrade would send the request
 *   and whatever follows in clear text).
 * - Authorization, Cookie and Proxy-Authorization go only to the origin they were meant for: when
 *   scheme, host or port change, they are dropped (the adapter removes them; credentials from the
 *   URL's userinfo are not carried either).
 * - Loops: each (method, URL) visited by one request is remembered; coming back to one fails at
 *   once instead of running to the redirect limit.
 * ll__http_redirect_apply, at the end, carries a decision out on a request (no I/O either).
 */
#include <string.h>
#include "http_internal.h"

bool ll__http_is_redirect(int status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool ll__http_is_credential_header(const char *name, size_t nlen) {
    return ll__http_name_eq(name, nlen, "authorization") ||
           ll__http_name_eq(name, nlen, "cookie") ||
           ll__http_name_eq(name, nlen, "proxy-authorization");
}

void ll__http_redirect_free(ll__http_redirect *r) {
    if (r) ll__http_url_free(&r->url);
}

int ll__http_redirect_decide(const ll__http_url *from, const char *method, int status,
                             const char *location, bool has_body, bool body_replayable,
                             bool allow_downgrade, bool *follow, ll__http_redirect *out,
                             char *err) {
    *follow = false;
    memset(out, 0, sizeof *out);
    if (!ll__http_is_redirect(status) || !location) return 0;
    if (!method) method = "GET";
    char uerr[LL__HTTP_ERRLEN] = "";
    int rc = ll__http_url_resolve(&out->url, from, location, strlen(location), uerr);
    if (rc == LL_EINVAL && strstr(uerr, "unsupported scheme"))
        return ll__http_errf(err, LL_EHTTP_REDIRECT, "%d redirect to a non-http(s) URL: %s",
                             status, uerr);
    if (rc) return ll__http_errf(err, rc, "%d redirect: %s", status, uerr);
    if (from->tls && !out->url.tls && !allow_downgrade) {
        int r = ll__http_errf(err, LL_EHTTP_REDIRECT,
                              "refusing %d redirect from https to http (%s -> %s)", status,
                              from->href, out->url.href);
        ll__http_url_free(&out->url);
        return r;
    }
    out->method = method;
    out->drop_body = false;
    if (status == 303) {
        if (!ll__http_method_is(method, "HEAD")) out->method = "GET";
        out->drop_body = true;
    } else if ((status == 301 || status == 302) && ll__http_method_is(method, "POST")) {
        out->method = "GET";
        out->drop_body = true;
    }
    if (has_body && !out->drop_body && !body_replayable) {
        int r = ll__http_errf(err, LL_EHTTP_REDIRECT,
                              "cannot follow %d redirect to %s: the streamed request body cannot "
                              "be sent again", status, out->url.href);
        ll__http_url_free(&out->url);
        return r;
    }
    out->cross_origin = !ll__http_same_origin(from, &out->url);
    *follow = true;
    return 0;
}

int ll__http_visited_add(ll__http_visited *vis, const char *method, const char *href, char *err) {
    size_t ml = strlen(method), hl = strlen(href);
    for (size_t i = 0; i < vis->n; i++) {
        const char *v = vis->v[i];
        if (strncmp(v, method, ml) == 0 && v[ml] == ' ' && strcmp(v + ml + 1, href) == 0)
            return ll__http_errf(err, LL_EHTTP_REDIRECT, "redirect loop: back to %s %s after %zu "
                                 "redirects", method, href, vis->n);
    }
    if (vis->n == vis->cap) {
        size_t cap = vis->cap ? vis->cap * 2 : 8;
        char **v = ll_realloc(vis->v, cap * sizeof *v);
        if (!v) return ll__http_errf(err, LL_ENOMEM, "out of memory");
        vis->v = v;
        vis->cap = cap;
    }
    char *s = ll_malloc(ml + 1 + hl + 1);
    if (!s) return ll__http_errf(err, LL_ENOMEM, "out of memory");
    memcpy(s, method, ml);
    s[ml] = ' ';
    memcpy(s + ml + 1, href, hl + 1);
    vis->v[vis->n++] = s;
    return 0;
}

void ll__http_visited_free(ll__http_visited *vis) {
    for (size_t i = 0; i < vis->n; i++) ll_free(vis->v[i]);
    ll_free(vis->v);
    memset(vis, 0, sizeof *vis);
}

/* ---- applying a redirect to a request (the adapter's side) ---- */

int ll__http_redirect_apply(ll__http_req *q, ll__http_redirect *rd) {
    if (rd->drop_body) {
        ll__hbuf_free(&q->body);
        q->has_body = false;
        q->body_fn = NULL;
        ll__http_multipart_free(q->mp);
        q->mp = NULL;
        ll_free(q->content_type);
        q->content_type = NULL;
        if (q->headers) {
            ll_http_headers_remove(q->headers, "content-type");
            ll_http_headers_remove(q->headers, "content-encoding");
        }
    }
    if (rd->cross_origin) {
        if (q->headers)
            for (size_t i = q->headers->n; i-- > 0;) {
                ll__hdr *x = &q->headers->v[i];
                if (ll__http_is_credential_header(x->name, x->nlen))
                    ll_http_headers_remove(q->headers, x->name), i = q->headers->n;
            }
        ll_free(q->auth);
        q->auth = NULL;
    }
    if (strcmp(rd->method, q->method) != 0) { /* redirects only ever switch to GET */
        if (q->method != q->method_buf) ll_free(q->method);
        q->method = strcpy(q->method_buf, rd->method);
    }
    ll__http_url_free(&q->url);
    q->url = rd->url;
    memset(&rd->url, 0, sizeof rd->url);
    return 0;
}
