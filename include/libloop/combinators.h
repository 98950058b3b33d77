/*
 * libloop/combinators.h — gather, wait, as_completed, wait_for, shield and task groups.
 *
 * Ownership: combinators take their own references to the futures passed in; the caller keeps
 * (and still frees) its own. The outcome of each input stays in the input future: after a gather,
 * read ll_future_value(fs[i]). A combinator's own future is one more reference for the caller.
 * Either may outlive the other: a combinator drops its references (and removes its callbacks) as
 * soon as it has settled, and dropping the caller's reference to it early is safe.
 *
 * A NULL input (what a future-returning call gives when out of memory) counts as failed with
 * LL_ENOMEM. Inputs must belong to one loop. Misuse (a NULL array with n > 0, an unknown mode,
 * inputs of several loops) gives a future failed with LL_EINVAL; NULL always means out of memory.
 * Results may be settled already when the call returns (n == 0, a NULL input); otherwise they
 * settle from the loop, like every future.
 */
#ifndef LIBLOOP_COMBINATORS_H
#define LIBLOOP_COMBINATORS_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/task.h"

LL_BEGIN_DECLS

enum {
    LL_GATHER_FAIL_FAST = 0, /* the first failure cancels the others, then fails the gather */
    LL_GATHER_COLLECT = 1    /* wait for all; each keeps its own outcome (return_exceptions=True) */
};

/* A future that settles when all n futures have. Fail-fast: the first failure cancels the other
 * inputs and the gather fails with its code and message, prefixed with the input's index
 * ("gather: item 2: connection refused"), once the cancelled inputs have stopped, as a task group
 * does: their cleanup never runs after the awaiter has moved on (an input that ignores
 * cancellation, a shielded task, is waited for). In collect
 * mode it always resolves; its value is the number of failed or cancelled inputs (cast from
 * uintptr_t; 0 in fail-fast mode). Cancelling the gather cancels all inputs; it then settles as
 * cancelled once every input has settled. n == 0 resolves at once. NULL on out of memory. */
LL_EXPORT ll_future *ll_gather(ll_future *const *fs, size_t n, int mode);

enum {
    LL_WAIT_FIRST_COMPLETED = 1,
    LL_WAIT_FIRST_FAILED = 2,
    LL_WAIT_ALL_COMPLETED = 3
};
/* asyncio.wait: resolves when the condition holds or `timeout` seconds pass (timeout < 0: none),
 * never failing because an input failed; inputs are never cancelled. FIRST_FAILED holds when an
 * input failed or was cancelled, or all have settled. The value is the number of settled inputs
 * (cast from uintptr_t); check each with ll_future_done(). n == 0 resolves at once. Cancelling the
 * wait settles it as cancelled at once. NULL on out of memory. */
LL_EXPORT ll_future *ll_wait(ll_future *const *fs, size_t n, int when, double timeout);

/* asyncio.as_completed, for use inside a task:
 *     ll_as_completed *it = ll_as_completed_new(fs, n);
 *     ll_future *done;
 *     while (ll_as_completed_next(it, &done) == 0) { ... }
 *     ll_as_completed_free(it);
 * next() gives the inputs in the order they settle (borrowed pointers, valid until the iterator is
 * freed; a NULL input is given as NULL) and returns 0, LL_EOF when all were given, or what the
 * await returned (LL_ECANCELED, LL_ETIMEDOUT; the iterator stays usable). Outside a task next()
 * returns LL_ENOTASK; NULL iterator: LL_EINVAL. Inputs are never cancelled. new() returns NULL on
 * out of memory or misuse (NULL array with n > 0, inputs of several loops). Free the iterator
 * only while no next() is waiting on it. */
typedef struct ll_as_completed ll_as_completed;
LL_EXPORT ll_as_completed *ll_as_completed_new(ll_future *const *fs, size_t n);
LL_EXPORT int ll_as_completed_next(ll_as_completed *it, ll_future **done);
LL_EXPORT void ll_as_completed_free(ll_as_completed *it);

/* asyncio.wait_for: mirrors f; after `timeout` seconds (< 0: never) f is cancelled and the result
 * fails with LL_ETIMEDOUT once f has stopped; if f completes regardless of the cancel, its own
 * outcome stands (as with ll_await). Cancelling the result cancels f and settles it once f has
 * stopped. The value is borrowed from f (the result keeps f alive; ll_future_take() on the result
 * gives NULL). NULL for a NULL f or on out of memory. */
LL_EXPORT ll_future *ll_wait_for(ll_future *f, double timeout);
/* asyncio.shield: mirrors f (value borrowed, as wait_for), but cancelling the result settles it as
 * cancelled at once and leaves f running. NULL for a NULL f or on out of memory. */
LL_EXPORT ll_future *ll_shield(ll_future *f);

/* Structured concurrency (asyncio.TaskGroup, Trio's nursery). Children are spawned into the group;
 * ll_taskgroup_wait() (inside a task) waits for all of them. The first child to fail cancels its
 * siblings and its error becomes the group's (a cancelled child is not a failure; the waiting task
 * is not cancelled by a child's failure, it learns of it when wait returns). If the waiting task is
 * cancelled or its deadline passes, the children are cancelled and awaited: wait returns only when
 * all have stopped. Freeing a group cancels children still running (they finish on their own).
 * A group belongs to one loop and is not thread-safe.
 */
typedef struct ll_taskgroup ll_taskgroup;
/* NULL on out of memory. */
LL_EXPORT ll_taskgroup *ll_taskgroup_new(void);
/* Start fn(arg) as a child on the current loop, named `name` (copied; NULL: the function). It
 * inherits the spawning task's deadline and context values, as ll_spawn. May be called from
 * outside a task or from a child. Return 0, LL_EINVAL (NULL g or fn), LL_ENOMEM / LL_ESTACK, or
 * LL_ESTATE once the group has failed, is being cancelled or has finished waiting. */
LL_EXPORT int ll_taskgroup_spawn(ll_taskgroup *g, ll_task_fn fn, void *arg, const char *name);
/* 0 when every child succeeded; else the first failure's code (message: ll_taskgroup_errmsg);
 * LL_ECANCELED / LL_ETIMEDOUT when the waiting task was cancelled / timed out (children stopped);
 * LL_ECLOSED when the group was freed meanwhile (it is then gone: do not free it again);
 * LL_ENOTASK outside a task; LL_ESTATE if another task is already waiting; LL_ENOMEM. After it
 * returned, a second call returns the same result at once. */
LL_EXPORT int ll_taskgroup_wait(ll_taskgroup *g);
/* "task #12 'fetch-3': connection refused" for the first failure, "" when none. Valid until the
 * group is freed. */
LL_EXPORT const char *ll_taskgroup_errmsg(const ll_taskgroup *g);
/* NULL: no-op. */
LL_EXPORT void ll_taskgroup_free(ll_taskgroup *g);

LL_END_DECLS

#endif
