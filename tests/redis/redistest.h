/*
 * redistest.h — what the Redis test programs share (header-only, static): the server started once
 * per program by the group setup, and small helpers used inside tasks (checks with LT_CHECK).
 */
#ifndef LL_TEST_REDISTEST_H
#define LL_TEST_REDISTEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "harness/redisserver.h"
#include "libloop/redis.h"

static lt_redis rt_server;

static inline int rt_group_setup(void **state) {
    (void)state;
    return lt_redis_start(&rt_server) ? 0 : -1;
}

static inline int rt_group_teardown(void **state) {
    (void)state;
    lt_redis_stop(&rt_server);
    return 0;
}

/* Inside a task: connect with opts to url (NULL: the test server); NULL on failure (message in
 * lt_last_err). */
static inline ll_redis_conn *rt_connect_opts(const char *url, const ll_redis_opts *o) {
    ll_future *f = ll_redis_connect(url ? url : rt_server.url, o);
    int rc = ll_await(f);
    ll_redis_conn *c = NULL;
    if (rc) snprintf(lt_last_err, sizeof lt_last_err, "connect: %s", ll_future_errmsg(f));
    else c = ll_future_take(f);
    ll_future_free(f);
    return c;
}

static inline ll_redis_conn *rt_connect(void) { return rt_connect_opts(NULL, NULL); }

/* Inside a task: run a command, return its future settled (the caller frees it). */
static inline ll_future *rt_cmd(ll_redis_conn *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ll_future *f = ll_redis_vcommandf(c, fmt, ap);
    va_end(ap);
    ll_await(f);
    if (ll_future_code(f)) snprintf(lt_last_err, sizeof lt_last_err, "%s: %s", fmt, ll_future_errmsg(f));
    return f;
}

/* Inside a task: the reply's string equals want (bulk or status). */
static inline bool rt_str_is(ll_future *f, const char *want) {
    const char *s;
    size_t n;
    if (ll_redis_reply_string(ll_redis_reply_of(f), &s, &n)) return false;
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

static inline bool rt_ok(ll_redis_conn *c, const char *fmt, const char *arg) {
    ll_future *f = rt_cmd(c, fmt, arg);
    bool ok = ll_future_code(f) == 0;
    ll_future_free(f);
    return ok;
}

static inline long long rt_int(ll_future *f) {
    long long v = -999999;
    ll_redis_reply_integer(ll_redis_reply_of(f), &v);
    return v;
}

/* Inside a task: let connection tasks finish closing (at most 5 s). */
static inline void rt_settle(void) {
    ll_loop_stats st;
    for (int i = 0; i < 500; i++) {
        ll_loop_get_stats(ll_loop_current(), &st);
        if (st.handles == 0 && st.tasks <= 1) return;
        ll_sleep(0.01);
    }
}

#define RT_RUN(tests) cmocka_run_group_tests(tests, rt_group_setup, rt_group_teardown)

/* A test body that runs fn as a checked task on a fresh loop and proves the cleanup. */
#define RT_TEST(name, fn)                                 \
    static void name(void **state) {                      \
        (void)state;                                      \
        lt_ctx t;                                         \
        lt_setup(&t);                                     \
        assert_int_equal(lt_run_checked(t.loop, fn, NULL), 0); \
        lt_teardown(&t);                                  \
    }

#endif
