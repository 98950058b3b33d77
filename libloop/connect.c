/*
 * connect.c — ll_stream_connect and ll_stream_connect_unix: resolve, connect (happy eyeballs), TLS.
 *
 * Design notes:
 * - A connection attempt is a small state machine (`conn`) driven by callbacks, not a task: it
 *   costs no stack, and cancelling it is immediate. Phases: resolving (a done callback on the
 *   resolve future), connecting (one ev_io per socket in flight), handshaking (a done callback on
 *   the handshake future), then the result future is resolved with the stream.
 * - Happy eyeballs (RFC 8305): addresses are interleaved by family (the resolver's first family
 *   first); the next attempt starts when one fails or after attempt_delay while it is pending; the
 *   first socket to connect wins and the others are closed.
 * - One timer covers the connect timeout and the calling task's deadline, whichever is earlier, so
 *   the failure says what timed out ("connect to db:5432: timed out after 2 s while connecting")
 *   instead of a bare cancellation.
 * - Every failure names the host and each address tried with its own reason.
 * - Cancelling (the caller's cancel or deadline) removes our done callbacks before cancelling the
 *   inner futures, closes every socket, and settles the result at once.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "io_internal.h"

#define MAX_ATTEMPTS 8 /* sockets in flight at once */
#define DEFAULT_CONNECT_TIMEOUT 30.0 /* ll_stream_opts.connect_timeout 0; as the pool's */

typedef struct conn conn;

typedef struct attempt {
    ev_io io;
    conn *c;
    size_t idx;
} attempt;

struct conn {
    ll_loop *loop;
    ll_future *f;         /* the result (our reference) */
    ll_future *rf;        /* resolving */
    ll_future *hf;        /* TLS handshake */
    ll_stream *s;         /* made, handshaking */
    char *host;           /* host name, or the socket path */
    uint16_t port;
    bool is_unix;
    bool host_numeric;
    ll_stream_opts o;
    ll_tls_opts *tls;     /* deep copy */
    ll_addrinfo *ai;
    ll_addr unix_addr;
    size_t next;          /* next address to try */
    attempt *att[MAX_ATTEMPTS];
    size_t natt;
    ev_timer delay;       /* happy eyeballs: start the next attempt */
    ev_timer timeout;     /* connect_timeout / task deadline */
    double timeout_len;
    ll_time task_deadline; /* the caller's, LL_NEVER outside tasks */
    char *errs;           /* "addr: reason; addr: reason" */
    int last_err;
    ll_time t_start, t_dns;
    ll__closer closer;    /* ll_loop_free cancels a connect still in progress */
};

static const char *phase_name(conn *c) {
    return c->rf ? "resolving" : c->hf ? "in the TLS handshake" : "connecting";
}

static void conn_name(conn *c, char *buf, size_t n) {
    if (c->is_unix) snprintf(buf, n, "%s", c->host);
    else if (strchr(c->host, ':') && c->host[0] != '[') snprintf(buf, n, "[%s]:%u", c->host, c->port);
    else snprintf(buf, n, "%s:%u", c->host, c->port);
}

static void attempt_close(attempt *a) {
    conn *c = a->c;
    ev_io_stop(c->loop->ev, &a->io);
    if (a->io.fd >= 0) close(a->io.fd);
    for (size_t i = 0; i < c->natt; i++) {
        if (c->att[i] == a) {
            c->att[i] = c->att[--c->natt];
            break;
        }
    }
    ll__free(a);
}

static void on_resolved(ll_future *rf, void *arg);
static void on_handshake(ll_future *hf, void *arg);

/* Release everything the attempt holds except the result future. */
static void conn_free(conn *c) {
    ll__closer_remove(c->loop, &c->closer);
    if (c->rf) {
        ll_future_remove_done(c->rf, on_resolved, c);
        ll_future_cancel(c->rf);
        ll_future_free(c->rf);
    }
    if (c->hf) {
        ll_future_remove_done(c->hf, on_handshake, c);
        ll_future_cancel(c->hf);
        ll_future_free(c->hf);
    }
    ll_stream_close(c->s);
    while (c->natt) attempt_close(c->att[0]);
    ev_timer_stop(c->loop->ev, &c->delay);
    ev_timer_stop(c->loop->ev, &c->timeout);
    ll_addrinfo_free(c->ai);
    ll__tls_opts_free(c->tls);
    ll__free(c->errs);
    ll__free(c->host);
    ll_future_free(c->f);
    ll__free(c);
}

