/*
 * dns.c — name resolution on the loop: c-ares driven by libev watchers, plus a small TTL cache.
 *
 * Design notes:
 * - One c-ares channel per loop, made on the first lookup that needs it and destroyed by
 *   ll_loop_free (ll__dns_free). c-ares tells us which sockets to watch through its socket-state
 *   callback; each gets an ev_io, and one ev_timer follows ares_timeout(). Nothing runs on a thread,
 *   so a lookup is cancelled as easily as a timer.
 * - A lookup is a `query` that c-ares calls back exactly once. Cancelling the future settles it at
 *   once and detaches the query (q->f = NULL); the callback, whenever it comes, frees the query.
 *   When no lookup with a live future is left but detached ones are still in flight, the channel's
 *   queries are cancelled (ares_cancel), so the loop is never kept alive by a lookup nobody wants and
 *   nothing is left for the loop's shutdown to collect.
 * - c-ares may call back from inside ares_getaddrinfo() (hosts file, bad name) or ares_process_fd()
 *   (answers). Our callback only settles futures, whose callbacks run later from the ready queue,
 *   so no user code ever runs inside c-ares. ares_cancel() is only called outside c-ares (`depth`).
 * - Fast paths that need no channel: numeric addresses (inet_pton), the reserved ".invalid" domain
 *   (RFC 6761: always "not found"), and the cache. The cache holds answers for their DNS TTL, capped
 *   at five minutes; /etc/hosts answers (TTL 0) are not cached, a file read is cheap.
 */
#include <arpa/inet.h>
#include <ares.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include "containers.h"
#include "io_internal.h"

#define CACHE_MAX 128
#define TTL_MAX 300.0

typedef struct sockw {
    ev_io io;
    struct resolver *r;
    struct sockw *next;
} sockw;

typedef struct centry {
    char *name;        /* lower-cased */
    int family;
    ll_time expires;
    size_t count;
    ll_addr *addrs;    /* port 0 */
    struct centry *next;
} centry;

typedef struct query {
    struct resolver *r;
    ll_future *f;      /* NULL once the future was cancelled */
    char *name;
    int family;
    uint16_t port;
    ll__dlink link;    /* the resolver's pending queries */
} query;

typedef struct resolver {
    ll_loop *loop;
    ares_channel channel;
    ev_timer timer;
    sockw *socks;
    ll__dlist pending;
    size_t nlive;      /* pending queries whose future is still waiting */
    int depth;         /* inside a c-ares call */
    centry *cache;
    size_t ncache;
} resolver;

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

