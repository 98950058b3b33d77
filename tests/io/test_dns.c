/*
 * test_dns.c — the resolver: numeric addresses and /etc/hosts without a query, the reserved
 * .invalid domain, answers from a fake DNS server (a thread answering UDP on 127.0.0.1): addresses,
 * NXDOMAIN, the TTL cache, a silent server bounded by the task's deadline, lookups cancelled
 * mid-flight (nothing leaks, the loop is not kept alive), the loop freed with lookups in flight,
 * and the system resolver's failure for a name that does not exist.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include "harness/harness.h"
#include "libloop/dns.h"
#include "libloop/server.h"
#include "libloop/stream.h"

/* ---- a fake DNS server ---- */

typedef struct fakedns {
    int fd;
    uint16_t port;
    pthread_t thread;
    _Atomic bool stop; /* set by the test, read by the server thread */
    int queries;        /* questions received for names under .test */
    int a_queries_a;    /* A questions for a.test */
    pthread_mutex_t lock;
} fakedns;

/* The name of the question at p (labels), as "a.test"; returns the offset after QTYPE/QCLASS. */
static size_t parse_question(const unsigned char *p, size_t n, char *name, size_t size,
                             uint16_t *qtype) {
    size_t o = 12, w = 0;
    while (o < n && p[o]) {
        size_t len = p[o++];
        if (o + len > n || w + len + 2 > size) return 0;
        if (w) name[w++] = '.';
        memcpy(name + w, p + o, len);
        w += len;
        o += len;
    }
    name[w] = '\0';
    o++; /* the root label */
    if (o + 4 > n) return 0;
    *qtype = (uint16_t)(p[o] << 8 | p[o + 1]);
    return o + 4;
}

static void *fakedns_main(void *arg) {
    fakedns *d = arg;
    unsigned char q[512], r[512];
    while (!d->stop) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(d->fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
        if (n < 12) continue; /* timeout (SO_RCVTIMEO) or junk */
        char name[256];
        uint16_t qtype = 0;
        size_t qend = parse_question(q, (size_t)n, name, sizeof name, &qtype);
        if (!qend) continue;
        pthread_mutex_lock(&d->lock);
        d->queries++;
        if (strcmp(name, "a.test") == 0 && qtype == 1) d->a_queries_a++;
        pthread_mutex_unlock(&d->lock);
        if (strcmp(name, "slow.test") == 0) continue; /* never answers */
        memcpy(r, q, qend);
        r[2] = 0x81; /* QR, RD */
        r[3] = 0x80; /* RA, rcode 0 */
        r[4] = 0, r[5] = 1;
        r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
        size_t o = qend;
        int answers = 0;
        if (strcmp(name, "nx.test") == 0) {
            r[3] = 0x83; /* NXDOMAIN */
        } else if (qtype == 1 && strcmp(name, "multi.test") == 0) {
            /* 127.0.0.2 first: nothing listens there (refused), then 127.0.0.1 */
            for (int i = 2; i >= 1; i--) {
                const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4,
                                            127, 0, 0, (unsigned char)i};
                memcpy(r + o, rr, sizeof rr);
                o += sizeof rr;
                answers++;
            }
        } else if (qtype == 1 && (strcmp(name, "a.test") == 0 || strcmp(name, "two.test") == 0)) {
            int count = strcmp(name, "two.test") == 0 ? 2 : 1;
            for (int i = 0; i < count; i++) {
                const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4,
                                            10, 1, 2, (unsigned char)(3 + i)};
                memcpy(r + o, rr, sizeof rr);
                o += sizeof rr;
                answers++;
            }
        }
        r[7] = (unsigned char)answers;
        sendto(d->fd, r, o, 0, (struct sockaddr *)&from, flen);
    }
    return NULL;
}

