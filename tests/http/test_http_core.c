/*
 * test_http_core.c — the sans-I/O pieces of libloop-http that produce bytes or decisions: header
 * lists, URLs (liburiparser), request serialisation (exact bytes), redirects and loop detection.
 * Every test proves with the allocation tracker that it leaked nothing, and the allocation-failure
 * tests fail each allocation in turn.
 */
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "http_internal.h"

static void begin(void) { lt_track_begin(); }
static void end(void) { assert_int_equal(lt_track_end(), 0); }

/* ---- headers ---- */

static void test_headers_basic(void **state) {
    (void)state;
    begin();
    ll_http_headers *h = ll_http_headers_new();
    assert_non_null(h);
    assert_int_equal(ll_http_headers_add(h, "Content-Type", "text/html"), 0);
    assert_int_equal(ll_http_headers_add(h, "Set-Cookie", "a=1"), 0);
    assert_int_equal(ll_http_headers_add(h, "set-cookie", "  b=2 \t"), 0); /* trimmed */
    assert_int_equal(ll_http_headers_add(h, "X-Empty", ""), 0);
    assert_int_equal(ll_http_headers_count(h), 4);
    assert_string_equal(ll_http_headers_get(h, "CONTENT-TYPE"), "text/html");
    assert_string_equal(ll_http_headers_get(h, "x-empty"), "");
    assert_null(ll_http_headers_get(h, "content-typ"));
    assert_null(ll_http_headers_get(h, "content-type-x"));
    size_t it = 0;
    assert_string_equal(ll_http_headers_next(h, "SET-COOKIE", &it), "a=1");
    assert_string_equal(ll_http_headers_next(h, "SET-COOKIE", &it), "b=2");
    assert_null(ll_http_headers_next(h, "SET-COOKIE", &it));
    const char *n, *v;
    assert_int_equal(ll_http_headers_at(h, 2, &n, &v), 0);
    assert_string_equal(n, "set-cookie"); /* the name as given */
    assert_int_equal(ll_http_headers_at(h, 4, &n, &v), LL_ERANGE);
    ll_http_headers *c = ll_http_headers_copy(h);
    assert_int_equal(ll_http_headers_set(h, "SET-COOKIE", "c=3"), 0);
    assert_int_equal(ll_http_headers_count(h), 3);
    it = 0;
    assert_string_equal(ll_http_headers_next(h, "set-cookie", &it), "c=3");
    assert_null(ll_http_headers_next(h, "set-cookie", &it));
    assert_int_equal(ll_http_headers_remove(h, "content-type"), 1);
    assert_int_equal(ll_http_headers_remove(h, "content-type"), 0);
    assert_int_equal(ll_http_headers_count(c), 4); /* the copy is independent */
    ll_http_headers_free(c);
    ll_http_headers_free(h);
    ll_http_headers_free(NULL);
    end();
}

static void test_headers_refuse_injection(void **state) {
    (void)state;
    begin();
    ll_http_headers *h = ll_http_headers_new();
    assert_int_equal(ll_http_headers_add(h, "X-A", "ok\r\nX-Injected: 1"), LL_EINVAL);
    assert_int_equal(ll_http_headers_add(h, "X-A", "ok\nX"), LL_EINVAL);
    assert_int_equal(ll_http_headers_add(h, "X-A", "ok\rX"), LL_EINVAL);
    assert_int_equal(ll_http_headers_addn(h, "X-A", 3, "a\0b", 3), LL_EINVAL);
    assert_int_equal(ll_http_headers_addn(h, "X\0A", 3, "ab", 2), LL_EINVAL);
    assert_int_equal(ll_http_headers_add(h, "X A", "v"), LL_EINVAL);
    assert_int_equal(ll_http_headers_add(h, "X:A", "v"), LL_EINVAL);
    assert_int_equal(ll_http_headers_add(h, "X-A\r\n", "v"), LL_EINVAL);
    assert_int_equal(ll_http_headers_add(h, "", "v"), LL_EINVAL);
    assert_int_equal(ll_http_headers_add(h, "X-A", "keep"), 0);
    assert_int_equal(ll_http_headers_set(h, "X-A", "bad\r\n"), LL_EINVAL);
    assert_string_equal(ll_http_headers_get(h, "x-a"), "keep"); /* a refused set changes nothing */
    assert_int_equal(ll_http_headers_count(h), 1);
    ll_http_headers_free(h);
    end();
}

