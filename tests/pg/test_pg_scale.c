/*
 * test_pg_scale.c — PostgreSQL scale-out (issue 16) against a real primary and a streaming standby
 * (pg_basebackup -R) started by the test: multi-host conninfo and target_session_attrs, read
 * routing with the lag bound and its fallback, lag measured per standby host (a second standby,
 * one replaying and one paused: reads go only to the one on time), split brain (the second standby
 * promoted while the primary runs: connects for primary/read-write refuse, naming both hosts),
 * and a failover under load (pg_ctl promote with the old primary stopped) that the pool follows by
 * itself. The failover test runs last: it ends the topology.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/faultproxy.h"
#include "harness/harness.h"
#include "harness/pgserver.h"
#include "harness/serverutil.h"
#include "libloop/pg.h"
#include "libloop/pg_router.h"

static lt_pg prim, stby, stby2; /* stby2: made by test_standby_hosts, promoted by test_split_brain */
static bool up;
static int dead_port; /* a free port nobody listens on */

static int setup(void **state) {
    (void)state;
    if (!lt_pg_start(&prim)) return -1;
    if (!lt_pg_start_standby(&stby, &prim)) {
        lt_pg_stop(&prim);
        return -1;
    }
    dead_port = lt_free_port();
    up = true;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    lt_pg_stop(&stby2);
    lt_pg_stop(&stby);
    lt_pg_stop(&prim);
    return 0;
}

/* Inside a task: connect, keep the message of a failure in lt_last_err. */
static int connect_to(const char *ci, ll_pg_conn **out) {
    ll_future *f = ll_pg_connect(ci, NULL);
    if (!f) return LL_ENOMEM;
    int rc = ll_await(f);
    if (rc) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    *out = rc ? NULL : ll_future_take(f);
    ll_future_free(f);
    return rc;
}

/* The port the connection went to, from its peer "127.0.0.1:N". */
static int peer_port(ll_pg_conn *c) {
    const char *p = strrchr(ll_pg_peer(c), ':');
    return p ? atoi(p + 1) : -1;
}

/* Inside a task: the text of the one value of sql on c ("" on error). */
static void one_text(ll_pg_conn *c, const char *sql, char *out, size_t n) {
    out[0] = 0;
    ll_future *f = ll_pg_query(c, sql, 0);
    if (ll_await(f) == 0 && ll_pg_text(ll_pg_result_of(f), 0, 0))
        snprintf(out, n, "%s", ll_pg_text(ll_pg_result_of(f), 0, 0));
    ll_future_free(f);
}

/* ---- multi-host order and target_session_attrs ---- */

