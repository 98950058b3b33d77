/*
 * test_http_timeouts.c — libloop-http's per-phase connection timeouts against peers that hang on
 * purpose, all on loopback:
 *   - DNS: a UDP socket on 127.0.0.1 that takes queries and never answers is the loop's only DNS
 *     server (ll_dns_set_servers). A GET of a name that is in no hosts file must fail with
 *     LL_EHTTP_TIMEOUT_DNS after the session's dns timeout, and the socket must have seen the
 *     query (proof that the lookup went to the fake server and nowhere else); three requests at
 *     once each fail on their own in the same time. The same hung lookup must also be cut by the
 *     request's total deadline and by the calling task's scope deadline (LL_ETIMEDOUT, with a
 *     message saying it timed out), and freeing the session must stop the connect left running in
 *     the pool at once instead of keeping the loop alive until the phase timeout. c-ares' own
 *     per-try timeout (seconds) never matters: the phase's scope cuts the lookup long before.
 *   - TCP connect: a listener with backlog 0 that never accepts. Its accept queue is filled with
 *     plain non-blocking connects until one hangs (Linux drops SYNs to a listener whose accept queue
 *     is full while net.ipv4.tcp_abort_on_overflow is 0); a GET to that port must then fail with
 *     LL_EHTTP_TIMEOUT_CONNECT after the session's connect timeout. Skipped, with the reason, when
 *     the kernel is set to reset instead of dropping or when no connect could be made to hang.
 * Timing checks: each failure must take at least 3/4 of its timeout (the phase's own timer fired,
 * not some quicker failure) and under 2 s (10 s under valgrind) on a small noisy machine.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include "harness/harness.h"
#include "libloop/dns.h"
#include "libloop/http.h"

#define HUNG_HOST "never-answers.example"


/* The upper bound of every timing check. */
static double slack(void) { return lt_under_valgrind() ? 10.0 : 2.0; }

/* Run fn as a task in a fresh loop; then let the loop finish whatever is left (a connect the pool
 * was still stopping) and require that to be quick; then prove the loop and descriptors clean. */
static void run_in_task(ll_task_fn fn, void *arg) {
    lt_ctx c;
    lt_setup(&c);
    int rc = lt_run_checked(c.loop, fn, arg);
    assert_int_equal(rc, 0);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < (lt_under_valgrind() ? 5.0 : 1.0));
    lt_teardown(&c);
}

/* Send req, keep the failure message in lt_last_err; return the code. A response is freed. */
static int fetch(ll_http_session *s, const ll_http_request *req) {
    ll_future *f = ll_http_send(s, req);
    if (!f) return LL_ENOMEM;
    int rc = ll_await(f);
    if (rc == 0) ll_http_response_free(ll_future_take(f));
    else snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return rc;
}

/* ---- a DNS server that never answers ---- */

typedef struct mute_dns {
    int fd;
    uint16_t port;
} mute_dns;

/* Bind the UDP socket and make it the loop's only DNS server. Nothing ever reads it while a test
 * runs: queries wait in its receive buffer until mute_dns_count() looks at them. */
