/*
 * http_internal.h — what the files of libloop-http share. Never installed.
 *
 * The client is a sans-I/O protocol core (buf.c, headers.c, url.c, request.c, parser.c, decode.c,
 * redirect.c: bytes in, events out, no sockets, no loop) and a thin adapter on libloop (session.c:
 * the session and its pool, exchange.c: one request/response on a connection, fetch.c: fan-out).
 * The core is what the tests feed byte by byte; this header is what they include.
 *
 * Error reporting in the core: functions return 0 or a negative code from libloop/error.h and write
 * a message into a caller-supplied buffer of LL__HTTP_ERRLEN bytes ("" when there is none).
 */
#ifndef LL_HTTP_INTERNAL_H
#define LL_HTTP_INTERNAL_H

#include <stdarg.h>
#include <string.h>
#include "libloop.h"
#include "libloop/http.h"

#define LL__HTTP_ERRLEN 256
#define LL__HTTP_VERSION "0.1.0"

/* Defaults (documented in libloop/http.h and docs/http.md). */
#define LL__HTTP_MAX_HEADER_LINE 8192
#define LL__HTTP_MAX_HEADERS 100
#define LL__HTTP_MAX_HEADER_BYTES 65536
#define LL__HTTP_MAX_BODY ((uint64_t)128 << 20)
#define LL__HTTP_MAX_ENCODINGS 3
#define LL__HTTP_MAX_REDIRECTS 10
#define LL__HTTP_MAX_INTERIM 16

/* Write a message into err (LL__HTTP_ERRLEN bytes) and return code. */
int ll__http_errf(char *err, int code, const char *fmt, ...) LL_PRINTF(3, 4);
/* RFC 9110 5.5: a field value may hold no control byte but HTAB (0x00-0x1F, 0x7F). */
bool ll__http_value_ok(const char *v, size_t n);
bool ll__http_str_ok(const char *s); /* the same for a C string; NULL is fine */
/* s (n bytes) made safe to put in a message: control bytes and DEL as \xNN, cut with "..." to fit
 * cap bytes (terminator included). Returns out. Input never reaches a message or log raw. */
const char *ll__http_esc(char *out, size_t cap, const char *s, size_t n);
#define LL__HTTP_ESC(buf, s) ll__http_esc(buf, sizeof buf, (s), (s) ? strlen(s) : 0)

/* ---- buf.c: a growable byte buffer (always NUL-terminated when data != NULL) ---- */
typedef struct ll__hbuf {
    char *data;
    size_t len, cap;
} ll__hbuf;
int ll__hbuf_reserve(ll__hbuf *b, size_t extra);
/* Room for exactly `extra` more bytes (a body whose length is known): no doubling. */
int ll__hbuf_reserve_exact(ll__hbuf *b, size_t extra);
int ll__hbuf_append(ll__hbuf *b, const void *p, size_t n);
int ll__hbuf_appends(ll__hbuf *b, const char *s);
int ll__hbuf_printf(ll__hbuf *b, const char *fmt, ...) LL_PRINTF(2, 3);
void ll__hbuf_free(ll__hbuf *b);
/* Give the bytes away (the caller frees with ll_free); the buffer is left empty. */
char *ll__hbuf_steal(ll__hbuf *b, size_t *len);

/* ---- headers.c ---- */
typedef struct ll__hdr {
    char *name;  /* NUL-terminated, in the list's arena */
    char *value;
    size_t nlen, vlen;
    size_t off;  /* of name in the arena (the pointers are refreshed when the arena moves) */
} ll__hdr;
struct ll_http_headers {
    ll__hdr *v;
    size_t n, cap;
    char *arena; /* every name\0value\0, back to back: two allocations for a whole response */
    size_t alen, acap;
};
/* An HTTP token (RFC 9110 tchar+). */
bool ll__http_is_token(const char *s, size_t n);
/* Case-insensitive comparison of a header name with a C string. */
bool ll__http_name_eq(const char *a, size_t alen, const char *b);
/* Does a comma-separated header value contain `token` (case-insensitive)? ("Connection: close") */
bool ll__http_list_has(const char *value, const char *token);

