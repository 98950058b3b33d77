/*
 * future.c — the future: one settle-once result with reference counting and done callbacks.
 *
 * Design notes:
 * - Settling never runs a callback. It puts the future's `work` on the loop's ready queue, and the
 *   loop runs the callbacks (dispatch). A producer can therefore settle from deep inside a parser
 *   or a cancel hook without being re-entered.
 * - The first callback is stored inline. A task awaiting a future is one callback, so the common
 *   await allocates nothing.
 * - The queue holds a reference while the future is queued, so dropping the last user reference
 *   between settle and dispatch is safe.
 * - Freed futures go to the loop's bounded recycler (alloc.c) and are handed out again.
 * - Debug builds (without NDEBUG, as the tests are built) poison a freed future's state: using it
 *   again (free, ref, settle, await, read) prints what it was and aborts, instead of corrupting a
 *   recycled future that now belongs to someone else. ASan and valgrind see recycled futures as
 *   freed memory too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#if !defined(NDEBUG) || defined(LL_ASSERTS)
#define FUTURE_POISON 0xDD /* the state of a freed future */
static void use_after_free(const ll_future *f, const char *func) {
    fprintf(stderr, "libloop: %s: future %p (label '%s') used after it was freed: the last "
                    "ll_future_free() of a future ends it, and it may already belong to someone "
                    "else\n",
            func, (const void *)f, f->label ? f->label : "future");
    abort();
}
#define CHECK_LIVE(f) \
    do { \
        if ((f)->state == FUTURE_POISON) use_after_free(f, __func__); \
    } while (0)
#else
#define CHECK_LIVE(f) ((void)0)
#endif

/* The future's rare parts, allocated on first use; NULL if out of memory. */
static ll__future_ext *ext_of(ll_future *f) {
    if (!f->ext && (f->ext = ll__calloc(1, sizeof *f->ext))) f->ext->f = f;
    return f->ext;
}

ll_future *ll_future_new(ll_loop *loop) {
    loop = ll__loop_or_current(loop);
    if (!loop) return NULL;
    ll_future *f = ll__recycled_calloc(&loop->free_futures, sizeof *f);
    if (!f) return NULL;
    f->loop = loop;
    f->refs = 1;
    loop->nfutures++;
    if (loop->debug && ext_of(f)) { /* out of memory: the future is not listed */
        ll__list_push_front(&loop->dbg_futures, &f->ext->dbg);
        if (ll__tls_task) { /* copied: the future may outlive the task; NULL if out of memory */
            char name[128];
            f->ext->creator = ll__strdup(ll__task_label(ll__tls_task, name, sizeof name));
        }
    }
    return f;
}

ll_future *ll_future_ref(ll_future *f) {
    if (f) {
        CHECK_LIVE(f);
        f->refs++;
    }
    return f;
}

void ll__future_debug_unlink(ll_future *f) {
    ll_loop *loop = f->loop;
    ll__future_ext *x = f->ext;
    if (x && (x->dbg.prev || loop->dbg_futures.head == &x->dbg))
        ll__list_remove(&loop->dbg_futures, &x->dbg);
}

static void destroy(ll_future *f) {
    ll_loop *loop = f->loop;
    if (loop->debug && !loop->freed && f->state == LL_FUTURE_FAILED && !f->retrieved) {
        ll__warn(loop, "future '%s'%s%s failed with %s (%s) and was freed without anyone "
                       "retrieving its error",
                 f->label ? f->label : "future",
                 f->ext && f->ext->creator ? " created by task " : "",
                 f->ext && f->ext->creator ? f->ext->creator : "", ll_err_name(f->code),
                 f->msg ? f->msg : ll_strerror(f->code));
    }
    if (f->value_free && f->value) f->value_free(f->value);
    if (f->borrowed) ll_future_free(f->borrowed);
    if (f->msg) ll__free(f->msg); /* (tested here: the common future has none of these) */
    if (f->ext) {
        ll__future_debug_unlink(f);
        ll__free(f->ext->cancel_msg);
        ll__free(f->ext->cbs);
        ll__free(f->ext->creator);
        ll__free(f->ext);
    }
    loop->nfutures--;
#ifdef FUTURE_POISON
    f->state = FUTURE_POISON;
#endif
    if (loop->freed) { /* outlived its loop: the loop's recycler is gone */
        ll__free(f);
        if (loop->nfutures == 0) ll__free(loop); /* the last future outliving it */
        return;
    }
    ll__recycled_free(&loop->free_futures, f, sizeof *f);
}

