/*
 * test_redis_cluster.c — Redis Cluster (libloop/redis_cluster.h) against a real local cluster of
 * 6 nodes (3 masters, 3 replicas; rediscluster.h), started once for the program:
 *   - hash slots: CRC16 known values and {hash tags};
 *   - routing: keys spread over every master; MGET/DEL/EXISTS/MSET across slots split and
 *     combined in order; other cross-slot commands refused before sending (LL_EREDIS_CROSSSLOT);
 *   - READONLY replica reads (opt-in): a value confirmed with WAIT 1 read from a replica;
 *   - live resharding (redis-cli --cluster reshard, 1000 slots) while 50 tasks SET/GET their own
 *     keys with verification: no wrong value, no error (MOVED/ASK followed transparently);
 *   - failover: writes confirmed with WAIT 1 on a master, the master killed (SIGKILL), its replica
 *     promoted by the cluster; the client finds the new master on its own and every confirmed write
 *     is read back. The recovery time is printed (docs/scale-out.md records it). Meanwhile a second,
 *     idle cluster handle (a cluster subscriber with a sharded and a plain channel, and an exclusive
 *     connection from its per-node pool) follows on its own: its map is re-read (periodic /
 *     after a link failed), its subscriptions move to the new master (RECONNECTED, then messages
 *     again), and a new acquire lends a connection on the promoted replica;
 *   - sharded pub/sub: SSUBSCRIBE on the master of each channel's slot, SPUBLISH routed by the
 *     channel's slot, plain SUBSCRIBE/PUBLISH alongside; the map re-read periodically while idle;
 *     during the reshard a sharded channel in a moving slot follows its slot.
 * Missing redis-server/redis-cli fails the program (the harness says which binary).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "harness/rediscluster.h"
#include "harness/serverutil.h"
#include "libloop/redis.h"
#include "libloop/redis_cluster.h"
#include "redistest.h"

static lt_cluster cl;

static int group_setup(void **state) {
    (void)state;
    return lt_cluster_start(&cl, 3, 1, 1000) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    lt_cluster_stop(&cl);
    return 0;
}

static ll_redis_cluster *cluster_connect(const ll_redis_cluster_opts *o) {
    ll_future *f = ll_redis_cluster_connect(cl.seeds, o);
    ll_redis_cluster *c = NULL;
    if (ll_await(f)) snprintf(lt_last_err, sizeof lt_last_err, "cluster connect: %s", ll_future_errmsg(f));
    else c = ll_future_take(f);
    ll_future_free(f);
    return c;
}

/* Run a command (words split on spaces, no quoting); the settled future. */
static ll_future *ccmd(ll_redis_cluster *c, const char *words) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", words);
    const char *argv[64];
    int argc = 0;
    for (char *save, *w = strtok_r(buf, " ", &save); w && argc < 64; w = strtok_r(NULL, " ", &save)) argv[argc++] = w;
    ll_future *f = ll_redis_cluster_command(c, argc, argv, NULL);
    ll_await(f);
    if (ll_future_code(f)) snprintf(lt_last_err, sizeof lt_last_err, "%s: %s", words, ll_future_errmsg(f));
    return f;
}

static bool next_msg(ll_redis_cluster_sub *s, int want_kind, const char *channel, const char *data, double secs);

static long long int_of(ll_future *f) {
    long long v = -1;
    ll_redis_reply_integer(ll_redis_reply_of(f), &v);
    return v;
}

/* ---- slots ---- */

static void test_keyslot(void **state) {
    (void)state;
    assert_int_equal(ll_redis_cluster_keyslot("123456789", 9), 0x31C3 & 16383); /* CRC16-XMODEM check */
    assert_int_equal(ll_redis_cluster_keyslot("foo", 3), 12182);
    assert_int_equal(ll_redis_cluster_keyslot("{user1000}.following", 20),
                     ll_redis_cluster_keyslot("{user1000}.followers", 20));
    assert_int_equal(ll_redis_cluster_keyslot("{user1000}.x", 12), ll_redis_cluster_keyslot("user1000", 8));
    /* empty tag: the whole key */
    assert_int_equal(ll_redis_cluster_keyslot("{}foo", 5), ll_redis_cluster_keyslot("{}foo", 5));
    assert_int_not_equal(ll_redis_cluster_keyslot("{}foo", 5), ll_redis_cluster_keyslot("", 0));
    /* only the first tag counts */
    assert_int_equal(ll_redis_cluster_keyslot("foo{bar}{zap}", 13), ll_redis_cluster_keyslot("bar", 3));
    /* the server agrees */
    char out[64];
    assert_int_equal(lt_redis_cli_port(cl.node[0].port, out, sizeof out, "cluster keyslot foo{bar}{zap}"), 0);
    assert_int_equal(atoi(out), (int)ll_redis_cluster_keyslot("bar", 3));
}

