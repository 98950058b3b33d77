/*
 * bench_pg.c — the PostgreSQL benchmark, libloop side; bench/run-pg runs it next to pgbench,
 * asyncpg and psql and prints the comparison (make bench-pg).
 *
 *   bench_pg qps URL CONNS TASKS SECONDS select1|wide [batch]
 *       TASKS tasks share CONNS connections (task i uses connection i % CONNS) and each runs the
 *       query in a loop; with more tasks than connections, automatic pipelining puts several
 *       tasks' queries in flight on one connection. select1 is `SELECT $1::int`; wide is a
 *       10-column, 1,000-row SELECT; every row's first and last column is checked. Prints
 *       queries/s. `batch`
 *       turns on ll_pg_opts.batch_sync (one Sync per burst instead of one per query).
 *   bench_pg fetch URL ROWS REPS
 *       one query returning ROWS rows of three columns, every row's first column parsed as an
 *       integer; the best of REPS runs, in rows/s.
 *
 *   bench_pg decode URL ROWS REPS binary|text
 *       one query returning ROWS rows of (int8, float8, text, timestamptz, bool), every value
 *       decoded to its C type (int64_t, double, const char *, int64_t microseconds, bool): binary
 *       results with the ll_pg_get_* getters, or text results parsed (the timestamp by a small
 *       parser here, as an application would). The best of REPS runs, in rows/s.
 *
 *       `stream` instead reads the same rows through ll_pg_rows (binary, the default chunk of
 *       1,000 rows).
 *   bench_pg many URL ROWS REPS
 *       ll_pg_executemany of ROWS rows (int8, text, float8) into a table; rows/s, best of REPS.
 *       (BENCH_PG_WINDOW=N: ll_pg_many_opts.window, default 512; BENCH_PG_CHUNK=N: the
 *       streamed chunk in rows, default the library's)
 *
 * Output is one line of key=value pairs; the program exits non-zero, saying why on stderr, if any
 * query failed, so a broken client cannot produce a number. Measurements start after a short
 * warm-up (statements prepared, connections busy) and are taken inside the driving task.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "libloop.h"
#include "libloop/pg.h"

/* This process's CPU time (user + system), in seconds: the client's own cost, which the load
 * of the shared machine changes far less than the wall-clock rate. */
static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}
static double cpu_total; /* over the timed parts of every rep */

#define WIDE_SQL                                                                                 \
    "SELECT g, g + 1, g + 2, g + 3, g + 4, g + 5, g + 6, g + 7, 'abcdefgh'::text, g::float8 "   \
    "FROM generate_series(1, $1::int) g"
#define FETCH_SQL "SELECT g, g * 2, 'row ' || g FROM generate_series(1, $1::int) g"

static const char *url;
static int nconns, ntasks;
static double seconds;
static bool wide;
static bool batch;
static ll_pg_conn **conns;
static volatile bool stop;
static long done_queries;
static long failures;

static void die(const char *what, ll_future *f) {
    fprintf(stderr, "bench_pg: %s: %s\n", what, ll_future_errmsg(f));
    exit(1);
}

static int worker(void *arg) {
    intptr_t i = (intptr_t)arg;
    ll_pg_conn *c = conns[i % nconns];
    char param[16];
    for (long n = 0; !stop; n++) {
        ll_future *f;
        if (wide) {
            f = ll_pg_query(c, WIDE_SQL, 1, "1000");
        } else {
            snprintf(param, sizeof param, "%ld", (long)(n & 1023));
            f = ll_pg_query(c, "SELECT $1::int", 1, param);
        }
        if (ll_await(f) != 0) {
            if (!stop) die("query", f);
            ll_future_free(f);
            break;
        }
        ll_pg_result *r = ll_future_value(f);
        if (wide) {
            /* check every row's first and last column (libpq has parsed them all; pgbench reads
             * none, asyncpg decodes all) */
            int rows = ll_pg_result_rows(r), cols = ll_pg_result_cols(r);
            int64_t first;
            for (int y = 0; y < rows; y++) {
                if (ll_pg_int64(r, y, 0, &first) != 0 || first != y + 1 ||
                    ll_pg_len(r, y, cols - 1) == 0)
                    failures++;
            }
            if (rows != 1000 || cols != 10) failures++;
        } else {
            int64_t v;
            if (ll_pg_int64(r, 0, 0, &v) != 0 || v != (n & 1023)) failures++;
        }
        ll_future_free(f);
        done_queries++;
    }
    return 0;
}

