/*
 * test_http_nginx.c — libloop-http against a real nginx (tests/harness/nginxserver.c): static
 * files of several sizes, keep-alive reuse, gzip, TLS, redirects, chunked and streamed bodies,
 * HEAD/204/304, basic auth, cancellation and timeouts, fan-out, and 10,000 requests over a pool of
 * 64 connections. Every test ends with the loop empty and the descriptor count back where it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "ngxtest.h"
#include "libloop/http.h"

#define NEED_NGINX()                                        \
    do {                                                    \
        if (!have_ngx) {                                    \
            print_message("nginx not available: skipped\n"); \
            skip();                                         \
        }                                                   \
    } while (0)

static int get(ll_http_session *s, const char *url, ll_http_response **out) {
    ll_http_request r = {.url = url};
    return fetch(s, &r, out);
}

static bool body_is_pattern(const ll_http_response *r, size_t n) {
    if (ll_http_response_body_len(r) != n) return false;
    const unsigned char *b = (const unsigned char *)ll_http_response_body(r);
    for (size_t i = 0; i < n; i++)
        if (b[i] != lt_nginx_byte(i)) return false;
    return true;
}

/* ---- basics ---- */

static int t_get_and_reuse(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    LT_CHECK(s);
    ll_http_response *r;
    LT_CHECKF(get(s, U("/small.txt"), &r) == 0, "%s", lt_last_err);
    LT_CHECK(ll_http_response_status(r) == 200);
    LT_CHECK(strcmp(ll_http_response_reason(r), "OK") == 0);
    LT_CHECK(ll_http_response_version(r) == 11);
    LT_CHECK(strcmp(ll_http_response_body(r), "hello, world\n") == 0);
    LT_CHECK(strcmp(ll_http_response_header(r, "content-length"), "13") == 0);
    LT_CHECK(strcmp(ll_http_response_header(r, "CONTENT-TYPE"), "text/plain") == 0);
    LT_CHECK(strcmp(ll_http_response_url(r), U("/small.txt")) == 0);
    ll_http_timings t;
    ll_http_response_timings(r, &t);
    LT_CHECK(!t.reused);
    LT_CHECK(t.connect > 0 && t.connect < 5);
    LT_CHECK(t.tls == 0);
    LT_CHECK(t.first_byte > 0 && t.total >= t.first_byte);
    ll_http_response_free(r);
    /* the next requests ride the same keep-alive connection */
    for (int i = 0; i < 5; i++) {
        LT_CHECK(get(s, U("/1k.bin"), &r) == 0);
        LT_CHECK(body_is_pattern(r, 1024));
        ll_http_response_timings(r, &t);
        LT_CHECK(t.reused && t.connect == 0 && t.dns == 0);
        ll_http_response_free(r);
    }
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.connections == 1);
    LT_CHECK(st.requests == 6);
    LT_CHECK(st.reused == 5);
    LT_CHECK(st.open == 1 && st.idle == 1 && st.in_use == 0);
    ll_http_session_free(s);
    return 0;
}

static void test_get_and_reuse(void **state) {
    (void)state;
    NEED_NGINX();
    run_in_task(t_get_and_reuse, NULL);
}

static int t_sizes(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    static const struct {
        const char *path;
        size_t n;
    } files[] = {{"/1k.bin", 1024}, {"/64k.bin", 65536}, {"/1m.bin", 1 << 20}};
    for (int tls = 0; tls < 2; tls++) {
        for (size_t i = 0; i < 3; i++) {
            ll_http_response *r;
            ll_http_session *ts = s;
            ll_http_session_opts o = {.ca_file = ngx.cert};
            if (tls) ts = ll_http_session_new(&o);
            LT_CHECKF(get(ts, tls ? TU(files[i].path) : U(files[i].path), &r) == 0, "%s", lt_last_err);
            LT_CHECK(ll_http_response_status(r) == 200);
            LT_CHECK(body_is_pattern(r, files[i].n));
            ll_http_response_free(r);
            if (tls) ll_http_session_free(ts);
        }
    }
    ll_http_session_free(s);
    return 0;
}

