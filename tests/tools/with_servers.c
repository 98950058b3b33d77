/*
 * with_servers.c — run a command with throwaway servers for the doc examples: a PostgreSQL
 * (LL_PG_URL) and an nginx (LL_HTTP_BASE), started in temporary directories on free loopback
 * ports, stopped by PID when the command ends. The test programs start their own servers; this is
 * for the programs in docs/examples, which read those variables.
 *
 * Usage: with-servers COMMAND [ARG...]; exits with the command's status.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness/nginxserver.h"
#include "harness/pgserver.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: with-servers COMMAND [ARG...]\n");
        return 2;
    }
    lt_pg pg;
    lt_nginx ngx;
    memset(&pg, 0, sizeof pg);
    memset(&ngx, 0, sizeof ngx);
    /* A server that cannot start is an error, not a skip: the examples would prove nothing. */
    if (!lt_pg_start(&pg)) return 1;
    if (!lt_nginx_start(&ngx)) {
        lt_pg_stop(&pg);
        return 1;
    }
    setenv("LL_PG_URL", pg.conninfo, 1);
    setenv("LL_HTTP_BASE", ngx.base, 1);
    setenv("LL_HTTP_CA", ngx.cert, 1);
    int status = 1;
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    if (pid > 0) {
        while (waitpid(pid, &status, 0) < 0) {
        }
    }
    lt_nginx_stop(&ngx);
    lt_pg_stop(&pg);
    if (pid < 0) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
