/*
 * redis.c — the demo's Redis section: a few thousand tasks sharing one auto-pipelined connection
 * (live rate on a terminal, then a latency summary), a pub/sub fan-in from many publishers to one
 * subscriber, and a burst of commands cancelled at random moments followed by a check that no
 * reply reached the wrong caller. Without a URL it starts a throwaway redis-server (the test
 * suite's harness).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libloop.h>
#include <libloop/redis.h>
#include "harness/redisserver.h"
#include "demo/latency.h"
#include "demo/sections.h"

typedef struct {
    ll_redis_conn *c;
    int id, rounds;
    double *lat;             /* one latency per command */
    long *done, *wrong;
} rjob;

static int rworker(void *arg) {
    rjob *j = arg;
    char key[32], val[32];
    snprintf(key, sizeof key, "demo:%d", j->id);
    for (int i = 0; i < j->rounds; i++) {
        snprintf(val, sizeof val, "%d-%d", j->id, i);
        ll_time t0 = ll_now();
        ll_future *s = ll_redis_commandf(j->c, "SET %s %s", key, val);
        ll_future *g = ll_redis_commandf(j->c, "GET %s", key);
        int rc = ll_await(s) | ll_await(g);
        const char *got;
        size_t n;
        if (rc || ll_redis_reply_string(ll_redis_reply_of(g), &got, &n) || strcmp(got, val)) (*j->wrong)++;
        j->lat[i] = ll_now() - t0;
        ll_future_free(s);
        ll_future_free(g);
        (*j->done) += 2;
    }
    return 0;
}

static int pipelined(ll_redis_conn *c) {
    enum { TASKS = 3000, ROUNDS = 20 };
    printf("== Redis: %d tasks sharing one auto-pipelined connection, %d SET+GET each\n", TASKS,
           ROUNDS);
    rjob *jobs = calloc(TASKS, sizeof *jobs);
    double *lat = calloc((size_t)TASKS * ROUNDS, sizeof *lat);
    ll_future **fs = calloc(TASKS, sizeof *fs);
    long done = 0, wrong = 0;
    if (!jobs || !lat || !fs) return LL_ENOMEM;
    bool tty = isatty(1);
    ll_time t0 = ll_now();
    for (int i = 0; i < TASKS; i++) {
        jobs[i] = (rjob){c, i, ROUNDS, lat + (size_t)i * ROUNDS, &done, &wrong};
        fs[i] = ll_spawn(rworker, &jobs[i]);
    }
    ll_future *all = ll_gather(fs, TASKS, LL_GATHER_COLLECT);
    while (!ll_future_done(all)) {
        ll_future *sh = ll_shield(all); /* wait a moment without cancelling the gather */
        ll_await_timeout(sh, 0.25);
        ll_future_free(sh);
        if (tty) printf("\r   %ld commands, %.0f/s   ", done, done / (ll_now() - t0));
        fflush(stdout);
    }
    double took = ll_now() - t0;
    ll_future_free(all);
    for (int i = 0; i < TASKS; i++) ll_future_free(fs[i]);
    printf("%s   %ld commands in %.2f s = %.0f/s; wrong replies: %ld; per SET+GET pair:\n",
           tty ? "\r" : "", done, took, done / took, wrong);
    demo_latency_report("   ", lat, (size_t)TASKS * ROUNDS);
    free(jobs);
    free(lat);
    free(fs);
    return wrong ? LL_EIO : 0;
}

typedef struct {
    ll_redis_conn *c;
    int id, n;
} pubjob;

static int publisher(void *arg) {
    pubjob *p = arg;
    for (int i = 0; i < p->n; i++) {
        ll_future *f = ll_redis_commandf(p->c, "PUBLISH demo:fanin %d:%d", p->id, i);
        ll_await(f);
        ll_future_free(f);
    }
    return 0;
}