static int t_multihost(void *arg) {
    (void)arg;
    char ci[1024], v[16];
    ll_pg_conn *c;
    struct {
        const char *tsa;
        int p1, p2, p3;
        int want_port; /* 0: must fail */
    } cases[] = {
        {"any", dead_port, stby.port, prim.port, stby.port},
        {"primary", dead_port, stby.port, prim.port, prim.port},
        {"read-write", stby.port, prim.port, dead_port, prim.port},
        {"standby", prim.port, dead_port, stby.port, stby.port},
        {"read-only", prim.port, stby.port, dead_port, stby.port},
        {"prefer-standby", prim.port, stby.port, dead_port, stby.port},
        {"prefer-standby", dead_port, prim.port, dead_port, prim.port}, /* no standby: any */
        {"standby", dead_port, prim.port, prim.port, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(ci, sizeof ci,
                 "host=127.0.0.1,localhost,127.0.0.1 port=%d,%d,%d user=postgres dbname=postgres "
                 "target_session_attrs=%s connect_timeout=10",
                 cases[i].p1, cases[i].p2, cases[i].p3, cases[i].tsa);
        int rc = connect_to(ci, &c);
        if (!cases[i].want_port) {
            LT_CHECKF(rc != 0, "case %zu connected", i);
            /* every host's failure is in the message */
            char refused[64], notstandby[64];
            snprintf(refused, sizeof refused, "127.0.0.1:%d: ", dead_port);
            snprintf(notstandby, sizeof notstandby, ":%d: server is not a standby", prim.port);
            LT_CHECKF(strstr(lt_last_err, refused) && strstr(lt_last_err, notstandby) &&
                          strstr(lt_last_err, "localhost:"),
                      "%s", lt_last_err);
            continue;
        }
        LT_CHECKF(rc == 0, "case %zu (%s): %s", i, cases[i].tsa, lt_last_err);
        LT_CHECKF(peer_port(c) == cases[i].want_port, "case %zu: went to %s", i, ll_pg_peer(c));
        one_text(c, "SELECT pg_is_in_recovery()", v, sizeof v);
        LT_CHECK(strcmp(v, cases[i].want_port == stby.port ? "t" : "f") == 0);
        ll_pg_close(c);
    }
    /* the URI form */
    snprintf(ci, sizeof ci,
             "postgresql://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/postgres?user=postgres&"
             "target_session_attrs=primary",
             dead_port, stby.port, prim.port);
    LT_CHECKF(connect_to(ci, &c) == 0, "%s", lt_last_err);
    LT_CHECK(peer_port(c) == prim.port);
    ll_pg_close(c);
    /* addresses only */
    snprintf(ci, sizeof ci,
             "hostaddr=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres "
             "target_session_attrs=read-write",
             stby.port, prim.port);
    LT_CHECKF(connect_to(ci, &c) == 0, "%s", lt_last_err);
    LT_CHECK(peer_port(c) == prim.port);
    ll_pg_close(c);
    /* a bad value */
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d target_session_attrs=master", prim.port);
    LT_CHECK(connect_to(ci, &c) == LL_EINVAL);
    LT_CHECKF(strstr(lt_last_err, "target_session_attrs") != NULL, "%s", lt_last_err);
    /* all refused: the code says so */
    snprintf(ci, sizeof ci, "host=127.0.0.1,127.0.0.1 port=%d user=postgres", dead_port);
    LT_CHECK(connect_to(ci, &c) == LL_ECONNREFUSED);
    return 0;
}

static void test_multihost(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_checked(t.loop, t_multihost, NULL), 0);
    lt_teardown(&t);
}

/* ---- a dead host costs at most its share of the connect deadline ---- */

static int t_share(void *arg) {
    lt_proxy *px = arg;
    char ci[512];
    /* the first host never answers the TCP handshake; 2 hosts, 3 s: it gets 1.5 s */
    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres "
             "target_session_attrs=primary",
             lt_proxy_port(px), prim.port);
    ll_pg_conn *c = NULL;
    ll_time t0 = ll_now();
    ll_future *f = ll_pg_connect(ci, &(ll_pg_opts){.connect_timeout = 3});
    int rc = ll_await(f);
    if (rc) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    c = rc ? NULL : ll_future_take(f);
    ll_future_free(f);
    double took = ll_now() - t0;
    LT_CHECKF(rc == 0, "%s", lt_last_err);
    LT_CHECK(peer_port(c) == prim.port);
    /* its share is 1.5 s; generous slack for a loaded machine, and far from the whole 3 s */
    LT_CHECKF(took >= 1.4 && took < 2.6, "took %.2f s", took);
    ll_pg_close(c);
    /* both dead: the deadline holds and the error names both hosts */
    snprintf(ci, sizeof ci, "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres",
             lt_proxy_port(px), dead_port);
    t0 = ll_now();
    f = ll_pg_connect(ci, &(ll_pg_opts){.connect_timeout = 1});
    rc = ll_await(f);
    took = ll_now() - t0;
    snprintf(lt_last_err, sizeof lt_last_err, "%s", rc ? ll_future_errmsg(f) : "connected");
    ll_future_free(f);
    LT_CHECK(rc != 0);
    LT_CHECKF(took < 1.3, "took %.2f s", took);
    char a[64];
    snprintf(a, sizeof a, ":%d: ", lt_proxy_port(px));
    LT_CHECKF(strstr(lt_last_err, a) && strstr(lt_last_err, "timed out"), "%s", lt_last_err);
    /* the awaiting task's deadline gives control back in the middle of the walk (promise 2), and
     * the abandoned walk leaves nothing behind (lt_teardown counts) */
    snprintf(ci, sizeof ci, "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres "
             "target_session_attrs=read-write", lt_proxy_port(px), prim.port);
    t0 = ll_now();
    f = ll_pg_connect(ci, &(ll_pg_opts){.connect_timeout = 5});
    rc = ll_await_timeout(f, 0.3);
    took = ll_now() - t0;
    ll_future_free(f);
    LT_CHECKF(rc == LL_ETIMEDOUT, "rc %d", rc);
    LT_CHECKF(took < 0.3 + 0.15, "took %.2f s", took); /* 50 ms slack, tripled for the load */
    return 0;
}

