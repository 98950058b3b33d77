/*
 * pool.c — a pool of PostgreSQL connections on libloop's generic pool (libloop/pool.h).
 *
 * Design notes:
 * - The generic pool does the bookkeeping (limits, waiters, idle time, lifetime, upkeep); this
 *   file supplies the vtable: connect is ll_pg_connect with the pool's options, is_alive reads
 *   whatever the server sent while the connection sat idle (a server that restarted or
 *   terminated the backend is noticed before a query is written), close is ll_pg_close, and reset
 *   brings a returned connection back to a clean session the way asyncpg does.
 * - Release decides what a connection is: lost, or with anything still pending (a query, a COPY,
 *   a waiter for notifications, a query whose caller gave up and that is still being cancelled)
 *   means BROKEN and it is closed — never handed to the next user with someone else's reply in
 *   flight, and never making the next borrower wait for a cancel: the generic pool counts a reset
 *   under way as serving the next waiter, so a reset that first waited for the server to stop a
 *   query would hold that waiter up to cancel_timeout. The cancel request goes on by itself
 *   (cancel.c) and the waiter gets a new connection at once.
 * - The reset leaves a session like a fresh one: ROLLBACK if a transaction is open, advisory locks
 *   released, cursors closed, UNLISTEN *, SET SESSION AUTHORIZATION DEFAULT (undoes SET ROLE and
 *   SET SESSION AUTHORIZATION), RESET ALL, temporary tables and sequences state dropped, and the
 *   statements the user PREPAREd deallocated — in one script (one round trip; a second one only
 *   when there are statements to deallocate). The library's own cached statements stay: they
 *   hold nothing a user can see, and keeping them keeps the cache coherent. With a custom
 *   reset_sql, that runs instead, alone (so it may be DISCARD ALL), followed by DEALLOCATE ALL and
 *   an empty cache: the cache is coherent whatever the SQL does.
 * - The conninfo is the connect argument, never the pool's key: the key (it appears in the generic
 *   pool's messages) is the conninfo with the password left out.
 * - The pool structure outlives ll_pg_pool_free() while any of its connections exists (a lent
 *   one's release must remain valid) and while one-shot queries are in flight.
 * - ll_pg_pool_acquire returns the generic pool's own future, with no wrapper holding a
 *   reference: the generic pool can see that a caller abandoned its wait and lend the connection
 *   to the next one instead of to nobody.
 * - ll_pg_pool_query is a chain of callbacks (acquire → query → release), no task: a thousand
 *   concurrent one-shot queries cost a thousand small records, not a thousand stacks.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include "libloop/pool.h"
#include "pg_internal.h"

struct ll_pg_pool {
    ll_pool *pool;
    ll_loop *loop;
    char *conninfo;          /* what connects use (may hold a password) */
    char *key;               /* the conninfo without secrets: the generic pool's key */
    char *reset_sql;         /* custom reset, or NULL */
    ll_pg_opts conn_opts;
    size_t conns;            /* connections of this pool that exist (connecting, lent, idle) */
    size_t jobs;             /* one-shot queries in flight */
    size_t refs;             /* pool statements and other holders (ll__pg_pool_ref) */
    ll_pg_pool_hook on_connect, on_release; /* hooks.c */
    void *hook_arg;
    bool closed, closing;
};

static void maybe_free(ll_pg_pool *p) {
    if (!p->closed || p->closing || p->conns || p->jobs || p->refs) return;
    ll_free(p->conninfo);
    ll_free(p->key);
    ll_free(p->reset_sql);
    ll_free(p);
}

void ll__pg_pool_conn_born(void *pool) {
    ((ll_pg_pool *)pool)->conns++;
}

void ll__pg_pool_conn_gone(void *pool) {
    ll_pg_pool *p = pool;
    p->conns--;
    maybe_free(p);
}

ll_loop *ll__pg_pool_loop(const ll_pg_pool *p) {
    return p->loop;
}

