/*
 * pool.c — the connection pool shared by every client (see libloop/pool.h for the contract).
 *
 * Design notes:
 * - Generic over the connection: the pool stores `void *` connections and calls the client's
 *   vtable. It keeps one record (pconn) per established connection, found from the connection
 *   pointer through a small hash table, so release() needs nothing but the pointer the caller has.
 * - Keys are hash-table entries holding their idle list (most recently used first: a hot set stays
 *   small and the rest ages out), their waiter queue and their counters. The pool also keeps one
 *   global idle list ordered by the time a connection became idle (least recent first), used to
 *   reap and to evict for another key when max_total is reached, and one global waiter queue, in
 *   arrival order, which is what makes service first-come first-served across keys.
 * - dispatch() is the one place that matches waiters with connections. It walks the global queue
 *   in order: a waiter takes an idle connection of its key; else it is "covered" by a connect in
 *   flight or a reset under way for its key (each will serve one waiter); else a connect is started
 *   for it if the limits allow (evicting another key's idle connection when only max_total is in
 *   the way). It stops early when nothing
 *   idle is left and no room remains, so 1,000 waiters cost O(1) per release.
 * - Connects are not bound to the waiter that caused them: a new connection goes into the key's
 *   idle list and dispatch hands it to the first waiter of that key. A waiter that was cancelled or
 *   timed out meanwhile therefore never strands a connection.
 * - Connects and resets are started with the current task hidden (ll__tls_task = NULL), so the
 *   futures they create do not inherit the caller's deadline or cancellation: they serve the pool.
 * - Futures settle from the loop (done callbacks run from the ready queue), so nothing here is
 *   re-entered by a resolve. The vtable's close() must not call into the pool.
 * - ll_pool_free() is not the end of the memory: lent connections may still be released and
 *   connects may still be stopping. finish() frees the pool when the last of them is gone.
 */
#include <stddef.h>
#include <string.h>
#include "internal.h"
#include "libloop/pool.h"
#include "containers.h"

#define CONTAINER LL__CONTAINER

/* ---- records ---- */

typedef struct pkey pkey;

typedef enum { CONN_IDLE, CONN_LENT, CONN_RESETTING } conn_state;

typedef struct pconn {
    ll__hnode h;             /* in the pool's table, keyed by the connection pointer */
    void *conn;
    pkey *key;
    ll_pool *pool;
    conn_state state;
    ll_time created;
    ll_time idle_since;
    uint64_t leases;
    ll__dlink kidle;          /* the key's idle list */
    ll__dlink gidle;          /* the pool's idle list */
    ll_future *reset_f;  /* while resetting */
    ev_timer reset_timer;
    ll_time reset_deadline;
    bool reset_timed_out;
} pconn;

typedef struct waiter {
    ll_pool *pool;
    pkey *key;
    ll_future *f;        /* the pool's reference */
    ll_time deadline;
    ev_timer timer;
    bool timer_on;
    ll__dlink kq;             /* the key's queue */
    ll__dlink gq;             /* the pool's queue */
} waiter;

typedef struct pconnect {
    ll_pool *pool;
    pkey *key;
    ll_future *f;
    ll_time deadline;
    ev_timer timer;
    bool timer_on;
    bool timed_out;
    bool for_waiter;     /* started because a caller waited: its failure fails a waiter */
    ll__dlink l;
} pconnect;

struct pkey {
    ll__hnode h;
    char *name;
    ll_pool_stats st;
    ll__dlist idle;           /* most recently used first */
    ll__dlist waiters;
    size_t resetting;    /* connections of this key being reset */
    uint64_t pass;       /* dispatch bookkeeping */
    size_t covered;
};

struct ll_pool {
    ll_loop *loop;
    ll_pool_vtable vt;
    void *arg;
    char *name;
    unsigned max_per_key, max_total, min_per_key;
    size_t max_waiters;
    double acquire_timeout, connect_timeout, reset_timeout, max_idle, max_lifetime;
    ll_pool_stats st;
    ll__htab keys;
    ll__htab conns;
    ll__dlist idle;           /* least recently idle first */
    ll__dlist waiters;        /* arrival order */
    ll__dlist connects;
    size_t resetting;
    ev_timer reaper;
    ll__closer closer;   /* ll_loop_free closes a pool the application left open */
    uint64_t pass;
    bool closed;
    bool dispatching, redispatch;
};