static void test_share(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_proxy *px = lt_proxy_start("127.0.0.1", prim.port);
    assert_non_null(px);
    lt_proxy_set(px, &(lt_fault){.kind = LT_FAULT_BLACKHOLE});
    int rc = lt_run_checked(t.loop, t_share, px);
    lt_proxy_stop(px);
    lt_teardown(&t);
    assert_int_equal(rc, 0);
}

/* ---- read routing and the lag bound ---- */

static bool wait_usable(ll_pg_router *r, bool want, double secs) {
    ll_pg_router_stats st;
    for (double t = 0; t < secs; t += 0.05) {
        ll_pg_router_get_stats(r, &st);
        if (st.standby_usable == want) return true;
        ll_sleep(0.05);
    }
    return false;
}

static int routed_text(ll_pg_router *r, bool ro, const char *sql, char *out, size_t n) {
    out[0] = 0;
    ll_future *f = ll_pg_router_query(r, ro, sql, 0);
    int rc = ll_await(f);
    if (rc) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    else if (ll_pg_text(ll_pg_result_of(f), 0, 0))
        snprintf(out, n, "%s", ll_pg_text(ll_pg_result_of(f), 0, 0));
    ll_future_free(f);
    return rc;
}

static int t_router(void *arg) {
    lt_proxy *px = arg;
    char ci[512], v[64];
    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres "
             "target_session_attrs=primary",
             stby.port, prim.port);
    ll_pg_pool *pp = ll_pg_pool_new(ci, &(ll_pg_pool_opts){.max_size = 4});
    ll_pg_pool *sp = ll_pg_pool_new(stby.conninfo, &(ll_pg_pool_opts){.max_size = 4});
    ll_pg_router *r = ll_pg_router_new(
        pp, sp, &(ll_pg_router_opts){.max_lag = 1, .check_interval = 0.1, .check_timeout = 1});
    LT_CHECK(pp && sp && r);
    /* until the first check answered, reads go to the primary; then to the standby */
    LT_CHECK(wait_usable(r, true, 5));
    LT_CHECK(routed_text(r, true, "SELECT pg_is_in_recovery()", v, sizeof v) == 0);
    LT_CHECKF(strcmp(v, "t") == 0, "read-only went to a server in recovery=%s", v);
    LT_CHECK(routed_text(r, false, "SELECT pg_is_in_recovery()", v, sizeof v) == 0);
    LT_CHECK(strcmp(v, "f") == 0);
    LT_CHECK(routed_text(r, false, "CREATE TABLE IF NOT EXISTS rt(v int)", v, sizeof v) == 0);
    LT_CHECK(routed_text(r, false, "INSERT INTO rt VALUES (1)", v, sizeof v) == 0);
    /* a write marked read-only reaches the standby, whose refusal is the caller's, unchanged */
    ll_future *w = ll_pg_router_query(r, true, "CREATE TABLE rt_ro(v int)", 0);
    LT_CHECK(ll_await(w) == LL_EPG_SERVER);
    LT_CHECKF(ll_pg_error_sqlstate(w) && strcmp(ll_pg_error_sqlstate(w), "25006") == 0, "%s",
              ll_future_errmsg(w));
    ll_future_free(w);
    /* a routed acquire: read-only on the standby, released through the router */
    ll_future *a = ll_pg_router_acquire(r, true);
    LT_CHECK(ll_await(a) == 0);
    ll_pg_conn *c = ll_future_value(a);
    LT_CHECK(peer_port(c) == stby.port);
    LT_CHECK(ll_pg_router_release(r, c) == 0);
    ll_future_free(a);

    /* stop the standby's replay: the lag grows past max_lag, reads fall back to the primary and
     * see what the standby has not */
    ll_future *q = ll_pg_pool_query(sp, "SELECT pg_wal_replay_pause()", 0);
    LT_CHECKF(ll_await(q) == 0, "%s", ll_future_errmsg(q));
    ll_future_free(q);
    LT_CHECK(routed_text(r, false, "INSERT INTO rt VALUES (2)", v, sizeof v) == 0);
    ll_time t0 = ll_now();
    LT_CHECK(wait_usable(r, false, 6));
    double noticed = ll_now() - t0;
    ll_pg_router_stats st;
    ll_pg_router_get_stats(r, &st);
    LT_CHECKF(st.lag > 1, "lag %.2f", st.lag);
    LT_CHECK(routed_text(r, true, "SELECT pg_is_in_recovery()::text || count(*) FROM rt", v,
                         sizeof v) == 0);
    LT_CHECKF(strcmp(v, "false2") == 0, "%s", v);
    /* replay resumed: back to the standby, which now has both rows */
    q = ll_pg_pool_query(sp, "SELECT pg_wal_replay_resume()", 0);
    LT_CHECK(ll_await(q) == 0);
    ll_future_free(q);
    LT_CHECK(wait_usable(r, true, 5));
    for (int i = 0; i < 100; i++) { /* replication is asynchronous: the rows arrive soon */
        LT_CHECK(routed_text(r, true, "SELECT pg_is_in_recovery()::text || count(*) FROM rt", v,
                             sizeof v) == 0);
        if (strcmp(v, "true2") == 0) break;
        ll_sleep(0.05);
    }
    LT_CHECKF(strcmp(v, "true2") == 0, "%s", v);
    ll_pg_router_get_stats(r, &st);
    printf("router: lag over 1 s noticed %.2f s after the replay paused; checks %llu (failed %llu)\n",
           noticed, (unsigned long long)st.checks, (unsigned long long)st.checks_failed);
    /* the standby frozen (behind a proxy that stops forwarding): the check times out, reads go
     * to the primary without an error */
    ll_pg_router_free(r);
    ll_pg_pool_free(sp);
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres dbname=postgres",
             lt_proxy_port(px));
    sp = ll_pg_pool_new(ci, &(ll_pg_pool_opts){.max_size = 4});
    r = ll_pg_router_new(pp, sp, &(ll_pg_router_opts){.check_interval = 0.1});
    LT_CHECK(wait_usable(r, true, 5));
    lt_proxy_set(px, &(lt_fault){.kind = LT_FAULT_FREEZE});
    ll_future *ro = ll_pg_router_query(r, true, "SELECT pg_is_in_recovery()", 0);
    /* a routed query stuck on the frozen standby gives control back at the caller's deadline */
    ll_time t0b = ll_now();
    ll_future *stuck = ll_pg_router_query(r, true, "SELECT 1", 0);
    LT_CHECK(ll_await_timeout(stuck, 0.2) == LL_ETIMEDOUT);
    ll_future_free(stuck);
    LT_CHECKF(ll_now() - t0b < 0.2 + 0.15, "took %.2f s", ll_now() - t0b);
    LT_CHECK(wait_usable(r, false, 5)); /* the check timed out (2 s) */
    ll_pg_router_get_stats(r, &st);
    LT_CHECK(st.checks_failed >= 1);
    LT_CHECK(routed_text(r, true, "SELECT pg_is_in_recovery()", v, sizeof v) == 0);
    LT_CHECK(strcmp(v, "f") == 0);
    lt_proxy_set(px, &(lt_fault){.kind = LT_FAULT_NONE});
    LT_CHECK(ll_await(ro) == 0); /* the one sent to the frozen standby completes */
    ll_future_free(ro);
    ll_pg_router_free(r);
    ll_pg_pool_free(sp);
    ll_pg_pool_free(pp);
    ll_sleep(0.1);
    return 0;
}