static void ares_global_init(void) {
    ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

/* ---- results ---- */

void ll_addrinfo_free(ll_addrinfo *ai) {
    ll__free(ai);
}

static void addrinfo_free_cb(void *p) {
    ll_addrinfo_free(p);
}

static void set_port(ll_addr *a, uint16_t port) {
    if (a->sa.ss_family == AF_INET) ((struct sockaddr_in *)&a->sa)->sin_port = htons(port);
    else if (a->sa.ss_family == AF_INET6) ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons(port);
}

/* One block: the header, the addresses, the name. */
static ll_addrinfo *addrinfo_new(const char *name, const ll_addr *addrs, size_t count,
                                 uint16_t port) {
    size_t nlen = strlen(name) + 1;
    ll_addrinfo *ai = ll__malloc(sizeof *ai + count * sizeof(ll_addr) + nlen);
    if (!ai) return NULL;
    ai->addrs = (ll_addr *)(ai + 1);
    ai->count = count;
    ai->name = (char *)(ai->addrs + count);
    memcpy(ai->name, name, nlen);
    memcpy(ai->addrs, addrs, count * sizeof(ll_addr));
    for (size_t i = 0; i < count; i++) set_port(&ai->addrs[i], port);
    return ai;
}

static void resolve_with(ll_future *f, const char *name, const ll_addr *addrs, size_t count,
                         uint16_t port) {
    ll_addrinfo *ai = addrinfo_new(name, addrs, count, port);
    if (!ai) {
        ll_future_fail(f, LL_ENOMEM, "resolve %s: out of memory", name);
        return;
    }
    ll_future_resolve(f, ai, addrinfo_free_cb);
}

const char *ll_addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
    char ip[INET6_ADDRSTRLEN];
    if (!buf || size == 0) return buf;
    buf[0] = '\0';
    if (!sa) return buf;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(buf, size, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(buf, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = len > off ? len - off : 0;
        if (n > sizeof un->sun_path) n = sizeof un->sun_path;
        if (n > 0 && un->sun_path[0] == '\0') snprintf(buf, size, "@%.*s", (int)(n - 1), un->sun_path + 1);
        else snprintf(buf, size, "%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
        if (!buf[0]) snprintf(buf, size, "unix socket");
    } else {
        snprintf(buf, size, "address family %d", sa->sa_family);
    }
    return buf;
}

/* ---- fast paths ---- */

/* A numeric IPv4 or IPv6 address (brackets allowed around IPv6): fill *a and return true. */
bool ll__addr_parse_numeric(const char *host, ll_addr *a) {
    memset(a, 0, sizeof *a);
    struct sockaddr_in *in = (struct sockaddr_in *)&a->sa;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        a->len = sizeof *in;
        return true;
    }
    char tmp[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    const char *h = host;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof tmp) {
        memcpy(tmp, host + 1, n - 2);
        tmp[n - 2] = '\0';
        h = tmp;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->sa;
    if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        a->len = sizeof *in6;
        return true;
    }
    return false;
}

static bool is_invalid_tld(const char *host) {
    size_t n = strlen(host);
    if (n && host[n - 1] == '.') n--;
    if (n >= 8 && strncasecmp(host + n - 8, ".invalid", 8) == 0) return true;
    return n == 7 && strncasecmp(host, "invalid", 7) == 0;
}

/* ---- the cache ---- */

static void centry_free(centry *e) {
    ll__free(e->name);
    ll__free(e->addrs);
    ll__free(e);
}

static centry *cache_find(resolver *r, const char *name, int family) {
    ll_time now = ll_now();
    for (centry **pp = &r->cache; *pp;) {
        centry *e = *pp;
        if (e->expires <= now) {
            *pp = e->next;
            r->ncache--;
            centry_free(e);
            continue;
        }
        if (e->family == family && strcasecmp(e->name, name) == 0) return e;
        pp = &e->next;
    }
    return NULL;
}

static void cache_put(resolver *r, const char *name, int family, const ll_addr *addrs,
                      size_t count, double ttl) {
    if (ttl <= 0 || count == 0) return;
    if (ttl > TTL_MAX) ttl = TTL_MAX;
    if (cache_find(r, name, family)) return;
    if (r->ncache >= CACHE_MAX) { /* drop the entry that expires first */
        centry **victim = &r->cache;
        for (centry **pp = &r->cache; *pp; pp = &(*pp)->next)
            if ((*pp)->expires < (*victim)->expires) victim = pp;
        centry *e = *victim;
        *victim = e->next;
        r->ncache--;
        centry_free(e);
    }
    centry *e = ll__calloc(1, sizeof *e);
    if (!e) return;
    e->name = ll__strdup(name);
    e->addrs = ll__malloc(count * sizeof *addrs);
    if (!e->name || !e->addrs) {
        centry_free(e);
        return; /* a cache that cannot grow is only slower */
    }
    for (char *p = e->name; *p; p++) *p = (char)tolower((unsigned char)*p);
    memcpy(e->addrs, addrs, count * sizeof *addrs);
    e->count = count;
    e->family = family;
    e->expires = ll_now() + ttl;
    e->next = r->cache;
    r->cache = e;
    r->ncache++;
}

void ll_dns_cache_clear(ll_loop *loop) {
    loop = ll__loop_or_current(loop);
    resolver *r = loop ? loop->dns : NULL;
    if (!r) return;
    while (r->cache) {
        centry *e = r->cache;
        r->cache = e->next;
        centry_free(e);
    }
    r->ncache = 0;
}

/* ---- driving c-ares from libev ---- */

static void arm_timer(resolver *r) {
    struct timeval tv;
    ev_timer_stop(r->loop->ev, &r->timer);
    if (!r->channel || !ares_timeout(r->channel, NULL, &tv)) return;
    ev_timer_set(&r->timer, (double)tv.tv_sec + (double)tv.tv_usec * 1e-6, 0.);
    ev_timer_start(r->loop->ev, &r->timer);
}

/* Drop detached queries when no live one is left (see the design notes). Outside c-ares only. */
static void reap(resolver *r) {
    if (r->depth || r->nlive || !r->pending.head) return;
    r->depth++;
    ares_cancel(r->channel); /* each query's callback runs now with ARES_ECANCELLED */
    r->depth--;
    arm_timer(r);
}

static void on_sock(struct ev_loop *ev, ev_io *w, int revents) {
    (void)ev;
    sockw *s = (sockw *)w;
    resolver *r = s->r;
    ares_socket_t fd = w->fd;
    r->depth++;
    ares_process_fd(r->channel, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD); /* may free s */
    r->depth--;
    arm_timer(r);
    reap(r);
}

static void on_timer(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)ev, (void)revents;
    resolver *r = w->data;
    r->depth++;
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    r->depth--;
    arm_timer(r);
    reap(r);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable) {
    resolver *r = data;
    sockw **pp = &r->socks;
    while (*pp && (*pp)->io.fd != fd) pp = &(*pp)->next;
    sockw *s = *pp;
    if (!readable && !writable) { /* c-ares is closing the socket: forget it first */
        if (s) {
            ev_io_stop(r->loop->ev, &s->io);
            *pp = s->next;
            ll__free(s);
        }
        return;
    }
    int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    if (!s) {
        s = ll__calloc(1, sizeof *s);
        if (!s) return; /* the query then times out (ares_timeout's timer still runs) */
        s->r = r;
        s->next = r->socks;
        r->socks = s;
        ev_io_init(&s->io, on_sock, fd, events);
    } else {
        ev_io_stop(r->loop->ev, &s->io);
        ev_io_set(&s->io, fd, events);
    }
    ev_io_start(r->loop->ev, &s->io);
}

