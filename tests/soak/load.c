/*
 * load.c — the soak's workers and its fault injector (see soak.h).
 *
 * Each worker loops until S.stop: one operation (or a pipelined burst, or a fan-out) under its own
 * deadline, recorded with its outcome; after a failure it pauses 50 ms so a refusing server does
 * not turn the soak into a busy loop. Workers pace themselves (20 ms between operations): the
 * machine is shared, and the soak is about staying correct for long, not about throughput.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libloop.h>
#include <libloop/http.h>
#include <libloop/pg.h>
#include <libloop/redis.h>
#include <libloop/smtp.h>
#include "harness/pgserver.h"
#include "harness/redisserver.h"
#include "soak.h"

/* Deadlines of one operation, seconds. */
#define PG_DEADLINE 1.0
#define REDIS_DEADLINE 1.0
#define HTTP_DEADLINE 2.0
#define SMTP_DEADLINE 3.0
#define PG_WORKERS 6
#define REDIS_WORKERS 6
#define REDIS_BURST 10
#define HTTP_WORKERS 3
#define SMTP_WORKERS 2
/* The injector: a new fault every FAULT_EVERY seconds, held for FAULT_HOLD (longer than every
 * deadline above, so a freeze or a trickle makes them fire), then a clean period; a restart of
 * PostgreSQL or Redis (in turn) every RESTART_EVERY seconds. */
#define FAULT_EVERY 5.0
#define FAULT_HOLD 3.5
#define RESTART_EVERY 40.0

static ll_pg_pool *pg_pool;
static ll_redis_conn *redis;
static ll_http_session *http;
static ll_smtp_client *smtp;

static int slot_begin(int client, double deadline) {
    int i = S.nslots++;
    S.slot[i].client = client;
    S.slot[i].deadline = deadline;
    S.slot[i].started = 0;
    return i;
}

static void pause_after(int code) { ll_sleep(code ? 0.05 : 0.02); }

/* ---- PostgreSQL: queries through the pool, each checked ---- */

static int pg_worker(void *arg) {
    int slot = slot_begin(C_PG, PG_DEADLINE);
    long i = (long)(intptr_t)arg * 1000000;
    while (!S.stop) {
        char param[24];
        snprintf(param, sizeof param, "%ld", ++i);
        ll_scope sc;
        ll_time t0 = ll_now();
        S.slot[slot].started = t0;
        ll_scope_enter(&sc, t0 + PG_DEADLINE);
        /* every 8th query holds its connection a little longer, so the pool is contended */
        ll_future *q = (i % 8) ? ll_pg_pool_query(pg_pool, "SELECT $1::bigint * 2", 1, param)
                               : ll_pg_pool_query(pg_pool, "SELECT $1::bigint * 2 FROM pg_sleep(0.02)", 1, param);
        int rc = ll_await(q);
        ll_scope_exit(&sc);
        S.slot[slot].started = 0;
        int64_t v = -1;
        if (rc == 0 && (ll_pg_int64(ll_pg_result_of(q), 0, 0, &v) != 0 || v != 2 * i)) {
            soak_record(C_PG, t0, PG_DEADLINE, SOAK_WRONG, "SELECT $1 * 2 gave a wrong answer");
            rc = SOAK_WRONG;
        } else {
            soak_record(C_PG, t0, PG_DEADLINE, rc, rc ? ll_future_errmsg(q) : NULL);
        }
        ll_future_free(q);
        pause_after(rc);
    }
    return 0;
}

/* ---- Redis: bursts of pipelined commands on one shared connection ---- */

