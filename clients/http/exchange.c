/*
 * exchange.c — the adapter's working half: one request from ll_http_send() to its response, hop
 * by hop (redirects), each hop one exchange on a pooled connection; streamed bodies; responses.
 *
 * Design notes:
 * - A request is a task (ll_http_send spawns it; the fan-out runs requests inside its own worker
 *   tasks). Inside, the code reads top to bottom: acquire, write, read the head, read the body,
 *   release. The protocol is the sans-I/O core's: the bytes the stream has buffered are given to
 *   the parser (ll_stream_peek/consume, no copy), and ll_stream_fill waits for more.
 * - Deadlines are scopes: the request's total (and the caller's own deadline) is the outer scope;
 *   each phase (pool wait, first byte, each read) is an inner one, so the innermost that expired
 *   names the error (LL_EHTTP_TIMEOUT_FIRST_BYTE, ...), or LL_ETIMEDOUT when it was the total.
 * - A connection goes back to the pool as idle only when the response was read to its end, the
 *   parser says the connection may carry another request (keep-alive, unambiguous framing) and no
 *   stray byte follows. Anything else — an error, a cancellation, a half-read streamed body freed
 *   early — closes it (the design's rule: a half-read reply never meets the next request).
 * - Stale keep-alive: a reused connection the server had closed just before we wrote on it gives
 *   EOF or a reset before the first response byte. An idempotent request with a replayable body is
 *   then retried once, on a freshly made connection (reused ones taken on the way are closed: when
 *   one idle connection to an origin went stale, its siblings usually have too). Others fail with
 *   LL_EHTTP_STALE, because the server may have acted on them.
 * - Redirects: the body of a redirect response is read and dropped (so its connection can be
 *   reused), then redirect.c decides the next hop; credentials are dropped across origins.
 * - Session close: each request registers the future it awaits; ll_http_session_free() cancels it
 *   and the request fails with LL_ECLOSED.
 */
#include <string.h>
#include <time.h>
#include "http_internal.h"

#define INLINE_BODY 16384 /* bodies up to this size go out in the same write as the head */

/* ---- responses ---- */

/* Decoding is CPU work the server chooses the size of (a 10 KiB gzip bomb inflates to 128 MiB in
 * ~70 ms): every YIELD_BYTES of decoded output the request looks at the clock and, past YIELD_SLICE,
 * lets the loop run (a zero-length sleep goes through libev's poll, so I/O and timers get their turn,
 * not just ready tasks). A deadline or cancel that comes meanwhile ends the decoding. */
#define YIELD_BYTES (256 * 1024)
#define YIELD_SLICE 0.002

static int sink(void *arg, const char *data, size_t n, char *err) {
    ll_http_response *r = arg;
    r->body_size += n;
    if (r->dec && (r->decoded_since_yield += n) >= YIELD_BYTES) {
        r->decoded_since_yield = 0;
        ll_time now = ll_now();
        if (now - r->slice_start > YIELD_SLICE) {
            int rc = ll_sleep(0);
            r->slice_start = ll_now();
            if (rc) return ll__http_errf(err, rc, "%s while decoding the body",
                                         rc == LL_ETIMEDOUT ? "timed out" : "cancelled");
        }
    }
    if (r->discard) return 0;
    ll__hbuf *b = &r->body;
    if (b->data && data == b->data + b->len) { /* read in place (see read_direct) */
        b->len += n;
        b->data[b->len] = 0;
        return 0;
    }
    return ll__hbuf_append(b, data, n) ? ll__http_errf(err, LL_ENOMEM, "out of memory storing "
                                                       "the body") : 0;
}

static void release_conn(ll_http_response *r, bool ok) {
    if (!r->conn) return;
    bool idle = ok && ll__http_parser_reusable(r->parser) && !r->leftover;
    if (idle) r->conn->idle_since = ll_now();
    ll_pool_release(r->s->pool, r->conn, idle ? LL_POOL_IDLE : LL_POOL_BROKEN);
    r->conn = NULL;
    r->parser = NULL; /* the connection's: gone with it */
}

void ll_http_response_free(ll_http_response *r) {
    if (!r) return;
    release_conn(r, false);
    ll__http_decoder_free(r->dec);
    ll_http_headers_free(r->headers);
    if (r->s) ll__http_body_put(r->s, &r->body);
    ll__hbuf_free(&r->body);
    ll_free(r->reason);
    ll_free(r->url);
    ll_free(r->errmsg);
    ll_free(r->prefix);
    if (r->s) ll__http_session_unref(r->s);
    ll_free(r);
}

