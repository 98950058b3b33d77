/*
 * session.c — the adapter's long-lived half: sessions, their connection pool, and making
 * connections (DNS, TCP, proxy tunnel, TLS) phase by phase.
 *
 * Design notes:
 * - One libloop pool per session, keyed by origin ("https://host:port") and, when a request
 *   overrides what a connection is (CA file, verification, proxy), by its connection profile
 *   ("https://host:port#2", profile.c); two sessions never share connections.
 * - Connects are the pool's work: the pool calls pool_connect() detached from any request, and we
 *   run the phases in a task of their own so each has its own timeout and error code. The phase
 *   timeouts are those of the request whose acquire started the connect (the pool starts it from
 *   inside ll_pool_acquire, while s->connect_to points at them), else the session's: the lookup
 *   (ll_resolve, which fills the loop's DNS cache), the TCP connect (ll_stream_connect, whose own
 *   lookup then hits the cache), the CONNECT tunnel when an https origin goes through a proxy, and
 *   the TLS handshake (ll_stream_starttls). The phase durations stay with the connection, and the
 *   first request on it reports them.
 * - Liveness at acquire (is_alive): the stream is open, the peer has not closed it, and nothing is
 *   waiting to be read — an idle HTTP/1.1 connection that has bytes to read holds garbage or a
 *   response to nobody, and must not carry a request.
 * - Lifetime: the session is reference counted (the user, each request in flight, each response
 *   not yet freed — its body buffer comes back to the session's cache —, each connect in
 *   progress). ll_http_session_free() closes the
 *   pool and cuts the waits of requests in flight (they fail with LL_ECLOSED); the memory goes with
 *   the last reference. The pool's close callback never touches the session, because the pool may
 *   outlive it while lent connections come back.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "http_internal.h"
#include "libloop/dns.h"
#include "libloop/tls.h"

/* ---- connections ---- */

static void conn_free(void *p) {
    ll__http_conn *c = p;
    if (!c) return;
    ll_stream_close(c->s);
    ll__http_parser_free(c->parser);
    ll__hbuf_free(&c->out);
    ll_free(c);
}

static void pool_close(void *arg, void *conn) {
    (void)arg;
    conn_free(conn);
}

/* Called by the pool on every acquire of an idle connection. A plain connection costs one
 * non-blocking recv(MSG_PEEK): EAGAIN means open and silent (alive); 0 means the peer closed it;
 * a byte means unexpected input. That syscall is skipped for a connection back in the pool for
 * less than a millisecond (the common case under load): a close that recent would race the
 * request anyway, and the stale keep-alive retry covers that race. TLS connections go through
 * ll_stream_alive, which lets OpenSSL look at what arrived (session tickets, close_notify). */
