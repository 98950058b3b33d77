/*
 * stream.c — ll_stream: a non-blocking descriptor with a read buffer and a write buffer, driven by
 * two ev_io watchers (read, write).
 *
 * Design notes:
 * - Reading is demand-driven: the read watcher runs only while a read operation waits. With no
 *   reader, bytes stay in the kernel and TCP flow control slows the peer (no unbounded buffering).
 *   A read into a large caller buffer with nothing buffered goes straight from the socket into that
 *   buffer (no copy).
 * - Writing is optimistic: a write on an idle stream goes to the kernel at once and only the rest
 *   is copied into the write buffer. Write futures resolve while the buffer is at most the
 *   high-water mark; above it they wait (back-pressure). Drain and shutdown wait in the same FIFO.
 * - Errors are sticky per direction (rerr, werr): after a reset every later read fails the same way,
 *   with a message naming the peer. EOF is a state, not an error, so buffered bytes are still
 *   delivered before LL_EOF.
 * - SIGPIPE: sockets are written with send(MSG_NOSIGNAL); for pipes SIGPIPE is set to SIG_IGN once
 *   if it still has its default action (as Python and libuv users do), so EPIPE is a return value.
 * - ll_stream_close stops both watchers before close(): a descriptor number reused later never sees
 *   this stream's events (libev requires stopping before closing). Pending operations fail with
 *   LL_ECLOSED at once. The free is deferred while the stream's own callback is on the stack.
 * - TLS (tls.c) slots in below the buffers: transport_read/transport_write call OpenSSL instead of
 *   recv/send, and the handshake drives the watchers through hs_want_read/hs_want_write.
 * - Connecting lives in connect.c, servers in server.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io_internal.h"

#define DEFAULT_HIGH_WATER (64 * 1024)
#define READ_CHUNK 8192
#define DIRECT_MIN 4096   /* read straight into the caller's buffer when it has room for this */
#define READ_ROUNDS 32    /* reads per event before letting the loop run something else */

typedef enum { OP_READ, OP_READ_EXACT, OP_READ_UNTIL, OP_FILL, OP_WRITE, OP_DRAIN, OP_SHUTDOWN } op_kind;

struct ll__op {
    ll__op *next;
    ll_stream *s;
    ll_future *f;        /* the operation's own reference */
    op_kind kind;
    char *buf;
    size_t n, done;      /* read: capacity and bytes delivered; write: the count */
    size_t mark;         /* fill: buffered bytes when called; read_until: bytes already scanned */
    size_t dlen;
    char delim[];
};

/* ---- small helpers ---- */

/* Writes to a pipe cannot say MSG_NOSIGNAL: ignore SIGPIPE unless the application handles it. Checked
 * for every pipe stream, not once per process: an application may restore the default later. */
