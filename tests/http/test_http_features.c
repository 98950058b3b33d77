/*
 * test_http_features.c — libloop-http's user features against a real nginx
 * (tests/harness/nginxserver.c): the cookie jar (RFC 6265 rules, public suffixes through libpsl,
 * Netscape files), multipart/form-data with files streamed from disk and urlencoded forms,
 * Expect: 100-continue answered by "100 Continue", the retry policy on 503 with Retry-After, and
 * per-request TLS overrides (CA, verification) kept on separate connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "harness/harness.h"
#include "harness/nginxserver.h"
#include "ngxtest.h"
#include "harness/serverutil.h"
#include "http_internal.h"

#define NEED_ECHO()                                                  \
    do {                                                             \
        if (!have_ngx || !ngx.echo) {                                \
            print_message("nginx (with echo) not available: skipped\n"); \
            skip();                                                  \
        }                                                            \
    } while (0)


/* ---- cookies ---- */

static int t_cookies(void *arg) {
    (void)arg;
    ll_http_session_opts o = {.cookies = true};
    ll_http_session *s = ll_http_session_new(&o);
    LT_CHECK(s);
    ll_http_response *r;
    ll_http_request set = {.url = U("/cookie/set")};
    LT_CHECKF(fetch(s, &set, &r) == 0, "%s", lt_last_err);
    ll_http_response_free(r);
    /* stored: a and p; refused: sup (Domain=com, a public suffix), sec (Secure over http), gone */
    LT_CHECK(ll_http_cookies_count(s) == 2);
    /* sent to the server, by path: /headers gets a only; /cookie/headers gets p first (longer
     * path), then a */
    ll_http_request h1 = {.url = U("/headers")};
    LT_CHECK(fetch(s, &h1, &r) == 0);
    LT_CHECKF(strstr(ll_http_response_body(r), "cookie=a=1|"), "%s", ll_http_response_body(r));
    ll_http_response_free(r);
    ll_http_request h2 = {.url = U("/cookie/headers")};
    LT_CHECK(fetch(s, &h2, &r) == 0);
    LT_CHECKF(strcmp(ll_http_response_body(r), "cookie=p=2; a=1") == 0, "%s",
              ll_http_response_body(r));
    ll_http_response_free(r);
    /* never to another host (127.0.0.1 and localhost differ), never when the request says no */
    char *other = ll_http_cookies_for(s, TU("/headers"));
    LT_CHECK(other && !*other);
    ll_free(other);
    ll_http_request h3 = {.url = U("/headers"), .no_cookies = true};
    LT_CHECK(fetch(s, &h3, &r) == 0);
    LT_CHECK(strstr(ll_http_response_body(r), "cookie=|"));
    ll_http_response_free(r);
    /* Netscape file: save, load into a fresh session, same cookies out */
    char path[512];
    snprintf(path, sizeof path, "%s/cookies.txt", ngx.dir);
    LT_CHECK(ll_http_cookies_save(s, path) == 0);
    ll_http_session *s2 = ll_http_session_new(&o);
    LT_CHECK(ll_http_cookies_load(s2, path) == 0);
    LT_CHECK(ll_http_cookies_count(s2) == 2);
    char *c = ll_http_cookies_for(s2, U("/cookie/x"));
    LT_CHECKF(c && strcmp(c, "p=2; a=1") == 0, "%s", c ? c : "(null)");
    ll_free(c);
    FILE *f = fopen(path, "r");
    char text[1024] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    LT_CHECKF(strstr(text, "#HttpOnly_127.0.0.1\tFALSE\t/cookie\tFALSE\t0\tp\t2\n"), "%s", text);
    LT_CHECK(ll_http_cookies_load(s2, "/nonexistent/cookies") == LL_ENOENT);
    ll_http_session_free(s2);
    /* a session without a jar refuses the file calls */
    ll_http_session *plain = ll_http_session_new(NULL);
    LT_CHECK(ll_http_cookies_save(plain, path) == LL_EINVAL);
    ll_http_session_free(plain);
    ll_http_session_free(s);
    return 0;
}

static void test_cookies(void **state) {
    (void)state;
    NEED_ECHO();
    run_in_task(t_cookies, NULL);
}

/* The RFC 6265 rules that need hosts nginx cannot be: public suffixes, domain cookies, Secure,
 * the __Host- prefix, expiry. Fed straight to the jar. */