/* ---- routing, split, cross-slot ---- */

static int routing_task(void *arg) {
    (void)arg;
    ll_redis_cluster *c = cluster_connect(NULL);
    LT_CHECK(c);
    ll_redis_cluster_stats st;
    ll_redis_cluster_get_stats(c, &st);
    LT_CHECK(st.masters == 3);
    LT_CHECK(st.refreshes == 1);
    char cmd[128], val[32];
    for (int i = 0; i < 30; i++) {
        snprintf(cmd, sizeof cmd, "SET route:%d v%d", i, i);
        ll_future *f = ccmd(c, cmd);
        LT_CHECK(ll_future_code(f) == 0 && rt_str_is(f, "OK"));
        ll_future_free(f);
    }
    for (int i = 0; i < 30; i++) {
        snprintf(cmd, sizeof cmd, "GET route:%d", i);
        snprintf(val, sizeof val, "v%d", i);
        ll_future *f = ccmd(c, cmd);
        LT_CHECKF(ll_future_code(f) == 0 && rt_str_is(f, val), "%s", lt_last_err);
        ll_future_free(f);
    }
    ll_redis_cluster_get_stats(c, &st);
    LT_CHECK(st.moved == 0); /* the map was right: every key went straight to its master */
    LT_CHECK(st.nodes == 6);
    /* MGET across slots, in the caller's order, with a missing key */
    ll_future *f = ccmd(c, "MGET route:3 route:nope route:7 route:1 route:3");
    LT_CHECKF(ll_future_code(f) == 0, "%s", lt_last_err);
    ll_redis_reply *r = ll_redis_reply_of(f);
    LT_CHECK(ll_redis_reply_len(r) == 5);
    const char *want[] = {"v3", NULL, "v7", "v1", "v3"};
    for (size_t i = 0; i < 5; i++) {
        const ll_redis_reply *e = ll_redis_reply_element(r, i);
        if (!want[i]) {
            LT_CHECK(ll_redis_reply_is_nil(e));
            continue;
        }
        const char *s;
        size_t n;
        LT_CHECK(ll_redis_reply_string(e, &s, &n) == 0 && n == strlen(want[i]) && !memcmp(s, want[i], n));
    }
    ll_future_free(f);
    ll_redis_cluster_get_stats(c, &st);
    LT_CHECK(st.split == 1);
    f = ccmd(c, "MSET route:a 1 route:b 2 route:c 3");
    LT_CHECKF(ll_future_code(f) == 0 && rt_str_is(f, "OK"), "%s", lt_last_err);
    ll_future_free(f);
    f = ccmd(c, "EXISTS route:a route:b route:c route:zzz");
    LT_CHECK(ll_future_code(f) == 0 && int_of(f) == 3);
    ll_future_free(f);
    f = ccmd(c, "DEL route:a route:b route:c route:zzz");
    LT_CHECK(ll_future_code(f) == 0 && int_of(f) == 3);
    ll_future_free(f);
    /* same slot via a hash tag: not split */
    f = ccmd(c, "MSET {t}a 1 {t}b 2");
    LT_CHECK(ll_future_code(f) == 0);
    ll_future_free(f);
    f = ccmd(c, "SUNIONSTORE {t}dst {t}s1 {t}s2");
    LT_CHECKF(ll_future_code(f) == 0, "%s", lt_last_err);
    ll_future_free(f);
    /* cross-slot and not splittable: refused before anything is sent */
    uint64_t moved_before = st.moved;
    f = ccmd(c, "SUNION route:1 route:2");
    LT_CHECK(ll_future_code(f) == LL_EREDIS_CROSSSLOT);
    LT_CHECKF(strstr(ll_future_errmsg(f), "SUNION") && strstr(ll_future_errmsg(f), "hash tag"), "%s",
              ll_future_errmsg(f));
    ll_future_free(f);
    f = ccmd(c, "EVAL return 5 a");
    LT_CHECK(ll_future_code(f) == LL_EINVAL); /* numkeys past the arguments */
    ll_future_free(f);
    /* a server error reply comes through with its text */
    f = ccmd(c, "INCR route:1");
    LT_CHECK(ll_future_code(f) == LL_EREDIS_REPLY && ll_redis_error_is(f, "ERR"));
    ll_future_free(f);
    /* keyless commands go to some master */
    f = ccmd(c, "PING");
    LT_CHECK(ll_future_code(f) == 0 && rt_str_is(f, "PONG"));
    ll_future_free(f);
    ll_redis_cluster_get_stats(c, &st);
    LT_CHECK(st.moved == moved_before);
    /* pub/sub on a node of its own: PUBLISH through the cluster reaches every node's subscribers */
    char url[96];
    LT_CHECK(ll_redis_cluster_node_url(c, "route:1", 7, url, 8) == LL_ETOOLARGE);
    LT_CHECK(ll_redis_cluster_node_url(c, "route:1", 7, url, sizeof url) == 0);
    f = ll_redis_sub_connect(url, NULL, 0);
    LT_CHECKF(ll_await(f) == 0, "%s", ll_future_errmsg(f));
    ll_redis_sub *sub = ll_future_take(f);
    ll_future_free(f);
    f = ll_redis_subscribe(sub, "news");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    f = ccmd(c, "PUBLISH news hello");
    LT_CHECKF(ll_future_code(f) == 0, "%s", lt_last_err);
    ll_future_free(f);
    f = ll_redis_sub_next(sub);
    LT_CHECK(ll_await_timeout(f, 5) == 0);
    ll_redis_message *msg = ll_redis_message_of(f);
    LT_CHECK(msg && msg->len == 5 && !memcmp(msg->data, "hello", 5));
    ll_future_free(f);
    ll_redis_sub_close(sub);
    /* bad arguments */
    LT_CHECK(ll_redis_cluster_node_url(NULL, "k", 1, url, sizeof url) == LL_EINVAL);
    f = ll_redis_cluster_command(NULL, 1, (const char *[]){"PING"}, NULL);
    LT_CHECK(ll_future_code(f) == LL_EINVAL);
    ll_future_free(f);
    f = ll_redis_cluster_command(c, 0, NULL, NULL);
    LT_CHECK(ll_future_code(f) == LL_EINVAL);
    ll_future_free(f);
    ll_redis_cluster_close(c);
    ll_redis_cluster_close(NULL);
    /* a cluster nobody answers for: the seed's error */
    char seed[64];
    snprintf(seed, sizeof seed, "127.0.0.1:%d", lt_free_port());
    f = ll_redis_cluster_connect(seed, NULL);
    LT_CHECK(ll_await(f) != 0);
    LT_CHECKF(strstr(ll_future_errmsg(f), seed), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    f = ll_redis_cluster_connect("nonsense", NULL);
    LT_CHECK(ll_await(f) == LL_EINVAL);
    ll_future_free(f);
    return 0;
}

static void test_routing(void **state) {
    (void)state;
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, routing_task, NULL), 0);
    lt_teardown(&ctx);
}

