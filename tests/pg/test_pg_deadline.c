/*
 * test_pg_deadline.c — deadlines return on time whatever the server or the path does (through the
 * fault proxy: freeze, 1 byte/ms trickle, 50 KB/s, reset mid-reply), the cancel goes on in the
 * background owned by the connection (reused once the server confirmed it, closed after
 * cancel_timeout otherwise), a pool lends another connection meanwhile, cancelling one query of a
 * pipeline never fails its neighbours, and freeing the loop never waits for a cancel.
 */
#include <signal.h>
#include <unistd.h>
#include "harness/faultproxy.h"
#include "pgtest.h"

/* Control back within this much of a deadline (a loaded 2-core machine; sanitizers are slower). */
static double slack(void) {
    return (lt_under_valgrind() || lt_under_asan()) ? 1.0 : 0.3;
}

static lt_proxy *proxy;
static char proxied[512]; /* the server's conninfo through the proxy */

static void proxy_up(void) {
    proxy = lt_proxy_start("127.0.0.1", pgt_server.port);
    assert_non_null(proxy);
    snprintf(proxied, sizeof proxied, "host=127.0.0.1 port=%d user=postgres dbname=postgres",
             lt_proxy_port(proxy));
}

static void proxy_down(void) {
    lt_proxy_stop(proxy);
    proxy = NULL;
}

static ll_pg_conn *connect_opts(const char *conninfo, double cancel_timeout) {
    ll_pg_opts o = {.cancel_timeout = cancel_timeout};
    ll_future *f = ll_pg_connect(conninfo, &o);
    if (ll_await(f)) {
        fprintf(stderr, "connect: %s\n", ll_future_errmsg(f));
        ll_future_free(f);
        return NULL;
    }
    ll_pg_conn *c = ll_future_take(f);
    ll_future_free(f);
    return c;
}

/* Run sql under a deadline `d` seconds away; return the await's code and how long it took. */
static int timed_query(ll_pg_conn *c, const char *sql, double d, double *took) {
    ll_future *q = ll_pg_query(c, sql, 0);
    ll_time t0 = ll_now();
    int rc = ll_await_timeout(q, d);
    *took = ll_now() - t0;
    if (getenv("PGT_VERBOSE"))
        fprintf(stderr, "%.40s under a %g s deadline: %s after %.3f s\n", sql, d, ll_err_name(rc),
                *took);
    if (rc && rc != LL_ETIMEDOUT) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(q));
    ll_future_free(q);
    return rc;
}

/* After a cut query: the connection either serves the next query (the server confirmed the
 * cancel) or fails it as closed — within cancel_timeout (+ slack) of the cut, never later. */
static int next_query_settles(ll_pg_conn *c, double cancel_timeout, ll_time cut_at, bool *reused) {
    ll_future *q = ll_pg_query(c, "SELECT 7", 0);
    int rc = ll_await(q);
    double after = ll_now() - cut_at;
    ll_future_free(q);
    LT_CHECKF(rc == 0 || rc == LL_EPG_CONN, "next query: %s", ll_strerror(rc));
    LT_CHECKF(after < cancel_timeout + slack() + 0.5, "next query settled %.3f s after the cut", after);
    *reused = rc == 0;
    return 0;
}

/* ---- a frozen path: back at the deadline, the connection closed after cancel_timeout ---- */

static int t_freeze(void *arg) {
    (void)arg;
    ll_pg_conn *c = connect_opts(proxied, 1.0);
    LT_CHECK(c);
    LT_CHECK(pgt_int(c, "SELECT 1") == 1);
    lt_proxy_set(proxy, &(lt_fault){.kind = LT_FAULT_FREEZE});
    double took;
    int rc = timed_query(c, "SELECT 2", 0.5, &took);
    ll_time cut = ll_now();
    LT_CHECKF(rc == LL_ETIMEDOUT, "rc %d", rc);
    LT_CHECKF(took >= 0.45 && took < 0.5 + slack(), "returned after %.3f s", took);
    /* the cancel request goes through the frozen proxy too: nothing confirms it, so the
     * connection is closed at cancel_timeout and the query behind fails, not hangs */
    bool reused = true;
    LT_CHECK(next_query_settles(c, 1.0, cut, &reused) == 0);
    LT_CHECK(!reused);
    LT_CHECK(!ll_pg_is_ok(c));
    ll_pg_close(c);
    lt_proxy_set(proxy, NULL);
    pgt_settle();
    return 0;
}