static void test_cookie_rules(void **state) {
    (void)state;
    ll_http_cookie_jar *j = ll__http_jar_new();
    assert_non_null(j);
    ll__http_url u, other, sub, tls;
    char err[LL__HTTP_ERRLEN];
    assert_int_equal(ll__http_url_parse(&u, "http://www.example.co.uk/a/b", err), 0);
    assert_int_equal(ll__http_url_parse(&other, "http://evil.co.uk/", err), 0);
    assert_int_equal(ll__http_url_parse(&sub, "http://x.www.example.co.uk/a/", err), 0);
    assert_int_equal(ll__http_url_parse(&tls, "https://www.example.co.uk/", err), 0);
    ll_http_headers *h = ll_http_headers_new();
    ll_http_headers_add(h, "Set-Cookie", "suffix=1; Domain=co.uk");        /* public suffix */
    ll_http_headers_add(h, "Set-Cookie", "dom=2; Domain=.example.co.uk; Path=/");
    ll_http_headers_add(h, "Set-Cookie", "foreign=3; Domain=other.com");   /* not ours */
    ll_http_headers_add(h, "Set-Cookie", "host=4");                        /* host-only, /a */
    ll_http_headers_add(h, "Set-Cookie", "__Host-x=5; Path=/; Secure");    /* needs https */
    ll_http_headers_add(h, "Set-Cookie", "old=6; Expires=Wed, 21 Oct 2015 07:28:00 GMT");
    ll__http_jar_store(j, &u, h, 1.7e9);
    ll__hbuf b = {0};
    assert_int_equal(ll__http_jar_header(j, &u, 1.7e9, &b), 0);
    assert_string_equal(b.data, "host=4; dom=2");
    assert_int_equal(ll__http_jar_header(j, &sub, 1.7e9, &b), 0);
    assert_string_equal(b.data, "dom=2"); /* host=4 is host-only */
    assert_int_equal(ll__http_jar_header(j, &other, 1.7e9, &b), 0);
    assert_int_equal(b.len, 0);
    /* over https, the __Host- cookie is accepted and only sent over https */
    ll_http_headers_free(h);
    h = ll_http_headers_new();
    ll_http_headers_add(h, "Set-Cookie", "__Host-x=5; Path=/; Secure");
    ll_http_headers_add(h, "Set-Cookie", "short=7; Max-Age=10");
    ll__http_jar_store(j, &tls, h, 1.7e9);
    assert_int_equal(ll__http_jar_header(j, &tls, 1.7e9, &b), 0);
    assert_non_null(strstr(b.data, "__Host-x=5"));
    assert_int_equal(ll__http_jar_header(j, &u, 1.7e9 + 11, &b), 0); /* short=7 expired */
    assert_null(strstr(b.data, "__Host-x"));
    assert_null(strstr(b.data, "short"));
    ll__hbuf_free(&b);
    ll_http_headers_free(h);
    ll__http_url_free(&u);
    ll__http_url_free(&other);
    ll__http_url_free(&sub);
    ll__http_url_free(&tls);
    ll__http_jar_free(j);
}

/* ---- multipart and urlencoded forms ---- */

