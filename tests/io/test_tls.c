/*
 * test_tls.c — TLS streams against certificates made at test time by tests/io/gen-certs.sh (openssl
 * command line, in a mkdtemp directory): echo over TLS with host-name and IP verification and ALPN;
 * each bad certificate rejected with its own reason (self-signed, wrong host, expired, unknown CA);
 * the insecure switch; handshake timeout; truncation versus a clean close_notify; data OpenSSL
 * already buffered delivered without waiting for the socket; STARTTLS discarding injected
 * plaintext; client certificates.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "harness/harness.h"
#include "libloop/poll.h"
#include "libloop/server.h"
#include "libloop/stream.h"

static char certdir[PATH_MAX];

static const char *cert(const char *name) {
    static char buf[8][PATH_MAX + 128];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", certdir, name);
    return b;
}

/* Find tests/io/gen-certs.sh from the working directory or above the test binary. */
static int find_script(char *out, size_t n) {
    if (access("tests/io/gen-certs.sh", X_OK) == 0) {
        snprintf(out, n, "tests/io/gen-certs.sh");
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return -1;
    exe[len] = '\0';
    for (int up = 0; up < 8; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) break;
        *slash = '\0';
        snprintf(out, n, "%s/tests/io/gen-certs.sh", exe);
        if (access(out, X_OK) == 0) return 0;
    }
    return -1;
}

