/*
 * libloop/stream.h — byte streams over TCP, Unix sockets, pipes, optionally TLS.
 *
 * A stream is a non-blocking descriptor with a read buffer and a write buffer, driven by the
 * loop. Every operation returns a future; tasks await them, callbacks add done callbacks.
 *
 * Errors name the peer ("read from 127.0.0.1:5432: connection reset by peer") and are distinct:
 *   LL_EOF           the peer closed its side in an orderly way (nothing more will come)
 *   LL_ECONNRESET    the peer reset the connection
 *   LL_EPIPE         writing after the peer closed (SIGPIPE never kills the process)
 *   LL_ECONNREFUSED, LL_ETIMEDOUT, LL_EHOSTUNREACH, LL_ENETUNREACH  while connecting
 *   LL_ETRUNCATED    TLS: the peer closed without close_notify
 *   LL_ECLOSED       the stream was closed (ll_stream_close) while the operation was pending
 *   LL_EBUSY         a second read while one is in progress
 *   LL_EINVAL        a NULL stream ("ll_stream_read: stream is NULL")
 * A read or connect past the task's deadline is cancelled and the await returns LL_ETIMEDOUT.
 *
 * Concurrency: one read operation (read, read_exactly, read_until, fill) at a time; any number of
 * writes (their bytes go out in call order). Reading and writing may proceed at the same time from
 * different tasks.
 *
 * Ownership: a stream is closed and freed by ll_stream_close(), which is safe from any callback or
 * while tasks await operations on it (they fail with LL_ECLOSED). Buffers passed to read calls must
 * stay valid until their future settles. Write calls copy the data.
 *
 * Each open stream counts as one handle of its loop (ll_loop_get_stats).
 */
#ifndef LIBLOOP_STREAM_H
#define LIBLOOP_STREAM_H

#include "libloop/common.h"
#include "libloop/future.h"
#include "libloop/dns.h"
#include "libloop/tls.h"

LL_BEGIN_DECLS

/* ll_stream itself is declared in libloop/tls.h (included above), once: C99 forbids a repeated
 * typedef. */

typedef struct ll_stream_opts {
    /* Seconds for resolving and connecting (all addresses together); 0: 30 s; negative: no limit
     * of its own (the task's deadline still applies). Expiry fails with LL_ETIMEDOUT. TLS has its
     * own handshake_timeout. */
    double connect_timeout;
    /* AF_UNSPEC (0), AF_INET or AF_INET6. */
    int family;
    /* Non-NULL: TLS with these options after connecting. */
    const ll_tls_opts *tls;
    /* Happy eyeballs (RFC 8305): start the next address after this many seconds while an attempt
     * is still pending; 0: 0.25 s; negative: one attempt at a time. */
    double attempt_delay;
    /* Write-buffer level at which ll_stream_write's future stops resolving at once; 0: 64 KiB. */
    size_t high_water;
    /* Keep Nagle's algorithm (TCP_NODELAY is set by default). */
    bool nagle;
} ll_stream_opts;

/* Phases of making the connection, in seconds (curl's CURLINFO_*_TIME, as durations). */
typedef struct ll_stream_timings {
    ll_time start;  /* ll_now() when the connection was asked for */
    double dns;     /* name resolution (0 for numeric addresses and cache hits: no query) */
    double connect; /* TCP or Unix connect, including failed attempts on other addresses */
    double tls;     /* TLS handshake (0 for a plain stream) */
    double total;   /* from start until the stream was ready */
} ll_stream_timings;

/* Resolve `host`, connect to its addresses in turn (happy eyeballs), then do the TLS handshake if
 * opts->tls. The value is the ll_stream *: take it with ll_future_take() and close it with
 * ll_stream_close(); left in the future, it is closed with the future. opts may be NULL.
 * Failure messages name the host and each address tried:
 * "connect to 127.0.0.1:6380: connection refused". NULL on out of memory or no loop. */
LL_EXPORT ll_future *ll_stream_connect(const char *host, uint16_t port, const ll_stream_opts *opts);
/* The same for a Unix domain socket at `path` ("@name": Linux abstract namespace). */
LL_EXPORT ll_future *ll_stream_connect_unix(const char *path, const ll_stream_opts *opts);

/* Adopt a connected socket or one end of a pipe on `loop` (NULL: current). The fd is made
 * non-blocking and belongs to the stream from now on (closed by ll_stream_close, even on failure:
 * then NULL is returned). A read-only or write-only descriptor works for the matching operations.
 * `peer` names it in error messages (NULL: "fd N"). */
