/*
 * pg_internal.h — what the files of libloop-pg share. Never installed.
 *
 * The connection (conn.c) owns a PGconn in libpq pipeline mode and one ev_io watcher on its socket.
 * Every query is a request (pg_req). A request is either held (made but not yet written: the
 * connection is busy with a COPY, a script, another task's transaction or a cancel) or sent
 * (written, its reply pending); replies come back in the order requests were sent (pipeline.c).
 */
#ifndef LL_PG_INTERNAL_H
#define LL_PG_INTERNAL_H

#include <ev.h>
#include <libpq-fe.h>
#include "libloop.h"

static inline ll_loop *ll__pg_loop(ll_loop *loop) {
    return loop ? loop : ll_loop_current();
}
#include "libloop/executor.h"
#include "libloop/pg.h"

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
    REQ_INTERNAL   /* DEALLOCATE and other housekeeping: no future */
} pg_req_kind;

typedef enum { TXOP_NONE = 0, TXOP_BEGIN, TXOP_COMMIT, TXOP_ROLLBACK } pg_txop;
typedef enum { AT_NONE = 0, AT_HELD, AT_SENT } pg_where;

/* A prepared statement in the per-connection cache. */
typedef struct pg_stmt {
    struct pg_stmt *hnext;            /* hash chain */
    struct pg_stmt *lru_prev, *lru_next;
    uint64_t hash;
    unsigned refs;                    /* the cache's (while in it) and one per request using it */
    bool in_cache;
    bool prepared;                    /* the server confirmed the Parse */
    bool sent;                        /* its Parse has been written */
    char name[24];
    char sql[];                       /* the key */
} pg_stmt;

