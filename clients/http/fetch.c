/*
 * fetch.c — fan-out: fetch a list of URLs with a concurrency limit, results in input order.
 *
 * Design notes:
 * - `concurrency` worker tasks take the next index in turn and run each request inline
 *   (ll__http_req_run), so a batch of 10,000 URLs costs `concurrency` task stacks, not 10,000.
 * - Each result is recorded in its input slot; a failure is an ordinary result (code + message),
 *   so the batch itself fails only for reasons of its own (out of memory).
 * - Cancelling the batch's future cancels the coordinator, whose wait cancels the workers (their
 *   requests close their connections); slots never started keep LL_ECANCELED. The batch then
 *   resolves with what was done, like asyncio.gather(return_exceptions=True) after a cancel.
 */
#include <string.h>
#include "http_internal.h"

typedef struct item {
    int code;
    char *msg;
    ll_http_response *r;
} item;

struct ll_http_batch {
    size_t n;
    item *v;
};

typedef struct job {
    ll_http_session *s;
    ll_http_batch *b;
    char **urls;
    size_t next;
    unsigned workers;
    ll_http_request tmpl;
    ll_http_headers *headers;  /* the template's, copied */
    char *method;
    char *strs[6];             /* the template's other strings, copied (see copy_strings) */
    ll_http_retry retry;
    int *statuses;
    bool discard;
    ll_http_progress_fn on_done;
    void *arg;
} job;

void ll_http_batch_free(ll_http_batch *b) {
    if (!b) return;
    for (size_t i = 0; i < b->n; i++) {
        ll_free(b->v[i].msg);
        ll_http_response_free(b->v[i].r);
    }
    ll_free(b->v);
    ll_free(b);
}

static void batch_value_free(void *v) { ll_http_batch_free(v); }

size_t ll_http_batch_count(const ll_http_batch *b) { return b ? b->n : 0; }
int ll_http_batch_code(const ll_http_batch *b, size_t i) {
    return b && i < b->n ? b->v[i].code : LL_ERANGE;
}
const char *ll_http_batch_errmsg(const ll_http_batch *b, size_t i) {
    if (!b || i >= b->n || b->v[i].code == 0) return "";
    /* a slot never started has no request message of its own; still say why (found by the soak) */
    return b->v[i].msg ? b->v[i].msg : "not started: the fan-out was cancelled";
}
const ll_http_response *ll_http_batch_response(const ll_http_batch *b, size_t i) {
    return b && i < b->n ? b->v[i].r : NULL;
}

static void job_free(job *j) {
    if (!j) return;
    if (j->urls)
        for (size_t i = 0; j->b && i < j->b->n; i++) ll_free(j->urls[i]);
    ll_free(j->urls);
    ll_http_headers_free(j->headers);
    ll_free(j->method);
    for (size_t i = 0; i < sizeof j->strs / sizeof *j->strs; i++) ll_free(j->strs[i]);
    ll_free(j->statuses);
    ll_http_batch_free(j->b);
    if (j->s) ll__http_session_unref(j->s);
    ll_free(j);
}

/* The template is the caller's memory: everything it points to that the workers read later is
 * copied now (strings, the retry policy). */
static bool copy_strings(job *j) {
    const char **fields[] = {&j->tmpl.user_agent, &j->tmpl.ca_file, &j->tmpl.proxy,
                             &j->tmpl.user, &j->tmpl.password, &j->tmpl.content_type};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        if (!*fields[i]) continue;
        if (!(j->strs[i] = ll_strdup(*fields[i]))) return false;
        *fields[i] = j->strs[i];
    }
    if (j->tmpl.retry) {
        j->retry = *j->tmpl.retry;
        j->tmpl.retry = &j->retry;
        if (j->retry.statuses) {
            size_t n = 0;
            while (j->retry.statuses[n]) n++;
            if (!(j->statuses = ll_calloc(n + 1, sizeof(int)))) return false;
            memcpy(j->statuses, j->retry.statuses, n * sizeof(int));
            j->retry.statuses = j->statuses;
        }
    }
    return true;
}

static int worker(void *arg) {
    job *j = arg;
    while (j->next < j->b->n) {
        size_t i = j->next++;
        item *it = &j->b->v[i];
        if (ll_task_cancelled()) break; /* the rest stay LL_ECANCELED */
        ll__http_req q;
        char err[LL__HTTP_ERRLEN] = "";
        int rc = ll__http_req_init(&q, j->s, &j->tmpl, j->urls[i], err);
        if (rc) {
            it->code = rc;
            char u[208];
            it->msg = ll_format("%s %s: %s", j->tmpl.method ? j->tmpl.method : "GET",
                                LL__HTTP_ESC(u, j->urls[i]), err);
        } else {
            q.discard = j->discard;
            q.next = q.prev = NULL;
            /* in the session's list, so a session close cuts this request too */
            q.next = j->s->reqs;
            if (j->s->reqs) j->s->reqs->prev = &q;
            j->s->reqs = &q;
            rc = ll__http_req_run(&q, &it->r);
            if (q.prev) q.prev->next = q.next;
            else j->s->reqs = q.next;
            if (q.next) q.next->prev = q.prev;
            it->code = rc;
            if (rc) {
                it->msg = q.errmsg;
                q.errmsg = NULL;
            }
        }
        ll__http_req_clear(&q);
        if (j->on_done) j->on_done(j->arg, i, it->code, it->r);
    }
    return 0;
}