static bool pool_is_alive(void *arg, void *conn) {
    (void)arg;
    ll__http_conn *c = conn;
    size_t buffered;
    ll_stream_peek(c->s, &buffered);
    if (buffered || ll_stream_at_eof(c->s) || ll_stream_fd(c->s) < 0) return false;
    if (ll_stream_is_tls(c->s)) {
        if (!ll_stream_alive(c->s)) return false;
        ll_stream_peek(c->s, &buffered);
        return buffered == 0;
    }
    if (ll_now() - c->idle_since < 0.001) return true;
    char b;
    ssize_t r = recv(ll_stream_fd(c->s), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

typedef struct connect_job {
    ll_http_session *s;
    char *host;
    uint16_t port;
    bool tls;
    unsigned profile;
    ll_http_timeouts to; /* the acquiring request's (dns, connect, tls), else the session's */
} connect_job;

/* Await f inside a scope of `seconds` (< 0: none). Returns the await's code; *phase_expired says
 * whether this scope's own deadline cut it. */
static int await_phase(ll_future *f, double seconds, bool *phase_expired) {
    ll_scope sc;
    ll_scope_enter(&sc, seconds < 0 ? LL_NEVER : ll_deadline_in(seconds));
    int rc = ll_await(f);
    *phase_expired = ll_scope_exit(&sc) == LL_ETIMEDOUT;
    return rc;
}

/* The CONNECT exchange with the proxy, on the plain stream. */
static int tunnel(connect_job *j, ll_stream *st, ll__http_url *target, double seconds) {
    ll_http_session *s = j->s;
    const ll__http_profile *pf = &s->profiles[j->profile];
    char err[LL__HTTP_ERRLEN];
    ll__hbuf req = {0};
    int rc = ll__http_connect_write(&req, target, pf->proxy_auth, err);
    if (rc) return ll_task_fail(rc, "proxy %s: %s", pf->proxy.href, err);
    ll_future *w = ll_stream_write(st, req.data, req.len);
    ll__hbuf_free(&req);
    bool expired = false;
    rc = ll_await(w);
    if (rc) {
        rc = ll_task_fail_from(w);
        ll_future_free(w);
        return rc;
    }
    ll_future_free(w);
    ll__http_parser *p = ll__http_parser_new(&s->lim, NULL, NULL);
    if (!p) return ll_task_fail(LL_ENOMEM, "out of memory");
    ll__http_parser_start(p, true); /* a 2xx answer to CONNECT has no body */
    ll_time end = seconds < 0 ? LL_NEVER : ll_now() + seconds;
    while (!ll__http_parser_done(p)) {
        size_t avail, used;
        const char *d = ll_stream_peek(st, &avail);
        if (avail) {
            rc = ll__http_parser_feed(p, d, avail, &used);
            ll_stream_consume(st, used);
            if (rc) break;
            if (ll__http_parser_done(p)) break;
        }
        ll_future *f = ll_stream_fill(st);
        ll_scope sc;
        ll_scope_enter(&sc, end);
        rc = ll_await(f);
        expired = ll_scope_exit(&sc) == LL_ETIMEDOUT;
        if (rc == LL_EOF) rc = ll__http_parser_eof(p);
        if (rc) {
            if (expired)
                rc = ll_task_fail(LL_EHTTP_TIMEOUT_TLS, "proxy %s: no answer to CONNECT within "
                                  "%.3g s", pf->proxy.href, seconds);
            else if (ll__http_parser_errmsg(p)[0])
                rc = ll_task_fail(rc, "proxy %s: %s", pf->proxy.href, ll__http_parser_errmsg(p));
            else rc = ll_task_fail_from(f);
            ll_future_free(f);
            ll__http_parser_free(p);
            return rc;
        }
        ll_future_free(f);
    }
    if (rc) {
        rc = ll_task_fail(rc, "proxy %s: %s", pf->proxy.href, ll__http_parser_errmsg(p));
    } else {
        int st_code = ll__http_parser_status(p);
        if (st_code < 200 || st_code > 299)
            rc = ll_task_fail(LL_EHTTP_STATUS, "proxy %s refused CONNECT to %s:%u: %d %s",
                              pf->proxy.href, target->host, target->port, st_code,
                              ll__http_parser_reason(p));
    }
    ll__http_parser_free(p);
    return rc;
}

static int connect_task(void *arg) {
    connect_job *j = arg;
    ll_http_session *s = j->s;
    const ll_http_timeouts *to = &j->to;
    const ll__http_profile *pf = &s->profiles[j->profile];
    const char *host = pf->has_proxy ? pf->proxy.host : j->host;
    uint16_t port = pf->has_proxy ? pf->proxy.port : j->port;
    ll__http_conn *c = ll_calloc(1, sizeof *c);
    if (!c) return ll_task_fail(LL_ENOMEM, "out of memory connecting to %s:%u", host, port);
    bool expired;
    int rc;
    /* DNS */
    ll_time t0 = ll_now();
    ll_future *f = ll_resolve(host, port, &(ll_resolve_opts){.loop = s->loop});
    rc = await_phase(f, to->dns, &expired);
    c->dns = ll_now() - t0;
    if (rc) {
        if (expired)
            rc = ll_task_fail(LL_EHTTP_TIMEOUT_DNS, "resolve %s: no answer within %.3g s", host,
                              to->dns);
        else rc = ll_task_fail_from(f);
        ll_future_free(f);
        ll_free(c);
        return rc;
    }
    ll_future_free(f);
    /* TCP */
    t0 = ll_now();
    ll_stream_opts co = {.connect_timeout = to->connect}; /* < 0: none, as ours */
    f = ll_stream_connect(host, port, &co);
    rc = ll_await(f);
    c->connect = ll_now() - t0;
    if (rc) {
        int code = rc == LL_ETIMEDOUT ? LL_EHTTP_TIMEOUT_CONNECT : rc;
        rc = ll_task_fail(code, "%s", ll_future_errmsg(f));
        ll_future_free(f);
        ll_free(c);
        return rc;
    }
    c->s = ll_future_take(f);
    ll_future_free(f);
    /* proxy tunnel and TLS */
    if (j->tls) {
        t0 = ll_now();
        if (pf->has_proxy) {
            ll__http_url target = {.host = j->host, .port = j->port, .tls = true,
                                   .ipv6 = strchr(j->host, ':') != NULL};
            rc = tunnel(j, c->s, &target, to->tls);
            if (rc) {
                conn_free(c);
                return rc;
            }
        }
        ll_tls_opts tls = {.server_name = j->host, .ca_file = pf->ca_file, .alpn = "http/1.1",
                           .handshake_timeout = to->tls < 0 ? 1e9 : to->tls,
                           .insecure_skip_verify_DANGEROUS = pf->insecure};
        f = ll_stream_starttls(c->s, &tls);
        rc = ll_await(f);
        c->tls = ll_now() - t0;
        if (rc) {
            int code = rc == LL_ETIMEDOUT ? LL_EHTTP_TIMEOUT_TLS : rc;
            rc = ll_task_fail(code, "%s", ll_future_errmsg(f));
            ll_future_free(f);
            conn_free(c);
            return rc;
        }
        ll_future_free(f);
    }
    s->stats.connections++;
    c->id = ++s->conn_seq;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(ll_stream_fd(c->s), (struct sockaddr *)&ss, &sl) == 0)
        c->local_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                                 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    /* the pool takes the value; the destructor only runs if it never does */
    ll_task_return(c, conn_free);
    return 0;
}

static void connect_job_free(ll_future *f, void *arg) {
    (void)f;
    connect_job *j = arg;
    ll__http_session_unref(j->s);
    ll_free(j->host);
    ll_free(j);
}

/* key: "http://host:port" or "https://host:port" (an IPv6 host is bracketed), then "#N" for a
 * profile other than the session's own */
static ll_future *pool_connect(void *arg, const char *key) {
    ll_http_session *s = arg;
    connect_job *j = ll_calloc(1, sizeof *j);
    if (!j) return NULL;
    j->tls = strncmp(key, "https://", 8) == 0;
    const char *h = key + (j->tls ? 8 : 7);
    const char *hash = strchr(h, '#');
    if (hash) j->profile = (unsigned)strtoul(hash + 1, NULL, 10);
    if (j->profile >= s->nprofiles) j->profile = 0;
    j->to = s->connect_to ? *s->connect_to : s->to;
    const char *colon = hash ? hash : h + strlen(h);
    while (colon > h && *colon != ':') colon--;
    size_t hl = (size_t)(colon - h);
    if (h[0] == '[') {
        h++;
        hl -= 2;
    }
    j->host = ll_malloc(hl + 1);
    if (!j->host) {
        ll_free(j);
        return NULL;
    }
    memcpy(j->host, h, hl);
    j->host[hl] = 0;
    j->port = (uint16_t)strtoul(colon + 1, NULL, 10);
    j->s = s;
    ll_spawn_opts o = {.loop = s->loop, .name = "http connect"};
    ll_future *f = ll_spawn_ex(connect_task, j, &o);
    if (!f || ll_future_add_done(f, connect_job_free, j) != 0) {
        /* the task, if any, has not run yet: cancelling it before its start makes it never use j */
        if (f) {
            ll_future_cancel(f);
            ll_future_free(f);
        }
        ll_free(j->host);
        ll_free(j);
        return NULL;
    }
    ll__http_session_ref(s);
    return f;
}

static const ll_pool_vtable http_vt = {pool_connect, pool_is_alive, pool_close, NULL};

/* ---- sessions ---- */

static double dflt(double v, double d) { return v == 0 ? d : v; }

static _Thread_local int new_err;
static _Thread_local char new_msg[LL__HTTP_ERRLEN];

int ll_http_session_error(const char **msg) {
    if (msg) *msg = new_msg;
    return new_err;
}

/* ---- the body-buffer cache ----
 * A buffered body lives in a buffer of its own, handed to the caller with the response. Fresh
 * buffers for large bodies cost page faults on every response (malloc serves them with mmap and
 * free gives them back), which for 1 MiB keep-alive GETs was about a third of the client's CPU.
 * So a freed response's buffer goes back to its session, and the next response with a body takes
 * the smallest cached buffer that fits. Bounded: buffers of at most BODY_CACHE_MAX each, at most
 * one per allowed connection, BODY_CACHE_TOTAL bytes in all; the cache empties when the session
 * is freed. */
#define BODY_CACHE_MAX ((size_t)16 << 20)
#define BODY_CACHE_TOTAL ((size_t)64 << 20)
#define BODY_CACHE_MIN 16384 /* smaller buffers are cheap to allocate */

void ll__http_body_get(ll_http_session *s, ll__hbuf *b, size_t want) {
    if (b->data || want < BODY_CACHE_MIN / 2 || !s->nbody_cache) return;
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < s->nbody_cache; i++)
        if (s->body_cache[i].cap > want &&
            (best == SIZE_MAX || s->body_cache[i].cap < s->body_cache[best].cap))
            best = i;
    if (best == SIZE_MAX) return;
    *b = s->body_cache[best];
    b->len = 0;
    b->data[0] = 0;
    s->body_cache_bytes -= b->cap;
    s->body_cache[best] = s->body_cache[--s->nbody_cache];
}

