/*
 * process.c — child processes: spawn with pipes as streams, collect the exit status on any loop,
 * signal (see libloop/process.h for the contract). Communicating through the pipes is
 * process_io.c.
 *
 * Design notes:
 * - fork + exec with a close-on-exec error pipe, not posix_spawn: the child writes {stage, errno}
 *   into the pipe when dup2, chdir or exec fails, and the parent reads it (EOF means exec
 *   succeeded). That is what gives "spawn nosuchprog: no such file or directory" and "spawn ls:
 *   cwd /x: ..." everywhere; glibc's posix_spawn reports exec errors only through its vfork's
 *   shared memory, which valgrind (and some other libcs) do not provide, so a missing program
 *   would look like a child exiting 127. Between fork and exec the child makes only
 *   async-signal-safe calls on memory the parent prepared (no malloc: another thread may have
 *   held its lock). All signals are blocked around fork so no handler of ours (libev writes to the
 *   loop's wake-up descriptor) runs in the child; the child resets every disposition to the
 *   default before unblocking, because an ignored SIGPIPE (stream.c ignores it) survives exec.
 *   The PATH search is execvp's without its retry of non-programs with /bin/sh.
 *   The child's ends of the pipes are moved to descriptors >= 3 first, so that the dup2 calls onto
 *   0, 1 and 2 can never overwrite one another (a parent that closed its own stdin gets pipe ends
 *   numbered 0..2). Every descriptor libloop opens is close-on-exec, so the child inherits
 *   nothing else.
 * - Reaping without SIGCHLD: libev's ev_child only works on the default loop, and a SIGCHLD
 *   handler is process-wide. A pidfd (pidfd_open, Linux 5.3) becomes readable when the child
 *   exits and can be watched by an ev_io on whatever loop spawned the child, so every thread's
 *   loop can run children; we then waitpid() that one pid. Without pidfd, the default loop uses
 *   ev_child and other loops poll waitpid(pid, WNOHANG) on a timer that backs off from 1 ms to
 *   50 ms. Only our own pid is ever waited for.
 * - The exit watcher keeps the loop running only while someone waits (a wait, a communicate, or
 *   a closed process whose child is being reaped): a forgotten background child does not stop
 *   ll_loop_run from returning.
 * - Lifetime: the process is freed when the user has closed it, its child has been reaped, and no
 *   communicate still uses it (`users`). Closing kills a running child: closing never leaves a
 *   zombie, nor a child nobody can reach any more.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"
#include "libloop/process.h"
#include "process_internal.h"

extern char **environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define POLL_MIN 0.001
#define POLL_MAX 0.05


/* ---- the exit watcher and its reference on the loop ---- */

void ll__process_update_ref(ll_process *p) {
    bool want = p->watching && (p->nwaits > 0 || p->users > 0 || p->closed);
    if (want == p->refd) return;
    if (want) ev_ref(p->loop->ev);
    else ev_unref(p->loop->ev);
    p->refd = want;
}

static void watcher_stop(ll_process *p) {
    if (!p->watching) return;
    if (!p->refd) ev_ref(p->loop->ev); /* balance the unref done when it started */
    p->refd = false;
    switch (p->mode) {
    case REAP_PIDFD: ev_io_stop(p->loop->ev, &p->io); break;
    case REAP_CHILD: ev_child_stop(p->loop->ev, &p->child); break;
    case REAP_POLL: ev_timer_stop(p->loop->ev, &p->poll); break;
    }
    p->watching = false;
    if (p->pidfd >= 0) {
        close(p->pidfd);
        p->pidfd = -1;
    }
}

static void set_status(ll_process *p, int st) {
    memset(&p->status, 0, sizeof p->status);
    if (WIFEXITED(st)) {
        p->status.exited = true;
        p->status.code = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
        p->status.signaled = true;
        p->status.signal = WTERMSIG(st);
#ifdef WCOREDUMP
        p->status.core_dumped = WCOREDUMP(st);
#endif
    }
}