static void test_sizes_plain_and_tls(void **state) {
    (void)state;
    NEED_NGINX();
    run_in_task(t_sizes, NULL);
}

/* ---- gzip ---- */

static int t_gzip(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_response *r;
    LT_CHECKF(get(s, U("/text/big.txt"), &r) == 0, "%s", lt_last_err);
    LT_CHECK(ll_http_response_status(r) == 200);
    LT_CHECK(strcmp(ll_http_response_header(r, "content-encoding"), "gzip") == 0);
    LT_CHECK(strcmp(ll_http_response_header(r, "transfer-encoding"), "chunked") == 0);
    LT_CHECK(ll_http_response_body_len(r) == 300 * 1024);
    LT_CHECK(strncmp(ll_http_response_body(r), "line 00000000 of some text ....\n", 32) == 0);
    LT_CHECK(strncmp(ll_http_response_body(r) + 9599 * 32, "line 00009599", 13) == 0);
    ll_http_response_free(r);
    /* a decoded-size limit below the file's size stops it */
    ll_http_request q = {.url = U("/text/big.txt"), .limits.max_decoded = 100000};
    LT_CHECK(fetch(s, &q, &r) == LL_ETOOLARGE);
    LT_CHECK(strstr(lt_last_err, "decoded body exceeds the limit of 100000 bytes"));
    ll_http_session_free(s);
    /* without decompression: no Accept-Encoding, so nginx sends it plain */
    ll_http_session_opts o = {.no_decompress = true};
    s = ll_http_session_new(&o);
    LT_CHECK(get(s, U("/text/big.txt"), &r) == 0);
    LT_CHECK(ll_http_response_header(r, "content-encoding") == NULL);
    LT_CHECK(ll_http_response_body_len(r) == 300 * 1024);
    ll_http_response_free(r);
    ll_http_session_free(s);
    return 0;
}

static void test_gzip(void **state) {
    (void)state;
    NEED_NGINX();
    run_in_task(t_gzip, NULL);
}

/* ---- TLS ---- */

static int t_tls(void *arg) {
    (void)arg;
    ll_http_session_opts o = {.ca_file = ngx.cert};
    ll_http_session *s = ll_http_session_new(&o);
    ll_http_response *r;
    LT_CHECKF(get(s, TU("/small.txt"), &r) == 0, "%s", lt_last_err);
    LT_CHECK(strcmp(ll_http_response_body(r), "hello, world\n") == 0);
    ll_http_timings t;
    ll_http_response_timings(r, &t);
    LT_CHECK(t.tls > 0);
    ll_http_response_free(r);
    LT_CHECK(get(s, TU("/small.txt"), &r) == 0); /* reused, no new handshake */
    ll_http_response_timings(r, &t);
    LT_CHECK(t.reused && t.tls == 0);
    ll_http_response_free(r);
    ll_http_session_free(s);
    /* the system store does not know our throwaway CA */
    s = ll_http_session_new(NULL);
    LT_CHECK(get(s, TU("/small.txt"), &r) == LL_ECERT);
    LT_CHECK(strstr(lt_last_err, "GET https://localhost:"));
    ll_http_session_free(s);
    ll_http_session_opts o2 = {.insecure_skip_verify_DANGEROUS = true};
    s = ll_http_session_new(&o2);
    LT_CHECK(get(s, TU("/small.txt"), &r) == 0);
    ll_http_response_free(r);
    ll_http_session_free(s);
    return 0;
}

static void test_tls(void **state) {
    (void)state;
    NEED_NGINX();
    run_in_task(t_tls, NULL);
}

/* ---- redirects ---- */

