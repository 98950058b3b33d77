/*
 * cluster.c — Redis Cluster (libloop/redis_cluster.h): the slot map, one connection per node,
 * and the routing loop that follows MOVED/ASK and retries TRYAGAIN/CLUSTERDOWN.
 *
 * Design notes:
 * - Each command runs as a small task of its own ("worker"): the routing loop awaits (connects,
 *   redirects, backoff, re-reading the map) and reads like the algorithm in the cluster spec. The
 *   caller's future is a plain future the worker settles with the final node reply
 *   (ll__redis_forward keeps the reply and the server's error text); cancelling it cancels the
 *   worker. The worker owns copies of the arguments, so promise 1 holds. It inherits the caller's
 *   deadline (spawned from the caller's task), so promise 2 holds for every await in it.
 * - Node connections are ordinary ll_redis_conns with no_reconnect: a node that died stays dead to
 *   us and the next command re-reads the map instead of queueing on a reconnecting link to a
 *   master that may never come back. A connect is single-flight per node (an ll_event wakes the
 *   other tasks that want the same node).
 * - The map is re-read single-flight too, at most once per 100 ms when MOVED asks for it, and
 *   before every retry of a retryable error: a promoted replica is found that way.
 * - Nodes are never freed before the cluster (a handful per cluster); shards (slot ranges) are
 *   replaced wholesale on each refresh, so no code holds a shard across an await.
 * - The map is also re-read every refresh_interval by a small task of its own ("watch"), woken
 *   early when a node link fails: a failover or a reshard is seen even by a client that sends
 *   nothing, and before its next command pays for it. The watch holds a reference; close cancels it.
 * - The cluster is reference-counted: the handle, each worker and each connect/refresh task hold
 *   one; ll_redis_cluster_close marks it closed, closes the node connections (what waits on them
 *   fails with LL_ECLOSED), wakes every waiter, and the last reference frees it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster_internal.h"
#include "libloop/redis_cluster.h"
#include "redis_internal.h"

void ll__cluster_ref(ll_redis_cluster *c) { c->refs++; }

void ll__cluster_unref(ll_redis_cluster *c) {
    if (--c->refs) return;
    for (ll__cnode *n = c->nodes, *next; n; n = next) {
        next = n->next;
        ll_redis_close(n->conn);
        ll_redis_pool_free(n->pool);
        ll_event_free(n->ready);
        free(n);
    }
    free(c->shards);
    ll_event_free(c->refreshed);
    ll_event_free(c->poke);
    free(c->user);
    free(c->password);
    free(c->client_name);
    free(c);
}

static ll__cnode *node_get(ll_redis_cluster *c, const char *host, int port) {
    char addr[80];
    snprintf(addr, sizeof addr, "%s:%d", host, port);
    for (ll__cnode *n = c->nodes; n; n = n->next)
        if (!strcmp(n->addr, addr)) return n;
    if (strlen(host) >= sizeof ((ll__cnode *)0)->host || port <= 0 || port > 65535) return NULL;
    ll__cnode *n = calloc(1, sizeof *n);
    if (!n || !(n->ready = ll_event_new())) {
        free(n);
        return NULL;
    }
    snprintf(n->addr, sizeof n->addr, "%s", addr);
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = (uint16_t)port;
    n->next = c->nodes;
    c->nodes = n;
    c->nnodes++;
    return n;
}

/* "host:port" (IPv6 as "[::1]:port" or the last colon) to a node. */
static ll__cnode *node_by_addr(ll_redis_cluster *c, const char *addr) {
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon) return NULL;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof host) return NULL;
    memcpy(host, h, hl);
    host[hl] = 0;
    return node_get(c, host, atoi(colon + 1));
}

