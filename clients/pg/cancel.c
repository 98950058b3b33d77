/*
 * cancel.c — giving up on a query: the caller gets its answer at once, the connection cleans up
 * in the background, bounded by cancel_timeout.
 *
 * Design notes:
 * - The cancel hook settles the caller's future at once (an await past its deadline returns
 *   LL_ETIMEDOUT at the deadline, whatever the server or the network does). The request stays in
 *   the pipeline, abandoned (sched.c): its replies are read and dropped, nothing new is written
 *   until it is over, and if it is not over within cancel_timeout of being abandoned the
 *   connection is closed — the only other way to be sure it stopped. A pool meanwhile lends
 *   another connection: this one is still being reset.
 * - The cancel request is our own, over a libloop stream, in a task with a deadline: PostgreSQL's
 *   CancelRequest message (16 bytes: length, 80877102, backend PID, secret key) on a new
 *   connection to the same server, then wait for the server to close it (it has delivered the
 *   signal then). libpq 15 only has the blocking PQcancel, which on a frozen path blocks a thread
 *   with no limit (and ll_loop_free would wait for it). The task owns its memory, forgets the
 *   connection when that is closed, and is cancelled like any task when the loop shuts down.
 * - libpq 15 does not expose the secret key. PQgetCancel() copies it into a PGcancel whose layout
 *   (libpq-int.h: the server address, then the PID, then the key) has not changed since 9.x; the
 *   key is read from there only after the PID found beside it matches PQbackendPID(). If it does
 *   not (another libpq), no cancel request is sent: the abandoned query is waited for, bounded by
 *   cancel_timeout as above.
 * - PostgreSQL's cancel interrupts whatever the backend runs when the signal arrives, so it is only
 *   sent for the abandoned request that is running now (sched.c), and a neighbour it hits anyway
 *   is run again (pipeline.c).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "libloop/stream.h"
#include "pg_internal.h"

typedef struct pg_cancel_req {
    ll_pg_conn *c;       /* NULL once the connection is gone: the request goes on alone */
    char addr[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    uint16_t port;
    bool is_unix;
    uint32_t pid, key;
} pg_cancel_req;

/* The head of libpq's struct pg_cancel (libpq-int.h): SockAddr is a struct of its own, so it is
 * padded to its alignment before be_pid. */
struct pg_sockaddr {
    struct sockaddr_storage addr;
    socklen_t salen;
};
struct pg_cancel_head {
    struct pg_sockaddr raddr;
    int be_pid;
    int be_key;
};