static void settle_wait(ll_process *p, waitrec *w) {
    if (p->reap_err) {
        ll_future_fail(w->f, p->reap_err, "wait for %s (pid %d): %s", p->name, (int)p->pid,
                       p->reap_err == LL_ECHILD ? "its exit was collected by someone else "
                                                  "(a SIGCHLD handler reaping with waitpid(-1)?)"
                                                : ll_strerror(p->reap_err));
        return;
    }
    ll_exit_status *copy = ll__malloc(sizeof *copy);
    if (!copy) {
        ll_future_fail(w->f, LL_ENOMEM, "wait for %s: out of memory", p->name);
        return;
    }
    *copy = p->status;
    ll_future_resolve(w->f, copy, ll__free);
}

/* The child's exit has been collected (or cannot be): tell every waiter, free if closed. */
static void reaped(ll_process *p) {
    p->reaped = true;
    watcher_stop(p);
    while (p->waits.head) {
        waitrec *w = LL__CONTAINER(p->waits.head, waitrec, link);
        ll__list_remove(&p->waits, &w->link);
        settle_wait(p, w);
        ll_future_free(w->f);
        ll__free(w);
    }
    p->nwaits = 0;
    if (p->closed && p->users == 0) ll__process_free(p);
}

/* Collect the exit if the child has ended: true when it was collected (or can never be). */
static bool try_reap(ll_process *p) {
    int st;
    pid_t r;
    do r = waitpid(p->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0) return false;
    if (r < 0) p->reap_err = ll_err_from_errno(errno);
    else set_status(p, st);
    return true;
}

/* The watcher callbacks run from libev, maybe inside an application's own ev_run (embedded
 * loop): make the process's loop the current one while they settle futures. */
static void on_pidfd(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev, (void)revents;
    ll_process *p = w->data;
    ll_loop *saved = ll__tls_loop;
    ll__tls_loop = p->loop;
    if (try_reap(p)) reaped(p);
    ll__tls_loop = saved;
}

static void on_child(struct ev_loop *ev, ev_child *w, int revents) {
    (void)ev, (void)revents;
    ll_process *p = w->data;
    if (WIFSTOPPED(w->rstatus) || WIFCONTINUED(w->rstatus)) return;
    ll_loop *saved = ll__tls_loop;
    ll__tls_loop = p->loop;
    set_status(p, w->rstatus); /* libev has already reaped it */
    reaped(p);
    ll__tls_loop = saved;
}

static void on_poll(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)revents;
    ll_process *p = w->data;
    if (try_reap(p)) {
        ll_loop *saved = ll__tls_loop;
        ll__tls_loop = p->loop;
        reaped(p);
        ll__tls_loop = saved;
        return;
    }
    if (w->repeat < POLL_MAX) { /* back off: a long-running child costs 20 wake-ups a second */
        w->repeat = w->repeat * 2 > POLL_MAX ? POLL_MAX : w->repeat * 2;
        ev_timer_again(ev, w);
    }
}

/* LIBLOOP_PROCESS_REAP=poll forces the fallback a kernel without pidfd would use (tests). */
static bool force_poll(void) {
    const char *e = getenv("LIBLOOP_PROCESS_REAP");
    return e && strcmp(e, "poll") == 0;
}

/* pidfd_open, remembering a kernel (or valgrind) that lacks it so we ask only once. */
static int no_pidfd; /* 0: unknown or works; 1: ENOSYS seen */

static int open_pidfd(pid_t pid) {
    if (force_poll() || __atomic_load_n(&no_pidfd, __ATOMIC_RELAXED)) return -1;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && errno == ENOSYS) __atomic_store_n(&no_pidfd, 1, __ATOMIC_RELAXED);
    return fd;
}

