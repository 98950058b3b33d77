/*
 * stmt.c — explicit prepared statements (ll_pg_stmt, asyncpg's conn.prepare()): a connection's,
 * prepared with Parse + Describe and executed by name, and a pool's, executed on any pooled
 * connection through that connection's statement cache.
 *
 * Design notes:
 * - A connection's statement is a pg_stmt outside the cache (prepared.c: ll__pg_stmt_new_explicit)
 *   carried by its requests with RQF_STMT: pipeline.c writes Bind/Execute of that name and never
 *   re-prepares it. The automatic cache silently re-prepares after a schema change; an explicit
 *   statement must not, because its caller read its columns: the server's 0A000 reaches the
 *   caller instead. Names come from the connection's counter and are never reused, so a stale
 *   name can only fail ("does not exist"), never run another statement.
 * - Prepare is one request: Parse and Describe (RQF_DESCRIBE) with its own Sync, pipelined
 *   behind what is in flight; the Describe's PGresult gives the parameter types and columns.
 * - A statement must not outlive its session: the connection keeps a list of its statements and
 *   detaches them when it ends (LL_ECLOSED) or goes back to its pool (LL_ESTATE), as asyncpg
 *   refuses a statement whose connection was released. A detached statement fails every call and
 *   is only freed; the pool's reset deallocates its server statement ("ll_p" names are not the
 *   cache's "ll_s" ones, which the reset keeps).
 * - A pool's statement holds only what Describe said (no server statement): each execution
 *   is a typed pool query whose parameter types are the statement's, so every connection
 *   prepares it once in its own cache under the same (SQL, types) key.
 * - Parameters are converted to the statement's types before encoding (params.c:
 *   ll__pg_param_coerce), so a binary value is never read by the server as another type.
 */
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

struct ll_pg_stmt {
    ll_pg_conn *conn;               /* a connection's statement while attached, else NULL */
    ll_pg_pool *pool;               /* a pool's statement (holds a reference), else NULL */
    struct ll_pg_stmt *prev, *next; /* in conn->xstmts */
    pg_stmt *st;                    /* a connection's server statement (a reference) */
    int detached;                   /* 0, or the code every call fails with */
    int nparams, ncols;
    char **cnames;
    unsigned *ptypes, *ctypes;
    char *sql;
};

/* ---- building ---- */

static ll_pg_stmt *stmt_alloc(int np, int nc, size_t namebytes, const char *sql) {
    size_t sl = strlen(sql) + 1;
    size_t size = sizeof(ll_pg_stmt) + (size_t)nc * sizeof(char *) +
                  (size_t)(np + nc) * sizeof(unsigned) + namebytes + sl;
    char *mem = ll_malloc(size);
    if (!mem) return NULL;
    ll_pg_stmt *s = (ll_pg_stmt *)mem;
    memset(s, 0, sizeof *s);
    s->nparams = np;
    s->ncols = nc;
    s->cnames = (char **)(mem + sizeof *s);
    s->ptypes = (unsigned *)(s->cnames + nc);
    s->ctypes = s->ptypes + np;
    s->sql = (char *)(s->ctypes + nc);
    memcpy(s->sql, sql, sl);
    return s;
}

/* From a Describe result. */
static ll_pg_stmt *stmt_from_desc(const PGresult *d, const char *sql) {
    int np = PQnparams(d), nc = PQnfields(d);
    size_t names = 0;
    for (int i = 0; i < nc; i++) names += strlen(PQfname(d, i)) + 1;
    ll_pg_stmt *s = stmt_alloc(np, nc, names, sql);
    if (!s) return NULL;
    char *o = s->sql + strlen(sql) + 1;
    for (int i = 0; i < np; i++) s->ptypes[i] = PQparamtype(d, i);
    for (int i = 0; i < nc; i++) {
        size_t l = strlen(PQfname(d, i)) + 1;
        memcpy(o, PQfname(d, i), l);
        s->cnames[i] = o;
        o += l;
        s->ctypes[i] = PQftype(d, i);
    }
    return s;
}

