/*
 * test_redis_proxyfaults.c — a real redis-server behind the fault proxy, with several tasks
 * pipelining on one connection and with the pool's exclusive connections, under the *caller's*
 * deadline (task scopes), where test_redis_faults.c covers one command at a time:
 *   - the connection reset in the middle of a pipeline of 8 tasks x 25 commands: each GET returns
 *     its own task's value or fails with LL_EREDIS_CONN ("may or may not have run"); no reply is
 *     ever handed to the wrong command; the connection comes back;
 *   - a frozen server under a task scope, on an exclusive connection from ll_redis_pool_acquire:
 *     control back at the deadline, the connection given back, the pool usable afterwards;
 *   - a 100 KB reply trickling in under a task scope on a shared pool connection: back at the
 *     deadline, and the next command gets its own reply;
 * each asserting the deadline held (within SLACK), that the proxy has no connection left once the
 * pool or connection is closed, that the loop is empty and the descriptor count back
 * (lt_teardown), and that every allocation libloop made was freed (lt_track).
 */
#include "redistest.h"
#include "harness/faultproxy.h"
#include <unistd.h>

#define SLACK ((lt_under_valgrind() || lt_under_asan()) ? 1.0 : 0.3)

static lt_proxy *px;
static char purl[64];

static void run(ll_task_fn fn) {
    lt_proxy_set(px, NULL);
    lt_run_tracked(fn, NULL);
}

static bool proxy_idle(void) {
    for (int i = 0; i < 300 && lt_proxy_open_connections(px); i++) ll_sleep(0.01);
    return lt_proxy_open_connections(px) == 0;
}

/* ---- reset in the middle of a shared pipeline ---- */

typedef struct {
    ll_redis_conn *c;
    int id;
    int ok, lost, wrong;
    char why[160];
} piper;

static int pipe_task(void *arg) {
    piper *p = arg;
    enum { N = 25 };
    ll_future *set[N], *get[N];
    char key[32], val[256];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "pf:%d:%d", p->id, i);
        snprintf(val, sizeof val, "v%d-%d-%0200d", p->id, i, 0); /* ~210 bytes: the cut lands mid-reply */
        set[i] = ll_redis_commandf(p->c, "SET %s %s", key, val);
        get[i] = ll_redis_commandf(p->c, "GET %s", key);
    }
    for (int i = 0; i < N; i++) {
        int rs = ll_await(set[i]), rg = ll_await(get[i]);
        if (rg == 0) {
            const char *s;
            size_t n;
            char want[32];
            snprintf(want, sizeof want, "v%d-%d-", p->id, i);
            /* a GET that succeeded returns this task's value for this key (its SET, sent before it
             * on the same connection, ran), never another command's reply */
            if (ll_redis_reply_string(ll_redis_reply_of(get[i]), &s, &n) || n < strlen(want) ||
                memcmp(s, want, strlen(want)) != 0 || rs != 0) {
                p->wrong++;
                snprintf(p->why, sizeof p->why, "GET %d:%d: set %s, got %.*s", p->id, i, ll_err_name(rs),
                         (int)(n < 40 ? n : 40), s ? s : "");
            } else {
                p->ok++;
            }
        } else if (rg == LL_EREDIS_CONN && strstr(ll_future_errmsg(get[i]), "may or may not")) {
            p->lost++;
        } else {
            p->wrong++;
            snprintf(p->why, sizeof p->why, "GET %d:%d: %s %s", p->id, i, ll_err_name(rg),
                     ll_future_errmsg(get[i]));
        }
        ll_future_free(set[i]);
        ll_future_free(get[i]);
    }
    return 0;
}

static int t_reset_pipeline(void *arg) {
    (void)arg;
    ll_redis_opts o = {.backoff_initial = 0.02, .backoff_max = 0.1};
    ll_redis_conn *c = rt_connect_opts(purl, &o);
    LT_CHECKF(c, "%s", lt_last_err);
    ll_future *f = rt_cmd(c, "PING");
    LT_CHECK(rt_str_is(f, "PONG"));
    ll_future_free(f);
    enum { T = 8 };
    piper p[T];
    ll_future *tf[T];
    /* the replies are cut 12 KB in: somewhere in the middle of the 400 replies */
    lt_fault rs = {.kind = LT_FAULT_RESET_AFTER, .dir = 2, .bytes = 12000};
    lt_proxy_set(px, &rs);
    ll_time t0 = ll_now();
    for (int i = 0; i < T; i++) {
        p[i] = (piper){.c = c, .id = i};
        tf[i] = ll_spawn(pipe_task, &p[i]);
    }
    int ok = 0, lost = 0;
    for (int i = 0; i < T; i++) {
        LT_CHECK(ll_await(tf[i]) == 0);
        ll_future_free(tf[i]);
        LT_CHECKF(p[i].wrong == 0, "%s", p[i].why);
        ok += p[i].ok;
        lost += p[i].lost;
    }
    lt_proxy_set(px, NULL);
    LT_CHECK(ll_now() - t0 < 3);
    LT_CHECKF(ok > 0 && lost > 0, "ok %d lost %d", ok, lost);
    /* the connection came back by itself */
    f = rt_cmd(c, "GET pf:0:0");
    LT_CHECKF(ll_future_code(f) == 0, "%s", lt_last_err);
    ll_future_free(f);
    ll_redis_stats st;
    ll_redis_get_stats(c, &st);
    LT_CHECK(st.reconnects >= 1);
    ll_redis_close(c);
    rt_settle();
    LT_CHECK(proxy_idle());
    return 0;
}

