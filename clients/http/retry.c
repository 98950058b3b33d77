/*
 * retry.c — the retry policy's arithmetic: which statuses are retried, how long to wait (exponential
 * backoff with jitter, Retry-After).
 *
 * Design notes:
 * - Jitter is "equal jitter": the wait for retry n is d/2 + uniform(0, d/2) with
 *   d = min(backoff * 2^(n-1), max_backoff), so many clients that failed together spread out yet
 *   none retries at once (full jitter can pick ~0).
 * - Retry-After (RFC 9110 10.2.3) is either delay-seconds or an HTTP-date. A server that asks for
 *   a longer wait than the backoff gets it; one that asks for more than max_retry_after ends the
 *   retries (its answer stands), since sleeping minutes inside a request is rarely what the caller
 *   wants. A malformed value is ignored (the backoff applies).
 * - The random numbers need no quality beyond spreading clients: a xorshift seeded per thread.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "http_internal.h"

static const int default_statuses[] = {429, 502, 503, 504, 0};

bool ll__http_retry_status(const ll__http_req *q, int status) {
    const int *v = q->retry.statuses ? q->retry.statuses : default_statuses;
    for (; *v; v++)
        if (*v == status) return true;
    return false;
}

static double uniform(void) {
    static _Thread_local uint64_t x;
    if (!x) x = (uint64_t)(ll_now() * 1e9) ^ (uint64_t)(uintptr_t)&x ^ 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return (double)(x >> 11) / (double)(1ull << 53);
}

/* Seconds from now asked by a Retry-After value, or < 0 when malformed. */
static double retry_after_seconds(const char *v, double now) {
    while (*v == ' ') v++;
    if (*v >= '0' && *v <= '9') {
        char *end;
        double d = strtod(v, &end);
        while (*end == ' ') end++;
        return *end ? -1 : d;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *e = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!e) return -1;
    double d = (double)timegm(&tm) - now;
    return d < 0 ? 0 : d;
}

double ll__http_retry_wait(const ll_http_retry *p, unsigned n, const char *retry_after,
                           double now) {
    double d = p->backoff;
    for (unsigned i = 1; i < n && d < p->max_backoff; i++) d *= 2;
    if (d > p->max_backoff) d = p->max_backoff;
    d = d / 2 + uniform() * d / 2;
    if (retry_after) {
        double ra = retry_after_seconds(retry_after, now);
        if (ra > p->max_retry_after) return -1;
        if (ra > d) d = ra;
    }
    return d;
}
