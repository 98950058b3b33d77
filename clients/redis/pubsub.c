/*
 * pubsub.c — ll_redis_sub: a connection of its own in subscriber mode. Messages go to a bounded
 * queue read with awaitable futures; (un)subscribe requests get the server's confirmation like a
 * command gets its reply. After a reconnect every channel and pattern is subscribed again during
 * the setup, before anything else, and an LL_REDIS_MSG_RECONNECTED event is queued: messages
 * published while the link was down are lost, and the reader is told so.
 *
 * Sharded channels (SSUBSCRIBE, Redis 7) arrive as "smessage". When the node stops serving the
 * channel's slot (resharded, or the node turned replica) the server unsubscribes us on its own with
 * a "sunsubscribe" push: that is told apart from the reply to our own SUNSUBSCRIBE by counting the
 * ones we sent, and the channel is dropped from the names renewed on reconnect (the cluster
 * subscriber, cluster_sub.c, is told through its hook and subscribes again where the slot went).
 */
#include <stdio.h>
#include <string.h>
#include "redis_internal.h"

typedef struct sub_msg {
    ll_redis_message m;      /* first: the future's value is the allocation itself */
    struct sub_msg *next;
    ll_redis_reply *r;       /* owns the strings m points into */
} sub_msg;

typedef struct sub_waiter {
    struct sub_waiter *next, *prev;
    ll_future *f;
} sub_waiter;

typedef struct sub_name {
    struct sub_name *next;
    int kind;                /* 0 channel, 1 pattern, 2 sharded channel */
    char name[];
} sub_name;

static const char *const sub_verb[3] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"};

struct ll_redis_sub {
    ll_redis_conn *c;
    sub_msg *head, *tail;
    size_t n, max;
    uint64_t dropped;
    sub_waiter *wh, *wt;
    sub_name *names;
    bool was_down;
    unsigned sunsub_pending; /* our SUNSUBSCRIBEs not yet answered */
    /* where messages go instead of the queue (the cluster subscriber) */
    void (*sink)(void *arg, ll_redis_message *m);
    void *sink_arg;
    /* a hook for the client-side cache: invalidation messages */
    void (*on_message)(ll_redis_sub *s, const ll_redis_reply *msg, void *arg);
    void *on_message_arg;
    void (*on_event)(ll_redis_sub *s, int ev, void *arg);
};

void ll__redis_message_free(void *p) {
    sub_msg *m = p;
    if (!m) return;
    ll_redis_reply_free(m->r);
    ll_free(m);
}

LL_EXPORT ll_redis_message *ll_redis_message_of(ll_future *f) {
    return ll_future_value_as(f, ll__redis_message_free);
}

static bool is_push(ll_redis_conn *c, const ll_redis_reply *r) {
    if (r->type != LL_REDIS_ARRAY || r->len < 3 || r->elem[0]->type != LL_REDIS_BULK) return false;
    const char *k = r->elem[0]->str;
    if (r->len == 3 && strcmp(k, "sunsubscribe") == 0) {
        ll_redis_sub *s = c->push_arg;
        if (s->sunsub_pending) { /* the reply to ours */
            s->sunsub_pending--;
            return false;
        }
        return true; /* the server's own: the slot is no longer served there */
    }
    return (r->len == 3 && (strcmp(k, "message") == 0 || strcmp(k, "smessage") == 0)) ||
           (r->len == 4 && strcmp(k, "pmessage") == 0);
}

ll_redis_message *ll__redis_message_event(ll_redis_msg_kind kind) {
    sub_msg *m = ll_calloc(1, sizeof *m);
    if (!m) return NULL;
    m->m.kind = kind;
    m->m.channel = "";
    return &m->m;
}

static void forget(ll_redis_sub *s, int kind, const char *name) {
    for (sub_name **pp = &s->names; *pp; pp = &(*pp)->next) {
        if ((*pp)->kind == kind && strcmp((*pp)->name, name) == 0) {
            sub_name *gone = *pp;
            *pp = gone->next;
            ll_free(gone);
            return;
        }
    }
}

