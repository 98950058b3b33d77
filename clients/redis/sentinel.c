/*
 * sentinel.c — Redis behind Sentinel (libloop/redis_sentinel.h).
 *
 * Design notes:
 * - As in cluster.c, each command is a small task that awaits what routing needs (discovery,
 *   backoff) and settles the caller's future with the master's reply (ll__redis_forward).
 * - Discovery is single-flight (an ll_event wakes the tasks that wait for it): ask each sentinel
 *   for the master's address, connect there with no_reconnect, and believe it only if ROLE says
 *   "master" — right after a failover a sentinel can still name the old master.
 * - A watcher task keeps a subscriber on one sentinel (its own reconnects are the pub/sub
 *   connection's) and drops the master link on +switch-master for our name, so commands stop
 *   going to a demoted master at once instead of at the first READONLY error.
 * - Reference-counted like the cluster handle: the handle, each command task and the watcher.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "libloop/redis_sentinel.h"
#include "redis_internal.h"

#define MAX_SENTINELS 16

struct ll_redis_sentinel {
    ll_loop *loop;
    ll_redis_sentinel_opts opts;
    ll_redis_opts node_opts, sent_opts;
    char *name;
    struct {
        char host[64];
        uint16_t port;
    } sent[MAX_SENTINELS];
    int nsent;
    ll_redis_conn *master;
    char master_addr[80];
    bool discovering;
    ll_event *discovered;
    int disc_rc;
    char disc_msg[512];
    ll_redis_sub *sub;
    ll_future *watcher;
    unsigned refs;
    bool closed;
    ll_redis_sentinel_stats st;
};

static void sent_unref(ll_redis_sentinel *s) {
    if (--s->refs) return;
    ll_redis_close(s->master);
    ll_event_free(s->discovered);
    free(s->name);
    free(s);
}

static void drop_master(ll_redis_sentinel *s) {
    ll_redis_close(s->master);
    s->master = NULL;
    s->master_addr[0] = 0;
}

/* Ask one sentinel; connect to the master it names and check its role. */
static int try_sentinel(ll_redis_sentinel *s, int i, char *msg, size_t msgn) {
    ll_redis_opts so = s->sent_opts;
    so.loop = s->loop;
    so.host = s->sent[i].host;
    so.port = s->sent[i].port;
    so.no_reconnect = true;
    ll_future *f = ll_redis_connect(NULL, &so);
    int rc = f ? ll_await(f) : LL_ENOMEM;
    if (rc) {
        snprintf(msg, msgn, "sentinel %s:%u: %s", so.host, so.port, f ? ll_future_errmsg(f) : "out of memory");
        ll_future_free(f);
        return rc;
    }
    ll_redis_conn *sc = ll_future_take(f);
    ll_future_free(f);
    f = ll_redis_commandf(sc, "SENTINEL GET-MASTER-ADDR-BY-NAME %s", s->name);
    rc = f ? ll_await(f) : LL_ENOMEM;
    ll_redis_reply *r = rc == 0 ? ll_redis_reply_of(f) : NULL;
    char host[64] = "";
    long port = 0;
    if (rc) {
        snprintf(msg, msgn, "sentinel %s:%u: %s", so.host, so.port, f ? ll_future_errmsg(f) : "out of memory");
    } else if (ll_redis_reply_len(r) != 2) {
        rc = LL_EREDIS_REPLY;
        snprintf(msg, msgn, "sentinel %s:%u does not know a master named \"%s\"", so.host, so.port, s->name);
    } else {
        const char *h, *p;
        size_t hl, pl;
        if (ll_redis_reply_string(ll_redis_reply_element(r, 0), &h, &hl) ||
            ll_redis_reply_string(ll_redis_reply_element(r, 1), &p, &pl) || hl >= sizeof host) {
            rc = LL_EREDIS_PROTO;
            snprintf(msg, msgn, "sentinel %s:%u: bad GET-MASTER-ADDR-BY-NAME reply", so.host, so.port);
        } else {
            memcpy(host, h, hl);
            host[hl] = 0;
            port = strtol(p, NULL, 10);
        }
    }
    ll_future_free(f);
    ll_redis_close(sc);
    if (rc) return rc;
    ll_redis_opts mo = s->node_opts;
    mo.loop = s->loop;
    mo.host = host;
    mo.port = (uint16_t)port;
    mo.unix_path = NULL;
    mo.no_reconnect = true;
    f = ll_redis_connect(NULL, &mo);
    rc = f ? ll_await(f) : LL_ENOMEM;
    if (rc) {
        snprintf(msg, msgn, "master %s:%ld (from sentinel %s:%u): %s", host, port, so.host, so.port,
                 f ? ll_future_errmsg(f) : "out of memory");
        ll_future_free(f);
        return rc;
    }
    ll_redis_conn *mc = ll_future_take(f);
    ll_future_free(f);
    f = ll_redis_commandf(mc, "ROLE");
    rc = f ? ll_await(f) : LL_ENOMEM;
    const char *role = NULL;
    size_t rl = 0;
    if (rc == 0) ll_redis_reply_string(ll_redis_reply_element(ll_redis_reply_of(f), 0), &role, &rl);
    if (rc == 0 && !(role && rl == 6 && !memcmp(role, "master", 6))) {
        rc = LL_EREDIS_CONN;
        snprintf(msg, msgn, "%s:%ld, named by sentinel %s:%u, is not (yet) a master", host, port, so.host, so.port);
    } else if (rc) {
        snprintf(msg, msgn, "master %s:%ld: ROLE: %s", host, port, f ? ll_future_errmsg(f) : "out of memory");
    }
    ll_future_free(f);
    if (rc || s->closed) {
        ll_redis_close(mc);
        return rc ? rc : LL_ECLOSED;
    }
    drop_master(s);
    s->master = mc;
    snprintf(s->master_addr, sizeof s->master_addr, "%s:%ld", host, port);
    s->st.discoveries++;
    return 0;
}

