/*
 * many.c — executemany: one statement run with many parameter sets, pipelined.
 *
 * Design notes:
 * - Every row is an ordinary typed query (one prepared statement, its own Sync), written without
 *   waiting for the replies, with up to `window` rows in flight: a round trip per window, not per
 *   row, and memory bounded by the window whatever the row count.
 * - The first failing row is reported with its index and the server's fields (SQLSTATE, message).
 *   Without `atomic`, every row runs on its own (as separate statements would) and the rows that
 *   succeeded stay. With `atomic`, the rows run in one transaction (the task's own when it has
 *   one, else one begun here): the first failure aborts it, the later rows fail with 25P02 and are
 *   not reported, and a transaction begun here is rolled back; otherwise committed.
 * - It awaits, so it runs in a task; a deadline or cancellation stops it between or during rows
 *   (the rows in flight are cancelled by the query machinery's rules).
 */
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

static void record(ll_pg_many_error *err, size_t row, int rc, ll_future *f) {
    if (!err || err->code) return;
    err->code = rc;
    err->row = row;
    const char *st = ll_pg_error_sqlstate(f);
    snprintf(err->sqlstate, sizeof err->sqlstate, "%s", st ? st : "");
    snprintf(err->message, sizeof err->message, "%s", ll_future_errmsg(f));
}

int ll_pg_executemany(ll_pg_conn *c, const char *sql, int nparams, size_t nrows,
                      const ll_pg_param *params, const ll_pg_many_opts *opts,
                      ll_pg_many_error *err) {
    if (err) memset(err, 0, sizeof *err);
    if (!c || !sql || nparams < 0 || (nrows && nparams && !params)) return LL_EINVAL;
    if (!ll_task_current()) return LL_ENOTASK;
    size_t window = opts && opts->window ? opts->window : 512;
    bool atomic = opts && opts->atomic;
    ll_pg_tx *tx = NULL;
    if (atomic && !ll_pg_in_transaction(c)) {
        ll_future *b = ll_pg_begin(c, NULL);
        if (!b) return LL_ENOMEM;
        int rc = ll_await(b);
        if (rc) {
            record(err, 0, rc, b);
            ll_future_free(b);
            return rc;
        }
        tx = ll_future_value(b);
        ll_future_free(b);
    }
    ll_future **fs = ll_malloc(window * sizeof *fs);
    if (!fs) return LL_ENOMEM;
    int first = 0;
    size_t sent = 0, done = 0;
    bool stop = false; /* a deadline or cancellation: no more rows */
    while (done < nrows) {
        /* In a transaction block the rows may share Syncs (batch_sync's rule: nothing is re-run
         * there, an error aborts the transaction as it would anyway): a Sync per burst instead
         * of a Sync, a ReadyForQuery and a server flush per row. */
        bool saved = c->opts.batch_sync;
        if (atomic) c->opts.batch_sync = true;
        while (!stop && sent < nrows && sent - done < window) {
            fs[sent % window] = ll_pg_query_typed(c, sql, nparams,
                                                  params + sent * (size_t)nparams, NULL);
            if (!fs[sent % window]) {
                stop = true;
                if (!first) first = LL_ENOMEM;
                break;
            }
            sent++;
        }
        c->opts.batch_sync = saved;
        if (done == sent) break;
        ll_future *f = fs[done % window];
        /* replies come in order: most rows of a window are settled by the time one is awaited */
        int rc = ll_future_done(f) ? ll_future_code(f) : ll_await(f);
        if (rc && !first) {
            first = rc;
            record(err, done, rc, f);
        }
        if (rc == LL_ECANCELED || rc == LL_ETIMEDOUT || (rc && atomic)) stop = true;
        ll_future_free(f);
        done++;
        if (stop) { /* cancel what is in flight */
            for (; done < sent; done++) {
                ll_future_cancel(fs[done % window]);
                ll_future_free(fs[done % window]);
            }
        }
    }
    ll_free(fs);
    if (tx) {
        ll_future *e = first ? ll_pg_rollback(tx) : ll_pg_commit(tx);
        if (!e) return first ? first : LL_ENOMEM;
        int rc = ll_await(e);
        if (rc && !first) {
            first = rc;
            record(err, nrows, rc, e); /* the COMMIT failed (a deferred constraint) */
        }
        ll_future_free(e);
    }
    return first;
}
