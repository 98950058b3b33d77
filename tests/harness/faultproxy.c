/*
 * faultproxy.c — see faultproxy.h.
 *
 * Design: one thread runs a poll(2) loop over the listener, a wake-up pipe and both sockets of
 * every connection. Each connection has two directions (client->server, server->client), each with
 * its own 64 KiB buffer: bytes are read from the source while the buffer has room and the fault
 * lets the direction read, and written to the destination as fast as the fault allows (trickle
 * and bandwidth are paced with a timestamp / token bucket; poll's timeout wakes the loop when the
 * next byte is due). The mutex is held by the thread except while it sleeps in poll, so a test's
 * lt_proxy_set() takes effect between two rounds; the set bumps a generation counter that the
 * thread notices and applies to every open connection (reset now, half-close, restart the
 * RESET_AFTER count).
 *
 * Blackhole: a listener whose accept queue is full makes the kernel drop new SYNs, so a client's
 * connect() hangs exactly as it would towards a dead host. The proxy shrinks the backlog to 0
 * (listen(2) again) and connects to itself until one of its own connects stays pending; those
 * "filler" connections are recognised by their port and discarded when the fault is lifted.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "faultproxy.h"

#define BUF_SIZE 65536
#define MAX_FILLERS 16

typedef struct pdir {
    unsigned char buf[BUF_SIZE];
    size_t len;
    bool eof;      /* the source reached end of stream */
    bool shut;     /* the destination's write side is shut down */
    bool drop;     /* half-closed by the fault: read and discard */
    long count;    /* bytes forwarded since the fault was set (RESET_AFTER) */
    double next;   /* TRICKLE: when the next byte may go */
    double tokens; /* BANDWIDTH: bytes that may go now */
    double last;   /* BANDWIDTH: when tokens were last refilled */
} pdir;

typedef struct pconn {
    int fd[2];       /* [0] client, [1] server */
    bool connecting; /* the connect to the target is in progress */
    bool dead;
    pdir d[2];       /* [0] client->server, [1] server->client */
    struct pconn *next;
} pconn;

struct lt_proxy {
    pthread_t thread;
    pthread_mutex_t mu;
    int lfd, wake[2], port;
    struct sockaddr_storage target;
    socklen_t target_len;
    /* shared, under mu */
    lt_fault fault;
    unsigned gen;
    size_t accepted, open;
    bool stop;
    /* the thread's own */
    unsigned applied;
    pconn *conns;
    int fillers[MAX_FILLERS], nfillers;
    int filler_ports[MAX_FILLERS], nfiller_ports;
    bool blackholed;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_nonblock(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Close with an RST instead of a FIN. */
static void reset_fd(int fd) {
    if (fd < 0) return;
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* Does the current fault act on direction i (0 client->server, 1 server->client)? */
static bool applies(const lt_proxy *p, int i) {
    return p->fault.dir == 0 || p->fault.dir == i + 1;
}

static void conn_kill(lt_proxy *p, pconn *c, bool rst) {
    if (c->dead) return;
    for (int i = 0; i < 2; i++) {
        if (rst) reset_fd(c->fd[i]);
        else if (c->fd[i] >= 0) close(c->fd[i]);
        c->fd[i] = -1;
    }
    c->dead = true;
    p->open--;
}

static void half_close(pconn *c, int i) {
    pdir *d = &c->d[i];
    if (!d->shut) shutdown(c->fd[1 - i], SHUT_WR);
    d->shut = d->drop = true;
    d->len = 0;
}

/* Start (or restart) a connection's per-fault state. */
static void conn_apply(lt_proxy *p, pconn *c, double t) {
    for (int i = 0; i < 2; i++) {
        c->d[i].count = 0;
        c->d[i].next = t;
        c->d[i].tokens = 0;
        c->d[i].last = t;
    }
    if (p->fault.kind == LT_FAULT_RESET) {
        conn_kill(p, c, true);
    } else if (p->fault.kind == LT_FAULT_HALF_CLOSE && !c->connecting) {
        for (int i = 0; i < 2; i++)
            if (applies(p, i)) half_close(c, i);
    }
}

static void fill_blackhole(lt_proxy *p) {
    struct sockaddr_in self = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    listen(p->lfd, 0);
    while (p->nfillers < MAX_FILLERS) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) break;
        int rc = connect(fd, (struct sockaddr *)&self, sizeof self);
        struct sockaddr_in me;
        socklen_t ml = sizeof me;
        getsockname(fd, (struct sockaddr *)&me, &ml);
        p->fillers[p->nfillers++] = fd;
        if (p->nfiller_ports < MAX_FILLERS) p->filler_ports[p->nfiller_ports++] = ntohs(me.sin_port);
        if (rc == 0) continue;
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, 100) == 0) break; /* this one's SYN was dropped: the queue is full */
    }
    p->blackholed = true;
}