/* Parser callbacks: arg is the response; r->q is the request while it runs (NULL once a streamed
 * response is handed over). */
static int on_headers(void *arg, ll__http_parser *p, char *err) {
    ll_http_response *r = arg;
    ll__http_req *q = r->q;
    r->status = ll__http_parser_status(p);
    r->version = ll__http_parser_version(p);
    if (!(r->reason = ll__http_parser_take_reason(p)) ||
        !(r->headers = ll__http_parser_take_headers(p)))
        return ll__http_errf(err, LL_ENOMEM, "out of memory reading the response head");
    if (q && q->s->jar && !q->no_cookies) /* every hop's cookies, redirects included */
        ll__http_jar_store(q->s->jar, &q->url, r->headers, (double)time(NULL));
    if (q && q->max_redirects >= 0 && ll__http_is_redirect(r->status) &&
        ll_http_headers_get(r->headers, "location")) {
        r->drain = true;
        return 0;
    }
    bool nobody = (q && ll__http_method_is(q->method, "HEAD")) || r->status == 204 ||
                  r->status == 304;
    if (nobody) return 0;
    /* Room for a Content-Length body up front (at most 1 MiB: a declared length is only a
     * promise, and memory should follow the bytes that really arrive; see pump()). */
    uint64_t left = ll__http_parser_identity_left(p);
    size_t want = left < (1u << 20) ? (size_t)left : (1u << 20);
    if (left && !r->streamed && !r->discard && !r->body.data)
        ll__http_body_get(r->s, &r->body, want); /* a warm buffer: no page faults */
    if (left && !r->streamed && !r->discard && ll__hbuf_reserve_exact(&r->body, want))
        return ll__http_errf(err, LL_ENOMEM, "out of memory for a %llu-byte body",
                             (unsigned long long)left);
    if (q ? q->no_decompress : r->s->no_decompress) return 0;
    r->slice_start = ll_now();
    /* Content-Encoding may be split over several header lines: they form one list */
    ll__hbuf ce = {0};
    size_t it = 0;
    const char *v;
    while ((v = ll_http_headers_next(r->headers, "content-encoding", &it))) {
        if ((ce.len && ll__hbuf_appends(&ce, ", ")) || ll__hbuf_appends(&ce, v)) {
            ll__hbuf_free(&ce);
            return ll__http_errf(err, LL_ENOMEM, "out of memory");
        }
    }
    int rc = 0;
    if (ce.len)
        rc = ll__http_decoder_new(&r->dec, ce.data, q ? q->lim.max_encodings : 0,
                                  q ? q->lim.max_decoded : 0, err);
    ll__hbuf_free(&ce);
    return rc;
}

static int on_body(void *arg, const char *data, size_t n, char *err) {
    ll_http_response *r = arg;
    if (r->drain) return 0;
    if (r->dec) return ll__http_decoder_feed(r->dec, data, n, sink, r, err);
    return sink(r, data, n, err);
}

/* ---- failures ---- */

static int rfail(ll_http_response *r, int code, const char *fmt, ...) LL_PRINTF(3, 4);
static int rfail(ll_http_response *r, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *detail = ll_vformat(fmt, ap);
    va_end(ap);
    ll_free(r->errmsg);
    /* the prefix names the request: from the request while it runs, else kept at hand-over */
    if (r->q)
        r->errmsg = ll_format("%s %s: %s", r->q->method, r->q->url.href, detail ? detail : "");
    else
        r->errmsg = ll_format("%s: %s", r->prefix ? r->prefix : "http", detail ? detail : "");
    ll_free(detail);
    r->err = code;
    return code;
}

/* Await f for request q (NULL for a streamed body read after the request ended), within a phase
 * that ends at `phase_end`. */
static int await_in(ll__http_req *q, ll_future *f, ll_time phase_end, bool *expired) {
    ll_scope sc;
    ll_scope_enter(&sc, phase_end);
    if (q) q->waiting = f;
    int rc = ll_await(f);
    if (q) q->waiting = NULL;
    *expired = ll_scope_exit(&sc) == LL_ETIMEDOUT;
    return rc;
}

static ll_time after(double seconds) { return seconds < 0 ? LL_NEVER : ll_now() + seconds; }