bool ll__pg_pool_closed(const ll_pg_pool *p) {
    return p->closed;
}

void ll__pg_pool_ref(ll_pg_pool *p) {
    p->refs++;
}

void ll__pg_pool_unref(ll_pg_pool *p) {
    p->refs--;
    maybe_free(p);
}

/* The conninfo as people may read it: every keyword that names the server, none that holds a
 * secret. */
static char *display_key(const char *conninfo) {
    static const char *const shown[] = {"host", "hostaddr", "port", "user", "dbname", NULL};
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (err) PQfreemem(err);
    if (!opts) return ll_strdup("postgres (conninfo not readable)");
    char buf[512];
    size_t o = 0;
    buf[0] = 0;
    for (const char *const *k = shown; *k; k++) {
        for (PQconninfoOption *op = opts; op->keyword; op++) {
            if (strcmp(op->keyword, *k) != 0 || !op->val || !*op->val) continue;
            int n = snprintf(buf + o, sizeof buf - o, "%s%s=%s", o ? " " : "", *k, op->val);
            if (n > 0 && (size_t)n < sizeof buf - o) o += (size_t)n;
        }
    }
    PQconninfoFree(opts);
    return ll_strdup(o ? buf : "postgres (defaults)");
}

/* ---- the vtable ---- */

static ll_future *vt_connect(void *arg, const char *key) {
    (void)key; /* the display form: connect with the real conninfo */
    ll_pg_pool *p = arg;
    ll_future *f = ll__pg_connect_pooled(p->conninfo, &p->conn_opts, p);
    if (f && p->on_connect) f = ll__pg_hook_connect(p->loop, f, p->on_connect, p->hook_arg);
    return f;
}

static bool vt_is_alive(void *arg, void *conn) {
    (void)arg;
    ll_pg_conn *c = conn;
    if (!ll_pg_is_ok(c) || c->nsent || c->nheld || c->copy.state != COPY_NONE) return false;
    /* Read what the server sent while the connection sat idle. A server that shut down or
     * terminated the backend sends a FATAL error (which libpq, idle, treats as a notice) and
     * closes: PQconsumeInput may take the error without reaching the end of the stream, so peek
     * for the end ourselves. */
    int fd = PQsocket(c->pg);
    for (int i = 0; i < 8; i++) {
        if (!PQconsumeInput(c->pg)) return false;
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) return false;
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
            break;
        }
    }
    (void)PQisBusy(c->pg); /* parses what was read: notices, notifications */
    ll__pg_collect_notifies(c);
    return PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) == PQTRANS_IDLE &&
           !c->fatal;
}

static void vt_close(void *arg, void *conn) {
    (void)arg;
    ll__pg_conn_free(conn);
}

/* The reset: a few scripts in a row (see the design notes). Cancelling it (reset_timeout,
 * ll_pg_pool_free) must not send a cancel request and wait: the pool closes the connection next
 * anyway. So the cancel marks the connection lost, which fails the script at once. */
typedef enum { RS_FIRST, RS_CUSTOM, RS_DEALLOCATE, RS_END } reset_step;

typedef struct reset_job {
    ll_future *outer;
    ll_pg_conn *c;
    ll_pg_pool *p;
    reset_step step;
} reset_job;

static void on_reset_step(ll_future *inner, void *arg);

static int reset_run(reset_job *j, const char *sql) {
    ll_future *inner = ll_pg_exec(j->c, sql);
    if (!inner) return LL_ENOMEM;
    if (ll_future_add_done(inner, on_reset_step, j) != 0) {
        ll__pg_broken(j->c, "out of memory");
        ll_future_free(inner);
        return LL_ENOMEM;
    }
    return 0;
}

