/*
 * sync.c — semaphore, lock, event and bounded queue for the tasks of one loop.
 *
 * Design notes:
 * - A waiting task is a `waiter` record on its own stack (it stays valid while the task is
 *   suspended) with a private future it awaits. The future is labelled ("lock", "queue get") so the
 *   task dump shows what the task waits for, and ll_await gives us cancellation and deadlines: its
 *   cancel hook takes the waiter off the wait list and settles it cancelled at once.
 * - No barging: a release hands the permit (lock, item, free slot) straight to the first waiter by
 *   resolving its future, rather than waking it to compete with whoever comes next. FIFO wait lists
 *   make the order of acquisition the order of arrival.
 * - The handoff race: the permit may be handed to a waiter whose task is then cancelled before it
 *   runs again. Its future is already resolved, so ll_await returns 0; the waiter notices its task
 *   was cancelled (the cancellation is sticky) and passes the permit on exactly as a release would,
 *   then returns LL_ECANCELED. A waiting call that fails has therefore never taken anything.
 *   Between the handoff and the resumption the waiter sits on a `granted` list, so that freeing
 *   the primitive in that window can tell it not to touch freed memory.
 *   Deadlines are not treated this way: a permit handed over before the deadline was obtained in
 *   time, as with ll_await.
 * - The queue hands over by reservation: an item stays at the head of the ring, promised to the
 *   first waiting getter, and nobody else may take it; the getter takes the head when it resumes.
 *   Items thus leave in the order they came even when a promised getter is cancelled (the promise
 *   passes to the next getter), and an item waiting for its getter still counts against capacity.
 *   Waiting putters are admitted in order as room frees: their item enters the ring at once, so a
 *   put returns 0 even if its task was cancelled meanwhile — the item is then the queue's and
 *   cannot be taken back, and the return code must say so.
 * - Freeing a primitive fails the waiters' futures with LL_ECLOSED; they resume later and never
 *   touch the primitive again.
 * - A waiting task destroyed at shutdown (its stack released without it resuming) would leave its
 *   record on a list and take whatever was handed to it along: the task's on_destroy hook
 *   (waiter_destroyed) unlinks the record and passes a granted permit or promised item on.
 */
#include <limits.h>
#include <string.h>
#include "containers.h"
#include "internal.h"

/* ---- wait lists ---- */

typedef struct waiter waiter;
typedef struct waitq {
    ll__dlist l;
} waitq;

typedef struct waitspec {
    waitq *granted;             /* where a handoff puts the waiter (NULL: on no list) */
    void (*pass_on)(void *owner); /* give what was handed over to the next waiter */
    void *owner;
} waitspec;

struct waiter {
    ll__dlink link;  /* on q */
    waitq *q;        /* the list this waiter is on; NULL when on none */
    waitspec spec;
    ll_future *f;    /* what the task awaits */
    uint64_t task_id;
    void *item;      /* queue: the item to put, or the item received */
    bool closed;     /* the primitive was freed after the handoff */
};

static waiter *waitq_first(const waitq *q) {
    return q->l.head ? LL__CONTAINER(q->l.head, waiter, link) : NULL;
}

static void waitq_push(waitq *q, waiter *w) {
    w->q = q;
    ll__list_push_back(&q->l, &w->link);
}

static void waitq_remove(waiter *w) {
    waitq *q = w->q;
    if (!q) return;
    ll__list_remove(&q->l, &w->link); /* asserts that w is on q in debug builds */
    w->q = NULL;
}

/* Hand over to the first waiter of `from`: move it to `granted` (or to no list) and resolve. */
static waiter *grant_first(waitq *from, waitq *granted) {
    waiter *w = waitq_first(from);
    waitq_remove(w);
    if (granted) waitq_push(granted, w);
    /* the waiter's future is private and pending while it is listed: this cannot fail */
    int rc = ll_future_resolve(w->f, NULL, NULL);
    LL_ASSERT(rc == 0);
    (void)rc;
    return w;
}

static void waiter_cancel(ll_future *f, void *arg) {
    waitq_remove(arg);
    ll_future_set_cancelled(f);
}

/* The primitive is going away: fail every waiter, and tell granted ones not to come back. */
static void waitq_close(waitq *waiting, waitq *granted, const char *what) {
    while (waiting && waitq_first(waiting)) {
        waiter *w = waitq_first(waiting);
        waitq_remove(w);
        w->closed = true;
        ll_future_fail(w->f, LL_ECLOSED, "%s freed while a task waited on it", what);
    }
    while (granted && waitq_first(granted)) {
        waiter *w = waitq_first(granted);
        waitq_remove(w);
        w->closed = true;
    }
}

/* The waiting task is destroyed at shutdown, its stack (and this record) about to go: unlink the
 * record, and pass on what was handed to it, as a cancelled waiter does when it resumes. */
static void waiter_destroyed(void *arg) {
    waiter *w = arg;
    bool granted = w->q && w->q == w->spec.granted;
    waitq_remove(w);
    if (granted && w->spec.pass_on) w->spec.pass_on(w->spec.owner);
    ll_future_free(w->f); /* wait_on's reference: it will not return to drop it */
    w->f = NULL;
}