void ll_future_free(ll_future *f) {
    if (!f) return;
    CHECK_LIVE(f);
    if (--f->refs == 0) destroy(f);
}

/* Debug mode times each done callback; a task's wake is timed as the task's step instead. */
__attribute__((noinline)) static void run_cb_timed(ll_future *f, ll__cb c) {
    ll_loop *loop = f->loop;
    char of[160];
    snprintf(of, sizeof of, "future '%s'", ll_future_label(f));
    double t0 = ll__mono_ms();
    c.cb(f, c.arg); /* f stays alive: the queue holds a reference during dispatch */
    ll__debug_after_cb(loop, t0, "done callback", (const void *)c.cb, of);
}

static inline void run_cb(ll_future *f, ll__cb c) {
    if (__builtin_expect(f->loop->debug, 0) && c.cb != ll__task_wake_cb) run_cb_timed(f, c);
    else c.cb(f, c.arg);
}

static void dispatch(ll__work *w) {
    ll_future *f = (ll_future *)w;
    LL_ASSERT(f->queued && f->state != LL_FUTURE_PENDING);
    f->queued = false;
    /* Callbacks may add or remove callbacks (on this future too): walk by index and re-read. */
    if (f->has_cb0) {
        ll__cb c = f->cb0;
        f->has_cb0 = false;
        if (c.cb) run_cb(f, c);
    }
    for (uint32_t i = 0; f->ext && i < f->ext->ncbs; i++) {
        ll__cb c = f->ext->cbs[i];
        f->ext->cbs[i].cb = NULL;
        if (c.cb) run_cb(f, c);
    }
    if (f->ext) f->ext->ncbs = 0;
    ll_future_free(f); /* the queue's reference */
}

static void enqueue(ll_future *f) {
    if (f->queued) return;
    if (f->loop->freed) return; /* outlived its loop: nothing can run its callbacks any more */
    uint32_t ncbs = f->ext ? f->ext->ncbs : 0;
    if (!f->has_cb0 && ncbs == 0) return;
    if (f->has_cb0 && ncbs == 0 && f->cb0.cb == ll__task_wake_cb &&
        ll__task_wake_scheduled(f, f->cb0.arg)) {
        f->has_cb0 = false; /* the awaiting task resumes directly (task.c) */
        return;
    }
    f->queued = true;
    f->refs++;
    f->work.run = dispatch;
    ll__schedule(f->loop, &f->work);
}

static int settle(ll_future *f, int state, int code) {
    if (!f) return LL_EINVAL;
    CHECK_LIVE(f);
    if (f->state != LL_FUTURE_PENDING) return LL_ESTATE;
    f->state = (uint8_t)state;
    f->code = code;
    f->cancel_hook = NULL;
    if (state == LL_FUTURE_CANCELLED && !f->msg && f->ext && f->ext->cancel_msg) {
        f->msg = f->ext->cancel_msg; /* say why it was cancelled, not just "operation canceled" */
        f->ext->cancel_msg = NULL;
    }
    enqueue(f);
    return 0;
}

int ll_future_resolve(ll_future *f, void *value, ll_value_free value_free) {
    if (f) CHECK_LIVE(f);
    if (!f || f->state != LL_FUTURE_PENDING) return f ? LL_ESTATE : LL_EINVAL;
    f->value = value;
    f->value_free = value_free;
    return settle(f, LL_FUTURE_RESOLVED, 0);
}

/* A failed future's detail lives in the value slot, which only a resolved future exposes. */
static int fail_v(ll_future *f, int code, void *detail, ll_value_free detail_free, const char *fmt,
                  va_list ap) {
    if (f) CHECK_LIVE(f);
    if (!f) return LL_EINVAL;
    if (f->state != LL_FUTURE_PENDING) return LL_ESTATE;
    if (code >= 0) code = LL_EINVAL;
    if (fmt) f->msg = ll__vformat(fmt, ap); /* on out of memory the code's description stands in */
    f->value = detail;
    f->value_free = detail_free;
    return settle(f, code == LL_ECANCELED ? LL_FUTURE_CANCELLED : LL_FUTURE_FAILED, code);
}

