/*
 * libloop/debug.h — debug mode: finds code that blocks the loop, failures nobody looked at, and
 * what is still alive; lists the tasks while the program runs (like aiomonitor).
 *
 * Debug mode is on for every loop when LIBLOOP_DEBUG=1 is in the environment, or per loop with
 * ll_loop_set_debug(). Warnings go to the loop's warning handler (default: stderr); they are the
 * only output libloop ever produces on its own.
 *
 * Ownership: the message passed to a warning handler is valid only during the call.
 */
#ifndef LIBLOOP_DEBUG_H
#define LIBLOOP_DEBUG_H

#include <stdio.h>
#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

/* Turn debug mode on or off; `slow_ms` is the threshold for "blocked the loop" warnings (0: keep;
 * default 100 ms). In debug mode SIGUSR1 dumps the tasks to stderr. */
LL_EXPORT void ll_loop_set_debug(ll_loop *loop, bool on, double slow_ms);
LL_EXPORT bool ll_loop_get_debug(const ll_loop *loop);

typedef void (*ll_warn_fn)(const char *message, void *arg);
/* Where debug warnings go (NULL: stderr). */
LL_EXPORT void ll_loop_set_warn_handler(ll_loop *loop, ll_warn_fn fn, void *arg);

/* List every live task: id, name, state, and what it awaits; then counts of live futures and
 * handles. Safe to call from a task or callback. */
LL_EXPORT void ll_loop_dump_tasks(ll_loop *loop, FILE *out);

LL_END_DECLS

#endif