static void test_router(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_proxy *px = lt_proxy_start("127.0.0.1", stby.port);
    assert_non_null(px);
    int rc = lt_run_checked(t.loop, t_router, px);
    lt_proxy_stop(px);
    lt_teardown(&t);
    assert_int_equal(rc, 0);
}

/* ---- lag per standby host ---- */

static bool wait_standby(ll_pg_router *r, size_t i, bool usable, double secs) {
    ll_pg_router_standby st;
    for (double t = 0; t < secs; t += 0.05) {
        if (ll_pg_router_get_standby(r, i, &st) == 0 && st.usable == usable) return true;
        ll_sleep(0.05);
    }
    return false;
}

static int t_standby_hosts(void *arg) {
    (void)arg;
    char v[64], want[64];
    ll_pg_pool *pp = ll_pg_pool_new(prim.conninfo, &(ll_pg_pool_opts){.max_size = 4});
    ll_pg_pool *s1 = ll_pg_pool_new(stby.conninfo, &(ll_pg_pool_opts){.max_size = 4});
    ll_pg_pool *s2 = ll_pg_pool_new(stby2.conninfo, &(ll_pg_pool_opts){.max_size = 4});
    ll_pg_router *r = ll_pg_router_new(
        pp, s1, &(ll_pg_router_opts){.max_lag = 1, .check_interval = 0.1, .check_timeout = 1});
    LT_CHECK(pp && s1 && s2 && r);
    LT_CHECK(ll_pg_router_add_standby(r, s2) == 0);
    LT_CHECK(ll_pg_router_add_standby(r, s2) == LL_EALREADY);
    LT_CHECK(ll_pg_router_add_standby(NULL, s2) == LL_EINVAL);
    ll_pg_router_standby st0, st1;
    LT_CHECK(ll_pg_router_get_standby(r, 2, &st0) == LL_ENOENT);
    LT_CHECK(wait_standby(r, 0, true, 5) && wait_standby(r, 1, true, 5));
    LT_CHECK(ll_pg_router_get_standby(r, 0, &st0) == 0 && ll_pg_router_get_standby(r, 1, &st1) == 0);
    snprintf(want, sizeof want, ":%d", stby.port); /* each check names the host it measured */
    LT_CHECKF(strstr(st0.server, want) != NULL, "standby 0 measured on %s", st0.server);
    snprintf(want, sizeof want, ":%d", stby2.port);
    LT_CHECKF(strstr(st1.server, want) != NULL, "standby 1 measured on %s", st1.server);
    LT_CHECK(routed_text(r, false, "CREATE TABLE hl(v int)", v, sizeof v) == 0);
    for (int i = 0; i < 2; i++) { /* both standbys have the table before one pauses */
        int rc = -1;
        for (int k = 0; k < 100 && rc; k++) {
            ll_future *t = ll_pg_pool_query(i ? s2 : s1, "SELECT count(*) FROM hl", 0);
            rc = ll_await(t);
            ll_future_free(t);
            if (rc) ll_sleep(0.05);
        }
        LT_CHECK(rc == 0);
    }
    /* the first standby stops replaying; the second goes on */
    ll_future *q = ll_pg_pool_query(s1, "SELECT pg_wal_replay_pause()", 0);
    LT_CHECKF(ll_await(q) == 0, "%s", ll_future_errmsg(q));
    ll_future_free(q);
    LT_CHECK(routed_text(r, false, "INSERT INTO hl VALUES (1)", v, sizeof v) == 0);
    LT_CHECK(wait_standby(r, 0, false, 6));
    LT_CHECK(ll_pg_router_get_standby(r, 0, &st0) == 0 && st0.lag > 1);
    LT_CHECK(wait_standby(r, 1, true, 1));
    /* reads go to the standby that is on time only (it has the row), never to the late one */
    ll_pg_router_get_standby(r, 0, &st0);
    ll_pg_router_get_standby(r, 1, &st1);
    uint64_t routed0 = st0.routed, routed1 = st1.routed;
    const char *sql = "SELECT pg_is_in_recovery()::text || ':' || inet_server_port() || ':' || count(*) FROM hl";
    snprintf(want, sizeof want, "true:%d:1", stby2.port);
    for (int i = 0; i < 100; i++) { /* replication is asynchronous: the row reaches stby2 soon */
        LT_CHECK(routed_text(r, true, sql, v, sizeof v) == 0);
        if (!strcmp(v, want)) break;
        ll_sleep(0.05);
    }
    for (int i = 0; i < 20; i++) {
        LT_CHECK(routed_text(r, true, sql, v, sizeof v) == 0);
        LT_CHECKF(!strcmp(v, want), "read %d went to %s (want %s)", i, v, want);
    }
    ll_pg_router_get_standby(r, 0, &st0);
    ll_pg_router_get_standby(r, 1, &st1);
    LT_CHECK(st0.routed == routed0 && st1.routed >= routed1 + 20);
    ll_pg_router_stats st;
    ll_pg_router_get_stats(r, &st);
    LT_CHECK(st.standby_usable && st.lag >= 0 && st.lag <= 1); /* the least lag: the second's */
    printf("router: standby 0 (%s) lag %.2f s: unusable; standby 1 (%s) lag %.2f s: took every read\n",
           st0.server, st0.lag, st1.server, st1.lag);
    q = ll_pg_pool_query(s1, "SELECT pg_wal_replay_resume()", 0);
    LT_CHECK(ll_await(q) == 0);
    ll_future_free(q);
    LT_CHECK(wait_standby(r, 0, true, 5));
    ll_pg_router_free(r);
    ll_pg_pool_free(s2);
    ll_pg_pool_free(s1);
    ll_pg_pool_free(pp);
    ll_sleep(0.1);
    return 0;
}

