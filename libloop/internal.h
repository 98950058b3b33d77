/*
 * internal.h — the structures the core's files share. Never installed; clients use only the public
 * headers plus the few ll__ helpers declared at the end (marked "for clients").
 *
 * Threading: everything here belongs to the loop's thread, except the thread-safe queue
 * (ts_lock) and the executor's job queue.
 */
#ifndef LIBLOOP_INTERNAL_H
#define LIBLOOP_INTERNAL_H

#include <ev.h>
#include <pthread.h>
#include <stdarg.h>
#include "libloop.h"
#include "switch.h"

#include "ll_assert.h" /* LL_ASSERT */
#include "containers.h"

/* Memory, through the allocator hook. */
/* The allocator hook's functions are public (common.h) so client libraries share them; inside the
 * core they keep their ll__ names. */
#define ll__malloc ll_malloc
#define ll__calloc ll_calloc
#define ll__realloc ll_realloc
#define ll__free ll_free
#define ll__strdup ll_strdup
#define ll__vformat ll_vformat
#define ll__format ll_format

/* alloc.c: a loop's bounded list of freed records of one size, handed out again (futures,
 * call_soon records), inline because they are the hottest allocations. Released by ll_loop_free.
 * The first word of a waiting record is the link; the record is poisoned for ASan and valgrind
 * while it waits (ll__recycled_take / _give_back, no-ops in plain builds). */
typedef struct ll__recycler {
    void *head;
    size_t n;
} ll__recycler;
#define LL__RECYCLE_MAX 1024
void ll__recycled_take(ll__recycler *r, void *p, size_t size);
void ll__recycled_give_back(ll__recycler *r, void *p, size_t size);
void ll__recycler_release(ll__recycler *r, size_t size);
/* true under ASan or valgrind (set when the first loop is made) */
extern bool ll__recycle_annotate;
void ll__recycle_init(void);
/* Zero a hot record of a few hundred bytes with plain word stores. For a constant size gcc expands
 * memset into `rep stosq`, whose start-up cost made zeroing a recycled future 18 % of bench-core (a)
 * (perf annotate); the empty asm keeps the loop from being turned back into that memset. */
static inline void ll__zero(void *p, size_t size) {
    uint64_t *w = (uint64_t *)p;
    size_t i = 0;
    for (; i < size / 8; i++) {
        w[i] = 0;
        __asm__ volatile("" : : "r"(w) : "memory");
    }
    for (i *= 8; i < size; i++) ((unsigned char *)p)[i] = 0;
}

/* zeroed, like calloc */
static inline void *ll__recycled_calloc(ll__recycler *r, size_t size) {
    void *p = r->head;
    if (!p) return ll_calloc(1, size);
    if (ll__recycle_annotate) ll__recycled_give_back(r, p, size);
    r->head = *(void **)p;
    r->n--;
    ll__zero(p, size);
    return p;
}
static inline void ll__recycled_free(ll__recycler *r, void *p, size_t size) {
    if (r->n >= LL__RECYCLE_MAX) {
        ll_free(p);
        return;
    }
    *(void **)p = r->head;
    r->head = p;
    r->n++;
    if (ll__recycle_annotate) ll__recycled_take(r, p, size);
}

/* A unit of work on the loop's ready queue. Embedded in futures, tasks and call_soon records so
 * that scheduling never allocates. */
typedef struct ll__work {
    struct ll__work *next;
    void (*run)(struct ll__work *w);
} ll__work;

typedef struct ll__cb {
    ll_done_cb cb;
    void *arg;
} ll__cb;

/* The rarely used parts of a future, allocated when first needed: a reason for cancelling, the
 * second and later callbacks, debug mode's bookkeeping. Keeping them out of ll_future makes the
 * record 136 bytes instead of 200: a sleeping task holds two futures (make bench-core (d): peak
 * memory per task), and a recycled future is zeroed on every reuse ((a)). */
typedef struct ll__future_ext {
    ll_future *f;         /* back pointer, for the debug list */
    char *cancel_msg;     /* owned: why it is being cancelled ("timed out after 1 s"), which becomes
                           * msg if it settles cancelled without a message of its own */
    ll__cb *cbs;          /* further callbacks */
    uint32_t ncbs, capcbs;
    char *creator;        /* debug mode: a copy of the creating task's name (it may outlive the task) */
    ll__dlink dbg;        /* on loop->dbg_futures: live futures, debug mode only */
} ll__future_ext;

