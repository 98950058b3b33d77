/*
 * libloop/common.h — definitions every libloop header shares: the export macro, the time type and
 * the allocator hook.
 *
 * Ownership: ll_set_allocator() must be called before any other libloop function and never while a
 * loop exists; memory allocated by one allocator is always released by the same one.
 */
#ifndef LIBLOOP_COMMON_H
#define LIBLOOP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdarg.h>

/* Every public header wraps its declarations in these, so C++ programs link against the C library. */
#ifdef __cplusplus
#define LL_BEGIN_DECLS extern "C" {
#define LL_END_DECLS }
#else
#define LL_BEGIN_DECLS
#define LL_END_DECLS
#endif

#if defined(__GNUC__)
#define LL_EXPORT __attribute__((visibility("default")))
#define LL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LL_EXPORT
#define LL_PRINTF(a, b)
#endif

LL_BEGIN_DECLS

/* Seconds on the monotonic clock. Deadlines are absolute ll_time values; timeouts are relative
 * seconds. LL_NEVER means "no deadline". */
typedef double ll_time;
#define LL_NEVER 1e300

/* Memory functions used for every allocation libloop makes (hiredis' hiredisSetAllocators). A
 * function may return NULL: every caller turns that into LL_ENOMEM. Passing NULL for all four
 * restores the C library's. */
typedef struct ll_allocator {
    void *(*malloc_fn)(size_t);
    void *(*calloc_fn)(size_t, size_t);
    void *(*realloc_fn)(void *, size_t);
    void (*free_fn)(void *);
} ll_allocator;

LL_EXPORT void ll_set_allocator(const ll_allocator *a);

/* The current allocator's functions, for memory handed to or taken from libloop (values with
 * destructors, strings) and for libraries built on libloop. NULL on failure; ll_free(NULL) is a
 * no-op. ll_format/ll_vformat return a new string (vasprintf), NULL on out of memory. */
LL_EXPORT void *ll_malloc(size_t n);
LL_EXPORT void *ll_calloc(size_t n, size_t m);
LL_EXPORT void *ll_realloc(void *p, size_t n);
LL_EXPORT void ll_free(void *p);
LL_EXPORT char *ll_strdup(const char *s);
LL_EXPORT char *ll_format(const char *fmt, ...) LL_PRINTF(1, 2);
LL_EXPORT char *ll_vformat(const char *fmt, va_list ap);

LL_END_DECLS

#endif