static void ignore_sigpipe(void) {
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

/* Make room for at least `extra` bytes after the data. */
static int buf_reserve(ll__buf *b, size_t extra) {
    if (b->cap - b->off - b->len >= extra) return 0;
    if (b->off && b->cap - b->len >= extra) { /* compact */
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return 0;
    }
    size_t cap = b->cap ? b->cap : READ_CHUNK;
    while (cap - b->len < extra) cap *= 2;
    char *d = ll__malloc(cap);
    if (!d) return LL_ENOMEM;
    if (b->len) memcpy(d, b->data + b->off, b->len);
    ll__free(b->data);
    b->data = d;
    b->off = 0;
    b->cap = cap;
    return 0;
}

static void buf_consume(ll__buf *b, size_t n) {
    if (n >= b->len) {
        b->off = b->len = 0;
    } else {
        b->off += n;
        b->len -= n;
    }
}

static size_t pending_out(const ll_stream *s) {
    return s->wbuf.len + (s->tls ? ll__tls_pending_out(s) : 0);
}

/* ---- watchers ---- */

static void on_readable(struct ev_loop *ev, ev_io *w, int revents);
static void on_writable(struct ev_loop *ev, ev_io *w, int revents);

void ll__stream_update(ll_stream *s) {
    if (s->closed) return;
    bool hs = ll__tls_handshaking(s);
    bool want_r = hs ? s->hs_want_read : (s->rop && !s->eof && !s->rerr);
    bool want_w = hs ? s->hs_want_write : (!s->werr && pending_out(s) > 0);
    if (want_r != ev_is_active(&s->rw)) {
        if (want_r) ev_io_start(s->loop->ev, &s->rw);
        else ev_io_stop(s->loop->ev, &s->rw);
    }
    if (want_w != ev_is_active(&s->ww)) {
        if (want_w) ev_io_start(s->loop->ev, &s->ww);
        else ev_io_stop(s->loop->ev, &s->ww);
    }
}

static void stream_closer(ll__closer *c) {
    ll_stream *s = (ll_stream *)(void *)((char *)c - offsetof(ll_stream, closer));
    if (s->freed) return; /* a deferred free: it happens when its callback returns */
    ll_stream_close(s);   /* a server's stream is only released here; its server frees it */
}

ll_stream *ll__stream_new(ll_loop *loop, int fd, const char *peer, bool is_socket) {
    ll_stream *s = ll__calloc(1, sizeof *s);
    if (!s) return NULL;
    s->peer = ll__strdup(peer ? peer : "stream");
    if (!s->peer) {
        ll__free(s);
        return NULL;
    }
    if (!is_socket) ignore_sigpipe();
    s->loop = loop;
    s->fd = fd;
    s->is_socket = is_socket;
    s->high_water = DEFAULT_HIGH_WATER;
    s->wq_tail = &s->wq_head;
    ev_io_init(&s->rw, on_readable, fd, EV_READ);
    s->rw.data = s;
    ev_io_init(&s->ww, on_writable, fd, EV_WRITE);
    s->ww.data = s;
    s->timings.start = ll_now();
    s->closer.close = stream_closer;
    ll__closer_add(loop, &s->closer);
    ll__handle_ref(loop);
    return s;
}

static void stream_free(ll_stream *s) {
    ll__closer_remove(s->loop, &s->closer);
    ll__handle_unref(s->loop);
    ll__free(s->rbuf.data);
    ll__free(s->wbuf.data);
    ll__free(s->rerr_msg);
    ll__free(s->peer);
    ll__free(s->host);
    ll__free(s);
}

/* ---- operations ---- */

static void op_cancel(ll_future *f, void *arg);

static ll__op *op_new(ll_stream *s, op_kind kind, size_t dlen, ll_future **out) {
    static const char *const labels[] = {"stream read", "stream read_exactly", "stream read_until",
                                         "stream fill", "stream write", "stream drain",
                                         "stream shutdown"};
    *out = NULL;
    ll_future *f = ll_future_new(s->loop);
    if (!f) return NULL;
    ll_future_set_label(f, labels[kind]);
    ll__op *op = ll__calloc(1, sizeof *op + dlen);
    if (!op) {
        ll_future_fail(f, LL_ENOMEM, "%s %s: out of memory", kind < OP_WRITE ? "read from" : "write to",
                       s->peer);
        *out = f;
        return NULL;
    }
    op->s = s;
    op->kind = kind;
    op->f = ll_future_ref(f);
    ll_future_on_cancel(f, op_cancel, op);
    *out = f;
    return op;
}

static void op_detach(ll__op *op) {
    ll_stream *s = op->s;
    if (s->rop == op) {
        s->rop = NULL;
        return;
    }
    for (ll__op **pp = &s->wq_head; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            if (!*pp) s->wq_tail = pp;
            return;
        }
    }
}

static void op_free(ll__op *op) {
    ll_future_free(op->f);
    ll__free(op);
}

static void op_resolve(ll__op *op, size_t value) {
    op_detach(op);
    ll_future_resolve(op->f, (void *)(uintptr_t)value, NULL);
    op_free(op);
}

static void op_fail(ll__op *op, int code, const char *fmt, ...) LL_PRINTF(3, 4);
static void op_fail(ll__op *op, int code, const char *fmt, ...) {
    op_detach(op);
    va_list ap;
    va_start(ap, fmt);
    ll_future_vfail(op->f, code, fmt, ap);
    va_end(ap);
    op_free(op);
}

