/*
 * libloop/http.h — an HTTP/1.1 client: sessions with keep-alive connection pools, TLS, redirects,
 * compression, per-phase timeouts, streaming and fan-out. Library: libloop-http
 * (pkg-config libloop-http).
 *
 * A session (like aiohttp's ClientSession or a libcurl multi handle) owns a pool of keep-alive
 * connections per origin (scheme, host, port and TLS settings) and the defaults for every request
 * made through it. Many tasks share one session; everything happens on the session's loop.
 *
 *     ll_http_session *s = ll_http_session_new(NULL);
 *     ll_future *f = ll_http_get(s, "https://example.com/");
 *     if (ll_await(f) == 0) {
 *         ll_http_response *r = ll_future_value(f);
 *         printf("%d, %zu bytes\n", ll_http_response_status(r), ll_http_response_body_len(r));
 *     } else fprintf(stderr, "%s\n", ll_future_errmsg(f));
 *     ll_future_free(f);
 *     ll_http_session_free(s);
 *
 * Errors (a failed future's code; its message names the method, the URL and the cause):
 *   LL_EINVAL            a bad URL, method or header (a control byte other than HTAB — CR, LF,
 *                        NUL, 0x01-0x1F, DEL — in any field the caller supplies is refused
 *                        before a byte is sent, RFC 9110 5.5), an unsupported scheme
 *   LL_ENOTFOUND, LL_EDNS, LL_ECONNREFUSED, LL_ECERT, LL_ETLS, ...  from DNS, connect, TLS
 *   LL_EHTTP_PROTO       the server broke HTTP/1.1 (garbage status line, bad chunk, ...)
 *   LL_ETRUNCATED        the connection ended before the response was complete
 *   LL_ETOOLARGE         a configured limit was exceeded (header line, header count, header bytes,
 *                        body size, decoded size, interim 1xx responses); the message says which
 *   LL_EHTTP_DECODE      corrupt gzip/deflate data, an unknown or too deeply stacked encoding
 *   LL_EHTTP_REDIRECT    too many redirects, a loop, https -> http, a non-http(s) Location
 *   LL_EHTTP_STATUS      the proxy refused the CONNECT tunnel for an https URL (407, 403, ...)
 *   LL_EHTTP_STALE       a non-idempotent request found its reused keep-alive connection closed
 *                        by the server before any byte of the response (it may or may not have
 *                        been processed: it is not retried)
 *   LL_EHTTP_TIMEOUT_DNS, _POOL, _CONNECT, _TLS, _FIRST_BYTE, _READ   one phase took too long
 *                        (_FIRST_BYTE also for the response-head deadline, _READ also for the
 *                        low-speed limit: the message says which)
 *   LL_ETIMEDOUT         the request's total deadline (or the calling task's deadline) passed
 *   LL_ECANCELED         the request was cancelled
 *   LL_ECLOSED           the session was freed while the request was in flight
 * An HTTP error status (404, 500) is NOT a failure: the future resolves with the response.
 * ll_http_is_timeout() is true for every timeout code. Messages never contain raw control bytes
 * from input (they are shown as \xNN).
 *
 * Ownership: strings and buffers passed in are copied before the call returns (except a streamed
 * upload's body_arg, which must stay valid until the future settles). A response belongs to the
 * future that delivered it; ll_future_take() it to keep it longer and free it with
 * ll_http_response_free(). Pointers into a response stay valid until it is freed.
 */
#ifndef LIBLOOP_HTTP_H
#define LIBLOOP_HTTP_H

#include "libloop/common.h"
#include "libloop/error.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

typedef struct ll_http_session ll_http_session;
typedef struct ll_http_response ll_http_response;
typedef struct ll_http_headers ll_http_headers;
typedef struct ll_http_batch ll_http_batch;

/* ---- headers: an ordered list of (name, value); names compare case-insensitively; repeated
 * names are kept in order (Set-Cookie). ---- */

