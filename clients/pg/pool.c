/*
 * pool.c — a pool of PostgreSQL connections on libloop's generic pool (libloop/pool.h).
 *
 * Design notes:
 * - The generic pool does the bookkeeping (limits, waiters, idle time, lifetime, upkeep); this
 *   file supplies the vtable: connect is ll_pg_connect with the pool's options, is_alive reads
 *   whatever the server sent while the connection sat idle (a server that restarted or
 *   terminated the backend is noticed before a query is written), close is ll_pg_close, and reset
 *   brings a returned connection back to a clean session the way asyncpg does.
 * - Release decides what a connection is: lost, or with anything still pending (a query, a COPY, a
 *   waiter for notifications) means BROKEN and it is closed — never handed to the next user with
 *   someone else's reply in flight. Otherwise it is reset: ROLLBACK if a transaction is open,
 *   then pg_advisory_unlock_all(), CLOSE ALL, UNLISTEN *, RESET ALL as one script (one round
 *   trip). Prepared statements stay cached across leases: they hold no session state a user
 *   could see.
 * - The pool structure outlives ll_pg_pool_free() while connections are still lent (their
 *   release must remain valid) and while one-shot queries are in flight.
 * - ll_pg_pool_query is a chain of callbacks (acquire → query → release), no task: a thousand
 *   concurrent one-shot queries cost a thousand small records, not a thousand stacks.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include "libloop/pool.h"
#include "pg_internal.h"

struct ll_pg_pool {
    ll_pool *pool;
    ll_loop *loop;
    char *conninfo;          /* the pool's one key */
    ll_pg_opts conn_opts;
    size_t lent;             /* connections handed out and not yet released */
    size_t jobs;             /* one-shot queries in flight */
    bool closed;
};

static void maybe_free(ll_pg_pool *p) {
    if (!p->closed || p->lent || p->jobs) return;
    ll_free(p->conninfo);
    ll_free(p);
}

/* ---- the vtable ---- */

