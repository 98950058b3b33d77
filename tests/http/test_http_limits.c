/*
 * test_http_limits.c — libloop-http's defences and options against scripted servers (fake.h):
 * control bytes refused before a connection is made and never echoed raw; a POST never sent on a
 * connection whose FIN has arrived; the 1xx cap; a compression bomb that never stalls the loop;
 * the response-head deadline and the low-speed limit; Expect: 100-continue answered by a final
 * status; which connection carried a response; per-request overrides (user agent, decompression,
 * proxy, environment proxy); the retry policy on connect errors; ll_http_session_new's reasons.
 */
#include <time.h>
#include <zlib.h>
#include "fake.h"
#include "http_internal.h"

/* ---- control bytes ---- */

static int s_ok(ll_stream *s, int no) {
    (void)no;
    while (read_request(s) == 0)
        if (SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) break;
    return 0;
}

static bool has_raw_ctl(const char *m) {
    for (; *m; m++)
        if ((unsigned char)*m < 0x20 || *m == 0x7f) return true;
    return false;
}

static int t_control_bytes(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_ok) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    LT_CHECK(s);
    char url[160];
    snprintf(url, sizeof url, "%s/x", fk.url);
    ll_http_response *r;
    /* header values with \x01 and DEL: refused by the list, and by the request if smuggled in */
    ll_http_headers *h = ll_http_headers_new();
    LT_CHECK(ll_http_headers_add(h, "X-A", "a\x01" "b") == LL_EINVAL);
    LT_CHECK(ll_http_headers_add(h, "X-A", "a\x7f") == LL_EINVAL);
    LT_CHECK(ll_http_headers_add(h, "X-A", "tab\tis fine") == 0);
    const char *bad_ua[] = {"agent\x01", "agent\x7f", "agent\r\nX-Injected: yes"};
    for (size_t i = 0; i < 3; i++) {
        ll_http_request q = {.url = url, .user_agent = bad_ua[i], .headers = h};
        LT_CHECK(fetch(s, &q, &r) == LL_EINVAL);
        LT_CHECK(!has_raw_ctl(lt_last_err));
    }
    ll_http_request q = {.url = url, .method = "POST", .body = "x", .body_len = 1,
                         .content_type = "text/plain\x1b[31m"};
    LT_CHECK(fetch(s, &q, &r) == LL_EINVAL);
    ll_http_request qa = {.url = url, .user = "us\x01er", .password = "p"};
    LT_CHECK(fetch(s, &qa, &r) == LL_EINVAL);
    /* a refused method is named escaped in the message, never raw (log injection) */
    ll_http_request qm = {.url = url, .method = "GET /x HTTP/1.1\r\nX-Injected: yes"};
    LT_CHECK(fetch(s, &qm, &r) == LL_EINVAL);
    LT_CHECKF(!has_raw_ctl(lt_last_err) && strstr(lt_last_err, "\\x0d\\x0aX-Injected"), "%s",
              lt_last_err);
    LT_CHECK(fk.conns == 0); /* refused before any connection */
    ll_http_headers_free(h);
    /* the session's user agent: NULL and a reason */
    ll_http_session_opts so = {.user_agent = "bad\x02"};
    const char *why;
    LT_CHECK(ll_http_session_new(&so) == NULL);
    LT_CHECK(ll_http_session_error(&why) == LL_EINVAL && strstr(why, "user agent"));
    LT_CHECK(!has_raw_ctl(why));
    ll_http_session_opts sp = {.proxy = "ftp://proxy:21"};
    LT_CHECK(ll_http_session_new(&sp) == NULL);
    LT_CHECKF(ll_http_session_error(&why) == LL_EINVAL && strstr(why, "proxy"), "%s", why);
    ll_http_session_free(s);
    LT_CHECK(ll_http_session_error(NULL) == LL_EINVAL); /* not reset by other calls */
    s = ll_http_session_new(NULL);
    LT_CHECK(s && ll_http_session_error(&why) == 0 && !*why);
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_control_bytes(void **state) {
    (void)state;
    run_in_task(t_control_bytes, NULL);
}

