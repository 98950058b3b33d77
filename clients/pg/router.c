/*
 * router.c — read routing over a primary pool and a standby pool (libloop/pg_router.h).
 *
 * Design notes:
 * - Lag is per standby host: each standby pool (the one given to ll_pg_router_new and those added
 *   with ll_pg_router_add_standby, one per host) is measured on its own, and a read goes to the
 *   usable standby with the least lag (round-robin among equals). One lag for several hosts would
 *   send reads to a late host because another is on time. The check also names the server that
 *   answered (inet_server_addr/port), so a pool whose conninfo lists several hosts shows which
 *   one was measured.
 * - Each standby's lag is measured by a timer every check_interval, one query on its pool,
 *   never per routed query: routing a read costs a few flag tests. The measure is taken on the standby
 *   (replay timestamp against its clock, 0 when everything received is replayed), so an idle
 *   primary does not make a caught-up standby look late.
 * - A check still unanswered at the next tick after check_timeout is cancelled and counts as
 *   failed: a frozen standby stops getting reads within about check_interval + check_timeout.
 * - Routed work is a chain of callbacks (no task). The router is reference-counted: a query in
 *   flight keeps it (its counters and its primary pool pointer) until it settles, so
 *   ll_pg_router_free may be called with work in flight. The pools are borrowed.
 * - Fallback happens only on connection trouble (the standby pool could not lend a connection, or
 *   the connection was lost: LL_EPG_CONN and the connect errors), when the query is known to be
 *   read-only, so running it again on the primary cannot do anything twice.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "libloop/pg_router.h"
#include "pg_internal.h"

#define MAX_STANDBYS 8

typedef struct sbentry {
    struct ll_pg_router *r;
    ll_pg_pool *pool;
    ll_future *check;         /* the check in flight */
    ll_time check_started;
    bool usable;
    ll_pg_router_standby st;
} sbentry;

struct ll_pg_router {
    ll_loop *loop;
    ll_pg_pool *primary;
    sbentry sb[MAX_STANDBYS];
    size_t nsb;
    unsigned rr;
    ll_pg_router_opts opts;
    int refs;
    bool closed;
    ll_future *tick;          /* the next round of checks */
    ll_pg_router_stats st;
};

static void router_unref(ll_pg_router *r) {
    if (--r->refs == 0) ll_free(r);
}

static bool is_conn_trouble(int code) {
    return code == LL_EPG_CONN || code == LL_ECONNREFUSED || code == LL_ETIMEDOUT ||
           code == LL_EPOOLCLOSED || code == LL_ECLOSED || code == LL_ENOTFOUND ||
           code == LL_EDNS || code == LL_ECONNRESET;
}

/* ---- the lag check ---- */

static const char lag_sql[] =
    "SELECT CASE WHEN NOT pg_is_in_recovery() "
    "OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 1e9) END::float8, "
    "COALESCE(host(inet_server_addr()), 'local') || ':' || COALESCE(inet_server_port(), 0)";

static void schedule(ll_pg_router *r);

static void on_check(ll_future *f, void *arg) {
    sbentry *s = arg;
    ll_pg_router *r = s->r;
    s->check = NULL;
    double lag = -1;
    if (ll_future_code(f) == 0 && ll_pg_double(ll_pg_result_of(f), 0, 0, &lag) == 0) {
        s->st.lag = lag;
        s->usable = r->opts.max_lag < 0 || lag <= r->opts.max_lag;
        const char *who = ll_pg_text(ll_pg_result_of(f), 0, 1);
        snprintf(s->st.server, sizeof s->st.server, "%s", who ? who : "");
    } else {
        s->st.lag = -1;
        s->st.checks_failed++;
        r->st.checks_failed++;
        s->usable = false;
    }
    ll_future_free(f);
}

