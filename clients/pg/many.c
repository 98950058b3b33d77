/*
 * many.c — executemany: one statement run with many parameter sets, pipelined.
 *
 * Design notes:
 * - The rows are encoded in batches straight into one request each (REQ_MANY: one allocation
 *   for a batch's parameters, one future per batch, not per row); pipeline.c writes a batch as
 *   one Parse (first use of the cached statement) and a Bind/Execute per row. Up to `window` rows
 *   are in flight, in batches of a quarter of it (at most 256 rows), so the server runs one
 *   batch while the next is encoded and memory stays bounded by the window whatever the row
 *   count. A batch ends early at a row whose parameter types differ (it needs another statement)
 *   or that cannot be encoded (reported as that row's error).
 * - Without `atomic`, and outside a transaction block, every row runs on its own as separate
 *   statements would: a Sync after each row, so a failing row is only its own transaction and
 *   the others stay. Inside a transaction (atomic, or the task's own) a batch shares one Sync:
 *   the first failure aborts the transaction anyway, so rows need no Sync of their own; with
 *   `atomic` a transaction begun here is rolled back on failure, otherwise committed.
 * - The first failing row (lowest index) is reported with its index and the server's fields
 *   (SQLSTATE, message). The requests record which row failed and how far they got in a small
 *   shared progress record (pg_many_prog), reference-counted because a request abandoned by a
 *   deadline outlives this call.
 * - It awaits, so it runs in a task; a deadline or cancellation stops it between or during rows
 *   (the batches in flight are cancelled by the query machinery's rules; with a Sync per row a
 *   cancel request goes out for each row still running, see pipeline.c).
 */
#include <stdalign.h>
#include <stdio.h>
#include <string.h>
#include "pg_internal.h"

void ll__pg_many_prog_unref(pg_many_prog *p) {
    if (p && --p->refs == 0) ll_free(p);
}

/* The first failing row so far: kept when `row` is lower than the one recorded. */
typedef struct many_state {
    ll_pg_many_error *err;
    int code;
    size_t row;
} many_state;

static void note(many_state *s, size_t row, int rc, ll_future *f, const char *msg) {
    if (s->code && row >= s->row) return;
    s->code = rc;
    s->row = row;
    if (!s->err) return;
    s->err->code = rc;
    s->err->row = row;
    const char *st = f ? ll_pg_error_sqlstate(f) : NULL;
    snprintf(s->err->sqlstate, sizeof s->err->sqlstate, "%s", st ? st : "");
    snprintf(s->err->message, sizeof s->err->message, "%s", f ? ll_future_errmsg(f) : msg);
}

static size_t align_up(size_t n, size_t a) {
    return (n + a - 1) & ~(a - 1);
}

/* Does row i of params fit the batch's types (a NULL fits any)? Then adopt its types. */
static bool row_fits(const ll_pg_param *row, int np, Oid *types, bool first) {
    if (!first)
        for (int j = 0; j < np; j++)
            if (row[j].type && types[j] && row[j].type != types[j]) return false;
    for (int j = 0; j < np; j++)
        if (first || !types[j]) types[j] = row[j].type;
    return true;
}

/* A request for rows [lo, lo + *count) (at most max rows). 0; LL_EINVAL when row lo itself
 * cannot be encoded (*bad_param: the parameter, with *why following "parameter $N"; negative:
 * *why is the type of a value out of range); LL_ENOMEM. */
