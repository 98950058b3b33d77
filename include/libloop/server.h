/*
 * libloop/server.h — stream servers: TCP or Unix, optionally TLS, one task per connection.
 *
 * The handler runs as a task for each accepted connection. It owns nothing: the server closes the
 * stream when the handler returns (after a graceful ll_stream_shutdown, bounded by `linger`
 * seconds, if the handler returned normally and the stream is still usable). Inside the handler,
 * ll_stream_close() closes the connection at once and ll_stream_reset() aborts it; either way the
 * stream stays valid (its operations fail with LL_ECLOSED) and the server frees it after the
 * handler returns.
 *
 * Descriptor exhaustion (EMFILE/ENFILE) while accepting pauses accepting for a moment instead of
 * spinning; the waiting clients are accepted once descriptors are free again.
 *
 * Ownership: a server lives until ll_server_close() finishes; the caller must call it (each open
 * server counts as a loop handle). `arg` must stay valid until then.
 */
#ifndef LIBLOOP_SERVER_H
#define LIBLOOP_SERVER_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/stream.h"

LL_BEGIN_DECLS

typedef struct ll_server ll_server;

/* Runs in a task of its own per connection. The return value becomes the task's outcome (debug
 * mode reports failures nobody retrieved). */
typedef int (*ll_server_handler)(ll_stream *s, void *arg);

typedef struct ll_server_opts {
    const ll_tls_opts *tls;  /* non-NULL: TLS server (cert_file and key_file required) */
    int backlog;             /* 0: SOMAXCONN */
    size_t stack_size;       /* of connection tasks; 0: the loop's default */
    double linger;           /* seconds to flush after the handler returns; 0: 5 s; negative:
                              * no limit */
    const char *name;        /* connection tasks are named "<name> <peer>"; NULL: "server" */
} ll_server_opts;

/* Listen on host:port (host NULL: all IPv4 interfaces; port 0: a free port, see ll_server_port)
 * and run handler(stream, arg) for each connection. The value is the ll_server *: take it with
 * ll_future_take(). For a numeric host the future is already settled when the call returns.
 * Failure: "listen on 127.0.0.1:80: address already in use". NULL on out of memory. */
LL_EXPORT ll_future *ll_server_open(const char *host, uint16_t port, ll_server_handler handler,
                                     void *arg, const ll_server_opts *opts);
/* The same on a Unix socket at `path` (an existing socket file there is replaced; the file is
 * removed when the server closes). Settled when the call returns. */
LL_EXPORT ll_future *ll_server_open_unix(const char *path, ll_server_handler handler, void *arg,
                                          const ll_server_opts *opts);

/* The bound port (useful after asking for port 0); 0 for a Unix server. */
LL_EXPORT uint16_t ll_server_port(const ll_server *srv);
/* Connections whose handler is running. */
LL_EXPORT size_t ll_server_connections(const ll_server *srv);
/* Accepted connections since the start. */
LL_EXPORT uint64_t ll_server_accepted(const ll_server *srv);

/* Stop accepting now (the listening socket is closed), give running handlers `grace` seconds to
 * finish, then cancel those still running (grace 0: cancel them at once; negative: no limit, wait
 * for them however long they take). The future resolves when every connection task has
 * ended; the server is then freed. Calling it again returns another reference to the same future.
 * NULL: returns NULL. */
LL_EXPORT ll_future *ll_server_close(ll_server *srv, double grace);

LL_END_DECLS

#endif