static void test_reset_mid_pipeline(void **state) {
    (void)state;
    if (!px) skip();
    run(t_reset_pipeline);
}

/* ---- a frozen server, an exclusive connection, a task scope ---- */

static int t_freeze_exclusive(void *arg) {
    (void)arg;
    ll_redis_opts o = {.abandon_grace = 0.3, .backoff_initial = 0.02, .backoff_max = 0.1};
    ll_redis_pool_opts po = {.max_exclusive = 2};
    ll_redis_pool *pool = ll_redis_pool_new(purl, &o, &po);
    LT_CHECK(pool);
    ll_future *a = ll_redis_pool_acquire(pool);
    LT_CHECKF(ll_await(a) == 0, "%s", ll_future_errmsg(a));
    ll_redis_conn *c = ll_future_value(a);
    lt_fault fz = {.kind = LT_FAULT_FREEZE, .dir = 0};
    lt_proxy_set(px, &fz);
    ll_time t0 = ll_now();
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.4));
    ll_future *f = ll_redis_commandf(c, "INCR frozen");
    int rc = ll_await(f);
    ll_scope_exit(&sc);
    double took = ll_now() - t0;
    LT_CHECKF(rc == LL_ETIMEDOUT, "%s %s", ll_err_name(rc), ll_future_errmsg(f));
    LT_CHECKF(took >= 0.39 && took < 0.4 + SLACK, "took %.3f s for a 0.4 s deadline", took);
    ll_future_free(f);
    /* a connection that still owes a reply is closed when given back, never lent again */
    LT_CHECK(ll_redis_pool_release(pool, c) == 0);
    ll_future_free(a);
    lt_proxy_set(px, NULL);
    a = ll_redis_pool_acquire(pool);
    LT_CHECKF(ll_await_timeout(a, 5) == 0, "%s", ll_future_errmsg(a));
    c = ll_future_value(a);
    f = rt_cmd(c, "ECHO fresh");
    LT_CHECKF(rt_str_is(f, "fresh"), "%s", lt_last_err);
    ll_future_free(f);
    LT_CHECK(ll_redis_pool_release(pool, c) == 0);
    ll_future_free(a);
    ll_redis_pool_free(pool);
    rt_settle();
    LT_CHECK(proxy_idle());
    return 0;
}

static void test_freeze_exclusive_under_scope(void **state) {
    (void)state;
    if (!px) skip();
    run(t_freeze_exclusive);
}

/* ---- a trickling reply on a shared pool connection ---- */

static int t_trickle_shared(void *arg) {
    (void)arg;
    ll_redis_opts o = {.abandon_grace = 5};
    ll_redis_pool *pool = ll_redis_pool_new(purl, &o, NULL);
    LT_CHECK(pool);
    ll_redis_conn *c = ll_redis_pool_conn(pool);
    size_t n = 100000;
    char *big = malloc(n);
    memset(big, 't', n);
    ll_future *f = ll_redis_commandf(c, "SET trickle %b", big, n);
    LT_CHECKF(ll_await_timeout(f, 5) == 0, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    free(big);
    lt_fault tr = {.kind = LT_FAULT_TRICKLE, .dir = 2, .interval = 0.001};
    lt_proxy_set(px, &tr);
    ll_time t0 = ll_now();
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.4));
    f = ll_redis_commandf(c, "GET trickle");
    int rc = ll_await(f);
    ll_scope_exit(&sc);
    double took = ll_now() - t0;
    LT_CHECKF(rc == LL_ETIMEDOUT, "%s %s", ll_err_name(rc), ll_future_errmsg(f));
    LT_CHECKF(took >= 0.39 && took < 0.4 + SLACK, "took %.3f s for a 0.4 s deadline", took);
    ll_future_free(f);
    f = ll_redis_commandf(c, "ECHO after");
    /* lift the trickle: the rest of the abandoned reply is read and dropped, then ours comes */
    ll_sleep(0.2);
    lt_proxy_set(px, NULL);
    LT_CHECKF(ll_await_timeout(f, 5) == 0 && rt_str_is(f, "after"), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    ll_redis_pool_free(pool);
    rt_settle();
    LT_CHECK(proxy_idle());
    return 0;
}

static void test_trickle_shared_under_scope(void **state) {
    (void)state;
    if (!px) skip();
    run(t_trickle_shared);
}

static int setup(void **state) {
    if (rt_group_setup(state)) return -1;
    px = lt_proxy_start("127.0.0.1", rt_server.port);
    if (px) snprintf(purl, sizeof purl, "redis://127.0.0.1:%d", lt_proxy_port(px));
    return 0;
}

static int teardown(void **state) {
    lt_proxy_stop(px);
    return rt_group_teardown(state);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reset_mid_pipeline),
        cmocka_unit_test(test_freeze_exclusive_under_scope),
        cmocka_unit_test(test_trickle_shared_under_scope),
    };
    return cmocka_run_group_tests_name("redis proxy faults", tests, setup, teardown);
}
