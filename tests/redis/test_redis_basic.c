/*
 * test_redis_basic.c — against a real redis-server: typed replies, server errors, binary-safe
 * arguments, the printf variant, TCP / Unix / TLS, AUTH (ACL user and password-only), SELECT,
 * CLIENT SETNAME, transactions (results, WATCH abort, EXECABORT), scripts (EVALSHA falling back to
 * EVAL), SCAN cursors.
 */
#include "redistest.h"

static int t_types(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    ll_future *f = rt_cmd(c, "SET t:k hello");
    LT_CHECK(ll_future_code(f) == 0);
    LT_CHECK(ll_redis_reply_type(ll_redis_reply_of(f)) == LL_REDIS_STATUS);
    LT_CHECK(rt_str_is(f, "OK"));
    ll_future_free(f);

    f = rt_cmd(c, "GET t:k");
    LT_CHECK(ll_redis_reply_type(ll_redis_reply_of(f)) == LL_REDIS_BULK && rt_str_is(f, "hello"));
    long long v;
    /* the wrong accessor: a clear error, nothing read */
    LT_CHECK(ll_redis_reply_integer(ll_redis_reply_of(f), &v) == LL_EREDIS_TYPE);
    ll_future_free(f);

    f = rt_cmd(c, "INCRBY t:n %d", 41);
    LT_CHECK(rt_int(f) == 41);
    const char *s;
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_of(f), &s, NULL) == LL_EREDIS_TYPE && !s);
    ll_future_free(f);

    f = rt_cmd(c, "GET t:missing");
    LT_CHECK(ll_redis_reply_is_nil(ll_redis_reply_of(f)));
    ll_future_free(f);

    /* nested arrays with every type inside */
    f = rt_cmd(c, "EVAL %s 0", "return {1, {2, 'a', {'deep'}}, 'b', redis.status_reply('FINE'), "
                              "redis.error_reply('ERR inner'), false}");
    LT_CHECK(ll_future_code(f) == 0);
    ll_redis_reply *r = ll_redis_reply_of(f);
    LT_CHECK(ll_redis_reply_len(r) == 6);
    LT_CHECK(ll_redis_reply_integer(ll_redis_reply_element(r, 0), &v) == 0 && v == 1);
    const ll_redis_reply *inner = ll_redis_reply_element(r, 1);
    LT_CHECK(ll_redis_reply_len(inner) == 3);
    LT_CHECK(ll_redis_reply_len(ll_redis_reply_element(inner, 2)) == 1);
    LT_CHECK(ll_redis_reply_type(ll_redis_reply_element(r, 3)) == LL_REDIS_STATUS);
    LT_CHECK(ll_redis_reply_type(ll_redis_reply_element(r, 4)) == LL_REDIS_ERROR);
    LT_CHECK(ll_redis_reply_is_nil(ll_redis_reply_element(r, 5)));
    LT_CHECK(ll_redis_reply_element(r, 6) == NULL);
    ll_future_free(f);

    /* a server error is a failed future with the server's text and prefix */
    f = rt_cmd(c, "LPUSH t:k x");
    LT_CHECK(ll_future_code(f) == LL_EREDIS_REPLY);
    LT_CHECK(ll_redis_error_is(f, "WRONGTYPE"));
    LT_CHECK(!ll_redis_error_is(f, "WRONG"));
    LT_CHECK(strstr(ll_future_errmsg(f), "WRONGTYPE Operation against a key"));
    LT_CHECK(strstr(ll_future_errmsg(f), rt_server.url + 8)); /* names the peer */
    LT_CHECK(ll_redis_reply_of(f) == NULL);
    ll_future_free(f);

    /* reading a non-redis future as a reply: NULL, not garbage */
    ll_future *other = ll_sleep_future(NULL, 0);
    ll_await(other);
    LT_CHECK(ll_redis_reply_of(other) == NULL);
    ll_future_free(other);

    /* binary-safe arguments: NUL, CR, LF inside key and value */
    const char *argv[] = {"SET", "t:\r\nbin\0", "v\0\r\n*1\r\n"};
    size_t lens[] = {3, 9, 9};
    f = ll_redis_command(c, 3, argv, lens);
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    const char *gv[] = {"GET", "t:\r\nbin\0"};
    size_t gl[] = {3, 9};
    f = ll_redis_command(c, 2, gv, gl);
    LT_CHECK(ll_await(f) == 0);
    size_t n;
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_of(f), &s, &n) == 0 && n == 9 &&
             memcmp(s, "v\0\r\n*1\r\n", 9) == 0);
    ll_future_free(f);
    /* %b and %s arguments cannot split into several commands */
    f = rt_cmd(c, "SET %s %b", "t:a b", "x y\r\nFLUSHALL\r\n", (size_t)15);
    LT_CHECK(ll_future_code(f) == 0);
    ll_future_free(f);
    f = rt_cmd(c, "STRLEN %s", "t:a b");
    LT_CHECK(rt_int(f) == 15);
    ll_future_free(f);

    /* bad arguments */
    f = ll_redis_command(c, 0, argv, NULL);
    LT_CHECK(ll_future_code(f) == LL_EINVAL && strstr(ll_future_errmsg(f), "ll_redis_command"));
    ll_future_free(f);
    f = ll_redis_command(NULL, 1, argv, NULL);
    LT_CHECK(ll_future_code(f) == LL_EINVAL && strstr(ll_future_errmsg(f), "conn is NULL"));
    ll_future_free(f);

    /* commands that would break the one-reply-per-command rule are refused on a pipelined
     * connection, whatever their case */
    const char *refused[] = {"SUBSCRIBE ch", "psubscribe p*", "MONITOR", "CLIENT REPLY OFF",
                             "HELLO 3"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        f = ll_redis_commandf(c, refused[i]);
        LT_CHECKF(ll_future_code(f) == LL_EINVAL, "%s", refused[i]);
        ll_future_free(f);
    }
    f = rt_cmd(c, "CLIENT GETNAME"); /* CLIENT itself is fine */
    LT_CHECK(ll_future_code(f) == 0);
    ll_future_free(f);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_types, t_types)

