/*
 * send.c — the entry points that start requests: ll_http_send/get/post. They copy everything the
 * caller passed (so the caller's buffers may go at once), then run the request as a task on the
 * session's loop (exchange.c).
 *
 * Design notes:
 * - Failing to start (bad URL, bad method, bad header, closed session) is a failed future, never a
 *   NULL, so `rc = ll_await(f)` covers everything.
 * - The request's memory is released by a done callback on the task's future, which runs whether
 *   the task ran or was cancelled before it ever started.
 */
#include <string.h>
#include "http_internal.h"

static double pick(double req, double sess) { return req != 0 ? req : sess; }

int ll__http_req_init(ll__http_req *q, ll_http_session *s, const ll_http_request *req,
                      const char *url, char *err) {
    memset(q, 0, sizeof *q);
    q->s = s;
    q->start = ll_now();
    const char *m = req->method ? req->method : "GET";
    if (strlen(m) < sizeof q->method_buf) q->method = strcpy(q->method_buf, m);
    else if (!(q->method = ll_strdup(m))) return ll__http_errf(err, LL_ENOMEM, "out of memory");
    if (!ll__http_is_token(m, strlen(m)))
        return ll__http_errf(err, LL_EINVAL, "invalid method (not an HTTP token)");
    if (!url) url = req->url;
    if (!url) return ll__http_errf(err, LL_EINVAL, "no URL");
    int rc;
    if (s->url_src && strcmp(s->url_src, url) == 0) {
        rc = ll__http_url_copy(&q->url, &s->url_parsed)
                 ? ll__http_errf(err, LL_ENOMEM, "out of memory")
                 : 0;
    } else if ((rc = ll__http_url_parse(&q->url, url, err)) == 0) {
        /* remember it (best effort: without memory, there is just no cache) */
        ll_free(s->url_src);
        ll__http_url_free(&s->url_parsed);
        if ((s->url_src = ll_strdup(url)) && ll__http_url_copy(&s->url_parsed, &q->url)) {
            ll_free(s->url_src);
            s->url_src = NULL;
        }
    }
    if (!rc) rc = ll__http_url_add_query(&q->url, req->query, err);
    if (rc) return rc;
    if (req->headers) {
        /* validated again: the list is the caller's memory */
        for (size_t i = 0; i < req->headers->n; i++) {
            const ll__hdr *x = &req->headers->v[i];
            char e[80];
            if (!ll__http_is_token(x->name, x->nlen) || !ll__http_value_ok(x->value, x->vlen))
                return ll__http_errf(err, LL_EINVAL, "invalid header '%s' (refused)",
                                     ll__http_esc(e, sizeof e, x->name, x->nlen));
        }
        if (!(q->headers = ll_http_headers_copy(req->headers)))
            return ll__http_errf(err, LL_ENOMEM, "out of memory");
    }
    const char *ctype = req->content_type;
    if (req->json) {
        q->has_body = true;
        rc = ll__hbuf_appends(&q->body, req->json);
        ctype = "application/json";
    } else if (req->form) {
        q->has_body = true;
        char *f = ll__http_form_encode(req->form);
        rc = f ? ll__hbuf_appends(&q->body, f) : LL_ENOMEM;
        ll_free(f);
        ctype = "application/x-www-form-urlencoded";
    } else if (req->parts) {
        int mrc = ll__http_multipart_new(&q->mp, req->parts, req->nparts, err);
        if (mrc) return mrc;
        q->has_body = true;
        ctype = ll__http_multipart_content_type(q->mp);
    } else if (req->body_fn) {
        q->body_fn = req->body_fn;
        q->body_arg = req->body_arg;
    } else if (req->body) {
        q->has_body = true;
        rc = ll__hbuf_append(&q->body, req->body, req->body_len);
    }
    if (rc) return ll__http_errf(err, LL_ENOMEM, "out of memory copying the body");
    if (ctype && !ll__http_str_ok(ctype))
        return ll__http_errf(err, LL_EINVAL, "a control character in the Content-Type (refused)");
    if (ctype && !(q->content_type = ll_strdup(ctype)))
        return ll__http_errf(err, LL_ENOMEM, "out of memory");
    const char *user = req->user ? req->user : q->url.user;
    const char *pass = req->user ? req->password : q->url.password;
    /* RFC 7617: neither may hold a control character (nor the user a colon) */
    if (!ll__http_str_ok(user) || !ll__http_str_ok(pass) || (user && strchr(user, ':')))
        return ll__http_errf(err, LL_EINVAL, "a control character (or a colon in the user) in "
                             "the Basic credentials (refused)");
    if (user && !(q->auth = ll__http_basic_auth(user, pass)))
        return ll__http_errf(err, LL_ENOMEM, "out of memory");
    int mr = req->limits.max_redirects;
    q->max_redirects = mr < 0 ? -1 : mr == 0 ? s->lim.max_redirects : mr;
#define TO(f) q->to.f = pick(req->timeouts.f, s->to.f)
    TO(total);
    TO(pool_wait);
    TO(dns);
    TO(connect);
    TO(tls);
    TO(first_byte);
    TO(idle_read);
    TO(head);
    TO(low_speed_limit);
    TO(low_speed_time);
    TO(continue_wait);
#undef TO
    q->lim = s->lim;
#define LIM(f) if (req->limits.f) q->lim.f = req->limits.f
    LIM(max_header_line);
    LIM(max_headers);
    LIM(max_header_bytes);
    LIM(max_body);
    LIM(max_decoded);
    LIM(max_encodings);
    LIM(max_interim);
#undef LIM
    q->stream = req->stream;
    q->expect_continue = req->expect_continue;
    /* overrides of the session's settings */
    if (req->user_agent) {
        if (!ll__http_str_ok(req->user_agent))
            return ll__http_errf(err, LL_EINVAL, "a control character in the user agent "
                                 "(refused)");
        q->ua_set = true;
        if (*req->user_agent && !(q->user_agent = ll_strdup(req->user_agent)))
            return ll__http_errf(err, LL_ENOMEM, "out of memory");
    }
    q->no_decompress = req->decompress ? req->decompress < 0 : s->no_decompress;
    q->allow_downgrade = req->allow_https_to_http ? req->allow_https_to_http > 0
                                                  : s->allow_downgrade;
    q->insecure = req->verify ? req->verify < 0 : s->profiles[0].insecure;
    q->no_cookies = req->no_cookies;
    if (req->ca_file && !(q->ca_file = ll_strdup(req->ca_file)))
        return ll__http_errf(err, LL_ENOMEM, "out of memory");
    if (req->proxy) {
        q->proxy_set = true;
        if (!(q->proxy_opt = ll_strdup(req->proxy)))
            return ll__http_errf(err, LL_ENOMEM, "out of memory");
    }
    q->proxy_env = !req->proxy && (req->proxy_from_env || s->proxy_from_env);
    const ll_http_retry *rp = req->retry ? req->retry : &s->retry;
    q->retry = *rp;
    if (!q->retry.backoff) q->retry.backoff = 0.1;
    if (!q->retry.max_backoff) q->retry.max_backoff = 10;
    if (!q->retry.max_retry_after) q->retry.max_retry_after = 60;
    if (rp->statuses) {
        size_t n = 0;
        while (rp->statuses[n]) n++;
        if (!(q->retry_statuses = ll_calloc(n + 1, sizeof(int))))
            return ll__http_errf(err, LL_ENOMEM, "out of memory");
        memcpy(q->retry_statuses, rp->statuses, n * sizeof(int));
        q->retry.statuses = q->retry_statuses;
    }
    return ll__http_req_route(q, err);
}

