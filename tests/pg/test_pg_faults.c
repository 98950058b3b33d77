/*
 * test_pg_faults.c — cancellation and timeouts, and what goes wrong with servers: a backend
 * terminated mid-query, a lost COMMIT, nothing listening, a wrong password, a frozen server.
 */
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>
#include "pgtest.h"

/* ---- cancelling a long query; the connection is usable afterwards ---- */

typedef struct {
    double max_late;
    int ticks;
    bool stop;
} ticker_arg;

/* Sleeps 10 ms at a time and records the worst lateness: the loop must never block. */
static int ticker(void *p) {
    ticker_arg *a = p;
    while (!a->stop) {
        ll_time t0 = ll_now();
        if (ll_sleep(0.01)) break;
        double late = ll_now() - t0 - 0.01;
        if (late > a->max_late) a->max_late = late;
        a->ticks++;
    }
    return 0;
}

static int t_cancel(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ticker_arg ta = {0};
    ll_future *tick = ll_spawn(ticker, &ta);
    ll_sleep(0.05);
    ll_future *q = ll_pg_query(c, "SELECT pg_sleep(30)", 0);
    ll_sleep(0.1);
    ll_time t0 = ll_now();
    assert_int_equal(ll_future_cancel(q), 0);
    assert_int_equal(ll_await(q), LL_ECANCELED);
    double took = ll_now() - t0;
    ll_future_free(q);
    assert_true(took < 3.0);
    /* the connection is usable and no cancel hits the next query */
    assert_int_equal(pgt_int(c, "SELECT 9"), 9);
    ll_sleep(0.05);
    ta.stop = true;
    assert_int_equal(ll_await(tick), 0);
    ll_future_free(tick);
    /* timers kept firing while the cancel ran in the executor: generous tolerance (2 noisy
     * cores, sanitizers) — a loop blocked by PQcancel or the query would show seconds */
    double tolerance = (lt_under_valgrind() || lt_under_asan()) ? 0.5 : 0.1;
    if (ta.max_late > tolerance) fprintf(stderr, "ticker was %.3f s late\n", ta.max_late);
    assert_true(ta.max_late < tolerance);
    assert_true(ta.ticks >= 5);

    /* a deadline: the query is cancelled on the server and the await says ETIMEDOUT */
    q = ll_pg_query(c, "SELECT pg_sleep(30)", 0);
    t0 = ll_now();
    assert_int_equal(ll_await_timeout(q, 0.2), LL_ETIMEDOUT);
    assert_true(ll_now() - t0 < 3.0);
    ll_future_free(q);
    assert_int_equal(pgt_int(c, "SELECT 10"), 10);

    /* cancelled before it was sent (held behind a script): removed at once */
    ll_future *script = ll_pg_exec(c, "SELECT pg_sleep(0.1)");
    q = ll_pg_query(c, "SELECT 1", 0);
    assert_int_equal(ll_future_cancel(q), 0);
    assert_int_equal(ll_future_get_state(q), LL_FUTURE_CANCELLED);
    assert_int_equal(ll_await(script), 0);
    ll_future_free(script);
    ll_future_free(q);
    ll_pg_close(c);
    return 0;
}

static void test_cancel(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_cancel, NULL), 0);
    lt_teardown(&t);
}

/* ---- cancelling one query of a pipeline never hits its neighbours ---- */

static int t_cancel_pipelined(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    /* a query with another one behind it is not interrupted (the cancel could hit the other):
     * it is waited for, and the one behind succeeds */
    ll_future *slow = ll_pg_query(c, "SELECT pg_sleep(0.2), 1", 0);
    ll_future *behind = ll_pg_query(c, "SELECT 2", 0);
    ll_future_cancel(slow);
    int rc = ll_await(slow);
    assert_true(rc == 0 || rc == LL_ECANCELED);
    assert_int_equal(ll_await(behind), 0);
    int64_t v;
    assert_int_equal(ll_pg_int64(ll_future_value(behind), 0, 0, &v), 0);
    assert_int_equal(v, 2);
    ll_future_free(slow);
    ll_future_free(behind);

    /* cancel at varying moments, right around the end of short queries, then query at once:
     * a late cancel must never hit the next query */
    for (int i = 0; i < 40; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT pg_sleep(%g)", 0.0005 * (i % 8));
        ll_future *q = ll_pg_query(c, sql, 0);
        if (i % 3) ll_sleep(0.0004 * (i % 5));
        ll_future_cancel(q);
        ll_future *next = ll_pg_query(c, "SELECT 42", 0);
        rc = ll_await(q);
        assert_true(rc == 0 || rc == LL_ECANCELED);
        rc = ll_await(next);
        if (rc) fprintf(stderr, "round %d: %s\n", i, ll_future_errmsg(next));
        assert_int_equal(rc, 0);
        ll_future_free(q);
        ll_future_free(next);
    }
    ll_pg_close(c);
    return 0;
}

