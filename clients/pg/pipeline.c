/*
 * pipeline.c — requests on a connection: held, sent, answered, in order.
 *
 * Design notes:
 * - The connection stays in libpq pipeline mode. A query is written at once when it may go (see
 *   ll__pg_eligible): Parse (first use of a cached statement), Bind/Execute, then its own Sync.
 *   Its own Sync is what keeps neighbours independent: PostgreSQL skips everything after an error
 *   up to the next Sync and runs the commands between two Syncs as one implicit transaction, so a
 *   Sync per query gives every query the outcome it would have had on its own.
 * - Replies arrive in the order requests were sent; the head of the sent list is the request the
 *   next result belongs to. Per request: one result per command followed by NULL, then
 *   PGRES_PIPELINE_SYNC, which is when its future settles.
 * - Held requests are the exception (a script or COPY running alone, another task's transaction, a
 *   cancel in progress). ll__pg_pump() sends those that may go, in the order sched.c decides. It
 *   is never re-entered (sending can submit housekeeping, which then waits for the running pump)
 *   and keeps no pointer to a held request across a send: a failed send fails and frees them all.
 * - An abandoned request (its caller gave up) keeps its place: its replies are read and dropped.
 * - Every request carries a copy of its SQL and parameters in the same allocation: a held request
 *   is sent after the caller's buffers are gone, and a re-prepared one is sent twice.
 */
#include <stdalign.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "pg_internal.h"

static size_t align_up(size_t n, size_t a) {
    return (n + a - 1) & ~(a - 1);
}

uint64_t ll__pg_task_id(void) {
    ll_task *t = ll_task_current();
    return t ? ll_task_id(t) : 0;
}

/* The bytes of text parameter i: the caller's length when given (> 0; query.c refused a zero
 * byte inside it), else up to the terminating zero. */
static size_t text_len(const char *const *values, const int *lengths, size_t i) {
    return lengths && lengths[i] > 0 ? (size_t)lengths[i] : strlen(values[i]);
}

pg_req *ll__pg_req_new(ll_pg_conn *c, pg_req_kind kind, const char *sql, int nparams,
                       const char *const *values, const int *lengths, const int *formats) {
    size_t sl = strlen(sql) + 1;
    size_t n = (size_t)(nparams > 0 ? nparams : 0);
    size_t off_values = align_up(sizeof(pg_req), alignof(char *));
    size_t off_lengths = align_up(off_values + n * sizeof(char *), alignof(int));
    size_t off_formats = off_lengths + n * sizeof(int);
    size_t size = off_formats + n * sizeof(int);
    bool any_binary = false;
    for (size_t i = 0; i < n; i++) {
        if (!values || !values[i]) continue;
        if (formats && formats[i]) {
            any_binary = true;
            size += (size_t)(lengths ? lengths[i] : 0);
        } else {
            size += text_len(values, lengths, i) + 1;
        }
    }
    size_t off_sql = size;
    size += sl;
    char *mem = ll_malloc(size);
    if (!mem) return NULL;
    pg_req *r = (pg_req *)mem;
    memset(r, 0, sizeof *r);
    r->conn = c;
    r->kind = (uint8_t)kind;
    r->state = RQ_NEW;
    r->nparams = (int)n;
    r->seq = ++c->next_seq;
    r->task_id = ll__pg_task_id();
    r->values = (char **)(mem + off_values);
    r->lengths = (int *)(mem + off_lengths);
    r->formats = any_binary ? (int *)(mem + off_formats) : NULL;
    char *p = mem + (off_formats + n * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        if (!values || !values[i]) {
            r->values[i] = NULL;
            r->lengths[i] = 0;
            if (r->formats) r->formats[i] = 0;
            continue;
        }
        if (formats && formats[i]) {
            size_t len = (size_t)(lengths ? lengths[i] : 0);
            r->formats[i] = 1;
            r->lengths[i] = (int)len;
            memcpy(p, values[i], len);
            r->values[i] = p;
            p += len;
        } else {
            size_t len = text_len(values, lengths, i);
            if (r->formats) r->formats[i] = 0;
            r->lengths[i] = (int)len;
            memcpy(p, values[i], len);
            p[len] = 0; /* libpq reads text parameters up to the zero */
            r->values[i] = p;
            p += len + 1;
        }
    }
    r->sql = mem + off_sql;
    memcpy(r->sql, sql, sl);
    return r;
}

