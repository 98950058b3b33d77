/*
 * rediscluster.h — throwaway Redis topologies for the scale-out tests: a Redis Cluster (N masters
 * with R replicas each, made with `redis-cli --cluster create`) and a Sentinel set-up (a master, a
 * replica, three sentinels). Every server gets its own temporary directory and free loopback ports
 * (the cluster bus port too: `cluster-port`), runs as the unprivileged test user when we are root
 * (lt_server_user), is our direct child (killed by PID, PR_SET_PDEATHSIG), and keeps no data.
 *
 * If redis-server or redis-cli is missing (sentinels run as `redis-server --sentinel`), start fails loudly (stderr) and returns
 * false: the tests fail, they do not skip (the binaries are in scripts/deps' build group).
 * libc only.
 */
#ifndef LL_TEST_REDISCLUSTER_H
#define LL_TEST_REDISCLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#define LT_CLUSTER_MAX 8

typedef struct lt_rnode {
    char dir[256];
    int port, bus_port;
    int pid; /* 0 when not running */
} lt_rnode;

typedef struct lt_cluster {
    int n;
    lt_rnode node[LT_CLUSTER_MAX];
    unsigned uid, gid;
    bool drop;
    char seeds[LT_CLUSTER_MAX * 24]; /* "127.0.0.1:P1,127.0.0.1:P2,..." */
} lt_cluster;

/* Start masters*(1+replicas) cluster nodes and join them with redis-cli --cluster create; returns
 * once every node says cluster_state:ok. cluster-node-timeout is node_timeout_ms (failover
 * speed). */
bool lt_cluster_start(lt_cluster *c, int masters, int replicas, int node_timeout_ms);
void lt_cluster_stop(lt_cluster *c);
/* SIGKILL node i. */
void lt_cluster_kill(lt_cluster *c, int i);
/* Run redis-cli with the given arguments (NULL-terminated), its stdout in out (may be NULL);
 * returns its exit status (-1 if it could not run). */
int lt_redis_cli(char *out, size_t n, const char *const *args);
/* `redis-cli -p PORT ARGS...` as one string of space-separated words (no quoting). */
int lt_redis_cli_port(int port, char *out, size_t n, const char *words);
/* Wait until every running node reports cluster_state:ok (and, when `slot` >= 0, agrees which
 * node serves it); false after timeout seconds. */
bool lt_cluster_wait_ok(lt_cluster *c, double timeout);
/* Index of the node that `redis-cli -p port role` calls master and that serves `slot`, or -1. */
int lt_cluster_master_of(lt_cluster *c, int slot);

/* ---- Sentinel: a master, one replica, three sentinels watching it as "mymaster" ---- */
typedef struct lt_sentinel {
    lt_rnode data[2];      /* [0] starts as master, [1] as its replica */
    lt_rnode sentinel[3];
    unsigned uid, gid;
    bool drop;
    char sentinels[80];    /* "127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3" */
} lt_sentinel;
bool lt_sentinel_start(lt_sentinel *s);
void lt_sentinel_stop(lt_sentinel *s);

#endif
