/*
 * copy.c — COPY FROM STDIN and COPY TO STDOUT, streamed.
 *
 * Design notes:
 * - libpq refuses COPY in pipeline mode, so a COPY is an exclusive request: it waits until the
 *   pipeline is empty, runs with pipeline mode off, and other requests wait behind it.
 * - FROM STDIN: every write hands its bytes to libpq (which copies them) and tries to send; the
 *   write's future resolves when libpq's buffer has drained into the socket. A writer that awaits
 *   each write therefore never has more than one chunk beyond the socket buffer in memory, however
 *   many rows it loads.
 * - TO STDOUT: a read takes every complete row libpq already has (up to 256 KiB) in one piece, so
 *   a million rows do not cost a million futures. While no read is waiting the connection stops
 *   reading the socket: the server, not our memory, holds the rest of the table.
 * - The COPY's own result (rows copied, or the server's error) settles ll_pg_copy_finish()'s
 *   future; if it arrives before finish is called, it waits in the copy (COPY_DONE).
 * - A COPY belongs to the task that started it. If that task ends without ll_pg_copy_finish (it
 *   returned, failed, was cancelled), the copy is abandoned: FROM STDIN sends CopyFail (the server
 *   rolls the load back), TO STDOUT sends a cancel request instead of reading millions of rows
 *   nobody wants; either way the connection is usable again as soon as the server has answered.
 *   ll_pg_copy_finish() before the end of a COPY TO STDOUT does the same.
 * - A COPY asked for while another one runs on the connection is queued like a query (the copy
 *   object is the connection's; it is taken when the statement is written).
 */
#include <string.h>
#include "pg_internal.h"

#define READ_BATCH (256 * 1024)

static ll_future *copy_fail_now(ll_loop *loop, int code, const char *what) {
    ll_future *f = ll_future_new(loop);
    if (f) ll_future_fail(f, code, "postgres COPY: %s", what);
    return f;
}

ll_future *ll_pg_copy_start(ll_pg_conn *c, const char *sql) {
    LL_REQUIRE_ARG(c, "conn");
    LL_REQUIRE_ARG(sql, "sql");
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg copy");
    if (c->state != PG_READY) {
        ll_future_fail(f, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                       "postgres %s: connection %s", c->peer,
                       c->state == PG_BROKEN ? "lost" : "closed");
        return f;
    }
    pg_req *r = ll__pg_req_new(c, REQ_COPY, sql, 0, NULL, NULL, NULL);
    if (!r) {
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory", c->peer);
        return f;
    }
    r->f = ll_future_ref(f);
    ll_task *t = ll_task_current();
    if (t) r->task_f = ll_future_ref(ll_task_future(t));
    ll__pg_submit(c, r);
    return f;
}

static void owner_done(ll_future *tf, void *arg);

static void release_owner(ll_pg_copy *cp) {
    if (cp->owner_f) {
        ll_future_remove_done(cp->owner_f, owner_done, cp->conn);
        ll_future_free(cp->owner_f);
        cp->owner_f = NULL;
    }
}

void ll__pg_copy_sending(ll_pg_conn *c, pg_req *r) {
    ll_pg_copy *cp = &c->copy;
    cp->state = COPY_STARTING;
    cp->req = r;
    cp->read_f = cp->finish_f = NULL;
    cp->out_done = cp->discard = cp->end_pending = cp->abandoned = cp->owner_gone = false;
    release_owner(cp);
    cp->owner_f = r->task_f;
    r->task_f = NULL;
    if (cp->owner_f && ll_future_add_done(cp->owner_f, owner_done, c) != 0) {
        ll_future_free(cp->owner_f); /* not watched: ll_pg_close or finish end it */
        cp->owner_f = NULL;
    }
}

bool ll_pg_copy_is_in(const ll_pg_copy *cp) {
    return cp && cp->is_in;
}

static void copy_reset(ll_pg_copy *cp) {
    release_owner(cp);
    cp->state = COPY_NONE;
    cp->req = NULL;
    cp->out_done = cp->discard = cp->end_pending = cp->abandoned = cp->owner_gone = false;
    ll_free(cp->end_error);
    cp->end_error = NULL;
}

static void try_end(ll_pg_conn *c);

