/*
 * conn.c — the adapter: one ll_redis_conn drives the sans-I/O core (proto.c) over an ll_stream.
 *
 * Design notes:
 * - A manager task per connection runs the link's life as sequential code: connect (libloop's
 *   resolver and streams, TLS included), the setup commands (AUTH, SELECT, CLIENT SETNAME, and
 *   what pub/sub or tracking add), then the read loop; when the link dies it fails what was in
 *   flight, sleeps with exponential backoff and jitter, and starts over. It is spawned with no
 *   deadline of its own: a connection outlives the task that made it.
 * - Commands never wait for the manager: on a ready link a command is formatted straight into the
 *   output buffer and gets the next reply slot; one callback per loop iteration writes the whole
 *   buffer (automatic pipelining: one write for everything the tasks issued meanwhile). While the
 *   link is down or still in setup, commands are held (formatted, with their futures) and written
 *   once the setup has succeeded, so none ever runs unauthenticated or on the wrong database.
 * - Cancelling a written command settles its future at once and leaves its slot in place marked
 *   abandoned: the reply is read and dropped. If no byte arrives for abandon_grace after that, the
 *   peer is taken for stalled and the link is closed (the manager's read wait is re-armed with
 *   that limit by cancelling the pending fill, which loses no data).
 * - Commands in flight when the link dies fail with LL_EREDIS_CONN; nothing is re-sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis_internal.h"

struct rc_held {
    rc_held *next, *prev;
    ll_time at;
    size_t nslots, len;
    rp_slot *slots;
    char *data;
};

static void on_cancel(ll_future *f, void *arg);
static void schedule_flush(ll_redis_conn *c);

const char *ll__rc_peer(const ll_redis_conn *c) { return c->cfg->peer_name; }

void ll__rc_unref(ll_redis_conn *c) {
    if (!c || --c->refs > 0) return;
    ll_future_free(c->mgr);
    ll__rp_ring_free(&c->slots);
    ll__rp_buf_free(&c->out);
    ll__rp_reader_free(c->rd);
    ll_free(c->broken_msg);
    ll_free(c->last_err);
    ll__rc_cfg_free(c->cfg);
    ll_free(c);
}

/* ---- settling slots ---- */

void ll__rc_deliver(ll_redis_conn *c, ll_future *f, ll_redis_reply *r) {
    if (r->type == LL_REDIS_ERROR) {
        if (ll_future_fail_detail(f, LL_EREDIS_REPLY, r, (ll_value_free)ll_redis_reply_free,
                                  "redis %s: %s", ll__rc_peer(c), r->str))
            ll_redis_reply_free(r);
    } else if (ll_future_resolve(f, r, (ll_value_free)ll_redis_reply_free)) {
        ll_redis_reply_free(r);
    }
}

/* Fail one slot's caller (the link is gone or the connection closed). */
static void fail_slot(rp_slot *s, int code, const char *msg) {
    if (s->kind == SLOT_TXEXEC || s->kind == SLOT_TXPART) {
        ll__rtx_on_fail(s, code, msg);
        return;
    }
    if (s->f) {
        if (code == LL_ECANCELED) ll_future_set_cancelled(s->f);
        else ll_future_fail(s->f, code, "%s", msg);
        ll_future_free(s->f);
        s->f = NULL;
    }
}

static void fail_inflight(ll_redis_conn *c, int code, const char *msg) {
    rp_slot *s;
    while ((s = ll__rp_ring_front(&c->slots))) {
        rp_slot copy = *s;
        ll__rp_ring_pop(&c->slots);
        fail_slot(&copy, code, msg);
    }
    c->n_abandoned = 0;
    c->out.len = 0;
}

static void held_unlink(ll_redis_conn *c, rc_held *h) {
    if (h->prev) h->prev->next = h->next;
    else c->held_head = h->next;
    if (h->next) h->next->prev = h->prev;
    else c->held_tail = h->prev;
    c->nheld--;
}

static void fail_held(ll_redis_conn *c, int code, const char *msg, ll_time older_than) {
    rc_held *h = c->held_head;
    while (h) {
        rc_held *next = h->next;
        if (h->at <= older_than) {
            held_unlink(c, h);
            for (size_t i = 0; i < h->nslots; i++) fail_slot(&h->slots[i], code, msg);
            ll_free(h);
        }
        h = next;
    }
}

/* ---- submitting ---- */