void ll__pg_req_free(pg_req *r) {
    if (!r) return;
    if (r->res) PQclear(r->res);
    if (r->err) PQclear(r->err);
    ll__pg_stmt_unref(r->stmt);
    ll_free(r->types);
    ll_free(r->hits);
    ll_free(r->stmt_key);
    ll_future_free(r->task_f);
    ll_future_free(r->f);
    ll__pg_many_prog_unref(r->prog);
    ll_free(r);
}

/* ---- sending ---- */

static void fail_one(ll_pg_conn *c, pg_req *r, int code, const char *why, bool sent);

static bool is_exclusive(const pg_req *r) {
    return r->kind == REQ_EXEC || r->kind == REQ_COPY;
}

/* batch_sync shares a Sync only between statements whose re-run after a neighbour's failure is
 * what the caller would expect: queries and DML. Transaction control, utility statements and
 * anything that cannot run inside a transaction block get a segment of their own. */
static bool batchable(const char *sql) {
    static const char *const words[] = {"select", "with",   "values", "table", "show",
                                        "insert", "update", "delete", "merge"};
    const char *p = sql;
    for (;;) { /* skip blanks, comments and opening parentheses */
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '(') p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n') p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            if (!e) return false;
            p = e + 2;
        } else {
            break;
        }
    }
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        size_t n = strlen(words[i]);
        if (strncasecmp(p, words[i], n) == 0 && !((p[n] >= 'a' && p[n] <= 'z') ||
                                                   (p[n] >= 'A' && p[n] <= 'Z') ||
                                                   (p[n] >= '0' && p[n] <= '9') || p[n] == '_'))
            return true;
    }
    return false;
}

void ll__pg_close_segment(ll_pg_conn *c) {
    if (!c->seg_open || c->state != PG_READY) return;
    c->seg_open = false;
    c->seg_len = 0;
    if (!PQpipelineSync(c->pg)) {
        ll__pg_broken(c, NULL);
        return;
    }
    int fl = PQflush(c->pg);
    if (fl < 0) ll__pg_broken(c, NULL);
    else if (fl > 0) ll__pg_want_write(c);
}

/* executemany's rows: Bind/Execute per row (the statement parsed once), a Sync between rows
 * with RQF_SYNC_EACH; the caller writes the last Sync. */
static int send_rows(PGconn *pg, pg_req *r, const pg_stmt *st) {
    size_t n = (size_t)r->nparams;
    for (uint32_t i = 0; i < r->nrows; i++) {
        const char *const *v = (const char *const *)r->values + i * n;
        const int *len = r->lengths + i * n;
        const int *fmt = r->formats ? r->formats + i * n : NULL;
        int ok = st ? PQsendQueryPrepared(pg, st->name, r->nparams, v, len, fmt, r->result_format)
                    : PQsendQueryParams(pg, r->sql, r->nparams, r->types, v, len, fmt,
                                        r->result_format);
        if (!ok) return 0;
        if ((r->flags & RQF_SYNC_EACH) && i + 1 < r->nrows && !PQpipelineSync(pg)) return 0;
    }
    return 1;
}

/* Write r (state NEW, in no list). False when libpq refused: the connection is then unusable (r
 * is in the sent list and fails with everything else). */
