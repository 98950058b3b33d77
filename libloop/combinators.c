/*
 * combinators.c — gather, wait, as_completed, wait_for, shield and task groups.
 *
 * Design notes:
 * - Every combinator is a small state record that holds its own reference on each input and on its
 *   result future, and one done callback per input whose argument is the input's slot. The record
 *   is freed by whoever settles the result last: normally the callback of the last input; when the
 *   result settles early (a satisfied wait, a cancelled shield) the callbacks
 *   still registered are removed with ll_future_remove_done() and their references dropped at
 *   once, so nothing points at freed memory and no input is kept alive longer than needed. Inputs
 *   may therefore outlive the combinator and the combinator may outlive the caller's references.
 * - Callbacks run from the ready queue, never inside resolve or cancel (future.c), so a callback
 *   may settle, cancel and free freely. Cancel hooks do run synchronously inside
 *   ll_future_cancel(); they never run our callbacks, so a record is never freed under a hook's
 *   feet.
 * - A combinator whose result is cancelled or fails fast and that owns its inputs' fate (gather,
 *   wait_for) cancels them and settles only once they have all stopped, as ll_await does: the
 *   awaiter never resumes while work it started is still running (promise 1, docs/design.md). wait and shield never cancel their input, so
 *   they settle at once when cancelled.
 * - Timeouts are plain sleep futures, watched with a done callback like any other input.
 * - A NULL input (a future-returning call that ran out of memory) counts as failed with LL_ENOMEM,
 *   like every accessor in future.h. Inputs must belong to one loop: callbacks run on the input's
 *   loop, so mixing loops would run them on another thread.
 * - Task groups (structured concurrency) keep a list of running children. ll_taskgroup_wait awaits
 *   one internal future whose cancel hook cancels the children and which settles only when the
 *   last child has finished: the core's "a cancelled await cancels what it waits for and waits for
 *   it to settle" then gives "children are cancelled and awaited" with no extra machinery.
 */
#include <string.h>
#include "containers.h"
#include "internal.h"

/* The loop of the first non-NULL input, else the current one. Fails on a mix of loops. */
static int inputs_loop(ll_future *const *fs, size_t n, ll_loop **out, size_t *bad) {
    ll_loop *loop = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!fs[i]) continue;
        if (!loop) loop = fs[i]->loop;
        else if (fs[i]->loop != loop) {
            *bad = i;
            *out = loop;
            return LL_EINVAL;
        }
    }
    *out = loop ? loop : ll_loop_current();
    return 0;
}

static bool slots_overflow(size_t n, size_t base, size_t each) {
    return n > (SIZE_MAX - base) / each;
}

/* ---- gather ---- */

typedef struct gather gather;
typedef struct gslot {
    gather *g;
    ll_future *f;    /* our reference while our callback is registered */
    size_t index;
} gslot;

struct gather {
    ll_future *out;  /* our reference */
    size_t n, remaining, nfailed;
    int mode;
    bool cancelling; /* the gather was cancelled: wait for every input, then settle cancelled */
    int fail_code;   /* fail-fast: the first failure; settled with once every input has stopped */
    char *fail_msg;  /* its message (NULL: ll_strerror(fail_code)) */
    gslot slots[];
};

static void gather_done(ll_future *f, void *arg);

/* Remove the callbacks still registered and drop every reference. */
static void gather_release(gather *g) {
    for (size_t i = 0; i < g->n; i++) {
        gslot *s = &g->slots[i];
        if (!s->f) continue;
        ll_future_remove_done(s->f, gather_done, s);
        ll_future_free(s->f);
        s->f = NULL;
    }
    ll_future_free(g->out);
    ll__free(g->fail_msg);
    ll__free(g);
}

/* Fail-fast: the input at `index` failed first. The gather takes its code and message, but
 * settles only when the inputs it cancels have stopped (as a task group does), so a sibling's
 * cleanup never runs after the awaiter has moved on and freed what they share. */
static void gather_fail_fast(gather *g, size_t index, ll_future *f) {
    g->fail_code = f ? ll__future_retrieve(f) : LL_ENOMEM;
    g->fail_msg = ll__format("gather: item %zu: %s", index, ll_future_errmsg(f));
    for (size_t i = 0; i < g->n; i++)
        if (g->slots[i].f && g->slots[i].f != f) ll_future_cancel(g->slots[i].f);
}

