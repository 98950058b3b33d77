/* http_fanout.c — fetch many URLs, at most 8 at a time; results come back in input order.
 * Needs a server: LL_HTTP_BASE=http://127.0.0.1:8080 build/docs/examples/http_fanout */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/http.h>

enum { N = 100 };

static void progress(void *arg, size_t index, int code, const ll_http_response *r) {
    (void)index, (void)code, (void)r;
    (*(size_t *)arg)++;                               /* called as each one finishes */
}

static int main_task(void *arg) {
    static char buf[N][512];
    const char *urls[N];
    for (int i = 0; i < N; i++) {
        snprintf(buf[i], sizeof buf[i], "%s/1k.bin?i=%d", (const char *)arg, i);
        urls[i] = buf[i];
    }
    ll_http_session *s = ll_http_session_new(NULL);
    size_t finished = 0;
    ll_http_fetch_opts o = {.concurrency = 8, .on_done = progress, .arg = &finished};
    ll_future *f = ll_http_fetch_all(s, urls, N, &o);
    int rc = ll_await(f);                   /* fails only if the batch itself could not run */
    if (rc == 0) {
        ll_http_batch *b = ll_http_batch_of(f);
        size_t ok = 0, failed = 0;
        for (size_t i = 0; i < ll_http_batch_count(b); i++) {
            const ll_http_response *r = ll_http_batch_response(b, i); /* NULL if it failed */
            if (ll_http_batch_code(b, i) == 0 && ll_http_response_status(r) == 200)
                ok++;
            else
                failed++;                             /* ll_http_batch_errmsg(b, i) says why */
        }
        printf("%zu finished: %zu ok, %zu not\n", finished, ok, failed);
    } else {
        fprintf(stderr, "%s\n", ll_future_errmsg(f));
    }
    ll_future_free(f);
    ll_http_session_free(s);
    return rc;
}

int main(void) {
    const char *base = getenv("LL_HTTP_BASE");
    if (!base) {
        printf("http_fanout: set LL_HTTP_BASE=http://host:port to run it against a server\n");
        return 0;
    }
    return ll_run(main_task, (void *)base) == 0 ? 0 : 1;
}
