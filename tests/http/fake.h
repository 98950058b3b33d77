/*
 * fake.h — the scripted fake HTTP server the HTTP misbehaviour tests share (header-only: each test
 * program includes it once): a libloop server on a free loopback port that runs a script per
 * connection and records every request byte it received, and a table-driven "one request against
 * one script, expect this code and message" runner.
 */
#ifndef LT_HTTP_FAKE_H
#define LT_HTTP_FAKE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "httptest.h"
#include "libloop/http.h"
#include "libloop/server.h"
#include "libloop/stream.h"

/* ---- the scripted server ---- */

typedef int (*script_fn)(ll_stream *s, int conn_no);

typedef struct fake {
    ll_server *srv;
    script_fn script;
    int conns;             /* connections accepted */
    char seen[65536];      /* every request byte received, all connections */
    size_t seen_len;
    char url[128];         /* "http://127.0.0.1:PORT" */
} fake;

static fake *cur; /* the fake of the running test */

/* Read one request (head, and a Content-Length or chunked body) into cur->seen. 0, or LL_EOF. */
static inline int read_request(ll_stream *s) {
    char head[16384];
    ll_future *f = ll_stream_read_until(s, "\r\n\r\n", 4, head, sizeof head - 1);
    int rc = ll_await(f);
    size_t n = rc == 0 ? (size_t)(uintptr_t)ll_future_value(f) : 0;
    ll_future_free(f);
    if (rc) return rc;
    head[n] = 0;
    if (cur->seen_len + n < sizeof cur->seen) {
        memcpy(cur->seen + cur->seen_len, head, n);
        cur->seen_len += n;
    }
    const char *cl = strcasestr(head, "\r\ncontent-length:");
    size_t body = cl ? strtoul(cl + 17, NULL, 10) : 0;
    bool chunked = strcasestr(head, "\r\ntransfer-encoding: chunked") != NULL;
    if (chunked) { /* read chunks until the last one (test bodies are small) */
        char tmp[8192];
        for (;;) {
            f = ll_stream_read_until(s, "0\r\n\r\n", 5, tmp, sizeof tmp);
            rc = ll_await(f);
            n = rc == 0 ? (size_t)(uintptr_t)ll_future_value(f) : 0;
            ll_future_free(f);
            if (rc) return rc;
            if (cur->seen_len + n < sizeof cur->seen) {
                memcpy(cur->seen + cur->seen_len, tmp, n);
                cur->seen_len += n;
            }
            /* "0\r\n\r\n" ends the body only when it starts a line */
            if (n == 5 || tmp[n - 6] == '\n') break;
        }
    } else if (body) {
        char *b = malloc(body);
        f = ll_stream_read_exactly(s, b, body);
        rc = ll_await(f);
        ll_future_free(f);
        if (rc == 0 && cur->seen_len + body < sizeof cur->seen) {
            memcpy(cur->seen + cur->seen_len, b, body);
            cur->seen_len += body;
        }
        free(b);
        if (rc) return rc;
    }
    return 0;
}

static inline int send_str(ll_stream *s, const void *d, size_t n) {
    ll_future *f = ll_stream_write(s, d, n);
    int rc = ll_await(f);
    ll_future_free(f);
    if (!rc) {
        f = ll_stream_drain(s);
        rc = ll_await(f);
        ll_future_free(f);
    }
    return rc;
}
#define SEND(s, lit) send_str(s, lit, sizeof(lit) - 1)

static inline int handler(ll_stream *s, void *arg) {
    fake *fk = arg;
    int no = fk->conns++;
    return fk->script(s, no);
}

static inline int fake_start(fake *fk, script_fn script) {
    memset(fk, 0, sizeof *fk);
    fk->script = script;
    cur = fk;
    ll_server_opts o = {.linger = 0.5};
    ll_future *f = ll_server_open("127.0.0.1", 0, handler, fk, &o);
    int rc = ll_await(f);
    if (rc == 0) fk->srv = ll_future_take(f);
    ll_future_free(f);
    if (rc) return rc;
    snprintf(fk->url, sizeof fk->url, "http://127.0.0.1:%u", ll_server_port(fk->srv));
    return 0;
}

static inline void fake_stop(fake *fk) {
    ll_future *f = ll_server_close(fk->srv, 0.2);
    ll_await(f);
    ll_future_free(f);
}

/* One misbehaving server, one request, an expected code and a fragment of the message. */
typedef struct expect {
    script_fn script;
    ll_http_request req;   /* url filled in: path in req.url */
    int code;
    const char *msg;
    double max_seconds;
} expect;

static inline int t_expect(void *arg) {
    expect *e = arg;
    fake fk;
    LT_CHECK(fake_start(&fk, e->script) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    char url[256];
    snprintf(url, sizeof url, "%s%s", fk.url, e->req.url ? e->req.url : "/");
    ll_http_request q = e->req;
    q.url = url;
    ll_http_response *r;
    ll_time t0 = ll_now();
    int rc = fetch(s, &q, &r);
    double took = ll_now() - t0;
    if (rc == 0) ll_http_response_free(r);
    ll_http_session_free(s);
    fake_stop(&fk);
    if (rc != e->code) {
        snprintf(lt_failure, sizeof lt_failure, "got %s (%s), want %s", ll_err_name(rc), lt_last_err,
                 ll_err_name(e->code));
        return -1;
    }
    LT_CHECK(!e->msg || strstr(lt_last_err, e->msg));
    LT_CHECK(strstr(lt_last_err, "GET http://127.0.0.1:") == lt_last_err); /* names method and URL */
    double limit = (e->max_seconds ? e->max_seconds : 5) * (lt_under_valgrind() ? 10 : 1);
    LT_CHECK(took < limit); /* nothing hangs (generous: the machine is small and noisy) */
    return 0;
}

#endif