static int make_batch(ll_pg_conn *c, const char *sql, int np, const ll_pg_param *params,
                      size_t lo, size_t max, Oid *types, pg_req **out, size_t *count,
                      const char **why, int *bad_param) {
    size_t un = (size_t)np;
    size_t rows = 0, data = 0;
    /* pass 1: how many rows fit and how many bytes they take */
    for (; rows < max; rows++) {
        const ll_pg_param *row = params + (lo + rows) * un;
        size_t bytes = 0;
        int j = 0;
        for (; j < np; j++) {
            int64_t s = ll__pg_param_size(&row[j], why);
            if (s == -2) break;
            if (s > 0) bytes += (size_t)s;
        }
        if (j < np) {
            if (rows) break; /* the next batch starts with it, and reports it */
            *bad_param = j + 1;
            return LL_EINVAL;
        }
        if (!row_fits(row, np, types, rows == 0)) break;
        data += bytes;
    }
    /* one allocation for the arrays and values, held by r->types (freed with the request) */
    size_t off_values = align_up(un * sizeof(Oid), alignof(char *));
    size_t off_lengths = off_values + rows * un * sizeof(char *);
    size_t off_formats = off_lengths + rows * un * sizeof(int);
    size_t off_data = off_formats + rows * un * sizeof(int);
    pg_req *r = ll__pg_req_new(c, REQ_MANY, sql, 0, NULL, NULL, NULL);
    char *mem = r ? ll_malloc(off_data + data + 1) : NULL;
    char *key = mem ? ll_malloc(LL__PG_KEY_LEN(np, sql) + 1) : NULL;
    if (!key) {
        ll_free(mem);
        ll__pg_req_free(r);
        return LL_ENOMEM;
    }
    r->types = (Oid *)(void *)mem;
    memcpy(r->types, types, un * sizeof(Oid));
    r->values = (char **)(void *)(mem + off_values);
    r->lengths = (int *)(void *)(mem + off_lengths);
    r->formats = (int *)(void *)(mem + off_formats);
    r->nparams = np;
    r->stmt_key = key;
    ll__pg_stmt_key(key, types, np, sql);
    /* pass 2: encode; a value out of range ends the batch before its row */
    uint8_t *d = (uint8_t *)(mem + off_data);
    size_t i = 0;
    for (; i < rows; i++) {
        const ll_pg_param *row = params + (lo + i) * un;
        size_t at = i * un;
        int j = 0;
        for (; j < np; j++) {
            int64_t s = ll__pg_param_size(&row[j], why);
            const char *bad = ll__pg_param_write(&row[j], d, s, &r->values[at + (size_t)j],
                                                 &r->lengths[at + (size_t)j],
                                                 &r->formats[at + (size_t)j]);
            if (bad) {
                *why = bad;
                break;
            }
            if (s > 0) d += s;
        }
        if (j < np) {
            if (i == 0) {
                ll__pg_req_free(r);
                *bad_param = -(j + 1); /* negative: "<type> out of range" */
                return LL_EINVAL;
            }
            break;
        }
    }
    r->nrows = (uint32_t)i;
    r->row0 = lo;
    r->result_format = 1;
    *count = i;
    *out = r;
    return 0;
}

typedef struct inflight {
    ll_future *f;
    size_t lo, hi;
} inflight;

