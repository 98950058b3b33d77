/*
 * libloop/sync.h — synchronisation between tasks of one loop: semaphore, lock, event, bounded
 * queue. None of them is thread-safe: they coordinate tasks, not threads.
 *
 * The waiting calls are made inside a task; they wait first-come first-served, honour the task's
 * deadline and cancellation, and return 0, LL_ECANCELED, LL_ETIMEDOUT or LL_ENOTASK (outside a
 * task: nothing happens), LL_ECLOSED (freed while waiting), LL_ENOMEM, or LL_EINVAL for NULL. They
 * wait only when they must: with a permit, the event or an item at hand they return 0 at once.
 *
 * No barging: a release hands the permit (lock, item) straight to the first waiter, so a task
 * arriving later cannot take it first. A waiting call that returns an error has taken nothing: if
 * the task is cancelled after the permit was handed over but before it ran again, the permit is
 * passed on to the next waiter and the call returns LL_ECANCELED. (A deadline passing in that
 * window does not undo the handoff: it was obtained in time.) While a task waits, the task dump
 * shows what on ("lock", "semaphore", "event", "queue get", "queue put").
 *
 * Ownership: _new returns an object the caller frees with _free (NULL: no-op); freeing one while
 * tasks wait on it wakes them with LL_ECLOSED. A queue does not own its items: free what a queue
 * still holds before freeing it (ll_queue_try_get until LL_EEMPTY).
 */
#ifndef LIBLOOP_SYNC_H
#define LIBLOOP_SYNC_H

#include "libloop/common.h"

LL_BEGIN_DECLS

typedef struct ll_sem ll_sem;
/* NULL on out of memory. */
LL_EXPORT ll_sem *ll_sem_new(unsigned value);
LL_EXPORT int ll_sem_acquire(ll_sem *s);
/* 0, or LL_EAGAIN when no permit is free. */
LL_EXPORT int ll_sem_try_acquire(ll_sem *s);
/* Hand a permit to the first waiter, or return it to the pool. May be called from anywhere and
 * may raise the value above its initial one. */
LL_EXPORT void ll_sem_release(ll_sem *s);
/* Free permits (0 while tasks wait). */
LL_EXPORT unsigned ll_sem_value(const ll_sem *s);
LL_EXPORT void ll_sem_free(ll_sem *s);

/* A lock is a semaphore of one, with an owner check: release by a task that does not hold it
 * (or of a lock nobody holds, or from outside a task) returns LL_ESTATE. It is not re-entrant:
 * acquire by the holder returns LL_ESTATE instead of deadlocking. */
typedef struct ll_lock ll_lock;
/* NULL on out of memory. */
LL_EXPORT ll_lock *ll_lock_new(void);
LL_EXPORT int ll_lock_acquire(ll_lock *l);
LL_EXPORT int ll_lock_release(ll_lock *l);
/* Held (or handed to a waiter that has not run yet). */
LL_EXPORT bool ll_lock_locked(const ll_lock *l);
LL_EXPORT void ll_lock_free(ll_lock *l);

typedef struct ll_event ll_event;
/* NULL on out of memory. */
LL_EXPORT ll_event *ll_event_new(void);
/* Wake every waiter (they return 0) and stay set until cleared. */
LL_EXPORT void ll_event_set(ll_event *e);
LL_EXPORT void ll_event_clear(ll_event *e);
LL_EXPORT bool ll_event_is_set(const ll_event *e);
/* Return at once if set, else wait until ll_event_set(). */
LL_EXPORT int ll_event_wait(ll_event *e);
LL_EXPORT void ll_event_free(ll_event *e);

/* A bounded FIFO of pointers. put waits while full, get while empty; waiting putters and getters
 * are served in arrival order and items leave in the order they came. An item promised to a
 * waiting getter that has not run yet still counts as in the queue (size, capacity) and cannot be
 * taken by anyone else. */
typedef struct ll_queue ll_queue;
/* NULL on out of memory or capacity 0. */
LL_EXPORT ll_queue *ll_queue_new(size_t capacity);
/* 0 when the item entered the queue (even if the task was cancelled while the put waited: the
 * cancellation then shows at its next await); any other result: the item was not queued and is
 * still the caller's. */
LL_EXPORT int ll_queue_put(ll_queue *q, void *item);
/* 0 and *item set, or an error and *item untouched. */
LL_EXPORT int ll_queue_get(ll_queue *q, void **item);
/* 0, or LL_EFULL / LL_EEMPTY (also when the items present are promised to waiting getters). */
LL_EXPORT int ll_queue_try_put(ll_queue *q, void *item);
LL_EXPORT int ll_queue_try_get(ll_queue *q, void **item);
LL_EXPORT size_t ll_queue_size(const ll_queue *q);
LL_EXPORT void ll_queue_free(ll_queue *q);

LL_END_DECLS

#endif