static void test_cancel_pipelined(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_cancel_pipelined, NULL), 0);
    lt_teardown(&t);
}

/* ---- a query that does not stop: the connection is closed after cancel_timeout ---- */

static int t_cancel_timeout(void *arg) {
    (void)arg;
    ll_pg_opts o = {.cancel_timeout = 0.3};
    ll_future *cf = ll_pg_connect(pgt_server.conninfo, &o);
    assert_int_equal(ll_await(cf), 0);
    ll_pg_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    int pid = ll_pg_backend_pid(c);
    ll_future *q = ll_pg_query(c, "SELECT pg_sleep(30)", 0);
    ll_sleep(0.1);
    kill(pid, SIGSTOP); /* the backend cannot act on the cancel */
    ll_time t0 = ll_now();
    ll_future_cancel(q);
    /* the caller has its answer at once; the connection cleans up in the background */
    assert_int_equal(ll_await(q), LL_ECANCELED);
    double took = ll_now() - t0;
    ll_future_free(q);
    assert_true(took < 0.1);
    /* new work waits (a late cancel could hit it) until the cancelled query is over: it is not,
     * so cancel_timeout after the cancel the connection is closed and the waiting query fails */
    q = ll_pg_query(c, "SELECT 1", 0);
    assert_int_equal(ll_await(q), LL_EPG_CONN);
    took = ll_now() - t0;
    if (!(took >= 0.25 && took < 3.0)) fprintf(stderr, "closed after %.3f s\n", took);
    assert_true(took >= 0.25 && took < 3.0);
    kill(pid, SIGCONT);
    ll_future_free(q);
    assert_false(ll_pg_is_ok(c));
    ll_pg_close(c);
    pgt_settle();
    return 0;
}

static void test_cancel_timeout(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_cancel_timeout, NULL), 0);
    lt_teardown(&t);
}

/* ---- the backend terminated mid-query ---- */

static int t_terminated(void *arg) {
    (void)arg;
    ll_pg_conn *victim = pgt_connect();
    ll_pg_conn *admin = pgt_connect();
    ll_future *q = ll_pg_query(victim, "SELECT pg_sleep(30)", 0);
    ll_future *behind = ll_pg_query(victim, "SELECT 1", 0);
    ll_future *note = ll_pg_next_notification(victim);
    ll_sleep(0.1);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", ll_pg_backend_pid(victim));
    ll_future *k = ll_pg_query(admin, "SELECT pg_terminate_backend($1::int)", 1, pid);
    assert_int_equal(ll_await(k), 0);
    ll_future_free(k);
    assert_int_equal(ll_await(q), LL_EPG_CONN);
    assert_string_equal(ll_pg_error_sqlstate(q), "57P01");
    assert_non_null(strstr(ll_future_errmsg(q), "connection lost"));
    assert_int_equal(ll_await(behind), LL_EPG_CONN);
    assert_int_equal(ll_await(note), LL_EPG_CONN);
    ll_future_free(q);
    ll_future_free(behind);
    ll_future_free(note);
    assert_false(ll_pg_is_ok(victim));
    q = ll_pg_query(victim, "SELECT 1", 0);
    assert_int_equal(ll_await(q), LL_EPG_CONN);
    ll_future_free(q);
    ll_pg_close(victim);
    ll_pg_close(admin);
    return 0;
}

static void test_terminated(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_terminated, NULL), 0);
    lt_teardown(&t);
}

/* ---- the connection lost during COMMIT: outcome unknown ---- */

