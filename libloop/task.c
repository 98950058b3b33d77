/*
 * task.c — tasks (stackful coroutines), ll_await, cancellation and deadline scopes.
 *
 * Design notes:
 * - Only the loop switches into a task and a task only switches back to the loop, never to another
 *   task. Everything that resumes a task runs from the ready queue, on the loop's stack, so a task
 *   is never resumed from inside another task's call.
 * - The ll_task struct lives at the top of the task's own stack: spawning allocates one future and
 *   takes a stack from the pool, and a sleeping task costs about one page of memory.
 * - ll_await registers the task as the future's (inline, allocation-free) done callback and switches
 *   to the loop; the callback, run by the loop, switches back. Cancellation and deadlines do not
 *   resume the task directly: they cancel the awaited future and let its settling resume the task,
 *   so an operation has always stopped by the time its awaiter continues.
 * - Cancellation is sticky and scopes carry deadlines; see libloop/task.h for the contract.
 * - A task's outcome is decided when its function returns, then the task is finalised on the loop's
 *   stack (its own stack is being released).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define TASK_SPACE LL__TASK_SPACE

static void resume(ll_task *t);
static void on_sleep(struct ev_loop *ev, ev_timer *w, int revents);

static size_t usable(const ll_task *t) {
    return ll__task_usable(t);
}

/* The work function of a task's resumption. drain() (loop.c) recognises it and resumes the task
 * inline instead of calling it (see ll__task_resume); other callers come here. */
void ll__task_run(ll__work *w) {
    resume((ll_task *)w);
}
#define task_run ll__task_run

static void unlink_task(ll_task *t) {
    ll_loop *loop = t->loop;
    ll__list_remove(&loop->tasks, &t->link); /* asserts membership in debug builds */
    loop->ntasks--;
}

/* On the loop's stack, after the task's function returned (or the task was destroyed). */
static void finalize(ll_task *t) {
    ll_loop *loop = t->loop;
    ll_future *f = t->future;
    ll__stack *stack = t->stack;
    f->task = NULL;
    ev_timer_stop(loop->ev, &t->timer);
    if (t->rc == 0 && !t->forced) {
        ll_future_resolve(f, t->ret_value, t->ret_free);
    } else {
        if (t->ret_value && t->ret_free) t->ret_free(t->ret_value);
        if (t->cancelled || t->rc == LL_ECANCELED || t->forced) {
            ll_future_set_cancelled(f);
        } else if (t->fail_msg) {
            ll_future_fail(f, t->rc, "%s", t->fail_msg);
        } else {
            ll_future_fail(f, t->rc, NULL);
        }
    }
    if (loop->debug && f->state == LL_FUTURE_FAILED && f->refs == 1 && !f->queued) {
        /* Nobody holds the future of this failed task (fire and forget): say so now, while the
         * task's name is known, rather than as an anonymous 'task' future when it is freed. */
        char name[128];
        ll__warn(loop, "task #%llu '%s' failed with %s (%s) and nobody holds its future to "
                       "retrieve the error",
                 (unsigned long long)t->id, ll__task_label(t, name, sizeof name),
                 ll_err_name(f->code), ll_future_errmsg(f));
        f->retrieved = true;
    }
    ll__free(t->fail_msg);
    ll__free(t->name);
    ll__ctx_unref(t->ctx_vars);
    unlink_task(t);
    ll__stack_put(loop, stack); /* t lives on this stack: touch it no more */
    ll_future_free(f);
}

static void task_entry(void *p) {
    ll_task *t = p;
    ASAN_FINISH(NULL, &t->loop->main_stack_bottom, &t->loop->main_stack_size);
    t->rc = t->fn(t->arg);
    t->state = LL__TASK_DONE;
    ASAN_START(NULL, t->loop->main_stack_bottom, t->loop->main_stack_size);
    ll__switch_to(&t->ctx, &t->loop->main_ctx);
    abort(); /* unreachable: a finished task is never resumed */
}

