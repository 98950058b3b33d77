/*
 * cache.c — opt-in client-side caching of GET and HGET results (ll_redis_pool_opts.client_cache),
 * kept correct by Redis's server-assisted invalidation: CLIENT TRACKING on the cache's data
 * connection with REDIRECT to a tracking connection subscribed to __redis__:invalidate (which
 * works on RESP2, the protocol hiredis 0.14 speaks).
 *
 * Design notes (when a cached value may be served):
 * - Only while tracking is known to be on for the current links of both connections ("enabled").
 *   Losing either connection flushes the cache and disables it; when both are back (the tracking
 *   connection's new client id learnt in its setup, before it subscribes), CLIENT TRACKING ON
 *   REDIRECT <id> is sent on the data connection and caching resumes when its reply is in.
 * - A read that misses leaves a pending marker for its key (and field). An invalidation for the
 *   key removes the entry, marker included; the reply is stored only if its own marker is still
 *   there and no flush happened since it was sent. So a reply that raced with an invalidation is
 *   returned to its caller (it was the value when read) but never cached: once an invalidation has
 *   been delivered, no later read returns the value from before it.
 * - Entries are evicted oldest first beyond cache_max keys.
 */
#include <stdio.h>
#include <string.h>
#include "redis_internal.h"

typedef struct cval {
    struct cval *next;
    uint64_t pending;        /* the read filling it (0: filled or idle) */
    ll_redis_reply *r;       /* the cached reply, or NULL */
    char *field;             /* NULL for GET */
} cval;

typedef struct centry {
    struct centry *hnext, *lprev, *lnext;
    uint64_t hash;
    cval *vals;
    char key[];
} centry;

typedef struct ll_redis_cache {
    ll_redis_pool *pool;
    ll_redis_conn *data;     /* reads go here; tracking on, redirected */
    ll_redis_sub *track;     /* the tracking connection */
    ll_future *track_f;      /* its connect */
    long long track_id, track_id_pending;
    bool track_up, data_up, enabled;
    uint64_t gen, seq;
    centry **tab;
    size_t cap, n, max;
    centry *oldest, *newest;
    ll_redis_cache_stats st;
    int refs;
} ll_redis_cache;

static uint64_t hash_key(const char *k) {
    uint64_t h = 1469598103934665603ULL;
    for (; *k; k++) h = (h ^ (unsigned char)*k) * 1099511628211ULL;
    return h;
}

static void val_free(cval *v) {
    ll_redis_reply_free(v->r);
    ll_free(v->field);
    ll_free(v);
}