static void dispatch(ll_pool *p);
static void finish(ll_pool *p);

/* ---- keys ---- */

static pkey *key_find(const ll_pool *p, const char *name) {
    uint64_t h = ll__hash_str(name);
    for (ll__hnode *n = p->keys.b[h & (p->keys.nb - 1)]; n; n = n->next) {
        pkey *k = (pkey *)n;
        if (n->hash == h && strcmp(k->name, name) == 0) return k;
    }
    return NULL;
}

static pkey *key_get(ll_pool *p, const char *name) {
    pkey *k = key_find(p, name);
    if (k) return k;
    k = ll__calloc(1, sizeof *k);
    if (!k) return NULL;
    k->name = ll__strdup(name);
    if (!k->name) {
        ll__free(k);
        return NULL;
    }
    k->h.hash = ll__hash_str(name);
    ll__htab_insert(&p->keys, &k->h);
    return k;
}

static bool key_empty(const pkey *k) {
    return k->st.open == 0 && k->st.connecting == 0 && k->st.waiting == 0 && k->resetting == 0;
}

static void key_free(ll_pool *p, pkey *k) {
    ll__htab_remove(&p->keys, &k->h);
    ll__free(k->name);
    ll__free(k);
}

/* ---- connections ---- */

static pconn *conn_find(const ll_pool *p, const void *conn) {
    uint64_t h = ll__hash_ptr(conn);
    for (ll__hnode *n = p->conns.b[h & (p->conns.nb - 1)]; n; n = n->next)
        if (n->hash == h && ((pconn *)n)->conn == conn) return (pconn *)n;
    return NULL;
}

static bool can_open(const ll_pool *p, const pkey *k) {
    if (k->st.open + k->st.connecting >= p->max_per_key) return false;
    return p->max_total == 0 || p->st.open + p->st.connecting < p->max_total;
}

static bool total_room(const ll_pool *p) {
    return p->max_total == 0 || p->st.open + p->st.connecting < p->max_total;
}

static void idle_push(ll_pool *p, pconn *c) {
    c->state = CONN_IDLE;
    c->idle_since = ll_now();
    ll__list_push_front(&c->key->idle, &c->kidle);
    ll__list_push_back(&p->idle, &c->gidle);
    c->key->st.idle++;
    p->st.idle++;
}

static void idle_unlink(ll_pool *p, pconn *c) {
    ll__list_remove(&c->key->idle, &c->kidle);
    ll__list_remove(&p->idle, &c->gidle);
    c->key->st.idle--;
    p->st.idle--;
}

/* Close a connection record in any state but idle-linked (unlink first). */
static void conn_close(ll_pool *p, pconn *c) {
    ll__htab_remove(&p->conns, &c->h);
    c->key->st.open--;
    p->st.open--;
    c->key->st.discarded++;
    p->st.discarded++;
    p->vt.close(p->arg, c->conn);
    ll__free(c);
}

static bool expired(const ll_pool *p, const pconn *c, ll_time now) {
    return p->max_lifetime > 0 && now - c->created >= p->max_lifetime;
}

/* The most recently used idle connection of k that is alive and not too old; dead ones are
 * closed on the way. */
static pconn *take_idle(ll_pool *p, pkey *k) {
    ll_time now = ll_now();
    while (k->idle.head) {
        pconn *c = CONTAINER(k->idle.head, pconn, kidle);
        idle_unlink(p, c);
        if (expired(p, c, now) || (p->vt.is_alive && !p->vt.is_alive(p->arg, c->conn))) {
            conn_close(p, c);
            continue;
        }
        return c;
    }
    return NULL;
}

static void lend(ll_pool *p, pconn *c) {
    c->state = CONN_LENT;
    c->key->st.in_use++;
    p->st.in_use++;
    c->key->st.acquired++;
    p->st.acquired++;
    if (c->leases++ > 0) {
        c->key->st.reused++;
        p->st.reused++;
    }
}

static void unlend(ll_pool *p, pconn *c) {
    c->key->st.in_use--;
    p->st.in_use--;
}

/* Run a vtable call that makes a future with the current task hidden: the pool's own work must
 * not inherit a caller's deadline or cancellation. */
static ll_future *detached_connect(ll_pool *p, const char *key) {
    ll_task *saved_task = ll__tls_task;
    ll_loop *saved_loop = ll__tls_loop;
    ll__tls_task = NULL;
    ll__tls_loop = p->loop;
    ll_future *f = p->vt.connect(p->arg, key);
    ll__tls_task = saved_task;
    ll__tls_loop = saved_loop;
    return f;
}

