/*
 * redisserver.c — see redisserver.h. fork/exec and the kernel only; readiness is "the port
 * accepts a connection", which redis-server does only once it is ready to serve.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "redisserver.h"
#include "serverutil.h"

#define REDIS_SERVER "/usr/bin/redis-server"
#define OPENSSL "/usr/bin/openssl"

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void show_log(const lt_redis *s) {
    char path[400];
    snprintf(path, sizeof path, "%s/redis.log", s->dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) fprintf(stderr, "redisserver: %s", line);
    fclose(f);
}

bool lt_redis_launch(lt_redis *s) {
    char conf[400];
    snprintf(conf, sizeof conf, "%s/redis.conf", s->dir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        if (s->drop && (setgroups(0, NULL) != 0 || setgid((gid_t)s->gid) != 0 ||
                        setuid((uid_t)s->uid) != 0))
            _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a crashed test leaves no server behind */
        if (chdir(s->dir) != 0) _exit(126);
        execl(REDIS_SERVER, "redis-server", conf, (char *)NULL);
        _exit(127);
    }
    s->pid = (int)pid;
    double end = mono() + 20;
    while (mono() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "redisserver: redis-server exited during start\n");
            show_log(s);
            return false;
        }
        if (lt_port_open(s->port) && lt_port_open(s->tls_port)) return true;
        usleep(5000);
    }
    fprintf(stderr, "redisserver: not ready after 20 s\n");
    show_log(s);
    lt_redis_kill(s);
    return false;
}

bool lt_redis_start(lt_redis *s) {
    memset(s, 0, sizeof *s);
    if (access(REDIS_SERVER, X_OK) != 0 || access(OPENSSL, X_OK) != 0) {
        fprintf(stderr, "redisserver: %s or %s not installed\n", REDIS_SERVER, OPENSSL);
        return false;
    }
    lt_server_user(&s->uid, &s->gid, &s->drop);
    snprintf(s->dir, sizeof s->dir, "/tmp/llredis-XXXXXX");
    if (!mkdtemp(s->dir)) {
        s->dir[0] = 0;
        perror("redisserver: mkdtemp");
        return false;
    }
    char key[320];
    snprintf(key, sizeof key, "%s/key.pem", s->dir);
    snprintf(s->cert, sizeof s->cert, "%s/cert.pem", s->dir);
    snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir);
    if (!lt_self_signed_cert(key, s->cert)) {
        fprintf(stderr, "redisserver: openssl could not make a certificate\n");
        lt_redis_stop(s);
        return false;
    }
    s->port = lt_free_port();
    s->tls_port = lt_free_port();
    while (s->tls_port == s->port) s->tls_port = lt_free_port();
    char conf[4096];
    int n = snprintf(conf, sizeof conf,
                     "port %d\nbind 127.0.0.1\nprotected-mode no\nunixsocket %s\n"
                     "unixsocketperm 777\ndir %s\nsave \"\"\nappendonly no\ndaemonize no\n"
                     "logfile %s/redis.log\nloglevel warning\ntls-port %d\ntls-cert-file %s\n"
                     "tls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\n"
                     "enable-debug-command yes\nmaxclients 4000\n"
                     "user " LT_REDIS_USER " on >" LT_REDIS_PASS " ~* &* +@all\n",
                     s->port, s->sock, s->dir, s->dir, s->tls_port, s->cert, key, s->cert);
    char path[400];
    snprintf(path, sizeof path, "%s/redis.conf", s->dir);
    if (s->port <= 0 || s->tls_port <= 0 || !lt_write_file(path, conf, (size_t)n)) {
        lt_redis_stop(s);
        return false;
    }
    if (s->drop) {
        char *files[] = {s->dir, key, s->cert, path};
        for (int i = 0; i < 4; i++) {
            if (chown(files[i], (uid_t)s->uid, (gid_t)s->gid) != 0) {
                perror("redisserver: chown");
                lt_redis_stop(s);
                return false;
            }
        }
    }
    chmod(s->cert, 0644);
    snprintf(s->url, sizeof s->url, "redis://127.0.0.1:%d", s->port);
    snprintf(s->tls_url, sizeof s->tls_url, "rediss://127.0.0.1:%d", s->tls_port);
    if (!lt_redis_launch(s)) {
        lt_redis_stop(s);
        return false;
    }
    return true;
}

void lt_redis_kill(lt_redis *s) {
    if (s->pid <= 0) return;
    kill((pid_t)s->pid, SIGKILL);
    while (waitpid((pid_t)s->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    s->pid = 0;
}

bool lt_redis_restart(lt_redis *s) {
    lt_redis_kill(s);
    return lt_redis_launch(s);
}

void lt_redis_stop(lt_redis *s) {
    lt_redis_kill(s);
    lt_rmtree(s->dir);
    s->dir[0] = 0;
}

void lt_redis_pause(lt_redis *s) {
    if (s->pid > 0) kill((pid_t)s->pid, SIGSTOP);
}

void lt_redis_resume(lt_redis *s) {
    if (s->pid > 0) kill((pid_t)s->pid, SIGCONT);
}