/* ---- a POST and a connection the server has just closed ---- */

static int s_one_then_close(ll_stream *s, int no) {
    (void)no;
    /* answer one request as if keeping the connection, then close at once */
    if (read_request(s) == 0) SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    return 0;
}

static int t_post_after_fin(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_one_then_close) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    char url[160];
    snprintf(url, sizeof url, "%s/p", fk.url);
    for (int i = 0; i < 20; i++) {
        ll_http_response *r;
        ll_http_request g = {.url = url};
        LT_CHECKF(fetch(s, &g, &r) == 0, "%s", lt_last_err);
        ll_http_response_free(r);
        ll_sleep(0.002); /* the FIN is in; the connection sat idle for ~2 ms or less */
        ll_http_request p = {.url = url, .method = "POST", .body = "x", .body_len = 1};
        LT_CHECKF(fetch(s, &p, &r) == 0, "round %d: %s", i, lt_last_err);
        ll_http_response_free(r);
    }
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_post_after_fin(void **state) {
    (void)state;
    run_in_task(t_post_after_fin, NULL);
}

/* ---- limits: 1xx flood, head deadline, low speed ---- */

static int s_continue_flood(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    for (int i = 0; i < 100000; i++)
        if (SEND(s, "HTTP/1.1 100 Continue\r\n\r\n")) break;
    return 0;
}

static int s_trickle_head(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    SEND(s, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 200; i++) {
        if (SEND(s, "X")) break; /* one byte of a header name every 20 ms, forever */
        if (ll_sleep(0.02)) break;
    }
    return 0;
}

static int s_trickle_body(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    SEND(s, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    for (int i = 0; i < 1000; i++) {
        if (SEND(s, "0123456789")) break; /* 100 bytes per second */
        if (ll_sleep(0.1)) break;
    }
    return 0;
}

static int s_final_before_body(ll_stream *s, int no) {
    (void)no;
    char head[4096];
    ll_future *f = ll_stream_read_until(s, "\r\n\r\n", 4, head, sizeof head - 1);
    int rc = ll_await(f);
    size_t n = rc == 0 ? (size_t)(uintptr_t)ll_future_value(f) : 0;
    ll_future_free(f);
    if (rc) return 0;
    memcpy(cur->seen, head, n);
    cur->seen_len = n;
    SEND(s, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nno\n");
    ll_sleep(0.3); /* then see whether the body comes anyway */
    char b[64];
    f = ll_stream_read(s, b, sizeof b);
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.2));
    rc = ll_await(f);
    ll_scope_exit(&sc);
    if (rc == 0) cur->seen_len += (size_t)(uintptr_t)ll_future_value(f); /* counted only */
    ll_future_free(f);
    return 0;
}

static void test_limits(void **state) {
    (void)state;
    expect cases[] = {
        {s_continue_flood, {0}, LL_ETOOLARGE, "more than 16 interim (1xx) responses", 0},
        {s_continue_flood, {.limits.max_interim = 3}, LL_ETOOLARGE, "more than 3 interim", 0},
        {s_trickle_head, {.timeouts.head = 0.5}, LL_EHTTP_TIMEOUT_FIRST_BYTE,
         "was not complete within 0.5 s", 2},
        {s_trickle_body, {.timeouts.low_speed_limit = 1000, .timeouts.low_speed_time = 0.5},
         LL_EHTTP_TIMEOUT_READ, "too slow", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        lt_failure[0] = 0;
        run_in_task(t_expect, &cases[i]);
    }
}

static int t_expect_continue(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_final_before_body) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    char url[160];
    snprintf(url, sizeof url, "%s/up", fk.url);
    static char big[100000];
    memset(big, 'b', sizeof big);
    ll_http_request q = {.url = url, .method = "PUT", .body = big, .body_len = sizeof big,
                         .expect_continue = true, .timeouts.continue_wait = 5};
    ll_http_response *r;
    ll_time t0 = ll_now();
    LT_CHECKF(fetch(s, &q, &r) == 0, "%s", lt_last_err);
    LT_CHECK(ll_now() - t0 < 3); /* did not wait out continue_wait */
    LT_CHECK(ll_http_response_status(r) == 413);
    ll_http_response_free(r);
    LT_CHECK(strstr(fk.seen, "Expect: 100-continue\r\n"));
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.idle == 0); /* the connection is not reused: the server may wait for the body */
    ll_http_session_free(s);
    fake_stop(&fk);
    LT_CHECKF(strstr(fk.seen, "bbbb") == NULL, "the body was sent"); /* never sent */
    return 0;
}