static bool send_one(ll_pg_conn *c, pg_req *r) {
    PGconn *pg = c->pg;
    int ok = 1;
    bool batch = c->opts.batch_sync && r->kind == REQ_QUERY && r->txop == TXOP_NONE &&
                 !(r->flags & RQF_SOLO) && batchable(r->sql);
    if (!batch && c->seg_open) {
        ll__pg_close_segment(c); /* what is batched so far ends before r */
        if (c->state != PG_READY) {
            fail_one(c, r, LL_EPG_CONN, "connection lost", false); /* the rest failed already */
            return true;
        }
    }
    ll__pg_req_set_state(c, r, RQ_SENT);
    ll__pg_tx_on_send(c, r);
    /* Only a plain query or DML statement is known not to open or end a transaction block
     * (BEGIN as SQL, a script, a procedure's COMMIT, ll_pg_begin/commit do or may) */
    const char *text = r->sql ? r->sql : r->stmt ? r->stmt->sql : NULL;
    if (r->txop != TXOP_NONE || is_exclusive(r) || !text || !batchable(text))
        c->block_unknown = true;
    if (is_exclusive(r)) {
        if (c->pipeline_on) {
            if (PQexitPipelineMode(pg) != 1) return false;
            c->pipeline_on = false;
        }
        c->exclusive = true;
        r->ncmds = 1;
        if (r->kind == REQ_COPY) ll__pg_copy_sending(c, r);
        ok = PQsendQuery(pg, r->sql);
    } else {
        if (!c->pipeline_on) {
            if (PQenterPipelineMode(pg) != 1) return false;
            c->pipeline_on = true;
        }
        pg_stmt *st = (r->flags & RQF_STMT) ? r->stmt /* an explicit statement (stmt.c) */
                      : (r->kind == REQ_QUERY || r->kind == REQ_MANY) && r->txop == TXOP_NONE &&
                                !(r->flags & RQF_NOCACHE)
                          ? ll__pg_stmt_get(c, r->stmt_key ? r->stmt_key : r->sql)
                          : NULL;
        ll__pg_cork(c); /* schedules the end of the burst (uncork, batch Sync) */
        r->ncmds = r->kind == REQ_MANY ? (int)r->nrows : 1;
        if (st) {
            r->stmt = st;
            if (!st->sent) {
                ok = PQsendPrepare(pg, st->name, r->sql, r->types ? r->nparams : 0, r->types);
                st->sent = true;
                r->flags |= RQF_PREPARE_FIRST;
                r->ncmds++;
            }
        }
        if (r->kind == REQ_MANY) {
            ok = ok && send_rows(pg, r, st);
        } else if (st) {
            if (r->flags & RQF_DESCRIBE) /* ll_pg_prepare: the types and columns, no Execute */
                ok = ok && PQsendDescribePrepared(pg, st->name);
            else
                ok = ok && PQsendQueryPrepared(pg, st->name, r->nparams,
                                               (const char *const *)r->values, r->lengths,
                                               r->formats, r->result_format);
        } else {
            ok = PQsendQueryParams(pg, r->sql, r->nparams, r->types, (const char *const *)r->values,
                                   r->lengths, r->formats, r->result_format);
        }
        if (!batch) {
            ok = ok && PQpipelineSync(pg);
        } else if (ok) {
            r->flags |= RQF_BATCHED;
            c->seg_open = true; /* the Sync goes out at the end of the burst (conn.c) */
            /* no end-of-burst callback (out of memory): do not leave the segment open */
            if (++c->seg_len >= 256 || !c->uncork_queued) ll__pg_close_segment(c);
        }
    }
    if (!ok) return false;
    if (!(r->flags & RQF_BATCHED)) { /* a batched request leaves with its segment's Sync */
        int fl = PQflush(pg);
        if (fl < 0) return false;
        if (fl > 0) ll__pg_want_write(c);
    }
    /* evictions go behind what was just written (their DEALLOCATE must follow its users) */
    if (c->nstmts > c->opts.stmt_cache_size) ll__pg_stmt_trim(c);
    return true;
}

void ll__pg_pump(ll_pg_conn *c) {
    if (c->pumping) {
        c->pump_again = true; /* sending submitted something: the running pump sends it */
        return;
    }
    c->pumping = true;
    do {
        c->pump_again = false;
        pg_req *h;
        while ((h = ll__pg_sched_next(c)) != NULL) {
            ll__pg_req_set_state(c, h, RQ_NEW);
            if (!send_one(c, h)) ll__pg_broken(c, NULL);
            /* no pointer into the held list survives a send: a failed one freed them all */
            if (c->state != PG_READY) break;
        }
    } while (c->pump_again && c->state == PG_READY);
    c->pumping = false;
    ll__pg_io_update(c);
}