static int mute_dns_start(mute_dns *d) {
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    LT_CHECK(d->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    LT_CHECK(bind(d->fd, (struct sockaddr *)&a, sizeof a) == 0);
    LT_CHECK(getsockname(d->fd, (struct sockaddr *)&a, &len) == 0);
    d->port = ntohs(a.sin_port);
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%u", d->port);
    LT_CHECK(ll_dns_set_servers(NULL, servers) == 0);
    return 0;
}

/* Drain the queries received so far; return how many asked about `name` (and how many in all).
 * A name with a search domain appended (resolv.conf's ndots may make c-ares try those first)
 * counts as asking about it: it still proves the lookup came here. */
static int mute_dns_count(mute_dns *d, const char *name, int *all) {
    unsigned char p[512];
    int n = 0;
    *all = 0;
    for (;;) {
        ssize_t got = recv(d->fd, p, sizeof p, MSG_DONTWAIT);
        if (got < 0) break;
        (*all)++;
        /* the question's name, as labels after the 12-byte header */
        char q[256];
        size_t o = 12, w = 0;
        while (o < (size_t)got && p[o] && w < sizeof q - 65) {
            size_t len = p[o++];
            if (o + len > (size_t)got) break;
            if (w) q[w++] = '.';
            memcpy(q + w, p + o, len);
            w += len;
            o += len;
        }
        q[w] = 0;
        size_t nl = strlen(name);
        if (strncasecmp(q, name, nl) == 0 && (q[nl] == 0 || q[nl] == '.')) n++;
    }
    return n;
}

static void mute_dns_stop(mute_dns *d) {
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
}

/* ---- DNS phase timeout ---- */

static int t_dns_timeout(void *arg) {
    (void)arg;
    mute_dns d = {.fd = -1};
    if (mute_dns_start(&d)) {
        mute_dns_stop(&d);
        return -1;
    }
    const double dns = 0.2;
    /* total and first_byte only bound the damage should the dns phase not be enforced */
    ll_http_session_opts so = {.timeouts = {.dns = dns, .total = 5, .first_byte = 2}};
    ll_http_session *s = ll_http_session_new(&so);
    LT_CHECK(s);
    ll_http_request q = {.url = "http://" HUNG_HOST ":80/"};
    ll_time t0 = ll_now();
    int rc = fetch(s, &q);
    double took = ll_now() - t0;
    /* again, now that c-ares has the name in flight or forgotten: no cached failure, same result */
    ll_time t1 = ll_now();
    int rc2 = fetch(s, &q);
    double took2 = ll_now() - t1;
    ll_http_session_free(s);
    int all;
    int asked = mute_dns_count(&d, HUNG_HOST, &all);
    mute_dns_stop(&d);
    if (rc != LL_EHTTP_TIMEOUT_DNS || rc2 != LL_EHTTP_TIMEOUT_DNS) {
        snprintf(lt_failure, sizeof lt_failure, "got %s then %s (%s), want EHTTP_TIMEOUT_DNS",
                 ll_err_name(rc), ll_err_name(rc2), lt_last_err);
        return -1;
    }
    LT_CHECK(ll_http_is_timeout(rc));
    /* names the method and URL, then the host the lookup was for */
    LT_CHECK(strstr(lt_last_err, "GET http://" HUNG_HOST) == lt_last_err);
    LT_CHECK(strstr(lt_last_err, "resolve " HUNG_HOST));
    LT_CHECK(took >= 0.75 * dns && took < slack());
    LT_CHECK(took2 >= 0.75 * dns && took2 < slack());
    /* the lookups really went to our server (the name is in no hosts file), and only for it */
    LT_CHECK(asked >= 2);
    LT_CHECK(asked == all);
    return 0;
}

static void test_dns_timeout(void **state) {
    (void)state;
    run_in_task(t_dns_timeout, NULL);
}

/* Three requests at once to the hung name: each has its own connect, each fails on its own. */
typedef struct par {
    ll_http_session *s;
    int rc;
    char msg[512];
} par;

static int par_task(void *arg) {
    par *p = arg;
    ll_http_request q = {.url = "http://" HUNG_HOST "/x"};
    ll_future *f = ll_http_send(p->s, &q);
    if (!f) return p->rc = LL_ENOMEM;
    p->rc = ll_await(f);
    snprintf(p->msg, sizeof p->msg, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return 0;
}

static int t_dns_timeout_parallel(void *arg) {
    (void)arg;
    mute_dns d = {.fd = -1};
    if (mute_dns_start(&d)) {
        mute_dns_stop(&d);
        return -1;
    }
    const double dns = 0.2;
    /* total and first_byte only bound the damage should the dns phase not be enforced */
    ll_http_session_opts so = {.timeouts = {.dns = dns, .total = 5, .first_byte = 2}};
    ll_http_session *s = ll_http_session_new(&so);
    LT_CHECK(s);
    par p[3];
    ll_future *t[3];
    ll_time t0 = ll_now();
    for (int i = 0; i < 3; i++) {
        p[i] = (par){.s = s, .rc = 1};
        t[i] = ll_spawn(par_task, &p[i]);
    }
    for (int i = 0; i < 3; i++) {
        if (t[i]) ll_await(t[i]);
        ll_future_free(t[i]);
    }
    double took = ll_now() - t0;
    ll_http_session_free(s);
    int all;
    int asked = mute_dns_count(&d, HUNG_HOST, &all);
    mute_dns_stop(&d);
    for (int i = 0; i < 3; i++) {
        LT_CHECK(t[i]);
        snprintf(lt_last_err, sizeof lt_last_err, "%s", p[i].msg);
        LT_CHECK(p[i].rc == LL_EHTTP_TIMEOUT_DNS);
        LT_CHECK(strstr(p[i].msg, "GET http://" HUNG_HOST "/x: ") == p[i].msg);
        LT_CHECK(strstr(p[i].msg, "resolve " HUNG_HOST));
    }
    /* concurrently, not one after the other */
    LT_CHECK(took >= 0.75 * dns && took < slack());
    LT_CHECK(asked >= 1 && asked == all);
    return 0;
}

static void test_dns_timeout_parallel(void **state) {
    (void)state;
    run_in_task(t_dns_timeout_parallel, NULL);
}

/* The request's total deadline is shorter than the dns phase: LL_ETIMEDOUT, and the session's free
 * stops the connect still resolving in the pool (run_in_task checks the loop then ends quickly). */
static int t_total_cuts_dns(void *arg) {
    (void)arg;
    mute_dns d = {.fd = -1};
    if (mute_dns_start(&d)) {
        mute_dns_stop(&d);
        return -1;
    }
    const double total = 0.3;
    ll_http_session_opts so = {.timeouts.dns = 5};
    ll_http_session *s = ll_http_session_new(&so);
    LT_CHECK(s);
    ll_http_request q = {.url = "http://" HUNG_HOST ":8080/", .timeouts.total = total};
    ll_time t0 = ll_now();
    int rc = fetch(s, &q);
    double took = ll_now() - t0;
    ll_http_session_free(s);
    int all;
    int asked = mute_dns_count(&d, HUNG_HOST, &all);
    mute_dns_stop(&d);
    if (rc != LL_ETIMEDOUT) {
        snprintf(lt_failure, sizeof lt_failure, "got %s (%s), want ETIMEDOUT", ll_err_name(rc),
                 lt_last_err);
        return -1;
    }
    LT_CHECK(strstr(lt_last_err, "GET http://" HUNG_HOST ":8080/") == lt_last_err);
    LT_CHECK(strstr(lt_last_err, "timed out")); /* says what happened, not "operation canceled" */
    LT_CHECK(took >= 0.75 * total && took < slack());
    LT_CHECK(asked >= 1 && asked == all);
    return 0;
}

static void test_total_deadline_cuts_dns(void **state) {
    (void)state;
    run_in_task(t_total_cuts_dns, NULL);
}

/* The calling task's scope deadline cuts the same hung lookup. */
static int t_scope_cuts_dns(void *arg) {
    (void)arg;
    mute_dns d = {.fd = -1};
    if (mute_dns_start(&d)) {
        mute_dns_stop(&d);
        return -1;
    }
    const double limit = 0.3;
    ll_http_session_opts so = {.timeouts.dns = 5};
    ll_http_session *s = ll_http_session_new(&so);
    LT_CHECK(s);
    ll_time t0 = ll_now();
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(limit));
    ll_future *f = ll_http_get(s, "http://" HUNG_HOST "/scoped");
    int rc = f ? ll_await(f) : LL_ENOMEM;
    int scope_rc = ll_scope_exit(&sc);
    double took = ll_now() - t0;
    /* the request either saw the inherited deadline itself (ETIMEDOUT) or was cancelled by the
     * cut await (ECANCELED); either way it has settled */
    int code = f ? ll_future_code(f) : LL_ENOMEM;
    bool settled = f && ll_future_done(f);
    if (f) snprintf(lt_last_err, sizeof lt_last_err, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    ll_http_session_free(s);
    int all;
    int asked = mute_dns_count(&d, HUNG_HOST, &all);
    mute_dns_stop(&d);
    if (rc != LL_ETIMEDOUT) {
        snprintf(lt_failure, sizeof lt_failure, "await gave %s (%s), want ETIMEDOUT", ll_err_name(rc),
                 lt_last_err);
        return -1;
    }
    LT_CHECK(scope_rc == LL_ETIMEDOUT);
    LT_CHECK(settled);
    LT_CHECK(code == LL_ETIMEDOUT || code == LL_ECANCELED);
    LT_CHECK(code != LL_ETIMEDOUT || strstr(lt_last_err, "timed out"));
    LT_CHECK(took >= 0.75 * limit && took < slack());
    LT_CHECK(asked >= 1 && asked == all);
    return 0;
}

static void test_scope_deadline_cuts_dns(void **state) {
    (void)state;
    run_in_task(t_scope_cuts_dns, NULL);
}

/* ---- connect phase timeout ---- */

#define MAX_FILLERS 16

typedef struct hung_listener {
    int lfd;
    uint16_t port;
    int fillers[MAX_FILLERS];
    int nfill;
    char why[256]; /* why the setup is impossible here (then the test is skipped) */
} hung_listener;

static void hung_close(hung_listener *h) {
    for (int i = 0; i < h->nfill; i++) close(h->fillers[i]);
    h->nfill = 0;
    if (h->lfd >= 0) close(h->lfd);
    h->lfd = -1;
}

/* A listener that never accepts, with its accept queue full: a further connect hangs. 0, or -1
 * with h->why set (all descriptors closed then). */
static int hung_open(hung_listener *h) {
    memset(h, 0, sizeof *h);
    h->lfd = -1;
    FILE *fp = fopen("/proc/sys/net/ipv4/tcp_abort_on_overflow", "r");
    if (fp) {
        int v = 0;
        if (fscanf(fp, "%d", &v) == 1 && v != 0)
            snprintf(h->why, sizeof h->why, "net.ipv4.tcp_abort_on_overflow is %d: a full "
                     "accept queue resets connects instead of leaving them hanging", v);
        fclose(fp);
        if (h->why[0]) return -1;
    }
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (h->lfd < 0 || bind(h->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(h->lfd, (struct sockaddr *)&a, &len) != 0 || listen(h->lfd, 0) != 0) {
        snprintf(h->why, sizeof h->why, "cannot make a listener: %s", strerror(errno));
        hung_close(h);
        return -1;
    }
    h->port = ntohs(a.sin_port);
    /* Connect until one does not complete in 200 ms: the queue is full from then on. Every socket
     * stays open (the completed ones hold the queue's slots) until hung_close(). */
    while (h->nfill < MAX_FILLERS) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) break;
        h->fillers[h->nfill++] = fd;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) continue;
        if (errno != EINPROGRESS) {
            snprintf(h->why, sizeof h->why, "filler connect failed: %s", strerror(errno));
            hung_close(h);
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 200) == 0) return 0; /* hangs: done */
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            snprintf(h->why, sizeof h->why, "filler connect failed: %s (the kernel refuses "
                     "instead of dropping SYNs)", strerror(err));
            hung_close(h);
            return -1;
        }
    }
    snprintf(h->why, sizeof h->why, "%d connects to a backlog-0 listener all completed: this "
             "kernel does not leave a connect hanging", MAX_FILLERS);
    hung_close(h);
    return -1;
}