static void conn_fail(conn *c, int code, const char *fmt, ...) LL_PRINTF(3, 4);
static void conn_fail(conn *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ll_future_vfail(c->f, code, fmt, ap);
    va_end(ap);
    conn_free(c);
}

static void on_cancel(ll_future *f, void *arg) {
    conn *c = arg;
    ll_future_set_cancelled(f);
    conn_free(c);
}

static void on_timeout(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)revents;
    conn *c = w->data;
    if (ll__timer_early(ev, w, c->t_start + c->timeout_len)) return; /* the absolute deadline */
    char name[300];
    conn_name(c, name, sizeof name);
    conn_fail(c, LL_ETIMEDOUT, "connect to %s: timed out after %.3g s %s%s%s", name,
              c->timeout_len, phase_name(c), c->errs ? " (" : "", c->errs ? c->errs : "");
}

static void stream_value_free(void *p) {
    ll_stream_close(p);
}

static void finish(conn *c) {
    ll_stream *s = c->s;
    c->s = NULL;
    s->timings.total = ll_now() - c->t_start;
    ll_future_resolve(c->f, s, stream_value_free);
    conn_free(c);
}

static void on_handshake(ll_future *hf, void *arg) {
    conn *c = arg;
    int rc = ll_future_code(hf);
    if (rc) {
        /* the message already names the peer and the reason */
        ll_future_fail(c->f, rc, "%s", ll_future_errmsg(hf));
        ll_future_free(c->hf);
        c->hf = NULL;
        conn_free(c);
        return;
    }
    ll_future_free(c->hf);
    c->hf = NULL;
    finish(c);
}

static void record_error(conn *c, const ll_addr *a, const char *what, int code) {
    char addr[160];
    ll_addr_format((const struct sockaddr *)&a->sa, a->len, addr, sizeof addr);
    char *m = c->errs ? ll__format("%s; %s: %s%s", c->errs, addr, what, ll_strerror(code))
                      : ll__format("%s: %s%s", addr, what, ll_strerror(code));
    if (m) {
        ll__free(c->errs);
        c->errs = m;
    }
    c->last_err = code;
}

static void connected(conn *c, attempt *a) {
    size_t idx = a->idx;
    int fd = a->io.fd;
    ev_io_stop(c->loop->ev, &a->io);
    a->io.fd = -1; /* the stream takes it */
    attempt_close(a);
    while (c->natt) attempt_close(c->att[0]);
    ev_timer_stop(c->loop->ev, &c->delay);
    const ll_addr *addr = c->is_unix ? &c->unix_addr : &c->ai->addrs[idx];
    char ip[160], peer[400];
    ll_addr_format((const struct sockaddr *)&addr->sa, addr->len, ip, sizeof ip);
    if (c->is_unix || c->host_numeric) snprintf(peer, sizeof peer, "%s", ip);
    else snprintf(peer, sizeof peer, "%s:%u (%s)", c->host, c->port, ip);
    ll_stream *s = ll__stream_new(c->loop, fd, peer, true);
    if (!s) {
        close(fd);
        conn_fail(c, LL_ENOMEM, "connect to %s: out of memory", peer);
        return;
    }
    s->is_tcp = !c->is_unix;
    if (s->is_tcp && !c->o.nagle) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (c->o.high_water) s->high_water = c->o.high_water;
    s->timings.start = c->t_start;
    s->timings.dns = c->t_dns - c->t_start;
    s->timings.connect = ll_now() - c->t_dns;
    c->s = s;
    /* connect_timeout is over; the TLS handshake has its own, the caller's deadline goes on */
    ev_timer_stop(c->loop->ev, &c->timeout);
    if (c->task_deadline < LL_NEVER) {
        c->timeout_len = c->task_deadline - c->t_start;
        ll__timer_start_at(c->loop->ev, &c->timeout, c->task_deadline);
    }
    /* the name dialled: what TLS, now or after STARTTLS, verifies */
    if (!c->is_unix && !(s->host = ll__strdup(c->host))) {
        conn_fail(c, LL_ENOMEM, "connect to %s: out of memory", peer);
        return;
    }
    if (!c->tls) {
        finish(c);
        return;
    }
    c->hf = ll__tls_handshake(s, c->tls, false);
    if (!c->hf) {
        conn_fail(c, LL_ENOMEM, "TLS handshake with %s: out of memory", peer);
        return;
    }
    if (ll_future_add_done(c->hf, on_handshake, c) != 0)
        conn_fail(c, LL_ENOMEM, "TLS handshake with %s: out of memory", peer);
}

