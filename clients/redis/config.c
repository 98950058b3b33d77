/*
 * config.c — connection settings from a URL and ll_redis_opts, copied into one owned rc_cfg.
 *
 * The redis:// URL form is small and fixed (scheme, optional user:password, host, port, /db, and
 * ?db= for unix://), so it is parsed here rather than pulling in a URI library for the Redis
 * client alone. Percent-escapes are decoded in the user and password. The key that names a
 * configuration (pool key, messages) never contains the password.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis_internal.h"

static char *dupn(const char *s, size_t n) {
    char *d = ll_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode %XX escapes; NULL on out of memory or a bad escape (*bad set). */
static char *decode(const char *s, size_t n, bool *bad) {
    char *d = ll_malloc(n + 1), *o = d;
    if (!d) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0) {
                *bad = true;
                ll_free(d);
                return NULL;
            }
            *o++ = (char)(h * 16 + l);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = 0;
    return d;
}

static void cfg_free_strings(rc_cfg *c) {
    ll_free(c->host);
    ll_free(c->unix_path);
    ll_free(c->user);
    if (c->password) { /* do not leave the secret in freed memory */
        volatile char *p = c->password;
        while (*p) *p++ = 0;
    }
    ll_free(c->password);
    ll_free(c->client_name);
    ll_free((char *)c->tls_opts.server_name);
    ll_free((char *)c->tls_opts.ca_file);
    ll_free((char *)c->tls_opts.ca_path);
    ll_free((char *)c->tls_opts.cert_file);
    ll_free((char *)c->tls_opts.key_file);
    ll_free((char *)c->tls_opts.alpn);
    ll_free(c->key);
    ll_free(c->peer_name);
}

void ll__rc_cfg_free(rc_cfg *c) {
    if (!c) return;
    cfg_free_strings(c);
    ll_free(c);
}

/* Replace *dst with a copy of src (src NULL: leave *dst). false on out of memory. */
static bool set_str(char **dst, const char *src) {
    if (!src) return true;
    char *d = ll_strdup(src);
    if (!d) return false;
    ll_free(*dst);
    *dst = d;
    return true;
}

