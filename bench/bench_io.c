/*
 * bench_io.c — the I/O benchmark, libloop side: a loopback TCP echo server and a client that
 * measures request/reply round trips against it. bench/io_asyncio.py is the same pair in Python
 * asyncio (and uvloop), bench/bench_io_blocking.c a plain blocking C pair; bench/run-io runs them
 * all and prints the comparison (make bench-io).
 *
 *   bench_io serve                    listen on 127.0.0.1, a free port; print "port=N", then echo
 *                                     until SIGTERM/SIGINT (ll_run cancels the tasks: a clean exit)
 *   bench_io client PORT CONNS SIZE   open CONNS connections to 127.0.0.1:PORT; on each, a task
 *                                     writes a SIZE-byte message and reads exactly SIZE bytes back,
 *                                     again and again; measure round trips per second
 *
 * The server is the idiomatic libloop echo handler (docs/io.md): read what is there (up to 64 KiB),
 * write it, await the write (back-pressure). The client is what a user writes: ll_stream_write,
 * await, ll_stream_read_exactly, await. Nothing is tuned for the benchmark.
 *
 * Measurement: after a short warm-up, REPS runs of SECS seconds each in the same process; every
 * connection's task repeats round trips until the run's end time, and a run's rate is all the
 * round trips completed divided by the time from its start until the last task stopped. The first
 * reply of every connection in every run is compared byte for byte with what was sent. Output is
 * one key=value line for bench/run-io (the best run and every run); any failed operation makes the
 * program exit non-zero, saying why on stderr, so a broken stream cannot produce a number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "libloop.h"
#include "libloop/server.h"
#include "libloop/stream.h"

#define SECS 1.0
#define WARMUP_SECS 0.1
#define REPS 3
#define SERVER_BUF (64 * 1024)
#define MAX_CONNS 10000

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- server ---- */

static int echo(ll_stream *s, void *arg) {
    (void)arg;
    char *buf = malloc(SERVER_BUF);
    if (!buf) return LL_ENOMEM;
    int rc;
    for (;;) {
        ll_future *r = ll_stream_read(s, buf, SERVER_BUF);
        rc = ll_await(r);
        size_t n = (uintptr_t)ll_future_value(r);
        ll_future_free(r);
        if (rc == LL_EOF) {
            rc = 0; /* the client is done */
            break;
        }
        if (rc) break;
        ll_future *w = ll_stream_write(s, buf, n);
        rc = ll_await(w);
        ll_future_free(w);
        if (rc) break;
    }
    free(buf);
    /* A client that goes away at the end of its measurement is not a server failure. */
    return rc == LL_ECONNRESET || rc == LL_EPIPE || rc == LL_ECANCELED ? 0 : rc;
}

static int serve_main(void *arg) {
    (void)arg;
    ll_future *f = ll_server_open("127.0.0.1", 0, echo, NULL, NULL);
    int rc = ll_await(f);
    if (rc) {
        fprintf(stderr, "bench_io: %s\n", ll_future_errmsg(f));
        ll_future_free(f);
        return rc;
    }
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    printf("port=%u\n", ll_server_port(srv));
    fflush(stdout);
    ll_sleep(1e9); /* until SIGTERM cancels this task */
    ll_future *closing = ll_server_close(srv, 0.5);
    ll_scope sc;
    ll_scope_enter_shielded(&sc, ll_deadline_in(2.0)); /* we are cancelled: still wait for it */
    ll_await(closing);
    ll_scope_exit(&sc);
    ll_future_free(closing);
    return 0;
}

/* ---- client ---- */

typedef struct conn {
    ll_stream *s;
    struct bench *b;
    char *reply;
    long count;      /* round trips completed in the current run */
} conn;

typedef struct bench {
    uint16_t port;
    int nconns;
    size_t size;
    char *msg;
    conn *conns;
    double end;      /* the current run stops at this time */
    char err[512];
} bench;

static int fail(bench *b, const char *what, ll_future *f) {
    if (!b->err[0])
        snprintf(b->err, sizeof b->err, "%s: %s", what, f ? ll_future_errmsg(f) : "?");
    return -1;
}

