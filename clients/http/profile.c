/*
 * profile.c — connection profiles (what makes two connections to one origin different: the CA
 * bundle, certificate verification, the proxy) and proxy settings from the environment.
 *
 * Design notes:
 * - A request may override the session's trust and proxy settings. Connections made under other
 *   settings must never be shared with it (an unverified connection reused by a request that asked
 *   for verification would defeat it), so each distinct combination is a profile with its own
 *   pool keys ("https://host:443#2"). Profile 0 is the session's own. Sessions see a handful of
 *   combinations, so a linear list is enough.
 * - Environment proxies follow curl: `http_proxy` in lower case only for http URLs (a CGI program
 *   gets the request's "Proxy:" header as HTTP_PROXY — the "httpoxy" attack), HTTPS_PROXY or
 *   https_proxy for https, NO_PROXY or no_proxy for exceptions ("*"; or comma-separated host names,
 *   domain suffixes with or without a leading dot, IP addresses, each optionally with ":port").
 */
#include <stdlib.h>
#include <string.h>
#include "http_internal.h"

static void profile_clear(ll__http_profile *p) {
    ll_free(p->ca_file);
    if (p->proxy_auth) memset(p->proxy_auth, 0, strlen(p->proxy_auth));
    ll_free(p->proxy_auth);
    ll_free(p->proxy_src);
    ll__http_url_free(&p->proxy);
    memset(p, 0, sizeof *p);
}

void ll__http_profiles_free(ll_http_session *s) {
    for (unsigned i = 0; i < s->nprofiles; i++) profile_clear(&s->profiles[i]);
    ll_free(s->profiles);
    s->profiles = NULL;
    s->nprofiles = 0;
}

static bool str_eq(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool matches(const ll__http_profile *p, const char *ca_file, bool insecure,
                    const ll__http_profile *want) {
    if (!str_eq(p->ca_file, ca_file) || p->insecure != insecure) return false;
    if (p->has_proxy != want->has_proxy) return false;
    return !want->has_proxy || (strcmp(p->proxy.href, want->proxy.href) == 0 &&
                                str_eq(p->proxy.user, want->proxy.user) &&
                                str_eq(p->proxy.password, want->proxy.password));
}

int ll__http_profile_get(ll_http_session *s, const char *ca_file, bool insecure, const char *proxy,
                         unsigned *index, char *err) {
    ll__http_profile np = {0};
    if (proxy && *proxy) {
        char e[LL__HTTP_ERRLEN];
        int rc = ll__http_url_parse(&np.proxy, proxy, e);
        if (rc) return ll__http_errf(err, rc, "bad proxy: %s", e);
        if (np.proxy.tls) {
            ll__http_url_free(&np.proxy);
            return ll__http_errf(err, LL_EINVAL, "bad proxy %s: only http:// proxies are "
                                 "supported", np.proxy.href ? np.proxy.href : "");
        }
        np.has_proxy = true;
    }
    for (unsigned i = 0; i < s->nprofiles; i++) {
        if (matches(&s->profiles[i], ca_file, insecure, &np)) {
            ll__http_url_free(&np.proxy);
            *index = i;
            return 0;
        }
    }
    if (np.has_proxy && np.proxy.user &&
        !(np.proxy_auth = ll__http_basic_auth(np.proxy.user, np.proxy.password)))
        goto oom;
    if (ca_file && !(np.ca_file = ll_strdup(ca_file))) goto oom;
    if (np.has_proxy && !(np.proxy_src = ll_strdup(proxy))) goto oom;
    np.insecure = insecure;
    ll__http_profile *v = ll_realloc(s->profiles, (s->nprofiles + 1) * sizeof *v);
    if (!v) goto oom;
    s->profiles = v;
    v[s->nprofiles] = np;
    *index = s->nprofiles++;
    return 0;
oom:
    profile_clear(&np);
    return ll__http_errf(err, LL_ENOMEM, "out of memory");
}

/* ---- the environment ---- */

static bool host_eq_n(const char *a, size_t n, const char *b) {
    return strlen(b) == n && ll__http_name_eq(a, n, b);
}

bool ll__http_no_proxy_match(const char *list, const char *host, uint16_t port) {
    if (!list || !host) return false;
    size_t hl = strlen(host);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if (s == e) continue;
        if (e - s == 1 && *s == '*') return true;
        /* an optional ":port" (not inside an IPv6 literal) */
        const char *colon = NULL;
        if (*s != '[') colon = memchr(s, ':', (size_t)(e - s));
        else {
            const char *rb = memchr(s, ']', (size_t)(e - s));
            if (rb && rb + 1 < e && rb[1] == ':') colon = rb + 1;
        }
        const char *he = colon ? colon : e;
        if (colon && strtoul(colon + 1, NULL, 10) != port) continue;
        if (*s == '[' && he > s + 1 && he[-1] == ']') s++, he--;
        if (*s == '.') s++;
        size_t n = (size_t)(he - s);
        if (n == 0) continue;
        if (host_eq_n(s, n, host)) return true;
        /* a domain suffix: "example.com" matches "a.example.com", never "badexample.com" */
        if (hl > n && host[hl - n - 1] == '.' && host_eq_n(s, n, host + hl - n))
            return true;
    }
    return false;
}

char *ll__http_env_proxy(const ll__http_url *url) {
    const char *np = getenv("no_proxy");
    if (!np || !*np) np = getenv("NO_PROXY");
    const char *v;
    if (url->tls) {
        v = getenv("https_proxy");
        if (!v || !*v) v = getenv("HTTPS_PROXY");
    } else {
        v = getenv("http_proxy"); /* lower case only: see the top */
    }
    if (!v || !*v || ll__http_no_proxy_match(np, url->host, url->port)) return ll_strdup("");
    /* "host:port" without a scheme means http://, as curl reads it */
    if (!strstr(v, "://")) return ll_format("http://%s", v);
    return ll_strdup(v);
}
