/*
 * conn.c — a PostgreSQL connection on the loop: connect, the socket watcher, loss, close.
 *
 * Design notes:
 * - libpq does the protocol; we only drive it. PQconnectStartParams + PQconnectPoll make the
 *   connect non-blocking, with one ll_poller (the core's public fd watcher) following what
 *   PQconnectPoll asks for. libpq may switch sockets while it tries addresses or retries without
 *   TLS, so the poller is told the descriptor after every poll (ll_poller_set_fd, even when the
 *   number is the same). At most one read wait and one write wait are pending at a time.
 * - libpq's own name lookup blocks, and its connect_timeout is only enforced by its blocking
 *   PQconnectdb. So host names are resolved with ll_resolve first and handed over as `hostaddr`
 *   (a name resolving to several addresses becomes several host entries, tried in order, as libpq
 *   would), and the connect timeout is our timer.
 * - Once connected the connection is put in nonblocking and pipeline mode for good (pipeline.c).
 *   The watcher always listens for input, so notifications and a server that went away are seen
 *   even on an idle connection; it keeps the loop alive only while something is pending.
 * - Bursts of writes (many tasks querying in the same loop iteration) are corked on TCP: the
 *   first query of an iteration goes out at once, later ones are held by TCP_CORK and leave in one
 *   segment when the iteration's queue has run (one wake-up of the server instead of one each).
 * - ll_pg_close() frees at once; a callback still queued on the loop (the uncork) holds a
 *   reference on the structure so it never touches freed memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "libloop/dns.h"
#include "pg_internal.h"

/* The structure outlives ll_pg_close while a loop callback still points at it. */
void ll__pg_conn_unref(ll_pg_conn *c) {
    if (--c->refs == 0) ll_free(c);
}

const char *ll__pg_first_line(const char *msg, char *buf, size_t n) {
    /* libpq's messages span lines ("connection to server at ... failed: Connection refused\n\tIs
     * the server running ...?\nconnection to server at ..."); a log line wants one. Line breaks
     * become "; " (or a space after a ':'), runs of blanks one space, trailing ones go. */
    size_t o = 0;
    int sep = 0; /* 0 none, 1 a space, 2 a line break */
    for (const char *p = msg ? msg : ""; *p && o + 1 < n; p++) {
        if (*p == '\n' || *p == '\r') {
            if (o > 0) sep = 2;
            continue;
        }
        if (*p == ' ' || *p == '\t') {
            if (o > 0 && sep == 0) sep = 1;
            continue;
        }
        if (sep == 2 && buf[o - 1] != ':' && buf[o - 1] != ';' && o + 3 < n) buf[o++] = ';';
        if (sep && o + 2 < n) buf[o++] = ' ';
        sep = 0;
        buf[o++] = *p;
    }
    buf[o] = 0;
    return buf;
}

/* ---- the watcher ---- */

static void on_ready(ll_future *f, void *arg);

/* Keep a wait for `ev` pending on the poller, or none. False when out of memory: the caller
 * fails the connection (nothing would ever wake it). */
static bool arm(ll_pg_conn *c, ll_future **slot, int ev, bool want) {
    if (want && !*slot) {
        ll_future *w = ll_poller_wait(c->poller, ev);
        if (w && ll_future_add_done(w, on_ready, c) != 0) {
            ll_future_cancel(w);
            ll_future_free(w);
            w = NULL;
        }
        *slot = w;
        return w != NULL;
    } else if (!want && *slot) {
        ll_future_remove_done(*slot, on_ready, c);
        ll_future_cancel(*slot);
        ll_future_free(*slot);
        *slot = NULL;
    }
    return true;
}

/* Watch fd for events (fd < 0 or no events: stop). `force` tells the poller the descriptor again
 * even when the number is the same: during a connect libpq may have closed the socket and opened
 * another with the same number. */
static bool io_set(ll_pg_conn *c, int fd, int events, bool force) {
    if (!c->poller) return fd < 0;
    if (force || fd != c->io_fd) {
        ll_poller_set_fd(c->poller, fd);
        c->io_fd = fd;
    }
    c->io_events = fd < 0 ? 0 : events;
    bool ok = arm(c, &c->read_w, LL_POLL_READ, c->io_events & LL_POLL_READ);
    return arm(c, &c->write_w, LL_POLL_WRITE, c->io_events & LL_POLL_WRITE) && ok;
}

static void set_ref(ll_pg_conn *c, bool on) {
    c->io_refd = on;
    if (c->poller) ll_poller_set_ref(c->poller, on);
}

