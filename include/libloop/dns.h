/*
 * libloop/dns.h — name resolution on the loop (c-ares driven by the loop's watchers).
 *
 * A lookup never blocks the loop and never parks a thread: it honours the awaiting task's deadline
 * and cancellation like any other future. Numeric addresses are answered at once without a query,
 * /etc/hosts before DNS, and names under the reserved ".invalid" domain fail at once (RFC 6761).
 * Answers are kept in a small per-loop cache for their DNS time-to-live (at most 5 minutes).
 *
 * Errors: LL_ENOTFOUND ("resolve nonexistent.invalid: host name not found") when the name has no
 * address of the requested family, LL_EDNS for every other resolver failure (no server answered,
 * malformed reply, ...), LL_EINVAL for an empty name, LL_ENOMEM.
 *
 * Ownership: the value of a resolve future is an ll_addrinfo owned by the future (destroyed with
 * it); ll_future_take() it and free it with ll_addrinfo_free() to keep it longer.
 */
#ifndef LIBLOOP_DNS_H
#define LIBLOOP_DNS_H

#include <sys/socket.h>
#include "libloop/common.h"
#include "libloop/future.h"

LL_BEGIN_DECLS

/* One socket address: ready for connect()/bind(). */
typedef struct ll_addr {
    struct sockaddr_storage sa;
    socklen_t len;
} ll_addr;

/* The answer to a lookup: `count` addresses (count >= 1) in the resolver's preference order
 * (RFC 6724), each with the port asked for. `name` is the host name looked up. */
typedef struct ll_addrinfo {
    char *name;
    size_t count;
    ll_addr *addrs;
} ll_addrinfo;

/* Options of a lookup; NULL or zero fields: the defaults. */
typedef struct ll_resolve_opts {
    ll_loop *loop; /* NULL: the current loop */
    int family;    /* AF_UNSPEC (0: IPv4 and IPv6), AF_INET or AF_INET6 */
} ll_resolve_opts;

/* Resolve `host` for `port`. The future may already be settled when the call returns (numeric
 * address, cache hit, .invalid). Cancelling it stops waiting at once; nothing is leaked even though
 * c-ares may still answer later. NULL on out of memory or when there is no loop. */
LL_EXPORT ll_future *ll_resolve(const char *host, uint16_t port, const ll_resolve_opts *opts);

/* Free an ll_addrinfo taken from a resolve future. NULL: no-op. */
LL_EXPORT void ll_addrinfo_free(ll_addrinfo *ai);

/* Write "127.0.0.1:5432", "[::1]:443" or the path of a Unix socket into buf (always terminated);
 * return buf. */
LL_EXPORT const char *ll_addr_format(const struct sockaddr *sa, socklen_t len, char *buf,
                                     size_t size);

/* Use these DNS servers for the loop's lookups instead of /etc/resolv.conf's: a comma-separated
 * list of "ip", "ip:port" or "[ipv6]:port" (a private resolver, or a test's fake server). Clears
 * the cache. 0, LL_EINVAL for a malformed list, LL_ENOMEM, or LL_EDNS if the resolver cannot
 * start. */
LL_EXPORT int ll_dns_set_servers(ll_loop *loop, const char *servers);

/* Forget every cached answer of the loop (NULL: the current loop). */
LL_EXPORT void ll_dns_cache_clear(ll_loop *loop);

LL_END_DECLS

#endif