static void start_next(conn *c);

static void no_more(conn *c) {
    if (c->natt || c->s) return;
    char name[300];
    conn_name(c, name, sizeof name);
    if (c->host_numeric || c->is_unix) {
        /* one address, named already: "connect to 127.0.0.1:6380: connection refused" */
        const char *reason = c->errs ? strstr(c->errs, ": ") : NULL;
        conn_fail(c, c->last_err ? c->last_err : LL_EIO, "connect to %s%s", name,
                  reason ? reason : ": failed");
    } else {
        conn_fail(c, c->last_err ? c->last_err : LL_EIO, "connect to %s: %s", name,
                  c->errs ? c->errs : "failed");
    }
}

static void on_connect_io(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev, (void)revents;
    attempt *a = (attempt *)w;
    conn *c = a->c;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0) {
        connected(c, a);
        return;
    }
    const ll_addr *addr = c->is_unix ? &c->unix_addr : &c->ai->addrs[a->idx];
    record_error(c, addr, "", ll_err_from_errno(err));
    attempt_close(a);
    ev_timer_stop(c->loop->ev, &c->delay);
    if (c->ai && c->next < c->ai->count) start_next(c);
    else no_more(c);
}

static void on_delay(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)ev, (void)revents;
    start_next(w->data);
}

/* Start attempts until one is in flight (or connected), or no address is left. */
static void start_next(conn *c) {
    size_t count = c->is_unix ? 1 : c->ai->count;
    while (c->next < count && c->natt < MAX_ATTEMPTS) {
        size_t idx = c->next++;
        const ll_addr *addr = c->is_unix ? &c->unix_addr : &c->ai->addrs[idx];
        int fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            record_error(c, addr, "socket: ", ll_err_from_errno(errno));
            continue;
        }
        attempt *a = ll__calloc(1, sizeof *a);
        if (!a) {
            close(fd);
            record_error(c, addr, "", LL_ENOMEM);
            continue;
        }
        a->c = c;
        a->idx = idx;
        ev_io_init(&a->io, on_connect_io, fd, EV_WRITE);
        c->att[c->natt++] = a;
        int r;
        do {
            r = connect(fd, (const struct sockaddr *)&addr->sa, addr->len);
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            connected(c, a);
            return;
        }
        if (errno != EINPROGRESS) {
            /* Unix sockets answer EAGAIN when the listener's backlog is full */
            record_error(c, addr, errno == EAGAIN && c->is_unix ? "backlog full: " : "",
                         ll_err_from_errno(errno));
            attempt_close(a);
            continue;
        }
        ev_io_start(c->loop->ev, &a->io);
        if (c->next < count && c->o.attempt_delay >= 0) {
            ev_timer_stop(c->loop->ev, &c->delay);
            ev_timer_set(&c->delay, c->o.attempt_delay > 0 ? c->o.attempt_delay : 0.25, 0.);
            ev_timer_start(c->loop->ev, &c->delay);
        }
        return;
    }
    no_more(c);
}

/* Interleave the families (RFC 8305 §4), keeping the resolver's order within each. */
static void interleave(ll_addrinfo *ai) {
    if (ai->count < 3) return; /* nothing to reorder */
    ll_addr *tmp = ll__malloc(ai->count * sizeof *tmp);
    if (!tmp) return; /* the resolver's order is fine too */
    int first = ai->addrs[0].sa.ss_family;
    size_t i = 0, a = 0, b = 0, n = ai->count;
    while (i < n) {
        while (a < n && ai->addrs[a].sa.ss_family != first) a++;
        if (a < n) tmp[i++] = ai->addrs[a++];
        while (b < n && ai->addrs[b].sa.ss_family == first) b++;
        if (b < n) tmp[i++] = ai->addrs[b++];
    }
    memcpy(ai->addrs, tmp, n * sizeof *tmp);
    ll__free(tmp);
}

