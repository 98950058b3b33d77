/*
 * multihost.c — connecting to one of several hosts (`host=a,b,c`, a URI with several hosts) and
 * checking target_session_attrs (read-write, read-only, primary, standby, prefer-standby, any).
 *
 * Design notes:
 * - libpq can walk a host list itself, but only its blocking PQconnectdb enforces connect_timeout,
 *   so one blackholed host would eat the whole connect deadline, and its error text keeps only
 *   one line per host in a form we cannot split reliably. So the walk is ours: each host becomes a
 *   single-host connect (conn.c: resolved by libloop's resolver, never a blocking lookup) with its
 *   share of what is left of the deadline (left / hosts not yet tried), so a dead host costs at
 *   most its share and the later ones still get theirs. Every host's failure goes into the error.
 * - The session attribute is checked with a query on the new connection (SHOW
 *   transaction_read_only for read-write/read-only, SELECT pg_is_in_recovery() for
 *   primary/standby/prefer-standby), bounded by the same share. A query rather than the
 *   in_hot_standby parameter status: it also works on servers before 14 and says what the server
 *   thinks now.
 * - prefer-standby keeps the first usable non-standby connection open while it looks further, and
 *   uses it when no standby answers (libpq connects a second time instead).
 * - Split brain: for primary and read-write, finding one host that takes writes is not the end of
 *   the walk when more hosts are listed: the hosts after it are asked too (each for at most
 *   VERIFY_MAX seconds of the deadline). If a second one also takes writes (two primaries: a
 *   standby was promoted while the old primary still runs), the connect fails with
 *   LL_EPG_SPLIT_BRAIN naming both, rather than writing to whichever is listed first: only the
 *   operator knows which one the others follow, and a write to the wrong one is lost when it is
 *   rebuilt. A host that does not answer within its time counts as no rival (it cannot be told
 *   from a dead one). This costs one more connection per listed host on every connect, which a
 *   pool pays once per connection it makes.
 * - A pooled connect holds one of the pool's connection counts for its whole walk, so a pool freed
 *   meanwhile is not freed under it (the attempts in between come and go).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pg_internal.h"

typedef enum { TSA_ANY, TSA_RW, TSA_RO, TSA_PRIMARY, TSA_STANDBY, TSA_PREFER_STANDBY } tsa_kind;

static const char *const tsa_names[] = {"any",     "read-write", "read-only",
                                        "primary", "standby",    "prefer-standby"};

typedef struct mh_connect {
    ll_loop *loop;
    ll_future *f;            /* ours (the caller's future) */
    void *pool;
    ll_pg_opts opts;
    tsa_kind tsa;
    char *base;              /* the conninfo without host/hostaddr/port/target_session_attrs */
    char **hosts, **addrs, **ports;
    size_t n, next;          /* hosts; the next one to try */
    size_t naddrs;           /* entries in addrs (equal to n once checked) */
    ll_time deadline;        /* LL_NEVER: none of our own */
    ll_time host_deadline;   /* the end of the current host's share */
    ll_future *attempt;      /* the connect in progress */
    ll_pg_conn *conn;        /* connected, attribute being checked */
    ll_future *check;        /* that query */
    ll_future *timer;        /* bounds the check */
    ll_pg_conn *fallback;    /* prefer-standby: the first usable non-standby */
    ll_pg_conn *chosen;      /* primary/read-write: the first that fits, while the rest are asked */
    size_t chosen_i;
    char *errors;            /* "host: why; host: why" */
    int last_code;
    bool mixed_codes;
} mh_connect;

static void try_next(mh_connect *m);

#define VERIFY_MAX 1.0 /* seconds a host after the chosen one gets to say it is a primary too */

static void free_list(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) ll_free(v[i]);
    ll_free(v);
}

static char **split_list(const char *s, size_t *n) {
    size_t cnt = 1;
    for (const char *p = s; *p; p++) cnt += *p == ',';
    char **v = ll_calloc(cnt, sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < cnt; i++) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        v[i] = ll_malloc(len + 1);
        if (!v[i]) {
            free_list(v, i);
            return NULL;
        }
        memcpy(v[i], s, len);
        v[i][len] = 0;
        s = end ? end + 1 : s + len;
    }
    *n = cnt;
    return v;
}

