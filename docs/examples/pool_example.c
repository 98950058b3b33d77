/* A line-protocol client that shares connections through an ll_pool. The program starts its own
 * echo server on a free port so that it runs anywhere. */
#include <stdio.h>
#include <string.h>
#include "libloop.h"
#include "libloop/pool.h"
#include "libloop/server.h"
#include "libloop/stream.h"

typedef struct dest {
    const char *host;
    uint16_t port;
} dest;

/* The vtable: how the pool makes, checks and closes our connections (libloop streams). */
static ll_future *dial(void *arg, const char *key) {
    (void)key; /* one destination here; a real client parses it or keeps a table */
    dest *d = arg;
    return ll_stream_connect(d->host, d->port, NULL);
}
static bool alive(void *arg, void *conn) {
    (void)arg;
    return ll_stream_alive(conn);
}
static void hang_up(void *arg, void *conn) {
    (void)arg;
    ll_stream_close(conn);
}
static const ll_pool_vtable line_vt = {dial, alive, hang_up, NULL};

/* One request: take a connection, send a line, read the answer, give the connection back in the
 * state it is really in. */
static int request(ll_pool *pool, const char *key, const char *line, char *reply, size_t n) {
    ll_future *a = ll_pool_acquire(pool, key);
    int rc = ll_await(a);
    if (rc) {
        fprintf(stderr, "%s\n", ll_future_errmsg(a));
        ll_future_free(a);
        return rc;
    }
    ll_stream *s = ll_future_value(a);
    ll_future_free(a);
    ll_future *w = ll_stream_write(s, line, strlen(line));
    rc = ll_await(w);
    ll_future_free(w);
    size_t got = 0;
    if (rc == 0) {
        ll_future *r = ll_stream_read_until(s, "\n", 1, reply, n - 1);
        rc = ll_await(r);
        got = rc == 0 ? (uintptr_t)ll_future_value(r) : 0;
        ll_future_free(r);
    }
    reply[got] = '\0';
    /* Reply read completely: idle. Anything else (error, timeout, cancel): broken, closed. */
    ll_pool_release(pool, s, rc == 0 ? LL_POOL_IDLE : LL_POOL_BROKEN);
    return rc;
}

static int echo(ll_stream *s, void *arg) {
    (void)arg;
    char buf[4096];
    for (;;) {
        ll_future *r = ll_stream_read(s, buf, sizeof buf);
        int rc = ll_await(r);
        size_t n = (uintptr_t)ll_future_value(r);
        ll_future_free(r);
        if (rc) return rc == LL_EOF ? 0 : rc;
        ll_future *w = ll_stream_write(s, buf, n);
        rc = ll_await(w);
        ll_future_free(w);
        if (rc) return rc;
    }
}

static int main_task(void *arg) {
    (void)arg;
    ll_future *sf = ll_server_open("127.0.0.1", 0, echo, NULL, NULL);
    if (ll_await(sf)) return ll_task_fail_from(sf);
    ll_server *srv = ll_future_take(sf);
    ll_future_free(sf);

    dest d = {"127.0.0.1", ll_server_port(srv)};
    ll_pool_opts o = {.name = "line", .max_per_key = 4, .max_idle = 60};
    ll_pool *pool = ll_pool_new(&line_vt, &d, &o);
    /* the key names the destination and every setting that matters: here, no TLS */
    char key[64];
    snprintf(key, sizeof key, "tcp://%s:%u tls=off", d.host, (unsigned)d.port);
    char reply[128];
    for (int i = 0; i < 3; i++) {
        char line[32];
        snprintf(line, sizeof line, "hello %d\n", i);
        if (request(pool, key, line, reply, sizeof reply) == 0) printf("reply: %s", reply);
    }
    ll_pool_stats st;
    ll_pool_get_stats(pool, &st);
    printf("created %llu connection(s) for %llu requests\n", (unsigned long long)st.created,
           (unsigned long long)st.acquired);
    ll_pool_free(pool);
    ll_future *c = ll_server_close(srv, 1.0);
    ll_await(c);
    ll_future_free(c);
    return 0;
}

int main(void) {
    return ll_run(main_task, NULL) == 0 ? 0 : 1;
}
