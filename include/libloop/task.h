/*
 * libloop/task.h — tasks: stackful coroutines in which ll_await() reads like sequential code.
 *
 * A task runs fn(arg) on its own stack. Inside it, ll_await(f) suspends only this task until f
 * settles; the loop runs everything else meanwhile. The task's outcome is its future:
 *   - fn returns 0: resolved, with the value given to ll_task_return() (or NULL);
 *   - fn returns a negative code: failed, with the message given to ll_task_fail() (or the code's
 *     description);
 *   - the task was cancelled and fn did not return 0: cancelled.
 *
 * Cancellation is sticky (like Trio): once a task is cancelled, the await in progress and every
 * later await return LL_ECANCELED, after cancelling what they wait for and letting it stop, so a
 * task cannot ignore cancellation forever. Work that must await during cleanup runs inside a
 * shielded scope, which has a deadline of its own.
 *
 * Deadlines are absolute (ll_deadline_in() makes one). A scope entered with ll_scope_enter() bounds
 * every await inside it and every task spawned inside it; awaits past the deadline cancel what they
 * wait for and return LL_ETIMEDOUT. One budget thus covers DNS, connect, TLS, request and reply.
 *
 * Ownership: ll_spawn() returns one reference to the task's future; dropping it does not cancel the
 * task (the loop keeps the task alive until it finishes). ll_task_return()'s value is owned by the
 * task's future.
 */
#ifndef LIBLOOP_TASK_H
#define LIBLOOP_TASK_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/loop.h"

LL_BEGIN_DECLS

typedef struct ll_task ll_task;

typedef struct ll_spawn_opts {
    const char *name;  /* shown in the task dump and debug warnings; copied. NULL: the function */
    size_t stack_size; /* 0: the loop's default */
    ll_time deadline;  /* 0: inherit the spawning task's deadline (none outside tasks) */
    ll_loop *loop;     /* NULL: the current loop */
} ll_spawn_opts;

/* Start fn(arg) as a task on the current loop; it first runs from the loop, not inside this call.
 * A task spawned from a task inherits its deadline and its context values. Returns the task's
 * future, or NULL on out of memory or when there is no loop (no stack: the future is failed with
 * LL_ESTACK; fn NULL: LL_EINVAL). */
LL_EXPORT ll_future *ll_spawn(ll_task_fn fn, void *arg);
LL_EXPORT ll_future *ll_spawn_ex(ll_task_fn fn, void *arg, const ll_spawn_opts *opts);

/* Suspend the calling task until f settles; return f's code (0 when resolved). Returns at once:
 * LL_ENOTASK outside a task (nothing else happens), LL_ENOMEM for NULL, or f's code if settled.
 * Cancellation or an expired deadline cancels f, waits until it has settled, and returns
 * LL_ECANCELED or LL_ETIMEDOUT (or f's own outcome if it completed regardless). */
LL_EXPORT int ll_await(ll_future *f);

/* Await for at most `seconds` (wait_for): on expiry f is cancelled and LL_ETIMEDOUT returned; f's
 * own message then says why it was cancelled ("cancelled: timed out after 1 s"). A negative
 * `seconds` sets no limit of its own (only the task's deadline applies). */
LL_EXPORT int ll_await_timeout(ll_future *f, double seconds);

/* Sleep inside a task (negative: 0 s). 0, or LL_ECANCELED / LL_ETIMEDOUT / LL_ENOTASK /
 * LL_ENOMEM. */
LL_EXPORT int ll_sleep(double seconds);
/* Let every other runnable task and callback run once, then continue. 0, or LL_ECANCELED when the
 * task was cancelled, or LL_ETIMEDOUT once its deadline has passed (a task that only yields is bound
 * by its deadline too; stop working when it says so), or LL_ENOTASK. */
LL_EXPORT int ll_yield(void);

/* Inside a task: the result for the task's future when fn returns 0. A previous value is
 * destroyed. */
LL_EXPORT void ll_task_return(void *value, ll_value_free value_free);
/* Inside a task: record the message for a failure and return `code`, as in
 * `return ll_task_fail(LL_EINVAL, "bad port %d", port);`. */
LL_EXPORT int ll_task_fail(int code, const char *fmt, ...) LL_PRINTF(2, 3);
/* Inside a task: fail with the code and message of a settled future (propagate a child's error). */
LL_EXPORT int ll_task_fail_from(ll_future *f);

/* (A task is cancelled through its future: ll_future_cancel().) */
/* Has the current task been asked to cancel? */
LL_EXPORT bool ll_task_cancelled(void);

LL_EXPORT ll_task *ll_task_current(void);
LL_EXPORT const char *ll_task_name(const ll_task *t);
LL_EXPORT uint64_t ll_task_id(const ll_task *t);
/* The future of a live task (borrowed: take a reference to keep it). */
LL_EXPORT ll_future *ll_task_future(const ll_task *t);
/* The task behind a task future, while it is alive; NULL otherwise. */
LL_EXPORT ll_task *ll_future_task(const ll_future *f);

/* Deadline and cancel scopes. The struct lives on the caller's stack; fields are private. */
typedef struct ll_scope {
    ll_time deadline, effective;
    bool shield, fired;
    struct ll_scope *parent;
    ll_task *task;
} ll_scope;

/* Enter a scope whose deadline is the earlier of `deadline` and the enclosing one's. */
LL_EXPORT void ll_scope_enter(ll_scope *s, ll_time deadline);
/* Enter a scope for cleanup: the task's cancellation and outer deadlines do not interrupt awaits
 * inside it; only `deadline` does (it must be finite to be useful: no infinite wait). */
LL_EXPORT void ll_scope_enter_shielded(ll_scope *s, ll_time deadline);
/* Leave the innermost scope (must be s). Return LL_ETIMEDOUT if this scope's own deadline expired
 * during an await inside it, else 0 (LL_ENOTASK outside a task). */
LL_EXPORT int ll_scope_exit(ll_scope *s);
/* The current task's effective deadline (LL_NEVER when none). */
LL_EXPORT ll_time ll_task_deadline(void);

/* Task-local context values (Python's contextvars). A variable is a static descriptor; values set
 * in a task are seen by it and by tasks it spawns afterwards (each child gets a snapshot); setting
 * in a child never changes the parent. free_value (may be NULL) runs when the value is no longer
 * reachable from any task. Outside tasks, set/get use the loop's root context. */
typedef struct ll_ctxvar {
    const char *name;
    ll_value_free free_value;
} ll_ctxvar;

/* Return 0 or LL_ENOMEM (the value is then freed with free_value). */
LL_EXPORT int ll_ctxvar_set(const ll_ctxvar *var, void *value);
/* The value, or NULL when never set. */
LL_EXPORT void *ll_ctxvar_get(const ll_ctxvar *var);

LL_END_DECLS

#endif
