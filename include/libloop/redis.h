/*
 * libloop/redis.h — Redis client (libloop-redis): commands as futures with automatic pipelining,
 * typed replies, transactions, scripts, SCAN cursors, pub/sub, a pool for exclusive connections,
 * reconnect with backoff, and an opt-in client-side cache. Link with
 * `pkg-config --libs libloop-redis`. Built on libloop's public API and hiredis (its RESP reader
 * and command formatter); this header never includes hiredis's.
 *
 * Connections. ll_redis_connect() takes a URL ("redis://[user:password@]host[:port][/db]",
 * "rediss://..." for TLS, "unix:///path/to.sock[?db=N]") and/or options. TCP, Unix sockets and TLS
 * (certificates and host names verified by default) go through libloop streams; host names through
 * libloop's resolver. AUTH (ACL user and password, or password only), SELECT and CLIENT SETNAME
 * run before any command and again after every reconnect. A password never appears in a message.
 *
 * Pipelining. Every command returns a future at once; commands from every task sharing a
 * connection are written together (one write per loop iteration) and replies are matched in order.
 * A command whose caller gives up (cancel, deadline) keeps its reply slot: its reply is read and
 * discarded, never handed to anyone else (redis-py's CVE-2023-28858 cannot happen). If replies
 * then stop coming for `abandon_grace` seconds, the connection is closed and what waits on it
 * fails.
 *
 * Reconnect. When the link dies, commands in flight fail with LL_EREDIS_CONN naming the peer ("the
 * command may or may not have run"); they are never re-sent. The connection is re-made with
 * exponential backoff and jitter; commands issued meanwhile wait (within their task's deadline and
 * at most queue_timeout) and are sent once it is back.
 *
 * Replies. A command's future resolves with an ll_redis_reply owned by the future (read it with
 * ll_redis_reply_of(f); ll_future_take() it to keep it and free it with ll_redis_reply_free()).
 * A server error reply fails the future with LL_EREDIS_REPLY and the message
 * "redis 127.0.0.1:6379: WRONGTYPE Operation against a key ..."; ll_redis_error(f) gives the
 * server's text and ll_redis_error_is(f, "WRONGTYPE") tests its prefix. Errors nested in arrays
 * (results of EXEC) stay elements of type LL_REDIS_ERROR. Typed accessors return LL_EREDIS_TYPE
 * when the reply has another type, never garbage.
 *
 * Bad input. A reply that breaks RESP (bad type byte, bad length, missing CRLF) or exceeds a cap
 * (bulk length, array elements, nesting depth, bytes of one reply) closes the connection: the
 * command waiting for it fails with LL_EREDIS_PROTO or LL_ETOOLARGE and a message saying which,
 * and the others with LL_EREDIS_CONN. Memory never follows a length the peer merely announced.
 *
 * Errors: LL_EREDIS_REPLY, LL_EREDIS_PROTO, LL_EREDIS_CONN, LL_EREDIS_TYPE, LL_EREDIS_WATCH,
 * LL_ETOOLARGE, LL_ECONNREFUSED, LL_ETIMEDOUT, LL_ENOTFOUND, LL_ECERT, LL_ECLOSED (closed while
 * waiting), LL_ECANCELED, LL_EINVAL (bad argument or URL), LL_ENOTASK, LL_ENOMEM.
 *
 * Threads: a connection, its pool and its replies belong to the loop they were made on.
 */
#ifndef LIBLOOP_REDIS_H
#define LIBLOOP_REDIS_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/tls.h"

LL_BEGIN_DECLS

typedef struct ll_redis_conn ll_redis_conn;
typedef struct ll_redis_reply ll_redis_reply;
typedef struct ll_redis_pool ll_redis_pool;
typedef struct ll_redis_sub ll_redis_sub;
typedef struct ll_redis_tx ll_redis_tx;
typedef struct ll_redis_script ll_redis_script;
typedef struct ll_redis_scan ll_redis_scan;

/* ---- connections ---- */