static ll_future *detached_reset(ll_pool *p, void *conn) {
    ll_task *saved_task = ll__tls_task;
    ll_loop *saved_loop = ll__tls_loop;
    ll__tls_task = NULL;
    ll__tls_loop = p->loop;
    ll_future *f = p->vt.reset(p->arg, conn);
    ll__tls_task = saved_task;
    ll__tls_loop = saved_loop;
    return f;
}

/* ---- waiters ---- */

static void waiter_unlink(ll_pool *p, waiter *w) {
    ll__list_remove(&w->key->waiters, &w->kq);
    ll__list_remove(&p->waiters, &w->gq);
    w->key->st.waiting--;
    p->st.waiting--;
    if (w->timer_on) {
        ev_timer_stop(p->loop->ev, &w->timer);
        w->timer_on = false;
    }
}

/* Remove and free a waiter whose future has been (or is being) settled elsewhere. */
static void waiter_drop(ll_pool *p, waiter *w) {
    waiter_unlink(p, w);
    ll_future_free(w->f);
    ll__free(w);
}

static void waiter_hand(ll_pool *p, waiter *w, pconn *c) {
    lend(p, c);
    ll_future_resolve(w->f, c->conn, NULL);
    waiter_drop(p, w);
}

static void waiter_fail(ll_pool *p, waiter *w, int code, const char *msg) {
    ll_future_fail(w->f, code, "%s", msg);
    waiter_drop(p, w);
}

/* Nobody but the pool holds the waiter's future: the caller freed it without awaiting. */
static bool waiter_abandoned(const waiter *w) {
    return w->f->refs == 1;
}

static void on_waiter_timeout(struct ev_loop *ev, ev_timer *t, int revents) {
    (void)revents;
    waiter *w = CONTAINER(t, waiter, timer);
    if (ll__timer_early(ev, t, w->deadline)) return;
    w->timer_on = false;
    ll_pool *p = w->pool;
    pkey *k = w->key;
    ll_loop *saved = ll__tls_loop;
    ll__tls_loop = p->loop;
    k->st.timeouts++;
    p->st.timeouts++;
    ll_future_fail(w->f, LL_ETIMEDOUT,
                   "%s: no connection to %s within %g s (%zu open, %zu connecting, %zu waiting)",
                   p->name, k->name, p->acquire_timeout, k->st.open, k->st.connecting,
                   k->st.waiting - 1);
    waiter_drop(p, w);
    ll__tls_loop = saved;
}

static void on_waiter_cancel(ll_future *f, void *arg) {
    waiter *w = arg;
    ll_future_set_cancelled(f);
    waiter_drop(w->pool, w);
}

/* ---- connects ---- */

static void connect_end(ll_pool *p, pconnect *pc) {
    if (pc->timer_on) ev_timer_stop(p->loop->ev, &pc->timer);
    ll__list_remove(&p->connects, &pc->l);
    pc->key->st.connecting--;
    p->st.connecting--;
    ll_future_free(pc->f);
    ll__free(pc);
}

/* A connect failed: the first waiter of the key learns why, if the connect was made for one. */
static void connect_failed(ll_pool *p, pkey *k, bool for_waiter, int code, const char *msg) {
    k->st.connect_failures++;
    p->st.connect_failures++;
    if (!for_waiter || p->closed) return;
    for (ll__dlink *l = k->waiters.head; l; l = l->next) {
        waiter *w = CONTAINER(l, waiter, kq);
        if (waiter_abandoned(w)) continue;
        waiter_fail(p, w, code, msg);
        return;
    }
}

