/*
 * libloop/process.h — child processes: spawn a program with its stdin/stdout/stderr as libloop
 * streams, await its exit, signal it, and feed it input while collecting all of its output.
 *
 * argv[0] is looked up in PATH (the parent's) unless it contains a '/'. A program that cannot be
 * run fails the spawn itself with the errno and the program's name: "spawn nosuchprog: no such
 * file or directory" (fork + exec with a close-on-exec error pipe, so this holds under valgrind
 * too). The child starts with every signal at its default action and an empty signal mask (a
 * parent that ignores SIGPIPE, as libloop's streams make it do, does not pass that on) and with no
 * descriptor of the parent's beyond 0, 1 and 2 (libloop opens all of its descriptors
 * close-on-exec). A relative argv[0] containing '/' is resolved in the child's cwd.
 *
 * Exit statuses are collected without SIGCHLD where the kernel allows it: a pidfd (Linux 5.3+)
 * watched by the child's own loop, so any loop on any thread can run children. Without pidfd the
 * loop that is libev's default loop uses ev_child; any other loop polls waitpid(pid, WNOHANG) on a
 * timer (1 ms, backing off to 50 ms). libloop only ever waits for its own children by pid. (An
 * application that installs its own SIGCHLD handler reaping with waitpid(-1) steals the statuses;
 * don't. libev's default loop does exactly that once ev_default_loop() has been called: in such a
 * program, run children on the loop embedded in the default loop.)
 *
 * Cancellation rule: cancelling a wait or a communicate stops *waiting*; it never kills the child
 * (the caller still has the process and decides). ll_process_close() kills a child that is still
 * running (SIGKILL) and reaps it in the background, so closing never leaves a zombie or an orphan.
 * ll_process_run(), which owns its process, kills the child when it is cancelled or times out, and
 * settles only after the child has been reaped.
 *
 * A NULL process given to a call that returns a future fails it with LL_EINVAL, naming the call.
 *
 * Ownership: the future of ll_process_spawn() holds an ll_process *; take it with ll_future_take()
 * and close it with ll_process_close() (left in the future, it is closed with the future). The
 * stdio streams belong to the process: use them, never ll_stream_close() them yourself (to send
 * EOF to the child, ll_stream_shutdown() its stdin). Each process counts as one loop handle until
 * it is closed and its child reaped; each of its pipes is a stream handle.
 */
#ifndef LIBLOOP_PROCESS_H
#define LIBLOOP_PROCESS_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/stream.h"

LL_BEGIN_DECLS

typedef struct ll_process ll_process;

/* What a child's standard descriptor is connected to. */
typedef enum {
    LL_STDIO_INHERIT = 0, /* the parent's own descriptor */
    LL_STDIO_PIPE,        /* a pipe whose other end is an ll_stream of the process */
    LL_STDIO_NULL,        /* /dev/null */
    LL_STDIO_STDOUT       /* stderr only: the same as the child's stdout (2>&1) */
} ll_stdio;

typedef struct ll_process_opts {
    ll_stdio stdin_mode, stdout_mode, stderr_mode;
    const char *cwd;        /* the child's working directory; NULL: the parent's */
    char *const *env;       /* the child's whole environment, "NAME=value", NULL-terminated; NULL:
                             * the parent's. PATH lookup of argv[0] uses the parent's PATH. */
    bool new_process_group; /* put the child in a process group of its own (its pid) */
    ll_loop *loop;          /* NULL: the current loop */
} ll_process_opts;

/* How a child ended. */
typedef struct ll_exit_status {
    bool exited;    /* ended by exit(): `code` is set */
    int code;       /* exit code 0..255 */
    bool signaled;  /* killed by a signal: `signal` is set */
    int signal;     /* the signal number (SIGTERM, SIGKILL, ...) */
    bool core_dumped;
} ll_exit_status;

/* Start argv[0] with arguments argv (NULL-terminated; argv[0] is also the program's name). The
 * future is settled when the call returns: resolved with the ll_process *, or failed with the
 * spawn error ("spawn nosuchprog: no such file or directory", "spawn ls: cwd /nope: no such file
 * or directory", LL_EMFILE when out of descriptors). NULL on out of memory. */
LL_EXPORT ll_future *ll_process_spawn(const char *const *argv, const ll_process_opts *opts);

/* The child's process id (it stays valid, un-reaped, until the exit has been collected). */
LL_EXPORT int ll_process_pid(const ll_process *p);
/* The pipe streams (NULL for a descriptor that is not LL_STDIO_PIPE, or after close). */
LL_EXPORT ll_stream *ll_process_stdin(ll_process *p);
LL_EXPORT ll_stream *ll_process_stdout(ll_process *p);
LL_EXPORT ll_stream *ll_process_stderr(ll_process *p);

/* A future that resolves when the child has exited (at once if it has); its value is a copy of the
 * ll_exit_status, owned by the future. Cancelling it stops this wait only. NULL on out of memory. */
LL_EXPORT ll_future *ll_process_wait(ll_process *p);
/* The status once the exit has been collected: 0, or LL_EAGAIN while the child runs. */
LL_EXPORT int ll_process_status(const ll_process *p, ll_exit_status *out);

/* Send a signal (SIGTERM: terminate; SIGKILL: kill). Return 0, LL_ESRCH once the exit has been
 * collected (a reaped pid may belong to another process by now: it is never signalled), or the
 * errno of kill(). */
LL_EXPORT int ll_process_signal(ll_process *p, int sig);
LL_EXPORT int ll_process_terminate(ll_process *p);
LL_EXPORT int ll_process_kill(ll_process *p);

/* Close the pipes; kill the child if it is still running and collect its exit in the background;
 * free the process when that is done. Waits still pending then resolve with that exit. NULL:
 * no-op. */
LL_EXPORT void ll_process_close(ll_process *p);

/* What ll_process_communicate() and ll_process_run() collect. */
typedef struct ll_process_output {
    char *out;      /* everything the child wrote to stdout, NUL-terminated (NULL if not a pipe) */
    size_t out_len;
    char *err;      /* the same for stderr */
    size_t err_len;
    ll_exit_status status;
} ll_process_output;

/* Free an output taken out of its future with ll_future_take(). NULL: no-op. */
LL_EXPORT void ll_process_output_free(ll_process_output *o);

/* Feed `input` (len bytes; NULL/0: nothing) to the child's stdin, then close it; meanwhile read
 * stdout and stderr (those that are pipes) to their end; then wait for the exit. All three run at
 * once, so a child that writes a lot before reading everything never deadlocks with us. The value
 * is an ll_process_output owned by the future. `input` must stay valid until the future settles
 * (it is written as the pipe takes it, not copied whole). A child that closes its stdin early is
 * not an error (the rest of the input is dropped). `max_output` bounds each of stdout and stderr
 * (0: no limit): beyond it the future fails with LL_ETOOLARGE. Call it once per process, with no
 * other read or write in progress on the pipes. NULL on out of memory. */
LL_EXPORT ll_future *ll_process_communicate(ll_process *p, const void *input, size_t len,
                                            size_t max_output);

/* Spawn, communicate and close in one: stdin, stdout and stderr default to pipes here (a mode
 * other than LL_STDIO_INHERIT in opts is kept; stdin is a pipe only when input is given, else
 * /dev/null). The value is an ll_process_output owned by the future; a non-zero exit is NOT a
 * failure (read status). Cancellation or the task's deadline kills the child; the future settles
 * once it has been reaped. NULL on out of memory. */
LL_EXPORT ll_future *ll_process_run(const char *const *argv, const void *input, size_t len,
                                    const ll_process_opts *opts);

LL_END_DECLS

#endif
