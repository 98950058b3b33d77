/* http_post_json.c — POST a JSON body, with a header of our own and a deadline for the lot.
 * Needs a server: LL_HTTP_BASE=http://127.0.0.1:8080 build/docs/examples/http_post_json */
#include <stdio.h>
#include <stdlib.h>
#include <libloop.h>
#include <libloop/http.h>

static int main_task(void *arg) {
    char url[512];
    snprintf(url, sizeof url, "%s/method", (const char *)arg);
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_headers *h = ll_http_headers_new();
    ll_http_headers_add(h, "X-Request-Id", "42");     /* CR/LF in a value would be refused */
    ll_http_request req = {
        .method = "POST",
        .url = url,
        .headers = h,                                 /* copied by ll_http_send */
        .json = "{\"name\": \"libloop\", \"tags\": [1, 2]}", /* Content-Type: application/json */
        .timeouts.total = 5,                          /* everything, redirects included */
    };
    ll_future *f = ll_http_send(s, &req);
    ll_http_headers_free(h);
    int rc = ll_await(f);
    if (rc == 0) {
        ll_http_response *r = ll_http_response_of(f);
        printf("%d: %s\n", ll_http_response_status(r), ll_http_response_body(r));
    } else {
        fprintf(stderr, "%s (%s)\n", ll_future_errmsg(f), ll_err_name(rc));
    }
    ll_future_free(f);
    ll_http_session_free(s);
    return rc;
}

int main(void) {
    const char *base = getenv("LL_HTTP_BASE");
    if (!base) {
        printf("http_post_json: set LL_HTTP_BASE=http://host:port to run it against a server\n");
        return 0;
    }
    return ll_run(main_task, (void *)base) == 0 ? 0 : 1;
}