/* A connected link to node n, made if needed (single-flight). */
static int node_conn(ll_redis_cluster *c, ll__cnode *n, ll_redis_conn **out, char *msg, size_t msgn) {
    for (;;) {
        if (c->closed) {
            snprintf(msg, msgn, "redis cluster: closed");
            return LL_ECLOSED;
        }
        if (n->conn) {
            if (ll_redis_is_connected(n->conn)) {
                *out = n->conn;
                return 0;
            }
            ll_redis_close(n->conn); /* lost for good (no_reconnect): its waiters already failed */
            n->conn = NULL;
        }
        if (n->connecting) {
            /* Someone else is connecting: share its outcome rather than start a second attempt. */
            int rc = ll_event_wait(n->ready);
            if (rc) return rc;
            if (!n->conn && !n->connecting && !c->closed) {
                snprintf(msg, msgn, "%s", n->last_msg);
                return n->last_err ? n->last_err : LL_EREDIS_CONN;
            }
            continue;
        }
        n->connecting = true;
        ll_event_clear(n->ready);
        ll_redis_opts o = c->node_opts;
        o.loop = c->loop;
        o.host = n->host;
        o.port = n->port;
        o.unix_path = NULL;
        o.db = 0;
        o.no_reconnect = true;
        ll_future *f = ll_redis_connect(NULL, &o);
        int rc = f ? ll_await(f) : LL_ENOMEM;
        ll_redis_conn *conn = rc == 0 ? ll_future_take(f) : NULL;
        if (rc) snprintf(n->last_msg, sizeof n->last_msg, "%s", f ? ll_future_errmsg(f) : "out of memory");
        ll_future_free(f);
        if (conn && c->opts.read_from_replicas) {
            ll_future *r = ll_redis_commandf(conn, "READONLY");
            rc = r ? ll_await(r) : LL_ENOMEM;
            if (rc) {
                snprintf(n->last_msg, sizeof n->last_msg, "READONLY on %s: %s", n->addr,
                         r ? ll_future_errmsg(r) : "out of memory");
                ll_redis_close(conn);
                conn = NULL;
            }
            ll_future_free(r);
        }
        if (conn && c->closed) {
            ll_redis_close(conn);
            conn = NULL;
            rc = LL_ECLOSED;
        }
        n->conn = conn;
        n->last_err = rc;
        n->connecting = false;
        ll_event_set(n->ready);
        if (rc && rc != LL_ECLOSED && rc != LL_ECANCELED && rc != LL_ETIMEDOUT) ll__cluster_node_failed(c);
        if (rc) {
            snprintf(msg, msgn, "%s", n->last_msg);
            return rc;
        }
    }
}

/* ---- the slot map ---- */

static const char *reply_str(const ll_redis_reply *r, size_t *len) {
    const char *s = NULL;
    if (ll_redis_reply_string(r, &s, len)) return NULL;
    return s;
}

static long long reply_int(const ll_redis_reply *r) {
    long long v = -1;
    ll_redis_reply_integer(r, &v);
    return v;
}

static ll__cnode *node_of_entry(ll_redis_cluster *c, const ll_redis_reply *e, const ll__cnode *asked) {
    if (ll_redis_reply_len(e) < 2) return NULL;
    size_t hl = 0;
    const char *host = reply_str(ll_redis_reply_element(e, 0), &hl);
    long long port = reply_int(ll_redis_reply_element(e, 1));
    char h[64];
    if (!host || hl == 0 || hl >= sizeof h || !strcmp(host, "?")) snprintf(h, sizeof h, "%s", asked->host);
    else {
        memcpy(h, host, hl);
        h[hl] = 0;
    }
    return node_get(c, h, (int)port);
}

/* Install the map from a CLUSTER SLOTS reply. 0 or LL_EREDIS_PROTO. */
static int install_map(ll_redis_cluster *c, const ll_redis_reply *r, const ll__cnode *asked) {
    size_t n = ll_redis_reply_len(r);
    if (ll_redis_reply_type(r) != LL_REDIS_ARRAY || n == 0) return LL_EREDIS_PROTO;
    ll__shard *sh = calloc(n, sizeof *sh);
    ll__shard **map = calloc(LL_CLUSTER_SLOTS, sizeof *map); /* 128 KiB: never on a task's stack */
    if (!sh || !map) {
        free(sh);
        free(map);
        return LL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const ll_redis_reply *e = ll_redis_reply_element(r, i);
        size_t en = ll_redis_reply_len(e);
        if (en < 3) goto bad;
        long long lo = reply_int(ll_redis_reply_element(e, 0)), hi = reply_int(ll_redis_reply_element(e, 1));
        if (lo < 0 || hi < lo || hi >= LL_CLUSTER_SLOTS) goto bad;
        sh[i].master = node_of_entry(c, ll_redis_reply_element(e, 2), asked);
        if (!sh[i].master) goto bad;
        for (size_t k = 3; k < en && sh[i].nrep < LL_CLUSTER_MAX_REPLICAS; k++) {
            ll__cnode *rn = node_of_entry(c, ll_redis_reply_element(e, k), asked);
            if (rn) sh[i].replicas[sh[i].nrep++] = rn;
        }
        for (long long s = lo; s <= hi; s++) map[s] = &sh[i];
    }
    free(c->shards);
    c->shards = sh;
    c->nshards = n;
    memcpy(c->slot, map, LL_CLUSTER_SLOTS * sizeof *map);
    free(map);
    return 0;
bad:
    free(sh);
    free(map);
    return LL_EREDIS_PROTO;
}

