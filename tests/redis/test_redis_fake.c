/*
 * test_redis_fake.c — misbehaving servers written with libloop's server API (a real redis-server
 * never does these): malformed replies (bad type byte, negative and huge lengths, missing CRLF,
 * a 1e9-element array header, nesting too deep), a truncated bulk followed by a close, replies
 * that never come, a reply nobody asked for, and a connection that drops after N replies.
 * Each bad reply fails the command waiting for it with a message saying what was wrong, fails the
 * others on the connection, and allocates nothing an announced length asked for.
 */
#include "redistest.h"


/* Timing tolerance: the machine is shared and sanitizers slow things. */
static double slack(void) { return (lt_under_valgrind() || lt_under_asan()) ? 1.0 : 0.5; }

typedef struct script {
    size_t need;             /* bytes of commands to read before answering */
    const char *reply;       /* sent once `need` bytes came */
    size_t reply_len;
    bool hang;               /* then keep the connection open without a word */
} script;

static int fake_handler(ll_stream *s, void *arg) {
    script *sc = arg;
    char buf[4096];
    size_t got = 0;
    while (got < sc->need) {
        ll_future *r = ll_stream_read(s, buf, sizeof buf);
        int rc = ll_await(r);
        got += (uintptr_t)ll_future_value(r);
        ll_future_free(r);
        if (rc) return 0;
    }
    if (sc->reply_len) lt_await_free(ll_stream_write(s, sc->reply, sc->reply_len));
    if (sc->hang) {
        for (;;) { /* read and ignore until the client goes away */
            ll_future *r = ll_stream_read(s, buf, sizeof buf);
            int rc = ll_await(r);
            ll_future_free(r);
            if (rc) return 0;
        }
    }
    lt_await_free(ll_stream_drain(s));
    return 0;
}

static ll_server *fake_start(script *sc, char *url, size_t n) {
    ll_future *f = ll_server_open("127.0.0.1", 0, fake_handler, sc, NULL);
    if (ll_await(f)) {
        ll_future_free(f);
        return NULL;
    }
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    snprintf(url, n, "redis://127.0.0.1:%u", ll_server_port(srv));
    return srv;
}

static void fake_stop(ll_server *srv) { lt_await_free(ll_server_close(srv, 0.2)); }

typedef struct bad_case {
    const char *name;
    const char *reply;
    size_t len;
    int code;
    const char *want;
} bad_case;

#define BC(n, r, c, w) {n, r, sizeof r - 1, c, w}
static const bad_case bad_cases[] = {
    BC("bad type byte", "?OK\r\n", LL_EREDIS_PROTO, "bad type byte 0x3f"),
    BC("negative bulk length", "$-7\r\nabc\r\n", LL_EREDIS_PROTO, "negative bulk length -7"),
    BC("huge bulk length", "$99999999999\r\n", LL_ETOOLARGE, "bulk string of 99999999999 bytes"),
    BC("missing CRLF", "$3\r\nabcde", LL_EREDIS_PROTO, "not followed by CRLF"),
    BC("LF only", "+OK\n", LL_EREDIS_PROTO, "without CR"),
    BC("1e9-element array", "*1000000000\r\n", LL_ETOOLARGE, "array of 1000000000 elements"),
    BC("deep nesting", "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n", LL_ETOOLARGE,
       "nested deeper than 7"),
    BC("not a number", ":12a\r\n", LL_EREDIS_PROTO, "not a number"),
};

static int t_malformed(void *arg) {
    (void)arg;
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        const bad_case *bc = &bad_cases[i];
        /* two PINGs come in; the first gets the bad reply */
        script sc = {.need = 28, .reply = bc->reply, .reply_len = bc->len, .hang = true};
        char url[64];
        ll_server *srv = fake_start(&sc, url, sizeof url);
        LT_CHECK(srv);
        ll_redis_opts o = {.no_reconnect = true};
        ll_redis_conn *c = rt_connect_opts(url, &o);
        LT_CHECK(c);
        ll_future *a = ll_redis_commandf(c, "PING"), *b = ll_redis_commandf(c, "PING");
        int rc = ll_await(a);
        LT_CHECKF(rc == bc->code && strstr(ll_future_errmsg(a), bc->want), "%s: %d %s", bc->name,
                  rc, ll_future_errmsg(a));
        LT_CHECK(strstr(ll_future_errmsg(a), url + 8)); /* names the peer */
        rc = ll_await(b);
        LT_CHECKF(rc == LL_EREDIS_CONN, "%s: second: %d %s", bc->name, rc, ll_future_errmsg(b));
        ll_future_free(a);
        ll_future_free(b);
        /* the connection is closed for good (no_reconnect): later commands fail at once */
        ll_future *later = ll_redis_commandf(c, "PING");
        LT_CHECK(ll_await(later) != 0);
        ll_future_free(later);
        ll_redis_close(c);
        fake_stop(srv);
    }
    return 0;
}
RT_TEST(test_malformed, t_malformed)

