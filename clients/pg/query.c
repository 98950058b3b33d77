/*
 * query.c — the query calls: parameters in, a request out (pipeline.c sends it).
 *
 * Design notes:
 * - Every call returns a pending future and never settles it inside the call, also when the
 *   connection is already lost (a failed future is fine then: the code path of the caller is the
 *   same). Arguments are validated here, so a request that reaches libpq is always well formed:
 *   libpq refusing one would leave a half-written pipeline segment.
 */
#include <stdarg.h>
#include <string.h>
#include "pg_internal.h"

static ll_future *refuse(ll_future *f, ll_pg_conn *c) {
    if (c->state == PG_BROKEN)
        ll_future_fail(f, LL_EPG_CONN, "postgres %s: connection lost earlier", c->peer);
    else
        ll_future_fail(f, LL_ECLOSED, "postgres %s: connection closed", c->peer ? c->peer : "?");
    return f;
}

static ll_future *start(ll_pg_conn *c, pg_req_kind kind, const char *sql, int nparams,
                        const char *const *values, const int *lengths, const int *formats) {
    ll_future *f = ll_future_new(c ? c->loop : NULL);
    if (!f) return NULL;
    ll_future_set_label(f, kind == REQ_COPY ? "pg copy" : "pg query");
    if (!c || !sql || nparams < 0 || nparams > 65535 || (nparams > 0 && !values)) {
        ll_future_fail(f, LL_EINVAL, "postgres query: invalid argument (%s)",
                       !c ? "no connection" : !sql ? "no SQL" : "parameters");
        return f;
    }
    for (int i = 0; i < nparams; i++) {
        if (!values[i]) continue;
        bool binary = formats && formats[i];
        if (binary && (!lengths || lengths[i] < 0)) {
            ll_future_fail(f, LL_EINVAL, "postgres query: binary parameter $%d has no length",
                           i + 1);
            return f;
        }
        /* libpq reads a text parameter up to its first zero byte and ignores the length: one
         * inside the given length would silently cut the value */
        if (!binary && lengths && lengths[i] > 0 && memchr(values[i], 0, (size_t)lengths[i])) {
            ll_future_fail(f, LL_EINVAL,
                           "postgres query: text parameter $%d contains a zero byte (PostgreSQL "
                           "text cannot hold one: send it as binary, format 1, e.g. for bytea)",
                           i + 1);
            return f;
        }
    }
    if (c->state != PG_READY) return refuse(f, c);
    pg_req *r = ll__pg_req_new(c, kind, sql, nparams, values, lengths, formats);
    if (!r) {
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory for a query", c->peer);
        return f;
    }
    r->f = ll_future_ref(f);
    ll__pg_submit(c, r);
    return f;
}

ll_future *ll_pg_query_params(ll_pg_conn *c, const char *sql, int nparams,
                              const char *const *values, const int *lengths, const int *formats) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    return start(c, REQ_QUERY, sql, nparams, values, lengths, formats);
}

ll_future *ll_pg_queryv(ll_pg_conn *c, const char *sql, int nparams, const char *const *values) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    return start(c, REQ_QUERY, sql, nparams, values, NULL, NULL);
}

ll_future *ll_pg_query(ll_pg_conn *c, const char *sql, int nparams, ...) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    const char *small[16];
    const char **v = small;
    if (nparams > 16 && nparams <= 65535) {
        v = ll_malloc((size_t)nparams * sizeof *v);
        if (!v) {
            ll_future *f = ll_future_new(c ? c->loop : NULL);
            if (f) ll_future_fail(f, LL_ENOMEM, "postgres query: out of memory");
            return f;
        }
    }
    int n = nparams > 0 && nparams <= 65535 ? nparams : 0;
    va_list ap;
    va_start(ap, nparams);
    for (int i = 0; i < n; i++) v[i] = va_arg(ap, const char *);
    va_end(ap);
    ll_future *f = start(c, REQ_QUERY, sql, nparams, n ? v : NULL, NULL, NULL);
    if (v != small) ll_free(v);
    return f;
}

ll_future *ll_pg_exec(ll_pg_conn *c, const char *sql) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    return start(c, REQ_EXEC, sql, 0, NULL, NULL, NULL);
}