static void arm_cancel(ll_redis_conn *c, const rp_slot *slots, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (slots[i].f) {
            ll_future_ref(slots[i].f);
            ll_future_on_cancel(slots[i].f, on_cancel, c);
        }
    }
}

/* The manager waits on a fill without a limit; make it re-read the limits. */
static void rearm_read(ll_redis_conn *c) {
    if (c->read_f) {
        c->rearm = true;
        ll_future_cancel(c->read_f);
    }
}

/* The command bytes of slots are in c->out and the ring has room for them: take the slots. */
static void commit_slots(ll_redis_conn *c, const rp_slot *slots, size_t n) {
    bool was_empty = c->slots.n == 0;
    for (size_t i = 0; i < n; i++) ll__rp_ring_push(&c->slots, slots[i]);
    c->commands += n;
    arm_cancel(c, slots, n);
    if (was_empty) {
        c->progress_at = ll_now();
        if (c->cfg->reply_timeout > 0) rearm_read(c);
    }
    schedule_flush(c);
}

static int write_now(ll_redis_conn *c, const char *data, size_t len, const rp_slot *slots,
                     size_t n) {
    if (ll__rp_ring_reserve(&c->slots, n)) return LL_ENOMEM;
    if (ll__rp_buf_append(&c->out, data, len)) return LL_ENOMEM;
    commit_slots(c, slots, n);
    return 0;
}

int ll__rc_submit_multi(ll_redis_conn *c, const char *data, size_t len, const rp_slot *slots,
                        size_t n) {
    if (c->state == RC_CLOSED || c->owner_closed) return LL_ECLOSED;
    if (c->state == RC_READY) return write_now(c, data, len, slots, n);
    rc_held *h = ll_malloc(sizeof *h + n * sizeof(rp_slot) + len);
    if (!h) return LL_ENOMEM;
    h->slots = (rp_slot *)(h + 1);
    h->data = (char *)(h->slots + n);
    memcpy(h->slots, slots, n * sizeof(rp_slot));
    memcpy(h->data, data, len);
    h->nslots = n;
    h->len = len;
    h->at = ll_now();
    h->next = NULL;
    h->prev = c->held_tail;
    if (c->held_tail) c->held_tail->next = h;
    else c->held_head = h;
    c->held_tail = h;
    c->nheld++;
    arm_cancel(c, slots, n);
    return 0;
}

int ll__rc_submit(ll_redis_conn *c, const char *data, size_t len, rp_slot slot) {
    return ll__rc_submit_multi(c, data, len, &slot, 1);
}

int ll__rc_submit_argv(ll_redis_conn *c, int argc, const char *const *argv, const size_t *lens,
                       rp_slot slot) {
    if (c->state == RC_READY && !c->owner_closed) { /* the common case: no intermediate copy */
        if (ll__rp_ring_reserve(&c->slots, 1)) return LL_ENOMEM;
        int rc = ll__rp_format_argv(&c->out, argc, argv, lens);
        if (rc) return rc;
        commit_slots(c, &slot, 1);
        return 0;
    }
    rp_buf b = {0};
    int rc = ll__rp_format_argv(&b, argc, argv, lens);
    if (!rc) rc = ll__rc_submit_multi(c, b.data, b.len, &slot, 1);
    ll__rp_buf_free(&b);
    return rc;
}

/* The link is ready: write what was held, in order. */
static void release_held(ll_redis_conn *c) {
    while (c->held_head && c->state == RC_READY) {
        rc_held *h = c->held_head;
        if (ll__rp_ring_reserve(&c->slots, h->nslots) || ll__rp_buf_append(&c->out, h->data,
                                                                            h->len)) {
            fail_held(c, LL_ENOMEM, "redis: out of memory", LL_NEVER);
            return;
        }
        held_unlink(c, h);
        if (c->slots.n == 0) c->progress_at = ll_now();
        /* the futures keep the references and cancel hooks they got when held */
        for (size_t i = 0; i < h->nslots; i++) ll__rp_ring_push(&c->slots, h->slots[i]);
        c->commands += h->nslots;
        ll_free(h);
    }
    schedule_flush(c);
}