static void report_overflow(ll_task *t, const char *how) {
    char name[128];
    fprintf(stderr,
            "libloop: task #%llu '%s' overflowed its %zu-byte stack (%s); give it a larger stack "
            "with ll_spawn_ex() or ll_loop_set_stack_size()\n",
            (unsigned long long)t->id, ll__task_label(t, name, sizeof name), (size_t)t->stack->size, how);
    abort(); /* memory of a neighbouring stack is corrupt: continuing would spread it */
}

/* What follows a switch back from a task, out of the inline path: the overflow check's report,
 * debug timing, and finalising a task whose function returned. */
void ll__task_after_switch(ll_task *t, double t0) {
    ll_loop *loop = t->loop;
    if (!ll__stack_intact(t->stack)) report_overflow(t, "canary overwritten");
    if (loop->debug) {
        double ms = ll__mono_ms() - t0;
        if (ms >= loop->slow_ms) {
            char name[128], what[192];
            snprintf(what, sizeof what, "task #%llu '%s'", (unsigned long long)t->id,
                     ll__task_label(t, name, sizeof name));
            ll__debug_slow(loop, ms, what);
        }
    }
    if (t->state == LL__TASK_DONE) finalize(t);
}

/* A task cancelled before it ever ran never will. */
void ll__task_finish_unstarted(ll_task *t) {
    t->rc = LL_ECANCELED;
    finalize(t);
}

static void resume(ll_task *t) {
    ll__task_resume(t);
}

/* Inline into ll_await and ll_yield: no call level, so no return, around the switch (switch.h). */
static inline __attribute__((always_inline)) void suspend(ll_task *t) {
    LL_ASSERT(t == ll__tls_task && t->state != LL__TASK_RUNNING);
    /* Every switch out of a task checks that its stack pointer is still inside its stack: a frame
     * larger than the stack that awaits (char buf[1 << 20]; ll_stream_read(...)) is caught here,
     * before the loop or another task runs on the memory it overwrote. */
    char *sp = (char *)__builtin_frame_address(0);
    if (sp < t->stack->lo || sp > t->stack->lo + t->stack->size)
        report_overflow(t, "its stack pointer was outside the stack at a switch");
    ASAN_START(&t->asan_fake_stack, t->loop->main_stack_bottom, t->loop->main_stack_size);
    ll__switch_to(&t->ctx, &t->loop->main_ctx);
    ASAN_FINISH(t->asan_fake_stack, &t->loop->main_stack_bottom, &t->loop->main_stack_size);
    t->state = LL__TASK_RUNNING;
}

/* ---- cancellation and deadlines ---- */

static void task_cancel_hook(ll_future *f, void *arg) {
    (void)f;
    ll_task *t = arg;
    t->cancelled = true;
    if (t->state == LL__TASK_WAITING && t->awaiting && !t->scope->shield)
        ll_future_cancel(t->awaiting);
}

/* The innermost scope whose own deadline is the effective one is the scope that expired. */
static void mark_fired(ll_task *t) {
    for (ll_scope *s = t->scope; s; s = s->parent) {
        if (s->deadline <= s->effective) {
            s->fired = true;
            return;
        }
        if (s->shield && s->parent && s->effective < s->parent->effective) return;
    }
}

/* Cancel what the task awaits because a deadline passed, saying so: "timed out after 1 s" (the
 * timeout as given to ll_await_timeout), not "operation canceled". */
static void cancel_timed_out(ll_task *t, ll_future *f) {
    char msg[96];
    if (t->timeout_scope && t->timeout_scope->fired)
        snprintf(msg, sizeof msg, "cancelled: timed out after %g s", t->timeout_secs);
    else
        snprintf(msg, sizeof msg, "cancelled: the task's deadline passed");
    ll__future_cancel_msg(f, msg);
}

