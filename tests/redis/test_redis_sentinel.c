/*
 * test_redis_sentinel.c — Redis behind Sentinel (libloop/redis_sentinel.h) against a real set-up
 * (rediscluster.h): a master, its replica and three sentinels on free loopback ports.
 *   - the master is discovered through the sentinels (a dead sentinel first in the list is skipped);
 *   - SENTINEL FAILOVER: the client follows +switch-master to the promoted replica by itself; a
 *     write confirmed with WAIT 1 before the failover reads back after it; the time from the
 *     failover request to the first write accepted by the new master is printed;
 *   - a link killed by the server (CLIENT KILL): discovered again without user action;
 *   - an unknown master name and bad arguments fail with clear errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "harness/rediscluster.h"
#include "harness/serverutil.h"
#include "libloop/redis.h"
#include "libloop/redis_sentinel.h"
#include "redistest.h"

static lt_sentinel sn;

static int group_setup(void **state) {
    (void)state;
    return lt_sentinel_start(&sn) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    lt_sentinel_stop(&sn);
    return 0;
}

static ll_future *scmd(ll_redis_sentinel *s, const char *fmt_words) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", fmt_words);
    const char *argv[16];
    int argc = 0;
    for (char *save, *w = strtok_r(buf, " ", &save); w && argc < 16; w = strtok_r(NULL, " ", &save)) argv[argc++] = w;
    ll_future *f = ll_redis_sentinel_command(s, argc, argv, NULL);
    ll_await(f);
    if (ll_future_code(f)) snprintf(lt_last_err, sizeof lt_last_err, "%s: %s", fmt_words, ll_future_errmsg(f));
    return f;
}

static int failover_task(void *arg) {
    (void)arg;
    /* a sentinel that is not there comes first: discovery goes on to the next */
    char list[160];
    snprintf(list, sizeof list, "127.0.0.1:%d,%s", lt_free_port(), sn.sentinels);
    ll_future *f = ll_redis_sentinel_connect(list, "mymaster", NULL);
    LT_CHECKF(ll_await(f) == 0, "%s", ll_future_errmsg(f));
    ll_redis_sentinel *s = ll_future_take(f);
    ll_future_free(f);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", sn.data[0].port);
    LT_CHECKF(!strcmp(ll_redis_sentinel_master(s), want), "%s", ll_redis_sentinel_master(s));
    /* The replica must be known to the sentinels before they can promote it. */
    char out[4096];
    for (ll_time t0 = ll_now();; ll_sleep(0.1)) { /* the replica in sync with the master */
        lt_redis_cli_port(sn.data[0].port, out, sizeof out, "info replication");
        if (strstr(out, "connected_slaves:1") && strstr(out, "state=online")) break;
        LT_CHECKF(ll_now() - t0 < 20, "replica never in sync: %.2000s", out);
    }
    for (ll_time t0 = ll_now();; ll_sleep(0.2)) {
        lt_redis_cli_port(sn.sentinel[0].port, out, sizeof out, "sentinel replicas mymaster");
        char port[16];
        snprintf(port, sizeof port, "%d", sn.data[1].port);
        if (strstr(out, port) && !strstr(out, "s_down")) break;
        LT_CHECKF(ll_now() - t0 < 20, "sentinel never saw the replica: %.2000s", out);
    }
    f = scmd(s, "SET before-failover yes");
    LT_CHECKF(ll_future_code(f) == 0, "%s", lt_last_err);
    ll_future_free(f);
    /* WAIT needs the link that wrote: the handle's one link to the master is that link */
    f = scmd(s, "WAIT 1 5000");
    long long acked = -1;
    ll_redis_reply_integer(ll_redis_reply_of(f), &acked);
    LT_CHECK(acked >= 1);
    ll_future_free(f);
    char out2[512];
    ll_time t0 = ll_now();
    LT_CHECK(lt_redis_cli_port(sn.sentinel[0].port, out2, sizeof out2, "sentinel failover mymaster") == 0);
    LT_CHECKF(strstr(out2, "OK"), "SENTINEL FAILOVER: %s", out2);
    /* Write until the new master accepts: errors allowed only within the failover. */
    int errors = 0;
    snprintf(want, sizeof want, "127.0.0.1:%d", sn.data[1].port);
    for (;;) {
        f = scmd(s, "SET after-failover yes");
        int rc = ll_future_code(f);
        ll_future_free(f);
        if (rc == 0 && !strcmp(ll_redis_sentinel_master(s), want)) break;
        if (rc) errors++;
        LT_CHECKF(ll_now() - t0 < 30, "not on the new master after 30 s (%s): %s", ll_redis_sentinel_master(s),
                  lt_last_err);
        ll_sleep(0.05);
    }
    double recovery = ll_now() - t0;
    f = scmd(s, "GET before-failover");
    LT_CHECKF(ll_future_code(f) == 0 && rt_str_is(f, "yes"), "%s", lt_last_err);
    ll_future_free(f);
    ll_redis_sentinel_stats st;
    ll_redis_sentinel_get_stats(s, &st);
    printf("sentinel failover: SENTINEL FAILOVER -> first write on the new master %.2f s later; %d failed "
           "commands, %llu discoveries, %llu +switch-master seen\n",
           recovery, errors, (unsigned long long)st.discoveries, (unsigned long long)st.switches);
    LT_CHECK(st.discoveries >= 2);
    /* The link to the (new) master is killed server-side: the handle discovers again by itself. */
    uint64_t before = st.discoveries;
    lt_redis_cli_port(sn.data[1].port, out2, sizeof out2, "client kill type normal");
    int tries = 0;
    for (;; tries++) {
        f = scmd(s, "GET before-failover");
        int rc = ll_future_code(f);
        ll_future_free(f);
        if (rc == 0) break;
        LT_CHECKF(rc == LL_EREDIS_CONN && tries < 3, "%s", lt_last_err); /* only what was on the dead link */
        ll_sleep(0.05);
    }
    ll_redis_sentinel_get_stats(s, &st);
    LT_CHECK(st.discoveries == before + 1);
    LT_CHECKF(!strcmp(ll_redis_sentinel_master(s), want), "%s", ll_redis_sentinel_master(s));
    ll_redis_sentinel_close(s);
    ll_redis_sentinel_close(NULL);
    return 0;
}

