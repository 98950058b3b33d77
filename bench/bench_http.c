/*
 * bench_http.c — the HTTP benchmark, libloop side: keep-alive GETs of one URL over a fixed number
 * of connections for a fixed time (bench/run-http runs it next to wrk, libcurl multi and aiohttp).
 *
 *   bench_http URL CONNECTIONS SECONDS [WARMUP_SECONDS]
 *
 * CONNECTIONS tasks each loop: ll_http_send (a GET), await the response (body read completely),
 * check the status, count the bytes, free it. The session's per-host limit is CONNECTIONS, so each
 * task has a keep-alive connection of its own once warm. Requests finished during the warm-up
 * (default 1 s) are not counted. Output is one line of key=value pairs; the program exits non-zero
 * if any request failed, so a broken run cannot produce a number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "libloop.h"
#include "libloop/http.h"

typedef struct bench {
    ll_http_session *s;
    const char *url;
    ll_time warm_end, end;
    unsigned long requests, errors;
    unsigned long long bytes;
    char err[512];
} bench;

static int worker(void *arg) {
    bench *b = arg;
    ll_http_request req = {.url = b->url};
    while (ll_now() < b->end) {
        ll_future *f = ll_http_send(b->s, &req);
        int rc = ll_await(f);
        ll_time t = ll_now();
        if (rc == 0 && ll_http_response_status(ll_future_value(f)) == 200) {
            if (t >= b->warm_end && t < b->end) {
                b->requests++;
                b->bytes += ll_http_response_body_len(ll_future_value(f));
            }
        } else {
            b->errors++;
            if (!b->err[0])
                snprintf(b->err, sizeof b->err, "%s", rc ? ll_future_errmsg(f) : "status not 200");
        }
        ll_future_free(f);
        if (rc == LL_ECANCELED) break;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_http URL CONNECTIONS SECONDS [WARMUP_SECONDS]\n");
        return 2;
    }
    unsigned conns = (unsigned)atoi(argv[2]);
    double secs = atof(argv[3]), warm = argc > 4 ? atof(argv[4]) : 1.0;
    ll_loop *loop = ll_loop_new();
    ll_http_session_opts o = {.loop = loop, .max_per_host = conns, .max_connections = conns};
    bench b = {.url = argv[1]};
    b.s = ll_http_session_new(&o);
    if (!b.s) {
        fprintf(stderr, "bench_http: cannot make a session\n");
        return 1;
    }
    b.warm_end = ll_now() + warm;
    b.end = b.warm_end + secs;
    ll_future **fs = calloc(conns, sizeof *fs);
    for (unsigned i = 0; i < conns; i++) {
        ll_spawn_opts so = {.loop = loop, .name = "bench worker"};
        fs[i] = ll_spawn_ex(worker, &b, &so);
    }
    ll_future *all = ll_gather(fs, conns, LL_GATHER_COLLECT);
    ll_loop_run_until(loop, all);
    ll_future_free(all);
    for (unsigned i = 0; i < conns; i++) ll_future_free(fs[i]);
    free(fs);
    ll_http_session_free(b.s);
    ll_loop_free(loop);
    if (b.errors) {
        fprintf(stderr, "bench_http: %lu requests failed; first: %s\n", b.errors, b.err);
        return 1;
    }
    printf("client=libloop requests=%lu seconds=%.3f rps=%.0f mbps=%.2f\n", b.requests, secs,
           (double)b.requests / secs, (double)b.bytes / secs / 1e6);
    return 0;
}