void ll__pg_submit(ll_pg_conn *c, pg_req *r) {
    if (c->state != PG_READY) {
        /* a re-run or housekeeping after the connection was lost in the same pass */
        fail_one(c, r, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                 c->state == PG_BROKEN ? "connection lost earlier" : "connection closed", false);
        return;
    }
    if (r->f) ll_future_on_cancel(r->f, ll__pg_cancel_hook, r);
    if (!c->pumping && !c->held_head && ll__pg_eligible(c, r)) {
        if (!send_one(c, r)) {
            ll__pg_broken(c, NULL);
            return;
        }
        ll__pg_io_update(c);
        return;
    }
    ll__pg_req_set_state(c, r, RQ_HELD);
    ll__pg_pump(c);
}

/* ---- replies ---- */

static bool sqlstate_is(const PGresult *res, const char *code) {
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s && strcmp(s, code) == 0;
}

/* Interrupted by a cancel request ("canceling statement due to user request"), not by
 * statement_timeout (the same SQLSTATE, the caller's own limit). */
static bool hit_by_cancel(const PGresult *res) {
    if (!sqlstate_is(res, "57014")) return false;
    const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return m && strstr(m, "user request");
}

/* Send r (state DONE, out of every list) again as if new (its replies so far are dropped); it
 * keeps its future. */
static void resend(ll_pg_conn *c, pg_req *r) {
    if (r->err) PQclear(r->err);
    if (r->res) PQclear(r->res);
    r->err = r->res = NULL;
    if (!(r->flags & RQF_STMT)) { /* an explicit statement stays the one it runs */
        ll__pg_stmt_unref(r->stmt);
        r->stmt = NULL;
    }
    r->flags &= (uint8_t)~(RQF_PREPARE_FIRST | RQF_BATCHED);
    r->outcome = OUT_NONE;
    r->cmds_done = 0;
    r->err_cmd = 0;
    r->nerrs = r->nhits = 0;
    r->retries++;
    r->seq = ++c->next_seq;
    r->state = RQ_NEW;
    if (r->f) ll_future_on_cancel(r->f, NULL, NULL); /* submit registers it again */
    ll__pg_submit(c, r);
}

/* Outside a transaction block nothing of a failed or skipped request stayed: it may run again. */
static bool may_rerun(ll_pg_conn *c, const pg_req *r) {
    /* executemany's rows with a Sync each: those before the failing one stayed */
    bool whole = r->kind == REQ_QUERY ||
                 (r->kind == REQ_MANY && (!(r->flags & RQF_SYNC_EACH) || r->err_cmd == 0));
    /* Outside a transaction block only. libpq says ACTIVE, not the block status, while later
     * requests are in flight (a neighbour hit by a cancel usually has some behind it): then no
     * block is open if nothing written since libpq last said IDLE could have opened one. */
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    bool outside = ts == PQTRANS_IDLE || (ts == PQTRANS_ACTIVE && !c->block_unknown);
    return whole && !r->retries && !(r->flags & RQF_DESCRIBE) && outside && !c->tx.owner;
}

/* The cached statement went away or its plan no longer fits (a schema change): outside a
 * transaction block nothing happened, so prepare it again and run the query once more. */
static bool retry_prepared(ll_pg_conn *c, pg_req *r) {
    if (!r->stmt || !r->err || (r->flags & RQF_STMT) || !may_rerun(c, r)) return false;
    bool gone = sqlstate_is(r->err, "26000");
    if (!gone && !sqlstate_is(r->err, "0A000")) return false;
    ll__pg_stmt_forget(c, r->stmt, !gone);
    resend(c, r);
    return true;
}

/* executemany with a Sync per row, outside a transaction block: rows were hit by our cancel (one
 * cancel request can stop more than one row, not always consecutive ones). The other rows ran
 * and committed, each in its own transaction, so only the rows hit run again (each with its own
 * Sync, after the rest); r keeps its future and becomes a request for those rows alone, r->hits
 * keeping which rows they are (for the index of a row that fails again). Not when a row failed
 * for another reason: its own error is the one to report. */