static int roundtrips(void *arg) {
    conn *c = arg;
    bench *b = c->b;
    c->count = 0;
    do {
        ll_future *w = ll_stream_write(c->s, b->msg, b->size);
        int rc = w ? ll_await(w) : LL_ENOMEM;
        if (rc) {
            fail(b, "write", w);
            ll_future_free(w);
            return rc;
        }
        ll_future_free(w);
        ll_future *r = ll_stream_read_exactly(c->s, c->reply, b->size);
        rc = r ? ll_await(r) : LL_ENOMEM;
        if (rc) {
            fail(b, "read", r);
            ll_future_free(r);
            return rc;
        }
        ll_future_free(r);
        if (c->count == 0 && memcmp(c->reply, b->msg, b->size) != 0) {
            snprintf(b->err, sizeof b->err, "the echo differs from the message sent");
            return LL_EPROTO;
        }
        c->count++;
    } while (now() < b->end);
    return 0;
}

/* One run: every connection does round trips until `secs` from now. Returns the rate. */
static double run_once(bench *b, double secs) {
    ll_future **fs = calloc((size_t)b->nconns, sizeof *fs);
    if (!fs) return -1;
    double t0 = now();
    b->end = t0 + secs;
    int rc = 0;
    int n = 0;
    for (; n < b->nconns; n++)
        if (!(fs[n] = ll_spawn(roundtrips, &b->conns[n]))) break;
    if (n == b->nconns) {
        ll_future *g = ll_gather(fs, (size_t)n, LL_GATHER_FAIL_FAST);
        rc = g ? ll_await(g) : LL_ENOMEM;
        ll_future_free(g);
    } else {
        rc = LL_ENOMEM;
    }
    double t1 = now();
    for (int i = 0; i < n; i++) ll_future_free(fs[i]);
    free(fs);
    if (rc) {
        if (!b->err[0]) snprintf(b->err, sizeof b->err, "run: %s", ll_strerror(rc));
        return -1;
    }
    long total = 0;
    for (int i = 0; i < b->nconns; i++) total += b->conns[i].count;
    return (double)total / (t1 - t0);
}

static int client_main(void *arg) {
    bench *b = arg;
    int rc = 0, opened = 0;
    for (; opened < b->nconns; opened++) {
        ll_future *f = ll_stream_connect("127.0.0.1", b->port, NULL);
        rc = f ? ll_await(f) : LL_ENOMEM;
        if (rc) {
            fail(b, "connect", f);
            ll_future_free(f);
            break;
        }
        b->conns[opened].s = ll_future_take(f);
        ll_future_free(f);
    }
    double rates[REPS] = {0}, best = 0;
    if (rc == 0 && run_once(b, WARMUP_SECS) < 0) rc = -1;
    for (int i = 0; rc == 0 && i < REPS; i++) {
        if ((rates[i] = run_once(b, SECS)) < 0) rc = -1;
        else if (rates[i] > best) best = rates[i];
    }
    for (int i = 0; i < opened; i++) ll_stream_close(b->conns[i].s);
    if (rc) return rc;
    double mb = (double)b->size / 1e6;
    printf("runtime=libloop server=libloop conns=%d size=%zu best_rps=%.0f best_mbps=%.2f "
           "runs=%.0f,%.0f,%.0f secs=%.1f\n",
           b->nconns, b->size, best, best * mb, rates[0], rates[1], rates[2], SECS);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_io serve\n       bench_io client PORT CONNS SIZE\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "serve") == 0) return ll_run(serve_main, NULL) == 0 ? 0 : 1;
    if (argc != 5 || strcmp(argv[1], "client") != 0) return usage();
    bench b = {0};
    long port = strtol(argv[2], NULL, 10), nconns = strtol(argv[3], NULL, 10);
    long size = strtol(argv[4], NULL, 10);
    if (port <= 0 || port > 65535 || nconns <= 0 || nconns > MAX_CONNS || size <= 0) return usage();
    b.port = (uint16_t)port;
    b.nconns = (int)nconns;
    b.size = (size_t)size;
    b.msg = malloc(b.size);
    b.conns = calloc((size_t)b.nconns, sizeof *b.conns);
    if (!b.msg || !b.conns) return 1;
    for (size_t i = 0; i < b.size; i++) b.msg[i] = (char)('a' + i % 26);
    for (int i = 0; i < b.nconns; i++) {
        b.conns[i].b = &b;
        if (!(b.conns[i].reply = malloc(b.size))) return 1;
    }
    int rc = ll_run(client_main, &b);
    if (rc) fprintf(stderr, "bench_io: client: %s\n", b.err[0] ? b.err : ll_strerror(rc));
    for (int i = 0; i < b.nconns; i++) free(b.conns[i].reply);
    free(b.conns);
    free(b.msg);
    return rc ? 1 : 0;
}