static void entry_remove(ll_redis_cache *c, centry *e) {
    for (centry **pp = &c->tab[e->hash & (c->cap - 1)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    }
    if (e->lprev) e->lprev->lnext = e->lnext;
    else c->oldest = e->lnext;
    if (e->lnext) e->lnext->lprev = e->lprev;
    else c->newest = e->lprev;
    while (e->vals) {
        cval *v = e->vals;
        e->vals = v->next;
        val_free(v);
    }
    ll_free(e);
    c->n--;
}

static centry *entry_find(ll_redis_cache *c, const char *key, uint64_t h) {
    if (!c->cap) return NULL;
    for (centry *e = c->tab[h & (c->cap - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->key, key) == 0) return e;
    return NULL;
}

static centry *entry_get(ll_redis_cache *c, const char *key) {
    uint64_t h = hash_key(key);
    centry *e = entry_find(c, key, h);
    if (e) return e;
    if (!c->cap || c->n + 1 > c->cap / 4 * 3) { /* grow at 3/4 load */
        size_t ncap = c->cap ? c->cap * 2 : 64;
        centry **t = ll_calloc(ncap, sizeof *t);
        if (!t) return NULL;
        for (size_t i = 0; i < c->cap; i++) {
            while (c->tab[i]) {
                centry *x = c->tab[i];
                c->tab[i] = x->hnext;
                x->hnext = t[x->hash & (ncap - 1)];
                t[x->hash & (ncap - 1)] = x;
            }
        }
        ll_free(c->tab);
        c->tab = t;
        c->cap = ncap;
    }
    size_t n = strlen(key);
    e = ll_calloc(1, sizeof *e + n + 1);
    if (!e) return NULL;
    memcpy(e->key, key, n + 1);
    e->hash = h;
    e->hnext = c->tab[h & (c->cap - 1)];
    c->tab[h & (c->cap - 1)] = e;
    e->lprev = c->newest;
    if (c->newest) c->newest->lnext = e;
    else c->oldest = e;
    c->newest = e;
    c->n++;
    while (c->n > c->max && c->oldest && c->oldest != e) entry_remove(c, c->oldest);
    return e;
}

static cval *val_find(centry *e, const char *field) {
    for (cval *v = e->vals; v; v = v->next)
        if ((!field && !v->field) || (field && v->field && strcmp(field, v->field) == 0)) return v;
    return NULL;
}

static void flush_all(ll_redis_cache *c) {
    while (c->oldest) entry_remove(c, c->oldest);
    c->gen++;
    c->st.flushes++;
}

static void disable(ll_redis_cache *c) {
    c->enabled = false;
    flush_all(c);
}

static void cache_unref(ll_redis_cache *c) {
    if (--c->refs > 0) return;
    ll_free(c->tab);
    ll_free(c);
}

/* ---- turning tracking on ---- */

typedef struct enabling {
    ll_redis_cache *c;
    uint64_t gen;
} enabling;

static void tracking_on_done(ll_future *f, void *arg) {
    enabling *en = arg;
    ll_redis_cache *c = en->c;
    if (c->pool && ll_future_code(f) == 0 && en->gen == c->gen && c->track_up && c->data_up)
        c->enabled = true;
    ll_future_free(f);
    ll_free(en);
    cache_unref(c);
}

static void try_enable(ll_redis_cache *c) {
    if (!c->pool || c->enabled || !c->track_up || !c->data_up || !c->track_id) return;
    char id[32];
    snprintf(id, sizeof id, "%lld", c->track_id);
    const char *av[5] = {"CLIENT", "TRACKING", "ON", "REDIRECT", id};
    ll_future *f = ll_redis_command(c->data, 5, av, NULL);
    enabling *en = ll_malloc(sizeof *en);
    if (!f || !en) {
        ll_future_free(f);
        ll_free(en);
        return;
    }
    en->c = c;
    en->gen = c->gen;
    c->refs++;
    if (ll_future_add_done(f, tracking_on_done, en)) {
        ll_future_free(f);
        ll_free(en);
        c->refs--;
    }
}

static void data_event(ll_redis_conn *conn, int ev, void *arg) {
    ll_redis_cache *c = arg;
    (void)conn;
    if (ev == RC_EV_DOWN) {
        c->data_up = false;
        disable(c);
    } else {
        c->data_up = true;
        try_enable(c);
    }
}

static void track_event(ll_redis_sub *s, int ev, void *arg) {
    ll_redis_cache *c = arg;
    (void)s;
    if (ev == RC_EV_DOWN) {
        c->track_up = false;
        disable(c);
    } else {
        c->track_up = true;
        c->track_id = c->track_id_pending;
        try_enable(c);
    }
}

static void track_message(ll_redis_sub *s, const ll_redis_reply *r, void *arg) {
    ll_redis_cache *c = arg;
    (void)s;
    if (r->len != 3 || strcmp(r->elem[1]->str, "__redis__:invalidate") != 0) return;
    const ll_redis_reply *keys = r->elem[2];
    c->st.invalidations++;
    if (keys->type != LL_REDIS_ARRAY) { /* nil: the server flushed everything */
        flush_all(c);
        return;
    }
    for (size_t i = 0; i < keys->len; i++) {
        if (keys->elem[i]->type != LL_REDIS_BULK) continue;
        centry *e = entry_find(c, keys->elem[i]->str, hash_key(keys->elem[i]->str));
        if (e) entry_remove(c, e);
    }
}

/* The tracking connection's setup: learn its client id before it subscribes (a subscribed RESP2
 * connection may not run CLIENT ID). */
static int track_setup(ll_redis_conn *conn, void *arg, char *why, size_t wlen) {
    ll_redis_sub *s = arg;
    ll_redis_reply *r = NULL;
    int rc = ll__rc_setup_cmd(conn, "CLIENT ID", 2, (const char *[]){"CLIENT", "ID"}, why, wlen, &r);
    if (rc) return rc;
    ll_redis_cache *cache = conn->cache_arg;
    if (cache && r && r->type == LL_REDIS_INTEGER) cache->track_id_pending = r->integer;
    ll_redis_reply_free(r);
    return ll__redis_resubscribe(conn, s, why, wlen);
}

int ll__redis_cache_new(ll_redis_pool *p, const ll_redis_pool_opts *po) {
    ll_redis_cache *c = ll_calloc(1, sizeof *c);
    if (!c) return LL_ENOMEM;
    c->refs = 1;
    c->pool = p;
    c->max = po->cache_max ? po->cache_max : 10000;
    ll_loop *loop = ll__redis_pool_loop(p);
    rc_cfg *dcfg = ll__rc_cfg_dup(ll__redis_pool_cfg(p));
    rc_cfg *tcfg = ll__rc_cfg_dup(ll__redis_pool_cfg(p));
    if (!dcfg || !tcfg) {
        ll__rc_cfg_free(dcfg);
        ll__rc_cfg_free(tcfg);
        ll_free(c);
        return LL_ENOMEM;
    }
    if (!(c->data = ll__rc_new(dcfg, loop, true))) { /* dcfg is freed by it */
        ll__rc_cfg_free(tcfg);
        ll_free(c);
        return LL_ENOMEM;
    }
    *ll__redis_pool_cache(p) = c;
    c->data->on_event = data_event;
    c->data->event_arg = c;
    if (ll__rc_start(c->data)) {
        ll__rc_cfg_free(tcfg);
        return LL_ENOMEM;
    }
    tcfg->reconnect = true;
    c->track_f = ll__redis_sub_connect_cfg(tcfg, loop, 16, &c->track);
    if (!c->track_f || !c->track) return LL_ENOMEM;
    ll__redis_sub_set_hooks(c->track, track_message, track_event, c);
    ll_redis_conn *tc = ll_redis_sub_conn(c->track);
    tc->persistent = true;
    tc->extra_setup = track_setup;
    tc->cache_arg = c;
    /* registered now, subscribed in the tracking connection's setup (every link, the first too):
     * if this cannot even be registered, there is no cache */
    ll_future *sf = ll_redis_subscribe(c->track, "__redis__:invalidate");
    int rc = !sf || (ll_future_done(sf) && ll_future_code(sf) == LL_ENOMEM) ? LL_ENOMEM : 0;
    ll_future_free(sf);
    return rc;
}

void ll__redis_cache_free(ll_redis_cache *c) {
    if (!c) return;
    flush_all(c);
    c->pool = NULL;
    if (c->data) {
        c->data->on_event = NULL;
        ll_redis_close(c->data);
    }
    if (c->track_f) {
        /* connected: close the subscriber here; still connecting: the cancel ends it (the connect's
         * completion closes it) */
        if (ll_future_get_state(c->track_f) == LL_FUTURE_RESOLVED) {
            ll_future_take(c->track_f);
            ll_redis_sub_close(c->track);
        } else if (!ll_future_done(c->track_f)) {
            ll__redis_sub_set_hooks(c->track, NULL, NULL, NULL);
            ll_future_cancel(c->track_f);
        } /* failed: the subscriber is gone already */
        ll_future_free(c->track_f);
    }
    cache_unref(c);
}

/* ---- reads ---- */

typedef struct cread {
    ll_redis_cache *c;
    ll_future *outer, *inner;
    uint64_t seq, gen;
    char *key, *field;
} cread;

static void cread_free(cread *r) {
    ll_future_free(r->outer);
    ll_future_free(r->inner);
    ll_free(r->key);
    ll_free(r->field);
    cache_unref(r->c);
    ll_free(r);
}

static void cread_done(ll_future *inner, void *arg) {
    cread *rd = arg;
    ll_redis_cache *c = rd->c;
    ll_redis_reply *rep = ll_redis_reply_of(inner);
    if (c->pool && c->enabled && rd->gen == c->gen && rep) {
        centry *e = entry_find(c, rd->key, hash_key(rd->key));
        cval *v = e ? val_find(e, rd->field) : NULL;
        if (v && v->pending == rd->seq) {
            v->pending = 0;
            v->r = ll__redis_reply_dup(rep);
        }
    }
    if (!ll_future_done(rd->outer)) ll__redis_forward(rd->outer, inner);
    cread_free(rd);
}

static void cread_cancel(ll_future *f, void *arg) {
    cread *rd = arg;
    (void)f;
    ll_future_cancel(rd->inner);
}

static ll_future *cached(ll_redis_pool *p, const char *key, const char *field) {
    ll_redis_cache *c = p ? *ll__redis_pool_cache(p) : NULL;
    if (!c || !key)
        return ll_future_failed(p ? ll__redis_pool_loop(p) : NULL, LL_EINVAL,
                                "ll_redis_cached_get: %s", !p ? "pool is NULL" : !c ? "the pool "
                                "was made without client_cache" : "key is NULL");
    const char *av[3] = {field ? "HGET" : "GET", key, field};
    if (c->enabled) {
        centry *e = entry_find(c, key, hash_key(key));
        cval *v = e ? val_find(e, field) : NULL;
        if (v && v->r) {
            c->st.hits++;
            ll_future *f = ll_future_new(ll__redis_pool_loop(p));
            ll_redis_reply *dup = f ? ll__redis_reply_dup(v->r) : NULL;
            if (f && dup) ll_future_resolve(f, dup, (ll_value_free)ll_redis_reply_free);
            else if (f) ll_future_fail(f, LL_ENOMEM, "redis cache: out of memory");
            return f;
        }
    }
    c->st.misses++;
    if (!c->enabled) return ll_redis_command(c->data, field ? 3 : 2, av, NULL);
    /* a miss: a pending marker, then the read */
    centry *e = entry_get(c, key);
    cval *v = e ? val_find(e, field) : NULL;
    if (e && !v && (v = ll_calloc(1, sizeof *v))) {
        if (field && !(v->field = ll_strdup(field))) {
            ll_free(v);
            v = NULL;
        } else {
            v->next = e->vals;
            e->vals = v;
        }
    }
    cread *rd = ll_calloc(1, sizeof *rd);
    ll_future *outer = ll_future_new(ll__redis_pool_loop(p));
    if (!v || !rd || !outer || !(rd->key = ll_strdup(key)) || (field && !(rd->field = ll_strdup(field)))) {
        if (rd) {
            ll_free(rd->key);
            ll_free(rd);
        }
        ll_future_free(outer);
        return ll_redis_command(c->data, field ? 3 : 2, av, NULL); /* uncached */
    }
    v->pending = rd->seq = ++c->seq;
    rd->gen = c->gen;
    rd->c = c;
    c->refs++;
    rd->outer = ll_future_ref(outer);
    ll_future_set_label(outer, "redis cached read");
    rd->inner = ll_redis_command(c->data, field ? 3 : 2, av, NULL);
    if (!rd->inner || ll_future_add_done(rd->inner, cread_done, rd)) {
        ll_future_fail(outer, LL_ENOMEM, "redis cache: out of memory");
        cread_free(rd);
        return outer;
    }
    ll_future_on_cancel(outer, cread_cancel, rd);
    return outer;
}

LL_EXPORT ll_future *ll_redis_cached_get(ll_redis_pool *p, const char *key) {
    return cached(p, key, NULL);
}

LL_EXPORT ll_future *ll_redis_cached_hget(ll_redis_pool *p, const char *key, const char *field) {
    if (!field) return ll_future_failed(p ? ll__redis_pool_loop(p) : NULL, LL_EINVAL,
                                        "ll_redis_cached_hget: field is NULL");
    return cached(p, key, field);
}

LL_EXPORT void ll_redis_cache_get_stats(ll_redis_pool *p, ll_redis_cache_stats *out) {
    memset(out, 0, sizeof *out);
    ll_redis_cache *c = p ? *ll__redis_pool_cache(p) : NULL;
    if (!c) return;
    *out = c->st;
    out->entries = c->n;
    out->enabled = c->enabled;
    out->tracking_client_id = c->track_id;
}
