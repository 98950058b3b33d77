/*
 * test_redis_alloc.c — every allocation of the client failing in turn: connect and setup,
 * pipelined commands (one failing on the server, one cancelled), a transaction, a script, a
 * subscriber, a pool with its cache. Each failure must end as an error (never a crash, never a
 * hang), and nothing allocated through libloop's hook may be left once the loop is freed.
 * (hiredis's own buffers come from malloc and are not counted here: valgrind and ASan check them.)
 */
#include "redistest.h"

static void drain(ll_future *f) {
    (void)ll_await_timeout(f, 2.0);
    (void)ll_redis_reply_of(f);
    ll_future_free(f);
}

static int workload(void *arg) {
    long *n = arg;
    lt_fail_after(*n);
    ll_redis_opts o = {.client_name = "alloc", .queue_timeout = 0.3, .connect_timeout = 2,
                       .backoff_initial = 0.01, .backoff_max = 0.02};
    ll_future *cf = ll_redis_connect(rt_server.url, &o);
    ll_redis_conn *c = ll_await(cf) == 0 ? ll_future_take(cf) : NULL;
    ll_future_free(cf);
    if (c) {
        ll_future *q[4];
        q[0] = ll_redis_commandf(c, "SET a %s", "1");
        q[1] = ll_redis_commandf(c, "LPUSH a x");
        q[2] = ll_redis_commandf(c, "GET a");
        q[3] = ll_redis_commandf(c, "DEBUG SLEEP 0.05");
        ll_future_cancel(q[3]);
        for (int i = 0; i < 4; i++) drain(q[i]);
        ll_redis_tx *tx = ll_redis_tx_new();
        if (tx) {
            ll_redis_tx_addf(tx, "INCR n");
            ll_redis_tx_addf(tx, "GET n");
            drain(ll_redis_tx_exec(c, tx));
            ll_redis_tx_free(tx);
        }
        ll_redis_script *s = ll_redis_script_new("return ARGV[1]");
        if (s) {
            const char *args[] = {"x"};
            drain(ll_redis_script_run(c, s, 0, NULL, 1, args));
            ll_redis_script_free(s);
        }
        ll_redis_close(c);
    }
    ll_future *sf = ll_redis_sub_connect(rt_server.url, &o, 4);
    ll_redis_sub *sub = ll_await(sf) == 0 ? ll_future_take(sf) : NULL;
    ll_future_free(sf);
    if (sub) {
        drain(ll_redis_subscribe(sub, "ch"));
        ll_redis_close(NULL);
        ll_redis_sub_close(sub);
    }
    ll_redis_pool_opts po = {.client_cache = true, .acquire_timeout = 0.5};
    ll_redis_pool *p = ll_redis_pool_new(rt_server.url, &o, &po);
    if (p) {
        drain(ll_redis_commandf(ll_redis_pool_conn(p), "PING"));
        drain(ll_redis_cached_get(p, "a"));
        ll_future *a = ll_redis_pool_acquire(p);
        if (ll_await(a) == 0) {
            ll_redis_conn *x = ll_future_value(a);
            drain(ll_redis_commandf(x, "PING"));
            ll_redis_pool_release(p, x);
        }
        ll_future_free(a);
        ll_redis_pool_free(p);
    }
    lt_fail_reset();
    rt_settle();
    return 0;
}

static void test_alloc_failures(void **state) {
    (void)state;
    long step = (lt_under_valgrind() || lt_under_asan()) ? 13 : 1;
    if (getenv("RT_STEP")) step = atol(getenv("RT_STEP"));
    long n;
    n = getenv("RT_FROM") ? atol(getenv("RT_FROM")) : 0;
    for (; n < 5000; n += step) {
        lt_track_begin();
        lt_ctx t;
        lt_setup(&t);
        ll_spawn_opts so = {.loop = t.loop};
        ll_future *f = ll_spawn_ex(workload, &n, &so);
        if (f && getenv("RT_DUMP")) {
            ll_future *w = ll_wait(&f, 1, LL_WAIT_ALL_COMPLETED, 3.0);
            ll_loop_run_until(t.loop, w);
            ll_future_free(w);
            if (!ll_future_done(f)) ll_loop_dump_tasks(t.loop, stderr);
        }
        if (f) ll_loop_run_until(t.loop, f);
        ll_future_free(f);
        lt_fail_reset();
        long used = lt_alloc_count();
        lt_teardown(&t);
        long leaked = lt_track_end();
        if (leaked) fprintf(stderr, "failing allocation %ld: %ld allocations leaked\n", n, leaked);
        assert_int_equal(leaked, 0);
        if (getenv("RT_VERBOSE")) fprintf(stderr, "step %ld: %ld allocations\n", n, used);
        if (used < n) break; /* the whole workload ran without reaching a failure */
    }
    assert_true(n > 50);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_alloc_failures)};
    return RT_RUN(tests);
}
