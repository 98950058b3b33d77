/*
 * txn.c — one mail transaction as a state machine (sans-I/O): [RSET] MAIL FROM, RCPT TO for each
 * recipient, DATA, the body, the final reply. Replies in, command bytes out (t->out).
 *
 * PIPELINING (RFC 2920): when offered, RSET, MAIL and every RCPT go out in one write and their
 * replies are matched in order, so 50 recipients cost one round trip; DATA waits for the RCPT
 * replies, because DATA is sent only when at least one recipient was accepted (a server that
 * answers 354 with no valid recipient would otherwise need an empty message to get out). A
 * message thus costs three round trips (envelope, DATA, body) whatever the number of recipients.
 * Without PIPELINING each command waits for its reply.
 *
 * Every recipient gets its own result: its RCPT reply, or — when the message was refused later
 * (MAIL, DATA or the final reply) — that refusal. A 421 at any point means the server is closing:
 * recipients not yet answered stay unanswered (code 0: deferred) and t->closing tells the adapter
 * the session is over.
 */
#include <stdio.h>
#include <string.h>
#include "smtp_internal.h"

static void set_state(ll__smtp_txn *t, ll__tx_state s) { t->state = s; }

void ll__smtp_txn_free(ll__smtp_txn *t) {
    for (size_t i = 0; i < t->nrcpt; i++) ll_free(t->rcpt[i].text);
    ll_free(t->rcpt);
    ll_free(t->expect);
    ll_free(t->text);
    ll__sbuf_free(&t->out);
    memset(t, 0, sizeof *t);
}

static int expect(ll__smtp_txn *t, int kind) {
    if (t->nexpect == t->expect_cap) {
        size_t cap = t->expect_cap ? t->expect_cap * 2 : 8;
        int *e = ll_realloc(t->expect, cap * sizeof *e);
        if (!e) return LL_ENOMEM;
        t->expect = e;
        t->expect_cap = cap;
    }
    t->expect[t->nexpect++] = kind;
    return 0;
}

/* The size on the wire (RFC 1870: with CRLF line ends), before dot-stuffing. */
static size_t wire_size(const char *s, size_t n) {
    size_t extra = 0;
    /* a bare LF or a bare CR each become CRLF; memchr finds them without a byte loop */
    for (const char *p = s, *end = s + n; p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++)
        if (p == s || p[-1] != '\r') extra++;
    for (const char *p = s, *end = s + n; p < end && (p = memchr(p, '\r', (size_t)(end - p))); p++)
        if (p + 1 == end || p[1] != '\n') extra++;
    return n + extra;
}

static int queue_mail(ll__smtp_txn *t) {
    bool utf8 = !ll__smtp_is_ascii(t->from, strlen(t->from));
    for (size_t i = 0; i < t->nrcpt && !utf8; i++)
        utf8 = !ll__smtp_is_ascii(t->rcpt[i].addr, strlen(t->rcpt[i].addr));
    if (ll__sbuf_printf(&t->out, "MAIL FROM:<%s>", t->from)) return LL_ENOMEM;
    if (t->caps->size && ll__sbuf_printf(&t->out, " SIZE=%zu", t->wire)) return LL_ENOMEM;
    if (t->eight && t->caps->eightbitmime && ll__sbuf_appends(&t->out, " BODY=8BITMIME"))
        return LL_ENOMEM;
    if (utf8 && ll__sbuf_appends(&t->out, " SMTPUTF8")) return LL_ENOMEM;
    if (ll__sbuf_append(&t->out, "\r\n", 2)) return LL_ENOMEM;
    return expect(t, LL__EXP_MAIL);
}

static int queue_rcpt(ll__smtp_txn *t, size_t i) {
    if (ll__sbuf_printf(&t->out, "RCPT TO:<%s>\r\n", t->rcpt[i].addr)) return LL_ENOMEM;
    return expect(t, (int)i);
}

