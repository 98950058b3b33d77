/*
 * cluster_internal.h — what the Redis Cluster files share (cluster_keys.c: the sans-I/O part,
 * cluster.c: the adapter). Never installed.
 */
#ifndef LL_REDIS_CLUSTER_INTERNAL_H
#define LL_REDIS_CLUSTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#define LL_CLUSTER_SLOTS 16384

/* How a command's keys are laid out. */
typedef enum {
    KEYS_NONE,       /* no key: any master */
    KEYS_FIRST,      /* argv[1] */
    KEYS_TWO,        /* argv[1], argv[2] (RENAME, SMOVE, LMOVE, COPY, ...) */
    KEYS_ALL,        /* argv[1..] (DEL, MGET, EXISTS, ...) */
    KEYS_ALL_BUT_LAST, /* argv[1..argc-2] (BLPOP, BRPOP: the last is the timeout) */
    KEYS_PAIRS,      /* argv[1], argv[3], ... (MSET, MSETNX) */
    KEYS_NUMKEYS     /* argv[2] = numkeys, keys argv[3..] (EVAL, EVALSHA, FCALL) */
} ll__keys_kind;

/* How a cross-slot command may be split. */
typedef enum { SPLIT_NONE, SPLIT_MGET, SPLIT_SUM, SPLIT_MSET } ll__split_kind;

typedef struct ll__cmd_info {
    ll__keys_kind keys;
    ll__split_kind split;
    bool readonly;   /* may be served by a replica under READONLY */
} ll__cmd_info;

/* The layout of argv[0] (case-insensitive). */
void ll__cluster_cmd_info(const char *name, size_t len, ll__cmd_info *out);
/* The slot of every key: -1 (no key), -2 (keys in several slots: *slot_a and *slot_b say two of
 * them), -3 (malformed: numkeys missing or too large, MSET with an odd count), else the slot. */
int ll__cluster_command_slot(int argc, const char *const *argv, const size_t *lens,
                             const ll__cmd_info *info, int *slot_a, int *slot_b);
/* Parse "MOVED 3999 127.0.0.1:6381" / "ASK ...": true and the slot and "host:port" (at most
 * addr_n bytes with its NUL). */
bool ll__cluster_parse_redirect(const char *err, const char *word, int *slot, char *addr, size_t addr_n);

/* ---- the cluster handle, shared by cluster.c (routing, the map), cluster_conns.c (per-node
 * pools) and cluster_sub.c (pub/sub) ---- */
#include <stdint.h>
#include "libloop/sync.h"
#include "libloop/redis_cluster.h"

#define LL_CLUSTER_MAX_REPLICAS 4

typedef struct ll__cnode {
    struct ll__cnode *next;
    char addr[80];
    char host[64];
    uint16_t port;
    ll_redis_conn *conn;     /* the auto-pipelined link for routed commands */
    bool connecting;
    ll_event *ready;
    int last_err;
    char last_msg[256];
    ll_redis_pool *pool;     /* exclusive connections (ll_redis_cluster_acquire), made on first use */
    unsigned lent;           /* connections of that pool not yet given back */
} ll__cnode;

typedef struct ll__shard {
    ll__cnode *master;
    ll__cnode *replicas[LL_CLUSTER_MAX_REPLICAS];
    int nrep;
} ll__shard;

struct ll_redis_cluster {
    ll_loop *loop;
    ll_redis_opts node_opts;
    char *user, *password, *client_name;
    ll_redis_cluster_opts opts;
    ll_redis_pool_opts pool_opts;
    ll__cnode *nodes;
    size_t nnodes;
    ll__shard *shards;
    size_t nshards;
    ll__shard *slot[LL_CLUSTER_SLOTS];
    bool refreshing, stale;
    int refresh_rc;
    char refresh_msg[512];
    ll_event *refreshed;
    ll_time last_refresh;
    ll_future *watch;        /* the periodic refresh task */
    ll_event *poke;          /* wakes it early: a node link failed */
    unsigned rr;
    unsigned refs;
    bool closed;
    ll_redis_cluster_stats st;
};

void ll__cluster_ref(ll_redis_cluster *c);
void ll__cluster_unref(ll_redis_cluster *c);
/* Re-read the map (single-flight; see cluster.c). 0 or the error, msg filled. */
int ll__cluster_refresh(ll_redis_cluster *c, char *msg, size_t msgn);
/* A node link failed: the map is re-read soon (by the periodic task, woken early). */
void ll__cluster_node_failed(ll_redis_cluster *c);
/* The retry budget and backoff of the options: the end of the budget from now, and the first
 * backoff and its cap. */
void ll__cluster_retry_params(const ll_redis_cluster *c, ll_time *end, double *backoff, double *backoff_max);
/* Sleep the (jittered) backoff and double it; re-read the map. 0, or LL_ECANCELED/LL_ETIMEDOUT/
 * LL_ECLOSED (stop), or LL_EREDIS_CLUSTER when the budget ending at `end` is spent. */
int ll__cluster_backoff(ll_redis_cluster *c, ll_time end, double *backoff, double backoff_max);
/* redis://host:port of node n (for ll_redis_pool_new / ll_redis_sub_connect). */
void ll__cluster_node_url(const ll__cnode *n, char *url, size_t len);

#endif
