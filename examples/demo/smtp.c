/*
 * smtp.c — the demo's mail section: a few hundred personalised MIME messages (text + HTML, an
 * attachment, DKIM-signed with Ed25519) sent through libloop-smtp's session pool with a progress
 * bar, one recipient rejected on purpose, and a per-recipient summary at the end. Without a URL it
 * starts a throwaway SMTP server (aiosmtpd, the test suite's harness: STARTTLS with its own CA,
 * recipients named reject* refused with 550) and checks one signature with python3-dkim.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libloop.h>
#include <libloop/mime.h>
#include <libloop/smtp.h>
#include "harness/smtpserver.h"
#include "demo/sections.h"

enum { MESSAGES = 300, REJECTED_ONE = 7 };

typedef struct {
    ll_smtp_client *cl;
    const ll_smtp_dkim *dkim;
    int i;
    int *done;
    int accepted, rejected, deferred;
    char note[256];
} mjob;

static int send_one(void *arg) {
    mjob *j = arg;
    ll_smtp_mime *m = ll_smtp_mime_new();
    if (!m) return LL_ENOMEM;
    char name[64], addr[64], text[512], html[768], invoice[128];
    snprintf(name, sizeof name, "Kundin Nr. %d", j->i);
    if (j->i == REJECTED_ONE) snprintf(addr, sizeof addr, "reject-%d@example.test", j->i);
    else snprintf(addr, sizeof addr, "customer%d@example.test", j->i);
    snprintf(text, sizeof text, "Hallo %s,\n\nIhre Rechnung Nr. %d liegt bei.\n\nGrüße\nlibloop\n",
             name, 1000 + j->i);
    snprintf(html, sizeof html, "<p>Hallo <b>%s</b>,</p><p>Ihre Rechnung Nr. %d liegt bei.</p>"
             "<p>Grüße<br>libloop</p>\n", name, 1000 + j->i);
    snprintf(invoice, sizeof invoice, "Rechnung %d\nBetrag: %d,00 EUR\n", 1000 + j->i, 10 + j->i % 90);
    char fname[64];
    snprintf(fname, sizeof fname, "Rechnung-%d (März).txt", 1000 + j->i);
    ll_smtp_mime_set_from(m, "libloop Demo", "demo@libloop.test");
    ll_smtp_mime_add_to(m, name, addr);
    ll_smtp_mime_set_subject(m, "Ihre Rechnung für März");
    ll_smtp_mime_set_text(m, text);
    ll_smtp_mime_set_html(m, html);
    ll_smtp_mime_attach(m, fname, "text/plain", invoice, strlen(invoice));
    ll_smtp_mime_set_dkim(m, j->dkim);
    ll_smtp_mail mail;
    char *err = NULL;
    int rc = ll_smtp_mime_mail(m, &mail, &err);
    if (rc) {
        snprintf(j->note, sizeof j->note, "%s", err ? err : "build failed");
        ll_free(err);
        ll_smtp_mime_free(m);
        return rc;
    }
    ll_future *f = ll_smtp_send(j->cl, &mail);
    ll_smtp_mime_free(m); /* the send took its own copy */
    rc = ll_await(f);
    const ll_smtp_result *r = ll_smtp_result_of(f);
    if (r) {
        j->accepted = (int)r->accepted;
        j->rejected = (int)r->rejected;
        j->deferred = (int)r->deferred;
        if (r->rejected || r->deferred)
            snprintf(j->note, sizeof j->note, "<%s> %d %s %s", r->rcpt[0].address, r->rcpt[0].code,
                     r->rcpt[0].enhanced, r->rcpt[0].text);
    } else if (rc) {
        j->deferred = 1;
        snprintf(j->note, sizeof j->note, "%s", ll_future_errmsg(f));
    }
    ll_future_free(f);
    (*j->done)++;
    return 0;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 8192);
    if (buf) buf[fread(buf, 1, 8191, f)] = 0;
    fclose(f);
    return buf;
}