static void check_one(sbentry *s) {
    ll_pg_router *r = s->r;
    if (s->check) {
        /* the previous one has not answered: past check_timeout it failed (its callback says so) */
        if (ll_now() - s->check_started >= r->opts.check_timeout) ll_future_cancel(s->check);
        return;
    }
    s->check = ll_pg_pool_query(s->pool, lag_sql, 0);
    s->check_started = ll_now();
    s->st.checks++;
    r->st.checks++;
    if (s->check && ll_future_add_done(s->check, on_check, s) != 0) {
        ll_future_cancel(s->check);
        ll_future_free(s->check);
        s->check = NULL;
    }
}

static void on_tick(void *arg) {
    ll_pg_router *r = arg;
    ll_future_free(r->tick);
    r->tick = NULL;
    for (size_t i = 0; i < r->nsb; i++) check_one(&r->sb[i]);
    schedule(r);
}

static void schedule(ll_pg_router *r) {
    double d = r->opts.check_interval;
    /* a check that may time out is looked at again when it does */
    for (size_t i = 0; i < r->nsb; i++) {
        if (!r->sb[i].check) continue;
        double left = r->sb[i].check_started + r->opts.check_timeout - ll_now();
        if (left > 0 && left < d) d = left;
    }
    r->tick = ll_loop_call_later(r->loop, d > 1e-3 ? d : 1e-3, on_tick, r);
}

static void standby_init(ll_pg_router *r, sbentry *s, ll_pg_pool *pool) {
    memset(s, 0, sizeof *s);
    s->r = r;
    s->pool = pool;
    s->st.lag = -1;
}

ll_pg_router *ll_pg_router_new(ll_pg_pool *primary, ll_pg_pool *standby,
                               const ll_pg_router_opts *opts) {
    if (!primary) return NULL;
    ll_loop *loop = ll__pg_loop(opts ? opts->loop : NULL);
    if (!loop) return NULL;
    ll_pg_router *r = ll_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->loop = loop;
    r->primary = primary;
    if (standby) standby_init(r, &r->sb[r->nsb++], standby);
    if (opts) r->opts = *opts;
    r->opts.loop = loop;
    if (r->opts.max_lag == 0) r->opts.max_lag = 10;
    if (r->opts.check_interval <= 0) r->opts.check_interval = 1;
    if (r->opts.check_timeout <= 0) r->opts.check_timeout = 2;
    r->refs = 1;
    r->st.lag = -1;
    if (standby) {
        r->tick = ll_loop_call_later(loop, 0, on_tick, r); /* the first check at once */
        if (!r->tick) {
            ll_free(r);
            return NULL;
        }
    }
    return r;
}

void ll_pg_router_free(ll_pg_router *r) {
    if (!r) return;
    r->closed = true;
    if (r->tick) {
        ll_future_cancel(r->tick);
        ll_future_free(r->tick);
        r->tick = NULL;
    }
    for (size_t i = 0; i < r->nsb; i++) {
        sbentry *s = &r->sb[i];
        if (!s->check) continue;
        ll_future_remove_done(s->check, on_check, s);
        ll_future_cancel(s->check);
        ll_future_free(s->check);
        s->check = NULL;
    }
    router_unref(r);
}

int ll_pg_router_add_standby(ll_pg_router *r, ll_pg_pool *standby) {
    if (!r || !standby || r->closed) return LL_EINVAL;
    if (r->nsb == MAX_STANDBYS) return LL_ETOOLARGE;
    for (size_t i = 0; i < r->nsb; i++)
        if (r->sb[i].pool == standby) return LL_EALREADY;
    if (!r->tick) { /* the first standby: the checks start now */
        r->tick = ll_loop_call_later(r->loop, 0, on_tick, r);
        if (!r->tick) return LL_ENOMEM;
    }
    standby_init(r, &r->sb[r->nsb++], standby);
    return 0;
}

