/*
 * ngxtest.h — what the HTTP test programs against a real nginx share (header-only, static; each
 * program includes it once): the server started once per program by the group setup and URLs on
 * it (fetch and run_in_task come from httptest.h).
 */
#ifndef LT_HTTP_NGXTEST_H
#define LT_HTTP_NGXTEST_H

#include <stdio.h>
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "httptest.h"
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