static void gather_finish(gather *g) {
    if (g->fail_code) ll_future_fail(g->out, g->fail_code, g->fail_msg ? "%s" : NULL, g->fail_msg);
    else if (g->cancelling) ll_future_set_cancelled(g->out);
    else ll_future_resolve(g->out, (void *)(uintptr_t)g->nfailed, NULL);
    gather_release(g);
}

static void gather_done(ll_future *f, void *arg) {
    gslot *s = arg;
    gather *g = s->g;
    bool failed = f->state != LL_FUTURE_RESOLVED;
    LL_ASSERT(g->remaining > 0 && s->f == f);
    g->remaining--;
    if (failed) g->nfailed++;
    if (failed && !g->cancelling && !g->fail_code && g->mode == LL_GATHER_FAIL_FAST)
        gather_fail_fast(g, s->index, f);
    ll_future_free(s->f);
    s->f = NULL;
    if (g->remaining == 0) gather_finish(g);
}

static void gather_cancel(ll_future *out, void *arg) {
    gather *g = arg;
    g->cancelling = true;
    /* the inputs are cancelled for the gather's reason ("timed out after 1 s"), if it has one */
    for (size_t i = 0; i < g->n; i++)
        if (g->slots[i].f) ll__future_cancel_msg(g->slots[i].f, ll__future_cancel_reason(out));
    /* every input is still running or its callback is queued: the last callback settles us */
}

ll_future *ll_gather(ll_future *const *fs, size_t n, int mode) {
    ll_loop *loop;
    size_t bad = 0;
    if (n > 0 && !fs)
        return ll_future_failed(ll_loop_current(), LL_EINVAL, "ll_gather: NULL array of n=%zu", n);
    if (inputs_loop(fs, n, &loop, &bad))
        return ll_future_failed(loop, LL_EINVAL, "ll_gather: mixed loops at item %zu", bad);
    if (mode != LL_GATHER_FAIL_FAST && mode != LL_GATHER_COLLECT)
        return ll_future_failed(loop, LL_EINVAL, "ll_gather: unknown mode %d", mode);
    ll_future *out = ll_future_new(loop);
    if (!out) return NULL;
    ll_future_set_label(out, "gather");
    if (n == 0) {
        ll_future_resolve(out, NULL, NULL);
        return out;
    }
    gather *g = NULL;
    if (!slots_overflow(n, sizeof *g, sizeof(gslot)))
        g = ll__calloc(1, sizeof *g + n * sizeof(gslot));
    if (!g) {
        ll_future_free(out);
        return NULL;
    }
    g->out = ll_future_ref(out);
    g->n = g->remaining = n;
    g->mode = mode;
    size_t first_null = n;
    for (size_t i = 0; i < n; i++) {
        gslot *s = &g->slots[i];
        s->g = g;
        s->index = i;
        if (!fs[i]) {
            g->remaining--;
            g->nfailed++;
            if (first_null == n) first_null = i;
            continue;
        }
        s->f = ll_future_ref(fs[i]);
        if (ll_future_add_done(s->f, gather_done, s) != 0) {
            ll_future_free(s->f);
            s->f = NULL;
            gather_release(g); /* nothing cancelled: the caller still owns its inputs */
            ll_future_free(out);
            return NULL;
        }
    }
    ll_future_on_cancel(out, gather_cancel, g);
    if (first_null < n && mode == LL_GATHER_FAIL_FAST) gather_fail_fast(g, first_null, NULL);
    if (g->remaining == 0) gather_finish(g);
    return out;
}

/* ---- wait ---- */

typedef struct waitst waitst;
typedef struct wslot {
    waitst *w;
    ll_future *f; /* our reference while our callback is registered */
} wslot;

struct waitst {
    ll_future *out, *timer;
    size_t n, nsettled;
    int when;
    bool any_failed;
    wslot slots[];
};

static void wait_input_done(ll_future *f, void *arg);
static void wait_timer_done(ll_future *f, void *arg);

static void wait_release(waitst *w) {
    for (size_t i = 0; i < w->n; i++) {
        wslot *s = &w->slots[i];
        if (!s->f) continue;
        ll_future_remove_done(s->f, wait_input_done, s);
        ll_future_free(s->f);
    }
    if (w->timer) {
        ll_future_remove_done(w->timer, wait_timer_done, w);
        ll_future_cancel(w->timer);
        ll_future_free(w->timer);
    }
    ll_future_free(w->out);
    ll__free(w);
}

