/*
 * libloop/pg.h — PostgreSQL client (libloop-pg): libpq driven by the loop, queries as futures,
 * automatic pipelining, prepared statements, transactions, LISTEN/NOTIFY, COPY, cancellation and a
 * pool. Link with `pkg-config --libs libloop-pg`. This header never includes libpq's.
 *
 * Connections. ll_pg_connect() takes a libpq conninfo string or URI; every libpq keyword passes
 * through (sslmode, sslrootcert, application_name, ...). A host name is resolved with libloop's
 * resolver and handed to libpq as `hostaddr`, so libpq never does a blocking lookup; numeric
 * addresses and Unix socket directories are used as they are. The connect never blocks the loop
 * and is bounded by a connect timeout (ll_pg_opts.connect_timeout, else the conninfo's
 * connect_timeout, else 10 s) as well as by the awaiting task's deadline.
 * Several hosts (host=a,b,c or a URI with several) and target_session_attrs (read-write,
 * read-only, primary, standby, prefer-standby, any) are tried in order by libloop, each host with
 * its share of the connect timeout; the error lists every host's failure (docs/pg.md). Read
 * routing over a primary and a standby pool: libloop/pg_router.h.
 *
 * Queries and pipelining. Each query call returns a future at once; several tasks may use one
 * connection at the same time. Queries are written to the server as soon as they are made, each
 * followed by its own Sync, without waiting for earlier replies (libpq pipeline mode): N tasks
 * sharing a connection cost one round trip, not N. Replies come back in order and each future gets
 * its own result or error.
 *
 * PostgreSQL's rule is that an error inside a pipeline makes the server skip every later command
 * up to the next Sync, and that the commands between two Syncs form one implicit transaction.
 * Because every query here ends with its own Sync, a failing query never affects its neighbours
 * and a query outside a transaction block commits on its own, exactly as without pipelining. A
 * transaction (ll_pg_begin) takes the connection for its task: other tasks' queries wait, unsent,
 * until it ends, so nothing of theirs ever runs inside someone else's transaction. Inside a
 * transaction the usual rule holds: after an error, later statements fail with SQLSTATE 25P02 until
 * a rollback.
 *
 * Batched syncs (ll_pg_opts.batch_sync, off by default). A Sync per query makes the server end a
 * transaction and flush its output for every query. With batch_sync, the queries written in one
 * loop iteration (up to 256) share one Sync, as in a hand-written pipeline, and their results are
 * delivered when it arrives. The queries of such a segment run in one implicit transaction, so if
 * one fails, the server rolls back the others (and skips those after it): the failed one's future
 * gets its error and every other query of the segment is run again on its own, so each future
 * still gets the outcome it would have had alone. The one difference: effects PostgreSQL does not
 * roll back (sequence values, session advisory locks) of a query that ran before the failing one
 * happen twice. Inside a transaction block nothing is re-run: the error aborts the transaction
 * as usual (the queries after it fail with 25P02). Only statements starting with SELECT, WITH,
 * VALUES, TABLE, SHOW, INSERT, UPDATE, DELETE or MERGE are batched; anything else (transaction
 * control, VACUUM, DDL, ...) gets a segment of its own.
 *
 * Prepared statements. Each distinct SQL text is prepared once per connection (in the same round
 * trip as its first execution) and reused from a per-connection LRU cache. When a cached plan is
 * invalidated by a schema change (SQLSTATE 0A000) or the statement disappeared (26000, e.g. after
 * DISCARD ALL), the query is re-prepared and run again by itself — only outside a transaction
 * block, where the failed attempt changed nothing. ll_pg_opts.unnamed_statements turns named
 * statements off (PgBouncer in transaction mode). An explicit statement handle (ll_pg_prepare,
 * ll_pg_pool_prepare: its types and columns readable, never silently re-prepared) is below.
 *
 * Results. The value of a query future is an ll_pg_result owned by the future (freed with it;
 * ll_future_take() it to keep it longer and free it with ll_pg_result_free()). Values are in text
 * format; the typed getters parse them. A failed query fails its future with LL_EPG_SERVER and a
 * message "postgres 127.0.0.1:5432: ERROR 23505: duplicate key value ... (DETAIL: ...)"; the
 * fields (SQLSTATE, message, detail, hint, ...) are read with ll_pg_error_*() on that future.
 *
 * Cancellation and deadlines. Cancelling a query future, or an await of it passing its deadline,
 * settles it at once (the await returns LL_ECANCELED / LL_ETIMEDOUT at the deadline, whatever the
 * server or the network does). A query not yet written is removed. A written one is abandoned: its
 * replies are dropped when they come; PostgreSQL's cancel request (our own, over a libloop stream,
 * bounded by cancel_timeout) is sent when it is the statement the server runs — never while another
 * query could be the one running — and nothing new is written until the server has stopped it and
 * confirmed the cancel; the connection is then reused. If it is not over within cancel_timeout of
 * being abandoned, the connection is closed and what waits on it fails with LL_EPG_CONN. Queries
 * already written behind it get their own results. Transaction control (BEGIN, COMMIT, ROLLBACK)
 * is never interrupted: an abandoned COMMIT completes on the server and its caller does not learn
 * the outcome. Freeing the loop never waits for a cancel request. docs/pg.md has the details.
 *
 * Errors: LL_EPG_SERVER (the server reported an error), LL_EPG_CONN (the connection failed or was
 * lost; later calls fail at once), LL_EPG_AUTH (authentication failed or rejected; the message
 * names the user), LL_EPG_UNKNOWN_OUTCOME (the connection was lost while a COMMIT was in flight:
 * it may or may not have committed; never retried), LL_ECONNREFUSED, LL_ETIMEDOUT, LL_ENOTFOUND /
 * LL_EDNS (host name), LL_ECANCELED, LL_ECLOSED (ll_pg_close() while waiting), LL_EINVAL (bad
 * conninfo or argument), LL_ENOTASK (a call that must run inside a task), LL_ENOMEM.
 *
 * Threads: a connection, its results and its pool belong to the loop they were made on. Memory
 * for results and libpq's own buffers comes from libpq (malloc), not from the allocator hook.
 */