/* ---- URLs ---- */

typedef struct {
    const char *in;
    const char *scheme, *host;
    unsigned port;
    const char *target, *href, *user, *password;
} url_case;

static void test_url_parse(void **state) {
    (void)state;
    static const url_case cases[] = {
        {"http://example.com", "http", "example.com", 80, "/", "http://example.com/", NULL, NULL},
        {"HTTPS://Example.COM:8443/a/b?x=1&y=2#frag", "https", "example.com", 8443, "/a/b?x=1&y=2",
         "https://example.com:8443/a/b?x=1&y=2", NULL, NULL},
        {"https://h:443/", "https", "h", 443, "/", "https://h/", NULL, NULL},
        {"http://[::1]:8080/p", "http", "::1", 8080, "/p", "http://[::1]:8080/p", NULL, NULL},
        {"http://[::1]/", "http", "::1", 80, "/", "http://[::1]/", NULL, NULL},
        {"http://u%40x:p%3Aw@host/", "http", "host", 80, "/", "http://host/", "u@x", "p:w"},
        {"http://user@host/", "http", "host", 80, "/", "http://host/", "user", NULL},
        {"http://h/a/./b/../c/", "http", "h", 80, "/a/c/", "http://h/a/c/", NULL, NULL},
        {"http://h/?", "http", "h", 80, "/?", "http://h/?", NULL, NULL},
        {"http://127.0.0.1:1/x%20y", "http", "127.0.0.1", 1, "/x%20y", "http://127.0.0.1:1/x%20y",
         NULL, NULL},
    };
    begin();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const url_case *c = &cases[i];
        ll__http_url u;
        char err[LL__HTTP_ERRLEN] = "";
        int rc = ll__http_url_parse(&u, c->in, err);
        if (rc) fail_msg("%s: %s", c->in, err);
        assert_string_equal(u.scheme, c->scheme);
        assert_string_equal(u.host, c->host);
        assert_int_equal(u.port, c->port);
        assert_string_equal(u.target, c->target);
        assert_string_equal(u.href, c->href);
        if (c->user) assert_string_equal(u.user, c->user);
        else assert_null(u.user);
        if (c->password) assert_string_equal(u.password, c->password);
        else assert_null(u.password);
        assert_int_equal(u.tls, strcmp(c->scheme, "https") == 0);
        ll__http_url_free(&u);
    }
    end();
}

static void test_url_refused(void **state) {
    (void)state;
    static const char *bad[] = {
        "", "example.com/x", "ftp://h/", "http://", "http:///x", "http://h:0/", "http://h:65536/",
        "http://h/a b", "http://h/a\r\nX: y", "http://h/\n", "http://h/\t", "http://h\x01/",
        "mailto:a@b", "http://[v1.x]/", "http://h%2F/",
    };
    begin();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ll__http_url u;
        char err[LL__HTTP_ERRLEN] = "";
        int rc = ll__http_url_parse(&u, bad[i], err);
        if (rc != LL_EINVAL) fail_msg("'%s' gave %d (%s)", bad[i], rc, err);
        assert_true(err[0] != 0);
    }
    ll__http_url u;
    char err[LL__HTTP_ERRLEN];
    assert_int_equal(ll__http_url_parse(&u, "http://h/a\r\nX: y", err), LL_EINVAL);
    assert_non_null(strstr(err, "CR or LF"));
    assert_int_equal(ll__http_url_parse(&u, "gopher://h/", err), LL_EINVAL);
    assert_non_null(strstr(err, "unsupported scheme 'gopher'"));
    end();
}

