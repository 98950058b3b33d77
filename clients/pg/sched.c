/*
 * sched.c — the scheduler of a connection's requests: which request may be written when, what
 * happens when a caller gives up, when a cancel request may go out. No libpq call and no I/O
 * here (tests/pg/test_pg_sched.c drives these functions alone, with random interleavings of
 * submit, cancel, reply and failure); pipeline.c and cancel.c do the writing and reading.
 *
 * Design notes:
 * - A request has one state (pg_req_state in pg_internal.h) and ll__pg_req_set_state() is the
 *   only place that changes it, the way curl's multi handle changes `mstate` in one function:
 *   list membership (held, sent, abandoned) and the counters follow from the state, so they can
 *   never disagree with it.
 * - Writing order: held requests go oldest first, skipping those that may not go yet (another
 *   task's transaction is open). A script or COPY waits for the pipeline to empty and holds back
 *   everything behind it, so it cannot be starved.
 * - Transactions belong to a task *id*: stacks are reused, and a new task can get the address of
 *   one that ended.
 * - A caller that gives up (deadline, cancel) gets its answer at once; the request stays in the
 *   pipeline, abandoned, its replies dropped. PostgreSQL's cancel request interrupts whatever the
 *   backend runs when it arrives, so it is only sent for the abandoned request that is running
 *   now (every earlier reply is in, none of its own), one at a time; nothing new is written from
 *   the moment a request is abandoned until its cancel is confirmed and its replies are in. A
 *   request already sent behind it can still be hit when the abandoned query ends just as the
 *   cancel arrives: pipeline.c runs such a request again (it is the only request that can be
 *   affected, and outside a transaction block its effects were rolled back with it).
 * - An executemany with a Sync per row (REQ_MANY, RQF_SYNC_EACH) is one request whose rows the
 *   server runs one after another, each after its own Sync: a cancel request stops one row only.
 *   While rows are left it stays ABANDONED (blocking: nothing new is written behind it) and a
 *   cancel request goes out for each row still running; after one is confirmed, the next waits
 *   (RQF_ROW_WAIT) until the row it hit has answered, so it does not land on the same row.
 */
#include "pg_internal.h"

static bool in_sent_list(pg_req_state s) {
    return s == RQ_SENT || s == RQ_ABANDONED || s == RQ_CANCELLING || s == RQ_DRAINING;
}

static bool is_blocking(pg_req_state s) {
    return s == RQ_ABANDONED || s == RQ_CANCELLING || s == RQ_CANCEL_WAIT;
}

static bool is_abandoned_state(pg_req_state s) {
    return s == RQ_ABANDONED || s == RQ_CANCELLING || s == RQ_DRAINING || s == RQ_CANCEL_WAIT;
}

const char *ll__pg_req_state_name(pg_req_state st) {
    static const char *const names[] = {"NEW",        "HELD",     "SENT",        "ABANDONED",
                                        "CANCELLING", "DRAINING", "CANCEL_WAIT", "DONE"};
    return (unsigned)st < sizeof names / sizeof *names ? names[st] : "?";
}

bool ll__pg_is_abandoned(const pg_req *r) {
    return is_abandoned_state((pg_req_state)r->state);
}

bool ll__pg_replies_in(const pg_req *r) {
    return r->cmds_done >= r->ncmds;
}

static void list_push(pg_req **head, pg_req **tail, pg_req *r) {
    r->next = NULL;
    r->prev = *tail;
    if (*tail) (*tail)->next = r;
    else *head = r;
    *tail = r;
}

static void list_unlink(pg_req **head, pg_req **tail, pg_req *r) {
    if (r->prev) r->prev->next = r->next;
    else *head = r->next;
    if (r->next) r->next->prev = r->prev;
    else *tail = r->prev;
    r->prev = r->next = NULL;
}