static void on_connect_done(ll_future *f, void *arg) {
    pconnect *pc = arg;
    ll_pool *p = pc->pool;
    pkey *k = pc->key;
    bool for_waiter = pc->for_waiter, timed_out = pc->timed_out;
    int code = ll_future_code(f);
    void *conn = code == 0 ? ll_future_take(f) : NULL;
    if (code == 0 && !conn) {
        code = LL_EINVAL;
    }
    char *msg = NULL;
    if (code != 0) {
        if (timed_out && code == LL_ECANCELED)
            msg = ll__format("%s: connect to %s timed out after %g s", p->name, k->name,
                             p->connect_timeout);
        else if (code == LL_EINVAL && ll_future_get_state(f) == LL_FUTURE_RESOLVED)
            msg = ll__format("%s: connect to %s resolved without a connection", p->name, k->name);
        else
            msg = ll__strdup(ll_future_errmsg(f));
        if (timed_out && code == LL_ECANCELED) code = LL_ETIMEDOUT;
    }
    connect_end(p, pc); /* frees f's last pool reference: conn and msg are ours now */
    if (code != 0) {
        connect_failed(p, k, for_waiter, code, msg ? msg : ll_strerror(code));
        ll__free(msg);
    } else if (p->closed) {
        p->vt.close(p->arg, conn);
    } else {
        pconn *c = ll__calloc(1, sizeof *c);
        if (!c) {
            p->vt.close(p->arg, conn);
            connect_failed(p, k, for_waiter, LL_ENOMEM, "out of memory");
        } else {
            c->conn = conn;
            c->key = k;
            c->pool = p;
            c->created = ll_now();
            c->h.hash = ll__hash_ptr(conn);
            ll__htab_insert(&p->conns, &c->h);
            k->st.open++;
            p->st.open++;
            k->st.created++;
            p->st.created++;
            idle_push(p, c);
        }
    }
    if (p->closed) finish(p);
    else dispatch(p);
}

static void on_connect_timeout(struct ev_loop *ev, ev_timer *t, int revents) {
    (void)revents;
    pconnect *pc = CONTAINER(t, pconnect, timer);
    if (ll__timer_early(ev, t, pc->deadline)) return;
    pc->timer_on = false;
    pc->timed_out = true;
    ll_loop *saved = ll__tls_loop;
    ll__tls_loop = pc->pool->loop; /* the producer's hook runs as if from the loop */
    ll_future_cancel(pc->f);       /* settles through the hook; on_connect_done follows */
    ll__tls_loop = saved;
}

/* Start one connect for k. Return 0, or a negative code with *msg set (static string) when it
 * could not even start. */
static int connect_start(ll_pool *p, pkey *k, bool for_waiter, const char **msg) {
    pconnect *pc = ll__calloc(1, sizeof *pc);
    if (!pc) {
        *msg = "out of memory";
        return LL_ENOMEM;
    }
    ll_future *f = detached_connect(p, k->name);
    if (!f) {
        ll__free(pc);
        *msg = "out of memory";
        return LL_ENOMEM;
    }
    pc->pool = p;
    pc->key = k;
    pc->f = f;
    pc->for_waiter = for_waiter;
    if (ll_future_add_done(f, on_connect_done, pc) != 0) {
        ll_future_cancel(f);
        ll_future_free(f);
        ll__free(pc);
        *msg = "out of memory";
        return LL_ENOMEM;
    }
    ll__list_push_back(&p->connects, &pc->l);
    k->st.connecting++;
    p->st.connecting++;
    if (p->connect_timeout > 0 && !ll_future_done(f)) {
        pc->deadline = ll_now() + p->connect_timeout;
        ev_timer_init(&pc->timer, on_connect_timeout, p->connect_timeout, 0.);
        ll__timer_start_at(p->loop->ev, &pc->timer, pc->deadline);
        pc->timer_on = true;
    }
    return 0;
}

/* Close the least recently idle connection of another key to make room under max_total. */
static bool evict_for(ll_pool *p, pkey *k) {
    if (k->st.open + k->st.connecting >= p->max_per_key) return false;
    for (ll__dlink *l = p->idle.head; l; l = l->next) {
        pconn *c = CONTAINER(l, pconn, gidle);
        if (c->key == k) continue;
        idle_unlink(p, c);
        conn_close(p, c);
        return true;
    }
    return false;
}

/* Open connections up to min_per_key for k, in the background. */
static void refill(ll_pool *p, pkey *k) {
    const char *msg;
    while (!p->closed && k->st.open + k->st.connecting < p->min_per_key && can_open(p, k)) {
        if (connect_start(p, k, false, &msg) != 0) break;
    }
}

/* ---- dispatch ---- */