/* Nobody will finish the copy: end it on the server and drop its outcome. */
static void copy_abandon(ll_pg_conn *c, const char *why) {
    ll_pg_copy *cp = &c->copy;
    pg_req *r = cp->req;
    cp->abandoned = true;
    if (cp->state == COPY_IN) {
        /* CopyFail: the server rolls the load back and answers at once */
        ll_free(cp->end_error);
        cp->end_error = ll_strdup(why);
        cp->state = COPY_ENDING;
        if (r && r->state == RQ_SENT) ll__pg_sched_abandon(c, r, ll_now());
        if (r && r->state == RQ_ABANDONED) ll__pg_req_set_state(c, r, RQ_DRAINING);
        try_end(c);
    } else if (cp->state == COPY_OUT || (cp->state == COPY_ENDING && !cp->is_in)) {
        /* stop reading; a cancel request stops the server sending */
        cp->discard = true;
        if (r && r->state == RQ_SENT) ll__pg_sched_abandon(c, r, ll_now());
        ll__pg_cancel_progress(c);
    } else if (cp->state == COPY_ENDING && r && r->state == RQ_SENT) {
        /* FROM STDIN, the end is written: like a COMMIT, let it complete */
        ll__pg_sched_abandon(c, r, ll_now());
        if (r->state == RQ_ABANDONED) ll__pg_req_set_state(c, r, RQ_DRAINING);
    } else if (cp->state == COPY_DONE) {
        copy_reset(cp);
        ll__pg_req_free(r);
        ll__pg_pump(c);
        return;
    }
    if (c->state == PG_READY) ll__pg_io_update(c);
}

static void owner_done(ll_future *tf, void *arg) {
    (void)tf;
    ll_pg_conn *c = arg;
    ll_pg_copy *cp = &c->copy;
    ll_future_free(cp->owner_f);
    cp->owner_f = NULL;
    cp->owner_gone = true;
    if (c->state != PG_READY || cp->finish_f || cp->abandoned) return;
    if (cp->state == COPY_IN || cp->state == COPY_OUT || cp->state == COPY_DONE ||
        cp->state == COPY_ENDING)
        copy_abandon(c, "the task using this COPY ended without ll_pg_copy_finish");
}

void ll__pg_copy_started(ll_pg_conn *c, pg_req *r, PGresult *res) {
    ll_pg_copy *cp = &c->copy;
    cp->is_in = PQresultStatus(res) == PGRES_COPY_IN;
    PQclear(res);
    cp->state = cp->is_in ? COPY_IN : COPY_OUT;
    if (!r->f || ll_future_get_state(r->f) != LL_FUTURE_PENDING || cp->owner_gone) {
        /* nobody wants it any more: end it */
        copy_abandon(c, "cancelled");
        return;
    }
    ll_future_resolve(r->f, cp, NULL);
    ll_future_free(r->f);
    r->f = NULL;
}

static void settle_finish(ll_pg_conn *c, ll_future *f, pg_req *r) {
    if (r->err) {
        ll__pg_fail_result(f, c, PQstatus(c->pg) == CONNECTION_BAD ? LL_EPG_CONN : LL_EPG_SERVER,
                           r->err); /* adopted, or freed when f is settled already */
        r->err = NULL;
        return;
    }
    PGresult *res = r->res ? r->res : PQmakeEmptyPGresult(c->pg, PGRES_COMMAND_OK);
    r->res = NULL;
    ll_pg_result *w = res ? ll__pg_result_new(res) : NULL;
    if (!w) {
        if (res) PQclear(res);
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory for a result", c->peer);
        return;
    }
    if (ll_future_resolve(f, w, (ll_value_free)ll_pg_result_free) != 0)
        ll_pg_result_free(w); /* settled meanwhile (cancelled): nobody takes it */
}

