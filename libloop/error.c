/*
 * error.c — ll_strerror() and ll_err_name(), generated from the one table in libloop/error.h.
 */
#include <errno.h>
#include "internal.h"

const char *ll_strerror(int code) {
    switch (code) {
    case 0: return "success";
#define XX(name, val, msg) case val: return msg;
        LL_ERRNO_MAP(XX)
#undef XX
    default: return "unknown error";
    }
}

const char *ll_err_name(int code) {
    switch (code) {
    case 0: return "OK";
#define XX(name, val, msg) case val: return #name;
        LL_ERRNO_MAP(XX)
#undef XX
    default: return "UNKNOWN";
    }
}

int ll_err_from_errno(int errnum) {
    if (errnum == EWOULDBLOCK) return LL_EAGAIN;
    switch (-errnum) {
#define XX(name, val, msg) case val: return (val > -3000) ? val : LL_EIO;
        LL_ERRNO_MAP(XX)
#undef XX
    default: return LL_EIO;
    }
}
