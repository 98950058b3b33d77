/* redis_pool_tx.c — a pool: ordinary commands on its shared pipelined connection, an optimistic
 * transaction (WATCH, read, MULTI/EXEC) on an exclusive one, retried when a watched key changed.
 * Needs a server: LL_REDIS_URL=redis://127.0.0.1:6379 */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/redis.h>

/* Move `amount` from one balance to another, atomically, if the first has enough. */
static int transfer(ll_redis_pool *pool, const char *from, const char *to, long long amount) {
    for (int attempt = 0; attempt < 10; attempt++) {
        ll_future *a = ll_redis_pool_acquire(pool);
        int rc = ll_await(a);
        ll_redis_conn *c = ll_future_value(a);
        ll_future_free(a);
        if (rc) return rc;
        ll_future *w = ll_redis_commandf(c, "WATCH %s", from);
        ll_future *g = ll_redis_commandf(c, "GET %s", from);
        rc = ll_await(w);
        if (rc == 0) rc = ll_await(g);
        const char *s;
        long long have = 0;
        if (rc == 0 && ll_redis_reply_string(ll_redis_reply_of(g), &s, NULL) == 0) have = atoll(s);
        ll_future_free(w);
        ll_future_free(g);
        if (rc == 0 && have < amount) rc = LL_EINVAL;
        if (rc == 0) {
            ll_redis_tx *tx = ll_redis_tx_new();
            ll_redis_tx_addf(tx, "DECRBY %s %lld", from, amount);
            ll_redis_tx_addf(tx, "INCRBY %s %lld", to, amount);
            ll_future *e = ll_redis_tx_exec(c, tx);
            rc = ll_await(e);
            ll_future_free(e);
            ll_redis_tx_free(tx);
        }
        ll_redis_pool_release(pool, c);       /* reset (UNWATCH) and reused */
        if (rc != LL_EREDIS_WATCH) return rc; /* done, or a real error */
    }
    return LL_EREDIS_WATCH;
}

static int main_task(void *url) {
    ll_redis_pool *pool = ll_redis_pool_new(url, NULL, NULL);
    if (!pool) return 1;
    ll_redis_conn *shared = ll_redis_pool_conn(pool);
    ll_future_free(ll_redis_commandf(shared, "SET acct:a 100"));
    ll_future *f = ll_redis_commandf(shared, "SET acct:b 0");
    int rc = ll_await(f);
    ll_future_free(f);
    if (rc == 0) rc = transfer(pool, "acct:a", "acct:b", 30);
    f = ll_redis_commandf(shared, "MGET acct:a acct:b");
    if (rc == 0 && (rc = ll_await(f)) == 0) {
        const char *a, *b;
        ll_redis_reply *r = ll_redis_reply_of(f);
        ll_redis_reply_string(ll_redis_reply_element(r, 0), &a, NULL);
        ll_redis_reply_string(ll_redis_reply_element(r, 1), &b, NULL);
        printf("after the transfer: a=%s b=%s\n", a, b);
    }
    ll_future_free(f);
    ll_redis_pool_free(pool);
    return rc ? 1 : 0;
}

int main(void) {
    const char *url = getenv("LL_REDIS_URL");
    if (!url) {
        printf("redis_pool_tx: set LL_REDIS_URL to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
