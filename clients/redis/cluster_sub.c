/*
 * cluster_sub.c — pub/sub across a Redis Cluster (ll_redis_cluster_sub, redis_cluster.h).
 *
 * Design notes:
 * - A cluster subscriber is a set of links (one ll_redis_sub per node in use, no_reconnect) and a
 *   set of names (channel, pattern or sharded channel), each placed on one link. Messages of every
 *   link go straight into the subscriber's one queue (the node subscriber's sink hook), so there is
 *   no task per link.
 * - One supervising task ("placer") owns every change of placement: user calls only add or mark
 *   names and wake it, so no two tasks ever connect or subscribe for the same name, and nothing
 *   is freed under an await (names marked gone and dead links are freed by the placer between
 *   awaits; the subscriber itself is reference-counted by the handle and the placer).
 * - Where a name belongs: channels and patterns on any master (Redis Cluster propagates PUBLISH to
 *   every node) — the link already in use when there is one; a sharded channel on the master of
 *   its slot in the current map. A link that goes down (the node failed) or a server dropping a
 *   sharded channel (its slot moved) unplaces its names and wakes the placer, which re-reads the
 *   map and places them again, with the cluster's backoff, until every name is placed. Then a
 *   RECONNECTED message is queued if anything had been lost. The placer also wakes every
 *   refresh_interval to move sharded channels whose slot moved without the server telling us.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster_internal.h"
#include "redis_internal.h"

typedef struct slink {
    struct slink *next;
    ll__cnode *node;
    ll_redis_sub *sub;
    bool dead;
    struct ll_redis_cluster_sub *owner;
} slink;

enum { K_CHANNEL, K_PATTERN, K_SHARD };

typedef struct sname {
    struct sname *next;
    int kind;
    int slot;                /* K_SHARD */
    slink *at;               /* placed on; NULL: to be placed */
    bool gone;               /* unsubscribed: freed by the placer */
    ll_future *waiter;       /* the caller's subscribe future, until confirmed */
    ll_time give_up;
    char name[];
} sname;

typedef struct qmsg {
    struct qmsg *next;
    ll_redis_message *m;
} qmsg;

typedef struct waiter {
    struct waiter *next;
    ll_future *f;
} waiter;

struct ll_redis_cluster_sub {
    ll_redis_cluster *c;     /* a reference */
    slink *links;
    sname *names;
    qmsg *head, *tail;
    size_t n, max;
    uint64_t dropped;
    waiter *waiters;
    ll_event *wake;
    ll_future *placer;
    bool lost;               /* a link or a sharded channel was lost: RECONNECTED once placed */
    bool closed;
    unsigned refs;
};

static const char *const verb[3] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"};

static void sub_unref(ll_redis_cluster_sub *s) {
    if (--s->refs) return;
    for (slink *l = s->links, *next; l; l = next) {
        next = l->next;
        ll_redis_sub_close(l->sub);
        free(l);
    }
    for (sname *n = s->names, *next; n; n = next) {
        next = n->next;
        if (n->waiter) {
            ll_future_fail(n->waiter, LL_ECLOSED, "redis cluster subscriber: closed");
            ll_future_free(n->waiter);
        }
        free(n);
    }
    for (qmsg *q = s->head, *next; q; q = next) {
        next = q->next;
        ll__redis_message_free(q->m);
        free(q);
    }
    ll_event_free(s->wake);
    ll__cluster_unref(s->c);
    free(s);
}

/* ---- the queue ---- */

static void deliver(ll_redis_cluster_sub *s, ll_redis_message *m, bool always) {
    while (s->waiters) {
        waiter *w = s->waiters;
        s->waiters = w->next;
        ll_future *f = w->f;
        free(w);
        int rc = ll_future_resolve(f, m, ll__redis_message_free);
        ll_future_free(f);
        if (rc == 0) return;
    }
    qmsg *q = (!always && s->n >= s->max) ? NULL : malloc(sizeof *q);
    if (!q) {
        s->dropped++;
        ll__redis_message_free(m);
        return;
    }
    q->m = m;
    q->next = NULL;
    if (s->tail) s->tail->next = q;
    else s->head = q;
    s->tail = q;
    s->n++;
}