static int fanin(const char *url, ll_redis_conn *c) {
    enum { PUBS = 50, EACH = 40 };
    printf("== Redis pub/sub: %d publishers -> one subscriber\n", PUBS);
    ll_future *sf = ll_redis_sub_connect(url, NULL, 0);
    if (ll_await(sf)) {
        printf("   subscriber: %s\n", ll_future_errmsg(sf));
        ll_future_free(sf);
        return LL_EIO;
    }
    ll_redis_sub *s = ll_future_take(sf);
    ll_future_free(sf);
    ll_future *f = ll_redis_subscribe(s, "demo:fanin");
    ll_await(f);
    ll_future_free(f);
    pubjob jobs[PUBS];
    ll_future *fs[PUBS];
    ll_time t0 = ll_now();
    for (int i = 0; i < PUBS; i++) {
        jobs[i] = (pubjob){c, i, EACH};
        fs[i] = ll_spawn(publisher, &jobs[i]);
    }
    int next[PUBS] = {0}, got = 0, order_ok = 1;
    while (got < PUBS * EACH) {
        ll_future *m = ll_redis_sub_next(s);
        if (ll_await_timeout(m, 5.0)) {
            ll_future_free(m);
            break;
        }
        ll_redis_message *msg = ll_redis_message_of(m);
        int p, k;
        if (msg && sscanf(msg->data, "%d:%d", &p, &k) == 2 && p >= 0 && p < PUBS) {
            if (k != next[p]) order_ok = 0; /* each publisher's messages arrive in its order */
            next[p] = k + 1;
            got++;
        }
        ll_future_free(m);
    }
    double took = ll_now() - t0;
    for (int i = 0; i < PUBS; i++) {
        ll_await(fs[i]);
        ll_future_free(fs[i]);
    }
    printf("   %d of %d messages in %.2f s (%.0f/s), each publisher's in order: %s, dropped: %llu\n",
           got, PUBS * EACH, took, got / took, order_ok ? "yes" : "NO",
           (unsigned long long)ll_redis_sub_dropped(s));
    ll_redis_sub_close(s);
    return got == PUBS * EACH && order_ok ? 0 : LL_EIO;
}

typedef struct {
    ll_redis_conn *c;
    int id;
    long *cancelled, *ok, *wrong;
} cjob;

static int canceller(void *arg) {
    cjob *j = arg;
    char key[32], want[32];
    snprintf(key, sizeof key, "demo:c%d", j->id);
    snprintf(want, sizeof want, "mine-%d", j->id);
    unsigned seed = (unsigned)j->id + 17;
    for (int i = 0; i < 40; i++) {
        ll_future *g = ll_redis_commandf(j->c, "GET %s", key);
        int rc;
        if (rand_r(&seed) % 2) rc = ll_await_timeout(g, 0.0001 * (rand_r(&seed) % 20));
        else rc = ll_await(g);
        const char *s;
        size_t n;
        if (rc == 0) {
            (*j->ok)++;
            if (ll_redis_reply_string(ll_redis_reply_of(g), &s, &n) || strcmp(s, want)) (*j->wrong)++;
        } else {
            (*j->cancelled)++;
        }
        ll_future_free(g);
    }
    return 0;
}

static int cancel_burst(ll_redis_conn *c) {
    enum { N = 500 };
    printf("== Redis: %d tasks reading their own key, giving up at random moments\n", N);
    for (int i = 0; i < N; i++) ll_future_free(ll_redis_commandf(c, "SET demo:c%d mine-%d", i, i));
    long cancelled = 0, ok = 0, wrong = 0;
    cjob *jobs = calloc(N, sizeof *jobs);
    ll_future **fs = calloc(N, sizeof *fs);
    for (int i = 0; i < N; i++) {
        jobs[i] = (cjob){c, i, &cancelled, &ok, &wrong};
        fs[i] = ll_spawn(canceller, &jobs[i]);
    }
    ll_future *all = ll_gather(fs, N, LL_GATHER_COLLECT);
    ll_await(all);
    ll_future_free(all);
    for (int i = 0; i < N; i++) ll_future_free(fs[i]);
    ll_redis_stats st;
    ll_redis_get_stats(c, &st);
    printf("   %ld cancelled or timed out, %ld answered; replies that reached the wrong caller: %ld "
           "(%llu abandoned replies read and dropped, reconnects: %llu)\n", cancelled, ok, wrong,
           (unsigned long long)st.discarded, (unsigned long long)st.reconnects);
    free(jobs);
    free(fs);
    return wrong ? LL_EIO : 0;
}

int demo_redis(const char *url) {
    lt_redis srv;
    memset(&srv, 0, sizeof srv);
    if (!url) url = getenv("LL_REDIS_URL");
    if (!url) {
        if (!lt_redis_start(&srv)) {
            printf("== Redis: skipped (no redis-server to start; give --redis URL)\n\n");
            return 0;
        }
        url = srv.url;
    }
    int rc;
    ll_future *f = ll_redis_connect(url, NULL);
    if ((rc = ll_await(f))) {
        printf("== Redis: %s\n", ll_future_errmsg(f));
        ll_future_free(f);
        if (srv.pid) lt_redis_stop(&srv);
        return rc;
    }
    ll_redis_conn *c = ll_future_take(f);
    ll_future_free(f);
    rc = pipelined(c);
    if (rc == 0) rc = fanin(url, c);
    if (rc == 0) rc = cancel_burst(c);
    printf("\n");
    ll_redis_close(c);
    if (srv.pid) lt_redis_stop(&srv);
    return rc;
}
