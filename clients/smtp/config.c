/*
 * config.c — a session's settings, from the URL and the options, copied once and shared (reference
 * counted) by every session of a client, so nothing the caller owns is read after the call that
 * took it. liburiparser parses the URL (RFC 3986); this file only interprets it:
 *   smtp://[user[:password]@]host[:port][?security=plain|starttls|opportunistic|tls]
 *   smtps://...   implicit TLS, port 465
 * Credentials in the URL are percent-decoded and then checked like every other credential: a CR,
 * LF or NUL in them is refused here, before any connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uriparser/Uri.h>
#include "smtp_internal.h"

static void *mm_malloc(UriMemoryManager *m, size_t n) { (void)m; return ll_malloc(n); }
static void *mm_calloc(UriMemoryManager *m, size_t n, size_t s) { (void)m; return ll_calloc(n, s); }
static void *mm_realloc(UriMemoryManager *m, void *p, size_t n) { (void)m; return ll_realloc(p, n); }
static void *mm_reallocarray(UriMemoryManager *m, void *p, size_t n, size_t s) {
    (void)m;
    if (s && n > SIZE_MAX / s) return NULL;
    return ll_realloc(p, n * s);
}
static void mm_free(UriMemoryManager *m, void *p) { (void)m; ll_free(p); }
static UriMemoryManager mm = {mm_malloc, mm_calloc, mm_realloc, mm_reallocarray, mm_free, NULL};

static char *range_dup(const UriTextRangeA *r) {
    size_t n = r->first ? (size_t)(r->afterLast - r->first) : 0;
    char *s = ll_malloc(n + 1);
    if (!s) return NULL;
    if (n) memcpy(s, r->first, n);
    s[n] = 0;
    return s;
}

static bool dup_opt(char **dst, const char *src) {
    if (!src) return true;
    *dst = ll_strdup(src);
    return *dst != NULL;
}

ll__smtp_cfg *ll__smtp_cfg_ref(ll__smtp_cfg *c) {
    if (c) c->refs++;
    return c;
}

void ll__smtp_cfg_unref(ll__smtp_cfg *c) {
    if (!c || --c->refs > 0) return;
    char **strs[] = {&c->host, &c->tls_server_name, &c->tls_ca_file, &c->tls_ca_path, &c->tls_cert,
                     &c->tls_key, &c->helo, &c->user, &c->pass, &c->token, &c->mech, &c->key};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        if (*strs[i] && (strs[i] == &c->pass || strs[i] == &c->token))
            memset(*strs[i], 0, strlen(*strs[i]));
        ll_free(*strs[i]);
    }
    ll_free(c);
}

/* 0: the default; negative: none (-1). */
static double tmo(double v, double def) { return v == 0 ? def : v < 0 ? -1 : v; }

