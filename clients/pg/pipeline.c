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
 *   cancel in progress). ll__pg_pump() sends those that may go, oldest first; a script or COPY
 *   waiting for the pipeline to empty holds back everything behind it, so it cannot be starved.
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
            size += strlen(values[i]) + 1;
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
    r->nparams = (int)n;
    r->seq = ++c->next_seq;
    r->task = ll_task_current();
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
        size_t len;
        if (formats && formats[i]) {
            len = (size_t)(lengths ? lengths[i] : 0);
            r->formats[i] = 1;
            r->lengths[i] = (int)len;
        } else {
            len = strlen(values[i]) + 1;
            if (r->formats) r->formats[i] = 0;
            r->lengths[i] = (int)(len - 1);
        }
        memcpy(p, values[i], len);
        r->values[i] = p;
        p += len;
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
    ll_future_free(r->task_f);
    ll_future_free(r->f);
    ll_free(r);
}

/* ---- lists ---- */

static void push(pg_req **head, pg_req **tail, pg_req *r) {
    r->next = NULL;
    r->prev = *tail;
    if (*tail) (*tail)->next = r;
    else *head = r;
    *tail = r;
}

void ll__pg_unlink(ll_pg_conn *c, pg_req *r) {
    pg_req **head, **tail;
    if (r->where == AT_HELD) {
        head = &c->held_head;
        tail = &c->held_tail;
        c->nheld--;
    } else if (r->where == AT_SENT) {
        head = &c->sent_head;
        tail = &c->sent_tail;
        c->nsent--;
    } else {
        return;
    }
    if (r == c->cur) c->cur = r->next;
    if (r->prev) r->prev->next = r->next;
    else *head = r->next;
    if (r->next) r->next->prev = r->prev;
    else *tail = r->prev;
    r->prev = r->next = NULL;
    r->where = AT_NONE;
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

/* Write r. False when libpq refused: the connection is then unusable (r is in the sent list and
 * fails with everything else). */
static bool send_one(ll_pg_conn *c, pg_req *r) {
    PGconn *pg = c->pg;
    int ok = 1;
    bool batch = c->opts.batch_sync && r->kind == REQ_QUERY && r->txop == TXOP_NONE && !r->solo &&
                 batchable(r->sql);
    if (!batch && c->seg_open) {
        ll__pg_close_segment(c); /* what is batched so far ends before r */
        if (c->state != PG_READY) {
            fail_one(c, r, LL_EPG_CONN, "connection lost", false); /* the rest failed already */
            return true;
        }
    }
    r->where = AT_SENT;
    push(&c->sent_head, &c->sent_tail, r);
    c->nsent++;
    if (!c->cur) c->cur = r;
    ll__pg_tx_on_send(c, r);
    if (is_exclusive(r)) {
        if (c->pipeline_on) {
            if (PQexitPipelineMode(pg) != 1) return false;
            c->pipeline_on = false;
        }
        c->exclusive = true;
        r->ncmds = 1;
        ok = PQsendQuery(pg, r->sql);
    } else {
        if (!c->pipeline_on) {
            if (PQenterPipelineMode(pg) != 1) return false;
            c->pipeline_on = true;
        }
        pg_stmt *st = r->kind == REQ_QUERY && r->txop == TXOP_NONE && !r->nocache
                          ? ll__pg_stmt_get(c, r->sql)
                          : NULL;
        ll__pg_cork(c); /* schedules the end of the burst (uncork, batch Sync) */
        r->ncmds = 1;
        if (st) {
            r->stmt = st;
            if (!st->sent) {
                ok = PQsendPrepare(pg, st->name, r->sql, 0, NULL);
                st->sent = true;
                r->prepare_first = true;
                r->ncmds = 2;
            }
            ok = ok && PQsendQueryPrepared(pg, st->name, r->nparams, (const char *const *)r->values,
                                           r->lengths, r->formats, 0);
        } else {
            ok = PQsendQueryParams(pg, r->sql, r->nparams, NULL, (const char *const *)r->values,
                                   r->lengths, r->formats, 0);
        }
        if (!batch) {
            ok = ok && PQpipelineSync(pg);
        } else if (ok) {
            r->batched = true;
            c->seg_open = true; /* the Sync goes out at the end of the burst (conn.c) */
            /* no end-of-burst callback (out of memory): do not leave the segment open */
            if (++c->seg_len >= 256 || !c->uncork_queued) ll__pg_close_segment(c);
        }
    }
    if (!ok) return false;
    if (!r->batched) { /* a batched request leaves with its segment's Sync */
        int fl = PQflush(pg);
        if (fl < 0) return false;
        if (fl > 0) ll__pg_want_write(c);
    }
    /* evictions go behind what was just written (their DEALLOCATE must follow its users) */
    if (c->nstmts > c->opts.stmt_cache_size) ll__pg_stmt_trim(c);
    return true;
}

void ll__pg_pump(ll_pg_conn *c) {
    bool excl_block = false;
    for (pg_req *h = c->held_head, *next; h; h = next) {
        next = h->next;
        if (c->state != PG_READY || c->barrier || c->exclusive) break;
        if (!ll__pg_eligible(c, h)) continue;
        if (excl_block) continue;
        bool excl = is_exclusive(h);
        if (excl && c->nsent) {
            excl_block = true; /* it waits for the pipeline to empty; so do those behind it */
            continue;
        }
        ll__pg_unlink(c, h);
        if (!send_one(c, h)) {
            ll__pg_broken(c, NULL);
            return;
        }
        if (excl) break;
    }
    ll__pg_io_update(c);
}

void ll__pg_submit(ll_pg_conn *c, pg_req *r) {
    if (r->f) ll_future_on_cancel(r->f, ll__pg_cancel_hook, r);
    if (!c->held_head && !is_exclusive(r) && ll__pg_eligible(c, r)) {
        if (!send_one(c, r)) {
            ll__pg_broken(c, NULL);
            return;
        }
        ll__pg_io_update(c);
        return;
    }
    r->where = AT_HELD;
    push(&c->held_head, &c->held_tail, r);
    c->nheld++;
    ll__pg_pump(c);
}

/* ---- replies ---- */

static bool sqlstate_is(const PGresult *res, const char *code) {
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s && strcmp(s, code) == 0;
}

/* Send r again as if new (its replies so far are dropped); it keeps its future. */
static void resend(ll_pg_conn *c, pg_req *r) {
    if (r->err) PQclear(r->err);
    if (r->res) PQclear(r->res);
    r->err = r->res = NULL;
    ll__pg_stmt_unref(r->stmt);
    r->stmt = NULL;
    r->prepare_first = r->got_result = r->aborted = r->finished = r->batched = false;
    r->cmds_done = 0;
    r->seq = ++c->next_seq;
    if (r->f) ll_future_on_cancel(r->f, NULL, NULL); /* submit registers it again */
    ll__pg_submit(c, r);
}

/* The cached statement went away or its plan no longer fits (a schema change): outside a
 * transaction block nothing happened, so prepare it again and run the query once more. */
static bool retry_prepared(ll_pg_conn *c, pg_req *r) {
    if (!r->stmt || r->retried || r->kind != REQ_QUERY || !r->err) return false;
    bool gone = sqlstate_is(r->err, "26000");
    if (!gone && !sqlstate_is(r->err, "0A000")) return false;
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE || c->tx.owner) return false;
    ll__pg_stmt_forget(c, r->stmt, !gone);
    r->retried = true;
    resend(c, r);
    return true;
}