static int t_commit_lost(void *arg) {
    (void)arg;
    ll_pg_conn *c = pgt_connect();
    ll_pg_conn *admin = pgt_connect();
    /* a deferred constraint trigger that sleeps makes COMMIT slow */
    ll_future *s = ll_pg_exec(
        c, "CREATE TABLE IF NOT EXISTS slowcommit (x int);"
           "CREATE OR REPLACE FUNCTION slowcommit_fn() RETURNS trigger LANGUAGE plpgsql AS "
           "$$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$;"
           "DROP TRIGGER IF EXISTS slowcommit_trg ON slowcommit;"
           "CREATE CONSTRAINT TRIGGER slowcommit_trg AFTER INSERT ON slowcommit "
           "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slowcommit_fn()");
    assert_int_equal(ll_await(s), 0);
    ll_future_free(s);
    ll_future *bf = ll_pg_begin(c, NULL);
    assert_int_equal(ll_await(bf), 0);
    ll_pg_tx *tx = ll_future_value(bf);
    ll_future_free(bf);
    pgt_ok(c, "INSERT INTO slowcommit VALUES (1)");
    ll_future *commit = ll_pg_commit(tx);
    ll_sleep(0.2);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", ll_pg_backend_pid(c));
    ll_future *k = ll_pg_query(admin, "SELECT pg_terminate_backend($1::int)", 1, pid);
    assert_int_equal(ll_await(k), 0);
    ll_future_free(k);
    assert_int_equal(ll_await(commit), LL_EPG_UNKNOWN_OUTCOME);
    assert_non_null(strstr(ll_future_errmsg(commit), "COMMIT"));
    ll_future_free(commit);
    ll_pg_close(c);
    ll_future *d = ll_pg_exec(admin, "DROP TABLE slowcommit");
    assert_int_equal(ll_await(d), 0);
    ll_future_free(d);
    ll_pg_close(admin);
    return 0;
}

static void test_commit_lost(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_commit_lost, NULL), 0);
    lt_teardown(&t);
}

/* ---- connect failures ---- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int t_connect_failures(void *arg) {
    (void)arg;
    char ci[256];
    /* nothing listening */
    int port = free_port();
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=postgres", port);
    ll_future *f = ll_pg_connect(ci, NULL);
    assert_int_equal(ll_await(f), LL_ECONNREFUSED);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    assert_non_null(strstr(ll_future_errmsg(f), want));
    ll_future_free(f);

    /* a wrong password: the error names the user */
    ll_pg_conn *admin = pgt_connect();
    ll_future *s = ll_pg_exec(admin, "DROP ROLE IF EXISTS " LT_PG_PW_ROLE "; CREATE ROLE "
                                     LT_PG_PW_ROLE " LOGIN PASSWORD 'right'");
    assert_int_equal(ll_await(s), 0);
    ll_future_free(s);
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=%s password=wrong dbname=postgres",
             pgt_server.port, LT_PG_PW_ROLE);
    f = ll_pg_connect(ci, NULL);
    assert_int_equal(ll_await(f), LL_EPG_AUTH);
    assert_non_null(strstr(ll_future_errmsg(f), "password authentication failed"));
    assert_non_null(strstr(ll_future_errmsg(f), LT_PG_PW_ROLE));
    ll_future_free(f);
    /* no password at all */
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=%s dbname=postgres passfile=/nonexistent",
             pgt_server.port, LT_PG_PW_ROLE);
    f = ll_pg_connect(ci, NULL);
    assert_int_equal(ll_await(f), LL_EPG_AUTH);
    ll_future_free(f);
    /* the right one (scram-sha-256) */
    snprintf(ci, sizeof ci, "host=127.0.0.1 port=%d user=%s password=right dbname=postgres",
             pgt_server.port, LT_PG_PW_ROLE);
    ll_pg_conn *c = pgt_connect_to(ci);
    ll_pg_result *r = pgt_q(c, "SELECT current_user");
    assert_string_equal(ll_pg_text(r, 0, 0), LT_PG_PW_ROLE);
    ll_pg_result_free(r);
    ll_pg_close(c);
    ll_pg_close(admin);

    /* a conninfo that does not parse */
    f = ll_pg_connect("host=127.0.0.1 nosuchkeyword=1", NULL);
    assert_int_equal(ll_await(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "nosuchkeyword"));
    ll_future_free(f);
    /* the connect timeout also bounds the name lookup (no DNS here: a timeout; with DNS: an
     * answer that the name does not exist) */
    ll_pg_opts sh = {.connect_timeout = 0.3};
    ll_time t0 = ll_now();
    f = ll_pg_connect("host=llpg-test-no-such-host.example.com user=postgres", &sh);
    int rc = ll_await(f);
    if (getenv("PGT_VERBOSE")) fprintf(stderr, "unresolvable host: %s\n", ll_future_errmsg(f));
    assert_true(rc == LL_ETIMEDOUT || rc == LL_ENOTFOUND || rc == LL_EDNS);
    assert_true(ll_now() - t0 < 3.0);
    ll_future_free(f);
    /* a deadline shorter than any DNS round trip: it expires while the name is being resolved */
    sh.connect_timeout = 1e-6;
    char name[128];
    snprintf(name, sizeof name, "host=llpg-%d-%ld.example.com user=postgres", (int)getpid(),
             (long)(ll_now() * 1e6));
    f = ll_pg_connect(name, &sh);
    rc = ll_await(f);
    if (getenv("PGT_VERBOSE")) fprintf(stderr, "short deadline: %s\n", ll_future_errmsg(f));
    assert_true(rc == LL_ETIMEDOUT || rc == LL_ENOTFOUND || rc == LL_EDNS);
    ll_future_free(f);
    ll_sleep(0.05); /* a late answer from the resolver finds nothing to wake */
    /* a name that does not resolve */
    f = ll_pg_connect("host=nonexistent.invalid user=postgres", NULL);
    assert_int_equal(ll_await(f), LL_ENOTFOUND);
    assert_non_null(strstr(ll_future_errmsg(f), "nonexistent.invalid"));
    ll_future_free(f);
    return 0;
}