void ll__pg_req_set_state(ll_pg_conn *c, pg_req *r, pg_req_state st) {
    pg_req_state old = (pg_req_state)r->state;
    if (old == st) return;
    if (old == RQ_HELD) {
        list_unlink(&c->held_head, &c->held_tail, r);
        c->nheld--;
    } else if (in_sent_list(old) && !in_sent_list(st)) {
        if (r == c->cur) c->cur = r->next;
        list_unlink(&c->sent_head, &c->sent_tail, r);
        c->nsent--;
    }
    if (st == RQ_HELD) {
        list_push(&c->held_head, &c->held_tail, r);
        c->nheld++;
    } else if (in_sent_list(st) && !in_sent_list(old)) {
        list_push(&c->sent_head, &c->sent_tail, r);
        c->nsent++;
        if (!c->cur) c->cur = r;
    }
    if (!is_abandoned_state(old) && is_abandoned_state(st)) {
        r->anext = NULL;
        r->aprev = c->ab_tail;
        if (c->ab_tail) c->ab_tail->anext = r;
        else c->ab_head = r;
        c->ab_tail = r;
        c->nabandoned++;
    } else if (is_abandoned_state(old) && !is_abandoned_state(st)) {
        if (r->aprev) r->aprev->anext = r->anext;
        else c->ab_head = r->anext;
        if (r->anext) r->anext->aprev = r->aprev;
        else c->ab_tail = r->aprev;
        r->aprev = r->anext = NULL;
        c->nabandoned--;
    }
    if (is_blocking(old) && !is_blocking(st)) c->nblocking--;
    if (!is_blocking(old) && is_blocking(st)) c->nblocking++;
    if (old == RQ_CANCEL_WAIT && c->cancel_wait == r) c->cancel_wait = NULL;
    if (st == RQ_CANCEL_WAIT) c->cancel_wait = r;
    if (st == RQ_CANCELLING) {
        c->cancel_target = r;
        r->cancel_cmds = r->cmds_done;
    }
    else if (c->cancel_target == r && st != RQ_CANCEL_WAIT) c->cancel_target = NULL;
    r->state = (uint8_t)st;
}

static bool is_exclusive(const pg_req *r) {
    return r->kind == REQ_EXEC || r->kind == REQ_COPY;
}

/* Nothing at all may be written now. */
static bool blocked(const ll_pg_conn *c) {
    return c->state != PG_READY || c->nblocking || c->cancel_wait || c->exclusive;
}

/* Another task's transaction is open and r came after its BEGIN. */
static bool tx_excludes(const ll_pg_conn *c, const pg_req *r) {
    return c->tx.owner && r->task_id != c->tx.owner && r->seq > c->tx.begin_seq &&
           r->kind != REQ_INTERNAL;
}

bool ll__pg_eligible(const ll_pg_conn *c, const pg_req *r) {
    if (blocked(c) || tx_excludes(c, r)) return false;
    if (is_exclusive(r) && (c->nsent || (r->kind == REQ_COPY && c->copy.state != COPY_NONE)))
        return false;
    return true;
}

pg_req *ll__pg_sched_next(const ll_pg_conn *c) {
    if (blocked(c)) return NULL;
    for (pg_req *h = c->held_head; h; h = h->next) {
        if (tx_excludes(c, h)) continue;
        /* a script or COPY waiting for the pipeline to empty holds back what is behind it */
        return ll__pg_eligible(c, h) ? h : NULL;
    }
    return NULL;
}

void ll__pg_sched_abandon(ll_pg_conn *c, pg_req *r, ll_time now) {
    r->abandoned_at = now;
    /* Never interrupted: transaction control (a COMMIT's outcome would become unknown to the
     * server's caller as well), housekeeping, and a statement whose result is already in (it has
     * finished: a cancel could only hit what runs after it). */
    bool no_cancel = r->txop != TXOP_NONE || r->kind == REQ_INTERNAL ||
                     (r->kind == REQ_QUERY && (r->res || r->err || r->outcome == OUT_SKIPPED)) ||
                     ll__pg_replies_in(r);
    ll__pg_req_set_state(c, r, no_cancel ? RQ_DRAINING : RQ_ABANDONED);
}

pg_req *ll__pg_sched_cancel_due(const ll_pg_conn *c) {
    if (c->state != PG_READY || c->cancel_target || c->cancel_wait) return NULL;
    pg_req *r = c->cur;
    return r && r->state == RQ_ABANDONED && !(r->flags & RQF_ROW_WAIT) ? r : NULL;
}

static bool rows_left(const pg_req *r) {
    return r->kind == REQ_MANY && (r->flags & RQF_SYNC_EACH) && !ll__pg_replies_in(r);
}

void ll__pg_sched_cancel_confirmed(ll_pg_conn *c, pg_req *r) {
    if (r->state != RQ_CANCELLING) return;
    if (!rows_left(r)) {
        ll__pg_req_set_state(c, r, RQ_DRAINING);
        return;
    }
    /* the row it hit has not answered yet: the next cancel request is for the row after it */
    if (r->cmds_done == r->cancel_cmds) r->flags |= RQF_ROW_WAIT;
    ll__pg_req_set_state(c, r, RQ_ABANDONED);
}

void ll__pg_sched_row_done(ll_pg_conn *c, pg_req *r) {
    if (!(r->flags & RQF_SYNC_EACH) || !ll__pg_is_abandoned(r)) return;
    r->flags &= (uint8_t)~RQF_ROW_WAIT;
    if (r->state == RQ_DRAINING && rows_left(r)) ll__pg_req_set_state(c, r, RQ_ABANDONED);
}

ll_time ll__pg_sched_cancel_deadline(const ll_pg_conn *c) {
    if (!c->ab_head || c->opts.cancel_timeout < 0) return LL_NEVER; /* < 0: no limit */
    return c->ab_head->abandoned_at + c->opts.cancel_timeout;
}