int ll_future_vfail(ll_future *f, int code, const char *fmt, va_list ap) {
    return fail_v(f, code, NULL, NULL, fmt, ap);
}

int ll_future_fail(ll_future *f, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_v(f, code, NULL, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int ll_future_fail_detail(ll_future *f, int code, void *detail, ll_value_free detail_free,
                          const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = fail_v(f, code, detail, detail_free, fmt, ap);
    va_end(ap);
    return rc;
}

ll_future *ll_future_failed(ll_loop *loop, int code, const char *fmt, ...) {
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    va_list ap;
    va_start(ap, fmt);
    fail_v(f, code, NULL, NULL, fmt, ap);
    va_end(ap);
    return f;
}

void *ll_future_error_detail(ll_future *f, ll_value_free *detail_free) {
    if (detail_free) *detail_free = NULL;
    if (!f || f->state != LL_FUTURE_FAILED || f->borrowed) return NULL;
    f->retrieved = true;
    if (detail_free) *detail_free = f->value_free;
    return f->value;
}

void *ll_future_take_error_detail(ll_future *f) {
    void *d = ll_future_error_detail(f, NULL);
    if (d) {
        f->value = NULL;
        f->value_free = NULL;
    }
    return d;
}

int ll_future_set_cancelled(ll_future *f) {
    return settle(f, LL_FUTURE_CANCELLED, LL_ECANCELED);
}

int ll_future_copy_outcome(ll_future *dst, ll_future *src) {
    if (!dst || !src) return LL_EINVAL;
    if (dst->state != LL_FUTURE_PENDING || src->state == LL_FUTURE_PENDING) return LL_ESTATE;
    src->retrieved = true;
    if (src->state == LL_FUTURE_RESOLVED) {
        dst->value = ll_future_value(src);
        dst->borrowed = ll_future_ref(src);
        return settle(dst, LL_FUTURE_RESOLVED, 0);
    }
    if (src->msg) dst->msg = ll__strdup(src->msg);
    return settle(dst, src->state, src->code);
}

/* Cancel hooks cancel what they wait for (a task the future it awaits, a gather its inputs), so
 * running them recursively would take one stack frame per link: a chain of 10,000 tasks each
 * awaiting the next overflows the canceller's stack. Instead a cancel requested while a hook runs
 * on this thread is queued, and the outermost ll_future_cancel() runs the queue before it returns:
 * the same hooks, in breadth-first order, on a flat stack. Each queued future holds a reference. */
static _Thread_local ll_future *cancel_head, *cancel_tail;
static _Thread_local bool cancel_running;

static void run_cancel_hook(ll_future *f) {
    /* it may have settled, or lost its hook, since it was queued */
    if (f->state == LL_FUTURE_PENDING && f->cancel_hook) f->cancel_hook(f, f->cancel_arg);
    ll_future_free(f);
}

int ll_future_cancel(ll_future *f) {
    if (!f) return LL_EINVAL;
    CHECK_LIVE(f);
    if (f->state != LL_FUTURE_PENDING) return LL_EALREADY;
    if (f->cancel_requested) return 0;
    f->cancel_requested = true;
    if (!f->cancel_hook) return ll_future_set_cancelled(f);
    f->refs++; /* the hook may drop the producer's reference */
    f->cancel_next = NULL;
    if (cancel_running) { /* inside a hook: queue it, the outermost call runs it */
        if (cancel_tail) cancel_tail->cancel_next = f;
        else cancel_head = f;
        cancel_tail = f;
        return 0;
    }
    cancel_running = true;
    run_cancel_hook(f);
    while (cancel_head) {
        ll_future *next = cancel_head;
        cancel_head = next->cancel_next;
        if (!cancel_head) cancel_tail = NULL;
        run_cancel_hook(next);
    }
    cancel_running = false;
    return 0;
}

int ll__future_cancel_msg(ll_future *f, const char *msg) {
    if (f && msg && f->state == LL_FUTURE_PENDING && !ll__future_cancel_reason(f) && ext_of(f))
        f->ext->cancel_msg = ll__strdup(msg); /* on out of memory: plain "operation canceled" */
    return ll_future_cancel(f);
}

void ll_future_on_cancel(ll_future *f, ll_cancel_hook hook, void *arg) {
    if (!f || f->state != LL_FUTURE_PENDING) return;
    f->cancel_hook = hook;
    f->cancel_arg = arg;
}

int ll_future_add_done(ll_future *f, ll_done_cb cb, void *arg) {
    if (!f || !cb) return LL_EINVAL;
    CHECK_LIVE(f);
    if (!f->has_cb0 && (!f->ext || f->ext->ncbs == 0)) {
        f->cb0 = (ll__cb){cb, arg};
        f->has_cb0 = true;
    } else {
        ll__future_ext *x = ext_of(f);
        if (!x) return LL_ENOMEM;
        if (x->ncbs == x->capcbs) {
            uint32_t cap = x->capcbs ? x->capcbs * 2 : 4;
            ll__cb *n = ll__realloc(x->cbs, cap * sizeof *n);
            if (!n) return LL_ENOMEM;
            x->cbs = n;
            x->capcbs = cap;
        }
        x->cbs[x->ncbs++] = (ll__cb){cb, arg};
    }
    if (f->state != LL_FUTURE_PENDING) enqueue(f);
    return 0;
}

int ll_future_remove_done(ll_future *f, ll_done_cb cb, void *arg) {
    if (!f) return LL_EINVAL;
    if (f->has_cb0 && f->cb0.cb == cb && f->cb0.arg == arg) {
        f->cb0.cb = NULL;
        f->has_cb0 = false;
        return 0;
    }
    for (uint32_t i = 0; f->ext && i < f->ext->ncbs; i++) {
        if (f->ext->cbs[i].cb == cb && f->ext->cbs[i].arg == arg) {
            f->ext->cbs[i].cb = NULL;
            return 0;
        }
    }
    return LL_ENOENT;
}

ll_future_state ll_future_get_state(const ll_future *f) {
    return f ? (ll_future_state)f->state : LL_FUTURE_FAILED;
}

bool ll_future_done(const ll_future *f) {
    return !f || f->state != LL_FUTURE_PENDING;
}

int ll__future_retrieve(ll_future *f) {
    if (!f) return LL_ENOMEM;
    CHECK_LIVE(f);
    if (f->state == LL_FUTURE_PENDING) return LL_EAGAIN;
    f->retrieved = true;
    return f->code;
}

int ll_future_code(ll_future *f) {
    return ll__future_retrieve(f);
}

const char *ll_future_errmsg(ll_future *f) {
    if (!f) return "out of memory";
    CHECK_LIVE(f);
    if (f->state == LL_FUTURE_PENDING || f->state == LL_FUTURE_RESOLVED) return "";
    f->retrieved = true;
    return f->msg ? f->msg : ll_strerror(f->code);
}

void *ll_future_value(const ll_future *f) {
    return (f && f->state == LL_FUTURE_RESOLVED) ? f->value : NULL;
}

void *ll_future_value_as(const ll_future *f, ll_value_free value_free) {
    if (!f || f->state != LL_FUTURE_RESOLVED || !value_free) return NULL;
    /* a mirrored value (copy_outcome) is typed by the future it came from */
    const ll_future *src = f;
    while (src->borrowed) src = src->borrowed;
    return src->value_free == value_free ? f->value : NULL;
}

void *ll_future_take(ll_future *f) {
    /* a mirrored value (copy_outcome) belongs to the source future: it cannot be taken */
    if (!f || f->state != LL_FUTURE_RESOLVED || f->borrowed) return NULL;
    f->value_free = NULL;
    return f->value;
}

ll_loop *ll_future_loop(const ll_future *f) {
    return f ? f->loop : NULL;
}

void ll_future_set_label(ll_future *f, const char *label) {
    if (f) f->label = label;
}

const char *ll_future_label(const ll_future *f) {
    return (f && f->label) ? f->label : "future";
}
