/*
 * test_redis_pipeline.c — automatic pipelining and what goes wrong around it, against a real
 * redis-server: many tasks on one connection each get their own replies; thousands of random
 * cancels and timeouts never hand a reply to the wrong caller (redis-py's CVE-2023-28858);
 * deadlines per command and per scope return on time without killing the connection; a stalled
 * server is given up after the grace; the server killed with 500 commands in flight (they fail
 * promptly and cleanly, later ones succeed after the reconnect); commands wait for a reconnect
 * within their deadline.
 */
#include "redistest.h"

/* Timing tolerance: the machine is shared (2 cores, 8 engineers) and sanitizers slow things. */
static double slack(void) { return (lt_under_valgrind() || lt_under_asan()) ? 1.0 : 0.5; }

typedef struct {
    ll_redis_conn *c;
    int id, rounds;
    int cancels, ok;
    bool wrong;
} worker;

static int w_own_replies(void *p) {
    worker *w = p;
    char key[32], val[32];
    snprintf(key, sizeof key, "pl:%d", w->id);
    for (int i = 0; i < w->rounds; i++) {
        snprintf(val, sizeof val, "v%d-%d", w->id, i);
        ll_future *s = ll_redis_commandf(w->c, "SET %s %s", key, val);
        ll_future *g = ll_redis_commandf(w->c, "GET %s", key);
        int rc1 = ll_await(s), rc2 = ll_await(g);
        if (rc1 || rc2 || !rt_str_is(g, val)) w->wrong = true;
        ll_future_free(s);
        ll_future_free(g);
    }
    return 0;
}

static int t_many_tasks(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    enum { N = 500 };
    static worker ws[N];
    ll_future *fs[N];
    for (int i = 0; i < N; i++) {
        ws[i] = (worker){.c = c, .id = i, .rounds = 20};
        fs[i] = ll_spawn(w_own_replies, &ws[i]);
    }
    ll_future *all = ll_gather(fs, N, LL_GATHER_COLLECT);
    LT_CHECK(ll_await(all) == 0);
    ll_future_free(all);
    for (int i = 0; i < N; i++) {
        LT_CHECK(!ws[i].wrong);
        ll_future_free(fs[i]);
    }
    LT_CHECK(ll_redis_pending(c) == 0);
    /* automatic pipelining: the 20,000 commands went out in far fewer writes (each round of the
     * 500 tasks shares a write or a few; a loaded machine may split a round, hence the margin) */
    ll_redis_stats st;
    ll_redis_get_stats(c, &st);
    LT_CHECKF(st.commands >= N * 40 && st.writes * 20 < st.commands, "%llu commands in %llu writes",
              (unsigned long long)st.commands, (unsigned long long)st.writes);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_many_tasks, t_many_tasks)

/* Each worker reads its own key over and over, giving up at random moments (cancel after a few
 * yields, or a tiny timeout); every reply it does get must be its own value. */
static int w_cancels(void *p) {
    worker *w = p;
    char key[32], val[32];
    snprintf(key, sizeof key, "cv:%d", w->id);
    snprintf(val, sizeof val, "value-of-%d", w->id);
    unsigned seed = (unsigned)w->id * 7919u + 1;
    for (int i = 0; i < w->rounds; i++) {
        ll_future *g = ll_redis_commandf(w->c, "GET %s", key);
        int mode = rand_r(&seed) % 4, rc;
        if (mode == 0) {
            for (int k = rand_r(&seed) % 3; k > 0; k--) ll_yield();
            ll_future_cancel(g);
            rc = ll_await(g);
        } else if (mode == 1) {
            rc = ll_await_timeout(g, 0.00005 * (rand_r(&seed) % 40));
        } else {
            rc = ll_await(g);
        }
        if (rc == 0) {
            w->ok++;
            if (!rt_str_is(g, val)) w->wrong = true;
        } else if (rc == LL_ECANCELED || rc == LL_ETIMEDOUT) {
            w->cancels++;
        } else {
            w->wrong = true;
        }
        ll_future_free(g);
    }
    return 0;
}

