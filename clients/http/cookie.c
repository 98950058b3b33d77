/*
 * cookie.c — the opt-in cookie jar (RFC 6265): Set-Cookie parsing, storage, the Cookie header for
 * a request, and Netscape-format files (curl's -b / -c).
 *
 * Design notes:
 * - Stored per cookie: name, value, domain (host-only or domain cookie), path, expiry (0: a
 *   session cookie), Secure, HttpOnly, SameSite, creation time. (name, domain, path) identifies a
 *   cookie; a new one replaces the old, keeping its creation time (RFC 6265 5.3 step 11).
 * - Public suffixes come from libpsl (Debian's libpsl, with the system's list): a Domain attribute
 *   that is a public suffix ("com", "co.uk", "github.io") is refused unless it is the request's
 *   own host (then the cookie is host-only), so one site cannot set cookies for all of a registry.
 *   The implicit "*" rule is not applied: "localhost" and intranet names are not public suffixes.
 * - Sending: the host must domain-match (exactly, for a host-only cookie), the path must
 *   path-match, a Secure cookie goes only over https, expired ones are dropped. Order: longer paths
 *   first, then older cookies (RFC 6265 5.4). Secure cookies are only stored from https, and the
 *   __Secure- and __Host- prefixes are enforced (RFC 6265bis 4.1.3).
 * - SameSite is stored and saved, but this client has no notion of the "site" a request comes from:
 *   every request is its own top-level, same-site navigation (as curl behaves). Netscape files
 *   carry no SameSite field: it is lost on save.
 * - Bounds: a cookie's name and value together at most 4096 bytes, at most 3000 cookies (the oldest
 *   go first): a server cannot make the jar grow without limit.
 */
#include <errno.h>
#include <libpsl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include "http_internal.h"

#define MAX_COOKIE 4096
#define MAX_COOKIES 3000

enum { SAMESITE_UNSET, SAMESITE_NONE, SAMESITE_LAX, SAMESITE_STRICT };

typedef struct cookie {
    char *name, *value, *domain, *path;
    double expires;    /* 0: session */
    double created;
    uint64_t seq;      /* creation order among equal times */
    bool host_only, secure, http_only;
    int samesite;
} cookie;

struct ll_http_cookie_jar {
    cookie *v;
    size_t n, cap;
    uint64_t seq;
    psl_ctx_t *psl;    /* NULL if no list could be loaded: then every Domain is host-only */
};

ll_http_cookie_jar *ll__http_jar_new(void) {
    ll_http_cookie_jar *j = ll_calloc(1, sizeof *j);
    if (!j) return NULL;
    j->psl = psl_latest(NULL); /* the system's list if newer than the built-in one */
    if (!j->psl) j->psl = (psl_ctx_t *)psl_builtin();
    return j;
}

static void cookie_free(cookie *c) {
    ll_free(c->name);
    ll_free(c->value);
    ll_free(c->domain);
    ll_free(c->path);
}

static void jar_clear(ll_http_cookie_jar *j) {
    for (size_t i = 0; i < j->n; i++) cookie_free(&j->v[i]);
    j->n = 0;
}

void ll__http_jar_free(ll_http_cookie_jar *j) {
    if (!j) return;
    jar_clear(j);
    ll_free(j->v);
    if (j->psl && j->psl != psl_builtin()) psl_free(j->psl);
    ll_free(j);
}

/* ---- matching ---- */

static bool is_ip(const char *host) {
    unsigned char b[16];
    return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

/* RFC 6265 5.1.3 */
static bool domain_match(const char *host, const char *domain) {
    if (strcasecmp(host, domain) == 0) return true;
    size_t hl = strlen(host), dl = strlen(domain);
    return hl > dl && host[hl - dl - 1] == '.' && strcasecmp(host + hl - dl, domain) == 0 &&
           !is_ip(host);
}

/* RFC 6265 5.1.4; path is the request path without the query */
static bool path_match(const char *req, size_t rl, const char *cpath) {
    size_t cl = strlen(cpath);
    if (rl == cl && memcmp(req, cpath, cl) == 0) return true;
    if (rl > cl && memcmp(req, cpath, cl) == 0)
        return cpath[cl - 1] == '/' || req[cl] == '/';
    return false;
}

static size_t path_len(const char *target) {
    size_t n = strcspn(target, "?#");
    return n ? n : 1;
}

/* RFC 6265 5.1.4 default-path */
static char *default_path(const char *target) {
    size_t n = path_len(target);
    if (target[0] != '/') return ll_strdup("/");
    const char *last = NULL;
    for (size_t i = 0; i < n; i++)
        if (target[i] == '/') last = target + i;
    if (!last || last == target) return ll_strdup("/");
    size_t k = (size_t)(last - target);
    char *p = ll_malloc(k + 1);
    if (p) {
        memcpy(p, target, k);
        p[k] = 0;
    }
    return p;
}

/* ---- parsing Set-Cookie ---- */

static double parse_date(const char *s) {
    static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                       "%a, %d-%b-%Y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y",
                                       "%a, %d %b %y %H:%M:%S GMT", "%d %b %Y %H:%M:%S GMT"};
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *e = strptime(s, fmts[i], &tm);
        if (e) return (double)timegm(&tm);
    }
    return -1;
}