/* Resolve with the number of inputs settled right now (some may have settled while their
 * callbacks still wait in the ready queue: the caller checks each with ll_future_done()). */
static void wait_finish(waitst *w) {
    size_t settled = w->nsettled;
    for (size_t i = 0; i < w->n; i++)
        if (w->slots[i].f && ll_future_done(w->slots[i].f)) settled++;
    ll_future_resolve(w->out, (void *)(uintptr_t)settled, NULL);
    wait_release(w);
}

static bool wait_satisfied(const waitst *w) {
    switch (w->when) {
    case LL_WAIT_FIRST_COMPLETED: return w->nsettled > 0 || w->n == 0;
    case LL_WAIT_FIRST_FAILED: return w->any_failed || w->nsettled == w->n;
    default: return w->nsettled == w->n;
    }
}

static void wait_input_done(ll_future *f, void *arg) {
    wslot *s = arg;
    waitst *w = s->w;
    w->nsettled++;
    if (f->state != LL_FUTURE_RESOLVED) w->any_failed = true;
    ll_future_free(s->f);
    s->f = NULL;
    if (wait_satisfied(w)) wait_finish(w);
}

static void wait_timer_done(ll_future *f, void *arg) {
    (void)f;
    waitst *w = arg;
    ll_future_free(w->timer); /* it fired: nothing left to cancel */
    w->timer = NULL;
    wait_finish(w);
}

static void wait_cancel(ll_future *out, void *arg) {
    waitst *w = arg;
    ll_future_set_cancelled(out); /* inputs are never cancelled: nothing to wait for */
    wait_release(w);
}

ll_future *ll_wait(ll_future *const *fs, size_t n, int when, double timeout) {
    ll_loop *loop;
    size_t bad = 0;
    if (n > 0 && !fs)
        return ll_future_failed(ll_loop_current(), LL_EINVAL, "ll_wait: NULL array of n=%zu", n);
    if (inputs_loop(fs, n, &loop, &bad))
        return ll_future_failed(loop, LL_EINVAL, "ll_wait: mixed loops at item %zu", bad);
    if (when != LL_WAIT_FIRST_COMPLETED && when != LL_WAIT_FIRST_FAILED &&
        when != LL_WAIT_ALL_COMPLETED)
        return ll_future_failed(loop, LL_EINVAL, "ll_wait: unknown condition %d", when);
    ll_future *out = ll_future_new(loop);
    if (!out) return NULL;
    ll_future_set_label(out, "wait");
    waitst *w = NULL;
    if (!slots_overflow(n, sizeof *w, sizeof(wslot)))
        w = ll__calloc(1, sizeof *w + n * sizeof(wslot));
    if (!w) {
        ll_future_free(out);
        return NULL;
    }
    w->out = ll_future_ref(out);
    w->n = n;
    w->when = when;
    for (size_t i = 0; i < n; i++) {
        wslot *s = &w->slots[i];
        s->w = w;
        if (!fs[i]) { /* out of memory upstream: settled and failed */
            w->nsettled++;
            w->any_failed = true;
            continue;
        }
        s->f = ll_future_ref(fs[i]);
        if (ll_future_add_done(s->f, wait_input_done, s) != 0) {
            ll_future_free(s->f);
            s->f = NULL;
            goto oom;
        }
    }
    if (wait_satisfied(w)) {
        wait_finish(w);
        return out;
    }
    if (timeout >= 0) {
        w->timer = ll_sleep_future(loop, timeout);
        if (!w->timer) goto oom;
        if (ll_future_add_done(w->timer, wait_timer_done, w) != 0) goto oom;
    }
    ll_future_on_cancel(out, wait_cancel, w);
    return out;
oom:
    wait_release(w);
    ll_future_free(out);
    return NULL;
}

/* ---- as_completed ---- */

typedef struct aslot {
    ll_as_completed *it;
    ll_future *f;  /* our reference, kept until the iterator is freed (next() lends it) */
    bool pending;  /* our callback is registered */
} aslot;