static void test_expect_continue_refused(void **state) {
    (void)state;
    run_in_task(t_expect_continue, NULL);
}

/* A server that never says "100 Continue" (HTTP/1.0 style): the body goes after continue_wait. */
static int t_no_continue(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_ok) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    char url[160];
    snprintf(url, sizeof url, "%s/up", fk.url);
    ll_http_request q = {.url = url, .method = "POST", .body = "payload", .body_len = 7,
                         .expect_continue = true, .timeouts.continue_wait = 0.3};
    ll_http_response *r;
    ll_time t0 = ll_now();
    LT_CHECKF(fetch(s, &q, &r) == 0, "%s", lt_last_err);
    double took = ll_now() - t0;
    LT_CHECKF(took >= 0.29 && took < 3, "%.3f s", took);
    LT_CHECK(ll_http_response_status(r) == 200);
    ll_http_response_free(r);
    LT_CHECK(strstr(fk.seen, "Expect: 100-continue\r\n") && strstr(fk.seen, "\r\n\r\npayload"));
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_expect_continue_silent(void **state) {
    (void)state;
    run_in_task(t_no_continue, NULL);
}

/* ---- a compression bomb never stalls the loop ---- */

typedef struct ticker {
    bool stop;
    double max_gap;   /* CPU seconds this process spent between two turns of the ticker */
} ticker;

/* Process CPU time, not wall time: the machine is shared, and being descheduled for 100 ms is
 * not the loop stalling. What must not happen is the loop burning CPU for long without letting
 * other tasks run. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int tick_task(void *arg) {
    ticker *t = arg;
    double last = cpu_now();
    while (!t->stop) {
        if (ll_sleep(0.001)) break;
        double now = cpu_now();
        if (now - last > t->max_gap) t->max_gap = now - last;
        last = now;
    }
    return 0;
}

static unsigned char *bomb;
static size_t bomb_len;

static size_t gzip_into(unsigned char *out, size_t cap, const void *in, size_t n, size_t repeat) {
    z_stream z = {0};
    deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    for (size_t i = 0; i < repeat; i++) {
        z.next_in = (Bytef *)(uintptr_t)in;
        z.avail_in = (uInt)n;
        deflate(&z, i == repeat - 1 ? Z_FINISH : Z_NO_FLUSH);
    }
    size_t len = cap - z.avail_out;
    deflateEnd(&z);
    return len;
}

/* "Content-Encoding: gzip, gzip": 512 MiB of zeros gzip'ed (~512 KiB), gzip'ed again (a few KiB),
 * so one read from the socket holds the whole bomb and a single feed would inflate all of it.
 * Made before the clock starts (the fake server shares the loop; deflating is slow). */
static void make_bomb(void) {
    static char zeros[1 << 16];
    size_t cap = 1 << 20;
    unsigned char *inner = malloc(cap);
    size_t inner_len = gzip_into(inner, cap, zeros, sizeof zeros, 8192);
    bomb = malloc(cap);
    bomb_len = gzip_into(bomb, cap, inner, inner_len, 1);
    free(inner);
}

static int s_bomb(ll_stream *s, int no) {
    (void)no;
    read_request(s);
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip, gzip\r\n"
                      "Content-Length: %zu\r\n\r\n", bomb_len);
    send_str(s, hdr, (size_t)hl);
    send_str(s, bomb, bomb_len);
    ll_sleep(1);
    return 0;
}

