/*
 * test_http_api.c — the HTTP client's side of the API conventions (issue 9): a NULL session or
 * URL is named in an LL_EINVAL failure, a URL without a scheme says so, and a request future is
 * read through ll_http_response_of (nothing else can be read as a response). Against a real
 * nginx on a free loopback port.
 */
#include <string.h>
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "libloop/http.h"

static lt_nginx ngx;

static int group_setup(void **state) {
    (void)state;
    return lt_nginx_start(&ngx) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    lt_nginx_stop(&ngx);
    return 0;
}

static bool msg_is(ll_future *f, int code, const char *msg) {
    return f && lt_await_msg(f, lt_last_err, sizeof lt_last_err) == code && strstr(lt_last_err, msg) != NULL;
}

static int t_bad_args(void *arg) {
    (void)arg;
    LT_CHECK(msg_is(ll_http_get(NULL, "http://127.0.0.1/"), LL_EINVAL,
                    "ll_http_get: session is NULL"));
    LT_CHECK(msg_is(ll_http_post(NULL, "http://127.0.0.1/", NULL, "", 0), LL_EINVAL,
                    "ll_http_post: session is NULL"));
    LT_CHECK(msg_is(ll_http_send(NULL, NULL), LL_EINVAL, "ll_http_send: session is NULL"));
    ll_http_session *s = ll_http_session_new(NULL);
    LT_CHECK(s != NULL);
    LT_CHECK(msg_is(ll_http_get(s, NULL), LL_EINVAL, "ll_http_get: url is NULL"));
    LT_CHECK(msg_is(ll_http_send(s, NULL), LL_EINVAL, "ll_http_send: req is NULL"));
    LT_CHECK(msg_is(ll_http_fetch_all(NULL, NULL, 0, NULL), LL_EINVAL,
                    "ll_http_fetch_all: session is NULL"));
    /* no scheme: say so, not "syntax error at offset 9" */
    LT_CHECK(msg_is(ll_http_get(s, "127.0.0.1:80/x"), LL_EINVAL,
                    "URL 127.0.0.1:80/x: no scheme (expected http:// or https://)"));
    LT_CHECK(msg_is(ll_http_get(s, "example.com/x"), LL_EINVAL, "no scheme"));
    LT_CHECK(msg_is(ll_http_get(s, "ftp://example.com/x"), LL_EINVAL, "unsupported scheme"));
    ll_http_session_free(s);
    ll_http_session_free(NULL); /* a no-op */
    return 0;
}

static void test_bad_args(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_checked(c.loop, t_bad_args, NULL), 0);
    lt_teardown(&c);
}

static int t_response_of(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    char url[128];
    snprintf(url, sizeof url, "%s/small.txt", ngx.base);
    ll_future *f = ll_http_get(s, url);
    LT_CHECK(ll_http_response_of(f) == NULL); /* pending */
    LT_CHECK(ll_await(f) == 0);
    ll_http_response *r = ll_http_response_of(f);
    LT_CHECK(r != NULL && ll_http_response_status(r) == 200);
    LT_CHECK(ll_http_batch_of(f) == NULL); /* a response is not a batch */
    ll_future_free(f);

    const char *urls[] = {url};
    ll_future *b = ll_http_fetch_all(s, urls, 1, NULL);
    LT_CHECK(ll_await(b) == 0);
    LT_CHECK(ll_http_response_of(b) == NULL); /* a batch is not a response: NULL, no crash */
    ll_http_batch *batch = ll_http_batch_of(b);
    LT_CHECK(batch != NULL && ll_http_batch_count(batch) == 1 && ll_http_batch_code(batch, 0) == 0);
    ll_future_free(b);

    ll_future *slept = ll_sleep_future(NULL, 0);
    LT_CHECK(ll_await(slept) == 0);
    LT_CHECK(ll_http_response_of(slept) == NULL);
    ll_future_free(slept);
    LT_CHECK(ll_http_response_of(NULL) == NULL);
    ll_http_session_free(s);
    return 0;
}

static void test_response_of(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_checked(c.loop, t_response_of, NULL), 0);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_response_of),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
