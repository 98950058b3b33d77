/*
 * io_internal.h — what stream.c, connect.c, tls.c and server.c share: the stream structure and
 * the hooks between the plain transport and the TLS layer. Never installed.
 */
#ifndef LIBLOOP_IO_INTERNAL_H
#define LIBLOOP_IO_INTERNAL_H

#include "internal.h"
#include "libloop/dns.h"
#include "libloop/stream.h"
#include "libloop/tls.h"
#include "libloop/server.h"

typedef struct ll__buf {
    char *data;
    size_t off, len, cap;
} ll__buf;

typedef struct ll__op ll__op;
typedef struct ll__tls ll__tls;

struct ll_stream {
    ll_loop *loop;
    int fd;
    ev_io rw, ww;
    bool is_socket;      /* send/recv with MSG_NOSIGNAL; otherwise read/write (pipes) */
    bool is_tcp;
    bool server_side;    /* accepted by an ll_server: STARTTLS is a server handshake */
    bool eof;            /* the peer's end of stream was read */
    bool closed;         /* ll_stream_close or ll_stream_reset: the fd is gone */
    bool freed;          /* ll_stream_close was called (free pending if in_cb) */
    bool held;           /* a server's handler stream: ll_stream_close only releases, the server
                          * frees it after the handler (ll__stream_unhold) */
    bool shut_wr;        /* shutdown requested: no more writes */
    bool shut_done;      /* FIN (or pipe close) sent */
    int in_cb;           /* inside the stream's own watcher callbacks */
    int rerr, werr;      /* sticky read / write errors (negative codes) */
    char *rerr_msg;      /* the message of rerr when it is not just ll_strerror */
    char *peer;          /* owned */
    char *host;          /* the host name asked for (TLS verification), owned, may be NULL */
    ll__buf rbuf, wbuf;
    size_t high_water;
    ll__op *rop;         /* the read in progress */
    ll__op *wq_head, **wq_tail; /* writes waiting for the buffer to drain, drain, shutdown */
    ll__tls *tls;        /* TLS state (tls.c), NULL for plain */
    bool hs_want_read, hs_want_write; /* the TLS handshake waits for the socket */
    ll_stream_timings timings;
    ll__closer closer;   /* ll_loop_free closes a stream the application left open */
};

/* dns.c: a numeric IPv4/IPv6 address ("[::1]" too) into *a (port 0). */
bool ll__addr_parse_numeric(const char *host, ll_addr *a);

/* stream.c */
ll_stream *ll__stream_new(ll_loop *loop, int fd, const char *peer, bool is_socket);
void ll__stream_update(ll_stream *s);           /* (re)start or stop the watchers */
/* Raw, non-blocking send of n bytes with MSG_NOSIGNAL: bytes sent, 0 when the socket is full, or
 * a negative code. */
ssize_t ll__stream_raw_send(ll_stream *s, const void *p, size_t n);
/* Read/write errors: record once (sticky) and fail what waits. */
void ll__stream_fail_read(ll_stream *s, int code, const char *msg);
void ll__stream_fail_write(ll_stream *s, int code);
void ll__stream_progress(ll_stream *s);         /* retry reads and writes after the TLS handshake */
void ll__stream_unhold(ll_stream *s);           /* drop `held` and close for real */

/* tls.c — the TLS layer. The read side lets OpenSSL read the socket itself (a socket BIO: no
 * copy); the write side goes through a memory BIO that we send with MSG_NOSIGNAL. */
/* Start a handshake on s (client: verifies o->server_name or s->host). The future resolves when it
 * is done; its failure leaves the stream unusable. Records s->timings.tls. */
ll_future *ll__tls_handshake(ll_stream *s, const ll_tls_opts *o, bool server);
/* Deep copies of options kept past the call that took them. */
ll_tls_opts *ll__tls_opts_dup(const ll_tls_opts *o);
void ll__tls_opts_free(ll_tls_opts *o);
void ll__tls_on_io(ll_stream *s);               /* handshake in progress: drive it */
bool ll__tls_handshaking(const ll_stream *s);
/* Plaintext read into dst: >0 bytes, 0 would block, or a negative code (LL_EOF on close_notify,
 * LL_ETRUNCATED on EOF without it). */
ssize_t ll__tls_read(ll_stream *s, void *dst, size_t n);
/* Encrypt and send up to n bytes: plaintext bytes consumed (>0), 0 when blocked, or a code. */
ssize_t ll__tls_write(ll_stream *s, const void *src, size_t n);
/* Send the encrypted bytes already produced: 0 when none is left, LL_EAGAIN, or a code. */
int ll__tls_flush(ll_stream *s);
size_t ll__tls_pending_out(const ll_stream *s);
bool ll__tls_has_buffered(const ll_stream *s);  /* decrypted or raw bytes inside OpenSSL */
void ll__tls_close_notify(ll_stream *s);        /* queue close_notify (shutdown) */
void ll__tls_free(ll_loop *loop);
void ll__tls_stream_free(ll_stream *s);         /* best-effort close_notify, free the SSL */

#endif
