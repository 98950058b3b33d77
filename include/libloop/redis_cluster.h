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
 * The slot map is also re-read every refresh_interval (default 5 s) and soon after a node link
 * fails, so a failover or a reshard is seen even while no command is sent.
 * Transactions and blocking commands need a connection of their own: ll_redis_cluster_acquire()
 * lends one from a pool kept per node, on the master serving a key's slot, and finds the new
 * master by itself after a failover. Pub/sub: ll_redis_cluster_sub (below) subscribes to channels
 * on any node, to sharded channels (SSUBSCRIBE) on the master serving their slot, and moves the
 * subscriptions by itself when a node fails or a slot moves.
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
    double refresh_interval;     /* the map is re-read this often, and at once (at most every
                                  * 100 ms) after a node link failed; 0: 5 s; < 0: only when a
                                  * command meets MOVED or an error */
    const ll_redis_pool_opts *pool; /* for the per-node pools of ll_redis_cluster_acquire; copied;
                                  * NULL: defaults */
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

/* An exclusive connection (value: ll_redis_conn *, via ll_future_value; the future does not own
 * it) on the master serving `key`'s slot, for WATCH/MULTI/EXEC and blocking commands, from that
 * node's pool (ll_redis_pool, made on first use with opts->pool). When the node cannot be reached
 * the map is re-read and the acquire retried with backoff within retry_timeout and the task's
 * deadline: after a failover the promoted replica's pool lends it. A connection lent before the
 * failover is not moved: its commands fail (LL_EREDIS_CONN); give it back and acquire again.
 * The key may have moved by the time the connection is used (a reshard): the server then answers
 * MOVED, which is the caller's to handle on an exclusive connection. NULL on out of memory. */
LL_EXPORT ll_future *ll_redis_cluster_acquire(ll_redis_cluster *c, const char *key, size_t len);
/* Give back a connection from ll_redis_cluster_acquire (before ll_redis_cluster_close).
 * 0, LL_ENOENT (not lent by this cluster), LL_EINVAL. */
LL_EXPORT int ll_redis_cluster_release(ll_redis_cluster *c, ll_redis_conn *conn);

/* ---- pub/sub across the cluster ----
 * A subscriber made of node subscribers (ll_redis_sub): channels and patterns (SUBSCRIBE,
 * PSUBSCRIBE: Redis Cluster delivers them on every node) share one link to some master; a sharded
 * channel (SSUBSCRIBE; publish it with ll_redis_cluster_command "SPUBLISH") goes to the master
 * serving its slot. A supervising task keeps them in place: when a link is lost (the node failed)
 * or a server drops a sharded channel (its slot moved), the map is re-read and the subscriptions are
 * made again where they now belong, with backoff, until they are; an LL_REDIS_MSG_RECONNECTED
 * message is then queued, because what was published meanwhile is lost. Messages of every link
 * come out of one queue (ll_redis_cluster_sub_next; read them with ll_redis_message_of). */
typedef struct ll_redis_cluster_sub ll_redis_cluster_sub;
/* queue_max bounds the messages kept unread (0: 10000; beyond it new ones are dropped and
 * counted). NULL on out of memory or a NULL/closed cluster. Free it before the cluster is closed. */
LL_EXPORT ll_redis_cluster_sub *ll_redis_cluster_sub_new(ll_redis_cluster *c, size_t queue_max);
/* Close every link; pending futures fail with LL_ECLOSED. NULL: no-op. */
LL_EXPORT void ll_redis_cluster_sub_free(ll_redis_cluster_sub *s);
/* Resolve (no value) once a server confirmed the subscription; fail (and the name is dropped) when
 * it could not be placed within the cluster's retry_timeout. */
LL_EXPORT ll_future *ll_redis_cluster_subscribe(ll_redis_cluster_sub *s, const char *channel);
LL_EXPORT ll_future *ll_redis_cluster_psubscribe(ll_redis_cluster_sub *s, const char *pattern);
LL_EXPORT ll_future *ll_redis_cluster_ssubscribe(ll_redis_cluster_sub *s, const char *channel);
/* Resolve once the server confirmed (at once when no link had it). */
LL_EXPORT ll_future *ll_redis_cluster_unsubscribe(ll_redis_cluster_sub *s, const char *channel);
LL_EXPORT ll_future *ll_redis_cluster_punsubscribe(ll_redis_cluster_sub *s, const char *pattern);
LL_EXPORT ll_future *ll_redis_cluster_sunsubscribe(ll_redis_cluster_sub *s, const char *channel);
/* The next message (as ll_redis_sub_next); fails with LL_ECLOSED once freed. */
LL_EXPORT ll_future *ll_redis_cluster_sub_next(ll_redis_cluster_sub *s);
/* Messages dropped because the queue was full. */
LL_EXPORT uint64_t ll_redis_cluster_sub_dropped(const ll_redis_cluster_sub *s);

typedef struct ll_redis_cluster_stats {
    uint64_t moved, ask;         /* redirects followed */
    uint64_t retries;            /* TRYAGAIN/CLUSTERDOWN/LOADING/unreachable retries */
    uint64_t refreshes;          /* slot maps read */
    uint64_t split;              /* multi-key commands split per slot */
    uint64_t replica_reads;      /* commands sent to a replica */
    size_t nodes;                /* nodes known */
    size_t masters;              /* masters in the current map */
    uint64_t resubscribes;       /* subscriptions moved by cluster subscribers (failover, reshard) */
} ll_redis_cluster_stats;
LL_EXPORT void ll_redis_cluster_get_stats(const ll_redis_cluster *c, ll_redis_cluster_stats *out);

LL_END_DECLS

#endif
