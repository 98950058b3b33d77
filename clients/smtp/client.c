/*
 * client.c — sending many messages: a pool of sessions per server (libloop's ll_pool), a
 * concurrency limit, retries with backoff, per-recipient results.
 *
 * Design notes:
 * - The pool's key is the server; max_per_key is the concurrency limit (max_sessions): a send
 *   beyond it waits in the pool's queue, first come first served, under the message's deadline.
 * - Connecting (TCP, greeting, EHLO, STARTTLS, AUTH) is the pool's work, in a task of its own, so a
 *   send that gives up never kills a session others would share.
 * - Between messages on one session the transaction starts with RSET (pipelined with MAIL when the
 *   server offers PIPELINING, so it costs no round trip). A session idle longer than noop_after is
 *   checked with NOOP before use; one that served max_messages_per_session is closed with QUIT; one
 *   that said 421, timed out or lost its connection is closed, never pooled.
 * - Retries: each attempt sends to the recipients still open. 2xx and 5xx answers are final; a 4xx
 *   answer, a 421, a lost connection or a connect failure leave the recipient open for the next
 *   attempt, after a pause that doubles each time. A connection lost after the data went out but
 *   before the final reply is retried too (RFC 5321 6.1: the outcome is unknown; an MTA retries and
 *   accepts a possible duplicate rather than lose the message). Errors that another attempt cannot
 *   fix (bad input, authentication, TLS, no STARTTLS) are not retried.
 * - The client is reference counted (the user and every send in flight); ll_smtp_client_free
 *   closes the pool, whose queued acquires then fail, so sends end promptly.
 */
#include <stdio.h>
#include <string.h>
#include "smtp_internal.h"

struct ll_smtp_client {
    int refs;
    ll__smtp_cfg *cfg;
    ll_pool *pool;
    bool closed;
    ll_smtp_client_stats stats;
};

static void client_unref(ll_smtp_client *c) {
    if (--c->refs > 0) return;
    ll__smtp_cfg_unref(c->cfg);
    ll_free(c);
}

/* ---- the pool's vtable ---- */

static ll_future *pool_connect(void *arg, const char *key) {
    (void)key;
    ll__smtp_cfg *cfg = arg;
    ll_future *f = ll__smtp_spawn(cfg->loop, "smtp pool connect", ll__smtp_connect_task,
                                  ll__smtp_cfg_ref(cfg));
    if (!f) ll__smtp_cfg_unref(cfg);
    return f;
}

static bool pool_is_alive(void *arg, void *conn) {
    (void)arg;
    ll_smtp_conn *c = conn;
    if (c->broken || c->closed || !c->s) return false;
    size_t buffered;
    ll_stream_peek(c->s, &buffered);
    /* An idle SMTP session has nothing to say: bytes waiting are a 421 or garbage. */
    if (buffered || ll_stream_at_eof(c->s)) return false;
    /* The poll of the socket is skipped for a session back for less than a millisecond (the
     * common case under load): a close that recent races the next command anyway, and a lost
     * connection is retried. */
    if (ll_now() - c->idle_since < 0.001) return true;
    return ll_stream_alive(c->s);
}

static void pool_close(void *arg, void *conn) {
    (void)arg;
    ll_smtp_conn *c = conn;
    ll_future_free(ll__smtp_conn_shut(c, true));
    ll__smtp_conn_unref(c);
}

static const ll_pool_vtable smtp_vt = {pool_connect, pool_is_alive, pool_close, NULL};

ll_smtp_client *ll_smtp_client_new(const char *url, const ll_smtp_opts *opts, char **err) {
    char e[LL__SMTP_ERRLEN] = "";
    if (err) *err = NULL;
    ll__smtp_cfg *cfg;
    int rc = ll__smtp_cfg_new(url, opts, &cfg, e);
    if (rc) {
        if (err) *err = ll_format("ll_smtp_client_new: %s", rc == LL_ENOMEM ? "out of memory" : e);
        return NULL;
    }
    ll_smtp_client *c = ll_calloc(1, sizeof *c);
    if (!c) {
        ll__smtp_cfg_unref(cfg);
        return NULL;
    }
    c->refs = 1;
    c->cfg = cfg;
    ll_pool_opts po;
    memset(&po, 0, sizeof po);
    po.name = "smtp";
    po.loop = cfg->loop;
    po.max_per_key = cfg->max_sessions;
    po.acquire_timeout = -1; /* only the message's deadline bounds the wait */
    /* The pool's own connect bound covers connect, greeting and the handshake's commands. */
    po.connect_timeout = cfg->connect_timeout < 0 || cfg->greeting_timeout < 0 ||
                                 cfg->command_timeout < 0
                             ? 1e9
                             : cfg->connect_timeout + cfg->greeting_timeout + 4 * cfg->command_timeout;
    po.max_idle = 60;
    c->pool = ll_pool_new(&smtp_vt, cfg, &po);
    if (!c->pool) {
        ll__smtp_cfg_unref(cfg);
        ll_free(c);
        if (err) *err = ll_format("ll_smtp_client_new: cannot make the session pool");
        return NULL;
    }
    return c;
}

