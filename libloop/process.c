/*
 * process.c — child processes: spawn with pipes as streams, collect the exit status on any loop,
 * signal, communicate without deadlock (see libloop/process.h for the contract).
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
 * - communicate is a callback state machine (no task, no extra stack): one write chain into
 *   stdin, one read chain per output pipe, and the exit wait, all outstanding at once. It settles
 *   when all of them have; an error or a cancel stops the others first.
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

extern char **environ;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define POLL_MIN 0.001
#define POLL_MAX 0.05

typedef enum { REAP_PIDFD, REAP_CHILD, REAP_POLL } reap_mode;

typedef struct waitrec {
    ll_future *f;        /* our reference */
    struct ll_process *p;
    struct waitrec *prev, *next;
} waitrec;

struct ll_process {
    ll_loop *loop;
    char *name;          /* argv[0], for messages */
    pid_t pid;
    reap_mode mode;
    int pidfd;
    ev_io io;
    ev_child child;
    ev_timer poll;
    bool watching;       /* the exit watcher is active */
    bool refd;           /* ...and keeps the loop alive */
    bool reaped;
    int reap_err;        /* the exit could not be collected (ECHILD: someone else reaped it) */
    ll_exit_status status;
    ll_stream *in, *out, *err;
    waitrec *waits;
    size_t nwaits;
    size_t users;        /* communicates in progress */
    bool closed;
    ll__closer closer;
};

static void process_free(ll_process *p);

/* ---- the exit watcher and its reference on the loop ---- */

static void update_ref(ll_process *p) {
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
    while (p->waits) {
        waitrec *w = p->waits;
        p->waits = w->next;
        if (p->waits) p->waits->prev = NULL;
        settle_wait(p, w);
        ll_future_free(w->f);
        ll__free(w);
    }
    p->nwaits = 0;
    if (p->closed && p->users == 0) process_free(p);
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

static void process_free(ll_process *p) {
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
        if (p->users == 0) process_free(p);
        return;
    }
    kill(p->pid, SIGKILL); /* closing never orphans a running child */
    update_ref(p);         /* reaping it keeps the loop alive a moment */
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
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "process spawn");
    if (!argv || !argv[0]) {
        ll_future_fail(f, LL_EINVAL, "spawn: empty argv");
        return f;
    }
    const char *name = argv[0];
    if (o.stdin_mode == LL_STDIO_STDOUT || o.stdout_mode == LL_STDIO_STDOUT ||
        o.stdin_mode > LL_STDIO_STDOUT || o.stdout_mode > LL_STDIO_STDOUT ||
        o.stderr_mode > LL_STDIO_STDOUT) {
        ll_future_fail(f, LL_EINVAL, "spawn %s: invalid stdio mode (only stderr can go to stdout)",
                       name);
        return f;
    }
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
    if (w->prev) w->prev->next = w->next;
    else p->waits = w->next;
    if (w->next) w->next->prev = w->prev;
    p->nwaits--;
    ll_future_set_cancelled(f);
    ll_future_free(w->f);
    ll__free(w);
    update_ref(p);
}

ll_future *ll_process_wait(ll_process *p) {
    if (!p) return NULL;
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
    w->next = p->waits;
    if (p->waits) p->waits->prev = w;
    p->waits = w;
    p->nwaits++;
    ll_future_on_cancel(f, wait_cancel, w);
    update_ref(p);
    return f;
}

/* ---- communicate ---- */

#define WRITE_CHUNK (64 * 1024)
#define READ_MIN (64 * 1024)

typedef struct comm comm;

typedef struct obuf {
    comm *c;
    char *data;
    size_t len, cap;
    bool open;           /* still reading */
    ll_future *rf;       /* the read in progress */
    const char *what;    /* "stdout" / "stderr" */
} obuf;

struct comm {
    ll_process *p;
    ll_future *f;        /* the result: our reference */
    const char *input;
    size_t len, off;
    ll_future *wf;       /* the write or shutdown in progress */
    bool writing;        /* the stdin side is not finished */
    bool shut;           /* the shutdown was issued */
    obuf o[2];
    ll_future *exitf;
    size_t max_output;
    int code;            /* the first error */
    char *msg;
    bool stopping;       /* error or cancel: stop the others, settle when all have */
    bool cancelled;
};

