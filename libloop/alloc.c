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
