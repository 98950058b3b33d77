/* smtp_send.c — one session: connect with STARTTLS (required, the default) and a CA file, send one
 * message to three recipients, print each recipient's result. One recipient is refused by the
 * test server (reject-*), so the send fails with LL_ESMTP_PARTIAL and says who.
 * Needs a server: LL_SMTP_URL="smtp://host:port", LL_SMTP_CA=ca.pem (with-servers sets both). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libloop.h>
#include <libloop/smtp.h>

static int main_task(void *arg) {
    (void)arg;
    ll_tls_opts tls = {.ca_file = getenv("LL_SMTP_CA")};
    ll_smtp_opts o = {.tls = &tls, .helo_name = "example.client", .command_timeout = 30};
    ll_future *cf = ll_smtp_connect(getenv("LL_SMTP_URL"), &o);
    if (ll_await(cf)) {
        fprintf(stderr, "%s\n", ll_future_errmsg(cf)); /* "smtp 127.0.0.1:25: ..." */
        ll_future_free(cf);
        return 1;
    }
    ll_smtp_conn *c = ll_future_take(cf);
    ll_future_free(cf);
    printf("connected, TLS: %s, PIPELINING: %s\n", ll_smtp_conn_is_tls(c) ? "yes" : "no",
           ll_smtp_conn_has(c, "PIPELINING") ? "yes" : "no");

    const char *rcpt[] = {"alice@example.com", "reject-bob@example.com", "carol@example.com"};
    const char *data = "From: me@example.com\n"      /* any line endings: sent as CRLF */
                       "To: alice@example.com\n"
                       "Subject: hello\n\n"
                       ".a line starting with a dot is stuffed\n";
    ll_smtp_mail m = {"me@example.com", rcpt, 3, data, strlen(data)};
    ll_future *f = ll_smtp_conn_send(c, &m);
    int rc = ll_await(f);
    const ll_smtp_result *r = ll_smtp_result_of(f);       /* resolved or failed: per recipient */
    for (size_t i = 0; r && i < r->nrcpt; i++)
        printf("  %-24s %-8s %d %s %s\n", r->rcpt[i].address,
               r->rcpt[i].status == LL_SMTP_RCPT_ACCEPTED ? "accepted" :
               r->rcpt[i].status == LL_SMTP_RCPT_REJECTED ? "rejected" : "deferred",
               r->rcpt[i].code, r->rcpt[i].enhanced, r->rcpt[i].text);
    if (rc) printf("send: %s (%s)\n", ll_err_name(rc), ll_future_errmsg(f));
    int ok = rc == LL_ESMTP_PARTIAL && r && r->accepted == 2 && r->rejected == 1;
    ll_future_free(f);

    ll_future *q = ll_smtp_close(c);   /* QUIT, then close */
    ll_await(q);
    ll_future_free(q);
    return ok ? 0 : 1;
}

int main(void) {
    if (!getenv("LL_SMTP_URL")) {
        printf("LL_SMTP_URL is not set: nothing to do (run under build/tools/with-servers)\n");
        return 0;
    }
    return ll_run(main_task, NULL) == 0 ? 0 : 1;
}