static int parse_url(rc_cfg *c, const char *url, char *err, size_t errlen) {
    const char *p;
    bool unix_url = false;
    if (strncmp(url, "redis://", 8) == 0) p = url + 8;
    else if (strncmp(url, "rediss://", 9) == 0) {
        p = url + 9;
        c->tls = true;
    } else if (strncmp(url, "unix://", 7) == 0) {
        p = url + 7;
        unix_url = true;
    } else {
        snprintf(err, errlen, "ll_redis_connect: URL must start with redis://, rediss:// or "
                              "unix://");
        return LL_EINVAL;
    }
    /* userinfo: up to the last '@' before the path */
    const char *path_start = unix_url ? p + strcspn(p, "?") : p + strcspn(p, "/?");
    const char *at = NULL;
    for (const char *q = p; q < path_start; q++)
        if (*q == '@') at = q;
    if (unix_url) { /* unix://[user:pass@]/path: the '@' sits before the path's '/' */
        at = NULL;
        for (const char *q = p; *q && *q != '/'; q++)
            if (*q == '@') at = q;
    }
    if (at) {
        bool bad = false;
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p && !(c->user = decode(p, (size_t)(colon - p), &bad)) && !bad)
                return LL_ENOMEM;
            if (!bad && !(c->password = decode(colon + 1, (size_t)(at - colon - 1), &bad)) && !bad)
                return LL_ENOMEM;
        } else if (at > p) {
            /* "redis://secret@host": the one field is a password, as redis-cli reads it */
            if (!(c->password = decode(p, (size_t)(at - p), &bad)) && !bad) return LL_ENOMEM;
        }
        if (bad) {
            snprintf(err, errlen, "ll_redis_connect: bad %%-escape in the URL's user or password");
            return LL_EINVAL;
        }
        p = at + 1;
    }
    const char *query = strchr(p, '?');
    if (unix_url) {
        size_t n = query ? (size_t)(query - p) : strlen(p);
        if (n == 0 || p[0] != '/') {
            snprintf(err, errlen, "ll_redis_connect: unix:// URL needs an absolute path");
            return LL_EINVAL;
        }
        if (!(c->unix_path = dupn(p, n))) return LL_ENOMEM;
    } else {
        size_t hn;
        const char *hend;
        if (*p == '[') { /* [v6]:port */
            const char *rb = strchr(p, ']');
            if (!rb) {
                snprintf(err, errlen, "ll_redis_connect: unterminated [IPv6] host in URL");
                return LL_EINVAL;
            }
            if (!(c->host = dupn(p + 1, (size_t)(rb - p - 1)))) return LL_ENOMEM;
            hend = rb + 1;
        } else {
            hn = strcspn(p, ":/?");
            if (hn && !(c->host = dupn(p, hn))) return LL_ENOMEM;
            hend = p + hn;
        }
        if (*hend == ':') {
            char *e;
            long port = strtol(hend + 1, &e, 10);
            if (e == hend + 1 || port <= 0 || port > 65535 || (*e && *e != '/' && *e != '?')) {
                snprintf(err, errlen, "ll_redis_connect: bad port in URL");
                return LL_EINVAL;
            }
            c->port = (uint16_t)port;
            hend = e;
        }
        if (*hend == '/' && hend[1] && hend[1] != '?') {
            char *e;
            long db = strtol(hend + 1, &e, 10);
            if (e == hend + 1 || db < 0 || (*e && *e != '?')) {
                snprintf(err, errlen, "ll_redis_connect: bad database number in URL");
                return LL_EINVAL;
            }
            c->db = (int)db;
        }
    }
    if (query) {
        const char *d = strstr(query, "db=");
        if (d) c->db = atoi(d + 3);
    }
    return 0;
}