static void io_free(ll_pg_conn *c) {
    io_set(c, -1, 0, false);
    ll_poller_free(c->poller);
    c->poller = NULL;
}

static bool has_work(const ll_pg_conn *c) {
    return c->state == PG_CONNECTING || c->nsent || c->nheld || c->waiters_head ||
           c->copy.state != COPY_NONE || c->nabandoned || c->cancel_wait;
}

void ll__pg_io_update(ll_pg_conn *c) {
    if (c->state != PG_READY) return;
    bool want_ref = has_work(c);
    if (want_ref != c->io_refd) set_ref(c, want_ref);
    int events = LL_POLL_READ;
    /* COPY TO STDOUT with no read waiting: stop reading so the server, not our memory, holds the
     * rest of the table. */
    if (c->copy.state == COPY_OUT && !c->copy.read_f && !c->copy.discard) events = 0;
    if (c->want_write) events |= LL_POLL_WRITE;
    if (!io_set(c, PQsocket(c->pg), events, false))
        ll__pg_broken(c, "out of memory for the socket watcher");
}

void ll__pg_want_write(ll_pg_conn *c) {
    if (c->state != PG_READY || c->want_write) return;
    c->want_write = true;
    ll__pg_io_update(c);
}

static void uncork(void *arg) {
    ll_pg_conn *c = arg;
    c->uncork_queued = false;
    if (c->state == PG_READY) ll__pg_close_segment(c); /* batch_sync: the burst's Sync */
    if (c->corked && c->state == PG_READY) {
        int off = 0;
        setsockopt(PQsocket(c->pg), IPPROTO_TCP, TCP_CORK, &off, sizeof off);
    }
    c->corked = false;
    ll__pg_conn_unref(c);
}

void ll__pg_cork(ll_pg_conn *c) {
    if (!c->uncork_queued) {
        /* the first write of this iteration goes out at once; the burst ends when the loop has
         * run what is queued now */
        if (ll_loop_call_soon(c->loop, uncork, c) == 0) {
            c->uncork_queued = true;
            c->refs++;
        }
        return;
    }
    if (c->is_tcp && !c->corked && !c->opts.batch_sync) { /* batched: nothing leaves before the Sync */
        int on = 1;
        if (setsockopt(PQsocket(c->pg), IPPROTO_TCP, TCP_CORK, &on, sizeof on) == 0)
            c->corked = true;
    }
}

/* ---- loss ---- */

void ll__pg_broken(ll_pg_conn *c, const char *why) {
    if (c->state != PG_READY) return;
    char line[512];
    if (!why) why = ll__pg_first_line(PQerrorMessage(c->pg), line, sizeof line);
    if (!*why) why = "connection lost";
    char *msg = ll_format("%s", why);
    if (c->fatal) {
        /* the server said why before it closed (57P01 terminating connection, ...) */
        const char *st = ll__pg_errfields_get(c->fatal, PG_DIAG_SQLSTATE);
        const char *pm = ll__pg_errfields_get(c->fatal, PG_DIAG_MESSAGE_PRIMARY);
        char *m2 = ll_format("FATAL %s: %s (%s)", st ? st : "", pm ? pm : "", why);
        ll_free(msg);
        msg = m2;
    }
    c->state = PG_BROKEN;
    io_set(c, -1, 0, false);
    set_ref(c, false);
    /* the descriptor stays open (PQfinish closes it) but the peer learns now */
    if (PQsocket(c->pg) >= 0) shutdown(PQsocket(c->pg), SHUT_RDWR);
    const char *m = msg ? msg : why;
    ll__pg_cancel_detach(c);
    ll__pg_copy_fail(c, LL_EPG_CONN, m);
    ll__pg_fail_all(c, LL_EPG_CONN, m);
    ll__pg_notify_fail_all(c, LL_EPG_CONN, m);
    ll__pg_tx_clear(c);
    ll_free(msg);
}

/* ---- connect ---- */

typedef struct pg_connecting {
    ll_pg_conn *c;
    PQconninfoOption *parsed;
    const char **kw, **val;
    size_t n, cap;
    char *hosts, *addrs, *ports; /* expanded lists we made, owned */
    /* resolution of host names, one after another */
    char **names;                /* the host list split */
    char **nports;
    size_t nnames, next;
    char *out_hosts, *out_addrs, *out_ports;
    size_t oh_len, oa_len, op_len;
    ll_future *resolve_f;
    double timeout;
} pg_connecting;

static void on_resolved(ll_future *f, void *arg);

