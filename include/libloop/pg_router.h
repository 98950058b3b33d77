/*
 * libloop/pg_router.h — read routing over a primary and its standbys (part of libloop-pg).
 *
 * An ll_pg_router sits in front of ll_pg_pools: one to the primary (its conninfo may list several
 * hosts with target_session_attrs=primary, so it follows a failover by itself) and one per standby
 * host (the one given to ll_pg_router_new, more with ll_pg_router_add_standby). Work the caller
 * marks read-only goes to the usable standby with the least lag; everything else goes to the
 * primary.
 *
 * "Usable" is measured per standby host, not assumed: every check_interval the router asks each
 * standby how far its replay is behind (now() - pg_last_xact_replay_timestamp(), 0 when it has replayed everything it
 * received), once per interval and not per query. Above max_lag, or when the check fails or does
 * not answer within check_timeout, read-only work goes to the primary until a later check finds
 * the standby back within bounds. A read-only query whose standby connection cannot be had or is
 * lost before an answer is run again on the primary (once); a server error from the standby (a
 * syntax error, a write in a read-only transaction) is the caller's, as it is.
 *
 * Until the first check has answered, read-only work goes to the primary. The lag is measured on
 * the standby, so a standby that lost its primary and received nothing more counts as caught up
 * (there is nothing newer it could show).
 *
 * Ownership: the router borrows both pools; free the router before them. Connections from
 * ll_pg_router_acquire are given back with ll_pg_router_release (or the pool's own release).
 * A router belongs to the loop it was made on.
 */
#ifndef LIBLOOP_PG_ROUTER_H
#define LIBLOOP_PG_ROUTER_H

#include "libloop/pg.h"

LL_BEGIN_DECLS

typedef struct ll_pg_router ll_pg_router;

/* Timeouts in seconds: 0 means the default shown. */
typedef struct ll_pg_router_opts {
    ll_loop *loop;         /* NULL: the current loop */
    double max_lag;        /* replication lag a read-only query may see; 0: 10 s; < 0: no bound */
    double check_interval; /* how often the lag is measured; 0: 1 s */
    double check_timeout;  /* a check not answered by then counts as failed; 0: 2 s */
} ll_pg_router_opts;

/* A router over `primary` and `standby` (borrowed; `standby` may be NULL: everything goes to the
 * primary). NULL on out of memory or a NULL primary. The first lag check starts at once. */
LL_EXPORT ll_pg_router *ll_pg_router_new(ll_pg_pool *primary, ll_pg_pool *standby,
                                         const ll_pg_router_opts *opts);
/* Stop the checks and free the router (queries in flight go on and settle). NULL: no-op. */
LL_EXPORT void ll_pg_router_free(ll_pg_router *r);

/* Another standby, measured and routed to on its own (give one pool per standby host: a pool whose
 * conninfo lists several hosts is measured on whichever it is connected to, named in
 * ll_pg_router_get_standby().server). Borrowed like the others. 0, LL_EINVAL, LL_EALREADY (added
 * already), LL_ETOOLARGE (more than 8 standbys), LL_ENOMEM. */
LL_EXPORT int ll_pg_router_add_standby(ll_pg_router *r, ll_pg_pool *standby);

/* A connection for exclusive use: from the standby pool when read_only and the standby is usable,
 * else (or when the standby pool's acquire fails) from the primary pool. */
LL_EXPORT ll_future *ll_pg_router_acquire(ll_pg_router *r, bool read_only);
/* Give back a connection from ll_pg_router_acquire. 0 or LL_ENOENT. */
LL_EXPORT int ll_pg_router_release(ll_pg_router *r, ll_pg_conn *c);

/* One query routed as above; resolves with the ll_pg_result (ll_pg_result_of). A read-only query
 * that lost its standby connection is run again on the primary once. NULL on out of memory. */
LL_EXPORT ll_future *ll_pg_router_query(ll_pg_router *r, bool read_only, const char *sql,
                                        int nparams, ...);
LL_EXPORT ll_future *ll_pg_router_queryv(ll_pg_router *r, bool read_only, const char *sql,
                                         int nparams, const char *const *values);

typedef struct ll_pg_router_stats {
    double lag;              /* the least lag last measured among the standbys, seconds; < 0: none
                              * yet, or every check failed */
    bool standby_usable;     /* some standby is usable: read-only work goes to one now */
    uint64_t checks, checks_failed;
    uint64_t to_standby, to_primary;  /* queries and acquires routed */
    uint64_t fallbacks;      /* read-only work the standby could not take, run on the primary */
} ll_pg_router_stats;
/* What the router measured and how much it routed where. */
LL_EXPORT void ll_pg_router_get_stats(const ll_pg_router *r, ll_pg_router_stats *out);

typedef struct ll_pg_router_standby {
    double lag;              /* this standby's last lag, seconds; < 0: none yet or the check failed */
    bool usable;             /* within max_lag at the last check */
    uint64_t checks, checks_failed;
    uint64_t routed;         /* queries and acquires sent to it */
    char server[64];         /* "address:port" the last check ran on (inet_server_addr/port) */
} ll_pg_router_standby;
/* Standby i (0: the one given to ll_pg_router_new, then in the order added). 0, LL_ENOENT (no such
 * standby), LL_EINVAL. */
LL_EXPORT int ll_pg_router_get_standby(const ll_pg_router *r, size_t i, ll_pg_router_standby *out);

LL_END_DECLS

#endif