int ll_pg_router_get_standby(const ll_pg_router *r, size_t i, ll_pg_router_standby *out) {
    if (!r || !out) return LL_EINVAL;
    if (i >= r->nsb) return LL_ENOENT;
    *out = r->sb[i].st;
    out->usable = r->sb[i].usable;
    return 0;
}

void ll_pg_router_get_stats(const ll_pg_router *r, ll_pg_router_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!r) return;
    *out = r->st;
    out->lag = -1;
    for (size_t i = 0; i < r->nsb; i++) {
        const sbentry *s = &r->sb[i];
        if (s->usable) out->standby_usable = true;
        if (s->st.lag >= 0 && (out->lag < 0 || s->st.lag < out->lag)) out->lag = s->st.lag;
    }
}

/* The usable standby with the least lag (round-robin among equals), or NULL: the primary. */
static sbentry *to_standby(ll_pg_router *r, bool read_only) {
    sbentry *best = NULL;
    if (read_only && !r->closed) {
        unsigned start = r->rr++;
        for (size_t k = 0; k < r->nsb; k++) {
            sbentry *s = &r->sb[(start + k) % r->nsb];
            if (s->usable && (!best || s->st.lag < best->st.lag)) best = s;
        }
    }
    if (best) {
        r->st.to_standby++;
        best->st.routed++;
    } else {
        r->st.to_primary++;
    }
    return best;
}

/* ---- routed work ---- */

typedef struct rjob {
    ll_pg_router *r;          /* a reference */
    ll_future *f;             /* ours: the caller's future */
    ll_future *inner;
    sbentry *on_standby;      /* the standby it went to, or NULL */
    bool is_query;
    char *sql;
    int nparams;
    char **values;
} rjob;

static void job_free(rjob *j) {
    router_unref(j->r);
    if (j->values)
        for (int i = 0; i < j->nparams; i++) ll_free(j->values[i]);
    ll_free(j->values);
    ll_free(j->sql);
    ll_free(j);
}

static void on_inner(ll_future *inner, void *arg);

static int job_start(rjob *j, ll_pg_pool *p) {
    j->inner = j->is_query ? ll_pg_pool_queryv(p, j->sql, j->nparams, (const char *const *)j->values)
                           : ll_pg_pool_acquire(p);
    if (!j->inner) return LL_ENOMEM;
    if (ll_future_add_done(j->inner, on_inner, j) != 0) {
        ll_future_cancel(j->inner);
        ll_future_free(j->inner);
        j->inner = NULL;
        return LL_ENOMEM;
    }
    return 0;
}

static void job_end(rjob *j, ll_future *inner) {
    ll_future *f = j->f;
    j->f = NULL;
    ll_future_on_cancel(f, NULL, NULL);
    if (ll_future_get_state(inner) == LL_FUTURE_CANCELLED) ll_future_set_cancelled(f);
    else if (j->is_query && ll_future_code(inner) == 0)
        ll_future_resolve(f, ll_future_take(inner), (ll_value_free)ll_pg_result_free);
    else if (j->is_query) ll__pg_fail_from(f, inner);
    else ll_future_copy_outcome(f, inner); /* the connection stays the pool's future's */
    ll_future_free(inner);
    ll_future_free(f);
    job_free(j);
}

static void on_inner(ll_future *inner, void *arg) {
    rjob *j = arg;
    j->inner = NULL;
    int rc = ll_future_code(inner);
    if (j->on_standby && is_conn_trouble(rc) && ll_future_get_state(inner) != LL_FUTURE_CANCELLED) {
        /* the standby could not take it: the primary does, and reads avoid the standby until a
         * check finds it well again */
        ll_pg_router *r = j->r;
        j->on_standby->usable = false;
        r->st.fallbacks++;
        j->on_standby = NULL;
        ll_future_free(inner);
        int e = job_start(j, r->primary);
        if (e) {
            ll_future *f = j->f;
            j->f = NULL;
            ll_future_on_cancel(f, NULL, NULL);
            ll_future_fail(f, e, "postgres router: out of memory");
            ll_future_free(f);
            job_free(j);
        }
        return;
    }
    job_end(j, inner);
}