static void sink(void *arg, ll_redis_message *m) {
    slink *l = arg;
    if (l->owner->closed) {
        ll__redis_message_free(m);
        return;
    }
    deliver(l->owner, m, false);
}

/* A link's node subscriber: the link went down, or the server dropped a sharded channel. */
static void on_event(ll_redis_sub *sub, int ev, void *arg) {
    (void)sub;
    slink *l = arg;
    if (ev != RC_EV_DOWN || l->dead) return;
    l->dead = true;
    ll__cluster_node_failed(l->owner->c);
    ll_event_set(l->owner->wake);
}

static void on_message(ll_redis_sub *sub, const ll_redis_reply *r, void *arg) {
    (void)sub;
    slink *l = arg;
    if (strcmp(r->elem[0]->str, "sunsubscribe") != 0 || r->elem[1]->type != LL_REDIS_BULK) return;
    for (sname *n = l->owner->names; n; n = n->next) {
        if (n->kind == K_SHARD && n->at == l && !strcmp(n->name, r->elem[1]->str)) {
            n->at = NULL;
            l->owner->lost = true;
        }
    }
    ll_event_set(l->owner->wake);
}

/* ---- placing names (the placer task only) ---- */

/* A live link to node n, made if needed. */
static int link_to(ll_redis_cluster_sub *s, ll__cnode *n, slink **out, char *msg, size_t msgn) {
    for (slink *l = s->links; l; l = l->next) {
        if (l->node == n && !l->dead) {
            *out = l;
            return 0;
        }
    }
    char url[128];
    ll__cluster_node_url(n, url, sizeof url);
    ll_redis_opts o = s->c->node_opts;
    o.loop = s->c->loop;
    o.host = NULL;
    o.port = 0;
    o.unix_path = NULL;
    o.db = 0;
    o.no_reconnect = true;
    ll_future *f = ll_redis_sub_connect(url, &o, 0);
    int rc = f ? ll_await(f) : LL_ENOMEM;
    if (rc) {
        snprintf(msg, msgn, "%s", f ? ll_future_errmsg(f) : "out of memory");
        ll_future_free(f);
        return rc;
    }
    ll_redis_sub *sub = ll_future_take(f);
    ll_future_free(f);
    slink *l = calloc(1, sizeof *l);
    if (!l) {
        ll_redis_sub_close(sub);
        snprintf(msg, msgn, "out of memory");
        return LL_ENOMEM;
    }
    if (s->closed) {
        ll_redis_sub_close(sub);
        free(l);
        snprintf(msg, msgn, "redis cluster subscriber: closed");
        return LL_ECLOSED;
    }
    l->node = n;
    l->sub = sub;
    l->owner = s;
    ll__redis_sub_set_sink(sub, sink, l);
    ll__redis_sub_set_hooks(sub, on_message, on_event, l);
    l->next = s->links;
    s->links = l;
    *out = l;
    return 0;
}

static ll__cnode *home_of(ll_redis_cluster_sub *s, const sname *n) {
    ll_redis_cluster *c = s->c;
    if (n->kind == K_SHARD) {
        ll__shard *sh = c->slot[n->slot];
        return sh ? sh->master : NULL;
    }
    for (slink *l = s->links; l; l = l->next) /* keep channels together on a link in use */
        if (!l->dead) {
            for (size_t i = 0; i < c->nshards; i++)
                if (c->shards[i].master == l->node) return l->node;
        }
    return c->nshards ? c->shards[0].master : NULL;
}

static bool misplaced(ll_redis_cluster_sub *s, const sname *n) {
    if (n->gone) return false;
    if (!n->at || n->at->dead) return true;
    return n->kind == K_SHARD && n->at->node != home_of(s, n);
}

static void settle_waiter(sname *n, int rc, const char *msg) {
    if (!n->waiter) return;
    if (rc) ll_future_fail(n->waiter, rc, "%s", msg);
    else ll_future_resolve(n->waiter, NULL, NULL);
    ll_future_free(n->waiter);
    n->waiter = NULL;
}

/* Free what is no longer used: names unsubscribed, dead links. No await. A live link with no name
 * left stays open (at most one per node) until the subscriber is freed: closing it here could fail
 * the UNSUBSCRIBE still waiting for its reply on it. */