/* Re-read the map from the first node that answers (single-flight). */
int ll__cluster_refresh(ll_redis_cluster *c, char *msg, size_t msgn) {
    if (c->refreshing) {
        int rc = ll_event_wait(c->refreshed);
        if (rc) return rc;
        snprintf(msg, msgn, "%s", c->refresh_msg);
        return c->refresh_rc;
    }
    c->refreshing = true;
    ll_event_clear(c->refreshed);
    int rc = LL_EREDIS_CLUSTER;
    snprintf(c->refresh_msg, sizeof c->refresh_msg, "redis cluster: no node known");
    /* Nodes with a live link first: they answer at once. */
    for (int pass = 0; pass < 2 && rc != 0; pass++) {
        for (ll__cnode *n = c->nodes; n && rc != 0; n = n->next) {
            bool live = n->conn && ll_redis_is_connected(n->conn);
            if (live != (pass == 0)) continue;
            ll_redis_conn *conn;
            char m[512];
            int r = node_conn(c, n, &conn, m, sizeof m);
            if (r == LL_ECANCELED || r == LL_ETIMEDOUT || r == LL_ECLOSED) {
                rc = r;
                snprintf(c->refresh_msg, sizeof c->refresh_msg, "%s", m);
                break;
            }
            if (r) {
                snprintf(c->refresh_msg, sizeof c->refresh_msg, "redis cluster: slot map: %.400s", m);
                continue;
            }
            ll_future *f = ll_redis_commandf(conn, "CLUSTER SLOTS");
            r = f ? ll_await(f) : LL_ENOMEM;
            if (r == 0) {
                r = install_map(c, ll_redis_reply_of(f), n);
                if (r) snprintf(c->refresh_msg, sizeof c->refresh_msg, "redis cluster: %s: bad CLUSTER SLOTS reply",
                                n->addr);
            } else {
                snprintf(c->refresh_msg, sizeof c->refresh_msg, "redis cluster: slot map from %s: %s", n->addr,
                         f ? ll_future_errmsg(f) : "out of memory");
            }
            ll_future_free(f);
            if (r == LL_ECANCELED || r == LL_ETIMEDOUT) {
                rc = r;
                break;
            }
            if (r == 0) rc = 0;
        }
    }
    if (rc == 0) {
        c->st.refreshes++;
        c->stale = false;
        c->refresh_msg[0] = 0;
    }
    c->last_refresh = ll_now();
    c->refresh_rc = rc;
    c->refreshing = false;
    ll_event_set(c->refreshed);
    snprintf(msg, msgn, "%s", c->refresh_msg);
    return rc;
}

/* ---- routing one command ---- */

static bool retryable_error(const char *e) {
    static const char *words[] = {"TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN"};
    if (!e) return false;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i]);
        if (!strncmp(e, words[i], n) && (e[n] == ' ' || e[n] == 0)) return true;
    }
    return false;
}

static double retry_budget(const ll_redis_cluster *c);

typedef struct route {
    int argc;
    const char *const *argv;
    const size_t *lens;
    const ll__cmd_info *info;
    int slot;
} route;

/* Run one single-slot command; *result is the settled node future (the caller forwards and frees
 * it), or NULL with msg filled when no node answered. */