static void connecting_free(pg_connecting *k) {
    if (!k) return;
    k->c->connecting = NULL;
    if (k->resolve_f) {
        ll_future_remove_done(k->resolve_f, on_resolved, k);
        ll_future_free(k->resolve_f);
    }
    if (k->parsed) PQconninfoFree(k->parsed);
    ll_free(k->kw);
    ll_free(k->val);
    if (k->names)
        for (size_t i = 0; i < k->nnames; i++) ll_free(k->names[i]);
    if (k->nports)
        for (size_t i = 0; i < k->nnames; i++) ll_free(k->nports[i]);
    ll_free(k->names);
    ll_free(k->nports);
    ll_free(k->out_hosts);
    ll_free(k->out_addrs);
    ll_free(k->out_ports);
    ll_free(k);
}

static const char *opt_val(const pg_connecting *k, const char *name) {
    for (PQconninfoOption *o = k->parsed; o->keyword; o++)
        if (strcmp(o->keyword, name) == 0) return o->val && *o->val ? o->val : NULL;
    return NULL;
}

static bool kw_set(pg_connecting *k, const char *key, const char *value) {
    for (size_t i = 0; i < k->n; i++) {
        if (strcmp(k->kw[i], key) == 0) {
            k->val[i] = value;
            return true;
        }
    }
    if (k->n + 2 > k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 32;
        const char **nk = ll_realloc(k->kw, cap * sizeof *nk);
        if (!nk) return false;
        k->kw = nk;
        const char **nv = ll_realloc(k->val, cap * sizeof *nv);
        if (!nv) return false;
        k->val = nv;
        k->cap = cap;
    }
    k->kw[k->n] = key;
    k->val[k->n] = value;
    k->n++;
    k->kw[k->n] = NULL;
    k->val[k->n] = NULL;
    return true;
}

static void connect_fail(ll_pg_conn *c, int code, const char *fmt, const char *detail);
static void connect_fail_e(ll_pg_conn *c, int code, pg_errfields *e, const char *fmt,
                           const char *detail);
static int classify(ll_pg_conn *c, const char *msg);
static void connect_begin(ll_pg_conn *c, pg_connecting *k);
static void connect_step(ll_pg_conn *c);

static void connecting_abort(pg_connecting *k);

static void stop_connect_timer(ll_pg_conn *c) {
    if (!c->connect_timer) return;
    ll_future_cancel(c->connect_timer);
    ll_future_free(c->connect_timer);
    c->connect_timer = NULL;
}

static void conn_destroy(ll_pg_conn *c) {
    if (c->connecting) connecting_abort(c->connecting); /* timed out while resolving */
    io_free(c);
    stop_connect_timer(c);
    ll__pg_cancel_detach(c);
    ll__pg_stmt_free_all(c);
    ll__pg_stmts_detach(c, LL_ECLOSED);
    ll__pg_errfields_free(c->fatal);
    c->fatal = NULL;
    ll__pg_notify_free_all(c);
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    ll_free(c->peer);
    ll_free(c->who);
    ll_loop_track_handle(c->loop, -1);
    void *pool = c->pool;
    ll__pg_conn_unref(c);
    if (pool) ll__pg_pool_conn_gone(pool); /* may free the pool: last */
}

/* Conninfo values end up in every message: a control byte in them (a newline from a URI's %0A)
 * must not split or forge a log line (found by fuzz_pg_conninfo). */