/* ---- reading ---- */

enum { UNTIL_HEAD, UNTIL_DATA, UNTIL_END, UNTIL_CONTINUE };

/* Bytes of the response arrived: count them for the low-speed limit. */
static void got_bytes(ll_http_response *r, size_t n) {
    if (!r->got_first) {
        r->got_first = true;
        r->t.first_byte = ll_now() - r->t_written;
    }
    r->low_bytes += n;
}

/* The low-speed window ended: 0 when enough arrived (a new window starts), else a failure. */
static int low_speed_check(ll_http_response *r, ll_stream *st) {
    ll_time now = ll_now();
    double elapsed = now - r->low_start;
    if ((double)r->low_bytes < r->low_limit * elapsed)
        return rfail(r, LL_EHTTP_TIMEOUT_READ, "too slow: %llu bytes from %s in %.3g s (the "
                     "low-speed limit is %.6g bytes/s over %.3g s)",
                     (unsigned long long)r->low_bytes, ll_stream_peer(st), elapsed, r->low_limit,
                     r->low_time);
    r->low_start = now;
    r->low_bytes = 0;
    return 0;
}

/* Feed what the connection has to the parser, waiting for more as needed, until the head is
 * complete (UNTIL_HEAD), some body is available (UNTIL_DATA, streaming) or the response is complete
 * (UNTIL_END). *stale is set when the connection ended before any byte of the response. */
static int pump(ll__http_req *q, ll_http_response *r, int until, bool *stale) {
    ll_stream *st = r->conn->s;
    if (stale) *stale = false;
    for (;;) {
        size_t avail;
        const char *d = ll_stream_peek(st, &avail);
        if (avail) {
            got_bytes(r, avail);
            size_t used;
            int rc = ll__http_parser_feed(r->parser, d, avail, &used);
            ll_stream_consume(st, used);
            if (rc) return rfail(r, rc, "%s", ll__http_parser_errmsg(r->parser));
            if (ll__http_parser_done(r->parser)) {
                if (used < avail) r->leftover = true; /* bytes after the response: not reusable */
                return 0;
            }
            if (until == UNTIL_HEAD && ll__http_parser_headers_done(r->parser)) return 0;
            if (until == UNTIL_DATA && r->body.len > 0) return 0;
        }
        if (until == UNTIL_CONTINUE && (ll__http_parser_headers_done(r->parser) ||
                                        ll__http_parser_interim_status(r->parser) == 100))
            return 0;
        bool started = ll__http_parser_started(r->parser);
        double phase = started ? r->idle_read : r->first_byte;
        /* the phase's own end, then the head deadline and the low-speed window if sooner */
        ll_time phase_end = after(phase), end = phase_end;
        bool in_head = !ll__http_parser_headers_done(r->parser);
        if (in_head && r->head_end < end) end = r->head_end;
        ll_time low_end = r->low_limit > 0 ? r->low_start + r->low_time : LL_NEVER;
        if (low_end < end) end = low_end;
        /* A Content-Length body with room reserved for it: let the stream read straight into
         * the body buffer, then show those bytes to the parser where they lie (sink() sees them in
         * place and only counts them). One copy instead of two, no buffer growth. */
        char *direct = NULL;
        size_t room = 0;
        if (!r->dec && !r->discard && !r->drain && !r->streamed) {
            uint64_t left = ll__http_parser_identity_left(r->parser);
            ll__hbuf *b = &r->body;
            size_t want = left < 65536 ? (size_t)left : 65536;
            if (left && b->data && b->cap - b->len - 1 < want) {
                /* grow with what arrived (doubling), never past what is still to come */
                size_t more = b->len > want ? b->len : want;
                if (more > left) more = (size_t)left;
                if (ll__hbuf_reserve_exact(b, more)) return rfail(r, LL_ENOMEM, "out of memory");
            }
            if (left && b->data && b->cap - b->len - 1 >= 4096) {
                room = b->cap - b->len - 1;
                if (room > left) room = (size_t)left;
                direct = b->data + b->len;
            }
        }
        ll_future *f = direct ? ll_stream_read(st, direct, room) : ll_stream_fill(st);
        bool expired;
        int rc = await_in(q, f, end, &expired);
        if (rc == 0) {
            if (direct) {
                size_t got = (size_t)(uintptr_t)ll_future_value(f), used;
                ll_future_free(f);
                got_bytes(r, got);
                rc = ll__http_parser_feed(r->parser, direct, got, &used);
                if (rc) return rfail(r, rc, "%s", ll__http_parser_errmsg(r->parser));
                if (ll__http_parser_done(r->parser)) return 0;
                continue;
            }
            ll_future_free(f);
            continue;
        }
        if (rc == LL_EOF) {
            ll_future_free(f);
            rc = ll__http_parser_eof(r->parser);
            if (rc == 0) return 0; /* a close-delimited body ended */
            if (rc == LL_EHTTP_STALE && stale) *stale = true;
            return rfail(r, rc, "%s (%s)", ll__http_parser_errmsg(r->parser), ll_stream_peer(st));
        }
        if (expired) {
            ll_future_free(f);
            ll_time now = ll_now();
            if (now >= low_end) {
                if ((rc = low_speed_check(r, st))) return rc;
                if (now < phase_end && !(in_head && now >= r->head_end)) continue;
            }
            if (in_head && now >= r->head_end && r->head_end < phase_end)
                return rfail(r, LL_EHTTP_TIMEOUT_FIRST_BYTE, "the response head from %s was not "
                             "complete within %.3g s", ll_stream_peer(st), r->head_time);
            if (!started)
                return rfail(r, LL_EHTTP_TIMEOUT_FIRST_BYTE,
                             "no response from %s within %.3g s", ll_stream_peer(st), phase);
            return rfail(r, LL_EHTTP_TIMEOUT_READ, "nothing received from %s for %.3g s",
                         ll_stream_peer(st), phase);
        }
        if (rc == LL_ETIMEDOUT) {
            ll_future_free(f);
            return rfail(r, LL_ETIMEDOUT, "timed out (the request's deadline passed%s)",
                         started ? " while reading the response" : " waiting for the response");
        }
        if (rc == LL_ECANCELED) {
            ll_future_free(f);
            if (q && q->s->closed) return rfail(r, LL_ECLOSED, "the session was closed");
            return rfail(r, LL_ECANCELED, "cancelled");
        }
        if (!started && stale && (rc == LL_ECONNRESET || rc == LL_ETRUNCATED || rc == LL_EPIPE))
            *stale = true;
        rc = rfail(r, rc, "%s", ll_future_errmsg(f));
        ll_future_free(f);
        return rc;
    }
}