static int exec_one(ll_redis_cluster *c, const route *rt, ll_future **result, char *msg, size_t msgn) {
    *result = NULL;
    const ll_redis_cluster_opts *o = &c->opts;
    int max_redirects = o->max_redirects > 0 ? o->max_redirects : 16;
    ll_time retry_end;
    double backoff, backoff_max;
    ll__cluster_retry_params(c, &retry_end, &backoff, &backoff_max);
    ll__cnode *target = NULL;
    bool asking = false, no_replica = false;
    int redirects = 0;
    for (;;) {
        if (c->closed) {
            snprintf(msg, msgn, "redis cluster: closed");
            return LL_ECLOSED;
        }
        if (c->stale && ll_now() - c->last_refresh > 0.1) {
            int r = ll__cluster_refresh(c, msg, msgn);
            if (r == LL_ECANCELED || r == LL_ETIMEDOUT) return r;
        }
        ll__cnode *n = target;
        bool replica = false;
        if (!n) {
            if (rt->slot < 0) {
                n = c->nshards ? c->shards[c->rr++ % c->nshards].master : NULL;
            } else {
                ll__shard *s = c->slot[rt->slot];
                if (s && o->read_from_replicas && rt->info->readonly && s->nrep && !no_replica) {
                    n = s->replicas[c->rr++ % (unsigned)s->nrep];
                    replica = true;
                } else if (s) {
                    n = s->master;
                }
            }
        }
        int rc;
        if (!n) {
            rc = LL_EREDIS_CLUSTER;
            snprintf(msg, msgn, "redis cluster: no node serves slot %d", rt->slot);
            goto retry;
        }
        ll_redis_conn *conn;
        rc = node_conn(c, n, &conn, msg, msgn);
        if (rc == LL_ECANCELED || rc == LL_ETIMEDOUT || rc == LL_ECLOSED || rc == LL_ENOMEM) return rc;
        if (rc) {
            if (replica) {
                no_replica = true;
                continue;
            }
            goto retry;
        }
        if (asking) ll_future_free(ll_redis_commandf(conn, "ASKING")); /* written just before */
        ll_future *f = ll_redis_command(conn, rt->argc, rt->argv, rt->lens);
        if (!f) return LL_ENOMEM;
        if (replica) c->st.replica_reads++;
        rc = ll_await(f);
        if (rc == LL_EREDIS_REPLY) {
            const char *e = ll_redis_error(f);
            char addr[80];
            int s;
            if (ll__cluster_parse_redirect(e, "MOVED", &s, addr, sizeof addr) ||
                ll__cluster_parse_redirect(e, "ASK", &s, addr, sizeof addr)) {
                bool ask = e[0] == 'A';
                if (++redirects > max_redirects) {
                    snprintf(msg, msgn, "redis cluster: more than %d redirects (last: %s)", max_redirects, e);
                    ll_future_free(f);
                    return LL_EREDIS_CLUSTER;
                }
                ask ? c->st.ask++ : c->st.moved++;
                if (!ask) c->stale = true;
                target = node_by_addr(c, addr);
                asking = ask;
                ll_future_free(f);
                if (!target) {
                    snprintf(msg, msgn, "redis cluster: bad redirect address \"%s\"", addr);
                    return LL_EREDIS_CLUSTER;
                }
                continue;
            }
            if (retryable_error(e)) {
                snprintf(msg, msgn, "%s", ll_future_errmsg(f));
                ll_future_free(f);
                goto retry;
            }
        }
        if (rc == LL_EREDIS_CONN || rc == LL_ECLOSED) { /* the node went away */
            c->stale = true;
            ll__cluster_node_failed(c);
        }
        *result = f;
        return rc;
    retry:
        c->st.retries++;
        target = NULL;
        asking = false;
        int r = ll__cluster_backoff(c, retry_end, &backoff, backoff_max);
        if (r == LL_EREDIS_CLUSTER) {
            char m[512];
            snprintf(m, sizeof m, "%s", msg);
            snprintf(msg, msgn, "redis cluster: gave up after %.1f s of retries: %.400s", retry_budget(c), m);
        }
        if (r) return r;
    }
}

static double retry_budget(const ll_redis_cluster *c) {
    return c->opts.retry_timeout == 0 ? 10.0 : c->opts.retry_timeout;
}

void ll__cluster_retry_params(const ll_redis_cluster *c, ll_time *end, double *backoff, double *backoff_max) {
    double budget = retry_budget(c);
    *end = budget < 0 ? LL_NEVER : ll_now() + budget;
    *backoff = c->opts.backoff_initial > 0 ? c->opts.backoff_initial : 0.02;
    *backoff_max = c->opts.backoff_max > 0 ? c->opts.backoff_max : 0.5;
}