/* Options; zero means the default. Fields set here override the URL's. */
typedef struct ll_redis_opts {
    ll_loop *loop;            /* NULL: the current loop */
    const char *host;         /* default "127.0.0.1" */
    uint16_t port;            /* default 6379 */
    const char *unix_path;    /* a Unix socket instead of host/port */
    const ll_tls_opts *tls;   /* non-NULL: TLS (verification on unless the opts turn it off) */
    const char *user;         /* ACL user for AUTH (Redis 6+); NULL: password-only AUTH */
    const char *password;     /* NULL: no AUTH */
    int db;                   /* SELECT db when > 0 */
    const char *client_name;  /* CLIENT SETNAME */
    double connect_timeout;   /* seconds for resolve + connect + TLS + setup; 0: 10; < 0: no
                               * limit of its own */
    double abandon_grace;     /* close the connection when a reply owed to an abandoned command
                               * has not come for this long; 0: 5; < 0: never */
    double reply_timeout;     /* close the connection when no reply byte came for this long while
                               * commands wait; 0 or < 0: none (blocking commands may wait) */
    double queue_timeout;     /* how long a command may wait for a reconnect; 0: 10; <0: no limit */
    double backoff_initial;   /* first reconnect delay; 0: 0.05 s (doubles, with jitter) */
    double backoff_max;       /* 0: 2 s */
    bool no_reconnect;        /* a lost connection stays lost (commands fail LL_EREDIS_CONN) */
    size_t max_bulk;          /* longest bulk string accepted; 0: 512 MiB */
    size_t max_elements;      /* most elements in one array; 0: 16 M */
    size_t max_reply;         /* most bytes in one reply; 0: 1 GiB */
    int max_depth;            /* deepest array nesting; 0 (and the most): 7 */
} ll_redis_opts;

/* Connect (and run AUTH/SELECT/SETNAME). The future's value is the ll_redis_conn, owned by the
 * future until taken with ll_future_take(); close it with ll_redis_close(). The first connect is
 * not retried: it fails with the connect's error (LL_ECONNREFUSED, LL_ETIMEDOUT, LL_ECERT,
 * LL_EREDIS_REPLY for a rejected AUTH, ...) naming the peer. NULL on out of memory. */
LL_EXPORT ll_future *ll_redis_connect(const char *url, const ll_redis_opts *opts);

/* Close: commands held or in flight fail with LL_ECLOSED; the socket is closed. Allowed while
 * tasks wait on the connection. NULL: no-op. */
LL_EXPORT void ll_redis_close(ll_redis_conn *c);

/* A command with binary-safe arguments: argv[i] is lens[i] bytes (lens NULL: NUL-terminated
 * strings). Arguments are copied before the call returns. The future is never settled when the
 * call returns unless the arguments are bad (LL_EINVAL) or the connection is closed (LL_ECLOSED).
 * Commands that would break the one-reply-per-command rule (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE,
 * MONITOR, CLIENT REPLY, HELLO) fail with LL_EINVAL. NULL on out of memory. */
LL_EXPORT ll_future *ll_redis_command(ll_redis_conn *c, int argc, const char *const *argv,
                                      const size_t *lens);
/* hiredis's printf-style format: words split on spaces; %s is one argument (a C string), %b one
 * binary argument (pointer, size_t), %d/%lld/... numbers. An argument can never be split or inject
 * a second command. */
LL_EXPORT ll_future *ll_redis_commandf(ll_redis_conn *c, const char *fmt, ...);
LL_EXPORT ll_future *ll_redis_vcommandf(ll_redis_conn *c, const char *fmt, va_list ap);

/* True while commands are written at once (not reconnecting, not closed). */
LL_EXPORT bool ll_redis_is_connected(const ll_redis_conn *c);
/* "127.0.0.1:6379" or the socket path. Valid until the connection is closed. */
LL_EXPORT const char *ll_redis_peer(const ll_redis_conn *c);
/* Commands waiting for a reply or for the connection (abandoned slots included). */
LL_EXPORT size_t ll_redis_pending(const ll_redis_conn *c);

typedef struct ll_redis_stats {
    uint64_t reconnects;      /* links re-made after a loss */
    uint64_t discarded;       /* replies read for abandoned commands and dropped */
    uint64_t commands;        /* commands written (setup commands included) */
    uint64_t writes;          /* writes that carried them: automatic pipelining makes this small */
    size_t in_flight;         /* slots awaiting a reply */
    size_t held;              /* commands waiting for the connection */
} ll_redis_stats;
LL_EXPORT void ll_redis_get_stats(const ll_redis_conn *c, ll_redis_stats *out);

