/*
 * notify.c — LISTEN/NOTIFY: notifications land in a per-connection queue that tasks await.
 *
 * Design notes:
 * - libpq collects notifications whenever it reads (our watcher always reads, idle or not);
 *   after each read they are moved to the queue, or straight to the oldest waiting future.
 * - The queue is bounded (notify_queue_max): a listener that never reads must not grow memory
 *   without limit. The oldest notification is dropped and counted, as a full socket would.
 * - A waiter keeps the loop alive (the watcher is referenced while anyone waits).
 * - A notification is never handed to a waiter nobody holds any more (the caller freed its
 *   future without waiting): resolving such a future and dropping our reference destroys it at
 *   once, which the value destructor notices ("bouncing"), and the notification goes to the next
 *   waiter or back to the queue.
 */
#include <string.h>
#include "pg_internal.h"

static pg_note *note_from(PGnotify *n) {
    size_t cl = strlen(n->relname) + 1, pl = strlen(n->extra ? n->extra : "") + 1;
    pg_note *note = ll_malloc(sizeof *note + cl + pl);
    if (!note) return NULL;
    char *p = (char *)(note + 1);
    memcpy(p, n->relname, cl);
    memcpy(p + cl, n->extra ? n->extra : "", pl);
    note->n.channel = p;
    note->n.payload = p + cl;
    note->n.be_pid = n->be_pid;
    note->next = NULL;
    return note;
}

/* The notification being handed to a waiter right now; its destructor keeps it if the waiter's
 * future is destroyed by our own last reference. */
static _Thread_local pg_note *bouncing;
static _Thread_local bool bounced;

static void note_free(void *p) {
    if (p == bouncing) {
        bounced = true;
        return;
    }
    ll_free(p);
}

static void waiter_unlink(ll_pg_conn *c, pg_waiter *w) {
    if (w->prev) w->prev->next = w->next;
    else c->waiters_head = w->next;
    if (w->next) w->next->prev = w->prev;
    else c->waiters_tail = w->prev;
}

void ll__pg_collect_notifies(ll_pg_conn *c) {
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
        pg_note *note = note_from(n);
        PQfreemem(n);
        if (!note) {
            c->notes_dropped++;
            continue;
        }
        bool delivered = false;
        while (!delivered && c->waiters_head) {
            pg_waiter *w = c->waiters_head;
            waiter_unlink(c, w);
            bouncing = note;
            bounced = false;
            if (ll_future_resolve(w->f, note, note_free) != 0) bounced = true;
            ll_future_free(w->f); /* the last reference when the caller abandoned it */
            bouncing = NULL;
            ll_free(w);
            delivered = !bounced;
        }
        if (delivered) continue;
        if (c->nnotes >= c->opts.notify_queue_max && c->notes_head) {
            pg_note *old = c->notes_head;
            c->notes_head = old->next;
            if (!c->notes_head) c->notes_tail = NULL;
            c->nnotes--;
            c->notes_dropped++;
            ll_free(old);
        }
        if (c->notes_tail) c->notes_tail->next = note;
        else c->notes_head = note;
        c->notes_tail = note;
        c->nnotes++;
    }
}

static void waiter_cancel(ll_future *f, void *arg) {
    pg_waiter *w = arg;
    ll_pg_conn *c = w->conn;
    waiter_unlink(c, w);
    ll_future_set_cancelled(f);
    ll_future_free(w->f);
    ll_free(w);
    ll__pg_io_update(c);
}

ll_future *ll_pg_next_notification(ll_pg_conn *c) {
    LL_REQUIRE_ARG(c, "conn");
    ll_future *f = ll_future_new(c ? c->loop : NULL);
    if (!f) return NULL;
    ll_future_set_label(f, "pg notification");
    if (!c) {
        ll_future_fail(f, LL_EINVAL, "postgres notification: no connection");
        return f;
    }
    if (c->notes_head) {
        pg_note *note = c->notes_head;
        c->notes_head = note->next;
        if (!c->notes_head) c->notes_tail = NULL;
        c->nnotes--;
        ll_future_resolve(f, note, note_free);
        return f;
    }
    if (c->state != PG_READY) {
        ll_future_fail(f, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                       "postgres %s: connection %s", c->peer ? c->peer : "?",
                       c->state == PG_BROKEN ? "lost" : "closed");
        return f;
    }
    pg_waiter *w = ll_calloc(1, sizeof *w);
    if (!w) {
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory", c->peer);
        return f;
    }
    w->f = ll_future_ref(f);
    w->conn = c;
    w->prev = c->waiters_tail;
    if (c->waiters_tail) c->waiters_tail->next = w;
    else c->waiters_head = w;
    c->waiters_tail = w;
    ll_future_on_cancel(f, waiter_cancel, w);
    ll__pg_io_update(c);
    return f;
}

void ll__pg_notify_fail_all(ll_pg_conn *c, int code, const char *why) {
    while (c->waiters_head) {
        pg_waiter *w = c->waiters_head;
        waiter_unlink(c, w);
        if (code == LL_EPG_CONN) ll__pg_fail_conn(w->f, c, why);
        else ll_future_fail(w->f, code, "postgres %s: %s", c->peer, why);
        ll_future_free(w->f);
        ll_free(w);
    }
}

void ll__pg_notify_free_all(ll_pg_conn *c) {
    while (c->notes_head) {
        pg_note *n = c->notes_head;
        c->notes_head = n->next;
        ll_free(n);
    }
    c->notes_tail = NULL;
    c->nnotes = 0;
}

uint64_t ll_pg_notifications_dropped(const ll_pg_conn *c) {
    return c ? c->notes_dropped : 0;
}

static ll_future *channel_stmt(ll_pg_conn *c, const char *verb, const char *channel) {
    if (!c) {
        ll_future *f = ll_future_new(NULL);
        if (f) ll_future_fail(f, LL_EINVAL, "postgres %s: no connection", verb);
        return f;
    }
    char *q = channel ? ll__pg_quote_ident(channel) : NULL;
    char *sql = (q || !channel) ? ll_format("%s %s", verb, q ? q : "*") : NULL;
    ll_free(q);
    if (!sql) {
        ll_future *f = ll_future_new(c->loop);
        if (f) ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory", verb);
        return f;
    }
    ll_future *f = ll__pg_query_internal(c, sql, TXOP_NONE, ll__pg_task_id());
    ll_free(sql);
    return f;
}

ll_future *ll_pg_listen(ll_pg_conn *c, const char *channel) {
    LL_REQUIRE_ARG(c, "conn");
    if (!channel) {
        ll_future *f = ll_future_new(c ? c->loop : NULL);
        if (f) ll_future_fail(f, LL_EINVAL, "postgres LISTEN: no channel");
        return f;
    }
    return channel_stmt(c, "LISTEN", channel);
}

ll_future *ll_pg_unlisten(ll_pg_conn *c, const char *channel) {
    LL_REQUIRE_ARG(c, "conn");
    return channel_stmt(c, "UNLISTEN", channel);
}

ll_future *ll_pg_notify(ll_pg_conn *c, const char *channel, const char *payload) {
    LL_REQUIRE_ARG(channel, "channel");
    LL_REQUIRE_ARG(c, "conn");
    return ll_pg_query(c, "SELECT pg_notify($1, $2)", 2, channel, payload ? payload : "");
}