static int t_bomb(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_bomb) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    ticker t = {0};
    ll_future *tf = ll_spawn(tick_task, &t);
    char url[160];
    snprintf(url, sizeof url, "%s/bomb", fk.url);
    /* through the fan-out with discarded bodies: decoding alone, no body buffer to grow */
    const char *urls[] = {url};
    ll_http_request tmpl = {.limits.max_decoded = 400 << 20};
    ll_http_fetch_opts fo = {.tmpl = &tmpl, .discard_bodies = true};
    ll_future *bf = ll_http_fetch_all(s, urls, 1, &fo);
    LT_CHECK(ll_await(bf) == 0);
    t.stop = true;
    ll_await(tf);
    ll_future_free(tf);
    const ll_http_batch *b = ll_http_batch_of(bf);
    int rc = ll_http_batch_code(b, 0);
    snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_http_batch_errmsg(b, 0));
    ll_future_free(bf);
    LT_CHECKF(rc == LL_ETOOLARGE && strstr(lt_last_err, "exceeds the limit of 419430400"), "%s",
              lt_last_err);
    /* 400 MiB inflate in 0.5-1 s of CPU here (without the yields the ticker sees all of it in one
     * gap); with them the loop runs every ~2 ms of decoding. The bound is generous (the fake
     * server and the ticker share the process's CPU time), looser under sanitizers. */
    double bound = lt_under_valgrind() ? 1.0 : lt_under_asan() ? 0.2 : 0.05;
    LT_CHECKF(t.max_gap < bound, "the loop ran %.1f ms of CPU without a turn for others",
              t.max_gap * 1e3);
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_bomb_yields(void **state) {
    (void)state;
    /* Under valgrind, making the bomb (deflating 512 MiB) and inflating it take minutes, and a
     * CPU-time bound says nothing there; ASan and the plain build run it. */
    if (lt_under_valgrind()) skip();
    make_bomb(); /* before the loop exists: seconds of CPU no loop should sit through */
    run_in_task(t_bomb, NULL);
    free(bomb);
}

/* ---- which connection; per-request overrides ---- */

static int t_conn_info_and_overrides(void *arg) {
    (void)arg;
    fake fk;
    LT_CHECK(fake_start(&fk, s_ok) == 0);
    ll_http_session *s = ll_http_session_new(NULL);
    char url[160];
    snprintf(url, sizeof url, "%s/c", fk.url);
    ll_http_conn_info a, b;
    ll_http_response *r;
    ll_http_request q = {.url = url};
    LT_CHECK(fetch(s, &q, &r) == 0);
    ll_http_response_conn(r, &a);
    ll_http_response_free(r);
    ll_http_request q2 = {.url = url, .user_agent = "other-agent/2", .decompress = -1};
    LT_CHECK(fetch(s, &q2, &r) == 0);
    ll_http_response_conn(r, &b);
    LT_CHECK(ll_http_response_attempts(r) == 1);
    ll_http_response_free(r);
    LT_CHECK(a.id == 1 && !a.reused && a.local_port > 0 && a.requests == 1);
    LT_CHECK(b.id == 1 && b.reused && b.local_port == a.local_port && b.requests == 2);
    /* the second request's head: its own user agent, no Accept-Encoding */
    const char *second = strstr(fk.seen + 1, "GET /c");
    LT_CHECK(second && strstr(second, "User-Agent: other-agent/2\r\n"));
    LT_CHECK(!strstr(second, "Accept-Encoding"));
    LT_CHECK(strstr(fk.seen, "Accept-Encoding: gzip, deflate\r\n") < second);
    /* a per-request proxy (the fake plays it: the request line is in absolute form), then the
     * environment's, then NO_PROXY */
    ll_http_request qp = {.url = "http://example.invalid/via-proxy", .proxy = fk.url};
    LT_CHECKF(fetch(s, &qp, &r) == 0, "%s", lt_last_err);
    ll_http_response_free(r);
    LT_CHECK(strstr(fk.seen, "GET http://example.invalid/via-proxy HTTP/1.1\r\n"));
    setenv("http_proxy", fk.url + 7, 1); /* "127.0.0.1:PORT": no scheme means http:// */
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    ll_http_request qe = {.url = "http://example.invalid/via-env", .proxy_from_env = true};
    LT_CHECKF(fetch(s, &qe, &r) == 0, "%s", lt_last_err);
    ll_http_response_free(r);
    LT_CHECK(strstr(fk.seen, "GET http://example.invalid/via-env HTTP/1.1\r\n"));
    setenv("NO_PROXY", "localhost, 127.0.0.1", 1);
    ll_http_request qn = {.url = url, .proxy_from_env = true};
    LT_CHECK(fetch(s, &qn, &r) == 0);
    ll_http_response_free(r);
    unsetenv("http_proxy");
    unsetenv("NO_PROXY");
    LT_CHECK(!strstr(fk.seen, "GET http://127.0.0.1"));
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.connections == 2); /* direct, and one for the proxy profile (shared by env) */
    ll_http_session_free(s);
    fake_stop(&fk);
    return 0;
}