static int t_cancel_storm(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    enum { N = 200 };
    for (int i = 0; i < N; i++) ll_future_free(ll_redis_commandf(c, "SET cv:%d value-of-%d", i, i));
    static worker ws[N];
    ll_future *fs[N];
    for (int i = 0; i < N; i++) {
        ws[i] = (worker){.c = c, .id = i, .rounds = 60};
        fs[i] = ll_spawn(w_cancels, &ws[i]);
    }
    ll_future *all = ll_gather(fs, N, LL_GATHER_COLLECT);
    LT_CHECK(ll_await(all) == 0);
    ll_future_free(all);
    int cancels = 0, ok = 0;
    for (int i = 0; i < N; i++) {
        LT_CHECKF(!ws[i].wrong, "worker %d got a reply that was not its own", i);
        cancels += ws[i].cancels;
        ok += ws[i].ok;
        ll_future_free(fs[i]);
    }
    LT_CHECKF(cancels >= 2000, "only %d cancels", cancels);
    LT_CHECK(ok >= 2000);
    /* the connection is healthy: abandoned replies were read and dropped */
    ll_future *f = rt_cmd(c, "GET cv:5");
    LT_CHECK(rt_str_is(f, "value-of-5"));
    ll_future_free(f);
    ll_redis_stats st;
    ll_redis_get_stats(c, &st);
    LT_CHECK(st.reconnects == 0);
    LT_CHECK(st.discarded > 0);
    LT_CHECK(ll_redis_pending(c) == 0);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_cancel_storm, t_cancel_storm)

static int t_deadlines(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    /* per command */
    ll_future *slow = ll_redis_commandf(c, "DEBUG SLEEP 0.6");
    ll_future *behind = ll_redis_commandf(c, "PING");
    ll_time t0 = ll_now();
    LT_CHECK(ll_await_timeout(slow, 0.1) == LL_ETIMEDOUT);
    double took = ll_now() - t0;
    LT_CHECKF(took >= 0.09 && took < 0.1 + slack(), "took %.3f s", took);
    LT_CHECK(ll_await(behind) == 0 && rt_str_is(behind, "PONG"));
    ll_future_free(slow);
    ll_future_free(behind);
    /* per scope: one budget over several commands */
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.15));
    t0 = ll_now();
    ll_future *a = ll_redis_commandf(c, "PING");
    int rc1 = ll_await(a);
    ll_future *b = ll_redis_commandf(c, "DEBUG SLEEP 0.6");
    int rc2 = ll_await(b);
    int src = ll_scope_exit(&sc);
    took = ll_now() - t0;
    LT_CHECK(rc1 == 0 && rc2 == LL_ETIMEDOUT && src == LL_ETIMEDOUT);
    LT_CHECKF(took < 0.15 + slack(), "took %.3f s", took);
    ll_future_free(a);
    ll_future_free(b);
    /* the connection survived both: no reconnect, two replies discarded */
    ll_future *f = rt_cmd(c, "PING");
    LT_CHECK(rt_str_is(f, "PONG"));
    ll_future_free(f);
    ll_redis_stats st;
    ll_redis_get_stats(c, &st);
    LT_CHECK(st.reconnects == 0 && st.discarded == 2);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_deadlines, t_deadlines)

/* The server stops answering: the command's deadline returns on time; after the grace the
 * connection is given up and what waited on it fails; it comes back once the server does. */
static int t_stall(void *arg) {
    (void)arg;
    ll_redis_opts o = {.abandon_grace = 0.5};
    ll_redis_conn *c = rt_connect_opts(NULL, &o);
    LT_CHECK(c);
    lt_redis_pause(&rt_server);
    ll_future *waiting = ll_redis_commandf(c, "PING");
    ll_future *g = ll_redis_commandf(c, "GET x");
    ll_time t0 = ll_now();
    int rc = ll_await_timeout(g, 0.1);
    double took = ll_now() - t0;
    ll_future_free(g);
    LT_CHECK(rc == LL_ETIMEDOUT);
    LT_CHECKF(took < 0.1 + slack(), "took %.3f", took);
    rc = ll_await(waiting);
    took = ll_now() - t0;
    LT_CHECK(rc == LL_EREDIS_CONN);
    LT_CHECKF(strstr(ll_future_errmsg(waiting), "no reply for 0.5 s after a command was abandoned"),
              "%s", ll_future_errmsg(waiting));
    LT_CHECK(strstr(ll_future_errmsg(waiting), rt_server.url + 8));
    LT_CHECKF(took >= 0.45 && took < 0.6 + slack(), "took %.3f", took);
    ll_future_free(waiting);
    lt_redis_resume(&rt_server);
    ll_future *f = rt_cmd(c, "PING");
    LT_CHECK(rt_str_is(f, "PONG"));
    ll_future_free(f);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_stall, t_stall)