static void no_controls(char *s) {
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

static void set_peer(ll_pg_conn *c, const char *host, const char *addr, const char *port) {
    ll_free(c->peer);
    if (!port || !*port) port = "5432";
    if (host && (host[0] == '/' || host[0] == '@'))
        c->peer = ll_format("%s/.s.PGSQL.%s", host, port);
    else if (addr && *addr && strchr(addr, ':'))
        c->peer = ll_format("[%s]:%s", addr, port);
    else if (addr && *addr)
        c->peer = ll_format("%s:%s", addr, port);
    else if (host && *host)
        c->peer = ll_format("%s:%s", host, port);
    else /* libpq's default: the Unix socket in Debian's directory */
        c->peer = ll_format("/var/run/postgresql/.s.PGSQL.%s", port);
    no_controls(c->peer);
}

static bool is_numeric(const char *h) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* Split "a,b,c" into n owned strings. */
static char **split(const char *s, size_t *n) {
    size_t cnt = 1;
    for (const char *p = s; *p; p++) cnt += *p == ',';
    char **v = ll_calloc(cnt, sizeof *v);
    if (!v) return NULL;
    const char *start = s;
    for (size_t i = 0; i < cnt; i++) {
        const char *end = strchr(start, ',');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        v[i] = ll_malloc(len + 1);
        if (!v[i]) {
            for (size_t j = 0; j < i; j++) ll_free(v[j]);
            ll_free(v);
            return NULL;
        }
        memcpy(v[i], start, len);
        v[i][len] = 0;
        start = end ? end + 1 : start + len;
    }
    *n = cnt;
    return v;
}

static bool append(char **dst, size_t *len, const char *s) {
    size_t sl = strlen(s);
    char *n = ll_realloc(*dst, *len + sl + 2);
    if (!n) return false;
    if (*len) n[(*len)++] = ',';
    memcpy(n + *len, s, sl + 1);
    *len += sl;
    *dst = n;
    return true;
}

static void resolve_next(pg_connecting *k);

static void on_resolved(ll_future *f, void *arg) {
    pg_connecting *k = arg;
    ll_pg_conn *c = k->c;
    k->resolve_f = NULL;
    const char *name = k->names[k->next];
    const char *port = k->nports[k->next];
    int rc = ll_future_code(f);
    if (rc) {
        /* the resolver's message names the host ("resolve db.example: host name not found") */
        char *m = ll_strdup(ll_future_errmsg(f));
        ll_future_free(f);
        connecting_free(k);
        connect_fail(c, rc, "%s", m ? m : "name resolution failed");
        ll_free(m);
        return;
    }
    ll_addrinfo *ai = ll_future_value(f);
    bool ok = true;
    for (size_t i = 0; ok && i < ai->count; i++) {
        char buf[INET6_ADDRSTRLEN];
        const struct sockaddr *sa = (const struct sockaddr *)&ai->addrs[i].sa;
        const void *src = sa->sa_family == AF_INET6
                              ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                              : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
        if (!inet_ntop(sa->sa_family, src, buf, sizeof buf)) continue;
        ok = append(&k->out_hosts, &k->oh_len, name) && append(&k->out_addrs, &k->oa_len, buf) &&
             append(&k->out_ports, &k->op_len, port);
    }
    ll_future_free(f);
    if (!ok) {
        connecting_free(k);
        connect_fail(c, LL_ENOMEM, "%s", "out of memory");
        return;
    }
    k->next++;
    resolve_next(k);
}

/* Resolve the remaining names one by one, then start libpq. */
static void resolve_next(pg_connecting *k) {
    ll_pg_conn *c = k->c;
    while (k->next < k->nnames) {
        const char *h = k->names[k->next];
        const char *port = k->nports[k->next];
        if (!*h || h[0] == '/' || h[0] == '@' || is_numeric(h)) {
            /* empty hostaddr entry: libpq uses the host as it is (a socket or numeric) */
            if (!append(&k->out_hosts, &k->oh_len, h) || !append(&k->out_addrs, &k->oa_len, "") ||
                !append(&k->out_ports, &k->op_len, port)) {
                connecting_free(k);
                connect_fail(c, LL_ENOMEM, "%s", "out of memory");
                return;
            }
            k->next++;
            continue;
        }
        long p = strtol(port, NULL, 10);
        ll_future *f = ll_resolve(h, (uint16_t)(p > 0 && p < 65536 ? p : 5432),
                                  &(ll_resolve_opts){.loop = c->loop});
        if (!f || ll_future_add_done(f, on_resolved, k) != 0) {
            ll_future_free(f);
            connecting_free(k);
            connect_fail(c, LL_ENOMEM, "%s", "out of memory");
            return;
        }
        k->resolve_f = f;
        return;
    }
    if (!kw_set(k, "host", k->out_hosts ? k->out_hosts : "") ||
        !kw_set(k, "hostaddr", k->out_addrs ? k->out_addrs : "") ||
        !kw_set(k, "port", k->out_ports ? k->out_ports : "")) {
        connecting_free(k);
        connect_fail(c, LL_ENOMEM, "%s", "out of memory");
        return;
    }
    connect_begin(c, k);
}

/* Stop a resolution in progress (connect cancelled or timed out) and forget it. */
static void connecting_abort(pg_connecting *k) {
    if (k->resolve_f) {
        ll_future_remove_done(k->resolve_f, on_resolved, k);
        ll_future_cancel(k->resolve_f);
        ll_future_free(k->resolve_f);
        k->resolve_f = NULL;
    }
    connecting_free(k);
}

static void connect_cancel(ll_future *f, void *arg) {
    ll_pg_conn *c = arg;
    c->connect_f = NULL;
    ll_future_set_cancelled(f);
    ll_future_free(f);
    if (c->connecting) connecting_abort(c->connecting);
    conn_destroy(c);
}

static void on_connect_timer(void *arg);

static ll_future *connect_impl(const char *conninfo, const ll_pg_opts *opts, void *pool);

ll_future *ll_pg_connect(const char *conninfo, const ll_pg_opts *opts) {
    LL_REQUIRE_ARG(conninfo, "conninfo");
    return ll__pg_connect_pooled(conninfo, opts, NULL);
}

ll_future *ll__pg_connect_pooled(const char *conninfo, const ll_pg_opts *opts, void *pool) {
    /* several hosts or a target_session_attrs: multihost.c walks them, one host at a time */
    if (ll__pg_multihost_wanted(conninfo)) return ll__pg_multihost_connect(conninfo, opts, pool);
    return connect_impl(conninfo, opts, pool);
}

ll_future *ll__pg_connect_single(const char *conninfo, const ll_pg_opts *opts, void *pool) {
    return connect_impl(conninfo, opts, pool);
}

static ll_future *connect_impl(const char *conninfo, const ll_pg_opts *opts, void *pool) {
    ll_loop *loop = ll__pg_loop(opts ? opts->loop : NULL);
    if (!loop) return NULL;
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg connect");
    ll_pg_conn *c = ll_calloc(1, sizeof *c);
    pg_connecting *k = c ? ll_calloc(1, sizeof *k) : NULL;
    if (!k) {
        ll_free(c);
        ll_future_fail(f, LL_ENOMEM, "postgres connect: out of memory");
        return f;
    }
    c->refs = 1;
    c->connecting = k;
    c->pool = pool;
    if (pool) ll__pg_pool_conn_born(pool);
    c->loop = loop;
    c->io_fd = -1;
    if (opts) c->opts = *opts;
    c->opts.loop = loop;
    if (c->opts.cancel_timeout == 0) c->opts.cancel_timeout = 5;
    if (c->opts.stmt_cache_size == 0) c->opts.stmt_cache_size = 256;
    if (c->opts.notify_queue_max == 0) c->opts.notify_queue_max = 10000;
    c->state = PG_CONNECTING;
    c->connect_f = f;
    c->tx.conn = c;
    c->copy.conn = c;
    c->born = ll_now();
    ll_loop_track_handle(loop, +1);
    k->c = c;
    ll_future_ref(f); /* the connection's reference, dropped when it settles */
    ll_future_on_cancel(f, connect_cancel, c);

    char *err = NULL;
    k->parsed = PQconninfoParse(conninfo ? conninfo : "", &err);
    if (!k->parsed) {
        char line[512];
        const char *why = err ? ll__pg_first_line(err, line, sizeof line) : "out of memory";
        if (err) PQfreemem(err);
        connecting_free(k);
        connect_fail(c, err ? LL_EINVAL : LL_ENOMEM, "invalid conninfo: %s", why);
        return f;
    }
    for (PQconninfoOption *o = k->parsed; o->keyword; o++) {
        if (o->val && !kw_set(k, o->keyword, o->val)) goto oom;
    }
    /* GSSAPI negotiation may talk to a KDC (blocking): only when asked for */
    if (!opt_val(k, "gssencmode") && !getenv("PGGSSENCMODE") && !kw_set(k, "gssencmode", "disable"))
        goto oom;

    const char *user = opt_val(k, "user");
    if (!user) user = getenv("PGUSER");
    if (!user) {
        struct passwd *pw = getpwuid(geteuid());
        user = pw ? pw->pw_name : "?";
    }
    const char *db = opt_val(k, "dbname");
    if (!db) db = getenv("PGDATABASE");
    if (!db) db = user;
    c->who = ll_format("user %s, database %s", user, db);
    no_controls(c->who);

    const char *host = opt_val(k, "host");
    if (!host) host = getenv("PGHOST");
    const char *hostaddr = opt_val(k, "hostaddr");
    if (!hostaddr) hostaddr = getenv("PGHOSTADDR");
    const char *port = opt_val(k, "port");
    if (!port) port = getenv("PGPORT");
    if (!port) port = "5432";
    {
        /* the peer for messages: the first entry */
        char h0[256] = "", a0[64] = "", p0[16] = "";
        if (host) sscanf(host, "%255[^,]", h0);
        if (hostaddr) sscanf(hostaddr, "%63[^,]", a0);
        sscanf(port, "%15[^,]", p0);
        set_peer(c, h0, a0, p0);
    }
    if (!c->who || !c->peer) goto oom;

    double t = c->opts.connect_timeout;
    if (t == 0) {
        const char *ct = opt_val(k, "connect_timeout");
        if (!ct) ct = getenv("PGCONNECT_TIMEOUT");
        t = ct ? strtod(ct, NULL) : 0;
        if (t <= 0) t = 10;
        c->opts.connect_timeout = t; /* the timeout message says what was used */
    }
    k->timeout = t;
    if (t > 0) {
        c->connect_deadline = ll_now() + t;
        c->connect_timer = ll_loop_call_later(loop, t, on_connect_timer, c);
        if (!c->connect_timer) goto oom;
    }

    if (hostaddr || !host) {
        /* addresses given (or the default Unix socket): libpq does no lookup */
        connect_begin(c, k);
        return f;
    }
    k->names = split(host, &k->nnames);
    size_t np = 0;
    char **ports = split(port, &np);
    if (!k->names || !ports) {
        if (ports)
            for (size_t i = 0; i < np; i++) ll_free(ports[i]);
        ll_free(ports);
        goto oom;
    }
    k->nports = ll_calloc(k->nnames, sizeof *k->nports);
    if (!k->nports) {
        for (size_t i = 0; i < np; i++) ll_free(ports[i]);
        ll_free(ports);
        goto oom;
    }
    for (size_t i = 0; i < k->nnames; i++) {
        k->nports[i] = ll_strdup(np == k->nnames ? ports[i] : ports[0]);
        if (!k->nports[i]) {
            for (size_t j = 0; j < np; j++) ll_free(ports[j]);
            ll_free(ports);
            goto oom;
        }
    }
    for (size_t i = 0; i < np; i++) ll_free(ports[i]);
    ll_free(ports);
    if (np != 1 && np != k->nnames) {
        connecting_free(k);
        connect_fail(c, LL_EINVAL, "invalid conninfo: %s", "could not match port list to host list");
        return f;
    }
    resolve_next(k);
    return f;
oom:
    connecting_free(k);
    connect_fail(c, LL_ENOMEM, "%s", "out of memory");
    return f;
}

/* libpq prints server notices to stderr by default; a library must not. A FATAL one is the
 * server's reason for closing an idle connection: kept for the errors that follow. */
static void on_notice(void *arg, const PGresult *res) {
    ll_pg_conn *c = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!sev || (strcmp(sev, "FATAL") != 0 && strcmp(sev, "PANIC") != 0)) return;
    pg_errfields *e = ll__pg_errfields_from_result(res);
    if (!e) return;
    ll__pg_errfields_free(c->fatal);
    c->fatal = e;
}

