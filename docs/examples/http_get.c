/* http_get.c — one GET through a session: status, a header, the body, the phase timings.
 * Needs a server: LL_HTTP_BASE=http://127.0.0.1:8080 build/docs/examples/http_get */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/http.h>

static int main_task(void *arg) {
    char url[512];
    snprintf(url, sizeof url, "%s/small.txt", (const char *)arg);
    ll_http_session *s = ll_http_session_new(NULL);  /* keep-alive pool, default limits */
    ll_future *f = ll_http_get(s, url);
    int rc = ll_await(f);                             /* a 404 is a response, not a failure */
    if (rc == 0) {
        ll_http_response *r = ll_http_response_of(f);     /* owned by f */
        ll_http_timings t;
        ll_http_response_timings(r, &t);
        printf("%d %s, Content-Type: %s, %zu bytes\n", ll_http_response_status(r),
               ll_http_response_reason(r), ll_http_response_header(r, "content-type"),
               ll_http_response_body_len(r));
        printf("connect %.3f ms, first byte %.3f ms, total %.3f ms\n", t.connect * 1e3,
               t.first_byte * 1e3, t.total * 1e3);
    } else {
        fprintf(stderr, "%s\n", ll_future_errmsg(f)); /* "GET http://...: connect to ...: ..." */
    }
    ll_future_free(f);
    ll_http_session_free(s);
    return rc;
}

int main(void) {
    const char *base = getenv("LL_HTTP_BASE");
    if (!base) {
        printf("http_get: set LL_HTTP_BASE=http://host:port to run it against a server\n");
        return 0;
    }
    return ll_run(main_task, (void *)base) == 0 ? 0 : 1;
}