static const char *opt(const PQconninfoOption *o, const char *name) {
    for (; o->keyword; o++)
        if (strcmp(o->keyword, name) == 0) return o->val && *o->val ? o->val : NULL;
    return NULL;
}

static int tsa_parse(const char *v, tsa_kind *out) {
    if (!v) {
        *out = TSA_ANY;
        return 0;
    }
    for (int i = 0; i <= TSA_PREFER_STANDBY; i++)
        if (strcmp(v, tsa_names[i]) == 0) {
            *out = (tsa_kind)i;
            return 0;
        }
    return -1;
}

bool ll__pg_multihost_wanted(const char *conninfo) {
    if (!conninfo) return false;
    PQconninfoOption *o = PQconninfoParse(conninfo, NULL);
    if (!o) return false; /* conn.c reports the parse error */
    const char *h = opt(o, "host");
    if (!h) h = getenv("PGHOST");
    const char *t = opt(o, "target_session_attrs");
    if (!t) t = getenv("PGTARGETSESSIONATTRS");
    bool want = (h && strchr(h, ',')) || (t && strcmp(t, "any") != 0);
    PQconninfoFree(o);
    return want;
}

/* value quoted for a conninfo string: 'it''s' → 'it\'s' */
static bool append_kv(char **dst, size_t *len, const char *k, const char *v) {
    size_t need = strlen(k) + 2 * strlen(v) + 6;
    char *n = ll_realloc(*dst, *len + need + 1);
    if (!n) return false;
    char *p = n + *len;
    if (*len) *p++ = ' ';
    p += sprintf(p, "%s='", k);
    for (const char *s = v; *s; s++) {
        if (*s == '\'' || *s == '\\') *p++ = '\\';
        *p++ = *s;
    }
    *p++ = '\'';
    *p = 0;
    *len = (size_t)(p - n);
    *dst = n;
    return true;
}

static void mh_free(mh_connect *m) {
    void *pool = m->pool;
    ll_free(m->base);
    free_list(m->hosts, m->n);
    free_list(m->addrs, m->naddrs);
    free_list(m->ports, m->n);
    ll_free(m->errors);
    ll_free(m);
    if (pool) ll__pg_pool_conn_gone(pool); /* may free the pool: last */
}

static void stop_timer(mh_connect *m) {
    if (!m->timer) return;
    ll_future_cancel(m->timer);
    ll_future_free(m->timer);
    m->timer = NULL;
}

static void on_attempt(ll_future *f, void *arg);
static void on_check(ll_future *f, void *arg);

/* Stop whatever is in progress (the caller gave up, or we are done). */
static void abort_current(mh_connect *m) {
    stop_timer(m);
    if (m->attempt) {
        ll_future_remove_done(m->attempt, on_attempt, m);
        ll_future_cancel(m->attempt);
        ll_future_free(m->attempt);
        m->attempt = NULL;
    }
    if (m->check) {
        ll_future_remove_done(m->check, on_check, m);
        ll_future_free(m->check); /* the connection's close below fails it */
        m->check = NULL;
    }
    if (m->conn) {
        ll__pg_conn_free(m->conn);
        m->conn = NULL;
    }
}

static void finish_ok(mh_connect *m, ll_pg_conn *c) {
    ll_future *f = m->f;
    m->f = NULL;
    if (m->fallback && m->fallback != c) ll__pg_conn_free(m->fallback);
    m->fallback = NULL;
    if (m->chosen && m->chosen != c) ll__pg_conn_free(m->chosen);
    m->chosen = NULL;
    ll_future_on_cancel(f, NULL, NULL);
    ll_future_resolve(f, c, (ll_value_free)ll_pg_close);
    ll_future_free(f);
    mh_free(m);
}

static void finish_fail(mh_connect *m, int code, const char *why) {
    ll_future *f = m->f;
    m->f = NULL;
    if (m->chosen) ll__pg_conn_free(m->chosen);
    m->chosen = NULL;
    ll_future_on_cancel(f, NULL, NULL);
    ll_future_fail(f, code, "connect to postgres (%zu host%s, target_session_attrs=%s): %s", m->n,
                   m->n == 1 ? "" : "s", tsa_names[m->tsa], why);
    ll_future_free(f);
    mh_free(m);
}

