/*
 * test_redis_pool.c — the pool and the client-side cache against a real redis-server: shared
 * connections pipeline every task's commands; exclusive connections for BLPOP and WATCH are reset
 * on release (their settings survive the RESET); one with a reply still owed is closed; the cache
 * serves hits, never returns a value older than a delivered invalidation, and is flushed when its
 * tracking connection is lost.
 */
#include "redistest.h"

static int t_pool(void *arg) {
    (void)arg;
    ll_redis_opts o = {.db = 5, .client_name = "pooled"};
    ll_redis_pool_opts po = {.max_exclusive = 2};
    ll_redis_pool *p = ll_redis_pool_new(rt_server.url, &o, &po);
    LT_CHECK(p);
    ll_redis_conn *shared = ll_redis_pool_conn(p);
    LT_CHECK(shared);
    ll_future *f = rt_cmd(shared, "DEL q");
    LT_CHECK(ll_future_code(f) == 0);
    ll_future_free(f);

    /* BLPOP on an exclusive connection while the shared one keeps working */
    ll_future *a = ll_redis_pool_acquire(p);
    LT_CHECK(ll_await(a) == 0);
    ll_redis_conn *x = ll_future_value(a);
    ll_future_free(a);
    ll_future *blpop = ll_redis_commandf(x, "BLPOP q 5");
    ll_sleep(0.05);
    f = rt_cmd(shared, "RPUSH q item");
    LT_CHECK(rt_int(f) >= 0);
    ll_future_free(f);
    LT_CHECK(ll_await(blpop) == 0);
    const char *s;
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_element(ll_redis_reply_of(blpop), 1), &s, NULL) == 0 &&
             !strcmp(s, "item"));
    ll_future_free(blpop);
    /* dirty it: WATCH, MULTI, another db; release resets it */
    LT_CHECK(rt_ok(x, "WATCH %s", "q"));
    LT_CHECK(rt_ok(x, "SELECT %s", "9"));
    LT_CHECK(rt_ok(x, "MULTI", NULL));
    LT_CHECK(ll_redis_pool_release(p, x) == 0);
    a = ll_redis_pool_acquire(p);
    LT_CHECK(ll_await(a) == 0);
    ll_redis_conn *y = ll_future_value(a);
    ll_future_free(a);
    LT_CHECK(y == x); /* reused after the reset */
    f = rt_cmd(y, "CLIENT INFO");
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_of(f), &s, NULL) == 0 && strstr(s, " db=5 ") &&
             strstr(s, "name=pooled") && strstr(s, "multi=-1"));
    ll_future_free(f);
    /* the WATCH is gone: a change to q does not abort a transaction */
    f = rt_cmd(shared, "SET q changed");
    ll_future_free(f);
    ll_redis_tx *tx = ll_redis_tx_new();
    ll_redis_tx_addf(tx, "PING");
    f = ll_redis_tx_exec(y, tx);
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    ll_redis_tx_free(tx);
    /* an abandoned BLPOP: its reply is still owed, so the connection is closed, not reused */
    ll_future *b = ll_redis_commandf(y, "BLPOP nothing 5");
    LT_CHECK(ll_await_timeout(b, 0.05) == LL_ETIMEDOUT);
    ll_future_free(b);
    LT_CHECK(ll_redis_pool_release(p, y) == 0);
    a = ll_redis_pool_acquire(p);
    LT_CHECK(ll_await(a) == 0);
    ll_redis_conn *z = ll_future_value(a);
    ll_future_free(a);
    f = rt_cmd(z, "PING");
    LT_CHECK(rt_str_is(f, "PONG"));
    ll_future_free(f);
    /* the limit: both lent, a third waits and times out */
    ll_future *a2 = ll_redis_pool_acquire(p);
    LT_CHECK(ll_await(a2) == 0);
    ll_future *a3 = ll_redis_pool_acquire(p);
    LT_CHECK(ll_await_timeout(a3, 0.1) == LL_ETIMEDOUT);
    ll_future_free(a3);
    ll_redis_pool_release(p, ll_future_value(a2));
    ll_future_free(a2);
    ll_redis_pool_release(p, z);
    ll_redis_pool_free(p);
    rt_settle();
    return 0;
}
RT_TEST(test_pool, t_pool)

/* Inside a task: wait until the cache is enabled (tracking on), at most 10 s. */
static bool cache_ready(ll_redis_pool *p) {
    ll_redis_cache_stats st;
    for (int i = 0; i < 1000; i++) {
        ll_redis_cache_get_stats(p, &st);
        if (st.enabled) return true;
        ll_sleep(0.01);
    }
    return false;
}

