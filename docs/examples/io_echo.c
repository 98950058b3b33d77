/* io_echo.c — docs/io.md's example: an echo server on a free port, a client that connects by name,
 * sends two lines and reads them back, then a graceful close of both. */
#include <stdio.h>
#include <libloop.h>
#include <libloop/server.h>
#include <libloop/stream.h>

static int echo(ll_stream *s, void *arg) {        /* one task per connection */
    (void)arg;
    char buf[4096];
    for (;;) {
        ll_future *r = ll_stream_read(s, buf, sizeof buf);
        int rc = ll_await(r);
        size_t n = (uintptr_t)ll_future_value(r);
        ll_future_free(r);
        if (rc == LL_EOF) return 0;                /* the client is done */
        if (rc) return rc;
        ll_future *w = ll_stream_write(s, buf, n);
        rc = ll_await(w);                          /* back-pressure: waits if the client is slow */
        ll_future_free(w);
        if (rc) return rc;
    }
}

static int main_task(void *arg) {
    (void)arg;
    ll_future *f = ll_server_open("127.0.0.1", 0, echo, NULL, NULL);
    int rc = ll_await(f);
    if (rc) {
        fprintf(stderr, "%s\n", ll_future_errmsg(f));
        ll_future_free(f);
        return rc;
    }
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);

    ll_scope deadline;                             /* one budget for connect, write and reads */
    ll_scope_enter(&deadline, ll_deadline_in(5));
    f = ll_stream_connect("localhost", ll_server_port(srv), NULL);
    rc = ll_await(f);
    ll_stream *s = rc ? NULL : ll_future_take(f);
    if (rc) fprintf(stderr, "%s\n", ll_future_errmsg(f)); /* "connect to localhost:...: ..." */
    ll_future_free(f);
    for (int i = 0; s && rc == 0 && i < 2; i++) {
        ll_future *w = ll_stream_write(s, i ? "world\n" : "hello\n", 6);
        rc = ll_await(w);
        ll_future_free(w);
        char line[64];
        ll_future *r = ll_stream_read_until(s, "\n", 1, line, sizeof line);
        if (rc == 0) rc = ll_await(r);
        if (rc == 0) printf("echoed: %.*s", (int)(uintptr_t)ll_future_value(r), line);
        else fprintf(stderr, "%s\n", ll_future_errmsg(r));
        ll_future_free(r);
    }
    ll_stream_close(s);
    ll_scope_exit(&deadline);

    ll_future *closing = ll_server_close(srv, 1.0); /* handlers get 1 s, then are cancelled */
    ll_await(closing);
    ll_future_free(closing);
    return rc;
}

int main(void) { return ll_run(main_task, NULL) == 0 ? 0 : 1; }