static void dispatch(ll_pool *p) {
    if (p->closed) return;
    if (p->dispatching) {
        p->redispatch = true;
        return;
    }
    p->dispatching = true;
    do {
        p->redispatch = false;
        p->pass++;
        ll__dlink *l = p->waiters.head;
        while (l) {
            ll__dlink *next = l->next;
            waiter *w = CONTAINER(l, waiter, gq);
            pkey *k = w->key;
            if (p->st.idle == 0 && !total_room(p)) break; /* nothing left to give */
            if (k->pass != p->pass) {
                k->pass = p->pass;
                /* a connect in flight or a reset under way will each serve one waiter */
                k->covered = k->st.connecting + k->resetting;
            }
            if (waiter_abandoned(w)) {
                ll_future_set_cancelled(w->f);
                waiter_drop(p, w);
            } else if (k->idle.head) {
                pconn *c = take_idle(p, k);
                if (c) {
                    waiter_hand(p, w, c);
                    l = next;
                    continue;
                }
                next = l; /* every idle one was dead: look at this waiter again */
            } else if (k->covered > 0) {
                k->covered--;
            } else if (can_open(p, k) || evict_for(p, k)) {
                const char *msg;
                int rc = connect_start(p, k, true, &msg);
                if (rc != 0) waiter_fail(p, w, rc, msg);
            }
            l = next;
        }
    } while (p->redispatch);
    p->dispatching = false;
}

/* ---- reset ---- */

static void reset_end(ll_pool *p, pconn *c) {
    ev_timer_stop(p->loop->ev, &c->reset_timer);
    ll_future_free(c->reset_f);
    c->reset_f = NULL;
    c->key->resetting--;
    p->resetting--;
}

static void on_reset_done(ll_future *f, void *arg) {
    pconn *c = arg;
    ll_pool *p = c->pool;
    bool ok = ll_future_code(f) == 0;
    reset_end(p, c);
    if (ok && !p->closed && !expired(p, c, ll_now())) {
        idle_push(p, c);
        dispatch(p);
        return;
    }
    conn_close(p, c);
    if (p->closed) finish(p);
    else dispatch(p);
}

static void on_reset_timeout(struct ev_loop *ev, ev_timer *t, int revents) {
    (void)revents;
    pconn *c = CONTAINER(t, pconn, reset_timer);
    if (ll__timer_early(ev, t, c->reset_deadline)) return;
    c->reset_timed_out = true;
    ll_loop *saved = ll__tls_loop;
    ll__tls_loop = c->pool->loop;
    ll_future_cancel(c->reset_f);
    ll__tls_loop = saved;
}

/* Start resetting a connection just released; false when that cannot start (then close it). */
static bool reset_start(ll_pool *p, pconn *c) {
    if (!p->vt.reset) return false;
    ll_future *f = detached_reset(p, c->conn);
    if (!f) return false;
    if (ll_future_add_done(f, on_reset_done, c) != 0) {
        ll_future_cancel(f);
        ll_future_free(f);
        return false;
    }
    c->state = CONN_RESETTING;
    c->reset_f = f;
    c->reset_timed_out = false;
    c->key->resetting++;
    p->resetting++;
    ev_timer_init(&c->reset_timer, on_reset_timeout, p->reset_timeout, 0.);
    c->reset_deadline = ll_now() + p->reset_timeout;
    if (p->reset_timeout > 0) ll__timer_start_at(p->loop->ev, &c->reset_timer, c->reset_deadline);
    return true;
}

/* ---- upkeep ---- */

static void reap(ll_pool *p) {
    ll_time now = ll_now();
    ll__dlink *l = p->idle.head;
    while (l) {
        ll__dlink *next = l->next;
        pconn *c = CONTAINER(l, pconn, gidle);
        pkey *k = c->key;
        bool too_idle = p->max_idle > 0 && now - c->idle_since >= p->max_idle &&
                        k->st.open > p->min_per_key;
        if (expired(p, c, now) || too_idle ||
            (p->vt.is_alive && !p->vt.is_alive(p->arg, c->conn))) {
            idle_unlink(p, c);
            conn_close(p, c);
        }
        l = next;
    }
    for (size_t i = 0; i < p->keys.nb; i++) {
        ll__hnode *n = p->keys.b[i];
        while (n) {
            ll__hnode *next = n->next;
            pkey *k = (pkey *)n;
            if (p->min_per_key) refill(p, k);
            else if (key_empty(k)) key_free(p, k);
            n = next;
        }
    }
    dispatch(p);
}

static void on_reap(struct ev_loop *ev, ev_timer *t, int revents) {
    (void)ev, (void)revents;
    ll_pool *p = CONTAINER(t, ll_pool, reaper);
    ll_loop *saved = ll__tls_loop;
    ll__tls_loop = p->loop;
    reap(p);
    ll__tls_loop = saved;
}