#ifndef LIBLOOP_PG_H
#define LIBLOOP_PG_H

#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

typedef struct ll_pg_conn ll_pg_conn;
typedef struct ll_pg_result ll_pg_result;
typedef struct ll_pg_tx ll_pg_tx;
typedef struct ll_pg_copy ll_pg_copy;
typedef struct ll_pg_pool ll_pg_pool;

/* ---- connections ---- */

/* Options; zero means the default. */
typedef struct ll_pg_opts {
    ll_loop *loop;             /* NULL: the current loop */
    double connect_timeout;    /* seconds; 0: the conninfo's connect_timeout, else 10; < 0: none
                                * (only the awaiting task's deadline) */
    double cancel_timeout;     /* how long an abandoned (cancelled, timed out) query may take to
                                * stop before the connection is closed; 0: 5 s; < 0: no limit */
    unsigned stmt_cache_size;  /* named prepared statements kept per connection; 0: 256 */
    bool unnamed_statements;   /* never make named prepared statements (PgBouncer) */
    size_t notify_queue_max;   /* notifications kept unread; older ones are dropped; 0: 10000 */
    bool batch_sync;           /* one Sync per burst instead of one per query (see "Batched
                                * syncs" above): faster pipelining, with the caveat documented */
} ll_pg_opts;

/* Connect. The future's value is the ll_pg_conn, owned by the future (a connection nobody took is
 * closed when the future is freed): take it with ll_future_take() and close it with
 * ll_pg_close(). Fails with LL_EPG_AUTH, LL_ECONNREFUSED, LL_ETIMEDOUT, LL_ENOTFOUND, LL_EPG_CONN,
 * LL_EINVAL (the conninfo does not parse; libpq's reason in the message), LL_ENOMEM; the message
 * names the server, the user and the database. Cancelling it abandons the connect. NULL on out of
 * memory. */
LL_EXPORT ll_future *ll_pg_connect(const char *conninfo, const ll_pg_opts *opts);

/* Close the connection: what is queued or in flight fails with LL_ECLOSED, an open transaction is
 * rolled back by the server when the connection ends, the socket is closed now. Allowed from any
 * task or callback, also while other tasks wait on the connection. On a connection lent by a pool
 * it only ends the connection (what waits fails with LL_EPG_CONN): give it back with
 * ll_pg_pool_release(), which frees it. NULL: no-op. */
LL_EXPORT void ll_pg_close(ll_pg_conn *c);

/* True while the connection is usable (not lost, not closed). */
LL_EXPORT bool ll_pg_is_ok(const ll_pg_conn *c);
/* "127.0.0.1:5432" or the Unix socket path; valid until the connection is closed. */
LL_EXPORT const char *ll_pg_peer(const ll_pg_conn *c);
/* The server process serving this connection (for pg_cancel_backend and friends). */
LL_EXPORT int ll_pg_backend_pid(const ll_pg_conn *c);
/* PostgreSQL's version as an integer (150004 for 15.4). */
LL_EXPORT int ll_pg_server_version(const ll_pg_conn *c);
/* Queries made on this connection and not yet answered (queued or in flight). */
LL_EXPORT size_t ll_pg_pending(const ll_pg_conn *c);
/* True inside a transaction block (an ll_pg_begin not yet ended, or BEGIN sent by hand). */
LL_EXPORT bool ll_pg_in_transaction(const ll_pg_conn *c);

/* ---- queries ---- */

/* Run one SQL statement with `nparams` text parameters ($1, $2, ...) given as `const char *`
 * arguments; a NULL argument is SQL NULL. The parameters and the SQL are copied when needed: they
 * may be freed when the call returns. The future resolves with an ll_pg_result (see above) or
 * fails. It is never settled when the call returns. NULL on out of memory. */
LL_EXPORT ll_future *ll_pg_query(ll_pg_conn *c, const char *sql, int nparams, ...);
/* The same with the parameters in an array (NULL elements are SQL NULL). */
LL_EXPORT ll_future *ll_pg_queryv(ll_pg_conn *c, const char *sql, int nparams,
                                  const char *const *values);
/* The same with per-parameter lengths and formats: formats[i] == 1 sends values[i] as binary data
 * of lengths[i] bytes (a bytea parameter with embedded zero bytes); 0 or a NULL array is text. A
 * text parameter is lengths[i] bytes when lengths[i] > 0 (it need not be zero-terminated), else up
 * to its zero byte; one with a zero byte inside its length fails with LL_EINVAL (PostgreSQL text
 * cannot hold one; libpq would silently cut it there), before anything is sent. */
LL_EXPORT ll_future *ll_pg_query_params(ll_pg_conn *c, const char *sql, int nparams,
                                        const char *const *values, const int *lengths,
                                        const int *formats);
/* Run a script of one or more statements separated by semicolons, without parameters (simple
 * query protocol). It waits for the queries in flight, runs alone, and resolves with the result of
 * the last statement; the first error stops the script and fails the future. */
LL_EXPORT ll_future *ll_pg_exec(ll_pg_conn *c, const char *sql);

/* ---- results ---- */

