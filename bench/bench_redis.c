/*
 * bench_redis.c — the Redis benchmark, libloop side; bench/run-redis runs it next to
 * redis-benchmark and redis-py (asyncio, uvloop) against the same server and prints the ratios
 * (make bench-redis).
 *
 *   bench_redis URL CONNS TASKS_PER_CONN SECONDS [--one-task]
 *       CONNS connections, TASKS_PER_CONN tasks on each; every task alternates SET and GET of its
 *       own key with a 16-byte value and checks each GET returns what it set (a wrong reply is an
 *       error, not a number). Commands of the tasks sharing a connection are pipelined
 *       automatically. Prints ops/s and the client's CPU time per operation (getrusage).
 *       --one-task (a diagnostic, not part of make bench-redis): one task per connection keeps
 *       TASKS_PER_CONN commands in flight instead (that many SETs, then that many GETs, each of its
 *       own key): the same writes and reads with one task wake per round instead of one per
 *       command, which isolates what waking many tasks costs.
 *
 * Output: one line of key=value pairs; non-zero exit (saying why) if any command failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "libloop.h"
#include "libloop/redis.h"

static const char *url;
static int nconns, per_conn;
static double seconds;
static ll_redis_conn **conns;
static volatile bool stop;
static long ops, failures;

static int worker(void *arg) {
    intptr_t i = (intptr_t)arg;
    ll_redis_conn *c = conns[i % nconns];
    char key[32], val[24];
    snprintf(key, sizeof key, "bench:%ld", (long)i);
    for (long n = 0; !stop; n++) {
        long v = n; /* 16 decimal digits without printf (the peers format theirs too) */
        for (int d = 15; d >= 0; d--, v /= 10) val[d] = (char)('0' + v % 10);
        val[16] = 0;
        const char *sv[3] = {"SET", key, val};
        size_t sl[3] = {3, strlen(key), 16};
        ll_future *f = ll_redis_command(c, 3, sv, sl);
        if (ll_await(f) != 0) {
            if (!stop) fprintf(stderr, "bench_redis: SET: %s\n", ll_future_errmsg(f)), failures++;
            ll_future_free(f);
            break;
        }
        ll_future_free(f);
        ops++;
        const char *gv[2] = {"GET", key};
        size_t gl[2] = {3, strlen(key)};
        f = ll_redis_command(c, 2, gv, gl);
        if (ll_await(f) != 0) {
            if (!stop) fprintf(stderr, "bench_redis: GET: %s\n", ll_future_errmsg(f)), failures++;
            ll_future_free(f);
            break;
        }
        const char *s;
        size_t len;
        if (ll_redis_reply_string(ll_redis_reply_of(f), &s, &len) || len != 16 || memcmp(s, val, 16))
            failures++;
        ll_future_free(f);
        ops++;
    }
    return 0;
}

/* --one-task: per_conn commands in flight from one task (a SET round, then a GET round). */
static int batch_worker(void *arg) {
    intptr_t i = (intptr_t)arg;
    ll_redis_conn *c = conns[i % nconns];
    enum { MAXK = 64 };
    int k = per_conn < MAXK ? per_conn : MAXK;
    char key[MAXK][32], val[24];
    size_t klen[MAXK];
    ll_future *f[MAXK];
    for (int j = 0; j < k; j++)
        klen[j] = (size_t)snprintf(key[j], sizeof key[j], "bench:%ld:%d", (long)i, j);
    for (long n = 0; !stop; n++) {
        long v = n;
        for (int d = 15; d >= 0; d--, v /= 10) val[d] = (char)('0' + v % 10);
        val[16] = 0;
        for (int round = 0; round < 2; round++) {
            for (int j = 0; j < k; j++) {
                const char *av[3] = {round ? "GET" : "SET", key[j], val};
                size_t al[3] = {3, klen[j], 16};
                f[j] = ll_redis_command(c, round ? 2 : 3, av, al);
            }
            for (int j = 0; j < k; j++) {
                const char *s;
                size_t len;
                if (ll_await(f[j]) != 0) {
                    if (!stop)
                        fprintf(stderr, "bench_redis: %s\n", ll_future_errmsg(f[j])), failures++;
                } else if (round && (ll_redis_reply_string(ll_redis_reply_of(f[j]), &s, &len) ||
                                     len != 16 || memcmp(s, val, 16))) {
                    failures++;
                } else {
                    ops++;
                }
                ll_future_free(f[j]);
            }
        }
    }
    return 0;
}

static bool one_task;

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int main_task(void *arg) {
    (void)arg;
    conns = calloc((size_t)nconns, sizeof *conns);
    for (int i = 0; i < nconns; i++) {
        ll_future *f = ll_redis_connect(url, NULL);
        if (ll_await(f)) {
            fprintf(stderr, "bench_redis: connect: %s\n", ll_future_errmsg(f));
            return 1;
        }
        conns[i] = ll_future_take(f);
        ll_future_free(f);
    }
    int ntasks = one_task ? nconns : nconns * per_conn;
    ll_future **ts = calloc((size_t)ntasks, sizeof *ts);
    for (intptr_t i = 0; i < ntasks; i++)
        ts[i] = ll_spawn(one_task ? batch_worker : worker, (void *)i);
    ll_sleep(0.5); /* warm-up */
    long o0 = ops;
    double c0 = cpu_now();
    ll_time t0 = ll_now();
    ll_sleep(seconds);
    long o1 = ops;
    double c1 = cpu_now();
    ll_time t1 = ll_now();
    stop = true;
    for (int i = 0; i < ntasks; i++) {
        ll_await(ts[i]);
        ll_future_free(ts[i]);
    }
    uint64_t cmds = 0, writes = 0;
    for (int i = 0; i < nconns; i++) {
        ll_redis_stats st;
        ll_redis_get_stats(conns[i], &st);
        cmds += st.commands;
        writes += st.writes;
        ll_redis_close(conns[i]);
    }
    free(ts);
    free(conns);
    if (failures) {
        fprintf(stderr, "bench_redis: %ld failures\n", failures);
        return 1;
    }
    double n = (double)(o1 - o0);
    /* ops_total: every operation of the process, warm-up included (for perf stat's counts) */
    printf("ops=%.0f cpu_us_per_op=%.2f commands_per_write=%.1f ops_total=%ld\n", n / (t1 - t0),
           (c1 - c0) / n * 1e6, writes ? (double)cmds / (double)writes : 0.0, ops);
    return 0;
}

int main(int argc, char **argv) {
    one_task = argc == 6 && strcmp(argv[5], "--one-task") == 0;
    if (argc != 5 && !one_task) {
        fprintf(stderr, "usage: bench_redis URL CONNS TASKS_PER_CONN SECONDS [--one-task]\n");
        return 2;
    }
    url = argv[1];
    nconns = atoi(argv[2]);
    per_conn = atoi(argv[3]);
    seconds = atof(argv[4]);
    return ll_run(main_task, NULL) == 0 ? 0 : 1;
}
