/*
 * pgserver.c — see pgserver.h.
 *
 * Design notes:
 * - Everything is done with fork/exec and the kernel: no libpq, no shell. The server is our direct
 *   child (privileges are dropped in the child before exec, instead of through runuser, which would
 *   sit in between and make the PID we signal not the postmaster's).
 * - The child asks for SIGINT (fast shutdown) when the test program dies, so a crashed test does
 *   not leave a server behind. PR_SET_PDEATHSIG is cleared by setuid, so it is set after dropping.
 * - Readiness is read from postmaster.pid: PostgreSQL writes "ready" on its 8th line once it accepts
 *   connections, which is exactly what pg_isready would poll for.
 * - The port comes from binding port 0 and reading it back; the window in which another process
 *   could take it before the postmaster binds it is tiny and, if lost, start fails loudly.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "pgserver.h"
#include "serverutil.h"

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool find_bindir(lt_pg *s) {
    const char *e = getenv("LL_PG_BINDIR");
    if (e && *e) {
        snprintf(s->bindir, sizeof s->bindir, "%s", e);
        return true;
    }
    /* Debian: /usr/lib/postgresql/<major>/bin; take the newest */
    for (int v = 30; v >= 10; v--) {
        char p[300];
        snprintf(p, sizeof p, "/usr/lib/postgresql/%d/bin/postgres", v);
        if (access(p, X_OK) == 0) {
            snprintf(s->bindir, sizeof s->bindir, "/usr/lib/postgresql/%d/bin", v);
            return true;
        }
    }
    if (access("/usr/bin/postgres", X_OK) == 0) {
        snprintf(s->bindir, sizeof s->bindir, "/usr/bin");
        return true;
    }
    return false;
}

static int run_wait(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Who runs the server: ourselves, or (as root) llpgtest, made if missing, else nobody. */
static void pick_user(lt_pg *s) {
    s->uid = (unsigned)getuid();
    s->gid = (unsigned)getgid();
    s->drop = false;
    if (geteuid() != 0) return;
    struct passwd *pw = getpwnam("llpgtest");
    if (!pw) {
        pid_t pid = fork();
        if (pid == 0) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0) {
                dup2(null, 1);
                dup2(null, 2);
            }
            execlp("useradd", "useradd", "-r", "-M", "-d", "/nonexistent", "-s",
                   "/usr/sbin/nologin", "llpgtest", (char *)NULL);
            _exit(127);
        }
        if (pid > 0) run_wait(pid);
        pw = getpwnam("llpgtest"); /* a concurrent test program may have made it */
    }
    if (!pw) pw = getpwnam("nobody");
    if (!pw) return;
    s->uid = (unsigned)pw->pw_uid;
    s->gid = (unsigned)pw->pw_gid;
    s->drop = true;
}

/* In a forked child: become the server's user and die with the parent. */
static void child_become(const lt_pg *s, const char *logpath) {
    if (logpath) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2) close(fd);
        }
    }
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) {
        dup2(null, 0);
        if (null > 0) close(null);
    }
    if (s->drop) {
        if (setgroups(0, NULL) != 0 || setgid((gid_t)s->gid) != 0 || setuid((uid_t)s->uid) != 0)
            _exit(126);
    }
    prctl(PR_SET_PDEATHSIG, SIGINT);
    if (chdir(s->dir) != 0) _exit(126);
}

static void show_log(const lt_pg *s) {
    char path[400];
    snprintf(path, sizeof path, "%s/server.log", s->dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    fprintf(stderr, "pgserver: --- %s ---\n", path);
    while (fgets(line, sizeof line, f)) fprintf(stderr, "pgserver: %s", line);
    fclose(f);
}

static bool initdb(lt_pg *s) {
    char prog[300], log[400];
    snprintf(prog, sizeof prog, "%s/initdb", s->bindir);
    snprintf(log, sizeof log, "%s/initdb.log", s->dir);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        child_become(s, log);
        execl(prog, "initdb", "-D", s->datadir, "-U", "postgres", "-A", "trust", "-E", "UTF8",
              "--locale=C", "--no-sync", (char *)NULL);
        _exit(127);
    }
    if (run_wait(pid) != 0) {
        fprintf(stderr, "pgserver: initdb failed, see %s\n", log);
        return false;
    }
    char hba[400];
    snprintf(hba, sizeof hba, "%s/pg_hba.conf", s->datadir);
    static const char rules[] = "local all all trust\n"
                                "local replication all trust\n" /* lt_pg_start_standby */
                                "host all " LT_PG_PW_ROLE " 127.0.0.1/32 scram-sha-256\n"
                                "host all " LT_PG_PW_ROLE " ::1/128 scram-sha-256\n"
                                "host all all 127.0.0.1/32 trust\n"
                                "host all all ::1/128 trust\n";
    return lt_write_file(hba, rules, sizeof rules - 1);
}

static bool server_ready(const lt_pg *s) {
    char path[400];
    snprintf(path, sizeof path, "%s/postmaster.pid", s->datadir);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[256];
    int n = 0;
    bool ready = false;
    while (fgets(line, sizeof line, f)) {
        if (++n == 8) ready = strncmp(line, "ready", 5) == 0 || strncmp(line, "standby", 7) == 0;
    }
    fclose(f);
    return ready;
}

