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
            if (!ll__http_is_token(x->name, x->nlen) || strpbrk(x->value, "\r\n"))
                return ll__http_errf(err, LL_EINVAL, "invalid header '%.64s' (refused)", x->name);
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
    } else if (req->body_fn) {
        q->body_fn = req->body_fn;
        q->body_arg = req->body_arg;
    } else if (req->body) {
        q->has_body = true;
        rc = ll__hbuf_append(&q->body, req->body, req->body_len);
    }
    if (rc) return ll__http_errf(err, LL_ENOMEM, "out of memory copying the body");
    if (ctype && (strpbrk(ctype, "\r\n") || !(q->content_type = ll_strdup(ctype))))
        return ll__http_errf(err, strpbrk(ctype, "\r\n") ? LL_EINVAL : LL_ENOMEM,
                             "bad or unallocatable Content-Type");
    const char *user = req->user ? req->user : q->url.user;
    const char *pass = req->user ? req->password : q->url.password;
    if (user && !(q->auth = ll__http_basic_auth(user, pass)))
        return ll__http_errf(err, LL_ENOMEM, "out of memory");
    q->max_redirects = req->max_redirects < 0    ? -1
                       : req->max_redirects == 0 ? (int)s->lim.max_redirects
                                                 : req->max_redirects;
    q->to.total = pick(req->timeouts.total, s->to.total);
    q->to.pool_wait = pick(req->timeouts.pool_wait, s->to.pool_wait);
    q->to.first_byte = pick(req->timeouts.first_byte, s->to.first_byte);
    q->to.idle_read = pick(req->timeouts.idle_read, s->to.idle_read);
    q->lim = s->lim;
#define LIM(f) if (req->limits.f) q->lim.f = req->limits.f
    LIM(max_header_line);
    LIM(max_headers);
    LIM(max_header_bytes);
    LIM(max_body);
    LIM(max_decoded);
    LIM(max_encodings);
#undef LIM
    q->stream = req->stream;
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

static ll_future *failed(ll_loop *loop, int code, const char *method, const char *url,
                         const char *msg) {
    ll_future *f = ll_future_new(loop);
    if (f) {
        ll_future_set_label(f, "http request");
        ll_future_fail(f, code, "%s %.200s: %s", method ? method : "GET", url ? url : "(no URL)",
                       msg);
    }
    return f;
}

ll_future *ll_http_send(ll_http_session *s, const ll_http_request *req) {
    if (!s || !req)
        return failed(ll_loop_current(), LL_EINVAL, NULL, NULL, "no session or request");
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
    ll_http_request r = {.method = "GET", .url = url};
    return ll_http_send(s, &r);
}

ll_future *ll_http_post(ll_http_session *s, const char *url, const char *content_type,
                        const void *body, size_t len) {
    ll_http_request r = {.method = "POST", .url = url, .content_type = content_type,
                         .body = body ? body : "", .body_len = body ? len : 0};
    return ll_http_send(s, &r);
}

/* The response's destructor is the type tag (ll_future_value_as): only a request's future has it. */
ll_http_response *ll_http_response_of(const ll_future *f) {
    return ll_future_value_as(f, value_free);
}