/* Rows and columns of a result (0 for a command that returns no rows). */
LL_EXPORT int ll_pg_result_rows(const ll_pg_result *r);
LL_EXPORT int ll_pg_result_cols(const ll_pg_result *r);
/* A column's name, NULL when out of range. */
LL_EXPORT const char *ll_pg_result_colname(const ll_pg_result *r, int col);
/* The index of the column named `name` (case-sensitive, the name as the server returns it), or -1. */
LL_EXPORT int ll_pg_result_colindex(const ll_pg_result *r, const char *name);
/* The type OID of a column (23 int4, 25 text, 17 bytea, ...), 0 when out of range. */
LL_EXPORT unsigned ll_pg_result_coltype(const ll_pg_result *r, int col);
/* Rows inserted, updated, deleted, selected or copied by the command; -1 when it reports none. */
LL_EXPORT int64_t ll_pg_result_affected(const ll_pg_result *r);
/* The command tag ("INSERT 0 1", "SELECT 3", "BEGIN"). */
LL_EXPORT const char *ll_pg_result_command(const ll_pg_result *r);

/* True when the value is SQL NULL, or the row or column is out of range. */
LL_EXPORT bool ll_pg_isnull(const ll_pg_result *r, int row, int col);
/* The value as text (valid until the result is freed), NULL for SQL NULL or out of range. */
LL_EXPORT const char *ll_pg_text(const ll_pg_result *r, int row, int col);
/* The length in bytes of the text value (0 for NULL). */
LL_EXPORT size_t ll_pg_len(const ll_pg_result *r, int row, int col);
/* Typed getters: return 0 and store the value, LL_ENOENT for SQL NULL, LL_ERANGE for a row or
 * column out of range or a number that does not fit, LL_EINVAL when the text is not of that type.
 * Booleans accept PostgreSQL's t/f (and true/false, 1/0). */
LL_EXPORT int ll_pg_int64(const ll_pg_result *r, int row, int col, int64_t *out);
LL_EXPORT int ll_pg_double(const ll_pg_result *r, int row, int col, double *out);
LL_EXPORT int ll_pg_bool(const ll_pg_result *r, int row, int col, bool *out);
/* A bytea value decoded to bytes (from PostgreSQL's hex or escape output): *data stays valid until
 * the result is freed. Same returns as above, plus LL_ENOMEM. */
LL_EXPORT int ll_pg_bytea(ll_pg_result *r, int row, int col, const uint8_t **data, size_t *len);

/* The result a query future resolved with (borrowed: owned by the future), or NULL when f is NULL,
 * pending, failed (ll_future_errmsg says why) or holds something else (a transaction, a
 * connection, a notification): reading the wrong future cannot crash. The typed way to read
 * ll_pg_query, ll_pg_exec, ll_pg_pool_query and ll_pg_copy_finish futures. */
LL_EXPORT ll_pg_result *ll_pg_result_of(const ll_future *f);

/* Free a result taken from its future. NULL: no-op. */
LL_EXPORT void ll_pg_result_free(ll_pg_result *r);

/* ---- typed parameters and binary results ----
 * A parameter is an ll_pg_param value made by one of the constructors below; the compiler checks
 * each argument's C type (an int where text is wanted is always diagnosed). Fixed-size values are
 * kept inside the struct; text, bytes and arrays are borrowed until the query call returns (the
 * call copies them). The fields are private: make parameters only with the constructors.
 *
 * Timestamps are microseconds since 1970-01-01 00:00:00 (UTC for timestamptz), dates are days
 * since 1970-01-01; LL_PG_INFINITY / LL_PG_NINFINITY are 'infinity' / '-infinity' (for dates
 * LL_PG_DATE_INFINITY / LL_PG_DATE_NINFINITY). Everything but numeric travels in binary; numeric
 * goes as text (PostgreSQL parses it exactly). */

#define LL_PG_INFINITY INT64_MAX
#define LL_PG_NINFINITY INT64_MIN
#define LL_PG_DATE_INFINITY INT32_MAX
#define LL_PG_DATE_NINFINITY INT32_MIN

typedef struct ll_pg_interval {
    int64_t usecs; /* the time part */
    int32_t days;
    int32_t months;
} ll_pg_interval;

typedef struct ll_pg_param {
    /* First, and a pointer to a private type, so that neither an int nor a string in a
     * parameter list initialises a parameter without a diagnostic (a constraint violation:
     * an error with gcc >= 14, clang >= 16, or -Werror); the query refuses a parameter whose
     * tag is not the constructors'. */
    const struct ll_pg_param_made *made;
    unsigned type;      /* the PostgreSQL type OID */
    int kind;           /* how the value is held (private) */
    int err;            /* a constructor refused the value: the query fails with LL_EINVAL */
    size_t len;         /* borrowed data's length, or an array's element count */
    const void *ptr;    /* borrowed data (text, bytes, an array's elements) */
    const bool *nulls;  /* an array's NULL flags, or NULL */
    union {
        int64_t i;
        double d;
        ll_pg_interval iv;
        uint8_t uuid[16];
    } v;
} ll_pg_param;

LL_EXPORT ll_pg_param ll_pg_param_null(void);
LL_EXPORT ll_pg_param ll_pg_param_bool(bool v);
LL_EXPORT ll_pg_param ll_pg_param_int2(int16_t v);
LL_EXPORT ll_pg_param ll_pg_param_int4(int32_t v);
LL_EXPORT ll_pg_param ll_pg_param_int8(int64_t v);
LL_EXPORT ll_pg_param ll_pg_param_float4(float v);
LL_EXPORT ll_pg_param ll_pg_param_float8(double v);
/* numeric from its decimal text ("-12.5", "NaN", "1e-3"); NULL s is SQL NULL. */
LL_EXPORT ll_pg_param ll_pg_param_numeric(const char *s);
/* text of `len` bytes (len < 0: up to the zero byte); a zero byte inside is refused (the query
 * fails with LL_EINVAL before anything is sent); NULL s is SQL NULL. Invalid UTF-8 is refused by
 * the server. */