static int redis_worker(void *arg) {
    int slot = slot_begin(C_REDIS, REDIS_DEADLINE);
    int w = (int)(intptr_t)arg;
    long round = 0;
    while (!S.stop) {
        ll_future *f[REDIS_BURST];
        char key[32], val[32];
        ll_scope sc;
        ll_time t0 = ll_now();
        S.slot[slot].started = t0;
        ll_scope_enter(&sc, t0 + REDIS_DEADLINE);
        round++;
        /* SET k v, GET k (checked), INCR, in one burst: written together, replies matched in order */
        for (int j = 0; j < REDIS_BURST; j++) {
            snprintf(key, sizeof key, "soak:%d:%d", w, j);
            snprintf(val, sizeof val, "%ld", round * 100 + j);
            if (j % 3 == 0) f[j] = ll_redis_commandf(redis, "SET %s %s", key, val);
            else if (j % 3 == 1) f[j] = ll_redis_commandf(redis, "GET soak:%d:%d", w, j - 1);
            else f[j] = ll_redis_commandf(redis, "INCR soak:ctr:%d", w);
        }
        int worst = 0;
        for (int j = 0; j < REDIS_BURST; j++) {
            int rc = ll_await(f[j]);
            if (rc == 0 && j % 3 == 1) {
                /* the GET follows the SET of the same burst on the same connection: it must see it */
                const char *s = NULL;
                size_t n = 0;
                char want[32];
                snprintf(want, sizeof want, "%ld", round * 100 + j - 1);
                if (ll_redis_reply_string(ll_redis_reply_of(f[j]), &s, &n) != 0 || n != strlen(want) ||
                    memcmp(s, want, n) != 0) {
                    /* the SET before it may have failed (connection lost between them): only then
                     * is another value acceptable */
                    if (ll_future_code(f[j - 1]) == 0) rc = SOAK_WRONG;
                }
            }
            soak_record(C_REDIS, t0, REDIS_DEADLINE, rc,
                        rc == SOAK_WRONG ? "GET after SET in one pipeline gave another value"
                                         : rc ? ll_future_errmsg(f[j]) : NULL);
            if (rc && !worst) worst = rc;
        }
        ll_scope_exit(&sc);
        S.slot[slot].started = 0;
        for (int j = 0; j < REDIS_BURST; j++) ll_future_free(f[j]);
        pause_after(worst);
    }
    return 0;
}

/* ---- HTTP: fan-out of a few URLs at a time through one session ---- */

static const char *const http_paths[] = {"/small.txt", "/1k.bin", "/64k.bin", "/text/big.txt",
                                         "/chain/2", "/status/404"};
enum { NPATHS = sizeof http_paths / sizeof *http_paths };

static int http_worker(void *arg) {
    (void)arg;
    int slot = slot_begin(C_HTTP, HTTP_DEADLINE);
    char *urls[NPATHS];
    for (int i = 0; i < NPATHS; i++) urls[i] = ll_format("%s%s", S.http_base, http_paths[i]);
    while (!S.stop) {
        ll_scope sc;
        ll_time t0 = ll_now();
        S.slot[slot].started = t0;
        ll_scope_enter(&sc, t0 + HTTP_DEADLINE);
        ll_http_fetch_opts fo = {.concurrency = 3};
        ll_future *f = ll_http_fetch_all(http, (const char *const *)urls, NPATHS, &fo);
        int rc = ll_await(f);
        ll_scope_exit(&sc);
        S.slot[slot].started = 0;
        const ll_http_batch *b = rc == 0 ? ll_http_batch_of(f) : NULL;
        int worst = rc;
        for (int i = 0; i < NPATHS; i++) {
            int c = b ? ll_http_batch_code(b, i) : rc;
            const char *msg = b ? ll_http_batch_errmsg(b, i) : ll_future_errmsg(f);
            const ll_http_response *r = b ? ll_http_batch_response(b, i) : NULL;
            if (c == 0 && r) {
                /* the right status and size for each path, or the bytes were mangled somewhere */
                int st = ll_http_response_status(r);
                size_t len = ll_http_response_body_len(r);
                bool good = i == 5 ? st == 404
                          : st == 200 && (i != 1 || len == 1024) && (i != 2 || len == 65536) &&
                                (i != 0 || len == 13) && (i != 4 || len == 13);
                if (!good) {
                    c = SOAK_WRONG;
                    msg = "wrong status or body length";
                }
            }
            soak_record(C_HTTP, t0, HTTP_DEADLINE, c, c ? msg : NULL);
            if (c && !worst) worst = c;
        }
        ll_future_free(f);
        pause_after(worst);
    }
    for (int i = 0; i < NPATHS; i++) ll_free(urls[i]);
    return 0;
}

/* ---- SMTP: small messages through the client's session pool ---- */

