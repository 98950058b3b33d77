/*
 * cancel.c — cancelling a query in flight without ever hitting another one.
 *
 * Design notes:
 * - PostgreSQL's cancel request interrupts whatever the backend is running when it arrives. With
 *   pipelining, that may be another task's query. So a request is only cancelled on the server
 *   when it is the sole one in flight: cancelled while it was the last one sent, it becomes a
 *   barrier (nothing more is sent), and the cancel request goes out once everything before it has
 *   been answered and its own reply has not started. A cancelled request with others already
 *   sent behind it is not interrupted: it is waited for.
 * - libpq 15 has only the blocking PQcancel, so it runs in the executor. Nothing is sent on the
 *   connection until both the cancelled query's reply is in and PQcancel has returned (the server
 *   has acted on it), so a cancel arriving late cannot hit the next query.
 * - Either way the wait is bounded by cancel_timeout from the moment of the cancel: past it the
 *   connection is closed (everything on it fails with LL_EPG_CONN, the cancelled request with
 *   LL_ECANCELED), which is the only other way to be sure the query stopped.
 * - A COMMIT is never cancelled: its outcome would become unknown. Its future waits for the reply.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

typedef struct cancel_job {
    PGcancel *pc;
    int ok;
    char err[256];
} cancel_job;

static int cancel_work(void *arg, void **value) {
    cancel_job *j = arg;
    (void)value;
    j->ok = PQcancel(j->pc, j->err, (int)sizeof j->err);
    return 0;
}

static void cancel_job_free(void *p) {
    cancel_job *j = p;
    PQfreeCancel(j->pc);
    ll_free(j);
}

void ll__pg_cancel_arm(ll_pg_conn *c) {
    ll_time first = LL_NEVER;
    for (pg_req *r = c->sent_head; r; r = r->next)
        if (r->cancel_wanted && r->cancel_at < first) first = r->cancel_at;
    if (c->barrier && c->barrier->cancel_wanted && c->barrier->cancel_at < first)
        first = c->barrier->cancel_at;
    struct ev_loop *ev = ll_loop_ev(c->loop);
    if (c->timer_on) {
        ev_timer_stop(ev, &c->timer);
        c->timer_on = false;
    }
    if (first >= LL_NEVER || c->state != PG_READY || c->opts.cancel_timeout < 0) return;
    double left = first + c->opts.cancel_timeout - ll_now();
    ev_timer_set(&c->timer, left > 0 ? left : 0, 0.);
    ev_timer_start(ev, &c->timer);
    c->timer_on = true;
}

void ll__pg_cancel_timer(ll_pg_conn *c) {
    ll_time now = ll_now();
    bool overdue = false;
    for (pg_req *r = c->sent_head; r; r = r->next)
        if (r->cancel_wanted && r->cancel_at + c->opts.cancel_timeout <= now + 1e-3) overdue = true;
    if (c->barrier && c->barrier->cancel_wanted &&
        c->barrier->cancel_at + c->opts.cancel_timeout <= now + 1e-3)
        overdue = true;
    if (!overdue) {
        ll__pg_cancel_arm(c);
        return;
    }
    char why[128];
    snprintf(why, sizeof why, "a cancelled query did not stop within %g s: connection closed",
             c->opts.cancel_timeout);
    ll__pg_broken(c, why);
}

static void on_cancel_done(ll_future *jf, void *arg) {
    ll_pg_conn *c = arg;
    c->cancel_job = NULL;
    c->cancel_done = true;
    ll_future_free(jf);
    pg_req *r = c->barrier;
    if (r && r->answered) {
        ll__pg_complete(c, r);
        ll__pg_pump(c);
    }
    ll__pg_io_update(c);
}

void ll__pg_cancel_progress(ll_pg_conn *c) {
    pg_req *r = c->barrier;
    if (!r || r->cancel_started || r->answered || r->got_result || c->cur != r) return;
    if (c->state != PG_READY) return;
    r->cancel_started = true;
    cancel_job *j = ll_calloc(1, sizeof *j);
    if (j) j->pc = PQgetCancel(c->pg);
    if (!j || !j->pc) {
        /* no cancel request: the reply is waited for, bounded by cancel_timeout */
        ll_free(j);
        return;
    }
    ll_executor_opts eo = {.loop = c->loop};
    ll_future *jf = ll_executor_run(cancel_work, j, cancel_job_free, NULL, &eo); /* owns j */
    if (!jf || ll_future_done(jf)) {
        if (jf) (void)ll_future_code(jf);
        ll_future_free(jf); /* the job never started; j is freed already */
        return;
    }
    if (ll_future_add_done(jf, on_cancel_done, c) != 0) {
        /* the job runs and frees itself; we just do not wait for it */
        ll_future_free(jf);
        return;
    }
    c->cancel_job = jf;
    c->cancel_done = false;
}

void ll__pg_cancel_detach(ll_pg_conn *c) {
    if (c->cancel_job) {
        ll_future_remove_done(c->cancel_job, on_cancel_done, c);
        ll_future_free(c->cancel_job); /* the executor keeps its own reference until the job ends */
        c->cancel_job = NULL;
    }
    if (c->timer_on) {
        ev_timer_stop(ll_loop_ev(c->loop), &c->timer);
        c->timer_on = false;
    }
}

void ll__pg_cancel_hook(ll_future *f, void *arg) {
    pg_req *r = arg;
    ll_pg_conn *c = r->conn;
    if (r->where == AT_HELD) {
        /* never sent: nothing to stop */
        ll__pg_unlink(c, r);
        if (r->kind == REQ_COPY) ll__pg_copy_dropped(c, r);
        ll_future_set_cancelled(f);
        if ((r->txop == TXOP_COMMIT || r->txop == TXOP_ROLLBACK) && c->tx.owner == r->task) {
            /* the transaction was ending and its end was called off: end it safely */
            ll__pg_query_noreply(c, "ROLLBACK", TXOP_ROLLBACK, r->task);
        }
        ll__pg_req_free(r);
        ll__pg_pump(c);
        ll__pg_io_update(c);
        return;
    }
    if (r->where != AT_SENT || r->cancel_wanted || r->txop == TXOP_COMMIT) return;
    r->cancel_wanted = true;
    r->cancel_at = ll_now();
    if (r == c->sent_tail && !c->barrier) {
        c->barrier = r;
        r->is_barrier = true;
    }
    ll__pg_cancel_arm(c);
    ll__pg_cancel_progress(c);
}
