/*
 * auth.c — the SASL client side of SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN, CRAM-MD5
 * (RFC 2195) and XOAUTH2 (Google/Microsoft's bearer-token form). Sans-I/O: replies in, the next
 * line out. base64 and HMAC-MD5 are OpenSSL's.
 *
 * Credentials were checked for CR, LF and NUL when the configuration was made; PLAIN separates
 * its fields with NUL, so a NUL in a user name could otherwise forge an authorisation identity.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "smtp_internal.h"

const char *ll__smtp_sasl_name(int mech) {
    switch (mech) {
        case LL__AUTH_PLAIN: return "PLAIN";
        case LL__AUTH_LOGIN: return "LOGIN";
        case LL__AUTH_CRAM_MD5: return "CRAM-MD5";
        case LL__AUTH_XOAUTH2: return "XOAUTH2";
        default: return "?";
    }
}

int ll__smtp_sasl_pick(ll__smtp_sasl *s, unsigned offered, const char *forced, char *err) {
    s->step = 0;
    s->mech = 0;
    if (forced) {
        static const int all[] = {LL__AUTH_PLAIN, LL__AUTH_LOGIN, LL__AUTH_CRAM_MD5, LL__AUTH_XOAUTH2};
        for (size_t i = 0; i < 4; i++)
            if (strcasecmp(forced, ll__smtp_sasl_name(all[i])) == 0) s->mech = all[i];
        if (!s->mech)
            return ll__smtp_errf(err, LL_EINVAL, "unknown AUTH mechanism \"%s\"", forced);
        if (!(offered & (unsigned)s->mech))
            return ll__smtp_errf(err, LL_ESMTP_AUTH, "server does not offer AUTH %s", forced);
    } else if (s->token) {
        if (!(offered & LL__AUTH_XOAUTH2))
            return ll__smtp_errf(err, LL_ESMTP_AUTH, "server does not offer AUTH XOAUTH2");
        s->mech = LL__AUTH_XOAUTH2;
    } else if (offered & LL__AUTH_PLAIN) {
        s->mech = LL__AUTH_PLAIN;
    } else if (offered & LL__AUTH_LOGIN) {
        s->mech = LL__AUTH_LOGIN;
    } else if (offered & LL__AUTH_CRAM_MD5) {
        s->mech = LL__AUTH_CRAM_MD5;
    } else {
        return ll__smtp_errf(err, LL_ESMTP_AUTH, "server offers no AUTH mechanism this client "
                             "supports (PLAIN, LOGIN, CRAM-MD5, XOAUTH2)");
    }
    if (s->mech == LL__AUTH_XOAUTH2 ? !s->token : !s->pass)
        return ll__smtp_errf(err, LL_EINVAL, "AUTH %s needs %s", ll__smtp_sasl_name(s->mech),
                             s->mech == LL__AUTH_XOAUTH2 ? "an oauth_token" : "a password");
    return 0;
}

static int b64_line(ll__sbuf *out, const void *p, size_t n) {
    if (ll__b64_encode(out, p, n)) return LL_ENOMEM;
    return ll__sbuf_append(out, "\r\n", 2);
}

int ll__smtp_sasl_start(ll__smtp_sasl *s, ll__sbuf *out, char *err) {
    const char *user = s->user ? s->user : "";
    s->step = 1;
    switch (s->mech) {
        case LL__AUTH_PLAIN: {
            ll__sbuf msg = {0};
            int rc = ll__sbuf_putc(&msg, 0) || ll__sbuf_appends(&msg, user) ||
                     ll__sbuf_putc(&msg, 0) || ll__sbuf_appends(&msg, s->pass);
            if (!rc) rc = ll__sbuf_appends(out, "AUTH PLAIN ") || b64_line(out, msg.data, msg.len);
            OPENSSL_cleanse(msg.data, msg.cap);
            ll__sbuf_free(&msg);
            return rc ? LL_ENOMEM : 0;
        }
        case LL__AUTH_LOGIN:
            /* No initial response: not every server takes one for LOGIN. */
            return ll__sbuf_appends(out, "AUTH LOGIN\r\n") ? LL_ENOMEM : 0;
        case LL__AUTH_CRAM_MD5:
            return ll__sbuf_appends(out, "AUTH CRAM-MD5\r\n") ? LL_ENOMEM : 0;
        case LL__AUTH_XOAUTH2: {
            ll__sbuf msg = {0};
            int rc = ll__sbuf_printf(&msg, "user=%s\001auth=Bearer %s\001\001", user, s->token);
            if (!rc) rc = ll__sbuf_appends(out, "AUTH XOAUTH2 ") || b64_line(out, msg.data, msg.len);
            OPENSSL_cleanse(msg.data, msg.cap);
            ll__sbuf_free(&msg);
            return rc ? LL_ENOMEM : 0;
        }
        default: return ll__smtp_errf(err, LL_ESTATE, "no AUTH mechanism chosen");
    }
}

