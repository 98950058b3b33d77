/*
 * test_pg_tls.c — TLS to PostgreSQL with sslmode=verify-full when libloop resolves the host name
 * itself: libpq is handed `hostaddr` (no blocking lookup) and must still verify the certificate
 * against the name. The server's certificate (for "localhost", signed by a CA made here) is made by
 * the test with the openssl command line; the server turns TLS on with ALTER SYSTEM and a reload.
 */
#include <sys/stat.h>
#include <unistd.h>
#include "pgtest.h"

static char dir[300];

static int sh(const char *cmd) {
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "failed (%d): %s\n", rc, cmd);
    return rc;
}

/* A CA, a second unrelated CA, and a certificate for localhost signed by the first. */
static bool make_certs(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && printf 'subjectAltName=DNS:localhost\\n' > san.ext && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 "
             "-subj '/CN=libloop test CA' 2>/dev/null && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 "
             "-subj '/CN=some other CA' 2>/dev/null && "
             "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
             "-subj '/CN=localhost' 2>/dev/null && "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-out server.crt -days 2 -extfile san.ext 2>/dev/null",
             dir);
    if (sh(cmd) != 0) return false;
    char key[400];
    snprintf(key, sizeof key, "%s/server.key", dir);
    /* postgres wants its key private to itself */
    if (pgt_server.drop && chown(key, (uid_t)pgt_server.uid, (gid_t)pgt_server.gid) != 0) return false;
    return chmod(key, 0600) == 0;
}

static int setup_tls(void **state) {
    if (pgt_group_setup(state) != 0) return -1;
    snprintf(dir, sizeof dir, "%s", pgt_server.dir);
    if (!make_certs()) return -1;
    /* one statement per psql run: ALTER SYSTEM cannot run in a transaction block */
    char sql[3][512];
    snprintf(sql[0], sizeof sql[0], "ALTER SYSTEM SET ssl_cert_file = '%s/server.crt'", dir);
    snprintf(sql[1], sizeof sql[1], "ALTER SYSTEM SET ssl_key_file = '%s/server.key'", dir);
    snprintf(sql[2], sizeof sql[2], "ALTER SYSTEM SET ssl = on");
    for (int i = 0; i < 3; i++)
        if (lt_pg_psql(&pgt_server, sql[i]) != 0) return -1;
    return lt_pg_psql(&pgt_server, "SELECT pg_reload_conf()") == 0 ? 0 : -1;
}

static ll_future *connect_tls(const char *host, const char *rootcert) {
    char ci[1024];
    snprintf(ci, sizeof ci,
             "host=%s port=%d user=postgres dbname=postgres sslmode=verify-full "
             "sslrootcert=%s/%s",
             host, pgt_server.port, dir, rootcert);
    ll_future *f = ll_pg_connect(ci, NULL);
    (void)ll_await(f);
    return f;
}

static int t_verify_full(void *arg) {
    (void)arg;
    /* the reload is asynchronous: wait until the server speaks TLS */
    ll_future *f = NULL;
    for (int i = 0; i < 100; i++) {
        f = connect_tls("localhost", "ca.crt");
        if (ll_future_code(f) == 0) break;
        ll_future_free(f);
        f = NULL;
        ll_sleep(0.05);
    }
    LT_CHECK(f);
    ll_pg_conn *c = ll_future_take(f);
    ll_future_free(f);
    /* libloop resolved the name: libpq connected to the address it was given */
    LT_CHECKF(strstr(ll_pg_peer(c), "127.0.0.1") || strstr(ll_pg_peer(c), "::1"), "%s",
              ll_pg_peer(c));
    ll_pg_result *r = pgt_q(c, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
    LT_CHECK(strcmp(ll_pg_text(r, 0, 0), "t") == 0);
    ll_pg_result_free(r);
    ll_pg_close(c);

    /* the certificate is for localhost, not for the address: verify-full refuses */
    f = connect_tls("127.0.0.1", "ca.crt");
    LT_CHECK(ll_future_code(f) == LL_EPG_CONN);
    LT_CHECKF(strstr(ll_future_errmsg(f), "does not match"), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    /* a certificate signed by a CA we do not trust: refused, through the resolved path too */
    f = connect_tls("localhost", "other.crt");
    LT_CHECK(ll_future_code(f) == LL_EPG_CONN);
    LT_CHECKF(strstr(ll_future_errmsg(f), "certificate"), "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return 0;
}

static void test_verify_full(void **state) {
    (void)state;
    lt_ctx t;
    lt_setup(&t);
    lt_run_checked(t.loop, t_verify_full, NULL);
    lt_teardown(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        PGT_TEST(test_verify_full),
    };
    return cmocka_run_group_tests(tests, setup_tls, pgt_group_teardown);
}
