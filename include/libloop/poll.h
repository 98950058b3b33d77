/*
 * libloop/poll.h — readiness of a file descriptor as futures: the fd watcher for libraries that
 * drive a descriptor they do not own through a stream (libpq's socket, a hiredis context, an
 * inotify fd, a pipe handed over by another library), so no client ever touches libev directly.
 *
 * Two forms:
 *   ll_poll(fd, events, opts)     one wait: a future that resolves once fd is ready.
 *   ll_poller_new(fd, opts)       a watcher kept for the life of a connection: ll_poller_wait()
 *                                 returns a future per wait, ll_poller_set_fd() follows a library
 *                                 that swaps its socket, ll_poller_set_ref() chooses whether
 *                                 pending waits keep the loop alive.
 * Readiness is level-triggered (as poll(2)): a wait on a descriptor that is already readable
 * resolves on the next loop iteration. The value of a resolved wait is the ready events
 * (LL_POLL_READ | LL_POLL_WRITE, as uintptr_t; read it with ll_poll_events()). Error and hang-up
 * conditions show as readable and writable, as in poll(2): the next read or write says what
 * happened.
 *
 * Cancellation and deadlines: cancelling a wait stops it at once (the future settles cancelled),
 * so an await under a deadline (ll_scope_enter, ll_await_timeout) returns LL_ETIMEDOUT at the
 * deadline. A poller with no pending wait watches nothing and never keeps the loop alive.
 *
 * Ownership: the descriptor stays the caller's; libloop never reads, writes or closes it. Once a
 * wait's future has settled, that wait no longer watches the descriptor, so the caller may close
 * the descriptor once every wait on it has settled (or the poller is freed). Closing it while a
 * wait is pending is an error libloop cannot see: free the poller (or cancel the waits) first. A
 * poller kept across a close of its descriptor must be told with ll_poller_set_fd(), even when the
 * new descriptor has the same number. A descriptor that is not open fails the wait with LL_EBADF.
 * ll_poller_free() fails the pending waits with LL_ECLOSED and is safe from inside a done callback
 * of one of its own waits. A poller (and a pending ll_poll) counts as one handle of its loop
 * (ll_loop_get_stats); ll_loop_free() closes any left open.
 */
#ifndef LIBLOOP_POLL_H
#define LIBLOOP_POLL_H

#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

enum {
    LL_POLL_READ = 1,  /* readable, or the peer closed / an error is pending */
    LL_POLL_WRITE = 2  /* writable, or an error is pending */
};

typedef struct ll_poller ll_poller;

typedef struct ll_poll_opts {
    ll_loop *loop;    /* NULL: the current loop */
    /* Pending waits do not keep the loop alive (ll_poller_set_ref(p, false) from the start): for
     * background watching, such as an idle connection listening for notifications. */
    bool weak;
} ll_poll_opts;

/* One wait for `events` (LL_POLL_READ, LL_POLL_WRITE or both) on fd. The future resolves with
 * the ready events; it fails with LL_EINVAL ("ll_poll: fd -1 is not a descriptor") on a bad
 * argument. NULL only on out of memory or when there is no loop. */
LL_EXPORT ll_future *ll_poll(int fd, int events, const ll_poll_opts *opts);

/* A watcher for fd (which may be -1 until ll_poller_set_fd). NULL on out of memory, no loop or a
 * bad argument (fd < -1). */
LL_EXPORT ll_poller *ll_poller_new(int fd, const ll_poll_opts *opts);
/* Wait for `events` on the poller's descriptor. Any number of waits may be pending (a task
 * waiting to read while another waits to write); each resolves with those of its events that are
 * ready. A wait on a poller without a descriptor (-1) stays pending until one is set. Fails with
 * LL_EINVAL for a NULL poller or no events. NULL only on out of memory. */
LL_EXPORT ll_future *ll_poller_wait(ll_poller *p, int events);
/* Watch another descriptor from now on (libpq may open a new socket, even with the same number,
 * while it tries addresses): pending waits carry over to it. -1: watch nothing; pending waits
 * stay pending until a descriptor is set, they are cancelled or the poller is freed. */
LL_EXPORT void ll_poller_set_fd(ll_poller *p, int fd);
LL_EXPORT int ll_poller_fd(const ll_poller *p);
/* Whether pending waits keep the loop alive (default true; false for ll_poll_opts.weak). A client
 * that always listens on its socket sets it true only while it has requests in flight. */
LL_EXPORT void ll_poller_set_ref(ll_poller *p, bool keep_alive);
/* Stop watching, fail the pending waits with LL_ECLOSED and free the poller. The descriptor is
 * not closed. NULL: no-op. */
LL_EXPORT void ll_poller_free(ll_poller *p);

/* The ready events of a resolved wait (0 when f is not resolved). */
LL_EXPORT int ll_poll_events(const ll_future *f);

LL_END_DECLS

#endif