/* ---- promises: a deadline returns control on time; arguments are copied ---- */

static int deadline_task(void *arg) {
    (void)arg;
    ll_redis_cluster *c = cluster_connect(NULL);
    LT_CHECK(c);
    /* arguments may be reused as soon as the call returns */
    char key[16] = "dl:key", val[16] = "first";
    const char *argv[3] = {"SET", key, val};
    ll_future *f = ll_redis_cluster_command(c, 3, argv, NULL);
    memcpy(key, "XXXXXX", 7);
    memcpy(val, "garbage", 8);
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    f = ccmd(c, "GET dl:key");
    LT_CHECK(rt_str_is(f, "first"));
    ll_future_free(f);
    /* the master of the key stops answering (SIGSTOP, shorter than cluster-node-timeout, so no
     * failover): a command under a 0.3 s deadline gives control back at the deadline */
    int m = lt_cluster_master_of(&cl, (int)ll_redis_cluster_keyslot("dl:key", 6));
    LT_CHECK(m >= 0);
    kill(cl.node[m].pid, SIGSTOP);
    ll_time t0 = ll_now();
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.3));
    f = ll_redis_cluster_command(c, 2, (const char *[]){"GET", "dl:key"}, NULL);
    int rc = ll_await(f);
    ll_scope_exit(&sc);
    double took = ll_now() - t0;
    kill(cl.node[m].pid, SIGCONT);
    LT_CHECKF(rc == LL_ETIMEDOUT, "rc %d: %s", rc, ll_future_errmsg(f));
    LT_CHECKF(took < 0.3 + 0.25, "took %.3f s", took); /* generous slack: the machine is loaded */
    ll_future_free(f);
    /* the link is still usable: the abandoned reply is read and dropped */
    f = ccmd(c, "GET dl:key");
    LT_CHECKF(ll_future_code(f) == 0 && rt_str_is(f, "first"), "%s", lt_last_err);
    ll_future_free(f);
    /* cancelling the caller's future stops the command */
    kill(cl.node[m].pid, SIGSTOP);
    f = ll_redis_cluster_command(c, 2, (const char *[]){"GET", "dl:key"}, NULL);
    ll_sleep(0.05);
    ll_future_cancel(f);
    rc = ll_await(f);
    kill(cl.node[m].pid, SIGCONT);
    LT_CHECK(rc == LL_ECANCELED);
    ll_future_free(f);
    /* closing with a command in flight: it fails with LL_ECLOSED, nothing leaks */
    f = ll_redis_cluster_command(c, 2, (const char *[]){"GET", "dl:key"}, NULL);
    ll_redis_cluster_close(c);
    rc = ll_await(f);
    LT_CHECKF(rc == LL_ECLOSED || rc == 0, "rc %d: %s", rc, ll_future_errmsg(f));
    ll_future_free(f);
    return 0;
}