static int discover(ll_redis_sentinel *s, char *msg, size_t msgn) {
    if (s->discovering) {
        int rc = ll_event_wait(s->discovered);
        if (rc) return rc;
        snprintf(msg, msgn, "%s", s->disc_msg);
        return s->disc_rc;
    }
    s->discovering = true;
    ll_event_clear(s->discovered);
    int rc = LL_EREDIS_CONN;
    for (int i = 0; i < s->nsent; i++) {
        rc = try_sentinel(s, i, s->disc_msg, sizeof s->disc_msg);
        if (rc == 0 || rc == LL_ECANCELED || rc == LL_ETIMEDOUT || rc == LL_ECLOSED) break;
    }
    s->disc_rc = rc;
    s->discovering = false;
    ll_event_set(s->discovered);
    snprintf(msg, msgn, "%s", s->disc_msg);
    return rc;
}

/* ---- commands ---- */

typedef struct sjob {
    ll_redis_sentinel *s;
    int argc;
    char **argv;
    size_t *lens;
    ll_future *out, *task;
} sjob;

static void sjob_free(sjob *j) {
    ll__redis_argv_free(j->argc, j->argv, j->lens);
    free(j);
}

static int sworker(void *arg) {
    sjob *j = arg;
    ll_redis_sentinel *s = j->s;
    const ll_redis_sentinel_opts *o = &s->opts;
    double budget = o->retry_timeout == 0 ? 10.0 : o->retry_timeout;
    ll_time end = budget < 0 ? LL_NEVER : ll_now() + budget;
    double backoff = o->backoff_initial > 0 ? o->backoff_initial : 0.05;
    double backoff_max = o->backoff_max > 0 ? o->backoff_max : 1.0;
    char msg[512] = "";
    ll_future *f = NULL;
    int rc;
    for (;;) {
        if (s->closed) {
            rc = LL_ECLOSED;
            snprintf(msg, sizeof msg, "redis sentinel: closed");
            break;
        }
        if (s->master && !ll_redis_is_connected(s->master)) drop_master(s);
        rc = s->master ? 0 : discover(s, msg, sizeof msg);
        if (rc == LL_ECANCELED || rc == LL_ETIMEDOUT || rc == LL_ECLOSED) break;
        if (rc == 0 && s->master) {
            f = ll_redis_command(s->master, j->argc, (const char *const *)j->argv, j->lens);
            rc = f ? ll_await(f) : LL_ENOMEM;
            /* READONLY: the master we knew was demoted; nothing ran, so discover and re-send. */
            if (!(rc == LL_EREDIS_REPLY && ll_redis_error_is(f, "READONLY"))) break;
            snprintf(msg, sizeof msg, "%s", ll_future_errmsg(f));
            ll_future_free(f);
            f = NULL;
            drop_master(s);
        }
        s->st.retries++;
        if (ll_now() + backoff > end) {
            char m[512];
            snprintf(m, sizeof m, "%s", msg);
            snprintf(msg, sizeof msg, "redis sentinel: no master for \"%s\" after %.1f s: %.400s", s->name, budget, m);
            rc = LL_EREDIS_CONN;
            break;
        }
        rc = ll_sleep(backoff * (0.5 + 0.5 * (double)rand() / RAND_MAX));
        if (rc) break;
        backoff = backoff * 2 > backoff_max ? backoff_max : backoff * 2;
    }
    if (f && rc == LL_ECLOSED && !s->closed) {
        /* The handle dropped the master link (+switch-master) under this command. */
        ll_future_fail(j->out, LL_EREDIS_CONN, "redis sentinel: the link to the old master was dropped on a "
                       "failover; the command may or may not have run");
    } else if (f) ll__redis_forward(j->out, f);
    else if (rc == LL_ECANCELED) ll_future_set_cancelled(j->out);
    else ll_future_fail(j->out, rc ? rc : LL_EREDIS_CONN, "%s", msg[0] ? msg : ll_strerror(rc));
    ll_future_free(f);
    ll_future_free(j->out);
    ll_future_free(j->task);
    sjob_free(j);
    sent_unref(s);
    return 0;
}

