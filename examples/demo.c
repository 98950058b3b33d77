/*
 * demo.c — the main job (`make demo`).
 *
 * Core: 10,000 concurrent tasks, each with its own timeout, gathered; structured concurrency;
 * blocking work in the executor; the live task dump.
 * PostgreSQL: a few thousand concurrent queries through a pool of 10, and a slow query cut by a
 * deadline (cancelled on the server). Without --pg or PG_URL it starts a throwaway server.
 * HTTP fan-out: a few thousand URLs fetched with a concurrency limit, live progress on a terminal,
 * then status counts, bytes, latency percentiles and requests/s. Without a URL file it starts a
 * throwaway nginx on a free loopback port (the test suite's harness) and fetches from it.
 *
 * Redis: a few thousand tasks sharing one auto-pipelined connection, a pub/sub fan-in, a burst of
 * cancelled commands (examples/demo/redis.c). Without --redis or LL_REDIS_URL it starts a
 * throwaway redis-server.
 *
 * Usage: demo [--tasks N] [--pg CONNINFO] [--queries N] [--urls FILE] [--requests N]
 *             [--concurrency N] [--redis URL] [--smtp URL]
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libloop.h>
#include <libloop/http.h>
#include <libloop/pg.h>
#include "harness/pgserver.h"
#include "harness/nginxserver.h"
#include "demo/sections.h"
#include "demo/latency.h"

typedef struct {
    int tasks;
    const char *urls_file;
    const char *pg_url;
    int queries;
    int requests;
    int concurrency;
    const char *redis_url;
    const char *smtp_url;
} demo_opts;

typedef struct {
    int ok, timed_out, failed;
} tally;

/* A worker: "work" for a pseudo-random 1..200 ms under a 100 ms budget. */
static int worker(void *arg) {
    uintptr_t i = (uintptr_t)arg;
    double work = 0.001 * (double)(1 + (i * 2654435761u) % 200);
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.100));
    int rc = ll_sleep(work);
    ll_scope_exit(&s);
    return rc;
}

static int section_fanout(int n) {
    printf("== %d concurrent tasks, each with a 100 ms deadline, gathered\n", n);
    ll_future **fs = calloc((size_t)n, sizeof *fs);
    if (!fs) return LL_ENOMEM;
    ll_time t0 = ll_now();
    for (int i = 0; i < n; i++) fs[i] = ll_spawn(worker, (void *)(uintptr_t)i);
    ll_future *all = ll_gather(fs, (size_t)n, LL_GATHER_COLLECT);
    int rc = ll_await(all);
    double took = ll_now() - t0;
    tally t = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        int c = ll_future_code(fs[i]);
        if (c == 0) t.ok++;
        else if (c == LL_ETIMEDOUT) t.timed_out++;
        else t.failed++;
        ll_future_free(fs[i]);
    }
    ll_future_free(all);
    free(fs);
    printf("   %d finished in time, %d timed out, %d failed — %.0f ms wall, %.0f tasks/s\n\n", t.ok,
           t.timed_out, t.failed, took * 1e3, n / took);
    return rc;
}

static int child_ok(void *arg) {
    (void)arg;
    return ll_sleep(0.02);
}

static int child_fails(void *arg) {
    (void)arg;
    ll_sleep(0.005);
    return ll_task_fail(LL_EPROTO, "child 'parser' found a malformed reply");
}

static int child_long(void *arg) {
    int *cancelled = arg;
    int rc = ll_sleep(10);
    if (rc == LL_ECANCELED) (*cancelled)++;
    return rc;
}

static int section_taskgroup(void) {
    printf("== a task group: one child fails, its siblings are cancelled\n");
    int cancelled = 0;
    ll_taskgroup *g = ll_taskgroup_new();
    if (!g) return LL_ENOMEM;
    ll_taskgroup_spawn(g, child_ok, NULL, "ok");
    ll_taskgroup_spawn(g, child_long, &cancelled, "long-1");
    ll_taskgroup_spawn(g, child_long, &cancelled, "long-2");
    ll_taskgroup_spawn(g, child_fails, NULL, "parser");
    ll_time t0 = ll_now();
    int rc = ll_taskgroup_wait(g);
    printf("   group: %s (%s) after %.0f ms; %d long siblings cancelled\n\n", ll_err_name(rc),
           ll_taskgroup_errmsg(g), (ll_now() - t0) * 1e3, cancelled);
    ll_taskgroup_free(g);
    return 0;
}