LL_EXPORT ll_pg_param ll_pg_param_text(const char *s, ptrdiff_t len);
LL_EXPORT ll_pg_param ll_pg_param_bytea(const void *data, size_t len);
LL_EXPORT ll_pg_param ll_pg_param_date(int32_t days_since_1970);
LL_EXPORT ll_pg_param ll_pg_param_timestamp(int64_t usecs_since_1970);
LL_EXPORT ll_pg_param ll_pg_param_timestamptz(int64_t usecs_since_1970_utc);
LL_EXPORT ll_pg_param ll_pg_param_interval(ll_pg_interval v);
LL_EXPORT ll_pg_param ll_pg_param_uuid(const uint8_t bytes[16]);
/* json / jsonb from text of `len` bytes (len < 0: up to the zero byte). */
LL_EXPORT ll_pg_param ll_pg_param_json(const char *s, ptrdiff_t len);
LL_EXPORT ll_pg_param ll_pg_param_jsonb(const char *s, ptrdiff_t len);
/* 1-D arrays of n elements; `nulls` (may be NULL) marks NULL elements; a NULL string in a text
 * array is a NULL element. n == 0 is the empty array. */
LL_EXPORT ll_pg_param ll_pg_param_bool_array(const bool *v, const bool *nulls, size_t n);
LL_EXPORT ll_pg_param ll_pg_param_int2_array(const int16_t *v, const bool *nulls, size_t n);
LL_EXPORT ll_pg_param ll_pg_param_int4_array(const int32_t *v, const bool *nulls, size_t n);
LL_EXPORT ll_pg_param ll_pg_param_int8_array(const int64_t *v, const bool *nulls, size_t n);
LL_EXPORT ll_pg_param ll_pg_param_float4_array(const float *v, const bool *nulls, size_t n);
LL_EXPORT ll_pg_param ll_pg_param_float8_array(const double *v, const bool *nulls, size_t n);
LL_EXPORT ll_pg_param ll_pg_param_text_array(const char *const *v, size_t n);
LL_EXPORT ll_pg_param ll_pg_param_timestamptz_array(const int64_t *v, const bool *nulls, size_t n);
LL_EXPORT ll_pg_param ll_pg_param_uuid_array(const uint8_t (*v)[16], const bool *nulls, size_t n);

/* C only: `n, array` for a list of parameters, e.g.
 *   ll_pg_query_typed(c, "SELECT $1 + $2", LL_PG_PARAMS(ll_pg_param_int8(1), ll_pg_param_int8(2)), NULL) */
#define LL_PG_PARAMS(...)                                                        \
    (int)(sizeof((ll_pg_param[]){__VA_ARGS__}) / sizeof(ll_pg_param)),           \
        (ll_pg_param[]) { __VA_ARGS__ }

typedef struct ll_pg_query_opts {
    bool text_results; /* results in text format (ll_pg_text works on every column); default:
                        * binary, read with the ll_pg_get_* getters */
} ll_pg_query_opts;

/* Run one statement with typed parameters (n of them, the array may be freed when the call
 * returns). The parameter types are sent with the statement, so `SELECT $1` has the parameter's
 * type. Same future and result rules as ll_pg_query; the result is binary unless
 * opts->text_results. Fails with LL_EINVAL (message naming the parameter) for a refused value. */
LL_EXPORT ll_future *ll_pg_query_typed(ll_pg_conn *c, const char *sql, int n,
                                       const ll_pg_param *params, const ll_pg_query_opts *opts);
/* As ll_pg_query_typed, but the result must have at least one row (else the future fails with
 * LL_ENOENT "... returned no rows"); fetchval also wants at least one column. Read row 0 of it. */
LL_EXPORT ll_future *ll_pg_fetchrow(ll_pg_conn *c, const char *sql, int n,
                                    const ll_pg_param *params);
LL_EXPORT ll_future *ll_pg_fetchval(ll_pg_conn *c, const char *sql, int n,
                                    const ll_pg_param *params);
/* The pool forms: acquire, run, release (as ll_pg_pool_query). */
LL_EXPORT ll_future *ll_pg_pool_query_typed(ll_pg_pool *p, const char *sql, int n,
                                            const ll_pg_param *params,
                                            const ll_pg_query_opts *opts);
LL_EXPORT ll_future *ll_pg_pool_fetchrow(ll_pg_pool *p, const char *sql, int n,
                                         const ll_pg_param *params);
LL_EXPORT ll_future *ll_pg_pool_fetchval(ll_pg_pool *p, const char *sql, int n,
                                         const ll_pg_param *params);

/* Typed getters, for binary and text results. Each checks the column's type OID and returns
 * LL_EINVAL when it is not one the getter reads (the bytes are never reinterpreted), LL_ENOENT for
 * SQL NULL, LL_ERANGE for a row or column out of range or a value that does not fit.
 *   int2/int4/int8 read int2, int4 and int8 columns (widening only; narrowing checks the range);
 *   float8 reads float4 and float8; text reads text, varchar, bpchar, name, json, jsonb (the JSON
 *   text), numeric (its decimal text), enums and composites of a text result; pointers stay valid
 *   until the result is freed. date/timestamp/timestamptz/interval/uuid need a binary result. */
LL_EXPORT int ll_pg_get_bool(ll_pg_result *r, int row, int col, bool *out);
LL_EXPORT int ll_pg_get_int2(ll_pg_result *r, int row, int col, int16_t *out);
LL_EXPORT int ll_pg_get_int4(ll_pg_result *r, int row, int col, int32_t *out);
LL_EXPORT int ll_pg_get_int8(ll_pg_result *r, int row, int col, int64_t *out);
LL_EXPORT int ll_pg_get_float4(ll_pg_result *r, int row, int col, float *out);
LL_EXPORT int ll_pg_get_float8(ll_pg_result *r, int row, int col, double *out);
LL_EXPORT int ll_pg_get_text(ll_pg_result *r, int row, int col, const char **out, size_t *len);
LL_EXPORT int ll_pg_get_bytea(ll_pg_result *r, int row, int col, const uint8_t **out,
                              size_t *len);
