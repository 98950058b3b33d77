/*
 * pg_internal.h — what the files of libloop-pg share. Never installed.
 *
 * The connection (conn.c) owns a PGconn in libpq pipeline mode and one ll_poller on its socket.
 * Every query is a request (pg_req). A request is either held (made but not yet written: the
 * connection is busy with a COPY, a script, another task's transaction or a cancel) or sent
 * (written, its reply pending); replies come back in the order requests were sent (pipeline.c).
 */
#ifndef LL_PG_INTERNAL_H
#define LL_PG_INTERNAL_H

#include <libpq-fe.h>
#include "libloop.h"

static inline ll_loop *ll__pg_loop(ll_loop *loop) {
    return loop ? loop : ll_loop_current();
}
#include "libloop/pg.h"
#include "libloop/poll.h"

typedef enum {
    PG_CONNECTING = 0,
    PG_READY,
    PG_BROKEN, /* lost: everything fails with LL_EPG_CONN until ll_pg_close */
    PG_CLOSED
} pg_state;

typedef enum {
    REQ_QUERY = 0, /* one statement, extended protocol, its own Sync (pipelined) */
    REQ_EXEC,      /* a script over the simple protocol: runs alone, pipeline mode off */
    REQ_COPY,      /* COPY: runs alone, pipeline mode off */
    REQ_INTERNAL,  /* DEALLOCATE and other housekeeping: no future */
    REQ_MANY       /* executemany: one statement, nrows parameter sets, pipelined; one Sync at
                    * the end (or one per row with RQF_SYNC_EACH) */
} pg_req_kind;

typedef enum { TXOP_NONE = 0, TXOP_BEGIN, TXOP_COMMIT, TXOP_ROLLBACK } pg_txop;

/* A request's life (sched.c changes it, through ll__pg_req_set_state only):
 *
 *   NEW -> HELD -> SENT ------------------------------------------> (settled, freed)
 *           |        | the caller gives up (deadline, cancel)
 *           |        v
 *           |     ABANDONED --(it runs now: a cancel request goes out)--> CANCELLING
 *           |        |                                                    |        |
 *           |        | (it had started answering, or no cancel possible)  |        | all its replies
 *           |        v                                                    |        v in first
 *           |     DRAINING <-------------(the server confirmed the cancel)+   CANCEL_WAIT
 *           |        | replies dropped as they come                               | confirmed
 *           v        v                                                            v
 *        (cancelled before it was written: freed at once)           (freed; new work may go)
 *
 * ABANDONED, CANCELLING and CANCEL_WAIT block the connection: nothing new is written until the
 * server has stopped the query and confirmed the cancel, so a late cancel can never hit another
 * query. Every abandoned request must be over within cancel_timeout of being abandoned, or the
 * connection is closed. */
typedef enum {
    RQ_NEW = 0,     /* made, not handed to the scheduler */
    RQ_HELD,        /* waiting to be written (held list) */
    RQ_SENT,        /* written; its replies are coming (sent list) */
    RQ_ABANDONED,   /* written; its caller gave up (its future is settled); a cancel request goes
                     * out when it is the statement running (sent list) */
    RQ_CANCELLING,  /* abandoned; a cancel request for it is on its way (sent list) */
    RQ_DRAINING,    /* abandoned; no cancel request outstanding: its replies are dropped (sent) */
    RQ_CANCEL_WAIT, /* abandoned; all its replies are in, its cancel request is not confirmed yet
                     * (no list: c->cancel_wait) */
    RQ_DONE         /* out of every list, being settled and freed */
} pg_req_state;

/* How a request is written (properties fixed when it is made or sent, not states). */
enum {
    RQF_PREPARE_FIRST = 1, /* a Parse precedes the Execute in this segment */
    RQF_NOCACHE = 2,       /* never a named statement (transaction control, LISTEN) */
    RQF_BATCHED = 4,       /* batch_sync: no Sync of its own (its segment's comes later) */
    RQF_SOLO = 8,          /* always in a segment of its own (re-run after a failure) */
    RQF_SYNC_EACH = 16,    /* REQ_MANY: a Sync after every row (each row its own transaction) */
    RQF_ROW_WAIT = 32,     /* REQ_MANY, abandoned: the next cancel request waits for a row's end */
    RQF_STMT = 64,         /* executes the explicit statement r->stmt (stmt.c), never the cache's;
                            * never re-prepared */
    RQF_DESCRIBE = 128     /* with RQF_STMT: Parse (if not sent) and Describe, no Execute */
};