static void op_cancel(ll_future *f, void *arg) {
    ll__op *op = arg;
    ll_stream *s = op->s;
    op_detach(op);
    ll_future_set_cancelled(f);
    op_free(op);
    ll__stream_update(s);
}

/* ---- transport: plain or TLS ---- */

static ssize_t transport_read(ll_stream *s, void *dst, size_t n) {
    if (s->tls) return ll__tls_read(s, dst, n);
    for (;;) {
        ssize_t r = s->is_socket ? recv(s->fd, dst, n, 0) : read(s->fd, dst, n);
        if (r > 0) return r;
        if (r == 0) return LL_EOF;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return ll_err_from_errno(errno);
    }
}

ssize_t ll__stream_raw_send(ll_stream *s, const void *p, size_t n) {
    for (;;) {
        ssize_t r = s->is_socket ? send(s->fd, p, n, MSG_NOSIGNAL) : write(s->fd, p, n);
        if (r >= 0) return r;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return ll_err_from_errno(errno);
    }
}

static ssize_t transport_write(ll_stream *s, const void *p, size_t n) {
    return s->tls ? ll__tls_write(s, p, n) : ll__stream_raw_send(s, p, n);
}

/* ---- reading ---- */

static const char *read_errmsg(ll_stream *s, char *buf, size_t size) {
    if (s->rerr_msg) return s->rerr_msg;
    snprintf(buf, size, "read from %s: %s", s->peer, ll_strerror(s->rerr));
    return buf;
}

void ll__stream_fail_read(ll_stream *s, int code, const char *msg) {
    if (!s->rerr) {
        s->rerr = code;
        if (msg) s->rerr_msg = ll__strdup(msg);
    }
    if (s->rop) {
        char b[256];
        op_fail(s->rop, s->rerr, "%s", read_errmsg(s, b, sizeof b));
    }
}

/* Complete the read in progress from the buffer if it can be; fail it at EOF or after an error.
 * Return true when it is settled. */
static bool read_step(ll_stream *s) {
    ll__op *op = s->rop;
    ll__buf *b = &s->rbuf;
    char *data = b->data + b->off;
    switch (op->kind) {
    case OP_READ:
        if (b->len) {
            size_t k = b->len < op->n ? b->len : op->n;
            memcpy(op->buf, data, k);
            buf_consume(b, k);
            op_resolve(op, k);
            return true;
        }
        break;
    case OP_READ_EXACT: {
        size_t k = op->n - op->done;
        if (k > b->len) k = b->len;
        if (k) {
            memcpy(op->buf + op->done, data, k);
            op->done += k;
            buf_consume(b, k);
        }
        if (op->done == op->n) {
            op_resolve(op, op->n);
            return true;
        }
        if (s->eof && !s->rerr) {
            op_fail(op, LL_EOF, "read from %s: end of stream after %zu of %zu bytes", s->peer,
                    op->done, op->n);
            return true;
        }
        break;
    }
    case OP_READ_UNTIL: {
        size_t start = op->mark;
        if (b->len >= op->dlen) {
            for (size_t i = start; i + op->dlen <= b->len; i++) {
                if (data[i] == op->delim[0] && memcmp(data + i, op->delim, op->dlen) == 0) {
                    size_t total = i + op->dlen;
                    if (total > op->n) break;
                    memcpy(op->buf, data, total);
                    buf_consume(b, total);
                    op_resolve(op, total);
                    return true;
                }
            }
            op->mark = b->len - op->dlen + 1;
        }
        if (b->len >= op->n) {
            op_fail(op, LL_ETOOLARGE, "read from %s: no delimiter within %zu bytes", s->peer,
                    op->n);
            return true;
        }
        if (s->eof && !s->rerr && b->len) {
            op_fail(op, LL_EOF, "read from %s: end of stream before the delimiter (%zu bytes "
                                "buffered)", s->peer, b->len);
            return true;
        }
        break;
    }
    case OP_FILL:
        if (b->len > op->mark) {
            op_resolve(op, b->len);
            return true;
        }
        break;
    default:
        break;
    }
    if (s->rerr) {
        char m[256];
        op_fail(op, s->rerr, "%s", read_errmsg(s, m, sizeof m));
        return true;
    }
    if (s->eof) {
        op_fail(op, LL_EOF, "read from %s: end of stream", s->peer);
        return true;
    }
    return false;
}

