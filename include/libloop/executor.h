/*
 * libloop/executor.h — a thread pool that turns blocking calls into futures.
 *
 * Blocking work (getaddrinfo, file I/O, a legacy library) never runs on the loop thread: give it to
 * the executor. fn(arg, &value) runs on a worker thread and returns 0 or a negative code; the
 * future is settled on the loop thread. Each loop has one executor, started on first use with
 * LIBLOOP_EXECUTOR_THREADS workers (default 4).
 *
 * Ownership — the job owns `arg` from the moment ll_executor_run() is called:
 * - arg_free(arg) (when not NULL) is called exactly once: on the worker thread as soon as fn
 *   returns, or on the loop thread when the job is removed before it started (its future was
 *   cancelled, the loop was freed) or could not be submitted at all. So `arg` must not point at the
 *   caller's stack or at memory the caller frees: allocate it for the job and let arg_free free it.
 * - A running job cannot be interrupted. Cancelling its future (ll_future_cancel, a deadline, a
 *   cancelled task awaiting it) settles the future at once, as cancelled; the job runs on, on
 *   memory it owns, and the value it returns later is destroyed with value_free (on the loop
 *   thread, or on the worker thread once the loop is gone). Cancelling a queued job removes it in
 *   constant time: it never runs.
 * - ll_loop_free() cancels queued jobs, waits at most LL_EXECUTOR_FREE_GRACE seconds for running
 *   ones, then detaches the workers still busy: each finishes its job on its own thread, destroys
 *   the value and the arg, and exits. The loop and the caller's memory are never touched again.
 *   A job submitted while the loop is being freed (from a done callback) fails with LL_ECLOSED.
 */
#ifndef LIBLOOP_EXECUTOR_H
#define LIBLOOP_EXECUTOR_H

#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

/* Runs on a worker thread: 0 and *value (destroyed with value_free), or a negative code. */
typedef int (*ll_work_fn)(void *arg, void **value);

/* How long ll_loop_free() waits for running jobs before detaching their threads (seconds). */
#define LL_EXECUTOR_FREE_GRACE 0.2

typedef struct ll_executor_opts {
    ll_loop *loop;      /* NULL: the current loop */
    const char *label;  /* the future's label (a literal); NULL: "executor job" */
} ll_executor_opts;

/* Run fn(arg, &value) on the loop's executor. The future resolves with the value (destroyed with
 * value_free, which is also its type tag for ll_future_value_as) or fails with fn's code (a
 * positive return becomes LL_EIO). opts may be NULL. A bad argument gives a failed future
 * (LL_EINVAL); NULL only on out of memory. Either way arg_free(arg) has been or will be called. */
LL_EXPORT ll_future *ll_executor_run(ll_work_fn fn, void *arg, ll_value_free arg_free,
                                     ll_value_free value_free, const ll_executor_opts *opts);
/* Workers for the loop's executor (NULL: the current loop); only before its first use. 0, LL_EINVAL
 * or LL_ESTATE. */
LL_EXPORT int ll_executor_set_threads(ll_loop *loop, unsigned n);

LL_END_DECLS

#endif
