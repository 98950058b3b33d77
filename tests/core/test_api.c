/*
 * test_api.c — the API's promises to its users (issue 9): the version, one meaning for a negative
 * timeout, messages that tell the truth (a NULL future, a timed-out gather, a timeout printed as
 * given, a NULL argument named), and typed values that cannot be read as the wrong type.
 */
#include <string.h>
#include <unistd.h>
#include "harness/faultproxy.h"
#include "harness/harness.h"

static void test_version(void **state) {
    (void)state;
    assert_int_equal(ll_version(), LL_VERSION_NUMBER);
    assert_int_equal(LL_VERSION_NUMBER,
                     LL_VERSION_MAJOR * 10000 + LL_VERSION_MINOR * 100 + LL_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", LL_VERSION_MAJOR, LL_VERSION_MINOR, LL_VERSION_PATCH);
    assert_string_equal(ll_version_string(), want);
}

/* ---- NULL futures ---- */

static int await_null_task(void *arg) {
    (void)arg;
    /* a NULL future is what a call gives when it could not allocate one: that is its one meaning */
    LT_CHECK(ll_await(NULL) == LL_ENOMEM);
    LT_CHECK(ll_await_timeout(NULL, 1) == LL_ENOMEM);
    LT_CHECK(strstr(ll_future_errmsg(NULL), "out of memory") != NULL);
    LT_CHECK(ll_future_code(NULL) == LL_ENOMEM);
    return 0;
}

static void test_null_future_means_out_of_memory(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_checked(c.loop, await_null_task, NULL), 0);
    lt_teardown(&c);
}

/* ---- a gather cut by ll_await_timeout says it timed out ---- */

static int sleeper(void *arg) {
    return ll_sleep(*(double *)arg);
}

static int gather_timeout_task(void *arg) {
    (void)arg;
    double fast = 0.001, slow = 10;
    ll_future *fs[2] = {ll_spawn(sleeper, &fast), ll_spawn(sleeper, &slow)};
    ll_future *all = ll_gather(fs, 2, LL_GATHER_FAIL_FAST);
    ll_time t0 = ll_now();
    int rc = ll_await_timeout(all, 0.05);
    double took = ll_now() - t0;
    snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(all));
    LT_CHECKF(rc == LL_ETIMEDOUT, "rc %s", ll_err_name(rc));
    LT_CHECKF(took < 2.0, "took %.3f s", took); /* generous: the machine is loaded */
    /* the timeout as given (0.05), not a measured 0.0500123 */
    LT_CHECK(strcmp(ll_future_errmsg(all), "cancelled: timed out after 0.05 s") == 0);
    LT_CHECK(ll_future_code(fs[0]) == 0);     /* finished in time */
    LT_CHECK(ll_future_code(fs[1]) != 0);
    snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(fs[1]));
    LT_CHECK(strstr(ll_future_errmsg(fs[1]), "timed out after 0.05 s") != NULL);
    ll_future_free(fs[0]);
    ll_future_free(fs[1]);
    ll_future_free(all);

    /* a scope's deadline (no ll_await_timeout): the message says a deadline passed */
    ll_future *s = ll_spawn(sleeper, &slow);
    ll_future *g = ll_gather(&s, 1, LL_GATHER_FAIL_FAST);
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.02));
    rc = ll_await(g);
    LT_CHECK(ll_scope_exit(&sc) == LL_ETIMEDOUT);
    LT_CHECK(rc == LL_ETIMEDOUT);
    snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(g));
    LT_CHECK(strstr(ll_future_errmsg(g), "deadline passed") != NULL);
    ll_future_free(s);
    ll_future_free(g);
    return 0;
}

static void test_gather_timeout_message(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_checked(c.loop, gather_timeout_task, NULL), 0);
    lt_teardown(&c);
}

/* ---- negative timeouts: no limit of their own ---- */

