/*
 * libloop/redis_cluster.h — Redis Cluster on top of libloop-redis (same library, libloop-redis).
 *
 * ll_redis_cluster_connect() reads the slot map (CLUSTER SLOTS) from the first seed node that
 * answers, and then keeps one auto-pipelined ll_redis_conn per node, made on first use. A command
 * goes to the master serving its key's hash slot (CRC16 of the key, or of its {hash tag}):
 *   - MOVED: the map is re-read (at most once per 100 ms) and the command re-sent where it says;
 *   - ASK: ASKING then the command, on the node it names, once (the map is not changed);
 *   - TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, and a node that cannot be reached before the
 *     command was written: retried with exponential backoff (backoff_initial doubling to
 *     backoff_max, with jitter) until retry_timeout — and never past the calling task's deadline;
 *     each such retry re-reads the map first, which is how a promoted replica is found.
 *   - a command already written when its node's link died fails with LL_EREDIS_CONN ("may or may
 *     not have run"): it is NOT re-sent (it may not be idempotent). The map is re-read for the
 *     next command.
 * Pub/sub, transactions and blocking commands need a connection of their own: take the node from
 * ll_redis_cluster_node_url() and use ll_redis_sub_connect / ll_redis_pool_new there.
 * Multi-key commands: keys in one slot go as they are. Keys in several slots: MGET, MSET, DEL,
 * UNLINK, EXISTS and TOUCH are split per slot and the replies combined (MGET's array in the
 * caller's order, the others' counts added; MSET is then not atomic across slots); every other
 * command fails before anything is sent with LL_EREDIS_CROSSSLOT naming the two slots. Commands
 * without a key (PING, INFO, ...) go to any master.
 * Reads from replicas are opt-in (read_from_replicas): every node connection then sends READONLY,
 * and read-only commands go to the slot's replicas in turn (the master when none is reachable).
 * A replica may lag its master: a read there can miss a write acknowledged just before.
 *
 * Futures and ownership: as ll_redis_command's (the reply owned by the future; ll_redis_reply_of,
 * ll_redis_error work on it). Arguments are copied before the call returns. The cluster handle
 * belongs to the loop it was made on.
 *
 * Errors: those of ll_redis_command, plus LL_EREDIS_CROSSSLOT, LL_EREDIS_CLUSTER (redirect limit
 * reached, no slot map, or the retry budget spent: the message carries the last node's error),
 * LL_ETIMEDOUT (the task's deadline).
 */
#ifndef LIBLOOP_REDIS_CLUSTER_H
#define LIBLOOP_REDIS_CLUSTER_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/redis.h"

LL_BEGIN_DECLS

typedef struct ll_redis_cluster ll_redis_cluster;

typedef struct ll_redis_cluster_opts {
    ll_loop *loop;               /* NULL: the current loop */
    const ll_redis_opts *node;   /* for every node connection (user, password, TLS, timeouts, caps);
                                  * its host, port, unix_path and db are ignored. NULL: defaults */
    bool read_from_replicas;     /* READONLY on node connections; reads go to replicas */
    int max_redirects;           /* MOVED/ASK followed per command; 0: 16 */
    double retry_timeout;        /* budget for TRYAGAIN/CLUSTERDOWN/unreachable retries; 0: 10 s;
                                  * < 0: only the task's deadline */
    double backoff_initial;      /* 0: 0.02 s */
    double backoff_max;          /* 0: 0.5 s */
} ll_redis_cluster_opts;

/* seeds: "host:port[,host:port...]" (any nodes of the cluster). The future resolves with the
 * ll_redis_cluster (owned by the future until ll_future_take(); close with
 * ll_redis_cluster_close()) once a slot map was read, or fails with the last seed's error. NULL
 * on out of memory. */
LL_EXPORT ll_future *ll_redis_cluster_connect(const char *seeds, const ll_redis_cluster_opts *opts);
/* Close every node connection; commands in progress fail with LL_ECLOSED (or are cancelled).
 * NULL: no-op. */
LL_EXPORT void ll_redis_cluster_close(ll_redis_cluster *c);
/* A command routed as described above. NULL on out of memory. */
LL_EXPORT ll_future *ll_redis_cluster_command(ll_redis_cluster *c, int argc, const char *const *argv,
                                              const size_t *lens);
/* The hash slot (0..16383) of a key: CRC16 of the key, or of the part between the first '{' and
 * the next '}' when that part is not empty. */
LL_EXPORT unsigned ll_redis_cluster_keyslot(const char *key, size_t len);
/* Re-read the slot map now (resolves with no value). */
LL_EXPORT ll_future *ll_redis_cluster_refresh(ll_redis_cluster *c);

/* The master serving `key`'s slot in the current map, as "redis://host:port" in url (n bytes with
 * its NUL): for what needs a connection of its own on that node — ll_redis_sub_connect (pub/sub),
 * ll_redis_pool_new (WATCH/MULTI, blocking commands). 0, LL_ENOENT (no map or no node serves the
 * slot), LL_EINVAL (NULL argument), LL_ETOOLARGE (url too small). */
LL_EXPORT int ll_redis_cluster_node_url(const ll_redis_cluster *c, const char *key, size_t len, char *url,
                                        size_t n);

typedef struct ll_redis_cluster_stats {
    uint64_t moved, ask;         /* redirects followed */
    uint64_t retries;            /* TRYAGAIN/CLUSTERDOWN/LOADING/unreachable retries */
    uint64_t refreshes;          /* slot maps read */
    uint64_t split;              /* multi-key commands split per slot */
    uint64_t replica_reads;      /* commands sent to a replica */
    size_t nodes;                /* nodes known */
    size_t masters;              /* masters in the current map */
} ll_redis_cluster_stats;
LL_EXPORT void ll_redis_cluster_get_stats(const ll_redis_cluster *c, ll_redis_cluster_stats *out);

LL_END_DECLS

#endif