static void test_conn_info_and_overrides(void **state) {
    (void)state;
    run_in_task(t_conn_info_and_overrides, NULL);
}

static void test_no_proxy_rules(void **state) {
    (void)state;
    /* the core of NO_PROXY: no loop needed */
    assert_true(ll__http_no_proxy_match("*", "a.b", 80));
    assert_true(ll__http_no_proxy_match("example.com", "www.example.com", 80));
    assert_true(ll__http_no_proxy_match(".example.com", "example.com", 80));
    assert_false(ll__http_no_proxy_match("example.com", "badexample.com", 80));
    assert_true(ll__http_no_proxy_match("a.com:8080", "a.com", 8080));
    assert_false(ll__http_no_proxy_match("a.com:8080", "a.com", 80));
    assert_true(ll__http_no_proxy_match("[::1]", "::1", 80));
    assert_false(ll__http_no_proxy_match("", "a.com", 80));
}

/* ---- the retry policy on connect errors ---- */

static int t_retry_connect(void *arg) {
    (void)arg;
    /* a port nobody listens on: bind one, read its number, close it */
    fake fk;
    LT_CHECK(fake_start(&fk, s_ok) == 0);
    char url[160];
    snprintf(url, sizeof url, "%s/r", fk.url);
    fake_stop(&fk);
    ll_http_session *s = ll_http_session_new(NULL);
    ll_http_retry rp = {.attempts = 3, .backoff = 0.1};
    ll_http_request q = {.url = url, .retry = &rp};
    ll_http_response *r;
    ll_time t0 = ll_now();
    int rc = fetch(s, &q, &r);
    double took = ll_now() - t0;
    LT_CHECKF(rc == LL_ECONNREFUSED, "%s", lt_last_err);
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.retries == 2);
    /* waits: [0.05, 0.1] then [0.1, 0.2] */
    LT_CHECKF(took >= 0.15 && took < 3, "%.3f s", took);
    /* a POST is not retried */
    ll_http_request p = {.url = url, .method = "POST", .retry = &rp};
    LT_CHECK(fetch(s, &p, &r) == LL_ECONNREFUSED);
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.retries == 2);
    ll_http_session_free(s);
    return 0;
}

static void test_retry_connect(void **state) {
    (void)state;
    run_in_task(t_retry_connect, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_bytes),
        cmocka_unit_test(test_post_after_fin),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_expect_continue_refused),
        cmocka_unit_test(test_expect_continue_silent),
        cmocka_unit_test(test_bomb_yields),
        cmocka_unit_test(test_conn_info_and_overrides),
        cmocka_unit_test(test_no_proxy_rules),
        cmocka_unit_test(test_retry_connect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