int ll__cluster_backoff(ll_redis_cluster *c, ll_time end, double *backoff, double backoff_max) {
    if (c->closed) return LL_ECLOSED;
    if (ll_now() + *backoff > end) return LL_EREDIS_CLUSTER;
    int r = ll_sleep(*backoff * (0.5 + 0.5 * (double)rand() / RAND_MAX));
    if (r) return r;
    *backoff = *backoff * 2 > backoff_max ? backoff_max : *backoff * 2;
    char m[512];
    r = ll__cluster_refresh(c, m, sizeof m);
    if (r == LL_ECANCELED || r == LL_ETIMEDOUT || r == LL_ECLOSED) return r;
    return 0;
}

/* ---- a command: one worker task ---- */

typedef struct job {
    ll_redis_cluster *c;
    int argc;
    char **argv;
    size_t *lens;
    ll_future *out;   /* the caller's future (our reference) */
    ll_future *task;  /* the worker's future (our reference) */
    ll__cmd_info info;
    int slot, slot_a, slot_b;
} job;

static void job_free(job *j) {
    ll__redis_argv_free(j->argc, j->argv, j->lens);
    free(j);
}

/* Split a cross-slot MGET/DEL/EXISTS/UNLINK/TOUCH/MSET per slot, in order of first appearance;
 * run the parts one after another and combine. */
static int exec_split(ll_redis_cluster *c, job *j, ll_redis_reply **combined, ll_future **failed, char *msg,
                      size_t msgn) {
    int step = j->info.split == SPLIT_MSET ? 2 : 1;
    int nkeys = (j->argc - 1) / step;
    int *slots = malloc((size_t)nkeys * sizeof *slots);
    bool *done = calloc((size_t)nkeys, sizeof *done);
    const char **argv = malloc((size_t)j->argc * sizeof *argv);
    size_t *lens = malloc((size_t)j->argc * sizeof *lens);
    int *pos = malloc((size_t)nkeys * sizeof *pos);
    ll_redis_reply *acc = NULL;
    long long sum = 0;
    int rc = LL_ENOMEM;
    if (!slots || !done || !argv || !lens || !pos) goto out;
    if (j->info.split == SPLIT_MGET && !(acc = ll__redis_reply_array((size_t)nkeys))) goto out;
    for (int k = 0; k < nkeys; k++)
        slots[k] = (int)ll_redis_cluster_keyslot(j->argv[1 + k * step], j->lens[1 + k * step]);
    c->st.split++;
    rc = 0;
    for (int k = 0; k < nkeys && rc == 0; k++) {
        if (done[k]) continue;
        int argc = 1, np = 0;
        argv[0] = j->argv[0];
        lens[0] = j->lens[0];
        for (int m = k; m < nkeys; m++) {
            if (done[m] || slots[m] != slots[k]) continue;
            done[m] = true;
            pos[np++] = m;
            for (int w = 0; w < step; w++) {
                argv[argc] = j->argv[1 + m * step + w];
                lens[argc++] = j->lens[1 + m * step + w];
            }
        }
        route rt = {argc, argv, lens, &j->info, slots[k]};
        ll_future *f = NULL;
        rc = exec_one(c, &rt, &f, msg, msgn);
        if (rc) {
            *failed = f;
            break;
        }
        ll_redis_reply *r = ll_redis_reply_of(f);
        if (j->info.split == SPLIT_MGET) {
            if (ll_redis_reply_len(r) != (size_t)np) {
                snprintf(msg, msgn, "redis cluster: MGET part returned %zu values for %d keys", ll_redis_reply_len(r), np);
                rc = LL_EREDIS_PROTO;
            }
            /* Place each value at its key's position; fill missing positions later. */
            for (int q = 0; rc == 0 && q < np; q++) {
                ll_redis_reply *dup = ll__redis_reply_dup(ll_redis_reply_element(r, (size_t)q));
                if (!dup) rc = LL_ENOMEM;
                else {
                    while (acc->len < (size_t)pos[q]) {
                        /* positions before this one not yet known: reserve with nil, replaced below */
                        ll_redis_reply *nil = ll__redis_reply_nil();
                        if (!nil || ll__redis_reply_push(acc, nil)) {
                            ll_redis_reply_free(nil);
                            rc = LL_ENOMEM;
                            break;
                        }
                    }
                    if (rc == 0 && acc->len == (size_t)pos[q]) {
                        if (ll__redis_reply_push(acc, dup)) ll_redis_reply_free(dup), rc = LL_ENOMEM;
                    } else if (rc == 0) {
                        ll_redis_reply_free(acc->elem[pos[q]]);
                        acc->elem[pos[q]] = dup;
                    } else {
                        ll_redis_reply_free(dup);
                    }
                }
            }
        } else if (j->info.split == SPLIT_SUM) {
            long long v = 0;
            if (ll_redis_reply_integer(r, &v)) {
                snprintf(msg, msgn, "redis cluster: %s part did not return an integer", j->argv[0]);
                rc = LL_EREDIS_PROTO;
            }
            sum += v;
        }
        ll_future_free(f);
    }
    if (rc == 0) {
        if (j->info.split == SPLIT_SUM) acc = ll__redis_reply_int(sum);
        else if (j->info.split == SPLIT_MSET) acc = ll__redis_reply_string(LL_REDIS_STATUS, "OK", 2);
        if (!acc) rc = LL_ENOMEM;
    }
out:
    if (rc == 0) *combined = acc;
    else ll_redis_reply_free(acc);
    if (rc == LL_ENOMEM && !msg[0]) snprintf(msg, msgn, "redis cluster: out of memory");
    free(slots);
    free(done);
    free(argv);
    free(lens);
    free(pos);
    return rc;
}