static void test_freeze(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    proxy_up();
    lt_run_checked(t.loop, t_freeze, NULL);
    proxy_down(); /* the cancel request's socket, held by the frozen proxy, goes too */
    lt_teardown(&t);
}

/* ---- a trickle (1 byte/ms) and a 50 KB/s path under a deadline ---- */

typedef struct {
    lt_fault fault;
    const char *sql;
} slow_case;

static int t_slow_path(void *arg) {
    slow_case *sc = arg;
    ll_pg_conn *c = connect_opts(proxied, 1.0);
    LT_CHECK(c);
    LT_CHECK(pgt_int(c, "SELECT 1") == 1);
    lt_proxy_set(proxy, &sc->fault);
    double took;
    int rc = timed_query(c, sc->sql, 0.5, &took);
    ll_time cut = ll_now();
    LT_CHECKF(rc == LL_ETIMEDOUT, "rc %d (%s)", rc, lt_last_err);
    LT_CHECKF(took >= 0.45 && took < 0.5 + slack(), "returned after %.3f s", took);
    bool reused;
    LT_CHECK(next_query_settles(c, 1.0, cut, &reused) == 0);
    ll_pg_close(c);
    lt_proxy_set(proxy, NULL);
    pgt_settle();
    return 0;
}

static void test_trickle(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    proxy_up();
    slow_case sc = {{.kind = LT_FAULT_TRICKLE, .dir = 2, .interval = 0.001},
                    "SELECT repeat('x', 20000)"};
    lt_run_checked(t.loop, t_slow_path, &sc);
    proxy_down();
    lt_teardown(&t);
}

static void test_bandwidth(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    proxy_up();
    slow_case sc = {{.kind = LT_FAULT_BANDWIDTH, .dir = 2, .rate = 50000},
                    "SELECT repeat('y', 2000000)"};
    lt_run_checked(t.loop, t_slow_path, &sc);
    proxy_down();
    lt_teardown(&t);
}

/* ---- a reset in the middle of a reply ---- */

static int t_reset_mid_reply(void *arg) {
    (void)arg;
    ll_pg_conn *c = connect_opts(proxied, 1.0);
    LT_CHECK(c);
    LT_CHECK(pgt_int(c, "SELECT 1") == 1);
    lt_proxy_set(proxy, &(lt_fault){.kind = LT_FAULT_RESET_AFTER, .dir = 2, .bytes = 1000});
    ll_future *q = ll_pg_query(c, "SELECT repeat('z', 100000)", 0);
    ll_time t0 = ll_now();
    int rc = ll_await_timeout(q, 5);
    LT_CHECKF(rc == LL_EPG_CONN, "rc %d: %s", rc, ll_future_errmsg(q));
    LT_CHECK(ll_now() - t0 < 1 + slack());
    ll_future_free(q);
    LT_CHECK(!ll_pg_is_ok(c));
    ll_pg_close(c);
    lt_proxy_set(proxy, NULL);
    pgt_settle();
    return 0;
}

static void test_reset_mid_reply(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    proxy_up();
    lt_run_checked(t.loop, t_reset_mid_reply, NULL);
    proxy_down();
    lt_teardown(&t);
}

/* ---- the connection reset while a held burst is being written (batch_sync) ---- */

static int t_reset_during_burst(void *arg) {
    (void)arg;
    for (int round = 0; round < 5; round++) {
        ll_pg_opts o = {.batch_sync = true};
        ll_future *cf = ll_pg_connect(proxied, &o);
        LT_CHECK(ll_await(cf) == 0);
        ll_pg_conn *c = ll_future_take(cf);
        ll_future_free(cf);
        /* a script runs alone: the 300 queries behind it are held, then written in one burst
         * (segments of 256 share a Sync) when it ends — and the path resets during that burst */
        ll_future *script = ll_pg_exec(c, "SELECT pg_sleep(0.1)");
        ll_future *q[300];
        for (int i = 0; i < 300; i++) q[i] = ll_pg_query(c, "SELECT $1::int", 1, "5");
        lt_proxy_set(proxy, &(lt_fault){.kind = LT_FAULT_RESET_AFTER, .dir = 1,
                                        .bytes = 200 + 300 * round});
        (void)ll_await(script);
        ll_future_free(script);
        int ok = 0, lost = 0;
        for (int i = 0; i < 300; i++) {
            int rc = ll_await_timeout(q[i], 5);
            ok += rc == 0;
            lost += rc == LL_EPG_CONN;
            ll_future_free(q[i]);
        }
        LT_CHECKF(ok + lost == 300, "round %d: %d ok, %d lost", round, ok, lost);
        ll_pg_close(c);
        lt_proxy_set(proxy, NULL);
    }
    pgt_settle();
    return 0;
}

