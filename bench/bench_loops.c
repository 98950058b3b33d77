/*
 * bench_loops.c — what one loop per core buys (make bench-loops; bench/run-loops runs it with 1
 * and 2 loops in the same invocation and prints the ratios).
 *
 *   bench_loops cpu LOOPS SECONDS
 *       A client-bound mix with no peer: on each loop 64 tasks, each operation = a future made,
 *       resolved from a loop callback and awaited (a task switch each way), plus a 512-byte
 *       checksum standing in for request encoding / reply parsing.
 *   bench_loops redis LOOPS SECONDS URL
 *       On each loop its own auto-pipelined libloop-redis connection and 50 tasks alternating SET
 *       and GET of their own keys, every GET checked (a wrong value is an error, not a number).
 *
 * Every loop is an ll_loop_group member with its own tasks, futures and connection: nothing is
 * shared but a stop flag and one padded counter per loop, read by the main thread. Output: one
 * line "loops=N ops=OPS_PER_S cpu_us_per_op=X cores_used=C" (CPU = user+sys of the whole process over the
 * measured window, getrusage), non-zero exit on any failure.
 */
#include <stdatomic.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "libloop.h"
#include "libloop/redis.h"

#define MAXLOOPS 16
#define CPU_TASKS 64
#define REDIS_TASKS 50

typedef struct counter {
    _Atomic long ops;
    char pad[64 - sizeof(long)];
} counter;

static counter counts[MAXLOOPS];
static atomic_bool stop;
static _Atomic long failures;
static const char *url;

/* ---- cpu mode ---- */

static void resolve_cb(void *arg) {
    ll_future_resolve(arg, NULL, NULL);
}

static unsigned checksum(const unsigned char *p, size_t n, unsigned seed) {
    unsigned h = seed ^ 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

typedef struct cpu_task {
    size_t loop;
    unsigned char buf[512];
} cpu_task;

static int cpu_worker(void *arg) {
    cpu_task *t = arg;
    ll_loop *loop = ll_loop_current();
    unsigned h = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        ll_future *f = ll_future_new(loop);
        if (!f || ll_loop_call_soon(loop, resolve_cb, f) != 0 || ll_await(f) != 0) {
            atomic_fetch_add(&failures, 1);
            ll_future_free(f);
            break;
        }
        ll_future_free(f);
        h = checksum(t->buf, sizeof t->buf, h);
        t->buf[h % sizeof t->buf] = (unsigned char)h;
        atomic_fetch_add_explicit(&counts[t->loop].ops, 1, memory_order_relaxed);
    }
    return 0;
}

/* ---- redis mode ---- */

typedef struct redis_task {
    size_t loop, index;
    ll_redis_conn *c;
} redis_task;

static int redis_cmd_ok(ll_future *f, const char *what) {
    int rc = ll_await(f);
    if (rc != 0 && !atomic_load(&stop)) {
        fprintf(stderr, "bench_loops: %s: %s\n", what, ll_future_errmsg(f));
        atomic_fetch_add(&failures, 1);
    }
    return rc;
}

static int redis_worker(void *arg) {
    redis_task *t = arg;
    char key[48], val[24];
    snprintf(key, sizeof key, "bench_loops:%zu:%zu", t->loop, t->index);
    for (long n = 0; !atomic_load_explicit(&stop, memory_order_relaxed); n++) {
        long v = n;
        for (int d = 15; d >= 0; d--, v /= 10) val[d] = (char)('0' + v % 10);
        val[16] = 0;
        const char *sv[3] = {"SET", key, val};
        ll_future *f = ll_redis_command(t->c, 3, sv, NULL);
        int rc = redis_cmd_ok(f, "SET");
        ll_future_free(f);
        if (rc) break;
        const char *gv[2] = {"GET", key};
        f = ll_redis_command(t->c, 2, gv, NULL);
        rc = redis_cmd_ok(f, "GET");
        const char *s;
        size_t len;
        if (!rc && (ll_redis_reply_string(ll_redis_reply_of(f), &s, &len) || len != 16 || memcmp(s, val, 16))) {
            fprintf(stderr, "bench_loops: GET %s: wrong value\n", key);
            atomic_fetch_add(&failures, 1);
            rc = -1;
        }
        ll_future_free(f);
        if (rc) break;
        atomic_fetch_add_explicit(&counts[t->loop].ops, 2, memory_order_relaxed);
    }
    return 0;
}

/* ---- one loop's main task ---- */

