/*
 * executor.c — the per-loop thread pool behind ll_run_in_executor().
 *
 * Design notes:
 * - Workers take jobs from one mutex-protected FIFO. A finished job is handed back to the loop
 *   through the loop's thread-safe queue and an ev_async wake-up, so the future is settled on the
 *   loop thread and its callbacks run there, as every future's do.
 * - A job in flight holds a reference on the libev loop: ll_loop_run does not return while a result
 *   is still to come.
 * - Workers block all signals, so SIGINT and SIGTERM reach the loop's thread.
 * - Cancelling a queued job removes it; a running job cannot be interrupted, so its future is
 *   cancelled at once and its value destroyed when it arrives.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_FINISHED } job_state;

typedef struct job {
    ll__work work;       /* delivery to the loop */
    struct job *next;    /* the executor's queue */
    ll_loop *loop;
    ll_future *f;
    ll_work_fn fn;
    void *arg;
    ll_value_free value_free;
    void *value;
    int rc;
    job_state state;
    bool abandoned;      /* the future was cancelled while the job ran */
} job;

struct ll__executor {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job *head, **tail;
    pthread_t *threads;
    unsigned nthreads;
    bool stop;
};

static void job_end(job *j) {
    ev_unref(j->loop->ev);
    ll__handle_unref(j->loop);
    ll_future_free(j->f);
    ll__free(j);
}

static void deliver(ll__work *w) {
    job *j = (job *)w;
    if (j->abandoned || j->f->state != LL_FUTURE_PENDING) {
        if (j->value && j->value_free) j->value_free(j->value);
    } else if (j->rc == 0) {
        ll_future_resolve(j->f, j->value, j->value_free);
    } else {
        if (j->value && j->value_free) j->value_free(j->value);
        ll_future_fail(j->f, j->rc < 0 ? j->rc : LL_EIO, "executor job failed: %s",
                       ll_strerror(j->rc < 0 ? j->rc : LL_EIO));
    }
    job_end(j);
}

static void *worker(void *arg) {
    ll__executor *ex = arg;
    pthread_mutex_lock(&ex->lock);
    for (;;) {
        while (!ex->head && !ex->stop) pthread_cond_wait(&ex->cond, &ex->lock);
        if (!ex->head) break; /* stopping and nothing left */
        job *j = ex->head;
        ex->head = j->next;
        if (!ex->head) ex->tail = &ex->head;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&ex->lock);
        void *value = NULL;
        int rc = j->fn(j->arg, &value);
        pthread_mutex_lock(&ex->lock);
        j->value = value;
        j->rc = rc;
        j->state = JOB_FINISHED;
        /* hand back to the loop thread without allocating */
        ll_loop *loop = j->loop;
        j->work.run = deliver;
        j->work.next = NULL;
        pthread_mutex_lock(&loop->ts_lock);
        *loop->ts_tail = &j->work;
        loop->ts_tail = &j->work.next;
        pthread_mutex_unlock(&loop->ts_lock);
        ev_async_send(loop->ev, &loop->async);
    }
    pthread_mutex_unlock(&ex->lock);
    return NULL;
}

static unsigned default_threads(void) {
    const char *e = getenv("LIBLOOP_EXECUTOR_THREADS");
    if (e && *e) {
        long v = strtol(e, NULL, 10);
        if (v > 0 && v <= 256) return (unsigned)v;
    }
    return 4;
}

int ll_executor_set_threads(ll_loop *loop, unsigned n) {
    loop = ll__loop_or_current(loop);
    if (!loop || n == 0 || n > 256) return LL_EINVAL;
    if (loop->executor) return LL_ESTATE;
    loop->executor_threads = n;
    return 0;
}

static ll__executor *executor_get(ll_loop *loop) {
    if (loop->executor) return loop->executor;
    ll__executor *ex = ll__calloc(1, sizeof *ex);
    if (!ex) return NULL;
    unsigned n = loop->executor_threads ? loop->executor_threads : default_threads();
    ex->threads = ll__calloc(n, sizeof *ex->threads);
    if (!ex->threads) {
        ll__free(ex);
        return NULL;
    }
    pthread_mutex_init(&ex->lock, NULL);
    pthread_cond_init(&ex->cond, NULL);
    ex->tail = &ex->head;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&ex->threads[i], NULL, worker, ex) != 0) break;
        ex->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ex->nthreads == 0) {
        pthread_mutex_destroy(&ex->lock);
        pthread_cond_destroy(&ex->cond);
        ll__free(ex->threads);
        ll__free(ex);
        return NULL;
    }
    loop->executor = ex;
    return ex;
}

static void job_cancel(ll_future *f, void *arg) {
    job *j = arg;
    ll__executor *ex = j->loop->executor;
    pthread_mutex_lock(&ex->lock);
    if (j->state == JOB_QUEUED) {
        job **pp = &ex->head;
        while (*pp && *pp != j) pp = &(*pp)->next;
        if (*pp) {
            *pp = j->next;
            if (!*pp) ex->tail = pp;
        }
        pthread_mutex_unlock(&ex->lock);
        ll_future_set_cancelled(f);
        job_end(j);
        return;
    }
    j->abandoned = true; /* running or finished: delivery discards the value */
    pthread_mutex_unlock(&ex->lock);
    ll_future_set_cancelled(f);
}

ll_future *ll_run_in_executor_on(ll_loop *loop, ll_work_fn fn, void *arg, ll_value_free value_free) {
    loop = ll__loop_or_current(loop);
    if (!loop || !fn) return NULL;
    ll_future *f = ll_future_new(loop);
    if (!f) return NULL;
    ll_future_set_label(f, "executor job");
    ll__executor *ex = executor_get(loop);
    job *j = ex ? ll__calloc(1, sizeof *j) : NULL;
    if (!j) {
        ll_future_fail(f, LL_ENOMEM, "cannot start the executor: out of memory or threads");
        return f;
    }
    j->loop = loop;
    j->f = ll_future_ref(f);
    j->fn = fn;
    j->arg = arg;
    j->value_free = value_free;
    j->state = JOB_QUEUED;
    ev_ref(loop->ev);
    ll__handle_ref(loop);
    ll_future_on_cancel(f, job_cancel, j);
    pthread_mutex_lock(&ex->lock);
    *ex->tail = j;
    ex->tail = &j->next;
    pthread_cond_signal(&ex->cond);
    pthread_mutex_unlock(&ex->lock);
    return f;
}

ll_future *ll_run_in_executor(ll_work_fn fn, void *arg, ll_value_free value_free) {
    return ll_run_in_executor_on(NULL, fn, arg, value_free);
}

void ll__executor_free(ll_loop *loop) {
    ll__executor *ex = loop->executor;
    if (!ex) return;
    pthread_mutex_lock(&ex->lock);
    job *pending = ex->head;
    ex->head = NULL;
    ex->tail = &ex->head;
    ex->stop = true;
    pthread_cond_broadcast(&ex->cond);
    pthread_mutex_unlock(&ex->lock);
    /* jobs that never started end cancelled */
    while (pending) {
        job *next = pending->next;
        ll_future_set_cancelled(pending->f);
        job_end(pending);
        pending = next;
    }
    for (unsigned i = 0; i < ex->nthreads; i++) pthread_join(ex->threads[i], NULL);
    ll__loop_pull_threadsafe(loop);
    loop->executor = NULL;
    pthread_mutex_destroy(&ex->lock);
    pthread_cond_destroy(&ex->cond);
    ll__free(ex->threads);
    ll__free(ex);
}
