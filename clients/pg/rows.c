/*
 * rows.c — streamed rows: a result read in chunks through a server-side cursor, so the client
 * holds one chunk at a time whatever the row count.
 *
 * Design notes:
 * - A cursor (DECLARE ... NO SCROLL CURSOR, FETCH n) rather than libpq's single-row mode: every
 *   step is an ordinary query of this library, so pipelining, deadlines, cancellation (the
 *   server-side cancel of the FETCH running) and the transaction rules apply unchanged, and no
 *   change to the pipeline's reply handling is needed. The cost is one round trip per chunk,
 *   which a chunk of a few thousand rows makes small.
 * - A cursor lives in a transaction. Inside the task's own transaction (ll_pg_begin) the cursor
 *   uses it; otherwise the stream begins one of its own and ends it at close (COMMIT after a
 *   clean read, ROLLBACK after an error or an early close). While that transaction is open,
 *   other tasks' queries on the connection wait (the transaction rule), so a stream should be
 *   read to the end or closed promptly. If the task ends without closing, the transaction is
 *   rolled back automatically, which also drops the cursor.
 * - The next chunk is fetched ahead: its FETCH is written when a chunk is handed out (and with
 *   the DECLARE), so the server produces it while the caller reads the one it has. The client
 *   holds at most two chunks, and the round trip per chunk overlaps the caller's work. A FETCH
 *   still in flight at close is awaited and dropped (an early close costs one chunk).
 * - The calls await, so they must run in a task; they return a code and keep the message.
 */
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

struct ll_pg_rows {
    ll_pg_conn *conn;
    ll_pg_tx *tx;          /* our own transaction, or NULL (the task's) */
    int chunk;
    bool text_results;
    bool done;             /* the last FETCH returned fewer rows than asked */
    bool failed;           /* a step failed: the transaction is aborted */
    ll_future *ahead;      /* the next chunk's FETCH, written already; or NULL */
    char name[32];
    char fetch_sql[64];
    char errmsg[256];
};

static unsigned cursor_counter;

/* Write the next chunk's FETCH (its future in it->ahead; NULL only when out of memory). */
static void fetch_ahead(ll_pg_rows *it) {
    ll_pg_query_opts o = {.text_results = it->text_results};
    it->ahead = ll_pg_query_typed(it->conn, it->fetch_sql, 0, NULL, &o);
}

/* Await and drop the FETCH written ahead (an early close, a failed DECLARE). */
static void drop_ahead(ll_pg_rows *it) {
    if (!it->ahead) return;
    (void)ll_await(it->ahead); /* cut by a deadline: the request is abandoned by the await */
    ll_future_free(it->ahead);
    it->ahead = NULL;
}

/* A step failed with rc (the await's code: LL_ECANCELED or LL_ETIMEDOUT when cut). */
static int fail_with(ll_pg_rows *it, int rc, ll_future *f, const char *what) {
    snprintf(it->errmsg, sizeof it->errmsg, "postgres rows %s: %s", what, ll_future_errmsg(f));
    it->failed = true;
    ll_future_free(f);
    return rc;
}

const char *ll_pg_rows_errmsg(const ll_pg_rows *it) {
    return it ? it->errmsg : "ll_pg_rows_errmsg: rows is NULL";
}

int ll_pg_rows_open(ll_pg_rows **out, ll_pg_conn *c, const char *sql, int n,
                    const ll_pg_param *params, const ll_pg_rows_opts *opts) {
    if (out) *out = NULL;
    if (!out || !c || !sql) return LL_EINVAL;
    if (!ll_task_current()) return LL_ENOTASK;
    ll_pg_rows *it = ll_calloc(1, sizeof *it);
    if (!it) return LL_ENOMEM;
    it->conn = c;
    it->chunk = opts && opts->chunk_rows > 0 ? opts->chunk_rows : 1000;
    it->text_results = opts && opts->text_results;
    snprintf(it->name, sizeof it->name, "ll_rows_%u", ++cursor_counter);
    snprintf(it->fetch_sql, sizeof it->fetch_sql, "FETCH %d FROM %s", it->chunk, it->name);
    *out = it;
    if (!ll_pg_in_transaction(c)) {
        ll_future *b = ll_pg_begin(c, NULL);
        if (!b) return LL_ENOMEM;
        int rc = ll_await(b);
        if (rc != 0) return fail_with(it, rc, b, "begin");
        it->tx = ll_future_value(b);
        ll_future_free(b);
    }
    size_t len = strlen(sql) + strlen(it->name) + 40;
    char *decl = ll_malloc(len);
    if (!decl) return LL_ENOMEM;
    snprintf(decl, len, "DECLARE %s NO SCROLL CURSOR FOR %s", it->name, sql);
    ll_future *f = ll_pg_query_typed(c, decl, n, params, NULL);
    ll_free(decl);
    if (!f) return LL_ENOMEM;
    fetch_ahead(it); /* pipelined behind the DECLARE: no round trip of its own */
    int rc = ll_await(f);
    if (rc != 0) {
        drop_ahead(it);
        return fail_with(it, rc, f, "declare");
    }
    ll_future_free(f);
    return 0;
}

int ll_pg_rows_next(ll_pg_rows *it, ll_pg_result **chunk) {
    if (chunk) *chunk = NULL;
    if (!it || !chunk) return LL_EINVAL;
    if (it->failed) return LL_ESTATE;
    if (it->done) return LL_EOF;
    if (!it->ahead) fetch_ahead(it);
    ll_future *f = it->ahead;
    it->ahead = NULL;
    if (!f) return LL_ENOMEM;
    int rc = ll_await(f);
    if (rc != 0) return fail_with(it, rc, f, "fetch");
    ll_pg_result *r = ll_future_take(f);
    ll_future_free(f);
    int rows = ll_pg_result_rows(r);
    if (rows < it->chunk) it->done = true;
    else fetch_ahead(it); /* the server makes the next chunk while the caller reads this one */
    if (rows == 0) {
        ll_pg_result_free(r);
        return LL_EOF;
    }
    *chunk = r;
    return 0;
}

int ll_pg_rows_close(ll_pg_rows *it) {
    if (!it) return 0;
    int rc = 0;
    drop_ahead(it);
    if (it->tx) {
        /* our transaction: its end drops the cursor */
        bool commit = !it->failed && it->done;
        ll_future *f = commit ? ll_pg_commit(it->tx) : ll_pg_rollback(it->tx);
        if (f) {
            rc = ll_await(f);
            if (rc) fail_with(it, rc, f, commit ? "commit" : "rollback");
            else ll_future_free(f);
        } else {
            rc = LL_ENOMEM;
        }
    } else if (!it->failed) {
        char sql[48];
        snprintf(sql, sizeof sql, "CLOSE %s", it->name);
        ll_future *f = ll_pg_query(it->conn, sql, 0);
        if (f) {
            rc = ll_await(f);
            if (rc) fail_with(it, rc, f, "close");
            else ll_future_free(f);
        } else {
            rc = LL_ENOMEM;
        }
    }
    ll_free(it);
    return rc;
}