/* executemany's progress, shared by its call and its requests (each holds a reference: a request
 * abandoned by a deadline outlives the call). Rows are absolute indexes into the call's rows. */
typedef struct pg_many_prog {
    unsigned refs;
    size_t done;                      /* rows answered so far, in order */
    size_t err_row;                   /* the lowest row a server error was reported for */
} pg_many_prog;
void ll__pg_many_prog_unref(pg_many_prog *p);

/* What the server said about a request besides results and errors. */
typedef enum { OUT_NONE = 0, OUT_SKIPPED /* an earlier error in its segment: not run */ } pg_outcome;

/* A prepared statement in the per-connection cache. */
typedef struct pg_stmt {
    struct pg_stmt *hnext;            /* hash chain */
    struct pg_stmt *lru_prev, *lru_next;
    uint64_t hash;
    unsigned refs;                    /* the cache's (while in it) and one per request using it */
    bool in_cache;
    bool prepared;                    /* the server confirmed the Parse */
    bool sent;                        /* its Parse has been written */
    bool explicit_;                   /* an ll_pg_stmt's (stmt.c), never in the cache */
    char name[24];
    char sql[];                       /* the key */
} pg_stmt;

typedef struct pg_req {
    struct pg_req *prev, *next;       /* in the held or the sent list */
    struct pg_req *aprev, *anext;     /* in the abandoned list (oldest first) */
    ll_pg_conn *conn;
    ll_future *f;                     /* NULL for REQ_INTERNAL and once abandoned */
    uint64_t seq;
    uint64_t task_id;                 /* who made it (transaction ownership); 0: no task */
    uint8_t kind, txop;
    uint8_t state;                    /* pg_req_state */
    uint8_t outcome;                  /* pg_outcome */
    uint8_t flags;                    /* RQF_* */
    uint8_t retries;                  /* re-prepared or re-run already */
    ll_time abandoned_at;             /* when its caller gave up */
    int ncmds, cmds_done;             /* commands in its segment; those answered */
    pg_stmt *stmt;                    /* the cached statement it executes (a reference), or NULL */
    ll_future *task_f;                /* BEGIN: the owning task's future (a reference) */
    PGresult *res;                    /* the result to deliver */
    PGresult *err;                    /* the first error */
    char *sql;                        /* owned copies (in the same allocation) */
    int nparams;
    char **values;
    int *lengths;
    int *formats;
    /* typed queries (params.c): parameter type OIDs, the statement cache's key (the SQL with
     * the types, owned), binary results; all NULL/0 for the text-string calls */
    Oid *types;
    char *stmt_key;
    int result_format;
    /* REQ_MANY: rows [row0, row0 + nrows) of an executemany; values, lengths and formats hold
     * nrows * nparams entries, row by row */
    uint32_t nrows;
    int err_cmd;                      /* the command that gave the first error */
    uint32_t nerrs, nhits;            /* commands that failed; of them, stopped by a cancel */
    uint64_t *hits;                   /* RQF_SYNC_EACH: the rows (bits from row0) a cancel
                                       * stopped; after their re-run, the rows it holds */
    size_t row0;
    pg_many_prog *prog;
    int cancel_cmds;                  /* cmds_done when its last cancel request went out */
} pg_req;

/* A notification waiting to be read, or a task waiting for one. */
typedef struct pg_note {
    ll_pg_notification n;             /* first: the future's value is the allocation itself */
    struct pg_note *next;             /* strings follow in the same allocation */
} pg_note;

typedef struct pg_waiter {
    struct pg_waiter *next, *prev;
    ll_future *f;
    ll_pg_conn *conn;
} pg_waiter;

struct ll_pg_tx {
    ll_pg_conn *conn;
    uint64_t owner;                   /* the id of the task it belongs to; 0 when no transaction
                                       * (ids, not ll_task pointers: a new task can get the
                                       * address of one that ended) */
    ll_future *owner_f;               /* that task's future (a reference): its end rolls back */
    uint64_t begin_seq;               /* requests made before BEGIN are not part of it */
    bool ending;                      /* COMMIT or ROLLBACK made */
};

typedef enum {
    COPY_NONE = 0,
    COPY_STARTING, /* the COPY statement is sent */
    COPY_IN,       /* the server takes data */
    COPY_OUT,      /* the server sends data */
    COPY_ENDING,   /* data over; the COPY's result is awaited */
    COPY_DONE      /* the result is in, ll_pg_copy_finish() not called yet */
} pg_copy_state;