struct ll_future {
    ll__work work;       /* dispatches the done callbacks */
    ll_loop *loop;
    uint32_t refs;
    uint8_t state;       /* ll_future_state */
    bool queued;         /* work is on the ready queue */
    bool retrieved;      /* someone read the outcome (debug: unretrieved failures) */
    bool cancel_requested;
    int code;
    bool has_cb0;
    char *msg;           /* owned; NULL means ll_strerror(code) */
    void *value;
    ll_value_free value_free;
    ll_future *borrowed; /* copy_outcome: the future whose value we show */
    ll_cancel_hook cancel_hook;
    void *cancel_arg;
    ll__cb cb0;          /* the first callback inline: awaiting never allocates */
    ll_future *cancel_next; /* the thread's queue of cancel hooks still to run (future.c) */
    ll_task *task;       /* the task behind a task future, while it lives */
    const char *label;
    ll__future_ext *ext; /* NULL until a rare part is needed */
};

/* Why a pending future is being cancelled, or NULL. */
static inline const char *ll__future_cancel_reason(const ll_future *f) {
    return f->ext ? f->ext->cancel_msg : NULL;
}

typedef struct ll__ctxnode {
    uint32_t refs;
    const ll_ctxvar *var;
    void *value;
    struct ll__ctxnode *next;
} ll__ctxnode;
void ll__ctx_unref(ll__ctxnode *n);
static inline ll__ctxnode *ll__ctx_ref(ll__ctxnode *n) {
    if (n) n->refs++;
    return n;
}

typedef struct ll__stack ll__stack;

typedef enum {
    LL__TASK_READY,    /* created or woken, on the ready queue */
    LL__TASK_RUNNING,
    LL__TASK_WAITING,  /* suspended in ll_await */
    LL__TASK_DONE
} ll__task_state;

struct ll_task {
    ll__work work;        /* resumes the task */
    ll_loop *loop;
    ll_future *future;    /* the task's own reference */
    ll_task_fn fn;
    void *arg;
    ll__switch_ctx ctx;
    ll__stack *stack;
    uint64_t id;
    char *name;           /* owned, may be NULL: then the function's symbol */
    uint8_t state;
    bool started;
    bool cancelled;       /* sticky cancellation requested */
    bool timed_out;       /* the current await was cut by a deadline */
    bool finished_fn;
    bool forced;          /* destroyed by shutdown */
    int rc;
    ll_future *awaiting;  /* reference held while suspended */
    ll_scope root;        /* the deadline inherited or given at spawn */
    ll_scope *scope;      /* innermost scope */
    const ll_scope *timeout_scope; /* ll_await_timeout's scope while it awaits, with its seconds: */
    double timeout_secs;           /* the timeout as given, for the message */
    ev_timer timer;       /* the deadline of the current await */
    ev_timer sleep_timer; /* ll_sleep's: in the task record, which sits in the task's resident top
                           * page, so a sleeping task allocates no timer record (make bench-core
                           * (d): memory per sleeping task) */
    ll_time sleep_until;  /* ll_sleep's deadline, re-checked when the timer fires */
    ll_future *sleep_future;
    void *ret_value;
    ll_value_free ret_free;
    char *fail_msg;
    ll__ctxnode *ctx_vars;
    /* Set by a producer that keeps a record on this task's stack while it waits (sync.c): run if
     * the task is destroyed at shutdown, so the record is unlinked and what was handed to it
     * passed on. */
    void (*on_destroy)(void *arg);
    void *on_destroy_arg;
    ll__dlink link;       /* on loop->tasks: the live tasks */
    void *asan_fake_stack;
};

typedef struct ll__executor ll__executor;