void ll__http_body_put(ll_http_session *s, ll__hbuf *b) {
    if (!b->data || s->closed || b->cap < BODY_CACHE_MIN || b->cap > BODY_CACHE_MAX) return;
    if (s->nbody_cache >= s->max_connections ||
        s->body_cache_bytes + b->cap > BODY_CACHE_TOTAL)
        return;
    if (!s->body_cache && !(s->body_cache = ll_calloc(s->max_connections, sizeof(ll__hbuf))))
        return;
    s->body_cache[s->nbody_cache++] = *b;
    s->body_cache_bytes += b->cap;
    memset(b, 0, sizeof *b);
}

static void body_cache_free(ll_http_session *s) {
    for (size_t i = 0; i < s->nbody_cache; i++) ll__hbuf_free(&s->body_cache[i]);
    ll_free(s->body_cache);
    s->body_cache = NULL;
    s->nbody_cache = 0;
    s->body_cache_bytes = 0;
}

static void free_parts(ll_http_session *s) {
    body_cache_free(s);
    ll_free(s->user_agent);
    ll_free(s->retry_statuses);
    ll__http_profiles_free(s);
    ll__http_jar_free(s->jar);
}

ll_http_session *ll_http_session_new(const ll_http_session_opts *opts) {
    ll_http_session_opts o = {0};
    if (opts) o = *opts;
    new_err = 0;
    new_msg[0] = 0;
    ll_loop *loop = o.loop ? o.loop : ll_loop_current();
    if (!loop) {
        new_err = ll__http_errf(new_msg, LL_ENOTASK, "ll_http_session_new: no loop (none in "
                                "opts->loop and none current on this thread)");
        return NULL;
    }
    ll_http_session *s = ll_calloc(1, sizeof *s);
    if (!s) goto oom;
    s->loop = loop;
    s->refs = 1;
    s->to.total = dflt(o.timeouts.total, 300);
    s->to.pool_wait = dflt(o.timeouts.pool_wait, 60);
    s->to.dns = dflt(o.timeouts.dns, 10);
    s->to.connect = dflt(o.timeouts.connect, 10);
    s->to.tls = dflt(o.timeouts.tls, 10);
    s->to.first_byte = dflt(o.timeouts.first_byte, 60);
    s->to.idle_read = dflt(o.timeouts.idle_read, 60);
    s->to.head = dflt(o.timeouts.head, 60);
    s->to.low_speed_limit = dflt(o.timeouts.low_speed_limit, -1);
    s->to.low_speed_time = dflt(o.timeouts.low_speed_time, 30);
    s->to.continue_wait = dflt(o.timeouts.continue_wait, 1);
    s->lim = o.limits;
    if (!s->lim.max_header_line) s->lim.max_header_line = LL__HTTP_MAX_HEADER_LINE;
    if (!s->lim.max_headers) s->lim.max_headers = LL__HTTP_MAX_HEADERS;
    if (!s->lim.max_header_bytes) s->lim.max_header_bytes = LL__HTTP_MAX_HEADER_BYTES;
    if (!s->lim.max_body) s->lim.max_body = LL__HTTP_MAX_BODY;
    if (!s->lim.max_decoded) s->lim.max_decoded = LL__HTTP_MAX_BODY;
    if (!s->lim.max_encodings) s->lim.max_encodings = LL__HTTP_MAX_ENCODINGS;
    if (!s->lim.max_redirects) s->lim.max_redirects = LL__HTTP_MAX_REDIRECTS;
    if (s->lim.max_redirects < 0) s->lim.max_redirects = LL_HTTP_NO_REDIRECTS;
    if (!s->lim.max_interim) s->lim.max_interim = LL__HTTP_MAX_INTERIM;
    s->max_connections = o.max_connections ? o.max_connections : 100;
    s->max_per_host = o.max_per_host ? o.max_per_host : s->max_connections;
    s->allow_downgrade = o.allow_https_to_http;
    s->no_decompress = o.no_decompress;
    s->proxy_from_env = o.proxy_from_env && !o.proxy;
    s->retry = o.retry;
    if (o.retry.statuses) {
        size_t n = 0;
        while (o.retry.statuses[n]) n++;
        if (!(s->retry_statuses = ll_calloc(n + 1, sizeof(int)))) goto oom;
        memcpy(s->retry_statuses, o.retry.statuses, n * sizeof(int));
        s->retry.statuses = s->retry_statuses;
    }
    const char *ua = o.user_agent ? o.user_agent : "libloop-http/" LL__HTTP_VERSION;
    if (!ll__http_str_ok(ua)) {
        char e[80];
        new_err = ll__http_errf(new_msg, LL_EINVAL, "ll_http_session_new: a control character "
                                "in the user agent '%s' (refused)", LL__HTTP_ESC(e, ua));
        goto fail;
    }
    if (*ua && !(s->user_agent = ll_strdup(ua))) goto oom;
    unsigned idx;
    char err[LL__HTTP_ERRLEN];
    int rc = ll__http_profile_get(s, o.ca_file, o.insecure_skip_verify_DANGEROUS, o.proxy, &idx,
                                  err);
    if (rc) {
        new_err = ll__http_errf(new_msg, rc, "ll_http_session_new: %s", err);
        goto fail;
    }
    if (o.cookies && !(s->jar = ll__http_jar_new())) goto oom;
    double ct = -1;
    if (s->to.dns >= 0 && s->to.connect >= 0 && s->to.tls >= 0)
        ct = s->to.dns + s->to.connect + 2 * s->to.tls + 1; /* the phases bound it; a backstop */
    ll_pool_opts po = {.name = "http", .loop = loop, .max_per_key = s->max_per_host,
                       .max_total = s->max_connections, .acquire_timeout = -1,
                       .connect_timeout = ct, .max_idle = dflt(o.idle_timeout, 60)};
    s->pool = ll_pool_new(&http_vt, s, &po);
    if (!s->pool) goto oom;
    return s;
oom:
    new_err = ll__http_errf(new_msg, LL_ENOMEM, "ll_http_session_new: out of memory");
fail:
    if (s) free_parts(s);
    ll_free(s);
    return NULL;
}