LL_EXPORT ll_http_headers *ll_http_headers_new(void);
LL_EXPORT void ll_http_headers_free(ll_http_headers *h);
/* A deep copy; NULL on out of memory (or when h is NULL). */
LL_EXPORT ll_http_headers *ll_http_headers_copy(const ll_http_headers *h);
/* Append a header. 0, LL_EINVAL (name empty or not an HTTP token; CR, LF or NUL in the value;
 * leading/trailing blanks are trimmed from the value), LL_ENOMEM. */
LL_EXPORT int ll_http_headers_add(ll_http_headers *h, const char *name, const char *value);
/* The same with explicit lengths: a NUL inside is refused (LL_EINVAL). */
LL_EXPORT int ll_http_headers_addn(ll_http_headers *h, const char *name, size_t nlen,
                                   const char *value, size_t vlen);
/* Replace every header of that name with one (appended). Same errors as add. */
LL_EXPORT int ll_http_headers_set(ll_http_headers *h, const char *name, const char *value);
/* Remove every header of that name; return how many were removed. */
LL_EXPORT size_t ll_http_headers_remove(ll_http_headers *h, const char *name);
/* The first value of `name`, or NULL. Valid until the header list changes or is freed. */
LL_EXPORT const char *ll_http_headers_get(const ll_http_headers *h, const char *name);
/* Iterate the values of `name` in order: start with *iter = 0; NULL when there are no more. */
LL_EXPORT const char *ll_http_headers_next(const ll_http_headers *h, const char *name,
                                           size_t *iter);
LL_EXPORT size_t ll_http_headers_count(const ll_http_headers *h);
/* The i-th header (0-based, in order); LL_ERANGE past the end. */
LL_EXPORT int ll_http_headers_at(const ll_http_headers *h, size_t i, const char **name,
                                 const char **value);

/* ---- timeouts and limits ---- */

/* Seconds. In session options, 0 means the default shown; in a request, 0 means the session's
 * value. A negative value means "no limit" (the total deadline and the calling task's deadline
 * still apply). Each phase fails with its own code; `total` with LL_ETIMEDOUT. */
typedef struct ll_http_timeouts {
    double total;      /* whole request including redirects and reading the body; 300 */
    double pool_wait;  /* waiting for a connection from the pool, including a connect made for
                        * this request; 60 */
    double dns;        /* name resolution (session-wide: connections are shared); 10 */
    double connect;    /* TCP connect, all addresses (session-wide); 10 */
    double tls;        /* TLS handshake (session-wide); 10 */
    double first_byte; /* from the request being sent until the first byte of the response; 60 */
    double idle_read;  /* longest gap between two reads of the response; 60 */
    double head;       /* from the request being sent until the response head is complete (a
                        * server trickling its headers byte by byte); 60 */
    /* Low-speed limit (curl's LOW_SPEED_LIMIT/LOW_SPEED_TIME): fail with LL_EHTTP_TIMEOUT_READ
     * when fewer than low_speed_limit bytes per second arrive, averaged over low_speed_time
     * seconds, while the response is read. low_speed_limit is in bytes per second: 0 means the
     * default (none) or the session's, < 0 none. low_speed_time: 0 means 30. */
    double low_speed_limit;
    double low_speed_time;
    double continue_wait; /* Expect: 100-continue: how long to wait for "100 Continue" before
                           * sending the body anyway; 1 */
} ll_http_timeouts;

/* In session options 0 means the default shown; in a request 0 means the session's value. */
typedef struct ll_http_limits {
    size_t max_header_line;  /* one header line or the status line; 8 KiB */
    size_t max_headers;      /* header count; 100 */
    size_t max_header_bytes; /* all header lines together; 64 KiB */
    uint64_t max_body;       /* body bytes received (before decoding); 128 MiB; UINT64_MAX: none */
    uint64_t max_decoded;    /* body bytes after gzip/deflate decoding; 128 MiB; UINT64_MAX: none */
    unsigned max_encodings;  /* stacked Content-Encodings decoded ("gzip, gzip"); 3 */
    /* Redirects followed at most: 0 means the default (10) in a session and the session's value
     * in a request; LL_HTTP_NO_REDIRECTS (any negative value) follows none (the 3xx response is
     * the answer). The only redirect knob. */
    int max_redirects;
    unsigned max_interim;    /* interim 1xx responses before the final one; 16 */
} ll_http_limits;
#define LL_HTTP_NO_REDIRECTS (-1)