static int t_redirects(void *arg) {
    (void)arg;
    ll_http_session_opts o = {.ca_file = ngx.cert};
    ll_http_session *s = ll_http_session_new(&o);
    ll_http_response *r;
    static const struct {
        const char *path, *method, *want;
    } rules[] = {
        {"/r301", "GET", "GET "},       {"/r302", "POST", "GET "},     {"/r303", "PUT", "GET "},
        {"/r307", "POST", "POST data"}, {"/r308", "PUT", "PUT data"}, {"/r301", "PUT", "PUT data"},
    };
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
        bool body = strcmp(rules[i].method, "GET") != 0;
        ll_http_request q = {.method = rules[i].method, .url = U(rules[i].path),
                             .body = body ? "data" : NULL, .body_len = body ? 4 : 0};
        LT_CHECKF(fetch(s, &q, &r) == 0, "%s %s", rules[i].path, lt_last_err);
        LT_CHECKF(strcmp(ll_http_response_body(r), rules[i].want) == 0, "%s %s: '%s'",
               rules[i].method, rules[i].path, ll_http_response_body(r));
        LT_CHECK(ll_http_response_redirects(r) == 1);
        LT_CHECK(strcmp(ll_http_response_url(r), U("/method")) == 0);
        ll_http_response_free(r);
    }
    /* a chain within the limit, one beyond it, a loop */
    LT_CHECK(get(s, U("/chain/9"), &r) == 0); /* /chain/N takes N + 1 redirects */
    LT_CHECK(ll_http_response_redirects(r) == 10);
    LT_CHECK(strcmp(ll_http_response_body(r), "hello, world\n") == 0);
    ll_http_response_free(r);
    LT_CHECK(get(s, U("/chain/10"), &r) == LL_EHTTP_REDIRECT);
    LT_CHECK(strstr(lt_last_err, "too many redirects"));
    ll_http_request lim = {.url = U("/chain/1"), .limits.max_redirects = 1};
    LT_CHECK(fetch(s, &lim, &r) == LL_EHTTP_REDIRECT);
    lim.limits.max_redirects = 2;
    LT_CHECK(fetch(s, &lim, &r) == 0);
    ll_http_response_free(r);
    LT_CHECK(get(s, U("/loop/a"), &r) == LL_EHTTP_REDIRECT);
    LT_CHECK(strstr(lt_last_err, "redirect loop"));
    /* not following: the 302 itself */
    ll_http_request nof = {.url = U("/r302"), .limits.max_redirects = LL_HTTP_NO_REDIRECTS};
    LT_CHECK(fetch(s, &nof, &r) == 0);
    LT_CHECK(ll_http_response_status(r) == 302);
    LT_CHECK(strstr(ll_http_response_header(r, "location"), "/method"));
    ll_http_response_free(r);
    /* https -> http refused; http -> https fine */
    LT_CHECK(get(s, TU("/to-http"), &r) == LL_EHTTP_REDIRECT);
    LT_CHECK(strstr(lt_last_err, "from https to http"));
    LT_CHECK(get(s, U("/to-https"), &r) == 0);
    LT_CHECK(strcmp(ll_http_response_body(r), "hello, world\n") == 0);
    LT_CHECK(strncmp(ll_http_response_url(r), "https://", 8) == 0);
    ll_http_response_free(r);
    ll_http_session_free(s);
    o.allow_https_to_http = true;
    s = ll_http_session_new(&o);
    LT_CHECK(get(s, TU("/to-http"), &r) == 0);
    ll_http_response_free(r);
    ll_http_session_free(s);
    return 0;
}

static void test_redirects(void **state) {
    (void)state;
    NEED_NGINX();
    if (!ngx.echo) skip();
    run_in_task(t_redirects, NULL);
}