static void deliver(ll_redis_sub *s, sub_msg *m) {
    if (s->sink) {
        s->sink(s->sink_arg, &m->m);
        return;
    }
    while (s->wh) {
        sub_waiter *w = s->wh;
        s->wh = w->next;
        if (s->wh) s->wh->prev = NULL;
        else s->wt = NULL;
        ll_future *f = w->f;
        ll_free(w);
        int rc = ll_future_resolve(f, m, ll__redis_message_free);
        ll_future_free(f);
        if (rc == 0) return;
    }
    m->next = NULL;
    if (s->tail) s->tail->next = m;
    else s->head = m;
    s->tail = m;
    s->n++;
}

static void on_push(ll_redis_conn *c, ll_redis_reply *r, void *arg) {
    ll_redis_sub *s = arg;
    (void)c;
    if (s->on_message) s->on_message(s, r, s->on_message_arg);
    if (strcmp(r->elem[0]->str, "sunsubscribe") == 0) {
        if (r->elem[1]->type == LL_REDIS_BULK) forget(s, 2, r->elem[1]->str);
        ll_redis_reply_free(r);
        return;
    }
    bool pm = r->len == 4;
    const ll_redis_reply *ch = r->elem[pm ? 2 : 1], *data = r->elem[pm ? 3 : 2];
    if (s->on_message && ch->type == LL_REDIS_BULK && strcmp(ch->str, "__redis__:invalidate") == 0) {
        ll_redis_reply_free(r); /* the cache's business, not the reader's */
        return;
    }
    if (s->n >= s->max && !s->wh) {
        s->dropped++;
        ll_redis_reply_free(r);
        return;
    }
    sub_msg *m = ll_calloc(1, sizeof *m);
    if (!m) {
        s->dropped++;
        ll_redis_reply_free(r);
        return;
    }
    m->r = r;
    m->m.kind = pm ? LL_REDIS_MSG_PMESSAGE
                   : r->elem[0]->str[0] == 's' ? LL_REDIS_MSG_SMESSAGE : LL_REDIS_MSG_MESSAGE;
    if (pm) m->m.pattern = r->elem[1]->str;
    m->m.channel = ch->str;
    m->m.channel_len = ch->len;
    if (data->type == LL_REDIS_BULK) {
        m->m.data = data->str;
        m->m.len = data->len;
    }
    deliver(s, m);
}

static void on_event(ll_redis_conn *c, int ev, void *arg) {
    ll_redis_sub *s = arg;
    (void)c;
    if (ev == RC_EV_DOWN) s->was_down = true;
    if (ev == RC_EV_UP && s->was_down) {
        s->was_down = false;
        sub_msg *m = ll_calloc(1, sizeof *m);
        if (m) { /* always queued, even over the bound: losing it would hide the loss */
            m->m.kind = LL_REDIS_MSG_RECONNECTED;
            m->m.channel = "";
            deliver(s, m);
        } else {
            s->dropped++;
        }
    }
    if (s->on_event) s->on_event(s, ev, s->on_message_arg);
}

/* During the setup of every link: subscribe again to everything. */
int ll__redis_resubscribe(ll_redis_conn *c, void *arg, char *why, size_t wlen) {
    ll_redis_sub *s = arg;
    for (sub_name *n = s->names; n; n = n->next) {
        const char *av[2] = {sub_verb[n->kind], n->name};
        int rc = ll__rc_setup_cmd(c, av[0], 2, av, why, wlen, NULL);
        if (rc) return rc;
    }
    return 0;
}

static void prepare(ll_redis_conn *c, void *arg) {
    ll_redis_sub *s = arg;
    s->c = c;
    c->pubsub = true;
    c->on_push_test = is_push;
    c->on_push = on_push;
    c->push_arg = s;
    c->on_event = on_event;
    c->event_arg = s;
    c->extra_setup = ll__redis_resubscribe;
    c->extra_arg = s;
    c->refs++; /* the sub's, dropped by ll_redis_sub_close */
}

static void sub_close_value(void *p) { ll_redis_sub_close(p); }

typedef struct sub_connecting {
    ll_redis_sub *s;
    ll_future *outer, *inner;
} sub_connecting;