int demo_smtp(const char *url) {
    lt_smtp srv;
    memset(&srv, 0, sizeof srv);
    bool own = !url;
    const char *ca = getenv("LL_SMTP_CA");
    if (own) {
        if (!lt_smtp_start(&srv)) {
            printf("== SMTP: skipped (no python3-aiosmtpd; scripts/deps installs it)\n\n");
            return 0;
        }
        url = srv.url;
        ca = srv.cert;
    }
    char keydir[] = "/tmp/ll-demo-dkim-XXXXXX";
    if (!mkdtemp(keydir)) return LL_EIO;
    char cmd[512], keyfile[64], pubfile[64];
    snprintf(keyfile, sizeof keyfile, "%s/dkim.pem", keydir);
    snprintf(pubfile, sizeof pubfile, "%s/dkim.pub", keydir);
    snprintf(cmd, sizeof cmd, "openssl genpkey -algorithm ED25519 -out %s 2>/dev/null && "
             "openssl pkey -in %s -pubout -out %s 2>/dev/null", keyfile, keyfile, pubfile);
    char *pem = system(cmd) == 0 ? read_file(keyfile) : NULL;
    char *err = NULL;
    ll_smtp_dkim_opts dko = {.domain = "libloop.test", .selector = "demo", .key_pem = pem};
    ll_smtp_dkim *dkim = pem ? ll_smtp_dkim_new(&dko, &err) : NULL;
    free(pem);
    printf("== SMTP: %d personalised MIME messages (text + HTML + attachment, DKIM %s) through a "
           "pool of 8 sessions to %s\n", MESSAGES, dkim ? "ed25519-sha256" : "off", url);
    ll_tls_opts tls = {.ca_file = ca};
    ll_smtp_opts o = {.tls = &tls, .max_sessions = 8, .retries = 2, .retry_backoff = 0.2};
    ll_smtp_client *cl = ll_smtp_client_new(url, &o, &err);
    int rc = 0;
    if (!cl) {
        printf("   cannot make the client: %s\n", err ? err : "?");
        ll_free(err);
        rc = LL_EINVAL;
        goto out;
    }
    mjob *jobs = calloc(MESSAGES, sizeof *jobs);
    ll_future **fs = calloc(MESSAGES, sizeof *fs);
    int done = 0;
    ll_time t0 = ll_now();
    for (int i = 0; i < MESSAGES; i++) {
        jobs[i] = (mjob){.cl = cl, .dkim = dkim, .i = i, .done = &done};
        fs[i] = ll_spawn(send_one, &jobs[i]);
    }
    bool tty = isatty(1);
    while (done < MESSAGES) {
        if (tty) {
            int w = done * 40 / MESSAGES;
            printf("\r   [%.*s%*s] %d/%d", w, "########################################", 40 - w, "",
                   done, MESSAGES);
            fflush(stdout);
        }
        ll_sleep(0.05);
    }
    double took = ll_now() - t0;
    if (tty) printf("\r%*s\r", 60, "");
    int acc = 0, rej = 0, def = 0;
    for (int i = 0; i < MESSAGES; i++) {
        ll_await(fs[i]);
        ll_future_free(fs[i]);
        acc += jobs[i].accepted;
        rej += jobs[i].rejected;
        def += jobs[i].deferred;
    }
    ll_smtp_client_stats st;
    ll_smtp_client_get_stats(cl, &st);
    printf("   %d messages in %.2f s (%.0f msg/s) over %llu sessions\n", MESSAGES, took,
           MESSAGES / took, (unsigned long long)st.sessions);
    printf("   recipients: %d accepted, %d rejected, %d deferred\n", acc, rej, def);
    for (int i = 0; i < MESSAGES; i++)
        if (jobs[i].note[0]) printf("   message %d: %s\n", i, jobs[i].note);
    if (own && dkim) {
        char out[16384];
        bool ok = lt_smtp_inspect(&srv, 1, pubfile, out, sizeof out) && strstr(out, "dkim: pass");
        printf("   DKIM signature of message 1 checked by python3-dkim: %s\n", ok ? "pass" : "FAIL");
        if (!ok) rc = LL_EPROTO;
    }
    if (rej != 1 || acc != MESSAGES - 1) rc = rc ? rc : LL_EPROTO;
    printf("\n");
    free(jobs);
    free(fs);
    ll_smtp_client_free(cl);
    ll_sleep(0.1); /* the sessions' QUITs */
out:
    ll_smtp_dkim_free(dkim);
    snprintf(cmd, sizeof cmd, "rm -rf %s", keydir);
    if (system(cmd) != 0) rc = rc ? rc : LL_EIO;
    if (own) lt_smtp_stop(&srv);
    return rc;
}
