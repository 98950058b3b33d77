/*
 * poll.c — the public fd watcher: readiness of a descriptor the caller owns, as futures.
 *
 * Design notes:
 * - One ev_io per poller watches the union of the events its pending waits ask for. With no wait
 *   pending the watcher is stopped, so an idle poller costs nothing and never keeps the loop
 *   alive; with waits pending it keeps the loop alive unless the owner said otherwise
 *   (ll_poller_set_ref: a connection listening for notifications while no request is in flight).
 * - Each wait is a small record on the poller's list holding a reference to its future. A wait
 *   leaves the list when it settles (ready, cancelled, poller freed), so once its future has
 *   settled nothing of it looks at the caller's descriptor (promise 1 of docs/design.md).
 * - Waits are cancellable, which is all a deadline needs: ll_await cancels the future at the
 *   task's deadline and the hook settles it at once (promise 2).
 * - Settling only queues the done callbacks (future.c), so nothing re-enters the poller while
 *   on_io walks its list; a callback that frees the poller runs later, from the loop.
 * - A mask change on the same descriptor uses ev_io_modify (libev may keep the kernel
 *   registration); a new descriptor uses ev_io_set, which makes libev re-register it even when the
 *   number is the same (libpq closes a socket and opens another while it tries addresses).
 * - ll_poll() is a poller that frees itself when its one wait settles.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include "internal.h"
#include "containers.h"
#include "libloop/poll.h"

typedef struct pwait {
    ll__dlink link;     /* first: the list node is the record */
    ll_poller *p;
    ll_future *f;       /* our reference, while pending */
    int events;
} pwait;

struct ll_poller {
    ev_io io;
    ll_loop *loop;
    int fd;
    int watching;       /* the mask the started watcher has (0: stopped) */
    bool fd_changed;    /* ev_io_set before the next start */
    bool keep_alive;
    bool unrefd;        /* we called ev_unref for the started watcher */
    bool oneshot;       /* ll_poll: freed when its wait settles */
    ll__dlist waits;
    ll__closer closer;  /* ll_loop_free frees a poller the application left open */
};

static int to_ev(int events) {
    return (events & LL_POLL_READ ? EV_READ : 0) | (events & LL_POLL_WRITE ? EV_WRITE : 0);
}

static int from_ev(int revents) {
    return (revents & EV_READ ? LL_POLL_READ : 0) | (revents & EV_WRITE ? LL_POLL_WRITE : 0);
}

static void watcher_stop(ll_poller *p) {
    if (p->unrefd) {
        ev_ref(p->loop->ev);
        p->unrefd = false;
    }
    if (ev_is_active(&p->io)) ev_io_stop(p->loop->ev, &p->io);
    p->watching = 0;
}

/* Take w off the list and drop it; the caller settles w->f first. */
static void wait_end(pwait *w) {
    ll__list_remove(&w->p->waits, &w->link);
    ll_future_free(w->f);
    ll__free(w);
}

static void fail_all(ll_poller *p, int code, const char *why) {
    while (p->waits.head) {
        pwait *w = (pwait *)p->waits.head;
        ll_future_fail(w->f, code, "poll fd %d: %s", p->fd, why);
        wait_end(w);
    }
}

/* Make the watcher match the pending waits, the descriptor and the keep-alive choice. */
static void update(ll_poller *p) {
    int mask = 0;
    for (ll__dlink *l = p->waits.head; l; l = l->next) mask |= ((pwait *)l)->events;
    int want = p->fd >= 0 ? to_ev(mask) : 0;
    if (!want) {
        watcher_stop(p);
        return;
    }
    /* libev aborts on a descriptor the kernel does not know: check a new one before it sees it */
    if (p->fd_changed && fcntl(p->fd, F_GETFD) == -1 && errno == EBADF) {
        watcher_stop(p);
        fail_all(p, LL_EBADF, "not an open descriptor");
        return;
    }
    bool weak = !p->keep_alive;
    if (want != p->watching || p->fd_changed || !ev_is_active(&p->io)) {
        watcher_stop(p);
        if (p->fd_changed) ev_io_set(&p->io, p->fd, want);
        else ev_io_modify(&p->io, want);
        p->fd_changed = false;
        ev_io_start(p->loop->ev, &p->io);
        p->watching = want;
    }
    if (weak != p->unrefd) {
        if (weak) ev_unref(p->loop->ev);
        else ev_ref(p->loop->ev);
        p->unrefd = weak;
    }
}

static void poller_destroy(ll_poller *p) {
    watcher_stop(p);
    ll__closer_remove(p->loop, &p->closer);
    ll__handle_unref(p->loop);
    ll__free(p);
}

/* After a wait ended: a one-shot poller goes, others re-fit their watcher. */
static void after_end(ll_poller *p) {
    if (p->oneshot && !p->waits.head) poller_destroy(p);
    else update(p);
}