/* The user's own prepared statements, as "DEALLOCATE a; DEALLOCATE b", or NULL when none. */
static char *deallocate_sql(const ll_pg_result *r) {
    int n = ll_pg_result_rows(r);
    if (n <= 0 || ll_pg_result_cols(r) != 1) return NULL;
    size_t len = 1;
    for (int i = 0; i < n; i++) len += ll_pg_len(r, i, 0) + 13;
    char *sql = ll_malloc(len);
    if (!sql) return NULL;
    size_t o = 0;
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(sql + o, len - o, "DEALLOCATE %s;", ll_pg_text(r, i, 0));
    return sql;
}

static void reset_end(reset_job *j, ll_future *inner) {
    if (!inner || ll_future_code(inner) == 0) ll_future_resolve(j->outer, NULL, NULL);
    else ll__pg_fail_from(j->outer, inner); /* no-op when already cancelled */
    ll_future_free(j->outer);
    ll_free(j);
}

static void on_reset_step(ll_future *inner, void *arg) {
    reset_job *j = arg;
    int rc = ll_future_code(inner);
    if (rc != 0 || ll_future_done(j->outer)) {
        reset_end(j, inner);
        ll_future_free(inner);
        return;
    }
    char *sql = NULL;
    if (j->step == RS_FIRST && j->p->reset_sql) {
        j->step = RS_CUSTOM;
        rc = reset_run(j, j->p->reset_sql);
    } else if (j->step == RS_FIRST) {
        sql = deallocate_sql(ll_future_value(inner));
        j->step = RS_END;
        if (sql) rc = reset_run(j, sql);
        else {
            reset_end(j, NULL);
            ll_future_free(inner);
            return;
        }
    } else if (j->step == RS_CUSTOM) {
        /* whatever the custom SQL did to prepared statements, start from none */
        j->step = RS_DEALLOCATE;
        ll__pg_stmt_free_all(j->c);
        rc = reset_run(j, "DEALLOCATE ALL");
    } else {
        reset_end(j, NULL);
        ll_future_free(inner);
        return;
    }
    ll_free(sql);
    ll_future_free(inner);
    if (rc != 0) {
        ll_future_fail(j->outer, rc, "pool postgres: out of memory");
        ll_future_free(j->outer);
        ll_free(j);
    }
}

static void reset_cancel(ll_future *outer, void *arg) {
    reset_job *j = arg;
    ll_future_set_cancelled(outer);
    ll__pg_broken(j->c, "pool reset cancelled: connection closed");
}

static ll_future *reset_start(void *arg, ll_pg_conn *c);

static ll_future *vt_reset(void *arg, void *conn) {
    ll_pg_pool *p = arg;
    if (p->on_release || p->on_connect)
        return ll__pg_hook_release(p->loop, conn, p->on_release, p->on_connect, p->hook_arg,
                                   reset_start, p);
    return reset_start(p, conn);
}

static ll_future *reset_start(void *arg, ll_pg_conn *c) {
    ll_pg_pool *p = arg;
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg pool reset");
    reset_job *j = ll_malloc(sizeof *j);
    if (!j) {
        ll_future_fail(f, LL_ENOMEM, "pool postgres: out of memory");
        return f;
    }
    ll__pg_tx_clear(c);          /* a transaction left open by its task: rolled back below */
    ll__pg_notify_free_all(c);   /* the last user's notifications are not the next one's */
    bool in_tx = PQtransactionStatus(c->pg) != PQTRANS_IDLE;
    const char *first =
        p->reset_sql ? (in_tx ? "ROLLBACK" : "SELECT 1")
                     : in_tx ? "ROLLBACK; SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; "
                               "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DISCARD TEMP; "
                               "DISCARD SEQUENCES; SELECT quote_ident(name) FROM "
                               "pg_prepared_statements WHERE name !~ '^ll_s[0-9]+$'"
                             : "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; "
                               "SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DISCARD TEMP; "
                               "DISCARD SEQUENCES; SELECT quote_ident(name) FROM "
                               "pg_prepared_statements WHERE name !~ '^ll_s[0-9]+$'";
    j->outer = ll_future_ref(f);
    j->c = c;
    j->p = p;
    j->step = RS_FIRST;
    if (reset_run(j, first) != 0) {
        ll_future_free(j->outer);
        ll_free(j);
        ll_future_fail(f, LL_ENOMEM, "pool postgres: out of memory");
        return f;
    }
    ll_future_on_cancel(f, reset_cancel, j);
    return f;
}