static void test_url_resolve(void **state) {
    (void)state;
    static const char *const cases[][2] = {
        {"/x/y?q=1", "http://h.test:8080/x/y?q=1"},
        {"z", "http://h.test:8080/a/z"},
        {"../up", "http://h.test:8080/up"},
        {"?only", "http://h.test:8080/a/b?only"},
        {"//other.test/p", "http://other.test/p"},
        {"https://secure.test/s#f", "https://secure.test/s"},
        {"/with space/é", "http://h.test:8080/with%20space/%C3%A9"},
        {"", "http://h.test:8080/a/b?c=d"},
    };
    begin();
    ll__http_url base;
    char err[LL__HTTP_ERRLEN];
    assert_int_equal(ll__http_url_parse(&base, "http://user:pw@h.test:8080/a/b?c=d#frag", err), 0);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ll__http_url out;
        int rc = ll__http_url_resolve(&out, &base, cases[i][0], strlen(cases[i][0]), err);
        if (rc) fail_msg("'%s': %s", cases[i][0], err);
        assert_string_equal(out.href, cases[i][1]);
        assert_null(out.user); /* credentials never come along through a resolution */
        ll__http_url_free(&out);
    }
    ll__http_url out;
    assert_int_equal(ll__http_url_resolve(&out, &base, "/a\r\nb", 6, err), LL_EINVAL);
    assert_int_equal(ll__http_url_resolve(&out, &base, "/a\0b", 4, err), LL_EINVAL);
    assert_int_equal(ll__http_url_resolve(&out, &base, "ftp://x/", 8, err), LL_EINVAL);
    ll__http_url_free(&base);
    end();
}

static void test_url_query_and_form(void **state) {
    (void)state;
    begin();
    ll__http_url u;
    char err[LL__HTTP_ERRLEN];
    assert_int_equal(ll__http_url_parse(&u, "http://h/s", err), 0);
    const char *q[] = {"q", "a b&c=d", "lang", "é", "empty", "", NULL};
    assert_int_equal(ll__http_url_add_query(&u, q, err), 0);
    assert_string_equal(u.target, "/s?q=a+b%26c%3Dd&lang=%C3%A9&empty=");
    assert_string_equal(u.href, "http://h/s?q=a+b%26c%3Dd&lang=%C3%A9&empty=");
    const char *q2[] = {"n", "1", NULL};
    assert_int_equal(ll__http_url_add_query(&u, q2, err), 0);
    assert_string_equal(u.target, "/s?q=a+b%26c%3Dd&lang=%C3%A9&empty=&n=1");
    ll__http_url_free(&u);
    char *f = ll_http_form_encode((const char *const[]){"user", "Zoë", "pass", "p@ss w/rd", NULL});
    assert_string_equal(f, "user=Zo%C3%AB&pass=p%40ss+w%2Frd");
    ll_free(f);
    f = ll_http_form_encode((const char *const[]){NULL});
    assert_string_equal(f, "");
    ll_free(f);
    end();
}

/* ---- requests: exact bytes ---- */

static char *write_req(const ll__http_req_head *h, int *rc_out) {
    ll__hbuf b = {0};
    char err[LL__HTTP_ERRLEN] = "";
    int rc = ll__http_request_write(&b, h, err);
    if (rc_out) *rc_out = rc;
    if (rc) {
        assert_true(b.len == 0); /* nothing appended on refusal */
        assert_true(err[0] != 0);
        ll__hbuf_free(&b);
        return NULL;
    }
    return ll__hbuf_steal(&b, NULL);
}