/* ---- replies ---- */

typedef enum {
    LL_REDIS_NIL = 0,
    LL_REDIS_STATUS,          /* +OK */
    LL_REDIS_ERROR,           /* -ERR ... (only inside arrays: top-level errors fail the future) */
    LL_REDIS_INTEGER,
    LL_REDIS_BULK,            /* a binary-safe string */
    LL_REDIS_ARRAY
} ll_redis_type;

/* The reply of a resolved command future (borrowed: valid until the future is freed), or NULL
 * when f is pending, failed, or not a Redis command's future. */
LL_EXPORT ll_redis_reply *ll_redis_reply_of(ll_future *f);
LL_EXPORT ll_redis_type ll_redis_reply_type(const ll_redis_reply *r);
/* "nil", "status", "error", "integer", "bulk", "array". */
LL_EXPORT const char *ll_redis_type_name(ll_redis_type t);
/* Bulk, status or error text (NUL-terminated, binary-safe with *len). LL_EREDIS_TYPE for other
 * types (and *s set to NULL). len may be NULL. */
LL_EXPORT int ll_redis_reply_string(const ll_redis_reply *r, const char **s, size_t *len);
/* An integer reply. LL_EREDIS_TYPE for other types. */
LL_EXPORT int ll_redis_reply_integer(const ll_redis_reply *r, long long *out);
/* Elements of an array (0 for other types); element i or NULL when out of range. */
LL_EXPORT size_t ll_redis_reply_len(const ll_redis_reply *r);
LL_EXPORT const ll_redis_reply *ll_redis_reply_element(const ll_redis_reply *r, size_t i);
LL_EXPORT bool ll_redis_reply_is_nil(const ll_redis_reply *r);
/* Free a reply taken from its future. NULL: no-op. */
LL_EXPORT void ll_redis_reply_free(ll_redis_reply *r);

/* The server's error text of a future failed with LL_EREDIS_REPLY ("WRONGTYPE Operation ..."),
 * NULL otherwise. Valid until the future is freed. */
LL_EXPORT const char *ll_redis_error(ll_future *f);
/* True when that text starts with `prefix` followed by a space or its end ("WRONGTYPE"). */
LL_EXPORT bool ll_redis_error_is(ll_future *f, const char *prefix);

/* ---- transactions and scripts ---- */

/* A MULTI ... EXEC block built by the caller and written as one contiguous run, so no other
 * task's command lands inside it even on a shared connection. WATCH needs a connection of its own
 * (ll_redis_pool_acquire): run WATCH there, read, then exec. */
LL_EXPORT ll_redis_tx *ll_redis_tx_new(void);
/* Add a command (copied). 0, LL_EINVAL, LL_ENOMEM. */
LL_EXPORT int ll_redis_tx_add(ll_redis_tx *tx, int argc, const char *const *argv,
                              const size_t *lens);
LL_EXPORT int ll_redis_tx_addf(ll_redis_tx *tx, const char *fmt, ...);
/* Send MULTI, the commands, EXEC. The future resolves with an array reply: one typed element per
 * queued command (a command that failed at run time is an LL_REDIS_ERROR element). It fails with
 * LL_EREDIS_WATCH when a watched key changed (nothing ran), LL_EREDIS_REPLY when the server refused
 * a command while queuing (EXECABORT; nothing ran; the message names the command's error). The
 * tx may be freed when the call returns. */
LL_EXPORT ll_future *ll_redis_tx_exec(ll_redis_conn *c, const ll_redis_tx *tx);
LL_EXPORT void ll_redis_tx_free(ll_redis_tx *tx);

/* A Lua script run with EVALSHA, falling back to EVAL (which loads it) on NOSCRIPT. NULL on out of
 * memory. */