static const ll_pool_vtable vtable = {vt_connect, vt_is_alive, vt_close, vt_reset};

/* ---- life cycle ---- */

ll_pg_pool *ll_pg_pool_new(const char *conninfo, const ll_pg_pool_opts *opts) {
    if (!conninfo) return NULL;
    ll_pg_pool_opts o = {0};
    if (opts) o = *opts;
    ll_pg_pool *p = ll_calloc(1, sizeof *p);
    if (!p) return NULL;
    p->conninfo = ll_strdup(conninfo);
    p->key = display_key(conninfo);
    p->reset_sql = o.reset_sql ? ll_strdup(o.reset_sql) : NULL;
    p->conn_opts = o.conn;
    p->on_connect = o.on_connect;
    p->on_release = o.on_release;
    p->hook_arg = o.hook_arg;
    p->loop = ll__pg_loop(o.conn.loop);
    ll_pool_opts po = {
        .name = "pool postgres",
        .loop = p->loop,
        .max_per_key = o.max_size ? o.max_size : 10,
        .min_per_key = o.min_size,
        .acquire_timeout = o.acquire_timeout,
        .connect_timeout = o.conn.connect_timeout > 0   ? o.conn.connect_timeout + 1
                           : o.conn.connect_timeout < 0 ? -1
                                                        : 0,
        .reset_timeout = o.reset_timeout,
        .max_idle = o.max_idle,
        .max_lifetime = o.max_lifetime,
    };
    if (p->conninfo && p->key && p->loop && (p->reset_sql || !o.reset_sql))
        p->pool = ll_pool_new(&vtable, p, &po);
    if (!p->pool) {
        ll_free(p->conninfo);
        ll_free(p->key);
        ll_free(p->reset_sql);
        ll_free(p);
        return NULL;
    }
    if (o.min_size) ll_pool_warm(p->pool, p->key);
    return p;
}

void ll_pg_pool_free(ll_pg_pool *p) {
    if (!p || p->closed) return;
    p->closed = true;
    p->closing = true; /* connections closed in here must not free p under our feet */
    ll_pool_free(p->pool);
    p->closing = false;
    maybe_free(p);
}

/* ---- acquire and release ---- */

ll_future *ll_pg_pool_acquire(ll_pg_pool *p) {
    LL_REQUIRE_ARG(p, "pool");
    if (p->closed) return ll_future_failed(p->loop, LL_EPOOLCLOSED, "pool postgres: closed");
    ll_future *f = ll_pool_acquire(p->pool, p->key);
    if (f) ll_future_set_label(f, "pg pool acquire");
    return f;
}

/* Anything still pending, also a query whose caller gave up. */
static bool work_pending(const ll_pg_conn *c) {
    return c->nheld || c->nsent || c->nabandoned || c->cancel_wait || c->waiters_head ||
           c->copy.state != COPY_NONE;
}

int ll_pg_pool_release(ll_pg_pool *p, ll_pg_conn *c) {
    if (!p || !c || c->pool != p) return LL_ENOENT;
    ll__pg_stmts_detach(c, LL_ESTATE); /* its ll_pg_stmt handles end with the lend */
    ll_pool_state st = LL_POOL_RESET;
    if (!ll_pg_is_ok(c) || work_pending(c)) st = LL_POOL_BROKEN;
    return ll_pool_release(p->pool, c, st);
}