void ll__pg_copy_complete(ll_pg_conn *c, pg_req *r) {
    ll_pg_copy *cp = &c->copy;
    if (r->f && ll_future_get_state(r->f) == LL_FUTURE_PENDING) {
        /* the copy never started: the statement failed, or was not a COPY to or from the
         * client */
        if (r->err) {
            settle_finish(c, r->f, r);
        } else {
            ll_future_fail(r->f, LL_EINVAL,
                           "postgres %s: not a COPY FROM STDIN or COPY TO STDOUT statement",
                           c->peer);
        }
        if (cp->req == r) copy_reset(cp);
        ll__pg_req_free(r);
        ll__pg_pump(c);
        return;
    }
    if (cp->req != r) {
        ll__pg_req_free(r);
        return;
    }
    /* reads still waiting learn that the data is over */
    if (cp->read_f) {
        if (r->err) ll_future_fail(cp->read_f, LL_EPG_SERVER, "postgres %s: COPY failed", c->peer);
        else ll_future_fail(cp->read_f, LL_EOF, "postgres %s: end of COPY data", c->peer);
        ll_future_free(cp->read_f);
        cp->read_f = NULL;
    }
    if (cp->finish_f || cp->abandoned) {
        ll_future *f = cp->finish_f;
        cp->finish_f = NULL;
        if (f) {
            settle_finish(c, f, r);
            ll_future_free(f);
        }
        copy_reset(cp);
        ll__pg_req_free(r);
        ll__pg_pump(c);
        return;
    }
    cp->state = COPY_DONE; /* keep the outcome for ll_pg_copy_finish */
}

void ll__pg_copy_dropped(ll_pg_conn *c, pg_req *r) {
    if (c->copy.req == r) copy_reset(&c->copy);
}

/* ---- TO STDOUT ---- */

void ll__pg_copy_on_input(ll_pg_conn *c) {
    ll_pg_copy *cp = &c->copy;
    if (cp->discard || !cp->req) {
        char *buf;
        int n;
        while ((n = PQgetCopyData(c->pg, &buf, 1)) > 0) PQfreemem(buf);
        if (n == 0) return;
        if (n == -2) {
            ll__pg_broken(c, NULL);
            return;
        }
        cp->out_done = true;
        cp->state = cp->req ? COPY_ENDING : COPY_NONE;
        return;
    }
    if (!cp->read_f) return;
    ll_pg_copy_data *d = NULL;
    size_t cap = 0;
    for (;;) {
        char *buf;
        int n = PQgetCopyData(c->pg, &buf, 1);
        if (n == 0) break;
        if (n == -2) {
            ll_free(d);
            ll__pg_broken(c, NULL);
            return;
        }
        if (n == -1) {
            cp->out_done = true;
            cp->state = COPY_ENDING;
            break;
        }
        size_t have = d ? d->len : 0;
        if (have + (size_t)n > cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            while (ncap < have + (size_t)n) ncap *= 2;
            ll_pg_copy_data *nd = ll_realloc(d, sizeof *nd + ncap);
            if (!nd) {
                PQfreemem(buf);
                ll_free(d);
                ll_future_fail(cp->read_f, LL_ENOMEM, "postgres %s: out of memory for COPY data",
                               c->peer);
                ll_future_free(cp->read_f);
                cp->read_f = NULL;
                cp->discard = true; /* the rest can only be dropped */
                return;
            }
            if (!d) nd->len = 0;
            d = nd;
            cap = ncap;
            d->data = (char *)(d + 1);
        }
        memcpy(d->data + d->len, buf, (size_t)n);
        d->len += (size_t)n;
        PQfreemem(buf);
        if (d->len >= READ_BATCH) break;
    }
    if (d) {
        ll_future_resolve(cp->read_f, d, ll_free);
    } else if (cp->out_done) {
        ll_future_fail(cp->read_f, LL_EOF, "postgres %s: end of COPY data", c->peer);
    } else {
        return; /* nothing yet */
    }
    ll_future_free(cp->read_f);
    cp->read_f = NULL;
}

static void read_cancel(ll_future *f, void *arg) {
    ll_pg_conn *c = arg;
    if (c->copy.read_f == f) {
        c->copy.read_f = NULL;
        ll_future_free(f);
    }
    ll_future_set_cancelled(f);
    ll__pg_io_update(c);
}