static int t_connect_timeout(void *arg) {
    hung_listener *h = arg;
    const double connect = 0.3;
    /* total and first_byte only bound the damage should the connect go through after all */
    ll_http_session_opts so = {.timeouts = {.connect = connect, .total = 5, .first_byte = 2}};
    ll_http_session *s = ll_http_session_new(&so);
    LT_CHECK(s);
    char url[64], addr[32];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", h->port);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", h->port);
    ll_http_request q = {.url = url};
    ll_time t0 = ll_now();
    int rc = fetch(s, &q);
    double took = ll_now() - t0;
    ll_http_session_free(s);
    if (rc != LL_EHTTP_TIMEOUT_CONNECT) {
        snprintf(lt_failure, sizeof lt_failure, "got %s (%s), want EHTTP_TIMEOUT_CONNECT",
                 ll_err_name(rc), lt_last_err);
        return -1;
    }
    LT_CHECK(ll_http_is_timeout(rc));
    LT_CHECK(strstr(lt_last_err, "GET ") == lt_last_err && strstr(lt_last_err, url));
    LT_CHECK(strstr(lt_last_err, "connect to ") && strstr(lt_last_err, addr));
    LT_CHECK(took >= 0.75 * connect && took < slack());
    return 0;
}

static void test_connect_timeout(void **state) {
    (void)state;
    int fds = lt_count_fds();
    hung_listener h;
    if (hung_open(&h) != 0) {
        print_message("skipped: %s\n", h.why);
        assert_int_equal(lt_count_fds(), fds);
        skip();
    }
    lt_ctx c;
    lt_setup(&c);
    c.fds_before = fds; /* the listener and fillers are closed before the teardown counts */
    lt_failure[0] = lt_last_err[0] = 0;
    int rc = lt_run_task(c.loop, t_connect_timeout, &h);
    hung_close(&h);
    if (lt_failure[0]) fail_msg("%s (last error: %s)", lt_failure, lt_last_err);
    assert_int_equal(rc, 0);
    assert_int_equal(ll_loop_run(c.loop), 0);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dns_timeout),
        cmocka_unit_test(test_dns_timeout_parallel),
        cmocka_unit_test(test_total_deadline_cuts_dns),
        cmocka_unit_test(test_scope_deadline_cuts_dns),
        cmocka_unit_test(test_connect_timeout),
    };
    return cmocka_run_group_tests_name("http phase timeouts", tests, NULL, NULL);
}