static ll_future *vt_connect(void *arg, const char *key) {
    ll_pg_pool *p = arg;
    return ll_pg_connect(key, &p->conn_opts);
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
    return PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

static void vt_close(void *arg, void *conn) {
    (void)arg;
    ll_pg_conn *c = conn;
    c->pool = NULL; /* the pool's own close frees it */
    ll_pg_close(c);
}

/* The reset's future. Cancelling it (reset_timeout, ll_pg_pool_free) must not send a cancel
 * request and wait: the pool closes the connection next anyway. So the cancel marks the
 * connection lost, which fails the script at once; the pool's close() then frees it. */
typedef struct reset_job {
    ll_future *outer;
    ll_pg_conn *c;
} reset_job;

static void on_reset_script(ll_future *inner, void *arg) {
    reset_job *j = arg;
    if (ll_future_code(inner) == 0) ll_future_resolve(j->outer, NULL, NULL);
    else ll__pg_fail_from(j->outer, inner); /* no-op when already cancelled */
    ll_future_free(inner);
    ll_future_free(j->outer);
    ll_free(j);
}

static void reset_cancel(ll_future *outer, void *arg) {
    reset_job *j = arg;
    ll_future_set_cancelled(outer);
    ll__pg_broken(j->c, "pool reset cancelled: connection closed");
}

static ll_future *vt_reset(void *arg, void *conn) {
    ll_pg_pool *p = arg;
    ll_pg_conn *c = conn;
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
    ll_future *inner = ll_pg_exec(c, in_tx ? "ROLLBACK; SELECT pg_advisory_unlock_all(); "
                                             "CLOSE ALL; UNLISTEN *; RESET ALL"
                                           : "SELECT pg_advisory_unlock_all(); CLOSE ALL; "
                                             "UNLISTEN *; RESET ALL");
    j->outer = ll_future_ref(f);
    j->c = c;
    if (!inner || ll_future_add_done(inner, on_reset_script, j) != 0) {
        if (inner) ll__pg_broken(c, "out of memory");
        ll_future_free(inner);
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
    p->conn_opts = o.conn;
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
    if (p->conninfo && p->loop) p->pool = ll_pool_new(&vtable, p, &po);
    if (!p->pool) {
        ll_free(p->conninfo);
        ll_free(p);
        return NULL;
    }
    if (o.min_size) ll_pool_warm(p->pool, p->conninfo);
    return p;
}

void ll_pg_pool_free(ll_pg_pool *p) {
    if (!p || p->closed) return;
    p->closed = true;
    ll_pool_free(p->pool);
    maybe_free(p);
}

/* ---- acquire and release ---- */

typedef struct acq {
    ll_pg_pool *p;
    ll_future *outer, *inner;
} acq;

static void on_inner(ll_future *inner, void *arg) {
    acq *a = arg;
    ll_pg_pool *p = a->p;
    if (ll_future_code(inner) == 0) {
        ll_pg_conn *c = ll_future_value(inner);
        c->pool = p;
        p->lent++;
        /* resolved even if the caller meant to give up: it holds the connection (pool.h) */
        ll_future_on_cancel(a->outer, NULL, NULL);
        if (ll_future_resolve(a->outer, c, NULL) != 0) {
            /* the caller's future was settled meanwhile: nobody holds it, give it back */
            ll_pg_pool_release(p, c);
        }
    } else {
        ll__pg_fail_from(a->outer, inner);
    }
    p->jobs--;
    ll_future_free(a->outer);
    ll_future_free(inner);
    ll_free(a);
    maybe_free(p);
}

static void acq_cancel(ll_future *outer, void *arg) {
    (void)outer;
    acq *a = arg;
    ll_future_cancel(a->inner); /* settles through on_inner */
}

ll_future *ll_pg_pool_acquire(ll_pg_pool *p) {
    LL_REQUIRE_ARG(p, "pool");
    if (!p) return NULL;
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg pool acquire");
    acq *a = p->closed ? NULL : ll_calloc(1, sizeof *a);
    if (!a) {
        ll_future_fail(f, p->closed ? LL_EPOOLCLOSED : LL_ENOMEM, "pool postgres: %s",
                       p->closed ? "closed" : "out of memory");
        return f;
    }
    a->p = p;
    a->outer = ll_future_ref(f);
    a->inner = ll_pool_acquire(p->pool, p->conninfo);
    if (!a->inner || ll_future_add_done(a->inner, on_inner, a) != 0) {
        if (a->inner) ll_future_cancel(a->inner);
        ll_future_free(a->inner);
        ll_future_free(a->outer);
        ll_free(a);
        ll_future_fail(f, LL_ENOMEM, "pool postgres: out of memory");
        return f;
    }
    p->jobs++;
    ll_future_on_cancel(f, acq_cancel, a);
    return f;
}

int ll_pg_pool_release(ll_pg_pool *p, ll_pg_conn *c) {
    if (!p || !c || c->pool != p) return LL_ENOENT;
    ll_pool_state st = LL_POOL_RESET;
    if (!ll_pg_is_ok(c) || c->nsent || c->nheld || c->copy.state != COPY_NONE || c->barrier ||
        c->waiters_head)
        st = LL_POOL_BROKEN;
    int rc = ll_pool_release(p->pool, c, st);
    if (rc == 0) {
        p->lent--;
        maybe_free(p);
    }
    return rc;
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
} pq_job;

static void job_start(pq_job *j);

static void job_end(pq_job *j) {
    ll_pg_pool *p = j->p;
    ll_future_free(j->f);
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
    ll_future *q = ll_pg_queryv(c, j->sql, j->nparams, (const char *const *)j->values);
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

ll_future *ll_pg_pool_queryv(ll_pg_pool *p, const char *sql, int nparams,
                             const char *const *values) {
    LL_REQUIRE_ARG(p, "pool");
    LL_REQUIRE_ARG(sql, "sql");
    if (!p) return NULL;
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg pool query");
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
    p->jobs++;
    ll_future_on_cancel(f, job_cancel, j);
    job_start(j);
    return f;
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