ll_future *ll_pg_copy_read(ll_pg_copy *cp) {
    LL_REQUIRE_ARG(cp, "copy");
    if (!cp) return copy_fail_now(NULL, LL_EINVAL, "no copy");
    ll_pg_conn *c = cp->conn;
    if (cp->read_f) return copy_fail_now(c->loop, LL_ESTATE, "a read is already waiting");
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg copy read");
    if (cp->is_in || (cp->state != COPY_OUT && cp->state != COPY_ENDING && cp->state != COPY_DONE)) {
        ll_future_fail(f, LL_ESTATE, "postgres %s: not reading a COPY TO STDOUT", c->peer);
        return f;
    }
    if (cp->out_done || cp->state != COPY_OUT) {
        ll_future_fail(f, LL_EOF, "postgres %s: end of COPY data", c->peer);
        return f;
    }
    cp->read_f = ll_future_ref(f);
    ll_future_on_cancel(f, read_cancel, c);
    ll__pg_copy_on_input(c); /* rows libpq already holds */
    if (c->state == PG_READY && c->copy.state != COPY_OUT) {
        /* the end of the data was in the buffer too: let the COPY's result be read */
        ll__pg_on_input(c);
    }
    ll__pg_io_update(c);
    return f;
}

/* ---- FROM STDIN ---- */

static void write_cancel(ll_future *f, void *arg) {
    pg_waiter *w = arg;
    ll_pg_copy *cp = &w->conn->copy;
    pg_waiter **pp = &cp->wq_head, *prev = NULL;
    while (*pp && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = w->next;
        if (cp->wq_tail == w) cp->wq_tail = prev;
    }
    ll_future_set_cancelled(f); /* the bytes are queued already: only the wait is called off */
    ll_future_free(w->f);
    ll_free(w);
}

static void wake_writers(ll_pg_copy *cp, int code, const char *why) {
    while (cp->wq_head) {
        pg_waiter *w = cp->wq_head;
        cp->wq_head = w->next;
        if (code) ll_future_fail(w->f, code, "postgres %s: %s", cp->conn->peer, why);
        else ll_future_resolve(w->f, NULL, NULL);
        ll_future_free(w->f);
        ll_free(w);
    }
    cp->wq_tail = NULL;
}

ll_future *ll_pg_copy_write(ll_pg_copy *cp, const void *data, size_t len) {
    LL_REQUIRE_ARG(cp, "copy");
    if (!cp) return copy_fail_now(NULL, LL_EINVAL, "no copy");
    ll_pg_conn *c = cp->conn;
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg copy write");
    if (c->state != PG_READY) {
        ll_future_fail(f, c->state == PG_BROKEN ? LL_EPG_CONN : LL_ECLOSED,
                       "postgres %s: connection %s", c->peer ? c->peer : "?",
                       c->state == PG_BROKEN ? "lost" : "closed");
        return f;
    }
    if (cp->state != COPY_IN) {
        ll_future_fail(f, LL_ESTATE, "postgres %s: not writing a COPY FROM STDIN", c->peer);
        return f;
    }
    const char *p = data;
    while (len > 0) {
        int n = len > (1u << 30) ? (1 << 30) : (int)len;
        int r = PQputCopyData(c->pg, p, n);
        if (r != 1) {
            char line[512];
            ll_future_fail(f, r == 0 ? LL_ENOMEM : LL_EPG_CONN, "postgres %s: COPY data: %s",
                           c->peer, ll__pg_first_line(PQerrorMessage(c->pg), line, sizeof line));
            if (r < 0) ll__pg_broken(c, NULL);
            return f;
        }
        p += n;
        len -= (size_t)n;
    }
    int fl = PQflush(c->pg);
    if (fl < 0) {
        ll_future_fail(f, LL_EPG_CONN, "postgres %s: connection lost during COPY", c->peer);
        ll__pg_broken(c, NULL);
        return f;
    }
    if (fl == 0 && !cp->wq_head) {
        ll_future_resolve(f, NULL, NULL);
        return f;
    }
    pg_waiter *w = ll_calloc(1, sizeof *w);
    if (!w) {
        ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory", c->peer);
        return f;
    }
    w->f = ll_future_ref(f);
    w->conn = c;
    if (cp->wq_tail) cp->wq_tail->next = w;
    else cp->wq_head = w;
    cp->wq_tail = w;
    ll_future_on_cancel(f, write_cancel, w);
    ll__pg_want_write(c);
    return f;
}

static void try_end(ll_pg_conn *c) {
    ll_pg_copy *cp = &c->copy;
    int r = PQputCopyEnd(c->pg, cp->end_error);
    if (r == 0) {
        cp->end_pending = true;
        ll__pg_want_write(c);
        return;
    }
    cp->end_pending = false;
    if (r < 0) {
        ll__pg_broken(c, NULL);
        return;
    }
    int fl = PQflush(c->pg);
    if (fl < 0) ll__pg_broken(c, NULL);
    else if (fl > 0) ll__pg_want_write(c);
}

