/*
 * redis_internal.h — what the files of libloop-redis share. Never installed.
 *
 * Two layers:
 *   - the sans-I/O core (proto.c, reply.c): bytes in, reply objects out. rp_reader wraps hiredis's
 *     redisReader behind a framing guard that enforces the caps before hiredis buffers anything;
 *     rp_ring is the FIFO of reply slots that makes pipelining safe; rp_buf collects encoded
 *     commands (ll__rp_format_argv, or hiredis's format-string formatter) until they are written
 *     in one go.
 *   - the adapter (conn.c, command.c, ...): drives the core from an ll_stream with a manager task
 *     per connection (connect, setup, read, reconnect).
 * Clients use only libloop's public API: nothing here includes the core's internal header.
 */
#ifndef LL_REDIS_INTERNAL_H
#define LL_REDIS_INTERNAL_H

#include "libloop.h"
#include "libloop/redis.h"

/* ---- reply objects (reply.c) ---- */

struct ll_redis_reply {
    int type;                /* ll_redis_type */
    size_t len;              /* string length, or elements filled so far (arrays) */
    size_t expect;           /* arrays: elements announced */
    size_t cap;              /* arrays: room in elem */
    long long integer;
    char *str;               /* strings: points just after the struct (same allocation) */
    ll_redis_reply **elem;
};

ll_redis_reply *ll__redis_reply_string(int type, const char *s, size_t len);
ll_redis_reply *ll__redis_reply_int(long long v);
ll_redis_reply *ll__redis_reply_nil(void);
ll_redis_reply *ll__redis_reply_array(size_t expect);
/* Append child to an array (grows it geometrically: memory follows the bytes received, not the
 * count the peer announced). 0 or LL_ENOMEM (child is then not adopted). */
int ll__redis_reply_push(ll_redis_reply *arr, ll_redis_reply *child);
/* A deep copy (client-side cache hits). NULL on out of memory. */
ll_redis_reply *ll__redis_reply_dup(const ll_redis_reply *r);
/* hiredis reply-object functions building ll_redis_reply objects. */
extern void *ll__redis_hiredis_fns;

/* ---- the sans-I/O core (proto.c) ---- */

typedef struct rp_limits {
    size_t max_bulk;         /* a bulk string's declared length */
    size_t max_elements;     /* one array's declared count */
    size_t max_reply;        /* bytes on the wire of one reply, all nested parts included */
    int max_depth;           /* nested arrays (hiredis 0.14 itself stops at 7) */
} rp_limits;

void ll__rp_limits_default(rp_limits *l);

typedef struct rp_reader rp_reader;
/* NULL on out of memory. Limits of 0 take the defaults. */
rp_reader *ll__rp_reader_new(const rp_limits *lim);
void ll__rp_reader_free(rp_reader *r);
/* Feed n bytes. 0, or a negative code (LL_EREDIS_PROTO, LL_ETOOLARGE, LL_ENOMEM) once the input
 * is bad: the replies completed before the bad one are still returned by next(), then the
 * error. After an error the reader accepts nothing more. */
int ll__rp_feed(rp_reader *r, const char *buf, size_t n);
/* 1 and *out (the caller owns it) when a complete reply is available, 0 when more bytes are
 * needed, or the negative code of the error that stopped the reader. */
int ll__rp_next(rp_reader *r, ll_redis_reply **out);
/* The error's text ("redis protocol error: bad type byte 0x3f"), "" when none. */
const char *ll__rp_error(const rp_reader *r);

/* A growable output buffer of formatted commands. */
typedef struct rp_buf {
    char *data;
    size_t len, cap;
} rp_buf;
int ll__rp_buf_append(rp_buf *b, const void *p, size_t n);
void ll__rp_buf_free(rp_buf *b);
/* Append one command in RESP (the bytes of redisFormatCommandArgv, encoded in place / hiredis's
 * redisvFormatCommand). 0, LL_EINVAL (bad format or argc), LL_ENOMEM (b is then unchanged). lens
 * NULL: strlen of each argument. */
int ll__rp_format_argv(rp_buf *b, int argc, const char *const *argv, const size_t *lens);
int ll__rp_vformat(rp_buf *b, const char *fmt, va_list ap);

/* Reply slots: one per command written, in order. A slot whose caller gave up (cancel,
 * deadline) stays in place with f == NULL, so its reply is read and dropped: it can never be
 * delivered to the command behind it. */