int ll_pg_executemany(ll_pg_conn *c, const char *sql, int nparams, size_t nrows,
                      const ll_pg_param *params, const ll_pg_many_opts *opts,
                      ll_pg_many_error *err) {
    if (err) memset(err, 0, sizeof *err);
    if (!c || !sql || nparams < 0 || nparams > 65535 || (nrows && nparams && !params))
        return LL_EINVAL;
    if (!ll_task_current()) return LL_ENOTASK;
    if (!nrows) return 0;
    size_t window = opts && opts->window ? opts->window : 512;
    size_t batch = window / 4 > 256 ? 256 : window / 4 ? window / 4 : 1;
    size_t nslots = window / batch + 2; /* small batches (changing types) are bounded too */
    bool atomic = opts && opts->atomic;
    many_state st = {.err = err};
    ll_pg_tx *tx = NULL;
    if (atomic && !ll_pg_in_transaction(c)) {
        ll_future *b = ll_pg_begin(c, NULL);
        if (!b) return LL_ENOMEM;
        int rc = ll_await(b);
        if (rc) {
            note(&st, 0, rc, b, NULL);
            ll_future_free(b);
            return rc;
        }
        tx = ll_future_value(b);
        ll_future_free(b);
    }
    /* outside a transaction block every row is its own transaction */
    bool sync_each = !atomic && !ll_pg_in_transaction(c);
    pg_many_prog *prog = ll_calloc(1, sizeof *prog);
    Oid *types = ll_malloc((size_t)nparams * sizeof(Oid) + 1);
    inflight *ring = ll_malloc(nslots * sizeof *ring);
    if (!prog || !types || !ring) {
        ll_free(prog);
        ll_free(types);
        ll_free(ring);
        note(&st, 0, LL_ENOMEM, NULL, "postgres executemany: out of memory");
        if (tx) { /* the transaction begun here ends */
            ll_future *e = ll_pg_rollback(tx);
            if (e) (void)ll_await(e);
            ll_future_free(e);
        }
        return LL_ENOMEM;
    }
    prog->refs = 1;
    prog->err_row = SIZE_MAX;
    size_t head = 0, count = 0, inrows = 0, next = 0;
    bool more = true; /* rows may still be sent */
    for (;;) {
        while (more && next < nrows && count < nslots && inrows < window) {
            size_t max = batch < nrows - next ? batch : nrows - next;
            if (max > window - inrows) max = window - inrows;
            pg_req *r = NULL;
            size_t n = 0;
            const char *why = NULL;
            int bad = 0;
            int rc = make_batch(c, sql, nparams, params, next, max, types, &r, &n, &why, &bad);
            if (rc == LL_EINVAL) {
                char msg[200];
                if (bad > 0)
                    snprintf(msg, sizeof msg, "postgres executemany: row %zu: parameter $%d%s",
                             next, bad, why);
                else
                    snprintf(msg, sizeof msg,
                             "postgres executemany: row %zu: parameter $%d: %s out of range", next,
                             -bad, why);
                note(&st, next, LL_EINVAL, NULL, msg);
                if (!sync_each) more = false; /* a transaction: the rows after it do not run */
                next++;
                continue;
            }
            ll_future *f = rc ? NULL : ll_future_new(c->loop);
            if (!f) {
                ll__pg_req_free(r);
                note(&st, next, LL_ENOMEM, NULL, "postgres executemany: out of memory");
                more = false;
                break;
            }
            ll_future_set_label(f, "pg executemany");
            if (sync_each) r->flags |= RQF_SYNC_EACH;
            r->prog = prog;
            prog->refs++;
            r->f = ll_future_ref(f);
            ll__pg_submit(c, r);
            ring[(head + count) % nslots] = (inflight){f, next, next + n};
            count++;
            inrows += n;
            next += n;
        }
        if (!count) break;
        inflight b = ring[head];
        head = (head + 1) % nslots;
        count--;
        inrows -= b.hi - b.lo;
        /* replies come in order: most batches are settled by the time one is awaited */
        int rc = ll_future_done(b.f) ? ll_future_code(b.f) : ll_await(b.f);
        if (rc) {
            size_t row = rc == LL_EPG_SERVER && prog->err_row >= b.lo && prog->err_row < b.hi
                             ? prog->err_row
                             : prog->done > b.lo ? (prog->done < b.hi ? prog->done : b.hi - 1)
                                                 : b.lo;
            note(&st, row, rc, b.f, NULL);
            if (rc != LL_EPG_SERVER || !sync_each) more = false;
        }
        ll_future_free(b.f);
        if (rc == LL_ECANCELED || rc == LL_ETIMEDOUT) { /* cancel what is in flight */
            for (; count; count--, head = (head + 1) % nslots) {
                ll_future_cancel(ring[head].f);
                ll_future_free(ring[head].f);
            }
        }
    }
    ll_free(ring);
    ll_free(types);
    ll__pg_many_prog_unref(prog);
    if (tx) {
        ll_future *e = st.code ? ll_pg_rollback(tx) : ll_pg_commit(tx);
        if (!e) return st.code ? st.code : LL_ENOMEM;
        int rc = ll_await(e);
        if (rc && !st.code) note(&st, nrows, rc, e, NULL); /* a deferred constraint */
        ll_future_free(e);
    }
    return st.code;
}
