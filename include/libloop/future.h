/*
 * libloop/future.h — the one type for every asynchronous result in libloop and its clients.
 *
 * A future is pending, then settles exactly once: resolved (a value and an optional destructor),
 * failed (a negative code from libloop/error.h and a message), or cancelled (LL_ECANCELED).
 *
 * Ownership: futures are reference counted. Every call that returns a future gives the caller one
 * reference, which the caller drops with ll_future_free(). Calls that take a future as an argument
 * (ll_await, gather, wait_for, ...) never consume the caller's reference; they take their own when
 * they need one. A resolved value belongs to the future and is destroyed with it, unless the caller
 * takes it with ll_future_take(). The error message stays valid until the future is freed.
 *
 * A NULL future is what a future-returning call gives when it cannot allocate one; every accessor
 * treats NULL as "failed with LL_ENOMEM", so `rc = ll_await(f); ll_future_free(f);` is always safe.
 *
 * Done callbacks run from the loop, never from inside ll_future_resolve()/fail()/cancel(), so a
 * producer may settle a future while holding its own locks or in the middle of a parse.
 *
 * Cancellation: ll_future_cancel() asks the producer to stop. A producer that can stop registers a
 * cancel hook with ll_future_on_cancel(); the hook must eventually settle the future (usually at
 * once, with ll_future_set_cancelled()). Without a hook, cancel settles the future as cancelled.
 * If cancel and completion race, exactly one wins: settling a settled future returns LL_ESTATE.
 */
#ifndef LIBLOOP_FUTURE_H
#define LIBLOOP_FUTURE_H

#include "libloop/common.h"
#include "libloop/error.h"

LL_BEGIN_DECLS

typedef struct ll_loop ll_loop;
typedef struct ll_future ll_future;

typedef enum {
    LL_FUTURE_PENDING = 0,
    LL_FUTURE_RESOLVED,
    LL_FUTURE_FAILED,
    LL_FUTURE_CANCELLED
} ll_future_state;

typedef void (*ll_done_cb)(ll_future *f, void *arg);
typedef void (*ll_cancel_hook)(ll_future *f, void *arg);
typedef void (*ll_value_free)(void *value);

/* A new pending future bound to `loop` (NULL: the current thread's loop). NULL on out of memory or
 * when the thread has no loop. */
LL_EXPORT ll_future *ll_future_new(ll_loop *loop);

/* Takes another reference; returns f. NULL is returned unchanged. */
LL_EXPORT ll_future *ll_future_ref(ll_future *f);

/* Drops a reference. The last one destroys the value (unless taken) and the message. Dropping a
 * reference never cancels the operation: cancel first if you no longer want it. NULL: no-op. */
LL_EXPORT void ll_future_free(ll_future *f);

/* Settle a pending future. Return 0, or LL_ESTATE when it is already settled (the value is then not
 * adopted: the caller still owns it), or LL_EINVAL for a NULL future. The message of
 * ll_future_fail() is formatted now; `code` must be negative. */
LL_EXPORT int ll_future_resolve(ll_future *f, void *value, ll_value_free value_free);
LL_EXPORT int ll_future_fail(ll_future *f, int code, const char *fmt, ...) LL_PRINTF(3, 4);
LL_EXPORT int ll_future_set_cancelled(ll_future *f);
/* ll_future_fail with a va_list: for a library's own printf-like failure helpers, so they need
 * not format the message first and pass it through "%s". */
LL_EXPORT int ll_future_vfail(ll_future *f, int code, const char *fmt, va_list ap);
/* Fail with a structured detail besides the message (the server's error fields: SQLSTATE, detail,
 * hint, ...), owned by the future and destroyed with it by detail_free. When the call returns an
 * error, the detail is not adopted: the caller still owns it. */
LL_EXPORT int ll_future_fail_detail(ll_future *f, int code, void *detail, ll_value_free detail_free,
                                    const char *fmt, ...) LL_PRINTF(5, 6);