/* libpq's own checks of the conninfo values ("invalid port number", "invalid sslmode value")
 * fail the connect before any I/O. */
static bool is_conninfo_error(const char *msg) {
    return strstr(msg, "invalid ") || strstr(msg, "could not match");
}

static void connect_begin(ll_pg_conn *c, pg_connecting *k) {
    c->pg = PQconnectStartParams(k->kw, k->val, 0);
    connecting_free(k);
    if (!c->pg) {
        connect_fail(c, LL_ENOMEM, "%s", "out of memory");
        return;
    }
    PQsetNoticeReceiver(c->pg, on_notice, c);
    /* the startup error's SQLSTATE is only in the verbose text (there is no PGresult) */
    PQsetErrorVerbosity(c->pg, PQERRORS_VERBOSE);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        char line[512];
        const char *msg = ll__pg_first_line(PQerrorMessage(c->pg), line, sizeof line);
        connect_fail(c, is_conninfo_error(msg) ? LL_EINVAL : classify(c, msg), "%s", msg);
        return;
    }
    /* PQconnectStart behaves as if PQconnectPoll had said "writing"; a connect in progress keeps
     * the loop alive */
    c->poller = ll_poller_new(PQsocket(c->pg), &(ll_poll_opts){.loop = c->loop});
    if (!c->poller) {
        connect_fail(c, LL_ENOMEM, "%s", "out of memory");
        return;
    }
    c->io_fd = PQsocket(c->pg);
    set_ref(c, true);
    if (!io_set(c, PQsocket(c->pg), LL_POLL_WRITE, true))
        connect_fail(c, LL_ENOMEM, "%s", "out of memory");
}

