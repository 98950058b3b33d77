/*
 * test_pg_sched.c — the request scheduler (clients/pg/sched.c) as a sans-I/O unit: no server, no
 * libpq I/O. A model adapter plays pipeline.c (submit, send, replies in order, Syncs) and
 * cancel.c (abandon, cancel requests, confirmations) and a model server answers in order; random
 * interleavings of submit, cancel, reply, confirm and connection loss are checked after every step
 * against invariants:
 *   - the lists and counters agree with the states (one state, one set-state function);
 *   - nothing is written while an abandoned request blocks the connection or a cancel request
 *     awaits confirmation; a script or COPY is written only onto an empty pipeline;
 *   - while a task owns a transaction, no other task's later request is written;
 *   - a task's requests are written in the order it made them;
 *   - a cancel request only ever goes out for the request the server runs now (every earlier reply
 *     in, none of its own), one at a time;
 *   - every request ends exactly once and nothing is left (ASan checks the frees).
 * And one fixed sequence: an executemany whose rows run after a Sync each, abandoned, gets a
 * cancel request per row still running, never two for the row one already hit, and blocks the
 * connection until its rows are over.
 */
#include <stdlib.h>
#include "harness/harness.h"
#include "pg_internal.h"

#define NTASKS 4

typedef struct model {
    ll_pg_conn c;
    unsigned seed;
    long made, ended;
    uint64_t last_sent_seq[NTASKS + 1]; /* per task: the last request written */
    uint64_t tx_owner, tx_begin_seq;    /* the model's own view of transaction ownership */
    bool in_tx[NTASKS + 1];             /* the task has a BEGIN written and no end yet */
    long sends, cancels_started, confirms;
} model;

static unsigned rnd(model *m, unsigned n) {
    m->seed = m->seed * 1103515245u + 12345u;
    return (m->seed >> 16) % n;
}

static void end_req(model *m, pg_req *r) {
    if (r->state != RQ_DONE) ll__pg_req_set_state(&m->c, r, RQ_DONE);
    m->ended++;
    ll__pg_req_free(r);
}

static int check_lists(model *m) {
    ll_pg_conn *c = &m->c;
    size_t n = 0, blocking = 0;
    for (pg_req *r = c->held_head; r; r = r->next, n++) LT_CHECK(r->state == RQ_HELD);
    LT_CHECK(n == c->nheld);
    n = 0;
    bool cur_seen = c->cur == NULL;
    for (pg_req *r = c->sent_head; r; r = r->next, n++) {
        LT_CHECK(r->state == RQ_SENT || r->state == RQ_ABANDONED || r->state == RQ_CANCELLING ||
                 r->state == RQ_DRAINING);
        if (r == c->cur) cur_seen = true;
        blocking += r->state == RQ_ABANDONED || r->state == RQ_CANCELLING;
    }
    LT_CHECK(n == c->nsent);
    LT_CHECK(cur_seen);
    if (c->cancel_wait) {
        LT_CHECK(c->cancel_wait->state == RQ_CANCEL_WAIT);
        blocking++;
    }
    LT_CHECK(blocking == c->nblocking);
    n = 0;
    for (pg_req *r = c->ab_head; r; r = r->anext, n++) {
        LT_CHECK(ll__pg_is_abandoned(r));
        if (r->anext) LT_CHECK(r->abandoned_at <= r->anext->abandoned_at);
    }
    LT_CHECK(n == c->nabandoned);
    if (c->cancel_target)
        LT_CHECK(c->cancel_target->state == RQ_CANCELLING ||
                 c->cancel_target->state == RQ_CANCEL_WAIT);
    return 0;
}