static void test_request_bytes(void **state) {
    (void)state;
    begin();
    ll__http_url u;
    char err[LL__HTTP_ERRLEN];
    assert_int_equal(ll__http_url_parse(&u, "http://example.com:8080/p?q=1", err), 0);
    ll__http_req_head h = {.method = "GET", .url = &u, .user_agent = "ua/1",
                           .accept_encoding = "gzip, deflate"};
    char *s = write_req(&h, NULL);
    assert_string_equal(s, "GET /p?q=1 HTTP/1.1\r\n"
                           "Host: example.com:8080\r\n"
                           "User-Agent: ua/1\r\n"
                           "Accept-Encoding: gzip, deflate\r\n"
                           "\r\n");
    ll_free(s);

    /* a body with a length; caller headers override defaults; framing headers are ours */
    ll_http_headers *hd = ll_http_headers_new();
    ll_http_headers_add(hd, "User-Agent", "mine");
    ll_http_headers_add(hd, "Content-Length", "999");
    ll_http_headers_add(hd, "Host", "evil");
    ll_http_headers_add(hd, "Transfer-Encoding", "chunked");
    ll_http_headers_add(hd, "X-Two", "a");
    ll_http_headers_add(hd, "X-Two", "b");
    h = (ll__http_req_head){.method = "POST", .url = &u, .headers = hd, .user_agent = "ua/1",
                            .content_type = "application/json", .body_mode = LL__BODY_LENGTH,
                            .content_length = 7, .authorization = "Basic eDp5"};
    s = write_req(&h, NULL);
    assert_string_equal(s, "POST /p?q=1 HTTP/1.1\r\n"
                           "Host: example.com:8080\r\n"
                           "Authorization: Basic eDp5\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: 7\r\n"
                           "User-Agent: mine\r\n"
                           "X-Two: a\r\n"
                           "X-Two: b\r\n"
                           "\r\n");
    ll_free(s);
    ll_http_headers_free(hd);

    /* chunked upload, absolute form for a proxy, default port omitted from Host */
    ll__http_url u2;
    assert_int_equal(ll__http_url_parse(&u2, "http://[::1]/up", err), 0);
    h = (ll__http_req_head){.method = "PUT", .url = &u2, .absolute_form = true,
                            .body_mode = LL__BODY_CHUNKED, .proxy_authorization = "Basic cDpx"};
    s = write_req(&h, NULL);
    assert_string_equal(s, "PUT http://[::1]/up HTTP/1.1\r\n"
                           "Host: [::1]\r\n"
                           "Proxy-Authorization: Basic cDpx\r\n"
                           "Transfer-Encoding: chunked\r\n"
                           "\r\n");
    ll_free(s);

    ll__hbuf b = {0};
    assert_int_equal(ll__http_chunk_write(&b, "hello world, this is 26 b.", 26), 0);
    assert_int_equal(ll__http_chunk_write(&b, NULL, 0), 0);
    assert_string_equal(b.data, "1a\r\nhello world, this is 26 b.\r\n0\r\n\r\n");
    ll__hbuf_free(&b);

    assert_int_equal(ll__http_connect_write(&b, &u, "Basic cDpx", err), 0);
    assert_string_equal(b.data, "CONNECT example.com:8080 HTTP/1.1\r\nHost: example.com:8080\r\n"
                                "Proxy-Authorization: Basic cDpx\r\n\r\n");
    ll__hbuf_free(&b);

    char *auth = ll__http_basic_auth("Aladdin", "open sesame");
    assert_string_equal(auth, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    ll_free(auth);
    ll__http_url_free(&u);
    ll__http_url_free(&u2);
    end();
}

static void test_request_refused(void **state) {
    (void)state;
    begin();
    ll__http_url u;
    char err[LL__HTTP_ERRLEN];
    assert_int_equal(ll__http_url_parse(&u, "http://h/", err), 0);
    static const char *bad_methods[] = {"GET /x HTTP/1.1\r\nX:", "GE T", "", "GET\n", "G\rET"};
    for (size_t i = 0; i < sizeof bad_methods / sizeof *bad_methods; i++) {
        ll__http_req_head h = {.method = bad_methods[i], .url = &u};
        int rc;
        assert_null(write_req(&h, &rc));
        assert_int_equal(rc, LL_EINVAL);
    }
    int rc;
    ll__http_req_head h = {.method = "GET", .url = &u, .user_agent = "x\r\nEvil: 1"};
    assert_null(write_req(&h, &rc));
    assert_int_equal(rc, LL_EINVAL);
    h = (ll__http_req_head){.method = "POST", .url = &u, .content_type = "a\nb",
                            .body_mode = LL__BODY_LENGTH};
    assert_null(write_req(&h, &rc));
    assert_int_equal(rc, LL_EINVAL);
    /* a header list tampered with behind the API's back is still caught at serialisation */
    ll_http_headers *hd = ll_http_headers_new();
    ll_http_headers_add(hd, "X-A", "abc");
    hd->v[0].value[1] = '\n';
    h = (ll__http_req_head){.method = "GET", .url = &u, .headers = hd};
    assert_null(write_req(&h, &rc));
    assert_int_equal(rc, LL_EINVAL);
    /* and a target with CR */
    u.target[0] = '\r';
    h = (ll__http_req_head){.method = "GET", .url = &u};
    assert_null(write_req(&h, &rc));
    assert_int_equal(rc, LL_EINVAL);
    ll_http_headers_free(hd);
    ll__http_url_free(&u);
    assert_true(ll__http_method_idempotent("GET"));
    assert_true(ll__http_method_idempotent("PUT"));
    assert_false(ll__http_method_idempotent("POST"));
    assert_false(ll__http_method_idempotent("PATCH"));
    end();
}

/* ---- redirects ---- */

static void test_redirect_rules(void **state) {
    (void)state;
    static const struct {
        int status;
        const char *method, *next_method;
        bool drop;
    } rules[] = {
        {301, "GET", "GET", false},   {301, "POST", "GET", true},  {301, "PUT", "PUT", false},
        {302, "POST", "GET", true},   {302, "DELETE", "DELETE", false},
        {303, "POST", "GET", true},   {303, "PUT", "GET", true},   {303, "HEAD", "HEAD", true},
        {307, "POST", "POST", false}, {308, "PUT", "PUT", false},  {308, "POST", "POST", false},
    };
    begin();
    ll__http_url from;
    char err[LL__HTTP_ERRLEN];
    assert_int_equal(ll__http_url_parse(&from, "https://a.test/form", err), 0);
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
        bool follow;
        ll__http_redirect r;
        int rc = ll__http_redirect_decide(&from, rules[i].method, rules[i].status, "/next", true,
                                          true, false, &follow, &r, err);
        assert_int_equal(rc, 0);
        assert_true(follow);
        assert_string_equal(r.method, rules[i].next_method);
        assert_int_equal(r.drop_body, rules[i].drop);
        assert_string_equal(r.url.href, "https://a.test/next");
        assert_false(r.cross_origin);
        ll__http_redirect_free(&r);
    }
    bool follow;
    ll__http_redirect r;
    /* not a redirect, or no Location: the response is the answer */
    assert_int_equal(ll__http_redirect_decide(&from, "GET", 200, "/x", false, true, false, &follow,
                                              &r, err), 0);
    assert_false(follow);
    assert_int_equal(ll__http_redirect_decide(&from, "GET", 302, NULL, false, true, false, &follow,
                                              &r, err), 0);
    assert_false(follow);
    /* https -> http refused by default, allowed on request */
    assert_int_equal(ll__http_redirect_decide(&from, "GET", 302, "http://a.test/", false, true,
                                              false, &follow, &r, err), LL_EHTTP_REDIRECT);
    assert_non_null(strstr(err, "from https to http"));
    assert_int_equal(ll__http_redirect_decide(&from, "GET", 302, "http://a.test/", false, true,
                                              true, &follow, &r, err), 0);
    assert_true(follow && r.cross_origin);
    ll__http_redirect_free(&r);
    /* cross-origin: host, port or scheme */
    const char *cross[] = {"https://b.test/", "https://a.test:444/", "//other.test/x"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ll__http_redirect_decide(&from, "GET", 301, cross[i], false, true, false,
                                                  &follow, &r, err), 0);
        assert_true(r.cross_origin);
        ll__http_redirect_free(&r);
    }
    assert_int_equal(ll__http_redirect_decide(&from, "GET", 301, "https://A.TEST:443/z", false,
                                              true, false, &follow, &r, err), 0);
    assert_false(r.cross_origin);
    ll__http_redirect_free(&r);
    /* a streamed body cannot be replayed on 307/308, but may be dropped on 303 */
    assert_int_equal(ll__http_redirect_decide(&from, "POST", 307, "/x", true, false, false,
                                              &follow, &r, err), LL_EHTTP_REDIRECT);
    assert_int_equal(ll__http_redirect_decide(&from, "POST", 303, "/x", true, false, false,
                                              &follow, &r, err), 0);
    ll__http_redirect_free(&r);
    assert_int_equal(ll__http_redirect_decide(&from, "GET", 302, "ftp://x/", false, true, false,
                                              &follow, &r, err), LL_EHTTP_REDIRECT);
    assert_int_equal(ll__http_redirect_decide(&from, "GET", 302, "/a\r\nX: y", false, true, false,
                                              &follow, &r, err), LL_EINVAL);
    assert_true(ll__http_is_credential_header("AUTHORIZATION", 13));
    assert_true(ll__http_is_credential_header("cookie", 6));
    assert_true(ll__http_is_credential_header("Proxy-Authorization", 19));
    assert_false(ll__http_is_credential_header("Accept", 6));
    ll__http_url_free(&from);
    end();
}