typedef enum {
    SLOT_USER = 0,   /* f gets the reply (or the error) */
    SLOT_DROP,       /* abandoned by its caller: the reply is discarded */
    SLOT_TXPART,     /* MULTI or a queued command of a transaction: ctx is the rtx */
    SLOT_TXEXEC,     /* the EXEC of a transaction: ctx is the rtx; f gets the result */
    SLOT_SUB         /* (P)SUBSCRIBE/(P)UNSUBSCRIBE confirmation */
} rp_slot_kind;

typedef struct rp_slot {
    ll_future *f;            /* a reference, or NULL (internal part, or abandoned) */
    void *ctx;
    uint8_t kind;
    bool abandoned;          /* its caller gave up: the reply is read and dropped */
} rp_slot;

typedef struct rp_ring {
    rp_slot *v;
    size_t head, n, cap;     /* cap is a power of two */
} rp_ring;
int ll__rp_ring_reserve(rp_ring *q, size_t more);
int ll__rp_ring_push(rp_ring *q, rp_slot s);
rp_slot *ll__rp_ring_front(rp_ring *q);
rp_slot *ll__rp_ring_at(rp_ring *q, size_t i);
void ll__rp_ring_pop(rp_ring *q);
void ll__rp_ring_free(rp_ring *q);

/* ---- configuration (config.c) ---- */

typedef struct rc_cfg {
    char *host;              /* NULL for Unix */
    uint16_t port;
    char *unix_path;
    bool tls;
    ll_tls_opts tls_opts;    /* strings below are owned copies */
    char *user, *password, *client_name;
    int db;
    double connect_timeout, abandon_grace, reply_timeout, queue_timeout;
    double backoff_initial, backoff_max;
    bool reconnect;
    rp_limits lim;
    size_t high_water;
    char *key;               /* names everything but the password (pool key, messages) */
    char *peer_name;         /* "127.0.0.1:6379" or the socket path */
} rc_cfg;

/* Build from a URL (may be NULL) and options (may be NULL); fields of opts override the URL.
 * 0, or LL_EINVAL with a message in err. */
int ll__rc_cfg_new(rc_cfg **out, const char *url, const ll_redis_opts *opts, char *err,
                   size_t errlen);
rc_cfg *ll__rc_cfg_dup(const rc_cfg *c);
void ll__rc_cfg_free(rc_cfg *c);

/* ---- connections (conn.c) ---- */

typedef enum {
    RC_CONNECTING = 0,       /* making the stream and running the setup commands */
    RC_READY,                /* commands are written as they come */
    RC_DOWN,                 /* lost; waiting to reconnect (commands are held) */
    RC_CLOSED                /* closed by its owner or given up: everything fails */
} rc_state;

typedef struct rc_held rc_held;
typedef void (*rc_push_fn)(ll_redis_conn *c, ll_redis_reply *msg, void *arg);
typedef void (*rc_event_fn)(ll_redis_conn *c, int event, void *arg); /* RC_EV_* */
enum { RC_EV_UP = 1, RC_EV_DOWN = 2 };

struct ll_redis_conn {
    ll_loop *loop;
    rc_cfg *cfg;
    rc_state state;
    ll_stream *s;
    rp_reader *rd;
    rp_ring slots;
    rp_buf out;
    bool flush_queued;
    rc_held *held_head, *held_tail;
    size_t nheld;
    ll_future *mgr;          /* the manager task */
    ll_future *ready_f;      /* ll_redis_connect's future until the first ready */
    ll_future *read_f;       /* the fill the manager waits on */
    int refs;                /* owner + manager + helpers holding it */
    bool owner_closed;
    bool ever_ready;
    bool mgr_ran;            /* the manager task started (one cancelled first never runs) */
    bool persistent;         /* keeps trying after a failed first connect (pool's shared ones) */
    bool pubsub;             /* messages are pushed, not slotted */
    int broken_code;         /* a write failed: the manager ends the link with this */
    char *broken_msg;
    size_t n_abandoned;
    ll_time progress_at;     /* last byte read, or when the first abandoned slot appeared */
    uint64_t reconnects, discarded, commands, writes;
    bool rearm;              /* the pending fill was cancelled to re-read the stall limits */
    ll_future *wf;           /* the link's latest write */
    /* setup hooks (pub/sub resubscribe, client tracking): run after AUTH/SELECT/SETNAME */
    int (*extra_setup)(ll_redis_conn *c, void *arg, char *why, size_t wlen);
    void *extra_arg;
    bool (*on_push_test)(ll_redis_conn *c, const ll_redis_reply *r); /* a push, not a reply? */
    rc_push_fn on_push;
    void *push_arg;
    rc_event_fn on_event;
    void *event_arg;
    void *cache_arg;         /* the client-side cache this tracking connection serves */
    char *last_err;          /* the last connect failure, for held commands that give up */
};