static void test_deadline_and_ownership(void **state) {
    (void)state;
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, deadline_task, NULL), 0);
    lt_teardown(&ctx);
}

/* ---- replica reads ---- */

/* A direct connection to the master serving key's slot (for WAIT, which counts this link's writes). */
static ll_redis_conn *master_conn_for(const char *key) {
    int m = lt_cluster_master_of(&cl, (int)ll_redis_cluster_keyslot(key, strlen(key)));
    if (m < 0) return NULL;
    ll_redis_opts o = {.host = "127.0.0.1", .port = (uint16_t)cl.node[m].port};
    ll_future *f = ll_redis_connect(NULL, &o);
    ll_redis_conn *c = ll_await(f) == 0 ? ll_future_take(f) : NULL;
    ll_future_free(f);
    return c;
}

static int replica_task(void *arg) {
    (void)arg;
    ll_redis_conn *m = master_conn_for("{ro}k");
    LT_CHECK(m);
    ll_future *f = ll_redis_commandf(m, "SET {ro}k replicated");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    f = ll_redis_commandf(m, "WAIT 1 5000");
    LT_CHECK(ll_await(f) == 0 && int_of(f) >= 1);
    ll_future_free(f);
    ll_redis_close(m);
    ll_redis_cluster_opts o = {.read_from_replicas = true};
    ll_redis_cluster *c = cluster_connect(&o);
    LT_CHECK(c);
    /* Redis 7 lists a replica in CLUSTER SLOTS only once the cluster bus has carried a non-zero
     * replication offset for it (a moment after the first write): re-read the map until it does. */
    ll_redis_cluster_stats st;
    for (ll_time t0 = ll_now();;) {
        f = ccmd(c, "GET {ro}k");
        LT_CHECKF(ll_future_code(f) == 0 && rt_str_is(f, "replicated"), "%s", lt_last_err);
        ll_future_free(f);
        ll_redis_cluster_get_stats(c, &st);
        if (st.replica_reads) break;
        LT_CHECK(ll_now() - t0 < 15);
        ll_sleep(0.2);
        f = ll_redis_cluster_refresh(c);
        LT_CHECK(ll_await(f) == 0);
        ll_future_free(f);
    }
    uint64_t before = st.replica_reads;
    for (int i = 0; i < 4; i++) {
        f = ccmd(c, "GET {ro}k");
        LT_CHECKF(ll_future_code(f) == 0 && rt_str_is(f, "replicated"), "%s", lt_last_err);
        ll_future_free(f);
    }
    /* writes still go to the master (a replica would answer MOVED) */
    f = ccmd(c, "SET {ro}k2 x");
    LT_CHECKF(ll_future_code(f) == 0, "%s", lt_last_err);
    ll_future_free(f);
    ll_redis_cluster_get_stats(c, &st);
    LT_CHECKF(st.replica_reads == before + 4, "%llu replica reads, %llu moved", (unsigned long long)st.replica_reads,
              (unsigned long long)st.moved);
    LT_CHECK(st.moved == 0);
    ll_redis_cluster_close(c);
    return 0;
}

static void test_replica_reads(void **state) {
    (void)state;
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, replica_task, NULL), 0);
    lt_teardown(&ctx);
}

/* ---- resharding under load ---- */

typedef struct load {
    ll_redis_cluster *c;
    atomic_bool stop;
    long ops, errors, wrong;
    char first_err[512];
} load;

typedef struct loader {
    load *l;
    int index;
} loader;

static int load_task(void *arg) {
    loader *ld = arg;
    load *l = ld->l;
    char key[32], val[32];
    /* the ld->index-th key whose slot is below 1000: the slots the reshard moves */
    for (int i = 0, found = -1; found < ld->index; i++) {
        snprintf(key, sizeof key, "load:%d", i);
        if (ll_redis_cluster_keyslot(key, strlen(key)) < 1000) found++;
    }
    for (long n = 0; !atomic_load(&l->stop); n++) {
        snprintf(val, sizeof val, "%d-%ld", ld->index, n);
        const char *sv[3] = {"SET", key, val};
        ll_future *f = ll_redis_cluster_command(l->c, 3, sv, NULL);
        int rc = ll_await(f);
        if (rc) {
            if (!l->errors++) snprintf(l->first_err, sizeof l->first_err, "SET: %s", ll_future_errmsg(f));
            ll_future_free(f);
            ll_sleep(0.01);
            continue;
        }
        ll_future_free(f);
        const char *gv[2] = {"GET", key};
        f = ll_redis_cluster_command(l->c, 2, gv, NULL);
        rc = ll_await(f);
        if (rc) {
            if (!l->errors++) snprintf(l->first_err, sizeof l->first_err, "GET: %s", ll_future_errmsg(f));
        } else if (!rt_str_is(f, val)) {
            l->wrong++;
        }
        ll_future_free(f);
        l->ops += 2;
    }
    return 0;
}