static int setup_certs(void **state) {
    (void)state;
    char script[PATH_MAX + 64], cmd[3 * PATH_MAX];
    snprintf(certdir, sizeof certdir, "/tmp/ll-tls-XXXXXX");
    if (!mkdtemp(certdir)) return -1;
    if (find_script(script, sizeof script) != 0) {
        fprintf(stderr, "test_tls: cannot find tests/io/gen-certs.sh\n");
        return -1;
    }
    snprintf(cmd, sizeof cmd, "sh '%s' '%s'", script, certdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown_certs(void **state) {
    (void)state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", certdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---- */

static ll_server *tls_server(const char *name, ll_server_handler h, void *arg, const char *alpn) {
    char c[64], k[64];
    snprintf(c, sizeof c, "%s.pem", name);
    snprintf(k, sizeof k, "%s.key", name);
    ll_tls_opts t = {.cert_file = cert(c), .key_file = cert(k), .alpn = alpn};
    ll_server_opts o = {.tls = &t};
    ll_future *f = ll_server_open("127.0.0.1", 0, h, arg, &o);
    if (ll_future_code(f)) fprintf(stderr, "%s\n", ll_future_errmsg(f));
    assert_int_equal(ll_future_code(f), 0);
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    return srv;
}

static ll_server *plain_server(ll_server_handler h, void *arg) {
    ll_future *f = ll_server_open("127.0.0.1", 0, h, arg, NULL);
    assert_int_equal(ll_future_code(f), 0);
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    return srv;
}

static void stop_server(ll_loop *loop, ll_server *srv) {
    ll_future *f = ll_server_close(srv, 0);
    assert_int_equal(ll_loop_run_until(loop, f), 0);
    ll_future_free(f);
}

typedef struct {
    const char *host;
    uint16_t port;
    ll_tls_opts tls;
    int rc;
    char msg[512];
    ll_stream *s;   /* kept when keep is set */
    bool keep;
} dial_t;

static int dial_task(void *arg) {
    dial_t *d = arg;
    ll_stream_opts o = {.tls = &d->tls};
    ll_future *f = ll_stream_connect(d->host, d->port, &o);
    d->rc = ll_await(f);
    snprintf(d->msg, sizeof d->msg, "%s", ll_future_errmsg(f));
    if (d->rc == 0 && d->keep) d->s = ll_future_take(f);
    ll_future_free(f);
    return 0;
}

static void dial(ll_loop *loop, dial_t *d) {
    assert_int_equal(lt_run_task(loop, dial_task, d), 0);
}

/* ---- echo, verification ---- */

static int tls_echo_client(void *arg) {
    dial_t *d = arg;
    d->keep = true;
    dial_task(d);
    if (d->rc) fprintf(stderr, "%s\n", d->msg);
    assert_int_equal(d->rc, 0);
    ll_stream *s = d->s;
    assert_true(ll_stream_is_tls(s));
    assert_non_null(ll_stream_tls_version(s));
    assert_non_null(ll_stream_alpn(s));
    assert_string_equal(ll_stream_alpn(s), "http/1.1");
    ll_stream_timings tm;
    ll_stream_get_timings(s, &tm);
    assert_true(tm.tls > 0 && tm.total >= tm.tls);
    size_t n = 2 * 1024 * 1024 + 77;
    char *out = malloc(n), *in = malloc(n);
    for (size_t i = 0; i < n; i++) out[i] = (char)(i * 13);
    ll_future *r = ll_stream_read_exactly(s, in, n);
    assert_int_equal(lt_await_free(ll_stream_write(s, out, n)), 0);
    assert_int_equal(ll_await(r), 0);
    ll_future_free(r);
    assert_memory_equal(in, out, n);
    /* close_notify, then the server's: a clean end of stream */
    assert_int_equal(lt_await_free(ll_stream_shutdown(s)), 0);
    assert_int_equal(lt_await_free(ll_stream_read(s, in, 1)), LL_EOF);
    free(out);
    free(in);
    ll_stream_close(s);
    return 0;
}

static void test_tls_echo_verified(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = tls_server("server", lt_echo_handler, NULL, "http/1.1");
    const char *hosts[] = {"localhost", "127.0.0.1"}; /* DNS name and IP address SAN */
    for (int i = 0; i < 2; i++) {
        dial_t d = {.host = hosts[i], .port = ll_server_port(srv),
                    .tls = {.ca_file = cert("ca.pem"), .alpn = "h2,http/1.1"}};
        assert_int_equal(lt_run_task(c.loop, tls_echo_client, &d), 0);
    }
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

static void test_tls_rejections(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    struct {
        const char *server, *host, *ca, *reason;
    } cases[] = {
        {"self", "localhost", "ca.pem", "certificate verify failed: self-signed certificate"},
        {"wrong", "localhost", "ca.pem", "certificate verify failed: hostname mismatch (the "
                                         "certificate is not valid for 'localhost')"},
        {"expired", "localhost", "ca.pem", "certificate verify failed: certificate has expired"},
        {"server", "localhost", NULL /* system store: our CA is unknown */,
         "certificate verify failed: unable to get local issuer certificate"},
        {"wrong", "127.0.0.1", "ca.pem", "certificate verify failed: IP address mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ll_server *srv = tls_server(cases[i].server, lt_echo_handler, NULL, NULL);
        dial_t d = {.host = cases[i].host, .port = ll_server_port(srv),
                    .tls = {.ca_file = cases[i].ca ? cert(cases[i].ca) : NULL}};
        dial(c.loop, &d);
        assert_int_equal(d.rc, LL_ECERT);
        char want[512];
        snprintf(want, sizeof want, "TLS handshake with %s:%u", cases[i].host, d.port);
        if (strcmp(cases[i].host, "localhost") == 0)
            snprintf(want, sizeof want, "TLS handshake with localhost:%u (127.0.0.1:%u): ", d.port,
                     d.port);
        else
            snprintf(want, sizeof want, "TLS handshake with 127.0.0.1:%u: ", d.port);
        if (strncmp(d.msg, want, strlen(want)) != 0 || !strstr(d.msg, cases[i].reason))
            fail_msg("case %zu: got '%s'", i, d.msg);
        /* the insecure switch accepts it anyway */
        dial_t d2 = {.host = cases[i].host, .port = ll_server_port(srv),
                     .tls = {.insecure_skip_verify_DANGEROUS = true}};
        dial(c.loop, &d2);
        assert_int_equal(d2.rc, 0);
        stop_server(c.loop, srv);
    }
    lt_teardown(&c);
}

static int silent_handler(ll_stream *s, void *arg) {
    (void)arg;
    char b[4096];
    int rc;
    while ((rc = lt_await_free(ll_stream_read(s, b, sizeof b))) == 0) {
    }
    return 0;
}

static void test_handshake_timeout(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = plain_server(silent_handler, NULL); /* reads the hello, never answers */
    dial_t d = {.host = "127.0.0.1", .port = ll_server_port(srv),
                .tls = {.ca_file = cert("ca.pem"), .handshake_timeout = 0.3}};
    ll_time t0 = ll_now();
    dial(c.loop, &d);
    assert_int_equal(d.rc, LL_ETIMEDOUT);
    char want[128];
    snprintf(want, sizeof want, "TLS handshake with 127.0.0.1:%u: timed out after 0.3 s", d.port);
    assert_string_equal(d.msg, want);
    assert_true(ll_now() - t0 < 3.0);
    /* a plaintext server answering garbage: a protocol error with OpenSSL's reason */
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* ---- truncation, buffered data ---- */

static int truncating_handler(ll_stream *s, void *arg) {
    bool clean = arg != NULL;
    char b[8];
    lt_await_free(ll_stream_read(s, b, 1));
    lt_await_free(ll_stream_write(s, "partial", 7));
    lt_await_free(ll_stream_drain(s));
    if (!clean) shutdown(ll_stream_fd(s), SHUT_WR); /* FIN without close_notify */
    else lt_await_free(ll_stream_shutdown(s));
    ll_sleep(0.5);
    return 0;
}

typedef struct {
    uint16_t port;
    int rc;
    char msg[512];
} trunc_t;

static int truncation_client(void *arg) {
    trunc_t *t = arg;
    dial_t d = {.host = "localhost", .port = t->port, .tls = {.ca_file = cert("ca.pem")},
                .keep = true};
    dial_task(&d);
    assert_int_equal(d.rc, 0);
    char buf[64];
    assert_int_equal(lt_await_free(ll_stream_write(d.s, "g", 1)), 0);
    t->rc = lt_await_msg(ll_stream_read_exactly(d.s, buf, 20), t->msg, sizeof t->msg);
    assert_memory_equal(buf, "partial", 7);
    ll_stream_close(d.s);
    return 0;
}

static void test_truncation_vs_close_notify(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = tls_server("server", truncating_handler, NULL, NULL);
    trunc_t t = {.port = ll_server_port(srv)};
    assert_int_equal(lt_run_task(c.loop, truncation_client, &t), 0);
    assert_int_equal(t.rc, LL_ETRUNCATED);
    assert_non_null(strstr(t.msg, "connection closed without TLS close_notify"));
    assert_non_null(strstr(t.msg, "read from localhost:"));
    stop_server(c.loop, srv);

    srv = tls_server("server", truncating_handler, (void *)1, NULL);
    t.port = ll_server_port(srv);
    assert_int_equal(lt_run_task(c.loop, truncation_client, &t), 0);
    assert_int_equal(t.rc, LL_EOF);
    assert_non_null(strstr(t.msg, "after 7 of 20 bytes"));
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* One 16000-byte write is one TLS record: the first small read makes OpenSSL decrypt all of it,
 * and the socket will never be readable again until the client answers. */
static int record_handler(ll_stream *s, void *arg) {
    (void)arg;
    static char big[16000];
    memset(big, 'r', sizeof big);
    char b[4];
    if (lt_await_free(ll_stream_write(s, big, sizeof big))) return -1;
    return lt_await_free(ll_stream_read_exactly(s, b, 3)); /* "ack" */
}

static int record_client(void *arg) {
    uint16_t port = *(uint16_t *)arg;
    dial_t d = {.host = "localhost", .port = port, .tls = {.ca_file = cert("ca.pem")}, .keep = true};
    dial_task(&d);
    assert_int_equal(d.rc, 0);
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(5));
    size_t got = 0;
    char buf[100];
    while (got < 16000) {
        ll_future *r = ll_stream_read(d.s, buf, sizeof buf);
        assert_int_equal(ll_await(r), 0);
        got += (uintptr_t)ll_future_value(r);
        ll_future_free(r);
    }
    assert_int_equal(got, 16000);
    assert_int_equal(lt_await_free(ll_stream_write(d.s, "ack", 3)), 0);
    assert_int_equal(ll_scope_exit(&sc), 0);
    ll_stream_close(d.s);
    return 0;
}

static void test_buffered_record_delivered(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = tls_server("server", record_handler, NULL, NULL);
    uint16_t port = ll_server_port(srv);
    assert_int_equal(lt_run_task(c.loop, record_client, &port), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* ---- liveness: unasked bytes make a TLS stream not idle; a session ticket does not ---- */

static int unasked_handler(ll_stream *s, void *arg) {
    (void)arg;
    char b[4];
    if (lt_await_free(ll_stream_read(s, b, 1))) return -1; /* the client's go */
    if (lt_await_free(ll_stream_write(s, "late", 4))) return -1;
    lt_await_free(ll_stream_read(s, b, 1)); /* until the client closes */
    return 0;
}

static int unasked_client(void *arg) {
    uint16_t port = *(uint16_t *)arg;
    dial_t d = {.host = "localhost", .port = port, .tls = {.ca_file = cert("ca.pem")}, .keep = true};
    dial_task(&d);
    LT_CHECKF(d.rc == 0, "%s", d.msg);
    ll_stream *s = d.s;
    /* TLS 1.3 session tickets arrive after the handshake: records, but no plaintext */
    LT_CHECK(ll_sleep(0.05) == 0);
    LT_CHECK(ll_stream_alive(s));
    LT_CHECK(lt_await_free(ll_stream_write(s, "g", 1)) == 0);
    char b[8];
    size_t buffered = 0;
    ll_stream_peek(s, &buffered);
    LT_CHECK(buffered == 0);
    LT_CHECK(lt_await_free(ll_poll(ll_stream_fd(s), LL_POLL_READ, NULL)) == 0);
    LT_CHECK(!ll_stream_alive(s));
    LT_CHECK(!ll_stream_alive(s));
    LT_CHECK(lt_await_free(ll_stream_read_exactly(s, b, 4)) == 0);
    LT_CHECK(memcmp(b, "late", 4) == 0);
    LT_CHECK(ll_stream_alive(s));
    ll_stream_close(s);
    return 0;
}

static void test_alive_unasked_bytes(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = tls_server("server", unasked_handler, NULL, NULL);
    uint16_t port = ll_server_port(srv);
    assert_int_equal(lt_run_checked(c.loop, unasked_client, &port), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* ---- STARTTLS ---- */

static int starttls_handler(ll_stream *s, void *arg) {
    (void)arg;
    char line[64];
    ll_future *r = ll_stream_read_until(s, "\r\n", 2, line, sizeof line);
    int rc = ll_await(r);
    ll_future_free(r);
    if (rc) return rc;
    /* the go-ahead with injected plaintext right behind it, in one segment */
    if ((rc = lt_await_free(ll_stream_write(s, "220 go ahead\r\nINJECTED 250 fake\r\n", 33)))) return rc;
    ll_tls_opts t = {.cert_file = cert("server.pem"), .key_file = cert("server.key")};
    if ((rc = lt_await_free(ll_stream_starttls(s, &t)))) return rc;
    return lt_await_free(ll_stream_write(s, "secret\r\n", 8));
}

static int starttls_client(void *arg) {
    uint16_t port = *(uint16_t *)arg;
    ll_future *f = ll_stream_connect("localhost", port, NULL);
    assert_int_equal(ll_await(f), 0);
    ll_stream *s = ll_future_take(f);
    ll_future_free(f);
    char line[64];
    assert_int_equal(lt_await_free(ll_stream_write(s, "STARTTLS\r\n", 10)), 0);
    ll_future *r = ll_stream_read_until(s, "\r\n", 2, line, sizeof line);
    assert_int_equal(ll_await(r), 0);
    assert_int_equal((uintptr_t)ll_future_value(r), 14);
    ll_future_free(r);
    assert_memory_equal(line, "220 go ahead\r\n", 14);
    size_t buffered;
    ll_stream_peek(s, &buffered);
    assert_int_equal(buffered, 19); /* the injection is buffered ... */
    ll_tls_opts t = {.ca_file = cert("ca.pem")};
    char msg[512];
    int rc = lt_await_msg(ll_stream_starttls(s, &t), msg, sizeof msg);
    if (rc) fprintf(stderr, "%s\n", msg);
    assert_int_equal(rc, 0);
    assert_true(ll_stream_is_tls(s));
    r = ll_stream_read_until(s, "\r\n", 2, line, sizeof line);
    assert_int_equal(ll_await(r), 0);
    assert_int_equal((uintptr_t)ll_future_value(r), 8);
    ll_future_free(r);
    assert_memory_equal(line, "secret\r\n", 8); /* ... and never delivered */
    ll_stream_close(s);
    return 0;
}

static void test_starttls_discards_injection(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_server *srv = plain_server(starttls_handler, NULL);
    uint16_t port = ll_server_port(srv);
    assert_int_equal(lt_run_task(c.loop, starttls_client, &port), 0);
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

/* ---- client certificates ---- */

static void test_client_certificate(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_tls_opts st = {.cert_file = cert("server.pem"), .key_file = cert("server.key"),
                      .ca_file = cert("ca.pem"), .require_client_cert = true};
    ll_server_opts so = {.tls = &st};
    ll_future *f = ll_server_open("127.0.0.1", 0, lt_echo_handler, NULL, &so);
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    dial_t with = {.host = "localhost", .port = ll_server_port(srv), .keep = true,
                   .tls = {.ca_file = cert("ca.pem"), .cert_file = cert("client.pem"),
                           .key_file = cert("client.key")}};
    dial(c.loop, &with);
    assert_int_equal(with.rc, 0);
    ll_stream_close(with.s);
    /* without one, the server refuses: TLS 1.3 reports it on the first read */
    dial_t without = {.host = "localhost", .port = ll_server_port(srv), .keep = true,
                      .tls = {.ca_file = cert("ca.pem")}};
    dial(c.loop, &without);
    if (without.rc == 0) {
        char b[4];
        ll_future *r = ll_stream_read(without.s, b, sizeof b);
        int rc = ll_loop_run_until(c.loop, r);
        assert_true(rc == LL_ETLS || rc == LL_ECONNRESET || rc == LL_EOF);
        if (rc == LL_ETLS) assert_non_null(strstr(ll_future_errmsg(r), "certificate required"));
        ll_future_free(r);
        ll_stream_close(without.s);
    } else {
        assert_int_equal(without.rc, LL_ETLS);
    }
    stop_server(c.loop, srv);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_echo_verified),
        cmocka_unit_test(test_tls_rejections),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_truncation_vs_close_notify),
        cmocka_unit_test(test_buffered_record_delivered),
        cmocka_unit_test(test_alive_unasked_bytes),
        cmocka_unit_test(test_starttls_discards_injection),
        cmocka_unit_test(test_client_certificate),
    };
    return cmocka_run_group_tests(tests, setup_certs, teardown_certs);
}