void ll_pg_pool_get_stats(const ll_pg_pool *p, ll_pg_pool_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!p || p->closed) return;
    ll_pool_stats s;
    ll_pool_get_stats(p->pool, &s);
    out->open = s.open;
    out->idle = s.idle;
    out->in_use = s.in_use;
    out->waiting = s.waiting;
    out->created = s.created;
    out->discarded = s.discarded;
    out->acquired = s.acquired;
}

/* ---- one-shot queries ---- */

typedef struct pq_job {
    ll_pg_pool *p;
    ll_future *f;            /* the caller's */
    ll_future *acq, *q;
    ll_pg_conn *c;
    bool retried;
    bool cancelled;
    int nparams;
    char **values;
    char *sql;
    pg_enc *enc;             /* a typed query's parameters (params.c), or NULL */
    bool script;             /* ll_pg_pool_exec: a script (ll_pg_exec) */
} pq_job;

static void job_start(pq_job *j);

static void job_end(pq_job *j) {
    ll_pg_pool *p = j->p;
    ll_future_free(j->f);
    ll_free(j->enc);
    ll_free(j);
    p->jobs--;
    maybe_free(p);
}

static void on_query(ll_future *q, void *arg) {
    pq_job *j = arg;
    j->q = NULL;
    ll_pg_conn *c = j->c;
    j->c = NULL;
    int rc = ll_future_code(q);
    ll_pg_pool_release(j->p, c);
    if (rc == 0) {
        ll_pg_result *r = ll_future_take(q);
        ll_future_resolve(j->f, r, (ll_value_free)ll_pg_result_free);
    } else {
        ll__pg_fail_from(j->f, q);
    }
    ll_future_free(q);
    job_end(j);
}

static void on_acquired(ll_future *a, void *arg) {
    pq_job *j = arg;
    j->acq = NULL;
    int rc = ll_future_code(a);
    if (rc != 0 || j->cancelled) {
        if (rc == 0) ll_pg_pool_release(j->p, ll_future_value(a));
        if (rc == 0 || rc == LL_ECANCELED) ll_future_set_cancelled(j->f);
        else ll__pg_fail_from(j->f, a);
        ll_future_free(a);
        job_end(j);
        return;
    }
    ll_pg_conn *c = ll_future_value(a);
    ll_future_free(a);
    ll_future *q = j->script ? ll_pg_exec(c, j->sql)
                   : j->enc  ? ll__pg_query_enc(c, j->sql, j->enc)
                             : ll_pg_queryv(c, j->sql, j->nparams, (const char *const *)j->values);
    if (q && ll_future_get_state(q) == LL_FUTURE_FAILED && ll_future_code(q) == LL_EPG_CONN &&
        !j->retried) {
        /* dead before anything was written (it died between the liveness check and now): a new
         * connection cannot do worse */
        ll_future_free(q);
        ll_pg_pool_release(j->p, c);
        j->retried = true;
        job_start(j);
        return;
    }
    if (!q || ll_future_add_done(q, on_query, j) != 0) {
        if (q) ll_future_cancel(q);
        ll_future_free(q);
        ll_pg_pool_release(j->p, c);
        ll_future_fail(j->f, LL_ENOMEM, "pool postgres: out of memory");
        job_end(j);
        return;
    }
    j->c = c;
    j->q = q;
}

static void job_start(pq_job *j) {
    j->acq = ll_pg_pool_acquire(j->p);
    if (!j->acq || ll_future_add_done(j->acq, on_acquired, j) != 0) {
        if (j->acq) ll_future_cancel(j->acq);
        ll_future_free(j->acq);
        j->acq = NULL;
        ll_future_fail(j->f, LL_ENOMEM, "pool postgres: out of memory");
        job_end(j);
    }
}

static void job_cancel(ll_future *f, void *arg) {
    (void)f;
    pq_job *j = arg;
    j->cancelled = true;
    if (j->acq) ll_future_cancel(j->acq);
    else if (j->q) ll_future_cancel(j->q); /* the query's cancel rules apply */
}