static void on_cancel(ll_future *f, void *arg) {
    ll_redis_conn *c = arg;
    for (rc_held *h = c->held_head; h; h = h->next) {
        for (size_t i = 0; i < h->nslots; i++) {
            if (h->slots[i].f != f) continue;
            /* never written: forget it (a held transaction goes as a whole) */
            held_unlink(c, h);
            for (size_t j = 0; j < h->nslots; j++) fail_slot(&h->slots[j], LL_ECANCELED, "");
            ll_free(h);
            return;
        }
    }
    for (size_t i = 0; i < c->slots.n; i++) {
        rp_slot *s = ll__rp_ring_at(&c->slots, i);
        if (s->f != f) continue;
        /* written (or about to be): keep the slot, drop the reply when it comes */
        s->f = NULL;
        s->abandoned = true;
        if (c->n_abandoned++ == 0) {
            c->progress_at = ll_now();
            rearm_read(c);
        }
        ll_future_set_cancelled(f);
        ll_future_free(f);
        return;
    }
    ll_future_set_cancelled(f); /* not ours any more (already settled by a race): harmless */
}

/* ---- writing ---- */

static void flush_cb(void *arg) {
    ll_redis_conn *c = arg;
    c->flush_queued = false;
    if (c->state != RC_CLOSED && c->s && c->out.len) {
        if (c->wf && ll_future_done(c->wf) && ll_future_code(c->wf) && !c->broken_code) {
            c->broken_code = ll_future_code(c->wf);
            c->broken_msg = ll_strdup(ll_future_errmsg(c->wf));
            rearm_read(c);
        }
        ll_future_free(c->wf);
        c->wf = ll_stream_write(c->s, c->out.data, c->out.len);
        c->out.len = 0;
        c->writes++;
        /* a big buffer stays allocated for the next burst unless it is very big */
        if (c->out.cap > (1u << 20)) ll__rp_buf_free(&c->out);
    }
    ll__rc_unref(c);
}

static void schedule_flush(ll_redis_conn *c) {
    if (c->flush_queued || !c->out.len) return;
    if (ll_loop_call_soon(c->loop, flush_cb, c) == 0) {
        c->flush_queued = true;
        c->refs++;
    }
}

/* ---- the link ---- */

/* Replies for plain commands are settled in batches: parsing a batch first and then settling it
 * back to back lets the CPU overlap the cache misses of reaching each awaiting task (cold when
 * hundreds of tasks share the loop), instead of taking them one by one between parses. Order is
 * kept: the batch is settled before any other kind of slot, a push or an error is handled. */
#define SETTLE_BATCH 32
typedef struct {
    ll_future *f[SETTLE_BATCH];
    ll_redis_reply *r[SETTLE_BATCH];
    size_t n;
} settle_batch;

static void batch_settle(ll_redis_conn *c, settle_batch *b) {
    for (size_t i = 0; i < b->n; i++) {
        ll__rc_deliver(c, b->f[i], b->r[i]);
        ll_future_free(b->f[i]);
    }
    b->n = 0;
}

/* Take the complete replies from the core and settle their slots. 0, or the code that ends the
 * link with a message in why. */
static int settle_replies(ll_redis_conn *c, char *why, size_t wlen) {
    settle_batch b;
    b.n = 0;
    for (;;) {
        ll_redis_reply *r;
        int k = ll__rp_next(c->rd, &r);
        if (k == 0) break;
        if (k < 0) {
            batch_settle(c, &b);
            /* the reply the head slot waits for is bad: that caller gets the reason */
            rp_slot *s = ll__rp_ring_front(&c->slots);
            if (s) {
                rp_slot copy = *s;
                ll__rp_ring_pop(&c->slots);
                char msg[300];
                snprintf(msg, sizeof msg, "redis %s: %s", ll__rc_peer(c), ll__rp_error(c->rd));
                fail_slot(&copy, k, msg);
            }
            snprintf(why, wlen, "%s", ll__rp_error(c->rd));
            return k;
        }
        if (c->pubsub && c->on_push && c->on_push_test(c, r)) {
            batch_settle(c, &b);
            c->on_push(c, r, c->push_arg);
            continue;
        }
        rp_slot *s = ll__rp_ring_front(&c->slots);
        if (!s) {
            batch_settle(c, &b);
            ll_redis_reply_free(r);
            snprintf(why, wlen, "redis protocol error: a reply came with no command waiting for it");
            return LL_EREDIS_PROTO;
        }
        rp_slot copy = *s;
        ll__rp_ring_pop(&c->slots);
        if (copy.abandoned) {
            c->n_abandoned--;
            c->discarded++;
        }
        switch (copy.kind) {
        case SLOT_TXPART:
        case SLOT_TXEXEC:
            batch_settle(c, &b);
            ll__rtx_on_reply(c, &copy, r);
            break;
        default:
            if (copy.f) {
                b.f[b.n] = copy.f;
                b.r[b.n] = r;
                if (++b.n == SETTLE_BATCH) batch_settle(c, &b);
            } else {
                ll_redis_reply_free(r);
            }
        }
    }
    batch_settle(c, &b);
    return 0;
}