/* A bulk cut short, then the server closes: EOF, not a reply. */
static int t_truncated(void *arg) {
    (void)arg;
    script sc = {.need = 14, .reply = "$10\r\nabc", .reply_len = 8};
    char url[64];
    ll_server *srv = fake_start(&sc, url, sizeof url);
    LT_CHECK(srv);
    ll_redis_opts o = {.no_reconnect = true};
    ll_redis_conn *c = rt_connect_opts(url, &o);
    LT_CHECK(c);
    ll_future *a = ll_redis_commandf(c, "PING");
    LT_CHECK(ll_await(a) == LL_EREDIS_CONN);
    LT_CHECKF(strstr(ll_future_errmsg(a), "connection lost"), "%s", ll_future_errmsg(a));
    ll_future_free(a);
    ll_redis_close(c);
    fake_stop(srv);
    return 0;
}
RT_TEST(test_truncated, t_truncated)

/* Replies never come: the deadline returns on time; with reply_timeout the connection is given
 * up even for a command without a deadline; a reply nobody asked for is a protocol error. */
static int t_never(void *arg) {
    (void)arg;
    script sc = {.need = 1, .hang = true};
    char url[64];
    ll_server *srv = fake_start(&sc, url, sizeof url);
    LT_CHECK(srv);
    ll_redis_opts o = {.no_reconnect = true, .reply_timeout = 0.3};
    ll_redis_conn *c = rt_connect_opts(url, &o);
    LT_CHECK(c);
    ll_future *a = ll_redis_commandf(c, "PING"), *b = ll_redis_commandf(c, "PING");
    ll_time t0 = ll_now();
    LT_CHECK(ll_await_timeout(a, 0.1) == LL_ETIMEDOUT);
    LT_CHECK(ll_now() - t0 < 0.1 + slack());
    LT_CHECK(ll_await(b) == LL_EREDIS_CONN);
    double took = ll_now() - t0;
    LT_CHECKF(took > 0.25 && took < 0.3 + slack(), "took %.3f", took);
    LT_CHECKF(strstr(ll_future_errmsg(b), "no reply for 0.3 s"), "%s", ll_future_errmsg(b));
    ll_future_free(a);
    ll_future_free(b);
    ll_redis_close(c);
    fake_stop(srv);

    /* the setup never answered (CLIENT SETNAME): the connect ends at connect_timeout */
    script mute = {.need = 1, .hang = true};
    srv = fake_start(&mute, url, sizeof url);
    LT_CHECK(srv);
    ll_redis_opts so = {.client_name = "x", .connect_timeout = 0.3};
    t0 = ll_now();
    c = rt_connect_opts(url, &so);
    took = ll_now() - t0;
    LT_CHECK(!c);
    LT_CHECKF(strstr(lt_last_err, "did not finish within 0.3 s"), "%s", lt_last_err);
    LT_CHECKF(took > 0.25 && took < 0.3 + slack(), "took %.3f", took);
    fake_stop(srv);

    /* unsolicited: the server speaks first */
    script us = {.need = 0, .reply = "+HELLO\r\n", .reply_len = 8, .hang = true};
    srv = fake_start(&us, url, sizeof url);
    LT_CHECK(srv);
    ll_redis_opts o2 = {.no_reconnect = true};
    c = rt_connect_opts(url, &o2);
    LT_CHECK(c);
    ll_sleep(0.1);
    ll_future *x = ll_redis_commandf(c, "PING");
    LT_CHECK(ll_await(x) != 0); /* the connection was closed by the stray reply */
    ll_future_free(x);
    ll_redis_close(c);
    fake_stop(srv);
    return 0;
}
RT_TEST(test_never, t_never)

/* The server answers 3 of 10 pipelined commands, then drops the connection. */
static int t_drop_after_n(void *arg) {
    (void)arg;
    script sc = {.need = 10 * 14, .reply = "+PONG\r\n+PONG\r\n+PONG\r\n", .reply_len = 21};
    char url[64];
    ll_server *srv = fake_start(&sc, url, sizeof url);
    LT_CHECK(srv);
    ll_redis_opts o = {.no_reconnect = true};
    ll_redis_conn *c = rt_connect_opts(url, &o);
    LT_CHECK(c);
    ll_future *fs[10];
    for (int i = 0; i < 10; i++) fs[i] = ll_redis_commandf(c, "PING");
    for (int i = 0; i < 10; i++) {
        int rc = ll_await(fs[i]);
        if (i < 3) LT_CHECK(rc == 0 && rt_str_is(fs[i], "PONG"));
        else LT_CHECKF(rc == LL_EREDIS_CONN, "%d: %d %s", i, rc, ll_future_errmsg(fs[i]));
        ll_future_free(fs[i]);
    }
    ll_redis_close(c);
    fake_stop(srv);
    return 0;
}
RT_TEST(test_drop_after_n, t_drop_after_n)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_never),     cmocka_unit_test(test_drop_after_n),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