static void lift_blackhole(lt_proxy *p) {
    for (int i = 0; i < p->nfillers; i++) close(p->fillers[i]);
    p->nfillers = 0;
    listen(p->lfd, 128);
    p->blackholed = false;
}

static void apply_fault(lt_proxy *p) {
    p->applied = p->gen;
    bool bh = p->fault.kind == LT_FAULT_BLACKHOLE;
    if (bh && !p->blackholed) fill_blackhole(p);
    if (!bh && p->blackholed) lift_blackhole(p);
    double t = now_s();
    for (pconn *c = p->conns; c; c = c->next)
        if (!c->dead) conn_apply(p, c, t);
}

static bool is_filler(lt_proxy *p, const struct sockaddr_in *peer) {
    for (int i = 0; i < p->nfiller_ports; i++) {
        if (p->filler_ports[i] == ntohs(peer->sin_port)) {
            p->filler_ports[i] = p->filler_ports[--p->nfiller_ports];
            return true;
        }
    }
    return false;
}

static void accept_all(lt_proxy *p) {
    for (;;) {
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        int fd = accept4(p->lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (is_filler(p, &peer)) {
            close(fd);
            continue;
        }
        p->accepted++;
        if (p->fault.kind == LT_FAULT_REFUSE) {
            close(fd);
            continue;
        }
        if (p->fault.kind == LT_FAULT_RESET) {
            reset_fd(fd);
            continue;
        }
        int s = socket(p->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0) {
            reset_fd(fd);
            continue;
        }
        int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int rc = connect(s, (struct sockaddr *)&p->target, p->target_len);
        if (rc < 0 && errno != EINPROGRESS) {
            close(s);
            reset_fd(fd);
            continue;
        }
        pconn *c = calloc(1, sizeof *c);
        if (!c) {
            close(s);
            reset_fd(fd);
            continue;
        }
        c->fd[0] = fd;
        c->fd[1] = s;
        c->connecting = rc < 0;
        c->next = p->conns;
        p->conns = c;
        p->open++;
        conn_apply(p, c, now_s());
    }
}

/* How many bytes direction i of c may write now; *wait is lowered to when more may go. */
static size_t allowance(lt_proxy *p, pconn *c, int i, double t, double *wait) {
    pdir *d = &c->d[i];
    size_t n = d->len;
    if (!applies(p, i)) return n;
    switch (p->fault.kind) {
    case LT_FAULT_FREEZE:
        return 0;
    case LT_FAULT_TRICKLE: {
        if (t >= d->next) return n ? 1 : 0;
        if (d->next - t < *wait) *wait = d->next - t;
        return 0;
    }
    case LT_FAULT_BANDWIDTH: {
        double rate = p->fault.rate > 0 ? (double)p->fault.rate : 50000.0;
        double burst = rate / 20 > 1 ? rate / 20 : 1;
        d->tokens += (t - d->last) * rate;
        if (d->tokens > burst) d->tokens = burst;
        d->last = t;
        if (d->tokens >= 1) return n < (size_t)d->tokens ? n : (size_t)d->tokens;
        double w = (1 - d->tokens) / rate;
        if (w < *wait) *wait = w;
        return 0;
    }
    case LT_FAULT_RESET_AFTER: {
        long left = p->fault.bytes - d->count;
        if (left <= 0) return n; /* the next byte triggers the reset (see pump) */
        return n < (size_t)left ? n : (size_t)left;
    }
    default:
        return n;
    }
}

static bool can_read(lt_proxy *p, pconn *c, int i) {
    pdir *d = &c->d[i];
    if (c->connecting || d->eof || d->len == BUF_SIZE) return false;
    if (applies(p, i) && p->fault.kind == LT_FAULT_FREEZE) return false;
    return true;
}

/* Move what can move in direction i; false when the connection died. */
static bool pump(lt_proxy *p, pconn *c, int i, double t) {
    pdir *d = &c->d[i];
    int src = c->fd[i], dst = c->fd[1 - i];
    if (can_read(p, c, i)) {
        ssize_t r = read(src, d->buf + d->len, BUF_SIZE - d->len);
        if (r > 0 && !d->drop) d->len += (size_t)r;
        else if (r == 0) d->eof = true;
        else if (r < 0 && errno != EAGAIN && errno != EINTR) {
            conn_kill(p, c, true); /* pass the reset on */
            return false;
        }
    }
    if (d->len > 0) {
        if (applies(p, i) && p->fault.kind == LT_FAULT_RESET_AFTER && d->count >= p->fault.bytes) {
            conn_kill(p, c, true);
            return false;
        }
        double never = 1e9;
        size_t n = allowance(p, c, i, t, &never);
        if (n > 0) {
            ssize_t w = send(dst, d->buf, n, MSG_NOSIGNAL); /* a peer gone must not kill the test */
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                conn_kill(p, c, true);
                return false;
            }
            if (w > 0) {
                memmove(d->buf, d->buf + w, d->len - (size_t)w);
                d->len -= (size_t)w;
                d->count += w;
                if (p->fault.kind == LT_FAULT_TRICKLE && applies(p, i))
                    d->next = t + (p->fault.interval > 0 ? p->fault.interval : 0.001);
                if (p->fault.kind == LT_FAULT_BANDWIDTH && applies(p, i)) d->tokens -= (double)w;
            }
        }
    }
    if (d->eof && d->len == 0 && !d->shut) {
        shutdown(dst, SHUT_WR);
        d->shut = true;
    }
    if (c->d[0].eof && c->d[0].len == 0 && c->d[1].eof && c->d[1].len == 0) {
        conn_kill(p, c, false);
        return false;
    }
    return true;
}