LL_EXPORT ll_redis_script *ll_redis_script_new(const char *lua);
/* The SHA1 the server knows the script by (40 hex digits). */
LL_EXPORT const char *ll_redis_script_sha(const ll_redis_script *s);
/* EVALSHA sha nkeys keys... args...; the future as ll_redis_command's. */
LL_EXPORT ll_future *ll_redis_script_run(ll_redis_conn *c, const ll_redis_script *s, int nkeys,
                                         const char *const *keys, int nargs,
                                         const char *const *args);
LL_EXPORT void ll_redis_script_free(ll_redis_script *s);

/* ---- SCAN cursors ---- */

/* An async cursor over SCAN, or HSCAN/SSCAN/ZSCAN of `key` (cmd is "SCAN", "HSCAN", "SSCAN" or
 * "ZSCAN"; key NULL for SCAN). match and count may be NULL / 0. NULL on out of memory or a bad
 * command name. */
LL_EXPORT ll_redis_scan *ll_redis_scan_new(ll_redis_conn *c, const char *cmd, const char *key,
                                           const char *match, long count);
/* Inside a task: the next batch (an array reply, borrowed until the next call or free; it may be
 * empty). 0, LL_EOF when the iteration is complete, or the command's error. */
LL_EXPORT int ll_redis_scan_next(ll_redis_scan *it, const ll_redis_reply **batch);
LL_EXPORT void ll_redis_scan_free(ll_redis_scan *it);

/* ---- pool: shared pipelined connections and exclusive ones ---- */

typedef struct ll_redis_pool_opts {
    unsigned shared;          /* auto-pipelined connections shared by all tasks; 0: 1 */
    unsigned max_exclusive;   /* connections lent by ll_redis_pool_acquire; 0: 10 */
    double acquire_timeout;   /* seconds to wait for an exclusive connection; 0: 30; < 0: only
                               * the task's deadline */
    bool client_cache;        /* enable ll_redis_cached_get/hget (see below) */
    size_t cache_max;         /* keys kept by the cache; 0: 10000 */
} ll_redis_pool_opts;

/* A pool for one server (url/opts as ll_redis_connect). Shared connections start connecting at
 * once and reconnect for ever; exclusive ones are made on demand (the core's ll_pool). NULL on out
 * of memory or a bad URL/option (ll_redis_connect with the same arguments says why). */
LL_EXPORT ll_redis_pool *ll_redis_pool_new(const char *url, const ll_redis_opts *opts,
                                           const ll_redis_pool_opts *popts);
/* Free: shared and idle connections are closed (what waits on them fails with LL_ECLOSED).
 * Release lent connections first (ll_redis_pool_release needs the pool). NULL: no-op. */
LL_EXPORT void ll_redis_pool_free(ll_redis_pool *p);
/* A shared connection (round-robin), borrowed from the pool: use it for any command, transaction
 * or script; never close it, and never use it for blocking commands, WATCH or SUBSCRIBE. Valid until
 * the pool is closed. */
LL_EXPORT ll_redis_conn *ll_redis_pool_conn(ll_redis_pool *p);
/* An exclusive connection (value: ll_redis_conn *, via ll_future_value) for blocking commands
 * (BLPOP, BRPOP, XREAD BLOCK, WAIT) and WATCH/MULTI/EXEC. Fails like ll_pool_acquire (LL_ETIMEDOUT
 * "pool redis: no connection ...", the connect's error, LL_EPOOLCLOSED). */
LL_EXPORT ll_future *ll_redis_pool_acquire(ll_redis_pool *p);
/* Give it back. A connection with replies still owed (an abandoned BLPOP) or lost is closed; others
 * are reset (RESET, then AUTH/SELECT/SETNAME again; DISCARD + UNWATCH before Redis 6.2) and
 * reused. 0, LL_ENOENT (not lent by this pool), LL_EINVAL. */
LL_EXPORT int ll_redis_pool_release(ll_redis_pool *p, ll_redis_conn *c);

/* Client-side caching (pool made with client_cache): GET and HGET results are kept locally and
 * served without a round trip until the server says the key changed. The pool keeps a data
 * connection with CLIENT TRACKING ON REDIRECT to a tracking connection subscribed to
 * __redis__:invalidate. A cached value is served only while tracking is known to be on for both
 * connections' current links: losing either flushes the cache, and reads go to the server until
 * tracking is back. Once an invalidation has been delivered, no read returns the value from before
 * it. The future is as ll_redis_command's (a copy of the cached reply on a hit). */
