/*
 * tx.c — transactions: one task's statements, alone on the connection, rolled back if the task
 * ends without committing.
 *
 * Design notes:
 * - A transaction belongs to the task that began it. From the moment its BEGIN is written until
 *   its COMMIT or ROLLBACK is written, other tasks' requests made after the BEGIN are held
 *   (pipeline.c asks ll__pg_eligible), so none of them can run inside it. Requests made before the
 *   BEGIN are older and are sent before it. Ownership changes when those statements are written,
 *   not when they are answered: the server runs the pipeline in order, so what is written after
 *   the COMMIT runs after it.
 * - The owner's task future gets a done callback: if the task finishes (returned, failed, was
 *   cancelled) while its transaction is open, a ROLLBACK is sent for it.
 * - A COMMIT whose connection is lost while it is in flight ends with LL_EPG_UNKNOWN_OUTCOME
 *   (pipeline.c): the server may have committed. Nothing here ever retries a COMMIT.
 */
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

static void owner_done(ll_future *tf, void *arg);

void ll__pg_tx_release_owner(ll_pg_conn *c) {
    if (c->tx.owner_f) {
        ll_future_remove_done(c->tx.owner_f, owner_done, c);
        ll_future_free(c->tx.owner_f);
    }
    c->tx.owner_f = NULL;
    c->tx.owner = 0;
    c->tx.ending = false;
}

static void owner_done(ll_future *tf, void *arg) {
    (void)tf;
    ll_pg_conn *c = arg;
    uint64_t owner = c->tx.owner;
    ll_future_free(c->tx.owner_f);
    c->tx.owner_f = NULL;
    if (!owner || c->tx.ending) return;
    /* The task ended inside its transaction: roll it back, under the owner's id so that it may
     * go before the other tasks' statements held behind the transaction. Ownership ends when the
     * ROLLBACK is written (sched.c), never earlier: released now, those statements would be
     * written first and run inside the dead transaction. */
    c->tx.ending = true;
    ll__pg_query_noreply(c, "ROLLBACK", TXOP_ROLLBACK, owner);
    if (c->state != PG_READY && c->tx.owner == owner) ll__pg_tx_release_owner(c);
    ll__pg_pump(c);
}

void ll__pg_tx_on_send(ll_pg_conn *c, pg_req *r) {
    if (r->txop == TXOP_BEGIN) {
        ll__pg_tx_release_owner(c);
        c->tx.owner = r->task_id;
        c->tx.begin_seq = r->seq;
        c->tx.owner_f = r->task_f;
        r->task_f = NULL;
        if (c->tx.owner_f && ll_future_add_done(c->tx.owner_f, owner_done, c) != 0) {
            /* no automatic rollback possible: the pool's reset or the connection's end will do */
        }
    } else if (r->txop == TXOP_COMMIT || r->txop == TXOP_ROLLBACK) {
        if (c->tx.owner && (r->task_id == c->tx.owner || !r->task_id)) ll__pg_tx_release_owner(c);
    }
}

void ll__pg_tx_request_done(ll_pg_conn *c, pg_req *r, bool ok) {
    if (r->txop == TXOP_BEGIN && !ok && c->tx.owner && c->tx.begin_seq == r->seq) {
        ll__pg_tx_release_owner(c); /* no transaction after all */
        ll__pg_pump(c);
    }
}

void ll__pg_tx_clear(ll_pg_conn *c) {
    ll__pg_tx_release_owner(c);
}

static ll_future *tx_fail(ll_loop *loop, int code, const char *why) {
    ll_future *f = ll_future_new(loop);
    if (f) ll_future_fail(f, code, "postgres transaction: %s", why);
    return f;
}

