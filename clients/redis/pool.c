/*
 * pool.c — ll_redis_pool: shared auto-pipelined connections for ordinary commands, and the core's
 * ll_pool for connections lent exclusively (blocking commands, WATCH/MULTI/EXEC, anything that
 * changes the connection's state).
 *
 * Design notes:
 * - Shared connections are made at once, reconnect for ever (with backoff) and are handed out
 *   round-robin: every task's commands on one of them are pipelined together.
 * - Exclusive connections never reconnect on their own: a lost one is closed by the pool. On
 *   release, one with replies still owed (an abandoned BLPOP) is closed; the others are reset with
 *   RESET (Redis 6.2+: drops MULTI, WATCH, subscriptions, tracking, and the login and database),
 *   then AUTH/SELECT/SETNAME run again; servers without RESET get DISCARD and UNWATCH.
 */
#include <stdio.h>
#include <string.h>
#include "redis_internal.h"

struct ll_redis_pool {
    ll_loop *loop;
    rc_cfg *cfg;             /* the shared connections' */
    rc_cfg *xcfg;            /* the exclusive ones' (no reconnect) */
    ll_redis_conn **shared;
    unsigned nshared, next;
    ll_pool *pool;
    struct ll_redis_cache *cache;
};

/* ---- the ll_pool vtable ---- */

static ll_future *x_connect(void *arg, const char *key) {
    ll_redis_pool *p = arg;
    (void)key;
    rc_cfg *cfg = ll__rc_cfg_dup(p->xcfg);
    if (!cfg) return NULL;
    return ll__rc_connect_cfg(cfg, p->loop, NULL, NULL);
}

static bool x_alive(void *arg, void *conn) {
    ll_redis_conn *c = conn;
    (void)arg;
    return c->state == RC_READY && !c->owner_closed && c->slots.n == 0 && c->nheld == 0 && c->s &&
           ll_stream_alive(c->s);
}

static void x_close(void *arg, void *conn) {
    (void)arg;
    ll_redis_close(conn);
}

static int await_ok(ll_redis_conn *c, int argc, const char *const *argv) {
    ll_future *f = ll_redis_command(c, argc, argv, NULL);
    int rc = ll_await(f);
    if (rc == LL_EREDIS_REPLY && ll_redis_error_is(f, "ERR")) rc = 1; /* "unknown command" */
    ll_future_free(f);
    return rc;
}

static int reset_task(void *arg) {
    ll_redis_conn *c = arg;
    const rc_cfg *cfg = c->cfg;
    int rc = await_ok(c, 1, (const char *[]){"RESET"});
    if (rc == 1) { /* before Redis 6.2 */
        ll_future_free(ll_redis_command(c, 1, (const char *[]){"DISCARD"}, NULL));
        rc = await_ok(c, 1, (const char *[]){"UNWATCH"});
        return rc ? LL_EREDIS_REPLY : 0;
    }
    if (rc) return rc;
    if (cfg->password) {
        const char *av[3] = {"AUTH", cfg->user ? cfg->user : cfg->password, cfg->password};
        if ((rc = await_ok(c, cfg->user ? 3 : 2, av))) return rc ? LL_EREDIS_REPLY : 0;
    }
    if (cfg->db > 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", cfg->db);
        if (await_ok(c, 2, (const char *[]){"SELECT", db})) return LL_EREDIS_REPLY;
    }
    if (cfg->client_name &&
        await_ok(c, 3, (const char *[]){"CLIENT", "SETNAME", cfg->client_name}))
        return LL_EREDIS_REPLY;
    return 0;
}

static ll_future *x_reset(void *arg, void *conn) {
    (void)arg;
    ll_spawn_opts so = {.name = "redis pool reset", .deadline = LL_NEVER};
    return ll_spawn_ex(reset_task, conn, &so);
}

static const ll_pool_vtable vt = {x_connect, x_alive, x_close, x_reset};

/* ---- public ---- */

LL_EXPORT ll_redis_pool *ll_redis_pool_new(const char *url, const ll_redis_opts *opts,
                                           const ll_redis_pool_opts *po) {
    ll_redis_pool_opts d = {0};
    if (!po) po = &d;
    char err[200];
    rc_cfg *cfg = NULL;
    if (ll__rc_cfg_new(&cfg, url, opts, err, sizeof err)) return NULL;
    ll_redis_pool *p = ll_calloc(1, sizeof *p);
    if (!p) {
        ll__rc_cfg_free(cfg);
        return NULL;
    }
    p->loop = opts && opts->loop ? opts->loop : ll_loop_current();
    p->cfg = cfg;
    p->nshared = po->shared ? po->shared : 1;
    if (!(p->xcfg = ll__rc_cfg_dup(cfg))) goto fail;
    p->xcfg->reconnect = false;
    ll_pool_opts lo = {.name = "redis", .loop = p->loop,
                       .max_per_key = po->max_exclusive ? po->max_exclusive : 10,
                       .acquire_timeout = po->acquire_timeout,
                       .connect_timeout = cfg->connect_timeout};
    if (!(p->pool = ll_pool_new(&vt, p, &lo))) goto fail;
    if (!(p->shared = ll_calloc(p->nshared, sizeof *p->shared))) goto fail;
    for (unsigned i = 0; i < p->nshared; i++) {
        rc_cfg *c = ll__rc_cfg_dup(cfg);
        if (!c || !(p->shared[i] = ll__rc_new(c, p->loop, true))) goto fail;
        if (ll__rc_start(p->shared[i])) goto fail;
    }
    if (po->client_cache && ll__redis_cache_new(p, po) != 0) goto fail;
    return p;
fail:
    ll_redis_pool_free(p);
    return NULL;
}

LL_EXPORT void ll_redis_pool_free(ll_redis_pool *p) {
    if (!p) return;
    ll__redis_cache_free(p->cache);
    for (unsigned i = 0; p->shared && i < p->nshared; i++) ll_redis_close(p->shared[i]);
    ll_free(p->shared);
    ll_pool_free(p->pool);
    ll__rc_cfg_free(p->cfg);
    ll__rc_cfg_free(p->xcfg);
    ll_free(p);
}

LL_EXPORT ll_redis_conn *ll_redis_pool_conn(ll_redis_pool *p) {
    if (!p || !p->nshared) return NULL;
    return p->shared[p->next++ % p->nshared];
}

LL_EXPORT ll_future *ll_redis_pool_acquire(ll_redis_pool *p) {
    if (!p) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_pool_acquire: pool is NULL");
    return ll_pool_acquire(p->pool, p->xcfg->key);
}

LL_EXPORT int ll_redis_pool_release(ll_redis_pool *p, ll_redis_conn *c) {
    if (!p || !c) return LL_EINVAL;
    if (c->state != RC_READY || c->owner_closed || c->slots.n || c->nheld)
        return ll_pool_discard(p->pool, c);
    return ll_pool_release(p->pool, c, LL_POOL_RESET);
}

ll_redis_conn **ll__redis_pool_shared(ll_redis_pool *p, unsigned *n) {
    *n = p->nshared;
    return p->shared;
}

rc_cfg *ll__redis_pool_cfg(ll_redis_pool *p) { return p->cfg; }
ll_loop *ll__redis_pool_loop(ll_redis_pool *p) { return p->loop; }
struct ll_redis_cache **ll__redis_pool_cache(ll_redis_pool *p) { return &p->cache; }