static bool rerun_hit_rows(ll_pg_conn *c, pg_req *r) {
    /* RQF_SYNC_EACH was set because no transaction block was open when the rows were made, and
     * none of this task's can open while it waits for them; the transaction status is of no use
     * here (libpq says ACTIVE while later requests are in flight). Another task's transaction
     * opened meanwhile holds the re-run back until it ends (sched.c). */
    if (r->kind != REQ_MANY || !(r->flags & RQF_SYNC_EACH) || r->retries || !r->nerrs ||
        r->nhits != r->nerrs || !r->hits)
        return false;
    size_t n = (size_t)r->nparams, k = 0;
    for (size_t i = 0; i < r->nrows; i++) {
        if (!(r->hits[i / 64] >> (i % 64) & 1)) continue;
        if (n && k != i) {
            memmove(r->values + k * n, r->values + i * n, n * sizeof *r->values);
            memmove(r->lengths + k * n, r->lengths + i * n, n * sizeof *r->lengths);
            if (r->formats) memmove(r->formats + k * n, r->formats + i * n, n * sizeof *r->formats);
        }
        k++;
    }
    if (k != r->nhits) return false; /* cannot happen: every hit is a row */
    r->nrows = (uint32_t)k;
    resend(c, r); /* counts as its one retry */
    return true;
}

/* Row `row` of r: its index in the executemany (after a re-run of hit rows, the row-th hit). */
static size_t many_row_index(const pg_req *r, size_t row) {
    if (!r->retries || !r->hits) return r->row0 + row;
    for (size_t i = 0;; i++)
        if ((r->hits[i / 64] >> (i % 64) & 1) && row-- == 0) return r->row0 + i;
}

/* Our cancel request, meant for the abandoned request in front of r, arrived when that one had
 * just finished and hit r instead (the server cannot tell them apart). r was written before the
 * cancel was confirmed and after its target; outside a transaction block it is simply run again. */
static bool retry_hit_by_cancel(ll_pg_conn *c, pg_req *r) {
    if (!r->err || !hit_by_cancel(r->err)) return false; /* statement_timeout is the caller's */
    if (!(r->seq > c->risk_lo && r->seq <= c->risk_hi)) return false;
    /* with a Sync per row the rows after the one hit ran: only the rows hit run again */
    if (r->flags & RQF_SYNC_EACH) return rerun_hit_rows(c, r);
    if (!may_rerun(c, r)) return false;
    resend(c, r);
    return true;
}

/* Run r again in a segment of its own (batch_sync: its segment failed because of a neighbour). */
static void rerun(ll_pg_conn *c, pg_req *r) {
    if (!r->f) {
        /* abandoned: it ran, its effects were rolled back, nobody waits for it */
        ll__pg_req_free(r);
        return;
    }
    if (r->outcome == OUT_SKIPPED && (r->flags & RQF_PREPARE_FIRST) && r->stmt)
        ll__pg_stmt_forget(c, r->stmt, false);
    r->flags |= RQF_SOLO;
    resend(c, r); /* counts as its one retry: the re-run is not re-run or re-prepared again */
}

/* A Sync arrived: the requests at the head whose replies are all in form its segment. */
static void finalize_segment(ll_pg_conn *c) {
    pg_req *seg = NULL, **tail = &seg;
    bool failed = false;
    size_t n = 0;
    while (c->sent_head && ll__pg_replies_in(c->sent_head)) {
        pg_req *r = c->sent_head;
        if (r->state == RQ_CANCELLING) {
            /* answered, but its cancel request is still on its way: nothing is written until the
             * server confirms it, or it could hit the next query */
            ll__pg_req_set_state(c, r, RQ_CANCEL_WAIT);
            continue;
        }
        ll__pg_req_set_state(c, r, RQ_DONE);
        *tail = r;
        tail = &r->next;
        failed |= r->err != NULL;
        n++;
    }
    /* After an error the implicit transaction of the segment was rolled back; inside a
     * transaction block (now INERROR) nothing was committed or rolled back by the Sync. */
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (ts == PQTRANS_IDLE) c->block_unknown = false; /* nothing in flight, no block open */
    /* libpq answers ACTIVE, not INERROR, while later segments are still in flight (an atomic
     * executemany's windows): then our own transaction (ll_pg_begin) says we are in a block, and
     * the rows that ran before the error are not re-run into an aborted transaction (where they
     * would fail with 25P02 and hide the real error's row) */
    bool in_block = ts == PQTRANS_INERROR || (ts == PQTRANS_ACTIVE && c->tx.owner != 0);
    for (pg_req *r = seg, *next; r; r = next) {
        next = r->next;
        r->next = NULL;
        if (!failed || r->err || n == 1) ll__pg_complete(c, r);
        else if (r->outcome == OUT_SKIPPED || !in_block) rerun(c, r);
        else ll__pg_complete(c, r);
    }
}