static void test_standby_hosts(void **state) {
    (void)state;
    assert_true(lt_pg_start_standby(&stby2, &prim));
    lt_ctx t;
    lt_setup(&t);
    int rc = lt_run_checked(t.loop, t_standby_hosts, NULL);
    lt_teardown(&t);
    assert_int_equal(rc, 0);
}

/* ---- split brain: two hosts accept writes ---- */

static int t_split_brain(void *arg) {
    (void)arg;
    char ci[512], want1[32], want2[32];
    ll_pg_conn *c;
    snprintf(want1, sizeof want1, ":%d", prim.port);
    snprintf(want2, sizeof want2, ":%d", stby2.port);
    const struct {
        const char *tsa;
        int p1, p2, p3;
    } cases[] = {
        {"primary", prim.port, stby2.port, stby.port},
        {"primary", stby.port, stby2.port, prim.port},
        {"read-write", stby2.port, dead_port, prim.port},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(ci, sizeof ci,
                 "host=127.0.0.1,127.0.0.1,127.0.0.1 port=%d,%d,%d user=postgres dbname=postgres "
                 "target_session_attrs=%s connect_timeout=10",
                 cases[i].p1, cases[i].p2, cases[i].p3, cases[i].tsa);
        int rc = connect_to(ci, &c);
        LT_CHECKF(rc == LL_EPG_SPLIT_BRAIN, "case %zu: %d %s", i, rc, rc ? lt_last_err : ll_pg_peer(c));
        LT_CHECKF(strstr(lt_last_err, "split brain") && strstr(lt_last_err, want1) && strstr(lt_last_err, want2),
                  "%s", lt_last_err);
    }
    /* a pool never writes: its queries fail with the same code */
    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres target_session_attrs=primary",
             prim.port, stby2.port);
    ll_pg_pool *p = ll_pg_pool_new(ci, &(ll_pg_pool_opts){.max_size = 2});
    ll_future *q = ll_pg_pool_query(p, "CREATE TABLE must_not_exist(v int)", 0);
    LT_CHECKF(ll_await(q) == LL_EPG_SPLIT_BRAIN, "%s", ll_future_errmsg(q));
    ll_future_free(q);
    ll_pg_pool_free(p);
    /* target_session_attrs=any asks nothing */
    snprintf(ci, sizeof ci, "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres", stby2.port,
             prim.port);
    LT_CHECKF(connect_to(ci, &c) == 0, "%s", lt_last_err);
    ll_pg_close(c);
    /* the promoted one stopped: the primary is the only writer again */
    lt_pg_stop(&stby2);
    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres target_session_attrs=primary",
             prim.port, stby2.port);
    LT_CHECKF(connect_to(ci, &c) == 0, "%s", lt_last_err);
    LT_CHECK(peer_port(c) == prim.port);
    ll_pg_close(c);
    return 0;
}

