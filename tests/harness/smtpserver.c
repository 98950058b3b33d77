/*
 * smtpserver.c — see smtpserver.h.
 *
 * The Python controller binds port 0 itself and writes the ports it got to DIR/ports, so there is
 * no window in which another process could take a port picked here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "serverutil.h"
#include "smtpserver.h"

#define PYTHON "/usr/bin/python3"

/* The harness scripts live next to this file: LT_HARNESS_DIR if set, else this file's directory
 * as compiled (relative to the source tree, so right when run from there), else the first
 * tests/harness/ found walking up from the program's own directory (build/.../prog). */
static void script_path(char *out, size_t n, const char *name) {
    const char *env = getenv("LT_HARNESS_DIR");
    if (env) {
        snprintf(out, n, "%s/%s", env, name);
        return;
    }
    char here[512];
    snprintf(here, sizeof here, "%s", __FILE__);
    snprintf(out, n, "%s/%s", dirname(here), name);
    if (access(out, R_OK) == 0) return;
    char exe[512];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return;
    exe[k] = 0;
    char *slash;
    while ((slash = strrchr(exe, '/')) != NULL) {
        *slash = 0;
        char cand[1200];
        snprintf(cand, sizeof cand, "%s/tests/harness/%s", exe[0] ? exe : "", name);
        if (access(cand, R_OK) == 0 && strlen(cand) < n) {
            memcpy(out, cand, strlen(cand) + 1);
            return;
        }
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

bool lt_smtp_start(lt_smtp *s) {
    memset(s, 0, sizeof *s);
    char script[600];
    script_path(script, sizeof script, "smtpserver.py");
    if (access(PYTHON, X_OK) != 0 || access(script, R_OK) != 0 ||
        access("/usr/bin/openssl", X_OK) != 0) {
        fprintf(stderr, "smtpserver: %s, %s or openssl missing\n", PYTHON, script);
        return false;
    }
    char *check[] = {PYTHON, "-c", "import aiosmtpd", NULL};
    if (!lt_run_quiet(check)) {
        fprintf(stderr, "smtpserver: python3-aiosmtpd is not installed (scripts/deps)\n");
        return false;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/ll-smtp-XXXXXX");
    if (!mkdtemp(s->dir)) {
        s->dir[0] = 0;
        return false;
    }
    char key[320];
    snprintf(key, sizeof key, "%s/key.pem", s->dir);
    snprintf(s->cert, sizeof s->cert, "%s/cert.pem", s->dir);
    if (!lt_self_signed_cert(key, s->cert)) {
        fprintf(stderr, "smtpserver: openssl could not make a certificate\n");
        lt_smtp_stop(s);
        return false;
    }
    char log[320];
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    pid_t pid = fork();
    if (pid < 0) {
        lt_smtp_stop(s);
        return false;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        execl(PYTHON, "python3", script, s->dir, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    char ports[320];
    snprintf(ports, sizeof ports, "%s/ports", s->dir);
    double end = now_s() + 20;
    while (now_s() < end) {
        FILE *f = fopen(ports, "r");
        if (f) {
            int a = 0, b = 0;
            int k = fscanf(f, "%d %d", &a, &b);
            fclose(f);
            if (k == 2) {
                s->port = a;
                s->tls_port = b;
                snprintf(s->url, sizeof s->url, "smtp://127.0.0.1:%d", a);
                snprintf(s->tls_url, sizeof s->tls_url, "smtps://localhost:%d", b);
                return true;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "smtpserver: aiosmtpd exited at start (see %s)\n", log);
            break;
        }
        usleep(20000);
    }
    fprintf(stderr, "smtpserver: aiosmtpd did not come up\n");
    lt_smtp_stop(s);
    return false;
}

void lt_smtp_stop(lt_smtp *s) {
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        double end = now_s() + 5;
        bool gone = false;
        int st;
        while (!gone && now_s() < end) {
            if (waitpid(s->pid, &st, WNOHANG) == s->pid) gone = true;
            else usleep(10000);
        }
        if (!gone) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
        }
        s->pid = 0;
    }
    if (s->dir[0]) lt_rmtree(s->dir);
    s->dir[0] = 0;
}

int lt_smtp_count(const lt_smtp *s) {
    char p[320];
    snprintf(p, sizeof p, "%s/mail", s->dir);
    DIR *d = opendir(p);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0) n++;
    }
    closedir(d);
    return n;
}

bool lt_smtp_wait_count(const lt_smtp *s, int n, double timeout) {
    double end = now_s() + timeout;
    while (lt_smtp_count(s) < n) {
        if (now_s() > end) return false;
        usleep(5000);
    }
    return true;
}

bool lt_smtp_inspect(const lt_smtp *s, int index, const char *dkim_pub, char *out, size_t n) {
    char script[600], rec[400];
    script_path(script, sizeof script, "smtp_inspect.py");
    snprintf(rec, sizeof rec, "%s/mail/%06d.json", s->dir, index);
    int pipefd[2];
    if (pipe(pipefd) != 0) return false;
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        if (dkim_pub) execl(PYTHON, "python3", script, rec, dkim_pub, (char *)NULL);
        else execl(PYTHON, "python3", script, rec, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    size_t got = 0;
    ssize_t r;
    while ((r = read(pipefd[0], out + got, n - 1 - got)) > 0 || (r < 0 && errno == EINTR)) {
        if (r > 0) got += (size_t)r;
        if (got >= n - 1) break;
    }
    out[got] = 0;
    close(pipefd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}
