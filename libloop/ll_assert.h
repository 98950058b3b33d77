/*
 * ll_assert.h — LL_ASSERT, the core's debug assertions (assert.c reports them). Its own header so
 * that containers.h can assert list membership without the rest of internal.h. Never installed.
 */
#ifndef LIBLOOP_LL_ASSERT_H
#define LIBLOOP_LL_ASSERT_H

/* Debug assertions: the invariants the core relies on (a producer settling only once where it
 * must, list membership, state transitions). Compiled in unless NDEBUG is defined (the default
 * builds, tests included, keep them; LL_ASSERTS forces them on under NDEBUG). A failure prints the
 * condition and where, then aborts: memory is already inconsistent. */
#if !defined(NDEBUG) || defined(LL_ASSERTS)
#define LL_ASSERT(c) ((c) ? (void)0 : ll__assert_fail(#c, __FILE__, __LINE__, __func__))
#else
#define LL_ASSERT(c) ((void)0)
#endif
void ll__assert_fail(const char *cond, const char *file, int line,
                     const char *func) __attribute__((noreturn));

#endif
