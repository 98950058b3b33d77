/* smtp_pool.c — many messages through a pool of sessions: a MIME message per recipient (text +
 * HTML + attachment), at most 4 sessions, retries with backoff for 4xx, one deadline per message.
 * Needs a server: LL_SMTP_URL="smtp://host:port", LL_SMTP_CA=ca.pem (with-servers sets both). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libloop.h>
#include <libloop/mime.h>
#include <libloop/smtp.h>

enum { N = 50 };

static int main_task(void *arg) {
    (void)arg;
    ll_tls_opts tls = {.ca_file = getenv("LL_SMTP_CA")};
    ll_smtp_opts o = {.tls = &tls, .max_sessions = 4, .retries = 2, .retry_backoff = 0.5,
                      .message_timeout = 30};
    char *err = NULL;
    ll_smtp_client *cl = ll_smtp_client_new(getenv("LL_SMTP_URL"), &o, &err);
    if (!cl) {
        fprintf(stderr, "%s\n", err);
        ll_free(err);
        return 1;
    }
    ll_future *fs[N];
    for (int i = 0; i < N; i++) {
        char to[64], text[128];
        snprintf(to, sizeof to, "user%d@example.com", i);
        snprintf(text, sizeof text, "Hello user %d,\nyour report is attached.\n", i);
        ll_smtp_mime *m = ll_smtp_mime_new();
        ll_smtp_mime_set_from(m, "Reports", "reports@example.com");
        ll_smtp_mime_add_to(m, NULL, to);
        ll_smtp_mime_set_subject(m, "Your report — März");  /* UTF-8: encoded for you */
        ll_smtp_mime_set_text(m, text);
        ll_smtp_mime_set_html(m, "<p>Your report is attached.</p>");
        ll_smtp_mime_attach(m, "report.csv", "text/csv", "a,b\n1,2\n", 8);
        ll_smtp_mail mail;
        if (ll_smtp_mime_mail(m, &mail, &err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        fs[i] = ll_smtp_send(cl, &mail);   /* copies the message: the builder can go */
        ll_smtp_mime_free(m);
    }
    int sent = 0;
    for (int i = 0; i < N; i++) {
        if (ll_await(fs[i]) == 0) sent++;
        else fprintf(stderr, "message %d: %s\n", i, ll_future_errmsg(fs[i]));
        ll_future_free(fs[i]);
    }
    ll_smtp_client_stats st;
    ll_smtp_client_get_stats(cl, &st);
    printf("%d of %d sent over %llu sessions\n", sent, N, (unsigned long long)st.sessions);
    ll_smtp_client_free(cl);   /* idle sessions say QUIT in the background */
    return sent == N ? 0 : 1;
}

int main(void) {
    if (!getenv("LL_SMTP_URL")) {
        printf("LL_SMTP_URL is not set: nothing to do (run under build/tools/with-servers)\n");
        return 0;
    }
    return ll_run(main_task, NULL) == 0 ? 0 : 1;
}