struct ll_loop {
    struct ev_loop *ev;
    bool owns_ev;
    bool stop_requested;
    bool running;         /* inside ll_loop_run / run_until / shutdown: our own ev_run calls */
    bool shutting_down;   /* inside ll_loop_shutdown: return as soon as no task is left */
    ll_future *until;     /* the future ll_loop_run_until waits for */
    ll__dlist closers;    /* handles ll_loop_free closes if the application did not */
    bool closing;
    bool freed;           /* ll_loop_free ran; the record stays while futures outlive the loop */
    ev_prepare prepare;
    ev_idle idle;
    ev_async async;
    ev_signal sig_int, sig_term, sig_usr1;
    bool signals_on, usr1_on;
    bool freeing;         /* inside ll_loop_free, past the point of no return */
    /* the ready queue */
    ll__work *rq_head, **rq_tail;
    /* work handed over by other threads */
    pthread_mutex_t ts_lock;
    ll__work *ts_head, **ts_tail;
    /* tasks */
    ll__dlist tasks;      /* of ll_task, by their link */
    ll_task *current;
    ll__switch_ctx main_ctx;
    uint64_t next_task_id;
    size_t ntasks, nfutures, nhandles;
    size_t stack_size;
    struct ll__stackpool *stackpools;
    size_t stacks_guarded, stacks_unguarded;
    ll__ctxnode *root_ctx;
    ll__executor *executor;
    unsigned executor_threads;
    bool executor_closed; /* ll_loop_free has stopped the executor: no new one is started */
    void *dns;            /* dns.c: the c-ares channel, its watchers and the cache (lazily made) */
    void *tls;            /* tls.c: SSL_CTX cache (lazily made) */
    /* debug mode */
    bool debug;
    double slow_ms;
    ll_warn_fn warn;
    void *warn_arg;
    ll__dlist dbg_futures; /* of ll_future, by their dbg link */
    /* ASan: the loop stack, learnt on the first switch into a task */
    const void *main_stack_bottom;
    size_t main_stack_size;
    ll_loop *thread_prev;  /* the thread's list of loops, newest first */
    ll__recycler free_futures, free_soon; /* alloc.c: freed records kept for reuse */
};

/* A handle the loop closes when it is freed while the application still has it open (a
 * fire-and-forget ll_loop_call_later, ...): close() must stop its watchers and release it, typically by
 * cancelling its future, and remove it from the list. Without this its watcher would stay in an
 * embedded ev_loop, pointing at freed memory. */
typedef struct ll__closer {
    ll__dlink link;       /* on loop->closers */
    void (*close)(struct ll__closer *c);
} ll__closer;

/* loop.c */
void ll__closer_add(ll_loop *loop, ll__closer *c);
void ll__closer_remove(ll_loop *loop, ll__closer *c);
extern _Thread_local ll_loop *ll__tls_loop;   /* the loop running on this thread, if any */
extern _Thread_local ll_task *ll__tls_task;   /* the running task, if any */
void ll__schedule(ll_loop *loop, ll__work *w);
/* The record behind a list node of these lists. */
static inline ll_task *ll__task_of(ll__dlink *l) { return l ? LL__CONTAINER(l, ll_task, link) : NULL; }
static inline ll_future *ll__dbg_future_of(ll__dlink *l) {
    return l ? LL__CONTAINER(l, ll__future_ext, dbg)->f : NULL;
}

static inline ll_loop *ll__loop_or_current(ll_loop *loop) {
    return loop ? loop : ll_loop_current();
}
/* count an open handle (stats, leak checks); clients use the public ll_loop_track_handle() */
static inline void ll__handle_ref(ll_loop *loop) { loop->nhandles++; }
static inline void ll__handle_unref(ll_loop *loop) { loop->nhandles--; }
/* Deadline timers. libev times an ev_timer from the time it cached at the start of the current
 * iteration, which is stale after a busy iteration, so a timer may fire before its absolute
 * deadline. Every timer that enforces a deadline starts with ll__timer_start_at and begins its
 * callback with `if (ll__timer_early(ev, w, deadline)) return;`, which re-arms it for what is left. */
void ll__timer_start_at(struct ev_loop *ev, ev_timer *w, ll_time deadline);
bool ll__timer_early(struct ev_loop *ev, ev_timer *w, ll_time deadline);
/* Move work handed over by other threads onto the ready queue. */
void ll__loop_pull_threadsafe(ll_loop *loop);

/* future.c */
void ll__future_debug_unlink(ll_future *f);
int ll__future_retrieve(ll_future *f);
/* ll_future_cancel, recording why (copied): the message the future gets if it settles cancelled
 * without one of its own. */
int ll__future_cancel_msg(ll_future *f, const char *msg);