struct ll_as_completed {
    ll_loop *loop;
    size_t n, nready, given;
    ll_future **order; /* inputs in the order they settled; order[given..nready) not yet given */
    ll_future *wake;   /* what next() awaits while nothing is ready */
    aslot slots[];
};

static void as_done(ll_future *f, void *arg) {
    aslot *s = arg;
    ll_as_completed *it = s->it;
    s->pending = false;
    it->order[it->nready++] = f;
    if (it->wake) ll_future_resolve(it->wake, NULL, NULL); /* LL_ESTATE if cancelled: fine */
}

ll_as_completed *ll_as_completed_new(ll_future *const *fs, size_t n) {
    ll_loop *loop;
    size_t bad;
    if ((n > 0 && !fs) || inputs_loop(fs, n, &loop, &bad) || !loop) return NULL;
    size_t each = sizeof(aslot) + sizeof(ll_future *);
    if (slots_overflow(n, sizeof(ll_as_completed), each)) return NULL;
    ll_as_completed *it = ll__calloc(1, sizeof *it + n * each);
    if (!it) return NULL;
    it->loop = loop;
    it->n = n;
    it->order = (ll_future **)(void *)&it->slots[n];
    for (size_t i = 0; i < n; i++) {
        aslot *s = &it->slots[i];
        s->it = it;
        if (!fs[i]) { /* out of memory upstream: it is done already */
            it->order[it->nready++] = NULL;
            continue;
        }
        s->f = ll_future_ref(fs[i]);
        s->pending = true;
        if (ll_future_add_done(s->f, as_done, s) != 0) {
            s->pending = false;
            ll_as_completed_free(it);
            return NULL;
        }
    }
    return it;
}

int ll_as_completed_next(ll_as_completed *it, ll_future **done) {
    if (done) *done = NULL;
    if (!it) return LL_EINVAL;
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    if (it->given == it->n) return LL_EOF;
    if (it->given == it->nready) {
        ll_future *wake = ll_future_new(t->loop);
        if (!wake) return LL_ENOMEM;
        ll_future_set_label(wake, "as_completed");
        it->wake = wake;
        int rc = ll_await(wake);
        it->wake = NULL;
        ll_future_free(wake);
        if (rc) return rc;
    }
    ll_future *f = it->order[it->given++];
    if (done) *done = f;
    return 0;
}

void ll_as_completed_free(ll_as_completed *it) {
    if (!it) return;
    for (size_t i = 0; i < it->n; i++) {
        aslot *s = &it->slots[i];
        if (s->pending) ll_future_remove_done(s->f, as_done, s);
        ll_future_free(s->f);
    }
    ll__free(it);
}

/* ---- wait_for ---- */

typedef struct waitfor {
    ll_future *out, *in, *timer;
    double timeout;
    bool timed_out; /* we cancelled `in` because the time was up */
    bool cancelled; /* the result was cancelled first: report that, not a timeout */
} waitfor;

static void waitfor_timer_done(ll_future *f, void *arg);

static void waitfor_in_done(ll_future *in, void *arg) {
    waitfor *w = arg;
    if (w->timer) {
        ll_future_remove_done(w->timer, waitfor_timer_done, w);
        ll_future_cancel(w->timer);
        ll_future_free(w->timer);
    }
    /* As ll_await: an input that completed regardless of our cancel keeps its own outcome. */
    if (w->timed_out && in->state == LL_FUTURE_CANCELLED) {
        ll_future_fail(w->out, LL_ETIMEDOUT, "wait_for: '%s' timed out after %g s",
                       ll_future_label(in), w->timeout);
    } else {
        ll_future_copy_outcome(w->out, in);
    }
    ll_future_free(w->in);
    ll_future_free(w->out);
    ll__free(w);
}

static void waitfor_timer_done(ll_future *f, void *arg) {
    (void)f;
    waitfor *w = arg;
    ll_future_free(w->timer);
    w->timer = NULL;
    /* `in` may have settled with its callback still queued: then cancel is a no-op (LL_EALREADY)
     * and its own outcome stands. */
    if (!w->cancelled && ll_future_cancel(w->in) == 0) w->timed_out = true;
}

static void waitfor_cancel(ll_future *out, void *arg) {
    (void)out;
    waitfor *w = arg;
    w->cancelled = true;
    ll_future_cancel(w->in); /* we settle, cancelled, when it has stopped */
}