/* Wait for bytes (bounded by the stall limits), feed the core, settle slots. 0, or the code that
 * ends the link with a message in why. */
static int read_once(ll_redis_conn *c, char *why, size_t wlen) {
    if (c->broken_code) {
        snprintf(why, wlen, "%s", c->broken_msg ? c->broken_msg : ll_strerror(c->broken_code));
        return c->broken_code;
    }
    double limit = -1;
    ll_time now = ll_now();
    bool stall_grace = false;
    if (c->n_abandoned && c->cfg->abandon_grace > 0) {
        limit = c->progress_at + c->cfg->abandon_grace - now;
        stall_grace = true;
    }
    if (c->cfg->reply_timeout > 0 && c->slots.n) {
        double t = c->progress_at + c->cfg->reply_timeout - now;
        if (limit < 0 || t < limit) {
            limit = t;
            stall_grace = false;
        }
    }
    if (limit != -1 && limit <= 0) {
        if (stall_grace)
            snprintf(why, wlen, "no reply for %g s after a command was abandoned",
                     c->cfg->abandon_grace);
        else
            snprintf(why, wlen, "no reply for %g s", c->cfg->reply_timeout);
        return LL_ETIMEDOUT;
    }
    ll_future *f = ll_stream_fill(c->s);
    c->read_f = f;
    c->rearm = false;
    int rc = limit > 0 ? ll_await_timeout(f, limit) : ll_await(f);
    c->read_f = NULL;
    /* Our own limit passed, or the fill was cancelled to re-read the limits: go round again.
     * (A timeout of the scope around connect and setup is the scope's: it ends the attempt.) */
    bool scope_expired = rc == LL_ETIMEDOUT && ll_task_deadline() <= ll_now();
    if ((rc == LL_ETIMEDOUT && !scope_expired) ||
        (rc == LL_ECANCELED && c->rearm && !ll_task_cancelled())) {
        ll_future_free(f);
        c->rearm = false;
        return 0; /* recompute the limits (the next call says whether one passed) */
    }
    if (rc) {
        snprintf(why, wlen, "%s", ll_future_errmsg(f)[0] ? ll_future_errmsg(f) : ll_strerror(rc));
        ll_future_free(f);
        return rc;
    }
    ll_future_free(f);
    size_t n;
    const char *p = ll_stream_peek(c->s, &n);
    int frc = ll__rp_feed(c->rd, p, n);
    ll_stream_consume(c->s, n);
    if (n) c->progress_at = ll_now();
    (void)frc;
    return settle_replies(c, why, wlen);
}

ll_future *ll__rc_command_now(ll_redis_conn *c, int argc, const char *const *argv,
                              const size_t *lens) {
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    rp_buf b = {0};
    int rc = ll__rp_format_argv(&b, argc, argv, lens);
    if (!rc) rc = write_now(c, b.data, b.len, &(rp_slot){.f = f, .kind = SLOT_USER}, 1);
    ll__rp_buf_free(&b);
    if (rc) ll_future_fail(f, rc, "redis %s: %s", ll__rc_peer(c), ll_strerror(rc));
    return f;
}

/* Run a setup command and wait for it (reading replies meanwhile). what names it in messages. */
static int setup_cmd(ll_redis_conn *c, const char *what, int argc, const char *const *argv,
                     char *why, size_t wlen, ll_redis_reply **out) {
    ll_future *f = ll__rc_command_now(c, argc, argv, NULL);
    if (!f) {
        snprintf(why, wlen, "out of memory");
        return LL_ENOMEM;
    }
    int rc = 0;
    while (!ll_future_done(f) && rc == 0) rc = read_once(c, why, wlen);
    if (rc == 0 && (rc = ll_future_code(f)) != 0) {
        const char *e = ll_redis_error(f);
        snprintf(why, wlen, "%s failed: %s", what, e ? e : ll_future_errmsg(f));
    }
    if (rc == 0 && out) *out = ll_future_take(f);
    ll_future_free(f);
    return rc;
}

