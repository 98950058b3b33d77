/*
 * cluster_conns.c — exclusive connections in a Redis Cluster (ll_redis_cluster_acquire/release):
 * one ll_redis_pool per node, made on first use, and an acquire that follows the slot map.
 *
 * Design notes:
 * - The acquire runs as a small task, like a routed command: look up the slot's master, borrow
 *   from its pool; when that fails for a reason of the node's (refused, reset, timed out within
 *   the pool's own connect), the node is reported failed (the map watch wakes), and after a
 *   backoff the map is re-read and the slot looked up again. That is how a pool "follows" a
 *   failover: the pool of the dead master is left alone and the promoted replica's is used.
 * - Node pools keep no shared connection alive for ever: their options say no_reconnect, so a dead
 *   node's pool does not keep dialling it. They live until the cluster is freed (a handful). Each
 *   also opens the one shared connection every ll_redis_pool has; it is not used here (routed
 *   commands have the cluster's own link per node).
 * - The pool's lent count is tracked per node so ll_redis_cluster_release finds the right pool
 *   without asking every one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster_internal.h"
#include "redis_internal.h"

typedef struct acq {
    ll_redis_cluster *c;
    int slot;
} acq;

static int node_pool(ll_redis_cluster *c, ll__cnode *n, char *msg, size_t msgn) {
    if (n->pool) return 0;
    char url[128];
    ll__cluster_node_url(n, url, sizeof url);
    ll_redis_opts o = c->node_opts;
    o.loop = c->loop;
    o.host = NULL;
    o.port = 0;
    o.unix_path = NULL;
    o.db = 0;
    o.no_reconnect = true;
    n->pool = ll_redis_pool_new(url, &o, &c->pool_opts);
    if (n->pool) return 0;
    snprintf(msg, msgn, "redis cluster: could not make a pool for %s", n->addr);
    return LL_ENOMEM;
}

static int acquire_task(void *arg) {
    acq *a = arg;
    ll_redis_cluster *c = a->c;
    int slot = a->slot;
    free(a);
    ll_time end;
    double backoff, backoff_max;
    ll__cluster_retry_params(c, &end, &backoff, &backoff_max);
    char msg[512] = "";
    int rc;
    for (;;) {
        if (c->closed) {
            rc = LL_ECLOSED;
            snprintf(msg, sizeof msg, "redis cluster: closed");
            break;
        }
        if (c->stale && ll_now() - c->last_refresh > 0.1) {
            char m[512];
            rc = ll__cluster_refresh(c, m, sizeof m);
            if (rc == LL_ECANCELED || rc == LL_ETIMEDOUT || rc == LL_ECLOSED) break;
        }
        ll__shard *sh = c->slot[slot];
        ll__cnode *n = sh ? sh->master : NULL;
        if (!n) {
            rc = LL_EREDIS_CLUSTER;
            snprintf(msg, sizeof msg, "redis cluster: no node serves slot %d", slot);
        } else if ((rc = node_pool(c, n, msg, sizeof msg)) == 0) {
            ll_future *f = ll_redis_pool_acquire(n->pool);
            rc = f ? ll_await(f) : LL_ENOMEM;
            if (rc == 0) {
                ll_redis_conn *conn = ll_future_value(f);
                ll_future_free(f);
                n->lent++;
                ll_task_return(conn, NULL);
                ll__cluster_unref(c);
                return 0;
            }
            snprintf(msg, sizeof msg, "redis cluster: %s: %s", n->addr, f ? ll_future_errmsg(f) : "out of memory");
            ll_future_free(f);
            if (rc == LL_ECANCELED || rc == LL_ENOMEM || rc == LL_EPOOLCLOSED) break;
            if (rc == LL_ETIMEDOUT && ll_task_deadline() <= ll_now()) break; /* the caller's deadline */
            ll__cluster_node_failed(c);
        }
        if (rc == LL_ENOMEM) break;
        int r = ll__cluster_backoff(c, end, &backoff, backoff_max);
        if (r == LL_EREDIS_CLUSTER) {
            char m[512];
            snprintf(m, sizeof m, "%s", msg);
            snprintf(msg, sizeof msg, "redis cluster: acquire for slot %d gave up: %.400s", slot, m);
        }
        if (r) {
            rc = r;
            if (r != LL_EREDIS_CLUSTER) snprintf(msg, sizeof msg, "redis cluster: acquire: %s", ll_strerror(r));
            break;
        }
    }
    ll__cluster_unref(c);
    if (rc == LL_ECANCELED) return rc;
    return ll_task_fail(rc, "%s", msg);
}

LL_EXPORT ll_future *ll_redis_cluster_acquire(ll_redis_cluster *c, const char *key, size_t len) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_cluster_acquire: cluster is NULL");
    if (!key) return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_cluster_acquire: key is NULL");
    if (c->closed) return ll_future_failed(c->loop, LL_ECLOSED, "redis cluster: closed");
    acq *a = malloc(sizeof *a);
    if (!a) return NULL;
    a->c = c;
    a->slot = (int)ll_redis_cluster_keyslot(key, len);
    ll__cluster_ref(c);
    ll_spawn_opts so = {.name = "redis cluster acquire", .loop = c->loop, .stack_size = 64 * 1024};
    ll_future *f = ll_spawn_ex(acquire_task, a, &so);
    if (!f || ll_future_done(f)) { /* the task never runs */
        free(a);
        ll__cluster_unref(c);
    }
    return f;
}

LL_EXPORT int ll_redis_cluster_release(ll_redis_cluster *c, ll_redis_conn *conn) {
    if (!c || !conn) return LL_EINVAL;
    for (ll__cnode *n = c->nodes; n; n = n->next) {
        if (!n->pool || !n->lent) continue;
        if (ll_redis_pool_release(n->pool, conn) == 0) {
            n->lent--;
            return 0;
        }
    }
    return LL_ENOENT;
}
