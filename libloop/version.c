/*
 * version.c — the version of the library that is loaded, as opposed to the LL_VERSION_* macros of
 * the headers a program was compiled with.
 */
#include "libloop/version.h"

#define STR_(x) #x
#define STR(x) STR_(x)

int ll_version(void) { return LL_VERSION_NUMBER; }

const char *ll_version_string(void) {
    return STR(LL_VERSION_MAJOR) "." STR(LL_VERSION_MINOR) "." STR(LL_VERSION_PATCH);
}