static void on_deadline(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)revents;
    ll_task *t = w->data;
    double left = t->scope->effective - ll_now();
    if (left > 0) { /* libev's cached time ran ahead of the clock */
        ev_timer_set(w, left, 0.);
        ev_timer_start(ev, w);
        return;
    }
    if (t->state != LL__TASK_WAITING || !t->awaiting) return;
    t->timed_out = true;
    mark_fired(t);
    /* A child task bound by the same deadline times out by itself (and says so: LL_ETIMEDOUT rather
     * than LL_ECANCELED); we wake when it ends. */
    ll_task *child = t->awaiting->task;
    if (child && child->scope->effective <= t->scope->effective) return;
    cancel_timed_out(t, t->awaiting);
}

/* ---- spawning ---- */

ll_future *ll_spawn(ll_task_fn fn, void *arg) {
    return ll_spawn_ex(fn, arg, NULL);
}

ll_future *ll_spawn_ex(ll_task_fn fn, void *arg, const ll_spawn_opts *opts) {
    ll_spawn_opts o = {0};
    if (opts) o = *opts;
    ll_loop *loop = ll__loop_or_current(o.loop);
    if (!loop) return NULL;
    if (!fn) return ll_future_failed(loop, LL_EINVAL, "ll_spawn_ex: fn is NULL");
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "task");
    size_t size = o.stack_size ? o.stack_size : loop->stack_size;
    if (size < TASK_SPACE + 16384) size = TASK_SPACE + 16384;
    ll__stack *stack = ll__stack_get(loop, size);
    if (!stack) {
        ll_future_fail(f, LL_ESTACK, "cannot map a %zu-byte task stack (vm.max_map_count or memory "
                                     "exhausted)", size);
        return f;
    }
    char *name = NULL;
    if (o.name && !(name = ll__strdup(o.name))) {
        ll__stack_put(loop, stack);
        ll_future_fail(f, LL_ENOMEM, "out of memory spawning task '%s'", o.name);
        return f;
    }
    ll_task *t = (ll_task *)(stack->lo + stack->size - TASK_SPACE);
    ll__zero(t, sizeof *t); /* not memset: see ll__zero */
    stack->owner = t;
    t->loop = loop;
    t->stack = stack;
    t->fn = fn;
    t->arg = arg;
    t->name = name;
    t->id = ++loop->next_task_id;
    t->state = LL__TASK_READY;
    t->future = ll_future_ref(f);
    f->task = t;
    ll_task *parent = (ll__tls_task && ll__tls_task->loop == loop) ? ll__tls_task : NULL;
    t->root.deadline = o.deadline > 0 ? o.deadline : LL_NEVER;
    t->root.effective = t->root.deadline;
    if (parent && parent->scope->effective < t->root.effective)
        t->root.effective = parent->scope->effective;
    t->root.task = t;
    t->scope = &t->root;
    t->ctx_vars = ll__ctx_ref(parent ? parent->ctx_vars : loop->root_ctx);
    ev_timer_init(&t->timer, on_deadline, 0., 0.);
    t->timer.data = t;
    ev_timer_init(&t->sleep_timer, on_sleep, 0., 0.);
    t->sleep_timer.data = t;
    ll__switch_make(&t->ctx, stack->lo, usable(t), task_entry, t);
    ll__list_push_front(&loop->tasks, &t->link);
    loop->ntasks++;
    ll_future_on_cancel(f, task_cancel_hook, t);
    t->work.run = task_run;
    ll__schedule(loop, &t->work);
    return f;
}

/* ---- awaiting ---- */

static void wake(ll_future *f, void *arg) {
    ll_task *t = arg;
    if (t->state == LL__TASK_WAITING && t->awaiting == f) resume(t);
}
const ll_done_cb ll__task_wake_cb = wake; /* debug mode times the task step, not the wake */

