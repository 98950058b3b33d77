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

struct send_job;

struct ll_smtp_client {
    int refs;
    ll__smtp_cfg *cfg;
    ll_pool *pool;
    bool closed;
    ll_smtp_client_stats stats;
    struct send_job *whead, *wtail; /* sends waiting for a session, oldest first (see claim) */
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
    int refs;              /* its task, and a session's transaction that claimed it */
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
    /* the current attempt: its recipients (those still open) and its transaction */
    size_t *idx;
    const char **addrs;
    size_t n;
    ll__smtp_txn txn;
    /* waiting for a session (acquire_session) */
    struct send_job *wprev, *wnext;
    bool waiting;
    ll_future *af;         /* the pool's acquire */
    ll_future *wake;       /* resolved by the acquire or by a hand-off */
    bool claimed;          /* a session's transaction took it: its envelope goes out with that
                            * message's data and the session comes by hand-off */
    bool gone;             /* it stopped waiting (cancel, deadline) after it was claimed */
    ll_smtp_conn *handed;  /* the hand-off: the session, the envelope sent */
    bool requeue;          /* the hand-off failed before the envelope's replies: wait again */
    struct send_job *chained; /* the job this one's transaction claimed */
    char err[LL__SMTP_ERRLEN];
} send_job;

static void job_unref(send_job *j) {
    if (--j->refs > 0) return;
    for (size_t i = 0; i < j->nrcpt; i++) ll_free(j->rcpt[i].text);
    ll__smtp_txn_free(&j->txn);
    ll_free(j->rcpt);
    ll_free(j->idx);
    ll_free(j->addrs);
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
static int merge(send_job *j, const ll__smtp_txn *t, const char *fallback) {
    for (size_t k = 0; k < t->nrcpt; k++) {
        ll__smtp_rcpt *dst = &j->rcpt[j->idx[k]];
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

/* The recipients the next attempt is for: those without a final answer. */
static void open_recipients(send_job *j) {
    j->n = 0;
    for (size_t i = 0; i < j->nrcpt; i++)
        if (!final_code(j->rcpt[i].code)) {
            j->idx[j->n] = i;
            j->addrs[j->n++] = j->mail->rcpt[i];
        }
}

/* ---- waiting for a session, and the hand-off ----
 * A send that finds no free session waits for the pool's acquire, registered (oldest first) in
 * the client's list. A session about to write a message's terminator may claim the oldest waiter
 * (claim): its envelope goes out in the same write (RFC 2920), the waiter's acquire is withdrawn,
 * and once the message's final reply is read the session is handed to the waiter (hand_off), which
 * reads its own envelope's replies. So on a busy client a reused session costs two round trips per
 * message (data+next envelope, DATA) instead of three. */

static void waiter_remove(send_job *j) {
    if (!j->waiting) return;
    ll_smtp_client *cl = j->cl;
    if (j->wprev) j->wprev->wnext = j->wnext;
    else cl->whead = j->wnext;
    if (j->wnext) j->wnext->wprev = j->wprev;
    else cl->wtail = j->wprev;
    j->wprev = j->wnext = NULL;
    j->waiting = false;
}

static void on_acquired(ll_future *f, void *arg) {
    (void)f;
    send_job *j = arg;
    waiter_remove(j);
    if (!ll_future_done(j->wake)) ll_future_resolve(j->wake, NULL, NULL);
}

static void wake_cancel(ll_future *f, void *arg) {
    send_job *j = arg;
    if (j->claimed) j->gone = true; /* the claiming transaction sees it and drops the session */
    else {
        waiter_remove(j);
        ll_future_remove_done(j->af, on_acquired, j);
    }
    ll_future_set_cancelled(f);
}

static ll__smtp_txn *claim(void *arg, ll_smtp_conn *c) {
    send_job *cur = arg;
    int tries = 0;
    for (send_job *j = cur->cl->whead; j && tries < 4; j = j->wnext, tries++) {
        /* an acquire already done has its session; its callback will wake it */
        if (ll_future_done(j->af)) continue;
        open_recipients(j);
        ll__smtp_txn_free(&j->txn);
        if (ll__smtp_txn_start(&j->txn, &c->hs.caps, j->mail->from, j->addrs, j->n, j->mail->data,
                               j->mail->len, true)) { /* RSET: a session is reset between messages */
            /* refused before sending (size, 8-bit...): it fails on its own session */
            ll__smtp_txn_free(&j->txn);
            continue;
        }
        waiter_remove(j);
        ll_future_remove_done(j->af, on_acquired, j);
        ll_future_cancel(j->af);
        j->claimed = true;
        j->refs++;
        cur->chained = j;
        return &j->txn;
    }
    return NULL;
}

/* cur's transaction is over: give the session to the job it claimed, or, when cur failed or the
 * session cannot go on, send that job back to wait (its envelope's replies are lost with the
 * session, which is never reused). Return true when the session was handed over. */
static bool hand_off(send_job *cur, ll_smtp_conn *c, bool ok) {
    send_job *n = cur->chained;
    cur->chained = NULL;
    if (!n) return false;
    bool handed = ok && !n->gone;
    if (handed) {
        n->handed = c;
        cur->cl->stats.pipelined++;
    } else {
        c->broken = true;
        n->requeue = true;
        ll__smtp_txn_free(&n->txn);
    }
    if (!n->gone) ll_future_resolve(n->wake, NULL, NULL);
    job_unref(n);
    return handed;
}

/* A session for the next attempt: from the pool (rc 0, *c set), or by hand-off (rc 0, *c set,
 * *handed true: j->txn is under way), or a hand-off that fell through (rc 0, *c NULL: try
 * again), or the acquire's error (message in j->err). */
static int acquire_session(send_job *j, ll_smtp_conn **c, bool *handed) {
    ll_smtp_client *cl = j->cl;
    *c = NULL;
    *handed = false;
    ll_future *af = ll_pool_acquire(cl->pool, cl->cfg->key);
    if (!af) {
        snprintf(j->err, sizeof j->err, "out of memory");
        return LL_ENOMEM;
    }
    int rc;
    if (!ll_future_done(af) && cl->cfg->max_messages > 1 &&
        (j->wake = ll_future_new(cl->cfg->loop)) != NULL &&
        ll_future_add_done(af, on_acquired, j) == 0) {
        j->af = af;
        j->claimed = j->gone = j->requeue = false;
        j->handed = NULL;
        j->wprev = cl->wtail;
        j->wnext = NULL;
        if (cl->wtail) cl->wtail->wnext = j;
        else cl->whead = j;
        cl->wtail = j;
        j->waiting = true;
        ll_future_on_cancel(j->wake, wake_cancel, j);
        rc = ll_await(j->wake);
        waiter_remove(j);
        ll_future_free(j->wake);
        j->wake = NULL;
        j->af = NULL;
        if (j->claimed) {
            /* the acquire was withdrawn by the claim */
            ll_future_free(af);
            if (j->handed) {
                *c = j->handed;
                *handed = true;
                return 0;
            }
            if (j->gone) {
                snprintf(j->err, sizeof j->err, "smtp: %s while waiting for a session",
                         rc == LL_ETIMEDOUT ? "the message's deadline passed" : "cancelled");
                return rc ? rc : LL_ECANCELED;
            }
            return 0; /* requeue */
        }
        if (rc) {
            /* cancelled or out of time while waiting */
            ll_future_remove_done(af, on_acquired, j);
            if (ll_future_done(af)) {
                if (ll_future_code(af) == 0) ll_pool_release(cl->pool, ll_future_value(af), LL_POOL_IDLE);
            } else {
                ll_future_cancel(af);
            }
            ll_future_free(af);
            snprintf(j->err, sizeof j->err, "smtp: %s while waiting for a session",
                     rc == LL_ETIMEDOUT ? "the message's deadline passed" : "cancelled");
            return rc;
        }
        rc = ll_future_code(af);
    } else {
        if (j->wake) {
            ll_future_free(j->wake);
            j->wake = NULL;
        }
        rc = ll_await(af);
    }
    if (rc) {
        snprintf(j->err, sizeof j->err, "%s", ll_future_errmsg(af)[0] ? ll_future_errmsg(af) :
                 ll_strerror(rc));
        ll_future_free(af);
        return rc;
    }
    *c = ll_future_value(af);
    ll_future_free(af);
    return 0;
}

static int client_send_task(void *arg) {
    send_job *j = arg;
    ll_smtp_client *cl = j->cl;
    ll__smtp_cfg *cfg = cl->cfg;
    int last_rc = 0;
    bool tried = false;
    double backoff = cfg->backoff;
    ll_scope msg;
    ll_scope_enter(&msg, cfg->message_timeout < 0 ? LL_NEVER : ll_deadline_in(cfg->message_timeout));
    j->idx = ll_malloc(j->nrcpt * sizeof *j->idx);
    j->addrs = ll_malloc(j->nrcpt * sizeof *j->addrs);
    if (!j->idx || !j->addrs) {
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
        ll_smtp_conn *c;
        bool handed;
        int rc = acquire_session(j, &c, &handed);
        if (rc) {
            last_rc = rc;
            if (permanent(rc) || (rc == LL_ETIMEDOUT && ll_task_deadline() <= ll_now())) break;
            continue;
        }
        if (!c) {
            /* a hand-off that fell through: no transaction happened; wait again */
            attempt--;
            continue;
        }
        if (!handed && c->messages > 0 && ll_now() - c->idle_since > cfg->noop_after &&
            cfg->noop_after >= 0) {
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
        ll__smtp_chain chain = {claim, j, NULL};
        c->busy = true;
        if (handed) {
            rc = ll__smtp_conn_txn_resume(c, &j->txn, &chain);
        } else {
            open_recipients(j);
            ll_smtp_mail m = *j->mail;
            m.rcpt = j->addrs;
            m.nrcpt = j->n;
            ll__smtp_txn_free(&j->txn);
            rc = ll__smtp_conn_txn(c, &j->txn, &m, &chain);
        }
        ll__smtp_txn *t = &j->txn;
        j->attempts++;
        if (rc == 0 || t->state >= LL__TX_ENVELOPE) {
            tried = true;
            if (merge(j, t, rc ? c->err : "no reply")) rc = LL_ENOMEM;
        }
        last_rc = rc;
        if (rc) snprintf(j->err, sizeof j->err, "%s", c->err);
        /* refused before anything was sent (t->state still IDLE): the session is untouched */
        bool reusable = (rc == 0 || t->state == LL__TX_IDLE) && !c->broken && !t->closing &&
                        c->messages < cfg->max_messages;
        if (!hand_off(j, c, reusable)) {
            c->busy = false;
            c->idle_since = ll_now();
            if (reusable && !c->broken) ll_pool_release(cl->pool, c, LL_POOL_IDLE);
            else ll_pool_discard(cl->pool, c); /* QUIT when the session is still sound */
        }
        if (rc && (permanent(rc) || rc == LL_ECANCELED)) break;
        if (rc == LL_ETIMEDOUT && ll_task_deadline() <= ll_now()) break;
        bool open = false;
        for (size_t i = 0; i < j->nrcpt; i++) open = open || !final_code(j->rcpt[i].code);
        if (!open) break;
    }
done:
    ll_scope_exit(&msg);
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
    job_unref(j);
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
    j->refs = 1;
    j->cl = c;
    j->mail = copy;
    j->nrcpt = copy->nrcpt;
    for (size_t i = 0; i < j->nrcpt; i++) j->rcpt[i].addr = copy->rcpt[i];
    j->result = ll_future_ref(res);
    j->task = ll__smtp_spawn(loop, "smtp send", client_send_task, j);
    if (!j->task) {
        job_unref(j);
        ll_future_free(res);
        return NULL;
    }
    ll_future_on_cancel(res, send_cancel, j);
    ll_future_free(j->task);
    return res;
}