int ll__rc_cfg_new(rc_cfg **out, const char *url, const ll_redis_opts *o, char *err,
                   size_t errlen) {
    *out = NULL;
    err[0] = 0;
    rc_cfg *c = ll_calloc(1, sizeof *c);
    if (!c) return LL_ENOMEM;
    int rc = 0;
    if (url && (rc = parse_url(c, url, err, errlen))) goto fail;
    ll_redis_opts d = {0};
    if (!o) o = &d;
    rc = LL_ENOMEM;
    if (!set_str(&c->host, o->host) || !set_str(&c->unix_path, o->unix_path) ||
        !set_str(&c->user, o->user) || !set_str(&c->password, o->password) ||
        !set_str(&c->client_name, o->client_name))
        goto fail;
    if (o->host && c->unix_path && !o->unix_path) { /* host given in opts wins over a unix URL */
        ll_free(c->unix_path);
        c->unix_path = NULL;
    }
    if (o->port) c->port = o->port;
    if (!c->port) c->port = 6379;
    if (!c->host && !c->unix_path && !(c->host = ll_strdup("127.0.0.1"))) goto fail;
    if (o->db > 0) c->db = o->db;
    if (o->tls) {
        c->tls = true;
        c->tls_opts = *o->tls;
        c->tls_opts.server_name = c->tls_opts.ca_file = c->tls_opts.ca_path = NULL;
        c->tls_opts.cert_file = c->tls_opts.key_file = c->tls_opts.alpn = NULL;
        if (!set_str((char **)&c->tls_opts.server_name, o->tls->server_name) ||
            !set_str((char **)&c->tls_opts.ca_file, o->tls->ca_file) ||
            !set_str((char **)&c->tls_opts.ca_path, o->tls->ca_path) ||
            !set_str((char **)&c->tls_opts.cert_file, o->tls->cert_file) ||
            !set_str((char **)&c->tls_opts.key_file, o->tls->key_file) ||
            !set_str((char **)&c->tls_opts.alpn, o->tls->alpn))
            goto fail;
    }
    c->connect_timeout = o->connect_timeout != 0 ? o->connect_timeout : 10; /* < 0: no limit */
    c->abandon_grace = o->abandon_grace == 0 ? 5 : o->abandon_grace;
    c->reply_timeout = o->reply_timeout > 0 ? o->reply_timeout : -1;
    /* 0: the default; negative: no limit of its own (only the caller's deadline applies) */
    c->queue_timeout = o->queue_timeout > 0 ? o->queue_timeout : o->queue_timeout < 0 ? LL_NEVER : 10;
    c->backoff_initial = o->backoff_initial > 0 ? o->backoff_initial : 0.05;
    c->backoff_max = o->backoff_max > 0 ? o->backoff_max : 2;
    c->reconnect = !o->no_reconnect;
    c->lim.max_bulk = o->max_bulk;
    c->lim.max_elements = o->max_elements;
    c->lim.max_reply = o->max_reply;
    c->lim.max_depth = o->max_depth;
    ll__rp_limits_default(&c->lim);
    if (c->unix_path) c->peer_name = ll_strdup(c->unix_path);
    else if (strchr(c->host, ':')) c->peer_name = ll_format("[%s]:%u", c->host, c->port);
    else c->peer_name = ll_format("%s:%u", c->host, c->port);
    if (!c->peer_name) goto fail;
    /* Everything that changes what the connection is, except the secret itself. */
    c->key = ll_format("%s://%s%s%s/%d name=%s tls=%s,ca=%s,sni=%s%s", c->tls ? "rediss" : "redis",
                       c->user ? c->user : "", c->user ? "@" : "", c->peer_name, c->db,
                       c->client_name ? c->client_name : "",
                       !c->tls ? "off" : c->tls_opts.insecure_skip_verify_DANGEROUS ? "noverify"
                                                                                   : "verify",
                       c->tls_opts.ca_file ? c->tls_opts.ca_file : "",
                       c->tls_opts.server_name ? c->tls_opts.server_name : "",
                       c->password ? " auth" : "");
    if (!c->key) goto fail;
    *out = c;
    return 0;
fail:
    if (rc == LL_ENOMEM && !err[0]) snprintf(err, errlen, "ll_redis_connect: out of memory");
    ll__rc_cfg_free(c);
    return rc;
}

rc_cfg *ll__rc_cfg_dup(const rc_cfg *s) {
    rc_cfg *c = ll_calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = *s;
    c->host = c->unix_path = c->user = c->password = c->client_name = c->key = c->peer_name = NULL;
    c->tls_opts.server_name = c->tls_opts.ca_file = c->tls_opts.ca_path = NULL;
    c->tls_opts.cert_file = c->tls_opts.key_file = c->tls_opts.alpn = NULL;
    if (!set_str(&c->host, s->host) || !set_str(&c->unix_path, s->unix_path) ||
        !set_str(&c->user, s->user) || !set_str(&c->password, s->password) ||
        !set_str(&c->client_name, s->client_name) || !set_str(&c->key, s->key) ||
        !set_str(&c->peer_name, s->peer_name) ||
        !set_str((char **)&c->tls_opts.server_name, s->tls_opts.server_name) ||
        !set_str((char **)&c->tls_opts.ca_file, s->tls_opts.ca_file) ||
        !set_str((char **)&c->tls_opts.ca_path, s->tls_opts.ca_path) ||
        !set_str((char **)&c->tls_opts.cert_file, s->tls_opts.cert_file) ||
        !set_str((char **)&c->tls_opts.key_file, s->tls_opts.key_file) ||
        !set_str((char **)&c->tls_opts.alpn, s->tls_opts.alpn)) {
        ll__rc_cfg_free(c);
        return NULL;
    }
    return c;
}