/* Settling a future whose only callback is its awaiting task's wake: queue the task's resumption
 * itself instead of the future's dispatch, which would only call wake, which would only resume the
 * task. Same order on the ready queue, two call levels fewer around the switch (each one a
 * mispredicted return after it: make bench-core (a) and (c)). False if the task is not waiting on
 * f (then the ordinary dispatch runs wake, which checks the same). */
static _Thread_local bool destroying; /* inside ll__task_destroy_all: no shortcut */

bool ll__task_wake_scheduled(ll_future *f, void *arg) {
    ll_task *t = arg;
    /* While tasks are being destroyed a settle (a cancelled await, a handed-over permit) must stay
     * an ordinary dispatch: destroy_all removes the wake from the future before it runs, while a
     * queued resumption would outlive the task. The task stays "waiting" until it runs. */
    if (destroying || t->state != LL__TASK_WAITING || t->awaiting != f) return false;
    ll__schedule(t->loop, &t->work);
    return true;
}

int ll_await(ll_future *f) {
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    if (!f) return LL_ENOMEM;
    if (f->state != LL_FUTURE_PENDING) return ll__future_retrieve(f);
    if (f->loop != t->loop) return LL_EINVAL;
    ll_scope *sc = t->scope;
    int interrupt = 0;
    if (t->cancelled && !sc->shield) interrupt = LL_ECANCELED;
    else if (sc->effective < LL_NEVER && ll_now() >= sc->effective) interrupt = LL_ETIMEDOUT;
    int rc = ll_future_add_done(f, wake, t);
    if (rc) return rc;
    t->awaiting = ll_future_ref(f);
    t->state = LL__TASK_WAITING;
    t->timed_out = false;
    if (interrupt == LL_ETIMEDOUT) {
        t->timed_out = true;
        mark_fired(t);
    }
    if (interrupt == LL_ETIMEDOUT) {
        cancel_timed_out(t, f);
    } else if (interrupt) {
        ll_future_cancel(f);
    } else if (sc->effective < LL_NEVER) {
        ev_timer_set(&t->timer, sc->effective - ll_now(), 0.);
        ev_timer_start(t->loop->ev, &t->timer);
    }
    suspend(t);
    if (ev_is_active(&t->timer)) ev_timer_stop(t->loop->ev, &t->timer);
    ll_future *a = t->awaiting;
    t->awaiting = NULL;
    rc = ll__future_retrieve(a);
    if (t->timed_out && rc == LL_ECANCELED) rc = LL_ETIMEDOUT;
    t->timed_out = false;
    ll_future_free(a);
    return rc;
}

int ll_await_timeout(ll_future *f, double seconds) {
    ll_task *t = ll__tls_task;
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(seconds));
    const ll_scope *outer_scope = t ? t->timeout_scope : NULL;
    double outer_secs = t ? t->timeout_secs : 0;
    if (t) {
        t->timeout_scope = &s;
        t->timeout_secs = seconds;
    }
    int rc = ll_await(f);
    if (t) {
        t->timeout_scope = outer_scope;
        t->timeout_secs = outer_secs;
    }
    int src = ll_scope_exit(&s);
    return (rc == LL_ETIMEDOUT || rc == LL_ECANCELED) && src == LL_ETIMEDOUT ? LL_ETIMEDOUT : rc;
}

/* ll_sleep runs its own timer, in the task record, rather than ll_sleep_future's allocated timer
 * record: what it awaits is a future whose cancel hook stops that timer, so a cancel, a deadline or
 * shutdown (which cancels what a task awaits before releasing its stack) stops the timer before
 * ll_sleep returns, and nothing is left behind that points into the task's stack. */
static void on_sleep(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)revents;
    ll_task *t = w->data;
    if (ll__timer_early(ev, w, t->sleep_until)) return; /* libev's cached time ran ahead */
    ll_future_resolve(t->sleep_future, NULL, NULL);
}