static void sweep(ll_redis_cluster_sub *s) {
    for (sname **pp = &s->names; *pp;) {
        sname *n = *pp;
        if (n->at && n->at->dead) {
            n->at = NULL;
            s->lost = true;
        }
        if (n->gone) {
            *pp = n->next;
            settle_waiter(n, LL_ECANCELED, "redis cluster subscriber: unsubscribed before confirmed");
            free(n);
        } else {
            pp = &n->next;
        }
    }
    for (slink **pp = &s->links; *pp;) {
        slink *l = *pp;
        if (l->dead) {
            *pp = l->next;
            ll_redis_sub_close(l->sub);
            free(l);
        } else {
            pp = &l->next;
        }
    }
}

/* Place one name. 0, or the error with msg filled. */
static int place(ll_redis_cluster_sub *s, sname *n, char *msg, size_t msgn) {
    ll__cnode *home = home_of(s, n);
    if (!home) {
        snprintf(msg, msgn, "redis cluster: no node serves slot %d", n->slot);
        return LL_EREDIS_CLUSTER;
    }
    slink *l = NULL;
    int rc = link_to(s, home, &l, msg, msgn);
    if (rc) return rc;
    if (n->gone || s->closed) return 0;
    if (n->at && n->at != l && !n->at->dead) {
        /* moved (its slot went elsewhere): leave the old node, its answer does not matter */
        ll_future_free(ll_redis_sunsubscribe(n->at->sub, n->name));
    }
    n->at = NULL;
    ll_future *f = n->kind == K_CHANNEL   ? ll_redis_subscribe(l->sub, n->name)
                   : n->kind == K_PATTERN ? ll_redis_psubscribe(l->sub, n->name)
                                          : ll_redis_ssubscribe(l->sub, n->name);
    rc = f ? ll_await(f) : LL_ENOMEM;
    if (rc) {
        snprintf(msg, msgn, "%s %s on %s: %s", verb[n->kind], n->name, home->addr,
                 f ? ll_future_errmsg(f) : "out of memory");
        if (rc == LL_EREDIS_REPLY) ll__cluster_node_failed(s->c); /* MOVED: the map is behind */
        ll_future_free(f);
        return rc;
    }
    ll_future_free(f);
    if (n->gone && !l->dead) { /* unsubscribed while we subscribed it: undo on the server */
        ll_future_free(n->kind == K_CHANNEL   ? ll_redis_unsubscribe(l->sub, n->name)
                       : n->kind == K_PATTERN ? ll_redis_punsubscribe(l->sub, n->name)
                                              : ll_redis_sunsubscribe(l->sub, n->name));
    }
    if (n->gone || l->dead) return 0; /* swept, or placed again, next round */
    n->at = l;
    settle_waiter(n, 0, NULL);
    return 0;
}

static int placer_task(void *arg) {
    ll_redis_cluster_sub *s = arg;
    ll_redis_cluster *c = s->c;
    double every = c->opts.refresh_interval > 0 ? c->opts.refresh_interval : 5.0;
    ll_time end; /* unused: healing has no budget (below) */
    double backoff = 0, backoff_max = 0;
    bool backing_off = false;
    char msg[512] = "";
    while (!s->closed && !ll_task_cancelled()) {
        ll_event_clear(s->wake);
        sweep(s);
        int failed = 0;
        for (sname *n = s->names; n && !s->closed; n = n->next) {
            if (!misplaced(s, n)) continue;
            bool moved = n->waiter == NULL; /* was placed once: this is a move */
            int rc = place(s, n, msg, sizeof msg);
            if (rc == LL_ECANCELED || s->closed) break;
            if (rc) {
                failed++;
                if (n->waiter && ll_now() >= n->give_up) {
                    char m[600];
                    snprintf(m, sizeof m, "redis cluster: could not subscribe: %.500s", msg);
                    settle_waiter(n, LL_EREDIS_CLUSTER, m);
                    n->gone = true;
                }
            } else if (moved) {
                c->st.resubscribes++;
            }
        }
        if (s->closed || ll_task_cancelled()) break;
        if (failed) {
            if (!backing_off) ll__cluster_retry_params(c, &end, &backoff, &backoff_max);
            backing_off = true;
            /* no budget for healing: it goes on until it succeeds or the subscriber is freed */
            int r = ll__cluster_backoff(c, LL_NEVER, &backoff, backoff_max);
            if (r == LL_ECANCELED || r == LL_ECLOSED) break;
            continue;
        }
        backing_off = false;
        if (s->lost) {
            bool all = true;
            for (sname *n = s->names; n; n = n->next) all = all && (n->gone || n->at);
            if (all) {
                s->lost = false;
                ll_redis_message *m = ll__redis_message_event(LL_REDIS_MSG_RECONNECTED);
                if (m) deliver(s, m, true);
                else s->dropped++;
            }
        }
        ll_scope sc;
        ll_scope_enter(&sc, ll_now() + every);
        int rc = ll_event_wait(s->wake);
        ll_scope_exit(&sc);
        if (rc && rc != LL_ETIMEDOUT) break;
    }
    ll_future *self = s->placer;
    s->placer = NULL;
    ll_future_free(self);
    sub_unref(s);
    return 0;
}