/* Retry policy for idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, TRACE without a streamed
 * body). A retry happens after a connect failure (DNS, refused, connect or TLS timeout: nothing was
 * sent) or a response whose status is in `statuses`; the wait before retry n (1, 2, ...) is
 * backoff * 2^(n-1), capped at max_backoff, with "full jitter" (a uniform random fraction of it,
 * never less than half), or what the response's Retry-After asks (seconds or an HTTP date) when
 * that is longer and no more than max_retry_after (else the response is the answer). Waits count
 * against the request's total deadline. */
typedef struct ll_http_retry {
    unsigned attempts;         /* tries in all, the first included; 0 or 1: no retry */
    double backoff;            /* first wait, seconds; 0: 0.1 */
    double max_backoff;        /* 0: 10 */
    double max_retry_after;    /* 0: 60; a longer Retry-After ends the retries */
    const int *statuses;       /* 0-terminated; NULL: 429, 502, 503, 504 */
} ll_http_retry;

typedef struct ll_http_cookie_jar ll_http_cookie_jar;

/* ---- session ---- */

typedef struct ll_http_session_opts {
    ll_loop *loop;             /* NULL: the current loop */
    unsigned max_connections;  /* open connections over all origins; 0: 100 */
    unsigned max_per_host;     /* open connections per origin; 0: the same as max_connections */
    double idle_timeout;       /* close keep-alive connections idle this long; 0: 60 s;
                                * negative: keep them until the server closes them */
    ll_http_timeouts timeouts;
    ll_http_limits limits;
    const char *user_agent;    /* NULL: "libloop-http/<version>"; "" sends none */
    const char *ca_file;       /* PEM bundle of trusted CAs for https; NULL: the system store */
    /* https: accept ANY certificate for ANY name. For tests with throw-away certificates only. */
    bool insecure_skip_verify_DANGEROUS;
    bool allow_https_to_http;  /* follow redirects from https to plain http (off: refused) */
    bool no_decompress;        /* do not send Accept-Encoding nor decode bodies */
    /* "http://[user:password@]host:port" of an HTTP proxy: plain-http requests go to it in
     * absolute form; https ones are tunnelled with CONNECT. NULL: direct connections. */
    const char *proxy;
    /* With proxy NULL: take the proxy of each request from the environment, as curl does:
     * http_proxy (lower case only, see docs/http.md) for http URLs, HTTPS_PROXY or https_proxy for
     * https, NO_PROXY or no_proxy ("*", or host names and domain suffixes, comma-separated) for
     * the hosts reached directly. Read when each request starts. */
    bool proxy_from_env;
    /* An opt-in cookie jar (RFC 6265): Set-Cookie responses are stored, matching cookies sent. */
    bool cookies;
    ll_http_retry retry;       /* default retry policy; zero: none */
} ll_http_session_opts;

/* A new session, or NULL: the reason is then in ll_http_session_error() (LL_EINVAL for a bad
 * option — a control byte in the user agent, an unparsable proxy URL —, LL_ENOMEM, LL_ENOTASK
 * when there is no loop). */
LL_EXPORT ll_http_session *ll_http_session_new(const ll_http_session_opts *opts);
/* Why the last ll_http_session_new() on this thread returned NULL: its code, and *msg (if not
 * NULL) set to a message valid until the next call on this thread. 0 and "" after a success. */
LL_EXPORT int ll_http_session_error(const char **msg);
/* Close the session: requests in flight fail with LL_ECLOSED, idle connections are closed. Streamed
 * responses already delivered remain readable; their connection is closed when they are freed.
 * The memory goes when the last of them is. NULL: no-op. */
LL_EXPORT void ll_http_session_free(ll_http_session *s);