struct ll_pg_copy {
    ll_pg_conn *conn;
    pg_copy_state state;
    pg_req *req;                      /* the COPY request (its future is copy_start's) */
    ll_future *read_f;                /* COPY OUT: the pending read */
    pg_waiter *wq_head, *wq_tail;     /* COPY IN: writes waiting for the socket to drain */
    ll_future *finish_f;              /* resolved with the COPY's result */
    bool is_in;
    bool out_done;                    /* COPY OUT: the last row was read */
    bool discard;                     /* COPY OUT: nobody reads: drop the rows */
    bool end_pending;                 /* COPY IN: PQputCopyEnd must be retried */
    bool abandoned;                   /* nobody will call ll_pg_copy_finish: the outcome is
                                       * dropped when it comes */
    bool owner_gone;                  /* the task that started it ended */
    ll_future *owner_f;               /* that task's future (a reference), watched */
    char *end_error;                  /* its message */
};

struct ll_pg_conn {
    ll_loop *loop;
    PGconn *pg;
    pg_state state;
    ll_pg_opts opts;
    char *peer;                       /* "127.0.0.1:5432" or the socket path */
    char *who;                        /* "user bob, database app" */
    /* I/O */
    ll_poller *poller;                /* the socket watcher (libloop/poll.h) */
    ll_future *read_w, *write_w;      /* its pending waits */
    int io_fd, io_events;
    bool io_refd;                     /* the watcher keeps the loop alive (work is pending) */
    bool want_write;                  /* libpq has output the socket has not taken yet */
    int refs;                         /* the owner's, plus one per loop callback queued */
    bool is_tcp;
    bool corked;                      /* TCP_CORK set for a burst of sends */
    bool uncork_queued;
    /* connect */
    ll_future *connect_f;
    struct pg_connecting *connecting; /* while resolving host names */
    ll_future *connect_timer;         /* the connect timeout */
    ll_time connect_deadline;
    /* requests */
    pg_req *held_head, *held_tail;
    pg_req *sent_head, *sent_tail;
    pg_req *cur;                      /* the sent request the next reply belongs to */
    bool seg_open;                    /* batch_sync: requests written since the last Sync */
    bool block_unknown;               /* since libpq last said IDLE, something was written that
                                       * may open or end a transaction block (pipeline.c) */
    unsigned seg_len;
    size_t nheld, nsent;
    uint64_t next_seq;
    bool pipeline_on;
    bool exclusive;                   /* a script or COPY runs alone */
    bool pumping, pump_again;         /* ll__pg_pump is running (it is not re-entered) */
    /* cancellation (sched.c, cancel.c) */
    pg_req *ab_head, *ab_tail;        /* abandoned requests, oldest first */
    size_t nabandoned;
    size_t nblocking;                 /* requests ABANDONED, CANCELLING or CANCEL_WAIT */
    pg_req *cancel_target;            /* the request a cancel request is on its way for */
    pg_req *cancel_wait;              /* answered, its cancel request not yet confirmed */
    struct pg_cancel_req *cancel_req; /* that cancel request (it owns itself; NULL: none) */
    ll_future *cancel_timer;          /* closes the connection past cancel_timeout */
    uint64_t cancels_sent;            /* statistics, and for the tests */
    uint64_t risk_lo, risk_hi;        /* requests with risk_lo < seq <= risk_hi were in the
                                       * pipeline behind a cancel request's target while it was
                                       * on its way: a 57014 for them was meant for the target */
    struct pg_errfields *fatal;       /* a FATAL message the server sent before closing */
    /* statement cache */
    pg_stmt **stab;
    size_t stab_cap, nstmts;
    pg_stmt *lru_head, *lru_tail;     /* most recently used first */
    uint64_t stmt_counter;
    struct ll_pg_stmt *xstmts;        /* explicit statements on this connection (stmt.c) */
    /* transaction, COPY, notifications */
    ll_pg_tx tx;
    ll_pg_copy copy;
    pg_note *notes_head, *notes_tail;
    size_t nnotes;
    uint64_t notes_dropped;
    pg_waiter *waiters_head, *waiters_tail;
    /* pool */
    void *pool;                       /* the ll_pg_pool that owns it, if any */
    ll_time born;
};