static void fakedns_start(fakedns *d) {
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    d->fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(d->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(d->fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(d->fd, (struct sockaddr *)&a, &len);
    d->port = ntohs(a.sin_port);
    struct timeval tv = {0, 50000};
    setsockopt(d->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(pthread_create(&d->thread, NULL, fakedns_main, d), 0);
}

static void fakedns_stop(fakedns *d) {
    d->stop = true;
    pthread_join(d->thread, NULL);
    close(d->fd);
    pthread_mutex_destroy(&d->lock);
}

static void use_fake(ll_loop *loop, fakedns *d) {
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%u", d->port);
    assert_int_equal(ll_dns_set_servers(loop, servers), 0);
}

static const char *addr_str(const ll_addr *a, char *buf, size_t n) {
    return ll_addr_format((const struct sockaddr *)&a->sa, a->len, buf, n);
}

/* ---- no query needed ---- */

static void test_numeric_and_invalid(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    char buf[64];
    ll_future *f = ll_resolve("127.0.0.1", 80, NULL);
    assert_true(ll_future_done(f)); /* answered at once, no query */
    assert_int_equal(ll_future_code(f), 0);
    ll_addrinfo *ai = ll_future_value(f);
    assert_int_equal(ai->count, 1);
    assert_string_equal(addr_str(&ai->addrs[0], buf, sizeof buf), "127.0.0.1:80");
    assert_string_equal(ai->name, "127.0.0.1");
    ll_future_free(f);

    f = ll_resolve("[::1]", 443, NULL);
    assert_int_equal(ll_future_code(f), 0);
    ai = ll_future_take(f);
    ll_future_free(f);
    assert_string_equal(addr_str(&ai->addrs[0], buf, sizeof buf), "[::1]:443");
    ll_addrinfo_free(ai);

    f = ll_resolve("127.0.0.1", 80, &(ll_resolve_opts){.family = AF_INET6});
    assert_int_equal(ll_future_code(f), LL_ENOTFOUND);
    assert_string_equal(ll_future_errmsg(f), "resolve 127.0.0.1: not an IPv6 address");
    ll_future_free(f);

    f = ll_resolve("nonexistent.invalid", 80, NULL);
    assert_true(ll_future_done(f));
    assert_int_equal(ll_future_code(f), LL_ENOTFOUND);
    assert_string_equal(ll_future_errmsg(f), "resolve nonexistent.invalid: host name not found");
    ll_future_free(f);

    f = ll_resolve("", 80, NULL);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    ll_future_free(f);

    /* a newline or space is never part of a name: refused before any query (fuzz_pg_conninfo) */
    f = ll_resolve("db\nFORGED log line", 80, NULL);
    assert_true(ll_future_done(f));
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    assert_string_equal(ll_future_errmsg(f), "resolve: host name contains a space or control "
                                             "character (byte 0x0a at offset 2)");
    ll_future_free(f);
    lt_teardown(&c);
}

static void test_localhost_from_hosts_file(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fakedns d;
    fakedns_start(&d); /* a query would show up here: /etc/hosts must answer first */
    use_fake(c.loop, &d);
    ll_future *f = ll_resolve("localhost", 6379, &(ll_resolve_opts){.family = AF_INET});
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_addrinfo *ai = ll_future_value(f);
    char buf[64];
    assert_true(ai->count >= 1);
    assert_string_equal(addr_str(&ai->addrs[0], buf, sizeof buf), "127.0.0.1:6379");
    ll_future_free(f);
    assert_int_equal(d.queries, 0);
    fakedns_stop(&d);
    lt_teardown(&c);
}

/* ---- through a DNS server ---- */

static void test_answers_and_cache(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fakedns d;
    fakedns_start(&d);
    use_fake(c.loop, &d);
    char buf[64];
    ll_future *f = ll_resolve("two.test", 5432, &(ll_resolve_opts){.family = AF_INET});
    assert_false(ll_future_done(f));
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_addrinfo *ai = ll_future_value(f);
    assert_int_equal(ai->count, 2);
    assert_string_equal(addr_str(&ai->addrs[0], buf, sizeof buf), "10.1.2.3:5432");
    assert_string_equal(addr_str(&ai->addrs[1], buf, sizeof buf), "10.1.2.4:5432");
    ll_future_free(f);

    f = ll_resolve("a.test", 1, &(ll_resolve_opts){.family = AF_INET});
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f);
    assert_int_equal(d.a_queries_a, 1);
    /* cached for its TTL (60 s): answered at once, with the new port */
    f = ll_resolve("A.Test", 2, &(ll_resolve_opts){.family = AF_INET});
    assert_true(ll_future_done(f));
    assert_int_equal(ll_future_code(f), 0);
    assert_string_equal(addr_str(&((ll_addrinfo *)ll_future_value(f))->addrs[0], buf, sizeof buf),
                        "10.1.2.3:2");
    ll_future_free(f);
    assert_int_equal(d.a_queries_a, 1);
    ll_dns_cache_clear(c.loop);
    f = ll_resolve("a.test", 3, &(ll_resolve_opts){.family = AF_INET});
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f);
    assert_int_equal(d.a_queries_a, 2);

    f = ll_resolve("nx.test", 80, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_ENOTFOUND);
    assert_string_equal(ll_future_errmsg(f), "resolve nx.test: host name not found");
    ll_future_free(f);
    fakedns_stop(&d);
    lt_teardown(&c);
}

static int deadline_task(void *arg) {
    (void)arg;
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(0.3));
    ll_future *f = ll_resolve("slow.test", 80, NULL);
    int rc = ll_await(f);
    ll_future_free(f);
    ll_scope_exit(&sc);
    return rc;
}

static void test_silent_server_deadline_and_cancel(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fakedns d;
    fakedns_start(&d);
    use_fake(c.loop, &d);
    ll_time t0 = ll_now();
    assert_int_equal(lt_run_task(c.loop, deadline_task, NULL), LL_ETIMEDOUT);
    double took = ll_now() - t0;
    assert_true(took >= 0.29 && took < 3.0);
    /* cancelled mid-flight: c-ares still has the query; nothing keeps the loop alive */
    ll_future *fs[20];
    for (int i = 0; i < 20; i++) fs[i] = ll_resolve("slow.test", 80, NULL);
    ll_future *sleep = ll_sleep_future(c.loop, 0.05);
    ll_loop_run_until(c.loop, sleep); /* the queries are on the wire */
    ll_future_free(sleep);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(ll_future_cancel(fs[i]), 0);
        assert_int_equal(ll_future_code(fs[i]), LL_ECANCELED);
        ll_future_free(fs[i]);
    }
    t0 = ll_now();
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_true(ll_now() - t0 < 1.0);
    assert_true(d.queries >= 1);
    fakedns_stop(&d);
    lt_teardown(&c);
}