/* The body is complete: check the decoder reached its end, give the connection back. */
static int finish_body(ll_http_response *r) {
    if (r->dec) {
        char err[LL__HTTP_ERRLEN] = "";
        int rc = ll__http_decoder_finish(r->dec, sink, r, err);
        if (rc) {
            release_conn(r, false);
            return rfail(r, rc, "%s", err);
        }
    }
    r->done = true;
    release_conn(r, true);
    r->t.total = ll_now() - r->start;
    return 0; /* r->s stays: the body buffer goes back to the session's cache at the free */
}

/* ---- writing ---- */

static int write_all(ll__http_req *q, ll_http_response *r, const void *data, size_t n) {
    ll_future *f = ll_stream_write(r->conn->s, data, n);
    bool expired;
    int rc = await_in(q, f, after(q->to.idle_read), &expired);
    if (rc) {
        if (expired)
            rc = rfail(r, LL_EHTTP_TIMEOUT_READ, "could not write to %s for %.3g s",
                       ll_stream_peer(r->conn->s), q->to.idle_read);
        else if (rc == LL_ECANCELED && q->s->closed)
            rc = rfail(r, LL_ECLOSED, "the session was closed");
        else if (rc == LL_ECANCELED || rc == LL_ETIMEDOUT) rc = rfail(r, rc, "%s", ll_strerror(rc));
        else rc = rfail(r, rc, "%s", ll_future_errmsg(f));
    }
    ll_future_free(f);
    return rc;
}

/* The head is written: the response clocks start. */
static void mark_written(ll__http_req *q, ll_http_response *r) {
    r->t_written = ll_now();
    r->head_end = q->to.head < 0 ? LL_NEVER : r->t_written + q->to.head;
    r->low_start = r->t_written;
    r->low_bytes = 0;
}

/* Expect: 100-continue. *go: send the body (100 came, or nothing within continue_wait); false
 * when a final status came first (the body is never sent, the connection is not reused). */