/* conn.c */
ll_future *ll__pg_connect_pooled(const char *conninfo, const ll_pg_opts *opts, void *pool);
ll_future *ll__pg_connect_single(const char *conninfo, const ll_pg_opts *opts, void *pool); /* one host */
/* multihost.c: several hosts or a target_session_attrs in the conninfo */
bool ll__pg_multihost_wanted(const char *conninfo);
ll_future *ll__pg_multihost_connect(const char *conninfo, const ll_pg_opts *opts, void *pool);
void ll__pg_conn_free(ll_pg_conn *c);           /* close and free, lent by a pool or not */
void ll__pg_io_update(ll_pg_conn *c);           /* watcher events/ref from the current state */
void ll__pg_broken(ll_pg_conn *c, const char *why); /* the connection is lost: fail everything */
void ll__pg_want_write(ll_pg_conn *c);          /* libpq has output the socket did not take */
void ll__pg_cork(ll_pg_conn *c);                /* start a burst of writes (TCP_CORK) */
void ll__pg_close_segment(ll_pg_conn *c);       /* batch_sync: write the Sync of the open segment */
void ll__pg_conn_unref(ll_pg_conn *c);
const char *ll__pg_first_line(const char *msg, char *buf, size_t n);

/* sched.c — which request goes when: no libpq, no I/O (tests/pg/test_pg_sched.c drives it) */
/* The one function that changes a request's state: it moves r between the held, sent and
 * abandoned lists and keeps the counters. */
void ll__pg_req_set_state(ll_pg_conn *c, pg_req *r, pg_req_state st);
const char *ll__pg_req_state_name(pg_req_state st);
/* May r be written now (transaction ownership, a blocking cancel, a script or COPY running)? */
bool ll__pg_eligible(const ll_pg_conn *c, const pg_req *r);
/* The oldest held request that may be written now, or NULL. */
pg_req *ll__pg_sched_next(const ll_pg_conn *c);
/* r is being written: transaction ownership changes with it. */
void ll__pg_tx_on_send(ll_pg_conn *c, pg_req *r);
/* The caller of a sent request gave up at `now` (its future is settled by the caller of this):
 * ABANDONED, or DRAINING when no cancel request may be sent for it (a COMMIT, it started
 * answering). */
void ll__pg_sched_abandon(ll_pg_conn *c, pg_req *r, ll_time now);
/* The request a cancel request should be sent for now (the abandoned one running, when no other
 * cancel request is on its way), or NULL. */
pg_req *ll__pg_sched_cancel_due(const ll_pg_conn *c);
/* When the oldest abandoned request must be over (LL_NEVER: none). */
ll_time ll__pg_sched_cancel_deadline(const ll_pg_conn *c);
/* The cancel request for r (CANCELLING) is confirmed: DRAINING, or ABANDONED again for an
 * executemany whose rows run after a Sync each and are not all over. */
void ll__pg_sched_cancel_confirmed(ll_pg_conn *c, pg_req *r);
/* A row of an executemany (REQ_MANY) has answered. */
void ll__pg_sched_row_done(ll_pg_conn *c, pg_req *r);
/* All replies of r are in: what to do with it. */
bool ll__pg_replies_in(const pg_req *r);
bool ll__pg_is_abandoned(const pg_req *r);

/* pipeline.c */
/* A new request for `sql` (copied with its parameters). NULL on out of memory. */
pg_req *ll__pg_req_new(ll_pg_conn *c, pg_req_kind kind, const char *sql, int nparams,
                       const char *const *values, const int *lengths, const int *formats);
void ll__pg_req_free(pg_req *r);
/* Hand a request over: sent now if the connection can, else held. Its future gets a cancel hook. */
void ll__pg_submit(ll_pg_conn *c, pg_req *r);
/* Send what is held and may go now (after a cancel, transaction, COPY or script ended). */
void ll__pg_pump(ll_pg_conn *c);
/* Read replies and settle requests (socket readable). */
void ll__pg_on_input(ll_pg_conn *c);
/* Fail every request (held and sent) with `code`; a sent COMMIT gets LL_EPG_UNKNOWN_OUTCOME. */
void ll__pg_fail_all(ll_pg_conn *c, int code, const char *why);
/* Settle a request's future from its collected results, then free it. */
void ll__pg_complete(ll_pg_conn *c, pg_req *r);
/* Submit a query made from inside the library (transactions, reset, housekeeping). */
ll_future *ll__pg_query_internal(ll_pg_conn *c, const char *sql, pg_txop txop, uint64_t task_id);
/* The same without a future (nobody waits for it; errors are ignored). */
void ll__pg_query_noreply(ll_pg_conn *c, const char *sql, pg_txop txop, uint64_t task_id);
/* "name" quoted as an SQL identifier, allocated; NULL on out of memory. */
char *ll__pg_quote_ident(const char *name);
/* The id of the running task, 0 outside tasks. */
uint64_t ll__pg_task_id(void);