static void connected(ll_future *inner, void *arg) {
    sub_connecting *sc = arg;
    if (ll_future_code(inner) == 0) {
        ll_future_take(inner); /* the conn: the sub owns it now */
        if (ll_future_resolve(sc->outer, sc->s, sub_close_value)) ll_redis_sub_close(sc->s);
    } else {
        if (!ll_future_done(sc->outer)) ll__redis_forward(sc->outer, inner);
        ll_redis_sub_close(sc->s);
    }
    ll_future_free(sc->outer);
    ll_future_free(sc->inner);
    ll_free(sc);
}

static void connect_cancel(ll_future *f, void *arg) {
    sub_connecting *sc = arg;
    (void)f;
    ll_future_cancel(sc->inner);
}

ll_future *ll__redis_sub_connect_cfg(rc_cfg *cfg, ll_loop *loop, size_t queue_max,
                                     ll_redis_sub **out) {
    ll_redis_sub *s = ll_calloc(1, sizeof *s);
    ll_future *outer = ll_future_new(loop);
    sub_connecting *sc = ll_calloc(1, sizeof *sc);
    if (!s || !outer || !sc) {
        ll__rc_cfg_free(cfg);
        ll_free(s);
        ll_free(sc);
        if (outer) ll_future_fail(outer, LL_ENOMEM, "redis subscriber: out of memory");
        return outer;
    }
    s->max = queue_max ? queue_max : 10000;
    ll_future_set_label(outer, "redis subscriber connect");
    ll_future *inner = ll__rc_connect_cfg(cfg, loop, prepare, s);
    if (!inner || !s->c) {
        ll_future_free(inner);
        ll_free(s);
        ll_free(sc);
        ll_future_fail(outer, LL_ENOMEM, "redis subscriber: out of memory");
        return outer;
    }
    sc->s = s;
    sc->outer = ll_future_ref(outer);
    sc->inner = inner;
    if (ll_future_add_done(inner, connected, sc)) {
        ll_future_cancel(inner);
        ll_future_free(inner);
        ll_future_free(outer);
        ll_free(sc);
        ll_redis_sub_close(s);
        ll_future_fail(outer, LL_ENOMEM, "redis subscriber: out of memory");
        return outer;
    }
    ll_future_on_cancel(outer, connect_cancel, sc);
    if (out) *out = s;
    return outer;
}

LL_EXPORT ll_future *ll_redis_sub_connect(const char *url, const ll_redis_opts *opts,
                                          size_t queue_max) {
    ll_loop *loop = opts && opts->loop ? opts->loop : ll_loop_current();
    char err[200];
    rc_cfg *cfg;
    int rc = ll__rc_cfg_new(&cfg, url, opts, err, sizeof err);
    if (rc) return ll_future_failed(loop, rc, "%s", err);
    return ll__redis_sub_connect_cfg(cfg, loop, queue_max, NULL);
}

LL_EXPORT void ll_redis_sub_close(ll_redis_sub *s) {
    if (!s) return;
    while (s->wh) {
        sub_waiter *w = s->wh;
        s->wh = w->next;
        ll_future_fail(w->f, LL_ECLOSED, "redis subscriber %s: closed", ll__rc_peer(s->c));
        ll_future_free(w->f);
        ll_free(w);
    }
    while (s->head) {
        sub_msg *m = s->head;
        s->head = m->next;
        ll__redis_message_free(m);
    }
    while (s->names) {
        sub_name *n = s->names;
        s->names = n->next;
        ll_free(n);
    }
    ll_redis_conn *c = s->c;
    c->on_push = NULL;
    c->on_event = NULL;
    c->extra_setup = NULL;
    ll_redis_close(c);  /* the owner's reference (if nobody closed it yet) */
    ll__rc_unref(c);    /* the sub's */
    ll_free(s);
}

static ll_future *sub_cmd(ll_redis_sub *s, const char *cmd, const char *name, int kind,
                          int change) {
    if (!s || !name)
        return ll_future_failed(NULL, LL_EINVAL, "ll_redis_%s: %s is NULL", cmd, s ? "name" : "sub");
    if (change > 0) {
        size_t n = strlen(name);
        sub_name *e = ll_malloc(sizeof *e + n + 1);
        if (!e) return NULL;
        e->kind = kind;
        memcpy(e->name, name, n + 1);
        e->next = s->names;
        s->names = e;
    } else {
        forget(s, kind, name);
        if (kind == 2) s->sunsub_pending++;
    }
    const char *av[2] = {cmd, name};
    return ll_redis_command(s->c, 2, av, NULL);
}