static int blocking_lookup(void *arg, void **value) {
    struct addrinfo *res = NULL;
    int e = getaddrinfo(arg, NULL, NULL, &res);
    if (e) return LL_ENOTFOUND;
    int n = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) n++;
    freeaddrinfo(res);
    *value = (void *)(uintptr_t)n;
    return 0;
}

static int ticker(void *arg) {
    int *ticks = arg;
    for (int i = 0; i < 5; i++) {
        if (ll_sleep(0.002)) break;
        (*ticks)++;
    }
    return 0;
}

static int section_executor(void) {
    printf("== blocking getaddrinfo in the executor while the loop keeps ticking\n");
    int ticks = 0;
    ll_future *t = ll_spawn(ticker, &ticks);
    ll_future *f = ll_executor_run(blocking_lookup, "localhost", NULL, NULL, NULL);
    int rc = ll_await(f);
    ll_await(t);
    printf("   getaddrinfo(localhost): %s, %lu result(s); ticker ran %d times meanwhile\n\n",
           rc ? ll_future_errmsg(f) : "ok", (unsigned long)(uintptr_t)ll_future_value(f), ticks);
    ll_future_free(f);
    ll_future_free(t);
    return 0;
}

static int waiter(void *arg) {
    return ll_event_wait(arg);
}

static int section_dump(void) {
    printf("== the live task dump (what `kill -USR1` prints in debug mode)\n");
    ll_event *ev = ll_event_new();
    ll_spawn_opts o = {.name = "waits-for-event"};
    ll_future *a = ll_spawn_ex(waiter, ev, &o);
    o.name = "sleeper";
    ll_future *b = ll_spawn_ex(child_ok, NULL, &o);
    ll_yield(); /* let them start */
    ll_loop_dump_tasks(ll_loop_current(), stdout);
    ll_event_set(ev);
    ll_await(a);
    ll_await(b);
    ll_future_free(a);
    ll_future_free(b);
    ll_event_free(ev);
    printf("\n");
    return 0;
}


/* ---- HTTP fan-out ---- */

typedef struct {
    size_t done, n;
    bool tty;
    ll_time t0;
} progress;

static void on_fetched(void *arg, size_t index, int code, const ll_http_response *resp) {
    (void)index, (void)code, (void)resp;
    progress *p = arg;
    p->done++;
    if (p->tty && (p->done % 50 == 0 || p->done == p->n)) {
        int width = 40, filled = (int)(width * p->done / p->n);
        printf("\r   [%.*s%*s] %zu/%zu  %.0f req/s ", filled, "########################################",
               width - filled, "", p->done, p->n, (double)p->done / (ll_now() - p->t0));
        fflush(stdout);
    }
}

static char **read_urls(const char *file, size_t *n) {
    FILE *f = fopen(file, "r");
    if (!f) return NULL;
    char **urls = NULL, line[4096];
    size_t cap = 0;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **g = realloc(urls, cap * sizeof *urls);
            if (!g) break;
            urls = g;
        }
        urls[(*n)++] = ll_strdup(line);
    }
    fclose(f);
    return urls;
}