static int coordinator(void *arg) {
    job *j = arg;
    ll_future **ws = ll_calloc(j->workers, sizeof *ws);
    if (!ws) return ll_task_fail(LL_ENOMEM, "fetch: out of memory");
    unsigned started = 0;
    int rc = 0;
    for (; started < j->workers; started++) {
        ll_spawn_opts o = {.name = "http fetch worker"};
        if (!(ws[started] = ll_spawn_ex(worker, j, &o))) {
            rc = LL_ENOMEM;
            break;
        }
    }
    ll_future *all = ll_gather(ws, started, LL_GATHER_COLLECT);
    if (!all) rc = LL_ENOMEM;
    int arc = all ? ll_await(all) : LL_ENOMEM;
    if (arc) {
        /* cancelled (or no gather): the workers use j, so wait for every one of them to stop */
        for (unsigned i = 0; i < started; i++) ll_future_cancel(ws[i]);
        ll_scope sh;
        ll_scope_enter_shielded(&sh, ll_deadline_in(30));
        for (unsigned i = 0; i < started; i++) ll_await(ws[i]);
        ll_scope_exit(&sh);
    }
    ll_future_free(all);
    for (unsigned i = 0; i < started; i++) ll_future_free(ws[i]);
    ll_free(ws);
    if (rc) return ll_task_fail(LL_ENOMEM, "fetch: out of memory starting workers");
    ll_http_batch *b = j->b;
    j->b = NULL;
    /* keep the URLs' memory consistent with b->n for job_free */
    for (size_t i = 0; i < b->n; i++) ll_free(j->urls[i]);
    ll_free(j->urls);
    j->urls = NULL;
    ll_task_return(b, batch_value_free);
    return 0;
}

static void job_done(ll_future *f, void *arg) {
    (void)f;
    job_free(arg);
}

ll_future *ll_http_fetch_all(ll_http_session *s, const char *const *urls, size_t n,
                             const ll_http_fetch_opts *opts) {
    LL_REQUIRE_ARG(s, "session");
    ll_http_fetch_opts o = {0};
    if (opts) o = *opts;
    if (!s) return ll_future_failed(NULL, LL_EINVAL, "ll_http_fetch_all: session is NULL");
    if (!urls && n)
        return ll_future_failed(s->loop, LL_EINVAL, "ll_http_fetch_all: urls is NULL");
    job *j = ll_calloc(1, sizeof *j);
    if (!j) return NULL;
    j->s = s;
    ll__http_session_ref(s);
    j->workers = o.concurrency ? o.concurrency : 16;
    if (j->workers > n) j->workers = n ? (unsigned)n : 1;
    j->discard = o.discard_bodies;
    j->on_done = o.on_done;
    j->arg = o.arg;
    if (o.tmpl) j->tmpl = *o.tmpl;
    j->tmpl.url = NULL;
    j->tmpl.body = NULL;
    j->tmpl.body_len = 0;
    j->tmpl.json = NULL;
    j->tmpl.form = NULL;
    j->tmpl.body_fn = NULL;
    j->tmpl.parts = NULL;
    j->tmpl.nparts = 0;
    j->tmpl.stream = false;
    j->tmpl.query = NULL;
    bool ok = (j->b = ll_calloc(1, sizeof *j->b)) &&
              (j->b->v = ll_calloc(n ? n : 1, sizeof(item))) &&
              (j->urls = ll_calloc(n ? n : 1, sizeof(char *)));
    if (ok && o.tmpl && o.tmpl->method && !(j->method = ll_strdup(o.tmpl->method))) ok = false;
    if (ok && !copy_strings(j)) ok = false;
    if (ok && o.tmpl && o.tmpl->headers && !(j->headers = ll_http_headers_copy(o.tmpl->headers)))
        ok = false;
    j->tmpl.method = j->method;
    j->tmpl.headers = j->headers;
    if (ok) {
        j->b->n = n;
        for (size_t i = 0; i < n; i++) {
            j->b->v[i].code = LL_ECANCELED;
            if (!(j->urls[i] = ll_strdup(urls[i] ? urls[i] : ""))) ok = false;
        }
    }
    if (!ok) {
        job_free(j);
        return NULL;
    }
    ll_spawn_opts so = {.loop = s->loop, .name = "http fetch"};
    ll_future *f = ll_spawn_ex(coordinator, j, &so);
    if (!f || ll_future_add_done(f, job_done, j) != 0) {
        if (f) {
            ll_future_cancel(f);
            ll_future_free(f);
        }
        job_free(j);
        return NULL;
    }
    return f;
}

ll_http_batch *ll_http_batch_of(const ll_future *f) {
    return ll_future_value_as(f, batch_value_free);
}