LL_EXPORT ll_stream *ll_stream_from_fd(ll_loop *loop, int fd, const char *peer);

/* Read what is available, at least 1 and at most n bytes, into buf. Value: the count (uintptr_t).
 * LL_EOF when the peer closed and nothing is buffered. */
LL_EXPORT ll_future *ll_stream_read(ll_stream *s, void *buf, size_t n);
/* Read exactly n bytes. LL_EOF ("end of stream after 3 of 10 bytes") when the stream ends first;
 * the bytes that did arrive are then at the start of buf. */
LL_EXPORT ll_future *ll_stream_read_exactly(ll_stream *s, void *buf, size_t n);
/* Read up to and including the first occurrence of delim (dlen bytes) into buf (at most `max`
 * bytes). Value: the count including the delimiter. LL_ETOOLARGE when no delimiter appears within
 * `max` bytes (nothing is consumed); LL_EOF when the stream ends first. */
LL_EXPORT ll_future *ll_stream_read_until(ll_stream *s, const void *delim, size_t dlen, void *buf,
                                          size_t max);

/* Zero-copy reading for protocol parsers: the buffered bytes (valid until the next operation on
 * the stream), consume n of them, and wait for more than are buffered now (value: the number of
 * bytes buffered; LL_EOF when the peer closed). */
LL_EXPORT const void *ll_stream_peek(ll_stream *s, size_t *len);
LL_EXPORT void ll_stream_consume(ll_stream *s, size_t n);
LL_EXPORT ll_future *ll_stream_fill(ll_stream *s);

/* Queue n bytes (copied) for sending. The future resolves (value: n) as soon as the bytes waiting
 * to be sent are at most the high-water mark: at once in the common case, later when the peer
 * reads slowly (back-pressure: await it before writing more). A send error fails it (and every
 * later write) naming the peer. Cancelling it does not unsend the bytes. */
LL_EXPORT ll_future *ll_stream_write(ll_stream *s, const void *data, size_t n);
/* Resolves when everything written so far has been handed to the kernel. */
LL_EXPORT ll_future *ll_stream_drain(ll_stream *s);
/* Drain, then end the write side: TLS close_notify, then FIN (for a pipe: close it). Reading
 * goes on. Later writes fail with LL_ESTATE. */
LL_EXPORT ll_future *ll_stream_shutdown(ll_stream *s);
/* Close now: unsent data is dropped, pending operations fail with LL_ECLOSED, the descriptor is
 * released (its watcher stopped first, so a descriptor number reused later never sees this
 * stream's events). A TLS stream sends close_notify if it can without waiting. Frees the stream
 * (deferred when called from inside the stream's own processing). NULL: no-op. */
LL_EXPORT void ll_stream_close(ll_stream *s);
/* Abort: reset the connection (TCP RST via SO_LINGER 0) and release the descriptor; pending and
 * later operations fail with LL_ECLOSED. The handle stays valid until ll_stream_close(). */
LL_EXPORT void ll_stream_reset(ll_stream *s);

/* Bytes written but not yet handed to the kernel. */
LL_EXPORT size_t ll_stream_write_pending(const ll_stream *s);
LL_EXPORT void ll_stream_set_high_water(ll_stream *s, size_t bytes);
/* The descriptor (-1 once closed). Do not read, write or close it behind the stream's back. */
LL_EXPORT int ll_stream_fd(const ll_stream *s);
/* How the peer is named in messages: "127.0.0.1:5432", "example.com:443 (93.184.216.34)",
 * "/run/pg.sock". Valid while the stream exists. */
LL_EXPORT const char *ll_stream_peer(const ll_stream *s);
/* True once the peer's end of stream was seen (LL_EOF delivered or buffered). */
LL_EXPORT bool ll_stream_at_eof(const ll_stream *s);
/* True when the stream is idle and usable: no error, EOF or close has happened, and no byte is
 * waiting that no read asked for. A pool uses it as a cheap liveness check before lending a
 * connection: a peer that closed or reset an idle connection is noticed, and so is one that sent
 * something unasked (a late reply to a cancelled request, garbage), because the next user would
 * read it as its own reply. It polls the socket without blocking; on TLS it lets OpenSSL process
 * what arrived, so a session ticket alone keeps the stream alive. Unexpected bytes are not lost:
 * they stay buffered for the next read. While a read is in progress, arriving bytes are its own. */
LL_EXPORT bool ll_stream_alive(ll_stream *s);
LL_EXPORT void ll_stream_get_timings(const ll_stream *s, ll_stream_timings *out);

LL_END_DECLS

#endif