static bool backend_key(PGconn *pg, uint32_t *pid, uint32_t *key) {
    PGcancel *pc = PQgetCancel(pg);
    if (!pc) return false;
    const struct pg_cancel_head *h = (const struct pg_cancel_head *)(const void *)pc;
    bool ok = h->be_pid != 0 && h->be_pid == PQbackendPID(pg) &&
              h->raddr.salen <= sizeof h->raddr.addr;
    if (ok) {
        *pid = (uint32_t)h->be_pid;
        *key = (uint32_t)h->be_key;
    }
    PQfreeCancel(pc);
    return ok;
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void cancel_finished(ll_pg_conn *c, int rc);

static int cancel_task(void *arg) {
    pg_cancel_req *q = arg;
    ll_future *f = q->is_unix ? ll_stream_connect_unix(q->addr, NULL)
                             : ll_stream_connect(q->addr, q->port, NULL);
    int rc = ll_await(f);
    ll_stream *s = rc == 0 ? ll_future_take(f) : NULL;
    ll_future_free(f);
    if (s) {
        unsigned char pkt[16];
        put32(pkt, 16);
        put32(pkt + 4, 80877102);
        put32(pkt + 8, q->pid);
        put32(pkt + 12, q->key);
        f = ll_stream_write(s, pkt, sizeof pkt);
        rc = ll_await(f);
        ll_future_free(f);
        /* the server closes the connection once it has signalled the backend */
        while (rc == 0) {
            char b[16];
            f = ll_stream_read(s, b, sizeof b);
            rc = ll_await(f);
            ll_future_free(f);
        }
        if (rc == LL_EOF || rc == LL_ECONNRESET) rc = 0;
        ll_stream_close(s);
    }
    if (q->c) cancel_finished(q->c, rc);
    ll_free(q);
    return 0;
}

/* Start a cancel request for r (the abandoned request running now). */
static void start_cancel(ll_pg_conn *c, pg_req *r) {
    pg_cancel_req *q = ll_calloc(1, sizeof *q);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    bool ok = q && backend_key(c->pg, &q->pid, &q->key) &&
              getpeername(PQsocket(c->pg), (struct sockaddr *)&ss, &sl) == 0;
    if (ok && ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
        q->is_unix = true;
        size_t n = strnlen(un->sun_path, sizeof un->sun_path);
        memcpy(q->addr, un->sun_path, n);
        q->addr[n] = 0;
    } else if (ok && ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        ok = inet_ntop(AF_INET, &in->sin_addr, q->addr, sizeof q->addr) != NULL;
        q->port = ntohs(in->sin_port);
    } else if (ok && ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        ok = inet_ntop(AF_INET6, &in6->sin6_addr, q->addr, sizeof q->addr) != NULL;
        q->port = ntohs(in6->sin6_port);
    } else {
        ok = false;
    }
    ll_future *tf = NULL;
    if (ok) {
        q->c = c;
        /* bounded like the wait for the query (no limit: the loop's shutdown still ends it) */
        ll_spawn_opts so = {.name = "pg cancel request", .loop = c->loop,
                            .deadline = c->opts.cancel_timeout < 0
                                            ? LL_NEVER
                                            : r->abandoned_at + c->opts.cancel_timeout};
        tf = ll_spawn_ex(cancel_task, q, &so);
        ok = tf && ll_future_get_state(tf) == LL_FUTURE_PENDING;
    }
    if (!ok) {
        /* no cancel request possible: wait for the query, bounded by cancel_timeout */
        if (tf) (void)ll_future_code(tf); /* the task never ran: q is still ours */
        ll_future_free(tf);
        ll_free(q);
        ll__pg_req_set_state(c, r, RQ_DRAINING);
        return;
    }
    ll_future_free(tf); /* the task lives on without our reference */
    c->cancel_req = q;
    c->cancels_sent++;
    /* the window of requests a late signal could hit grows until the pipeline drains */
    c->risk_lo = c->risk_hi && c->risk_lo < r->seq ? c->risk_lo : r->seq;
    c->risk_hi = UINT64_MAX;
    ll__pg_req_set_state(c, r, RQ_CANCELLING);
}

/* The cancel request ended: confirmed by the server (rc 0) or failed. Either way it will not
 * arrive later than now, so new work may be written once the target's replies are in. */
static void cancel_finished(ll_pg_conn *c, int rc) {
    (void)rc;
    c->cancel_req = NULL;
    c->risk_hi = c->next_seq;
    pg_req *t = c->cancel_target;
    if (t && t->state == RQ_CANCELLING) ll__pg_sched_cancel_confirmed(c, t);
    else if (t && t->state == RQ_CANCEL_WAIT) ll__pg_complete(c, t); /* abandoned: freed */
    if (c->state != PG_READY) return;
    ll__pg_cancel_progress(c);
    ll__pg_pump(c);
}

static void on_cancel_timer(void *arg) {
    ll_pg_conn *c = arg;
    ll_future_free(c->cancel_timer);
    c->cancel_timer = NULL;
    if (c->state != PG_READY) return;
    if (ll__pg_sched_cancel_deadline(c) <= ll_now() + 1e-3) {
        char why[128];
        snprintf(why, sizeof why, "a cancelled query did not stop within %g s: connection closed",
                 c->opts.cancel_timeout);
        ll__pg_broken(c, why);
        return;
    }
    ll__pg_cancel_progress(c);
}

static void stop_timer(ll_pg_conn *c) {
    if (!c->cancel_timer) return;
    ll_future_cancel(c->cancel_timer);
    ll_future_free(c->cancel_timer);
    c->cancel_timer = NULL;
}

void ll__pg_cancel_progress(ll_pg_conn *c) {
    if (c->state != PG_READY) return;
    if (!c->nsent && !c->cancel_target) c->risk_lo = c->risk_hi = 0; /* nothing left to hit */
    pg_req *r = ll__pg_sched_cancel_due(c);
    if (r) start_cancel(c, r);
    ll_time due = ll__pg_sched_cancel_deadline(c);
    if (due >= LL_NEVER) {
        stop_timer(c);
        return;
    }
    if (c->cancel_timer) return; /* armed for the oldest abandoned request already, or earlier */
    double left = due - ll_now();
    c->cancel_timer = ll_loop_call_later(c->loop, left > 0 ? left : 0, on_cancel_timer, c);
}

void ll__pg_cancel_detach(ll_pg_conn *c) {
    if (c->cancel_req) c->cancel_req->c = NULL; /* it goes on alone, bounded by its deadline */
    c->cancel_req = NULL;
    stop_timer(c);
}

void ll__pg_cancel_hook(ll_future *f, void *arg) {
    pg_req *r = arg;
    ll_pg_conn *c = r->conn;
    if (r->state == RQ_HELD || r->state == RQ_NEW) {
        /* never sent: nothing to stop */
        ll__pg_req_set_state(c, r, RQ_DONE);
        if (r->kind == REQ_COPY) ll__pg_copy_dropped(c, r);
        ll_future_set_cancelled(f);
        if ((r->txop == TXOP_COMMIT || r->txop == TXOP_ROLLBACK) && c->tx.owner == r->task_id &&
            r->task_id) {
            /* the transaction was ending and its end was called off: end it safely */
            ll__pg_query_noreply(c, "ROLLBACK", TXOP_ROLLBACK, r->task_id);
        }
        ll__pg_req_free(r);
        ll__pg_pump(c);
        return;
    }
    if (r->state != RQ_SENT || r->f != f) return;
    /* written: the caller has its answer now; the request goes on without it */
    r->f = NULL;
    ll_future_set_cancelled(f);
    ll_future_free(f);
    ll__pg_sched_abandon(c, r, ll_now());
    ll__pg_cancel_progress(c);
    ll__pg_io_update(c);
}