/* task.c */
/* The task record sits at the top of its stack, rounded to a cache line. */
#define LL__TASK_SPACE ((sizeof(ll_task) + 63) & ~(size_t)63)
#if defined(__SANITIZE_ADDRESS__)
#define LL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LL_ASAN 1
#endif
#endif
#ifdef LL_ASAN
#include <sanitizer/common_interface_defs.h>
#define ASAN_START(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define ASAN_FINISH(save, bottom, size) __sanitizer_finish_switch_fiber(save, bottom, size)
#else
#define ASAN_START(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#define ASAN_FINISH(save, bottom, size) ((void)(save), (void)(bottom), (void)(size))
#endif
void ll__task_run(ll__work *w);              /* a task's resumption on the ready queue */
void ll__task_after_switch(ll_task *t, double t0);
void ll__task_finish_unstarted(ll_task *t);
extern const ll_done_cb ll__task_wake_cb; /* the done callback of an awaiting task */
bool ll__task_wake_scheduled(ll_future *f, void *arg); /* future.c's shortcut, see task.c */
void ll__task_destroy_all(ll_loop *loop);
void ll__task_cancel_all(ll_loop *loop);
const char *ll__task_label(const ll_task *t, char *buf, size_t n);

/* stack.c */
struct ll__stack {
    char *lo;             /* lowest usable address */
    char *canary;         /* unguarded: the zero zone just below lo, checked at switches */
    struct ll__stack *next_free;
    struct ll__stackpool *pool;
    ll_task *owner;
    uint32_t size;        /* usable bytes (stacks are at most 1 GiB) */
    bool guarded;
};
ll__stack *ll__stack_get(ll_loop *loop, size_t size);
void ll__stack_put(ll_loop *loop, ll__stack *s);
void ll__stack_pools_free(ll_loop *loop);
/* False if the canary just below an unguarded stack was overwritten (checked at every switch:
 * inline, since guarded stacks have none). */
bool ll__stack_canary_ok(const ll__stack *s);
static inline bool ll__stack_intact(const ll__stack *s) {
    return !s->canary || ll__stack_canary_ok(s);
}
void ll__stack_thread_init(void);

double ll__mono_ms(void); /* debug.c */

static inline size_t ll__task_usable(const ll_task *t) {
    return t->stack->size - LL__TASK_SPACE;
}

/* Switch from the loop into a task and back (task.c's resume, and drain() in loop.c directly).
 * Inline, so that the loop side of a switch is in drain's own frame: with no call around the
 * switch (switch.h) there is no return to mispredict after it. Only the loop switches into a task,
 * never another task. */
static inline __attribute__((always_inline)) void ll__task_resume(ll_task *t) {
    ll_loop *loop = t->loop;
    LL_ASSERT(t->state == LL__TASK_READY || t->state == LL__TASK_WAITING);
    LL_ASSERT(!loop->current);
    if (__builtin_expect(!t->started && t->cancelled, 0)) {
        ll__task_finish_unstarted(t);
        return;
    }
    t->started = true;
    t->state = LL__TASK_RUNNING;
    ll_task *saved_task = ll__tls_task;
    ll_loop *saved_loop = ll__tls_loop;
    ll__tls_task = t;
    ll__tls_loop = loop;
    loop->current = t;
    double t0 = __builtin_expect(loop->debug, 0) ? ll__mono_ms() : 0;
    void *fake = NULL;
    ASAN_START(&fake, t->stack->lo, ll__task_usable(t));
    ll__switch_to(&loop->main_ctx, &t->ctx);
    ASAN_FINISH(fake, NULL, NULL);
    ll__tls_task = saved_task;
    ll__tls_loop = saved_loop;
    loop->current = NULL;
    if (__builtin_expect(!ll__stack_intact(t->stack) || loop->debug || t->state == LL__TASK_DONE,
                         0))
        ll__task_after_switch(t, t0);
}

/* debug.c */
void ll__warn(ll_loop *loop, const char *fmt, ...) LL_PRINTF(2, 3);
void ll__debug_slow(ll_loop *loop, double ms, const char *what);
/* Debug mode: warn if the callback fn, started at t0 (ll__mono_ms), ran for slow_ms or more;
 * kind says what it is ("call_soon callback"), `of` what it belongs to (may be NULL). */
void ll__debug_after_cb(ll_loop *loop, double t0, const char *kind, const void *fn,
                        const char *of);
/* SIGUSR1 prints the task dump while a loop is in debug mode (loop.c) */
void ll__debug_usr1_update(ll_loop *loop);
void ll__debug_report_alive(ll_loop *loop);
const char *ll__fn_name(const void *fn, char *buf, size_t n);
double ll__mono_ms(void);

/* executor.c */
void ll__executor_free(ll_loop *loop);

/* dns.c, tls.c: per-loop I/O state, released by ll_loop_free */
void ll__dns_free(ll_loop *loop);
void ll__tls_free(ll_loop *loop);

#endif