static void watcher_start(ll_process *p) {
    struct ev_loop *ev = p->loop->ev;
    p->pidfd = open_pidfd(p->pid);
    if (p->pidfd >= 0) {
        p->mode = REAP_PIDFD;
        ev_io_init(&p->io, on_pidfd, p->pidfd, EV_READ);
        p->io.data = p;
        ev_io_start(ev, &p->io);
    } else if (ev_is_default_loop(ev) && !force_poll()) {
        p->mode = REAP_CHILD;
        ev_child_init(&p->child, on_child, p->pid, 0);
        p->child.data = p;
        ev_child_start(ev, &p->child);
    } else {
        p->mode = REAP_POLL;
        ev_init(&p->poll, on_poll);
        p->poll.repeat = POLL_MIN;
        p->poll.data = p;
        ev_timer_again(ev, &p->poll);
    }
    p->watching = true;
    ev_unref(ev); /* nobody waits yet */
    p->refd = false;
}

/* ---- life cycle ---- */

static void close_streams(ll_process *p) {
    ll_stream_close(p->in);
    ll_stream_close(p->out);
    ll_stream_close(p->err);
    p->in = p->out = p->err = NULL;
}

void ll__process_free(ll_process *p) {
    close_streams(p);
    watcher_stop(p);
    ll__closer_remove(p->loop, &p->closer);
    ll__handle_unref(p->loop);
    ll__free(p->name);
    ll__free(p);
}

/* ll_loop_free with the process still alive: kill and reap the child now (briefly blocking: a
 * killed child exits at once unless stuck in the kernel; after 1 s it is left as a zombie rather
 * than hang the program), fail waits, free. */
static void process_closer(ll__closer *c) {
    ll_process *p = (ll_process *)(void *)((char *)c - offsetof(ll_process, closer));
    if (!p->reaped) {
        kill(p->pid, SIGKILL);
        for (int i = 0; i < 1000 && !try_reap(p); i++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (!p->reaped && !p->status.exited && !p->status.signaled && !p->reap_err)
            p->reap_err = LL_ETIMEDOUT;
    }
    p->closed = true;
    close_streams(p); /* communicates in progress fail with LL_ECLOSED in the drains that follow */
    reaped(p);        /* frees p, or the last communicate does */
}

void ll_process_close(ll_process *p) {
    if (!p || p->closed) return;
    p->closed = true;
    close_streams(p);
    if (p->reaped) {
        if (p->users == 0) ll__process_free(p);
        return;
    }
    kill(p->pid, SIGKILL); /* closing never orphans a running child */
    ll__process_update_ref(p);         /* reaping it keeps the loop alive a moment */
    if (p->mode == REAP_POLL) { /* look again soon rather than after the backed-off interval */
        p->poll.repeat = POLL_MIN;
        ev_timer_again(p->loop->ev, &p->poll);
    }
}

static void value_close(void *v) {
    ll_process_close(v);
}

/* ---- spawn ---- */

enum { STAGE_STDIO = 1, STAGE_CWD = 2, STAGE_EXEC = 3 };

/* Everything the child needs, prepared by the parent: between fork and exec the child may only
 * make async-signal-safe calls (no malloc, no locks), since another thread may have held them. */
typedef struct plan {
    const char *name;
    char *const *argv;
    char *const *envp;
    const char *path;    /* PATH to search when name has no '/' */
    char *buf;           /* room for the longest "dir/name" */
    int fd[3];           /* what becomes 0, 1, 2 (-1: inherit) */
    bool merge;          /* 2>&1 */
    const char *cwd;
    bool new_pgrp;
    int errfd;           /* the error pipe's write end (close-on-exec) */
} plan;

static void child_fail(const plan *pl, int stage, int e) {
    int msg[2] = {stage, e};
    ssize_t r = write(pl->errfd, msg, sizeof msg);
    (void)r;
    _exit(127); /* the parent reads the error and ignores this status */
}

/* Runs in the child: never returns. */
static void child_exec(const plan *pl) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) /* ignored signals (SIGPIPE) survive exec: reset all */
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (pl->new_pgrp) setpgid(0, 0);
    for (int i = 0; i < 3; i++) /* every fd[i] is >= 3: no dup2 clobbers another's source */
        if (pl->fd[i] >= 0 && dup2(pl->fd[i], i) < 0) child_fail(pl, STAGE_STDIO, errno);
    if (pl->merge && dup2(1, 2) < 0) child_fail(pl, STAGE_STDIO, errno);
    if (pl->cwd && chdir(pl->cwd) != 0) child_fail(pl, STAGE_CWD, errno);
    if (strchr(pl->name, '/')) {
        execve(pl->name, pl->argv, pl->envp);
        child_fail(pl, STAGE_EXEC, errno);
    }
    /* execvp's search, minus its retry of ENOEXEC files with /bin/sh: a file that is not a
     * program is reported as such. EACCES on one entry is remembered, ENOENT moves on. */
    size_t nlen = strlen(pl->name);
    bool eacces = false;
    for (const char *d = pl->path;;) {
        const char *end = d;
        while (*end && *end != ':') end++;
        size_t dlen = (size_t)(end - d);
        char *b = pl->buf;
        if (dlen == 0) *b++ = '.';
        memcpy(b, d, dlen);
        b += dlen;
        *b++ = '/';
        memcpy(b, pl->name, nlen + 1);
        execve(pl->buf, pl->argv, pl->envp);
        int e = errno;
        if (e == EACCES) eacces = true;
        else if (e != ENOENT && e != ENOTDIR && e != ESTALE && e != ENODEV && e != ETIMEDOUT)
            child_fail(pl, STAGE_EXEC, e);
        if (!*end) break;
        d = end + 1;
    }
    child_fail(pl, STAGE_EXEC, eacces ? EACCES : ENOENT);
}