LL_EXPORT int ll_pg_get_date(ll_pg_result *r, int row, int col, int32_t *days_since_1970);
LL_EXPORT int ll_pg_get_timestamp(ll_pg_result *r, int row, int col, int64_t *usecs_since_1970);
LL_EXPORT int ll_pg_get_timestamptz(ll_pg_result *r, int row, int col, int64_t *usecs_since_1970);
LL_EXPORT int ll_pg_get_interval(ll_pg_result *r, int row, int col, ll_pg_interval *out);
LL_EXPORT int ll_pg_get_uuid(ll_pg_result *r, int row, int col, uint8_t out[16]);
/* A 1-D array of int2/int4/int8 or float4/float8 (binary result), or of text-like elements
 * (binary or text result: the text form is parsed with its quoting, so no element ever splits):
 * *n elements, *nulls[i] true for a NULL element (its value 0; a NULL string in a text array).
 * Arrays live until the result is freed. An empty array gives n 0; a multi-dimensional array
 * LL_EINVAL. */
LL_EXPORT int ll_pg_get_int8_array(ll_pg_result *r, int row, int col, const int64_t **out,
                                   const bool **nulls, size_t *n);
LL_EXPORT int ll_pg_get_float8_array(ll_pg_result *r, int row, int col, const double **out,
                                     const bool **nulls, size_t *n);
LL_EXPORT int ll_pg_get_text_array(ll_pg_result *r, int row, int col, const char *const **out,
                                   size_t *n);
/* True when column col of r came in binary format. */
LL_EXPORT bool ll_pg_result_binary(const ll_pg_result *r, int col);

/* ---- streamed rows ----
 * A query's rows read in chunks through a server-side cursor: the client holds at most two
 * chunks whatever the row count (the one read, and the next, fetched ahead while the caller reads
 * it). From a task (the calls await; LL_ENOTASK otherwise). Outside a
 * transaction the stream opens one of its own (other tasks' queries on the connection wait until
 * it is closed) and ll_pg_rows_close ends it (COMMIT after reading to the end, else ROLLBACK);
 * inside the task's transaction it uses that one. Deadlines and cancellation apply to each step
 * as to any query; after a failed step only ll_pg_rows_close is allowed, and the connection is
 * usable after it. */
typedef struct ll_pg_rows ll_pg_rows;
typedef struct ll_pg_rows_opts {
    int chunk_rows;    /* rows per chunk; 0: 1000 */
    bool text_results; /* chunks in text format; default binary (ll_pg_get_*) */
} ll_pg_rows_opts;
/* Open the stream: *out is set (also on failure: close it). Returns 0 or the failed step's code
 * (ll_pg_rows_errmsg says why). sql must be a query a cursor can run (SELECT, VALUES, ...). */
LL_EXPORT int ll_pg_rows_open(ll_pg_rows **out, ll_pg_conn *c, const char *sql, int n,
                              const ll_pg_param *params, const ll_pg_rows_opts *opts);
/* The next chunk (1..chunk_rows rows, the caller's: ll_pg_result_free it), or LL_EOF after the
 * last row, or an error code (LL_ETIMEDOUT at the task's deadline, LL_ECANCELED, ...). */
LL_EXPORT int ll_pg_rows_next(ll_pg_rows *it, ll_pg_result **chunk);
/* Why the last step failed ("" if none); valid until close. */
LL_EXPORT const char *ll_pg_rows_errmsg(const ll_pg_rows *it);
/* End the stream (see above) and free it; returns 0 or the code of the COMMIT/ROLLBACK/CLOSE.
 * NULL: no-op. */
LL_EXPORT int ll_pg_rows_close(ll_pg_rows *it);

/* ---- executemany ----
 * One statement run with nrows parameter sets (params holds nrows * nparams parameters, row by
 * row), encoded in batches and pipelined, up to `window` rows in flight (memory stays bounded by
 * it). From a task (it awaits; LL_ENOTASK otherwise).
 * Returns 0, or the first failing row's code with *err (may be NULL) saying which row and why.
 * Without atomic every row runs on its own and the successful rows stay; with atomic the rows
 * run in one transaction (the task's, or one begun and ended here: rolled back on any failure,
 * the later rows not run). */
typedef struct ll_pg_many_opts {
    bool atomic;
    size_t window; /* rows in flight; 0: 512 */
} ll_pg_many_opts;
typedef struct ll_pg_many_error {
    int code;          /* 0: no failure */
    size_t row;        /* the failing row's index (nrows: the final COMMIT failed) */
    char sqlstate[6];  /* "" when not a server error */
    char message[256];
} ll_pg_many_error;
LL_EXPORT int ll_pg_executemany(ll_pg_conn *c, const char *sql, int nparams, size_t nrows,
                                const ll_pg_param *params, const ll_pg_many_opts *opts,
                                ll_pg_many_error *err);