/* A copy of what src describes (for a pool's statement). */
static ll_pg_stmt *stmt_clone(const ll_pg_stmt *src) {
    size_t names = 0;
    for (int i = 0; i < src->ncols; i++) names += strlen(src->cnames[i]) + 1;
    ll_pg_stmt *s = stmt_alloc(src->nparams, src->ncols, names, src->sql);
    if (!s) return NULL;
    char *o = s->sql + strlen(s->sql) + 1;
    memcpy(s->ptypes, src->ptypes, (size_t)src->nparams * sizeof(unsigned));
    for (int i = 0; i < src->ncols; i++) {
        size_t l = strlen(src->cnames[i]) + 1;
        memcpy(o, src->cnames[i], l);
        s->cnames[i] = o;
        o += l;
        s->ctypes[i] = src->ctypes[i];
    }
    return s;
}

static void attach(ll_pg_conn *c, ll_pg_stmt *s, pg_stmt *st) {
    s->conn = c;
    s->st = st;
    s->prev = NULL;
    s->next = c->xstmts;
    if (c->xstmts) c->xstmts->prev = s;
    c->xstmts = s;
}

static void unlink_stmt(ll_pg_stmt *s) {
    ll_pg_conn *c = s->conn;
    if (!c) return;
    if (s->prev) s->prev->next = s->next;
    else c->xstmts = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->conn = NULL;
}

void ll__pg_stmts_detach(ll_pg_conn *c, int code) {
    while (c->xstmts) {
        ll_pg_stmt *s = c->xstmts;
        unlink_stmt(s);
        s->detached = code;
    }
}

/* ---- prepare on a connection ---- */

typedef struct prep_job {
    ll_future *outer, *inner;
    ll_pg_conn *c;  /* a reference: the done callback runs from the loop, after a close maybe */
    pg_stmt *st;    /* a reference until the statement adopts it */
} prep_job;

static void prep_done(ll_future *inner, void *arg) {
    prep_job *j = arg;
    ll_pg_conn *c = j->c;
    int rc = ll_future_code(inner);
    /* only this settles the outer (its cancel hook cancels the inner, which brings us here) */
    if (rc == LL_ECANCELED) {
        ll_future_set_cancelled(j->outer);
    } else if (rc != 0) {
        ll__pg_fail_from(j->outer, inner);
    } else if (c->state != PG_READY) {
        ll_future_fail(j->outer, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                       "postgres prepare: the connection %s before the statement could be used",
                       c->state == PG_BROKEN ? "was lost" : "was closed");
    } else {
        ll_pg_stmt *s = stmt_from_desc(ll__pg_result_pq(ll_pg_result_of(inner)), j->st->sql);
        if (!s) {
            ll_future_fail(j->outer, LL_ENOMEM, "postgres %s: out of memory for a statement",
                           c->peer);
        } else {
            attach(c, s, j->st);
            j->st = NULL;
            if (ll_future_resolve(j->outer, s, (ll_value_free)ll_pg_stmt_free) != 0)
                ll_pg_stmt_free(s);
        }
    }
    ll__pg_stmt_unref(j->st);
    ll__pg_conn_unref(c);
    ll_future_free(inner);
    ll_future_free(j->outer);
    ll_free(j);
}

static void prep_cancel(ll_future *outer, void *arg) {
    (void)outer;
    prep_job *j = arg;
    ll_future_cancel(j->inner); /* the query's cancel rules; prep_done settles the outer */
}