void ll__pg_complete(ll_pg_conn *c, pg_req *r) {
    if (r->state != RQ_DONE) ll__pg_req_set_state(c, r, RQ_DONE);
    if (r->f && retry_prepared(c, r)) return;
    if (r->f && retry_hit_by_cancel(c, r)) return;
    bool ok = !r->err;
    ll__pg_tx_request_done(c, r, ok);
    if (r->kind == REQ_COPY) {
        ll__pg_copy_complete(c, r); /* the copy settles its futures */
        return;
    }
    ll_future *f = r->f;
    if (r->kind == REQ_MANY && r->err && r->prog) {
        int row = r->err_cmd - ((r->flags & RQF_PREPARE_FIRST) ? 1 : 0);
        size_t at = many_row_index(r, (size_t)(row > 0 ? row : 0));
        if (at < r->prog->err_row) r->prog->err_row = at;
    }
    if (f && ll_future_get_state(f) == LL_FUTURE_PENDING) {
        if (r->err) {
            int code = LL_EPG_SERVER;
            if (PQstatus(c->pg) == CONNECTION_BAD ||
                (PQresultErrorField(r->err, PG_DIAG_SQLSTATE) &&
                 strncmp(PQresultErrorField(r->err, PG_DIAG_SQLSTATE), "57P", 3) == 0))
                code = r->txop == TXOP_COMMIT ? LL_EPG_UNKNOWN_OUTCOME : LL_EPG_CONN;
            ll__pg_fail_result(f, c, code, r->err);
            r->err = NULL;
        } else if (r->txop == TXOP_BEGIN) {
            ll_future_resolve(f, &c->tx, NULL);
        } else if (r->txop == TXOP_COMMIT && r->res &&
                   strcmp(PQcmdStatus(r->res), "ROLLBACK") == 0) {
            ll_future_fail(f, LL_EPG_SERVER,
                           "postgres %s: COMMIT: the transaction had failed and was rolled back",
                           c->peer);
        } else {
            PGresult *res = r->res;
            if (!res) res = PQmakeEmptyPGresult(c->pg, PGRES_COMMAND_OK);
            ll_pg_result *w = res ? ll__pg_result_new(res) : NULL;
            if (!w) {
                if (res) PQclear(res);
                ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory for a result", c->peer);
            } else if (ll_future_resolve(f, w, (ll_value_free)ll_pg_result_free) != 0) {
                ll_pg_result_free(w);
            }
            r->res = NULL;
        }
    }
    ll__pg_req_free(r);
}

/* A script or COPY is over: back to pipelining. */
static void exclusive_done(ll_pg_conn *c) {
    c->exclusive = false;
    if (!c->pipeline_on && c->state == PG_READY) {
        if (PQenterPipelineMode(c->pg) != 1) {
            ll__pg_broken(c, NULL);
            return;
        }
        c->pipeline_on = true;
    }
}

/* A result for a request whose caller gave up: only what the connection needs is kept. */
static void drop_result(ll_pg_conn *c, pg_req *r, PGresult *res) {
    if ((r->flags & RQF_PREPARE_FIRST) && r->cmds_done == 0 && r->stmt) {
        if (PQresultStatus(res) == PGRES_FATAL_ERROR) ll__pg_stmt_forget(c, r->stmt, false);
        else if (PQresultStatus(res) != PGRES_PIPELINE_ABORTED) r->stmt->prepared = true;
    } else if (r->state == RQ_ABANDONED && r->kind == REQ_QUERY) {
        /* it finished: a cancel request now could only hit what runs after it */
        ll__pg_req_set_state(c, r, RQ_DRAINING);
    }
    PQclear(res);
}