/* The caller gave up: ours settles now, what runs for it is cancelled (pool.c's own cancel
 * handling gives a connection back or closes it). */
static void job_cancel(ll_future *f, void *arg) {
    rjob *j = arg;
    if (j->inner) {
        ll_future_remove_done(j->inner, on_inner, j);
        ll_future_cancel(j->inner);
        ll_future_free(j->inner);
        j->inner = NULL;
    }
    j->f = NULL;
    ll_future_set_cancelled(f);
    ll_future_free(f);
    job_free(j);
}

static ll_future *route(ll_pg_router *r, bool read_only, bool is_query, const char *sql,
                        int nparams, const char *const *values) {
    ll_future *f = ll_future_new(r->loop);
    rjob *j = f ? ll_calloc(1, sizeof *j) : NULL;
    if (!j) {
        ll_future_free(f);
        return NULL;
    }
    ll_future_set_label(f, is_query ? "pg router query" : "pg router acquire");
    j->r = r;
    r->refs++;
    j->is_query = is_query;
    bool ok = true;
    if (is_query) {
        j->sql = ll_strdup(sql);
        j->nparams = nparams;
        ok = j->sql != NULL;
        if (ok && nparams > 0) {
            j->values = ll_calloc((size_t)nparams, sizeof *j->values);
            ok = j->values != NULL;
            for (int i = 0; ok && i < nparams; i++)
                if (values && values[i]) ok = (j->values[i] = ll_strdup(values[i])) != NULL;
        }
    }
    j->on_standby = to_standby(r, read_only);
    if (!ok || job_start(j, j->on_standby ? j->on_standby->pool : r->primary) != 0) {
        job_free(j);
        ll_future_fail(f, LL_ENOMEM, "postgres router: out of memory");
        return f;
    }
    j->f = ll_future_ref(f);
    ll_future_on_cancel(f, job_cancel, j);
    return f;
}

ll_future *ll_pg_router_acquire(ll_pg_router *r, bool read_only) {
    LL_REQUIRE_ARG(r, "router");
    return route(r, read_only, false, NULL, 0, NULL);
}

int ll_pg_router_release(ll_pg_router *r, ll_pg_conn *c) {
    if (!r || !c) return LL_EINVAL;
    if (ll_pg_pool_release(r->primary, c) == 0) return 0;
    for (size_t i = 0; i < r->nsb; i++)
        if (ll_pg_pool_release(r->sb[i].pool, c) == 0) return 0;
    return LL_ENOENT;
}

ll_future *ll_pg_router_queryv(ll_pg_router *r, bool read_only, const char *sql, int nparams,
                               const char *const *values) {
    LL_REQUIRE_ARG(r, "router");
    LL_REQUIRE_ARG(sql, "sql");
    if (nparams < 0 || (nparams > 0 && !values))
        return ll_future_failed(r->loop, LL_EINVAL, "ll_pg_router_queryv: bad parameters");
    return route(r, read_only, true, sql, nparams, values);
}

ll_future *ll_pg_router_query(ll_pg_router *r, bool read_only, const char *sql, int nparams, ...) {
    LL_REQUIRE_ARG(r, "router");
    if (nparams < 0 || nparams > 65535)
        return ll_future_failed(r->loop, LL_EINVAL, "ll_pg_router_query: bad nparams %d", nparams);
    const char **v = nparams ? ll_calloc((size_t)nparams, sizeof *v) : NULL;
    if (nparams && !v) return NULL;
    va_list ap;
    va_start(ap, nparams);
    for (int i = 0; i < nparams; i++) v[i] = va_arg(ap, const char *);
    va_end(ap);
    ll_future *f = ll_pg_router_queryv(r, read_only, sql, nparams, v);
    ll_free(v);
    return f;
}