/* ---- url.c (liburiparser) ---- */
typedef struct ll__http_url {
    char *buf;      /* every string below lives in this one allocation */
    size_t buflen;
    char *scheme;   /* "http" or "https" */
    char *host;     /* lower case; an IPv6 literal without brackets */
    uint16_t port;  /* explicit or the scheme's default */
    bool tls;       /* https */
    bool ipv6;      /* host is an IPv6 literal */
    char *target;   /* origin-form request target: "/path?query", at least "/" */
    char *user;     /* percent-decoded userinfo, NULL when absent */
    char *password;
    char *href;     /* the whole URL, normalised, without userinfo and fragment */
    char *key;      /* the origin with its port: "https://host:443" (the pool key) */
} ll__http_url;
int ll__http_url_parse(ll__http_url *u, const char *s, char *err);
/* Resolve a reference (a Location header value, `len` bytes) against base. */
int ll__http_url_resolve(ll__http_url *out, const ll__http_url *base, const char *ref,
                         size_t len, char *err);
/* Append percent-encoded name=value pairs (NULL-terminated list) to the query. */
int ll__http_url_add_query(ll__http_url *u, const char *const *pairs, char *err);
int ll__http_url_copy(ll__http_url *dst, const ll__http_url *src);
void ll__http_url_free(ll__http_url *u);
/* Same scheme, host and port. */
bool ll__http_same_origin(const ll__http_url *a, const ll__http_url *b);
/* "host" or "host:port" (non-default port), brackets around IPv6: the Host header. */
int ll__http_url_hostport(const ll__http_url *u, ll__hbuf *out, bool always_port);
/* application/x-www-form-urlencoded; NULL on out of memory. */
char *ll__http_form_encode(const char *const *pairs);

/* ---- request.c: serialising a request head ---- */
enum { LL__BODY_NONE, LL__BODY_LENGTH, LL__BODY_CHUNKED };
typedef struct ll__http_req_head {
    const char *method;            /* a token */
    const ll__http_url *url;
    bool absolute_form;            /* through a plain-http proxy: "GET http://host/path" */
    const ll_http_headers *headers; /* the caller's (override the defaults below); may be NULL */
    const char *user_agent;        /* NULL or "": none */
    const char *accept_encoding;   /* NULL: none */
    const char *authorization;     /* "Basic ..." or NULL */
    const char *proxy_authorization;
    const char *content_type;      /* NULL: none */
    int body_mode;                 /* LL__BODY_* */
    uint64_t content_length;       /* LL__BODY_LENGTH */
    const char *cookie;            /* the jar's Cookie value, or NULL */
    bool expect_continue;          /* send "Expect: 100-continue" */
} ll__http_req_head;
/* Append the request line and headers (ending with the empty line) to out. LL_EINVAL with a
 * message when the method is not a token or a CR, LF or NUL hides anywhere; nothing is appended
 * then. */
int ll__http_request_write(ll__hbuf *out, const ll__http_req_head *h, char *err);
/* The CONNECT request for a tunnel to host:port. */
int ll__http_connect_write(ll__hbuf *out, const ll__http_url *target,
                           const char *proxy_authorization, char *err);
/* One chunk of a chunked body ("1a\r\n...\r\n"); n == 0 writes the last chunk "0\r\n\r\n". */
int ll__http_chunk_write(ll__hbuf *out, const void *data, size_t n);
bool ll__http_method_idempotent(const char *method);
bool ll__http_method_is(const char *method, const char *want);
/* "Basic base64(user:password)"; NULL on out of memory. */
char *ll__http_basic_auth(const char *user, const char *password);