/* Read from the transport until the read in progress is settled or the socket is empty. */
static void do_read(ll_stream *s) {
    /* After READ_ROUNDS the loop gets its turn: a readable socket will fire again. Bytes OpenSSL
     * holds will not, so those (at most the rest of one record) are read before leaving. */
    for (int round = 0; s->rop && (round < READ_ROUNDS || (s->tls && ll__tls_has_buffered(s)));
         round++) {
        if (read_step(s)) break;
        ll__op *op = s->rop;
        ll__buf *b = &s->rbuf;
        char *dst;
        size_t n;
        bool direct = b->len == 0 && (op->kind == OP_READ || op->kind == OP_READ_EXACT) &&
                      op->n - op->done >= DIRECT_MIN;
        if (direct) {
            dst = op->buf + op->done;
            n = op->n - op->done;
        } else {
            size_t want = READ_CHUNK;
            if (op->kind == OP_READ_EXACT && op->n - op->done > b->len)
                want = op->n - op->done - b->len;
            if (want > 1024 * 1024) want = 1024 * 1024;
            if (b->cap - b->off - b->len < 1024 && buf_reserve(b, want) != 0) {
                ll__stream_fail_read(s, LL_ENOMEM, NULL);
                break;
            }
            dst = b->data + b->off + b->len;
            n = b->cap - b->off - b->len;
        }
        ssize_t r = transport_read(s, dst, n);
        if (r > 0) {
            if (!direct) {
                b->len += (size_t)r;
            } else if (op->kind == OP_READ) {
                op_resolve(op, (size_t)r);
                break;
            } else {
                op->done += (size_t)r;
            }
        } else if (r == 0) {
            break; /* would block */
        } else if (r == LL_EOF) {
            s->eof = true;
        } else {
            if (r == LL_ETRUNCATED) {
                char m[256];
                snprintf(m, sizeof m, "read from %s: connection closed without TLS close_notify "
                                      "(stream truncated)", s->peer);
                ll__stream_fail_read(s, LL_ETRUNCATED, m);
            } else {
                ll__stream_fail_read(s, (int)r, NULL);
            }
        }
    }
    ll__stream_update(s);
}

static ll_future *start_read(ll_stream *s, op_kind kind, void *buf, size_t n, const void *delim,
                             size_t dlen) {
    const char *what = "read from";
    if (s->closed)
        return ll_future_failed(s->loop, LL_ECLOSED, "%s %s: stream is closed", what, s->peer);
    if (s->rop)
        return ll_future_failed(s->loop, LL_EBUSY, "%s %s: another read is in progress", what,
                      s->peer);
    if (ll__tls_handshaking(s))
        return ll_future_failed(s->loop, LL_ESTATE, "%s %s: TLS handshake in progress", what,
                      s->peer);
    if ((kind != OP_FILL && n == 0) || (kind == OP_READ_UNTIL && (dlen == 0 || !delim)))
        return ll_future_failed(s->loop, LL_EINVAL, "%s %s: empty buffer or delimiter", what,
                      s->peer);
    ll_future *f;
    ll__op *op = op_new(s, kind, dlen, &f);
    if (!op) return f;
    op->buf = buf;
    op->n = n;
    if (kind == OP_READ_UNTIL) memcpy(op->delim, delim, dlen);
    op->dlen = dlen;
    if (kind == OP_FILL) op->mark = s->rbuf.len;
    s->rop = op;
    if (kind != OP_FILL && read_step(s)) return f;
    if (kind == OP_FILL && (s->eof || s->rerr) && read_step(s)) return f;
    /* OpenSSL may hold decrypted bytes the socket will never announce again: read them now. */
    if (s->tls && ll__tls_has_buffered(s)) do_read(s);
    else ll__stream_update(s);
    return f;
}

ll_future *ll_stream_read(ll_stream *s, void *buf, size_t n) {
    LL_REQUIRE_ARG(s, "stream");
    return start_read(s, OP_READ, buf, n, NULL, 0);
}