ll_future *ll_pg_prepare(ll_pg_conn *c, const char *sql, const ll_pg_prepare_opts *opts) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    int nt = opts ? opts->ntypes : 0;
    if (nt < 0 || nt > 65535 || (nt && !opts->types))
        return ll_future_failed(c->loop, LL_EINVAL, "ll_pg_prepare: %s",
                                nt && !opts->types ? "opts->types is NULL"
                                                   : "opts->ntypes out of range");
    if (c->state != PG_READY)
        return ll_future_failed(c->loop, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                                "postgres %s: connection %s", c->peer ? c->peer : "?",
                                c->state == PG_BROKEN ? "lost earlier" : "closed");
    ll_future *outer = ll_future_new(c->loop);
    ll_future *inner = outer ? ll_future_new(c->loop) : NULL;
    prep_job *j = inner ? ll_malloc(sizeof *j) : NULL;
    pg_stmt *st = j ? ll__pg_stmt_new_explicit(c, sql) : NULL;
    pg_req *r = st ? ll__pg_req_new(c, REQ_QUERY, sql, nt, NULL, NULL, NULL) : NULL;
    if (r && nt) {
        r->types = ll_malloc((size_t)nt * sizeof(Oid));
        if (r->types)
            for (int i = 0; i < nt; i++) r->types[i] = opts->types[i];
    }
    if (!r || (nt && !r->types) || ll_future_add_done(inner, prep_done, j) != 0) {
        ll__pg_req_free(r);
        ll__pg_stmt_unref(st);
        ll_free(j);
        ll_future_free(inner);
        if (!outer) return NULL;
        ll_future_fail(outer, LL_ENOMEM, "postgres %s: out of memory for a statement", c->peer);
        return outer;
    }
    ll_future_set_label(outer, "pg prepare");
    ll_future_set_label(inner, "pg query");
    j->outer = ll_future_ref(outer);
    j->inner = inner;
    j->c = c;
    c->refs++;
    j->st = st;
    st->refs++; /* the request's */
    r->stmt = st;
    r->flags |= RQF_STMT | RQF_DESCRIBE | RQF_SOLO;
    r->f = ll_future_ref(inner);
    ll_future_on_cancel(outer, prep_cancel, j);
    ll__pg_submit(c, r);
    return outer;
}

/* ---- prepare on a pool: acquire, prepare, give back ---- */

typedef struct pprep_job {
    ll_pg_pool *p;          /* a reference */
    ll_future *outer, *cur;
    ll_pg_conn *c;          /* lent by the pool while preparing */
    bool cancelled;
    ll_pg_prepare_opts opts;
    char *sql;              /* with opts.types, in the same allocation */
} pprep_job;

static void pprep_end(pprep_job *j) {
    ll__pg_pool_unref(j->p);
    ll_future_free(j->outer);
    ll_free(j);
}

static void pprep_prepared(ll_future *f, void *arg) {
    pprep_job *j = arg;
    j->cur = NULL;
    int rc = ll_future_code(f);
    ll_pg_stmt *cs = rc == 0 ? ll_future_take(f) : NULL;
    /* the connection is given back first: that detaches cs (its server statement goes with the
     * reset), whatever happens next */
    ll_pg_pool_release(j->p, j->c);
    j->c = NULL;
    if (rc == LL_ECANCELED || (rc == 0 && j->cancelled)) {
        ll_future_set_cancelled(j->outer);
    } else if (rc != 0) {
        ll__pg_fail_from(j->outer, f);
    } else {
        ll_pg_stmt *s = stmt_clone(cs);
        if (!s) {
            ll_future_fail(j->outer, LL_ENOMEM, "pool postgres: out of memory for a statement");
        } else {
            s->pool = j->p;
            ll__pg_pool_ref(j->p);
            if (ll_future_resolve(j->outer, s, (ll_value_free)ll_pg_stmt_free) != 0)
                ll_pg_stmt_free(s);
        }
    }
    ll_pg_stmt_free(cs);
    ll_future_free(f);
    pprep_end(j);
}

static void pprep_acquired(ll_future *a, void *arg) {
    pprep_job *j = arg;
    j->cur = NULL;
    int rc = ll_future_code(a);
    if (rc != 0 || j->cancelled) {
        if (rc == 0) ll_pg_pool_release(j->p, ll_future_value(a));
        if (rc == 0 || rc == LL_ECANCELED) ll_future_set_cancelled(j->outer);
        else ll__pg_fail_from(j->outer, a);
        ll_future_free(a);
        pprep_end(j);
        return;
    }
    ll_pg_conn *c = ll_future_value(a);
    ll_future_free(a);
    ll_future *f = ll_pg_prepare(c, j->sql, &j->opts);
    if (!f || ll_future_add_done(f, pprep_prepared, j) != 0) {
        if (f) ll_future_cancel(f);
        ll_future_free(f);
        ll_pg_pool_release(j->p, c);
        ll_future_fail(j->outer, LL_ENOMEM, "pool postgres: out of memory");
        pprep_end(j);
        return;
    }
    j->c = c;
    j->cur = f;
}

