/*
 * session.c — the public single-session API: ll_smtp_connect, ll_smtp_conn_send, ll_smtp_conn_noop,
 * ll_smtp_close. Each operation runs in a task of its own that holds a reference to the session;
 * a send's future is separate from its task so it can fail with the per-recipient result as its
 * detail (and a cancel of that future cancels the task).
 */
#include <stdio.h>
#include <string.h>
#include "smtp_internal.h"

ll_smtp_mail *ll__smtp_mail_copy(const ll_smtp_mail *m, char *err) {
    if (!m) {
        ll__smtp_errf(err, LL_EINVAL, "mail is NULL");
        return NULL;
    }
    if (!m->from || (m->nrcpt && !m->rcpt) || (m->len && !m->data)) {
        ll__smtp_errf(err, LL_EINVAL, "mail: from, rcpt or data is NULL");
        return NULL;
    }
    /* Refused here, before any connection: CR/LF/NUL in an address, a NUL in the data. */
    if (ll__smtp_check_address("sender", m->from, true, err)) return NULL;
    if (m->len && memchr(m->data, 0, m->len)) {
        ll__smtp_errf(err, LL_EINVAL, "message data contains a NUL byte (refused before sending)");
        return NULL;
    }
    size_t n = sizeof(ll_smtp_mail) + m->nrcpt * sizeof(char *) + strlen(m->from) + 1 + m->len + 1;
    for (size_t i = 0; i < m->nrcpt; i++) {
        char what[48];
        snprintf(what, sizeof what, "recipient %zu", i + 1);
        if (ll__smtp_check_address(what, m->rcpt[i], false, err)) return NULL;
        n += strlen(m->rcpt[i]) + 1;
    }
    ll_smtp_mail *c = ll_malloc(n);
    if (!c) {
        ll__smtp_errf(err, LL_ENOMEM, "out of memory");
        return NULL;
    }
    const char **rc = (const char **)(c + 1);
    char *p = (char *)(rc + m->nrcpt);
    c->nrcpt = m->nrcpt;
    c->rcpt = rc;
    for (size_t i = 0; i < m->nrcpt; i++) {
        size_t k = strlen(m->rcpt[i]) + 1;
        memcpy(p, m->rcpt[i], k);
        rc[i] = p;
        p += k;
    }
    size_t k = strlen(m->from) + 1;
    memcpy(p, m->from, k);
    c->from = p;
    p += k;
    if (m->len) memcpy(p, m->data, m->len);
    p[m->len] = 0;
    c->data = p;
    c->len = m->len;
    return c;
}

/* ---- connect ---- */

static void conn_value_free(void *v) {
    ll_smtp_conn *c = v;
    ll_future_free(ll__smtp_conn_shut(c, false));
    ll__smtp_conn_unref(c);
}

int ll__smtp_connect_task(void *arg) {
    ll__smtp_cfg *cfg = arg;
    ll_smtp_conn *c = NULL;
    char err[LL__SMTP_ERRLEN];
    int rc = ll__smtp_conn_open(cfg, &c, err);
    ll__smtp_cfg_unref(cfg);
    if (rc) return ll_task_fail(rc, "%s", err);
    ll_task_return(c, conn_value_free);
    return 0;
}

ll_future *ll__smtp_spawn(ll_loop *loop, const char *name, ll_task_fn fn, void *arg) {
    ll_spawn_opts so;
    memset(&so, 0, sizeof so);
    so.name = name;
    so.loop = loop;
    return ll_spawn_ex(fn, arg, &so);
}

ll_future *ll_smtp_connect(const char *url, const ll_smtp_opts *opts) {
    char err[LL__SMTP_ERRLEN];
    ll__smtp_cfg *cfg;
    int rc = ll__smtp_cfg_new(url, opts, &cfg, err);
    if (rc) return ll_future_failed(opts ? opts->loop : NULL, rc, "ll_smtp_connect: %s",
                                    rc == LL_ENOMEM ? "out of memory" : err);
    ll_future *f = ll__smtp_spawn(cfg->loop, "smtp connect", ll__smtp_connect_task, cfg);
    if (!f) ll__smtp_cfg_unref(cfg);
    return f;
}

/* ---- send ---- */

typedef struct send_job {
    ll_smtp_conn *c;
    ll_smtp_mail *mail;
    ll_future *result;  /* what the caller holds */
    ll_future *task;
} send_job;

static void send_cancel(ll_future *f, void *arg) {
    (void)f;
    send_job *j = arg;
    ll_future_cancel(j->task);
}