static int smtp_worker(void *arg) {
    int slot = slot_begin(C_SMTP, SMTP_DEADLINE);
    int w = (int)(intptr_t)arg;
    long n = 0;
    while (!S.stop) {
        char data[512], rcpt[64];
        snprintf(rcpt, sizeof rcpt, "soak%d@example.test", w);
        n++;
        snprintf(data, sizeof data,
                 "From: soak@libloop.test\r\nTo: %s\r\nSubject: soak %d/%ld\r\n\r\n"
                 "Message %ld of worker %d.\r\n.A line starting with a dot.\r\n", rcpt, w, n, n, w);
        const char *rcpts[] = {rcpt};
        ll_smtp_mail m = {.from = "soak@libloop.test", .rcpt = rcpts, .nrcpt = 1, .data = data,
                          .len = strlen(data)};
        ll_scope sc;
        ll_time t0 = ll_now();
        S.slot[slot].started = t0;
        ll_scope_enter(&sc, t0 + SMTP_DEADLINE);
        ll_future *f = ll_smtp_send(smtp, &m);
        int rc = ll_await(f);
        ll_scope_exit(&sc);
        S.slot[slot].started = 0;
        const ll_smtp_result *r = ll_smtp_result_of(f);
        const char *msg = rc ? ll_future_errmsg(f) : NULL;
        if (rc == 0 && (!r || r->accepted != 1)) {
            rc = SOAK_WRONG;
            msg = "resolved without the recipient accepted";
        }
        soak_record(C_SMTP, t0, SMTP_DEADLINE, rc, msg);
        ll_future_free(f);
        pause_after(rc);
        ll_sleep(0.05); /* aiosmtpd is Python: a few messages a second per worker is plenty */
    }
    return 0;
}

/* ---- the injector ---- */

static int restart_job(void *arg, void **value) {
    (void)value;
    /* blocking (pg_ctl, waiting for the port): on an executor thread, never on the loop */
    if (arg == S.pg_server) return lt_pg_restart(arg) ? 0 : LL_EIO;
    return lt_redis_restart(arg) ? 0 : LL_EIO;
}

static const char *const fault_name[] = {"none", "reset", "reset-after", "freeze", "trickle",
                                         "bandwidth", "half-close", "refuse", "blackhole"};

static int injector(void *arg) {
    (void)arg;
    static const lt_fault faults[] = {
        {.kind = LT_FAULT_RESET},
        {.kind = LT_FAULT_FREEZE, .dir = 2},
        {.kind = LT_FAULT_TRICKLE, .dir = 2, .interval = 0.005},
        {.kind = LT_FAULT_BANDWIDTH, .dir = 0, .rate = 20000},
        {.kind = LT_FAULT_RESET_AFTER, .dir = 2, .bytes = 3000},
        {.kind = LT_FAULT_FREEZE, .dir = 1},
        {.kind = LT_FAULT_TRICKLE, .dir = 1, .interval = 0.002},
    };
    enum { NFAULTS = sizeof faults / sizeof *faults };
    /* short runs (the smoke run in make check) restart a server once, halfway */
    double every = S.seconds * 0.45 < RESTART_EVERY ? S.seconds * 0.45 : RESTART_EVERY;
    ll_time start = ll_now(), next_restart = start + every;
    int round = 0, restart_turn = 0;
    while (!S.stop) {
        if (ll_sleep(FAULT_EVERY - FAULT_HOLD)) break;
        if (S.stop) break;
        soak_quiet_sample();
        int c = round % NCLIENT;
        const lt_fault *f = &faults[(round / NCLIENT) % NFAULTS];
        round++;
        lt_proxy_set(S.proxy[c], f);
        S.faults[c][f->kind]++;
        printf("soak %6.1f s: %-5s %s%s\n", ll_now() - start, soak_client_name[c], fault_name[f->kind],
               f->dir == 1 ? " (client->server)" : f->dir == 2 ? " (server->client)" : "");
        fflush(stdout);
        ll_sleep(FAULT_HOLD);
        lt_proxy_set(S.proxy[c], NULL);
        if (ll_now() >= next_restart && !S.stop) {
            next_restart += every;
            int which = restart_turn++ % 2 ? C_REDIS : C_PG;
            void *srv = which == C_PG ? S.pg_server : S.redis_server;
            printf("soak %6.1f s: %-5s server restart\n", ll_now() - start, soak_client_name[which]);
            fflush(stdout);
            ll_future *j = ll_executor_run(restart_job, srv, NULL, NULL, NULL);
            /* shielded: the restart must finish (the server back) even when the soak is ending */
            ll_scope sc;
            ll_scope_enter_shielded(&sc, ll_deadline_in(60));
            int rc = ll_await(j);
            ll_scope_exit(&sc);
            ll_future_free(j);
            S.restarts[which]++;
            if (rc) S.restart_failed++;
        }
    }
    for (int c = 0; c < NCLIENT; c++) lt_proxy_set(S.proxy[c], NULL);
    return 0;
}