void ll_smtp_client_get_stats(const ll_smtp_client *c, ll_smtp_client_stats *out) {
    memset(out, 0, sizeof *out);
    if (!c) return;
    *out = c->stats;
    if (!c->closed) {
        ll_pool_stats ps;
        ll_pool_get_stats(c->pool, &ps);
        out->sessions = ps.created;
        out->open = ps.open;
    }
}

void ll_smtp_client_free(ll_smtp_client *c) {
    if (!c || c->closed) return;
    c->closed = true;
    ll_pool_free(c->pool);
    client_unref(c);
}

/* ---- one send, with retries ---- */

typedef struct send_job {
    ll_smtp_client *cl;
    ll_smtp_mail *mail;
    ll_future *result;
    ll_future *task;
    ll__smtp_rcpt *rcpt;   /* the outcome so far, per recipient */
    size_t nrcpt;
    int code;              /* the last transaction's end */
    char enhanced[16];
    char *text;
    unsigned attempts;
    char err[LL__SMTP_ERRLEN];
} send_job;

static void job_free(send_job *j) {
    for (size_t i = 0; i < j->nrcpt; i++) ll_free(j->rcpt[i].text);
    ll_free(j->rcpt);
    ll_free(j->text);
    ll_free(j->mail);
    ll_future_free(j->result);
    client_unref(j->cl);
    ll_free(j);
}

static void send_cancel(ll_future *f, void *arg) {
    (void)f;
    send_job *j = arg;
    ll_future_cancel(j->task);
}

static bool final_code(int code) { return code / 100 == 2 || code / 100 == 5; }

/* Errors another attempt cannot fix. */
static bool permanent(int rc) {
    switch (rc) {
        case LL_EINVAL: case LL_EMSGSIZE: case LL_ESMTP_PROTO: case LL_ESMTP_AUTH:
        case LL_ESMTP_NOTLS: case LL_ESMTP_INSECURE: case LL_ECERT: case LL_ETLS:
        case LL_ENOTFOUND: case LL_EPOOLCLOSED: case LL_ECANCELED: case LL_ENOMEM:
        case LL_ECLOSED:
            return true;
        default:
            return false;
    }
}

/* Fold one attempt's answers into the job. */
static int merge(send_job *j, const size_t *idx, const ll__smtp_txn *t, const char *fallback) {
    for (size_t k = 0; k < t->nrcpt; k++) {
        ll__smtp_rcpt *dst = &j->rcpt[idx[k]];
        const ll__smtp_rcpt *src = &t->rcpt[k];
        dst->code = src->code;
        snprintf(dst->enhanced, sizeof dst->enhanced, "%s", src->enhanced);
        ll_free(dst->text);
        dst->text = ll_strdup(src->code ? (src->text ? src->text : "") : fallback);
        if (!dst->text) return LL_ENOMEM;
    }
    j->code = t->code;
    snprintf(j->enhanced, sizeof j->enhanced, "%s", t->enhanced);
    ll_free(j->text);
    j->text = ll_strdup(t->text ? t->text : fallback);
    return j->text ? 0 : LL_ENOMEM;
}

