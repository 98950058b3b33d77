/*
 * pgserver.h — a throwaway PostgreSQL server for the tests: initdb into a temporary directory,
 * listen on a free loopback port and on a Unix socket in that directory, stop it at the end.
 *
 * The server runs as an unprivileged user when the tests run as root (postgres refuses root): the
 * system user `llpgtest` (created with useradd when missing), or `nobody`. Settings favour speed
 * (fsync off) and predictability (lc_messages=C, so error texts are the English ones).
 *
 * pg_hba.conf trusts every local and loopback connection except for the role LT_PG_PW_ROLE, which
 * must give a password over TCP (scram-sha-256): the authentication tests create that role.
 *
 * This file does not use libpq (it is linked into every test program); lt_pg_psql() runs the psql
 * program for setup statements.
 */
#ifndef LL_TEST_PGSERVER_H
#define LL_TEST_PGSERVER_H

#include <stdbool.h>

#define LT_PG_PW_ROLE "llpg_pw"

typedef struct lt_pg {
    char dir[256];            /* the temporary directory; the Unix socket lives here */
    char datadir[300];        /* dir/data */
    char bindir[256];         /* where initdb, postgres and psql are */
    int port;
    int pid;                  /* the postmaster, 0 when stopped */
    unsigned uid, gid;        /* who the server runs as */
    bool drop;                /* uid/gid differ from ours */
    char conninfo[512];       /* TCP: "host=127.0.0.1 port=N user=postgres dbname=postgres" */
    char unix_conninfo[512];  /* the same over the Unix socket */
} lt_pg;

/* Make a data directory and start a server. Return false (after saying why on stderr) when no
 * PostgreSQL is installed or it does not start; the caller then skips its tests. */
bool lt_pg_start(lt_pg *s);
/* Stop the server (fast shutdown, bounded; then SIGKILL) and remove the directory. Safe to call on a
 * server that failed to start or is already stopped. */
void lt_pg_stop(lt_pg *s);
/* Stop and start again on the same port and data (every connection is cut). */
bool lt_pg_restart(lt_pg *s);
/* SIGSTOP / SIGCONT the postmaster: it stops accepting work, the kernel still completes TCP
 * handshakes. */
void lt_pg_pause(lt_pg *s);
void lt_pg_resume(lt_pg *s);
/* Run one SQL string with psql as the superuser; 0 when it succeeded. */
int lt_pg_psql(const lt_pg *s, const char *sql);

/* A streaming standby of `primary` (pg_basebackup -R into a new directory, another free port),
 * started and accepting read-only connections. Stop it with lt_pg_stop. */
bool lt_pg_start_standby(lt_pg *s, const lt_pg *primary);
/* pg_ctl promote (waits until the standby accepts writes); true when it did. */
bool lt_pg_promote(lt_pg *s);
/* Stop the server and keep its directory (lt_pg_stop still removes it). */
void lt_pg_halt(lt_pg *s);

#endif
