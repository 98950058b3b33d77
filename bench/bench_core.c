/*
 * bench_core.c — the core benchmark, libloop side. bench/core_asyncio.py runs the same workloads in
 * Python asyncio (and uvloop); bench/run-core runs both and prints the comparison (make bench-core).
 *
 *   bench_core future [N]   (a) a task creates a future, ll_loop_call_soon()s a callback that resolves
 *                               it, awaits it and frees it — one op per future
 *   bench_core spawn [N]    (b) a task spawns 1,000 tasks that return at once, gathers them
 *                               (ll_gather) and frees them — one op per spawned task
 *   bench_core switch [N]   (c) two tasks ping-pong over two ll_events — one op per wake
 *   bench_core sleep [T [S]] (d) T tasks (100,000) each sleep S seconds (1): peak RSS, and how
 *                               many stacks were guarded vs unguarded while all were alive
 *   bench_core pages [T]    the floor under (d)'s start: first writes to T fresh pages (100,000)
 *                               spaced like task stacks, the cheapest of two ways (a page fault
 *                               each; or populated in batches of 64 as libloop/stack.c does, then
 *                               written). A task needs one page of its own (the top of its stack:
 *                               its record and its frames while it sleeps), so no start of T tasks
 *                               on stacks can take less; bench/run-core runs it in the same rounds
 *
 * Without N, a throughput workload calibrates: it prints the N for which one measurement takes about
 * TARGET_SECS. With N it warms up (N/10), measures N ops once and prints the rate. bench/run-core
 * calibrates each runtime once, then runs the measurements in rounds that alternate runtimes, one
 * process each, and keeps each runtime's best: the machine's cores are shared and noisy, so
 * spreading a runtime's runs over time, and taking the least disturbed one, compares like with like.
 * Output is one line of key=value pairs; the program exits non-zero, saying why on stderr, if any
 * operation failed, so a broken runtime cannot produce a number.
 *
 * Time is measured inside the driving task, around the work only, as core_asyncio.py does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "libloop.h"

#define TARGET_SECS 0.8
#define BATCH 1000

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_core: %s: %s (%s)\n", what, ll_strerror(rc), ll_err_name(rc));
    exit(1);
}

/* ---- (a) a future resolved from the loop and awaited ---- */

static void resolve_cb(void *arg) {
    ll_future_resolve(arg, NULL, NULL);
}

static int future_work(long n) {
    ll_loop *loop = ll_loop_current();
    for (long i = 0; i < n; i++) {
        ll_future *f = ll_future_new(loop);
        if (!f) return LL_ENOMEM;
        int rc = ll_loop_call_soon(loop, resolve_cb, f);
        if (rc == 0) rc = ll_await(f);
        ll_future_free(f);
        if (rc) return rc;
    }
    return 0;
}

/* ---- (b) spawn + finish a task, gathered in batches ---- */

static int noop(void *arg) {
    (void)arg;
    return 0;
}

static int spawn_work(long n) {
    static ll_future *fs[BATCH];
    for (long done = 0; done < n; done += BATCH) {
        size_t k = 0;
        int rc = 0;
        for (; k < BATCH; k++) {
            if (!(fs[k] = ll_spawn(noop, NULL))) {
                rc = LL_ENOMEM;
                break;
            }
        }
        if (rc == 0) {
            ll_future *g = ll_gather(fs, k, LL_GATHER_FAIL_FAST);
            rc = ll_await(g);
            ll_future_free(g);
        }
        for (size_t i = 0; i < k; i++) ll_future_free(fs[i]);
        if (rc) return rc;
    }
    return 0;
}

/* ---- (c) a switch between two tasks: ping-pong over two events ---- */

typedef struct pingpong {
    ll_event *ping, *pong;
    long rounds;
} pingpong;

static int ponger(void *arg) {
    pingpong *p = arg;
    for (long i = 0; i < p->rounds; i++) {
        int rc = ll_event_wait(p->ping);
        if (rc) return rc;
        ll_event_clear(p->ping);
        ll_event_set(p->pong);
    }
    return 0;
}