/* ---- parser.c: responses, on llhttp ---- */
typedef struct ll__http_parser ll__http_parser;
typedef struct ll__http_parser_cb {
    /* The final (non-1xx) response's head is complete: read status, headers etc. from p. Return 0
     * or a negative code (with a message written into err) to stop. */
    int (*on_headers)(void *arg, ll__http_parser *p, char *err);
    /* A piece of the body (as it came off the wire, after de-chunking). */
    int (*on_body)(void *arg, const char *data, size_t n, char *err);
} ll__http_parser_cb;
/* A parser with limits (zero fields: the defaults). NULL on out of memory. */
ll__http_parser *ll__http_parser_new(const ll_http_limits *limits, const ll__http_parser_cb *cb,
                                     void *arg);
void ll__http_parser_free(ll__http_parser *p);
/* New limits, callbacks and argument for the next response (a parser lives as long as its
 * connection and serves every response on it). */
void ll__http_parser_rearm(ll__http_parser *p, const ll_http_limits *limits,
                           const ll__http_parser_cb *cb, void *arg);
/* Prepare for the response to a new request; `head`: it answers a HEAD (no body whatever the
 * headers say). */
void ll__http_parser_start(ll__http_parser *p, bool head);
/* Feed bytes. Return 0 (*used bytes taken: all of them unless the response completed, in which
 * case the rest does not belong to it), or a negative code with a message
 * (ll__http_parser_errmsg): LL_EHTTP_PROTO, LL_ETOOLARGE, or whatever a callback returned. */
int ll__http_parser_feed(ll__http_parser *p, const char *data, size_t len, size_t *used);
/* The peer closed the connection. 0 when that completed the response (a close-delimited body),
 * else LL_ETRUNCATED (or LL_EHTTP_STALE before the first byte) with a message. */
int ll__http_parser_eof(ll__http_parser *p);
bool ll__http_parser_done(const ll__http_parser *p);
bool ll__http_parser_headers_done(const ll__http_parser *p);
/* Some byte of a response was received. */
bool ll__http_parser_started(const ll__http_parser *p);
/* Done, and the connection may carry another request: keep-alive, framing unambiguous, no
 * interim weirdness. */
bool ll__http_parser_reusable(const ll__http_parser *p);
/* The framing was legal but suspect (Transfer-Encoding together with Content-Length). */
bool ll__http_parser_suspect(const ll__http_parser *p);
int ll__http_parser_status(const ll__http_parser *p);
int ll__http_parser_version(const ll__http_parser *p); /* 10, 11 */
const char *ll__http_parser_reason(const ll__http_parser *p);
const ll_http_headers *ll__http_parser_headers(const ll__http_parser *p);
/* Take the headers (the parser forgets them); NULL on out of memory. */
ll_http_headers *ll__http_parser_take_headers(ll__http_parser *p);
char *ll__http_parser_take_reason(ll__http_parser *p);
uint64_t ll__http_parser_body_bytes(const ll__http_parser *p);
/* Bytes of a Content-Length body still to come (0 for other framings, or when not in the body):
 * the adapter reads them straight into the body buffer. */
uint64_t ll__http_parser_identity_left(const ll__http_parser *p);
unsigned ll__http_parser_interim(const ll__http_parser *p); /* 1xx responses skipped */
/* The status of the last interim response (100, 103, ...), 0 when none yet. */
int ll__http_parser_interim_status(const ll__http_parser *p);
const char *ll__http_parser_errmsg(const ll__http_parser *p);

/* ---- decode.c: Content-Encoding (zlib) ---- */
typedef struct ll__http_decoder ll__http_decoder;
typedef int (*ll__http_sink)(void *arg, const char *data, size_t n, char *err);
/* A decoder for a Content-Encoding value ("gzip", "deflate", "x-gzip", "gzip, gzip"; identity
 * entries are ignored). *out is NULL when nothing needs decoding. LL_EHTTP_DECODE for an unknown
 * coding or more than max_layers; LL_ENOMEM. max_out: decoded bytes allowed in total. */