static int section_http(const demo_opts *o) {
    lt_nginx ngx;
    memset(&ngx, 0, sizeof ngx);
    size_t n = 0;
    char **urls = NULL;
    if (o->urls_file) {
        urls = read_urls(o->urls_file, &n);
        if (!urls || n == 0) {
            fprintf(stderr, "demo: no URLs in %s\n", o->urls_file);
            return LL_EINVAL;
        }
        printf("== HTTP fan-out: %zu URLs from %s, %d at a time\n", n, o->urls_file, o->concurrency);
    } else {
        if (!lt_nginx_start(&ngx)) {
            printf("== HTTP fan-out: skipped (nginx could not be started; see above)\n\n");
            return 0;
        }
        static const char *const paths[] = {"/small.txt", "/1k.bin", "/64k.bin", "/text/big.txt",
                                            "/r302", "/status/404", "/chain/3", "/1k.bin"};
        n = (size_t)o->requests;
        urls = calloc(n, sizeof *urls);
        for (size_t i = 0; urls && i < n; i++)
            urls[i] = ll_format("%s%s", ngx.base, paths[i % (sizeof paths / sizeof *paths)]);
        printf("== HTTP fan-out: %zu requests to a throwaway nginx at %s, %d at a time\n", n, ngx.base,
               o->concurrency);
    }
    ll_http_session_opts so = {.max_connections = (unsigned)o->concurrency};
    ll_http_session *s = ll_http_session_new(&so);
    progress p = {0, n, isatty(STDOUT_FILENO), ll_now()};
    ll_http_fetch_opts fo = {.concurrency = (unsigned)o->concurrency, .discard_bodies = true,
                             .on_done = on_fetched, .arg = &p};
    ll_future *f = ll_http_fetch_all(s, (const char *const *)urls, n, &fo);
    int rc = ll_await(f);
    double took = ll_now() - p.t0;
    if (p.tty) printf("\n");
    if (rc == 0) {
        const ll_http_batch *b = ll_http_batch_of(f);
        int by_class[6] = {0}, failed = 0;
        uint64_t bytes = 0;
        double *lat = calloc(n, sizeof *lat);
        size_t nl = 0;
        const char *first_error = NULL;
        for (size_t i = 0; i < n; i++) {
            const ll_http_response *r = ll_http_batch_response(b, i);
            if (!r) {
                failed++;
                if (!first_error) first_error = ll_http_batch_errmsg(b, i);
                continue;
            }
            int st = ll_http_response_status(r);
            by_class[st / 100 < 6 ? st / 100 : 0]++;
            bytes += ll_http_response_body_len(r);
            ll_http_timings t;
            ll_http_response_timings(r, &t);
            if (lat) lat[nl++] = t.total;
        }
        printf("   statuses: %d 2xx, %d 3xx, %d 4xx, %d 5xx; %d failed%s%s\n", by_class[2], by_class[3],
               by_class[4], by_class[5], failed, first_error ? " (first: " : "",
               first_error ? first_error : "");
        if (first_error) printf(")\n");
        if (lat) demo_latency_report("   ", lat, nl);
        printf("   %.1f MB in %.2f s: %.0f requests/s\n\n", (double)bytes / 1e6, took, (double)n / took);
        free(lat);
    } else {
        printf("   fan-out failed: %s\n\n", ll_future_errmsg(f));
    }
    ll_future_free(f);
    ll_http_session_free(s);
    for (size_t i = 0; urls && i < n; i++) ll_free(urls[i]);
    free(urls);
    lt_nginx_stop(&ngx);
    return rc;
}

/* ---- PostgreSQL: concurrent queries through a pool ---- */

typedef struct {
    ll_pg_pool *pool;
    int i;
    int *wrong;
    double latency; /* seconds, from the query call to its result */
} pg_job;

static int pg_worker(void *arg) {
    pg_job *j = arg;
    char param[16];
    snprintf(param, sizeof param, "%d", j->i);
    ll_time t0 = ll_now();
    ll_future *q = ll_pg_pool_query(j->pool, "SELECT $1::int * 2", 1, param);
    int rc = ll_await(q);
    j->latency = ll_now() - t0;
    int64_t v = -1;
    if (rc == 0 && (ll_pg_int64(ll_pg_result_of(q), 0, 0, &v) != 0 || v != 2 * j->i)) (*j->wrong)++;
    if (rc) rc = ll_task_fail_from(q);
    ll_future_free(q);
    return rc;
}

