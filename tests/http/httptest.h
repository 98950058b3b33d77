/*
 * httptest.h — the two helpers every HTTP test program uses (header-only, static): send and await
 * one request, and run a test body as a checked task. Included by fake.h and ngxtest.h.
 */
#ifndef LT_HTTP_HTTPTEST_H
#define LT_HTTP_HTTPTEST_H

#include <stdio.h>
#include "harness/harness.h"
#include "libloop/http.h"

/* Inside a task: send and await; on success *out owns the response, else lt_last_err says why. */
static inline int fetch(ll_http_session *s, const ll_http_request *req, ll_http_response **out) {
    *out = NULL;
    ll_future *f = ll_http_send(s, req);
    int rc = ll_await(f);
    if (rc == 0) *out = ll_future_take(f);
    else snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return rc;
}

/* Run `fn` as a task in a fresh loop and prove the loop and descriptors are clean after. */
static inline void run_in_task(ll_task_fn fn, void *arg) {
    lt_ctx c;
    lt_setup(&c);
    int rc = lt_run_checked(c.loop, fn, arg);
    assert_int_equal(rc, 0);
    lt_teardown(&c);
}

#endif