/* Suspend the calling task on list q until a handoff, cancellation, deadline or close. */
static int wait_on(ll_task *t, waitq *q, waiter *w, const char *label, void *item,
                   const waitspec *spec) {
    memset(w, 0, sizeof *w);
    w->item = item;
    if (spec) w->spec = *spec;
    w->f = ll_future_new(t->loop);
    if (!w->f) return LL_ENOMEM;
    ll_future_set_label(w->f, label);
    w->task_id = t->id;
    ll_future_on_cancel(w->f, waiter_cancel, w);
    waitq_push(q, w);
    LL_ASSERT(!t->on_destroy);
    t->on_destroy = waiter_destroyed;
    t->on_destroy_arg = w;
    int rc = ll_await(w->f);
    t->on_destroy = NULL;
    /* An error means the hook or the close took us off the list already; make sure of it, as the
     * record dies with this frame. After a handoff (0) we are on the granted list, if any. */
    if (rc != 0) waitq_remove(w);
    ll_future_free(w->f);
    w->f = NULL;
    return rc;
}

/* Handed over, but should the task give it back? Only if it was cancelled meanwhile and is not
 * running shielded cleanup. */
static bool cancelled_after_handoff(const ll_task *t) {
    return t->cancelled && !t->scope->shield;
}

/* ---- permits: the semaphore, and the lock on top of it ---- */

typedef struct permits {
    unsigned value;
    uint64_t owner;  /* lock only: id of the holding task (set at handoff), 0 when free */
    waitq waiting, granted;
} permits;

static void permits_release(permits *p) {
    if (waitq_first(&p->waiting)) {
        waiter *w = grant_first(&p->waiting, &p->granted);
        p->owner = w->task_id;
        return;
    }
    p->owner = 0;
    if (p->value < UINT_MAX) p->value++;
}

static void permits_pass_on(void *owner) {
    permits_release(owner);
}

static int permits_acquire(permits *p, const char *label) {
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    if (p->value > 0 && !waitq_first(&p->waiting)) {
        p->value--;
        p->owner = t->id;
        return 0;
    }
    waiter w;
    waitspec spec = {&p->granted, permits_pass_on, p};
    int rc = wait_on(t, &p->waiting, &w, label, NULL, &spec);
    if (rc != 0) return rc; /* cancelled, timed out or closed: not on any list any more */
    if (w.closed) return LL_ECLOSED;
    waitq_remove(&w); /* from `granted` */
    if (cancelled_after_handoff(t)) {
        permits_release(p);
        return LL_ECANCELED;
    }
    return 0;
}

/* ---- semaphore ---- */

struct ll_sem {
    permits p;
};

ll_sem *ll_sem_new(unsigned value) {
    ll_sem *s = ll__calloc(1, sizeof *s);
    if (s) s->p.value = value;
    return s;
}

int ll_sem_acquire(ll_sem *s) {
    if (!s) return LL_EINVAL;
    return permits_acquire(&s->p, "semaphore");
}

int ll_sem_try_acquire(ll_sem *s) {
    if (!s) return LL_EINVAL;
    if (s->p.value == 0 || waitq_first(&s->p.waiting)) return LL_EAGAIN;
    s->p.value--;
    return 0;
}

void ll_sem_release(ll_sem *s) {
    if (s) permits_release(&s->p);
}

unsigned ll_sem_value(const ll_sem *s) {
    return s ? s->p.value : 0;
}

void ll_sem_free(ll_sem *s) {
    if (!s) return;
    waitq_close(&s->p.waiting, &s->p.granted, "semaphore");
    ll__free(s);
}

/* ---- lock ---- */

struct ll_lock {
    permits p;
};

ll_lock *ll_lock_new(void) {
    ll_lock *l = ll__calloc(1, sizeof *l);
    if (l) l->p.value = 1;
    return l;
}

int ll_lock_acquire(ll_lock *l) {
    if (!l) return LL_EINVAL;
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    if (l->p.value == 0 && l->p.owner == t->id) return LL_ESTATE; /* not re-entrant: deadlock */
    return permits_acquire(&l->p, "lock");
}

int ll_lock_release(ll_lock *l) {
    if (!l) return LL_EINVAL;
    ll_task *t = ll__tls_task;
    if (l->p.value != 0 || !t || l->p.owner != t->id) return LL_ESTATE;
    permits_release(&l->p);
    return 0;
}

bool ll_lock_locked(const ll_lock *l) {
    return l && l->p.value == 0;
}

void ll_lock_free(ll_lock *l) {
    if (!l) return;
    waitq_close(&l->p.waiting, &l->p.granted, "lock");
    ll__free(l);
}

/* ---- event ---- */

struct ll_event {
    bool set;
    waitq waiting;
};

ll_event *ll_event_new(void) {
    return ll__calloc(1, sizeof(ll_event));
}

void ll_event_set(ll_event *e) {
    if (!e) return;
    e->set = true;
    while (waitq_first(&e->waiting)) grant_first(&e->waiting, NULL);
}

