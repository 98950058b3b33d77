/*
 * server.c — ll_server: accept connections and run a handler task for each.
 *
 * Design notes:
 * - The listening socket has one ev_io; each readiness accepts up to ACCEPT_BATCH connections, so
 *   a flood of connections cannot starve the rest of the loop.
 * - EMFILE/ENFILE while accepting would make the listening socket readable forever (a busy loop).
 *   We stop watching it and retry after ACCEPT_PAUSE seconds: clients wait in the backlog and are
 *   accepted once descriptors are free again.
 * - Each connection runs in its own task: optional TLS handshake, handler, then a graceful end
 *   (shutdown, then read and discard until the peer's EOF, within `linger` seconds). The lingering
 *   read matters: closing a socket with unread input makes the kernel send RST, which can destroy
 *   the reply the peer has not read yet.
 * - Closing stops accepting at once, lets handlers finish for `grace` seconds, then cancels the
 *   remaining tasks. The close future resolves when the last connection task has ended; the
 *   server is freed at that moment (from inside the last task, which touches it no more).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "containers.h"
#include "io_internal.h"

#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE 0.05
#define DEFAULT_LINGER 5.0

typedef struct sconn {
    struct ll_server *srv;
    ll_stream *s;
    ll_future *task;
    ll__dlink link;       /* the server's connections */
} sconn;

struct ll_server {
    ll_loop *loop;
    int fd;
    ev_io io;
    ev_timer pause;       /* accepting paused after EMFILE */
    ev_timer grace;       /* closing: handlers' time to finish */
    ll_time grace_end;
    ll_server_handler handler;
    void *arg;
    ll_tls_opts *tls;     /* deep copy */
    size_t stack_size;
    double linger;
    int backlog;
    char *name;
    char *unix_path;
    uint16_t port;
    ll_future *startf;    /* starting: waiting for the resolver */
    ll_future *rf;
    ll_future *closef;
    ll__dlist conns;
    size_t nconns;
    uint64_t accepted;
    bool closing;
    ll__closer closer;    /* ll_loop_free closes a server the application left open */
};

static void server_free(ll_server *srv) {
    ll__closer_remove(srv->loop, &srv->closer);
    ll__handle_unref(srv->loop);
    ll__tls_opts_free(srv->tls);
    ll__free(srv->name);
    ll__free(srv->unix_path);
    ll__free(srv);
}

static void on_grace_end(struct ev_loop *ev, ev_timer *w, int revents);

/* ---- connections ---- */

static void maybe_finish(ll_server *srv) {
    if (!srv->closing || srv->nconns) return;
    ev_timer_stop(srv->loop->ev, &srv->grace);
    ll_future *f = srv->closef;
    server_free(srv);
    ll_future_resolve(f, NULL, NULL);
    ll_future_free(f);
}

/* The task has settled (finished, failed, cancelled before it ever ran, or destroyed at shutdown):
 * a done callback rather than code at the end of conn_main, so every one of those ends is seen. */
static void conn_end(ll_future *task, void *arg) {
    (void)task;
    sconn *c = arg;
    ll_server *srv = c->srv;
    ll__list_remove(&srv->conns, &c->link);
    srv->nconns--;
    ll__stream_unhold(c->s);
    ll_future_free(c->task);
    ll__free(c);
    maybe_finish(srv);
}

static int conn_main(void *arg) {
    sconn *c = arg;
    ll_server *srv = c->srv;
    ll_stream *s = c->s;
    int rc = 0;
    if (srv->tls) {
        ll_future *hf = ll__tls_handshake(s, srv->tls, true);
        rc = ll_await(hf);
        if (rc && rc != LL_ECANCELED && rc != LL_ETIMEDOUT) rc = ll_task_fail_from(hf);
        ll_future_free(hf);
        if (rc) return rc;
    }
    rc = srv->handler(s, srv->arg);
    if (rc == 0 && !ll_task_cancelled() && !s->closed && !s->werr) {
        ll_scope sc;
        ll_scope_enter(&sc, ll_deadline_in(srv->linger));
        ll_future *f = ll_stream_shutdown(s);
        int src = ll_await(f);
        ll_future_free(f);
        char sink[4096];
        while (src == 0) { /* lingering close: wait for the peer's EOF (see the notes) */
            f = ll_stream_read(s, sink, sizeof sink);
            src = ll_await(f);
            ll_future_free(f);
        }
        ll_scope_exit(&sc);
    }
    return rc;
}