typedef struct ll_http_stats {
    uint64_t requests;         /* request messages written (redirects and retries included) */
    uint64_t connections;      /* connections opened */
    uint64_t reused;           /* requests sent on a kept-alive connection */
    uint64_t retries;          /* idempotent requests retried (stale keep-alive or retry policy) */
    size_t open, idle, in_use; /* connections now */
} ll_http_stats;
LL_EXPORT void ll_http_session_get_stats(const ll_http_session *s, ll_http_stats *out);

/* ---- requests ---- */

/* A streamed (chunked) upload: called from the request's task, possibly many times; set *data and
 * *len to the next piece (valid until the next call) and return 0; *len == 0 ends the body. A
 * negative return fails the request with that code. It may await. */
typedef int (*ll_http_body_fn)(void *arg, const void **data, size_t *len);

typedef struct ll_http_request {
    const char *method;        /* NULL: "GET" (any token: "PROPFIND" is fine) */
    const char *url;           /* http:// or https://, absolute; user:password@ gives Basic auth */
    /* Extra query parameters: name, value, name, value, ..., NULL. Percent-encoded and appended
     * to the URL's query. */
    const char *const *query;
    const ll_http_headers *headers; /* extra request headers (copied); they override the
                                     * defaults (User-Agent, Accept-Encoding, Content-Type) */
    /* Body, one of: */
    const void *body;          /* bytes (copied), with body_len */
    size_t body_len;
    const char *json;          /* a JSON text: Content-Type: application/json */
    const char *const *form;   /* name, value, ..., NULL: application/x-www-form-urlencoded */
    ll_http_body_fn body_fn;   /* streamed with Transfer-Encoding: chunked */
    void *body_arg;
    const char *content_type;  /* for body/body_fn; NULL: none (json/form set their own) */
    /* multipart/form-data: nparts parts (fields and files streamed from disk), sent with a
     * Content-Length; the boundary is random and checked against every part. */
    const struct ll_http_part *parts;
    size_t nparts;
    /* Basic authentication (overrides user:password in the URL). */
    const char *user, *password;
    /* Zero fields: the session's. dns/connect/tls apply to a connection made for this request. */
    ll_http_timeouts timeouts;
    ll_http_limits limits;      /* zero fields: the session's (redirects: limits.max_redirects) */
    /* Resolve as soon as the headers are in; read the body with ll_http_response_next(). */
    bool stream;
    /* Send "Expect: 100-continue" with the body and wait (timeouts.continue_wait) for the server's
     * go-ahead; a final status before it means the body is not sent (and the connection closed). */
    bool expect_continue;
    /* ---- overrides of the session's settings for this request (zero: the session's) ---- */
    const char *user_agent;    /* "" sends none */
    const char *ca_file;       /* PEM bundle of trusted CAs */
    int verify;                /* > 0 verify certificates; < 0 accept any (DANGEROUS, tests only) */
    int decompress;            /* > 0 send Accept-Encoding and decode; < 0 do not */
    int allow_https_to_http;   /* > 0 follow https -> http redirects; < 0 refuse them */
    const char *proxy;         /* "http://..." or "" for a direct connection */
    bool proxy_from_env;       /* the proxy from the environment (see the session option) */
    const ll_http_retry *retry; /* NULL: the session's policy */
    bool no_cookies;           /* neither send nor store cookies for this request */
} ll_http_request;

/* A part of a multipart/form-data body: a field (value, value_len; value_len 0 with a
 * NUL-terminated value is fine) or a file (path: streamed from disk when the request is sent;
 * filename defaults to the path's last component). */
typedef struct ll_http_part {
    const char *name;
    const char *value;
    size_t value_len;
    const char *path;
    const char *filename;
    const char *content_type; /* NULL: none for a field, application/octet-stream for a file */
} ll_http_part;

/* Send a request through the session. The future resolves with the final ll_http_response
 * (after redirects) — for any status, 404 included — or fails as listed at the top. Without
 * req->stream the body has been read completely (and decoded). A request that cannot start (bad
 * URL, method or header, closed session) gives a future already failed; otherwise the work runs as
 * a task of the session's loop and the future settles later. Cancelling the future stops the
 * request and closes its connection (it never goes back to the pool half-used).
 * Idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) that find their reused keep-alive
 * connection closed by the server before any response byte are retried once on a new connection;
 * a retry policy (ll_http_retry) may retry them further. A non-idempotent request is never sent on
 * a kept-alive connection whose end has already arrived. NULL on out of memory. */