ll_future *ll_wait_for(ll_future *f, double timeout) {
    if (!f) return NULL; /* mirrors "out of memory" */
    ll_future *out = ll_future_new(f->loop);
    if (!out) return NULL;
    ll_future_set_label(out, "wait_for");
    waitfor *w = ll__calloc(1, sizeof *w);
    if (!w) {
        ll_future_free(out);
        return NULL;
    }
    w->timeout = timeout;
    w->in = ll_future_ref(f);
    if (ll_future_add_done(f, waitfor_in_done, w) != 0) goto oom;
    if (timeout >= 0) {
        w->timer = ll_sleep_future(f->loop, timeout);
        if (!w->timer || ll_future_add_done(w->timer, waitfor_timer_done, w) != 0) {
            ll_future_remove_done(f, waitfor_in_done, w);
            goto oom;
        }
    }
    w->out = ll_future_ref(out);
    ll_future_on_cancel(out, waitfor_cancel, w);
    return out;
oom:
    ll_future_cancel(w->timer); /* the timer is ours alone */
    ll_future_free(w->timer);
    ll_future_free(w->in);
    ll__free(w);
    ll_future_free(out);
    return NULL;
}

/* ---- shield ---- */

typedef struct shield {
    ll_future *out, *in;
} shield;

static void shield_done(ll_future *in, void *arg) {
    shield *s = arg;
    ll_future_copy_outcome(s->out, in);
    ll_future_free(s->in);
    ll_future_free(s->out);
    ll__free(s);
}

static void shield_cancel(ll_future *out, void *arg) {
    shield *s = arg;
    ll_future_remove_done(s->in, shield_done, s);
    ll_future_set_cancelled(out); /* `in` carries on, for whoever else holds it */
    ll_future_free(s->in);
    ll_future_free(s->out);
    ll__free(s);
}

ll_future *ll_shield(ll_future *f) {
    if (!f) return NULL; /* mirrors "out of memory" */
    ll_future *out = ll_future_new(f->loop);
    if (!out) return NULL;
    ll_future_set_label(out, "shield");
    shield *s = ll__malloc(sizeof *s);
    if (!s) {
        ll_future_free(out);
        return NULL;
    }
    s->in = ll_future_ref(f);
    s->out = ll_future_ref(out);
    if (ll_future_add_done(f, shield_done, s) != 0) {
        ll_future_free(s->in);
        ll_future_free(s->out);
        ll__free(s);
        ll_future_free(out);
        return NULL;
    }
    ll_future_on_cancel(out, shield_cancel, s);
    return out;
}

/* ---- task groups ---- */

typedef struct child {
    ll__dlink link;  /* the group's running children */
    ll_taskgroup *g;
    ll_future *f;    /* our reference while it runs */
    uint64_t id;
    char name[];     /* for the group's error message */
} child;

struct ll_taskgroup {
    ll__dlist children; /* still running (their callback is registered) */
    size_t running;
    int code;         /* the first failure, 0 if none */
    char *msg;        /* its message (NULL: ll_strerror(code)) */
    ll_future *waiter;/* what ll_taskgroup_wait awaits; settles when running drops to 0 */
    bool cancelling;  /* the waiter was cancelled: children are being cancelled */
    bool closed;      /* ll_taskgroup_wait returned: no more children */
    bool freed;       /* ll_taskgroup_free ran while a task waited: the waiter frees us */
};

static void child_done(ll_future *f, void *arg);

static void cancel_children(ll_taskgroup *g) {
    for (ll__dlink *l = g->children.head; l; l = l->next)
        ll_future_cancel(LL__CONTAINER(l, child, link)->f);
}

static void child_unlink(ll_taskgroup *g, child *c) {
    ll__list_remove(&g->children, &c->link);
    g->running--;
    ll_future_free(c->f);
    ll__free(c);
}