static int wait_continue(ll__http_req *q, ll_http_response *r, bool *go) {
    *go = true;
    ll_scope sc;
    ll_scope_enter(&sc, after(q->to.continue_wait));
    int rc = pump(q, r, UNTIL_CONTINUE, NULL);
    bool expired = ll_scope_exit(&sc) == LL_ETIMEDOUT;
    if (rc && expired && rc == LL_ETIMEDOUT) { /* no answer: send the body anyway (RFC 9110 10.1.1) */
        r->err = 0;
        ll_free(r->errmsg);
        r->errmsg = NULL;
        return 0;
    }
    if (rc) return rc;
    if (ll__http_parser_headers_done(r->parser)) {
        *go = false;
        r->leftover = true; /* the server may still expect the body: never reuse the connection */
    }
    return 0;
}

static int send_request(ll__http_req *q, ll_http_response *r) {
    ll_http_session *s = q->s;
    const ll__http_profile *pf = &s->profiles[q->profile];
    bool proxied = pf->has_proxy && !q->url.tls;
    int mode = q->body_fn ? LL__BODY_CHUNKED : q->has_body ? LL__BODY_LENGTH : LL__BODY_NONE;
    bool wants_length = ll__http_method_is(q->method, "POST") ||
                        ll__http_method_is(q->method, "PUT") ||
                        ll__http_method_is(q->method, "PATCH");
    if (mode == LL__BODY_NONE && wants_length) mode = LL__BODY_LENGTH;
    uint64_t clen = q->mp ? ll__http_multipart_length(q->mp) : q->body.len;
    bool expect = q->expect_continue && (mode == LL__BODY_CHUNKED || clen > 0);
    char err[LL__HTTP_ERRLEN];
    ll__hbuf cookie = {0};
    if (s->jar && !q->no_cookies &&
        ll__http_jar_header(s->jar, &q->url, (double)time(NULL), &cookie)) {
        ll__hbuf_free(&cookie);
        return rfail(r, LL_ENOMEM, "out of memory");
    }
    ll__http_req_head head = {
        .method = q->method, .url = &q->url, .absolute_form = proxied, .headers = q->headers,
        .user_agent = q->ua_set ? q->user_agent : s->user_agent,
        .accept_encoding = q->no_decompress ? NULL : "gzip, deflate",
        .authorization = q->auth, .proxy_authorization = proxied ? pf->proxy_auth : NULL,
        .content_type = q->content_type, .body_mode = mode, .content_length = clen,
        .cookie = cookie.len ? cookie.data : NULL, .expect_continue = expect};
    ll__hbuf *out = &r->conn->out; /* the connection's scratch buffer: no allocation per request */
    out->len = 0;
    int rc = ll__http_request_write(out, &head, err);
    ll__hbuf_free(&cookie);
    if (rc) return rfail(r, rc, "%s", err);
    bool inline_body = mode == LL__BODY_LENGTH && !q->mp && !expect && q->body.len <= INLINE_BODY;
    if (inline_body && q->body.len && ll__hbuf_append(out, q->body.data, q->body.len))
        return rfail(r, LL_ENOMEM, "out of memory");
    s->stats.requests++;
    rc = write_all(q, r, out->data, out->len); /* the stream copies */
    if (out->cap > 65536) ll__hbuf_free(out); /* do not keep a big body's worth around */
    if (rc) return rc;
    mark_written(q, r);
    if (inline_body || mode == LL__BODY_NONE) return 0;
    if (expect) {
        bool go;
        if ((rc = wait_continue(q, r, &go)) || !go) return rc;
    }
    if (q->mp) {
        if ((rc = ll__http_multipart_rewind(q->mp, err))) return rfail(r, rc, "%s", err);
        ll__hbuf *buf = &r->conn->out;
        if (ll__hbuf_reserve(buf, 65536)) return rfail(r, LL_ENOMEM, "out of memory");
        for (;;) {
            size_t n;
            if ((rc = ll__http_multipart_read(q->mp, buf->data, 65536, &n, err)))
                return rfail(r, rc, "%s", err);
            if (n == 0) break;
            if ((rc = write_all(q, r, buf->data, n))) return rc;
        }
        return 0;
    }
    if (mode == LL__BODY_LENGTH) return write_all(q, r, q->body.data, q->body.len);
    for (;;) {
        const void *data = NULL;
        size_t n = 0;
        rc = q->body_fn(q->body_arg, &data, &n);
        if (rc) return rfail(r, rc, "the request body callback failed: %s", ll_strerror(rc));
        ll__hbuf chunk = {0};
        if (ll__http_chunk_write(&chunk, data, n)) {
            ll__hbuf_free(&chunk);
            return rfail(r, LL_ENOMEM, "out of memory");
        }
        rc = write_all(q, r, chunk.data, chunk.len);
        ll__hbuf_free(&chunk);
        if (rc || n == 0) return rc;
    }
}