/* ---- the API ---- */

LL_EXPORT ll_redis_cluster_sub *ll_redis_cluster_sub_new(ll_redis_cluster *c, size_t queue_max) {
    if (!c || c->closed) return NULL;
    ll_redis_cluster_sub *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->c = c;
    ll__cluster_ref(c);
    s->refs = 1;
    s->max = queue_max ? queue_max : 10000;
    if (!(s->wake = ll_event_new())) {
        sub_unref(s);
        return NULL;
    }
    ll_spawn_opts so = {.name = "redis cluster subscriber", .loop = c->loop, .stack_size = 64 * 1024,
                        .deadline = LL_NEVER};
    s->refs++;
    s->placer = ll_spawn_ex(placer_task, s, &so);
    if (!s->placer || ll_future_done(s->placer)) {
        ll_future_free(s->placer);
        s->placer = NULL;
        s->refs--;
        sub_unref(s);
        return NULL;
    }
    return s;
}

LL_EXPORT void ll_redis_cluster_sub_free(ll_redis_cluster_sub *s) {
    if (!s || s->closed) return;
    s->closed = true;
    while (s->waiters) {
        waiter *w = s->waiters;
        s->waiters = w->next;
        ll_future_fail(w->f, LL_ECLOSED, "redis cluster subscriber: closed");
        ll_future_free(w->f);
        free(w);
    }
    for (slink *l = s->links; l; l = l->next) { /* what the placer awaits on them fails now */
        ll_redis_sub_close(l->sub);
        l->sub = NULL;
        l->dead = true;
    }
    for (sname *n = s->names; n; n = n->next)
        settle_waiter(n, LL_ECLOSED, "redis cluster subscriber: closed");
    if (s->placer) ll_future_cancel(s->placer);
    ll_event_set(s->wake);
    sub_unref(s);
}

static ll_future *add_name(ll_redis_cluster_sub *s, int kind, const char *name, const char *fn) {
    if (!s || !name) return ll_future_failed(s ? s->c->loop : NULL, LL_EINVAL, "%s: %s is NULL", fn, s ? "name" : "sub");
    if (s->closed) return ll_future_failed(s->c->loop, LL_ECLOSED, "redis cluster subscriber: closed");
    for (sname *n = s->names; n; n = n->next)
        if (!n->gone && n->kind == kind && !strcmp(n->name, name))
            return ll_future_failed(s->c->loop, LL_EALREADY, "%s: already subscribed to \"%s\"", fn, name);
    size_t len = strlen(name);
    sname *n = calloc(1, sizeof *n + len + 1);
    ll_future *f = n ? ll_future_new(s->c->loop) : NULL;
    if (!f) {
        free(n);
        return NULL;
    }
    ll_future_set_label(f, "redis cluster subscribe");
    memcpy(n->name, name, len + 1);
    n->kind = kind;
    n->slot = (int)ll_redis_cluster_keyslot(name, len);
    n->waiter = ll_future_ref(f);
    ll_time end;
    double b, bm;
    ll__cluster_retry_params(s->c, &end, &b, &bm);
    n->give_up = end;
    n->next = s->names;
    s->names = n;
    ll_event_set(s->wake);
    return f;
}