/* A connection object (refs: the caller's and the manager's) whose manager starts connecting.
 * NULL on out of memory (cfg is then freed). cfg is adopted. */
ll_redis_conn *ll__rc_new(rc_cfg *cfg, ll_loop *loop, bool persistent);
void ll__rc_unref(ll_redis_conn *c);
/* Queue formatted command bytes (from b, which is reset) with a slot; f gets a cancel hook.
 * Written now when ready, else held. Takes a reference to f. 0 or LL_ENOMEM / LL_ECLOSED (f is
 * then untouched: the caller fails it). */
int ll__rc_submit(ll_redis_conn *c, const char *data, size_t len, rp_slot slot);
/* The same for a command given as arguments: on a ready link it is encoded straight into the
 * output buffer. Also LL_EINVAL (no argument). */
int ll__rc_submit_argv(ll_redis_conn *c, int argc, const char *const *argv, const size_t *lens,
                       rp_slot slot);
/* Several slots in one contiguous write (a transaction block). */
int ll__rc_submit_multi(ll_redis_conn *c, const char *data, size_t len, const rp_slot *slots,
                        size_t n);
/* ll_redis_connect for a built configuration (adopted); prepare(c, arg), when given, sets hooks
 * before the manager starts. */
ll_future *ll__rc_connect_cfg(rc_cfg *cfg, ll_loop *loop, void (*prepare)(ll_redis_conn *, void *),
                              void *arg);
/* Start the manager task. 0 or LL_ENOMEM. */
int ll__rc_start(ll_redis_conn *c);
/* Inside the manager's setup (extra_setup): run one command and wait for its reply. */
int ll__rc_setup_cmd(ll_redis_conn *c, const char *what, int argc, const char *const *argv,
                     char *why, size_t wlen, ll_redis_reply **out);
/* A command future for formatted bytes (the public entry points funnel here). */
ll_future *ll__rc_command_bytes(ll_redis_conn *c, const char *data, size_t len);
/* Settle f from a reply (adopted). */
void ll__rc_deliver(ll_redis_conn *c, ll_future *f, ll_redis_reply *r);
/* Run one command inside the manager (setup), bypassing the ready check. */
ll_future *ll__rc_command_now(ll_redis_conn *c, int argc, const char *const *argv,
                              const size_t *lens);
const char *ll__rc_peer(const ll_redis_conn *c);

/* tx.c: a reply for a transaction slot. */
void ll__rtx_on_reply(ll_redis_conn *c, rp_slot *s, ll_redis_reply *r);
void ll__rtx_on_fail(rp_slot *s, int code, const char *msg);

/* pool.c, pubsub.c, cache.c */
struct ll_redis_cache;
int ll__redis_cache_new(ll_redis_pool *p, const ll_redis_pool_opts *po);
void ll__redis_cache_free(struct ll_redis_cache *cache);
rc_cfg *ll__redis_pool_cfg(ll_redis_pool *p);
ll_loop *ll__redis_pool_loop(ll_redis_pool *p);
struct ll_redis_cache **ll__redis_pool_cache(ll_redis_pool *p);
ll_future *ll__redis_sub_connect_cfg(rc_cfg *cfg, ll_loop *loop, size_t queue_max,
                                     ll_redis_sub **out);
int ll__redis_resubscribe(ll_redis_conn *c, void *arg, char *why, size_t wlen);
void ll__redis_sub_set_hooks(ll_redis_sub *s,
                             void (*on_message)(ll_redis_sub *, const ll_redis_reply *, void *),
                             void (*on_ev)(ll_redis_sub *, int, void *), void *arg);

/* Settle dst with src's outcome, moving the value or detail (src must be settled). */
void ll__redis_forward(ll_future *dst, ll_future *src);

/* A command's own copy of the caller's arguments (cluster and sentinel commands run in a task after
 * the call returns): argc NUL-terminated copies and their lengths (lens NULL: strlen). On out of
 * memory false, with nothing left allocated and both outputs NULL. */
bool ll__redis_argv_copy(int argc, const char *const *argv, const size_t *lens, char ***argv_out,
                         size_t **lens_out);
void ll__redis_argv_free(int argc, char **argv, size_t *lens);

#endif