/* ---- public API ---- */

/* ll_loop_free() with the pool still open: close it so that no watcher of ours outlives the loop
 * (connects in flight settle in the drains that follow). Connections still lent keep the pool's
 * memory: the application must give them back before freeing the loop. */
static void pool_closer(ll__closer *c) {
    ll_pool_free(CONTAINER(c, ll_pool, closer));
}

static double pick(double v, double dflt) {
    return v == 0 ? dflt : v;
}

ll_pool *ll_pool_new(const ll_pool_vtable *vt, void *pool_arg, const ll_pool_opts *opts) {
    ll_pool_opts o = {0};
    if (opts) o = *opts;
    ll_loop *loop = ll__loop_or_current(o.loop);
    if (!loop || !vt || !vt->connect || !vt->close) return NULL;
    ll_pool *p = ll__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->name = ll__strdup(o.name ? o.name : "pool");
    if (!p->name || ll__htab_init(&p->keys, 16) != 0 || ll__htab_init(&p->conns, 16) != 0) {
        ll__free(p->keys.b);
        ll__free(p->name);
        ll__free(p);
        return NULL;
    }
    p->loop = loop;
    p->vt = *vt;
    p->arg = pool_arg;
    p->max_per_key = o.max_per_key ? o.max_per_key : 10;
    p->max_total = o.max_total;
    p->min_per_key = o.min_per_key < p->max_per_key ? o.min_per_key : p->max_per_key;
    p->max_waiters = o.max_waiters;
    p->acquire_timeout = pick(o.acquire_timeout, 30);
    p->connect_timeout = pick(o.connect_timeout, 30);
    p->reset_timeout = pick(o.reset_timeout, 10);
    p->max_idle = pick(o.max_idle, 300);
    p->max_lifetime = pick(o.max_lifetime, 3600);
    double every = o.reap_interval;
    if (every <= 0) {
        double shortest = 40;
        if (p->max_idle > 0 && p->max_idle < shortest) shortest = p->max_idle;
        if (p->max_lifetime > 0 && p->max_lifetime < shortest) shortest = p->max_lifetime;
        every = shortest / 4;
        if (every < 0.01) every = 0.01;
    }
    /* The upkeep timer never keeps the loop alive on its own: a program whose only remaining
     * work is a pool of idle connections is done. */
    ev_timer_init(&p->reaper, on_reap, every, every);
    ev_timer_start(loop->ev, &p->reaper);
    ev_unref(loop->ev);
    ll__handle_ref(loop);
    p->closer.close = pool_closer;
    ll__closer_add(loop, &p->closer);
    return p;
}

static void finish(ll_pool *p) {
    if (!p->closed || p->st.open > 0 || p->st.connecting > 0 || p->resetting > 0) return;
    for (size_t i = 0; i < p->keys.nb; i++) {
        ll__hnode *n = p->keys.b[i];
        while (n) {
            ll__hnode *next = n->next;
            ll__free(((pkey *)n)->name);
            ll__free(n);
            n = next;
        }
    }
    ll__free(p->keys.b);
    ll__free(p->conns.b);
    ll__handle_unref(p->loop);
    ll__free(p->name);
    ll__free(p);
}

void ll_pool_free(ll_pool *p) {
    if (!p || p->closed) return;
    p->closed = true;
    ll__closer_remove(p->loop, &p->closer);
    ev_ref(p->loop->ev);
    ev_timer_stop(p->loop->ev, &p->reaper);
    while (p->waiters.head) {
        waiter *w = CONTAINER(p->waiters.head, waiter, gq);
        ll_future_fail(w->f, LL_EPOOLCLOSED, "%s closed while waiting for a connection to %s",
                       p->name, w->key->name);
        waiter_drop(p, w);
    }
    while (p->idle.head) {
        pconn *c = CONTAINER(p->idle.head, pconn, gidle);
        idle_unlink(p, c);
        conn_close(p, c);
    }
    /* Cancelling settles through the producers' hooks; the done callbacks close what they made and
     * call finish(). Cancel without walking a list the callbacks change: they run later. */
    for (ll__dlink *l = p->connects.head; l; l = l->next)
        ll_future_cancel(CONTAINER(l, pconnect, l)->f);
    for (size_t i = 0; i < p->conns.nb; i++)
        for (ll__hnode *n = p->conns.b[i]; n; n = n->next)
            if (((pconn *)n)->state == CONN_RESETTING) ll_future_cancel(((pconn *)n)->reset_f);
    finish(p);
}