/* A server that accepts and then says nothing (until it is closed). */
static int silent_handler(ll_stream *s, void *arg) {
    (void)s, (void)arg;
    return ll_sleep(30);
}

static int negative_timeout_task(void *arg) {
    (void)arg;
    LT_CHECK(ll_deadline_in(-1) == LL_NEVER);
    LT_CHECK(ll_deadline_in(0) <= ll_now());
    double d = 0.05;
    ll_future *f = ll_spawn(sleeper, &d);
    LT_CHECK(ll_await_timeout(f, -1) == 0); /* waits for it, however long */
    ll_future_free(f);
    f = ll_spawn(sleeper, &d);
    LT_CHECK(ll_await_timeout(f, 0) == LL_ETIMEDOUT); /* 0 is a timeout of 0 s */
    ll_future_free(f);

    /* a negative connect or handshake timeout leaves only the task's deadline */
    ll_future *sf = ll_server_open("127.0.0.1", 0, silent_handler, NULL, NULL);
    LT_CHECK(ll_await(sf) == 0);
    ll_server *srv = ll_future_take(sf);
    ll_future_free(sf);
    ll_stream_opts o = {.connect_timeout = -1};
    f = ll_stream_connect("127.0.0.1", ll_server_port(srv), &o);
    int rc = ll_await(f);
    LT_CHECK(rc == 0);
    ll_future_free(f);
    /* a silent server never answers the TLS hello: only the 0.2 s deadline ends the handshake */
    ll_tls_opts tls = {.handshake_timeout = -1, .insecure_skip_verify_DANGEROUS = true};
    o.tls = &tls;
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.2));
    f = ll_stream_connect("127.0.0.1", ll_server_port(srv), &o);
    rc = ll_await(f);
    LT_CHECK(ll_scope_exit(&sc) == LL_ETIMEDOUT);
    LT_CHECKF(rc == LL_ETIMEDOUT, "%s", ll_err_name(rc));
    ll_future_free(f);
    /* and a given handshake timeout is printed as given */
    tls.handshake_timeout = 0.1;
    f = ll_stream_connect("127.0.0.1", ll_server_port(srv), &o);
    rc = ll_await(f);
    snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    LT_CHECK(rc == LL_ETIMEDOUT);
    LT_CHECK(strstr(ll_future_errmsg(f), "timed out after 0.1 s") != NULL);
    ll_future_free(f);
    LT_CHECK(lt_await_free(ll_server_close(srv, 0)) == 0); /* cancels the silent handlers */
    return 0;
}

static void test_negative_timeouts(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_checked(c.loop, negative_timeout_task, NULL), 0);
    lt_teardown(&c);
}

/* ---- a timeout never fires early, even right after the loop was blocked ---- */

/* libev measures timers from its cached time, which lags the clock after a blocking step: a
 * timeout armed then would expire at once. Each timeout is checked against the clock, and printed
 * as given. Tolerance: never early by more than 50 ms; late by up to 3 s (a loaded machine). */
static bool timed_out_after_half_a_second(ll_future *f, ll_time t0) {
    int rc = ll_await(f);
    double took = ll_now() - t0;
    snprintf(lt_last_err, sizeof lt_last_err, "%s (after %.3f s)", ll_future_errmsg(f), took);
    bool ok = rc == LL_ETIMEDOUT && took >= 0.45 && took < 3.5 &&
              strstr(ll_future_errmsg(f), "timed out after 0.5 s") != NULL;
    ll_future_free(f);
    return ok;
}

