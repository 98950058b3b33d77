/*
 * conn.c — the adapter: one SMTP session on a libloop stream, driven from inside a task. It feeds
 * the stream's bytes to the reply parser and the replies to the handshake and transaction state
 * machines, writes what they queue, and does the TLS handshake when asked.
 *
 * Design notes:
 * - Every wait has the deadline of its phase (connect, greeting, each command, the DATA transfer,
 *   the final reply), as a scope around the await, so a silent or trickling server gives control
 *   back when the phase's time is up; the task's own deadline (the per-message one) still applies.
 *   A phase timeout fails with LL_ETIMEDOUT and a message naming the phase and the server.
 * - Reading peeks at the stream's buffer and consumes only what the parser used: the parser stops
 *   at the end of a reply, so after the STARTTLS go-ahead whatever else the server sent is still in
 *   the stream's plaintext buffer, where ll_stream_starttls discards it.
 * - A session that saw an error mid-command (timeout, lost connection, malformed reply, 421) is
 *   "broken": its state is unknown and it is never used again (closed, never pooled).
 * - The struct is reference counted: the user (or the pool) and each task running on it hold a
 *   reference, so a close while a send runs leaves memory that task still touches.
 */
#include <stdio.h>
#include <string.h>
#include "smtp_internal.h"

ll_smtp_conn *ll__smtp_conn_ref(ll_smtp_conn *c) {
    if (c) c->refs++;
    return c;
}

void ll__smtp_conn_unref(ll_smtp_conn *c) {
    if (!c || --c->refs > 0) return;
    ll_stream_close(c->s);
    ll__smtp_parser_free(&c->parser);
    ll__smtp_hs_free(&c->hs);
    ll_free(c->peer);
    ll__smtp_cfg_unref(c->cfg);
    ll_free(c);
}

const char *ll__smtp_conn_peer(const ll_smtp_conn *c) {
    return c->peer ? c->peer : c->cfg->host;
}

/* Await f with a phase deadline of `seconds` (< 0: none). *expired: that deadline cut it. */
static int await_phase(ll_future *f, double seconds, bool *expired) {
    ll_scope sc;
    ll_scope_enter(&sc, seconds < 0 ? LL_NEVER : ll_deadline_in(seconds));
    int rc = ll_await(f);
    *expired = ll_scope_exit(&sc) == LL_ETIMEDOUT;
    return rc;
}

static int fail_io(ll_smtp_conn *c, ll_future *f, int rc, bool expired, const char *phase,
                   double seconds) {
    c->broken = true;
    if (expired)
        return ll__smtp_errf(c->err, LL_ETIMEDOUT, "smtp %s: %s timed out after %.3g s", ll__smtp_conn_peer(c),
                            phase, seconds);
    if (rc == LL_EOF)
        return ll__smtp_errf(c->err, LL_EOF, "smtp %s: server closed the connection during %s",
                            ll__smtp_conn_peer(c), phase);
    if (rc == LL_ETIMEDOUT || rc == LL_ECANCELED) /* the task's own deadline or a cancel */
        return ll__smtp_errf(c->err, rc, "smtp %s: %s: %s", ll__smtp_conn_peer(c), phase,
                             rc == LL_ETIMEDOUT ? "the message's deadline passed" : "cancelled");
    return ll__smtp_errf(c->err, rc, "smtp %s: %s: %s", ll__smtp_conn_peer(c), phase,
                        f ? ll_future_errmsg(f) : ll_strerror(rc));
}

/* Read one whole reply within `seconds`; it is in c->parser.cur. */
static int read_reply(ll_smtp_conn *c, double seconds, const char *phase) {
    ll_time end = seconds < 0 ? LL_NEVER : ll_now() + seconds;
    for (;;) {
        size_t avail;
        const char *d = ll_stream_peek(c->s, &avail);
        if (avail) {
            size_t used = 0;
            int rc = ll__smtp_parser_feed(&c->parser, d, avail, &used);
            ll_stream_consume(c->s, used);
            if (rc < 0) {
                c->broken = true;
                return ll__smtp_errf(c->err, rc, "smtp %s: %s: %s", ll__smtp_conn_peer(c), phase,
                                    c->parser.err);
            }
            if (rc == 1) return 0;
        }
        ll_future *f = ll_stream_fill(c->s);
        ll_scope sc;
        ll_scope_enter(&sc, end);
        int rc = ll_await(f);
        bool expired = ll_scope_exit(&sc) == LL_ETIMEDOUT;
        if (rc) {
            rc = fail_io(c, f, rc, expired, phase, seconds);
            ll_future_free(f);
            return rc;
        }
        ll_future_free(f);
    }
}