LL_EXPORT ll_future *ll_redis_subscribe(ll_redis_sub *s, const char *channel) {
    return sub_cmd(s, "SUBSCRIBE", channel, 0, 1);
}
LL_EXPORT ll_future *ll_redis_psubscribe(ll_redis_sub *s, const char *pattern) {
    return sub_cmd(s, "PSUBSCRIBE", pattern, 1, 1);
}
LL_EXPORT ll_future *ll_redis_unsubscribe(ll_redis_sub *s, const char *channel) {
    return sub_cmd(s, "UNSUBSCRIBE", channel, 0, -1);
}
LL_EXPORT ll_future *ll_redis_punsubscribe(ll_redis_sub *s, const char *pattern) {
    return sub_cmd(s, "PUNSUBSCRIBE", pattern, 1, -1);
}
LL_EXPORT ll_future *ll_redis_ssubscribe(ll_redis_sub *s, const char *channel) {
    return sub_cmd(s, "SSUBSCRIBE", channel, 2, 1);
}
LL_EXPORT ll_future *ll_redis_sunsubscribe(ll_redis_sub *s, const char *channel) {
    return sub_cmd(s, "SUNSUBSCRIBE", channel, 2, -1);
}

static void waiter_cancel(ll_future *f, void *arg) {
    ll_redis_sub *s = arg;
    for (sub_waiter *w = s->wh; w; w = w->next) {
        if (w->f != f) continue;
        if (w->prev) w->prev->next = w->next;
        else s->wh = w->next;
        if (w->next) w->next->prev = w->prev;
        else s->wt = w->prev;
        ll_free(w);
        ll_future_set_cancelled(f);
        ll_future_free(f);
        return;
    }
    ll_future_set_cancelled(f);
}

LL_EXPORT ll_future *ll_redis_sub_next(ll_redis_sub *s) {
    if (!s) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_sub_next: sub is NULL");
    ll_future *f = ll_future_new(s->c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "redis message");
    if (s->head) {
        sub_msg *m = s->head;
        s->head = m->next;
        if (!s->head) s->tail = NULL;
        s->n--;
        ll_future_resolve(f, m, ll__redis_message_free);
        return f;
    }
    if (s->c->state == RC_CLOSED) {
        ll_future_fail(f, LL_ECLOSED, "redis subscriber %s: connection closed", ll__rc_peer(s->c));
        return f;
    }
    sub_waiter *w = ll_calloc(1, sizeof *w);
    if (!w) {
        ll_future_fail(f, LL_ENOMEM, "redis subscriber: out of memory");
        return f;
    }
    w->f = ll_future_ref(f);
    w->prev = s->wt;
    if (s->wt) s->wt->next = w;
    else s->wh = w;
    s->wt = w;
    ll_future_on_cancel(f, waiter_cancel, s);
    return f;
}

LL_EXPORT uint64_t ll_redis_sub_dropped(const ll_redis_sub *s) { return s ? s->dropped : 0; }
LL_EXPORT size_t ll_redis_sub_queued(const ll_redis_sub *s) { return s ? s->n : 0; }
LL_EXPORT ll_redis_conn *ll_redis_sub_conn(ll_redis_sub *s) { return s ? s->c : NULL; }

void ll__redis_sub_set_hooks(ll_redis_sub *s,
                             void (*on_message)(ll_redis_sub *, const ll_redis_reply *, void *),
                             void (*on_ev)(ll_redis_sub *, int, void *), void *arg) {
    s->on_message = on_message;
    s->on_event = on_ev;
    s->on_message_arg = arg;
}

void ll__redis_sub_set_sink(ll_redis_sub *s, void (*sink)(void *arg, ll_redis_message *m), void *arg) {
    s->sink = sink;
    s->sink_arg = arg;
}
