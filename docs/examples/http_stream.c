/* http_stream.c — a streamed download: the body piece by piece, never whole in memory.
 * Needs a server: LL_HTTP_BASE=http://127.0.0.1:8080 build/docs/examples/http_stream */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/http.h>

static int main_task(void *arg) {
    char url[512];
    snprintf(url, sizeof url, "%s/1m.bin", (const char *)arg);
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_request req = {.url = url, .stream = true, .timeouts.idle_read = 10};
    ll_future *f = ll_http_send(s, &req);             /* resolves once the headers are in */
    int rc = ll_await(f);
    if (rc == 0) {
        ll_http_response *r = ll_http_response_of(f);
        const char *piece;
        size_t n, total = 0, pieces = 0;
        while ((rc = ll_http_response_next(r, &piece, &n)) == 0) { /* decoded if gzip'ed */
            total += n;                               /* piece is valid until the next call */
            pieces++;
        }
        if (rc == LL_EOF) {
            rc = 0;
            printf("%d: %zu bytes in %zu pieces\n", ll_http_response_status(r), total, pieces);
        } else {
            fprintf(stderr, "%s\n", ll_http_response_errmsg(r));
        }
    } else {
        fprintf(stderr, "%s\n", ll_future_errmsg(f));
    }
    ll_future_free(f);  /* frees the response; a body not read to its end closes the connection */
    ll_http_session_free(s);
    return rc;
}

int main(void) {
    const char *base = getenv("LL_HTTP_BASE");
    if (!base) {
        printf("http_stream: set LL_HTTP_BASE=http://host:port to run it against a server\n");
        return 0;
    }
    return ll_run(main_task, (void *)base) == 0 ? 0 : 1;
}
