/*
 * fuzz_http_url.c — URL parsing (liburiparser mapped onto HTTP), Location resolution, the redirect
 * decision, loop detection, query encoding, and the request line built from the result.
 *
 * Input: byte 0 picks the redirect status, the method and the flags; the rest is
 * "base URL \n Location \n name=value&name=value". Invariants: a URL that parses has an http(s)
 * scheme that matches `tls`, a non-empty host, a port, a target starting with '/', and no byte
 * that could break a request line (space, CR, LF, control) in href, target, host or key; copies and
 * re-parses of href agree; a followed redirect never downgrades https unless allowed and applies
 * the method rules; a request written for any parsed URL is one line per header, nothing smuggled.
 */
#include <string.h>
#include "fuzz.h"
#include "http_internal.h"

static void check_clean(const char *s) {
    FUZZ_CHECK(s != NULL);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        FUZZ_CHECK(*p > 0x20 && *p != 0x7f);
}

static void check_url(const ll__http_url *u) {
    FUZZ_CHECK(strcmp(u->scheme, "http") == 0 || strcmp(u->scheme, "https") == 0);
    FUZZ_CHECK(u->tls == (strcmp(u->scheme, "https") == 0));
    FUZZ_CHECK(u->host[0] != '\0');
    FUZZ_CHECK(u->port != 0);
    FUZZ_CHECK(u->target[0] == '/');
    check_clean(u->href);
    check_clean(u->target);
    check_clean(u->host);
    check_clean(u->key);
    FUZZ_CHECK(strncmp(u->key, u->scheme, strlen(u->scheme)) == 0);
    FUZZ_CHECK(!strchr(u->href, '#')); /* the fragment is never sent */
    /* href parses again, to the same origin, and parsing is then a fixed point. (The target
     * itself may differ once: a resolved "/.//x" keeps uriparser's "/." guard, which parsing
     * normalises to "//x"; both name the same resource.) */
    char err[LL__HTTP_ERRLEN];
    ll__http_url again, third;
    int rc = ll__http_url_parse(&again, u->href, err);
    FUZZ_CHECK(rc == 0 || rc == LL_ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(ll__http_same_origin(u, &again));
        if (ll__http_url_parse(&third, again.href, err) == 0) {
            FUZZ_CHECK(strcmp(again.href, third.href) == 0);
            FUZZ_CHECK(strcmp(again.target, third.target) == 0);
            ll__http_url_free(&third);
        }
        ll__http_url_free(&again);
    }
    ll__http_url copy;
    if (ll__http_url_copy(&copy, u) == 0) {
        FUZZ_CHECK(ll__http_same_origin(u, &copy) && strcmp(u->href, copy.href) == 0);
        ll__http_url_free(&copy);
    }
    ll__hbuf hp = {0};
    if (ll__http_url_hostport(u, &hp, (u->port & 1) != 0) == 0) check_clean(hp.data);
    ll__hbuf_free(&hp);
}

/* A GET for u: one request line with exactly two spaces, then header lines, then the blank line;
 * every CR is followed by LF and every LF preceded by CR. */