typedef struct cli_job {
    const char *const *args;
    int rc;
    char out[16384];
    atomic_bool done;
} cli_job;

static void *cli_thread(void *arg) {
    cli_job *j = arg;
    j->rc = lt_redis_cli(j->out, sizeof j->out, j->args);
    atomic_store(&j->done, true);
    return NULL;
}

static void node_id(int port, char *id, size_t n) {
    char out[128] = "";
    lt_redis_cli_port(port, out, sizeof out, "cluster myid");
    out[strcspn(out, "\r\n")] = 0;
    snprintf(id, n, "%s", out);
}

static int reshard_task(void *arg) {
    load *l = arg;
    l->c = cluster_connect(&(ll_redis_cluster_opts){.refresh_interval = 0.5});
    LT_CHECK(l->c);
    /* a sharded channel in one of the slots about to move */
    char chan[32];
    for (int i = 0;; i++) {
        snprintf(chan, sizeof chan, "moving:%d", i);
        if (ll_redis_cluster_keyslot(chan, strlen(chan)) < 1000) break;
    }
    ll_redis_cluster_sub *sub = ll_redis_cluster_sub_new(l->c, 0);
    ll_future *sf = ll_redis_cluster_ssubscribe(sub, chan);
    LT_CHECKF(ll_await(sf) == 0, "%s", ll_future_errmsg(sf));
    ll_future_free(sf);
    loader ld[50];
    ll_future *tasks[50];
    for (int i = 0; i < 50; i++) {
        ld[i] = (loader){l, i};
        tasks[i] = ll_spawn(load_task, &ld[i]);
    }
    LT_CHECK(ll_sleep(0.3) == 0);
    /* move 1000 slots from the master of slot 0 to the master of slot 16383 */
    int from = lt_cluster_master_of(&cl, 0), to = lt_cluster_master_of(&cl, 16383);
    LT_CHECK(from >= 0 && to >= 0 && from != to);
    char from_id[64], to_id[64], seed[32];
    node_id(cl.node[from].port, from_id, sizeof from_id);
    node_id(cl.node[to].port, to_id, sizeof to_id);
    snprintf(seed, sizeof seed, "127.0.0.1:%d", cl.node[from].port);
    const char *args[] = {"--cluster", "reshard", seed, "--cluster-from", from_id, "--cluster-to", to_id,
                          "--cluster-slots", "1000", "--cluster-yes", "--cluster-pipeline", "10", NULL};
    cli_job job = {.args = args};
    pthread_t th;
    LT_CHECK(pthread_create(&th, NULL, cli_thread, &job) == 0);
    ll_time t0 = ll_now();
    while (!atomic_load(&job.done) && ll_now() - t0 < 60) ll_sleep(0.05);
    pthread_join(th, NULL);
    LT_CHECKF(job.rc == 0, "reshard failed: %.3000s", job.out + (strlen(job.out) > 3000 ? strlen(job.out) - 3000 : 0));
    ll_sleep(0.3);
    atomic_store(&l->stop, true);
    for (int i = 0; i < 50; i++) {
        ll_await(tasks[i]);
        ll_future_free(tasks[i]);
    }
    ll_redis_cluster_stats st;
    ll_redis_cluster_get_stats(l->c, &st);
    printf("reshard: %.1f s, %ld ops, %llu MOVED, %llu ASK, %llu retries, %llu map reads, %ld errors, %ld wrong\n",
           ll_now() - t0, l->ops, (unsigned long long)st.moved, (unsigned long long)st.ask,
           (unsigned long long)st.retries, (unsigned long long)st.refreshes, l->errors, l->wrong);
    LT_CHECK(l->wrong == 0);
    LT_CHECKF(l->errors == 0, "%ld errors, first: %s", l->errors, l->first_err);
    LT_CHECK(st.moved + st.ask > 0); /* the load really crossed the moving slots */
    LT_CHECK(lt_cluster_master_of(&cl, 0) == to);
    LT_CHECK(lt_cluster_master_of(&cl, 999) == to);
    /* the sharded channel followed its slot to the new master (the old one dropped it, or the
     * subscriber's periodic check saw the move): a message published there arrives */
    ll_time t1 = ll_now();
    bool got = false;
    char words[64];
    snprintf(words, sizeof words, "SPUBLISH %s moved", chan);
    while (!got && ll_now() - t1 < 10) {
        ll_future *f = ccmd(l->c, words);
        long long receivers = ll_future_code(f) == 0 ? int_of(f) : -1;
        ll_future_free(f);
        got = receivers == 1 && next_msg(sub, LL_REDIS_MSG_SMESSAGE, chan, "moved", 1);
        if (!got) ll_sleep(0.1);
    }
    LT_CHECKF(got, "the sharded channel %s did not follow its slot: %s", chan, lt_last_err);
    ll_redis_cluster_get_stats(l->c, &st);
    LT_CHECK(st.resubscribes >= 1); /* it was moved, not left where it was */
    printf("reshard: sharded channel receiving on the new master %.2f s after the reshard ended (%llu moves)\n",
           ll_now() - t1, (unsigned long long)st.resubscribes);
    ll_redis_cluster_sub_free(sub);
    ll_redis_cluster_close(l->c);
    return 0;
}