int ll__rc_setup_cmd(ll_redis_conn *c, const char *what, int argc, const char *const *argv,
                     char *why, size_t wlen, ll_redis_reply **out) {
    return setup_cmd(c, what, argc, argv, why, wlen, out);
}

static int link_up(ll_redis_conn *c, char *why, size_t wlen) {
    rc_cfg *cfg = c->cfg;
    c->state = RC_CONNECTING;
    ll_scope sc;
    ll_scope_enter(&sc, ll_deadline_in(cfg->connect_timeout));
    ll_stream_opts co = {.connect_timeout = cfg->connect_timeout, .tls = cfg->tls ? &cfg->tls_opts : NULL};
    static const ll_tls_opts default_tls = {0};
    if (cfg->tls && !co.tls) co.tls = &default_tls;
    ll_future *f = cfg->unix_path ? ll_stream_connect_unix(cfg->unix_path, &co)
                                  : ll_stream_connect(cfg->host, cfg->port, &co);
    int rc = ll_await(f);
    if (rc) {
        snprintf(why, wlen, "%s", ll_future_errmsg(f)[0] ? ll_future_errmsg(f) : ll_strerror(rc));
        ll_future_free(f);
        goto out;
    }
    c->s = ll_future_take(f);
    ll_future_free(f);
    c->rd = ll__rp_reader_new(&cfg->lim);
    if (!c->rd) {
        rc = LL_ENOMEM;
        snprintf(why, wlen, "out of memory");
        goto out;
    }
    c->broken_code = 0;
    if (cfg->password) {
        const char *av[3] = {"AUTH", cfg->user ? cfg->user : cfg->password, cfg->password};
        char what[200];
        if (cfg->user) snprintf(what, sizeof what, "AUTH as user '%s'", cfg->user);
        else snprintf(what, sizeof what, "AUTH");
        if ((rc = setup_cmd(c, what, cfg->user ? 3 : 2, av, why, wlen, NULL))) goto out;
    }
    if (cfg->db > 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", cfg->db);
        const char *av[2] = {"SELECT", db};
        if ((rc = setup_cmd(c, "SELECT", 2, av, why, wlen, NULL))) goto out;
    }
    if (cfg->client_name) {
        const char *av[3] = {"CLIENT", "SETNAME", cfg->client_name};
        if ((rc = setup_cmd(c, "CLIENT SETNAME", 3, av, why, wlen, NULL))) goto out;
    }
    if (c->extra_setup && (rc = c->extra_setup(c, c->extra_arg, why, wlen))) goto out;
out:
    if (ll_scope_exit(&sc) == LL_ETIMEDOUT || (rc == LL_ETIMEDOUT && !why[0])) {
        rc = LL_ETIMEDOUT;
        snprintf(why, wlen, "connect and setup did not finish within %g s", cfg->connect_timeout);
    }
    if (rc == 0 && !c->owner_closed) {
        c->state = RC_READY;
        release_held(c);
    }
    return rc;
}

static void link_down(ll_redis_conn *c, int code, const char *why) {
    char msg[600];
    if (c->owner_closed) {
        snprintf(msg, sizeof msg, "redis %s: connection closed", ll__rc_peer(c));
        fail_inflight(c, LL_ECLOSED, msg);
    } else {
        snprintf(msg, sizeof msg, "redis %s: connection lost (%s); the command may or may not "
                 "have run", ll__rc_peer(c), why);
        fail_inflight(c, LL_EREDIS_CONN, msg);
    }
    (void)code;
    if (c->state != RC_CLOSED) c->state = RC_DOWN;
    ll_future_free(c->wf);
    c->wf = NULL;
    if (c->s) ll_stream_close(c->s);
    c->s = NULL;
    ll__rp_reader_free(c->rd);
    c->rd = NULL;
    ll_free(c->broken_msg);
    c->broken_msg = NULL;
    c->broken_code = 0;
}

static void close_from_future(void *p) { ll_redis_close(p); }

static void ready_cancelled(ll_future *f, void *arg) {
    ll_redis_conn *c = arg;
    c->ready_f = NULL;
    ll_future_set_cancelled(f);
    ll_future_free(f);
    ll_redis_close(c);
}