static int t_credentials(void *arg) {
    (void)arg;
    ll_http_session_opts o = {.user_agent = "tester/1"};
    ll_http_session *s = ll_http_session_new(&o);
    ll_http_response *r;
    ll_http_headers *h = ll_http_headers_new();
    ll_http_headers_add(h, "Cookie", "sid=42");
    ll_http_request q = {.url = U("/headers"), .user = "Aladdin", .password = "open sesame",
                         .headers = h};
    LT_CHECK(fetch(s, &q, &r) == 0);
    LT_CHECKF(strcmp(ll_http_response_body(r), "auth=Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==|cookie=sid=42|"
                                            "ua=tester/1|ae=gzip, deflate") == 0,
           "%s", ll_http_response_body(r));
    ll_http_response_free(r);
    /* same origin redirect: kept */
    q.url = U("/so/headers");
    LT_CHECK(fetch(s, &q, &r) == 0);
    LT_CHECK(strstr(ll_http_response_body(r), "auth=Basic QWxh") && strstr(ll_http_response_body(r),
                                                                         "cookie=sid=42"));
    ll_http_response_free(r);
    /* another origin (localhost instead of 127.0.0.1): dropped */
    q.url = U("/xo/headers");
    LT_CHECK(fetch(s, &q, &r) == 0);
    LT_CHECKF(strncmp(ll_http_response_body(r), "auth=|cookie=|ua=tester/1", 25) == 0, "%s",
           ll_http_response_body(r));
    ll_http_response_free(r);
    /* credentials in the URL */
    char url[512];
    snprintf(url, sizeof url, "http://Aladdin:open%%20sesame@127.0.0.1:%d/headers", ngx.port);
    LT_CHECK(get(s, url, &r) == 0);
    LT_CHECK(strstr(ll_http_response_body(r), "auth=Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==|"));
    LT_CHECK(!strstr(ll_http_response_url(r), "Aladdin")); /* never shown */
    ll_http_response_free(r);
    ll_http_headers_free(h);
    ll_http_session_free(s);
    return 0;
}

static void test_credentials(void **state) {
    (void)state;
    NEED_NGINX();
    if (!ngx.echo) skip();
    run_in_task(t_credentials, NULL);
}

/* ---- bodies ---- */

static int upload_left;
static int upload_fn(void *arg, const void **data, size_t *len) {
    (void)arg;
    static const char piece[] = "0123456789";
    if (upload_left-- > 0) {
        ll_sleep(0.001); /* it may await */
        *data = piece;
        *len = 10;
    } else {
        *len = 0;
    }
    return 0;
}

static int t_bodies(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_response *r;
    ll_http_request q = {.method = "POST", .url = U("/method"), .json = "{\"a\": [1, 2]}"};
    LT_CHECK(fetch(s, &q, &r) == 0);
    LT_CHECK(strcmp(ll_http_response_body(r), "POST {\"a\": [1, 2]}") == 0);
    ll_http_response_free(r);
    const char *form[] = {"name", "Zoë x", "n", "1", NULL};
    ll_http_request fq = {.method = "PUT", .url = U("/method"), .form = form};
    LT_CHECK(fetch(s, &fq, &r) == 0);
    LT_CHECK(strcmp(ll_http_response_body(r), "PUT name=Zo%C3%AB+x&n=1") == 0);
    ll_http_response_free(r);
    upload_left = 30;
    ll_http_request uq = {.method = "POST", .url = U("/method"), .body_fn = upload_fn};
    LT_CHECKF(fetch(s, &uq, &r) == 0, "%s", lt_last_err);
    LT_CHECK(ll_http_response_body_len(r) == 5 + 300);
    ll_http_response_free(r);
    /* a large body from memory (not inlined with the head) */
    size_t big = 200000;
    char *b = malloc(big);
    memset(b, 'z', big);
    ll_http_request bq = {.method = "POST", .url = U("/method"), .body = b, .body_len = big};
    LT_CHECKF(fetch(s, &bq, &r) == 0, "%s", lt_last_err);
    free(b);
    LT_CHECK(ll_http_response_body_len(r) == 5 + big);
    ll_http_response_free(r);
    /* query parameters */
    const char *qp[] = {"x", "a b", NULL};
    ll_http_request pq = {.url = U("/small.txt?k=v"), .query = qp};
    LT_CHECK(fetch(s, &pq, &r) == 0);
    LT_CHECK(strcmp(ll_http_response_url(r), U("/small.txt?k=v&x=a+b")) == 0);
    ll_http_response_free(r);
    /* chunked answer */
    LT_CHECK(get(s, U("/chunked"), &r) == 0);
    LT_CHECK(strcmp(ll_http_response_body(r), "line 0\nline 1\nline 2\nline 3\nline 4\n") == 0);
    LT_CHECK(ll_http_response_header(r, "content-length") == NULL);
    ll_http_response_free(r);
    /* HEAD, 204, 304, 404 */
    ll_http_request hq = {.method = "HEAD", .url = U("/1m.bin")};
    LT_CHECK(fetch(s, &hq, &r) == 0);
    LT_CHECK(ll_http_response_status(r) == 200 && ll_http_response_body_len(r) == 0);
    LT_CHECK(strcmp(ll_http_response_header(r, "content-length"), "1048576") == 0);
    ll_http_response_free(r);
    static const int st[] = {204, 304, 404};
    for (int i = 0; i < 3; i++) {
        char path[32];
        snprintf(path, sizeof path, "/status/%d", st[i]);
        LT_CHECK(get(s, U(path), &r) == 0);
        LT_CHECK(ll_http_response_status(r) == st[i]);
        LT_CHECK(ll_http_response_body_len(r) == (st[i] == 404 ? 9u : 0u));
        ll_http_response_free(r);
    }
    ll_http_stats stats;
    ll_http_session_get_stats(s, &stats);
    LT_CHECK(stats.connections == 1); /* every one of them kept the connection reusable */
    ll_http_session_free(s);
    return 0;
}

