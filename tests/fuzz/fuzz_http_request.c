/*
 * fuzz_http_request.c — what the caller gives a request: header names and values through the
 * public ll_http_headers API, a method, a User-Agent, credentials, and the request head written
 * from them.
 *
 * Input: byte 0 picks the body mode and flags; the rest is "method \n user-agent \n user:password
 * \n" then header lines "name: value" separated by '\n' (any byte, CR included, may appear in
 * them). Invariants: the header list accepts only token names and values without a control
 * byte (HTAB aside), and stores them trimmed; a request head written without error is exactly:
 * one request line (method, target, version), a Host line, then "name: value" lines whose names
 * are tokens, each ended by CRLF, then an empty line; no CR or LF anywhere else; framing headers (Host,
 * Content-Length, Transfer-Encoding) appear once each at most, as the body mode says, never from
 * the caller; Basic credentials decode back to "user:password".
 */
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include "fuzz.h"
#include "http_internal.h"

static bool name_is(const char *a, size_t n, const char *b) {
    return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

static void check_head(const ll__hbuf *out, const char *method, int body_mode) {
    const char *p = out->data, *end = out->data + out->len;
    FUZZ_CHECK(out->len >= 4 && memcmp(end - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < out->len; i++) FUZZ_CHECK(out->data[i] != '\0');
    /* request line */
    const char *eol = strstr(p, "\r\n");
    FUZZ_CHECK(eol);
    size_t ml = strlen(method);
    FUZZ_CHECK((size_t)(eol - p) > ml + 10 && memcmp(p, method, ml) == 0 && p[ml] == ' ');
    FUZZ_CHECK(memcmp(eol - 9, " HTTP/1.1", 9) == 0);
    for (const char *q = p + ml + 1; q < eol - 9; q++) FUZZ_CHECK(*q > 0x20 && *q != 0x7f);
    int hosts = 0, lengths = 0, chunked = 0;
    for (p = eol + 2; p < end - 2; p = eol + 2) {
        eol = strstr(p, "\r\n");
        FUZZ_CHECK(eol && eol < end);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        FUZZ_CHECK(colon && colon > p && colon[1] == ' ');
        FUZZ_CHECK(ll__http_is_token(p, (size_t)(colon - p)));
        for (const char *q = colon; q < eol; q++) FUZZ_CHECK(*q != '\r' && *q != '\n');
        size_t nl = (size_t)(colon - p);
        hosts += name_is(p, nl, "host");
        lengths += name_is(p, nl, "content-length");
        chunked += name_is(p, nl, "transfer-encoding");
    }
    FUZZ_CHECK(hosts == 1);
    FUZZ_CHECK(lengths == (body_mode == LL__BODY_LENGTH));
    FUZZ_CHECK(chunked == (body_mode == LL__BODY_CHUNKED));
}

/* RFC 9110 field-value: no control byte but HTAB (so no CR, LF, NUL, DEL). */
static bool field_value_ok(const char *v) {
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) return false;
    return true;
}

static char *next_item(char **s) {
    if (!*s) return NULL;
    char *item = *s, *nl = strchr(item, '\n');
    if (nl) {
        *nl = 0;
        *s = nl + 1;
    } else {
        *s = NULL;
    }
    return item;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int body_mode = data[0] % 3;
    char *text = fuzz_strndup(data + 1, size - 1); /* a NUL in the input ends the text there */
    char *rest = text;
    const char *method = next_item(&rest);
    const char *ua = next_item(&rest);
    char *cred = next_item(&rest);
    ll_http_headers *h = ll_http_headers_new();
    FUZZ_CHECK(h);
    for (char *line; (line = next_item(&rest)) != NULL;) {
        char *colon = strchr(line, ':');
        const char *name = line, *value = colon ? colon + 1 : "";
        if (colon) *colon = 0;
        size_t before = ll_http_headers_count(h);
        int rc = (data[0] & 8) ? ll_http_headers_set(h, name, value) : ll_http_headers_add(h, name, value);
        bool valid = ll__http_is_token(name, strlen(name)) && field_value_ok(value);
        FUZZ_CHECK((rc == 0) == valid || rc == LL_ENOMEM);
        if (rc == 0) {
            const char *got = ll_http_headers_get(h, name);
            FUZZ_CHECK(got && !strpbrk(got, "\r\n"));
            FUZZ_CHECK(got[0] != ' ' && got[0] != '\t');
            size_t gl = strlen(got);
            FUZZ_CHECK(gl == 0 || (got[gl - 1] != ' ' && got[gl - 1] != '\t'));
            FUZZ_CHECK(ll_http_headers_count(h) <= before + 1);
        } else {
            FUZZ_CHECK(ll_http_headers_count(h) == before);
        }
    }
    /* a copy says the same */
    ll_http_headers *copy = ll_http_headers_copy(h);
    if (copy) {
        FUZZ_CHECK(ll_http_headers_count(copy) == ll_http_headers_count(h));
        const char *n1, *v1, *n2, *v2;
        for (size_t i = 0; ll_http_headers_at(h, i, &n1, &v1) == 0; i++) {
            FUZZ_CHECK(ll_http_headers_at(copy, i, &n2, &v2) == 0);
            FUZZ_CHECK(strcmp(n1, n2) == 0 && strcmp(v1, v2) == 0);
        }
        ll_http_headers_free(copy);
    }

    char err[LL__HTTP_ERRLEN] = "";
    ll__http_url u;
    if (ll__http_url_parse(&u, "http://example.com:8080/path?q=1", err) != 0) abort();
    char *auth = NULL;
    if (cred) {
        char *colon = strchr(cred, ':');
        const char *user = cred, *pass = colon ? colon + 1 : "";
        if (colon) *colon = 0;
        auth = ll__http_basic_auth(user, pass);
        if (auth) {
            /* "Basic " + base64 that decodes to user:password */
            FUZZ_CHECK(strncmp(auth, "Basic ", 6) == 0);
            size_t bl = strlen(auth + 6);
            unsigned char *dec = malloc(bl + 1);
            int dl = EVP_DecodeBlock(dec, (const unsigned char *)auth + 6, (int)bl);
            size_t want = strlen(user) + 1 + strlen(pass);
            FUZZ_CHECK(dl >= (int)want && (size_t)dl - want <= 2); /* padding decodes as zeros */
            FUZZ_CHECK(memcmp(dec, user, strlen(user)) == 0 && dec[strlen(user)] == ':' &&
                       memcmp(dec + strlen(user) + 1, pass, strlen(pass)) == 0);
            free(dec);
        }
    }
    ll__http_req_head head = {.method = method,
                              .url = &u,
                              .absolute_form = data[0] & 4,
                              .headers = h,
                              .user_agent = ua,
                              .accept_encoding = "gzip, deflate",
                              .authorization = auth,
                              .content_type = (data[0] & 16) ? "text/plain" : NULL,
                              .body_mode = body_mode,
                              .content_length = (uint64_t)size};
    ll__hbuf out = {0};
    int rc = ll__http_request_write(&out, &head, err);
    if (rc == 0) {
        check_head(&out, method ? method : "GET", body_mode);
    } else {
        FUZZ_CHECK(rc == LL_EINVAL || rc == LL_ENOMEM);
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(out.len == 0); /* nothing appended on failure */
    }
    ll__hbuf_free(&out);
    ll_free(auth);
    ll__http_url_free(&u);
    ll_http_headers_free(h);
    free(text);
    return 0;
}