int ll__http_decoder_new(ll__http_decoder **out, const char *content_encoding,
                         unsigned max_layers, uint64_t max_out, char *err);
/* Decode n bytes and pass the output to sink in pieces. LL_EHTTP_DECODE (corrupt data),
 * LL_ETOOLARGE (max_out), or the sink's code. */
int ll__http_decoder_feed(ll__http_decoder *d, const char *in, size_t n, ll__http_sink sink,
                          void *arg, char *err);
/* The body ended: every layer must be at the end of its stream (LL_EHTTP_DECODE otherwise). */
int ll__http_decoder_finish(ll__http_decoder *d, ll__http_sink sink, void *arg, char *err);
uint64_t ll__http_decoder_out(const ll__http_decoder *d);
void ll__http_decoder_free(ll__http_decoder *d);

/* ---- redirect.c ---- */
typedef struct ll__http_redirect {
    ll__http_url url;        /* where to go */
    const char *method;      /* the method to use (the old one, or "GET") */
    bool drop_body;          /* the body (and Content-Type) go */
    bool cross_origin;       /* scheme, host or port changed: drop credentials */
} ll__http_redirect;
/* Is `status` a redirect we follow? */
bool ll__http_is_redirect(int status);
/* Decide the next hop for a redirect response. `location` may be NULL (then 0 is returned with
 * *follow false: the response is the answer). LL_EHTTP_REDIRECT with a message for https -> http
 * (unless allowed), a non-http(s) target, or when the body cannot be sent again (a streamed
 * upload on 307/308). LL_EINVAL for a malformed Location. */
int ll__http_redirect_decide(const ll__http_url *from, const char *method, int status,
                             const char *location, bool has_body, bool body_replayable,
                             bool allow_downgrade, bool *follow, ll__http_redirect *out,
                             char *err);
void ll__http_redirect_free(ll__http_redirect *r);
/* Headers that carry credentials: dropped on a cross-origin redirect. */
bool ll__http_is_credential_header(const char *name, size_t nlen);

/* Redirect-loop detection: the (method, URL) pairs visited by one request. */
typedef struct ll__http_visited {
    char **v;
    size_t n, cap;
} ll__http_visited;
/* 0, LL_EHTTP_REDIRECT when (method, href) was already visited (a loop), LL_ENOMEM. */
int ll__http_visited_add(ll__http_visited *vis, const char *method, const char *href,
                         char *err);
void ll__http_visited_free(ll__http_visited *vis);

/* ---- the adapter (session.c, exchange.c, fetch.c) ---- */

#include "libloop/pool.h"
#include "libloop/stream.h"

/* What makes two connections to one origin different: who is trusted and which proxy carries it.
 * Profile 0 is the session's own settings; a request with other settings gets (or adds) another,
 * and its pool key is the origin with "#<index>" appended, so connections are never shared across
 * profiles. */
typedef struct ll__http_profile {
    char *ca_file;
    bool insecure;
    bool has_proxy;
    ll__http_url proxy;
    char *proxy_auth;          /* "Basic ..." from the proxy URL, or NULL */
    char *proxy_src;           /* the proxy URL as given (with its credentials) */
} ll__http_profile;

/* profile.c */
/* The index of the profile (ca_file, insecure, proxy URL or NULL), added when new. 0, or a code with
 * a message in err. */
int ll__http_profile_get(ll_http_session *s, const char *ca_file, bool insecure, const char *proxy,
                         unsigned *index, char *err);
void ll__http_profiles_free(ll_http_session *s);
/* The proxy the environment names for url ("" when none or NO_PROXY matches). Allocated; NULL on
 * out of memory. */
char *ll__http_env_proxy(const ll__http_url *url);
/* Does a NO_PROXY list match host (and port)? */
bool ll__http_no_proxy_match(const char *list, const char *host, uint16_t port);

