/*
 * libloop.h — the core of libloop: include this for the loop, futures, tasks, combinators,
 * synchronisation, the executor, debug mode, and the I/O layer (resolver, streams, TLS,
 * servers, the connection pool, subprocesses) and the version. Each client has its own header
 * (libloop/pg.h, libloop/http.h, libloop/redis.h, libloop/smtp.h) and library (libloop-pg, ...).
 */
#ifndef LIBLOOP_H
#define LIBLOOP_H

/* C++: each header below wraps its declarations in LL_BEGIN_DECLS (extern "C"). */

#include "libloop/common.h"
#include "libloop/version.h"
#include "libloop/error.h"
#include "libloop/future.h"
#include "libloop/loop.h"
#include "libloop/task.h"
#include "libloop/combinators.h"
#include "libloop/sync.h"
#include "libloop/executor.h"
#include "libloop/debug.h"
#include "libloop/dns.h"
#include "libloop/tls.h"
#include "libloop/poll.h"
#include "libloop/stream.h"
#include "libloop/server.h"
#include "libloop/pool.h"
#include "libloop/process.h"
#include "libloop/loops.h"

#endif
