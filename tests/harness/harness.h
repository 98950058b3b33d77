/*
 * harness.h — helpers every libloop test uses: a loop per test, proof that nothing is left alive,
 * descriptor counting, and an allocator that fails the N-th allocation.
 */
#ifndef LL_TEST_HARNESS_H
#define LL_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "libloop.h"

/* Descriptors open in this process right now. */
int lt_count_fds(void);

/* A fresh loop (asserted non-NULL), and the descriptor count taken before it was made. */
typedef struct lt_ctx {
    ll_loop *loop;
    int fds_before;
} lt_ctx;
void lt_setup(lt_ctx *c);
/* Assert the loop has no task, future or handle left, free it, and assert the descriptor count is
 * back where it was. */
void lt_teardown(lt_ctx *c);

/* Run fn(arg) as a task on loop and return its code (the future is freed). */
int lt_run_task(ll_loop *loop, ll_task_fn fn, void *arg);

/* Fault injection: after lt_fail_after(n), the n-th allocation from now on (0-based) and every
 * later one fail, until lt_fail_reset(). lt_alloc_count() counts allocations since the last reset. */
void lt_fail_after(long n);
void lt_fail_reset(void);
long lt_alloc_count(void);

/* Collects debug warnings for assertions. */
typedef struct lt_warnings {
    char text[8192];
    int count;
} lt_warnings;
void lt_collect_warnings(ll_loop *loop, lt_warnings *w);

#endif