ll_future *ll_pool_acquire(ll_pool *p, const char *key) {
    if (!p) return ll_future_failed(NULL, LL_EINVAL, "ll_pool_acquire: pool is NULL");
    if (!key) return ll_future_failed(p->loop, LL_EINVAL, "%s: acquire without a key", p->name);
    if (p->closed)
        return ll_future_failed(p->loop, LL_EPOOLCLOSED, "%s is closed (acquire %s)", p->name, key);
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pool acquire");
    pkey *k = key_get(p, key);
    if (!k) {
        ll_future_fail(f, LL_ENOMEM, "%s: out of memory acquiring %s", p->name, key);
        return f;
    }
    if (!k->waiters.head) { /* nobody is ahead of us: a free connection is ours at once */
        pconn *c = take_idle(p, k);
        if (c) {
            lend(p, c);
            ll_future_resolve(f, c->conn, NULL);
            return f;
        }
    }
    if (p->max_waiters && p->st.waiting >= p->max_waiters) {
        ll_future_fail(f, LL_EFULL, "%s: %zu callers already waiting for a connection (acquire %s)",
                       p->name, p->st.waiting, key);
        return f;
    }
    waiter *w = ll__calloc(1, sizeof *w);
    if (!w) {
        ll_future_fail(f, LL_ENOMEM, "%s: out of memory acquiring %s", p->name, key);
        return f;
    }
    w->pool = p;
    w->key = k;
    w->f = ll_future_ref(f);
    ll__list_push_back(&k->waiters, &w->kq);
    ll__list_push_back(&p->waiters, &w->gq);
    k->st.waiting++;
    p->st.waiting++;
    if (p->acquire_timeout > 0) {
        w->deadline = ll_now() + p->acquire_timeout;
        ev_timer_init(&w->timer, on_waiter_timeout, p->acquire_timeout, 0.);
        ll__timer_start_at(p->loop->ev, &w->timer, w->deadline);
        w->timer_on = true;
    }
    ll_future_on_cancel(f, on_waiter_cancel, w);
    if (p->min_per_key) refill(p, k);
    dispatch(p);
    return f;
}

int ll_pool_release(ll_pool *p, void *conn, ll_pool_state state) {
    if (!p || !conn) return LL_EINVAL;
    pconn *c = conn_find(p, conn);
    if (!c || c->state != CONN_LENT) {
        if (p->loop->debug)
            ll__warn(p->loop, "%s: release of a connection this pool did not lend (%p)", p->name,
                     conn);
        return LL_ENOENT;
    }
    unlend(p, c);
    pkey *k = c->key;
    bool keep = !p->closed && !expired(p, c, ll_now());
    if (keep && state == LL_POOL_IDLE) {
        idle_push(p, c);
    } else if (keep && state == LL_POOL_RESET && reset_start(p, c)) {
        /* back to idle (or closed) when the reset settles */
    } else {
        conn_close(p, c);
        if (p->closed) {
            finish(p);
            return 0;
        }
        if (p->min_per_key) refill(p, k);
    }
    dispatch(p);
    return 0;
}

int ll_pool_discard(ll_pool *p, void *conn) {
    return ll_pool_release(p, conn, LL_POOL_BROKEN);
}

bool ll_pool_conn_reused(const ll_pool *p, const void *conn) {
    if (!p || !conn) return false;
    const pconn *c = conn_find(p, conn);
    return c && c->state == CONN_LENT && c->leases > 1;
}

int ll_pool_warm(ll_pool *p, const char *key) {
    if (!p || !key) return LL_EINVAL;
    if (p->closed) return LL_EPOOLCLOSED;
    pkey *k = key_get(p, key);
    if (!k) return LL_ENOMEM;
    refill(p, k);
    return 0;
}

void ll_pool_get_stats(const ll_pool *p, ll_pool_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (p) *out = p->st;
}

int ll_pool_get_key_stats(const ll_pool *p, const char *key, ll_pool_stats *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!p || !key) return LL_EINVAL;
    const pkey *k = key_find(p, key);
    if (!k) return LL_ENOENT;
    if (out) *out = k->st;
    return 0;
}