static void comm_step(comm *c);

static void comm_fail(comm *c, int code, const char *msg) {
    if (!c->code) {
        c->code = code;
        c->msg = ll__strdup(msg ? msg : ll_strerror(code));
    }
    c->stopping = true;
}

static size_t comm_outstanding(const comm *c) {
    return (c->wf != NULL) + (c->o[0].rf != NULL) + (c->o[1].rf != NULL) + (c->exitf != NULL);
}

void ll_process_output_free(ll_process_output *r) {
    if (!r) return;
    ll__free(r->out);
    ll__free(r->err);
    ll__free(r);
}

static void output_free(void *v) {
    ll_process_output_free(v);
}

static void comm_settle(comm *c) {
    ll_process *p = c->p;
    if (c->cancelled) {
        ll_future_set_cancelled(c->f);
    } else if (c->code) {
        ll_future_fail(c->f, c->code, "%s", c->msg ? c->msg : ll_strerror(c->code));
    } else {
        ll_process_output *r = ll__calloc(1, sizeof *r);
        if (!r) {
            ll_future_fail(c->f, LL_ENOMEM, "communicate with %s: out of memory", p->name);
        } else {
            for (int i = 0; i < 2; i++) {
                char **d = i == 0 ? &r->out : &r->err;
                size_t *n = i == 0 ? &r->out_len : &r->err_len;
                *d = c->o[i].data; /* NUL-terminated by the reader, NULL when not a pipe */
                *n = c->o[i].len;
                c->o[i].data = NULL;
            }
            ll_process_status(p, &r->status);
            ll_future_resolve(c->f, r, output_free);
        }
    }
    ll__free(c->o[0].data);
    ll__free(c->o[1].data);
    ll__free(c->msg);
    ll_future_free(c->f);
    p->users--;
    update_ref(p);
    ll__free(c);
    if (p->closed && p->reaped && p->users == 0) process_free(p);
}

/* Stop everything still outstanding (an error or a cancel happened). */
static void comm_stop(comm *c) {
    if (c->wf) ll_future_cancel(c->wf);
    for (int i = 0; i < 2; i++)
        if (c->o[i].rf) ll_future_cancel(c->o[i].rf);
    if (c->exitf) ll_future_cancel(c->exitf); /* stops waiting; the child is not ours to kill */
}

static void comm_check(comm *c) {
    if (c->stopping) {
        if (comm_outstanding(c) == 0) comm_settle(c);
        else comm_stop(c);
        return;
    }
    if (!c->writing && !c->o[0].open && !c->o[1].open && !c->exitf) comm_settle(c);
}

static void on_write(ll_future *f, void *arg) {
    comm *c = arg;
    int rc = ll_future_code(f);
    if (rc == 0 || rc == LL_EPIPE || rc == LL_ECONNRESET) {
        if (rc == 0 && !c->shut) c->off += (size_t)(uintptr_t)ll_future_value(f);
        if (rc != 0 || c->shut) c->writing = false; /* done, or the child stopped reading */
    } else if (!c->stopping) {
        comm_fail(c, rc, ll_future_errmsg(f));
    }
    ll_future_free(c->wf);
    c->wf = NULL;
    comm_step(c);
}

static void on_read(ll_future *f, void *arg) {
    obuf *o = arg;
    comm *c = o->c;
    int rc = ll_future_code(f);
    if (rc == 0) {
        o->len += (size_t)(uintptr_t)ll_future_value(f);
        o->data[o->len] = 0;
        if (c->max_output && o->len > c->max_output && !c->stopping) {
            char m[256];
            snprintf(m, sizeof m, "communicate with %s: %s exceeds %zu bytes", c->p->name, o->what,
                     c->max_output);
            comm_fail(c, LL_ETOOLARGE, m);
        }
    } else {
        o->open = false;
        if (rc != LL_EOF && !c->stopping) comm_fail(c, rc, ll_future_errmsg(f));
    }
    ll_future_free(o->rf);
    o->rf = NULL;
    comm_step(c);
}