static int write_all(ll_smtp_conn *c, const void *p, size_t n, double seconds, const char *phase,
                     bool drain) {
    if (n == 0 && !drain) return 0;
    ll_time end = seconds < 0 ? LL_NEVER : ll_now() + seconds;
    ll_future *f = n ? ll_stream_write(c->s, p, n) : ll_stream_drain(c->s);
    ll_scope sc;
    ll_scope_enter(&sc, end);
    int rc = ll_await(f);
    if (!rc && drain && n) {
        ll_future_free(f);
        f = ll_stream_drain(c->s);
        rc = ll_await(f);
    }
    bool expired = ll_scope_exit(&sc) == LL_ETIMEDOUT;
    if (rc) rc = fail_io(c, f, rc, expired, phase, seconds);
    ll_future_free(f);
    return rc;
}

static const char *hs_phase(const ll__smtp_hs *h) {
    switch (h->state) {
        case LL__HS_GREETING: return "waiting for the greeting";
        case LL__HS_EHLO: return "EHLO";
        case LL__HS_HELO: return "HELO";
        case LL__HS_STARTTLS: return "STARTTLS";
        case LL__HS_AUTH: return "AUTH";
        default: return "the session opening";
    }
}

int ll__smtp_conn_open(ll__smtp_cfg *cfg, ll_smtp_conn **out, char *err) {
    *out = NULL;
    ll_smtp_conn *c = ll_calloc(1, sizeof *c);
    if (!c) return ll__smtp_errf(err, LL_ENOMEM, "out of memory");
    c->refs = 1;
    c->cfg = ll__smtp_cfg_ref(cfg);
    ll__smtp_parser_init(&c->parser, cfg->max_line, cfg->max_lines);
    ll__smtp_hs_init(&c->hs, cfg->security, cfg->helo);
    c->hs.user = cfg->user;
    c->hs.pass = cfg->pass;
    c->hs.token = cfg->token;
    c->hs.mech = cfg->mech;
    c->hs.allow_plaintext_auth = cfg->allow_plaintext_auth;

    ll_stream_opts co;
    memset(&co, 0, sizeof co);
    co.connect_timeout = cfg->connect_timeout;
    if (cfg->security == LL_SMTP_IMPLICIT_TLS) co.tls = &cfg->tls;
    ll_future *f = ll_stream_connect(cfg->host, cfg->port, &co);
    bool expired = false;
    int rc = await_phase(f, cfg->connect_timeout, &expired);
    if (rc) {
        if (expired)
            rc = ll__smtp_errf(c->err, LL_ETIMEDOUT, "smtp %s:%u: connect timed out after %.3g s", cfg->host,
                              (unsigned)cfg->port, cfg->connect_timeout);
        else
            rc = ll__smtp_errf(c->err, rc, "smtp: %s", ll_future_errmsg(f)[0] ? ll_future_errmsg(f) : ll_strerror(rc));
        ll_future_free(f);
        memcpy(err, c->err, LL__SMTP_ERRLEN);
        ll__smtp_conn_unref(c);
        return rc;
    }
    c->s = ll_future_take(f);
    ll_future_free(f);
    c->peer = ll_strdup(ll_stream_peer(c->s));
    if (!c->peer) {
        ll__smtp_conn_unref(c);
        return ll__smtp_errf(err, LL_ENOMEM, "out of memory");
    }
    for (;;) {
        const char *phase = hs_phase(&c->hs);
        double t = c->hs.state == LL__HS_GREETING ? cfg->greeting_timeout : cfg->command_timeout;
        rc = read_reply(c, t, phase);
        if (rc) break;
        rc = ll__smtp_hs_reply(&c->hs, &c->parser.cur);
        if (rc < 0) {
            c->broken = true;
            rc = ll__smtp_errf(c->err, rc, "smtp %s: %s", c->peer, c->hs.err);
            break;
        }
        if (rc == LL__HS_NEED_TLS) {
            /* Nothing is in flight (STARTTLS went alone); whatever the server sent after its
             * go-ahead is dropped by ll_stream_starttls, never parsed. */
            ll_tls_opts tls = cfg->tls;
            if (!tls.server_name) tls.server_name = cfg->host;
            f = ll_stream_starttls(c->s, &tls);
            rc = await_phase(f, cfg->connect_timeout, &expired);
            if (rc) {
                rc = fail_io(c, f, rc, expired, "TLS handshake after STARTTLS", cfg->connect_timeout);
                ll_future_free(f);
                break;
            }
            ll_future_free(f);
            rc = ll__smtp_hs_tls_done(&c->hs);
            if (rc) {
                rc = ll__smtp_errf(c->err, rc, "out of memory");
                break;
            }
        }
        if (rc == LL__HS_DONE) {
            rc = 0;
            c->idle_since = ll_now();
            *out = c;
            return 0;
        }
        rc = write_all(c, c->hs.out.data, c->hs.out.len, cfg->command_timeout, hs_phase(&c->hs),
                       false);
        ll__sbuf_reset(&c->hs.out);
        if (rc) break;
    }
    memcpy(err, c->err, LL__SMTP_ERRLEN);
    ll__smtp_conn_unref(c);
    return rc;
}