static void test_bodies(void **state) {
    (void)state;
    NEED_NGINX();
    if (!ngx.echo) skip();
    run_in_task(t_bodies, NULL);
}

static int t_streamed(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_response *r;
    ll_http_request q = {.url = U("/1m.bin"), .stream = true};
    LT_CHECK(fetch(s, &q, &r) == 0);
    LT_CHECK(ll_http_response_status(r) == 200);
    size_t total = 0, pieces = 0;
    const char *d;
    size_t n;
    int rc;
    while ((rc = ll_http_response_next(r, &d, &n)) == 0) {
        for (size_t i = 0; i < n; i++)
            LT_CHECK((unsigned char)d[i] == lt_nginx_byte(total + i));
        total += n;
        pieces++;
    }
    LT_CHECK(rc == LL_EOF);
    LT_CHECK(total == 1 << 20 && pieces > 1);
    LT_CHECK(ll_http_response_next(r, &d, &n) == LL_EOF);
    ll_http_response_free(r);
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.idle == 1); /* read to the end: back in the pool */
    /* a streamed response freed half-way closes its connection */
    LT_CHECK(fetch(s, &q, &r) == 0);
    LT_CHECK(ll_http_response_next(r, &d, &n) == 0);
    ll_http_response_free(r);
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.open == 0);
    /* gzip, streamed */
    ll_http_request gq = {.url = U("/text/big.txt"), .stream = true};
    LT_CHECK(fetch(s, &gq, &r) == 0);
    total = 0;
    while ((rc = ll_http_response_next(r, &d, &n)) == 0) total += n;
    LT_CHECK(rc == LL_EOF && total == 300 * 1024);
    ll_http_response_free(r);
    ll_http_session_free(s);
    return 0;
}

static void test_streamed(void **state) {
    (void)state;
    NEED_NGINX();
    run_in_task(t_streamed, NULL);
}

/* ---- cancellation, timeouts, closing ---- */

static void cancel_cb(void *arg) { ll_future_cancel(arg); }