static void on_script_result(ll_pg_conn *c, pg_req *r, PGresult *res) {
    if (!res) {
        ll__pg_req_set_state(c, r, r->state == RQ_CANCELLING ? RQ_CANCEL_WAIT : RQ_DONE);
        exclusive_done(c);
        if (r->state == RQ_DONE) ll__pg_complete(c, r);
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT) {
        if (r->kind == REQ_COPY) {
            ll__pg_copy_started(c, r, res);
            return;
        }
        /* a COPY inside a script: refuse its data */
        PQclear(res);
        if (st == PGRES_COPY_IN) {
            PQputCopyEnd(c->pg, "COPY FROM STDIN is not supported in ll_pg_exec: use "
                                "ll_pg_copy_start");
            if (PQflush(c->pg) > 0) ll__pg_want_write(c);
        } else {
            c->copy.state = COPY_OUT;
            c->copy.req = NULL; /* no reader: copy.c discards the rows */
            c->copy.discard = true;
        }
        return;
    }
    if (ll__pg_is_abandoned(r)) {
        PQclear(res);
        return;
    }
    if (st == PGRES_FATAL_ERROR) {
        if (!r->err) r->err = res;
        else PQclear(res);
        return;
    }
    if (r->res) PQclear(r->res);
    r->res = res;
}

/* An executemany row stopped by a cancel request: remembered for rerun_hit_rows (out of
 * memory: not counted, so the row's error is reported). */
static void note_hit(pg_req *r) {
    int row = r->cmds_done - ((r->flags & RQF_PREPARE_FIRST) ? 1 : 0);
    if (row < 0 || (uint32_t)row >= r->nrows) return; /* the Parse */
    if (!r->hits) r->hits = ll_calloc((r->nrows + 63) / 64, sizeof *r->hits);
    if (!r->hits) return;
    r->hits[row / 64] |= (uint64_t)1 << (row % 64);
    r->nhits++;
}

static void on_result(ll_pg_conn *c, pg_req *r, PGresult *res) {
    if (!c->pipeline_on) {
        on_script_result(c, r, res);
        return;
    }
    if (res && PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
        PQclear(res);
        finalize_segment(c);
        return;
    }
    if (!r) {
        /* a reply nobody asked for: libpq and we disagree about the pipeline */
        if (res) PQclear(res);
        ll__pg_broken(c, "protocol error: unexpected reply in pipeline");
        return;
    }
    if (!res) {
        if (++r->cmds_done >= r->ncmds) c->cur = r->next; /* settles with its segment's Sync */
        if (r->kind == REQ_MANY) {
            ll__pg_sched_row_done(c, r);
            size_t rows = (size_t)r->cmds_done - ((r->flags & RQF_PREPARE_FIRST) ? 1 : 0);
            if (r->prog && r->row0 + rows > r->prog->done) r->prog->done = r->row0 + rows;
        }
        return;
    }
    if (ll__pg_is_abandoned(r)) {
        drop_result(c, r, res);
        return;
    }
    switch (PQresultStatus(res)) {
    case PGRES_PIPELINE_ABORTED:
        r->outcome = OUT_SKIPPED;
        PQclear(res);
        break;
    case PGRES_FATAL_ERROR:
        if ((r->flags & RQF_PREPARE_FIRST) && r->cmds_done == 0 && r->stmt) {
            /* the Parse failed: the statement does not exist on the server */
            ll__pg_stmt_forget(c, r->stmt, false);
        }
        r->nerrs++;
        if ((r->flags & RQF_SYNC_EACH) && !r->retries && hit_by_cancel(res)) note_hit(r);
        if (!r->err) {
            r->err = res;
            r->err_cmd = r->cmds_done;
        } else {
            PQclear(res);
        }
        break;
    default:
        if ((r->flags & RQF_PREPARE_FIRST) && r->cmds_done == 0) {
            if (r->stmt) r->stmt->prepared = true;
            PQclear(res);
            break;
        }
        if (r->res) PQclear(r->res);
        r->res = res;
        break;
    }
}