void ll__pg_copy_on_writable(ll_pg_conn *c) {
    ll_pg_copy *cp = &c->copy;
    wake_writers(cp, 0, NULL);
    if (cp->end_pending) try_end(c);
}

/* The caller stopped waiting for finish (a deadline): the copy ends in the background. */
static void finish_cancel(ll_future *f, void *arg) {
    ll_pg_conn *c = arg;
    ll_pg_copy *cp = &c->copy;
    if (cp->finish_f == f) {
        cp->finish_f = NULL;
        ll_future_free(f);
    }
    ll_future_set_cancelled(f);
    if (c->state == PG_READY && cp->state != COPY_NONE)
        copy_abandon(c, "ll_pg_copy_finish was cancelled");
}

static void wait_finish(ll_pg_conn *c, ll_future *f) {
    c->copy.finish_f = ll_future_ref(f);
    ll_future_on_cancel(f, finish_cancel, c);
}

ll_future *ll_pg_copy_finish(ll_pg_copy *cp, const char *error) {
    LL_REQUIRE_ARG(cp, "copy");
    ll_pg_conn *c = cp->conn;
    if (cp->finish_f) return copy_fail_now(c->loop, LL_ESTATE, "finish already called");
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "pg copy finish");
    if (cp->abandoned) {
        ll_future_fail(f, LL_ESTATE, "postgres %s: the COPY was abandoned", c->peer);
        return f;
    }
    switch (cp->state) {
    case COPY_IN:
        if (c->state != PG_READY) break;
        cp->end_error = error ? ll_strdup(error) : NULL;
        if (error && !cp->end_error) {
            ll_future_fail(f, LL_ENOMEM, "postgres %s: out of memory", c->peer);
            return f;
        }
        cp->state = COPY_ENDING;
        wait_finish(c, f);
        try_end(c);
        if (c->state == PG_READY) ll__pg_io_update(c);
        return f;
    case COPY_OUT:
        if (cp->read_f) {
            ll_future_fail(cp->read_f, LL_EOF, "postgres %s: COPY finished", c->peer);
            ll_future_free(cp->read_f);
            cp->read_f = NULL;
        }
        wait_finish(c, f);
        if (!cp->out_done && c->state == PG_READY) {
            /* rows nobody will read: drop them and ask the server to stop sending */
            cp->discard = true;
            pg_req *r = cp->req;
            if (r && r->state == RQ_SENT) ll__pg_sched_abandon(c, r, ll_now());
            ll__pg_cancel_progress(c);
        }
        if (c->state == PG_READY) ll__pg_on_input(c); /* rows already buffered */
        if (c->state == PG_READY) ll__pg_io_update(c);
        return f;
    case COPY_ENDING:
        wait_finish(c, f);
        if (c->state == PG_READY) ll__pg_on_input(c);
        if (c->state == PG_READY) ll__pg_io_update(c);
        return f;
    case COPY_DONE: {
        pg_req *r = cp->req;
        settle_finish(c, f, r);
        copy_reset(cp);
        ll__pg_req_free(r);
        ll__pg_pump(c);
        return f;
    }
    default:
        break;
    }
    ll_future_fail(f, c->state == PG_READY ? LL_ESTATE : LL_EPG_CONN,
                   "postgres %s: no COPY in progress", c->peer ? c->peer : "?");
    return f;
}

void ll__pg_copy_fail(ll_pg_conn *c, int code, const char *why) {
    ll_pg_copy *cp = &c->copy;
    wake_writers(cp, code, why);
    if (cp->read_f) {
        ll_future_fail(cp->read_f, code, "postgres %s: %s", c->peer, why);
        ll_future_free(cp->read_f);
        cp->read_f = NULL;
    }
    if (cp->finish_f) {
        ll_future_fail(cp->finish_f, code, "postgres %s: %s", c->peer, why);
        ll_future_free(cp->finish_f);
        cp->finish_f = NULL;
    }
    if (cp->state == COPY_DONE && cp->req) ll__pg_req_free(cp->req);
    copy_reset(cp);
}