static void spawn_conn(ll_server *srv, int fd, const struct sockaddr_storage *ss, socklen_t len) {
    char peer[160];
    if (ss->ss_family == AF_UNIX) snprintf(peer, sizeof peer, "client of %s", srv->unix_path);
    else ll_addr_format((const struct sockaddr *)ss, len, peer, sizeof peer);
    ll_stream *s = ll__stream_new(srv->loop, fd, peer, true);
    sconn *c = s ? ll__calloc(1, sizeof *c) : NULL;
    char *tname = c ? ll__format("%s %s", srv->name, peer) : NULL;
    if (!tname) {
        if (s) ll_stream_close(s);
        else close(fd);
        ll__free(c);
        if (srv->loop->debug) ll__warn(srv->loop, "%s: out of memory accepting %s", srv->name, peer);
        return;
    }
    s->server_side = true;
    s->held = true;
    s->is_tcp = ss->ss_family != AF_UNIX;
    if (s->is_tcp) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->srv = srv;
    c->s = s;
    ll_spawn_opts o = {.name = tname, .stack_size = srv->stack_size, .loop = srv->loop,
                       .deadline = LL_NEVER};
    c->task = ll_spawn_ex(conn_main, c, &o);
    ll__free(tname);
    bool ok = c->task && !ll_future_done(c->task);
    if (ok && ll_future_add_done(c->task, conn_end, c) != 0) {
        ll_future_cancel(c->task); /* not started yet: it never will, so it never sees c */
        ok = false;
    }
    if (!ok) { /* no memory or no stack */
        if (srv->loop->debug)
            ll__warn(srv->loop, "%s: cannot start a task for %s: %s", srv->name, peer,
                     c->task ? ll_future_errmsg(c->task) : "out of memory");
        ll_future_free(c->task);
        ll__stream_unhold(s);
        ll__free(c);
        return;
    }
    ll__list_push_front(&srv->conns, &c->link);
    srv->nconns++;
    srv->accepted++;
}

static void on_accept(struct ev_loop *ev, ev_io *w, int revents) {
    (void)revents;
    ll_server *srv = w->data;
    for (int i = 0; i < ACCEPT_BATCH && !srv->closing; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(srv->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            spawn_conn(srv, fd, &ss, len);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            if (srv->loop->debug)
                ll__warn(srv->loop, "%s: accept: %s; pausing for %.0f ms", srv->name,
                         strerror(errno), ACCEPT_PAUSE * 1e3);
            ev_io_stop(ev, &srv->io);
            ev_timer_set(&srv->pause, ACCEPT_PAUSE, 0.);
            ev_timer_start(ev, &srv->pause);
        }
        break; /* EAGAIN, or an error to retry on the next readiness */
    }
}

static void on_pause_end(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)revents;
    ll_server *srv = w->data;
    if (!srv->closing) ev_io_start(ev, &srv->io);
}

/* ---- listening ---- */

/* Bind and listen; on failure fill msg and return the code. */
static int listen_on(ll_server *srv, const ll_addr *a, const char *what, char *msg, size_t n) {
    int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int code = ll_err_from_errno(errno);
        snprintf(msg, n, "listen on %s: socket: %s", what, ll_strerror(code));
        return code;
    }
    if (a->sa.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(fd, (const struct sockaddr *)&a->sa, a->len) != 0 || listen(fd, srv->backlog) != 0) {
        int code = ll_err_from_errno(errno);
        close(fd);
        snprintf(msg, n, "listen on %s: %s", what, ll_strerror(code));
        return code;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (a->sa.ss_family != AF_UNIX && getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        srv->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                  : ((struct sockaddr_in6 *)&ss)->sin6_port);
    srv->fd = fd;
    ev_io_init(&srv->io, on_accept, fd, EV_READ);
    srv->io.data = srv;
    ev_io_start(srv->loop->ev, &srv->io);
    return 0;
}