static bool cached_is(ll_redis_pool *p, const char *key, const char *field, const char *want) {
    ll_future *f = field ? ll_redis_cached_hget(p, key, field) : ll_redis_cached_get(p, key);
    bool ok = ll_await(f) == 0 && rt_str_is(f, want);
    ll_future_free(f);
    return ok;
}

static int t_cache(void *arg) {
    (void)arg;
    ll_redis_pool_opts po = {.client_cache = true};
    ll_redis_pool *p = ll_redis_pool_new(rt_server.url, NULL, &po);
    LT_CHECK(p);
    ll_redis_conn *other = rt_connect(); /* another client that writes */
    LT_CHECK(other);
    LT_CHECK(rt_ok(other, "SET ck %s", "v0"));
    LT_CHECK(rt_ok(other, "HSET ch f %s", "h0"));
    LT_CHECK(cache_ready(p));
    ll_redis_cache_stats st0, st;
    ll_redis_cache_get_stats(p, &st0);
    LT_CHECK(cached_is(p, "ck", NULL, "v0"));
    LT_CHECK(cached_is(p, "ck", NULL, "v0"));
    LT_CHECK(cached_is(p, "ch", "f", "h0"));
    LT_CHECK(cached_is(p, "ch", "f", "h0"));
    ll_redis_cache_get_stats(p, &st);
    LT_CHECK(st.hits == st0.hits + 2 && st.misses == st0.misses + 2);

    /* after another client's write, once the invalidation has been delivered, never the old value */
    for (int i = 1; i <= 100; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        ll_redis_cache_get_stats(p, &st0);
        LT_CHECK(rt_ok(other, "SET ck %s", v));
        for (int k = 0; k < 1000; k++) {
            ll_redis_cache_get_stats(p, &st);
            if (st.invalidations > st0.invalidations) break;
            ll_sleep(0.005);
        }
        LT_CHECKF(st.invalidations > st0.invalidations, "round %d: no invalidation", i);
        LT_CHECKF(cached_is(p, "ck", NULL, v), "round %d: stale value", i);
        LT_CHECK(cached_is(p, "ck", NULL, v)); /* cached again */
    }
    ll_redis_cache_get_stats(p, &st);
    LT_CHECK(st.hits >= st0.hits);
    /* HGET entries go with their key */
    LT_CHECK(rt_ok(other, "HSET ch f %s", "h1"));
    for (int k = 0; k < 1000 && !cached_is(p, "ch", "f", "h1"); k++) ll_sleep(0.005);
    LT_CHECK(cached_is(p, "ch", "f", "h1"));

    /* losing the tracking connection flushes the cache; reads go to the server meanwhile */
    ll_redis_cache_get_stats(p, &st0);
    LT_CHECK(st0.entries > 0 && st0.tracking_client_id > 0);
    char kill[64];
    snprintf(kill, sizeof kill, "CLIENT KILL ID %lld", st0.tracking_client_id);
    ll_future *f = rt_cmd(other, kill);
    LT_CHECK(ll_future_code(f) == 0);
    ll_future_free(f);
    for (int k = 0; k < 1000; k++) {
        ll_redis_cache_get_stats(p, &st);
        if (st.flushes > st0.flushes) break;
        ll_sleep(0.005);
    }
    LT_CHECK(st.flushes > st0.flushes);
    LT_CHECK(rt_ok(other, "SET ck %s", "while-down"));
    LT_CHECK(cached_is(p, "ck", NULL, "while-down"));
    /* and it comes back with the new tracking connection */
    LT_CHECK(cache_ready(p));
    ll_redis_cache_get_stats(p, &st);
    LT_CHECK(st.tracking_client_id != st0.tracking_client_id);
    LT_CHECK(cached_is(p, "ck", NULL, "while-down"));
    LT_CHECK(rt_ok(other, "SET ck %s", "new"));
    for (int k = 0; k < 1000 && !cached_is(p, "ck", NULL, "new"); k++) ll_sleep(0.005);
    LT_CHECK(cached_is(p, "ck", NULL, "new"));

    ll_redis_close(other);
    ll_redis_pool_free(p);
    rt_settle();
    return 0;
}
RT_TEST(test_cache, t_cache)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_cache),
    };
    return RT_RUN(tests);
}