static void test_reshard_under_load(void **state) {
    (void)state;
    lt_ctx ctx;
    lt_setup(&ctx);
    static load l;
    assert_int_equal(lt_run_checked(ctx.loop, reshard_task, &l), 0);
    lt_teardown(&ctx);
}

/* ---- pub/sub, sharded pub/sub, periodic map refresh ---- */

/* Inside a task: the next message of s within secs, skipping RECONNECTED unless want_kind is it.
 * true when one of kind want_kind on `channel` came (with `data` when not NULL). */
static bool next_msg(ll_redis_cluster_sub *s, int want_kind, const char *channel, const char *data, double secs) {
    ll_time end = ll_now() + secs;
    for (;;) {
        double left = end - ll_now();
        if (left <= 0) return false;
        ll_future *f = ll_redis_cluster_sub_next(s);
        int rc = ll_await_timeout(f, left);
        if (rc) {
            snprintf(lt_last_err, sizeof lt_last_err, "sub_next: %s", ll_future_errmsg(f));
            ll_future_free(f);
            return false;
        }
        ll_redis_message *m = ll_redis_message_of(f);
        bool ok = m && (int)m->kind == want_kind &&
                  (!channel || (m->channel_len == strlen(channel) && !memcmp(m->channel, channel, m->channel_len))) &&
                  (!data || (m->len == strlen(data) && !memcmp(m->data, data, m->len)));
        int kind = m ? (int)m->kind : -1;
        ll_future_free(f);
        if (ok) return true;
        if (kind != LL_REDIS_MSG_RECONNECTED) {
            snprintf(lt_last_err, sizeof lt_last_err, "unexpected message kind %d", kind);
            return false;
        }
    }
}

static int pubsub_task(void *arg) {
    (void)arg;
    ll_redis_cluster *c = cluster_connect(&(ll_redis_cluster_opts){.refresh_interval = 0.1});
    LT_CHECK(c);
    ll_redis_cluster_sub *s = ll_redis_cluster_sub_new(c, 0);
    LT_CHECK(s);
    /* three sharded channels whose slots are on three different masters */
    char ch[3][32];
    int found = 0, masters[3];
    for (int i = 0; found < 3 && i < 1000; i++) {
        char name[32];
        snprintf(name, sizeof name, "shard:%d", i);
        int m = lt_cluster_master_of(&cl, (int)ll_redis_cluster_keyslot(name, strlen(name)));
        bool seen = false;
        for (int k = 0; k < found; k++) seen = seen || masters[k] == m;
        if (m < 0 || seen) continue;
        masters[found] = m;
        snprintf(ch[found++], sizeof ch[0], "%s", name);
    }
    LT_CHECK(found == 3);
    ll_future *subs[5];
    for (int i = 0; i < 3; i++) subs[i] = ll_redis_cluster_ssubscribe(s, ch[i]);
    subs[3] = ll_redis_cluster_subscribe(s, "plain");
    subs[4] = ll_redis_cluster_psubscribe(s, "pat:*");
    for (int i = 0; i < 5; i++) {
        LT_CHECKF(ll_await(subs[i]) == 0, "subscribe %d: %s", i, ll_future_errmsg(subs[i]));
        ll_future_free(subs[i]);
    }
    ll_future *dup = ll_redis_cluster_ssubscribe(s, ch[0]);
    LT_CHECK(ll_await(dup) == LL_EALREADY);
    ll_future_free(dup);
    /* each sharded channel lives on its slot's master only: one receiver there */
    for (int i = 0; i < 3; i++) {
        char words[160];
        snprintf(words, sizeof words, "SPUBLISH %s hello-%d", ch[i], i);
        ll_future *f = ccmd(c, words);
        LT_CHECKF(ll_future_code(f) == 0 && int_of(f) == 1, "%s: %s (receivers %lld)", words, lt_last_err, int_of(f));
        ll_future_free(f);
        char data[32];
        snprintf(data, sizeof data, "hello-%d", i);
        LT_CHECKF(next_msg(s, LL_REDIS_MSG_SMESSAGE, ch[i], data, 5), "%s: %s", ch[i], lt_last_err);
    }
    ll_future *f = ccmd(c, "PUBLISH plain p1");
    LT_CHECK(ll_future_code(f) == 0);
    ll_future_free(f);
    LT_CHECKF(next_msg(s, LL_REDIS_MSG_MESSAGE, "plain", "p1", 5), "%s", lt_last_err);
    f = ccmd(c, "PUBLISH pat:x p2");
    ll_future_free(f);
    LT_CHECKF(next_msg(s, LL_REDIS_MSG_PMESSAGE, "pat:x", "p2", 5), "%s", lt_last_err);
    /* unsubscribed: no more messages for it */
    f = ll_redis_cluster_sunsubscribe(s, ch[0]);
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    char words[96];
    snprintf(words, sizeof words, "SPUBLISH %s gone", ch[0]);
    f = ccmd(c, words);
    LT_CHECK(ll_future_code(f) == 0 && int_of(f) == 0);
    ll_future_free(f);
    ll_redis_cluster_stats st;
    ll_redis_cluster_get_stats(c, &st);
    uint64_t before = st.refreshes;
    /* idle: the map is re-read every refresh_interval (0.1 s) all the same */
    ll_sleep(0.6);
    ll_redis_cluster_get_stats(c, &st);
    LT_CHECKF(st.refreshes >= before + 3, "%llu map reads in 0.6 s idle", (unsigned long long)(st.refreshes - before));
    LT_CHECK(st.moved == 0 && st.resubscribes == 0);
    ll_future *pending = ll_redis_cluster_sub_next(s);
    ll_redis_cluster_sub_free(s);
    LT_CHECK(ll_await(pending) == LL_ECLOSED);
    ll_future_free(pending);
    ll_redis_cluster_close(c);
    return 0;
}