typedef struct pg_req {
    struct pg_req *prev, *next;       /* in the held or the sent list */
    ll_pg_conn *conn;
    ll_future *f;                     /* NULL for REQ_INTERNAL */
    uint64_t seq;
    ll_task *task;                    /* who made it (transaction ownership) */
    uint8_t kind, txop, where;
    bool prepare_first;               /* a Parse precedes the Execute in this segment */
    bool retried;                     /* re-prepared once already */
    bool cancel_wanted;               /* its future was cancelled while it was in flight */
    bool cancel_started;              /* a cancel request was handed to the executor for it */
    bool got_result;                  /* a reply for its statement arrived */
    bool nocache;                     /* never a named statement (transaction control, LISTEN) */
    bool batched;                     /* batch_sync: no Sync of its own (its segment's comes later) */
    bool finished;                    /* batched: all its replies are in; waits for the Sync */
    bool aborted;                     /* the server skipped it (an earlier error in its segment) */
    bool solo;                        /* always in a segment of its own (re-run after a failure) */
    bool rolled_back;                 /* ran, but its segment was rolled back (and it was
                                       * cancelled meanwhile: it is not run again) */
    bool is_barrier;                  /* nothing is sent until it is answered */
    bool answered;                    /* its Sync arrived; waits for its cancel request to end */
    ll_time cancel_at;                /* when its future was cancelled */
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
    ll_task *owner;                   /* the task it belongs to; NULL when no transaction */
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
    ev_io io;
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
    ev_timer timer;                   /* connect timeout, then the cancel deadline */
    bool timer_on;
    ll_time connect_deadline;
    /* requests */
    pg_req *held_head, *held_tail;
    pg_req *sent_head, *sent_tail;
    pg_req *cur;                      /* the sent request the next reply belongs to */
    bool seg_open;                    /* batch_sync: requests written since the last Sync */
    unsigned seg_len;
    size_t nheld, nsent;
    uint64_t next_seq;
    bool pipeline_on;
    bool exclusive;                   /* a script or COPY runs alone */
    pg_req *barrier;                  /* a cancelled request everything else waits behind */
    ll_future *cancel_job;            /* the executor's PQcancel, while it runs */
    bool cancel_done;                 /* the cancel request was answered (or failed) */
    /* statement cache */
    pg_stmt **stab;
    size_t stab_cap, nstmts;
    pg_stmt *lru_head, *lru_tail;     /* most recently used first */
    uint64_t stmt_counter;
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
void ll__pg_io_update(ll_pg_conn *c);           /* watcher events/ref from the current state */
void ll__pg_broken(ll_pg_conn *c, const char *why); /* the connection is lost: fail everything */
void ll__pg_want_write(ll_pg_conn *c);          /* libpq has output the socket did not take */
void ll__pg_cork(ll_pg_conn *c);                /* start a burst of writes (TCP_CORK) */
void ll__pg_close_segment(ll_pg_conn *c);       /* batch_sync: write the Sync of the open segment */
void ll__pg_conn_unref(ll_pg_conn *c);
const char *ll__pg_first_line(const char *msg, char *buf, size_t n);

/* pipeline.c */
/* A new request for `sql` (copied with its parameters). NULL on out of memory. */
pg_req *ll__pg_req_new(ll_pg_conn *c, pg_req_kind kind, const char *sql, int nparams,
                       const char *const *values, const int *lengths, const int *formats);
void ll__pg_req_free(pg_req *r);
/* Hand a request over: sent now if the connection can, else held. Its future gets a cancel hook. */
void ll__pg_submit(ll_pg_conn *c, pg_req *r);
/* Send what is held and may go now (after a barrier, transaction, COPY or script ended). */
void ll__pg_pump(ll_pg_conn *c);
/* Read replies and settle requests (socket readable). */
void ll__pg_on_input(ll_pg_conn *c);
/* Fail every request (held and sent) with `code`; a sent COMMIT gets LL_EPG_UNKNOWN_OUTCOME. */
void ll__pg_fail_all(ll_pg_conn *c, int code, const char *why);
void ll__pg_unlink(ll_pg_conn *c, pg_req *r);
/* Settle a request's future from its collected results, then free it. */
void ll__pg_complete(ll_pg_conn *c, pg_req *r);
/* Submit a query made from inside the library (transactions, reset, housekeeping). */
ll_future *ll__pg_query_internal(ll_pg_conn *c, const char *sql, pg_txop txop, ll_task *task);
/* The same without a future (nobody waits for it; errors are ignored). */
void ll__pg_query_noreply(ll_pg_conn *c, const char *sql, pg_txop txop, ll_task *task);
void ll__pg_tx_on_send(ll_pg_conn *c, pg_req *r);
/* "name" quoted as an SQL identifier, allocated; NULL on out of memory. */
char *ll__pg_quote_ident(const char *name);

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

/* cancel.c */
void ll__pg_cancel_hook(ll_future *f, void *arg);
/* The head of the sent list changed, or a request was answered: start a wanted cancel, lift the
 * barrier when its work is done. */
void ll__pg_cancel_progress(ll_pg_conn *c);
void ll__pg_cancel_detach(ll_pg_conn *c);       /* on close: forget the executor job */
void ll__pg_cancel_timer(ll_pg_conn *c);        /* the cancel deadline timer fired */
void ll__pg_cancel_arm(ll_pg_conn *c);          /* (re)arm it for the earliest wanted cancel */

/* error.c */
/* Fail f with the server error in `res` (adopted: freed with the future). `code` is usually
 * LL_EPG_SERVER. */
void ll__pg_fail_result(ll_future *f, ll_pg_conn *c, int code, PGresult *res);
/* Fail dst as src failed (code, message, and the server's fields, which move to dst). */
void ll__pg_fail_from(ll_future *dst, ll_future *src);

/* result.c */
ll_pg_result *ll__pg_result_new(PGresult *res); /* adopts res; NULL on out of memory */

/* tx.c */
void ll__pg_tx_request_done(ll_pg_conn *c, pg_req *r, bool ok);
void ll__pg_tx_clear(ll_pg_conn *c);            /* the connection is gone: no transaction */
bool ll__pg_eligible(const ll_pg_conn *c, const pg_req *r);

/* notify.c */
void ll__pg_collect_notifies(ll_pg_conn *c);
void ll__pg_notify_fail_all(ll_pg_conn *c, int code, const char *why);
void ll__pg_notify_free_all(ll_pg_conn *c);

/* copy.c */
/* A COPY request got PGRES_COPY_IN/OUT: the copy starts (res is consumed). */
void ll__pg_copy_started(ll_pg_conn *c, pg_req *r, PGresult *res);
/* The COPY request is answered: settle the copy's futures (r is consumed). */
void ll__pg_copy_complete(ll_pg_conn *c, pg_req *r);
void ll__pg_copy_dropped(ll_pg_conn *c, pg_req *r); /* cancelled before it was sent */
void ll__pg_copy_on_input(ll_pg_conn *c);
void ll__pg_copy_on_writable(ll_pg_conn *c);
void ll__pg_copy_fail(ll_pg_conn *c, int code, const char *why);

#endif