int ll__http_req_route(ll__http_req *q, char *err) {
    ll_http_session *s = q->s;
    const ll__http_profile *p0 = &s->profiles[0];
    const char *ca = q->ca_file ? q->ca_file : p0->ca_file;
    char *envp = NULL;
    const char *proxy = p0->proxy_src;
    if (q->proxy_set) proxy = q->proxy_opt;
    else if (q->proxy_env && !(proxy = envp = ll__http_env_proxy(&q->url)))
        return ll__http_errf(err, LL_ENOMEM, "out of memory");
    if (proxy && !*proxy) proxy = NULL;
    int rc = 0;
    q->profile = 0;
    bool same_proxy = (!proxy && !p0->has_proxy) ||
                      (proxy && p0->proxy_src && strcmp(proxy, p0->proxy_src) == 0);
    bool same_ca = (!ca && !p0->ca_file) || (ca && p0->ca_file && strcmp(ca, p0->ca_file) == 0);
    if (!same_proxy || !same_ca || q->insecure != p0->insecure)
        rc = ll__http_profile_get(s, ca, q->insecure, proxy, &q->profile, err);
    ll_free(envp);
    if (rc) return rc;
    int n = q->profile ? snprintf(q->key, sizeof q->key, "%s#%u", q->url.key, q->profile)
                       : snprintf(q->key, sizeof q->key, "%s", q->url.key);
    if (n < 0 || (size_t)n >= sizeof q->key)
        return ll__http_errf(err, LL_EINVAL, "host name too long");
    return 0;
}