static char *trim_dup(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    char *d = ll_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

static bool attr_is(const char *s, size_t n, const char *want) { return ll__http_name_eq(s, n, want); }

static void remove_at(ll_http_cookie_jar *j, size_t i) {
    cookie_free(&j->v[i]);
    j->v[i] = j->v[--j->n];
}

static void evict_oldest(ll_http_cookie_jar *j) {
    size_t old = 0;
    for (size_t i = 1; i < j->n; i++)
        if (j->v[i].seq < j->v[old].seq) old = i;
    remove_at(j, old);
}

/* Take c (fully built) into the jar, replacing an equal one. */
static int jar_put(ll_http_cookie_jar *j, cookie *c, double now) {
    for (size_t i = 0; i < j->n; i++) {
        cookie *o = &j->v[i];
        if (strcmp(o->name, c->name) == 0 && strcasecmp(o->domain, c->domain) == 0 &&
            strcmp(o->path, c->path) == 0) {
            c->created = o->created;
            c->seq = o->seq;
            remove_at(j, i);
            break;
        }
    }
    if (c->expires && c->expires <= now) { /* an expiry in the past only deletes */
        cookie_free(c);
        return 0;
    }
    if (j->n >= MAX_COOKIES) evict_oldest(j);
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 16;
        cookie *v = ll_realloc(j->v, cap * sizeof *v);
        if (!v) {
            cookie_free(c);
            return LL_ENOMEM;
        }
        j->v = v;
        j->cap = cap;
    }
    if (!c->seq) c->seq = ++j->seq;
    j->v[j->n++] = *c;
    return 0;
}

static bool public_suffix(const ll_http_cookie_jar *j, const char *domain) {
    return j->psl && psl_is_public_suffix2(j->psl, domain, PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE);
}