/* Run r again in a segment of its own (batch_sync: its segment failed because of a neighbour). */
static void rerun(ll_pg_conn *c, pg_req *r) {
    if (r->cancel_wanted) {
        /* it ran, but its effects were rolled back: as good as cancelled */
        r->rolled_back = true;
        ll__pg_complete(c, r);
        return;
    }
    if (r->aborted && r->prepare_first && r->stmt) ll__pg_stmt_forget(c, r->stmt, false);
    r->solo = true;
    resend(c, r);
}

/* A Sync arrived: the requests at the head whose replies are all in form its segment. */
static void finalize_segment(ll_pg_conn *c) {
    pg_req *seg = NULL, **tail = &seg;
    bool failed = false;
    size_t n = 0;
    while (c->sent_head && c->sent_head->finished) {
        pg_req *r = c->sent_head;
        ll__pg_unlink(c, r);
        *tail = r;
        tail = &r->next;
        failed |= r->err != NULL;
        n++;
    }
    /* After an error the implicit transaction of the segment was rolled back; inside a
     * transaction block (now INERROR) nothing was committed or rolled back by the Sync. */
    bool in_block = PQtransactionStatus(c->pg) == PQTRANS_INERROR;
    for (pg_req *r = seg, *next; r; r = next) {
        next = r->next;
        r->next = NULL;
        if (!failed || r->err || n == 1) ll__pg_complete(c, r);
        else if (r->aborted || !in_block) rerun(c, r);
        else ll__pg_complete(c, r);
    }
}

