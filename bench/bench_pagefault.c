/*
 * bench_pagefault.c — what one fresh page costs on this machine, the floor under bench-core's
 * "start 100,000 sleeping tasks": every task needs exactly one page of its own (the top of its
 * stack), so starting N tasks costs at least N first touches of a fresh page.
 *
 *   bench_pagefault [N]   N pages (100,000), one per 128 KiB like task stacks, three ways:
 *     touch      write one byte to each fresh page (a page fault each)
 *     populate   process_madvise(MADV_POPULATE_WRITE) over all of them in batches of 1,024 (what
 *                libloop/stack.c does for a new slab's task-header pages), then the first write
 *     retouch    write to each page again (resident: the cost of the write itself)
 *
 * Each way runs 3 times on a fresh mapping; the best run is printed, in microseconds per page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define STRIDE (128 * 1024)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *fresh(size_t n) {
    char *p = mmap(NULL, n * STRIDE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        perror("bench_pagefault: mmap");
        exit(1);
    }
    return p;
}

static double touch(char *p, size_t n, int v) {
    double t0 = now();
    for (size_t i = 0; i < n; i++) p[i * STRIDE + STRIDE - 64] = (char)v;
    return now() - t0;
}

static double populate(char *p, size_t n) {
#if defined(SYS_process_madvise) && defined(SYS_pidfd_open)
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    struct iovec iov[1024];
    double t0 = now();
    for (size_t done = 0; done < n;) {
        size_t k = 0;
        for (; k < 1024 && done + k < n; k++) {
            iov[k].iov_base = p + (done + k) * STRIDE + STRIDE - 4096;
            iov[k].iov_len = 4096;
        }
        if (pidfd < 0 || syscall(SYS_process_madvise, pidfd, iov, k, MADV_POPULATE_WRITE, 0) < 0) {
            perror("bench_pagefault: process_madvise(MADV_POPULATE_WRITE)");
            exit(1);
        }
        done += k;
    }
    double t = now() - t0;
    close(pidfd);
    return t;
#else
    (void)p, (void)n;
    fprintf(stderr, "bench_pagefault: no process_madvise on this system\n");
    exit(1);
#endif
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    if (n == 0) return 2;
    double best_touch = 1e9, best_pop = 1e9, best_pop_touch = 1e9, best_retouch = 1e9;
    for (int r = 0; r < 3; r++) {
        char *p = fresh(n);
        double t = touch(p, n, 1);
        if (t < best_touch) best_touch = t;
        t = touch(p, n, 2);
        if (t < best_retouch) best_retouch = t;
        munmap(p, n * STRIDE);
        p = fresh(n);
        double a = populate(p, n), b = touch(p, n, 1);
        if (a + b < best_pop + best_pop_touch) {
            best_pop = a;
            best_pop_touch = b;
        }
        munmap(p, n * STRIDE);
    }
    double us = 1e6 / (double)n;
    printf("pages=%zu touch_us=%.2f populate_us=%.2f populate_then_touch_us=%.2f retouch_us=%.3f\n",
           n, best_touch * us, best_pop * us, best_pop_touch * us, best_retouch * us);
    return 0;
}