static int classify(ll_pg_conn *c, const char *msg) {
    if (strstr(msg, "authentication failed") || strstr(msg, "no pg_hba.conf entry") ||
        strstr(msg, "no password supplied") || strstr(msg, "password is required") ||
        (c->pg && PQconnectionNeedsPassword(c->pg)))
        return LL_EPG_AUTH;
    if (strstr(msg, "Connection refused")) return LL_ECONNREFUSED;
    if (strstr(msg, "timeout expired")) return LL_ETIMEDOUT;
    if (strstr(msg, "No such file or directory")) return LL_ECONNREFUSED; /* no socket there */
    return LL_EPG_CONN;
}

static void connect_fail(ll_pg_conn *c, int code, const char *fmt, const char *detail) {
    connect_fail_e(c, code, NULL, fmt, detail);
}

/* The connect failed with libpq's message: with the server's fields when the server refused us
 * (unknown database 3D000, unknown role 28000, wrong password 28P01, too many connections). */
static void connect_failed_pq(ll_pg_conn *c) {
    const char *raw = PQerrorMessage(c->pg);
    char line[512];
    const char *msg = ll__pg_first_line(raw, line, sizeof line);
    int code = classify(c, msg);
    pg_errfields *e = ll__pg_errfields_parse(raw);
    if (!e) {
        connect_fail(c, code, "%s", msg);
        return;
    }
    const char *st = ll__pg_errfields_get(e, PG_DIAG_SQLSTATE);
    const char *sev = ll__pg_errfields_get(e, PG_DIAG_SEVERITY);
    const char *pm = ll__pg_errfields_get(e, PG_DIAG_MESSAGE_PRIMARY);
    const char *dt = ll__pg_errfields_get(e, PG_DIAG_MESSAGE_DETAIL);
    const char *hn = ll__pg_errfields_get(e, PG_DIAG_MESSAGE_HINT);
    if (strncmp(st, "28", 2) == 0) code = LL_EPG_AUTH; /* invalid authorization, password */
    else if (code == LL_ECONNREFUSED || code == LL_ETIMEDOUT) code = LL_EPG_CONN;
    char text[768];
    snprintf(text, sizeof text, "%s %s: %s%s%s%s%s%s", sev ? sev : "FATAL", st, pm ? pm : "",
             dt ? " (DETAIL: " : "", dt ? dt : "", dt ? ")" : "", hn ? " (HINT: " : "",
             hn ? hn : "");
    if (hn) strncat(text, ")", sizeof text - strlen(text) - 1);
    connect_fail_e(c, code, e, "%s", text);
}

