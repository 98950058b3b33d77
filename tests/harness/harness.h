/*
 * harness.h — helpers every libloop test uses: a loop per test, proof that nothing is left alive,
 * descriptor counting, and an allocator that fails the N-th allocation.
 */
#ifndef LL_TEST_HARNESS_H
#define LL_TEST_HARNESS_H

#include <setjmp.h>
#include <stdio.h>
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

/* Inside a task: await f, free it, return its code; lt_await_msg keeps its message in msg. */
int lt_await_free(ll_future *f);
int lt_await_msg(ll_future *f, char *msg, size_t n);
/* A server handler (ll_server_open) that echoes what it reads until the end of the stream. */
int lt_echo_handler(ll_stream *s, void *arg);

/* Checks inside a task. A failing cmocka assert would longjmp off the task's stack, so LT_CHECK
 * records the first failure ("file:line: condition") in lt_failure and makes the task function
 * return -1; lt_run_checked() then fails the test with it. Tests may keep the last error message
 * they saw in lt_last_err: it is printed with the failure. */
extern char lt_failure[4096];
extern char lt_last_err[1024];
#define LT_CHECK(c)                                                                       \
    do {                                                                                  \
        if (!(c)) {                                                                       \
            if (!lt_failure[0])                                                           \
                snprintf(lt_failure, sizeof lt_failure, "%s:%d: %s", __FILE__, __LINE__, #c); \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)
#define LT_CHECKF(c, ...)                                                                 \
    do {                                                                                  \
        if (!(c)) {                                                                       \
            if (!lt_failure[0]) {                                                         \
                int k_ = snprintf(lt_failure, sizeof lt_failure, "%s:%d: %s: ", __FILE__, \
                                  __LINE__, #c);                                          \
                snprintf(lt_failure + k_, sizeof lt_failure - (size_t)k_, __VA_ARGS__);   \
            }                                                                             \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)
/* Clear the checks, run fn(arg) as a task on loop, fail the test if a check failed, and return
 * fn's code. */
int lt_run_checked(ll_loop *loop, ll_task_fn fn, void *arg);

/* A whole test: on a fresh loop with allocation tracking, run fn(arg) checked (it must return 0),
 * then prove the cleanup: lt_teardown's checks, and no allocation of libloop's left. */
void lt_run_tracked(ll_task_fn fn, void *arg);

/* Run fn(arg) as a task on loop and return its code (the future is freed). */
int lt_run_task(ll_loop *loop, ll_task_fn fn, void *arg);

/* Fault injection: after lt_fail_after(n), the n-th allocation from now on (0-based) and every
 * later one fail, until lt_fail_reset(). lt_alloc_count() counts allocations since the last reset. */
void lt_fail_after(long n);
void lt_fail_reset(void);
long lt_alloc_count(void);

/* Allocation tracking: between lt_track_begin() and lt_track_end(), every allocation libloop makes
 * is recorded, so a test can prove it leaked nothing without a sanitizer. Call begin before the
 * loop is made and end after it is freed (the allocator must not change while a loop exists).
 * lt_track_live() is the number of allocations not yet freed; lt_track_end() frees those that
 * remain (so a test that leaks on purpose stays clean under ASan and valgrind) and returns how
 * many there were. Combines with lt_fail_after(). */
void lt_track_begin(void);
long lt_track_live(void);
long lt_track_end(void);

/* A child process for things that must kill a process (stack overflow) or take signals (SIGINT).
 * The child runs fn(arg, ready_fd) with its stderr captured; it signals the parent by writing one
 * byte to ready_fd (lt_child_notify) and exits with _exit(fn's return value). */
typedef struct lt_child {
    int pid;
    int err_fd, ready_fd;
    int status;            /* from waitpid */
    char out[16384];       /* the child's stderr */
    size_t outlen;
} lt_child;
typedef int (*lt_child_fn)(void *arg, int ready_fd);
void lt_child_start(lt_child *c, lt_child_fn fn, void *arg);
void lt_child_notify(int ready_fd);
/* Wait for the child's notification; false after `timeout` seconds or if it died first. */
bool lt_child_wait_ready(lt_child *c, double timeout);
/* Collect stderr and reap the child; after `timeout` seconds it is killed (SIGKILL) and false is
 * returned. Closes the pipes either way. */
bool lt_child_wait(lt_child *c, double timeout);

/* True under valgrind or ASan (tests skip or relax what those tools change). */
bool lt_under_valgrind(void);
bool lt_under_asan(void);
bool lt_under_tsan(void); /* ThreadSanitizer keeps per-thread state: memory figures mean nothing */

/* Collects debug warnings for assertions. */
typedef struct lt_warnings {
    char text[8192];
    int count;
} lt_warnings;
void lt_collect_warnings(ll_loop *loop, lt_warnings *w);

#endif