/* params.c */
/* Parameters encoded for the wire, in one allocation (ll_free): a typed query's or a pool job's. */
typedef struct pg_enc {
    int n;
    int result_format;
    Oid *types;
    char **values;
    int *lengths;
    int *formats;
    char *key;                        /* the statement cache key for (sql, types) */
} pg_enc;
/* Encode params for sql; on a refused parameter or out of memory returns NULL and fails f. */
pg_enc *ll__pg_enc_new(ll_future *f, const char *sql, int n, const ll_pg_param *params,
                       int result_format);
/* Submit a typed query made from enc (copied) on c. */
ll_future *ll__pg_query_enc(ll_pg_conn *c, const char *sql, const pg_enc *enc);
/* A parameter's encoded size (-1: NULL), or -2 with *why saying why it is refused (to follow
 * "parameter $N": " was not made ...", ": text contains ..."). */
int64_t ll__pg_param_size(const ll_pg_param *p, const char **why);
/* Write p (of that size) at o and set its wire value, length and format; NULL, or the type name
 * of a value out of range. */
const char *ll__pg_param_write(const ll_pg_param *p, uint8_t *o, int64_t size, char **value,
                               int *length, int *format);
/* The statement cache key of sql with these parameter types, written at out (LL__PG_KEY_LEN
 * bytes plus the zero); returns its length. */
#define LL__PG_KEY_LEN(n, sql) (2 + strlen(sql) + (size_t)(n) * 11)
size_t ll__pg_stmt_key(char *out, const Oid *types, int n, const char *sql);
/* The pool's typed query: enc is adopted. */
ll_future *ll__pg_pool_query_enc(ll_pg_pool *p, const char *sql, pg_enc *enc, ll_future *f);

/* hooks.c: the pool's hooks chained around a connect (conn_f adopted) and a reset */
ll_future *ll__pg_hook_connect(ll_loop *loop, ll_future *conn_f, ll_pg_pool_hook hook, void *arg);
ll_future *ll__pg_hook_release(ll_loop *loop, ll_pg_conn *c, ll_pg_pool_hook hook,
                               ll_pg_pool_hook hook2, void *arg,
                               ll_future *(*then)(void *then_arg, ll_pg_conn *c), void *then_arg);

/* pool.c */
void ll__pg_pool_conn_born(void *pool);         /* a connection of the pool was made */
void ll__pg_pool_conn_gone(void *pool);         /* ... and freed (may free the pool) */

/* prepared.c */
/* The cached statement for sql, found or made (a new reference), NULL when the cache is off or
 * out of memory (the query then runs unnamed). */
pg_stmt *ll__pg_stmt_get(ll_pg_conn *c, const char *sql);
void ll__pg_stmt_unref(pg_stmt *s);
/* Drop s from the cache; `deallocate`: it exists on the server, send DEALLOCATE. */
void ll__pg_stmt_forget(ll_pg_conn *c, pg_stmt *s, bool deallocate);
/* Evict least recently used statements above the cache size (after a send). */
void ll__pg_stmt_trim(ll_pg_conn *c);
void ll__pg_stmt_free_all(ll_pg_conn *c);

/* A statement for an ll_pg_stmt: named like the cache's but never in it (one reference, the
 * caller's). NULL on out of memory. */
pg_stmt *ll__pg_stmt_new_explicit(ll_pg_conn *c, const char *sql);

/* stmt.c: the connection ends (code LL_ECLOSED) or goes back to its pool (LL_ESTATE): its explicit
 * statements are detached and fail from now on. */
void ll__pg_stmts_detach(ll_pg_conn *c, int code);

/* params.c: fetchrow / fetchval over query future q (adopted) */
ll_future *ll__pg_fetch_wrap(ll_future *q, bool val);
/* params.c: parameter p as the statement's parameter type `want` (see "Parameters" in pg.h):
 * 0 and *out, or LL_EINVAL / LL_ERANGE with `why`. *out may borrow buf (a number's text). */
int ll__pg_param_coerce(const ll_pg_param *p, unsigned want, ll_pg_param *out, char *buf,
                        size_t buflen, char *why, size_t whylen);