static void test_reset_during_burst(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    proxy_up();
    lt_run_checked(t.loop, t_reset_during_burst, NULL);
    proxy_down();
    lt_teardown(&t);
}

/* ---- a slow query cut by a deadline: the server confirms, the connection is reused ---- */

static int t_cut_and_reuse(void *arg) {
    (void)arg;
    ll_pg_conn *c = connect_opts(pgt_server.conninfo, 5.0);
    ll_pg_conn *admin = pgt_connect();
    LT_CHECK(c);
    int pid = ll_pg_backend_pid(c);
    for (int i = 0; i < 5; i++) {
        double took;
        int rc = timed_query(c, "SELECT pg_sleep(30)", 0.2, &took);
        LT_CHECKF(rc == LL_ETIMEDOUT, "rc %d", rc);
        LT_CHECKF(took < 0.2 + slack(), "returned after %.3f s", took);
        /* the next query waits only for the cancel to be confirmed: well under a second */
        ll_time t0 = ll_now();
        LT_CHECK(pgt_int(c, "SELECT 11") == 11);
        LT_CHECKF(ll_now() - t0 < 1 + slack(), "reused after %.3f s", ll_now() - t0);
    }
    LT_CHECK(ll_pg_backend_pid(c) == pid); /* the same session all along */
    /* and the server is not still sleeping for us */
    char q[128];
    snprintf(q, sizeof q, "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active'",
             pid);
    LT_CHECK(pgt_int(admin, q) == 0);
    ll_pg_close(c);
    ll_pg_close(admin);
    pgt_settle();
    return 0;
}

static void test_cut_and_reuse(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_cut_and_reuse, NULL);
    lt_teardown(&t);
}

/* ---- a pool lends another connection while one is still cancelling ---- */

static int t_pool_meanwhile(void *arg) {
    (void)arg;
    ll_pg_pool_opts po = {.max_size = 2, .conn = {.cancel_timeout = 1.5}};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &po);
    LT_CHECK(p);
    ll_future *af = ll_pg_pool_acquire(p);
    LT_CHECK(ll_await(af) == 0);
    ll_pg_conn *c1 = ll_future_value(af);
    ll_future_free(af);
    int pid1 = ll_pg_backend_pid(c1);
    ll_future *q = ll_pg_query(c1, "SELECT pg_sleep(30)", 0);
    ll_sleep(0.1);
    kill(pid1, SIGSTOP); /* the backend cannot act on the cancel: the query never ends */
    int rc = ll_await_timeout(q, 0.2);
    ll_future_free(q);
    LT_CHECK(rc == LL_ETIMEDOUT);
    /* given back with the cancelled query still being stopped: the pool does not make the next
     * borrower wait for it (the cancel goes on alone), it lends another connection */
    LT_CHECK(ll_pg_pool_release(p, c1) == 0);
    ll_time t0 = ll_now();
    af = ll_pg_pool_acquire(p);
    rc = ll_await(af);
    double took = ll_now() - t0;
    kill(pid1, SIGCONT);
    LT_CHECK(rc == 0);
    ll_pg_conn *c2 = ll_future_value(af);
    ll_future_free(af);
    LT_CHECK(ll_pg_backend_pid(c2) != pid1);
    LT_CHECKF(took < 0.5 + slack(), "the second connection took %.3f s", took);
    LT_CHECK(pgt_int(c2, "SELECT 3") == 3);
    LT_CHECK(ll_pg_pool_release(p, c2) == 0);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

static void test_pool_meanwhile(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_pool_meanwhile, NULL);
    lt_teardown(&t);
}

/* ---- cancelling one query of a pipeline never fails its neighbours ---- */

typedef struct {
    ll_pg_conn *c;
    int value;
    int rc;
} neighbour;

static int neighbour_task(void *arg) {
    neighbour *n = arg;
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT %d", n->value);
    ll_future *q = ll_pg_query(n->c, sql, 0);
    n->rc = ll_await(q);
    if (n->rc == 0) {
        int64_t v = -1;
        ll_pg_int64(ll_future_value(q), 0, 0, &v);
        if (v != n->value) n->rc = -1;
    } else {
        snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(q));
    }
    ll_future_free(q);
    return 0;
}

