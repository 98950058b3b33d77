/*
 * libloop/combinators.h — gather, wait, as_completed, wait_for, shield and task groups.
 *
 * Ownership: combinators take their own references to the futures passed in; the caller keeps
 * (and still frees) its own. The outcome of each input stays in the input future: after a gather,
 * read ll_future_value(fs[i]). A combinator's own future is one more reference for the caller.
 */
#ifndef LIBLOOP_COMBINATORS_H
#define LIBLOOP_COMBINATORS_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/task.h"

enum {
    LL_GATHER_FAIL_FAST = 0, /* the first failure fails the gather and cancels the others */
    LL_GATHER_COLLECT = 1    /* wait for all; each keeps its own outcome (return_exceptions=True) */
};

/* A future that settles when all n futures have (or, fail-fast, at the first failure, whose code
 * and message it takes, prefixed with the input's index). In collect mode it always resolves; its
 * value is the number of failed inputs (cast from uintptr_t). Cancelling the gather cancels all
 * inputs. n == 0 resolves at once. NULL on out of memory. */
LL_EXPORT ll_future *ll_gather(ll_future *const *fs, size_t n, int mode);

enum {
    LL_WAIT_FIRST_COMPLETED = 1,
    LL_WAIT_FIRST_FAILED = 2,
    LL_WAIT_ALL_COMPLETED = 3
};
/* asyncio.wait: resolves when the condition holds or `timeout` seconds pass (timeout < 0: none),
 * never failing because an input failed; inputs are never cancelled. The value is the number of
 * settled inputs (cast from uintptr_t); check each with ll_future_done(). */
LL_EXPORT ll_future *ll_wait(ll_future *const *fs, size_t n, int when, double timeout);

/* asyncio.as_completed, for use inside a task:
 *     ll_as_completed *it = ll_as_completed_new(fs, n);
 *     ll_future *done;
 *     while (ll_as_completed_next(it, &done) == 0) { ... }
 *     ll_as_completed_free(it);
 * next() gives the inputs in the order they settle (borrowed pointers) and returns 0, LL_EOF when
 * all were given, or what the await returned (LL_ECANCELED, LL_ETIMEDOUT). */
typedef struct ll_as_completed ll_as_completed;
LL_EXPORT ll_as_completed *ll_as_completed_new(ll_future *const *fs, size_t n);
LL_EXPORT int ll_as_completed_next(ll_as_completed *it, ll_future **done);
LL_EXPORT void ll_as_completed_free(ll_as_completed *it);

/* asyncio.wait_for: mirrors f; after `timeout` seconds f is cancelled and the result fails with
 * LL_ETIMEDOUT once f has stopped. The value is borrowed from f. */
LL_EXPORT ll_future *ll_wait_for(ll_future *f, double timeout);
/* asyncio.shield: mirrors f, but cancelling the result does not cancel f. */
LL_EXPORT ll_future *ll_shield(ll_future *f);

/* Structured concurrency (asyncio.TaskGroup, Trio's nursery). Children are spawned into the group;
 * ll_taskgroup_wait() (inside a task) waits for all of them. The first child to fail cancels its
 * siblings and its error becomes the group's. If the waiting task is cancelled, the children are
 * cancelled and awaited. Freeing a group cancels children still running (they finish on their own).
 */
typedef struct ll_taskgroup ll_taskgroup;
LL_EXPORT ll_taskgroup *ll_taskgroup_new(void);
/* Return 0, LL_ENOMEM, or LL_ESTATE once the group has failed or finished waiting. */
LL_EXPORT int ll_taskgroup_spawn(ll_taskgroup *g, ll_task_fn fn, void *arg, const char *name);
/* 0 when every child succeeded; else the first failure's code (message: ll_taskgroup_errmsg). */
LL_EXPORT int ll_taskgroup_wait(ll_taskgroup *g);
LL_EXPORT const char *ll_taskgroup_errmsg(const ll_taskgroup *g);
LL_EXPORT void ll_taskgroup_free(ll_taskgroup *g);

#endif
