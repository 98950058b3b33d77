/*
 * test_http_fake.c — libloop-http against scripted servers built on libloop (ll_server_open) for
 * what nginx will not do: garbage, truncation, absurd sizes, silence, stale keep-alive, loops,
 * compression bombs, suspect framing. Each misbehaviour must end in a clear error, nothing may
 * hang, and no descriptor may leak. Also: the exact bytes a request puts on the wire, refusal of
 * header injection before a connection is even made, the pool-wait timeout, and allocation
 * failures injected one by one into a whole request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "libloop/http.h"
#include "libloop/server.h"
#include "libloop/stream.h"


#include "fake.h"

/* ---- scripts ---- */

static int s_garbage(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    return SEND(s, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
}

static int s_hang_up(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    return 0; /* closes without a word */
}

static int s_truncated(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    return SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..");
}

static int s_truncated_chunk(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    return SEND(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc");
}

static int s_absurd_chunk(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    SEND(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nabc");
    ll_sleep(10); /* the client must not wait for the rest */
    return 0;
}

static int s_huge_header(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    SEND(s, "HTTP/1.1 200 OK\r\nX-Big: ");
    char *junk = malloc(1 << 20);
    memset(junk, 'x', 1 << 20);
    send_str(s, junk, 1 << 20); /* fails with EPIPE/ECONNRESET once the client gives up */
    free(junk);
    return 0;
}

static int s_silent(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    ll_sleep(30);
    return 0;
}

static int s_self_redirect(ll_stream *s, int no) {
    (void)no;
    while (read_request(s) == 0)
        if (SEND(s, "HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n")) break;
    return 0;
}

/* 16 MiB of zeros gzip'ed (about 16 KiB), made before the loop runs: deflating inside the fake
 * server would hold the loop the client needs (for a minute under valgrind). */
static unsigned char bomb[1 << 16];
static size_t bomb_len;

static void make_bomb(void) {
    if (bomb_len) return;
    z_stream z = {0};
    deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);
    static char zeros[1 << 16];
    z.next_out = bomb;
    z.avail_out = sizeof bomb;
    for (int i = 0; i < 256; i++) {
        z.next_in = (Bytef *)zeros;
        z.avail_in = sizeof zeros;
        deflate(&z, i == 255 ? Z_FINISH : Z_NO_FLUSH);
    }
    bomb_len = sizeof bomb - z.avail_out;
    deflateEnd(&z);
}

static int s_gzip_bomb(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    /* chunked, as gzip'ed replies usually are; 4 KiB per chunk */
    SEND(s, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
    int rc = 0;
    for (size_t off = 0; off < bomb_len && !rc; off += 4096) {
        size_t n = bomb_len - off < 4096 ? bomb_len - off : 4096;
        char hdr[32];
        int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
        rc = send_str(s, hdr, (size_t)hl);
        if (!rc) rc = send_str(s, bomb + off, n);
        if (!rc) rc = SEND(s, "\r\n");
    }
    if (!rc) SEND(s, "0\r\n\r\n");
    return 0;
}

static int s_corrupt_gzip(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    /* a valid gzip header, then a deflate block of the reserved type 3 */
    return SEND(s, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 13\r\n\r\n"
                   "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff");
}

static int s_brotli(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    return SEND(s, "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc");
}

static void test_misbehaving_servers(void **state) {
    (void)state;
    make_bomb();
    expect cases[] = {
        {s_garbage, {0}, LL_EHTTP_PROTO, "malformed response", 0},
        {s_hang_up, {0}, LL_ETRUNCATED, "connection closed before any byte of the response", 0},
        {s_truncated, {0}, LL_ETRUNCATED, "before the end of the body (10 bytes read)", 0},
        {s_truncated_chunk, {0}, LL_ETRUNCATED, "before the end of the body", 0},
        {s_absurd_chunk, {0}, LL_ETOOLARGE, "chunk of 9223372036854775807 bytes exceeds", 0},
        {s_huge_header, {0}, LL_ETOOLARGE, "header line longer than 8192 bytes", 0},
        {s_silent, {.timeouts.first_byte = 0.3}, LL_EHTTP_TIMEOUT_FIRST_BYTE,
         "no response from 127.0.0.1:", 2},
        {s_silent, {.timeouts.total = 0.3}, LL_ETIMEDOUT, "deadline", 2},
        {s_self_redirect, {.url = "/again"}, LL_EHTTP_REDIRECT, "redirect loop", 0},
        {s_self_redirect, {.url = "/first"}, LL_EHTTP_REDIRECT, "redirect loop", 0},
        {s_gzip_bomb, {.limits.max_decoded = 1 << 20}, LL_ETOOLARGE,
         "decoded body exceeds the limit of 1048576 bytes", 0},
        {s_corrupt_gzip, {0}, LL_EHTTP_DECODE, "corrupt gzip data", 0},
        {s_brotli, {0}, LL_EHTTP_DECODE, "unsupported Content-Encoding 'br'", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        print_message("case %zu: want %s\n", i, ll_err_name(cases[i].code));
        run_in_task(t_expect, &cases[i]);
    }
}

/* ---- legal but suspect, and connection reuse decisions ---- */

static int s_suspect(ll_stream *s, int no) {
    (void)no;
    while (read_request(s) == 0)
        if (SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "4\r\nabcd\r\n0\r\n\r\n"))
            break;
    return 0;
}

static int s_extra_bytes(ll_stream *s, int no) {
    (void)no;
    while (read_request(s) == 0)
        if (SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdHTTP/1.1 200 OK\r\n")) break;
    return 0;
}

static int s_close_delimited(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    return SEND(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
}

static int s_interim_then_ok(ll_stream *s, int no) {
    (void)no;
    while (read_request(s) == 0)
        if (SEND(s, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd"))
            break;
    return 0;
}

static int s_keepalive(ll_stream *s, int no) {
    (void)no;
    while (read_request(s) == 0)
        if (SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")) break;
    return 0;
}

typedef struct reuse_case {
    script_fn script;
    const char *body;
    int conns_after_two; /* connections the server saw after two requests */
} reuse_case;

static int t_reuse(void *arg) {
    reuse_case *rc_ = arg;
    fake fk;
    LT_CHECK(fake_start(&fk, rc_->script) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    for (int i = 0; i < 2; i++) {
        ll_http_request q = {.url = fk.url};
        ll_http_response *r;
        LT_CHECK(fetch(s, &q, &r) == 0);
        LT_CHECK(ll_http_response_status(r) == 200);
        LT_CHECK(strcmp(ll_http_response_body(r), rc_->body) == 0);
        ll_http_response_free(r);
    }
    LT_CHECK(fk.conns == rc_->conns_after_two);
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_reuse_decisions(void **state) {
    (void)state;
    reuse_case cases[] = {
        {s_keepalive, "abcd", 1},        /* the baseline: one connection */
        {s_suspect, "abcd", 2},          /* TE + CL: read, then closed */
        {s_extra_bytes, "abcd", 2},      /* stray bytes after the response */
        {s_close_delimited, "until the end", 2},
        {s_interim_then_ok, "abcd", 1},  /* 1xx skipped; still reusable */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_in_task(t_reuse, &cases[i]);
}

/* ---- stale keep-alive ---- */

/* The first connection answers one request, then reads the next and closes without a word; later
 * connections answer normally. */
static int s_stale(ll_stream *s, int no) {
    if (read_request(s)) return 0;
    if (SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")) return 0;
    if (no == 0) {
        read_request(s);
        ll_stream_reset(s);
        return 0;
    }
    while (read_request(s) == 0)
        if (SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")) break;
    return 0;
}

static int t_stale(void *arg) {
    const char *method = arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_stale) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_request q = {.url = fk.url, .method = method};
    ll_http_response *r;
    LT_CHECK(fetch(s, &q, &r) == 0);
    ll_http_response_free(r);
    int rc = fetch(s, &q, &r);
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    if (strcmp(method, "GET") == 0) {
        LT_CHECK(rc == 0);
        LT_CHECK(strcmp(ll_http_response_body(r), "abcd") == 0);
        ll_http_timings t;
        ll_http_response_timings(r, &t);
        LT_CHECK(!t.reused); /* the retry went out on a new connection */
        ll_http_response_free(r);
        LT_CHECK(st.retries == 1 && fk.conns == 2);
    } else {
        LT_CHECK(rc == LL_EHTTP_STALE);
        LT_CHECK(strstr(lt_last_err, "not retried (POST is not idempotent)"));
        LT_CHECK(st.retries == 0 && fk.conns == 1);
    }
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_stale_keepalive(void **state) {
    (void)state;
    run_in_task(t_stale, "GET");
    run_in_task(t_stale, "POST");
}

/* ---- exact bytes on the wire ---- */

static int upload_n;
static int upload(void *arg, const void **data, size_t *len) {
    (void)arg;
    static const char *parts[] = {"hello ", "chunked ", "world"};
    if (upload_n < 3) {
        *data = parts[upload_n];
        *len = strlen(parts[upload_n]);
        upload_n++;
    } else {
        *len = 0;
    }
    return 0;
}

static int t_wire(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_keepalive) == 0);
    ll_http_session_opts so = {.user_agent = "ua/1"};
    ll_http_session *s = ll_http_session_new(&so);
    ll_http_headers *h = ll_http_headers_new();
    ll_http_headers_add(h, "X-Trace", "t1");
    ll_http_headers_add(h, "Accept", "*/*");
    char url[256];
    snprintf(url, sizeof url, "%s/p?a=1", fk.url);
    const char *qp[] = {"b", "x y", NULL};
    ll_http_request g = {.url = url, .headers = h, .query = qp};
    ll_http_response *r;
    LT_CHECK(fetch(s, &g, &r) == 0);
    ll_http_response_free(r);
    ll_http_request p = {.method = "POST", .url = fk.url, .json = "{\"k\":1}"};
    LT_CHECK(fetch(s, &p, &r) == 0);
    ll_http_response_free(r);
    upload_n = 0;
    ll_http_request c = {.method = "PUT", .url = fk.url, .body_fn = upload,
                         .content_type = "text/plain", .user = "u", .password = "p"};
    LT_CHECK(fetch(s, &c, &r) == 0);
    ll_http_response_free(r);
    ll_http_request e = {.method = "DELETE", .url = fk.url};
    LT_CHECK(fetch(s, &e, &r) == 0);
    ll_http_response_free(r);
    char want[2048];
    int port = (int)ll_server_port(fk.srv);
    snprintf(want, sizeof want,
             "GET /p?a=1&b=x+y HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: ua/1\r\n"
             "Accept-Encoding: gzip, deflate\r\nX-Trace: t1\r\nAccept: */*\r\n\r\n"
             "POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: ua/1\r\n"
             "Accept-Encoding: gzip, deflate\r\nContent-Type: application/json\r\n"
             "Content-Length: 7\r\n\r\n{\"k\":1}"
             "PUT / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: ua/1\r\n"
             "Accept-Encoding: gzip, deflate\r\nAuthorization: Basic dTpw\r\n"
             "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
             "6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n"
             "DELETE / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: ua/1\r\n"
             "Accept-Encoding: gzip, deflate\r\n\r\n",
             port, port, port, port);
    fk.seen[fk.seen_len] = 0;
    if (strcmp(fk.seen, want) != 0) {
        snprintf(lt_failure, sizeof lt_failure, "on the wire:\n%.1800s\nwanted:\n%.1800s", fk.seen,
                 want);
        return -1;
    }
    LT_CHECK(fk.conns == 1);
    /* injection: refused before any connection is made */
    ll_http_headers_free(h);
    h = ll_http_headers_new();
    LT_CHECK(ll_http_headers_add(h, "X-A", "v\r\nX-Injected: 1") == LL_EINVAL);
    LT_CHECK(ll_http_headers_count(h) == 0);
    ll_http_request bad[] = {
        {.method = "GET /x HTTP/1.1\r\nX:", .url = fk.url},
        {.url = "http://127.0.0.1:1/\r\nX: y"},
        {.method = "POST", .url = fk.url, .content_type = "a\r\nX: y", .body = "x", .body_len = 1},
        {.url = fk.url, .user = "u", .password = "p", .json = "{}",
         .method = "BAD METHOD"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) LT_CHECK(fetch(s, &bad[i], &r) == LL_EINVAL);
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.requests == 4 && fk.conns == 1);
    ll_http_headers_free(h);
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_exact_bytes_and_injection(void **state) {
    (void)state;
    run_in_task(t_wire, NULL);
}

/* ---- the pool wait ---- */

static int s_slow_ok(ll_stream *s, int no) {
    (void)no;
    while (read_request(s) == 0) {
        ll_sleep(1.0);
        if (SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) break;
    }
    return 0;
}

static int t_pool_wait(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_slow_ok) == 0);
    ll_http_session_opts so = {.max_per_host = 1};
    ll_http_session *s = ll_http_session_new(&so);
    ll_future *first = ll_http_get(s, fk.url);
    ll_sleep(0.1);
    ll_http_request q = {.url = fk.url, .timeouts.pool_wait = 0.2};
    ll_http_response *r;
    ll_time t0 = ll_now();
    LT_CHECK(fetch(s, &q, &r) == LL_EHTTP_TIMEOUT_POOL);
    LT_CHECK(ll_now() - t0 < 0.9);
    LT_CHECK(strstr(lt_last_err, "no connection to http://127.0.0.1:"));
    LT_CHECK(ll_await(first) == 0);
    ll_future_free(first);
    /* waiting for the pool within the limit works, and shows in the timings */
    first = ll_http_get(s, fk.url);
    ll_sleep(0.1);
    LT_CHECK(fetch(s, &(ll_http_request){.url = fk.url}, &r) == 0);
    ll_http_timings t;
    ll_http_response_timings(r, &t);
    LT_CHECK(t.pool_wait > 0.5 && t.reused);
    ll_http_response_free(r);
    LT_CHECK(ll_await(first) == 0);
    ll_future_free(first);
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_pool_wait_timeout(void **state) {
    (void)state;
    run_in_task(t_pool_wait, NULL);
}


/* ---- the TLS phase's own timeout: a server that accepts and never answers the ClientHello ---- */

static int s_mute(ll_stream *s, int no) {
    (void)s;
    (void)no;
    ll_sleep(30);
    return 0;
}

static int t_tls_timeout(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_mute) == 0);
    ll_http_session_opts so = {.timeouts.tls = 0.3};
    ll_http_session *s = ll_http_session_new(&so);
    char url[160];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/", ll_server_port(fk.srv));
    ll_http_request q = {.url = url};
    ll_http_response *r;
    ll_time t0 = ll_now();
    LT_CHECK(fetch(s, &q, &r) == LL_EHTTP_TIMEOUT_TLS);
    LT_CHECK(ll_now() - t0 < (lt_under_valgrind() ? 30 : 3)); /* valgrind: loading the CA store */
    LT_CHECK(strstr(lt_last_err, "GET https://127.0.0.1:") == lt_last_err);
    LT_CHECK(ll_http_is_timeout(LL_EHTTP_TIMEOUT_TLS));
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_tls_timeout(void **state) {
    (void)state;
    run_in_task(t_tls_timeout, NULL);
}

/* ---- an HTTP proxy: absolute-form requests, and CONNECT tunnels ---- */

typedef struct relay {
    ll_stream *from, *to;
} relay;

static int relay_task(void *arg) {
    relay *r = arg;
    char buf[16384];
    for (;;) {
        ll_future *f = ll_stream_read(r->from, buf, sizeof buf);
        int rc = ll_await(f);
        size_t n = rc == 0 ? (size_t)(uintptr_t)ll_future_value(f) : 0;
        ll_future_free(f);
        if (rc || send_str(r->to, buf, n)) return 0;
    }
}

static int s_proxy(ll_stream *s, int no) {
    (void)no;
    char head[4096];
    ll_future *f = ll_stream_read_until(s, "\r\n\r\n", 4, head, sizeof head - 1);
    int rc = ll_await(f);
    size_t n = rc == 0 ? (size_t)(uintptr_t)ll_future_value(f) : 0;
    ll_future_free(f);
    if (rc) return 0;
    head[n] = 0;
    if (cur->seen_len + n < sizeof cur->seen) {
        memcpy(cur->seen + cur->seen_len, head, n);
        cur->seen_len += n;
    }
    bool authorized = strstr(head, "\r\nProxy-Authorization: Basic cDp3\r\n") != NULL;
    if (strncmp(head, "CONNECT ", 8) != 0) {
        if (!authorized) return SEND(s, "HTTP/1.1 407 Proxy Authentication Required\r\n"
                                        "Content-Length: 0\r\n\r\n");
        return SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nvia proxy");
    }
    if (!authorized)
        return SEND(s, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
    char host[256];
    unsigned port = 0;
    if (sscanf(head + 8, "%255[^:]:%u", host, &port) != 2) return 0;
    f = ll_stream_connect(host, (uint16_t)port, NULL);
    rc = ll_await(f);
    ll_stream *up = rc == 0 ? ll_future_take(f) : NULL;
    ll_future_free(f);
    if (!up) return SEND(s, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    if (SEND(s, "HTTP/1.1 200 Connection established\r\n\r\n") == 0) {
        relay down = {up, s}, upward = {s, up};
        ll_future *t = ll_spawn(relay_task, &down);
        relay_task(&upward); /* until the client closes */
        ll_future_cancel(t);
        ll_await(t);
        ll_future_free(t);
    }
    ll_stream_close(up);
    return 0;
}

static int t_proxy(void *arg) {
    lt_nginx *ngx = arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_proxy) == 0);
    char proxy[160];
    snprintf(proxy, sizeof proxy, "http://p:w@127.0.0.1:%u", ll_server_port(fk.srv));
    ll_http_session_opts so = {.proxy = proxy, .ca_file = ngx ? ngx->cert : NULL};
    ll_http_session *s = ll_http_session_new(&so);
    LT_CHECK(s);
    ll_http_response *r;
    /* plain http: the request goes to the proxy in absolute form */
    ll_http_request q = {.url = "http://origin.invalid:8080/x?y=1"};
    LT_CHECK(fetch(s, &q, &r) == 0);
    LT_CHECK(strcmp(ll_http_response_body(r), "via proxy") == 0);
    ll_http_response_free(r);
    fk.seen[fk.seen_len] = 0;
    LT_CHECK(strncmp(fk.seen, "GET http://origin.invalid:8080/x?y=1 HTTP/1.1\r\n"
                           "Host: origin.invalid:8080\r\n", 72) == 0);
    LT_CHECK(strstr(fk.seen, "\r\nProxy-Authorization: Basic cDp3\r\n"));
    if (ngx) { /* https: a CONNECT tunnel, then TLS with the origin through it */
        char url[160];
        snprintf(url, sizeof url, "%s/1k.bin", ngx->tls_base);
        ll_http_request tq = {.url = url};
        for (int i = 0; i < 2; i++) { /* the second request reuses the tunnel */
            LT_CHECK(fetch(s, &tq, &r) == 0);
            LT_CHECK(ll_http_response_status(r) == 200 && ll_http_response_body_len(r) == 1024);
            ll_http_timings t;
            ll_http_response_timings(r, &t);
            LT_CHECK(i == 0 ? t.tls > 0 : t.reused);
            ll_http_response_free(r);
        }
        char want[200];
        snprintf(want, sizeof want, "CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n"
                 "Proxy-Authorization: Basic cDp3\r\n\r\n", ngx->tls_port, ngx->tls_port);
        fk.seen[fk.seen_len] = 0;
        LT_CHECK(strstr(fk.seen, want));
    }
    ll_http_session_free(s);
    /* wrong credentials: the proxy's 407 to CONNECT is an error; to a plain request a response */
    snprintf(proxy, sizeof proxy, "http://p:bad@127.0.0.1:%u", ll_server_port(fk.srv));
    s = ll_http_session_new(&so);
    LT_CHECK(fetch(s, &q, &r) == 0);
    LT_CHECK(ll_http_response_status(r) == 407);
    ll_http_response_free(r);
    ll_http_request tq2 = {.url = "https://localhost:1/"};
    LT_CHECK(fetch(s, &tq2, &r) == LL_EHTTP_STATUS);
    LT_CHECK(strstr(lt_last_err, "refused CONNECT to localhost:1: 407"));
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_proxy(void **state) {
    (void)state;
    lt_nginx ngx;
    bool have = lt_nginx_start(&ngx);
    run_in_task(t_proxy, have ? &ngx : NULL);
    if (have) lt_nginx_stop(&ngx);
}

/* ---- allocation failures, one by one, through a whole request ---- */

static int t_alloc(void *arg) {
    long *n = arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_keepalive) == 0);
    lt_fail_after(*n);
    ll_http_session *s = ll_http_session_new(NULL);
    int rc = LL_ENOMEM;
    if (s) {
        ll_http_response *r;
        ll_http_request q = {.url = fk.url, .json = "{}", .method = "POST"};
        rc = fetch(s, &q, &r);
        if (rc == 0) {
            if (strcmp(ll_http_response_body(r), "abcd") != 0) rc = LL_EIO;
            ll_http_response_free(r);
        }
        ll_http_session_free(s);
    }
    lt_fail_reset();
    fake_stop(&fk);
    *n = rc;
    return 0;
}

static void test_alloc_failures(void **state) {
    (void)state;
    int ok = 0;
    for (long n = 0; n < 400 && !ok; n++) {
        long res = n;
        lt_track_begin();
        run_in_task(t_alloc, &res);
        long leaked = lt_track_end();
        if (leaked) fail_msg("failing allocation %ld leaked %ld allocations", n, leaked);
        if (res == 0) {
            ok = 1;
            print_message("a whole request succeeded once the first %ld allocations could\n", n);
        }
        /* any failure is acceptable as long as it is clean; most are LL_ENOMEM */
    }
    assert_int_equal(ok, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_misbehaving_servers),
        cmocka_unit_test(test_reuse_decisions),
        cmocka_unit_test(test_stale_keepalive),
        cmocka_unit_test(test_exact_bytes_and_injection),
        cmocka_unit_test(test_pool_wait_timeout),
        cmocka_unit_test(test_tls_timeout),
        cmocka_unit_test(test_proxy),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests_name("http fake servers", tests, NULL, NULL);
}