static void sleep_cancel(ll_future *f, void *arg) {
    ll_task *t = arg;
    ev_timer_stop(t->loop->ev, &t->sleep_timer);
    ll_future_set_cancelled(f);
}

int ll_sleep(double seconds) {
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    ll_future *f = ll_future_new(t->loop);
    if (!f) return LL_ENOMEM;
    ll_future_set_label(f, "sleep");
    if (!(seconds > 0)) seconds = 0; /* negative or NaN: at once, as ll_sleep_future */
    t->sleep_until = ll_now() + seconds;
    t->sleep_future = f;
    ev_timer_set(&t->sleep_timer, seconds, 0.);
    ev_timer_start(t->loop->ev, &t->sleep_timer);
    ll_future_on_cancel(f, sleep_cancel, t);
    int rc = ll_await(f);
    LL_ASSERT(!ev_is_active(&t->sleep_timer));
    t->sleep_future = NULL;
    ll_future_free(f);
    return rc;
}

int ll_yield(void) {
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    LL_ASSERT(t->state == LL__TASK_RUNNING);
    t->state = LL__TASK_READY;
    ll__schedule(t->loop, &t->work);
    suspend(t);
    if (t->cancelled && !t->scope->shield) return LL_ECANCELED;
    /* A task that only yields never awaits, so no deadline timer can cut it: check here, or a
     * busy child would overrun its parent's deadline (promise 2). */
    if (t->scope->effective < LL_NEVER && ll_now() >= t->scope->effective) {
        mark_fired(t);
        return LL_ETIMEDOUT;
    }
    return 0;
}

/* ---- outcome ---- */

void ll_task_return(void *value, ll_value_free value_free) {
    ll_task *t = ll__tls_task;
    if (!t) return;
    if (t->ret_value && t->ret_free) t->ret_free(t->ret_value);
    t->ret_value = value;
    t->ret_free = value_free;
}

int ll_task_fail(int code, const char *fmt, ...) {
    ll_task *t = ll__tls_task;
    if (!t || !fmt) return code;
    va_list ap;
    va_start(ap, fmt);
    char *m = ll__vformat(fmt, ap);
    va_end(ap);
    ll__free(t->fail_msg);
    t->fail_msg = m;
    return code;
}

int ll_task_fail_from(ll_future *f) {
    int code = ll__future_retrieve(f);
    if (code == 0 || code == LL_EAGAIN) return code;
    return ll_task_fail(code, "%s", ll_future_errmsg(f));
}

bool ll_task_cancelled(void) {
    return ll__tls_task && ll__tls_task->cancelled;
}

ll_task *ll_task_current(void) { return ll__tls_task; }

const char *ll_task_name(const ll_task *t) {
    return (t && t->name) ? t->name : "task";
}

uint64_t ll_task_id(const ll_task *t) { return t ? t->id : 0; }

ll_future *ll_task_future(const ll_task *t) { return t ? t->future : NULL; }

ll_task *ll_future_task(const ll_future *f) { return f ? f->task : NULL; }

const char *ll__task_label(const ll_task *t, char *buf, size_t n) {
    if (t->name) return t->name;
    return ll__fn_name((const void *)t->fn, buf, n);
}

/* ---- scopes ---- */

static void enter(ll_scope *s, ll_time deadline, bool shield) {
    ll_task *t = ll__tls_task;
    memset(s, 0, sizeof *s);
    s->deadline = deadline;
    s->effective = deadline;
    s->task = t;
    if (!t) return;
    s->parent = t->scope;
    s->shield = shield || s->parent->shield;
    if (!shield && s->parent->effective < s->effective) s->effective = s->parent->effective;
    t->scope = s;
}

void ll_scope_enter(ll_scope *s, ll_time deadline) { enter(s, deadline, false); }
void ll_scope_enter_shielded(ll_scope *s, ll_time deadline) { enter(s, deadline, true); }