static void on_resolved(ll_future *rf, void *arg) {
    conn *c = arg;
    c->t_dns = ll_now();
    int rc = ll_future_code(rf);
    if (rc) {
        char name[300];
        conn_name(c, name, sizeof name);
        ll_future_fail(c->f, rc, "connect to %s: %s", name, ll_future_errmsg(rf));
        ll_future_free(c->rf);
        c->rf = NULL;
        conn_free(c);
        return;
    }
    c->ai = ll_future_take(rf);
    ll_future_free(c->rf);
    c->rf = NULL;
    interleave(c->ai);
    start_next(c);
}

static void conn_closer(ll__closer *cl) {
    conn *c = (conn *)(void *)((char *)cl - offsetof(conn, closer));
    ll_future_cancel(c->f); /* on_cancel frees everything */
}

static ll_future *open_common(const char *host, uint16_t port, const ll_stream_opts *opts,
                              bool is_unix) {
    ll_loop *loop = ll_loop_current();
    if (!loop) return NULL;
    if (!host || !*host)
        return ll_future_failed(loop, LL_EINVAL, "connect: no %s given",
                                is_unix ? "socket path" : "host");
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "connect");
    conn *c = ll__calloc(1, sizeof *c);
    if (!c || !(c->host = ll__strdup(host))) {
        ll__free(c);
        ll_future_fail(f, LL_ENOMEM, "connect to %s: out of memory", host);
        return f;
    }
    c->loop = loop;
    c->f = ll_future_ref(f);
    c->port = port;
    c->is_unix = is_unix;
    if (opts) c->o = *opts;
    c->o.tls = NULL;
    c->t_start = c->t_dns = ll_now();
    ev_timer_init(&c->delay, on_delay, 0., 0.);
    c->delay.data = c;
    ev_timer_init(&c->timeout, on_timeout, 0., 0.);
    c->timeout.data = c;
    ll_future_on_cancel(f, on_cancel, c);
    c->closer.close = conn_closer;
    ll__closer_add(loop, &c->closer);
    if (opts && opts->tls && !(c->tls = ll__tls_opts_dup(opts->tls))) {
        conn_fail(c, LL_ENOMEM, "connect to %s: out of memory", host);
        return f;
    }
    /* 0: the default; negative: no limit of its own (the task's deadline still applies) */
    double limit = c->o.connect_timeout > 0   ? c->o.connect_timeout
                   : c->o.connect_timeout < 0 ? LL_NEVER
                                              : DEFAULT_CONNECT_TIMEOUT;
    ll_time dl = c->task_deadline = ll_task_deadline();
    if (dl < LL_NEVER && dl - c->t_start < limit) limit = dl - c->t_start;
    if (limit < LL_NEVER) {
        c->timeout_len = limit > 0 ? limit : 0;
        ll__timer_start_at(loop->ev, &c->timeout, c->t_start + c->timeout_len);
    }
    if (is_unix) {
        struct sockaddr_un *un = (struct sockaddr_un *)&c->unix_addr.sa;
        size_t n = strlen(host);
        if (n >= sizeof un->sun_path) {
            conn_fail(c, LL_EINVAL, "connect to %s: socket path too long", host);
            return f;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, host, n);
        if (host[0] == '@') un->sun_path[0] = '\0'; /* abstract namespace */
        c->unix_addr.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                                       (host[0] == '@' ? 0 : 1));
        start_next(c);
        return f;
    }
    ll_addr numeric;
    c->host_numeric = ll__addr_parse_numeric(host, &numeric);
    c->rf = ll_resolve(host, port, &(ll_resolve_opts){.loop = loop, .family = c->o.family});
    if (!c->rf) {
        conn_fail(c, LL_ENOMEM, "connect to %s: out of memory", host);
        return f;
    }
    if (ll_future_done(c->rf)) {
        on_resolved(c->rf, c); /* numeric, cached or invalid: no trip through the loop */
        return f;
    }
    if (ll_future_add_done(c->rf, on_resolved, c) != 0)
        conn_fail(c, LL_ENOMEM, "connect to %s: out of memory", host);
    return f;
}

ll_future *ll_stream_connect(const char *host, uint16_t port, const ll_stream_opts *opts) {
    return open_common(host, port, opts, false);
}

ll_future *ll_stream_connect_unix(const char *path, const ll_stream_opts *opts) {
    return open_common(path, 0, opts, true);
}