static void finish_connect(lt_proxy *p, pconn *c) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        conn_kill(p, c, true);
        return;
    }
    c->connecting = false;
    conn_apply(p, c, now_s());
}

static void *proxy_main(void *arg) {
    lt_proxy *p = arg;
    struct pollfd *pf = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (p->applied != p->gen) apply_fault(p);
        /* reap dead connections */
        for (pconn **pp = &p->conns; *pp;) {
            if ((*pp)->dead) {
                pconn *dead = *pp;
                *pp = dead->next;
                free(dead);
            } else {
                pp = &(*pp)->next;
            }
        }
        size_t need = 2 + 2 * p->open;
        if (need > cap) {
            struct pollfd *np = realloc(pf, need * 2 * sizeof *pf);
            if (!np) break;
            pf = np;
            cap = need * 2;
        }
        size_t n = 0;
        pf[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = p->blackholed ? -1 : p->lfd, .events = POLLIN};
        double t = now_s(), wait = 1e9;
        for (pconn *c = p->conns; c; c = c->next) {
            short ev[2] = {0, 0};
            if (c->connecting) {
                ev[1] = POLLOUT;
            } else {
                for (int i = 0; i < 2; i++) {
                    if (can_read(p, c, i)) ev[i] |= POLLIN;
                    if (c->d[i].len > 0 && allowance(p, c, i, t, &wait) > 0) ev[1 - i] |= POLLOUT;
                }
            }
            for (int k = 0; k < 2; k++)
                pf[n++] = (struct pollfd){.fd = ev[k] ? c->fd[k] : -1, .events = ev[k]};
        }
        int timeout = wait >= 1e9 ? -1 : (int)(wait * 1000) + 1;
        pthread_mutex_unlock(&p->mu);
        poll(pf, n, timeout);
        pthread_mutex_lock(&p->mu);
        if (pf[0].revents) {
            char b[64];
            while (read(p->wake[0], b, sizeof b) > 0) {}
        }
        if (p->stop) break;
        if (p->applied != p->gen) apply_fault(p);
        if (pf[1].revents && !p->blackholed) accept_all(p);
        t = now_s();
        for (pconn *c = p->conns; c; c = c->next) {
            if (c->dead) continue;
            if (c->connecting) {
                struct pollfd one = {.fd = c->fd[1], .events = POLLOUT};
                if (poll(&one, 1, 0) > 0) finish_connect(p, c);
                continue;
            }
            if (pump(p, c, 0, t)) pump(p, c, 1, t);
        }
    }
    for (pconn *c = p->conns; c;) {
        pconn *next = c->next;
        conn_kill(p, c, false);
        free(c);
        c = next;
    }
    p->conns = NULL;
    for (int i = 0; i < p->nfillers; i++) close(p->fillers[i]);
    p->nfillers = 0;
    pthread_mutex_unlock(&p->mu);
    free(pf);
    return NULL;
}