/* One Set-Cookie value. Ignored (0) when malformed or not allowed. */
static int store_one(ll_http_cookie_jar *j, const ll__http_url *url, const char *v, double now) {
    cookie c = {0};
    c.created = now;
    const char *semi = strchr(v, ';');
    size_t pair = semi ? (size_t)(semi - v) : strlen(v);
    const char *eq = memchr(v, '=', pair);
    if (!eq || pair > MAX_COOKIE) return 0;
    c.name = trim_dup(v, (size_t)(eq - v));
    c.value = trim_dup(eq + 1, pair - (size_t)(eq + 1 - v));
    if (!c.name || !c.value) goto oom;
    if (!*c.name || !ll__http_str_ok(c.name) || !ll__http_str_ok(c.value)) goto ignore;
    double max_age = 0, expires = 0;
    bool has_max_age = false;
    char *domain_attr = NULL;
    for (const char *p = semi; p && *p;) {
        p++;
        const char *e = strchr(p, ';');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        const char *aeq = memchr(p, '=', n);
        const char *an = p;
        size_t anl = aeq ? (size_t)(aeq - p) : n;
        while (anl && (*an == ' ' || *an == '\t')) an++, anl--;
        while (anl && (an[anl - 1] == ' ' || an[anl - 1] == '\t')) anl--;
        char *av = aeq ? trim_dup(aeq + 1, n - (size_t)(aeq + 1 - p)) : NULL;
        if (aeq && !av) {
            ll_free(domain_attr);
            goto oom;
        }
        if (attr_is(an, anl, "expires") && av) {
            double t = parse_date(av);
            if (t >= 0) expires = t > 0 ? t : 1;
        } else if (attr_is(an, anl, "max-age") && av) {
            char *end;
            long long s = strtoll(av, &end, 10);
            if (*av && !*end) {
                has_max_age = true;
                max_age = (double)s;
            }
        } else if (attr_is(an, anl, "domain") && av && *av) {
            ll_free(domain_attr);
            domain_attr = av;
            av = NULL;
        } else if (attr_is(an, anl, "path") && av) {
            ll_free(c.path);
            c.path = av[0] == '/' ? av : NULL;
            if (c.path) av = NULL;
        } else if (attr_is(an, anl, "secure")) {
            c.secure = true;
        } else if (attr_is(an, anl, "httponly")) {
            c.http_only = true;
        } else if (attr_is(an, anl, "samesite") && av) {
            c.samesite = strcasecmp(av, "strict") == 0 ? SAMESITE_STRICT
                         : strcasecmp(av, "lax") == 0  ? SAMESITE_LAX
                         : strcasecmp(av, "none") == 0 ? SAMESITE_NONE
                                                       : SAMESITE_UNSET;
        }
        ll_free(av);
        p = e;
    }
    if (has_max_age) c.expires = max_age <= 0 ? 1 : now + max_age;
    else c.expires = expires;
    /* the domain */
    const char *host = url->host;
    if (domain_attr) {
        char *d = domain_attr[0] == '.' ? domain_attr + 1 : domain_attr;
        for (char *x = d; *x; x++)
            if (*x >= 'A' && *x <= 'Z') *x = (char)(*x + 32);
        bool own = strcasecmp(d, host) == 0;
        if (public_suffix(j, d) && !own) {
            ll_free(domain_attr);
            goto ignore; /* a cookie for a whole registry */
        }
        if (own && (public_suffix(j, d) || is_ip(host))) {
            c.host_only = true;
            c.domain = ll_strdup(host);
        } else if (!domain_match(host, d)) {
            ll_free(domain_attr);
            goto ignore;
        } else {
            c.domain = ll_strdup(d);
        }
        ll_free(domain_attr);
    } else {
        c.host_only = true;
        c.domain = ll_strdup(host);
    }
    if (!c.domain) goto oom;
    if (!c.path && !(c.path = default_path(url->target))) goto oom;
    if (c.secure && !url->tls) goto ignore; /* RFC 6265bis 5.6 step 8 */
    if (strncmp(c.name, "__Secure-", 9) == 0 && (!c.secure || !url->tls)) goto ignore;
    if (strncmp(c.name, "__Host-", 7) == 0 &&
        (!c.secure || !url->tls || !c.host_only || strcmp(c.path, "/") != 0))
        goto ignore;
    return jar_put(j, &c, now);
ignore:
    cookie_free(&c);
    return 0;
oom:
    cookie_free(&c);
    return LL_ENOMEM;
}

void ll__http_jar_store(ll_http_cookie_jar *j, const ll__http_url *url, const ll_http_headers *h,
                        double now) {
    size_t it = 0;
    const char *v;
    while ((v = ll_http_headers_next(h, "set-cookie", &it)))
        if (store_one(j, url, v, now)) return; /* out of memory: the rest are lost too */
}

/* ---- sending ---- */

