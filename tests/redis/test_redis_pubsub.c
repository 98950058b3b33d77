/*
 * test_redis_pubsub.c — subscribers against a real redis-server: channel and pattern messages in
 * order, confirmations, unsubscribe, the bounded queue with its drop counter, a waiting reader,
 * and a reconnect (the connection killed by the server) after which the subscriptions are renewed
 * and the loss is reported on the queue.
 */
#include "redistest.h"

static ll_redis_sub *sub_connect(size_t qmax) {
    ll_future *f = ll_redis_sub_connect(rt_server.url, NULL, qmax);
    ll_redis_sub *s = NULL;
    if (ll_await(f) == 0) s = ll_future_take(f);
    else snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return s;
}

/* Inside a task: the next message within 2 s, or NULL (its future in *keep, to free). */
static ll_redis_message *next_msg(ll_redis_sub *s, ll_future **keep) {
    ll_future *f = ll_redis_sub_next(s);
    *keep = f;
    if (ll_await_timeout(f, 2.0)) return NULL;
    return ll_redis_message_of(f);
}

static int t_messages(void *arg) {
    (void)arg;
    ll_redis_sub *s = sub_connect(0);
    LT_CHECK(s);
    ll_redis_conn *pub = rt_connect();
    LT_CHECK(pub);
    ll_future *f = ll_redis_subscribe(s, "ch1");
    LT_CHECK(ll_await(f) == 0);
    ll_redis_reply *conf = ll_redis_reply_of(f);
    const char *k;
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_element(conf, 0), &k, NULL) == 0 &&
             !strcmp(k, "subscribe"));
    ll_future_free(f);
    f = ll_redis_psubscribe(s, "pat.*");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);

    /* a reader waiting before anything is published */
    ll_future *waiting = ll_redis_sub_next(s);
    LT_CHECK(!ll_future_done(waiting));
    for (int i = 0; i < 20; i++) ll_future_free(ll_redis_commandf(pub, "PUBLISH ch1 m%d", i));
    ll_future_free(ll_redis_commandf(pub, "PUBLISH pat.x %b", "bin\0ary", (size_t)7));
    LT_CHECK(ll_await(waiting) == 0);
    ll_redis_message *m = ll_redis_message_of(waiting);
    LT_CHECK(m && m->kind == LL_REDIS_MSG_MESSAGE && !strcmp(m->channel, "ch1") &&
             !strcmp(m->data, "m0"));
    ll_future_free(waiting);
    for (int i = 1; i < 20; i++) {
        ll_future *keep;
        m = next_msg(s, &keep);
        char want[16];
        snprintf(want, sizeof want, "m%d", i);
        LT_CHECKF(m && !strcmp(m->data, want), "message %d", i);
        ll_future_free(keep);
    }
    ll_future *keep;
    m = next_msg(s, &keep);
    LT_CHECK(m && m->kind == LL_REDIS_MSG_PMESSAGE && !strcmp(m->pattern, "pat.*") &&
             !strcmp(m->channel, "pat.x") && m->len == 7 && memcmp(m->data, "bin\0ary", 7) == 0);
    ll_future_free(keep);

    /* unsubscribe: no more messages from ch1 */
    f = ll_redis_unsubscribe(s, "ch1");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    f = rt_cmd(pub, "PUBLISH ch1 gone");
    LT_CHECK(rt_int(f) == 0);
    ll_future_free(f);

    /* sharded channels (Redis 7): SSUBSCRIBE, SPUBLISH, SMESSAGE; our own SUNSUBSCRIBE's reply is a
     * reply (it resolves the future), not taken for the server dropping the channel */
    f = ll_redis_ssubscribe(s, "sh1");
    LT_CHECKF(ll_await(f) == 0, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    f = rt_cmd(pub, "SPUBLISH sh1 sharded");
    LT_CHECK(rt_int(f) == 1);
    ll_future_free(f);
    m = next_msg(s, &keep);
    LT_CHECK(m && m->kind == LL_REDIS_MSG_SMESSAGE && !strcmp(m->channel, "sh1") && !strcmp(m->data, "sharded"));
    ll_future_free(keep);
    f = ll_redis_sunsubscribe(s, "sh1");
    LT_CHECK(ll_await(f) == 0);
    const char *kind = NULL;
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_element(ll_redis_reply_of(f), 0), &kind, NULL) == 0 &&
             !strcmp(kind, "sunsubscribe"));
    ll_future_free(f);
    f = rt_cmd(pub, "SPUBLISH sh1 gone");
    LT_CHECK(rt_int(f) == 0);
    ll_future_free(f);
    f = ll_redis_psubscribe(s, "after.*"); /* the link is still in step: replies match commands */
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);

    /* a cancelled wait takes nothing */
    ll_future *w = ll_redis_sub_next(s);
    LT_CHECK(ll_await_timeout(w, 0.05) == LL_ETIMEDOUT);
    ll_future_free(w);
    ll_redis_close(pub);
    ll_redis_sub_close(s);
    return 0;
}
RT_TEST(test_messages, t_messages)