static int section_pg(const demo_opts *o) {
    lt_pg srv;
    memset(&srv, 0, sizeof srv);
    const char *url = o->pg_url ? o->pg_url : getenv("PG_URL");
    if (!url) {
        if (!lt_pg_start(&srv)) {
            printf("== PostgreSQL: skipped (no server could be started; see above)\n\n");
            return 0;
        }
        url = srv.conninfo;
        printf("== PostgreSQL: %d concurrent queries through a pool of 10, throwaway server on port %d\n",
               o->queries, srv.port);
    } else {
        printf("== PostgreSQL: %d concurrent queries through a pool of 10 at %s\n", o->queries, url);
    }
    ll_pg_pool_opts po = {.max_size = 10};
    ll_pg_pool *pool = ll_pg_pool_new(url, &po);
    int n = o->queries, wrong = 0, failed = 0;
    pg_job *jobs = calloc((size_t)n, sizeof *jobs);
    ll_future **fs = calloc((size_t)n, sizeof *fs);
    int rc = (pool && jobs && fs) ? 0 : LL_ENOMEM;
    ll_time t0 = ll_now();
    for (int i = 0; rc == 0 && i < n; i++) {
        jobs[i] = (pg_job){pool, i, &wrong, 0};
        fs[i] = ll_spawn(pg_worker, &jobs[i]);
    }
    ll_future *all = rc == 0 ? ll_gather(fs, (size_t)n, LL_GATHER_COLLECT) : NULL;
    if (rc == 0) rc = ll_await(all);
    double took = ll_now() - t0;
    const char *first_error = NULL;
    for (int i = 0; fs && i < n; i++) {
        if (ll_future_code(fs[i]) != 0) {
            failed++;
            if (!first_error) first_error = ll_future_errmsg(fs[i]);
        }
    }
    ll_pg_pool_stats st;
    ll_pg_pool_get_stats(pool, &st);
    printf("   %d ok, %d failed%s%s%s, %d wrong answers in %.2f s: %.0f queries/s over %llu connections\n",
           n - failed, failed, first_error ? " (first: " : "", first_error ? first_error : "",
           first_error ? ")" : "", wrong, took, n / took, (unsigned long long)st.created);
    double *lat = calloc((size_t)n, sizeof *lat);
    size_t nl = 0;
    for (int i = 0; lat && fs && i < n; i++)
        if (ll_future_code(fs[i]) == 0) lat[nl++] = jobs[i].latency;
    if (lat) demo_latency_report("   ", lat, nl);
    free(lat);

    /* one budget for a slow query: the deadline cancels it on the server too */
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.2));
    ll_time t1 = ll_now();
    ll_future *slow = ll_pg_pool_query(pool, "SELECT pg_sleep(30)", 0);
    int src = ll_await(slow);
    ll_scope_exit(&s);
    double cut_ms = (ll_now() - t1) * 1e3;
    ll_future_free(slow);
    /* ask the server whether the query is really gone, rather than say so (the await returned at
     * the deadline; the cancel request reaches the server a moment later, in the background) */
    int64_t still = -1;
    for (int tries = 0; tries < 20 && still != 0; tries++) {
        if (tries) ll_sleep(0.05);
        ll_future *left = ll_pg_pool_query(pool, "SELECT count(*) FROM pg_stat_activity WHERE "
                                                 "query = 'SELECT pg_sleep(30)' AND state = 'active'", 0);
        if (ll_await(left) == 0) ll_pg_int64(ll_pg_result_of(left), 0, 0, &still);
        ll_future_free(left);
    }
    printf("   SELECT pg_sleep(30) under a 200 ms deadline: %s after %.0f ms; still running on the "
           "server: %lld\n\n", ll_err_name(src), cut_ms, (long long)still);

    ll_future_free(all);
    for (int i = 0; fs && i < n; i++) ll_future_free(fs[i]);
    free(fs);
    free(jobs);
    ll_pg_pool_free(pool);
    if (srv.pid) lt_pg_stop(&srv);
    return failed || wrong ? LL_EIO : rc;
}

static int main_task(void *arg) {
    const demo_opts *o = arg;
    int rc = section_fanout(o->tasks);
    if (rc == 0) rc = section_taskgroup();
    if (rc == 0) rc = section_executor();
    if (rc == 0) rc = section_dump();
    if (rc == 0) rc = section_pg(o);
    if (rc == 0) rc = demo_redis(o->redis_url);
    if (rc == 0) rc = demo_smtp(o->smtp_url);
    if (rc == 0) rc = section_http(o);
    return rc;
}

int main(int argc, char **argv) {
    demo_opts o = {.tasks = 10000, .queries = 3000, .requests = 3000, .concurrency = 64};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks") && i + 1 < argc) o.tasks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--urls") && i + 1 < argc) o.urls_file = argv[++i];
        else if (!strcmp(argv[i], "--pg") && i + 1 < argc) o.pg_url = argv[++i];
        else if (!strcmp(argv[i], "--queries") && i + 1 < argc) o.queries = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--requests") && i + 1 < argc) o.requests = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--concurrency") && i + 1 < argc) o.concurrency = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--redis") && i + 1 < argc) o.redis_url = argv[++i];
        else if (!strcmp(argv[i], "--smtp") && i + 1 < argc) o.smtp_url = argv[++i];
        else {
            fprintf(stderr, "usage: demo [--tasks N] [--pg CONNINFO] [--queries N] [--urls FILE] [--requests N] [--concurrency N] [--redis URL] [--smtp URL]\n");
            return 2;
        }
    }
    if (o.tasks <= 0) o.tasks = 10000;
    if (o.requests <= 0) o.requests = 3000;
    if (o.queries <= 0) o.queries = 3000;
    if (o.concurrency <= 0) o.concurrency = 64;
    printf("libloop demo\n\n");
    int rc = ll_run(main_task, &o);
    if (rc) fprintf(stderr, "demo failed: %s\n", ll_strerror(rc));
    return rc ? 1 : 0;
}