static int worker(void *arg) {
    job *j = arg;
    ll_redis_cluster *c = j->c;
    char msg[512] = "";
    ll_future *f = NULL;
    ll_redis_reply *combined = NULL;
    int rc;
    if (j->slot == -2) {
        rc = exec_split(c, j, &combined, &f, msg, sizeof msg);
    } else {
        route rt = {j->argc, (const char *const *)j->argv, j->lens, &j->info, j->slot};
        rc = exec_one(c, &rt, &f, msg, sizeof msg);
    }
    if (combined) {
        if (ll_future_resolve(j->out, combined, (ll_value_free)ll_redis_reply_free)) ll_redis_reply_free(combined);
    } else if (f) {
        ll__redis_forward(j->out, f);
    } else if (rc == LL_ECANCELED) {
        ll_future_set_cancelled(j->out);
    } else {
        ll_future_fail(j->out, rc ? rc : LL_EREDIS_CLUSTER, "%s", msg[0] ? msg : ll_strerror(rc));
    }
    ll_future_free(f);
    ll_future_free(j->out);
    ll_future_free(j->task);
    job_free(j);
    ll__cluster_unref(c);
    return 0;
}

static void cancel_worker(ll_future *f, void *arg) {
    (void)f;
    ll_future_cancel(((job *)arg)->task);
}

LL_EXPORT ll_future *ll_redis_cluster_command(ll_redis_cluster *c, int argc, const char *const *argv,
                                              const size_t *lens) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_cluster_command: cluster is NULL");
    if (argc <= 0 || !argv)
        return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_cluster_command: no command (argc %d)", argc);
    for (int i = 0; i < argc; i++)
        if (!argv[i]) return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_cluster_command: argv[%d] is NULL", i);
    if (c->closed) return ll_future_failed(c->loop, LL_ECLOSED, "redis cluster: closed");
    job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->argc = argc;
    if (!ll__redis_argv_copy(argc, argv, lens, &j->argv, &j->lens)) goto oom;
    ll__cluster_cmd_info(j->argv[0], j->lens[0], &j->info);
    j->slot = ll__cluster_command_slot(argc, (const char *const *)j->argv, j->lens, &j->info, &j->slot_a, &j->slot_b);
    if (j->slot == -3) {
        ll_future *bad = ll_future_failed(c->loop, LL_EINVAL, "ll_redis_cluster_command: %s: malformed key "
                                          "arguments", j->argv[0]);
        job_free(j);
        return bad;
    }
    if (j->slot == -2 && j->info.split == SPLIT_NONE) {
        ll_future *bad = ll_future_failed(c->loop, LL_EREDIS_CROSSSLOT,
                                          "redis cluster: %s: keys in different hash slots (%d and %d); use "
                                          "a {hash tag} to keep them together",
                                          j->argv[0], j->slot_a, j->slot_b);
        job_free(j);
        return bad;
    }
    j->out = ll_future_new(c->loop);
    if (!j->out) goto oom;
    ll_future_set_label(j->out, "redis cluster command");
    ll_future *ret = ll_future_ref(j->out);
    j->c = c;
    c->refs++;
    ll_spawn_opts so = {.name = "redis cluster command", .loop = c->loop, .stack_size = 64 * 1024};
    j->task = ll_spawn_ex(worker, j, &so);
    if (!j->task || ll_future_done(j->task)) {
        /* no stack: the worker never runs */
        int code = j->task ? ll_future_code(j->task) : LL_ENOMEM;
        ll_future_fail(j->out, code, "redis cluster: could not start the command's task: %s", ll_strerror(code));
        ll_future_free(j->out);
        ll_future_free(j->task);
        job_free(j);
        ll__cluster_unref(c);
        return ret;
    }
    ll_future_on_cancel(j->out, cancel_worker, j);
    return ret;