static int t_cancel_timeouts(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_response *r;
    /* cancelled while waiting for the slow body: the connection is closed, never reused */
    ll_future *f = ll_http_get(s, U("/slow"));
    ll_future *later = ll_loop_call_later(NULL, 0.3, cancel_cb, f);
    ll_time t0 = ll_now();
    LT_CHECK(ll_await(f) == LL_ECANCELED);
    LT_CHECK(ll_now() - t0 < 1.5);
    ll_future_free(f);
    ll_future_free(later);
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.open == 0 && st.in_use == 0);
    /* idle read timeout */
    ll_http_request q = {.url = U("/slow"), .timeouts.idle_read = 0.3};
    t0 = ll_now();
    LT_CHECK(fetch(s, &q, &r) == LL_EHTTP_TIMEOUT_READ);
    LT_CHECK(ll_now() - t0 < 1.5);
    LT_CHECK(strstr(lt_last_err, "GET http://127.0.0.1:") && strstr(lt_last_err, "nothing received"));
    /* total deadline */
    ll_http_request q2 = {.url = U("/slow"), .timeouts.total = 0.3};
    LT_CHECK(fetch(s, &q2, &r) == LL_ETIMEDOUT);
    LT_CHECK(ll_http_is_timeout(LL_ETIMEDOUT) && ll_http_is_timeout(LL_EHTTP_TIMEOUT_READ));
    /* the caller's own deadline bounds the request too */
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.3));
    int rc = get(s, U("/slow"), &r);
    LT_CHECK(ll_scope_exit(&sc) == LL_ETIMEDOUT);
    LT_CHECK(rc == LL_ETIMEDOUT);
    /* the session freed under a request in flight: it fails with LL_ECLOSED */
    f = ll_http_get(s, U("/slow"));
    ll_sleep(0.2);
    ll_http_session_free(s);
    LT_CHECK(ll_await(f) == LL_ECLOSED);
    ll_future_free(f);
    return 0;
}

static void test_cancel_timeouts(void **state) {
    (void)state;
    NEED_NGINX();
    if (!ngx.echo) skip();
    run_in_task(t_cancel_timeouts, NULL);
}

static int t_refused(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_response *r;
    LT_CHECK(get(s, "http://127.0.0.1:1/", &r) == LL_ECONNREFUSED);
    LT_CHECK(strstr(lt_last_err, "GET http://127.0.0.1:1/: ") && strstr(lt_last_err, "refused"));
    LT_CHECK(get(s, "http://nonexistent.invalid/", &r) == LL_ENOTFOUND);
    LT_CHECK(get(s, "ftp://x/", &r) == LL_EINVAL);
    LT_CHECK(get(s, "http://h/a b", &r) == LL_EINVAL);
    ll_http_request bad = {.method = "GET\r\nX:", .url = U("/")};
    LT_CHECK(fetch(s, &bad, &r) == LL_EINVAL);
    ll_http_session_free(s);
    return 0;
}

static void test_refused_and_invalid(void **state) {
    (void)state;
    NEED_NGINX();
    run_in_task(t_refused, NULL);
}

/* ---- many requests ---- */

typedef struct many {
    int n;
    int ok;
} many;

static int t_many(void *arg) {
    many *m = arg;
    ll_http_session_opts o = {.max_per_host = 64};
    ll_http_session *s = ll_http_session_new(&o);
    ll_future **fs = calloc((size_t)m->n, sizeof *fs);
    for (int i = 0; i < m->n; i++) fs[i] = ll_http_get(s, U(i % 2 ? "/small.txt" : "/1k.bin"));
    ll_future *all = ll_gather(fs, (size_t)m->n, LL_GATHER_COLLECT);
    LT_CHECK(ll_await(all) == 0);
    LT_CHECK((uintptr_t)ll_future_value(all) == 0);
    for (int i = 0; i < m->n; i++) {
        LT_CHECK(ll_future_done(fs[i]));
        if (ll_future_code(fs[i]) == 0 &&
            ll_http_response_status(ll_future_value(fs[i])) == 200)
            m->ok++;
        ll_future_free(fs[i]);
    }
    ll_future_free(all);
    free(fs);
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECKF(st.connections <= 64 && st.open <= 64, "%llu connections",
           (unsigned long long)st.connections);
    LT_CHECK(st.requests == (uint64_t)m->n);
    ll_http_session_free(s);
    return 0;
}

static void test_10000_requests_64_connections(void **state) {
    (void)state;
    NEED_NGINX();
    many m = {.n = lt_under_valgrind() ? 1000 : 10000};
    run_in_task(t_many, &m);
    assert_int_equal(m.ok, m.n);
}

typedef struct fan {
    size_t done, max_in_use;
    ll_http_session *s;
    size_t order_ok;
} fan;

static void on_done(void *arg, size_t index, int code, const ll_http_response *r) {
    (void)index;
    (void)code;
    (void)r;
    fan *f = arg;
    f->done++;
    ll_http_stats st;
    ll_http_session_get_stats(f->s, &st);
    if (st.in_use > f->max_in_use) f->max_in_use = st.in_use;
}