/* ---- one hop ---- */

static ll_http_response *response_new(ll__http_req *q) {
    ll_http_response *r = ll_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->q = q;
    r->s = q->s;
    ll__http_session_ref(q->s);
    r->start = q->start;
    r->streamed = q->stream;
    r->discard = q->discard;
    r->first_byte = q->to.first_byte;
    r->idle_read = q->to.idle_read;
    r->head_time = q->to.head;
    r->low_limit = q->to.low_speed_limit;
    r->low_time = q->to.low_speed_time;
    if (r->low_time <= 0) r->low_limit = -1; /* no window: no low-speed limit */
    r->deadline = q->to.total < 0 ? LL_NEVER : q->start + q->to.total;
    return r;
}

/* Acquire a connection for q's origin into r->conn. */
static int acquire(ll__http_req *q, ll_http_response *r, bool want_fresh) {
    ll_http_session *s = q->s;
    if (s->closed) return rfail(r, LL_ECLOSED, "the session was closed");
    const char *key = q->key;
    ll_time t0 = ll_now();
    ll_time end = after(q->to.pool_wait);
    int rc = 0;
    bool idem = ll__http_method_idempotent(q->method);
    for (unsigned tries = 0;; tries++) {
        s->connect_to = &q->to; /* a connect started for this acquire uses our timeouts */
        ll_future *f = ll_pool_acquire(s->pool, key);
        s->connect_to = NULL;
        bool expired;
        rc = await_in(q, f, end, &expired);
        if (rc == 0) {
            r->conn = ll_future_value(f);
            ll_future_free(f);
            if (want_fresh && r->conn->uses > 0 && tries < s->max_per_host + 1) {
                ll_pool_discard(s->pool, r->conn); /* see the top: stale siblings */
                r->conn = NULL;
                continue;
            }
            /* A request that must not be retried never goes out on a connection whose FIN (or
             * anything else) has already arrived: the pool's check skips the syscall for
             * connections idle under a millisecond, so look now: ll_stream_alive costs one
             * recv(MSG_PEEK) and is false after a FIN, an error or unasked bytes. */
            if (!idem && r->conn->uses > 0 && !ll_stream_alive(r->conn->s)) {
                ll_pool_discard(s->pool, r->conn);
                r->conn = NULL;
                continue;
            }
            break;
        }
        if (expired)
            rc = rfail(r, LL_EHTTP_TIMEOUT_POOL, "no connection to %s from the pool within %.3g s",
                       key, q->to.pool_wait);
        else if (rc == LL_EPOOLCLOSED || (rc == LL_ECANCELED && s->closed))
            rc = rfail(r, LL_ECLOSED, "the session was closed");
        else if (rc == LL_ECANCELED)
            rc = rfail(r, rc, "cancelled");
        else if (rc == LL_ETIMEDOUT && ll_future_code(f) == LL_ECANCELED)
            /* the deadline cut the wait (f was cancelled; its message would say just that) */
            rc = rfail(r, rc, "timed out (the deadline passed waiting for a connection)");
        else rc = rfail(r, rc, "%s", ll_future_errmsg(f));
        ll_future_free(f);
        break;
    }
    if (rc) return rc;
    double waited = ll_now() - t0;
    ll__http_conn *c = r->conn;
    r->t.reused = c->uses > 0;
    if (!r->t.reused) {
        r->t.dns = c->dns;
        r->t.connect = c->connect;
        r->t.tls = c->tls;
        waited -= c->dns + c->connect + c->tls;
    } else {
        s->stats.reused++;
    }
    r->t.pool_wait = waited > 0 ? waited : 0;
    r->ci.id = c->id;
    r->ci.local_port = c->local_port;
    r->ci.reused = r->t.reused;
    r->ci.requests = c->uses + 1;
    return 0;
}

