/*
 * libloop/error.h — the one table of error codes used by every libloop module and client.
 *
 * Every failure in the suite is a negative int from this table (0 is success). System errors use
 * the negated Linux errno value; libloop's own conditions and each client's conditions live in
 * reserved blocks below -3000. Codes are never renumbered. The same X-macro generates the enum,
 * ll_strerror() and ll_err_name().
 *
 * Ownership: the strings returned by ll_strerror() and ll_err_name() are static; never free them.
 */
#ifndef LIBLOOP_ERROR_H
#define LIBLOOP_ERROR_H

#include "libloop/common.h"

LL_BEGIN_DECLS

#define LL_ERRNO_MAP(XX)                                                             \
    XX(EPERM, -1, "operation not permitted")                                         \
    XX(ENOENT, -2, "no such file or directory")                                      \
    XX(ESRCH, -3, "no such process")                                                 \
    XX(EINTR, -4, "interrupted system call")                                         \
    XX(EIO, -5, "i/o error")                                                         \
    XX(ENOEXEC, -8, "exec format error")                                             \
    XX(EBADF, -9, "bad file descriptor")                                             \
    XX(ECHILD, -10, "no child processes")                                            \
    XX(EAGAIN, -11, "resource temporarily unavailable")                              \
    XX(ENOMEM, -12, "out of memory")                                                 \
    XX(EACCES, -13, "permission denied")                                             \
    XX(EBUSY, -16, "resource busy")                                                  \
    XX(EEXIST, -17, "already exists")                                                \
    XX(EINVAL, -22, "invalid argument")                                              \
    XX(ENFILE, -23, "file table overflow")                                           \
    XX(EMFILE, -24, "too many open files")                                           \
    XX(ENOSPC, -28, "no space left on device")                                       \
    XX(EPIPE, -32, "broken pipe")                                                    \
    XX(ERANGE, -34, "result out of range")                                           \
    XX(ENOSYS, -38, "function not implemented")                                      \
    XX(EPROTO, -71, "protocol error")                                                \
    XX(EMSGSIZE, -90, "message too long")                                            \
    XX(EAFNOSUPPORT, -97, "address family not supported")                            \
    XX(EADDRINUSE, -98, "address already in use")                                    \
    XX(EADDRNOTAVAIL, -99, "address not available")                                  \
    XX(ENETUNREACH, -101, "network is unreachable")                                  \
    XX(ECONNABORTED, -103, "connection aborted")                                     \
    XX(ECONNRESET, -104, "connection reset by peer")                                 \
    XX(ENOBUFS, -105, "no buffer space available")                                   \
    XX(ENOTCONN, -107, "socket is not connected")                                    \
    XX(ETIMEDOUT, -110, "timed out")                                                 \
    XX(ECONNREFUSED, -111, "connection refused")                                     \
    XX(EHOSTUNREACH, -113, "host is unreachable")                                    \
    XX(EALREADY, -114, "operation already completed")                                \
    XX(ECANCELED, -125, "operation canceled")                                        \
    /* libloop's own conditions */                                                   \
    XX(ENOTASK, -3000, "not called from inside a task")                              \
    XX(ESTATE, -3001, "invalid state for this operation")                            \
    XX(ECLOSED, -3002, "handle is closed")                                            \
    XX(EOF, -3003, "end of stream")                                                  \
    XX(ESHUTDOWN, -3004, "loop is shutting down")                                    \
    XX(ESTACK, -3005, "cannot allocate a task stack")                                \
    XX(EFULL, -3006, "queue is full")                                                \
    XX(EEMPTY, -3007, "queue is empty")                                              \
    XX(EDNS, -3010, "name resolution failed")                                        \
    XX(ENOTFOUND, -3011, "host name not found")                                      \
    XX(ETLS, -3020, "tls error")                                                     \
    XX(ECERT, -3021, "certificate verification failed")                              \
    XX(ETRUNCATED, -3022, "stream truncated")                                        \
    XX(ETOOLARGE, -3030, "input exceeds the configured limit")                       \
    XX(EPOOLCLOSED, -3040, "pool is closed")                                         \
    /* client blocks: PostgreSQL -3100.., Redis -3200.., HTTP -3300.., SMTP -3400.. */ \
    XX(EPG_SERVER, -3100, "postgresql server error")                                 \
    XX(EPG_CONN, -3101, "postgresql connection error")                               \
    XX(EPG_AUTH, -3102, "postgresql authentication failed")                          \
    XX(EPG_UNKNOWN_OUTCOME, -3103, "transaction outcome unknown")                    \
    XX(EPG_SPLIT_BRAIN, -3110, "postgresql: two hosts both accept writes")           \
    XX(EREDIS_REPLY, -3200, "redis error reply")                                     \
    XX(EREDIS_PROTO, -3201, "redis protocol error")                                  \
    XX(EREDIS_CONN, -3202, "redis connection lost")                                  \
    XX(EREDIS_TYPE, -3203, "redis reply has another type")                           \
    XX(EREDIS_WATCH, -3204, "redis transaction aborted: a watched key changed")      \
    XX(EREDIS_CROSSSLOT, -3210, "redis cluster: keys in different hash slots")       \
    XX(EREDIS_CLUSTER, -3211, "redis cluster: no node could serve the command")      \
    XX(EHTTP_PROTO, -3300, "http protocol error")                                    \
    XX(EHTTP_REDIRECT, -3301, "too many redirects or redirect loop")                 \
    XX(EHTTP_STATUS, -3302, "unexpected http status")                                \
    XX(EHTTP_DECODE, -3303, "http content decoding failed")                          \
    XX(EHTTP_STALE, -3304, "keep-alive connection closed before the response")       \
    XX(EHTTP_TIMEOUT_DNS, -3310, "http: dns lookup timed out")                       \
    XX(EHTTP_TIMEOUT_POOL, -3311, "http: no pooled connection in time")              \
    XX(EHTTP_TIMEOUT_CONNECT, -3312, "http: connect timed out")                      \
    XX(EHTTP_TIMEOUT_TLS, -3313, "http: tls handshake timed out")                    \
    XX(EHTTP_TIMEOUT_FIRST_BYTE, -3314, "http: no response byte in time")            \
    XX(EHTTP_TIMEOUT_READ, -3315, "http: read idle timeout")                         \
    XX(ESMTP_REPLY, -3400, "smtp server rejected the command")                       \
    XX(ESMTP_PROTO, -3401, "smtp protocol error")                                    \
    XX(ESMTP_PARTIAL, -3402, "smtp: not every recipient accepted the message")      \
    XX(ESMTP_NOTLS, -3403, "smtp: server does not offer the required STARTTLS")     \
    XX(ESMTP_AUTH, -3404, "smtp authentication failed")                              \
    XX(ESMTP_INSECURE, -3405, "smtp: refusing to send credentials without TLS")

typedef enum {
    LL_OK = 0,
#define LL__ERR_ENUM(name, val, msg) LL_##name = (val),
    LL_ERRNO_MAP(LL__ERR_ENUM)
#undef LL__ERR_ENUM
} ll_errcode;

/* A short description of `code` ("connection refused"), or "unknown error" for codes not in the
 * table. Never NULL; static storage. */
LL_EXPORT const char *ll_strerror(int code);

/* The symbolic name of `code` ("ECONNREFUSED"), or "UNKNOWN". Never NULL; static storage. */
LL_EXPORT const char *ll_err_name(int code);

/* Maps a positive errno value to its libloop code (LL_EIO for values not in the table). */
LL_EXPORT int ll_err_from_errno(int errnum);

LL_END_DECLS

#endif
