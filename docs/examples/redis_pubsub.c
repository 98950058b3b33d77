/* redis_pubsub.c — a subscriber on a connection of its own, messages read as futures, a publisher
 * on another connection. Needs a server: LL_REDIS_URL=redis://127.0.0.1:6379 */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/redis.h>

static int main_task(void *url) {
    ll_future *f = ll_redis_sub_connect(url, NULL, 1000); /* keep at most 1000 unread */
    if (ll_await(f)) {
        fprintf(stderr, "%s\n", ll_future_errmsg(f));
        ll_future_free(f);
        return 1;
    }
    ll_redis_sub *sub = ll_future_take(f);
    ll_future_free(f);
    f = ll_redis_subscribe(sub, "news");      /* resolves once the server confirmed */
    int rc = ll_await(f);
    ll_future_free(f);

    ll_future *cf = ll_redis_connect(url, NULL);
    if (rc == 0) rc = ll_await(cf);
    ll_redis_conn *pub = rc == 0 ? ll_future_take(cf) : NULL;
    ll_future_free(cf);
    for (int i = 0; rc == 0 && i < 3; i++)
        ll_future_free(ll_redis_commandf(pub, "PUBLISH news item-%d", i));

    for (int i = 0; rc == 0 && i < 3; i++) {
        ll_future *m = ll_redis_sub_next(sub);
        rc = ll_await_timeout(m, 5.0);
        ll_redis_message *msg = ll_redis_message_of(m);
        if (msg) printf("%s: %.*s\n", msg->channel, (int)msg->len, msg->data);
        ll_future_free(m);
    }
    ll_redis_close(pub);
    ll_redis_sub_close(sub);
    return rc ? 1 : 0;
}

int main(void) {
    const char *url = getenv("LL_REDIS_URL");
    if (!url) {
        printf("redis_pubsub: set LL_REDIS_URL to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