/* Send q and read the response head (and, unless streaming or following a redirect, its body). */
static int hop(ll__http_req *q, ll_http_response *r, bool want_fresh, bool *stale,
               bool *connect_failed) {
    *stale = false;
    *connect_failed = false;
    int rc = acquire(q, r, want_fresh);
    if (rc) {
        /* nothing was sent: a connect failure (not our own deadline, cancel or close) */
        *connect_failed = rc != LL_ECANCELED && rc != LL_ETIMEDOUT && rc != LL_ECLOSED &&
                          rc != LL_EHTTP_TIMEOUT_POOL && rc != LL_ENOMEM;
        return rc;
    }
    ll__http_conn *c = r->conn;
    ll__http_parser_cb cb = {on_headers, on_body};
    if (!c->parser) c->parser = ll__http_parser_new(&q->lim, &cb, r);
    else ll__http_parser_rearm(c->parser, &q->lim, &cb, r);
    if (!c->parser) {
        release_conn(r, false);
        return rfail(r, LL_ENOMEM, "out of memory");
    }
    r->parser = c->parser;
    ll__http_parser_start(r->parser, ll__http_method_is(q->method, "HEAD"));
    bool reused = r->conn->uses > 0;
    r->conn->uses++;
    rc = send_request(q, r);
    if (rc) {
        if (reused && (rc == LL_EPIPE || rc == LL_ECONNRESET)) *stale = true;
        release_conn(r, false);
        return rc;
    }
    bool st = false;
    rc = pump(q, r, UNTIL_HEAD, &st);
    if (rc) {
        *stale = st && reused;
        if (rc == LL_EHTTP_STALE && !*stale) rc = r->err = LL_ETRUNCATED; /* a new connection */
        release_conn(r, false);
        return rc;
    }
    if (r->drain || !q->stream) {
        if (!ll__http_parser_done(r->parser)) rc = pump(q, r, UNTIL_END, NULL);
        if (rc) {
            release_conn(r, false);
            return rc;
        }
        return finish_body(r);
    }
    if (ll__http_parser_done(r->parser)) return finish_body(r);
    return 0; /* streaming: the connection stays with the response */
}

/* ---- a whole request ---- */

static int qfail_from(ll__http_req *q, ll_http_response *r, int rc) {
    ll_free(q->errmsg);
    q->errmsg = r && r->errmsg ? r->errmsg : NULL;
    if (r) r->errmsg = NULL;
    if (!q->errmsg) q->errmsg = ll_format("%s %s: %s", q->method, q->url.href, ll_strerror(rc));
    return rc;
}

static int qfail(ll__http_req *q, int rc, const char *fmt, ...) LL_PRINTF(3, 4);
static int qfail(ll__http_req *q, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *detail = ll_vformat(fmt, ap);
    va_end(ap);
    ll_free(q->errmsg);
    q->errmsg = ll_format("%s %s: %s", q->method, q->url.href, detail ? detail : "");
    ll_free(detail);
    return rc;
}