/* Settle `f` after a transaction that ended in `rc` (0: complete). */
void ll__smtp_settle_txn(ll_future *f, int rc, const ll__smtp_txn *t, const char *peer,
                         const char *err, unsigned attempts) {
    if (rc == 0) {
        ll_smtp_result *res = ll__smtp_result_new(t->rcpt, t->nrcpt, t->code, t->enhanced, t->text,
                                                  attempts);
        if (!res) ll_future_fail(f, LL_ENOMEM, "out of memory");
        else ll__smtp_result_settle(f, res, peer);
        return;
    }
    if (rc == LL_ECANCELED) {
        ll_future_set_cancelled(f);
        return;
    }
    ll_smtp_result *res = NULL;
    if (t->rcpt && t->state >= LL__TX_ENVELOPE) {
        /* Recipients without an answer are deferred: the reason is the failure itself. */
        res = ll__smtp_result_new(t->rcpt, t->nrcpt, t->code, t->enhanced,
                                  t->text ? t->text : err, attempts);
        for (size_t i = 0; res && i < res->nrcpt; i++)
            if (res->rcpt[i].code == 0) ((ll_smtp_rcpt_result *)res->rcpt)[i].text = res->text;
    }
    if (res) {
        if (ll_future_fail_detail(f, rc, res, ll__smtp_result_free, "%s", err))
            ll__smtp_result_free(res);
    } else {
        ll_future_fail(f, rc, "%s", err);
    }
}

static int send_task(void *arg) {
    send_job *j = arg;
    ll_smtp_conn *c = j->c;
    ll__smtp_txn t;
    memset(&t, 0, sizeof t);
    int rc = ll__smtp_conn_txn(c, &t, j->mail, NULL);
    c->busy = false;
    c->idle_since = ll_now();
    ll__smtp_settle_txn(j->result, rc, &t, c->peer, c->err, 1);
    ll__smtp_txn_free(&t);
    if (c->broken && !c->closed) ll_future_free(ll__smtp_conn_shut(c, false));
    ll__smtp_conn_unref(c);
    ll_free(j->mail);
    ll_future_free(j->result);
    ll_free(j);
    return 0;
}

ll_future *ll_smtp_conn_send(ll_smtp_conn *c, const ll_smtp_mail *mail) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_smtp_conn_send: conn is NULL");
    ll_loop *loop = c->cfg->loop;
    if (c->closed || c->broken)
        return ll_future_failed(loop, LL_ECLOSED, "ll_smtp_conn_send: the session to %s is %s",
                                c->peer, c->closed ? "closed" : "broken by an earlier error");
    if (c->busy)
        return ll_future_failed(loop, LL_EBUSY, "ll_smtp_conn_send: a send is already running on "
                                "the session to %s", c->peer);
    char err[LL__SMTP_ERRLEN];
    ll_smtp_mail *copy = ll__smtp_mail_copy(mail, err);
    if (!copy) return ll_future_failed(loop, LL_EINVAL, "ll_smtp_conn_send: %s", err);
    send_job *j = ll_calloc(1, sizeof *j);
    ll_future *res = ll_future_new(loop);
    if (!j || !res) {
        ll_free(copy);
        ll_free(j);
        ll_future_free(res);
        return NULL;
    }
    ll_future_set_label(res, "smtp send");
    j->c = ll__smtp_conn_ref(c);
    j->mail = copy;
    j->result = ll_future_ref(res);
    j->task = ll__smtp_spawn(loop, "smtp send", send_task, j);
    if (!j->task) {
        ll__smtp_conn_unref(c);
        ll_future_free(res);
        ll_future_free(res);
        ll_free(copy);
        ll_free(j);
        return NULL;
    }
    c->busy = true;
    ll_future_on_cancel(res, send_cancel, j);
    /* The task keeps itself alive; the job holds no reference to its future once it ends. */
    ll_future_free(j->task);
    return res;
}

static int noop_task(void *arg) {
    ll_smtp_conn *c = arg;
    int rc = ll__smtp_conn_noop(c);
    c->busy = false;
    if (c->broken && !c->closed) ll_future_free(ll__smtp_conn_shut(c, false));
    if (rc) rc = ll_task_fail(rc, "%s", c->err);
    ll__smtp_conn_unref(c);
    return rc;
}

ll_future *ll_smtp_conn_noop(ll_smtp_conn *c) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_smtp_conn_noop: conn is NULL");
    if (c->closed || c->broken || c->busy)
        return ll_future_failed(c->cfg->loop, c->busy ? LL_EBUSY : LL_ECLOSED,
                                "ll_smtp_conn_noop: the session to %s is %s", c->peer,
                                c->busy ? "busy" : "closed");
    ll_future *f = ll__smtp_spawn(c->cfg->loop, "smtp noop", noop_task, ll__smtp_conn_ref(c));
    if (!f) {
        ll__smtp_conn_unref(c);
        return NULL;
    }
    c->busy = true;
    return f;
}

bool ll_smtp_conn_has(const ll_smtp_conn *c, const char *extension) {
    return c && ll__smtp_caps_has(&c->hs.caps, extension);
}

bool ll_smtp_conn_is_tls(const ll_smtp_conn *c) { return c && c->s && ll_stream_is_tls(c->s); }

ll_future *ll_smtp_close(ll_smtp_conn *c) {
    if (!c) return NULL;
    ll_loop *loop = c->cfg->loop;
    ll_future *f = ll__smtp_conn_shut(c, true);
    ll__smtp_conn_unref(c);
    if (f) return f;
    f = ll_future_new(loop);
    if (f) ll_future_resolve(f, NULL, NULL);
    return f;
}
