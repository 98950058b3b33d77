/*
 * pool_forms.c — the pool forms of the calls that hold a connection for more than one query:
 * streamed rows (ll_pg_pool_rows) and executemany. (The one-query forms are pool.c's jobs;
 * prepared statements are stmt.c's.)
 *
 * Design notes:
 * - Both are the connection forms (rows.c, many.c) on a connection acquired from the pool, used
 *   only through their public calls, and given back on every path: success, a failed step, a
 *   deadline, a cancellation. The pool's release decides what a connection with work still
 *   pending is (closed and replaced, never lent with someone else's reply in flight).
 * - They await, so they run in a task, as their connection forms do.
 */
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

struct ll_pg_pool_rows {
    ll_pg_pool *p;     /* a reference */
    ll_pg_conn *c;     /* lent until close, or NULL */
    ll_pg_rows *rows;  /* the stream on c, or NULL */
    char errmsg[256];  /* the acquire's failure */
};

/* Acquire a connection from a task: 0 and *out, or the await's code with the reason in msg. */
static int acquire(ll_pg_pool *p, ll_pg_conn **out, char *msg, size_t n) {
    *out = NULL;
    ll_future *a = ll_pg_pool_acquire(p);
    if (!a) {
        snprintf(msg, n, "pool postgres: out of memory");
        return LL_ENOMEM;
    }
    int rc = ll_await(a);
    if (ll_future_get_state(a) == LL_FUTURE_RESOLVED) {
        if (rc == 0) *out = ll_future_value(a);
        else ll_pg_pool_release(p, ll_future_value(a)); /* lent as the wait ended: give it back */
    } else if (rc) {
        snprintf(msg, n, "%s", ll_future_errmsg(a));
    }
    ll_future_free(a);
    return rc;
}

int ll_pg_pool_rows_open(ll_pg_pool_rows **out, ll_pg_pool *p, const char *sql, int n,
                         const ll_pg_param *params, const ll_pg_rows_opts *opts) {
    if (out) *out = NULL;
    if (!out || !p || !sql) return LL_EINVAL;
    if (!ll_task_current()) return LL_ENOTASK;
    ll_pg_pool_rows *it = ll_calloc(1, sizeof *it);
    if (!it) return LL_ENOMEM;
    it->p = p;
    ll__pg_pool_ref(p);
    *out = it;
    int rc = acquire(p, &it->c, it->errmsg, sizeof it->errmsg);
    if (rc) return rc;
    return ll_pg_rows_open(&it->rows, it->c, sql, n, params, opts);
}

int ll_pg_pool_rows_next(ll_pg_pool_rows *it, ll_pg_result **chunk) {
    if (chunk) *chunk = NULL;
    if (!it || !chunk) return LL_EINVAL;
    if (!it->rows) return LL_ESTATE; /* the open failed */
    return ll_pg_rows_next(it->rows, chunk);
}

const char *ll_pg_pool_rows_errmsg(const ll_pg_pool_rows *it) {
    if (!it) return "ll_pg_pool_rows_errmsg: rows is NULL";
    return it->rows ? ll_pg_rows_errmsg(it->rows) : it->errmsg;
}

int ll_pg_pool_rows_close(ll_pg_pool_rows *it) {
    if (!it) return 0;
    int rc = ll_pg_rows_close(it->rows);
    if (it->c) ll_pg_pool_release(it->p, it->c);
    ll__pg_pool_unref(it->p);
    ll_free(it);
    return rc;
}

int ll_pg_pool_executemany(ll_pg_pool *p, const char *sql, int nparams, size_t nrows,
                           const ll_pg_param *params, const ll_pg_many_opts *opts,
                           ll_pg_many_error *err) {
    if (err) memset(err, 0, sizeof *err);
    if (!p || !sql || nparams < 0 || (nrows && nparams && !params)) return LL_EINVAL;
    if (!ll_task_current()) return LL_ENOTASK;
    ll_pg_conn *c;
    char msg[256];
    int rc = acquire(p, &c, msg, sizeof msg);
    if (rc) {
        if (err) {
            err->code = rc;
            err->row = 0;
            snprintf(err->message, sizeof err->message, "%s", msg);
        }
        return rc;
    }
    rc = ll_pg_executemany(c, sql, nparams, nrows, params, opts, err);
    ll_pg_pool_release(p, c);
    return rc;
}