/* ---- prepared statements ----
 * An explicit prepared statement (asyncpg's conn.prepare()): parsed once, its parameter types and
 * result columns readable, executed any number of times with typed parameters.
 *
 * A statement made by ll_pg_prepare() belongs to its connection: it runs there, in order with the
 * connection's other queries, and ll_pg_stmt_free() deallocates it on the server. When the
 * connection is closed, or given back to its pool (ll_pg_pool_release), the statement is
 * detached: every later call fails with LL_ECLOSED (closed) or LL_ESTATE (given back), never runs
 * on another session; free it as usual. On a lost connection calls fail with LL_EPG_CONN. Statement names are never reused on a connection, so a
 * name that vanished on the server (DEALLOCATE ALL, DISCARD ALL by hand) fails with the server's
 * 26000 "does not exist", never runs another statement; a schema change that alters its result
 * columns fails with the server's 0A000 (prepare it again): unlike the automatic cache, an
 * explicit statement is never silently re-prepared, so its columns stay what they say.
 *
 * A statement made by ll_pg_pool_prepare() belongs to the pool: each execution takes a pooled
 * connection, runs there through that connection's statement cache (prepared once per connection,
 * with the types read here) and gives it back, on every path. It stays valid until freed; after
 * ll_pg_pool_free() its calls fail with LL_EPOOLCLOSED.
 *
 * Parameters: ll_pg_stmt_query takes exactly ll_pg_stmt_nparams() ll_pg_param values. Each is sent
 * as the statement's parameter type: a value of that type as it is; int2/int4/int8 for another
 * integer type (range checked), float4/float8 or numeric; float4/float8 for the other float type
 * or numeric; text for varchar, bpchar, name, json, jsonb or, in text format, for any other type
 * but bytea (an enum label, a composite literal '(1,x)', inet, ...: the server parses it);
 * numeric's text for any type but bytea; NULL for any type. Anything else (a timestamp for a
 * timestamptz parameter, an int8[] for an int4[]) fails with LL_EINVAL naming the parameter and
 * both types, before anything is sent: cast in the SQL ($1::timestamptz) or give the types. */
typedef struct ll_pg_stmt ll_pg_stmt;

typedef struct ll_pg_prepare_opts {
    int ntypes;            /* parameter types given (the first ntypes parameters); 0: the
                            * server infers every one from the SQL */
    const unsigned *types; /* ntypes type OIDs (0 for one the server infers); copied */
} ll_pg_prepare_opts;

/* Prepare sql on c (Parse and Describe, one round trip, pipelined with the connection's other
 * queries). The future's value is the ll_pg_stmt, owned by the future (freed with it unless
 * taken with ll_future_take(); then free it with ll_pg_stmt_free()). Fails with the server's
 * error (LL_EPG_SERVER: a syntax error, an unknown table, a type it cannot infer), LL_EINVAL,
 * LL_ECLOSED / LL_EPG_CONN, LL_ECANCELED / LL_ETIMEDOUT (a statement prepared by a cancelled
 * call stays on the server, known to nobody, until the connection ends or goes back to its
 * pool). Never settled when the call returns, unless failed at once. NULL on out of memory. */
LL_EXPORT ll_future *ll_pg_prepare(ll_pg_conn *c, const char *sql, const ll_pg_prepare_opts *opts);
/* The same on a pool: prepared on one pooled connection to read its types (then given back),
 * executed on whichever connection the pool lends. */
LL_EXPORT ll_future *ll_pg_pool_prepare(ll_pg_pool *p, const char *sql,
                                        const ll_pg_prepare_opts *opts);

/* What the server said the statement takes and returns. Out of range: 0 / NULL. Names are valid
 * until the statement is freed. */
LL_EXPORT int ll_pg_stmt_nparams(const ll_pg_stmt *s);
LL_EXPORT unsigned ll_pg_stmt_param_type(const ll_pg_stmt *s, int i);
LL_EXPORT int ll_pg_stmt_cols(const ll_pg_stmt *s);               /* 0: returns no rows */
LL_EXPORT const char *ll_pg_stmt_colname(const ll_pg_stmt *s, int col);
LL_EXPORT unsigned ll_pg_stmt_coltype(const ll_pg_stmt *s, int col);
LL_EXPORT const char *ll_pg_stmt_sql(const ll_pg_stmt *s);
/* The connection a statement belongs to, NULL for a pool's or a detached one. */
LL_EXPORT ll_pg_conn *ll_pg_stmt_conn(const ll_pg_stmt *s);

/* Execute: the future resolves with an ll_pg_result (binary unless opts->text_results), as
 * ll_pg_query_typed's; the parameters may be freed when the call returns; the statement may be
 * freed while executions are in flight (they complete). fetchrow / fetchval as ll_pg_fetchrow. */
LL_EXPORT ll_future *ll_pg_stmt_query(ll_pg_stmt *s, int n, const ll_pg_param *params,
                                      const ll_pg_query_opts *opts);
LL_EXPORT ll_future *ll_pg_stmt_fetchrow(ll_pg_stmt *s, int n, const ll_pg_param *params);
LL_EXPORT ll_future *ll_pg_stmt_fetchval(ll_pg_stmt *s, int n, const ll_pg_param *params);

/* The statement a prepare future resolved with (borrowed), or NULL (pending, failed, another
 * kind of future). */
LL_EXPORT ll_pg_stmt *ll_pg_stmt_of(const ll_future *f);

/* Free the statement: a connection's is deallocated on the server (behind what is in flight;
 * inside another task's transaction, after it ends). NULL: no-op. */
LL_EXPORT void ll_pg_stmt_free(ll_pg_stmt *s);

/* ---- errors ----
 * These read the server's error fields from a future that failed because of a PostgreSQL error
 * (a query, a COMMIT, ...). They return NULL when the future did not fail that way or the server
 * did not send that field. The strings are valid until the future is freed. */
LL_EXPORT const char *ll_pg_error_sqlstate(ll_future *f);  /* "23505" */
LL_EXPORT const char *ll_pg_error_message(ll_future *f);   /* the primary message */
LL_EXPORT const char *ll_pg_error_detail(ll_future *f);
LL_EXPORT const char *ll_pg_error_hint(ll_future *f);
/* Any field by libpq's PG_DIAG_* code ('C' SQLSTATE, 'M' message, 'D' detail, 'H' hint, 'n'
 * constraint name, 't' table, 'c' column, 'P' position, 'S' severity, ...). */
