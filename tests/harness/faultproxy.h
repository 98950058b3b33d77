/*
 * faultproxy.h — a TCP proxy for fault tests (Toxiproxy's idea, in-process): it listens on
 * 127.0.0.1 on a free port, forwards every accepted connection to a target, and injects a fault
 * that a test can change at any moment while traffic flows.
 *
 * The proxy runs in its own thread with plain sockets and poll(2), so it does not depend on the
 * loop under test and keeps misbehaving while that loop is blocked. libc + pthreads only (it is
 * linked into the demo and with-servers too).
 *
 * Faults (lt_proxy_set applies one at once; LT_FAULT_NONE forwards normally again):
 *   RESET        every open connection and every new one is reset (RST to both sides).
 *   RESET_AFTER  after `bytes` more bytes have been forwarded in direction `dir` (counted per
 *                connection from the moment the fault is set, or from accept), the connection is
 *                reset; exactly `bytes` bytes get through.
 *   FREEZE       nothing is forwarded in `dir` and nothing is read (so the sender's kernel buffers
 *                fill); the sockets stay open. New connections are accepted and frozen too.
 *   TRICKLE      1 byte per `interval` seconds in `dir` (0: 1 ms).
 *   BANDWIDTH    at most `rate` bytes/s in `dir` (0: 50,000), with at most 50 ms of burst.
 *   HALF_CLOSE   the proxy shuts down its write side toward the receiver of `dir` (dir 1: the
 *                server sees end of stream; dir 2: the client does; 0: both); later data in that
 *                direction is read and dropped.
 *   REFUSE       new connections are accepted and closed at once (the client reads end of
 *                stream); open connections are left alone.
 *   BLACKHOLE    new connections are not accepted and their connect() hangs (the proxy fills its
 *                own accept queue, so the kernel drops the SYNs); open connections are left alone.
 *                When the fault is lifted, a hung connect completes at the client's next SYN
 *                retransmission (about 1 s, 3 s, ... later).
 *
 * dir: 0 both directions, 1 client->server, 2 server->client (ignored by RESET, REFUSE, BLACKHOLE).
 * Every function is thread-safe.
 */
#ifndef LL_TEST_FAULTPROXY_H
#define LL_TEST_FAULTPROXY_H

#include <stddef.h>

typedef struct lt_proxy lt_proxy;

typedef enum {
    LT_FAULT_NONE,
    LT_FAULT_RESET,
    LT_FAULT_RESET_AFTER,
    LT_FAULT_FREEZE,
    LT_FAULT_TRICKLE,
    LT_FAULT_BANDWIDTH,
    LT_FAULT_HALF_CLOSE,
    LT_FAULT_REFUSE,
    LT_FAULT_BLACKHOLE
} lt_fault_kind;

typedef struct {
    lt_fault_kind kind;
    int dir;         /* 0 both, 1 client->server, 2 server->client */
    long bytes;      /* RESET_AFTER */
    double interval; /* TRICKLE, seconds per byte */
    long rate;       /* BANDWIDTH, bytes per second */
} lt_fault;

/* Start a proxy to host:port (a numeric address or a name) in its own thread, listening on
 * 127.0.0.1 on a free port. NULL (after saying why on stderr) when it cannot. */
lt_proxy *lt_proxy_start(const char *host, int port);
/* The port the proxy listens on. */
int lt_proxy_port(const lt_proxy *p);
/* Apply f at once, to open and new connections (see the list above). f NULL = LT_FAULT_NONE. */
void lt_proxy_set(lt_proxy *p, const lt_fault *f);
/* Connections accepted so far. */
size_t lt_proxy_connections(const lt_proxy *p);
/* Connections open right now (both sides). */
size_t lt_proxy_open_connections(const lt_proxy *p);
/* Close every connection and the listener, join the thread, free p. NULL is a no-op. */
void lt_proxy_stop(lt_proxy *p);

#endif