/* Move a descriptor to >= 3 (close-on-exec) so dup2 onto 0..2 cannot clobber a sibling. */
static int above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    close(fd);
    errno = e;
    return n;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static const char *errno_text(int e, char *buf, size_t n) {
    int code = ll_err_from_errno(e);
    if (code != LL_EIO || e == EIO) return ll_strerror(code);
    /* not in libloop's table (ETXTBSY, ...): the C library's words */
    snprintf(buf, n, "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z') buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

static void spawn_error(ll_future *f, int stage, int e, const char *name, const char *cwd) {
    char buf[128];
    const char *text = errno_text(e, buf, sizeof buf);
    if (stage == STAGE_CWD)
        ll_future_fail(f, ll_err_from_errno(e), "spawn %s: cwd %s: %s", name, cwd, text);
    else if (stage == STAGE_STDIO)
        ll_future_fail(f, ll_err_from_errno(e), "spawn %s: setting up stdio: %s", name, text);
    else
        ll_future_fail(f, ll_err_from_errno(e), "spawn %s: %s", name, text);
}

/* glibc 2.34's _Fork skips the pthread_atfork handlers (a library's fork hook has no business
 * running in a child that only execs) and is async-signal-safe; fork elsewhere, and under ASan,
 * whose fork interceptor keeps its own locks consistent in the child. */
#if defined(__SANITIZE_ADDRESS__)
#define LL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LL_SANITIZED 1
#endif
#endif

static pid_t do_fork(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34)) && \
    !defined(LL_SANITIZED)
    return _Fork();
#else
    return fork();
#endif
}