static void check_request(const ll__http_url *u, bool absolute) {
    ll__http_req_head h = {.method = "GET", .url = u, .absolute_form = absolute,
                           .user_agent = "fuzz", .accept_encoding = "gzip"};
    ll__hbuf out = {0};
    char err[LL__HTTP_ERRLEN];
    if (ll__http_request_write(&out, &h, err) == 0) {
        const char *line_end = strstr(out.data, "\r\n");
        FUZZ_CHECK(line_end != NULL);
        int spaces = 0;
        for (const char *p = out.data; p < line_end; p++) spaces += *p == ' ';
        FUZZ_CHECK(spaces == 2);
        for (size_t i = 0; i < out.len; i++) {
            if (out.data[i] == '\r') FUZZ_CHECK(i + 1 < out.len && out.data[i + 1] == '\n');
            if (out.data[i] == '\n') FUZZ_CHECK(i > 0 && out.data[i - 1] == '\r');
            FUZZ_CHECK(out.data[i] != '\0');
        }
        FUZZ_CHECK(out.len >= 4 && memcmp(out.data + out.len - 4, "\r\n\r\n", 4) == 0);
    }
    ll__hbuf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int statuses[] = {301, 302, 303, 307, 308, 200};
    static const char *const methods[] = {"GET", "POST", "HEAD", "PUT"};
    int status = statuses[data[0] % 6];
    const char *method = methods[(data[0] >> 3) & 3];
    bool has_body = data[0] & 0x20, replayable = data[0] & 0x40, downgrade = data[0] & 0x80;
    char *text = fuzz_strndup(data + 1, size - 1);
    size_t tlen = size - 1;
    /* base \n location \n query: NULs inside stay (C strings end there, as a caller's would) */
    char *base = text, *loc = NULL, *query = NULL;
    char *nl = memchr(text, '\n', tlen);
    if (nl) {
        *nl = 0;
        loc = nl + 1;
        char *nl2 = memchr(loc, '\n', tlen - (size_t)(loc - text));
        if (nl2) {
            *nl2 = 0;
            query = nl2 + 1;
        }
    }
    char err[LL__HTTP_ERRLEN] = "";
    ll__http_url u;
    int rc = ll__http_url_parse(&u, base, err);
    if (rc != 0) {
        FUZZ_CHECK(rc == LL_EINVAL || rc == LL_ENOMEM);
        FUZZ_CHECK(err[0] != '\0');
        free(text);
        return 0;
    }
    check_url(&u);
    check_request(&u, data[0] & 1);

    if (query) {
        /* up to 8 pairs "a=b&c=d" */
        const char *pairs[17];
        size_t np = 0;
        char *save = NULL;
        for (char *tok = strtok_r(query, "&", &save); tok && np < 16; tok = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(tok, '=');
            if (eq) *eq = 0;
            pairs[np++] = tok;
            pairs[np++] = eq ? eq + 1 : "";
        }
        pairs[np] = NULL;
        if (ll__http_url_add_query(&u, pairs, err) == 0) {
            check_url(&u);
            check_request(&u, false);
        }
        char *form = ll__http_form_encode(pairs);
        if (form) check_clean(form[0] ? form : "x");
        ll_free(form);
    }

    if (loc) {
        ll__http_url r;
        rc = ll__http_url_resolve(&r, &u, loc, strlen(loc), err);
        if (rc == 0) {
            check_url(&r);
            ll__http_url_free(&r);
        } else {
            FUZZ_CHECK(err[0] != '\0');
        }
        bool follow = false;
        ll__http_redirect red;
        rc = ll__http_redirect_decide(&u, method, status, loc, has_body, replayable, downgrade,
                                      &follow, &red, err);
        if (rc == 0 && follow) {
            check_url(&red.url);
            FUZZ_CHECK(!u.tls || red.url.tls || downgrade);
            FUZZ_CHECK(red.cross_origin == !ll__http_same_origin(&u, &red.url));
            if (status == 303 && strcmp(method, "HEAD") != 0) FUZZ_CHECK(strcmp(red.method, "GET") == 0);
            if (status == 307 || status == 308) FUZZ_CHECK(strcmp(red.method, method) == 0);
            FUZZ_CHECK(!has_body || red.drop_body || replayable);
            check_request(&red.url, false);
            /* loop detection: the same (method, URL) twice is a loop */
            ll__http_visited vis = {0};
            FUZZ_CHECK(ll__http_visited_add(&vis, red.method, red.url.href, err) == 0);
            FUZZ_CHECK(ll__http_visited_add(&vis, red.method, red.url.href, err) ==
                       LL_EHTTP_REDIRECT);
            ll__http_visited_free(&vis);
            ll__http_redirect_free(&red);
        } else if (rc == 0) {
            FUZZ_CHECK(!ll__http_is_redirect(status));
        } else {
            FUZZ_CHECK(err[0] != '\0');
        }
    }
    ll__http_url_free(&u);
    free(text);
    return 0;
}