static void test_pubsub(void **state) {
    (void)state;
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, pubsub_task, NULL), 0);
    lt_teardown(&ctx);
}

/* ---- failover ---- */

static int failover_task(void *arg) {
    (void)arg;
    ll_redis_cluster *c = cluster_connect(NULL);
    LT_CHECK(c);
    const char *key0 = "{fo}0";
    int master = lt_cluster_master_of(&cl, (int)ll_redis_cluster_keyslot(key0, strlen(key0)));
    LT_CHECK(master >= 0);
    ll_redis_conn *m = master_conn_for(key0);
    LT_CHECK(m);
    char key[32], val[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "{fo}%d", i);
        snprintf(val, sizeof val, "confirmed-%d", i);
        ll_future_free(ll_redis_commandf(m, "SET %s %s", key, val));
    }
    ll_future *f = ll_redis_commandf(m, "WAIT 1 5000");
    LT_CHECK(ll_await(f) == 0 && int_of(f) >= 1);
    ll_future_free(f);
    ll_redis_close(m);
    f = ccmd(c, "GET {fo}5"); /* the cluster client has a link to that master now */
    LT_CHECK(rt_str_is(f, "confirmed-5"));
    ll_future_free(f);
    /* a second handle that stays idle through the failover: a subscriber (a sharded channel on
     * the master about to die, and a plain channel) and an exclusive connection on that master */
    ll_redis_cluster *w = cluster_connect(&(ll_redis_cluster_opts){.refresh_interval = 0.5});
    LT_CHECK(w);
    ll_redis_cluster_sub *s = ll_redis_cluster_sub_new(w, 0);
    ll_future *s1 = ll_redis_cluster_ssubscribe(s, "{fo}news"), *s2 = ll_redis_cluster_subscribe(s, "fo-plain");
    LT_CHECK(ll_await(s1) == 0 && ll_await(s2) == 0);
    ll_future_free(s1);
    ll_future_free(s2);
    ll_future *a = ll_redis_cluster_acquire(w, "{fo}x", 5);
    LT_CHECKF(ll_await(a) == 0, "acquire: %s", ll_future_errmsg(a));
    ll_redis_conn *old_x = ll_future_value(a);
    ll_future_free(a);
    f = ll_redis_commandf(old_x, "CLUSTER MYID");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    lt_cluster_kill(&cl, master);
    ll_time t0 = ll_now();
    /* The client recovers by itself: the first commands fail only while no master serves the slot
     * (each command retries within its 10 s budget), then every confirmed write reads back. */
    int attempts = 0;
    for (;;) {
        attempts++;
        f = ccmd(c, "GET {fo}0");
        int rc = ll_future_code(f);
        bool ok = rc == 0 && rt_str_is(f, "confirmed-0");
        LT_CHECKF(rc != 0 || ok, "wrong value after failover");
        ll_future_free(f);
        if (ok) break;
        LT_CHECKF(ll_now() - t0 < 40, "no recovery in 40 s: %s", lt_last_err);
        if (!ok && rc != LL_EREDIS_CONN && rc != LL_EREDIS_CLUSTER)
            LT_CHECKF(false, "unexpected error during failover: %s", lt_last_err);
    }
    double recovery = ll_now() - t0;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "GET {fo}%d", i);
        snprintf(val, sizeof val, "confirmed-%d", i);
        f = ccmd(c, key);
        LT_CHECKF(ll_future_code(f) == 0 && rt_str_is(f, val), "%s: %s", key, lt_last_err);
        ll_future_free(f);
    }
    f = ccmd(c, "SET {fo}after yes");
    LT_CHECKF(ll_future_code(f) == 0, "%s", lt_last_err);
    ll_future_free(f);
    ll_redis_cluster_stats st;
    ll_redis_cluster_get_stats(c, &st);
    printf("failover: master killed -> first successful read %.2f s later (%d commands issued; "
           "cluster-node-timeout 1000 ms), %llu retries, %llu map reads\n",
           recovery, attempts, (unsigned long long)st.retries, (unsigned long long)st.refreshes);
    /* the idle handle: its subscriber was told (RECONNECTED) and receives again, on the new
     * master, without anything done by the user */
    int new_master = lt_cluster_master_of(&cl, (int)ll_redis_cluster_keyslot("{fo}", 4));
    LT_CHECK(new_master >= 0 && new_master != master);
    LT_CHECKF(next_msg(s, LL_REDIS_MSG_RECONNECTED, NULL, NULL, 20), "no RECONNECTED: %s", lt_last_err);
    double resub = ll_now() - t0;
    f = ccmd(c, "SPUBLISH {fo}news after-failover");
    LT_CHECKF(ll_future_code(f) == 0 && int_of(f) == 1, "SPUBLISH: %s (receivers %lld)", lt_last_err, int_of(f));
    ll_future_free(f);
    LT_CHECKF(next_msg(s, LL_REDIS_MSG_SMESSAGE, "{fo}news", "after-failover", 5), "%s", lt_last_err);
    f = ccmd(c, "PUBLISH fo-plain still-here");
    ll_future_free(f);
    LT_CHECKF(next_msg(s, LL_REDIS_MSG_MESSAGE, "fo-plain", "still-here", 5), "%s", lt_last_err);
    /* its map was re-read on its own: the slot is on the new master */
    char url[64], want[64];
    snprintf(want, sizeof want, "redis://127.0.0.1:%d", cl.node[new_master].port);
    LT_CHECK(ll_redis_cluster_node_url(w, "{fo}", 4, url, sizeof url) == 0);
    LT_CHECKF(!strcmp(url, want), "idle handle's map says %s, want %s", url, want);
    /* the connection lent before is dead (not moved); a new acquire lends one on the new master */
    f = ll_redis_commandf(old_x, "GET {fo}0");
    LT_CHECK(ll_await(f) != 0);
    ll_future_free(f);
    LT_CHECK(ll_redis_cluster_release(w, old_x) == 0);
    LT_CHECK(ll_redis_cluster_release(w, old_x) == LL_ENOENT);
    a = ll_redis_cluster_acquire(w, "{fo}x", 5);
    LT_CHECKF(ll_await(a) == 0, "acquire after failover: %s", ll_future_errmsg(a));
    ll_redis_conn *x = ll_future_value(a);
    ll_future_free(a);
    f = ll_redis_commandf(x, "GET {fo}7");
    LT_CHECKF(ll_await(f) == 0 && rt_str_is(f, "confirmed-7"), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    f = ll_redis_commandf(x, "MULTI"); /* what exclusive connections are for */
    ll_future_free(f);
    ll_future_free(ll_redis_commandf(x, "INCR {fo}n"));
    f = ll_redis_commandf(x, "EXEC");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    LT_CHECK(ll_redis_cluster_release(w, x) == 0);
    ll_redis_cluster_get_stats(w, &st);
    printf("failover: idle handle: subscriptions moved %.2f s after the kill (%llu moved), %llu map reads\n",
           resub, (unsigned long long)st.resubscribes, (unsigned long long)st.refreshes);
    LT_CHECK(st.resubscribes >= 1);
    ll_redis_cluster_sub_free(s);
    ll_redis_cluster_close(w);
    ll_redis_cluster_close(c);
    return 0;
}

static void test_failover(void **state) {
    (void)state;
    lt_ctx ctx;
    lt_setup(&ctx);
    assert_int_equal(lt_run_checked(ctx.loop, failover_task, NULL), 0);
    lt_teardown(&ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyslot),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_deadline_and_ownership),
        cmocka_unit_test(test_replica_reads),
        cmocka_unit_test(test_pubsub),
        cmocka_unit_test(test_reshard_under_load),
        cmocka_unit_test(test_failover),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