ll_future *ll_stream_read_exactly(ll_stream *s, void *buf, size_t n) {
    LL_REQUIRE_ARG(s, "stream");
    return start_read(s, OP_READ_EXACT, buf, n, NULL, 0);
}

ll_future *ll_stream_read_until(ll_stream *s, const void *delim, size_t dlen, void *buf,
                                size_t max) {
    LL_REQUIRE_ARG(s, "stream");
    return start_read(s, OP_READ_UNTIL, buf, max, delim, dlen);
}

ll_future *ll_stream_fill(ll_stream *s) {
    LL_REQUIRE_ARG(s, "stream");
    return start_read(s, OP_FILL, NULL, 0, NULL, 0);
}

const void *ll_stream_peek(ll_stream *s, size_t *len) {
    if (!s || s->rbuf.len == 0) {
        if (len) *len = 0;
        return s && s->rbuf.data ? s->rbuf.data + s->rbuf.off : "";
    }
    if (len) *len = s->rbuf.len;
    return s->rbuf.data + s->rbuf.off;
}

void ll_stream_consume(ll_stream *s, size_t n) {
    if (!s) return;
    if (n > s->rbuf.len) n = s->rbuf.len;
    buf_consume(&s->rbuf, n);
    if (s->rop && s->rop->kind == OP_FILL) s->rop->mark = s->rop->mark > n ? s->rop->mark - n : 0;
}

/* ---- writing ---- */

void ll__stream_fail_write(ll_stream *s, int code) {
    if (!s->werr) s->werr = code;
    while (s->wq_head)
        op_fail(s->wq_head, s->werr, "write to %s: %s", s->peer, ll_strerror(s->werr));
}

/* Hand buffered bytes to the kernel: 0 when everything is out, LL_EAGAIN, or an error code. */
static int flush(ll_stream *s) {
    if (s->tls) {
        int rc = ll__tls_flush(s);
        if (rc) return rc;
    }
    ll__buf *b = &s->wbuf;
    while (b->len) {
        ssize_t r = transport_write(s, b->data + b->off, b->len);
        if (r == 0) return LL_EAGAIN;
        if (r < 0) return (int)r;
        buf_consume(b, (size_t)r);
    }
    if (s->tls) return ll__tls_flush(s);
    return 0;
}

static void end_write_side(ll_stream *s) {
    if (s->shut_done || s->closed) return;
    s->shut_done = true;
    if (s->is_socket) {
        shutdown(s->fd, SHUT_WR);
    } else { /* a pipe ends only by being closed */
        ev_io_stop(s->loop->ev, &s->rw);
        ev_io_stop(s->loop->ev, &s->ww);
        close(s->fd);
        s->fd = -1;
        s->closed = true;
        s->rerr = s->rerr ? s->rerr : LL_ECLOSED;
    }
}

/* Settle the writers whose condition now holds. */
static void wq_process(ll_stream *s) {
    ll__op **pp = &s->wq_head;
    while (*pp) {
        ll__op *op = *pp;
        size_t pend = pending_out(s);
        if (op->kind == OP_WRITE && pend <= s->high_water) {
            op_resolve(op, op->n);
        } else if (op->kind == OP_DRAIN && pend == 0) {
            op_resolve(op, 0);
        } else if (op->kind == OP_SHUTDOWN && pend == 0) {
            if (s->tls && !op->done) { /* close_notify first, then FIN once it is out */
                op->done = 1;
                ll__tls_close_notify(s);
                int rc = flush(s);
                if (rc && rc != LL_EAGAIN) {
                    ll__stream_fail_write(s, rc);
                    return;
                }
                continue;
            }
            end_write_side(s);
            op_resolve(op, 0);
        } else {
            pp = &op->next;
        }
    }
}

static void do_write(ll_stream *s) {
    int rc = flush(s);
    if (rc && rc != LL_EAGAIN) ll__stream_fail_write(s, rc);
    else wq_process(s);
    ll__stream_update(s);
}