static double backoff(const rc_cfg *cfg, int attempt) {
    double d = cfg->backoff_initial;
    for (int i = 0; i < attempt && d < cfg->backoff_max; i++) d *= 2;
    if (d > cfg->backoff_max) d = cfg->backoff_max;
    return d * (0.5 + 0.5 * ((double)rand() / RAND_MAX)); /* jitter: no thundering herd */
}

static int manager(void *arg) {
    ll_redis_conn *c = arg;
    c->mgr_ran = true;
    int attempt = 0;
    bool gave_up = false;
    char why[400];
    while (!c->owner_closed) {
        why[0] = 0;
        int rc = link_up(c, why, sizeof why);
        if (rc == 0) {
            attempt = 0;
            if (c->ever_ready) c->reconnects++;
            c->ever_ready = true;
            if (c->ready_f) {
                ll_future *rf = c->ready_f;
                c->ready_f = NULL;
                ll_future_resolve(rf, c, close_from_future);
                ll_future_free(rf);
            }
            if (c->on_event) c->on_event(c, RC_EV_UP, c->event_arg);
            while ((rc = read_once(c, why, sizeof why)) == 0) {
            }
        }
        link_down(c, rc, why);
        if (rc == 0 || c->ever_ready) {
            if (c->on_event && c->ever_ready) c->on_event(c, RC_EV_DOWN, c->event_arg);
        }
        ll_free(c->last_err);
        c->last_err = ll_strdup(why);
        if (c->owner_closed || ll_task_cancelled()) break;
        if (!c->ever_ready && !c->persistent) {
            if (c->ready_f) {
                ll_future *rf = c->ready_f;
                c->ready_f = NULL;
                ll_future_fail(rf, rc, "redis %s: %s", ll__rc_peer(c), why);
                ll_future_free(rf);
            }
            c->state = RC_CLOSED;
            c->owner_closed = true; /* nobody else has the connection: drop the owner's ref */
            ll__rc_unref(c);
            break;
        }
        if (!c->cfg->reconnect) break;
        c->state = RC_DOWN;
        /* sleep, failing held commands as they pass queue_timeout */
        ll_time wake = ll_now() + backoff(c->cfg, attempt++);
        while (!c->owner_closed) {
            char msg[600];
            snprintf(msg, sizeof msg, "redis %s: not connected within %g s (%s)", ll__rc_peer(c),
                     c->cfg->queue_timeout, why);
            ll_time now = ll_now();
            fail_held(c, LL_ETIMEDOUT, msg, now - c->cfg->queue_timeout);
            if (now >= wake) break;
            double step = wake - now;
            if (c->held_head && c->held_head->at + c->cfg->queue_timeout - now < step)
                step = c->held_head->at + c->cfg->queue_timeout - now + 0.001;
            int src = ll_sleep(step);
            if (src) {
                /* cancelled (closed, loop shutdown), or no memory even for a timer: give up
                 * rather than retry without ever waiting */
                if (src != LL_ECANCELED) snprintf(why, sizeof why, "%s", ll_strerror(src));
                gave_up = true;
                break;
            }
        }
        if (gave_up || ll_task_cancelled()) break;
    }
    if (c->state != RC_CLOSED || c->held_head) {
        char msg[600];
        int code = c->owner_closed ? LL_ECLOSED : LL_EREDIS_CONN;
        if (c->owner_closed) snprintf(msg, sizeof msg, "redis %s: connection closed", ll__rc_peer(c));
        else snprintf(msg, sizeof msg, "redis %s: connection lost (%s)", ll__rc_peer(c),
                      c->last_err ? c->last_err : "");
        fail_held(c, code, msg, LL_NEVER);
    }
    c->state = RC_CLOSED;
    ll__rc_unref(c); /* the manager's */
    return 0;
}

ll_redis_conn *ll__rc_new(rc_cfg *cfg, ll_loop *loop, bool persistent) {
    ll_redis_conn *c = ll_calloc(1, sizeof *c);
    if (!c) {
        ll__rc_cfg_free(cfg);
        return NULL;
    }
    c->loop = loop;
    c->cfg = cfg;
    c->persistent = persistent;
    c->refs = 2; /* the owner's and the manager's */
    return c;
}

/* The connection is closed: what waits on it (held commands, the connect future, and when asked
 * the commands in flight) fails with LL_ECLOSED. */