/* pipeline.c's send_one, minus libpq */
static int write_req(model *m, pg_req *r) {
    ll_pg_conn *c = &m->c;
    LT_CHECK(c->state == PG_READY && !c->nblocking && !c->cancel_wait && !c->exclusive);
    bool excl = r->kind == REQ_EXEC || r->kind == REQ_COPY;
    if (excl) LT_CHECK(c->nsent == 0);
    if (m->tx_owner && r->task_id != m->tx_owner && r->kind != REQ_INTERNAL)
        LT_CHECKF(r->seq < m->tx_begin_seq, "task %lu written inside task %lu's transaction",
                  (unsigned long)r->task_id, (unsigned long)m->tx_owner);
    LT_CHECK(r->seq > m->last_sent_seq[r->task_id]);
    m->last_sent_seq[r->task_id] = r->seq;
    ll__pg_req_set_state(c, r, RQ_SENT);
    ll__pg_tx_on_send(c, r);
    if (r->txop == TXOP_BEGIN) {
        m->tx_owner = r->task_id;
        m->tx_begin_seq = r->seq;
    } else if ((r->txop == TXOP_COMMIT || r->txop == TXOP_ROLLBACK) && r->task_id == m->tx_owner) {
        m->tx_owner = 0;
    }
    if (excl) c->exclusive = true;
    r->ncmds = 1;
    m->sends++;
    return 0;
}

static int pump(model *m) {
    pg_req *h;
    while ((h = ll__pg_sched_next(&m->c)) != NULL) {
        ll__pg_req_set_state(&m->c, h, RQ_NEW);
        LT_CHECK(write_req(m, h) == 0);
    }
    return 0;
}

static int submit(model *m, pg_req_kind kind, pg_txop txop, uint64_t task) {
    ll_pg_conn *c = &m->c;
    pg_req *r = ll__pg_req_new(c, kind, "SELECT 1", 0, NULL, NULL, NULL);
    LT_CHECK(r);
    r->task_id = task;
    r->txop = (uint8_t)txop;
    m->made++;
    if (!c->held_head && ll__pg_eligible(c, r)) return write_req(m, r);
    ll__pg_req_set_state(c, r, RQ_HELD);
    return pump(m);
}

/* cancel.c's progress: a due cancel request goes out */
static int progress(model *m) {
    ll_pg_conn *c = &m->c;
    pg_req *r = ll__pg_sched_cancel_due(c);
    if (!r) return 0;
    LT_CHECK(r == c->cur && r->cmds_done == 0 && !c->cancel_target);
    for (pg_req *e = c->sent_head; e != r; e = e->next) LT_CHECK(ll__pg_replies_in(e));
    ll__pg_req_set_state(c, r, RQ_CANCELLING);
    m->cancels_started++;
    return 0;
}

static pg_req *pick(model *m) {
    ll_pg_conn *c = &m->c;
    size_t n = c->nheld + c->nsent;
    if (!n) return NULL;
    size_t k = rnd(m, (unsigned)n);
    pg_req *r = k < c->nheld ? c->held_head : c->sent_head;
    if (k >= c->nheld) k -= c->nheld;
    while (k--) r = r->next;
    return r;
}

/* the caller of r gives up (the cancel hook) */
static int cancel(model *m) {
    pg_req *r = pick(m);
    if (!r) return 0;
    if (r->state == RQ_HELD) {
        /* as cancel.c: the end of a transaction called off is replaced by a ROLLBACK under the
         * owner's id, or the other tasks would wait for ever */
        uint64_t owner = (r->txop == TXOP_COMMIT || r->txop == TXOP_ROLLBACK) &&
                                 m->c.tx.owner == r->task_id
                             ? r->task_id
                             : 0;
        end_req(m, r);
        if (owner) return submit(m, REQ_INTERNAL, TXOP_ROLLBACK, owner);
        return pump(m);
    }
    if (r->state != RQ_SENT) return 0;
    ll__pg_sched_abandon(&m->c, r, ll_now());
    return progress(m);
}