static void on_exit_done(ll_future *f, void *arg) {
    comm *c = arg;
    int rc = ll_future_code(f);
    if (rc != 0 && !c->stopping) comm_fail(c, rc, ll_future_errmsg(f));
    ll_future_free(c->exitf);
    c->exitf = NULL;
    comm_step(c);
}

/* Issue whatever can go next; settle when everything is done. */
static void comm_step(comm *c) {
    ll_process *p = c->p;
    if (c->cancelled || c->stopping) {
        c->stopping = true;
        comm_check(c);
        return;
    }
    if (c->writing && !c->wf) {
        if (!p->in) {
            c->writing = false;
        } else if (c->off < c->len) {
            size_t n = c->len - c->off < WRITE_CHUNK ? c->len - c->off : WRITE_CHUNK;
            c->wf = ll_stream_write(p->in, c->input + c->off, n);
        } else {
            c->shut = true;
            c->wf = ll_stream_shutdown(p->in);
        }
        if (c->writing && (!c->wf || ll_future_add_done(c->wf, on_write, c) != 0)) {
            if (c->wf) ll_future_cancel(c->wf);
            ll_future_free(c->wf);
            c->wf = NULL;
            comm_fail(c, LL_ENOMEM, "communicate: out of memory");
        }
    }
    for (int i = 0; i < 2 && !c->stopping; i++) {
        obuf *o = &c->o[i];
        ll_stream *s = i == 0 ? p->out : p->err;
        if (!o->open || o->rf) continue;
        if (!s) {
            comm_fail(c, LL_ECLOSED, "communicate: the process was closed");
            break;
        }
        if (o->cap - o->len < READ_MIN / 2 + 1) {
            size_t cap = o->cap ? o->cap * 2 : READ_MIN;
            char *d = ll__realloc(o->data, cap);
            if (!d) {
                comm_fail(c, LL_ENOMEM, "communicate: out of memory for output");
                break;
            }
            o->data = d;
            o->cap = cap;
            o->data[o->len] = 0;
        }
        o->rf = ll_stream_read(s, o->data + o->len, o->cap - o->len - 1); /* room for the NUL */
        if (!o->rf || ll_future_add_done(o->rf, on_read, o) != 0) {
            if (o->rf) ll_future_cancel(o->rf);
            ll_future_free(o->rf);
            o->rf = NULL;
            comm_fail(c, LL_ENOMEM, "communicate: out of memory");
        }
    }
    comm_check(c);
}

static void comm_cancel(ll_future *f, void *arg) {
    (void)f;
    comm *c = arg;
    c->cancelled = true;
    c->stopping = true;
    comm_check(c);
}

ll_future *ll_process_communicate(ll_process *p, const void *input, size_t len, size_t max_output) {
    if (!p) return NULL;
    ll_future *f = ll_future_new(p->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "process communicate");
    if (p->closed) {
        ll_future_fail(f, LL_ECLOSED, "communicate with %s: the process is closed", p->name);
        return f;
    }
    if (len > 0 && !p->in) {
        ll_future_fail(f, LL_EINVAL, "communicate with %s: input given but stdin is not a pipe",
                       p->name);
        return f;
    }
    comm *c = ll__calloc(1, sizeof *c);
    if (!c) {
        ll_future_fail(f, LL_ENOMEM, "communicate with %s: out of memory", p->name);
        return f;
    }
    c->p = p;
    c->f = ll_future_ref(f);
    c->input = input;
    c->len = input ? len : 0;
    c->writing = p->in != NULL;
    c->max_output = max_output;
    c->o[0].c = c->o[1].c = c;
    c->o[0].what = "stdout";
    c->o[1].what = "stderr";
    c->o[0].open = p->out != NULL;
    c->o[1].open = p->err != NULL;
    p->users++;
    c->exitf = ll_process_wait(p);
    if (!c->exitf || ll_future_add_done(c->exitf, on_exit_done, c) != 0) {
        if (c->exitf) ll_future_cancel(c->exitf);
        ll_future_free(c->exitf);
        c->exitf = NULL;
        comm_fail(c, LL_ENOMEM, "communicate: out of memory");
    }
    update_ref(p);
    ll_future_on_cancel(f, comm_cancel, c);
    comm_step(c); /* may settle f already (an error): callbacks still run from the loop */
    return f;
}