static ll_future *write_check(ll_stream *s) {
    if (s->closed)
        return ll_future_failed(s->loop, LL_ECLOSED, "write to %s: stream is closed", s->peer);
    if (s->werr)
        return ll_future_failed(s->loop, s->werr, "write to %s: %s", s->peer, ll_strerror(s->werr));
    if (s->shut_wr)
        return ll_future_failed(s->loop, LL_ESTATE, "write to %s: stream was shut down for writing",
                      s->peer);
    if (ll__tls_handshaking(s))
        return ll_future_failed(s->loop, LL_ESTATE, "write to %s: TLS handshake in progress", s->peer);
    return NULL;
}

ll_future *ll_stream_write(ll_stream *s, const void *data, size_t n) {
    LL_REQUIRE_ARG(s, "stream");
    ll_future *f = write_check(s);
    if (f) return f;
    const char *p = data;
    size_t left = n;
    if (pending_out(s) == 0) { /* idle: straight to the kernel */
        while (left) {
            ssize_t r = transport_write(s, p, left);
            if (r == 0) break;
            if (r < 0) {
                ll__stream_fail_write(s, (int)r);
                return ll_future_failed(s->loop, (int)r, "write to %s: %s", s->peer,
                              ll_strerror((int)r));
            }
            p += r;
            left -= (size_t)r;
        }
    }
    if (left) {
        if (buf_reserve(&s->wbuf, left) != 0)
            return ll_future_failed(s->loop, LL_ENOMEM, "write to %s: out of memory",
                          s->peer);
        memcpy(s->wbuf.data + s->wbuf.off + s->wbuf.len, p, left);
        s->wbuf.len += left;
    }
    ll__stream_update(s);
    if (pending_out(s) <= s->high_water) {
        f = ll_future_new(s->loop);
        if (!f) return NULL;
        ll_future_set_label(f, "stream write");
        ll_future_resolve(f, (void *)(uintptr_t)n, NULL);
        return f;
    }
    ll__op *op = op_new(s, OP_WRITE, 0, &f);
    if (!op) return f;
    op->n = n;
    *s->wq_tail = op;
    s->wq_tail = &op->next;
    return f;
}

static ll_future *queue_writer(ll_stream *s, op_kind kind) {
    ll_future *f = write_check(s);
    if (f) return f;
    ll__op *op = op_new(s, kind, 0, &f);
    if (!op) return f;
    *s->wq_tail = op;
    s->wq_tail = &op->next;
    if (kind == OP_SHUTDOWN) s->shut_wr = true;
    wq_process(s);
    ll__stream_update(s);
    return f;
}

ll_future *ll_stream_drain(ll_stream *s) {
    LL_REQUIRE_ARG(s, "stream");
    return queue_writer(s, OP_DRAIN);
}

ll_future *ll_stream_shutdown(ll_stream *s) {
    LL_REQUIRE_ARG(s, "stream");
    return queue_writer(s, OP_SHUTDOWN);
}

/* ---- events ---- */

static void after_cb(ll_stream *s) {
    if (--s->in_cb == 0 && s->freed) stream_free(s);
}

static void on_readable(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev, (void)revents;
    ll_stream *s = w->data;
    s->in_cb++;
    if (ll__tls_handshaking(s)) ll__tls_on_io(s);
    else do_read(s);
    after_cb(s);
}

static void on_writable(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev, (void)revents;
    ll_stream *s = w->data;
    s->in_cb++;
    if (ll__tls_handshaking(s)) ll__tls_on_io(s);
    else do_write(s);
    after_cb(s);
}

void ll__stream_progress(ll_stream *s) {
    if (s->closed) return;
    s->in_cb++;
    if (pending_out(s)) do_write(s);
    if (s->rop && !s->closed) do_read(s);
    ll__stream_update(s);
    after_cb(s);
}

/* ---- closing ---- */

static void release(ll_stream *s, bool rst) {
    if (!s->closed) {
        s->closed = true;
        ev_io_stop(s->loop->ev, &s->rw);
        ev_io_stop(s->loop->ev, &s->ww);
        if (rst && !s->werr) s->werr = LL_ECLOSED; /* an abort sends no close_notify */
        if (s->tls) ll__tls_stream_free(s); /* may send close_notify: before close() */
        if (s->fd >= 0) {
            if (rst && s->is_tcp) {
                struct linger l = {1, 0};
                setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            }
            close(s->fd);
            s->fd = -1;
        }
    }
    if (s->rop) op_fail(s->rop, LL_ECLOSED, "read from %s: stream closed", s->peer);
    while (s->wq_head) op_fail(s->wq_head, LL_ECLOSED, "write to %s: stream closed", s->peer);
    if (!s->rerr) s->rerr = LL_ECLOSED;
    if (!s->werr) s->werr = LL_ECLOSED;
}