int ll_scope_exit(ll_scope *s) {
    ll_task *t = ll__tls_task;
    if (!s) return LL_EINVAL;
    if (!t || s->task != t) return LL_ENOTASK;
    if (t->scope != s) {
        /* Misuse: an inner scope was not exited. Unwind to s if it is on the chain. */
        ll_scope *p = t->scope;
        while (p && p != s) p = p->parent;
        if (!p) return LL_ESTATE;
    }
    t->scope = s->parent ? s->parent : &t->root;
    return s->fired ? LL_ETIMEDOUT : 0;
}

ll_time ll_task_deadline(void) {
    return ll__tls_task ? ll__tls_task->scope->effective : LL_NEVER;
}

/* ---- loop-wide operations ---- */

void ll__task_cancel_all(ll_loop *loop) {
    ll_task *t = ll__task_of(loop->tasks.head);
    while (t) {
        ll_task *next = ll__task_of(t->link.next);
        ll_future_cancel(t->future);
        t = next;
    }
}

void ll__task_destroy_all(ll_loop *loop) {
    /* drop queued resumptions first: they would point into released stacks */
    ll__work **pp = &loop->rq_head;
    loop->rq_tail = &loop->rq_head;
    while (*pp) {
        if ((*pp)->run == task_run) {
            *pp = (*pp)->next;
        } else {
            loop->rq_tail = &(*pp)->next;
            pp = &(*pp)->next;
        }
    }
    destroying = true;
    while (loop->tasks.head) {
        ll_task *t = ll__task_of(loop->tasks.head);
        if (loop->debug) {
            char name[128];
            ll__warn(loop, "shutdown: task #%llu '%s' did not finish cleaning up before the deadline "
                           "and was destroyed (what it held is lost)",
                     (unsigned long long)t->id, ll__task_label(t, name, sizeof name));
        }
        if (t->on_destroy) {
            t->on_destroy(t->on_destroy_arg);
            t->on_destroy = NULL;
        }
        if (t->awaiting) {
            /* Cancel what it waits for first: its producer unlinks whatever it keeps about the
             * waiter (a semaphore's waiter record lives on the stack about to be released). */
            ll_future_cancel(t->awaiting);
            ll_future_remove_done(t->awaiting, wake, t);
            ll_future_free(t->awaiting);
            t->awaiting = NULL;
        }
        if (t->sleep_future) { /* ll_sleep's own reference: it will never return to drop it */
            ll_future_free(t->sleep_future);
            t->sleep_future = NULL;
        }
        t->forced = true;
        t->rc = LL_ECANCELED;
        finalize(t);
    }
    destroying = false;
}

/* ---- context values ---- */

void ll__ctx_unref(ll__ctxnode *n) {
    while (n && --n->refs == 0) {
        ll__ctxnode *next = n->next;
        if (n->var->free_value && n->value) n->var->free_value(n->value);
        ll__free(n);
        n = next;
    }
}

int ll_ctxvar_set(const ll_ctxvar *var, void *value) {
    ll_loop *loop = ll_loop_current();
    ll__ctxnode **head = ll__tls_task ? &ll__tls_task->ctx_vars : loop ? &loop->root_ctx : NULL;
    ll__ctxnode *n = (head && var) ? ll__malloc(sizeof *n) : NULL;
    if (!n) {
        if (var && var->free_value && value) var->free_value(value);
        return var && head ? LL_ENOMEM : LL_EINVAL;
    }
    n->refs = 1;
    n->var = var;
    n->value = value;
    n->next = *head; /* takes over the holder's reference */
    *head = n;
    return 0;
}

void *ll_ctxvar_get(const ll_ctxvar *var) {
    ll_loop *loop = ll_loop_current();
    ll__ctxnode *n = ll__tls_task ? ll__tls_task->ctx_vars : loop ? loop->root_ctx : NULL;
    for (; n; n = n->next)
        if (n->var == var) return n->value;
    return NULL;
}