static void test_split_brain(void **state) {
    (void)state;
    assert_true(stby2.port > 0);
    assert_true(lt_pg_promote(&stby2)); /* the primary still runs: two primaries */
    lt_ctx t;
    lt_setup(&t);
    int rc = lt_run_checked(t.loop, t_split_brain, NULL);
    lt_teardown(&t);
    assert_int_equal(rc, 0);
}

/* ---- failover under load ---- */

enum { WORKERS = 16 };
static struct {
    ll_pg_pool *pool;
    bool stop;
    ll_time t_stop;                     /* when the primary was stopped */
    ll_time failed_first, recovered_at; /* first failure; first success of a query started after
                                         * t_stop (it can only have run on the new primary) */
    long ok, failed, ok_after;
    char last_err[512];
} fo;

static int worker(void *arg) {
    (void)arg;
    while (!fo.stop) {
        ll_time started = ll_now();
        ll_future *f = ll_pg_pool_query(fo.pool, "INSERT INTO fo(v) VALUES (1) RETURNING v", 0);
        int rc = ll_await(f);
        if (rc == 0) {
            fo.ok++;
            if (fo.t_stop && started > fo.t_stop) {
                fo.ok_after++;
                if (!fo.recovered_at) fo.recovered_at = ll_now();
            }
        } else {
            fo.failed++;
            if (!fo.failed_first) fo.failed_first = ll_now();
            snprintf(fo.last_err, sizeof fo.last_err, "%s", ll_future_errmsg(f));
            ll_sleep(0.05);
        }
        ll_future_free(f);
    }
    return 0;
}