oom:
    job_free(j);
    return NULL;
}

/* ---- connect, refresh, close, stats ---- */

void ll__cluster_node_failed(ll_redis_cluster *c) {
    c->stale = true;
    if (c->poke) ll_event_set(c->poke);
}

/* Re-read the map every refresh_interval, and soon after a node link failed (at most once per
 * 100 ms: a dead node fails every command sent to it). */
static int watch_task(void *arg) {
    ll_redis_cluster *c = arg;
    double every = c->opts.refresh_interval > 0 ? c->opts.refresh_interval : 5.0;
    while (!c->closed && !ll_task_cancelled()) {
        ll_scope sc;
        ll_scope_enter(&sc, ll_now() + every);
        int rc = ll_event_wait(c->poke);
        ll_scope_exit(&sc);
        if (c->closed || ll_task_cancelled() || (rc && rc != LL_ETIMEDOUT)) break;
        ll_event_clear(c->poke);
        double since = ll_now() - c->last_refresh;
        if (since < 0.1 && ll_sleep(0.1 - since)) break;
        char msg[512];
        rc = ll__cluster_refresh(c, msg, sizeof msg);
        if (rc == LL_ECANCELED || rc == LL_ECLOSED) break;
        if (rc) {
            /* no node answered: commands re-read before they go; the watch itself waits a little
             * longer, so a cluster that is down is not asked ten times a second for nothing */
            c->stale = true;
            if (ll_sleep(every < 0.5 ? every : 0.5)) break;
        }
    }
    ll_future *self = c->watch;
    c->watch = NULL;
    ll_future_free(self);
    ll__cluster_unref(c);
    return 0;
}

static int connect_task(void *arg) {
    ll_redis_cluster *c = arg;
    char msg[512];
    int rc = ll__cluster_refresh(c, msg, sizeof msg);
    if (rc == 0 && c->opts.refresh_interval >= 0) {
        ll_spawn_opts so = {.name = "redis cluster watch", .loop = c->loop, .stack_size = 64 * 1024,
                            .deadline = LL_NEVER}; /* not the connecting task's deadline */
        c->refs++;
        c->watch = ll_spawn_ex(watch_task, c, &so);
        if (!c->watch || ll_future_done(c->watch)) {
            if (c->watch) ll__cluster_unref(c); /* it never ran */
            ll_future_free(c->watch);
            c->watch = NULL;
            rc = LL_ENOMEM;
            snprintf(msg, sizeof msg, "redis cluster: could not start the map watch task");
        }
    }
    if (rc == 0) {
        ll_task_return(c, (ll_value_free)ll_redis_cluster_close);
        return 0;
    }
    ll_redis_cluster_close(c);
    return ll_task_fail(rc, "%s", msg);
}

static char *dup_or_null(const char *s, bool *ok) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *ok = false;
    return d;
}