static int cram_md5(ll__smtp_sasl *s, const ll__smtp_reply *r, ll__sbuf *out, char *err) {
    ll__sbuf chal = {0};
    if (ll__b64_decode(&chal, r->text.data ? r->text.data : "", r->text.len)) {
        ll__sbuf_free(&chal);
        return ll__smtp_errf(err, LL_ESMTP_PROTO, "AUTH CRAM-MD5: the challenge is not base64");
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    const char *key = s->pass;
    if (!HMAC(EVP_md5(), key, (int)strlen(key), (const unsigned char *)(chal.data ? chal.data : ""),
              chal.len, mac, &maclen)) {
        ll__sbuf_free(&chal);
        return ll__smtp_errf(err, LL_ETLS, "AUTH CRAM-MD5: HMAC-MD5 unavailable in this OpenSSL");
    }
    ll__sbuf_free(&chal);
    ll__sbuf resp = {0};
    int rc = ll__sbuf_appends(&resp, s->user ? s->user : "") || ll__sbuf_putc(&resp, ' ');
    for (unsigned i = 0; !rc && i < maclen; i++) rc = ll__sbuf_printf(&resp, "%02x", mac[i]);
    if (!rc) rc = b64_line(out, resp.data, resp.len);
    ll__sbuf_free(&resp);
    return rc ? LL_ENOMEM : 0;
}

int ll__smtp_sasl_step(ll__smtp_sasl *s, const ll__smtp_reply *r, ll__sbuf *out, char *err) {
    if (r->code == 235) return 1;
    char what[300];
    ll__smtp_reply_describe(r, what, sizeof what);
    if (r->code != 334 || s->step >= 4) {
        return ll__smtp_errf(err, r->code / 100 == 4 ? LL_ESMTP_REPLY : LL_ESMTP_AUTH,
                             "AUTH %s refused: %s", ll__smtp_sasl_name(s->mech), what);
    }
    s->step++;
    switch (s->mech) {
        case LL__AUTH_LOGIN:
            /* Two prompts: the user name, then the password. */
            if (s->step == 2) return b64_line(out, s->user ? s->user : "", strlen(s->user ? s->user : "")) ? LL_ENOMEM : 0;
            if (s->step == 3) return b64_line(out, s->pass, strlen(s->pass)) ? LL_ENOMEM : 0;
            break;
        case LL__AUTH_CRAM_MD5:
            if (s->step > 2) break;
            return cram_md5(s, r, out, err);
        case LL__AUTH_XOAUTH2:
            /* A 334 carries the server's JSON error: answer with an empty line and the server
             * ends the exchange with 535 (which then fails it above). */
            return ll__sbuf_append(out, "\r\n", 2) ? LL_ENOMEM : 0;
        default: break;
    }
    /* An unexpected challenge: cancel the exchange ("*", RFC 4954) and fail on the reply. */
    return ll__sbuf_append(out, "*\r\n", 3) ? LL_ENOMEM : 0;
}