static void cancel_sworker(ll_future *f, void *arg) {
    (void)f;
    ll_future_cancel(((sjob *)arg)->task);
}

LL_EXPORT ll_future *ll_redis_sentinel_command(ll_redis_sentinel *s, int argc, const char *const *argv,
                                               const size_t *lens) {
    if (!s) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_sentinel_command: handle is NULL");
    if (argc <= 0 || !argv)
        return ll_future_failed(s->loop, LL_EINVAL, "ll_redis_sentinel_command: no command (argc %d)", argc);
    for (int i = 0; i < argc; i++)
        if (!argv[i]) return ll_future_failed(s->loop, LL_EINVAL, "ll_redis_sentinel_command: argv[%d] is NULL", i);
    if (s->closed) return ll_future_failed(s->loop, LL_ECLOSED, "redis sentinel: closed");
    sjob *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->argc = argc;
    if (!ll__redis_argv_copy(argc, argv, lens, &j->argv, &j->lens)) goto oom;
    if (!(j->out = ll_future_new(s->loop))) goto oom;
    ll_future *ret = ll_future_ref(j->out);
    j->s = s;
    s->refs++;
    ll_spawn_opts so = {.name = "redis sentinel command", .loop = s->loop, .stack_size = 64 * 1024};
    j->task = ll_spawn_ex(sworker, j, &so);
    if (!j->task || ll_future_done(j->task)) {
        int code = j->task ? ll_future_code(j->task) : LL_ENOMEM;
        ll_future_fail(j->out, code, "redis sentinel: could not start the command's task: %s", ll_strerror(code));
        ll_future_free(j->out);
        ll_future_free(j->task);
        sjob_free(j);
        sent_unref(s);
        return ret;
    }
    ll_future_on_cancel(j->out, cancel_sworker, j);
    return ret;
oom:
    sjob_free(j);
    return NULL;
}

/* ---- the +switch-master watcher ---- */

