/*
 * ngxtest.h — what the HTTP test programs against a real nginx share (header-only, static; each
 * program includes it once): the server started once per program by the group setup, URLs on it,
 * one send-and-await helper, and the task runner of a test body.
 */
#ifndef LT_HTTP_NGXTEST_H
#define LT_HTTP_NGXTEST_H

#include <stdio.h>
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "libloop/http.h"

static lt_nginx ngx;
static bool have_ngx;

static char url_buf[8][512];
static int url_i;
/* "http://127.0.0.1:PORT" + path (a rotating set of buffers) */
static inline const char *U(const char *path) {
    char *b = url_buf[url_i++ % 8];
    snprintf(b, 512, "%s%s", ngx.base, path);
    return b;
}
/* the same on the TLS port */
static inline const char *TU(const char *path) {
    char *b = url_buf[url_i++ % 8];
    snprintf(b, 512, "%s%s", ngx.tls_base, path);
    return b;
}

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

/* A test body: fn as a checked task on a fresh loop, cleanup proven. */
static inline void run_in_task(ll_task_fn fn, void *arg) {
    lt_ctx c;
    lt_setup(&c);
    int rc = lt_run_checked(c.loop, fn, arg);
    assert_int_equal(rc, 0);
    lt_teardown(&c);
}

static inline int group_setup(void **state) {
    (void)state;
    have_ngx = lt_nginx_start(&ngx);
    return 0;
}

static inline int group_teardown(void **state) {
    (void)state;
    lt_nginx_stop(&ngx);
    return 0;
}

#endif