static void on_io(struct ev_loop *ev, ev_io *io, int revents) {
    (void)ev;
    ll_poller *p = (ll_poller *)io;
    if (revents & EV_ERROR) {
        /* libev could not watch the descriptor (closed behind our back) and stopped the
         * watcher; its start no longer counts, so neither may our unref */
        if (p->unrefd) ev_ref(p->loop->ev);
        p->unrefd = false;
        p->watching = 0;
        fail_all(p, LL_EBADF, "not an open descriptor");
        after_end(p);
        return;
    }
    int got = from_ev(revents);
    for (ll__dlink *l = p->waits.head, *next; l; l = next) {
        next = l->next;
        pwait *w = (pwait *)l;
        int ready = w->events & got;
        if (!ready) continue;
        ll_future_resolve(w->f, (void *)(uintptr_t)ready, NULL);
        wait_end(w);
    }
    after_end(p);
}

static void wait_cancel(ll_future *f, void *arg) {
    pwait *w = arg;
    ll_poller *p = w->p;
    ll_future_set_cancelled(f);
    wait_end(w);
    after_end(p);
}

static void poller_closer(ll__closer *c) {
    ll_poller_free((ll_poller *)(void *)((char *)c - offsetof(ll_poller, closer)));
}

static ll_poller *poller_make(ll_loop *loop, int fd, const ll_poll_opts *opts) {
    ll_poller *p = ll__calloc(1, sizeof *p);
    if (!p) return NULL;
    p->loop = loop;
    p->fd = fd;
    p->fd_changed = true;
    p->keep_alive = !(opts && opts->weak);
    ev_init(&p->io, on_io);
    p->closer.close = poller_closer;
    ll__closer_add(loop, &p->closer);
    ll__handle_ref(loop);
    return p;
}

static ll_loop *opts_loop(const ll_poll_opts *opts) {
    return ll__loop_or_current(opts ? opts->loop : NULL);
}

ll_poller *ll_poller_new(int fd, const ll_poll_opts *opts) {
    ll_loop *loop = opts_loop(opts);
    if (!loop || fd < -1) return NULL;
    return poller_make(loop, fd, opts);
}

ll_future *ll_poller_wait(ll_poller *p, int events) {
    if (!p) return ll_future_failed(NULL, LL_EINVAL, "ll_poller_wait: poller is NULL");
    events &= LL_POLL_READ | LL_POLL_WRITE;
    if (!events)
        return ll_future_failed(p->loop, LL_EINVAL,
                                "ll_poller_wait: events must include LL_POLL_READ or LL_POLL_WRITE");
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    pwait *w = ll__malloc(sizeof *w);
    if (!w) {
        ll_future_free(f);
        return NULL;
    }
    w->p = p;
    w->f = ll_future_ref(f);
    w->events = events;
    ll__list_push_back(&p->waits, &w->link);
    ll_future_on_cancel(f, wait_cancel, w);
    ll_future_set_label(f, events == LL_POLL_WRITE ? "poll write"
                           : events == LL_POLL_READ ? "poll read" : "poll");
    update(p);
    return f;
}

ll_future *ll_poll(int fd, int events, const ll_poll_opts *opts) {
    ll_loop *loop = opts_loop(opts);
    if (!loop) return NULL;
    if (fd < 0) return ll_future_failed(loop, LL_EINVAL, "ll_poll: fd %d is not a descriptor", fd);
    if (!(events & (LL_POLL_READ | LL_POLL_WRITE)))
        return ll_future_failed(loop, LL_EINVAL,
                                "ll_poll: events must include LL_POLL_READ or LL_POLL_WRITE");
    ll_poller *p = poller_make(loop, fd, opts);
    if (!p) return NULL;
    ll_future *f = ll_poller_wait(p, events);
    if (!f || !p->waits.head) poller_destroy(p); /* out of memory, or failed at once (EBADF) */
    else p->oneshot = true;
    return f;
}

void ll_poller_set_fd(ll_poller *p, int fd) {
    if (!p) return;
    p->fd = fd < 0 ? -1 : fd;
    p->fd_changed = true;
    watcher_stop(p);
    update(p);
}

int ll_poller_fd(const ll_poller *p) {
    return p ? p->fd : -1;
}

void ll_poller_set_ref(ll_poller *p, bool keep_alive) {
    if (!p || p->keep_alive == keep_alive) return;
    p->keep_alive = keep_alive;
    update(p);
}

void ll_poller_free(ll_poller *p) {
    if (!p) return;
    watcher_stop(p);
    fail_all(p, LL_ECLOSED, "the watcher was freed");
    poller_destroy(p);
}

int ll_poll_events(const ll_future *f) {
    if (!f || ll_future_get_state(f) != LL_FUTURE_RESOLVED) return 0;
    return (int)(uintptr_t)ll_future_value(f);
}