/* ---- start ---- */

static ll_future *spawn_named(ll_task_fn fn, intptr_t arg, const char *name) {
    ll_spawn_opts o = {.name = name};
    return ll_spawn_ex(fn, (void *)arg, &o);
}

static int noop_job(void *arg, void **value) {
    (void)arg, (void)value;
    return 0;
}

ll_future **soak_start_load(size_t *n) {
    /* start the executor's threads now (the restarts use them), not in the middle of the samples */
    ll_future *warm = ll_executor_run(noop_job, NULL, NULL, NULL, NULL);
    ll_await(warm);
    ll_future_free(warm);
    ll_pg_pool_opts po = {.max_size = 4, .acquire_timeout = PG_DEADLINE,
                          .conn = {.connect_timeout = 2, .cancel_timeout = 1}};
    pg_pool = ll_pg_pool_new(S.pg_conninfo, &po);
    /* the connect is retried by the worker's next command (reconnect with backoff) */
    ll_redis_opts ro = {.connect_timeout = 2, .abandon_grace = 1, .queue_timeout = 2,
                        .backoff_initial = 0.05, .backoff_max = 0.5};
    ll_future *rf = ll_redis_connect(S.redis_url, &ro);
    if (ll_await(rf) == 0) redis = ll_future_take(rf);
    else fprintf(stderr, "soak: %s\n", ll_future_errmsg(rf));
    ll_future_free(rf);
    ll_http_session_opts ho = {.max_connections = 8, .idle_timeout = 5,
                               .timeouts = {.connect = 2, .first_byte = 2, .idle_read = 2, .head = 2}};
    http = ll_http_session_new(&ho);
    static ll_tls_opts tls;
    tls.ca_file = S.smtp_ca;
    ll_smtp_opts so = {.tls = &tls, .max_sessions = 2, .retries = 1, .retry_backoff = 0.2,
                       .connect_timeout = 2, .greeting_timeout = 2, .command_timeout = 2,
                       .data_timeout = 2, .final_timeout = 3, .noop_after = 2};
    char *err = NULL;
    smtp = ll_smtp_client_new(S.smtp_url, &so, &err);
    if (!smtp) fprintf(stderr, "soak: smtp client: %s\n", err ? err : "?");
    ll_free(err);
    if (!pg_pool || !redis || !http || !smtp) return NULL;

    size_t cap = PG_WORKERS + REDIS_WORKERS + HTTP_WORKERS + SMTP_WORKERS + 1, k = 0;
    ll_future **fs = calloc(cap, sizeof *fs);
    for (int i = 0; i < PG_WORKERS; i++) fs[k++] = spawn_named(pg_worker, i, "soak-pg");
    for (int i = 0; i < REDIS_WORKERS; i++) fs[k++] = spawn_named(redis_worker, i, "soak-redis");
    for (int i = 0; i < HTTP_WORKERS; i++) fs[k++] = spawn_named(http_worker, i, "soak-http");
    for (int i = 0; i < SMTP_WORKERS; i++) fs[k++] = spawn_named(smtp_worker, i, "soak-smtp");
    fs[k++] = spawn_named(injector, 0, "soak-injector");
    *n = k;
    return fs;
}

/* After the workers have stopped: close every client (each must let go of its descriptors). */
void soak_stop_load(void) {
    ll_pg_pool_free(pg_pool);
    ll_redis_close(redis);
    ll_http_session_free(http);
    ll_smtp_client_free(smtp);
    pg_pool = NULL, redis = NULL, http = NULL, smtp = NULL;
}