static int connect_all(void) {
    ll_future **fs = calloc((size_t)nconns, sizeof *fs);
    conns = calloc((size_t)nconns, sizeof *conns);
    ll_pg_opts o = {.batch_sync = batch};
    for (int i = 0; i < nconns; i++) fs[i] = ll_pg_connect(url, &o);
    for (int i = 0; i < nconns; i++) {
        if (ll_await(fs[i]) != 0) die("connect", fs[i]);
        conns[i] = ll_future_take(fs[i]);
        ll_future_free(fs[i]);
    }
    free(fs);
    return 0;
}

static int qps_main(void *arg) {
    (void)arg;
    connect_all();
    ll_future **ts = calloc((size_t)ntasks, sizeof *ts);
    for (intptr_t i = 0; i < ntasks; i++) ts[i] = ll_spawn(worker, (void *)i);
    ll_sleep(0.5); /* warm-up: statements prepared, every task running */
    long start_count = done_queries;
    ll_time t0 = ll_now();
    ll_sleep(seconds);
    long count = done_queries - start_count;
    double elapsed = ll_now() - t0;
    stop = true;
    for (int i = 0; i < ntasks; i++) {
        ll_await(ts[i]);
        ll_future_free(ts[i]);
    }
    free(ts);
    for (int i = 0; i < nconns; i++) ll_pg_close(conns[i]);
    free(conns);
    if (failures) {
        fprintf(stderr, "bench_pg: %ld wrong results\n", failures);
        exit(1);
    }
    printf("qps=%.0f queries=%ld seconds=%.3f conns=%d tasks=%d query=%s sync=%s\n",
           count / elapsed, count, elapsed, nconns, ntasks, wide ? "wide" : "select1",
           batch ? "batch" : "query");
    return 0;
}

static long fetch_rows;
static int fetch_reps;

static int fetch_main(void *arg) {
    (void)arg;
    nconns = 1;
    connect_all();
    char n[32];
    snprintf(n, sizeof n, "%ld", fetch_rows);
    double best = 0;
    for (int rep = 0; rep < fetch_reps; rep++) {
        ll_time t0 = ll_now();
        ll_future *f = ll_pg_query(conns[0], FETCH_SQL, 1, n);
        if (ll_await(f) != 0) die("fetch", f);
        ll_pg_result *r = ll_future_value(f);
        int rows = ll_pg_result_rows(r);
        int64_t sum = 0;
        for (int i = 0; i < rows; i++) {
            int64_t v;
            if (ll_pg_int64(r, i, 0, &v) != 0) die("parse", f);
            sum += v;
            (void)ll_pg_text(r, i, 2);
        }
        double dt = ll_now() - t0;
        ll_future_free(f);
        if (rows != fetch_rows || sum != (int64_t)fetch_rows * (fetch_rows + 1) / 2) {
            fprintf(stderr, "bench_pg: fetch returned %d rows\n", rows);
            exit(1);
        }
        if (rows / dt > best) best = rows / dt;
    }
    ll_pg_close(conns[0]);
    free(conns);
    printf("rows_per_s=%.0f rows=%ld reps=%d\n", best, fetch_rows, fetch_reps);
    return 0;
}

#define DECODE_SQL                                                                               \
    "SELECT g::int8, g * 0.5::float8, 'row ' || g, timestamptz '2020-01-01 00:00:00+00' + "       \
    "g * interval '1 second', g % 2 = 0 FROM generate_series(1, $1::int) g"