static int t_pipeline_neighbours(void *arg) {
    (void)arg;
    ll_pg_conn *c = connect_opts(pgt_server.conninfo, 5.0);
    LT_CHECK(c);
    /* a long query with two other tasks' queries written behind it */
    ll_future *slow = ll_pg_query(c, "SELECT pg_sleep(10)", 0);
    neighbour n[2] = {{c, 21, 1}, {c, 22, 1}};
    ll_future *tf[2];
    for (int i = 0; i < 2; i++) tf[i] = ll_spawn(neighbour_task, &n[i]);
    ll_sleep(0.1);
    ll_time t0 = ll_now();
    LT_CHECK(ll_future_cancel(slow) == 0);
    LT_CHECK(ll_await(slow) == LL_ECANCELED);
    LT_CHECK(ll_now() - t0 < 0.05 + slack());
    ll_future_free(slow);
    for (int i = 0; i < 2; i++) {
        ll_await(tf[i]);
        ll_future_free(tf[i]);
        LT_CHECKF(n[i].rc == 0, "neighbour %d: %d %s", i, n[i].rc, lt_last_err);
    }
    LT_CHECKF(ll_now() - t0 < 2 + slack(), "neighbours answered after %.3f s", ll_now() - t0);
    /* many rounds, the cancel landing at varying moments around the end of short queries */
    for (int i = 0; i < 60; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT pg_sleep(%g)", 0.0005 * (i % 8));
        ll_future *q = ll_pg_query(c, sql, 0);
        neighbour m[2] = {{c, 100 + i, 1}, {c, 200 + i, 1}};
        ll_future *mf[2];
        for (int k = 0; k < 2; k++) mf[k] = ll_spawn(neighbour_task, &m[k]);
        if (i % 3) ll_sleep(0.0004 * (i % 5));
        else ll_yield();
        ll_future_cancel(q);
        int rc = ll_await(q);
        LT_CHECK(rc == 0 || rc == LL_ECANCELED);
        ll_future_free(q);
        for (int k = 0; k < 2; k++) {
            ll_await(mf[k]);
            ll_future_free(mf[k]);
            LT_CHECKF(m[k].rc == 0, "round %d neighbour %d: %d %s", i, k, m[k].rc, lt_last_err);
        }
    }
    LT_CHECK(pgt_int(c, "SELECT 5") == 5);
    ll_pg_close(c);
    pgt_settle();
    return 0;
}

static void test_pipeline_neighbours(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_pipeline_neighbours, NULL);
    lt_teardown(&t);
}

/* ---- the same with other tasks' executemany behind the cancelled query: a row hit by the late
 * cancel runs again alone; every row's effect is there exactly once ---- */

enum { MANY_ROWS = 50 };

typedef struct {
    ll_pg_conn *c;
    int base;
    int rc;
    ll_pg_many_error err;
} many_neighbour;

static int many_neighbour_task(void *arg) {
    many_neighbour *n = arg;
    ll_pg_param p[MANY_ROWS];
    for (int j = 0; j < MANY_ROWS; j++) p[j] = ll_pg_param_int4(n->base + j);
    /* rows that take a moment, so the late cancel can land on one */
    n->rc = ll_pg_executemany(n->c, "INSERT INTO nb_rows(k) SELECT $1 FROM pg_sleep(0.0005)", 1,
                              MANY_ROWS, p, NULL, &n->err);
    return 0;
}

static int t_pipeline_many_neighbours(void *arg) {
    (void)arg;
    ll_pg_conn *c = connect_opts(pgt_server.conninfo, 5.0);
    LT_CHECK(c);
    ll_future *ct = ll_pg_query(c, "CREATE TEMP TABLE nb_rows(k int)", 0);
    LT_CHECK(ll_await(ct) == 0);
    ll_future_free(ct);
    enum { ROUNDS = 60 };
    int cancelled = 0;
    for (int i = 0; i < ROUNDS; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT pg_sleep(%g)", 0.0005 * (i % 8));
        ll_future *q = ll_pg_query(c, sql, 0);
        many_neighbour m[2] = {{.c = c, .base = i * 1000, .rc = 1},
                               {.c = c, .base = i * 1000 + 500, .rc = 1}};
        ll_future *mf[2];
        for (int k = 0; k < 2; k++) mf[k] = ll_spawn(many_neighbour_task, &m[k]);
        if (i % 3) ll_sleep(0.0004 * (i % 5));
        else ll_yield();
        ll_future_cancel(q);
        int rc = ll_await(q);
        LT_CHECK(rc == 0 || rc == LL_ECANCELED);
        cancelled += rc == LL_ECANCELED;
        ll_future_free(q);
        for (int k = 0; k < 2; k++) {
            ll_await(mf[k]);
            ll_future_free(mf[k]);
            LT_CHECKF(m[k].rc == 0, "round %d executemany %d: %d row %zu %s %s", i, k, m[k].rc,
                      m[k].err.row, m[k].err.sqlstate, m[k].err.message);
        }
    }
    /* every row exactly once: as many rows as keys, and as many keys as rows sent */
    LT_CHECK(pgt_int(c, "SELECT count(*) FROM nb_rows") == ROUNDS * 2 * MANY_ROWS);
    LT_CHECK(pgt_int(c, "SELECT count(DISTINCT k) FROM nb_rows") == ROUNDS * 2 * MANY_ROWS);
    LT_CHECK(pgt_int(c, "SELECT count(*) FROM nb_rows WHERE k % 500 >= 50") == 0);
    LT_CHECKF(cancelled > 0, "no round cancelled its query");
    ll_pg_close(c);
    pgt_settle();
    return 0;
}