int ll__smtp_txn_start(ll__smtp_txn *t, const ll__smtp_caps *caps, const char *from,
                       const char *const *rcpt, size_t nrcpt, const void *data, size_t len,
                       bool rset) {
    memset(t, 0, sizeof *t);
    t->caps = caps;
    t->from = from;
    t->data = data;
    t->len = len;
    int rc = ll__smtp_check_address("sender", from, true, t->err);
    if (rc) return rc;
    if (nrcpt == 0 || !rcpt) return ll__smtp_errf(t->err, LL_EINVAL, "no recipient");
    t->rcpt = ll_calloc(nrcpt, sizeof *t->rcpt);
    if (!t->rcpt) return LL_ENOMEM;
    t->nrcpt = nrcpt;
    bool utf8 = !ll__smtp_is_ascii(from, strlen(from));
    for (size_t i = 0; i < nrcpt; i++) {
        char what[48];
        snprintf(what, sizeof what, "recipient %zu", i + 1);
        rc = ll__smtp_check_address(what, rcpt[i], false, t->err);
        if (rc) return rc;
        t->rcpt[i].addr = rcpt[i];
        if (!ll__smtp_is_ascii(rcpt[i], strlen(rcpt[i]))) utf8 = true;
    }
    if (len && memchr(data, 0, len))
        return ll__smtp_errf(t->err, LL_EINVAL, "message data contains a NUL byte (refused before "
                             "sending; binary content must be encoded, see the MIME builder)");
    if (utf8 && !caps->smtputf8)
        return ll__smtp_errf(t->err, LL_ESMTP_PROTO, "an address is not ASCII and the server does "
                             "not offer SMTPUTF8");
    t->eight = !ll__smtp_is_ascii(data, len);
    t->wire = caps->size ? wire_size(data, len) : len;
    if (t->eight && !caps->eightbitmime && !caps->smtputf8)
        return ll__smtp_errf(t->err, LL_ESMTP_PROTO, "the message has 8-bit bytes and the server "
                             "does not offer 8BITMIME (encode it, e.g. with the MIME builder)");
    if (caps->size && caps->max_size && t->wire > caps->max_size)
        return ll__smtp_errf(t->err, LL_EMSGSIZE, "message of %zu bytes exceeds the server's SIZE "
                             "limit of %llu", t->wire, (unsigned long long)caps->max_size);
    set_state(t, LL__TX_ENVELOPE);
    if (rset) {
        if (ll__sbuf_appends(&t->out, "RSET\r\n") || expect(t, LL__EXP_RSET)) return LL_ENOMEM;
        if (!caps->pipelining) return 0;
    }
    if (queue_mail(t)) return LL_ENOMEM;
    if (caps->pipelining) {
        for (size_t i = 0; i < nrcpt; i++)
            if (queue_rcpt(t, i)) return LL_ENOMEM;
        t->next_rcpt = nrcpt;
    }
    return 0;
}

static int keep_end(ll__smtp_txn *t, const ll__smtp_reply *r) {
    t->code = r->code;
    snprintf(t->enhanced, sizeof t->enhanced, "%s", r->enhanced);
    ll_free(t->text);
    t->text = ll_strdup(r->text.data ? r->text.data : "");
    if (r->code == 421) t->closing = true;
    return t->text ? 0 : LL_ENOMEM;
}

static int set_rcpt(ll__smtp_rcpt *x, int code, const char *enh, const char *text) {
    x->code = code;
    snprintf(x->enhanced, sizeof x->enhanced, "%s", enh);
    ll_free(x->text);
    x->text = ll_strdup(text ? text : "");
    return x->text ? 0 : LL_ENOMEM;
}

/* Every recipient accepted so far takes the refusal in r (DATA or the final reply). */
static int refuse_accepted(ll__smtp_txn *t, const ll__smtp_reply *r) {
    for (size_t i = 0; i < t->nrcpt; i++)
        if (t->rcpt[i].code / 100 == 2 &&
            set_rcpt(&t->rcpt[i], r->code, r->enhanced, r->text.data))
            return LL_ENOMEM;
    t->accepted = 0;
    return 0;
}

static int complete(ll__smtp_txn *t) {
    set_state(t, LL__TX_DONE);
    return LL__TX_COMPLETE;
}

/* The envelope's replies are all in: DATA, or the end. */
static int envelope_done(ll__smtp_txn *t) {
    if (t->mail_code / 100 != 2) return complete(t);
    if (t->accepted == 0) {
        t->code = 0;
        ll_free(t->text);
        t->text = ll_strdup("no recipient was accepted; DATA not sent");
        if (!t->text) return LL_ENOMEM;
        return complete(t);
    }
    set_state(t, LL__TX_DATA);
    if (ll__sbuf_appends(&t->out, "DATA\r\n") || expect(t, LL__EXP_DATA)) return LL_ENOMEM;
    return LL__TX_CONTINUE;
}

