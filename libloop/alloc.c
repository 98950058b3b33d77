/*
 * alloc.c — every allocation in libloop goes through here, so an application can supply its own
 * allocator and tests can fail the N-th allocation (curl's torture tests, SQLite's fault hooks).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static ll_allocator allocator = {malloc, calloc, realloc, free};

void ll_set_allocator(const ll_allocator *a) {
    if (!a || !a->malloc_fn || !a->calloc_fn || !a->realloc_fn || !a->free_fn) {
        allocator = (ll_allocator){malloc, calloc, realloc, free};
        return;
    }
    allocator = *a;
}

void *ll_malloc(size_t n) { return allocator.malloc_fn(n); }
void *ll_calloc(size_t n, size_t m) { return allocator.calloc_fn(n, m); }
void *ll_realloc(void *p, size_t n) { return allocator.realloc_fn(p, n); }
void ll_free(void *p) {
    if (p) allocator.free_fn(p);
}

char *ll_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ll__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *ll_vformat(const char *fmt, va_list ap) {
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) return NULL;
    char *out = ll__malloc((size_t)n + 1);
    if (!out) return NULL;
    if ((size_t)n < sizeof small) {
        memcpy(out, small, (size_t)n + 1);
    } else {
        vsnprintf(out, (size_t)n + 1, fmt, ap);
    }
    return out;
}

char *ll_format(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = ll_vformat(fmt, ap);
    va_end(ap);
    return s;
}

/* ---- recycled records ----
 *
 * Futures and call_soon records are allocated and freed millions of times a second (every await
 * of an operation, every wake in sync.c). A loop keeps up to LL__RECYCLE_MAX of each that it freed and
 * hands them out again: a pop instead of malloc + free (glibc's calloc bypasses the tcache). The
 * lists are bounded and released by ll_loop_free, and every record still comes from the allocator
 * hook the first time, so the hook and the allocation-failure tests keep their meaning: a loop
 * that never freed a record allocates exactly as before.
 *
 * A recycled record is poisoned for ASan and marked inaccessible for valgrind while it waits, so a
 * use after free is still reported by both. The fast path is inline in internal.h. */
#if defined(__SANITIZE_ADDRESS__)
#define LL_ASAN_ALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LL_ASAN_ALLOC 1
#endif
#endif
#ifdef LL_ASAN_ALLOC
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define VG_NOACCESS(p, n) VALGRIND_MAKE_MEM_NOACCESS(p, n)
#define VG_UNDEFINED(p, n) VALGRIND_MAKE_MEM_UNDEFINED(p, n)
#define VG_DEFINED(p, n) VALGRIND_MAKE_MEM_DEFINED(p, n)
#endif
#endif
#ifndef VG_NOACCESS
#define VG_NOACCESS(p, n) ((void)(p), (void)(n))
#define VG_UNDEFINED(p, n) ((void)(p), (void)(n))
#define VG_DEFINED(p, n) ((void)(p), (void)(n))
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif
#ifdef LL_ASAN_ALLOC
bool ll__recycle_annotate = true;
#else
bool ll__recycle_annotate;
#endif

void ll__recycle_init(void) {
    if (RUNNING_ON_VALGRIND && !ll__recycle_annotate) ll__recycle_annotate = true;
}

/* The record is accessible again, its contents undefined except the link, which the caller
 * reads next. */
void ll__recycled_give_back(ll__recycler *r, void *p, size_t size) {
    (void)r;
    UNPOISON(p, size);
    VG_UNDEFINED(p, size);
    VG_DEFINED(p, sizeof(void *));
}

void ll__recycled_take(ll__recycler *r, void *p, size_t size) {
    (void)r;
    POISON(p, size);
    VG_NOACCESS(p, size);
}

void ll__recycler_release(ll__recycler *r, size_t size) {
    while (r->head) {
        void *p = r->head;
        ll__recycled_give_back(r, p, size);
        memcpy(&r->head, p, sizeof r->head);
        ll__free(p);
    }
    r->n = 0;
}