static void child_done(ll_future *f, void *arg) {
    child *c = arg;
    ll_taskgroup *g = c->g;
    /* A child that was cancelled (by us, or by anyone) is not a failure (asyncio.TaskGroup). */
    if (f->state == LL_FUTURE_FAILED && g->code == 0) {
        g->code = ll__future_retrieve(f);
        g->msg = ll__format("task #%llu '%s': %s", (unsigned long long)c->id, c->name,
                            ll_future_errmsg(f));
        child_unlink(g, c);
        cancel_children(g);
    } else {
        if (f->state == LL_FUTURE_FAILED && f->loop->debug) {
            /* Only the first failure is the group's. Nobody else can read this one (the children's
             * futures are not given out), so say so here rather than as an unretrieved error. */
            ll__warn(f->loop, "task group: task #%llu '%s' also failed (%s: %s); only the first "
                              "failure is reported",
                     (unsigned long long)c->id, c->name, ll_err_name(f->code), ll_future_errmsg(f));
        }
        child_unlink(g, c);
    }
    if (g->running == 0 && g->waiter) {
        /* the waiter is private to ll_taskgroup_wait: only this settles it */
        int rc = g->cancelling ? ll_future_set_cancelled(g->waiter)
                               : ll_future_resolve(g->waiter, NULL, NULL);
        LL_ASSERT(rc == 0);
        (void)rc;
    }
}

static void waiter_cancel(ll_future *f, void *arg) {
    ll_taskgroup *g = arg;
    g->cancelling = true;
    cancel_children(g);
    if (g->running == 0) ll_future_set_cancelled(f);
}

ll_taskgroup *ll_taskgroup_new(void) {
    return ll__calloc(1, sizeof(ll_taskgroup));
}

int ll_taskgroup_spawn(ll_taskgroup *g, ll_task_fn fn, void *arg, const char *name) {
    if (!g || !fn) return LL_EINVAL;
    if (g->code != 0 || g->closed || g->cancelling || g->freed) return LL_ESTATE;
    char buf[128];
    const char *label = name ? name : ll__fn_name((const void *)fn, buf, sizeof buf);
    size_t len = strlen(label);
    child *c = ll__calloc(1, sizeof *c + len + 1);
    if (!c) return LL_ENOMEM;
    memcpy(c->name, label, len + 1);
    ll_spawn_opts o = {.name = name}; /* deadline 0: inherits the spawning task's */
    ll_future *f = ll_spawn_ex(fn, arg, &o);
    if (!f || ll_future_done(f)) { /* no loop, no memory or no stack: the task never started */
        int rc = f ? ll__future_retrieve(f) : LL_ENOMEM;
        ll_future_free(f);
        ll__free(c);
        return rc;
    }
    /* A fresh future has no callback yet: this stores it inline and cannot fail. */
    if (ll_future_add_done(f, child_done, c) != 0) {
        ll_future_cancel(f);
        ll_future_free(f);
        ll__free(c);
        return LL_ENOMEM;
    }
    c->g = g;
    c->f = f;
    c->id = f->task ? f->task->id : 0;
    ll__list_push_front(&g->children, &c->link);
    g->running++;
    return 0;
}

int ll_taskgroup_wait(ll_taskgroup *g) {
    if (!g) return LL_EINVAL;
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    if (g->waiter) return LL_ESTATE; /* another task is already waiting */
    if (g->running > 0) {
        ll_future *w = ll_future_new(t->loop);
        if (!w) return LL_ENOMEM;
        ll_future_set_label(w, "task group");
        ll_future_on_cancel(w, waiter_cancel, g);
        g->waiter = w;
        int rc = ll_await(w);
        g->waiter = NULL;
        ll_future_free(w);
        if (g->freed) { /* freed under us: the children were cancelled and detached */
            ll__free(g->msg);
            ll__free(g);
            return LL_ECLOSED;
        }
        g->closed = true;
        if (rc) return rc; /* cancelled or timed out: every child has stopped */
    }
    g->closed = true;
    return g->code;
}

const char *ll_taskgroup_errmsg(const ll_taskgroup *g) {
    if (!g || g->code == 0) return "";
    return g->msg ? g->msg : ll_strerror(g->code);
}

void ll_taskgroup_free(ll_taskgroup *g) {
    if (!g || g->freed) return;
    /* Children still running are cancelled and finish on their own; the loop keeps them alive. */
    while (g->children.head) {
        child *c = LL__CONTAINER(g->children.head, child, link);
        ll_future_remove_done(c->f, child_done, c);
        ll_future_cancel(c->f);
        child_unlink(g, c);
    }
    if (g->waiter) {
        g->freed = true;
        ll_future_fail(g->waiter, LL_ECLOSED, "task group freed while a task waited on it");
        return;
    }
    ll__free(g->msg);
    ll__free(g);
}
