/*
 * latency.c — percentiles and a terminal histogram of request latencies for the demo's sections.
 *
 * Buckets are 1-2-5 steps (0.1, 0.2, 0.5, 1, 2, 5 ms, ...): latencies spread over orders of
 * magnitude, and round bucket edges read at a glance. The bars are scaled to the fullest bucket.
 */
#include <stdio.h>
#include <stdlib.h>
#include "demo/latency.h"

#define BAR_WIDTH 40
#define MAX_BUCKETS 16

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The next 1-2-5 edge after e (1 -> 2 -> 5 -> 10 ...), without libm. */
static double edge_next(double e) {
    double p = 1e-3; /* the power of ten at or below e */
    while (p * 10 <= e * (1 + 1e-9)) p *= 10;
    double m = e / p;
    return m < 1.5 ? 2 * p : m < 3.5 ? 5 * p : 10 * p;
}

static void print_ms(char *buf, size_t n, double ms) {
    if (ms < 1) snprintf(buf, n, "%g", ms);
    else snprintf(buf, n, "%.0f", ms);
}

void demo_latency_report(const char *indent, double *lat, size_t n) {
    if (n == 0) return;
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("%slatency: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n", indent,
           lat[n / 2] * 1e3, lat[n * 9 / 10] * 1e3, lat[n * 99 / 100] * 1e3, lat[n - 1] * 1e3);
    double lo = 1e-3, hi = lat[n - 1] * 1e3; /* ms; the first edge is the 1-2-5 step at or
                                               * below the fastest request */
    while (edge_next(lo) <= lat[0] * 1e3) lo = edge_next(lo);
    double edges[MAX_BUCKETS + 1];
    size_t nb = 0;
    edges[0] = lo;
    while (nb < MAX_BUCKETS && edges[nb] <= hi) {
        edges[nb + 1] = edge_next(edges[nb]);
        nb++;
    }
    size_t count[MAX_BUCKETS] = {0}, most = 1;
    for (size_t i = 0, b = 0; i < n; i++) {
        double ms = lat[i] * 1e3;
        while (b + 1 < nb && ms >= edges[b + 1]) b++; /* lat is sorted: buckets only move up */
        count[b]++;
    }
    for (size_t b = 0; b < nb; b++)
        if (count[b] > most) most = count[b];
    for (size_t b = 0; b < nb; b++) {
        if (!count[b]) continue; /* the gap shows in the labels; keep the picture small */
        char from[16], to[16];
        print_ms(from, sizeof from, edges[b]);
        print_ms(to, sizeof to, edges[b + 1]);
        int len = (int)((count[b] * BAR_WIDTH + most - 1) / most);
        printf("%s  %6s-%-5s ms |%.*s%*s %zu\n", indent, from, to, len,
               "########################################", BAR_WIDTH - len, "", count[b]);
    }
}
