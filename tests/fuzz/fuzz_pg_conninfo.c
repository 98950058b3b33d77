/*
 * fuzz_pg_conninfo.c — conninfo handling in ll_pg_connect: libpq's parser (key=value and URI
 * forms), our expansion of host and port lists, name resolution through libloop, the connect
 * timer, failure messages, and cancellation at every stage.
 *
 * Nothing leaves the machine, nothing reaches a server: this program defines connect(), which
 * libpq and c-ares call through the dynamic linker, and it refuses every attempt; the resolver is
 * pointed at 127.0.0.1:1. Conninfo strings naming GSSAPI, Kerberos or a service file are skipped:
 * those make libpq consult a KDC or files through paths that bypass connect().
 *
 * Input: byte 0 says when to cancel (never, at once, after one loop iteration); the rest is the
 * conninfo. Invariants: the connect always settles (refused, not found, invalid, cancelled) with
 * a one-line message that says what failed, and leaves no handle, future or task behind.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include "fuzz.h"
#include "libloop.h"
#include "libloop/pg.h"

/* exported (the build hides symbols by default) so that it interposes libc's for libpq and c-ares */
__attribute__((visibility("default"))) int connect(int fd, const struct sockaddr *addr,
                                                   socklen_t len) {
    (void)fd, (void)addr, (void)len;
    errno = ECONNREFUSED;
    return -1;
}

static ll_loop *loop;

static void free_loop(void) { ll_loop_free(loop); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const char *const env[] = {"PGHOST", "PGHOSTADDR", "PGPORT", "PGSERVICE",
                                      "PGSERVICEFILE", "PGSYSCONFDIR", "PGGSSENCMODE",
                                      "PGCONNECT_TIMEOUT", "PGREQUIREAUTH"};
    for (size_t i = 0; i < sizeof env / sizeof *env; i++) unsetenv(env[i]);
    setenv("PGSERVICEFILE", "/nonexistent/pg_service.conf", 1);
    setenv("PGSYSCONFDIR", "/nonexistent", 1);
    loop = ll_loop_new();
    if (!loop || ll_dns_set_servers(loop, "127.0.0.1:1") != 0) abort();
    atexit(free_loop);
    return 0;
}

static void stop(void *arg) {
    ll_future_cancel(arg); /* a no-op when it settled first */
    ll_future_free(arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!loop) LLVMFuzzerInitialize(NULL, NULL);
    if (size < 1) return 0;
    int when = data[0] % 3;
    char *conninfo = fuzz_strndup(data + 1, size - 1);
    if (strcasestr(conninfo, "gss") || strcasestr(conninfo, "krb") ||
        strcasestr(conninfo, "service")) {
        free(conninfo);
        return 0;
    }
    ll_loop_stats before;
    ll_loop_get_stats(loop, &before);
    ll_pg_opts o = {.loop = loop, .connect_timeout = 2};
    ll_future *f = ll_pg_connect(conninfo, &o);
    FUZZ_CHECK(f != NULL);
    if (when == 1) ll_future_cancel(f);
    if (when == 2 && ll_loop_call_soon(loop, stop, ll_future_ref(f)) != 0) ll_future_free(f);
    int rc = ll_loop_run_until(loop, f);
    FUZZ_CHECK(ll_future_done(f));
    FUZZ_CHECK(rc == ll_future_code(f));
    FUZZ_CHECK(rc < 0); /* nothing can be reached */
    const char *msg = ll_future_errmsg(f);
    FUZZ_CHECK(rc == LL_ECANCELED || (msg[0] != '\0' && !strchr(msg, '\n')));
    ll_future_free(f);
    /* let callbacks queued by the failure run, then nothing of it may be left */
    ll_loop_run(loop);
    ll_loop_stats after;
    ll_loop_get_stats(loop, &after);
    FUZZ_CHECK(after.handles == before.handles);
    FUZZ_CHECK(after.futures == before.futures);
    FUZZ_CHECK(after.tasks == before.tasks);
    free(conninfo);
    return 0;
}
