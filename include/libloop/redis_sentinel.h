/*
 * libloop/redis_sentinel.h — Redis behind Sentinel (libloop-redis): the master found through a
 * list of sentinels and followed across failovers.
 *
 * ll_redis_sentinel_connect() asks the sentinels in turn (SENTINEL GET-MASTER-ADDR-BY-NAME),
 * connects to the address given and checks with ROLE that it really is a master (a sentinel may
 * be behind). It then keeps:
 *   - one auto-pipelined connection to the master (no_reconnect: a lost link is never re-made to
 *     the old address; the master is discovered again instead), and
 *   - a subscriber on one sentinel listening for +switch-master: when the master of our name
 *     changes, the old link is closed at once (what was in flight fails with LL_EREDIS_CONN) and the
 *     next command discovers the new master.
 * A command finding no master (link lost, discovery failing, the old master answering READONLY)
 * re-discovers with exponential backoff within retry_timeout and the task's deadline. A command
 * already written when the link died is not re-sent (LL_EREDIS_CONN: it may or may not have run).
 * Redis replication is asynchronous: a write acknowledged by a master that then fails may be lost
 * unless it was confirmed with WAIT.
 *
 * Futures and ownership as ll_redis_command's. The handle belongs to the loop it was made on.
 */
#ifndef LIBLOOP_REDIS_SENTINEL_H
#define LIBLOOP_REDIS_SENTINEL_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/redis.h"

LL_BEGIN_DECLS

typedef struct ll_redis_sentinel ll_redis_sentinel;

typedef struct ll_redis_sentinel_opts {
    ll_loop *loop;              /* NULL: the current loop */
    const ll_redis_opts *node;  /* for the master connection (user, password, db, TLS, timeouts);
                                 * host/port/unix_path ignored. NULL: defaults */
    const ll_redis_opts *sentinel; /* for sentinel connections; NULL: defaults */
    double retry_timeout;       /* re-discovery budget per command; 0: 10 s; < 0: task deadline only */
    double backoff_initial;     /* 0: 0.05 s */
    double backoff_max;         /* 0: 1 s */
} ll_redis_sentinel_opts;

/* sentinels: "host:port[,host:port...]"; master_name as in `sentinel monitor NAME ...`. The
 * future resolves with the ll_redis_sentinel (take it; close with ll_redis_sentinel_close) once
 * the master answered ROLE, or fails with the last error. NULL on out of memory. */
LL_EXPORT ll_future *ll_redis_sentinel_connect(const char *sentinels, const char *master_name,
                                               const ll_redis_sentinel_opts *opts);
LL_EXPORT void ll_redis_sentinel_close(ll_redis_sentinel *s);
/* A command for the current master. NULL on out of memory. */
LL_EXPORT ll_future *ll_redis_sentinel_command(ll_redis_sentinel *s, int argc, const char *const *argv,
                                               const size_t *lens);
/* "host:port" of the master in use ("" while none). Valid until the next await. */
LL_EXPORT const char *ll_redis_sentinel_master(const ll_redis_sentinel *s);

typedef struct ll_redis_sentinel_stats {
    uint64_t discoveries;       /* masters found (the first included) */
    uint64_t switches;          /* +switch-master events for our name */
    uint64_t retries;
} ll_redis_sentinel_stats;
LL_EXPORT void ll_redis_sentinel_get_stats(const ll_redis_sentinel *s, ll_redis_sentinel_stats *out);

LL_END_DECLS

#endif