static int t_transports(void *arg) {
    (void)arg;
    /* Unix socket */
    char url[400];
    snprintf(url, sizeof url, "unix://%s", rt_server.sock);
    ll_redis_conn *c = rt_connect_opts(url, NULL);
    LT_CHECK(c);
    ll_future *f = rt_cmd(c, "PING");
    LT_CHECK(rt_str_is(f, "PONG"));
    ll_future_free(f);
    ll_redis_close(c);

    /* TLS with the test CA: verified; after the server drops the connection, the reconnect
     * verifies again and the settings are re-applied */
    ll_tls_opts tls = {.ca_file = rt_server.cert};
    ll_redis_opts o = {.tls = &tls, .client_name = "tls-client"};
    c = rt_connect_opts(rt_server.tls_url, &o);
    LT_CHECK(c);
    f = rt_cmd(c, "PING");
    LT_CHECK(rt_str_is(f, "PONG"));
    ll_future_free(f);
    ll_redis_conn *killer = rt_connect();
    LT_CHECK(killer);
    f = rt_cmd(killer, "CLIENT KILL USER default SKIPME yes");
    LT_CHECK(rt_int(f) >= 1);
    ll_future_free(f);
    ll_redis_close(killer);
    ll_redis_stats st;
    for (int i = 0; i < 500; i++) { /* until the loss is noticed and the link re-made */
        ll_redis_get_stats(c, &st);
        if (st.reconnects == 1) break;
        ll_sleep(0.01);
    }
    LT_CHECK(st.reconnects == 1);
    f = rt_cmd(c, "CLIENT GETNAME");
    LT_CHECKF(ll_future_code(f) == 0 && rt_str_is(f, "tls-client"), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    ll_redis_close(c);

    /* TLS verification is on by default: the system store does not know the test CA */
    c = rt_connect_opts(rt_server.tls_url, NULL);
    LT_CHECK(!c);
    LT_CHECK(strstr(lt_last_err, "self-signed") || strstr(lt_last_err, "verif") ||
             strstr(lt_last_err, "certificate"));

    /* nothing listening */
    int port = rt_server.port;
    (void)port;
    c = rt_connect_opts("redis://127.0.0.1:1", NULL);
    LT_CHECK(!c && strstr(lt_last_err, "refused"));
    /* bad URL */
    c = rt_connect_opts("http://x", NULL);
    LT_CHECK(!c && strstr(lt_last_err, "redis://"));
    return 0;
}
RT_TEST(test_transports, t_transports)

static int t_auth_select_name(void *arg) {
    (void)arg;
    /* ACL user + password, SELECT, CLIENT SETNAME */
    ll_redis_opts o = {.user = LT_REDIS_USER, .password = LT_REDIS_PASS, .db = 3,
                       .client_name = "lltest-client"};
    ll_redis_conn *c = rt_connect_opts(NULL, &o);
    LT_CHECK(c);
    ll_future *f = rt_cmd(c, "ACL WHOAMI");
    LT_CHECK(rt_str_is(f, LT_REDIS_USER));
    ll_future_free(f);
    f = rt_cmd(c, "CLIENT GETNAME");
    LT_CHECK(rt_str_is(f, "lltest-client"));
    ll_future_free(f);
    f = rt_cmd(c, "CLIENT INFO");
    const char *s;
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_of(f), &s, NULL) == 0 && strstr(s, " db=3 "));
    ll_future_free(f);
    ll_redis_close(c);

    /* the same from the URL */
    char url[200];
    snprintf(url, sizeof url, "redis://%s:%s@127.0.0.1:%d/2", LT_REDIS_USER, LT_REDIS_PASS,
             rt_server.port);
    c = rt_connect_opts(url, NULL);
    LT_CHECK(c);
    f = rt_cmd(c, "CLIENT INFO");
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_of(f), &s, NULL) == 0 && strstr(s, " db=2 ") &&
             strstr(s, "user=" LT_REDIS_USER));
    ll_future_free(f);
    ll_redis_close(c);

    /* a wrong password: refused, and the message never shows it */
    ll_redis_opts bad = {.user = LT_REDIS_USER, .password = "not-the-pw-XYZ"};
    c = rt_connect_opts(NULL, &bad);
    LT_CHECK(!c);
    LT_CHECK(strstr(lt_last_err, "WRONGPASS") && strstr(lt_last_err, "AUTH as user 'lltest'"));
    LT_CHECK(!strstr(lt_last_err, "not-the-pw-XYZ"));

    /* password-only AUTH (the default user): give it a password for a moment */
    c = rt_connect();
    LT_CHECK(c);
    LT_CHECK(rt_ok(c, "CONFIG SET requirepass %s", "pw-only"));
    ll_redis_opts po = {.password = "pw-only"};
    ll_redis_conn *c2 = rt_connect_opts(NULL, &po);
    LT_CHECK(c2);
    f = rt_cmd(c2, "ACL WHOAMI");
    LT_CHECK(rt_str_is(f, "default"));
    ll_future_free(f);
    LT_CHECK(rt_ok(c2, "CONFIG SET requirepass %s", ""));
    ll_redis_close(c2);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_auth_select_name, t_auth_select_name)