static int blocked_then_timeout_task(void *arg) {
    (void)arg;
    lt_proxy *px = lt_proxy_start("127.0.0.1", 9);
    LT_CHECK(px != NULL);
    lt_fault hole = {.kind = LT_FAULT_BLACKHOLE};
    lt_proxy_set(px, &hole); /* connects hang */
    usleep(1200 * 1000);
    ll_stream_opts o = {.connect_timeout = 0.5};
    ll_time t0 = ll_now();
    ll_future *f = ll_stream_connect("127.0.0.1", (uint16_t)lt_proxy_port(px), &o);
    LT_CHECK(timed_out_after_half_a_second(f, t0));
    lt_proxy_stop(px);

    ll_future *sf = ll_server_open("127.0.0.1", 0, silent_handler, NULL, NULL);
    LT_CHECK(ll_await(sf) == 0);
    ll_server *srv = ll_future_take(sf);
    ll_future_free(sf);
    f = ll_stream_connect("127.0.0.1", ll_server_port(srv), NULL);
    LT_CHECK(ll_await(f) == 0);
    ll_stream *st = ll_future_take(f);
    ll_future_free(f);
    usleep(1200 * 1000);
    ll_tls_opts tls = {.handshake_timeout = 0.5, .insecure_skip_verify_DANGEROUS = true};
    t0 = ll_now();
    f = ll_stream_starttls(st, &tls); /* the silent server never answers the hello */
    LT_CHECK(timed_out_after_half_a_second(f, t0));
    ll_stream_close(st);
    LT_CHECK(lt_await_free(ll_server_close(srv, 0)) == 0);
    return 0;
}

static void test_timeouts_after_blocking(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_checked(c.loop, blocked_then_timeout_task, NULL), 0);
    lt_teardown(&c);
}

/* ---- LL_REQUIRE_ARG: a NULL argument is named, never reported as out of memory ---- */

static ll_future *takes_pool(void *pool) {
    LL_REQUIRE_ARG(pool, "pool");
    return ll_future_failed(NULL, LL_ESTATE, "not reached");
}

static bool fails_naming(ll_future *f, const char *msg) {
    return f && lt_await_msg(f, lt_last_err, sizeof lt_last_err) == LL_EINVAL &&
           strcmp(lt_last_err, msg) == 0;
}

static int require_arg_task(void *arg) {
    (void)arg;
    LT_CHECK(fails_naming(takes_pool(NULL), "takes_pool: pool is NULL"));
    /* the core's own calls on a NULL stream, process or function */
    char buf[4];
    LT_CHECK(fails_naming(ll_stream_read(NULL, buf, 4), "ll_stream_read: stream is NULL"));
    LT_CHECK(fails_naming(ll_stream_write(NULL, "x", 1), "ll_stream_write: stream is NULL"));
    LT_CHECK(fails_naming(ll_stream_starttls(NULL, NULL), "ll_stream_starttls: stream is NULL"));
    LT_CHECK(fails_naming(ll_process_wait(NULL), "ll_process_wait: process is NULL"));
    LT_CHECK(fails_naming(ll_spawn(NULL, NULL), "ll_spawn_ex: fn is NULL"));
    return 0;
}

static void test_require_arg(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_checked(c.loop, require_arg_task, NULL), 0);
    lt_teardown(&c);
}

/* ---- ll_future_value_as: the destructor is the type tag ---- */

static void free_a(void *p) { ll_free(p); }
static void free_b(void *p) { ll_free(p); }

static void test_value_as(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *f = ll_future_new(c.loop);
    void *v = ll_malloc(8);
    assert_int_equal(ll_future_resolve(f, v, free_a), 0);
    assert_ptr_equal(ll_future_value_as(f, free_a), v);
    assert_null(ll_future_value_as(f, free_b)); /* another type: NULL, never garbage */
    assert_null(ll_future_value_as(NULL, free_a));
    ll_future *g = ll_future_failed(c.loop, LL_EINVAL, "x");
    assert_null(ll_future_value_as(g, free_a));
    ll_future_free(f);
    ll_future_free(g);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_null_future_means_out_of_memory),
        cmocka_unit_test(test_gather_timeout_message),
        cmocka_unit_test(test_negative_timeouts),
        cmocka_unit_test(test_timeouts_after_blocking),
        cmocka_unit_test(test_require_arg),
        cmocka_unit_test(test_value_as),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