/* "2020-01-01 00:00:01+00" (TimeZone UTC, the server's ISO output) to microseconds since 1970 */
static bool parse_ts(const char *s, int64_t *out) {
    int y, mo, d, h, mi, n = 0;
    double sec;
    if (sscanf(s, "%d-%d-%d %d:%d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6) return false;
    if (strcmp(s + n, "+00") != 0) return false;
    y -= mo <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = ((days * 86400 + h * 3600 + mi * 60) * 1000000) + (int64_t)(sec * 1e6 + 0.5);
    return true;
}

static bool decode_binary, decode_stream;

/* Decode rows [0, rows) of r; count into the sums. */
typedef struct dsums {
    int64_t sum, tsum;
    double dsum;
    size_t tlen;
    long evens, bad, rows;
} dsums;

static void decode_chunk(ll_pg_result *r, dsums *s) {
    int rows = ll_pg_result_rows(r);
    for (int i = 0; i < rows; i++) {
        int64_t v = 0, ts = 0;
        double d = 0;
        size_t len = 0;
        bool b = false;
        const char *t;
        s->bad += ll_pg_get_int8(r, i, 0, &v) != 0;
        s->bad += ll_pg_get_float8(r, i, 1, &d) != 0;
        s->bad += ll_pg_get_text(r, i, 2, &t, &len) != 0;
        s->bad += ll_pg_get_timestamptz(r, i, 3, &ts) != 0;
        s->bad += ll_pg_get_bool(r, i, 4, &b) != 0;
        s->sum += v;
        s->dsum += d;
        s->tlen += len;
        s->tsum += ts - INT64_C(1577836800000000);
        s->evens += b;
    }
    s->rows += rows;
}

static int stream_main(void *arg) {
    (void)arg;
    nconns = 1;
    connect_all();
    double best = 0;
    for (int rep = 0; rep < fetch_reps; rep++) {
        ll_time t0 = ll_now();
        double c0 = cpu_now();
        ll_pg_param p = ll_pg_param_int4((int32_t)fetch_rows);
        ll_pg_rows_opts o = {0}; /* the default chunk */
        if (getenv("BENCH_PG_CHUNK")) o.chunk_rows = atoi(getenv("BENCH_PG_CHUNK"));
        ll_pg_rows *it;
        if (ll_pg_rows_open(&it, conns[0], DECODE_SQL, 1, &p, &o) != 0) {
            fprintf(stderr, "bench_pg: stream: %s\n", ll_pg_rows_errmsg(it));
            exit(1);
        }
        dsums s = {0};
        ll_pg_result *r;
        int rc;
        while ((rc = ll_pg_rows_next(it, &r)) == 0) {
            decode_chunk(r, &s);
            ll_pg_result_free(r);
        }
        if (rc != LL_EOF || ll_pg_rows_close(it) != 0) {
            fprintf(stderr, "bench_pg: stream failed\n");
            exit(1);
        }
        double dt = ll_now() - t0;
        cpu_total += cpu_now() - c0;
        int64_t want = (int64_t)fetch_rows * (fetch_rows + 1) / 2;
        if (s.bad || s.rows != fetch_rows || s.sum != want || s.tsum != want * 1000000) {
            fprintf(stderr, "bench_pg: stream: wrong values\n");
            exit(1);
        }
        if (s.rows / dt > best) best = s.rows / dt;
    }
    ll_pg_close(conns[0]);
    free(conns);
    printf("rows_per_s=%.0f rows=%ld reps=%d format=stream cpu_us_per_row=%.3f\n", best, fetch_rows,
           fetch_reps, cpu_total * 1e6 / ((double)fetch_rows * fetch_reps));
    return 0;
}

static int many_main(void *arg) {
    (void)arg;
    nconns = 1;
    connect_all();
    ll_future *f = ll_pg_exec(conns[0], "DROP TABLE IF EXISTS bench_many; "
                                        "CREATE TABLE bench_many (id int8, name text, v float8)");
    if (ll_await(f) != 0) die("create", f);
    ll_future_free(f);
    ll_pg_param *p = malloc((size_t)fetch_rows * 3 * sizeof *p);
    char (*names)[24] = malloc((size_t)fetch_rows * sizeof *names);
    for (long i = 0; i < fetch_rows; i++) {
        snprintf(names[i], sizeof names[i], "name %ld", i);
        p[3 * i] = ll_pg_param_int8(i);
        p[3 * i + 1] = ll_pg_param_text(names[i], -1);
        p[3 * i + 2] = ll_pg_param_float8(i * 0.25);
    }
    double best = 0;
    for (int rep = 0; rep < fetch_reps; rep++) {
        f = ll_pg_exec(conns[0], "TRUNCATE bench_many");
        if (ll_await(f) != 0) die("truncate", f);
        ll_future_free(f);
        ll_time t0 = ll_now();
        double c0 = cpu_now();
        ll_pg_many_error e;
        /* atomic, as asyncpg's executemany is (one transaction) */
        ll_pg_many_opts mo = {.atomic = true};
        if (getenv("BENCH_PG_WINDOW")) mo.window = (size_t)atoi(getenv("BENCH_PG_WINDOW"));
        if (ll_pg_executemany(conns[0], "INSERT INTO bench_many VALUES ($1, $2, $3)", 3,
                              (size_t)fetch_rows, p, &mo, &e) != 0) {
            fprintf(stderr, "bench_pg: executemany: row %zu: %s\n", e.row, e.message);
            exit(1);
        }
        double dt = ll_now() - t0;
        cpu_total += cpu_now() - c0;
        if (fetch_rows / dt > best) best = fetch_rows / dt;
    }
    free(p);
    free(names);
    ll_pg_close(conns[0]);
    free(conns);
    printf("rows_per_s=%.0f rows=%ld reps=%d cpu_us_per_row=%.3f\n", best, fetch_rows, fetch_reps,
           cpu_total * 1e6 / ((double)fetch_rows * fetch_reps));
    return 0;
}

static int decode_main(void *arg) {
    (void)arg;
    nconns = 1;
    connect_all();
    double best = 0;
    ll_pg_query_opts o = {.text_results = !decode_binary};
    for (int rep = 0; rep < fetch_reps; rep++) {
        ll_time t0 = ll_now();
        double c0 = cpu_now();
        ll_pg_param p = ll_pg_param_int4((int32_t)fetch_rows);
        ll_future *f = ll_pg_query_typed(conns[0], DECODE_SQL, 1, &p, &o);
        if (ll_await(f) != 0) die("decode", f);
        ll_pg_result *r = ll_future_value(f);
        int rows = ll_pg_result_rows(r);
        int64_t sum = 0, tsum = 0;
        double dsum = 0;
        size_t tlen = 0;
        long evens = 0, bad = 0;
        for (int i = 0; i < rows; i++) {
            int64_t v, ts;
            double d;
            const char *t;
            size_t len;
            bool b;
            if (decode_binary) {
                bad += ll_pg_get_int8(r, i, 0, &v) != 0;
                bad += ll_pg_get_float8(r, i, 1, &d) != 0;
                bad += ll_pg_get_text(r, i, 2, &t, &len) != 0;
                bad += ll_pg_get_timestamptz(r, i, 3, &ts) != 0;
                bad += ll_pg_get_bool(r, i, 4, &b) != 0;
            } else {
                bad += ll_pg_int64(r, i, 0, &v) != 0;
                bad += ll_pg_double(r, i, 1, &d) != 0;
                t = ll_pg_text(r, i, 2);
                len = ll_pg_len(r, i, 2);
                bad += !parse_ts(ll_pg_text(r, i, 3), &ts);
                bad += ll_pg_bool(r, i, 4, &b) != 0;
            }
            (void)t;
            sum += v;
            dsum += d;
            tlen += len;
            tsum += ts - INT64_C(1577836800000000);
            evens += b;
        }
        double dt = ll_now() - t0;
        cpu_total += cpu_now() - c0;
        ll_future_free(f);
        int64_t want = (int64_t)fetch_rows * (fetch_rows + 1) / 2;
        if (bad || rows != fetch_rows || sum != want || tsum != want * 1000000 ||
            dsum != (double)want * 0.5 || evens != fetch_rows / 2 || tlen == 0) {
            fprintf(stderr, "bench_pg: decode: wrong values (%ld failures, %d rows)\n", bad, rows);
            exit(1);
        }
        if (rows / dt > best) best = rows / dt;
    }
    ll_pg_close(conns[0]);
    free(conns);
    printf("rows_per_s=%.0f rows=%ld reps=%d format=%s cpu_us_per_row=%.3f\n", best, fetch_rows,
           fetch_reps, decode_binary ? "binary" : "text",
           cpu_total * 1e6 / ((double)fetch_rows * fetch_reps));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "decode") == 0) {
        url = argv[2];
        fetch_rows = atol(argv[3]);
        fetch_reps = atoi(argv[4]);
        decode_binary = strcmp(argv[5], "binary") == 0;
        decode_stream = strcmp(argv[5], "stream") == 0;
        if (fetch_rows < 1 || fetch_reps < 1) return 2;
        return ll_run(decode_stream ? stream_main : decode_main, NULL) == 0 ? 0 : 1;
    }
    if (argc == 5 && strcmp(argv[1], "many") == 0) {
        url = argv[2];
        fetch_rows = atol(argv[3]);
        fetch_reps = atoi(argv[4]);
        if (fetch_rows < 1 || fetch_reps < 1) return 2;
        return ll_run(many_main, NULL) == 0 ? 0 : 1;
    }
    if ((argc == 7 || argc == 8) && strcmp(argv[1], "qps") == 0) {
        batch = argc == 8 && strcmp(argv[7], "batch") == 0;
        url = argv[2];
        nconns = atoi(argv[3]);
        ntasks = atoi(argv[4]);
        seconds = atof(argv[5]);
        wide = strcmp(argv[6], "wide") == 0;
        if (nconns < 1 || ntasks < 1 || seconds <= 0) return 2;
        return ll_run(qps_main, NULL) == 0 ? 0 : 1;
    }
    if (argc == 5 && strcmp(argv[1], "fetch") == 0) {
        url = argv[2];
        fetch_rows = atol(argv[3]);
        fetch_reps = atoi(argv[4]);
        if (fetch_rows < 1 || fetch_reps < 1) return 2;
        return ll_run(fetch_main, NULL) == 0 ? 0 : 1;
    }
    fprintf(stderr, "usage: bench_pg qps URL CONNS TASKS SECONDS select1|wide [batch]\n"
                    "       bench_pg fetch URL ROWS REPS\n"
                    "       bench_pg decode URL ROWS REPS binary|text|stream\n"
                    "       bench_pg many URL ROWS REPS\n");
    return 2;
}