/* n wakes: n/2 rounds, each wakes the ponger once and the pinger (this task) once. */
static int switch_work(long n) {
    pingpong p = {ll_event_new(), ll_event_new(), n / 2};
    int rc = LL_ENOMEM;
    ll_future *other = (p.ping && p.pong) ? ll_spawn(ponger, &p) : NULL;
    if (other) {
        rc = 0;
        for (long i = 0; i < p.rounds && rc == 0; i++) {
            ll_event_set(p.ping);
            rc = ll_event_wait(p.pong);
            ll_event_clear(p.pong);
        }
        if (rc) ll_future_cancel(other);
        int orc = ll_await(other);
        if (rc == 0) rc = orc;
        ll_future_free(other);
    }
    ll_event_free(p.ping);
    ll_event_free(p.pong);
    return rc;
}

/* ---- the driver for (a)-(c) ---- */

typedef struct run {
    int (*work)(long n);
    long n;
    double secs;
} run;

static int run_main(void *arg) {
    run *r = arg;
    double t0 = now();
    int rc = r->work(r->n);
    r->secs = now() - t0;
    return rc;
}

static double measure(ll_loop *loop, int (*work)(long), long n, const char *name) {
    run r = {work, n, 0};
    ll_future *f = ll_spawn(run_main, &r);
    if (!f) die(name, LL_ENOMEM);
    int rc = ll_loop_run_until(loop, f);
    if (rc) {
        fprintf(stderr, "bench_core: %s: %s\n", name, ll_future_errmsg(f));
        exit(1);
    }
    ll_future_free(f);
    return r.secs;
}

static int throughput(const char *name, int (*work)(long), long quantum, long n) {
    ll_loop *loop = ll_loop_new();
    if (!loop) die("ll_loop_new", LL_ENOMEM);
    if (n <= 0) {
        /* calibrate: grow until a run takes a tenth of the target, then scale to the target. A
         * warm-up first: the very first run maps and faults in fresh stacks, and a calibration that
         * saw that cost chose a count too small to measure anything. */
        measure(loop, work, quantum * 10, name);
        double secs;
        for (n = quantum; (secs = measure(loop, work, n, name)) < TARGET_SECS / 10;) n *= 4;
        n = (long)((double)n * TARGET_SECS / secs);
        n = (n + quantum - 1) / quantum * quantum;
        printf("runtime=libloop workload=%s n=%ld\n", name, n);
    } else {
        n = (n + quantum - 1) / quantum * quantum;
        measure(loop, work, (n / 10 + quantum - 1) / quantum * quantum, name); /* warm up */
        double secs = measure(loop, work, n, name);
        printf("runtime=libloop workload=%s n=%ld secs=%.4f rate=%.0f\n", name, n, secs,
               (double)n / secs);
    }
    ll_loop_stats st;
    ll_loop_get_stats(loop, &st);
    if (st.tasks || st.futures) {
        fprintf(stderr, "bench_core: %s: %zu tasks and %zu futures left alive\n", name, st.tasks,
                st.futures);
        return 1;
    }
    return ll_loop_free(loop) ? 1 : 0;
}

/* ---- (d) many sleeping tasks: peak RSS ---- */