static int t_multipart(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/upload.bin", ngx.dir);
    /* 300 KiB with every byte value, so a streaming or length bug shows */
    size_t fl = 300 * 1024;
    char *content = malloc(fl);
    for (size_t i = 0; i < fl; i++) content[i] = (char)(i * 31 + i / 7);
    LT_CHECK(lt_write_file(path, content, fl));
    ll_http_part parts[] = {
        {.name = "field", .value = "hello, world"},
        {.name = "bin", .value = "a\0b", .value_len = 3},
        {.name = "file", .path = path, .content_type = "application/x-test"},
    };
    ll_http_request q = {.url = U("/method"), .method = "POST", .parts = parts, .nparts = 3};
    ll_http_response *r;
    LT_CHECKF(fetch(s, &q, &r) == 0, "%s", lt_last_err);
    const char *b = ll_http_response_body(r);
    size_t bl = ll_http_response_body_len(r);
    /* nginx echoes "POST " and the body: find the boundary from the first line */
    LT_CHECK(bl > 5 && strncmp(b, "POST --", 7) == 0);
    const char *eol = strstr(b, "\r\n");
    char boundary[128];
    size_t bn = (size_t)(eol - (b + 7));
    LT_CHECK(bn < sizeof boundary);
    memcpy(boundary, b + 7, bn);
    boundary[bn] = 0;
#define FIND(lit) ((const char *)memmem(b, bl, lit, sizeof(lit) - 1)) /* the body holds NULs */
    LT_CHECK(FIND("Content-Disposition: form-data; name=\"field\"\r\n\r\nhello, world\r\n"));
    LT_CHECK(FIND("name=\"bin\"\r\n\r\na\0b\r\n--"));
    LT_CHECK(FIND("name=\"file\"; filename=\"upload.bin\"\r\nContent-Type: "
                  "application/x-test\r\n\r\n"));
    const char *fstart = FIND("application/x-test\r\n\r\n") + 22;
    LT_CHECK((size_t)(fstart - b) + fl + 2 < bl && memcmp(fstart, content, fl) == 0);
    char closing[160];
    snprintf(closing, sizeof closing, "\r\n--%s--\r\n", boundary);
    LT_CHECK(bl > strlen(closing) && strcmp(b + bl - strlen(closing), closing) == 0);
    /* the boundary occurs nowhere but as delimiters: 3 openers and the closer */
    int count = 0;
    for (const char *p = b; (p = memmem(p, bl - (size_t)(p - b), boundary, bn)); p += bn) count++;
    LT_CHECK(count == 4);
    ll_http_response_free(r);
    /* a missing file fails before anything is sent, naming the file */
    ll_http_part missing[] = {{.name = "f", .path = "/nonexistent/file.bin"}};
    ll_http_request qm = {.url = U("/method"), .method = "POST", .parts = missing, .nparts = 1};
    LT_CHECK(fetch(s, &qm, &r) == LL_ENOENT && strstr(lt_last_err, "/nonexistent/file.bin"));
    /* a quote in a name cannot break out of Content-Disposition */
    ll_http_part quote[] = {{.name = "a\"; filename=\"x", .value = "v"}};
    ll_http_request qq = {.url = U("/method"), .method = "POST", .parts = quote, .nparts = 1};
    LT_CHECK(fetch(s, &qq, &r) == LL_EINVAL);
    /* urlencoded */
    const char *form[] = {"a b", "c&d", "e", "é", NULL};
    ll_http_request qf = {.url = U("/method"), .method = "POST", .form = form};
    LT_CHECK(fetch(s, &qf, &r) == 0);
    LT_CHECKF(strcmp(ll_http_response_body(r), "POST a+b=c%26d&e=%C3%A9") == 0, "%s",
              ll_http_response_body(r));
    ll_http_response_free(r);
    free(content);
    unlink(path);
    ll_http_session_free(s);
    return 0;
}

static void test_multipart(void **state) {
    (void)state;
    NEED_ECHO();
    run_in_task(t_multipart, NULL);
}

/* ---- Expect: 100-continue ---- */

static int t_continue(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL);
    static char body[200000];
    memset(body, 'z', sizeof body);
    ll_http_request q = {.url = U("/method"), .method = "PUT", .body = body,
                         .body_len = sizeof body, .expect_continue = true,
                         .timeouts.continue_wait = 10};
    ll_http_response *r;
    ll_time t0 = ll_now();
    LT_CHECKF(fetch(s, &q, &r) == 0, "%s", lt_last_err);
    LT_CHECK(ll_now() - t0 < 5); /* nginx said 100 Continue: no waiting out continue_wait */
    LT_CHECK(ll_http_response_status(r) == 200);
    LT_CHECK(ll_http_response_body_len(r) == 4 + sizeof body);
    ll_http_response_free(r);
    /* the connection went back to the pool and carries the next request */
    ll_http_request g = {.url = U("/small.txt")};
    LT_CHECK(fetch(s, &g, &r) == 0);
    ll_http_conn_info ci;
    ll_http_response_conn(r, &ci);
    LT_CHECK(ci.reused && ci.id == 1);
    ll_http_response_free(r);
    ll_http_session_free(s);
    return 0;
}

static void test_expect_continue(void **state) {
    (void)state;
    NEED_ECHO();
    run_in_task(t_continue, NULL);
}

/* ---- the retry policy ---- */

static int t_retry(void *arg) {
    (void)arg;
    ll_http_session_opts o = {.retry = {.attempts = 2, .backoff = 0.05}};
    ll_http_session *s = ll_http_session_new(&o);
    ll_http_response *r;
    ll_http_request q = {.url = U("/status/503")};
    ll_time t0 = ll_now();
    LT_CHECK(fetch(s, &q, &r) == 0);
    double took = ll_now() - t0;
    LT_CHECK(ll_http_response_status(r) == 503);
    LT_CHECK(ll_http_response_attempts(r) == 2);
    LT_CHECKF(took >= 0.95, "%.3f s: Retry-After: 1 not honoured", took); /* 50 ms slack */
    ll_http_response_free(r);
    /* a Retry-After longer than max_retry_after ends the retries at once */
    ll_http_retry quick = {.attempts = 5, .max_retry_after = 0.5};
    ll_http_request q2 = {.url = U("/status/503"), .retry = &quick};
    t0 = ll_now();
    LT_CHECK(fetch(s, &q2, &r) == 0);
    LT_CHECK(ll_http_response_attempts(r) == 1 && ll_now() - t0 < 0.9);
    ll_http_response_free(r);
    /* statuses not chosen are not retried; a POST is never retried */
    const int only_500[] = {500, 0};
    ll_http_retry other = {.attempts = 3, .statuses = only_500};
    ll_http_request q3 = {.url = U("/status/503"), .retry = &other};
    LT_CHECK(fetch(s, &q3, &r) == 0 && ll_http_response_attempts(r) == 1);
    ll_http_response_free(r);
    ll_http_request q4 = {.url = U("/status/503"), .method = "POST", .body = "x", .body_len = 1};
    LT_CHECK(fetch(s, &q4, &r) == 0 && ll_http_response_attempts(r) == 1);
    ll_http_response_free(r);
    ll_http_stats st;
    ll_http_session_get_stats(s, &st);
    LT_CHECK(st.retries == 1);
    ll_http_session_free(s);
    return 0;
}