static int t_kill_restart(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    enum { N = 500 };
    ll_future *fs[N + 1];
    fs[0] = ll_redis_commandf(c, "DEBUG SLEEP 2");
    for (int i = 1; i <= N; i++) fs[i] = ll_redis_commandf(c, "INCR killed");
    ll_sleep(0.1); /* all written; the server sleeps */
    LT_CHECK(ll_redis_pending(c) == N + 1);
    ll_time t0 = ll_now();
    lt_redis_kill(&rt_server);
    for (int i = 0; i <= N; i++) {
        int rc = ll_await(fs[i]);
        LT_CHECKF(rc == LL_EREDIS_CONN, "command %d: %d %s", i, rc, ll_future_errmsg(fs[i]));
        LT_CHECK(strstr(ll_future_errmsg(fs[i]), "connection lost") &&
                 strstr(ll_future_errmsg(fs[i]), "may or may not have run") &&
                 strstr(ll_future_errmsg(fs[i]), rt_server.url + 8));
        ll_future_free(fs[i]);
    }
    double took = ll_now() - t0;
    LT_CHECKF(took < 0.5 + slack(), "failing them took %.3f s", took);
    /* a command issued now waits for the reconnect */
    ll_future *later = ll_redis_commandf(c, "INCR after");
    LT_CHECK(lt_redis_launch(&rt_server));
    LT_CHECK(ll_await(later) == 0 && rt_int(later) == 1); /* none was re-sent: a fresh count */
    ll_future_free(later);
    ll_future *f = rt_cmd(c, "GET killed");
    LT_CHECK(ll_redis_reply_is_nil(ll_redis_reply_of(f)));
    ll_future_free(f);
    ll_redis_stats st;
    ll_redis_get_stats(c, &st);
    LT_CHECK(st.reconnects == 1);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_kill_restart, t_kill_restart)

/* While the server is down: a command's deadline holds; queue_timeout bounds a command without
 * one; commands wait for the server and run once it is back (settings re-applied). */
static int t_wait_for_reconnect(void *arg) {
    (void)arg;
    ll_redis_opts o = {.queue_timeout = 0.4, .db = 4, .client_name = "again"};
    ll_redis_conn *c = rt_connect_opts(NULL, &o);
    LT_CHECK(c);
    lt_redis_kill(&rt_server);
    ll_sleep(0.05);
    ll_future *g = ll_redis_commandf(c, "PING");
    ll_time t0 = ll_now();
    LT_CHECK(ll_await_timeout(g, 0.1) == LL_ETIMEDOUT);
    LT_CHECK(ll_now() - t0 < 0.1 + slack());
    ll_future_free(g);
    g = ll_redis_commandf(c, "PING");
    t0 = ll_now();
    LT_CHECK(ll_await(g) == LL_ETIMEDOUT);
    double took = ll_now() - t0;
    LT_CHECKF(took > 0.3 && took < 0.4 + 2.0 + slack(), "took %.3f", took); /* + one backoff */
    LT_CHECKF(strstr(ll_future_errmsg(g), "not connected within 0.4 s"), "%s", ll_future_errmsg(g));
    ll_future_free(g);
    LT_CHECK(!ll_redis_is_connected(c));
    g = ll_redis_commandf(c, "CLIENT INFO");
    LT_CHECK(lt_redis_launch(&rt_server));
    LT_CHECK(ll_await(g) == 0);
    const char *s;
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_of(g), &s, NULL) == 0 && strstr(s, " db=4 ") &&
             strstr(s, "name=again"));
    ll_future_free(g);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_wait_for_reconnect, t_wait_for_reconnect)

/* Closing with commands in flight and held: they fail with LL_ECLOSED at once. */
static int t_close_in_flight(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    ll_future *a = ll_redis_commandf(c, "DEBUG SLEEP 0.3");
    ll_future *b = ll_redis_commandf(c, "PING");
    ll_sleep(0.02);
    ll_redis_close(c);
    LT_CHECK(ll_await(a) == LL_ECLOSED && ll_await(b) == LL_ECLOSED);
    ll_future_free(a);
    ll_future_free(b);
    /* a connect abandoned by its deadline leaves nothing behind */
    ll_future *cf = ll_redis_connect(rt_server.url, NULL);
    ll_future_cancel(cf);
    LT_CHECK(ll_await(cf) == LL_ECANCELED);
    ll_future_free(cf);
    /* a connect future freed without taking the connection closes it */
    cf = ll_redis_connect(rt_server.url, NULL);
    LT_CHECK(ll_await(cf) == 0);
    ll_future_free(cf);
    rt_settle();
    return 0;
}
RT_TEST(test_close_in_flight, t_close_in_flight)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_tasks),   cmocka_unit_test(test_cancel_storm),
        cmocka_unit_test(test_deadlines),    cmocka_unit_test(test_stall),
        cmocka_unit_test(test_close_in_flight), cmocka_unit_test(test_kill_restart),
        cmocka_unit_test(test_wait_for_reconnect),
    };
    return RT_RUN(tests);
}