static int parse_url(ll__smtp_cfg *c, const char *url, char *err) {
    UriUriA u;
    const char *errpos = NULL;
    int urc = uriParseSingleUriExMmA(&u, url, url + strlen(url), &errpos, &mm);
    if (urc != URI_SUCCESS) {
        return ll__smtp_errf(err, urc == URI_ERROR_MALLOC ? LL_ENOMEM : LL_EINVAL,
                             "bad SMTP URL \"%s\" (at offset %d)", url,
                             errpos ? (int)(errpos - url) : 0);
    }
    int rc = 0;
    char *scheme = range_dup(&u.scheme);
    if (!scheme) {
        rc = LL_ENOMEM;
        goto out;
    }
    bool smtps = strcasecmp(scheme, "smtps") == 0;
    if (!smtps && strcasecmp(scheme, "smtp") != 0) {
        rc = ll__smtp_errf(err, LL_EINVAL, "SMTP URL \"%s\": scheme must be smtp or smtps", url);
        goto out;
    }
    c->host = range_dup(&u.hostText);
    if (!c->host) {
        rc = LL_ENOMEM;
        goto out;
    }
    if (!c->host[0]) {
        rc = ll__smtp_errf(err, LL_EINVAL, "SMTP URL \"%s\" has no host", url);
        goto out;
    }
    c->port = smtps ? 465 : 25;
    if (u.portText.first && u.portText.afterLast > u.portText.first) {
        char *p = range_dup(&u.portText);
        if (!p) {
            rc = LL_ENOMEM;
            goto out;
        }
        char *end;
        long v = strtol(p, &end, 10);
        bool bad = *end != 0;
        ll_free(p);
        if (bad || v < 1 || v > 65535) {
            rc = ll__smtp_errf(err, LL_EINVAL, "SMTP URL \"%s\": bad port", url);
            goto out;
        }
        c->port = (uint16_t)v;
    }
    if (c->security == LL_SMTP_SECURITY_DEFAULT)
        c->security = smtps ? LL_SMTP_IMPLICIT_TLS : LL_SMTP_STARTTLS_REQUIRED;
    if (u.query.first && u.query.afterLast > u.query.first) {
        char *q = range_dup(&u.query);
        if (!q) {
            rc = LL_ENOMEM;
            goto out;
        }
        ll_smtp_security sec = LL_SMTP_SECURITY_DEFAULT;
        if (strcmp(q, "security=plain") == 0) sec = LL_SMTP_PLAIN;
        else if (strcmp(q, "security=starttls") == 0) sec = LL_SMTP_STARTTLS_REQUIRED;
        else if (strcmp(q, "security=opportunistic") == 0) sec = LL_SMTP_STARTTLS_OPPORTUNISTIC;
        else if (strcmp(q, "security=tls") == 0) sec = LL_SMTP_IMPLICIT_TLS;
        ll_free(q);
        if (sec == LL_SMTP_SECURITY_DEFAULT) {
            rc = ll__smtp_errf(err, LL_EINVAL, "SMTP URL \"%s\": the query may only be "
                               "security=plain|starttls|opportunistic|tls", url);
            goto out;
        }
        c->url_security = sec;
    }
    if (u.userInfo.first && u.userInfo.afterLast > u.userInfo.first) {
        char *ui = range_dup(&u.userInfo);
        if (!ui) {
            rc = LL_ENOMEM;
            goto out;
        }
        char *colon = strchr(ui, ':');
        if (colon) *colon = 0;
        size_t total = colon ? (size_t)(colon - ui) + 1 + strlen(colon + 1) : strlen(ui);
        /* Unescaping turns %00 into a NUL: the decoded end then lies past strlen. */
        const char *uend = uriUnescapeInPlaceExA(ui, URI_FALSE, URI_BR_DONT_TOUCH);
        bool nul = (size_t)(uend - ui) != strlen(ui);
        if (colon) {
            const char *pend = uriUnescapeInPlaceExA(colon + 1, URI_FALSE, URI_BR_DONT_TOUCH);
            nul = nul || (size_t)(pend - (colon + 1)) != strlen(colon + 1);
        }
        if (!nul) {
            if (!c->user) c->user = ll_strdup(ui);
            if (colon && !c->pass) c->pass = ll_strdup(colon + 1);
        }
        memset(ui, 0, total);
        ll_free(ui);
        if (nul) {
            rc = ll__smtp_errf(err, LL_EINVAL, "SMTP URL: the user name or password contains a "
                               "NUL byte (%%00)");
            goto out;
        }
        if (!c->user || (colon && !c->pass)) rc = LL_ENOMEM;
    }
out:
    ll_free(scheme);
    uriFreeUriMembersMmA(&u, &mm);
    return rc;
}