static bool launch(lt_pg *s) {
    char prog[300], log[400], port[16], sock_opt[300];
    snprintf(prog, sizeof prog, "%s/postgres", s->bindir);
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(sock_opt, sizeof sock_opt, "unix_socket_directories=%s", s->dir);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        child_become(s, log);
        execl(prog, "postgres", "-D", s->datadir, "-p", port, "-c", sock_opt, "-c",
              "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
              "full_page_writes=off", "-c", "max_connections=200", "-c", "lc_messages=C", "-c",
              "shared_buffers=64MB", "-c", "log_min_messages=fatal", "-c",
              "log_min_error_statement=panic", (char *)NULL);
        _exit(127);
    }
    s->pid = (int)pid;
    double end = mono() + 30;
    while (mono() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "pgserver: postgres exited during start\n");
            show_log(s);
            return false;
        }
        if (server_ready(s)) return true;
        usleep(10000);
    }
    fprintf(stderr, "pgserver: postgres not ready after 30 s\n");
    show_log(s);
    return false;
}

/* The server's temporary directory (owned by the user it runs as) and its data directory's path. */
static bool make_dirs(lt_pg *s) {
    snprintf(s->dir, sizeof s->dir, "/tmp/llpg-XXXXXX");
    if (!mkdtemp(s->dir)) {
        s->dir[0] = 0;
        perror("pgserver: mkdtemp");
        return false;
    }
    if (s->drop && chown(s->dir, (uid_t)s->uid, (gid_t)s->gid) != 0) {
        perror("pgserver: chown");
        lt_pg_stop(s);
        return false;
    }
    snprintf(s->datadir, sizeof s->datadir, "%s/data", s->dir);
    return true;
}

bool lt_pg_start(lt_pg *s) {
    memset(s, 0, sizeof *s);
    if (!find_bindir(s)) {
        fprintf(stderr, "pgserver: no PostgreSQL server found (install postgresql, or set "
                        "LL_PG_BINDIR)\n");
        return false;
    }
    pick_user(s);
    if (!make_dirs(s)) return false;
    s->port = lt_free_port();
    if (s->port <= 0 || !initdb(s) || !launch(s)) {
        lt_pg_stop(s);
        return false;
    }
    snprintf(s->conninfo, sizeof s->conninfo,
             "host=127.0.0.1 port=%d user=postgres dbname=postgres", s->port);
    snprintf(s->unix_conninfo, sizeof s->unix_conninfo,
             "host=%s port=%d user=postgres dbname=postgres", s->dir, s->port);
    return true;
}

static void halt(lt_pg *s) {
    if (s->pid <= 0) return;
    pid_t pid = (pid_t)s->pid;
    kill(pid, SIGCONT); /* in case a test paused it */
    kill(pid, SIGINT);  /* fast shutdown */
    double end = mono() + 15;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) break;
        if (mono() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        usleep(5000);
    }
    s->pid = 0;
}

void lt_pg_stop(lt_pg *s) {
    halt(s);
    lt_rmtree(s->dir);
    s->dir[0] = 0;
}

bool lt_pg_restart(lt_pg *s) {
    halt(s);
    return launch(s);
}

void lt_pg_pause(lt_pg *s) {
    if (s->pid > 0) kill((pid_t)s->pid, SIGSTOP);
}

void lt_pg_resume(lt_pg *s) {
    if (s->pid > 0) kill((pid_t)s->pid, SIGCONT);
}

int lt_pg_psql(const lt_pg *s, const char *sql) {
    char prog[300], port[16];
    snprintf(prog, sizeof prog, "%s/psql", s->bindir);
    snprintf(port, sizeof port, "%d", s->port);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        execl(prog, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", s->dir, "-p", port, "-U",
              "postgres", "-d", "postgres", "-c", sql, (char *)NULL);
        _exit(127);
    }
    return run_wait(pid);
}

/* ---- a streaming standby (issue 16) ---- */

/* Run bindir/prog with args as the server's user; 0 when it exited 0. */
static int run_as(const lt_pg *s, const char *prog, char *const argv[]) {
    char path[300], log[400];
    snprintf(path, sizeof path, "%s/%s", s->bindir, prog);
    snprintf(log, sizeof log, "%s/%s.log", s->dir, prog);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        child_become(s, log);
        execv(path, argv);
        _exit(127);
    }
    return run_wait(pid);
}

bool lt_pg_start_standby(lt_pg *s, const lt_pg *primary) {
    memset(s, 0, sizeof *s);
    memcpy(s->bindir, primary->bindir, sizeof s->bindir);
    s->uid = primary->uid;
    s->gid = primary->gid;
    s->drop = primary->drop;
    if (!make_dirs(s)) return false;
    char port[16];
    snprintf(port, sizeof port, "%d", primary->port);
    char *const argv[] = {"pg_basebackup", "-h", (char *)primary->dir, "-p", port,
                          "-U", "postgres", "-D", s->datadir, "-R", "-X", "stream",
                          "-c", "fast", "--no-sync", NULL};
    if (run_as(s, "pg_basebackup", argv) != 0) {
        fprintf(stderr, "pgserver: pg_basebackup failed, see %s/pg_basebackup.log\n", s->dir);
        lt_pg_stop(s);
        return false;
    }
    s->port = lt_free_port();
    if (s->port <= 0 || !launch(s)) {
        lt_pg_stop(s);
        return false;
    }
    snprintf(s->conninfo, sizeof s->conninfo,
             "host=127.0.0.1 port=%d user=postgres dbname=postgres", s->port);
    snprintf(s->unix_conninfo, sizeof s->unix_conninfo,
             "host=%s port=%d user=postgres dbname=postgres", s->dir, s->port);
    return true;
}

bool lt_pg_promote(lt_pg *s) {
    char *const argv[] = {"pg_ctl", "promote", "-w", "-t", "30", "-D", s->datadir, NULL};
    if (run_as(s, "pg_ctl", argv) == 0) return true;
    char path[400], line[512];
    snprintf(path, sizeof path, "%s/pg_ctl.log", s->dir);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) fprintf(stderr, "pgserver: pg_ctl: %s", line);
    if (f) fclose(f);
    return false;
}

void lt_pg_halt(lt_pg *s) {
    halt(s);
}