static int t_failover(void *arg) {
    (void)arg;
    char ci[512];
    snprintf(ci, sizeof ci,
             "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres "
             "target_session_attrs=primary connect_timeout=2",
             prim.port, stby.port);
    fo.pool = ll_pg_pool_new(ci, &(ll_pg_pool_opts){.max_size = 8, .acquire_timeout = 3});
    LT_CHECK(fo.pool);
    ll_future *q = ll_pg_pool_query(fo.pool, "CREATE TABLE fo(v int)", 0);
    LT_CHECK(ll_await(q) == 0);
    ll_future_free(q);
    ll_future *ws[WORKERS];
    for (int i = 0; i < WORKERS; i++) ws[i] = ll_spawn(worker, NULL);
    ll_sleep(0.5);
    long before = fo.ok;
    LT_CHECK(before > 0 && fo.failed == 0);
    /* the primary goes away; then the standby is promoted (both block this loop, as an operator's
     * tools would not: the workers see the outage when it resumes) */
    ll_time t_stop = ll_now();
    lt_pg_halt(&prim);
    fo.t_stop = ll_now(); /* the loop was blocked: queries started from now on are after it */
    ll_sleep(0.3); /* the workers hit the outage */
    ll_time t_promote = ll_now();
    LT_CHECK(lt_pg_promote(&stby));
    ll_time t_promoted = ll_now();
    for (int i = 0; i < 300 && !fo.recovered_at; i++) ll_sleep(0.05);
    LT_CHECKF(fo.recovered_at, "not recovered; %ld ok, %ld failed, last error: %s", fo.ok,
              fo.failed, fo.last_err);
    ll_sleep(0.5);
    /* after recovery everything works, on the new primary */
    long fails_at = fo.failed;
    ll_sleep(0.5);
    LT_CHECK(fo.failed == fails_at);
    fo.stop = true;
    for (int i = 0; i < WORKERS; i++) {
        LT_CHECK(ll_await(ws[i]) == 0);
        ll_future_free(ws[i]);
    }
    ll_future *a = ll_pg_pool_acquire(fo.pool);
    LT_CHECK(ll_await(a) == 0);
    LT_CHECK(peer_port(ll_future_value(a)) == stby.port);
    ll_pg_pool_release(fo.pool, ll_future_value(a));
    ll_future_free(a);
    printf("failover: %ld queries ok, %ld failed (last: %s)\n", fo.ok, fo.failed, fo.last_err);
    printf("failover: pg_ctl promote took %.2f s; first write on the new primary %.3f s after "
           "promote returned, %.2f s after the primary stopped\n",
           t_promoted - t_promote, fo.recovered_at - t_promoted, fo.recovered_at - t_stop);
    LT_CHECKF(fo.recovered_at - t_promoted < 5, "%.2f s", fo.recovered_at - t_promoted);
    ll_pg_pool_free(fo.pool);
    ll_sleep(0.1);
    return 0;
}

static void test_failover(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    int rc = lt_run_checked(t.loop, t_failover, NULL);
    lt_teardown(&t);
    assert_int_equal(rc, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multihost),
        cmocka_unit_test(test_share),
        cmocka_unit_test(test_router),
        cmocka_unit_test(test_standby_hosts),
        cmocka_unit_test(test_split_brain),
        cmocka_unit_test(test_failover), /* last: it ends the topology */
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