/* Fork and exec; 0 with *pid set, or *stage and the errno. */
static int fork_exec(plan *pl, pid_t *pid, int *stage) {
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) return errno;
    ep[1] = above_stdio(ep[1]);
    if (ep[1] < 0) {
        int e = errno;
        close(ep[0]);
        return e;
    }
    pl->errfd = ep[1];
    /* No signal handler of ours may run in the child before exec (libev's would write to the
     * parent's wake-up descriptors): block everything around fork, the child resets and unblocks. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t child = do_fork();
    if (child == 0) child_exec(pl);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(ep[1]);
    if (child < 0) {
        close(ep[0]);
        *stage = 0;
        return fork_errno;
    }
    /* The pipe closes at exec (success: EOF) or carries {stage, errno}. The child is past fork
     * and about to exec or fail, so this read is short. */
    int msg[2];
    size_t got = 0;
    while (got < sizeof msg) {
        ssize_t r = read(ep[0], (char *)msg + got, sizeof msg - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(ep[0]);
    if (got < sizeof msg) {
        *pid = child;
        return 0;
    }
    int st;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    *stage = msg[0];
    return msg[1] ? msg[1] : EIO;
}

ll_future *ll_process_spawn(const char *const *argv, const ll_process_opts *opts) {
    ll_process_opts o = {0};
    if (opts) o = *opts;
    ll_loop *loop = ll__loop_or_current(o.loop);
    if (!loop) return NULL;
    if (!argv || !argv[0]) return ll_future_failed(loop, LL_EINVAL, "spawn: empty argv");
    const char *name = argv[0];
    if (o.stdin_mode == LL_STDIO_STDOUT || o.stdout_mode == LL_STDIO_STDOUT ||
        o.stdin_mode > LL_STDIO_STDOUT || o.stdout_mode > LL_STDIO_STDOUT ||
        o.stderr_mode > LL_STDIO_STDOUT)
        return ll_future_failed(loop, LL_EINVAL,
                                "spawn %s: invalid stdio mode (only stderr can go to stdout)", name);
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "process spawn");
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    ll_process *p = ll__calloc(1, sizeof *p);
    char *buf = ll__malloc(strlen(path) + strlen(name) + 3);
    if (p) p->name = ll__strdup(name);
    if (!p || !p->name || !buf) {
        if (p) ll__free(p->name);
        ll__free(p);
        ll__free(buf);
        ll_future_fail(f, LL_ENOMEM, "spawn %s: out of memory", name);
        return f;
    }
    p->loop = loop;
    p->pidfd = -1;
    /* [0] read end, [1] write end; the child gets in[0], out[1], err[1] */
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, devnull = -1;
    ll_stdio mode[3] = {o.stdin_mode, o.stdout_mode, o.stderr_mode};
    int e = 0, stage = 0;
    bool need_null = mode[0] == LL_STDIO_NULL || mode[1] == LL_STDIO_NULL || mode[2] == LL_STDIO_NULL;
    if (mode[0] == LL_STDIO_PIPE && pipe2(in, O_CLOEXEC) != 0) e = errno;
    if (!e && mode[1] == LL_STDIO_PIPE && pipe2(out, O_CLOEXEC) != 0) e = errno;
    if (!e && mode[2] == LL_STDIO_PIPE && pipe2(err, O_CLOEXEC) != 0) e = errno;
    if (!e && need_null && (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) e = errno;
    /* a parent without stdin/stdout/stderr gets these numbered 0..2: move the child's ends up */
    if (!e && (in[0] = above_stdio(in[0])) < 0 && mode[0] == LL_STDIO_PIPE) e = errno;
    if (!e && (out[1] = above_stdio(out[1])) < 0 && mode[1] == LL_STDIO_PIPE) e = errno;
    if (!e && (err[1] = above_stdio(err[1])) < 0 && mode[2] == LL_STDIO_PIPE) e = errno;
    if (!e && (devnull = above_stdio(devnull)) < 0 && need_null) e = errno;
    if (!e) {
        plan pl = {.name = name, .argv = (char *const *)argv, .envp = o.env ? o.env : environ,
                   .path = path, .buf = buf, .cwd = o.cwd, .new_pgrp = o.new_process_group,
                   .merge = mode[2] == LL_STDIO_STDOUT};
        int child_end[3] = {in[0], out[1], err[1]};
        for (int i = 0; i < 3; i++)
            pl.fd[i] = mode[i] == LL_STDIO_PIPE ? child_end[i] : mode[i] == LL_STDIO_NULL ? devnull : -1;
        pid_t pid = 0;
        e = fork_exec(&pl, &pid, &stage);
        if (!e) p->pid = pid;
    }
    ll__free(buf);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&devnull);
    if (e) {
        close_fd(&in[1]);
        close_fd(&out[0]);
        close_fd(&err[0]);
        ll__free(p->name);
        ll__free(p);
        spawn_error(f, stage, e, name, o.cwd);
        return f;
    }
    /* The child runs: from here on every failure must still reap it, which close() does. */
    ll__handle_ref(loop);
    p->closer.close = process_closer;
    ll__closer_add(loop, &p->closer);
    watcher_start(p);
    char peer[160];
    bool ok = true;
    if (in[1] >= 0) {
        snprintf(peer, sizeof peer, "%s stdin", name);
        ok = (p->in = ll_stream_from_fd(loop, in[1], peer)) != NULL;
    }
    if (out[0] >= 0) {
        snprintf(peer, sizeof peer, "%s stdout", name);
        if (ok) ok = (p->out = ll_stream_from_fd(loop, out[0], peer)) != NULL;
        else close(out[0]);
    }
    if (err[0] >= 0) {
        snprintf(peer, sizeof peer, "%s stderr", name);
        if (ok) ok = (p->err = ll_stream_from_fd(loop, err[0], peer)) != NULL;
        else close(err[0]);
    }
    if (!ok) {
        ll_process_close(p);
        ll_future_fail(f, LL_ENOMEM, "spawn %s: out of memory", name);
        return f;
    }
    ll_future_resolve(f, p, value_close);
    return f;
}

