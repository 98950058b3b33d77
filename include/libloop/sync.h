/*
 * libloop/sync.h — synchronisation between tasks of one loop: semaphore, lock, event, bounded
 * queue. None of them is thread-safe: they coordinate tasks, not threads.
 *
 * The waiting calls are made inside a task; they wait first-come first-served, honour the task's
 * deadline and cancellation, and return 0, LL_ECANCELED, LL_ETIMEDOUT or LL_ENOTASK.
 *
 * Ownership: _new returns an object the caller frees with _free (NULL: no-op); freeing one while
 * tasks wait on it wakes them with LL_ECLOSED. A queue does not own its items: free what a queue
 * still holds before freeing it (ll_queue_try_get until LL_EEMPTY).
 */
#ifndef LIBLOOP_SYNC_H
#define LIBLOOP_SYNC_H

#include "libloop/common.h"

typedef struct ll_sem ll_sem;
LL_EXPORT ll_sem *ll_sem_new(unsigned value);
LL_EXPORT int ll_sem_acquire(ll_sem *s);
/* 0, or LL_EAGAIN when no permit is free. */
LL_EXPORT int ll_sem_try_acquire(ll_sem *s);
LL_EXPORT void ll_sem_release(ll_sem *s);
LL_EXPORT unsigned ll_sem_value(const ll_sem *s);
LL_EXPORT void ll_sem_free(ll_sem *s);

/* A lock is a semaphore of one, with an owner check: release by a task that does not hold it
 * returns LL_ESTATE. */
typedef struct ll_lock ll_lock;
LL_EXPORT ll_lock *ll_lock_new(void);
LL_EXPORT int ll_lock_acquire(ll_lock *l);
LL_EXPORT int ll_lock_release(ll_lock *l);
LL_EXPORT bool ll_lock_locked(const ll_lock *l);
LL_EXPORT void ll_lock_free(ll_lock *l);

typedef struct ll_event ll_event;
LL_EXPORT ll_event *ll_event_new(void);
LL_EXPORT void ll_event_set(ll_event *e);
LL_EXPORT void ll_event_clear(ll_event *e);
LL_EXPORT bool ll_event_is_set(const ll_event *e);
/* Return at once if set, else wait until ll_event_set(). */
LL_EXPORT int ll_event_wait(ll_event *e);
LL_EXPORT void ll_event_free(ll_event *e);

/* A bounded FIFO of pointers. put waits while full, get while empty. */
typedef struct ll_queue ll_queue;
LL_EXPORT ll_queue *ll_queue_new(size_t capacity);
LL_EXPORT int ll_queue_put(ll_queue *q, void *item);
LL_EXPORT int ll_queue_get(ll_queue *q, void **item);
/* 0, or LL_EFULL / LL_EEMPTY. */
LL_EXPORT int ll_queue_try_put(ll_queue *q, void *item);
LL_EXPORT int ll_queue_try_get(ll_queue *q, void **item);
LL_EXPORT size_t ll_queue_size(const ll_queue *q);
LL_EXPORT void ll_queue_free(ll_queue *q);

#endif