/* A connection in the pool: the stream and how long making it took. */
typedef struct ll__http_conn {
    ll_stream *s;
    uint64_t id;              /* the session's number for it */
    int local_port;
    ll__http_parser *parser;  /* reused by every response on this connection (made on first use) */
    ll__hbuf out;             /* scratch for serialising requests */
    double dns, connect, tls; /* phases of making it (seconds) */
    uint64_t uses;            /* requests sent on it */
    ll_time idle_since;       /* when it last went back to the pool */
} ll__http_conn;

typedef struct ll__http_req ll__http_req;

struct ll_http_session {
    ll_loop *loop;
    unsigned refs;             /* the user's, one per request in flight, streamed response and
                                * connect in progress */
    bool closed;
    ll_pool *pool;
    ll_http_timeouts to;       /* defaults resolved: every field set (< 0: none) */
    ll_http_limits lim;        /* defaults resolved */
    unsigned max_connections, max_per_host;
    char *user_agent;          /* NULL: none */
    bool allow_downgrade, no_decompress, proxy_from_env;
    ll__http_profile *profiles; /* [0]: the session's own (see ll__http_profile) */
    unsigned nprofiles;
    const ll_http_timeouts *connect_to; /* the acquiring request's timeouts while it calls the
                                         * pool (a connect started then uses them) */
    uint64_t conn_seq;
    ll_http_retry retry;       /* defaults resolved; statuses copied */
    int *retry_statuses;
    ll_http_cookie_jar *jar;   /* NULL unless opts.cookies */
    ll__hbuf *body_cache;      /* freed body buffers kept for reuse (see session.c) */
    size_t nbody_cache, body_cache_bytes;
    ll_http_stats stats;
    ll__http_req *reqs;        /* requests in flight (to cut their waits at close) */
    char *url_src;             /* the last URL string parsed, and what it gave: a session that */
    ll__http_url url_parsed;   /* asks for the same URL again and again copies, not re-parses */
};

void ll__http_session_ref(ll_http_session *s);
/* The body-buffer cache: get one with room for `want` bytes into an empty b (b stays empty when
 * none fits); put b's buffer back (b is left empty either way). */
void ll__http_body_get(ll_http_session *s, ll__hbuf *b, size_t want);
void ll__http_body_put(ll_http_session *s, ll__hbuf *b);
void ll__http_session_unref(ll_http_session *s);

/* One request, from ll_http_send to the response (redirects included). */
struct ll__http_req {
    ll_http_session *s;
    ll__http_req *prev, *next; /* the session's list */
    ll_future *waiting;        /* the future being awaited (cancelled at session close) */
    char *method;              /* method_buf, or allocated when longer */
    char method_buf[24];
    ll__http_url url;
    ll_http_headers *headers;  /* the caller's (copy) */
    ll__hbuf body;             /* a body from memory */
    bool has_body;
    ll_http_body_fn body_fn;
    void *body_arg;
    char *content_type;
    char *auth;                /* "Basic ..." or NULL */
    int max_redirects;         /* < 0: do not follow */
    ll_http_timeouts to;       /* resolved (dns/connect/tls too) */
    ll_http_limits lim;        /* resolved */
    bool stream, discard, expect_continue;
    /* overrides resolved against the session */
    char *user_agent;          /* NULL: the session's */
    bool ua_set;               /* user_agent (maybe NULL = none) replaces the session's */
    bool no_decompress, allow_downgrade, no_cookies;
    bool insecure;
    char *ca_file, *proxy_opt; /* the request's own (NULL: the session's) */
    bool proxy_set, proxy_env;
    unsigned profile;          /* for the current URL */
    char key[300];             /* pool key: origin, and "#profile" unless 0 */
    ll_http_retry retry;       /* resolved */
    int *retry_statuses;       /* a copy */
    unsigned attempts;         /* tries made */
    struct ll__http_multipart *mp; /* a multipart body, or NULL */
    ll_time start;
    char *errmsg;              /* the failure's message (owned) */
};