/* A query with text parameters, or a script: the job carries copies of both. */
static ll_future *text_job(ll_pg_pool *p, const char *sql, int nparams, const char *const *values,
                           bool script) {
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    ll_future_set_label(f, script ? "pg pool exec" : "pg pool query");
    if (!sql || nparams < 0 || nparams > 65535 || (nparams && !values)) {
        ll_future_fail(f, LL_EINVAL, "pool postgres: invalid query arguments");
        return f;
    }
    if (p->closed) {
        ll_future_fail(f, LL_EPOOLCLOSED, "pool postgres: closed");
        return f;
    }
    /* the job carries copies: the query is written after the call returned */
    size_t size = sizeof(pq_job) + (size_t)nparams * sizeof(char *) + strlen(sql) + 1;
    for (int i = 0; i < nparams; i++)
        if (values[i]) size += strlen(values[i]) + 1;
    pq_job *j = ll_calloc(1, size);
    if (!j) {
        ll_future_fail(f, LL_ENOMEM, "pool postgres: out of memory");
        return f;
    }
    j->p = p;
    j->f = ll_future_ref(f);
    j->nparams = nparams;
    j->values = (char **)(j + 1);
    char *o = (char *)(j->values + nparams);
    for (int i = 0; i < nparams; i++) {
        if (!values[i]) continue;
        size_t l = strlen(values[i]) + 1;
        memcpy(o, values[i], l);
        j->values[i] = o;
        o += l;
    }
    j->sql = o;
    memcpy(o, sql, strlen(sql) + 1);
    j->script = script;
    p->jobs++;
    ll_future_on_cancel(f, job_cancel, j);
    job_start(j);
    return f;
}

ll_future *ll_pg_pool_queryv(ll_pg_pool *p, const char *sql, int nparams,
                             const char *const *values) {
    LL_REQUIRE_ARG(p, "pool");
    LL_REQUIRE_ARG(sql, "sql");
    return text_job(p, sql, nparams, values, false);
}

ll_future *ll_pg_pool_query(ll_pg_pool *p, const char *sql, int nparams, ...) {
    LL_REQUIRE_ARG(p, "pool");
    LL_REQUIRE_ARG(sql, "sql");
    const char *small[16];
    const char **v = small;
    if (nparams > 16 && nparams <= 65535) {
        v = ll_malloc((size_t)nparams * sizeof *v);
        if (!v) return NULL;
    }
    int n = nparams > 0 && nparams <= 65535 ? nparams : 0;
    va_list ap;
    va_start(ap, nparams);
    for (int i = 0; i < n; i++) v[i] = va_arg(ap, const char *);
    va_end(ap);
    ll_future *f = ll_pg_pool_queryv(p, sql, nparams, n ? v : NULL);
    if (v != small) ll_free(v);
    return f;
}

ll_future *ll_pg_pool_exec(ll_pg_pool *p, const char *sql) {
    LL_REQUIRE_ARG(p, "pool");
    LL_REQUIRE_ARG(sql, "sql");
    return text_job(p, sql, 0, NULL, true);
}

/* The typed form (params.c encoded the parameters into enc, adopted here; f is the caller's). */
ll_future *ll__pg_pool_query_enc(ll_pg_pool *p, const char *sql, pg_enc *enc, ll_future *f) {
    if (p->closed) {
        ll_free(enc);
        ll_future_fail(f, LL_EPOOLCLOSED, "pool postgres: closed");
        return f;
    }
    size_t sl = strlen(sql) + 1;
    pq_job *j = ll_calloc(1, sizeof(pq_job) + sl);
    if (!j) {
        ll_free(enc);
        ll_future_fail(f, LL_ENOMEM, "pool postgres: out of memory");
        return f;
    }
    j->p = p;
    j->f = ll_future_ref(f);
    j->enc = enc;
    j->sql = (char *)(j + 1);
    memcpy(j->sql, sql, sl);
    p->jobs++;
    ll_future_on_cancel(f, job_cancel, j);
    job_start(j);
    return f;
}
