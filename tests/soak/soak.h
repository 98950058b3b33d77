/*
 * soak.h — what the soak's parts share (tests/soak/; `make soak SOAK_SECONDS=N`).
 *
 * One process, one loop: mixed load through every client at once (PostgreSQL queries through the
 * pool, pipelined Redis commands, HTTP fan-out, SMTP mail) against the test harness's throwaway
 * servers, each behind its own fault proxy, while an injector task changes the faults every few
 * seconds and restarts PostgreSQL or Redis now and then. Every operation runs under a deadline and
 * is recorded here (load.c); soak.c samples RSS and descriptors, checks, and reports.
 */
#ifndef LL_SOAK_H
#define LL_SOAK_H

#include <stdbool.h>
#include <stddef.h>
#include <libloop.h>
#include "harness/faultproxy.h"

enum { C_PG, C_REDIS, C_HTTP, C_SMTP, NCLIENT };
extern const char *const soak_client_name[NCLIENT];

/* An outcome that is no libloop code: the call succeeded but the answer was wrong, or an SMTP
 * recipient was deferred (a transient answer, retries used up). */
#define SOAK_WRONG 1
#define SOAK_DEFERRED 2

/* Control back within this much past an operation's deadline counts as on time. The promise aims
 * at 50 ms on an idle loop; the machine running the soak is shared and loaded, and the injector's
 * restarts block a worker thread, not the loop, so 0.5 s is generous and still catches a hang. */
#define SOAK_SLACK 0.5

typedef struct {
    int code;
    long count;
    char example[160]; /* the first message seen with this code */
} soak_err;

typedef struct {
    long ok, failed, late, unclear;
    soak_err errs[24];
    int nerr;
    double max_latency, max_over; /* seconds; max_over: latest return past a deadline */
    char late_example[200];
} soak_stats;

/* One running operation per worker slot (for the stuck check). */
typedef struct {
    int client;
    ll_time started; /* 0 when idle */
    double deadline; /* seconds */
} soak_slot;

enum { MAX_SLOTS = 64 };

typedef struct {
    /* servers, behind these proxies */
    lt_proxy *proxy[NCLIENT];
    char pg_conninfo[256], redis_url[96], http_base[96], smtp_url[96], smtp_ca[320];
    void *pg_server, *redis_server; /* lt_pg *, lt_redis * (restarted by the injector) */
    double seconds;
    volatile bool stop;
    soak_stats st[NCLIENT];
    long done_total[NCLIENT]; /* completed operations, for the per-second rates */
    soak_slot slot[MAX_SLOTS];
    int nslots;
    long stuck_seen;           /* operations seen running past deadline + 4 x slack */
    char stuck_example[200];
    long faults[NCLIENT][LT_FAULT_BLACKHOLE + 1];
    long restarts[NCLIENT];
    long restart_failed;
} soak_state;

extern soak_state S;

/* Record one finished operation: client, when it started, its deadline in seconds, its code and
 * message (NULL when code is 0). */
void soak_record(int client, ll_time t0, double deadline, int code, const char *msg);
/* The load: spawn every worker and the injector; they run until S.stop. Returns their futures
 * (count in *n), to be awaited by the caller. */
ll_future **soak_start_load(size_t *n);
/* Called by the injector at the end of each clean period, just before the next fault: descriptors
 * are counted there (the process's own: the in-process proxies' two per connection are taken off),
 * as a fault holds connections open on purpose. */
void soak_quiet_sample(void);
/* After the workers have finished: close every client. */
void soak_stop_load(void);

#endif
