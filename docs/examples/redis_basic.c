/* redis_basic.c — connect, commands as futures, typed replies, a server error with its prefix, and
 * 100 tasks sharing the connection (their commands are pipelined). Needs a server:
 * LL_REDIS_URL=redis://127.0.0.1:6379 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libloop.h>
#include <libloop/redis.h>

static ll_redis_conn *conn;

static int incr(void *arg) {                  /* a task: one command, read like sequential code */
    (void)arg;
    ll_future *f = ll_redis_commandf(conn, "INCR example:counter");
    int rc = ll_await(f);
    if (rc) rc = ll_task_fail_from(f);
    ll_future_free(f);
    return rc;
}

static int main_task(void *url) {
    ll_future *cf = ll_redis_connect(url, NULL);
    if (ll_await(cf)) {
        fprintf(stderr, "%s\n", ll_future_errmsg(cf));
        ll_future_free(cf);
        return 1;
    }
    conn = ll_future_take(cf);                /* the connection is ours now */
    ll_future_free(cf);

    /* binary-safe arguments: argv + lengths */
    const char *argv[] = {"SET", "example:key", "hello\0world"};
    size_t lens[] = {3, 11, 11};
    ll_future *f = ll_redis_command(conn, 3, argv, lens);
    int rc = ll_await(f);
    ll_future_free(f);

    f = ll_redis_commandf(conn, "GET %s", "example:key");
    if (rc == 0 && (rc = ll_await(f)) == 0) {
        const char *s;
        size_t n;
        if (ll_redis_reply_string(ll_redis_reply_of(f), &s, &n) == 0)
            printf("GET example:key -> %zu bytes\n", n);
    }
    ll_future_free(f);

    /* a server error fails the future; the reply's prefix tells what kind */
    f = ll_redis_commandf(conn, "LPUSH example:key x");
    if (ll_await(f) == LL_EREDIS_REPLY && ll_redis_error_is(f, "WRONGTYPE"))
        printf("LPUSH on a string: %s\n", ll_redis_error(f));
    ll_future_free(f);

    ll_future_free(ll_redis_commandf(conn, "DEL example:counter"));
    ll_future *fs[100];
    for (int i = 0; i < 100; i++) fs[i] = ll_spawn(incr, NULL);
    ll_future *all = ll_gather(fs, 100, LL_GATHER_FAIL_FAST);
    if (rc == 0) rc = ll_await_timeout(all, 5.0); /* one deadline for the lot */
    ll_future_free(all);
    for (int i = 0; i < 100; i++) ll_future_free(fs[i]);

    f = ll_redis_commandf(conn, "GET example:counter");
    if (rc == 0 && (rc = ll_await(f)) == 0) {
        const char *s;
        ll_redis_reply_string(ll_redis_reply_of(f), &s, NULL);
        printf("counter after 100 tasks: %s\n", s);
        rc = strcmp(s, "100") != 0;
    }
    ll_future_free(f);
    ll_redis_close(conn);
    return rc ? 1 : 0;
}

int main(void) {
    const char *url = getenv("LL_REDIS_URL");
    if (!url) {
        printf("redis_basic: set LL_REDIS_URL to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