/* the server answers the statement it runs (the head without its replies) */
static int reply(model *m) {
    ll_pg_conn *c = &m->c;
    pg_req *r = c->cur;
    if (!r) return 0;
    if (r->state == RQ_ABANDONED) ll__pg_req_set_state(c, r, RQ_DRAINING); /* it finished */
    r->cmds_done = r->ncmds;
    c->cur = r->next;
    /* its Sync */
    LT_CHECK(c->sent_head == r);
    bool excl = r->kind == REQ_EXEC || r->kind == REQ_COPY;
    if (r->state == RQ_CANCELLING) ll__pg_req_set_state(c, r, RQ_CANCEL_WAIT);
    else end_req(m, r);
    if (excl) c->exclusive = false;
    LT_CHECK(progress(m) == 0);
    return pump(m);
}

/* the cancel request in flight ends (confirmed or failed) */
static int confirm(model *m) {
    ll_pg_conn *c = &m->c;
    pg_req *t = c->cancel_target;
    if (!t) return 0;
    m->confirms++;
    if (t->state == RQ_CANCELLING) ll__pg_req_set_state(c, t, RQ_DRAINING);
    else if (t->state == RQ_CANCEL_WAIT) end_req(m, t);
    LT_CHECK(progress(m) == 0);
    return pump(m);
}

/* the connection is lost: everything ends, a new one starts */
static int lose(model *m) {
    ll_pg_conn *c = &m->c;
    if (c->cancel_wait) end_req(m, c->cancel_wait);
    while (c->sent_head) end_req(m, c->sent_head);
    while (c->held_head) end_req(m, c->held_head);
    LT_CHECK(c->nblocking == 0 && c->nabandoned == 0 && !c->cancel_target);
    c->exclusive = false;
    c->cur = NULL;
    ll__pg_tx_clear(c);
    m->tx_owner = 0;
    for (int i = 0; i <= NTASKS; i++) m->in_tx[i] = false;
    return 0;
}

static int step(model *m) {
    unsigned k = rnd(m, 100);
    uint64_t task = 1 + rnd(m, NTASKS);
    if (k < 35) {
        /* a task's next request: a query, sometimes a transaction's bounds or a script */
        unsigned what = rnd(m, 20);
        if (what == 0 && !m->in_tx[task]) {
            m->in_tx[task] = true;
            return submit(m, REQ_QUERY, TXOP_BEGIN, task);
        }
        if (what == 1 && m->in_tx[task]) {
            m->in_tx[task] = false;
            return submit(m, REQ_QUERY, rnd(m, 2) ? TXOP_COMMIT : TXOP_ROLLBACK, task);
        }
        if (what == 2) return submit(m, REQ_EXEC, TXOP_NONE, task);
        if (what == 3) return submit(m, REQ_INTERNAL, TXOP_NONE, 0);
        return submit(m, REQ_QUERY, TXOP_NONE, task);
    }
    if (k < 50) return cancel(m);
    if (k < 85) return reply(m);
    if (k < 99) return confirm(m);
    return lose(m);
}

static int run(model *m, int steps) {
    for (int i = 0; i < steps; i++) {
        LT_CHECKF(step(m) == 0, "seed %u step %d", m->seed, i);
        LT_CHECKF(check_lists(m) == 0, "seed %u step %d", m->seed, i);
    }
    /* wind down: every task ends its transaction, the server answers everything */
    for (uint64_t t = 1; t <= NTASKS; t++)
        if (m->in_tx[t]) {
            m->in_tx[t] = false;
            LT_CHECK(submit(m, REQ_QUERY, TXOP_ROLLBACK, t) == 0);
        }
    for (int guard = 0; guard < 100000; guard++) {
        ll_pg_conn *c = &m->c;
        if (!c->nheld && !c->nsent && !c->cancel_wait) break;
        if (c->cancel_target && (rnd(m, 2) || !c->cur)) LT_CHECK(confirm(m) == 0);
        else if (c->cur) LT_CHECK(reply(m) == 0);
        else LT_CHECK(pump(m) == 0);
        LT_CHECK(check_lists(m) == 0);
    }
    LT_CHECKF(!m->c.nheld && !m->c.nsent && !m->c.cancel_wait && !m->c.nabandoned,
              "seed %u: held %zu sent %zu owner %lu head task %lu txop %d", m->seed, m->c.nheld,
              m->c.nsent, (unsigned long)m->c.tx.owner,
              m->c.held_head ? (unsigned long)m->c.held_head->task_id : 0UL,
              m->c.held_head ? m->c.held_head->txop : -1);
    LT_CHECKF(m->made == m->ended, "made %ld ended %ld", m->made, m->ended);
    return 0;
}

