/*
 * libloop/pool.h — the one connection pool every libloop client uses.
 *
 * The pool is generic over the connection type: it never looks inside a connection. A client gives
 * it a vtable (connect, is_alive, close, optional reset) and gets back `void *` connections: libloop
 * streams for HTTP (and any stream-based client), libpq connections for PostgreSQL.
 *
 * Connections are grouped by a string key chosen by the client. The key must name the destination
 * AND every setting that changes what the connection is: user, database, TLS on/off, CA file,
 * client certificate, SNI name, verification switch, ALPN. Two requests share connections only when
 * their keys are byte-for-byte equal, so a connection made with other TLS settings is never reused.
 * Suggested form: "https://example.com:443 tls=verify,ca=/etc/ca.pem,alpn=http/1.1".
 *
 * The contract:
 *   - Acquire: a free connection of the key is taken (most recently used first) after a cheap
 *     liveness check (is_alive: a peer that closed the connection while it sat idle is noticed
 *     here, before a request is written on it; dead ones are closed and the next is tried). With
 *     none free and room under the limits, a new one is connected. With no room, the caller waits:
 *     a full pool queues, it does not fail. Waiters are served first-come first-served, each with a
 *     deadline (acquire_timeout, default 30 s, and the awaiting task's own deadline).
 *   - Release: the caller states what the connection is. LL_POOL_IDLE (a known idle state: the last
 *     reply was read completely, nothing is pending) puts it back for reuse; LL_POOL_RESET runs the
 *     vtable's reset first (PostgreSQL: ROLLBACK/UNLISTEN) and reuses it only if that succeeds;
 *     anything else — LL_POOL_BROKEN, a request cancelled half-way, a reply half read — closes it.
 *     When in doubt, say BROKEN: a new connection costs a round trip, a reused dirty one gives the
 *     next caller someone else's reply.
 *   - Limits: at most max_per_key connections per key (connected, connecting, in use or being
 *     reset) and at most max_total over all keys; when max_total is reached and a waiter's key has
 *     room, the pool closes the least recently used idle connection of another key to make room.
 *   - Upkeep: a timer closes connections idle longer than max_idle (keeping min_per_key per key) or
 *     older than max_lifetime, closes idle ones that died, and reopens up to min_per_key. The timer
 *     does not keep the loop running by itself.
 *   - Connects and resets are the pool's own work, not the caller's: they run detached from the
 *     acquiring task (its deadline or cancellation never kills a connection others would share),
 *     bounded by connect_timeout and reset_timeout. A connect started because a caller waited, and
 *     that fails, fails the first waiter of that key with the connect's error and message.
 *
 * Ownership: ll_pool_new() returns a pool the caller closes with ll_pool_free(). The pool owns
 * idle connections; a connection handed out by an acquire is lent to the caller until it calls
 * ll_pool_release() or ll_pool_discard() — exactly once, with the same pool. Keys are copied.
 * Thread: a pool belongs to the loop it was made on and is used from that loop's thread only.
 */
#ifndef LIBLOOP_POOL_H
#define LIBLOOP_POOL_H

#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

typedef struct ll_pool ll_pool;

/* What the caller says about a connection it gives back. */
typedef enum {
    LL_POOL_IDLE = 0,  /* known idle: nothing pending in either direction; reuse as is */
    LL_POOL_RESET = 1, /* idle at the protocol level but its session state may be dirty: run the
                        * vtable's reset and reuse it if that succeeds (closed without a reset) */
    LL_POOL_BROKEN = 2 /* anything else (error, mid-request, mid-read, unknown): close it */
} ll_pool_state;

/* What the pool needs to know about a connection type. `pool_arg` is the pointer given to
 * ll_pool_new(). The pool calls these from the loop, never inside a task of the caller's.
 *   connect  start a connection to `key`; return a future that resolves with the connection as its
 *            value (the pool takes the value with ll_future_take(): give it no value_free, or one
 *            the pool may disarm) or fails with a code and a message naming the peer. NULL means
 *            out of memory. The pool may cancel the future (connect_timeout, ll_pool_free).
 *   is_alive a cheap, non-blocking check run when an idle connection is taken and by the upkeep
 *            timer: false if the peer closed it, it has an error, or it holds unexpected input.
 *            NULL: always alive.
 *   close    close and free the connection. Never fails; it must not call back into the pool.
 *   reset    optional: bring a LL_POOL_RESET connection back to a clean idle state; the future
 *            resolves (any value, freed by the pool) when done, or fails: the connection is closed.
 */
typedef struct ll_pool_vtable {
    ll_future *(*connect)(void *pool_arg, const char *key);
    bool (*is_alive)(void *pool_arg, void *conn);
    void (*close)(void *pool_arg, void *conn);
    ll_future *(*reset)(void *pool_arg, void *conn);
} ll_pool_vtable;