lt_proxy *lt_proxy_start(const char *host, int port) {
    lt_proxy *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->lfd = p->wake[0] = p->wake[1] = -1;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(host, ps, &hints, &ai);
    if (gai || !ai) {
        fprintf(stderr, "lt_proxy_start: %s: %s\n", host, gai_strerror(gai));
        free(p);
        return NULL;
    }
    memcpy(&p->target, ai->ai_addr, ai->ai_addrlen);
    p->target_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(p->lfd, 128) < 0 ||
        getsockname(p->lfd, (struct sockaddr *)&a, &al) < 0 || pipe2(p->wake, O_CLOEXEC) < 0) {
        perror("lt_proxy_start");
        goto fail;
    }
    set_nonblock(p->wake[0]);
    set_nonblock(p->wake[1]);
    p->port = ntohs(a.sin_port);
    pthread_mutex_init(&p->mu, NULL);
    if (pthread_create(&p->thread, NULL, proxy_main, p) != 0) {
        fprintf(stderr, "lt_proxy_start: cannot start the thread\n");
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    return p;
fail:
    if (p->lfd >= 0) close(p->lfd);
    if (p->wake[0] >= 0) close(p->wake[0]);
    if (p->wake[1] >= 0) close(p->wake[1]);
    free(p);
    return NULL;
}

int lt_proxy_port(const lt_proxy *p) {
    return p->port;
}

static void wake(lt_proxy *p) {
    char b = 1;
    if (write(p->wake[1], &b, 1) < 0) {} /* full pipe: the thread is awake anyway */
}

void lt_proxy_set(lt_proxy *p, const lt_fault *f) {
    pthread_mutex_lock(&p->mu);
    p->fault = f ? *f : (lt_fault){.kind = LT_FAULT_NONE};
    p->gen++;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

size_t lt_proxy_connections(const lt_proxy *p) {
    lt_proxy *q = (lt_proxy *)p;
    pthread_mutex_lock(&q->mu);
    size_t n = q->accepted;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t lt_proxy_open_connections(const lt_proxy *p) {
    lt_proxy *q = (lt_proxy *)p;
    pthread_mutex_lock(&q->mu);
    size_t n = q->open;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void lt_proxy_stop(lt_proxy *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_mutex_unlock(&p->mu);
    wake(p);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->mu);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p);
}