static void connect_fail_e(ll_pg_conn *c, int code, pg_errfields *e, const char *fmt,
                           const char *detail) {
    ll_future *f = c->connect_f;
    c->connect_f = NULL;
    set_ref(c, false);
    char *what = ll_format(fmt, detail);
    char *full = ll_format("connect to postgres %s (%s): %s", c->peer ? c->peer : "?",
                           c->who ? c->who : "?", what ? what : detail);
    if (f) {
        if (e) ll__pg_fail_fields(f, code, e, full ? full : detail);
        else ll_future_fail(f, code, "%s", full ? full : detail);
        ll_future_free(f);
    } else {
        ll__pg_errfields_free(e);
    }
    ll_free(full);
    ll_free(what);
    conn_destroy(c);
}

static void connect_done(ll_pg_conn *c) {
    PGconn *pg = c->pg;
    stop_connect_timer(c);
    PQsetErrorVerbosity(pg, PQERRORS_DEFAULT);
    if (PQsetnonblocking(pg, 1) != 0 || PQenterPipelineMode(pg) != 1) {
        char line[512];
        connect_fail(c, LL_EPG_CONN, "%s", ll__pg_first_line(PQerrorMessage(pg), line, sizeof line));
        return;
    }
    c->pipeline_on = true;
    set_peer(c, PQhost(pg), PQhostaddr(pg), PQport(pg));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(PQsocket(pg), (struct sockaddr *)&ss, &sl) == 0)
        c->is_tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
    c->state = PG_READY;
    /* the connect's ref on the loop goes; ll__pg_io_update decides from now on */
    set_ref(c, false);
    if (!io_set(c, PQsocket(pg), LL_POLL_READ, true)) {
        connect_fail(c, LL_ENOMEM, "%s", "out of memory");
        return;
    }
    ll__pg_io_update(c);
    ll_future *f = c->connect_f;
    c->connect_f = NULL;
    ll_future_on_cancel(f, NULL, NULL);
    ll_future_resolve(f, c, (ll_value_free)ll_pg_close);
    ll_future_free(f);
}

