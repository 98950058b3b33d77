/*
 * libloop/loops.h — one loop per core: N threads, each running its own loop.
 *
 * A loop belongs to one thread (loop.h), so using several cores means several loops. The pattern
 * this helper packages: nothing is shared between loops. Each loop's main task makes its own pools,
 * clients and connections; work moves between loops only as messages, posted with
 * ll_loop_call_soon_threadsafe() (or ll_loop_group_spawn(), which starts a task there). No lock is
 * taken on the hot path, so N loops do N times the work for the same CPU per operation, as long as
 * the workload is split between them (docs/performance.md measures it; docs/scale-out.md shows
 * the pattern).
 *
 * Ownership and lifetime:
 * - ll_loop_group_new() returns once every thread has made its loop; from then until
 *   ll_loop_group_join() returns, ll_loop_group_loop(g, i) is a valid target for
 *   ll_loop_call_soon_threadsafe() from any thread. Each loop is kept alive (ll_loop_ref) until
 *   join, even after its main task has finished, so a post never hits a freed loop.
 * - join waits for every main task to finish, then lets each loop run out of work, frees it and
 *   joins its thread. Work that posts to *other* loops must be finished when its own main task
 *   returns. Never call join (or free) from one of the group's own threads: LL_EBUSY.
 * - `arg` is the caller's; it must stay valid until join returns.
 */
#ifndef LIBLOOP_LOOPS_H
#define LIBLOOP_LOOPS_H

#include <stddef.h>
#include "libloop/common.h"
#include "libloop/loop.h"

LL_BEGIN_DECLS

typedef struct ll_loop_group ll_loop_group;

/* The main task of loop `index` (0..n-1): runs on that loop's thread as a task named "main". Its
 * return code is what ll_loop_group_join() reports for this loop. */
typedef int (*ll_loop_group_fn)(size_t index, void *arg);

typedef struct ll_loop_group_opts {
    size_t stack_size; /* 0: the loops' default task stack size (loop.h) */
    bool pin;          /* pin thread i to CPU i modulo the CPUs this process may use */
} ll_loop_group_opts;

/* Start n threads, each with a new loop running fn(i, arg) as its main task. Returns once every
 * loop exists. NULL when n is 0 or fn NULL, or when memory, a thread or a loop could not be had
 * (then nothing is left running). opts NULL: defaults. */
LL_EXPORT ll_loop_group *ll_loop_group_new(size_t n, ll_loop_group_fn fn, void *arg,
                                           const ll_loop_group_opts *opts);
/* The number of loops; 0 for NULL. */
LL_EXPORT size_t ll_loop_group_size(const ll_loop_group *g);
/* Loop i, for ll_loop_call_soon_threadsafe() and ll_spawn_opts.loop (from its own thread only);
 * NULL when i is out of range. Valid until ll_loop_group_join() returns. */
LL_EXPORT ll_loop *ll_loop_group_loop(const ll_loop_group *g, size_t i);
/* From any thread: start fn(arg) as a task on loop i (fire and forget: its outcome is dropped,
 * so fn reports its own result, e.g. by posting back). 0, LL_EINVAL (bad g, i or fn), LL_ENOMEM. */
LL_EXPORT int ll_loop_group_spawn(ll_loop_group *g, size_t i, ll_task_fn fn, void *arg);
/* From any thread: cancel every main task (graceful stop; their tasks see LL_ECANCELED). */
LL_EXPORT void ll_loop_group_cancel(ll_loop_group *g);
/* Wait for every main task, then for each loop to run out of work; free the loops and join the
 * threads. codes (may be NULL) receives n main-task codes (0 = success, LL_ECANCELED when
 * cancelled). Returns 0 when every main succeeded, else the first failing code; LL_EINVAL for
 * NULL, LL_EBUSY from one of the group's threads, LL_EALREADY if already joined. */
LL_EXPORT int ll_loop_group_join(ll_loop_group *g, int *codes);
/* Join (if not yet) and free the group. NULL: no-op. */
LL_EXPORT void ll_loop_group_free(ll_loop_group *g);

LL_END_DECLS

#endif
