/*
 * libloop/executor.h — a thread pool that turns blocking calls into futures.
 *
 * Blocking work (getaddrinfo, file I/O, a legacy library) never runs on the loop thread: give it to
 * the executor. fn(arg, &value) runs on a worker thread and returns 0 or a negative code; the
 * future is settled on the loop thread. Each loop has one executor, started on first use with
 * LIBLOOP_EXECUTOR_THREADS workers (default 4) and joined when the loop is freed.
 *
 * Cancelling the future of a job that has not started removes it; a job already running cannot be
 * interrupted: the future is cancelled at once and the job's value, when it comes, is destroyed
 * with value_free.
 *
 * Ownership: `arg` must stay valid until the job has run or been removed (the future settled is
 * not enough when the job was running: use ll_future_add_done on the value path or own arg in fn).
 */
#ifndef LIBLOOP_EXECUTOR_H
#define LIBLOOP_EXECUTOR_H

#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

typedef int (*ll_work_fn)(void *arg, void **value);

/* On the current loop. NULL on out of memory. */
LL_EXPORT ll_future *ll_run_in_executor(ll_work_fn fn, void *arg, ll_value_free value_free);
LL_EXPORT ll_future *ll_run_in_executor_on(ll_loop *loop, ll_work_fn fn, void *arg,
                                           ll_value_free value_free);
/* Workers for the loop's executor; only before its first use. 0, LL_EINVAL or LL_ESTATE. */
LL_EXPORT int ll_executor_set_threads(ll_loop *loop, unsigned n);

LL_END_DECLS

#endif