/* ---- accessors, signals, wait ---- */

int ll_process_pid(const ll_process *p) {
    return p ? (int)p->pid : -1;
}

ll_stream *ll_process_stdin(ll_process *p) { return p ? p->in : NULL; }
ll_stream *ll_process_stdout(ll_process *p) { return p ? p->out : NULL; }
ll_stream *ll_process_stderr(ll_process *p) { return p ? p->err : NULL; }

int ll_process_status(const ll_process *p, ll_exit_status *out) {
    if (!p) return LL_EINVAL;
    if (!p->reaped) return LL_EAGAIN;
    if (p->reap_err) return p->reap_err;
    if (out) *out = p->status;
    return 0;
}

int ll_process_signal(ll_process *p, int sig) {
    if (!p) return LL_EINVAL;
    if (p->reaped) return LL_ESRCH;
    /* Not yet reaped: the pid is still ours (a zombie keeps it), so this cannot hit a stranger. */
    if (kill(p->pid, sig) != 0) return ll_err_from_errno(errno);
    return 0;
}

int ll_process_terminate(ll_process *p) { return ll_process_signal(p, SIGTERM); }
int ll_process_kill(ll_process *p) { return ll_process_signal(p, SIGKILL); }

static void wait_cancel(ll_future *f, void *arg) {
    waitrec *w = arg;
    ll_process *p = w->p;
    ll__list_remove(&p->waits, &w->link);
    p->nwaits--;
    ll_future_set_cancelled(f);
    ll_future_free(w->f);
    ll__free(w);
    ll__process_update_ref(p);
}

ll_future *ll_process_wait(ll_process *p) {
    LL_REQUIRE_ARG(p, "process");
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "process wait");
    waitrec *w = ll__calloc(1, sizeof *w);
    if (!w) {
        ll_future_fail(f, LL_ENOMEM, "wait for %s: out of memory", p->name);
        return f;
    }
    w->f = ll_future_ref(f);
    w->p = p;
    if (p->reaped) {
        settle_wait(p, w);
        ll_future_free(w->f);
        ll__free(w);
        return f;
    }
    ll__list_push_front(&p->waits, &w->link);
    p->nwaits++;
    ll_future_on_cancel(f, wait_cancel, w);
    ll__process_update_ref(p);
    return f;
}