int ll__smtp_cfg_new(const char *url, const ll_smtp_opts *opts, ll__smtp_cfg **out, char *err) {
    *out = NULL;
    ll_smtp_opts def;
    memset(&def, 0, sizeof def);
    if (!opts) opts = &def;
    if (!url) return ll__smtp_errf(err, LL_EINVAL, "url is NULL");
    ll__smtp_cfg *c = ll_calloc(1, sizeof *c);
    if (!c) return LL_ENOMEM;
    c->refs = 1;
    c->loop = opts->loop ? opts->loop : ll_loop_current();
    c->security = opts->security;
    int rc = 0;
    if (!dup_opt(&c->user, opts->username) || !dup_opt(&c->pass, opts->password) ||
        !dup_opt(&c->token, opts->oauth_token) || !dup_opt(&c->mech, opts->auth_mechanism) ||
        !dup_opt(&c->helo, opts->helo_name ? opts->helo_name : "localhost")) {
        rc = LL_ENOMEM;
        goto fail;
    }
    rc = parse_url(c, url, err);
    if (rc) goto fail;
    if (c->security == LL_SMTP_SECURITY_DEFAULT || opts->security == LL_SMTP_SECURITY_DEFAULT) {
        if (c->url_security) c->security = c->url_security;
    }
    if ((unsigned)c->security > LL_SMTP_PLAIN) {
        rc = ll__smtp_errf(err, LL_EINVAL, "unknown security setting %d", (int)c->security);
        goto fail;
    }
    rc = ll__smtp_check_helo(c->helo, err);
    if (!rc && c->user) rc = ll__smtp_check_line("user name", c->user, strlen(c->user), err);
    if (!rc && c->pass) rc = ll__smtp_check_line("password", c->pass, strlen(c->pass), err);
    if (!rc && c->token) rc = ll__smtp_check_line("oauth token", c->token, strlen(c->token), err);
    if (rc) goto fail;
    if (c->token && !c->user) {
        rc = ll__smtp_errf(err, LL_EINVAL, "XOAUTH2 needs a user name with the token");
        goto fail;
    }
    if (c->user && !c->pass && !c->token) {
        rc = ll__smtp_errf(err, LL_EINVAL, "a user name was given without a password or token");
        goto fail;
    }
    if (opts->tls) {
        c->tls = *opts->tls;
        if (!dup_opt(&c->tls_server_name, opts->tls->server_name) ||
            !dup_opt(&c->tls_ca_file, opts->tls->ca_file) ||
            !dup_opt(&c->tls_ca_path, opts->tls->ca_path) ||
            !dup_opt(&c->tls_cert, opts->tls->cert_file) ||
            !dup_opt(&c->tls_key, opts->tls->key_file)) {
            rc = LL_ENOMEM;
            goto fail;
        }
        c->tls.server_name = c->tls_server_name;
        c->tls.ca_file = c->tls_ca_file;
        c->tls.ca_path = c->tls_ca_path;
        c->tls.cert_file = c->tls_cert;
        c->tls.key_file = c->tls_key;
        c->tls.alpn = NULL;
    }
    c->allow_plaintext_auth = opts->allow_plaintext_auth;
    c->connect_timeout = tmo(opts->connect_timeout, 30);
    c->greeting_timeout = tmo(opts->greeting_timeout, 300);
    c->command_timeout = tmo(opts->command_timeout, 300);
    c->data_timeout = tmo(opts->data_timeout, 600);
    c->final_timeout = tmo(opts->final_timeout, 600);
    c->message_timeout = tmo(opts->message_timeout, -1);
    c->max_line = opts->max_reply_line;
    c->max_lines = opts->max_reply_lines;
    c->max_sessions = opts->max_sessions ? opts->max_sessions : 4;
    c->max_messages = opts->max_messages_per_session ? opts->max_messages_per_session : 100;
    c->retries = opts->retries == 0 ? 3 : opts->retries < 0 ? 0 : (unsigned)opts->retries;
    c->backoff = tmo(opts->retry_backoff, 1);
    if (c->backoff < 0) c->backoff = 0;
    c->noop_after = tmo(opts->noop_after, 5);
    c->key = ll_format("smtp %s:%u", c->host, (unsigned)c->port);
    if (!c->key) {
        rc = LL_ENOMEM;
        goto fail;
    }
    *out = c;
    return 0;
fail:
    ll__smtp_cfg_unref(c);
    return rc;
}
