/*
 * caps.c — what a server offers, from its EHLO reply (RFC 5321 4.1.1.1): the first line is its
 * name, every later line an extension keyword and its parameters. Only the extensions this client
 * uses are decoded; every keyword is kept (upper case) for ll_smtp_conn_has().
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include "smtp_internal.h"

void ll__smtp_caps_clear(ll__smtp_caps *c) {
    ll__sbuf kw = c->keywords;
    memset(c, 0, sizeof *c);
    ll__sbuf_reset(&kw);
    c->keywords = kw;
}

void ll__smtp_caps_free(ll__smtp_caps *c) {
    ll__sbuf_free(&c->keywords);
    memset(c, 0, sizeof *c);
}

static bool word_eq(const char *s, size_t n, const char *w) {
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

static void parse_auth(ll__smtp_caps *c, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        while (i < n && s[i] == ' ') i++;
        size_t b = i;
        while (i < n && s[i] != ' ') i++;
        if (word_eq(s + b, i - b, "PLAIN")) c->auth |= LL__AUTH_PLAIN;
        else if (word_eq(s + b, i - b, "LOGIN")) c->auth |= LL__AUTH_LOGIN;
        else if (word_eq(s + b, i - b, "CRAM-MD5")) c->auth |= LL__AUTH_CRAM_MD5;
        else if (word_eq(s + b, i - b, "XOAUTH2")) c->auth |= LL__AUTH_XOAUTH2;
    }
}

int ll__smtp_caps_parse(ll__smtp_caps *c, const ll__smtp_reply *r) {
    ll__smtp_caps_clear(c);
    c->esmtp = true;
    if (ll__sbuf_putc(&c->keywords, '\n')) return LL_ENOMEM;
    const char *s = r->text.data ? r->text.data : "";
    const char *end = s + r->text.len;
    const char *line = memchr(s, '\n', r->text.len); /* skip the greeting line */
    while (line && line < end) {
        line++;
        const char *e = memchr(line, '\n', (size_t)(end - line));
        if (!e) e = end;
        const char *sp = memchr(line, ' ', (size_t)(e - line));
        /* "AUTH=LOGIN PLAIN" is an old form some servers still send */
        const char *eq = memchr(line, '=', (size_t)(e - line));
        bool auth_eq = eq && (!sp || eq < sp) && word_eq(line, (size_t)(eq - line), "AUTH");
        if (auth_eq) sp = eq;
        size_t kn = (size_t)((sp ? sp : e) - line);
        const char *arg = sp ? sp + 1 : e;
        size_t an = (size_t)(e - arg);
        if (word_eq(line, kn, "PIPELINING")) c->pipelining = true;
        else if (word_eq(line, kn, "STARTTLS")) c->starttls = true;
        else if (word_eq(line, kn, "8BITMIME")) c->eightbitmime = true;
        else if (word_eq(line, kn, "SMTPUTF8")) c->smtputf8 = true;
        else if (word_eq(line, kn, "AUTH")) parse_auth(c, arg, an);
        else if (word_eq(line, kn, "SIZE")) {
            c->size = true;
            char num[24];
            size_t k = an < sizeof num - 1 ? an : sizeof num - 1;
            memcpy(num, arg, k);
            num[k] = 0;
            c->max_size = strtoull(num, NULL, 10);
        }
        if (kn && !auth_eq) {
            for (size_t i = 0; i < kn; i++)
                if (ll__sbuf_putc(&c->keywords, (char)toupper((unsigned char)line[i]))) return LL_ENOMEM;
            if (ll__sbuf_putc(&c->keywords, '\n')) return LL_ENOMEM;
        } else if (kn && !ll__smtp_caps_has(c, "AUTH")) {
            if (ll__sbuf_appends(&c->keywords, "AUTH\n")) return LL_ENOMEM;
        }
        line = e;
    }
    return 0;
}

bool ll__smtp_caps_has(const ll__smtp_caps *c, const char *keyword) {
    if (!c->keywords.data || !keyword) return false;
    size_t n = strlen(keyword);
    const char *s = c->keywords.data;
    while ((s = strchr(s, '\n')) != NULL) {
        s++;
        const char *e = strchr(s, '\n');
        if (!e) break;
        if ((size_t)(e - s) == n && strncasecmp(s, keyword, n) == 0) return true;
        s = e;
    }
    return false;
}