void ll__http_req_clear(ll__http_req *q) {
    if (q->method != q->method_buf) ll_free(q->method);
    ll__http_url_free(&q->url);
    ll_http_headers_free(q->headers);
    ll__hbuf_free(&q->body);
    ll_free(q->content_type);
    if (q->auth) memset(q->auth, 0, strlen(q->auth));
    ll_free(q->auth);
    ll_free(q->user_agent);
    ll_free(q->ca_file);
    ll_free(q->proxy_opt);
    ll_free(q->retry_statuses);
    ll__http_multipart_free(q->mp);
    ll_free(q->errmsg);
    memset(q, 0, sizeof *q);
}

static void link_req(ll__http_req *q) {
    ll_http_session *s = q->s;
    q->prev = NULL;
    q->next = s->reqs;
    if (s->reqs) s->reqs->prev = q;
    s->reqs = q;
}

static void unlink_req(ll__http_req *q) {
    ll_http_session *s = q->s;
    if (q->prev) q->prev->next = q->next;
    else if (s->reqs == q) s->reqs = q->next;
    if (q->next) q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void value_free(void *v) { ll_http_response_free(v); }

static int request_task(void *arg) {
    ll__http_req *q = arg;
    link_req(q);
    ll_http_response *r;
    int rc = ll__http_req_run(q, &r);
    unlink_req(q);
    if (rc) return ll_task_fail(rc, "%s", q->errmsg ? q->errmsg : ll_strerror(rc));
    ll_task_return(r, value_free);
    return 0;
}

static void request_done(ll_future *f, void *arg) {
    (void)f;
    ll__http_req *q = arg;
    ll_http_session *s = q->s;
    ll__http_req_clear(q);
    ll_free(q);
    ll__http_session_unref(s);
}

/* An already-failed future naming the request. The method and URL are the caller's, maybe the very
 * reason for the failure ("GET /x HTTP/1.1\r\nX-Injected: yes"): escaped, never echoed raw. */
static ll_future *failed(ll_loop *loop, int code, const char *method, const char *url,
                         const char *msg) {
    char m[64], u[208];
    ll_future *f = ll_future_failed(loop, code, "%s %s: %s", method ? LL__HTTP_ESC(m, method) : "GET",
                                    url ? LL__HTTP_ESC(u, url) : "(no URL)", msg);
    if (f) ll_future_set_label(f, "http request");
    return f;
}

ll_future *ll_http_send(ll_http_session *s, const ll_http_request *req) {
    LL_REQUIRE_ARG(s, "session");
    LL_REQUIRE_ARG(req, "req");
    if (s->closed)
        return failed(s->loop, LL_ECLOSED, req->method, req->url, "the session is closed");
    ll__http_req *q = ll_calloc(1, sizeof *q);
    if (!q) return NULL;
    char err[LL__HTTP_ERRLEN] = "";
    int rc = ll__http_req_init(q, s, req, NULL, err);
    if (rc) {
        ll__http_req_clear(q);
        ll_free(q);
        return failed(s->loop, rc, req->method, req->url, err);
    }
    ll_spawn_opts o = {.loop = s->loop, .name = NULL};
    ll_future *f = ll_spawn_ex(request_task, q, &o);
    if (f && ll_future_add_done(f, request_done, q) == 0) {
        ll__http_session_ref(s);
        ll_future_set_label(f, "http request");
        return f;
    }
    /* no future, or no room for the callback: the task never gets to run with q */
    if (f) {
        ll_future_cancel(f);
        ll_future_free(f);
    }
    ll__http_req_clear(q);
    ll_free(q);
    return NULL;
}

ll_future *ll_http_get(ll_http_session *s, const char *url) {
    LL_REQUIRE_ARG(s, "session");
    LL_REQUIRE_ARG(url, "url");
    ll_http_request r = {.method = "GET", .url = url};
    return ll_http_send(s, &r);
}

ll_future *ll_http_post(ll_http_session *s, const char *url, const char *content_type,
                        const void *body, size_t len) {
    LL_REQUIRE_ARG(s, "session");
    LL_REQUIRE_ARG(url, "url");
    ll_http_request r = {.method = "POST", .url = url, .content_type = content_type,
                         .body = body ? body : "", .body_len = body ? len : 0};
    return ll_http_send(s, &r);
}

/* The response's destructor is the type tag (ll_future_value_as): only a request's future has it. */
ll_http_response *ll_http_response_of(const ll_future *f) {
    return ll_future_value_as(f, value_free);
}