static const char *tx_phase(const ll__smtp_txn *t) {
    switch (t->state) {
        case LL__TX_ENVELOPE: return "MAIL/RCPT";
        case LL__TX_DATA: return "DATA";
        case LL__TX_BODY: return "waiting for the reply to the message data";
        default: return "the transaction";
    }
}

/* The last body piece (with the terminator) is in t->out: let the chain put the next message's
 * envelope behind it, when this session will take another message. */
static int chain_next(ll_smtp_conn *c, ll__smtp_txn *t, ll__smtp_chain *chain) {
    if (!chain || !chain->claim || chain->next || !t->body_done || !c->hs.caps.pipelining ||
        c->messages + 2 > c->cfg->max_messages)
        return 0;
    ll__smtp_txn *next = chain->claim(chain->arg, c);
    if (!next) return 0;
    chain->next = next;
    int rc = ll__smtp_txn_follow(t, next);
    return rc ? ll__smtp_errf(c->err, rc, "smtp %s: %s", c->peer, t->err) : 0;
}

static int run_txn(ll_smtp_conn *c, ll__smtp_txn *t, ll__smtp_chain *chain) {
    ll__smtp_cfg *cfg = c->cfg;
    int rc;
    for (;;) {
        rc = write_all(c, t->out.data, t->out.len, cfg->command_timeout, tx_phase(t), false);
        if (rc) return rc;
        bool final = t->state == LL__TX_BODY;
        rc = read_reply(c, final ? cfg->final_timeout : cfg->command_timeout, tx_phase(t));
        if (rc) return rc;
        rc = ll__smtp_txn_reply(t, &c->parser.cur);
        if (rc < 0) {
            c->broken = true;
            return ll__smtp_errf(c->err, rc, "smtp %s: %s", c->peer, t->err);
        }
        if (rc == LL__TX_SEND_BODY) {
            /* One deadline for the whole transfer; 64 KiB of input per write, each awaited, so
             * a slow reader pushes back instead of the message being buffered twice. */
            ll_time end = cfg->data_timeout < 0 ? LL_NEVER : ll_now() + cfg->data_timeout;
            while ((rc = ll__smtp_txn_body(t, 64 * 1024)) == 1) {
                if ((rc = chain_next(c, t, chain)) != 0) return rc;
                double left = end == LL_NEVER ? -1 : end - ll_now();
                if (left != -1 && left < 0) left = 0;
                rc = write_all(c, t->out.data, t->out.len, left, "sending the message data", false);
                if (rc) {
                    if (c->err[0] && strstr(c->err, "timed out after"))
                        ll__smtp_errf(c->err, LL_ETIMEDOUT, "smtp %s: sending the message data "
                                      "timed out after %.3g s", c->peer, cfg->data_timeout);
                    return rc;
                }
            }
            ll__sbuf_reset(&t->out);
            if (rc < 0) return ll__smtp_errf(c->err, rc, "out of memory");
            double left = end == LL_NEVER ? -1 : end - ll_now();
            if (left != -1 && left < 0) left = 0;
            rc = write_all(c, NULL, 0, left, "sending the message data", true);
            if (rc) {
                if (c->err[0] && strstr(c->err, "timed out after"))
                    ll__smtp_errf(c->err, LL_ETIMEDOUT, "smtp %s: sending the message data timed "
                                  "out after %.3g s", c->peer, cfg->data_timeout);
                return rc;
            }
            continue;
        }
        if (rc == LL__TX_COMPLETE) {
            c->messages++;
            if (t->closing) c->broken = true;
            else c->dirty = false;
            /* A transaction that ended before DATA leaves the server's state to RSET. */
            if (t->code / 100 != 2) c->dirty = true;
            return 0;
        }
    }
}

