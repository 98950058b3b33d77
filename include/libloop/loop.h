/*
 * libloop/loop.h — the event loop: one per thread, on libev.
 *
 * A loop either owns its libev loop or is embedded in a `struct ev_loop` that the application
 * already runs (ll_loop_new_embedded): then libloop only adds watchers and the application keeps
 * calling ev_run.
 *
 * Ownership: the thread that creates a loop is the only one that may use it, except for
 * ll_loop_call_soon_threadsafe(). ll_loop_free() cancels what is left, waits for it to clean up until a
 * deadline (never forever) and frees everything, including tasks that did not finish in time.
 */
#ifndef LIBLOOP_LOOP_H
#define LIBLOOP_LOOP_H

#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

struct ev_loop;

typedef int (*ll_task_fn)(void *arg);
typedef void (*ll_callback)(void *arg);

/* A new loop with its own libev loop, or NULL (out of memory, or libev could not create one).
 * It becomes the thread's current loop if the thread has none. */
LL_EXPORT ll_loop *ll_loop_new(void);
/* A loop that lives inside `ev`, which the application runs. NULL on out of memory. */
LL_EXPORT ll_loop *ll_loop_new_embedded(struct ev_loop *ev);
LL_EXPORT struct ev_loop *ll_loop_ev(ll_loop *loop);

/* The loop of the running task or callback; otherwise the loop most recently created on this
 * thread and not yet freed; NULL if none. */
LL_EXPORT ll_loop *ll_loop_current(void);

/* Run until nothing is left to do (no runnable task, no pending timer or I/O that keeps the loop
 * alive) or ll_loop_stop(). Return 0, LL_EINVAL (NULL or embedded loop) or LL_EBUSY when called
 * from inside the loop. */
LL_EXPORT int ll_loop_run(ll_loop *loop);
/* Run until f settles; return f's code, or LL_EBUSY if the loop ran out of work first (f can never
 * settle: a deadlock) or was stopped. */
LL_EXPORT int ll_loop_run_until(ll_loop *loop, ll_future *f);
/* Make ll_loop_run() return after the current iteration. */
LL_EXPORT void ll_loop_stop(ll_loop *loop);

/* Cancel every task, run the loop until all have finished or `deadline` passes, then destroy
 * tasks that are still alive (their stacks are released; what they held is lost, and debug mode
 * says so). Return 0 when everything finished, LL_ETIMEDOUT when something had to be destroyed. */
LL_EXPORT int ll_loop_shutdown(ll_loop *loop, ll_time deadline);
/* Shut down with a 5-second deadline if anything is alive, then free the loop (and its libev loop
 * unless embedded). Return 0, or LL_ETIMEDOUT as ll_loop_shutdown(). NULL: no-op, 0.
 * On the way it closes handles left open, stops the executor (queued jobs removed, running ones
 * given LL_EXECUTOR_FREE_GRACE and then detached: see executor.h), and runs every callback still
 * queued, posts from other threads included. Futures the application still holds outlive the loop
 * safely: they can be read and must still be freed (the loop's record goes with the last one);
 * settling or awaiting them afterwards does nothing, as no loop runs their callbacks. */
LL_EXPORT int ll_loop_free(ll_loop *loop);

/* Run cb(arg) from the loop soon, in FIFO order. Return 0 or LL_ENOMEM. */
LL_EXPORT int ll_loop_call_soon(ll_loop *loop, ll_callback cb, void *arg);
/* The same from any thread; wakes the loop. */
LL_EXPORT int ll_loop_call_soon_threadsafe(ll_loop *loop, ll_callback cb, void *arg);
/* Run cb(arg) after `delay` seconds. The future resolves after cb ran; cancelling it before then
 * prevents the call. NULL on out of memory. */
LL_EXPORT ll_future *ll_loop_call_later(ll_loop *loop, double delay, ll_callback cb, void *arg);
/* A future that resolves after `seconds` (cancel to stop the timer). */
LL_EXPORT ll_future *ll_sleep_future(ll_loop *loop, double seconds);

/* Keep the loop alive while a thread of yours will call ll_loop_call_soon_threadsafe() (ref), and stop
 * doing so (unref). Calls must pair. */
LL_EXPORT void ll_loop_ref(ll_loop *loop);
LL_EXPORT void ll_loop_unref(ll_loop *loop);

/* On SIGINT or SIGTERM, cancel every task of this loop (graceful shutdown); a second signal kills
 * the process as usual. ll_run() turns this on. libev lets one loop watch a given signal at a time:
 * return LL_EBUSY if another loop does. */
LL_EXPORT int ll_loop_handle_signals(ll_loop *loop, bool on);

/* Default stack size for tasks spawned on this loop (rounded up to pages; minimum 16 KiB). The
 * default is 128 KiB, or LIBLOOP_STACK_SIZE from the environment. */
LL_EXPORT void ll_loop_set_stack_size(ll_loop *loop, size_t bytes);

typedef struct ll_loop_stats {
    size_t tasks;    /* tasks not yet finished */
    size_t futures;  /* futures not yet destroyed that belong to this loop */
    size_t handles;  /* open libloop handles: timers, streams, executor jobs, servers, ... */
    size_t stacks_guarded;   /* live task stacks with a guard page */
    size_t stacks_unguarded; /* live task stacks beyond the mapping budget (canary-checked) */
} ll_loop_stats;
LL_EXPORT void ll_loop_get_stats(ll_loop *loop, ll_loop_stats *out);
/* For libraries built on libloop (the clients): count a handle of yours opened (+1) or closed (-1),
 * so ll_loop_get_stats and leak checks see it. loop NULL: the current loop. */
LL_EXPORT void ll_loop_track_handle(ll_loop *loop, int delta);

/* Seconds on the monotonic clock (CLOCK_MONOTONIC: it never jumps with the wall clock, and it
 * has no fixed origin: compare ll_now() values with each other, never with time()). Every
 * deadline (ll_scope_enter, ll_spawn_opts.deadline, ll_task_deadline, ll_loop_shutdown) is a
 * value on this clock. */
LL_EXPORT ll_time ll_now(void);
/* ll_now() + seconds: a deadline `seconds` from now; a negative `seconds` (no limit) gives
 * LL_NEVER. */
LL_EXPORT ll_time ll_deadline_in(double seconds);

/* asyncio.run: make a loop, run main(arg) as a task named "main" until it finishes, cancel and
 * clean up what is left, free the loop, return main's code. SIGINT/SIGTERM cancel the tasks. */
LL_EXPORT int ll_run(ll_task_fn main, void *arg);

LL_END_DECLS

#endif