/* Options. Zero means "the default"; for durations a negative value means "none". */
typedef struct ll_pool_opts {
    const char *name;       /* used in messages ("pool http: ..."); copied. NULL: "pool" */
    ll_loop *loop;          /* NULL: the current loop */
    unsigned max_per_key;   /* 0: 10 */
    unsigned max_total;     /* 0: no limit over all keys */
    unsigned min_per_key;   /* kept open for every key seen (ll_pool_warm, acquire); 0: none */
    size_t max_waiters;     /* 0: unlimited; more waiters fail with LL_EFULL */
    double acquire_timeout; /* seconds a caller waits for a connection; 0: 30; < 0: only the task's
                             * deadline bounds the wait */
    double connect_timeout; /* 0: 30 */
    double reset_timeout;   /* 0: 10 */
    double max_idle;        /* close connections idle longer than this; 0: 300 */
    double max_lifetime;    /* close connections older than this when idle; 0: 3600 */
    double reap_interval;   /* how often upkeep runs; 0 (or negative): a quarter of the shorter of
                             * max_idle and max_lifetime, between 10 ms and 10 s */
} ll_pool_opts;

/* A new pool, or NULL (out of memory, no loop, vtable without connect or close). */
LL_EXPORT ll_pool *ll_pool_new(const ll_pool_vtable *vt, void *pool_arg, const ll_pool_opts *opts);

/* Close the pool: waiters fail with LL_EPOOLCLOSED, idle connections are closed, connects and
 * resets in flight are cancelled (and their connections closed). Connections still lent are closed
 * when they are released or discarded, which remains allowed; the pool's memory is freed once the
 * last one is back and the last connect has stopped. After this call, use `p` only for
 * ll_pool_release(), ll_pool_discard() and nothing else. NULL: no-op. */
LL_EXPORT void ll_pool_free(ll_pool *p);

/* A future that resolves with a connection for `key`: its value (ll_future_value) is the `void *`
 * connection, lent to the caller until ll_pool_release()/ll_pool_discard(). It may already be
 * resolved when the call returns (a free connection was taken at once). It fails with
 * LL_ETIMEDOUT when acquire_timeout passes ("pool http: no connection to KEY within 30 s (10 open,
 * 3 waiting)"), with a connect's code and message when the connect made for this caller failed,
 * LL_EPOOLCLOSED, LL_EFULL (max_waiters), LL_ENOMEM. Cancelling it takes the caller out of the
 * queue; a connection that was being made for it goes to the next waiter or stays idle.
 *
 * If the future resolved, the caller holds the connection even if it meant to give up (for
 * instance, ll_await returned 0 although the task was cancelled at that moment): release it. A
 * waiting acquire whose future the caller has freed is dropped from the queue when its turn comes,
 * so no connection is lent to nobody. NULL on out of memory. */
LL_EXPORT ll_future *ll_pool_acquire(ll_pool *p, const char *key);

/* Give a lent connection back, saying what state it is in (see ll_pool_state). Return 0, or
 * LL_ENOENT when `conn` is not a connection this pool lent (nothing is done: it is not the pool's
 * to close). The connection must not be used by the caller afterwards. */
LL_EXPORT int ll_pool_release(ll_pool *p, void *conn, ll_pool_state state);
/* The same as releasing with LL_POOL_BROKEN: the connection is closed now. */
LL_EXPORT int ll_pool_discard(ll_pool *p, void *conn);

/* True when the lent connection `conn` served an earlier lease (it was idle in the pool before):
 * a request that failed on a reused connection before any reply byte may be retried on a new one
 * (the peer may have closed it just as the request was written). */
LL_EXPORT bool ll_pool_conn_reused(const ll_pool *p, const void *conn);

/* Make `key` known and open connections up to min_per_key in the background. Return 0,
 * LL_EPOOLCLOSED or LL_ENOMEM. */
LL_EXPORT int ll_pool_warm(ll_pool *p, const char *key);

typedef struct ll_pool_stats {
    size_t open;        /* established connections: idle + in use + being reset */
    size_t idle;        /* free in the pool */
    size_t in_use;      /* lent to callers */
    size_t connecting;  /* connects in flight */
    size_t waiting;     /* callers queued for a connection */
    uint64_t created;   /* connects that succeeded */
    uint64_t discarded; /* connections the pool closed, for any reason (created - discarded ==
                         * open + those closed at ll_pool_free) */
    uint64_t connect_failures;
    uint64_t acquired;  /* leases handed out */
    uint64_t reused;    /* leases of a connection that had been idle before */
    uint64_t timeouts;  /* callers whose acquire_timeout passed */
} ll_pool_stats;

/* Counters of the whole pool. NULL pool: all zero. */
LL_EXPORT void ll_pool_get_stats(const ll_pool *p, ll_pool_stats *out);
/* Counters of one key (created/discarded/connect_failures count while the key is known: a key
 * with nothing left is forgotten by the upkeep timer). Return 0 or LL_ENOENT. */
LL_EXPORT int ll_pool_get_key_stats(const ll_pool *p, const char *key, ll_pool_stats *out);

LL_END_DECLS

#endif