void ll__http_session_ref(ll_http_session *s) { s->refs++; }

void ll__http_session_unref(ll_http_session *s) {
    if (--s->refs > 0) return;
    ll_free(s->url_src);
    ll__http_url_free(&s->url_parsed);
    free_parts(s);
    ll_free(s);
}

void ll_http_session_free(ll_http_session *s) {
    if (!s || s->closed) return;
    s->closed = true;
    body_cache_free(s); /* responses still out free their own buffers */
    /* cut the waits of requests in flight: each sees the session closed and fails */
    for (ll__http_req *q = s->reqs; q; q = q->next)
        if (q->waiting) ll_future_cancel(q->waiting);
    ll_pool_free(s->pool);
    ll__http_session_unref(s);
}

void ll_http_session_get_stats(const ll_http_session *s, ll_http_stats *out) {
    memset(out, 0, sizeof *out);
    if (!s) return;
    *out = s->stats;
    if (!s->closed) {
        ll_pool_stats ps;
        ll_pool_get_stats(s->pool, &ps);
        out->open = ps.open;
        out->idle = ps.idle;
        out->in_use = ps.in_use;
    }
}

bool ll_http_is_timeout(int code) {
    return code == LL_ETIMEDOUT || (code <= LL_EHTTP_TIMEOUT_DNS && code >= LL_EHTTP_TIMEOUT_READ);
}