static void connect_step(ll_pg_conn *c) {
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    switch (st) {
    case PGRES_POLLING_READING:
        if (!io_set(c, PQsocket(c->pg), LL_POLL_READ, true))
            connect_fail(c, LL_ENOMEM, "%s", "out of memory");
        break;
    case PGRES_POLLING_WRITING:
        if (!io_set(c, PQsocket(c->pg), LL_POLL_WRITE, true))
            connect_fail(c, LL_ENOMEM, "%s", "out of memory");
        break;
    case PGRES_POLLING_OK:
        connect_done(c);
        break;
    default:
        connect_failed_pq(c);
        break;
    }
}

static void on_connect_timer(void *arg) {
    ll_pg_conn *c = arg;
    ll_future_free(c->connect_timer);
    c->connect_timer = NULL;
    if (c->state != PG_CONNECTING) return;
    /* a timer may fire a little early by the clock after the loop was blocked (a program that
     * started a server synchronously): never time out early */
    double left = c->connect_deadline - ll_now();
    if (left > 1e-3) {
        c->connect_timer = ll_loop_call_later(c->loop, left, on_connect_timer, c);
        if (c->connect_timer) return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "timed out after %g s",
             c->opts.connect_timeout > 0 ? c->opts.connect_timeout : c->connect_deadline - c->born);
    connect_fail(c, LL_ETIMEDOUT, "%s", buf);
}

static void on_ready(ll_future *f, void *arg) {
    ll_pg_conn *c = arg;
    int revents = ll_poll_events(f);
    if (ll_future_get_state(f) == LL_FUTURE_FAILED) {
        (void)ll_future_code(f);
        revents = LL_POLL_READ | LL_POLL_WRITE; /* let libpq find out what is wrong */
    }
    if (f == c->read_w) c->read_w = NULL;
    if (f == c->write_w) c->write_w = NULL;
    ll_future_free(f);
    if (c->state == PG_CONNECTING) {
        connect_step(c);
        return;
    }
    if (c->state != PG_READY) return;
    c->refs++; /* nothing we call should close it, but be safe */
    if (revents & LL_POLL_WRITE) {
        int r = PQflush(c->pg);
        if (r < 0) {
            ll__pg_broken(c, NULL);
        } else if (r == 0) {
            c->want_write = false;
            if (c->copy.state == COPY_IN || c->copy.state == COPY_ENDING) ll__pg_copy_on_writable(c);
            ll__pg_io_update(c);
        }
    }
    if ((revents & LL_POLL_READ) && c->state == PG_READY) ll__pg_on_input(c);
    if (c->state == PG_READY) ll__pg_io_update(c);
    ll__pg_conn_unref(c);
}

/* ---- close and accessors ---- */

void ll_pg_close(ll_pg_conn *c) {
    if (!c || c->state == PG_CLOSED) return;
    if (c->pool) {
        /* lent by a pool, which frees it when it comes back: only end the connection now */
        if (c->state == PG_READY) {
            ll__pg_broken(c, "connection closed by its user");
        }
        return;
    }
    ll__pg_conn_free(c);
}

void ll__pg_conn_free(ll_pg_conn *c) {
    if (!c || c->state == PG_CLOSED) return;
    if (c->state == PG_READY) {
        ll__pg_cancel_detach(c);
        c->state = PG_CLOSED;
        ll__pg_copy_fail(c, LL_ECLOSED, "connection closed");
        ll__pg_fail_all(c, LL_ECLOSED, "connection closed");
        ll__pg_notify_fail_all(c, LL_ECLOSED, "connection closed");
        ll__pg_tx_clear(c);
    } else {
        c->state = PG_CLOSED;
    }
    conn_destroy(c);
}

bool ll_pg_is_ok(const ll_pg_conn *c) {
    return c && c->state == PG_READY && PQstatus(c->pg) == CONNECTION_OK;
}

const char *ll_pg_peer(const ll_pg_conn *c) {
    return c && c->peer ? c->peer : "";
}

int ll_pg_backend_pid(const ll_pg_conn *c) {
    return c && c->pg ? PQbackendPID(c->pg) : 0;
}

int ll_pg_server_version(const ll_pg_conn *c) {
    return c && c->pg ? PQserverVersion(c->pg) : 0;
}

size_t ll_pg_pending(const ll_pg_conn *c) {
    return c ? c->nsent + c->nheld : 0;
}

bool ll_pg_in_transaction(const ll_pg_conn *c) {
    if (!c || !c->pg) return false;
    return c->tx.owner != 0 || PQtransactionStatus(c->pg) == PQTRANS_INTRANS ||
           PQtransactionStatus(c->pg) == PQTRANS_INERROR;
}