int ll__smtp_conn_txn(ll_smtp_conn *c, ll__smtp_txn *t, const ll_smtp_mail *m,
                      ll__smtp_chain *chain) {
    bool rset = c->dirty || (c->messages > 0 && c->hs.caps.pipelining);
    int rc = ll__smtp_txn_start(t, &c->hs.caps, m->from, m->rcpt, m->nrcpt, m->data, m->len, rset);
    if (rc) {
        /* refused before anything was sent: the session is untouched */
        t->state = LL__TX_IDLE;
        return ll__smtp_errf(c->err, rc, "smtp %s: %s", c->peer, t->err);
    }
    c->dirty = true;
    rc = run_txn(c, t, chain);
    if (rc) ll__smtp_txn_abort(t);
    return rc;
}

int ll__smtp_conn_txn_resume(ll_smtp_conn *c, ll__smtp_txn *t, ll__smtp_chain *chain) {
    /* The envelope went out with the previous message's data: t->out is empty, so run_txn
     * starts by reading its replies. */
    c->dirty = true;
    int rc = run_txn(c, t, chain);
    if (rc) ll__smtp_txn_abort(t);
    return rc;
}

int ll__smtp_conn_noop(ll_smtp_conn *c) {
    int rc = write_all(c, "NOOP\r\n", 6, c->cfg->command_timeout, "NOOP", false);
    if (!rc) rc = read_reply(c, c->cfg->command_timeout, "NOOP");
    if (!rc && c->parser.cur.code != 250) {
        char d[300];
        ll__smtp_reply_describe(&c->parser.cur, d, sizeof d);
        c->broken = true;
        rc = ll__smtp_errf(c->err, LL_ESMTP_REPLY, "smtp %s: NOOP: %s", c->peer, d);
    }
    if (!rc) c->idle_since = ll_now();
    return rc;
}

/* QUIT in its own task, bounded by 2 s, then close: the session's last words. */
static int quit_task(void *arg) {
    ll_smtp_conn *c = arg;
    ll_scope sc;
    ll_scope_enter_shielded(&sc, ll_deadline_in(2));
    if (write_all(c, "QUIT\r\n", 6, 2, "QUIT", false) == 0) read_reply(c, 2, "QUIT");
    ll_scope_exit(&sc);
    ll_stream_close(c->s);
    c->s = NULL;
    ll__smtp_conn_unref(c);
    return 0;
}

ll_future *ll__smtp_conn_shut(ll_smtp_conn *c, bool quit) {
    if (!c) return NULL;
    c->closed = true;
    if (c->busy) {
        /* A task is inside a command on it: abort the connection (its awaits fail with
         * LL_ECLOSED); the handle stays valid for that task and is closed with the last
         * reference. */
        if (c->s) ll_stream_reset(c->s);
        c->broken = true;
        return NULL;
    }
    if (quit && c->s && !c->broken) {
        ll_spawn_opts so;
        memset(&so, 0, sizeof so);
        so.name = "smtp quit";
        so.loop = c->cfg->loop;
        so.deadline = ll_deadline_in(3);
        ll_future *f = ll_spawn_ex(quit_task, ll__smtp_conn_ref(c), &so);
        if (f) return f;
        ll__smtp_conn_unref(c);
    }
    ll_stream_close(c->s);
    c->s = NULL;
    return NULL;
}