LL_EXPORT ll_future *ll_http_send(ll_http_session *s, const ll_http_request *req);
LL_EXPORT ll_future *ll_http_get(ll_http_session *s, const char *url);
/* POST `len` bytes of `body` (content_type may be NULL). */
LL_EXPORT ll_future *ll_http_post(ll_http_session *s, const char *url, const char *content_type,
                                  const void *body, size_t len);

/* ---- responses ---- */

/* Durations in seconds of the phases of the final hop; 0 when a phase did not happen (a reused
 * keep-alive connection has no dns, connect or tls time). */
typedef struct ll_http_timings {
    double dns;        /* name resolution */
    double pool_wait;  /* waiting for the pool, not counting making the connection */
    double connect;    /* TCP connect */
    double tls;        /* TLS handshake (proxy tunnel included) */
    double first_byte; /* from the request written to the first response byte */
    double total;      /* from ll_http_send to the end of the body (streamed: to the headers until
                        * the body has been read to its end), redirects included */
    bool reused;       /* the connection had served an earlier request */
} ll_http_timings;

/* Which connection carried a response (its final hop). */
typedef struct ll_http_conn_info {
    uint64_t id;         /* the session's number for the connection, from 1 */
    int local_port;      /* our end's TCP port */
    bool reused;         /* it had served an earlier request (else it was made for this one) */
    uint64_t requests;   /* requests it has carried, this one included */
} ll_http_conn_info;
LL_EXPORT void ll_http_response_conn(const ll_http_response *r, ll_http_conn_info *out);
/* Attempts the request took (1 without retries). */
LL_EXPORT unsigned ll_http_response_attempts(const ll_http_response *r);
/* The response a request future (ll_http_send, ll_http_get, ll_http_post) resolved with
 * (borrowed: owned by the future), or NULL when f is NULL, pending, failed (ll_future_errmsg says
 * why) or holds something else: reading the wrong future cannot crash. */
LL_EXPORT ll_http_response *ll_http_response_of(const ll_future *f);

LL_EXPORT int ll_http_response_status(const ll_http_response *r);
/* "OK", "Not Found" (as sent by the server; may be ""). */
LL_EXPORT const char *ll_http_response_reason(const ll_http_response *r);
/* 11 for HTTP/1.1, 10 for HTTP/1.0. */
LL_EXPORT int ll_http_response_version(const ll_http_response *r);
LL_EXPORT const ll_http_headers *ll_http_response_headers(const ll_http_response *r);
/* Shorthand for ll_http_headers_get(ll_http_response_headers(r), name). */
LL_EXPORT const char *ll_http_response_header(const ll_http_response *r, const char *name);
/* The body read so far (all of it unless streamed), decoded; NUL-terminated for convenience
 * (the terminator is not counted). Never NULL. */
LL_EXPORT const char *ll_http_response_body(const ll_http_response *r);
/* Its length; for a fan-out with discard_bodies, the size the body had (the bytes are gone). */
LL_EXPORT size_t ll_http_response_body_len(const ll_http_response *r);
/* The URL of the final response (after redirects, without credentials) and the number of
 * redirects followed. */
LL_EXPORT const char *ll_http_response_url(const ll_http_response *r);
LL_EXPORT unsigned ll_http_response_redirects(const ll_http_response *r);
LL_EXPORT void ll_http_response_timings(const ll_http_response *r, ll_http_timings *out);
/* Streamed responses (req->stream), inside a task: the next piece of the decoded body. 0 with
 * data and len set (valid until the next call or the free); LL_EOF at the end of the body; or a
 * failure code (timeouts, truncation, limits, decoding) with the message in
 * ll_http_response_errmsg(). The request's total deadline and idle_read timeout apply. On a
 * buffered response: LL_EOF at once. */