/* Prepare q for the next hop of a redirect (redirect.c): drop the body and credentials as rd says,
 * switch method and URL (taking rd's). 0. */
int ll__http_redirect_apply(ll__http_req *q, ll__http_redirect *rd);
/* Pick the connection profile and pool key for q's current URL (after each redirect too). */
int ll__http_req_route(ll__http_req *q, char *err);
/* Is `status` one the retry policy retries? */
bool ll__http_retry_status(const ll__http_req *q, int status);
/* The wait before retry n (1-based) given a Retry-After value (may be NULL); < 0: do not retry. */
double ll__http_retry_wait(const ll_http_retry *p, unsigned n, const char *retry_after, double now);

/* multipart.c: a multipart/form-data body streamed from the parts (files read as it is sent). */
typedef struct ll__http_multipart ll__http_multipart;
int ll__http_multipart_new(ll__http_multipart **out, const ll_http_part *parts, size_t n,
                           char *err);
void ll__http_multipart_free(ll__http_multipart *m);
const char *ll__http_multipart_content_type(const ll__http_multipart *m);
uint64_t ll__http_multipart_length(const ll__http_multipart *m);
/* Rewind for a new send (redirect, retry). */
int ll__http_multipart_rewind(ll__http_multipart *m, char *err);
/* The next piece (up to cap bytes) into buf; *n == 0 at the end. */
int ll__http_multipart_read(ll__http_multipart *m, char *buf, size_t cap, size_t *n, char *err);

/* cookie.c */
ll_http_cookie_jar *ll__http_jar_new(void);
void ll__http_jar_free(ll_http_cookie_jar *j);
/* Store the Set-Cookie headers of a response to `url`. */
void ll__http_jar_store(ll_http_cookie_jar *j, const ll__http_url *url, const ll_http_headers *h,
                        double now);
/* The Cookie header value for a request to url ("" when none: out->len == 0). */
int ll__http_jar_header(ll_http_cookie_jar *j, const ll__http_url *url, double now, ll__hbuf *out);

/* Build a request from the caller's description (url overrides req->url when non-NULL). 0, or a
 * code with the message in err. */
int ll__http_req_init(ll__http_req *q, ll_http_session *s, const ll_http_request *req,
                      const char *url, char *err);
void ll__http_req_clear(ll__http_req *q);
/* Inside a task: run the request to its end. 0 with *out set, or a code with q->errmsg set. */
int ll__http_req_run(ll__http_req *q, ll_http_response **out);

struct ll_http_response {
    ll_http_session *s;        /* a reference while the response may still use the session */
    ll__http_req *q;           /* the request while it runs; NULL once handed to the caller */
    int status, version;
    char *reason;
    ll_http_headers *headers;
    ll__hbuf body;             /* the body (buffered) or the piece not yet handed out (streamed) */
    uint64_t body_size;        /* decoded bytes delivered (kept or not) */
    char *url;
    unsigned redirects;
    ll_http_timings t;
    ll_time start, t_written;
    bool got_first;
    /* reading */
    ll__http_conn *conn;       /* held until the body is complete */
    ll__http_parser *parser;
    ll__http_decoder *dec;
    bool drain;                /* a redirect being followed: its body is dropped */
    bool streamed, discard, done, leftover, handed;
    int err;
    char *errmsg;
    ll_time deadline;          /* the request's total deadline */
    double first_byte, idle_read;
    char *prefix;              /* "GET http://...": names a streamed response in messages */
    ll_http_conn_info ci;      /* which connection carried it */
    unsigned attempts;
    /* low-speed limit: bytes counted since the window began */
    double low_limit, low_time;
    ll_time low_start;
    uint64_t low_bytes;
    ll_time head_end;          /* the response-head deadline */
    double head_time;
    uint64_t decoded_since_yield;
    ll_time slice_start;       /* when decoding last let the loop run */
};

#endif