static void test_redirect_loop(void **state) {
    (void)state;
    begin();
    ll__http_visited v = {0};
    char err[LL__HTTP_ERRLEN];
    assert_int_equal(ll__http_visited_add(&v, "GET", "http://h/a", err), 0);
    assert_int_equal(ll__http_visited_add(&v, "GET", "http://h/b", err), 0);
    assert_int_equal(ll__http_visited_add(&v, "POST", "http://h/a", err), 0); /* other method */
    assert_int_equal(ll__http_visited_add(&v, "GET", "http://h/a", err), LL_EHTTP_REDIRECT);
    assert_non_null(strstr(err, "redirect loop"));
    ll__http_visited_free(&v);
    end();
}

/* ---- allocation failures: each allocation in turn, never a crash or a leak ---- */

static int all_core_work(void) {
    char err[LL__HTTP_ERRLEN];
    ll__http_url u, r;
    int rc = ll__http_url_parse(&u, "https://user:pw@h.test:8443/a/../b?x=1", err);
    if (rc) return rc;
    const char *q[] = {"k", "v w", NULL};
    rc = ll__http_url_add_query(&u, q, err);
    if (!rc) rc = ll__http_url_resolve(&r, &u, "../c d?e", 8, err);
    if (!rc) ll__http_url_free(&r);
    ll_http_headers *h = rc ? NULL : ll_http_headers_new();
    if (!rc && !h) rc = LL_ENOMEM;
    if (!rc) rc = ll_http_headers_add(h, "X-A", "1");
    if (!rc) rc = ll_http_headers_set(h, "X-A", "2");
    ll__hbuf b = {0};
    char *auth = NULL;
    if (!rc && !(auth = ll__http_basic_auth(u.user, u.password))) rc = LL_ENOMEM;
    if (!rc) {
        ll__http_req_head hh = {.method = "POST", .url = &u, .headers = h, .user_agent = "t",
                                .authorization = auth, .body_mode = LL__BODY_CHUNKED};
        rc = ll__http_request_write(&b, &hh, err);
    }
    if (!rc) rc = ll__http_chunk_write(&b, "abc", 3);
    ll__http_visited v = {0};
    if (!rc) rc = ll__http_visited_add(&v, "GET", u.href, err);
    ll__http_redirect rd;
    bool follow;
    if (!rc) rc = ll__http_redirect_decide(&u, "GET", 302, "/next", false, true, false, &follow,
                                           &rd, err);
    if (!rc) ll__http_redirect_free(&rd);
    ll__http_visited_free(&v);
    ll__hbuf_free(&b);
    ll_free(auth);
    ll_http_headers_free(h);
    ll__http_url_free(&u);
    return rc;
}

static void test_alloc_failures(void **state) {
    (void)state;
    int successes = 0;
    for (long n = 0; n < 2000 && successes == 0; n++) {
        lt_track_begin();
        lt_fail_after(n);
        int rc = all_core_work();
        lt_fail_reset();
        long leaked = lt_track_end();
        if (leaked) fail_msg("failing allocation %ld leaked %ld (rc %d)", n, leaked, rc);
        if (rc == 0) successes++;
        else assert_int_equal(rc, LL_ENOMEM);
    }
    assert_int_equal(successes, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_basic),
        cmocka_unit_test(test_headers_refuse_injection),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_url_refused),
        cmocka_unit_test(test_url_resolve),
        cmocka_unit_test(test_url_query_and_form),
        cmocka_unit_test(test_request_bytes),
        cmocka_unit_test(test_request_refused),
        cmocka_unit_test(test_redirect_rules),
        cmocka_unit_test(test_redirect_loop),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests_name("http core", tests, NULL, NULL);
}