static void note_error(mh_connect *m, size_t i, int code, const char *why) {
    char *e = ll_format("%s%s%s:%s: %s", m->errors ? m->errors : "", m->errors ? "; " : "",
                        m->hosts[i][0] ? m->hosts[i] : "(default)", m->ports[i], why);
    if (e) {
        /* host names come from the conninfo: a control byte (a URI's %0A) becomes '?' as in
         * conn.c, so the message stays one line */
        for (char *p = e; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
        ll_free(m->errors);
        m->errors = e;
    }
    if (m->last_code && m->last_code != code) m->mixed_codes = true;
    m->last_code = code;
}

static void mh_cancel(ll_future *f, void *arg) {
    mh_connect *m = arg;
    m->f = NULL;
    ll_future_set_cancelled(f);
    ll_future_free(f);
    abort_current(m);
    if (m->fallback) ll__pg_conn_free(m->fallback);
    m->fallback = NULL;
    if (m->chosen) ll__pg_conn_free(m->chosen);
    m->chosen = NULL;
    mh_free(m);
}

static double time_share(const mh_connect *m) {
    if (m->deadline == LL_NEVER) return -1;
    double left = m->deadline - ll_now();
    size_t hosts_left = m->n - m->next;
    return hosts_left ? left / (double)hosts_left : left;
}

static void on_check_timer(void *arg) {
    mh_connect *m = arg;
    ll_future_free(m->timer);
    m->timer = NULL;
    size_t i = m->next - 1;
    abort_current(m);
    note_error(m, i, LL_ETIMEDOUT, "session attribute check timed out");
    try_next(m);
}

/* Does the server's answer fit what was asked for? */
static void on_check(ll_future *q, void *arg) {
    mh_connect *m = arg;
    m->check = NULL;
    stop_timer(m);
    size_t i = m->next - 1;
    ll_pg_conn *c = m->conn;
    int rc = ll_future_code(q);
    if (rc) {
        char *why = ll_strdup(ll_future_errmsg(q));
        ll_future_free(q);
        m->conn = NULL;
        ll__pg_conn_free(c);
        note_error(m, i, rc, why ? why : "session attribute check failed");
        ll_free(why);
        try_next(m);
        return;
    }
    const char *v = ll_pg_text(ll_pg_result_of(q), 0, 0);
    bool yes = v && (strcmp(v, "on") == 0 || strcmp(v, "t") == 0);
    bool fits;
    const char *why = NULL;
    switch (m->tsa) {
    case TSA_RW: fits = !yes; why = "session is read-only"; break;
    case TSA_RO: fits = yes; why = "session is read-write"; break;
    case TSA_PRIMARY: fits = !yes; why = "server is a standby (in recovery)"; break;
    case TSA_STANDBY: fits = yes; why = "server is not a standby"; break;
    default: /* prefer-standby */ fits = yes; why = "server is not a standby"; break;
    }
    ll_future_free(q);
    m->conn = NULL;
    bool writable = m->tsa == TSA_PRIMARY || m->tsa == TSA_RW;
    if (fits && writable && m->chosen) {
        char *why2 = ll_format("split brain: %s:%s and %s:%s both accept writes (%s); refusing to "
                               "choose one: stop (fence) the old primary or take it out of the host list",
                               m->hosts[m->chosen_i][0] ? m->hosts[m->chosen_i] : "(default)",
                               m->ports[m->chosen_i], m->hosts[i][0] ? m->hosts[i] : "(default)",
                               m->ports[i],
                               m->tsa == TSA_PRIMARY ? "pg_is_in_recovery() is false on both"
                                                     : "transaction_read_only is off on both");
        ll__pg_conn_free(c);
        finish_fail(m, LL_EPG_SPLIT_BRAIN, why2 ? why2 : "split brain: two hosts accept writes");
        ll_free(why2);
        return;
    }
    if (fits && writable && m->next < m->n) {
        /* keep it, and ask the hosts after it whether they take writes too */
        m->chosen = c;
        m->chosen_i = i;
        try_next(m);
        return;
    }
    if (fits) {
        finish_ok(m, c);
        return;
    }
    if (m->tsa == TSA_PREFER_STANDBY && !m->fallback) m->fallback = c;
    else ll__pg_conn_free(c);
    note_error(m, i, LL_EPG_CONN, why);
    try_next(m);
}

static void on_attempt(ll_future *f, void *arg) {
    mh_connect *m = arg;
    m->attempt = NULL;
    size_t i = m->next - 1;
    int rc = ll_future_code(f);
    if (rc) {
        /* "connect to postgres ADDR (user, db): why": the host is named by the list entry, so
         * only the why (which names the address the name resolved to) is kept */
        const char *msg = ll_future_errmsg(f);
        const char *cut = strncmp(msg, "connect to postgres ", 20) == 0 ? strstr(msg, "): ") : NULL;
        char *why = ll_strdup(cut ? cut + 3 : msg);
        ll_future_free(f);
        note_error(m, i, rc, why ? why : "connect failed");
        ll_free(why);
        try_next(m);
        return;
    }
    ll_pg_conn *c = ll_future_take(f);
    ll_future_free(f);
    if (m->tsa == TSA_ANY) {
        finish_ok(m, c);
        return;
    }
    m->conn = c;
    const char *sql = m->tsa == TSA_RW || m->tsa == TSA_RO ? "SHOW transaction_read_only"
                                                           : "SELECT pg_is_in_recovery()";
    m->check = ll__pg_query_internal(c, sql, TXOP_NONE, 0);
    if (!m->check || ll_future_add_done(m->check, on_check, m) != 0) {
        ll_future_free(m->check);
        m->check = NULL;
        abort_current(m);
        finish_fail(m, LL_ENOMEM, "out of memory");
        return;
    }
    if (m->host_deadline != LL_NEVER) {
        /* the check gets what is left of this host's share (the hosts after it keep theirs) */
        double left = m->host_deadline - ll_now();
        m->timer = ll_loop_call_later(m->loop, left < 1e-3 ? 1e-3 : left, on_check_timer, m);
        if (!m->timer) {
            abort_current(m);
            finish_fail(m, LL_ENOMEM, "out of memory");
        }
    }
}

static void try_next(mh_connect *m) {
    if (m->next >= m->n || (m->deadline != LL_NEVER && ll_now() >= m->deadline)) {
        if (m->chosen) {
            finish_ok(m, m->chosen); /* no other host takes writes */
            return;
        }
        if (m->fallback) {
            finish_ok(m, m->fallback); /* prefer-standby: no standby, the first usable one */
            return;
        }
        bool timed_out = m->next < m->n;
        char *why = ll_format("%s%s%s", timed_out ? "timed out; " : "",
                              m->errors ? "no host fits: " : "no host to try",
                              m->errors ? m->errors : "");
        /* one cause for all hosts keeps its code (all refused: LL_ECONNREFUSED) */
        int code = timed_out                        ? LL_ETIMEDOUT
                   : m->mixed_codes || !m->last_code ? LL_EPG_CONN
                                                     : m->last_code;
        finish_fail(m, code, why ? why : "no host fits");
        ll_free(why);
        return;
    }
    double share = time_share(m); /* this host among those left */
    if (m->chosen && (share < 0 || share > VERIFY_MAX)) share = VERIFY_MAX;
    size_t i = m->next++;
    m->host_deadline = share < 0 ? LL_NEVER : ll_now() + share;
    char *ci = NULL;
    size_t len = 0;
    bool ok = append_kv(&ci, &len, "host", m->hosts[i]) &&
              (!m->addrs || append_kv(&ci, &len, "hostaddr", m->addrs[i])) &&
              append_kv(&ci, &len, "port", m->ports[i]);
    char *full = ok ? ll_format("%s %s", m->base, ci) : NULL;
    ll_free(ci);
    if (!full) {
        finish_fail(m, LL_ENOMEM, "out of memory");
        return;
    }
    ll_pg_opts o = m->opts;
    o.connect_timeout = share < 0 ? -1 : share < 1e-3 ? 1e-3 : share;
    ll_future *f = ll__pg_connect_single(full, &o, m->pool);
    ll_free(full);
    if (!f || ll_future_add_done(f, on_attempt, m) != 0) {
        ll_future_free(f);
        finish_fail(m, LL_ENOMEM, "out of memory");
        return;
    }
    m->attempt = f;
}

ll_future *ll__pg_multihost_connect(const char *conninfo, const ll_pg_opts *opts, void *pool) {
    ll_loop *loop = ll__pg_loop(opts ? opts->loop : NULL);
    if (!loop) return NULL;
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(conninfo, &err);
    if (!o) {
        char line[512];
        ll_future *f = ll_future_failed(loop, err ? LL_EINVAL : LL_ENOMEM,
                                        "connect to postgres: invalid conninfo: %s",
                                        err ? ll__pg_first_line(err, line, sizeof line)
                                            : "out of memory");
        if (err) PQfreemem(err);
        return f;
    }
    const char *host = opt(o, "host");
    if (!host) host = getenv("PGHOST");
    const char *hostaddr = opt(o, "hostaddr");
    if (!hostaddr) hostaddr = getenv("PGHOSTADDR");
    const char *port = opt(o, "port");
    if (!port) port = getenv("PGPORT");
    if (!port) port = "5432";
    const char *tsa = opt(o, "target_session_attrs");
    if (!tsa) tsa = getenv("PGTARGETSESSIONATTRS");
    tsa_kind kind;
    if (tsa_parse(tsa, &kind) != 0) {
        /* the value is not echoed: a control byte from a URI's %0A must not forge a log line */
        ll_future *f = ll_future_failed(
            loop, LL_EINVAL,
            "connect to postgres: invalid target_session_attrs value (expected any, read-write, "
            "read-only, primary, standby or prefer-standby)");
        PQconninfoFree(o);
        return f;
    }
    mh_connect *m = ll_calloc(1, sizeof *m);
    ll_future *f = m ? ll_future_new(loop) : NULL;
    if (!f) {
        ll_free(m);
        PQconninfoFree(o);
        return NULL;
    }
    ll_future_set_label(f, "pg connect (multi-host)");
    m->loop = loop;
    m->f = f;
    m->tsa = kind;
    if (opts) m->opts = *opts;
    m->opts.loop = loop;
    m->pool = pool;
    if (pool) ll__pg_pool_conn_born(pool);
    size_t np = 0, na = 0;
    /* only addresses given: each is its own host entry (libpq does the same) */
    m->hosts = split_list(host ? host : hostaddr ? hostaddr : "", &m->n);
    char **ports = split_list(port, &np);
    m->addrs = hostaddr ? split_list(hostaddr, &na) : NULL;
    m->naddrs = m->addrs ? na : 0;
    size_t len = 0;
    bool ok = m->hosts && ports && (!hostaddr || m->addrs);
    for (PQconninfoOption *p = o; ok && p->keyword; p++) {
        if (!p->val || !*p->val) continue;
        if (!strcmp(p->keyword, "host") || !strcmp(p->keyword, "hostaddr") ||
            !strcmp(p->keyword, "port") || !strcmp(p->keyword, "target_session_attrs") ||
            !strcmp(p->keyword, "connect_timeout"))
            continue;
        ok = append_kv(&m->base, &len, p->keyword, p->val);
    }
    if (ok && !m->base) ok = (m->base = ll_strdup("")) != NULL;
    double t = m->opts.connect_timeout;
    if (t == 0) {
        const char *ct = opt(o, "connect_timeout");
        if (!ct) ct = getenv("PGCONNECT_TIMEOUT");
        t = ct ? strtod(ct, NULL) : 0;
        if (t <= 0) t = 10;
    }
    PQconninfoFree(o);
    m->deadline = t > 0 ? ll_now() + t : LL_NEVER;
    ll_future_ref(f); /* returned to the caller; m->f is ours */
    ll_future_on_cancel(f, mh_cancel, m);
    if (!ok) {
        free_list(ports, np);
        finish_fail(m, LL_ENOMEM, "out of memory");
        return f;
    }
    if ((np != 1 && np != m->n) || (m->addrs && na != m->n)) {
        free_list(ports, np);
        finish_fail(m, LL_EINVAL, "invalid conninfo: could not match port or hostaddr list to host list");
        return f;
    }
    if (np == m->n) {
        m->ports = ports;
    } else {
        m->ports = ll_calloc(m->n, sizeof *m->ports);
        for (size_t i = 0; m->ports && i < m->n; i++) {
            m->ports[i] = ll_strdup(ports[0]);
            if (!m->ports[i]) ok = false;
        }
        free_list(ports, np);
        if (!m->ports || !ok) {
            finish_fail(m, LL_ENOMEM, "out of memory");
            return f;
        }
    }
    try_next(m);
    return f;
}