void ll_stream_close(ll_stream *s) {
    if (!s || s->freed) return;
    release(s, false);
    if (s->held) return; /* the server frees it when the handler has returned */
    s->freed = true;
    if (s->in_cb == 0) stream_free(s);
}

void ll__stream_unhold(ll_stream *s) {
    s->held = false;
    ll_stream_close(s);
}

void ll_stream_reset(ll_stream *s) {
    if (!s || s->freed) return;
    release(s, true);
}

/* ---- adopting descriptors and accessors ---- */

ll_stream *ll_stream_from_fd(ll_loop *loop, int fd, const char *peer) {
    loop = ll__loop_or_current(loop);
    if (fd < 0) return NULL;
    if (!loop) {
        close(fd);
        return NULL;
    }
    struct stat st;
    bool sock = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    char name[128];
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    bool tcp = false;
    if (sock && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        tcp = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
    len = sizeof ss;
    if (!peer && sock && getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
        ss.ss_family != AF_UNIX) {
        peer = ll_addr_format((struct sockaddr *)&ss, len, name, sizeof name);
    } else if (!peer) {
        snprintf(name, sizeof name, "fd %d", fd);
        peer = name;
    }
    ll_stream *s = ll__stream_new(loop, fd, peer, sock);
    if (!s) {
        close(fd);
        return NULL;
    }
    s->is_tcp = tcp;
    return s;
}

size_t ll_stream_write_pending(const ll_stream *s) {
    return s ? pending_out(s) : 0;
}

void ll_stream_set_high_water(ll_stream *s, size_t bytes) {
    if (!s) return;
    s->high_water = bytes;
    if (!s->closed) wq_process(s);
}

int ll_stream_fd(const ll_stream *s) {
    return s && !s->closed ? s->fd : -1;
}

const char *ll_stream_peer(const ll_stream *s) {
    return s ? s->peer : "";
}

bool ll_stream_at_eof(const ll_stream *s) {
    return s && s->eof;
}

bool ll_stream_alive(ll_stream *s) {
    if (!s || s->closed || s->rerr || s->werr || s->eof) return false;
    /* Bytes no read asked for are someone else's reply (or garbage): a pool must not lend the
     * connection. While a read is in progress, arriving bytes are its own. */
    bool expecting = s->rop != NULL;
    if (s->rbuf.len) return expecting;
    if (!s->is_socket) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 0) != 1) return true;
        if (p.revents & (POLLHUP | POLLERR)) return false;
        return expecting || !(p.revents & POLLIN);
    }
    char c;
    ssize_t r = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) {
        s->eof = true;
        return false;
    }
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            /* OpenSSL may hold decrypted bytes the socket no longer shows */
            return expecting || !s->tls || !ll__tls_has_buffered(s);
        }
        s->rerr = ll_err_from_errno(errno);
        return false;
    }
    if (expecting) return true;
    if (s->tls && !ll__tls_handshaking(s)) {
        /* TLS records may be only a session ticket or a close_notify: let OpenSSL look at them.
         * Plaintext they carry stays buffered for a later read; the answer is still "not idle". */
        if (buf_reserve(&s->rbuf, READ_CHUNK) != 0) return false;
        ll__buf *b = &s->rbuf;
        ssize_t k = ll__tls_read(s, b->data + b->off + b->len, b->cap - b->off - b->len);
        if (k > 0) b->len += (size_t)k;
        else if (k == LL_EOF) s->eof = true;
        else if (k < 0) s->rerr = (int)k;
        return !s->eof && !s->rerr && b->len == 0 && !ll__tls_has_buffered(s);
    }
    return false;
}

void ll_stream_get_timings(const ll_stream *s, ll_stream_timings *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (s) *out = s->timings;
}