/* A new future on `loop` (NULL: the current loop) that has already failed with `code` and the
 * formatted message: how a future-returning call reports a failure to start (a bad argument, no
 * memory for its state) without a second error channel. NULL only on out of memory. */
LL_EXPORT ll_future *ll_future_failed(ll_loop *loop, int code, const char *fmt, ...) LL_PRINTF(3, 4);
/* For a function that returns a future: when `ptr` is NULL, return from it an already-failed
 * future on the current loop, LL_EINVAL with a message naming the function and the argument:
 *     LL_REQUIRE_ARG(pool, "pool");   ->   "ll_pg_pool_query: pool is NULL"
 * (so a bad argument is never mistaken for out of memory, which is what a NULL future means). */
#define LL_REQUIRE_ARG(ptr, name)                                                            \
    do {                                                                                     \
        if (!(ptr)) return ll_future_failed(NULL, LL_EINVAL, "%s: %s is NULL", __func__, name); \
    } while (0)

/* Settle `dst` with the outcome of the settled future `src`: same code and message; the value is
 * shared (borrowed from src, which dst keeps a reference to). */
LL_EXPORT int ll_future_copy_outcome(ll_future *dst, ll_future *src);

/* Ask the operation behind f to stop. Return 0 when the request was delivered (f may settle later,
 * through its hook), LL_EALREADY when f had already settled (nothing happens), LL_EINVAL for NULL. */
LL_EXPORT int ll_future_cancel(ll_future *f);

/* Producer side: the hook run by the first ll_future_cancel() on a pending future. */
LL_EXPORT void ll_future_on_cancel(ll_future *f, ll_cancel_hook hook, void *arg);

/* Run cb(f, arg) from the loop once f has settled (soon, if it already has). Return 0 or
 * LL_ENOMEM. ll_future_remove_done() removes the first matching registration that has not run yet
 * and returns 0, or LL_ENOENT. */
LL_EXPORT int ll_future_add_done(ll_future *f, ll_done_cb cb, void *arg);
LL_EXPORT int ll_future_remove_done(ll_future *f, ll_done_cb cb, void *arg);

LL_EXPORT ll_future_state ll_future_get_state(const ll_future *f);
LL_EXPORT bool ll_future_done(const ll_future *f);
/* 0 when resolved, the negative code when failed or cancelled, LL_EAGAIN while pending. Reading
 * the code of a failed future counts as retrieving its error (see debug mode). */
LL_EXPORT int ll_future_code(ll_future *f);
/* The failure message ("connect to 127.0.0.1:6380: connection refused"), "" when resolved or
 * pending. Valid until the future is destroyed. */
LL_EXPORT const char *ll_future_errmsg(ll_future *f);
/* The resolved value (borrowed), NULL otherwise. */
LL_EXPORT void *ll_future_value(const ll_future *f);
/* The detail of a failed future (NULL when none); *detail_free, when not NULL, receives its
 * destructor, which tells a client its own details from others'. Counts as retrieving the error.
 * ll_future_take_error_detail() moves it out: the caller then owns it. */
LL_EXPORT void *ll_future_error_detail(ll_future *f, ll_value_free *detail_free);
LL_EXPORT void *ll_future_take_error_detail(ll_future *f);
/* The resolved value if its destructor is `value_free`, else NULL (pending, failed, or another
 * type of value). The destructor is the value's type tag: clients build their typed accessors on
 * it (ll_pg_result_of, ll_http_response_of) so reading a future as the wrong type cannot crash. */
LL_EXPORT void *ll_future_value_as(const ll_future *f, ll_value_free value_free);
/* Take ownership of the resolved value: the future will no longer destroy it. */
LL_EXPORT void *ll_future_take(ll_future *f);
LL_EXPORT ll_loop *ll_future_loop(const ll_future *f);

/* A short static description of what the future stands for ("sleep", "executor job",
 * "pg query"); shown by the task dump. `label` must outlive the future (use a literal). */
LL_EXPORT void ll_future_set_label(ll_future *f, const char *label);
LL_EXPORT const char *ll_future_label(const ll_future *f);

LL_END_DECLS

#endif