static void record_and_free(ll_future *f, void *arg) {
    *(int *)arg = ll_future_code(f);
    ll_future_free(f); /* futures must not outlive their loop */
}

static void test_loop_freed_with_lookups_in_flight(void **state) {
    (void)state;
    fakedns d;
    fakedns_start(&d);
    ll_loop *loop = ll_loop_new();
    use_fake(loop, &d);
    int codes[5];
    for (int i = 0; i < 5; i++) {
        codes[i] = 1;
        ll_future *f = ll_resolve("slow.test", 80, &(ll_resolve_opts){.family = AF_INET});
        assert_int_equal(ll_future_add_done(f, record_and_free, &codes[i]), 0);
    }
    ll_future *sleep = ll_sleep_future(loop, 0.05);
    ll_loop_run_until(loop, sleep);
    ll_future_free(sleep);
    ll_loop_free(loop); /* c-ares calls every query back; ASan/valgrind prove nothing leaks */
    for (int i = 0; i < 5; i++) assert_int_equal(codes[i], LL_ESHUTDOWN);
    fakedns_stop(&d);
}

/* ---- connecting through the resolver ---- */

static int hello_handler(ll_stream *s, void *arg) {
    (void)arg;
    ll_future *f = ll_stream_write(s, "hi", 2);
    int rc = ll_await(f);
    ll_future_free(f);
    return rc;
}

typedef struct {
    uint16_t port;
    int rc;
    char msg[256];
    char peer[128];
    double dns;
} failover_t;

static int failover_task(void *arg) {
    failover_t *t = arg;
    ll_future *f = ll_stream_connect("multi.test", t->port, NULL);
    t->rc = ll_await(f);
    snprintf(t->msg, sizeof t->msg, "%s", ll_future_errmsg(f));
    ll_stream *s = t->rc ? NULL : ll_future_take(f);
    ll_future_free(f);
    if (s) {
        snprintf(t->peer, sizeof t->peer, "%s", ll_stream_peer(s));
        ll_stream_timings tm;
        ll_stream_get_timings(s, &tm);
        t->dns = tm.dns;
        char b[2];
        f = ll_stream_read_exactly(s, b, 2);
        t->rc = ll_await(f);
        ll_future_free(f);
        ll_stream_close(s);
    }
    return 0;
}

static void test_connect_tries_next_address(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fakedns d;
    fakedns_start(&d);
    use_fake(c.loop, &d);
    ll_future *sf = ll_server_open("127.0.0.1", 0, hello_handler, NULL, NULL);
    ll_server *srv = ll_future_take(sf);
    ll_future_free(sf);
    failover_t t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_task(c.loop, failover_task, &t), 0);
    assert_int_equal(t.rc, 0);
    char want[128];
    snprintf(want, sizeof want, "multi.test:%u (127.0.0.1:%u)", t.port, t.port);
    assert_string_equal(t.peer, want);
    assert_true(t.dns > 0); /* a real query was made */
    /* with nothing listening, the failure lists every address and its reason */
    sf = ll_server_close(srv, 0);
    assert_int_equal(ll_loop_run_until(c.loop, sf), 0);
    ll_future_free(sf);
    assert_int_equal(lt_run_task(c.loop, failover_task, &t), 0);
    assert_int_equal(t.rc, LL_ECONNREFUSED);
    snprintf(want, sizeof want, "connect to multi.test:%u: 127.0.0.2:%u: connection refused; "
                                "127.0.0.1:%u: connection refused", t.port, t.port, t.port);
    assert_string_equal(t.msg, want);
    fakedns_stop(&d);
    lt_teardown(&c);
}

static int system_task(void *arg) {
    (void)arg;
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(5));
    ll_future *f = ll_resolve("no-such-host.libloop-test-nonexistent", 80, NULL);
    int rc = ll_await(f);
    const char *msg = ll_future_errmsg(f);
    /* no network here: either the resolver says so or the deadline ends the wait */
    if (rc != LL_ETIMEDOUT)
        assert_non_null(strstr(msg, "resolve no-such-host.libloop-test-nonexistent: "));
    ll_future_free(f);
    ll_scope_exit(&sc);
    return rc;
}

static void test_system_resolver_nonexistent(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int rc = lt_run_task(c.loop, system_task, NULL);
    assert_true(rc == LL_ENOTFOUND || rc == LL_EDNS || rc == LL_ETIMEDOUT);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numeric_and_invalid),
        cmocka_unit_test(test_localhost_from_hosts_file),
        cmocka_unit_test(test_answers_and_cache),
        cmocka_unit_test(test_silent_server_deadline_and_cancel),
        cmocka_unit_test(test_loop_freed_with_lookups_in_flight),
        cmocka_unit_test(test_connect_tries_next_address),
        cmocka_unit_test(test_system_resolver_nonexistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
