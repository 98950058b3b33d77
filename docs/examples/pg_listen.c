/* pg_listen.c — LISTEN on one connection, NOTIFY from another; notifications arrive on an
 * awaitable queue. Needs a server: LL_PG_URL="host=... user=..." */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/pg.h>

static ll_pg_conn *open_conn(const char *url) {
    ll_future *f = ll_pg_connect(url, NULL);
    ll_pg_conn *c = ll_await(f) == 0 ? ll_future_take(f) : NULL;
    if (!c) fprintf(stderr, "%s\n", ll_future_errmsg(f));
    ll_future_free(f);
    return c;
}

static int sender(void *arg) {
    ll_pg_conn *c = arg;
    for (int i = 1; i <= 3; i++) {
        char payload[32];
        snprintf(payload, sizeof payload, "order %d shipped", i);
        ll_future *f = ll_pg_notify(c, "orders", payload);
        ll_await(f);
        ll_future_free(f);
        ll_sleep(0.01);
    }
    return 0;
}

static int main_task(void *url) {
    ll_pg_conn *listener = open_conn(url), *talker = open_conn(url);
    int rc = 1;
    if (listener && talker) {
        ll_future *l = ll_pg_listen(listener, "orders");
        rc = ll_await(l);
        ll_future_free(l);
        ll_future *s = ll_spawn(sender, talker);
        for (int i = 0; rc == 0 && i < 3; i++) {
            ll_future *n = ll_pg_next_notification(listener);
            rc = ll_await_timeout(n, 5.0);    /* waiting never blocks the loop */
            if (rc == 0) {
                ll_pg_notification *note = ll_future_value(n);
                printf("%s: %s\n", note->channel, note->payload);
            }
            ll_future_free(n);
        }
        ll_await(s);
        ll_future_free(s);
    }
    ll_pg_close(listener);
    ll_pg_close(talker);
    return rc;
}

int main(void) {
    const char *url = getenv("LL_PG_URL");
    if (!url) {
        printf("pg_listen: set LL_PG_URL to a PostgreSQL conninfo to run this example\n");
        return 0;
    }
    return ll_run(main_task, (void *)url) == 0 ? 0 : 1;
}
