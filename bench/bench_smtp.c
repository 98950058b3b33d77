/*
 * bench_smtp.c — libloop-smtp's throughput: SESSIONS worker tasks sending 1 KiB messages (one
 * recipient) through one ll_smtp_client for SECS seconds, either on reused sessions (RSET between
 * messages, pipelined with MAIL) or on a new session per message (max_messages_per_session = 1:
 * connect, greeting, EHLO, the message, QUIT).
 *
 * Usage: bench_smtp URL SESSIONS reuse|new SECS [SENDERS]
 * SENDERS (default SESSIONS) tasks each keep one send in flight. With more senders than sessions
 * the extra sends wait for a session, and a reused session sends the next waiting message's
 * MAIL/RCPT in the same write as the previous message's data (RFC 2920): the connections to the
 * server stay SESSIONS, the round trips per message drop from three to two.
 * Prints "msgs=RATE cpu_us_per_msg=X failed=N pipelined=P" (CPU: user+sys of this process while
 * measuring; P: messages whose envelope was pipelined behind the previous message's data).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <libloop.h>
#include <libloop/smtp.h>

static const char *url;
static int sessions, senders;
static bool reuse;
static double secs;
static char body[1024];
static long done_count, failed;
static bool stop;
static ll_smtp_client *client;

static double cpu_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int worker(void *arg) {
    (void)arg;
    const char *rcpt[] = {"sink@example.test"};
    ll_smtp_mail m = {"bench@example.test", rcpt, 1, body, sizeof body};
    while (!stop) {
        ll_future *f = ll_smtp_send(client, &m);
        int rc = ll_await(f);
        if (rc == 0) done_count++;
        else {
            if (failed++ == 0) fprintf(stderr, "bench_smtp: %s\n", ll_future_errmsg(f));
            if (rc == LL_ECANCELED) {
                ll_future_free(f);
                return 0;
            }
        }
        ll_future_free(f);
    }
    return 0;
}

static int main_task(void *arg) {
    (void)arg;
    ll_smtp_opts o = {.security = LL_SMTP_PLAIN, .max_sessions = (unsigned)sessions,
                      .max_messages_per_session = reuse ? 1000000000u : 1u, .noop_after = -1,
                      .retries = 1, .retry_backoff = 0.01};
    char *err = NULL;
    client = ll_smtp_client_new(url, &o, &err);
    if (!client) {
        fprintf(stderr, "bench_smtp: %s\n", err);
        return 1;
    }
    ll_future **fs = calloc((size_t)senders, sizeof *fs);
    for (int i = 0; i < senders; i++) fs[i] = ll_spawn(worker, NULL);
    ll_sleep(0.5);
    long n0 = done_count;
    double c0 = cpu_now();
    ll_time t0 = ll_now();
    ll_sleep(secs);
    long n1 = done_count;
    double c1 = cpu_now();
    ll_time t1 = ll_now();
    stop = true;
    ll_smtp_client_stats st;
    ll_smtp_client_get_stats(client, &st);
    for (int i = 0; i < senders; i++) {
        ll_await(fs[i]);
        ll_future_free(fs[i]);
    }
    free(fs);
    ll_smtp_client_free(client);
    double n = (double)(n1 - n0);
    printf("msgs=%.0f cpu_us_per_msg=%.2f failed=%ld pipelined=%llu\n", n / (t1 - t0),
           n > 0 ? (c1 - c0) / n * 1e6 : 0, failed, (unsigned long long)st.pipelined);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: bench_smtp URL SESSIONS reuse|new SECS [SENDERS]\n");
        return 2;
    }
    url = argv[1];
    sessions = atoi(argv[2]);
    reuse = strcmp(argv[3], "reuse") == 0;
    secs = atof(argv[4]);
    senders = argc == 6 ? atoi(argv[5]) : sessions;
    if (sessions < 1 || senders < 1) {
        fprintf(stderr, "bench_smtp: SESSIONS and SENDERS must be at least 1\n");
        return 2;
    }
    /* 1 KiB: a few headers and lines of text, CRLF */
    int k = snprintf(body, sizeof body, "From: bench@example.test\r\nTo: sink@example.test\r\n"
                                        "Subject: bench\r\n\r\n");
    while (k < (int)sizeof body - 2) {
        int line = (int)sizeof body - 2 - k < 70 ? (int)sizeof body - 2 - k : 70;
        memset(body + k, 'x', (size_t)line);
        k += line;
        body[k++] = '\r';
        body[k++] = '\n';
    }
    return ll_run(main_task, NULL) == 0 ? 0 : 1;
}