static int loop_main(size_t index, void *arg) {
    bool redis = arg != NULL;
    int n = redis ? REDIS_TASKS : CPU_TASKS;
    ll_future *tasks[CPU_TASKS > REDIS_TASKS ? CPU_TASKS : REDIS_TASKS];
    cpu_task *ct = NULL;
    redis_task *rt = NULL;
    ll_redis_conn *c = NULL;
    if (redis) {
        ll_future *cf = ll_redis_connect(url, NULL);
        if (ll_await(cf) != 0) {
            fprintf(stderr, "bench_loops: connect: %s\n", ll_future_errmsg(cf));
            atomic_fetch_add(&failures, 1);
            ll_future_free(cf);
            return -1;
        }
        c = ll_future_take(cf);
        ll_future_free(cf);
        rt = calloc((size_t)n, sizeof *rt);
    } else {
        ct = calloc((size_t)n, sizeof *ct);
    }
    for (int i = 0; i < n; i++) {
        if (redis) {
            rt[i] = (redis_task){index, (size_t)i, c};
            tasks[i] = ll_spawn(redis_worker, &rt[i]);
        } else {
            ct[i].loop = index;
            memset(ct[i].buf, i, sizeof ct[i].buf);
            tasks[i] = ll_spawn(cpu_worker, &ct[i]);
        }
    }
    for (int i = 0; i < n; i++) {
        ll_await(tasks[i]);
        ll_future_free(tasks[i]);
    }
    ll_redis_close(c);
    free(ct);
    free(rt);
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

/* Seconds the process's threads spent runnable but waiting for a CPU (second field of
 * /proc/self/task/TID/schedstat), summed over the threads: per wall second, how many loops the
 * machine kept waiting. -1 when the kernel does not say (no schedstats). */
static double runq_wait_seconds(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    double sum = 0;
    bool any = false;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        unsigned long long run = 0, wait = 0;
        if (fscanf(f, "%llu %llu", &run, &wait) == 2) {
            sum += (double)wait * 1e-9;
            any = true;
        }
        fclose(f);
    }
    closedir(d);
    return any ? sum : -1;
}

static long total_ops(size_t n) {
    long s = 0;
    for (size_t i = 0; i < n; i++) s += atomic_load(&counts[i].ops);
    return s;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    if (argc < 4 || (strcmp(argv[1], "cpu") && strcmp(argv[1], "redis")) ||
        (!strcmp(argv[1], "redis") && argc < 5)) {
        fprintf(stderr, "usage: bench_loops cpu|redis LOOPS SECONDS [URL]\n");
        return 2;
    }
    bool redis = !strcmp(argv[1], "redis");
    size_t loops = (size_t)atoi(argv[2]);
    double secs = atof(argv[3]);
    if (loops < 1 || loops > MAXLOOPS || secs <= 0) {
        fprintf(stderr, "bench_loops: LOOPS is 1..%d, SECONDS > 0\n", MAXLOOPS);
        return 2;
    }
    url = redis ? argv[4] : NULL;
    ll_loop_group *g = ll_loop_group_new(loops, loop_main, redis ? (void *)1 : NULL, NULL);
    if (!g) {
        fprintf(stderr, "bench_loops: could not start %zu loops\n", loops);
        return 1;
    }
    sleep_s(0.5); /* warm-up: connections made, stacks touched */
    long o0 = total_ops(loops);
    double t0 = now(), c0 = cpu_seconds(), w0 = runq_wait_seconds();
    sleep_s(secs);
    long o1 = total_ops(loops);
    double t1 = now(), c1 = cpu_seconds(), w1 = runq_wait_seconds();
    atomic_store(&stop, true);
    int rc = ll_loop_group_join(g, NULL);
    ll_loop_group_free(g);
    long n = o1 - o0;
    if (rc != 0 || atomic_load(&failures) || n <= 0) {
        fprintf(stderr, "bench_loops: failed (%ld failures, main code %d)\n", atomic_load(&failures), rc);
        return 1;
    }
    /* cores_used: CPU seconds per wall second the process actually got; below LOOPS it says the
     * machine (other load, or a CPU share per session) held the loops back, not libloop.
     * runq_wait: loops kept waiting for a CPU per wall second (the kernel's run-queue wait): with
     * cores_used + runq_wait ~ LOOPS, the missing throughput is CPU the machine did not hand out. */
    double wait = w0 >= 0 && w1 >= 0 ? (w1 - w0) / (t1 - t0) : -1;
    printf("loops=%zu ops=%.0f cpu_us_per_op=%.3f cores_used=%.2f runq_wait=%.2f\n", loops, (double)n / (t1 - t0),
           (c1 - c0) / (double)n * 1e6, (c1 - c0) / (t1 - t0), wait);
    return 0;
}