void ll_event_clear(ll_event *e) {
    if (e) e->set = false;
}

bool ll_event_is_set(const ll_event *e) {
    return e && e->set;
}

int ll_event_wait(ll_event *e) {
    if (!e) return LL_EINVAL;
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    if (e->set) return 0;
    waiter w;
    /* Nothing to give back after a wake-up: every waiter was woken, so a set event is 0. */
    return wait_on(t, &e->waiting, &w, "event", NULL, NULL);
}

void ll_event_free(ll_event *e) {
    if (!e) return;
    waitq_close(&e->waiting, NULL, "event");
    ll__free(e);
}

/* ---- bounded queue ---- */

struct ll_queue {
    void **items;     /* ring of `cap` slots */
    size_t cap, head, count;
    size_t reserved;  /* items at the head promised to granted getters: reserved <= count */
    waitq getters;    /* only while count == reserved */
    waitq putters;    /* only while count == cap */
    waitq granted;    /* getters an item was reserved for, not yet resumed */
};

static void ring_push_back(ll_queue *q, void *item) {
    q->items[(q->head + q->count++) % q->cap] = item;
}

static void *ring_pop_front(ll_queue *q) {
    void *item = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    return item;
}

/* Items nobody has been promised: reserve them for waiting getters, first come first served. */
static void wake_getters(ll_queue *q) {
    while (waitq_first(&q->getters) && q->count > q->reserved) {
        q->reserved++;
        grant_first(&q->getters, &q->granted);
    }
}

/* Room came free: move waiting putters' items in, in order, and tell those putters. */
static void admit_putters(ll_queue *q) {
    while (waitq_first(&q->putters) && q->count < q->cap) {
        ring_push_back(q, waitq_first(&q->putters)->item);
        grant_first(&q->putters, NULL);
    }
    wake_getters(q);
}

static void *take(ll_queue *q) {
    void *item = ring_pop_front(q);
    admit_putters(q);
    return item;
}

ll_queue *ll_queue_new(size_t capacity) {
    if (capacity == 0 || capacity > SIZE_MAX / sizeof(void *)) return NULL;
    ll_queue *q = ll__calloc(1, sizeof *q);
    if (!q) return NULL;
    q->items = ll__malloc(capacity * sizeof(void *));
    if (!q->items) {
        ll__free(q);
        return NULL;
    }
    q->cap = capacity;
    return q;
}

int ll_queue_try_put(ll_queue *q, void *item) {
    if (!q) return LL_EINVAL;
    if (q->count == q->cap) return LL_EFULL;
    ring_push_back(q, item);
    wake_getters(q);
    return 0;
}

int ll_queue_put(ll_queue *q, void *item) {
    if (!q) return LL_EINVAL;
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    if (q->count < q->cap) {
        ring_push_back(q, item);
        wake_getters(q);
        return 0;
    }
    waiter w;
    /* 0: a get moved the item into the queue (it is the queue's now, even if this task was
     * cancelled since); otherwise the item was never queued and is still the caller's. */
    return wait_on(t, &q->putters, &w, "queue put", item, NULL);
}

int ll_queue_try_get(ll_queue *q, void **item) {
    if (!q || !item) return LL_EINVAL;
    if (q->count == q->reserved) return LL_EEMPTY; /* what is there is promised to waiters */
    *item = take(q);
    return 0;
}

/* A getter the head item was promised to gives it up: the promise passes to the next getter. */
static void getter_pass_on(void *owner) {
    ll_queue *q = owner;
    LL_ASSERT(q->reserved > 0);
    q->reserved--;
    wake_getters(q);
}

int ll_queue_get(ll_queue *q, void **item) {
    if (!q || !item) return LL_EINVAL;
    ll_task *t = ll__tls_task;
    if (!t) return LL_ENOTASK;
    if (q->count > q->reserved) {
        *item = take(q);
        return 0;
    }
    waiter w;
    waitspec spec = {&q->granted, getter_pass_on, q};
    int rc = wait_on(t, &q->getters, &w, "queue get", NULL, &spec);
    if (rc != 0) return rc;
    if (w.closed) { /* the queue was freed after the handoff; ll_queue_free gave us the item */
        *item = w.item;
        return 0;
    }
    waitq_remove(&w); /* from `granted` */
    if (cancelled_after_handoff(t)) {
        getter_pass_on(q); /* the item stays at the head, promised to the next getter */
        return LL_ECANCELED;
    }
    q->reserved--;
    *item = take(q);
    return 0;
}

size_t ll_queue_size(const ll_queue *q) {
    return q ? q->count : 0;
}

void ll_queue_free(ll_queue *q) {
    if (!q) return;
    /* Getters an item was promised to get it now (in order): they resume after the free. */
    for (ll__dlink *l = q->granted.l.head; l; l = l->next)
        LL__CONTAINER(l, waiter, link)->item = ring_pop_front(q);
    waitq_close(&q->getters, &q->granted, "queue");
    waitq_close(&q->putters, NULL, "queue");
    ll__free(q->items);
    ll__free(q);
}