static void server_closer(ll__closer *c) {
    ll_server *srv = (ll_server *)(void *)((char *)c - offsetof(ll_server, closer));
    if (srv->startf) { /* still resolving its host */
        ll_future_cancel(srv->startf);
        return;
    }
    ll__closer_remove(srv->loop, c); /* closing may have to wait for its connections */
    ll_future_free(ll_server_close(srv, 0));
}

static ll_server *server_new(ll_loop *loop, ll_server_handler handler, void *arg,
                             const ll_server_opts *opts) {
    ll_server *srv = ll__calloc(1, sizeof *srv);
    if (!srv) return NULL;
    srv->loop = loop;
    srv->fd = -1;
    srv->handler = handler;
    srv->arg = arg;
    srv->backlog = opts && opts->backlog > 0 ? opts->backlog : SOMAXCONN;
    srv->stack_size = opts ? opts->stack_size : 0;
    /* 0: the default; negative: no limit (ll_deadline_in gives LL_NEVER) */
    srv->linger = opts && opts->linger != 0 ? opts->linger : DEFAULT_LINGER;
    srv->name = ll__strdup(opts && opts->name ? opts->name : "server");
    bool fail = !srv->name;
    if (opts && opts->tls && !(srv->tls = ll__tls_opts_dup(opts->tls))) fail = true;
    ev_timer_init(&srv->pause, on_pause_end, 0., 0.);
    srv->pause.data = srv;
    ev_timer_init(&srv->grace, on_grace_end, 0., 0.);
    srv->grace.data = srv;
    srv->closer.close = server_closer;
    ll__closer_add(loop, &srv->closer);
    ll__handle_ref(loop);
    if (fail) {
        server_free(srv);
        return NULL;
    }
    return srv;
}

static void server_value_free(void *p) {
    ll_future_free(ll_server_close(p, 0));
}

static void on_start_resolved(ll_future *rf, void *arg) {
    ll_server *srv = arg;
    ll_future *f = srv->startf;
    srv->startf = NULL;
    srv->rf = NULL;
    int rc = ll_future_code(rf);
    char msg[512];
    if (rc) {
        ll_future_fail(f, rc, "listen: %s", ll_future_errmsg(rf));
        server_free(srv);
    } else {
        ll_addrinfo *ai = ll_future_value(rf);
        char what[300];
        snprintf(what, sizeof what, "%s:%u", ai->name, srv->port);
        rc = listen_on(srv, &ai->addrs[0], what, msg, sizeof msg);
        if (rc) {
            ll_future_fail(f, rc, "%s", msg);
            server_free(srv);
        } else {
            ll_future_resolve(f, srv, server_value_free);
        }
    }
    ll_future_free(rf);
    ll_future_free(f);
}

static void on_start_cancel(ll_future *f, void *arg) {
    ll_server *srv = arg;
    ll_future_remove_done(srv->rf, on_start_resolved, srv);
    ll_future_cancel(srv->rf);
    ll_future_free(srv->rf);
    ll_future_free(srv->startf);
    ll_future_set_cancelled(f);
    server_free(srv);
}

ll_future *ll_server_open(const char *host, uint16_t port, ll_server_handler handler, void *arg,
                           const ll_server_opts *opts) {
    ll_loop *loop = ll_loop_current();
    if (!loop) return NULL;
    if (!handler) return ll_future_failed(loop, LL_EINVAL, "listen: no handler");
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "start server");
    ll_server *srv = server_new(loop, handler, arg, opts);
    if (!srv) {
        ll_future_fail(f, LL_ENOMEM, "listen on %s:%u: out of memory", host ? host : "*", port);
        return f;
    }
    ll_addr a;
    memset(&a, 0, sizeof a);
    if (!host || !*host) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a.sa;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        a.len = sizeof *in;
        host = "0.0.0.0";
    } else if (!ll__addr_parse_numeric(host, &a)) {
        srv->port = port; /* remembered for on_start_resolved's message */
        srv->rf = ll_resolve(host, port, &(ll_resolve_opts){.loop = loop});
        srv->startf = ll_future_ref(f);
        if (!srv->rf || ll_future_add_done(srv->rf, on_start_resolved, srv) != 0) {
            ll_future_free(srv->rf);
            ll_future_free(srv->startf);
            server_free(srv);
            ll_future_fail(f, LL_ENOMEM, "listen on %s:%u: out of memory", host, port);
            return f;
        }
        ll_future_on_cancel(f, on_start_cancel, srv);
        return f;
    }
    if (a.sa.ss_family == AF_INET) ((struct sockaddr_in *)&a.sa)->sin_port = htons(port);
    else ((struct sockaddr_in6 *)&a.sa)->sin6_port = htons(port);
    char what[300], msg[512];
    ll_addr_format((const struct sockaddr *)&a.sa, a.len, what, sizeof what);
    int rc = listen_on(srv, &a, what, msg, sizeof msg);
    if (rc) {
        server_free(srv);
        ll_future_fail(f, rc, "%s", msg);
        return f;
    }
    ll_future_resolve(f, srv, server_value_free);
    return f;
}