LL_EXPORT const char *ll_pg_error_field(ll_future *f, int code);
/* SQLSTATE 23505: the statement violated a unique constraint. */
LL_EXPORT bool ll_pg_is_unique_violation(ll_future *f);

/* ---- transactions ----
 * ll_pg_begin() must be called from a task. The transaction belongs to that task: its queries on
 * the connection (ll_pg_query and friends, from the same task) run inside it, and other tasks'
 * queries on the connection wait until it ends. It ends with ll_pg_commit() or ll_pg_rollback();
 * if the task finishes first (it returned, failed or was cancelled), it is rolled back
 * automatically. `ll_pg_tx *` is valid until commit or rollback is called. */

/* BEGIN (with `options` appended when not NULL, e.g. "ISOLATION LEVEL SERIALIZABLE"). The value
 * is the ll_pg_tx, borrowed. Fails with LL_ENOTASK outside a task, LL_ESTATE when this task
 * already has a transaction open on the connection. */
LL_EXPORT ll_future *ll_pg_begin(ll_pg_conn *c, const char *options);
/* COMMIT. Resolves when committed; fails with LL_EPG_SERVER when the commit failed (a deferred
 * constraint, a serialization failure: the server's fields are on the future), or when the
 * transaction had already failed (the server rolled it back; the message says so, there are no
 * fields), and with LL_EPG_UNKNOWN_OUTCOME when the connection was lost while the COMMIT was in
 * flight. Cancelling it (a deadline) does not cancel the COMMIT on the server: the future settles
 * at once and the outcome stays unknown to the caller. */
LL_EXPORT ll_future *ll_pg_commit(ll_pg_tx *tx);
LL_EXPORT ll_future *ll_pg_rollback(ll_pg_tx *tx);
/* SAVEPOINT name / ROLLBACK TO SAVEPOINT name / RELEASE SAVEPOINT name (name quoted as an
 * identifier). */
LL_EXPORT ll_future *ll_pg_savepoint(ll_pg_tx *tx, const char *name);
LL_EXPORT ll_future *ll_pg_savepoint_rollback(ll_pg_tx *tx, const char *name);
LL_EXPORT ll_future *ll_pg_savepoint_release(ll_pg_tx *tx, const char *name);
LL_EXPORT ll_pg_conn *ll_pg_tx_conn(const ll_pg_tx *tx);

/* ---- LISTEN / NOTIFY ---- */

typedef struct ll_pg_notification {
    const char *channel;
    const char *payload;
    int be_pid; /* the backend that sent it */
} ll_pg_notification;

/* LISTEN / UNLISTEN on a channel (quoted as an identifier; NULL for UNLISTEN *). Resolve with an
 * ll_pg_result once the server has done it. */
LL_EXPORT ll_future *ll_pg_listen(ll_pg_conn *c, const char *channel);
LL_EXPORT ll_future *ll_pg_unlisten(ll_pg_conn *c, const char *channel);
/* pg_notify(channel, payload). */
LL_EXPORT ll_future *ll_pg_notify(ll_pg_conn *c, const char *channel, const char *payload);
/* The next notification received on this connection: already resolved when one is waiting,
 * otherwise when one arrives. Its value is an ll_pg_notification owned by the future. Waiters are
 * served in order. Fails with LL_EPG_CONN when the connection is lost, LL_ECLOSED on close.
 * Notifications arrive whenever the connection reads, also while it is otherwise idle. */
LL_EXPORT ll_future *ll_pg_next_notification(ll_pg_conn *c);
/* Notifications dropped because notify_queue_max were waiting unread. */
LL_EXPORT uint64_t ll_pg_notifications_dropped(const ll_pg_conn *c);

/* ---- COPY ----
 * ll_pg_copy_start() runs a COPY ... FROM STDIN or COPY ... TO STDOUT statement. It waits for the
 * queries in flight (and for a COPY already running or ending); while the copy runs, other queries
 * on the connection wait. The value is the ll_pg_copy, borrowed, valid until
 * ll_pg_copy_finish()'s future settles. The copy belongs to the calling task: if that task ends
 * without ll_pg_copy_finish, FROM STDIN is aborted (CopyFail) and TO STDOUT cancelled on the
 * server; the connection is usable again once the server has answered. */
LL_EXPORT ll_future *ll_pg_copy_start(ll_pg_conn *c, const char *sql);
/* True for COPY FROM STDIN (write), false for COPY TO STDOUT (read). */
LL_EXPORT bool ll_pg_copy_is_in(const ll_pg_copy *cp);
/* FROM STDIN: queue `len` bytes of COPY data (any split of the rows). The data is copied. The
 * future resolves once the bytes are on their way (most writes resolve at once; a full socket makes
 * the writer wait: memory stays bounded however much is loaded). */
LL_EXPORT ll_future *ll_pg_copy_write(ll_pg_copy *cp, const void *data, size_t len);

/* TO STDOUT: the next piece of data — one or more whole rows, in an ll_pg_copy_data owned by the
 * future. Fails with LL_EOF after the last row. */
typedef struct ll_pg_copy_data {
    size_t len;
    char *data;
} ll_pg_copy_data;
LL_EXPORT ll_future *ll_pg_copy_read(ll_pg_copy *cp);
/* End the copy. FROM STDIN: `error` NULL finishes the load, otherwise aborts it with that message.
 * TO STDOUT: discards what was not read (before the end: the server is asked to stop, and the
 * result's affected count is -1). Resolves with the ll_pg_result of the COPY (rows copied in
 * ll_pg_result_affected) or fails with the server's error. Cancelled (a deadline), it settles at
 * once and the copy ends in the background, its outcome dropped. */