static void pprep_cancel(ll_future *outer, void *arg) {
    (void)outer;
    pprep_job *j = arg;
    j->cancelled = true;
    if (j->cur) ll_future_cancel(j->cur); /* its callback settles the outer */
}

ll_future *ll_pg_pool_prepare(ll_pg_pool *p, const char *sql, const ll_pg_prepare_opts *opts) {
    LL_REQUIRE_ARG(p, "pool");
    LL_REQUIRE_ARG(sql, "sql");
    ll_loop *loop = ll__pg_pool_loop(p);
    int nt = opts ? opts->ntypes : 0;
    if (nt < 0 || nt > 65535 || (nt && !opts->types))
        return ll_future_failed(loop, LL_EINVAL, "ll_pg_pool_prepare: %s",
                                nt && !opts->types ? "opts->types is NULL"
                                                   : "opts->ntypes out of range");
    if (ll__pg_pool_closed(p))
        return ll_future_failed(loop, LL_EPOOLCLOSED, "pool postgres: closed");
    ll_future *outer = ll_future_new(loop);
    if (!outer) return NULL;
    ll_future_set_label(outer, "pg pool prepare");
    size_t sl = strlen(sql) + 1;
    pprep_job *j = ll_calloc(1, sizeof *j + (size_t)nt * sizeof(unsigned) + sl);
    if (!j) {
        ll_future_fail(outer, LL_ENOMEM, "pool postgres: out of memory");
        return outer;
    }
    unsigned *types = (unsigned *)(j + 1);
    if (nt) memcpy(types, opts->types, (size_t)nt * sizeof(unsigned));
    j->opts.ntypes = nt;
    j->opts.types = nt ? types : NULL;
    j->sql = (char *)(types + nt);
    memcpy(j->sql, sql, sl);
    j->p = p;
    ll__pg_pool_ref(p);
    j->outer = ll_future_ref(outer);
    j->cur = ll_pg_pool_acquire(p);
    if (!j->cur || ll_future_add_done(j->cur, pprep_acquired, j) != 0) {
        if (j->cur) ll_future_cancel(j->cur);
        ll_future_free(j->cur);
        ll_future_fail(outer, LL_ENOMEM, "pool postgres: out of memory");
        pprep_end(j);
        return outer;
    }
    ll_future_on_cancel(outer, pprep_cancel, j);
    return outer;
}

/* ---- reading ---- */

int ll_pg_stmt_nparams(const ll_pg_stmt *s) { return s ? s->nparams : 0; }

unsigned ll_pg_stmt_param_type(const ll_pg_stmt *s, int i) {
    return s && i >= 0 && i < s->nparams ? s->ptypes[i] : 0;
}

int ll_pg_stmt_cols(const ll_pg_stmt *s) { return s ? s->ncols : 0; }

const char *ll_pg_stmt_colname(const ll_pg_stmt *s, int col) {
    return s && col >= 0 && col < s->ncols ? s->cnames[col] : NULL;
}

unsigned ll_pg_stmt_coltype(const ll_pg_stmt *s, int col) {
    return s && col >= 0 && col < s->ncols ? s->ctypes[col] : 0;
}

const char *ll_pg_stmt_sql(const ll_pg_stmt *s) { return s ? s->sql : NULL; }

ll_pg_conn *ll_pg_stmt_conn(const ll_pg_stmt *s) { return s ? s->conn : NULL; }

ll_pg_stmt *ll_pg_stmt_of(const ll_future *f) {
    return ll_future_value_as(f, (ll_value_free)ll_pg_stmt_free);
}

/* ---- executing ---- */

/* Bind/Execute of a connection's statement with the encoded parameters e. */
static void stmt_submit(ll_pg_stmt *s, const pg_enc *e, ll_future *f) {
    ll_pg_conn *c = s->conn;
    if (c->state != PG_READY) {
        ll_future_fail(f, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                       "postgres %s: connection %s", c->peer ? c->peer : "?",
                       c->state == PG_BROKEN ? "lost earlier" : "closed");
        return;
    }
    pg_req *r = ll__pg_req_new(c, REQ_QUERY, s->sql, e->n, (const char *const *)e->values,
                               e->lengths, e->formats);
    if (!r) {
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory for a query", c->peer);
        return;
    }
    r->result_format = e->result_format;
    r->stmt = s->st;
    s->st->refs++;
    r->flags |= RQF_STMT;
    r->f = ll_future_ref(f);
    ll__pg_submit(c, r);
}