static ll_future *drop_name(ll_redis_cluster_sub *s, int kind, const char *name, const char *fn) {
    if (!s || !name) return ll_future_failed(s ? s->c->loop : NULL, LL_EINVAL, "%s: %s is NULL", fn, s ? "name" : "sub");
    if (s->closed) return ll_future_failed(s->c->loop, LL_ECLOSED, "redis cluster subscriber: closed");
    for (sname *n = s->names; n; n = n->next) {
        if (n->gone || n->kind != kind || strcmp(n->name, name)) continue;
        n->gone = true;
        ll_event_set(s->wake);
        if (n->at && !n->at->dead) {
            ll_redis_sub *sub = n->at->sub;
            return kind == K_CHANNEL   ? ll_redis_unsubscribe(sub, name)
                   : kind == K_PATTERN ? ll_redis_punsubscribe(sub, name)
                                       : ll_redis_sunsubscribe(sub, name);
        }
        break;
    }
    ll_future *f = ll_future_new(s->c->loop);
    if (f) ll_future_resolve(f, NULL, NULL);
    return f;
}

LL_EXPORT ll_future *ll_redis_cluster_subscribe(ll_redis_cluster_sub *s, const char *channel) {
    return add_name(s, K_CHANNEL, channel, "ll_redis_cluster_subscribe");
}
LL_EXPORT ll_future *ll_redis_cluster_psubscribe(ll_redis_cluster_sub *s, const char *pattern) {
    return add_name(s, K_PATTERN, pattern, "ll_redis_cluster_psubscribe");
}
LL_EXPORT ll_future *ll_redis_cluster_ssubscribe(ll_redis_cluster_sub *s, const char *channel) {
    return add_name(s, K_SHARD, channel, "ll_redis_cluster_ssubscribe");
}
LL_EXPORT ll_future *ll_redis_cluster_unsubscribe(ll_redis_cluster_sub *s, const char *channel) {
    return drop_name(s, K_CHANNEL, channel, "ll_redis_cluster_unsubscribe");
}
LL_EXPORT ll_future *ll_redis_cluster_punsubscribe(ll_redis_cluster_sub *s, const char *pattern) {
    return drop_name(s, K_PATTERN, pattern, "ll_redis_cluster_punsubscribe");
}
LL_EXPORT ll_future *ll_redis_cluster_sunsubscribe(ll_redis_cluster_sub *s, const char *channel) {
    return drop_name(s, K_SHARD, channel, "ll_redis_cluster_sunsubscribe");
}

static void waiter_cancel(ll_future *f, void *arg) {
    ll_redis_cluster_sub *s = arg;
    for (waiter **pp = &s->waiters; *pp; pp = &(*pp)->next) {
        if ((*pp)->f != f) continue;
        waiter *w = *pp;
        *pp = w->next;
        free(w);
        ll_future_set_cancelled(f);
        ll_future_free(f);
        return;
    }
    ll_future_set_cancelled(f);
}

LL_EXPORT ll_future *ll_redis_cluster_sub_next(ll_redis_cluster_sub *s) {
    if (!s) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_cluster_sub_next: sub is NULL");
    if (s->closed) return ll_future_failed(s->c->loop, LL_ECLOSED, "redis cluster subscriber: closed");
    ll_future *f = ll_future_new(s->c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "redis cluster message");
    if (s->head) {
        qmsg *q = s->head;
        s->head = q->next;
        if (!s->head) s->tail = NULL;
        s->n--;
        ll_future_resolve(f, q->m, ll__redis_message_free);
        free(q);
        return f;
    }
    waiter *w = malloc(sizeof *w);
    if (!w) {
        ll_future_fail(f, LL_ENOMEM, "redis cluster subscriber: out of memory");
        return f;
    }
    w->f = ll_future_ref(f);
    w->next = NULL;
    waiter **pp = &s->waiters; /* FIFO: messages go to readers in the order they asked */
    while (*pp) pp = &(*pp)->next;
    *pp = w;
    ll_future_on_cancel(f, waiter_cancel, s);
    return f;
}

LL_EXPORT uint64_t ll_redis_cluster_sub_dropped(const ll_redis_cluster_sub *s) { return s ? s->dropped : 0; }