static void test_sentinel_failover(void **state) {
    (void)state;
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, failover_task, NULL), 0);
    lt_teardown(&ctx);
}

static int errors_task(void *arg) {
    (void)arg;
    ll_future *f = ll_redis_sentinel_connect(sn.sentinels, "nosuchmaster", NULL);
    LT_CHECK(ll_await(f) == LL_EREDIS_REPLY);
    LT_CHECKF(strstr(ll_future_errmsg(f), "nosuchmaster"), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    f = ll_redis_sentinel_connect("", "mymaster", NULL);
    LT_CHECK(ll_await(f) == LL_EINVAL);
    ll_future_free(f);
    f = ll_redis_sentinel_connect(sn.sentinels, NULL, NULL);
    LT_CHECK(ll_await(f) == LL_EINVAL);
    ll_future_free(f);
    f = ll_redis_sentinel_connect("localhost", "mymaster", NULL);
    LT_CHECK(ll_await(f) == LL_EINVAL);
    ll_future_free(f);
    f = ll_redis_sentinel_command(NULL, 1, (const char *[]){"PING"}, NULL);
    LT_CHECK(ll_future_code(f) == LL_EINVAL);
    ll_future_free(f);
    return 0;
}

static void test_sentinel_errors(void **state) {
    (void)state;
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, errors_task, NULL), 0);
    lt_teardown(&ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentinel_errors),
        cmocka_unit_test(test_sentinel_failover),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