/* A /proc/self/status field in KiB (VmRSS, VmHWM), or -1. */
static long status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t len = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            v = strtol(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

typedef struct sleepers {
    long ntasks, started, finished;
    double secs, t0, start_secs;
    ll_loop_stats alive; /* taken when the last sleeper starts: every sleeper should be alive */
    long alive_kib;
} sleepers;

static int sleeper(void *arg) {
    sleepers *s = arg;
    if (++s->started == s->ntasks) {
        s->start_secs = now() - s->t0;
        ll_loop_get_stats(ll_loop_current(), &s->alive);
        s->alive_kib = status_kib("VmRSS");
    }
    int rc = ll_sleep(s->secs);
    s->finished++;
    return rc;
}

static int sleep_bench(long ntasks, double secs) {
    long base_kib = status_kib("VmRSS");
    ll_loop *loop = ll_loop_new();
    if (!loop) die("ll_loop_new", LL_ENOMEM);
    sleepers s = {.ntasks = ntasks, .secs = secs};
    ll_future **fs = malloc((size_t)ntasks * sizeof *fs);
    if (!fs) die("malloc", LL_ENOMEM);
    s.t0 = now();
    for (long i = 0; i < ntasks; i++)
        if (!(fs[i] = ll_spawn(sleeper, &s))) die("ll_spawn", LL_ENOMEM);
    int rc = ll_loop_run(loop);
    if (rc) die("ll_loop_run", rc);
    double elapsed = now() - s.t0;
    long failed = 0;
    for (long i = 0; i < ntasks; i++) {
        if ((rc = ll_future_code(fs[i])) != 0 && !failed++)
            fprintf(stderr, "bench_core: sleeper %ld: %s\n", i, ll_future_errmsg(fs[i]));
        ll_future_free(fs[i]);
    }
    free(fs);
    if (failed) {
        fprintf(stderr, "bench_core: %ld of %ld sleepers failed\n", failed, ntasks);
        return 1;
    }
    if (s.alive.tasks < (size_t)ntasks) {
        fprintf(stderr, "bench_core: only %zu of %ld sleepers were alive at once (starting them "
                        "took %.2f s): sleep longer\n", s.alive.tasks, ntasks, s.start_secs);
        return 1;
    }
    printf("runtime=libloop workload=sleep tasks=%ld secs=%g peak_kib=%ld base_kib=%ld "
           "alive_kib=%ld alive_tasks=%zu start_secs=%.3f elapsed=%.3f guarded=%zu "
           "unguarded=%zu\n",
           ntasks, secs, status_kib("VmHWM"), base_kib, s.alive_kib, s.alive.tasks, s.start_secs,
           elapsed, s.alive.stacks_guarded, s.alive.stacks_unguarded);
    return ll_loop_free(loop) ? 1 : 0;
}

/* ---- the page floor under (d)'s start ---- */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define PAGE_STRIDE (128 * 1024) /* the default task stack size */
#define POPULATE_BATCH 64        /* stacks per unguarded slab (libloop/stack.c) */

/* Seconds to write one byte to each of n fresh pages PAGE_STRIDE apart (the top of each stride,
 * where a task record sits), populating them first in batches when `populate`. */
static double first_writes(long n, int populate) {
    size_t len = (size_t)n * PAGE_STRIDE;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) die("mmap", LL_ENOMEM);
    long page = sysconf(_SC_PAGESIZE);
    double t0 = now();
    int pidfd = -1;
#if defined(SYS_process_madvise) && defined(SYS_pidfd_open)
    if (populate) pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
#endif
    for (long i = 0; i < n; i += POPULATE_BATCH) {
        long k = n - i < POPULATE_BATCH ? n - i : POPULATE_BATCH;
        if (pidfd >= 0) {
            struct iovec iov[POPULATE_BATCH];
            for (long j = 0; j < k; j++) {
                iov[j].iov_base = p + (size_t)(i + j + 1) * PAGE_STRIDE - (size_t)page;
                iov[j].iov_len = (size_t)page;
            }
#if defined(SYS_process_madvise)
            syscall(SYS_process_madvise, pidfd, iov, (size_t)k, MADV_POPULATE_WRITE, 0);
#endif
        }
        for (long j = 0; j < k; j++) p[(size_t)(i + j + 1) * PAGE_STRIDE - 64] = 1;
    }
    double secs = now() - t0;
    if (pidfd >= 0) close(pidfd);
    munmap(p, len);
    return secs;
}

static int pages_bench(long n) {
    double touch = first_writes(n, 0);
    double populated = first_writes(n, 1);
    printf("runtime=floor workload=pages pages=%ld touch_secs=%.3f populate_secs=%.3f "
           "secs=%.3f\n", n, touch, populated, touch < populated ? touch : populated);
    return 0;
}

int main(int argc, char **argv) {
    const char *w = argc > 1 ? argv[1] : "";
    long n = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    if (strcmp(w, "future") == 0) return throughput("future", future_work, 1000, n);
    if (strcmp(w, "spawn") == 0) return throughput("spawn", spawn_work, BATCH, n);
    if (strcmp(w, "switch") == 0) return throughput("switch", switch_work, 1000, n);
    if (strcmp(w, "sleep") == 0) {
        n = argc > 2 ? n : 100000;
        double secs = argc > 3 ? strtod(argv[3], NULL) : 1.0;
        if (n <= 0 || !(secs > 0)) {
            fprintf(stderr, "bench_core: sleep: bad task count or duration\n");
            return 2;
        }
        return sleep_bench(n, secs);
    }
    if (strcmp(w, "pages") == 0) return pages_bench(argc > 2 && n > 0 ? n : 100000);
    fprintf(stderr, "usage: bench_core future|spawn|switch [N] | sleep [tasks [seconds]] | "
                    "pages [N]\n");
    return 2;
}