/* ---- run: spawn + communicate + close ---- */

typedef struct run {
    ll_future *f;        /* the result: our reference */
    ll_process *p;
    ll_future *comm;
    ll_future *reap;     /* after a failure or cancel: the wait for the killed child */
    bool cancelled;
    int code;
    char *msg;
} run;

static void run_end(run *r) {
    if (r->cancelled) ll_future_set_cancelled(r->f);
    else ll_future_fail(r->f, r->code, "%s", r->msg ? r->msg : ll_strerror(r->code));
    ll_process_close(r->p);
    ll__free(r->msg);
    ll_future_free(r->f);
    ll__free(r);
}

static void on_run_reaped(ll_future *f, void *arg) {
    run *r = arg;
    (void)f;
    ll_future_free(r->reap);
    r->reap = NULL;
    run_end(r);
}

static void on_run_comm(ll_future *f, void *arg) {
    run *r = arg;
    int rc = ll_future_code(f);
    if (rc == 0 && !r->cancelled) {
        ll_future_resolve(r->f, ll_future_take(f), output_free);
        ll_future_free(r->comm);
        ll_process_close(r->p);
        ll_future_free(r->f);
        ll__free(r);
        return;
    }
    if (!r->cancelled) {
        r->code = rc;
        r->msg = ll__strdup(ll_future_errmsg(f));
    }
    ll_future_free(r->comm);
    r->comm = NULL;
    /* the child is ours alone: kill it and settle once it has been reaped */
    ll_process_kill(r->p);
    r->reap = ll_process_wait(r->p);
    if (!r->reap || ll_future_add_done(r->reap, on_run_reaped, r) != 0) {
        if (r->reap) ll_future_cancel(r->reap);
        ll_future_free(r->reap);
        r->reap = NULL;
        run_end(r); /* close() still reaps it in the background */
    }
}

static void run_cancel(ll_future *f, void *arg) {
    (void)f;
    run *r = arg;
    r->cancelled = true;
    ll_process_kill(r->p);
    if (r->comm) ll_future_cancel(r->comm);
}

ll_future *ll_run_process(const char *const *argv, const void *input, size_t len,
                          const ll_process_opts *opts) {
    ll_process_opts o = {0};
    if (opts) o = *opts;
    if (o.stdin_mode == LL_STDIO_INHERIT) o.stdin_mode = input && len ? LL_STDIO_PIPE : LL_STDIO_NULL;
    if (o.stdout_mode == LL_STDIO_INHERIT) o.stdout_mode = LL_STDIO_PIPE;
    if (o.stderr_mode == LL_STDIO_INHERIT) o.stderr_mode = LL_STDIO_PIPE;
    ll_loop *loop = ll__loop_or_current(o.loop);
    if (!loop) return NULL;
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "run process");
    ll_future *sf = ll_process_spawn(argv, &o);
    if (!sf || ll_future_code(sf) != 0) {
        if (sf) ll_future_copy_outcome(f, sf);
        else ll_future_fail(f, LL_ENOMEM, "spawn %s: out of memory", argv && argv[0] ? argv[0] : "");
        ll_future_free(sf);
        return f;
    }
    ll_process *p = ll_future_take(sf);
    ll_future_free(sf);
    run *r = ll__calloc(1, sizeof *r);
    ll_future *cf = r ? ll_process_communicate(p, input, len, 0) : NULL;
    if (!cf || ll_future_add_done(cf, on_run_comm, r) != 0) {
        if (cf) ll_future_cancel(cf);
        ll_future_free(cf);
        ll__free(r);
        ll_process_close(p);
        ll_future_fail(f, LL_ENOMEM, "run %s: out of memory", argv[0]);
        return f;
    }
    r->f = ll_future_ref(f);
    r->p = p;
    r->comm = cf;
    ll_future_on_cancel(f, run_cancel, r);
    return f;
}