LL_EXPORT int ll_http_response_next(ll_http_response *r, const char **data, size_t *len);
LL_EXPORT const char *ll_http_response_errmsg(const ll_http_response *r);
/* Free a response taken from its future. A streamed body not read to the end closes the
 * connection (a half-read response never goes back to the pool). NULL: no-op. */
LL_EXPORT void ll_http_response_free(ll_http_response *r);

/* ---- fan-out ---- */

/* Called from the loop as each request finishes (in completion order): index in the input, the
 * outcome code and, when 0, the response (borrowed for the call). */
typedef void (*ll_http_progress_fn)(void *arg, size_t index, int code,
                                    const ll_http_response *resp);

typedef struct ll_http_fetch_opts {
    unsigned concurrency;          /* requests in flight at most; 0: 16 */
    /* Method, headers, timeouts and limits used for every URL (its url/body fields are
     * ignored). NULL: GET. */
    const ll_http_request *tmpl;
    bool discard_bodies;           /* keep status, headers, size and timings, drop the bytes */
    ll_http_progress_fn on_done;
    void *arg;
} ll_http_fetch_opts;

/* Fetch n URLs (copied) with at most `concurrency` at a time. The future resolves (it never fails
 * because a fetch did; LL_ENOMEM or LL_EINVAL aside) with an ll_http_batch holding one result per
 * URL in input order. Cancelling it cancels the fetches in flight; those not started are recorded
 * as LL_ECANCELED. NULL on out of memory. */
LL_EXPORT ll_future *ll_http_fetch_all(ll_http_session *s, const char *const *urls, size_t n,
                                       const ll_http_fetch_opts *opts);
/* The batch an ll_http_fetch_all future resolved with (borrowed), or NULL (as ll_http_response_of). */
LL_EXPORT ll_http_batch *ll_http_batch_of(const ll_future *f);
LL_EXPORT size_t ll_http_batch_count(const ll_http_batch *b);
/* 0 or the failure code of urls[i]. */
LL_EXPORT int ll_http_batch_code(const ll_http_batch *b, size_t i);
/* The failure message of urls[i] ("" when it succeeded). */
LL_EXPORT const char *ll_http_batch_errmsg(const ll_http_batch *b, size_t i);
/* The response of urls[i] (borrowed, valid while the batch lives), NULL when it failed. */
LL_EXPORT const ll_http_response *ll_http_batch_response(const ll_http_batch *b, size_t i);
/* Free a batch taken from its future with ll_future_take(). NULL: no-op. */
LL_EXPORT void ll_http_batch_free(ll_http_batch *b);

/* ---- cookies (sessions made with opts.cookies) ---- */

/* Load cookies from a Netscape-format file (curl -b / -c, wget --load-cookies); cookies for public
 * suffixes and expired ones are skipped. 0, LL_ENOENT (no file), LL_EINVAL (not a session with a
 * jar), LL_EIO, LL_ENOMEM. */
LL_EXPORT int ll_http_cookies_load(ll_http_session *s, const char *path);
/* Save the jar's persistent and session cookies in Netscape format (written to a temporary file
 * then renamed). 0 or an error code. */
LL_EXPORT int ll_http_cookies_save(const ll_http_session *s, const char *path);
/* Cookies stored now (expired ones not counted). */
LL_EXPORT size_t ll_http_cookies_count(const ll_http_session *s);
/* The Cookie header value the jar would send to `url` ("" when none); free with ll_free().
 * NULL on out of memory or a bad URL. */
LL_EXPORT char *ll_http_cookies_for(const ll_http_session *s, const char *url);
LL_EXPORT void ll_http_cookies_clear(ll_http_session *s);

/* ---- helpers ---- */

/* True for LL_ETIMEDOUT and every LL_EHTTP_TIMEOUT_ code. */
LL_EXPORT bool ll_http_is_timeout(int code);
/* "a=1&b=x%20y" from name, value, ..., NULL (application/x-www-form-urlencoded, spaces as '+').
 * Free with ll_free(). NULL on out of memory. */
LL_EXPORT char *ll_http_form_encode(const char *const *pairs);

LL_END_DECLS

#endif