ll_future *ll_pg_stmt_query(ll_pg_stmt *s, int n, const ll_pg_param *params,
                            const ll_pg_query_opts *opts) {
    LL_REQUIRE_ARG(s, "stmt");
    ll_loop *loop = s->conn ? s->conn->loop : s->pool ? ll__pg_pool_loop(s->pool) : NULL;
    if (s->detached == LL_ESTATE)
        return ll_future_failed(loop, LL_ESTATE,
                                "ll_pg_stmt_query: the statement's connection was given back to "
                                "its pool (prepare it again on the connection you hold, or use "
                                "ll_pg_pool_prepare)");
    if (s->detached)
        return ll_future_failed(loop, s->detached, "ll_pg_stmt_query: the statement's "
                                                   "connection is closed");
    if (n != s->nparams || (n && !params))
        return ll_future_failed(loop, LL_EINVAL,
                                "ll_pg_stmt_query: the statement takes %d parameter%s, %d given%s",
                                s->nparams, s->nparams == 1 ? "" : "s", n,
                                n && !params ? " (params is NULL)" : "");
    /* the parameters as the statement's types (a number's text kept in bufs) */
    enum { BUF = 48 };
    ll_pg_param small[8];
    char smallbuf[8][BUF];
    ll_pg_param *cp = small;
    char *bufs = &smallbuf[0][0];
    if (n > 8) {
        cp = ll_malloc((size_t)n * (sizeof *cp + BUF));
        if (!cp) return NULL;
        bufs = (char *)(cp + n);
    }
    ll_future *f = ll_future_new(loop);
    if (!f) goto out;
    ll_future_set_label(f, s->pool ? "pg pool query" : "pg query");
    for (int i = 0; i < n; i++) {
        char why[200];
        int rc = ll__pg_param_coerce(&params[i], s->ptypes[i], &cp[i], bufs + (size_t)i * BUF,
                                     BUF, why, sizeof why);
        if (rc) {
            ll_future_fail(f, rc, "ll_pg_stmt_query: parameter $%d: %s", i + 1, why);
            goto out;
        }
    }
    pg_enc *e = ll__pg_enc_new(f, s->sql, n, cp, opts && opts->text_results ? 0 : 1);
    if (!e) goto out; /* f failed, naming the parameter */
    if (s->pool) {
        f = ll__pg_pool_query_enc(s->pool, s->sql, e, f); /* adopts e */
    } else {
        stmt_submit(s, e, f);
        ll_free(e);
    }
out:
    if (cp != small) ll_free(cp);
    return f;
}

ll_future *ll_pg_stmt_fetchrow(ll_pg_stmt *s, int n, const ll_pg_param *params) {
    LL_REQUIRE_ARG(s, "stmt");
    return ll__pg_fetch_wrap(ll_pg_stmt_query(s, n, params, NULL), false);
}

ll_future *ll_pg_stmt_fetchval(ll_pg_stmt *s, int n, const ll_pg_param *params) {
    LL_REQUIRE_ARG(s, "stmt");
    return ll__pg_fetch_wrap(ll_pg_stmt_query(s, n, params, NULL), true);
}

/* ---- freeing ---- */

void ll_pg_stmt_free(ll_pg_stmt *s) {
    if (!s) return;
    ll_pg_conn *c = s->conn;
    if (c) {
        unlink_stmt(s);
        if (c->state == PG_READY && s->st->sent) {
            /* behind its executions in flight (they hold the pg_stmt); with no task, so inside
             * another task's transaction it waits for the end, never joins or aborts it */
            char sql[48];
            snprintf(sql, sizeof sql, "DEALLOCATE %s", s->st->name);
            ll__pg_query_noreply(c, sql, TXOP_NONE, 0);
        }
    }
    ll__pg_stmt_unref(s->st);
    if (s->pool) ll__pg_pool_unref(s->pool);
    ll_free(s);
}
