/*
 * assert.c — what a failed LL_ASSERT does (internal.h). An invariant of the core is broken, so
 * memory is already inconsistent: say which and where on stderr, then abort rather than run on.
 */
#include <stdio.h>
#include <stdlib.h>
#include "internal.h"

void ll__assert_fail(const char *cond, const char *file, int line, const char *func) {
    fprintf(stderr, "libloop: internal assertion failed: %s (%s:%d, %s)\n", cond, file, line, func);
    fflush(stderr);
    abort();
}