int ll__http_req_run(ll__http_req *q, ll_http_response **out) {
    *out = NULL;
    ll_scope total;
    ll_scope_enter(&total, q->to.total < 0 ? LL_NEVER : q->start + q->to.total);
    ll__http_visited vis = {0};
    char err[LL__HTTP_ERRLEN];
    unsigned redirects = 0;
    bool retried = false, want_fresh = false;
    ll_http_response *r = NULL;
    int rc = 0;
    bool idem = ll__http_method_idempotent(q->method) && !q->body_fn;
    q->attempts = 1;
    while (!rc) {
        r = response_new(q);
        if (!r) {
            rc = qfail(q, LL_ENOMEM, "out of memory");
            break;
        }
        bool stale, connect_failed;
        rc = hop(q, r, want_fresh, &stale, &connect_failed);
        /* the retry policy: a connect failure, or a status it names */
        bool again = idem && q->attempts < q->retry.attempts &&
                     ((rc && connect_failed) ||
                      (!rc && !r->drain && ll__http_retry_status(q, r->status)));
        if (again) {
            const char *ra = rc ? NULL : ll_http_headers_get(r->headers, "retry-after");
            double wait = ll__http_retry_wait(&q->retry, q->attempts, ra, (double)time(NULL));
            if (wait >= 0) {
                ll_http_response_free(r);
                r = NULL;
                q->attempts++;
                q->s->stats.retries++;
                int src = ll_sleep(wait);
                if (src) {
                    rc = qfail(q, src, "%s waiting %.3g s to retry (attempt %u of %u)",
                               src == LL_ETIMEDOUT ? "timed out" : "cancelled", wait, q->attempts,
                               q->retry.attempts);
                    break;
                }
                rc = 0;
                want_fresh = false;
                continue;
            }
        }
        if (rc && stale) {
            if (idem && !retried) {
                retried = want_fresh = true;
                q->s->stats.retries++;
                ll_http_response_free(r);
                r = NULL;
                rc = 0;
                continue;
            }
            if (!idem)
                rc = qfail(q, LL_EHTTP_STALE, "the server closed the reused keep-alive connection "
                           "before answering; not retried (%s is not idempotent)", q->method);
            else rc = qfail_from(q, r, rc);
            break;
        }
        if (rc) {
            rc = qfail_from(q, r, rc);
            break;
        }
        if (!r->drain) break; /* the final response */
        /* a redirect to follow */
        const char *loc = ll_http_headers_get(r->headers, "location");
        bool follow;
        ll__http_redirect rd;
        rc = ll__http_redirect_decide(&q->url, q->method, r->status, loc,
                                      q->has_body || q->body_fn, !q->body_fn,
                                      q->allow_downgrade, &follow, &rd, err);
        if (rc) {
            rc = qfail(q, rc, "%s", err);
            break;
        }
        if (++redirects > (unsigned)q->max_redirects) {
            rc = qfail(q, LL_EHTTP_REDIRECT, "too many redirects (more than %d), the last to %s",
                       q->max_redirects, rd.url.href);
            ll__http_redirect_free(&rd);
            break;
        }
        /* loop detection starts with the first redirect (most requests have none) */
        if (vis.n == 0) rc = ll__http_visited_add(&vis, q->method, q->url.href, err);
        if (!rc) rc = ll__http_visited_add(&vis, rd.method, rd.url.href, err);
        if (rc) {
            rc = qfail(q, rc, "%s", err);
            ll__http_redirect_free(&rd);
            break;
        }
        rc = ll__http_redirect_apply(q, &rd);
        ll__http_redirect_free(&rd);
        if (rc) rc = qfail(q, rc, "out of memory");
        else if ((rc = ll__http_req_route(q, err))) rc = qfail(q, rc, "%s", err);
        ll_http_response_free(r);
        r = NULL;
        retried = want_fresh = false;
    }
    int trc = ll_scope_exit(&total);
    ll__http_visited_free(&vis);
    if (rc) {
        if (rc == LL_ECANCELED && trc == LL_ETIMEDOUT) rc = LL_ETIMEDOUT;
        ll_http_response_free(r);
        return rc;
    }
    r->redirects = redirects;
    r->attempts = q->attempts;
    r->url = ll_strdup(q->url.href);
    if (!r->url) {
        ll_http_response_free(r);
        return qfail(q, LL_ENOMEM, "out of memory");
    }
    if (r->done) r->t.total = ll_now() - q->start;
    if (r->conn && !(r->prefix = ll_format("%s %s", q->method, q->url.href))) {
        ll_http_response_free(r);
        return qfail(q, LL_ENOMEM, "out of memory");
    }
    r->q = NULL; /* the request ends here; a streamed body is read without it */
    *out = r;
    return 0;
}

/* ---- streamed bodies ---- */

int ll_http_response_next(ll_http_response *r, const char **data, size_t *len) {
    if (data) *data = NULL;
    if (len) *len = 0;
    if (!r) return LL_EINVAL;
    if (r->handed) { /* the piece handed out last time is gone now */
        r->body.len = 0;
        if (r->body.data) r->body.data[0] = 0;
        r->handed = false;
    }
    if (!r->streamed) return LL_EOF;
    if (r->err) return r->err;
    for (;;) {
        if (r->body.len > 0) {
            if (data) *data = r->body.data;
            if (len) *len = r->body.len;
            r->handed = true;
            return 0;
        }
        if (r->done || !r->conn) return LL_EOF;
        ll_scope total;
        ll_scope_enter(&total, r->deadline);
        int rc = pump(NULL, r, UNTIL_DATA, NULL);
        ll_scope_exit(&total);
        if (!rc && ll__http_parser_done(r->parser)) rc = finish_body(r);
        if (rc) {
            release_conn(r, false);
            if (r->s) {
                ll__http_session_unref(r->s);
                r->s = NULL;
            }
            return rc;
        }
    }
}