LL_EXPORT ll_future *ll_redis_cluster_connect(const char *seeds, const ll_redis_cluster_opts *opts) {
    ll_loop *loop = opts && opts->loop ? opts->loop : ll_loop_current();
    if (!seeds || !*seeds) return ll_future_failed(loop, LL_EINVAL, "ll_redis_cluster_connect: seeds is empty");
    ll_redis_cluster *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->loop = loop;
    c->refs = 1;
    if (opts) c->opts = *opts;
    if (opts && opts->node) c->node_opts = *opts->node;
    bool ok = true;
    c->user = dup_or_null(c->node_opts.user, &ok);
    c->password = dup_or_null(c->node_opts.password, &ok);
    c->client_name = dup_or_null(c->node_opts.client_name, &ok);
    c->node_opts.user = c->user;
    c->node_opts.password = c->password;
    c->node_opts.client_name = c->client_name;
    if (opts && opts->pool) c->pool_opts = *opts->pool;
    c->refreshed = ll_event_new();
    c->poke = ll_event_new();
    if (!ok || !c->refreshed || !c->poke) {
        ll__cluster_unref(c);
        return NULL;
    }
    char buf[1024];
    if (strlen(seeds) >= sizeof buf) {
        ll__cluster_unref(c);
        return ll_future_failed(loop, LL_EINVAL, "ll_redis_cluster_connect: seeds too long");
    }
    snprintf(buf, sizeof buf, "%s", seeds);
    for (char *save, *s = strtok_r(buf, ", ", &save); s; s = strtok_r(NULL, ", ", &save)) {
        if (!node_by_addr(c, s)) {
            ll__cluster_unref(c);
            return ll_future_failed(loop, LL_EINVAL, "ll_redis_cluster_connect: bad seed \"%s\" (want host:port)", s);
        }
    }
    ll_spawn_opts so = {.name = "redis cluster connect", .loop = loop};
    ll_future *f = ll_spawn_ex(connect_task, c, &so);
    if (!f) ll__cluster_unref(c);
    return f;
}

static int refresh_task(void *arg) {
    ll_redis_cluster *c = arg;
    char msg[512];
    int rc = ll__cluster_refresh(c, msg, sizeof msg);
    ll__cluster_unref(c);
    return rc ? ll_task_fail(rc, "%s", msg) : 0;
}

LL_EXPORT ll_future *ll_redis_cluster_refresh(ll_redis_cluster *c) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_cluster_refresh: cluster is NULL");
    if (c->closed) return ll_future_failed(c->loop, LL_ECLOSED, "redis cluster: closed");
    c->refs++;
    ll_spawn_opts so = {.name = "redis cluster refresh", .loop = c->loop};
    ll_future *f = ll_spawn_ex(refresh_task, c, &so);
    if (!f) ll__cluster_unref(c);
    return f;
}

LL_EXPORT void ll_redis_cluster_close(ll_redis_cluster *c) {
    if (!c || c->closed) return;
    c->closed = true;
    for (ll__cnode *n = c->nodes; n; n = n->next) {
        ll_redis_close(n->conn);
        n->conn = NULL;
        ll_event_set(n->ready);
    }
    ll_event_set(c->refreshed);
    if (c->watch) ll_future_cancel(c->watch); /* it drops its reference as it ends */
    ll__cluster_unref(c);
}

LL_EXPORT void ll_redis_cluster_get_stats(const ll_redis_cluster *c, ll_redis_cluster_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!c) return;
    *out = c->st;
    out->nodes = c->nnodes;
    for (size_t i = 0; i < c->nshards; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) seen = c->shards[k].master == c->shards[i].master;
        if (!seen) out->masters++;
    }
}

void ll__cluster_node_url(const ll__cnode *n, char *url, size_t len) {
    bool v6 = strchr(n->host, ':') != NULL;
    snprintf(url, len, v6 ? "redis://[%s]:%u" : "redis://%s:%u", n->host, (unsigned)n->port);
}

LL_EXPORT int ll_redis_cluster_node_url(const ll_redis_cluster *c, const char *key, size_t len, char *url,
                                        size_t n) {
    if (!c || !key || !url || n == 0) return LL_EINVAL;
    const ll__shard *sh = c->slot[ll_redis_cluster_keyslot(key, len)];
    if (!sh || !sh->master) return LL_ENOENT;
    const ll__cnode *m = sh->master;
    bool v6 = strchr(m->host, ':') != NULL;
    int w = snprintf(url, n, v6 ? "redis://[%s]:%u" : "redis://%s:%u", m->host, (unsigned)m->port);
    return w < 0 || (size_t)w >= n ? LL_ETOOLARGE : 0;
}