static int t_fanout(void *arg) {
    fan *fa = arg;
    ll_http_session *s = ll_http_session_new(NULL);
    fa->s = s;
    enum { N = 300 };
    const char *urls[N];
    char buf[N][128];
    for (int i = 0; i < N; i++) {
        if (i % 10 == 3) snprintf(buf[i], sizeof buf[i], "%s/status/404", ngx.base);
        else if (i % 10 == 7) snprintf(buf[i], sizeof buf[i], "http://127.0.0.1:1/refused");
        else if (i % 10 == 9) snprintf(buf[i], sizeof buf[i], "not a url %d", i);
        else snprintf(buf[i], sizeof buf[i], "%s/1k.bin?i=%d", ngx.base, i);
        urls[i] = buf[i];
    }
    ll_http_fetch_opts o = {.concurrency = 8, .on_done = on_done, .arg = fa};
    ll_future *f = ll_http_fetch_all(s, urls, N, &o);
    LT_CHECK(ll_await(f) == 0);
    ll_http_batch *b = ll_future_value(f);
    LT_CHECK(ll_http_batch_count(b) == N);
    for (int i = 0; i < N; i++) {
        const ll_http_response *r = ll_http_batch_response(b, (size_t)i);
        int code = ll_http_batch_code(b, (size_t)i);
        if (i % 10 == 3) {
            LT_CHECK(code == 0 && ll_http_response_status(r) == 404);
        } else if (i % 10 == 7) {
            LT_CHECK(code == LL_ECONNREFUSED && !r);
        } else if (i % 10 == 9) {
            LT_CHECK(code == LL_EINVAL && strstr(ll_http_batch_errmsg(b, (size_t)i), "not a url"));
        } else {
            LT_CHECK(ll_http_batch_code(b, (size_t)i) == 0 && body_is_pattern(r, 1024));
            char want[160];
            snprintf(want, sizeof want, "%s/1k.bin?i=%d", ngx.base, i);
            LT_CHECK(strcmp(ll_http_response_url(r), want) == 0); /* input order */
        }
    }
    ll_future_free(f);
    LT_CHECK(fa->done == N);
    LT_CHECK(fa->max_in_use <= 8);
    /* discard_bodies keeps sizes only; cancelling the batch stops it */
    ll_http_fetch_opts o2 = {.concurrency = 4, .discard_bodies = true};
    f = ll_http_fetch_all(s, urls, 20, &o2);
    LT_CHECK(ll_await(f) == 0);
    b = ll_future_value(f);
    LT_CHECK(ll_http_response_body_len(ll_http_batch_response(b, 0)) == 1024);
    LT_CHECK(ll_http_response_body(ll_http_batch_response(b, 0))[0] == 0);
    ll_future_free(f);
    const char *slow[6];
    for (int i = 0; i < 6; i++) slow[i] = U("/slow");
    ll_http_fetch_opts o3 = {.concurrency = 2};
    f = ll_http_fetch_all(s, slow, 6, &o3);
    ll_future *later = ll_loop_call_later(NULL, 0.2, cancel_cb, f);
    LT_CHECK(ll_await(f) == 0);
    b = ll_future_value(f);
    for (int i = 0; i < 6; i++) LT_CHECK(ll_http_batch_code(b, (size_t)i) == LL_ECANCELED);
    ll_future_free(f);
    ll_future_free(later);
    ll_http_session_free(s);
    return 0;
}

static void test_fanout(void **state) {
    (void)state;
    NEED_NGINX();
    if (!ngx.echo) skip();
    fan fa = {0};
    run_in_task(t_fanout, &fa);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_and_reuse),
        cmocka_unit_test(test_sizes_plain_and_tls),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_streamed),
        cmocka_unit_test(test_cancel_timeouts),
        cmocka_unit_test(test_refused_and_invalid),
        cmocka_unit_test(test_10000_requests_64_connections),
        cmocka_unit_test(test_fanout),
    };
    return cmocka_run_group_tests_name("http nginx", tests, group_setup, group_teardown);
}