void ll__pg_complete(ll_pg_conn *c, pg_req *r) {
    if (c->barrier == r && c->cancel_job) {
        /* its cancel request is still on its way: wait for it, or it could hit the next query */
        r->answered = true;
        return;
    }
    if (c->barrier == r) c->barrier = NULL;
    if (r->cancel_wanted) ll__pg_cancel_arm(c); /* one deadline less to watch */
    if (retry_prepared(c, r)) return;
    bool ok = !r->err;
    ll__pg_tx_request_done(c, r, ok);
    if (r->kind == REQ_COPY) {
        ll__pg_copy_complete(c, r); /* the copy settles its futures */
        return;
    }
    ll_future *f = r->f;
    if (f && ll_future_get_state(f) == LL_FUTURE_PENDING) {
        if (r->rolled_back) {
            ll_future_set_cancelled(f);
        } else if (r->err) {
            if (r->cancel_wanted && sqlstate_is(r->err, "57014")) {
                ll_future_set_cancelled(f);
            } else {
                int code = LL_EPG_SERVER;
                if (PQstatus(c->pg) == CONNECTION_BAD ||
                    (PQresultErrorField(r->err, PG_DIAG_SQLSTATE) &&
                     strncmp(PQresultErrorField(r->err, PG_DIAG_SQLSTATE), "57P", 3) == 0))
                    code = r->txop == TXOP_COMMIT ? LL_EPG_UNKNOWN_OUTCOME : LL_EPG_CONN;
                ll__pg_fail_result(f, c, code, r->err);
                r->err = NULL;
            }
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
            } else {
                ll_future_resolve(f, w, (ll_value_free)ll_pg_result_free);
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

static void on_result(ll_pg_conn *c, pg_req *r, PGresult *res) {
    if (!c->pipeline_on) {
        /* a script or COPY: results until NULL */
        if (!res) {
            ll__pg_unlink(c, r);
            exclusive_done(c);
            ll__pg_complete(c, r);
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
        if (st == PGRES_FATAL_ERROR) {
            if (!r->err) r->err = res;
            else PQclear(res);
            r->got_result = true;
            return;
        }
        if (r->res) PQclear(r->res);
        r->res = res;
        r->got_result = true;
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
        if (++r->cmds_done >= r->ncmds) {
            r->finished = true; /* settles with its segment's Sync */
            c->cur = r->next;
        }
        return;
    }
    switch (PQresultStatus(res)) {
    case PGRES_PIPELINE_ABORTED:
        r->aborted = true;
        PQclear(res);
        break;
    case PGRES_FATAL_ERROR:
        if (r->prepare_first && r->cmds_done == 0 && r->stmt) {
            /* the Parse failed: the statement does not exist on the server */
            ll__pg_stmt_forget(c, r->stmt, false);
        } else {
            r->got_result = true;
        }
        if (!r->err) r->err = res;
        else PQclear(res);
        break;
    default:
        if (r->prepare_first && r->cmds_done == 0) {
            if (r->stmt) r->stmt->prepared = true;
            PQclear(res);
            break;
        }
        r->got_result = true;
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
        ll__pg_cancel_progress(c);
    }
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
    ll_future *f = r->f;
    if (f && ll_future_get_state(f) == LL_FUTURE_PENDING) {
        if (r->cancel_wanted) {
            ll_future_set_cancelled(f);
        } else if (sent && r->txop == TXOP_COMMIT && code == LL_EPG_CONN) {
            ll_future_fail(f, LL_EPG_UNKNOWN_OUTCOME,
                           "postgres %s: connection lost during COMMIT: the transaction may or may "
                           "not have committed (%s)",
                           c->peer, why);
        } else if (r->err && code == LL_EPG_CONN) {
            ll__pg_fail_result(f, c, code, r->err);
            r->err = NULL;
        } else if (code == LL_EPG_CONN) {
            ll_future_fail(f, code, "postgres %s: connection lost: %s", c->peer, why);
        } else {
            ll_future_fail(f, code, "postgres %s: %s", c->peer, why);
        }
    }
    ll__pg_req_free(r);
}

void ll__pg_fail_all(ll_pg_conn *c, int code, const char *why) {
    pg_req *b = c->barrier;
    c->barrier = NULL;
    if (b && b->answered) ll__pg_complete(c, b);
    while (c->sent_head) {
        pg_req *r = c->sent_head;
        ll__pg_unlink(c, r);
        fail_one(c, r, code, why, true);
    }
    while (c->held_head) {
        pg_req *r = c->held_head;
        ll__pg_unlink(c, r);
        fail_one(c, r, code, why, false);
    }
    c->exclusive = false;
    c->cur = NULL;
    c->seg_open = false;
    c->seg_len = 0;
}

/* ---- internal queries ---- */

void ll__pg_query_noreply(ll_pg_conn *c, const char *sql, pg_txop txop, ll_task *task) {
    if (c->state != PG_READY) return;
    pg_req *r = ll__pg_req_new(c, REQ_INTERNAL, sql, 0, NULL, NULL, NULL);
    if (!r) return; /* housekeeping only: the statement stays, the transaction ends with the
                     * connection */
    r->txop = (uint8_t)txop;
    r->task = task;
    ll__pg_submit(c, r);
}

ll_future *ll__pg_query_internal(ll_pg_conn *c, const char *sql, pg_txop txop, ll_task *task) {
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
    r->task = task;
    r->nocache = true;
    r->f = ll_future_ref(f);
    ll__pg_submit(c, r);
    return f;
}