int ll__smtp_txn_reply(ll__smtp_txn *t, const ll__smtp_reply *r) {
    ll__sbuf_reset(&t->out);
    if (t->state == LL__TX_BODY) {
        if (keep_end(t, r)) return LL_ENOMEM;
        if (r->code / 100 != 2 && refuse_accepted(t, r)) return LL_ENOMEM;
        return complete(t);
    }
    if (t->expect_head >= t->nexpect) {
        set_state(t, LL__TX_FAILED);
        return ll__smtp_errf(t->err, LL_ESMTP_PROTO, "unexpected reply %d with no command pending",
                             r->code);
    }
    int kind = t->expect[t->expect_head++];
    bool last = t->expect_head == t->nexpect;
    if (r->code == 421) {
        /* The server is closing: whatever is still pending gets no reply. */
        if (keep_end(t, r)) return LL_ENOMEM;
        if (kind >= 0 && t->mail_code / 100 == 2 &&
            set_rcpt(&t->rcpt[kind], r->code, r->enhanced, r->text.data))
            return LL_ENOMEM;
        if (kind == LL__EXP_DATA && refuse_accepted(t, r)) return LL_ENOMEM;
        return complete(t);
    }
    switch (kind) {
        case LL__EXP_RSET:
            if (r->code != 250) {
                set_state(t, LL__TX_FAILED);
                char d[300];
                ll__smtp_reply_describe(r, d, sizeof d);
                return ll__smtp_errf(t->err, LL_ESMTP_REPLY, "RSET refused: %s", d);
            }
            if (!t->caps->pipelining) return queue_mail(t) ? LL_ENOMEM : LL__TX_CONTINUE;
            return LL__TX_CONTINUE;
        case LL__EXP_MAIL:
            t->mail_code = r->code;
            if (r->code / 100 != 2) {
                if (keep_end(t, r)) return LL_ENOMEM;
                for (size_t i = 0; i < t->nrcpt; i++)
                    if (set_rcpt(&t->rcpt[i], r->code, r->enhanced, r->text.data)) return LL_ENOMEM;
                /* With PIPELINING the RCPT replies still come (503s): read them first. */
                return last ? complete(t) : LL__TX_CONTINUE;
            }
            if (!t->caps->pipelining) {
                t->next_rcpt = 1;
                return queue_rcpt(t, 0) ? LL_ENOMEM : LL__TX_CONTINUE;
            }
            return LL__TX_CONTINUE;
        case LL__EXP_DATA:
            if (r->code == 354) {
                /* The body is encoded piece by piece (ll__smtp_txn_body) as the adapter writes
                 * it: no second copy of a large message, no long stretch without the loop. */
                ll__smtp_dot_init(&t->dot);
                t->body_off = 0;
                t->body_done = false;
                set_state(t, LL__TX_BODY);
                return LL__TX_SEND_BODY;
            }
            if (keep_end(t, r) || refuse_accepted(t, r)) return LL_ENOMEM;
            return complete(t);
        default: /* a RCPT */
            if (t->mail_code / 100 != 2) return last ? complete(t) : LL__TX_CONTINUE;
            if (set_rcpt(&t->rcpt[kind], r->code, r->enhanced, r->text.data)) return LL_ENOMEM;
            if (r->code / 100 == 2) t->accepted++;
            if (t->next_rcpt < t->nrcpt) {
                if (queue_rcpt(t, t->next_rcpt++)) return LL_ENOMEM;
                return LL__TX_CONTINUE;
            }
            return last ? envelope_done(t) : LL__TX_CONTINUE;
    }
}

void ll__smtp_txn_abort(ll__smtp_txn *t) {
    /* A recipient accepted at RCPT time has not received the message unless the final reply
     * said so: without that reply it is deferred (code 0: no answer), not accepted. */
    if (t->state == LL__TX_DONE) return;
    for (size_t i = 0; i < t->nrcpt; i++) {
        if (t->rcpt[i].code / 100 == 2) {
            t->rcpt[i].code = 0;
            t->rcpt[i].enhanced[0] = 0;
        }
    }
    t->accepted = 0;
    set_state(t, LL__TX_FAILED);
}

int ll__smtp_txn_body(ll__smtp_txn *t, size_t max) {
    ll__sbuf_reset(&t->out);
    if (t->state != LL__TX_BODY || t->body_done) return 0;
    size_t k = t->len - t->body_off < max ? t->len - t->body_off : max;
    if (ll__smtp_dot_encode(&t->dot, (const char *)t->data + t->body_off, k, &t->out))
        return LL_ENOMEM;
    t->body_off += k;
    if (t->body_off < t->len) return 1;
    if (ll__smtp_dot_finish(&t->dot, &t->out)) return LL_ENOMEM;
    t->body_done = true;
    return 1;
}

int ll__smtp_txn_follow(ll__smtp_txn *t, ll__smtp_txn *next) {
    /* RFC 2920 3.1: the message content may open a group, and MAIL and RCPT may follow it in the
     * same group; the replies come in order (the final reply first), so each transaction still
     * reads exactly its own replies. Only a transaction whose data is complete, on a server that
     * offers PIPELINING, and a next one whose whole envelope is queued qualify. The final reply
     * ends the transaction either way (RFC 5321 4.1.1.4), so the next one's RSET is not needed for
     * the protocol; it is kept so a reused session is reset between messages on every path, at
     * no round trip. */
    size_t mail_at = next && next->nexpect > 0 && next->expect[0] == LL__EXP_RSET ? 1 : 0;
    if (t->state != LL__TX_BODY || !t->body_done || !t->caps->pipelining || !next ||
        next->state != LL__TX_ENVELOPE || next->caps != t->caps || next->nexpect <= mail_at ||
        next->expect[mail_at] != LL__EXP_MAIL || next->expect_head != 0)
        return ll__smtp_errf(t->err, LL_ESTATE, "the next envelope cannot follow this message's data");
    if (ll__sbuf_append(&t->out, next->out.data, next->out.len)) return LL_ENOMEM;
    ll__sbuf_reset(&next->out);
    return 0;
}