static int watcher(void *arg) {
    ll_redis_sentinel *s = arg;
    for (int i = 0; !s->closed; i = (i + 1) % s->nsent) {
        ll_redis_opts so = s->sent_opts;
        so.loop = s->loop;
        so.host = s->sent[i].host;
        so.port = s->sent[i].port;
        ll_future *f = ll_redis_sub_connect(NULL, &so, 100);
        if (ll_await(f)) {
            ll_future_free(f);
            if (ll_task_cancelled() || ll_sleep(0.5)) break;
            continue;
        }
        s->sub = ll_future_take(f);
        ll_future_free(f);
        f = ll_redis_subscribe(s->sub, "+switch-master");
        int rc = ll_await(f);
        ll_future_free(f);
        while (rc == 0 && !s->closed) {
            f = ll_redis_sub_next(s->sub);
            rc = ll_await(f);
            ll_redis_message *m = rc == 0 ? ll_redis_message_of(f) : NULL;
            /* "<name> <old-ip> <old-port> <new-ip> <new-port>" */
            size_t nl = strlen(s->name);
            if (m && m->kind == LL_REDIS_MSG_MESSAGE && m->len > nl && !memcmp(m->data, s->name, nl) &&
                m->data[nl] == ' ') {
                s->st.switches++;
                drop_master(s);
            } else if (m && m->kind == LL_REDIS_MSG_RECONNECTED) {
                drop_master(s); /* an event may have been missed: check again */
            }
            ll_future_free(f);
        }
        ll_redis_sub_close(s->sub);
        s->sub = NULL;
        if (ll_task_cancelled()) break;
    }
    sent_unref(s);
    return 0;
}

/* ---- connect, close ---- */

static int sconnect_task(void *arg) {
    ll_redis_sentinel *s = arg;
    char msg[512];
    int rc = discover(s, msg, sizeof msg);
    if (rc) {
        ll_redis_sentinel_close(s);
        return ll_task_fail(rc, "%s", msg);
    }
    s->refs++;
    ll_spawn_opts so = {.name = "redis sentinel watcher", .loop = s->loop, .deadline = LL_NEVER};
    s->watcher = ll_spawn_ex(watcher, s, &so);
    if (!s->watcher) s->refs--;
    ll_task_return(s, (ll_value_free)ll_redis_sentinel_close);
    return 0;
}

LL_EXPORT ll_future *ll_redis_sentinel_connect(const char *sentinels, const char *master_name,
                                               const ll_redis_sentinel_opts *opts) {
    ll_loop *loop = opts && opts->loop ? opts->loop : ll_loop_current();
    if (!sentinels || !*sentinels)
        return ll_future_failed(loop, LL_EINVAL, "ll_redis_sentinel_connect: sentinels is empty");
    if (!master_name || !*master_name || strchr(master_name, ' '))
        return ll_future_failed(loop, LL_EINVAL, "ll_redis_sentinel_connect: bad master_name");
    ll_redis_sentinel *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->loop = loop;
    s->refs = 1;
    if (opts) s->opts = *opts;
    if (opts && opts->node) s->node_opts = *opts->node;
    if (opts && opts->sentinel) s->sent_opts = *opts->sentinel;
    s->name = strdup(master_name);
    s->discovered = ll_event_new();
    if (!s->name || !s->discovered) {
        sent_unref(s);
        return NULL;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", sentinels);
    for (char *save, *p = strtok_r(buf, ", ", &save); p; p = strtok_r(NULL, ", ", &save)) {
        char *colon = strrchr(p, ':');
        long port = colon ? strtol(colon + 1, NULL, 10) : 0;
        if (!colon || colon == p || (size_t)(colon - p) >= sizeof s->sent[0].host || port <= 0 || port > 65535 ||
            s->nsent == MAX_SENTINELS) {
            sent_unref(s);
            return ll_future_failed(loop, LL_EINVAL, "ll_redis_sentinel_connect: bad sentinel \"%s\" (want host:port)", p);
        }
        memcpy(s->sent[s->nsent].host, p, (size_t)(colon - p));
        s->sent[s->nsent].host[colon - p] = 0;
        s->sent[s->nsent++].port = (uint16_t)port;
    }
    ll_spawn_opts so = {.name = "redis sentinel connect", .loop = loop};
    ll_future *f = ll_spawn_ex(sconnect_task, s, &so);
    if (!f) sent_unref(s);
    return f;
}

LL_EXPORT void ll_redis_sentinel_close(ll_redis_sentinel *s) {
    if (!s || s->closed) return;
    s->closed = true;
    drop_master(s);
    ll_event_set(s->discovered);
    if (s->watcher) {
        ll_future_cancel(s->watcher);
        ll_future_free(s->watcher);
        s->watcher = NULL;
    }
    sent_unref(s);
}

LL_EXPORT const char *ll_redis_sentinel_master(const ll_redis_sentinel *s) {
    return s ? s->master_addr : "";
}

LL_EXPORT void ll_redis_sentinel_get_stats(const ll_redis_sentinel *s, ll_redis_sentinel_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (s) *out = s->st;
}
