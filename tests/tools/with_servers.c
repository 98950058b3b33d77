/*
 * with_servers.c — throwaway servers for trying libloop's clients, and for the doc examples and
 * `make check`: each server starts in a temporary directory on a free loopback port, its URL is
 * exported to the command, and it is stopped (by PID) and its directory removed when the command
 * ends. Nothing is installed or left running; the servers are the Debian packages the tests use.
 *
 * Usage:
 *   with-servers [--only NAME,...] [--quiet] [--] COMMAND [ARG...]
 *       start the servers, run COMMAND with their URLs in its environment, stop them; exit with
 *       COMMAND's status
 *   with-servers [--only NAME,...]
 *       start them, print their URLs as `export` lines, and keep them until Ctrl-C (make servers)
 *
 * The exported variables are listed in `servers[]` below (LL_PG_URL, LL_HTTP_BASE, ...) and
 * printed to stderr when the servers are up (unless --quiet). A server that cannot start is an
 * error, not a skip: whatever runs under this tool would prove nothing.
 *
 * Adding a server: write its start/stop/export block below (one small block per server, calling
 * its tests/harness/<name>server.h) and add one line to servers[].
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness/nginxserver.h"
#include "harness/pgserver.h"
#include "harness/redisserver.h"
#include "harness/smtpserver.h"

/* Set an exported variable, say so, and remember it for the `export` lines. */
static bool quiet;
static const char *exported[32];
static size_t nexported;
static void export_var(const char *name, const char *value) {
    setenv(name, value, 1);
    if (nexported < sizeof exported / sizeof exported[0]) exported[nexported++] = name;
    if (!quiet) fprintf(stderr, "with-servers: %s=%s\n", name, value);
}

/* ---- PostgreSQL: LL_PG_URL ---- */
static lt_pg pg;
static bool pg_start(void) { return lt_pg_start(&pg); }
static void pg_stop(void) { lt_pg_stop(&pg); }
static void pg_export(void) { export_var("LL_PG_URL", pg.conninfo); }

/* ---- nginx: LL_HTTP_BASE (plain), LL_HTTPS_BASE + LL_HTTP_CA (TLS, self-signed) ---- */
static lt_nginx ngx;
static bool ngx_start(void) { return lt_nginx_start(&ngx); }
static void ngx_stop(void) { lt_nginx_stop(&ngx); }
static void ngx_export(void) {
    export_var("LL_HTTP_BASE", ngx.base);
    export_var("LL_HTTPS_BASE", ngx.tls_base);
    export_var("LL_HTTP_CA", ngx.cert);
}

/* ---- Redis: LL_REDIS_URL (plain), LL_REDISS_URL + LL_REDIS_CA (TLS, self-signed) ---- */
static lt_redis rds;
static bool rds_start(void) { return lt_redis_start(&rds); }
static void rds_stop(void) { lt_redis_stop(&rds); }
static void rds_export(void) {
    export_var("LL_REDIS_URL", rds.url);
    export_var("LL_REDISS_URL", rds.tls_url);
    export_var("LL_REDIS_CA", rds.cert);
}

/* ---- SMTP (aiosmtpd): LL_SMTP_URL (STARTTLS offered), LL_SMTPS_URL + LL_SMTP_CA (TLS) ---- */
static lt_smtp smtp;
static bool smtp_start(void) { return lt_smtp_start(&smtp); }
static void smtp_stop(void) { lt_smtp_stop(&smtp); }
static void smtp_export(void) {
    export_var("LL_SMTP_URL", smtp.url);
    export_var("LL_SMTPS_URL", smtp.tls_url);
    export_var("LL_SMTP_CA", smtp.cert);
}

typedef struct server {
    const char *name;       /* for --only */
    const char *what;
    bool (*start)(void);    /* false: could not start (the harness says why on stderr) */
    void (*stop)(void);     /* stops it and removes its directory */
    void (*export_vars)(void);
    bool on;
} server;

static server servers[] = {
    {"pg", "PostgreSQL", pg_start, pg_stop, pg_export, false},
    {"http", "nginx (HTTP and HTTPS)", ngx_start, ngx_stop, ngx_export, false},
    {"redis", "redis-server (plain and TLS)", rds_start, rds_stop, rds_export, false},
    {"smtp", "aiosmtpd (STARTTLS, AUTH, and TLS)", smtp_start, smtp_stop, smtp_export, false},
};
#define NSERVERS (sizeof servers / sizeof servers[0])

static void stop_all(void) {
    for (size_t i = NSERVERS; i-- > 0;) {
        if (servers[i].on) servers[i].stop();
        servers[i].on = false;
    }
}

static int usage(void) {
    fprintf(stderr, "usage: with-servers [--only NAME,...] [--quiet] [--] [COMMAND [ARG...]]\n"
                    "servers:");
    for (size_t i = 0; i < NSERVERS; i++) fprintf(stderr, " %s (%s)", servers[i].name, servers[i].what);
    fprintf(stderr, "\nWithout COMMAND: start them, print their URLs, keep them until Ctrl-C.\n");
    return 2;
}

/* Mark the servers named in a comma-separated list; false for an unknown name. */
static bool select_servers(const char *list) {
    char *copy = strdup(list);
    bool ok = copy != NULL;
    for (char *save = NULL, *n = copy ? strtok_r(copy, ",", &save) : NULL; n;
         n = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < NSERVERS && strcmp(servers[i].name, n) != 0) i++;
        if (i == NSERVERS) {
            fprintf(stderr, "with-servers: no server named '%s'\n", n);
            ok = false;
        } else {
            servers[i].on = true;
        }
    }
    free(copy);
    return ok;
}

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { stop_requested = sig; }

int main(int argc, char **argv) {
    const char *only = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            return usage();
        }
    }
    if (only && !select_servers(only)) return usage();
    bool wanted[NSERVERS];
    for (size_t s = 0; s < NSERVERS; s++) {
        wanted[s] = !only || servers[s].on;
        servers[s].on = false;
    }
    for (size_t s = 0; s < NSERVERS; s++) {
        if (!wanted[s]) continue;
        if (!servers[s].start()) {
            fprintf(stderr, "with-servers: %s did not start\n", servers[s].what);
            stop_all();
            return 1;
        }
        servers[s].on = true;
        servers[s].export_vars();
    }

    if (i == argc) { /* no command: keep the servers for another terminal */
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        printf("# throwaway servers are up; paste these into another shell. Ctrl-C stops them.\n");
        for (size_t v = 0; v < nexported; v++)
            printf("export %s='%s'\n", exported[v], getenv(exported[v]));
        fflush(stdout);
        while (!stop_requested) pause();
        stop_all();
        return 0;
    }

    int status = 1;
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[i], argv + i);
        perror(argv[i]);
        _exit(127);
    }
    if (pid > 0) {
        /* Ctrl-C reaches the command (same process group); we wait for it, then clean up. */
        signal(SIGINT, SIG_IGN);
        while (waitpid(pid, &status, 0) < 0) {
        }
    }
    stop_all();
    if (pid < 0) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