LL_EXPORT ll_future *ll_redis_cached_get(ll_redis_pool *p, const char *key);
LL_EXPORT ll_future *ll_redis_cached_hget(ll_redis_pool *p, const char *key, const char *field);
typedef struct ll_redis_cache_stats {
    uint64_t hits, misses, invalidations, flushes;
    size_t entries;           /* keys cached (or being read) */
    bool enabled;             /* tracking is on: values are cached and served */
    long long tracking_client_id; /* the tracking connection's CLIENT ID */
} ll_redis_cache_stats;
LL_EXPORT void ll_redis_cache_get_stats(ll_redis_pool *p, ll_redis_cache_stats *out);

/* ---- pub/sub ---- */

/* A connection of its own in subscriber mode. The value is the ll_redis_sub (take it; close with
 * ll_redis_sub_close). queue_max bounds the messages kept unread (0: 10000); beyond it new messages
 * are dropped and counted (ll_redis_sub_dropped). Subscriptions are renewed after every reconnect,
 * and an LL_REDIS_MSG_RECONNECTED event is queued then: what was published meanwhile is lost. */
LL_EXPORT ll_future *ll_redis_sub_connect(const char *url, const ll_redis_opts *opts,
                                          size_t queue_max);
/* Resolve (value: the server's confirmation) once the server confirmed. */
LL_EXPORT ll_future *ll_redis_subscribe(ll_redis_sub *s, const char *channel);
LL_EXPORT ll_future *ll_redis_psubscribe(ll_redis_sub *s, const char *pattern);
LL_EXPORT ll_future *ll_redis_unsubscribe(ll_redis_sub *s, const char *channel);
LL_EXPORT ll_future *ll_redis_punsubscribe(ll_redis_sub *s, const char *pattern);
/* Sharded channels (Redis 7: SSUBSCRIBE/SPUBLISH). Outside a cluster any server takes them; in a
 * cluster the server must serve the channel's slot (ll_redis_cluster_ssubscribe routes them and
 * follows the slot). A server that stops serving the slot unsubscribes us itself: the channel is
 * then dropped here (not renewed on reconnect). */
LL_EXPORT ll_future *ll_redis_ssubscribe(ll_redis_sub *s, const char *channel);
LL_EXPORT ll_future *ll_redis_sunsubscribe(ll_redis_sub *s, const char *channel);

typedef enum {
    LL_REDIS_MSG_MESSAGE = 1,  /* published to a channel subscribed to */
    LL_REDIS_MSG_PMESSAGE,     /* matched a pattern (pattern set) */
    LL_REDIS_MSG_RECONNECTED,  /* the link was re-made: messages may have been lost */
    LL_REDIS_MSG_SMESSAGE      /* published to a sharded channel subscribed to (SPUBLISH) */
} ll_redis_msg_kind;

typedef struct ll_redis_message {
    ll_redis_msg_kind kind;
    const char *channel;       /* "" for RECONNECTED */
    size_t channel_len;
    const char *pattern;       /* PMESSAGE only */
    const char *data;          /* binary-safe, NUL-terminated */
    size_t len;
} ll_redis_message;

/* The next message: a future resolving with an ll_redis_message (read it with
 * ll_redis_message_of; valid until the future is freed). Already resolved when one is queued.
 * Fails with LL_ECLOSED once the subscriber is closed. */
LL_EXPORT ll_future *ll_redis_sub_next(ll_redis_sub *s);
LL_EXPORT ll_redis_message *ll_redis_message_of(ll_future *f);
LL_EXPORT uint64_t ll_redis_sub_dropped(const ll_redis_sub *s);
LL_EXPORT size_t ll_redis_sub_queued(const ll_redis_sub *s);
/* Its connection (for stats and the peer's name; do not send commands on it). */
LL_EXPORT ll_redis_conn *ll_redis_sub_conn(ll_redis_sub *s);
/* Close: pending ll_redis_sub_next futures fail with LL_ECLOSED. NULL: no-op. */
LL_EXPORT void ll_redis_sub_close(ll_redis_sub *s);

LL_END_DECLS

#endif