static int t_bound(void *arg) {
    (void)arg;
    ll_redis_sub *s = sub_connect(5);
    LT_CHECK(s);
    ll_redis_conn *pub = rt_connect();
    ll_future *f = ll_redis_subscribe(s, "b");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    for (int i = 0; i < 12; i++) ll_future_free(ll_redis_commandf(pub, "PUBLISH b %d", i));
    f = rt_cmd(pub, "PING");
    ll_future_free(f);
    for (int i = 0; i < 50 && ll_redis_sub_queued(s) + ll_redis_sub_dropped(s) < 12; i++)
        ll_sleep(0.01);
    LT_CHECK(ll_redis_sub_queued(s) == 5);
    LT_CHECK(ll_redis_sub_dropped(s) == 7);
    for (int i = 0; i < 5; i++) { /* the oldest five were kept */
        ll_future *keep;
        ll_redis_message *m = next_msg(s, &keep);
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        LT_CHECK(m && !strcmp(m->data, want));
        ll_future_free(keep);
    }
    /* close with a reader waiting: it fails with LL_ECLOSED */
    ll_future *w = ll_redis_sub_next(s);
    ll_redis_sub_close(s);
    LT_CHECK(ll_await(w) == LL_ECLOSED);
    ll_future_free(w);
    ll_redis_close(pub);
    return 0;
}
RT_TEST(test_bound, t_bound)

static int t_reconnect(void *arg) {
    (void)arg;
    ll_redis_sub *s = sub_connect(0);
    LT_CHECK(s);
    ll_redis_conn *pub = rt_connect();
    ll_future *f = ll_redis_subscribe(s, "rc");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    f = ll_redis_psubscribe(s, "rp.*");
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    /* the server drops the subscriber's connection */
    f = rt_cmd(pub, "CLIENT KILL TYPE pubsub");
    LT_CHECK(rt_int(f) >= 1);
    ll_future_free(f);
    ll_future *keep;
    ll_redis_message *m = next_msg(s, &keep);
    LT_CHECK(m && m->kind == LL_REDIS_MSG_RECONNECTED);
    ll_future_free(keep);
    /* renewed before anything else: both subscriptions work again */
    ll_future_free(ll_redis_commandf(pub, "PUBLISH rc after"));
    ll_future_free(ll_redis_commandf(pub, "PUBLISH rp.1 after2"));
    m = next_msg(s, &keep);
    LT_CHECK(m && m->kind == LL_REDIS_MSG_MESSAGE && !strcmp(m->data, "after"));
    ll_future_free(keep);
    m = next_msg(s, &keep);
    LT_CHECK(m && m->kind == LL_REDIS_MSG_PMESSAGE && !strcmp(m->data, "after2"));
    ll_future_free(keep);
    ll_redis_stats st;
    ll_redis_get_stats(ll_redis_sub_conn(s), &st);
    LT_CHECK(st.reconnects == 1);
    ll_redis_sub_close(s);
    ll_redis_close(pub);
    return 0;
}
RT_TEST(test_reconnect, t_reconnect)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages), cmocka_unit_test(test_bound),
        cmocka_unit_test(test_reconnect),
    };
    return RT_RUN(tests);
}