ll_future *ll_server_open_unix(const char *path, ll_server_handler handler, void *arg,
                                const ll_server_opts *opts) {
    ll_loop *loop = ll_loop_current();
    if (!loop) return NULL;
    ll_addr a;
    memset(&a, 0, sizeof a);
    struct sockaddr_un *un = (struct sockaddr_un *)&a.sa;
    size_t n = path ? strlen(path) : 0;
    if (!handler || n == 0 || n >= sizeof un->sun_path)
        return ll_future_failed(loop, LL_EINVAL, "listen on %s: %s", path ? path : "(null)",
                                !handler ? "no handler" : "bad socket path");
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "start server");
    ll_server *srv = server_new(loop, handler, arg, opts);
    if (!srv || !(srv->unix_path = ll__strdup(path))) {
        if (srv) server_free(srv);
        ll_future_fail(f, LL_ENOMEM, "listen on %s: out of memory", path);
        return f;
    }
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    bool abstract = path[0] == '@';
    if (abstract) un->sun_path[0] = '\0';
    a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 0 : 1));
    struct stat st;
    if (!abstract && stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path); /* stale */
    char msg[512];
    int rc = listen_on(srv, &a, path, msg, sizeof msg);
    if (rc) {
        server_free(srv);
        ll_future_fail(f, rc, "%s", msg);
        return f;
    }
    ll_future_resolve(f, srv, server_value_free);
    return f;
}

/* ---- closing ---- */

static void cancel_all(ll_server *srv) {
    for (ll__dlink *l = srv->conns.head, *next; l; l = next) {
        next = l->next;
        ll_future_cancel(LL__CONTAINER(l, sconn, link)->task);
    }
}

static void on_grace_end(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)revents;
    ll_server *srv = w->data;
    if (ll__timer_early(ev, w, srv->grace_end)) return; /* the absolute deadline */
    cancel_all(srv);
}

ll_future *ll_server_close(ll_server *srv, double grace) {
    if (!srv) return NULL;
    if (srv->closing) return ll_future_ref(srv->closef);
    ll_future *f = ll_future_new(srv->loop);
    if (!f) return NULL; /* try again: nothing happened */
    ll_future_set_label(f, "server close");
    srv->closing = true;
    srv->closef = ll_future_ref(f);
    ev_io_stop(srv->loop->ev, &srv->io);
    ev_timer_stop(srv->loop->ev, &srv->pause);
    if (srv->fd >= 0) close(srv->fd);
    srv->fd = -1;
    if (srv->unix_path && srv->unix_path[0] != '@') unlink(srv->unix_path);
    if (srv->nconns && grace != 0) {
        if (grace > 0) { /* negative: the handlers may take as long as they need */
            srv->grace_end = ll_now() + grace;
            ll__timer_start_at(srv->loop->ev, &srv->grace, srv->grace_end);
        }
    } else {
        cancel_all(srv);
    }
    maybe_finish(srv);
    return f;
}

uint16_t ll_server_port(const ll_server *srv) {
    return srv ? srv->port : 0;
}

size_t ll_server_connections(const ll_server *srv) {
    return srv ? srv->nconns : 0;
}

uint64_t ll_server_accepted(const ll_server *srv) {
    return srv ? srv->accepted : 0;
}