static void test_connect_failures(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_connect_failures, NULL), 0);
    lt_teardown(&t);
}

/* ---- a frozen server: the connect timeout holds ---- */

static int t_frozen(void *arg) {
    (void)arg;
    ll_pg_opts o = {.connect_timeout = 0.5};
    lt_pg_pause(&pgt_server);
    ll_time t0 = ll_now();
    ll_future *f = ll_pg_connect(pgt_server.conninfo, &o);
    int rc = ll_await(f);
    double took = ll_now() - t0;
    lt_pg_resume(&pgt_server);
    assert_int_equal(rc, LL_ETIMEDOUT);
    assert_non_null(strstr(ll_future_errmsg(f), "timed out"));
    assert_true(took >= 0.45 && took < 2.5);
    ll_future_free(f);
    /* the conninfo's connect_timeout is honoured too, and so is the task's deadline */
    lt_pg_pause(&pgt_server);
    char ci[600];
    snprintf(ci, sizeof ci, "%s connect_timeout=1", pgt_server.conninfo);
    t0 = ll_now();
    f = ll_pg_connect(ci, NULL);
    rc = ll_await(f);
    took = ll_now() - t0;
    ll_future_free(f);
    assert_int_equal(rc, LL_ETIMEDOUT);
    assert_true(took >= 0.95 && took < 3.0);
    f = ll_pg_connect(pgt_server.conninfo, NULL);
    t0 = ll_now();
    rc = ll_await_timeout(f, 0.3);
    took = ll_now() - t0;
    ll_future_free(f);
    lt_pg_resume(&pgt_server);
    assert_int_equal(rc, LL_ETIMEDOUT);
    assert_true(took < 2.0);
    /* and it works again */
    ll_pg_conn *c = pgt_connect();
    assert_int_equal(pgt_int(c, "SELECT 1"), 1);
    ll_pg_close(c);
    return 0;
}

static void test_frozen(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_frozen, NULL), 0);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_cancel),        PGT_TEST(test_cancel_pipelined),
        PGT_TEST(test_cancel_timeout), PGT_TEST(test_terminated),
        PGT_TEST(test_commit_lost),   PGT_TEST(test_connect_failures),
        PGT_TEST(test_frozen),
    };
    return PGT_RUN(tests);
}