static int client_send_task(void *arg) {
    send_job *j = arg;
    ll_smtp_client *cl = j->cl;
    ll__smtp_cfg *cfg = cl->cfg;
    size_t *idx = ll_malloc(j->nrcpt * sizeof *idx);
    const char **addrs = ll_malloc(j->nrcpt * sizeof *addrs);
    int last_rc = 0;
    bool tried = false;
    double backoff = cfg->backoff;
    ll_scope msg;
    ll_scope_enter(&msg, cfg->message_timeout < 0 ? LL_NEVER : ll_deadline_in(cfg->message_timeout));
    if (!idx || !addrs) {
        last_rc = LL_ENOMEM;
        snprintf(j->err, sizeof j->err, "out of memory");
        goto done;
    }
    for (unsigned attempt = 0; attempt <= cfg->retries; attempt++) {
        if (attempt > 0) {
            cl->stats.retries++;
            int src = ll_sleep(backoff);
            backoff *= 2;
            if (src) {
                /* The message's deadline or a cancel, between attempts: the last error stands
                 * (recipients still open are deferred). */
                if (src == LL_ECANCELED) last_rc = src;
                break;
            }
        }
        ll_future *af = ll_pool_acquire(cl->pool, cfg->key);
        int rc = ll_await(af);
        if (rc) {
            snprintf(j->err, sizeof j->err, "%s", ll_future_errmsg(af)[0] ? ll_future_errmsg(af) :
                     ll_strerror(rc));
            ll_future_free(af);
            last_rc = rc;
            if (permanent(rc) || (rc == LL_ETIMEDOUT && ll_task_deadline() <= ll_now())) break;
            continue;
        }
        ll_smtp_conn *c = ll_future_value(af);
        ll_future_free(af);
        if (c->messages > 0 && ll_now() - c->idle_since > cfg->noop_after && cfg->noop_after >= 0) {
            c->busy = true;
            rc = ll__smtp_conn_noop(c);
            c->busy = false;
            if (rc) {
                /* Dead while idle: not this message's fault; try again at once. */
                ll_pool_discard(cl->pool, c);
                snprintf(j->err, sizeof j->err, "%s", c->err);
                last_rc = rc;
                if (rc == LL_ECANCELED || rc == LL_ETIMEDOUT) break;
                attempt--;
                continue;
            }
        }
        size_t n = 0;
        for (size_t i = 0; i < j->nrcpt; i++)
            if (!final_code(j->rcpt[i].code)) {
                idx[n] = i;
                addrs[n++] = j->mail->rcpt[i];
            }
        ll_smtp_mail m = *j->mail;
        m.rcpt = addrs;
        m.nrcpt = n;
        ll__smtp_txn t;
        memset(&t, 0, sizeof t);
        c->busy = true;
        rc = ll__smtp_conn_txn(c, &t, &m);
        c->busy = false;
        c->idle_since = ll_now();
        j->attempts++;
        if (rc == 0 || t.state >= LL__TX_ENVELOPE) {
            tried = true;
            if (merge(j, idx, &t, rc ? c->err : "no reply")) rc = LL_ENOMEM;
        }
        last_rc = rc;
        if (rc) snprintf(j->err, sizeof j->err, "%s", c->err);
        /* refused before anything was sent (t.state still IDLE): the session is untouched */
        bool reusable = (rc == 0 || t.state == LL__TX_IDLE) && !c->broken && !t.closing &&
                        c->messages < cfg->max_messages;
        if (reusable) ll_pool_release(cl->pool, c, LL_POOL_IDLE);
        else ll_pool_discard(cl->pool, c); /* QUIT when the session is still sound */
        ll__smtp_txn_free(&t);
        if (rc && (permanent(rc) || rc == LL_ECANCELED)) break;
        if (rc == LL_ETIMEDOUT && ll_task_deadline() <= ll_now()) break;
        bool open = false;
        for (size_t i = 0; i < j->nrcpt; i++) open = open || !final_code(j->rcpt[i].code);
        if (!open) break;
    }
done:
    ll_scope_exit(&msg);
    ll_free(idx);
    ll_free(addrs);
    if (last_rc == LL_ECANCELED) {
        ll_future_set_cancelled(j->result);
    } else if (!tried) {
        cl->stats.failed++;
        ll_future_fail(j->result, last_rc ? last_rc : LL_ESTATE, "%s", j->err);
    } else {
        ll_smtp_result *res = ll__smtp_result_new(j->rcpt, j->nrcpt, j->code, j->enhanced, j->text,
                                                  j->attempts);
        if (!res) {
            ll_future_fail(j->result, LL_ENOMEM, "out of memory");
        } else if (res->accepted == res->nrcpt) {
            cl->stats.sent++;
            ll_future_resolve(j->result, res, ll__smtp_result_free);
        } else if (res->accepted == 0 && last_rc) {
            /* Nobody got it and the last attempt broke off: its error is the cause. */
            cl->stats.failed++;
            if (ll_future_fail_detail(j->result, last_rc, res, ll__smtp_result_free, "%s", j->err))
                ll__smtp_result_free(res);
        } else {
            cl->stats.failed++;
            char peer[300];
            snprintf(peer, sizeof peer, "%s:%u", cfg->host, (unsigned)cfg->port);
            ll__smtp_result_settle(j->result, res, peer);
        }
    }
    job_free(j);
    return 0;
}

ll_future *ll_smtp_send(ll_smtp_client *c, const ll_smtp_mail *mail) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_smtp_send: client is NULL");
    ll_loop *loop = c->cfg->loop;
    if (c->closed) return ll_future_failed(loop, LL_ECLOSED, "ll_smtp_send: client is freed");
    char err[LL__SMTP_ERRLEN];
    ll_smtp_mail *copy = ll__smtp_mail_copy(mail, err);
    if (!copy) return ll_future_failed(loop, LL_EINVAL, "ll_smtp_send: %s", err);
    if (copy->nrcpt == 0) {
        ll_free(copy);
        return ll_future_failed(loop, LL_EINVAL, "ll_smtp_send: no recipient");
    }
    send_job *j = ll_calloc(1, sizeof *j);
    ll_future *res = ll_future_new(loop);
    if (j) j->rcpt = ll_calloc(copy->nrcpt, sizeof *j->rcpt);
    if (!j || !res || !j->rcpt) {
        if (j) ll_free(j->rcpt);
        ll_free(copy);
        ll_free(j);
        ll_future_free(res);
        return NULL;
    }
    ll_future_set_label(res, "smtp send");
    c->refs++;
    j->cl = c;
    j->mail = copy;
    j->nrcpt = copy->nrcpt;
    for (size_t i = 0; i < j->nrcpt; i++) j->rcpt[i].addr = copy->rcpt[i];
    j->result = ll_future_ref(res);
    j->task = ll__smtp_spawn(loop, "smtp send", client_send_task, j);
    if (!j->task) {
        job_free(j);
        ll_future_free(res);
        return NULL;
    }
    ll_future_on_cancel(res, send_cancel, j);
    ll_future_free(j->task);
    return res;
}
