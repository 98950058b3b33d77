/*
 * libloop/version.h — the version of the headers (LL_VERSION_*) and of the library actually
 * loaded (ll_version()). The Makefile reads the numbers from here: they name the shared libraries
 * (libloop.so.0.2.0) and their sonames.
 *
 * Compatibility: while LL_VERSION_MAJOR is 0, every minor release may change the API and the ABI,
 * so the soname carries MAJOR.MINOR (libloop.so.0.2); from 1.0 on it carries MAJOR only. A program
 * can check at run time that it got the library it was built for:
 *     if (ll_version() / 100 != LL_VERSION_NUMBER / 100) ... built against another minor version
 *
 * Ownership: ll_version_string() returns static storage.
 */
#ifndef LIBLOOP_VERSION_H
#define LIBLOOP_VERSION_H

#include "libloop/common.h"

#define LL_VERSION_MAJOR 0
#define LL_VERSION_MINOR 2
#define LL_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH: 200 for 0.2.0. */
#define LL_VERSION_NUMBER (LL_VERSION_MAJOR * 10000 + LL_VERSION_MINOR * 100 + LL_VERSION_PATCH)

LL_BEGIN_DECLS

/* The loaded library's LL_VERSION_NUMBER (which may differ from the headers' one). */
LL_EXPORT int ll_version(void);
/* The loaded library's version as text: "0.2.0". */
LL_EXPORT const char *ll_version_string(void);

LL_END_DECLS

#endif