static int t_random(void *arg) {
    (void)arg;
    long sends = 0, cancels = 0;
    for (unsigned seed = 1; seed <= 300; seed++) {
        model *m = calloc(1, sizeof *m);
        LT_CHECK(m);
        m->seed = seed;
        m->c.state = PG_READY;
        m->c.opts.cancel_timeout = 5;
        m->c.tx.conn = &m->c;
        m->c.copy.conn = &m->c;
        m->c.loop = ll_loop_current();
        int rc = run(m, 2000);
        lose(m);
        sends += m->sends;
        cancels += m->cancels_started;
        free(m);
        LT_CHECK(rc == 0);
    }
    /* the interleavings did exercise the interesting paths */
    LT_CHECK(sends > 100000 && cancels > 1000);
    return 0;
}

static int t_many_rows(void *arg) {
    (void)arg;
    model *m = calloc(1, sizeof *m);
    ll_pg_conn *c = &m->c;
    c->state = PG_READY;
    c->tx.conn = c;
    c->copy.conn = c;
    c->loop = ll_loop_current();
    pg_req *r = ll__pg_req_new(c, REQ_MANY, "INSERT INTO t VALUES ($1)", 0, NULL, NULL, NULL);
    LT_CHECK(r != NULL);
    r->flags |= RQF_SYNC_EACH;
    r->nrows = 3;
    LT_CHECK(ll__pg_eligible(c, r));
    ll__pg_req_set_state(c, r, RQ_SENT);
    r->ncmds = 3;
    ll__pg_sched_abandon(c, r, 1.0); /* a deadline while row 1 runs */
    LT_CHECK(r->state == RQ_ABANDONED && c->nblocking == 1);
    LT_CHECK(ll__pg_sched_cancel_due(c) == r);
    ll__pg_req_set_state(c, r, RQ_CANCELLING); /* cancel.c sent one */
    ll__pg_sched_cancel_confirmed(c, r);       /* before row 1 answered */
    LT_CHECK(r->state == RQ_ABANDONED && c->nblocking == 1); /* rows left: still blocking */
    LT_CHECK(ll__pg_sched_cancel_due(c) == NULL);            /* not a second one for row 1 */
    LT_CHECK(check_lists(m) == 0);
    r->cmds_done = 1; /* row 1 answered (cancelled): row 2 runs */
    ll__pg_sched_row_done(c, r);
    LT_CHECK(ll__pg_sched_cancel_due(c) == r);
    ll__pg_req_set_state(c, r, RQ_CANCELLING);
    r->cmds_done = 2; /* row 2 answered before its cancel was confirmed: row 3 runs */
    ll__pg_sched_row_done(c, r);
    ll__pg_sched_cancel_confirmed(c, r);
    LT_CHECK(r->state == RQ_ABANDONED && ll__pg_sched_cancel_due(c) == r); /* at once */
    ll__pg_req_set_state(c, r, RQ_CANCELLING);
    r->cmds_done = 3;
    ll__pg_sched_row_done(c, r);
    ll__pg_sched_cancel_confirmed(c, r); /* every row over: nothing more to stop */
    LT_CHECK(r->state == RQ_DRAINING && c->nblocking == 0);
    LT_CHECK(check_lists(m) == 0);
    ll__pg_req_set_state(c, r, RQ_DONE);
    ll__pg_req_free(r);
    LT_CHECK(c->nsent == 0 && c->nabandoned == 0);
    free(m);
    return 0;
}

static void test_many_rows_cancel(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_many_rows, NULL);
    lt_teardown(&t);
}

static void test_random_interleavings(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_random, NULL);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_interleavings),
        cmocka_unit_test(test_many_rows_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