LL_EXPORT ll_future *ll_pg_copy_finish(ll_pg_copy *cp, const char *error);

/* ---- pool ---- */

/* A pool hook: runs on connection c and returns a future the pool waits for and frees (e.g.
 * ll_pg_exec(c, "SET search_path TO app")); a failed future or NULL discards the connection. */
typedef ll_future *(*ll_pg_pool_hook)(ll_pg_conn *c, void *arg);

/* Timeouts in seconds: 0 means the default shown, a negative value no limit of its own. */
typedef struct ll_pg_pool_opts {
    unsigned min_size;       /* connections kept open; 0: none */
    unsigned max_size;       /* 0: 10 */
    double acquire_timeout;  /* seconds a caller waits for a connection; 0: 30 */
    double max_idle;         /* 0: 300 */
    double max_lifetime;     /* 0: 3600 */
    double reset_timeout;    /* 0: 10 */
    ll_pg_opts conn;         /* for each connection (connect_timeout bounds the pool's connects) */
    const char *reset_sql;   /* run alone when a connection comes back, instead of the default
                              * reset (see ll_pg_pool_release); then DEALLOCATE ALL. Copied.
                              * NULL: the default. E.g. "DISCARD ALL" */
    ll_pg_pool_hook on_connect;  /* each new connection before it is first lent, and again
                                  * after each reset (whose RESET ALL undoes SETs) */
    ll_pg_pool_hook on_release;  /* each connection given back with nothing pending, before the
                                  * reset (bounded by reset_timeout) */
    void *hook_arg;              /* passed to both */
} ll_pg_pool_opts;

/* A pool of connections to `conninfo` on libloop's pool. NULL on out of memory or a NULL
 * conninfo. Close it with ll_pg_pool_free(). */
LL_EXPORT ll_pg_pool *ll_pg_pool_new(const char *conninfo, const ll_pg_pool_opts *opts);
/* Close the pool: waiters fail with LL_EPOOLCLOSED, idle connections are closed, lent ones when
 * they come back. NULL: no-op. */
LL_EXPORT void ll_pg_pool_free(ll_pg_pool *p);
/* A connection for the caller's exclusive use: the value is the ll_pg_conn, lent until
 * ll_pg_pool_release(). Fails with LL_ETIMEDOUT after acquire_timeout, a connect's error,
 * LL_EPOOLCLOSED. */
LL_EXPORT ll_future *ll_pg_pool_acquire(ll_pg_pool *p);
/* Give a connection back. A connection with nothing pending is reset to a session like a fresh
 * one (ROLLBACK of an open transaction, advisory locks released, CLOSE ALL, UNLISTEN *, SET SESSION
 * AUTHORIZATION DEFAULT, RESET ALL, DISCARD TEMP, DISCARD SEQUENCES, the user's PREPAREd statements
 * deallocated; or reset_sql) and reused; one that is broken, busy (also a cancelled query still
 * being stopped: the next borrower does not wait for it) or fails the reset is closed and later
 * replaced. Return 0 or LL_ENOENT (not a connection of this pool). */
LL_EXPORT int ll_pg_pool_release(ll_pg_pool *p, ll_pg_conn *c);
/* One query on a pooled connection: acquire, run, release. Resolves with the ll_pg_result. A
 * query on a connection that turned out to be dead before anything was sent is retried once on
 * another. NULL on out of memory. */
LL_EXPORT ll_future *ll_pg_pool_query(ll_pg_pool *p, const char *sql, int nparams, ...);
LL_EXPORT ll_future *ll_pg_pool_queryv(ll_pg_pool *p, const char *sql, int nparams,
                                       const char *const *values);
/* ll_pg_exec (a script of statements, simple protocol) on a pooled connection: acquire, run,
 * release; resolves with the last statement's result. */
LL_EXPORT ll_future *ll_pg_pool_exec(ll_pg_pool *p, const char *sql);

/* Streamed rows on a pooled connection: ll_pg_rows_open's rules, the connection held from open
 * to close and given back by ll_pg_pool_rows_close (also after a failed step, a deadline or a
 * cancellation: always close). From a task. *out is set also when the open fails (the acquire
 * timed out, the query was refused: ll_pg_pool_rows_errmsg says why; close it), NULL only for
 * LL_EINVAL, LL_ENOTASK and LL_ENOMEM. */
typedef struct ll_pg_pool_rows ll_pg_pool_rows;
LL_EXPORT int ll_pg_pool_rows_open(ll_pg_pool_rows **out, ll_pg_pool *p, const char *sql, int n,
                                   const ll_pg_param *params, const ll_pg_rows_opts *opts);
LL_EXPORT int ll_pg_pool_rows_next(ll_pg_pool_rows *it, ll_pg_result **chunk);
LL_EXPORT const char *ll_pg_pool_rows_errmsg(const ll_pg_pool_rows *it);
LL_EXPORT int ll_pg_pool_rows_close(ll_pg_pool_rows *it);
/* ll_pg_executemany on one pooled connection (acquired, used, given back on every path). A
 * failed acquire is reported as row 0's failure. From a task. */
LL_EXPORT int ll_pg_pool_executemany(ll_pg_pool *p, const char *sql, int nparams, size_t nrows,
                                     const ll_pg_param *params, const ll_pg_many_opts *opts,
                                     ll_pg_many_error *err);

typedef struct ll_pg_pool_stats {
    size_t open, idle, in_use, waiting;
    uint64_t created, discarded, acquired;
} ll_pg_pool_stats;
LL_EXPORT void ll_pg_pool_get_stats(const ll_pg_pool *p, ll_pg_pool_stats *out);

LL_END_DECLS

#endif