static int resolver_get(ll_loop *loop, resolver **out, const char **why) {
    if (loop->dns) {
        *out = loop->dns;
        return 0;
    }
    pthread_once(&ares_once, ares_global_init);
    if (ares_init_rc != ARES_SUCCESS) {
        *why = ares_strerror(ares_init_rc);
        return ares_init_rc == ARES_ENOMEM ? LL_ENOMEM : LL_EDNS;
    }
    resolver *r = ll__calloc(1, sizeof *r);
    if (!r) return LL_ENOMEM;
    r->loop = loop;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = r;
    int rc = ares_init_options(&r->channel, &o, ARES_OPT_SOCK_STATE_CB);
    if (rc != ARES_SUCCESS) {
        ll__free(r);
        *why = ares_strerror(rc);
        return rc == ARES_ENOMEM ? LL_ENOMEM : LL_EDNS;
    }
    ev_timer_init(&r->timer, on_timer, 0., 0.);
    r->timer.data = r;
    loop->dns = r;
    *out = r;
    return 0;
}

void ll__dns_free(ll_loop *loop) {
    resolver *r = loop->dns;
    if (!r) return;
    r->depth++;
    ares_destroy(r->channel); /* pending queries are called back with ARES_EDESTRUCTION */
    r->depth--;
    ev_timer_stop(loop->ev, &r->timer);
    while (r->socks) { /* normally closed through sock_state already */
        sockw *s = r->socks;
        r->socks = s->next;
        ev_io_stop(loop->ev, &s->io);
        ll__free(s);
    }
    ll_dns_cache_clear(loop);
    loop->dns = NULL;
    ll__free(r);
}

int ll_dns_set_servers(ll_loop *loop, const char *servers) {
    loop = ll__loop_or_current(loop);
    if (!loop || !servers || !*servers) return LL_EINVAL;
    resolver *r;
    const char *why = NULL;
    int rc = resolver_get(loop, &r, &why);
    if (rc) return rc;
    rc = ares_set_servers_ports_csv(r->channel, servers);
    if (rc != ARES_SUCCESS) return rc == ARES_ENOMEM ? LL_ENOMEM : LL_EINVAL;
    ll_dns_cache_clear(loop);
    return 0;
}

/* ---- lookups ---- */

static void query_unlink(query *q) {
    resolver *r = q->r;
    ll__list_remove(&r->pending, &q->link);
    if (q->f) r->nlive--;
}

static void query_free(query *q) {
    ll_future_free(q->f);
    ll__free(q->name);
    ll__free(q);
}

