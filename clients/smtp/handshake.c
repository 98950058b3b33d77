/*
 * handshake.c — the session's opening as a state machine (sans-I/O): the greeting, EHLO (HELO when
 * the server does not know EHLO), STARTTLS, EHLO again over TLS, AUTH. Replies in, command bytes
 * out (h->out), and one event the adapter acts on: NEED_TLS.
 *
 * STARTTLS rules (RFC 3207 and the command-injection lessons of CVE-2011-0411 and kin):
 * - STARTTLS goes alone: it is queued only when nothing else is, and nothing is queued after it
 *   until the handshake is done.
 * - On the go-ahead the machine returns NEED_TLS; the adapter discards every byte the server sent
 *   after it (ll_stream_starttls drops the stream's plaintext buffer; the reply parser never reads
 *   past the end of a reply), so a reply injected in plaintext cannot answer a command sent over TLS.
 * - After the handshake the capabilities are forgotten and EHLO is sent again: only what the server
 *   says over TLS counts (an attacker could have removed AUTH mechanisms or added some).
 * - With STARTTLS required, a server that does not offer it, refuses it or only knows HELO fails the
 *   session (LL_ESMTP_NOTLS): no downgrade. Credentials never go over plaintext unless allowed.
 */
#include <stdio.h>
#include <string.h>
#include "smtp_internal.h"

void ll__smtp_hs_init(ll__smtp_hs *h, ll_smtp_security sec, const char *helo) {
    memset(h, 0, sizeof *h);
    h->security = sec;
    h->tls = sec == LL_SMTP_IMPLICIT_TLS;
    h->helo = helo;
    h->state = LL__HS_GREETING;
}

void ll__smtp_hs_free(ll__smtp_hs *h) {
    ll__smtp_caps_free(&h->caps);
    ll__sbuf_free(&h->out);
}

/* The one place the state changes. */
static void set_state(ll__smtp_hs *h, ll__hs_state s) { h->state = s; }

static int fail(ll__smtp_hs *h, int code, const char *what, const ll__smtp_reply *r) {
    char d[300] = "";
    if (r) ll__smtp_reply_describe(r, d, sizeof d);
    set_state(h, LL__HS_FAILED);
    return ll__smtp_errf(h->err, code, "%s%s%s", what, r ? ": " : "", d);
}

static int send_ehlo(ll__smtp_hs *h, const char *verb) {
    set_state(h, verb[0] == 'E' ? LL__HS_EHLO : LL__HS_HELO);
    return ll__sbuf_printf(&h->out, "%s %s\r\n", verb, h->helo) ? LL_ENOMEM : LL__HS_CONTINUE;
}

static bool wants_auth(const ll__smtp_hs *h) { return h->user || h->token; }

/* Capabilities are known (and final for this link): STARTTLS, AUTH or done. */
static int after_hello(ll__smtp_hs *h) {
    bool tls_wanted = h->security == LL_SMTP_STARTTLS_REQUIRED ||
                      h->security == LL_SMTP_STARTTLS_OPPORTUNISTIC;
    if (!h->tls && tls_wanted && h->caps.starttls) {
        set_state(h, LL__HS_STARTTLS);
        return ll__sbuf_appends(&h->out, "STARTTLS\r\n") ? LL_ENOMEM : LL__HS_CONTINUE;
    }
    if (!h->tls && h->security == LL_SMTP_STARTTLS_REQUIRED)
        return fail(h, LL_ESMTP_NOTLS, h->caps.esmtp ? "server does not offer STARTTLS, which is "
                    "required (security = STARTTLS required)" : "server does not speak ESMTP "
                    "(HELO only), so no STARTTLS, which is required", NULL);
    if (wants_auth(h)) {
        if (!h->tls && !h->allow_plaintext_auth)
            return fail(h, LL_ESMTP_INSECURE, "refusing to send credentials over a plaintext "
                        "connection (use TLS, or set allow_plaintext_auth)", NULL);
        if (!h->caps.esmtp)
            return fail(h, LL_ESMTP_AUTH, "server does not speak ESMTP (HELO only): no AUTH", NULL);
        h->sasl.user = h->user;
        h->sasl.pass = h->pass;
        h->sasl.token = h->token;
        int rc = ll__smtp_sasl_pick(&h->sasl, h->caps.auth, h->mech, h->err);
        if (!rc) rc = ll__smtp_sasl_start(&h->sasl, &h->out, h->err);
        if (rc) {
            set_state(h, LL__HS_FAILED);
            return rc;
        }
        set_state(h, LL__HS_AUTH);
        return LL__HS_CONTINUE;
    }
    set_state(h, LL__HS_READY);
    return LL__HS_DONE;
}

int ll__smtp_hs_reply(ll__smtp_hs *h, const ll__smtp_reply *r) {
    int rc;
    switch (h->state) {
        case LL__HS_GREETING:
            if (r->code != 220) return fail(h, LL_ESMTP_REPLY, "server refused the session", r);
            return send_ehlo(h, "EHLO");
        case LL__HS_EHLO:
            if (r->code == 250) {
                rc = ll__smtp_caps_parse(&h->caps, r);
                if (rc) return rc;
                return after_hello(h);
            }
            /* 500/502: EHLO not known. 421 and other 4xx: the server is going away. */
            if (r->code / 100 == 5) return send_ehlo(h, "HELO");
            return fail(h, LL_ESMTP_REPLY, "EHLO refused", r);
        case LL__HS_HELO:
            if (r->code != 250) return fail(h, LL_ESMTP_REPLY, "EHLO and HELO refused", r);
            ll__smtp_caps_clear(&h->caps);
            return after_hello(h);
        case LL__HS_STARTTLS:
            if (r->code == 220) {
                set_state(h, LL__HS_TLS);
                return LL__HS_NEED_TLS;
            }
            if (h->security == LL_SMTP_STARTTLS_REQUIRED || r->code == 421)
                return fail(h, r->code == 421 ? LL_ESMTP_REPLY : LL_ESMTP_NOTLS, "STARTTLS refused", r);
            /* Opportunistic: go on in plaintext, with the capabilities already known. */
            h->security = LL_SMTP_PLAIN;
            return after_hello(h);
        case LL__HS_AUTH:
            rc = ll__smtp_sasl_step(&h->sasl, r, &h->out, h->err);
            if (rc < 0) {
                set_state(h, LL__HS_FAILED);
                return rc;
            }
            if (rc == 1) {
                set_state(h, LL__HS_READY);
                return LL__HS_DONE;
            }
            return LL__HS_CONTINUE;
        case LL__HS_TLS:
            return fail(h, LL_ESMTP_PROTO, "reply during the TLS handshake", r);
        default:
            return fail(h, LL_ESTATE, "reply after the session opened", r);
    }
}

int ll__smtp_hs_tls_done(ll__smtp_hs *h) {
    h->tls = true;
    ll__smtp_caps_clear(&h->caps);
    ll__sbuf_reset(&h->out);
    return send_ehlo(h, "EHLO");
}
