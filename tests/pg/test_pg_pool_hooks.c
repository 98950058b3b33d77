/*
 * test_pg_pool_hooks.c — the pool's on_connect and on_release hooks against a real PostgreSQL:
 * on_connect's SETs hold on every lend (also after the reset), on_release runs on each give-back,
 * a failing on_connect discards the connection and fails the acquire.
 */
#include "pgtest.h"

static int connects, releases;

static ll_future *on_connect(ll_pg_conn *c, void *arg) {
    assert_ptr_equal(arg, &connects);
    connects++;
    return ll_pg_exec(c, "SET application_name = 'hooked'");
}

static ll_future *on_release(ll_pg_conn *c, void *arg) {
    (void)arg;
    releases++;
    return ll_pg_exec(c, "SELECT 1");
}

static ll_future *bad_connect(ll_pg_conn *c, void *arg) {
    (void)arg;
    return ll_pg_exec(c, "SELECT 1/0");
}

static int t_hooks(void *arg) {
    (void)arg;
    connects = releases = 0;
    ll_pg_pool_opts o = {.max_size = 2, .on_connect = on_connect, .on_release = on_release,
                         .hook_arg = &connects};
    ll_pg_pool *p = ll_pg_pool_new(pgt_server.conninfo, &o);
    assert_non_null(p);
    for (int i = 0; i < 5; i++) {
        ll_future *f = ll_pg_pool_query_typed(p, "SHOW application_name", 0, NULL, NULL);
        assert_int_equal(ll_await(f), 0);
        const char *s;
        assert_int_equal(ll_pg_get_text(ll_pg_result_of(f), 0, 0, &s, NULL), 0);
        assert_string_equal(s, "hooked");
        ll_future_free(f);
    }
    ll_sleep(0.1); /* the last release's reset and hooks run after the query settled */
    assert_int_equal(connects, 1 + 5); /* once when made, again after each reset */
    assert_int_equal(releases, 5);
    ll_pg_pool_stats st;
    ll_pg_pool_get_stats(p, &st);
    assert_int_equal(st.created, 1);
    ll_pg_pool_free(p);

    /* a failing on_connect: the acquire fails, nothing is lent */
    ll_pg_pool_opts bo = {.max_size = 1, .on_connect = bad_connect, .acquire_timeout = 5};
    p = ll_pg_pool_new(pgt_server.conninfo, &bo);
    ll_future *a = ll_pg_pool_acquire(p);
    int rc = ll_await(a);
    assert_int_not_equal(rc, 0);
    fprintf(stderr, "failing on_connect: %s\n", ll_future_errmsg(a));
    ll_future_free(a);
    ll_pg_pool_free(p);
    pgt_settle();
    return 0;
}

static void test_hooks(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    assert_int_equal(lt_run_task(t.loop, t_hooks, NULL), 0);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {PGT_TEST(test_hooks)};
    return PGT_RUN(tests);
}