static int t_tx(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    ll_future *f = rt_cmd(c, "DEL tx:a tx:s");
    ll_future_free(f);
    ll_redis_tx *tx = ll_redis_tx_new();
    LT_CHECK(tx);
    LT_CHECK(ll_redis_tx_addf(tx, "SET tx:a %d", 5) == 0);
    LT_CHECK(ll_redis_tx_addf(tx, "INCR tx:a") == 0);
    LT_CHECK(ll_redis_tx_addf(tx, "SET tx:s str") == 0);
    LT_CHECK(ll_redis_tx_addf(tx, "INCR tx:s") == 0); /* fails at run time: an error element */
    LT_CHECK(ll_redis_tx_addf(tx, "GET tx:a") == 0);
    f = ll_redis_tx_exec(c, tx);
    LT_CHECK(ll_await(f) == 0);
    ll_redis_reply *r = ll_redis_reply_of(f);
    LT_CHECK(ll_redis_reply_len(r) == 5);
    long long v;
    LT_CHECK(ll_redis_reply_integer(ll_redis_reply_element(r, 1), &v) == 0 && v == 6);
    LT_CHECK(ll_redis_reply_type(ll_redis_reply_element(r, 3)) == LL_REDIS_ERROR);
    const char *s;
    LT_CHECK(ll_redis_reply_string(ll_redis_reply_element(r, 4), &s, NULL) == 0 && !strcmp(s, "6"));
    ll_future_free(f);
    ll_redis_tx_free(tx);

    /* a command refused while queuing: EXECABORT, nothing ran, the message says which */
    tx = ll_redis_tx_new();
    ll_redis_tx_addf(tx, "SET tx:a 100");
    ll_redis_tx_addf(tx, "GET");
    f = ll_redis_tx_exec(c, tx);
    LT_CHECK(ll_await(f) == LL_EREDIS_REPLY);
    LT_CHECK(ll_redis_error_is(f, "EXECABORT"));
    LT_CHECK(strstr(ll_future_errmsg(f), "command 2") && strstr(ll_future_errmsg(f), "wrong number"));
    ll_future_free(f);
    ll_redis_tx_free(tx);
    f = rt_cmd(c, "GET tx:a");
    LT_CHECK(rt_str_is(f, "6"));
    ll_future_free(f);

    /* WATCH abort: another connection changes the key between WATCH and EXEC */
    ll_redis_conn *other = rt_connect();
    LT_CHECK(other);
    LT_CHECK(rt_ok(c, "WATCH %s", "tx:a"));
    LT_CHECK(rt_ok(other, "SET tx:a %s", "changed"));
    tx = ll_redis_tx_new();
    ll_redis_tx_addf(tx, "SET tx:a mine");
    f = ll_redis_tx_exec(c, tx);
    LT_CHECK(ll_await(f) == LL_EREDIS_WATCH);
    LT_CHECK(strstr(ll_future_errmsg(f), "watched key changed"));
    ll_future_free(f);
    f = rt_cmd(c, "GET tx:a");
    LT_CHECK(rt_str_is(f, "changed"));
    ll_future_free(f);
    /* and without interference it commits */
    LT_CHECK(rt_ok(c, "WATCH %s", "tx:a"));
    f = ll_redis_tx_exec(c, tx);
    LT_CHECK(ll_await(f) == 0);
    ll_future_free(f);
    ll_redis_tx_free(tx);
    f = rt_cmd(c, "GET tx:a");
    LT_CHECK(rt_str_is(f, "mine"));
    ll_future_free(f);
    ll_redis_close(other);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_tx, t_tx)