static int map_status(int status) {
    switch (status) {
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
        return LL_ENOTFOUND;
    case ARES_ENOMEM:
        return LL_ENOMEM;
    case ARES_EBADNAME:
        return LL_EINVAL;
    case ARES_EDESTRUCTION:
        return LL_ESHUTDOWN;
    case ARES_ECANCELLED:
        return LL_ECANCELED;
    default:
        return LL_EDNS;
    }
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res) {
    (void)timeouts;
    query *q = arg;
    resolver *r = q->r;
    query_unlink(q);
    ll_future *f = q->f;
    if (!f) {
        /* the future was cancelled: nobody wants the answer */
    } else if (status == ARES_SUCCESS && res) {
        size_t n = 0;
        double ttl = TTL_MAX;
        for (struct ares_addrinfo_node *nd = res->nodes; nd; nd = nd->ai_next)
            if ((nd->ai_family == AF_INET || nd->ai_family == AF_INET6) &&
                nd->ai_addrlen <= sizeof(struct sockaddr_storage))
                n++;
        ll_addr *addrs = n ? ll__calloc(n, sizeof *addrs) : NULL;
        if (n == 0) {
            ll_future_fail(f, LL_ENOTFOUND, "resolve %s: host name not found", q->name);
        } else if (!addrs) {
            ll_future_fail(f, LL_ENOMEM, "resolve %s: out of memory", q->name);
        } else {
            size_t i = 0;
            for (struct ares_addrinfo_node *nd = res->nodes; nd; nd = nd->ai_next) {
                if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
                    nd->ai_addrlen > sizeof(struct sockaddr_storage))
                    continue;
                memcpy(&addrs[i].sa, nd->ai_addr, nd->ai_addrlen);
                addrs[i].len = nd->ai_addrlen;
                if (nd->ai_ttl < ttl) ttl = nd->ai_ttl;
                i++;
            }
            cache_put(r, q->name, q->family, addrs, n, ttl);
            resolve_with(f, q->name, addrs, n, q->port);
            ll__free(addrs);
        }
    } else {
        int code = map_status(status);
        if (code == LL_ENOTFOUND)
            ll_future_fail(f, code, "resolve %s: host name not found", q->name);
        else
            ll_future_fail(f, code, "resolve %s: %s", q->name, ares_strerror(status));
    }
    if (res) ares_freeaddrinfo(res);
    query_free(q);
}

static void query_cancel(ll_future *f, void *arg) {
    query *q = arg;
    resolver *r = q->r;
    ll_future_set_cancelled(f);
    r->nlive--;
    ll_future_free(q->f);
    q->f = NULL; /* on_answer frees the query whenever c-ares calls back */
    reap(r);
}

ll_future *ll_resolve(const char *host, uint16_t port, const ll_resolve_opts *opts) {
    ll_loop *loop = ll__loop_or_current(opts ? opts->loop : NULL);
    int family = opts ? opts->family : AF_UNSPEC;
    if (!loop) return NULL;
    if (!host || !*host) return ll_future_failed(loop, LL_EINVAL, "resolve: empty host name");
    /* no DNS name holds a space or a control character; refuse before it reaches a message (a
     * newline would forge a log line) or the wire (fuzz_pg_conninfo: a host from a conninfo) */
    for (const unsigned char *c = (const unsigned char *)host; *c; c++)
        if (*c <= ' ' || *c == 0x7f)
            return ll_future_failed(loop, LL_EINVAL,
                                    "resolve: host name contains a space or control character "
                                    "(byte 0x%02x at offset %zu)", *c,
                                    (size_t)(c - (const unsigned char *)host));
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return ll_future_failed(loop, LL_EAFNOSUPPORT, "resolve %s: unsupported address family %d",
                                host, family);
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "resolve");
    ll_addr a;
    if (ll__addr_parse_numeric(host, &a)) {
        if (family != AF_UNSPEC && a.sa.ss_family != family)
            ll_future_fail(f, LL_ENOTFOUND, "resolve %s: not an %s address", host,
                           family == AF_INET ? "IPv4" : "IPv6");
        else
            resolve_with(f, host, &a, 1, port);
        return f;
    }
    if (is_invalid_tld(host)) {
        ll_future_fail(f, LL_ENOTFOUND, "resolve %s: host name not found", host);
        return f;
    }
    const char *why = NULL;
    resolver *r;
    int rc = resolver_get(loop, &r, &why);
    if (rc) {
        ll_future_fail(f, rc, "resolve %s: cannot start the resolver: %s", host,
                       why ? why : ll_strerror(rc));
        return f;
    }
    centry *e = cache_find(r, host, family);
    if (e) {
        resolve_with(f, host, e->addrs, e->count, port);
        return f;
    }
    query *q = ll__calloc(1, sizeof *q);
    if (!q || !(q->name = ll__strdup(host))) {
        ll__free(q);
        ll_future_fail(f, LL_ENOMEM, "resolve %s: out of memory", host);
        return f;
    }
    q->r = r;
    q->f = ll_future_ref(f);
    q->family = family;
    q->port = port;
    ll__list_push_front(&r->pending, &q->link);
    r->nlive++;
    ll_future_on_cancel(f, query_cancel, q);
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    r->depth++;
    ares_getaddrinfo(r->channel, host, NULL, &hints, on_answer, q); /* may call back at once */
    r->depth--;
    arm_timer(r);
    return f;
}