static void fail_closed(ll_redis_conn *c, bool inflight) {
    char msg[300];
    snprintf(msg, sizeof msg, "redis %s: connection closed", ll__rc_peer(c));
    fail_held(c, LL_ECLOSED, msg, LL_NEVER);
    if (inflight) fail_inflight(c, LL_ECLOSED, msg);
    if (c->ready_f) {
        ll_future *rf = c->ready_f;
        c->ready_f = NULL;
        ll_future_fail(rf, LL_ECLOSED, "%s", msg);
        ll_future_free(rf);
    }
}

/* A task cancelled before it first ran never runs (ll_redis_close or a loop shutdown right after
 * the connect call): then this does what the manager would have done on its way out. It holds a
 * reference of its own, so it may look at the connection either way. */
static void mgr_done(ll_future *f, void *arg) {
    ll_redis_conn *c = arg;
    (void)f;
    if (!c->mgr_ran) {
        fail_closed(c, false);
        c->state = RC_CLOSED;
        ll__rc_unref(c); /* the manager's */
    }
    ll__rc_unref(c); /* this callback's */
}

int ll__rc_start(ll_redis_conn *c) {
    char name[200];
    snprintf(name, sizeof name, "redis %s", ll__rc_peer(c));
    ll_spawn_opts so = {.name = name, .deadline = LL_NEVER, .loop = c->loop};
    c->mgr = ll_spawn_ex(manager, c, &so);
    if (c->mgr && !ll_future_done(c->mgr)) {
        c->refs++;
        if (ll_future_add_done(c->mgr, mgr_done, c) == 0) return 0;
        c->refs--;
        ll_future_cancel(c->mgr); /* cancelled before it ran: it never will */
    }
    /* the manager will not run: drop its reference (the owner's remains) */
    c->state = RC_CLOSED;
    ll__rc_unref(c);
    return LL_ENOMEM;
}

/* ---- public ---- */

LL_EXPORT ll_future *ll_redis_connect(const char *url, const ll_redis_opts *opts) {
    ll_loop *loop = opts && opts->loop ? opts->loop : ll_loop_current();
    char err[200];
    rc_cfg *cfg;
    int rc = ll__rc_cfg_new(&cfg, url, opts, err, sizeof err);
    if (rc) return ll_future_failed(loop, rc, "%s", err);
    return ll__rc_connect_cfg(cfg, loop, NULL, NULL);
}

ll_future *ll__rc_connect_cfg(rc_cfg *cfg, ll_loop *loop, void (*prepare)(ll_redis_conn *, void *),
                              void *arg) {
    ll_redis_conn *c = ll__rc_new(cfg, loop, false);
    if (!c) return NULL;
    ll_future *f = ll_future_new(loop);
    if (!f) {
        c->refs = 1;
        ll__rc_unref(c);
        return NULL;
    }
    ll_future_set_label(f, "redis connect");
    if (prepare) prepare(c, arg);
    c->ready_f = ll_future_ref(f);
    ll_future_on_cancel(f, ready_cancelled, c);
    if (ll__rc_start(c)) {
        c->ready_f = NULL;
        ll_future_free(f);
        ll_future_fail(f, LL_ENOMEM, "ll_redis_connect: cannot start the connection task");
        c->owner_closed = true; /* nobody will have it: drop the owner's reference */
        ll__rc_unref(c);
    }
    return f;
}

LL_EXPORT void ll_redis_close(ll_redis_conn *c) {
    if (!c || c->owner_closed) return;
    c->owner_closed = true;
    fail_closed(c, true);
    c->state = RC_CLOSED;
    if (c->mgr) ll_future_cancel(c->mgr);
    ll__rc_unref(c);
}

LL_EXPORT bool ll_redis_is_connected(const ll_redis_conn *c) {
    return c && c->state == RC_READY && !c->owner_closed;
}

LL_EXPORT const char *ll_redis_peer(const ll_redis_conn *c) { return c ? ll__rc_peer(c) : ""; }

LL_EXPORT size_t ll_redis_pending(const ll_redis_conn *c) {
    return c ? c->slots.n + c->nheld : 0;
}

LL_EXPORT void ll_redis_get_stats(const ll_redis_conn *c, ll_redis_stats *out) {
    memset(out, 0, sizeof *out);
    if (!c) return;
    out->reconnects = c->reconnects;
    out->discarded = c->discarded;
    out->commands = c->commands;
    out->writes = c->writes;
    out->in_flight = c->slots.n;
    out->held = c->nheld;
}