static void test_pipeline_many_neighbours(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_pipeline_many_neighbours, NULL);
    lt_teardown(&t);
}

/* ---- many pipelined queries, every 7th cancelled: no other fails, none gets a wrong answer ---- */

static int t_many_cancelled(void *arg) {
    (void)arg;
    ll_pg_conn *c = connect_opts(pgt_server.conninfo, 5.0);
    LT_CHECK(c);
    enum { N = 20000 };
    ll_future **q = calloc(N, sizeof *q);
    LT_CHECK(q);
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        q[i] = ll_pg_query(c, "SELECT $1::int", 1, v);
        if (i % 7 == 3) ll_future_cancel(q[i]);
    }
    int ok = 0, cancelled = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        int rc = ll_await(q[i]);
        int64_t v = -1;
        if (rc == 0 && ll_pg_int64(ll_pg_result_of(q[i]), 0, 0, &v) == 0 && v == i) ok++;
        else if (rc == LL_ECANCELED && i % 7 == 3) cancelled++;
        else bad++;
        ll_future_free(q[i]);
    }
    free(q);
    LT_CHECKF(bad == 0 && ok + cancelled == N, "%d ok, %d cancelled, %d wrong", ok, cancelled, bad);
    LT_CHECK(pgt_int(c, "SELECT 6") == 6);
    ll_pg_close(c);
    pgt_settle();
    return 0;
}

static void test_many_cancelled(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_many_cancelled, NULL);
    lt_teardown(&t);
}

/* ---- freeing the loop never waits for a cancel on a frozen path ---- */

static int t_shutdown(void *arg) {
    bool *cut = arg;
    ll_pg_conn *c = connect_opts(proxied, 30.0); /* a cancel that would wait 30 s */
    if (!c) return -1;
    lt_proxy_set(proxy, &(lt_fault){.kind = LT_FAULT_FREEZE});
    ll_future *q = ll_pg_query(c, "SELECT 1", 0);
    *cut = ll_await_timeout(q, 0.3) == LL_ETIMEDOUT;
    ll_future_free(q);
    ll_pg_close(c); /* the cancel request goes on alone, stuck in the frozen proxy */
    return 0;
}

static void test_shutdown_never_blocks(void **state) {
    (void)state;
    int fds = lt_count_fds();
    proxy_up();
    ll_loop *loop = ll_loop_new();
    bool cut = false;
    assert_int_equal(lt_run_task(loop, t_shutdown, &cut), 0);
    assert_true(cut);
    ll_loop_stats st;
    ll_loop_get_stats(loop, &st);
    assert_true(st.tasks >= 1); /* the cancel request, still waiting */
    ll_time t0 = ll_now();
    ll_loop_free(loop);
    double took = ll_now() - t0;
    if (took > 1) fprintf(stderr, "ll_loop_free took %.3f s\n", took);
    assert_true(took < 1 + slack());
    lt_proxy_set(proxy, NULL);
    proxy_down();
    assert_int_equal(lt_count_fds(), fds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_freeze),
        PGT_TEST(test_trickle),
        PGT_TEST(test_bandwidth),
        PGT_TEST(test_reset_mid_reply),
        PGT_TEST(test_reset_during_burst),
        PGT_TEST(test_cut_and_reuse),
        PGT_TEST(test_pool_meanwhile),
        PGT_TEST(test_pipeline_neighbours),
        PGT_TEST(test_pipeline_many_neighbours),
        PGT_TEST(test_many_cancelled),
        PGT_TEST(test_shutdown_never_blocks),
    };
    return PGT_RUN(tests);
}