static int cmp_send(const void *a, const void *b) {
    const cookie *x = *(const cookie *const *)a, *y = *(const cookie *const *)b;
    size_t xl = strlen(x->path), yl = strlen(y->path);
    if (xl != yl) return xl > yl ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int ll__http_jar_header(ll_http_cookie_jar *j, const ll__http_url *url, double now,
                        ll__hbuf *out) {
    out->len = 0;
    if (!j || !j->n) return 0;
    cookie **sel = ll_malloc(j->n * sizeof *sel);
    if (!sel) return LL_ENOMEM;
    size_t k = 0, pl = path_len(url->target);
    for (size_t i = 0; i < j->n;) {
        cookie *c = &j->v[i];
        if (c->expires && c->expires <= now) { /* expired: gone */
            remove_at(j, i);
            continue;
        }
        bool host_ok = c->host_only ? strcasecmp(c->domain, url->host) == 0
                                    : domain_match(url->host, c->domain);
        if (host_ok && path_match(url->target, pl, c->path) && (!c->secure || url->tls))
            sel[k++] = c;
        i++;
    }
    qsort(sel, k, sizeof *sel, cmp_send);
    int rc = 0;
    for (size_t i = 0; i < k && !rc; i++)
        rc = ll__hbuf_printf(out, "%s%s=%s", i ? "; " : "", sel[i]->name, sel[i]->value);
    ll_free(sel);
    return rc ? LL_ENOMEM : 0;
}

/* ---- the public API ---- */

size_t ll_http_cookies_count(const ll_http_session *s) {
    if (!s || !s->jar) return 0;
    double now = (double)time(NULL);
    size_t n = 0;
    for (size_t i = 0; i < s->jar->n; i++)
        if (!s->jar->v[i].expires || s->jar->v[i].expires > now) n++;
    return n;
}

void ll_http_cookies_clear(ll_http_session *s) {
    if (s && s->jar) jar_clear(s->jar);
}

char *ll_http_cookies_for(const ll_http_session *s, const char *url) {
    if (!s || !url) return NULL;
    ll__http_url u;
    char err[LL__HTTP_ERRLEN];
    if (ll__http_url_parse(&u, url, err)) return NULL;
    ll__hbuf b = {0};
    int rc = s->jar ? ll__http_jar_header(s->jar, &u, (double)time(NULL), &b) : 0;
    ll__http_url_free(&u);
    if (rc || (!b.data && ll__hbuf_appends(&b, ""))) {
        ll__hbuf_free(&b);
        return NULL;
    }
    return ll__hbuf_steal(&b, NULL);
}

int ll_http_cookies_save(const ll_http_session *s, const char *path) {
    if (!s || !s->jar || !path) return LL_EINVAL;
    char *tmp = ll_format("%s.tmp%ld", path, (long)getpid());
    if (!tmp) return LL_ENOMEM;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int rc = errno == ENOENT ? LL_ENOENT : LL_EIO;
        ll_free(tmp);
        return rc;
    }
    fputs("# Netscape HTTP Cookie File\n# Written by libloop-http.\n\n", f);
    double now = (double)time(NULL);
    for (size_t i = 0; i < s->jar->n; i++) {
        const cookie *c = &s->jar->v[i];
        if (c->expires && c->expires <= now) continue;
        fprintf(f, "%s%s%s\t%s\t%s\t%s\t%.0f\t%s\t%s\n", c->http_only ? "#HttpOnly_" : "",
                c->host_only ? "" : ".", c->domain, c->host_only ? "FALSE" : "TRUE", c->path,
                c->secure ? "TRUE" : "FALSE", c->expires, c->name, c->value);
    }
    int rc = ferror(f) ? LL_EIO : 0;
    if (fclose(f) != 0) rc = LL_EIO;
    if (!rc && rename(tmp, path) != 0) rc = LL_EIO;
    if (rc) remove(tmp);
    ll_free(tmp);
    return rc;
}

int ll_http_cookies_load(ll_http_session *s, const char *path) {
    if (!s || !s->jar || !path) return LL_EINVAL;
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? LL_ENOENT : LL_EIO;
    char line[MAX_COOKIE + 1024];
    double now = (double)time(NULL);
    int rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        char *p = line;
        bool http_only = false;
        if (strncmp(p, "#HttpOnly_", 10) == 0) {
            http_only = true;
            p += 10;
        } else if (*p == '#' || !*p) {
            continue;
        }
        char *field[7];
        int k = 0;
        for (char *t = p; k < 7; k++) {
            field[k] = t;
            char *tab = strchr(t, '\t');
            if (!tab) {
                k++;
                break;
            }
            *tab = 0;
            t = tab + 1;
        }
        if (k != 7) continue; /* not a cookie line */
        cookie c = {0};
        c.created = now;
        c.http_only = http_only;
        const char *dom = field[0][0] == '.' ? field[0] + 1 : field[0];
        c.host_only = strcmp(field[1], "TRUE") != 0;
        c.secure = strcmp(field[3], "TRUE") == 0;
        c.expires = strtod(field[4], NULL);
        if (!*dom || !*field[5] || field[2][0] != '/' || !ll__http_str_ok(field[6]) ||
            (!c.host_only && public_suffix(s->jar, dom)) || (c.expires && c.expires <= now))
            continue;
        c.domain = ll_strdup(dom);
        c.path = ll_strdup(field[2]);
        c.name = ll_strdup(field[5]);
        c.value = ll_strdup(field[6]);
        if (!c.domain || !c.path || !c.name || !c.value) {
            cookie_free(&c);
            rc = LL_ENOMEM;
            break;
        }
        rc = jar_put(s->jar, &c, now);
    }
    if (!rc && ferror(f)) rc = LL_EIO;
    fclose(f);
    return rc;
}