static int t_script(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    LT_CHECK(rt_ok(c, "SCRIPT FLUSH", NULL));
    ll_redis_script *s = ll_redis_script_new("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) * 2}");
    LT_CHECK(s && strlen(ll_redis_script_sha(s)) == 40);
    const char *keys[] = {"k1"}, *args[] = {"a1", "21"};
    for (int round = 0; round < 2; round++) { /* first: NOSCRIPT -> EVAL; then EVALSHA hits */
        ll_future *f = ll_redis_script_run(c, s, 1, keys, 2, args);
        LT_CHECK(ll_await(f) == 0);
        ll_redis_reply *r = ll_redis_reply_of(f);
        long long v;
        LT_CHECK(ll_redis_reply_len(r) == 3);
        LT_CHECK(ll_redis_reply_integer(ll_redis_reply_element(r, 2), &v) == 0 && v == 42);
        ll_future_free(f);
        char q[80];
        snprintf(q, sizeof q, "SCRIPT EXISTS %s", ll_redis_script_sha(s));
        f = rt_cmd(c, q);
        LT_CHECK(ll_redis_reply_integer(ll_redis_reply_element(ll_redis_reply_of(f), 0), &v) == 0 &&
                 v == 1);
        ll_future_free(f);
    }
    /* a script error is the server's error */
    ll_redis_script *bad = ll_redis_script_new("return redis.call('INCR', KEYS[1], 'x')");
    ll_future *f = ll_redis_script_run(c, bad, 1, keys, 0, NULL);
    LT_CHECK(ll_await(f) == LL_EREDIS_REPLY);
    ll_future_free(f);
    ll_redis_script_free(bad);
    ll_redis_script_free(s);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_script, t_script)

static int t_scan(void *arg) {
    (void)arg;
    ll_redis_conn *c = rt_connect();
    LT_CHECK(c);
    for (int i = 0; i < 300; i++) {
        ll_future *f = ll_redis_commandf(c, "SET scan:%d x", i);
        ll_future_free(f); /* pipelined; nobody waits */
    }
    ll_future *f = rt_cmd(c, "DEL scanh");
    ll_future_free(f);
    for (int i = 0; i < 50; i++) ll_future_free(ll_redis_commandf(c, "HSET scanh f%d %d", i, i));
    char seen[300] = {0};
    int total = 0;
    ll_redis_scan *it = ll_redis_scan_new(c, "SCAN", NULL, "scan:*", 37);
    LT_CHECK(it);
    const ll_redis_reply *batch;
    int rc;
    while ((rc = ll_redis_scan_next(it, &batch)) == 0) {
        for (size_t i = 0; i < ll_redis_reply_len(batch); i++) {
            const char *s;
            ll_redis_reply_string(ll_redis_reply_element(batch, i), &s, NULL);
            int k = atoi(s + 5);
            LT_CHECK(k >= 0 && k < 300);
            if (!seen[k]) total++;
            seen[k] = 1;
        }
    }
    LT_CHECK(rc == LL_EOF);
    LT_CHECK(total == 300);
    ll_redis_scan_free(it);
    it = ll_redis_scan_new(c, "HSCAN", "scanh", NULL, 0);
    size_t fields = 0;
    while ((rc = ll_redis_scan_next(it, &batch)) == 0) fields += ll_redis_reply_len(batch);
    LT_CHECK(rc == LL_EOF && fields == 100); /* field, value pairs */
    ll_redis_scan_free(it);
    LT_CHECK(ll_redis_scan_new(c, "KEYS", NULL, NULL, 0) == NULL);
    ll_redis_close(c);
    return 0;
}
RT_TEST(test_scan, t_scan)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types), cmocka_unit_test(test_transports),
        cmocka_unit_test(test_auth_select_name), cmocka_unit_test(test_tx),
        cmocka_unit_test(test_script), cmocka_unit_test(test_scan),
    };
    return RT_RUN(tests);
}