static void test_retry_policy(void **state) {
    (void)state;
    if (!have_ngx) skip();
    run_in_task(t_retry, NULL);
}

/* ---- per-request TLS overrides ---- */

static int t_tls_overrides(void *arg) {
    (void)arg;
    ll_http_session *s = ll_http_session_new(NULL); /* the system store: nginx's cert fails */
    ll_http_response *r;
    ll_http_request plain = {.url = TU("/small.txt")};
    LT_CHECK(fetch(s, &plain, &r) == LL_ECERT);
    ll_http_request withca = {.url = TU("/small.txt"), .ca_file = ngx.cert};
    LT_CHECKF(fetch(s, &withca, &r) == 0, "%s", lt_last_err);
    ll_http_conn_info a;
    ll_http_response_conn(r, &a);
    ll_http_response_free(r);
    ll_http_request insecure = {.url = TU("/small.txt"), .verify = -1};
    LT_CHECK(fetch(s, &insecure, &r) == 0);
    ll_http_conn_info b;
    ll_http_response_conn(r, &b);
    ll_http_response_free(r);
    LT_CHECK(a.id != b.id && !b.reused); /* other trust, other connection */
    /* the unverified connection is never lent to a request that verifies */
    LT_CHECK(fetch(s, &plain, &r) == LL_ECERT);
    /* per-request connect and TLS timeouts and redirect policy are accepted too */
    ll_http_request rd = {.url = U("/r302"), .limits.max_redirects = LL_HTTP_NO_REDIRECTS,
                          .timeouts.connect = 2, .timeouts.tls = 2};
    LT_CHECK(fetch(s, &rd, &r) == 0 && ll_http_response_status(r) == 302);
    ll_http_response_free(r);
    ll_http_session_free(s);
    return 0;
}

static void test_tls_overrides(void **state) {
    (void)state;
    if (!have_ngx) skip();
    run_in_task(t_tls_overrides, NULL);
}

/* ---- large bodies reuse warm buffers ---- */

static int t_body_reuse(void *arg) {
    (void)arg;
    ll_http_session_opts o = {.max_connections = 1};
    ll_http_session *s = ll_http_session_new(&o);
    ll_http_response *r;
    ll_http_request q = {.url = U("/1m.bin")};
    LT_CHECK(fetch(s, &q, &r) == 0 && ll_http_response_body_len(r) == 1 << 20);
    const char *first = ll_http_response_body(r);
    ll_http_response_free(r); /* its buffer goes back to the session */
    LT_CHECK(fetch(s, &q, &r) == 0 && ll_http_response_body_len(r) == 1 << 20);
    LT_CHECK(ll_http_response_body(r) == first); /* the same warm buffer: no fresh pages */
    /* a response kept while the next arrives has its own */
    ll_http_response *r2;
    LT_CHECK(fetch(s, &q, &r2) == 0);
    LT_CHECK(ll_http_response_body(r2) != ll_http_response_body(r));
    const unsigned char *b = (const unsigned char *)ll_http_response_body(r2);
    for (size_t i = 0; i < 1 << 20; i += 4093) LT_CHECK(b[i] == lt_nginx_byte(i));
    ll_http_response_free(r);
    /* a response outliving its session frees its own buffer (ASan/valgrind see it) */
    ll_http_session_free(s);
    ll_http_response_free(r2);
    return 0;
}

static void test_body_reuse(void **state) {
    (void)state;
    if (!have_ngx) skip();
    run_in_task(t_body_reuse, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookies),
        cmocka_unit_test(test_cookie_rules),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_retry_policy),
        cmocka_unit_test(test_tls_overrides),
        cmocka_unit_test(test_body_reuse),
    };
    return cmocka_run_group_tests_name("http features", tests, group_setup, group_teardown);
}