void ll__pg_on_input(ll_pg_conn *c) {
    if (!PQconsumeInput(c->pg)) {
        ll__pg_broken(c, NULL);
        return;
    }
    size_t before = c->nsent;
    while (c->state == PG_READY) {
        if (c->copy.state == COPY_IN) break;
        if (c->copy.state == COPY_OUT) {
            ll__pg_copy_on_input(c);
            if (c->copy.state == COPY_OUT) break;
            continue;
        }
        if (!c->sent_head || PQisBusy(c->pg)) break;
        PGresult *res = PQgetResult(c->pg);
        on_result(c, c->cur, res);
    }
    if (c->state != PG_READY) return;
    /* only now, with every reply already received consumed: an abandoned query whose reply was
     * in the buffer needs no cancel request */
    ll__pg_cancel_progress(c);
    if (c->state != PG_READY) return;
    ll__pg_collect_notifies(c);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        ll__pg_broken(c, NULL);
        return;
    }
    if (c->nsent != before || c->nheld) ll__pg_pump(c);
}

/* ---- failure of everything ---- */

static void fail_one(ll_pg_conn *c, pg_req *r, int code, const char *why, bool sent) {
    ll__pg_req_set_state(c, r, RQ_DONE);
    ll_future *f = r->f;
    if (f && ll_future_get_state(f) == LL_FUTURE_PENDING) {
        if (sent && r->txop == TXOP_COMMIT && code == LL_EPG_CONN) {
            ll_future_fail(f, LL_EPG_UNKNOWN_OUTCOME,
                           "postgres %s: connection lost during COMMIT: the transaction may or may "
                           "not have committed (%s)",
                           c->peer, why);
        } else if (r->err && code == LL_EPG_CONN) {
            ll__pg_fail_result(f, c, code, r->err);
            r->err = NULL;
        } else if (code == LL_EPG_CONN) {
            ll__pg_fail_conn(f, c, why);
        } else {
            ll_future_fail(f, code, "postgres %s: %s", c->peer, why);
        }
    }
    if (r->kind == REQ_COPY) ll__pg_copy_dropped(c, r);
    ll__pg_req_free(r);
}

void ll__pg_fail_all(ll_pg_conn *c, int code, const char *why) {
    if (c->cancel_wait) fail_one(c, c->cancel_wait, code, why, true);
    while (c->sent_head) fail_one(c, c->sent_head, code, why, true);
    while (c->held_head) fail_one(c, c->held_head, code, why, false);
    c->exclusive = false;
    c->cur = NULL;
    c->seg_open = false;
    c->seg_len = 0;
}

/* ---- internal queries ---- */

void ll__pg_query_noreply(ll_pg_conn *c, const char *sql, pg_txop txop, uint64_t task_id) {
    if (c->state != PG_READY) return;
    pg_req *r = ll__pg_req_new(c, REQ_INTERNAL, sql, 0, NULL, NULL, NULL);
    if (!r) return; /* housekeeping only: the statement stays, the transaction ends with the
                     * connection */
    r->txop = (uint8_t)txop;
    r->task_id = task_id;
    r->flags |= RQF_NOCACHE;
    ll__pg_submit(c, r);
}

ll_future *ll__pg_query_internal(ll_pg_conn *c, const char *sql, pg_txop txop, uint64_t task_id) {
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg query");
    if (c->state != PG_READY) {
        ll_future_fail(f, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                       "postgres %s: connection %s", c->peer ? c->peer : "?",
                       c->state == PG_BROKEN ? "lost" : "closed");
        return f;
    }
    pg_req *r = ll__pg_req_new(c, REQ_QUERY, sql, 0, NULL, NULL, NULL);
    if (!r) {
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory", c->peer);
        return f;
    }
    r->txop = (uint8_t)txop;
    r->task_id = task_id;
    r->flags |= RQF_NOCACHE;
    r->f = ll_future_ref(f);
    ll__pg_submit(c, r);
    return f;
}