ll_future *ll_pg_begin(ll_pg_conn *c, const char *options) {
    LL_REQUIRE_ARG(c, "conn");
    if (!c) return tx_fail(NULL, LL_EINVAL, "no connection");
    ll_task *t = ll_task_current();
    if (!t) return tx_fail(c->loop, LL_ENOTASK, "ll_pg_begin must be called from a task");
    uint64_t id = ll_task_id(t);
    if (c->tx.owner == id) return tx_fail(c->loop, LL_ESTATE, "this task already has one open");
    for (pg_req *r = c->held_head; r; r = r->next)
        if (r->txop == TXOP_BEGIN && r->task_id == id)
            return tx_fail(c->loop, LL_ESTATE, "this task already began one");
    char *sql = options && *options ? ll_format("BEGIN %s", options) : NULL;
    if (options && *options && !sql) return tx_fail(c->loop, LL_ENOMEM, "out of memory");
    ll_future *f = ll_future_new(c->loop);
    if (!f) {
        ll_free(sql);
        return NULL;
    }
    ll_future_set_label(f, "pg begin");
    if (c->state != PG_READY) {
        ll_future_fail(f, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                       "postgres %s: connection %s", c->peer,
                       c->state == PG_BROKEN ? "lost" : "closed");
        ll_free(sql);
        return f;
    }
    pg_req *r = ll__pg_req_new(c, REQ_QUERY, sql ? sql : "BEGIN", 0, NULL, NULL, NULL);
    ll_free(sql);
    if (!r) {
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory", c->peer);
        return f;
    }
    r->txop = TXOP_BEGIN;
    r->flags |= RQF_NOCACHE;
    r->task_f = ll_future_ref(ll_task_future(t));
    r->f = ll_future_ref(f);
    ll__pg_submit(c, r);
    return f;
}

static ll_future *tx_stmt(ll_pg_tx *tx, const char *sql, pg_txop op) {
    if (!tx || !tx->conn) return tx_fail(NULL, LL_EINVAL, "no transaction");
    ll_pg_conn *c = tx->conn;
    uint64_t t = ll__pg_task_id();
    if (!c->tx.owner || c->tx.owner != t)
        return tx_fail(c->loop, LL_ESTATE, "not open, or not this task's");
    if (op == TXOP_COMMIT || op == TXOP_ROLLBACK) c->tx.ending = true;
    return ll__pg_query_internal(c, sql, op, t);
}

ll_future *ll_pg_commit(ll_pg_tx *tx) {
    LL_REQUIRE_ARG(tx, "tx");
    ll_future *f = tx_stmt(tx, "COMMIT", TXOP_COMMIT);
    ll_future_set_label(f, "pg commit");
    return f;
}

ll_future *ll_pg_rollback(ll_pg_tx *tx) {
    LL_REQUIRE_ARG(tx, "tx");
    return tx_stmt(tx, "ROLLBACK", TXOP_ROLLBACK);
}

static ll_future *savepoint_stmt(ll_pg_tx *tx, const char *verb, const char *name) {
    if (!name || !*name) return tx_fail(tx && tx->conn ? tx->conn->loop : NULL, LL_EINVAL,
                                         "empty savepoint name");
    char *q = ll__pg_quote_ident(name);
    char *sql = q ? ll_format("%s %s", verb, q) : NULL;
    ll_free(q);
    if (!sql) return tx_fail(tx && tx->conn ? tx->conn->loop : NULL, LL_ENOMEM, "out of memory");
    ll_future *f = tx_stmt(tx, sql, TXOP_NONE);
    ll_free(sql);
    return f;
}

ll_future *ll_pg_savepoint(ll_pg_tx *tx, const char *name) {
    LL_REQUIRE_ARG(tx, "tx");
    return savepoint_stmt(tx, "SAVEPOINT", name);
}

ll_future *ll_pg_savepoint_rollback(ll_pg_tx *tx, const char *name) {
    LL_REQUIRE_ARG(tx, "tx");
    return savepoint_stmt(tx, "ROLLBACK TO SAVEPOINT", name);
}

ll_future *ll_pg_savepoint_release(ll_pg_tx *tx, const char *name) {
    LL_REQUIRE_ARG(tx, "tx");
    return savepoint_stmt(tx, "RELEASE SAVEPOINT", name);
}

ll_pg_conn *ll_pg_tx_conn(const ll_pg_tx *tx) {
    return tx ? tx->conn : NULL;
}
