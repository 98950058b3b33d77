/*
 * latency.h — the demo's latency report, shared by its sections: percentiles and, beside them, a
 * small terminal histogram of the distribution (a p99 says how bad the tail is; the histogram shows
 * whether it is one slow request or a second hump).
 */
#ifndef LL_DEMO_LATENCY_H
#define LL_DEMO_LATENCY_H

#include <stddef.h>

/* Sort `lat` (n latencies in seconds) and print, each line starting with `indent`:
 *    latency: p50 0.84 ms, p90 1.92 ms, p99 4.10 ms, max 12.31 ms
 *      0.5-1 ms  |########################################  1712
 *        1-2 ms  |##################                         771
 *    ...
 * Buckets follow the 1-2-5 series from the fastest to the slowest request; empty ones are left out.
 * Nothing for n == 0. */
void demo_latency_report(const char *indent, double *lat, size_t n);

#endif