/* pool.c */
ll_loop *ll__pg_pool_loop(const ll_pg_pool *p);
bool ll__pg_pool_closed(const ll_pg_pool *p);
void ll__pg_pool_ref(ll_pg_pool *p);            /* the pool structure outlives ll_pg_pool_free */
void ll__pg_pool_unref(ll_pg_pool *p);          /* ... until the last of these */

/* cancel.c */
void ll__pg_cancel_hook(ll_future *f, void *arg);
/* Something changed (a reply, a confirmation): send a due cancel request, re-arm the
 * cancel_timeout timer. */
void ll__pg_cancel_progress(ll_pg_conn *c);
/* The connection ends: the cancel request in flight goes on alone; the timer stops. */
void ll__pg_cancel_detach(ll_pg_conn *c);

/* error.c */
/* The fields of a server error kept without a PGresult (a connect error, a FATAL notice). */
typedef struct pg_errfields pg_errfields;
pg_errfields *ll__pg_errfields_from_result(const PGresult *res);
/* From libpq's verbose connect error text ("FATAL:  3D000: database ... \nDETAIL: ..."). */
pg_errfields *ll__pg_errfields_parse(const char *verbose);
pg_errfields *ll__pg_errfields_copy(const pg_errfields *e);
const char *ll__pg_errfields_get(const pg_errfields *e, int code);
void ll__pg_errfields_free(pg_errfields *e);
/* Fail f with LL_EPG_CONN "connection lost: why", with the server's FATAL fields if it sent one. */
void ll__pg_fail_conn(ll_future *f, ll_pg_conn *c, const char *why);
/* Fail f with `code`, the message and the fields e (adopted). */
void ll__pg_fail_fields(ll_future *f, int code, pg_errfields *e, const char *msg);
/* Fail f with the server error in `res` (adopted: freed with the future). `code` is usually
 * LL_EPG_SERVER. */
void ll__pg_fail_result(ll_future *f, ll_pg_conn *c, int code, PGresult *res);
/* Fail dst as src failed (code, message, and the server's fields, which move to dst). */
void ll__pg_fail_from(ll_future *dst, ll_future *src);

/* result.c */
/* A result: libpq's, with what the getters check for every value read once (result.c). */
struct ll_pg_result {
    PGresult *res;
    struct decoded *dec;              /* values decoded into memory of their own */
    int nrows, ncols;
    struct {
        unsigned type;                /* the column's type OID */
        bool binary;                  /* binary format */
    } cols[];
};
ll_pg_result *ll__pg_result_new(PGresult *res); /* adopts res; NULL on out of memory */
PGresult *ll__pg_result_pq(const ll_pg_result *r);
/* `size` bytes freed with the result (decoded values handed out by the getters); NULL on OOM. */
void *ll__pg_result_keep(ll_pg_result *r, size_t size);
/* codec.c: is this column binary and of a type that is not text on the wire? (the text
 * getters then refuse it instead of handing out raw bytes) */
bool ll__pg_col_binary(const ll_pg_result *r, int col);
bool ll__pg_binary_textlike(unsigned oid);

/* tx.c */
void ll__pg_tx_request_done(ll_pg_conn *c, pg_req *r, bool ok);
void ll__pg_tx_clear(ll_pg_conn *c);            /* the connection is gone: no transaction */
void ll__pg_tx_release_owner(ll_pg_conn *c);    /* the transaction's end was written */

/* notify.c */
void ll__pg_collect_notifies(ll_pg_conn *c);
void ll__pg_notify_fail_all(ll_pg_conn *c, int code, const char *why);
void ll__pg_notify_free_all(ll_pg_conn *c);

/* copy.c */
void ll__pg_copy_sending(ll_pg_conn *c, pg_req *r); /* the COPY statement is written now */
/* A COPY request got PGRES_COPY_IN/OUT: the copy starts (res is consumed). */
void ll__pg_copy_started(ll_pg_conn *c, pg_req *r, PGresult *res);
/* The COPY request is answered: settle the copy's futures (r is consumed). */
void ll__pg_copy_complete(ll_pg_conn *c, pg_req *r);
void ll__pg_copy_dropped(ll_pg_conn *c, pg_req *r); /* cancelled before it was sent */
void ll__pg_copy_on_input(ll_pg_conn *c);
void ll__pg_copy_on_writable(ll_pg_conn *c);
void ll__pg_copy_fail(ll_pg_conn *c, int code, const char *why);

#endif
