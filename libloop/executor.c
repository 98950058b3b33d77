/*
 * executor.c — the per-loop thread pool behind ll_executor_run().
 *
 * Design notes:
 * - The job owns its arg (arg_free) and, once the future has settled, everything it touches: that
 *   is what lets a cancelled or timed-out job's future settle at once (promise 2) while the job
 *   runs on without touching the caller's memory (promise 1). See libloop/executor.h.
 * - Workers take jobs from one mutex-protected FIFO, a doubly linked list so that cancelling a
 *   queued job unlinks it in constant time. A running job sits on a second list, so that
 *   ll_loop_free can find the futures of jobs it gives up waiting for.
 * - A finished job is handed back to the loop through the loop's thread-safe queue and an ev_async
 *   wake-up, so the future is settled on the loop thread and its callbacks run there, as every
 *   future's do. A job in flight holds a reference on the libev loop: ll_loop_run does not return
 *   while a result is still to come.
 * - ll_loop_free gives running jobs LL_EXECUTOR_FREE_GRACE seconds, then detaches: under the
 *   executor's lock it settles their futures, forgets them and clears ex->loop. From then on a
 *   worker never touches the loop: it destroys its job's value itself, and the last worker to
 *   exit frees the executor record. So a hung job costs a thread, never a hung or crashed process.
 * - Workers block all signals, so SIGINT and SIGTERM reach the loop's thread.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "containers.h"
#include "internal.h"

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_FINISHED } job_state;

typedef struct job {
    ll__work work;       /* delivery to the loop */
    ll__dlink link;      /* on the queue, then on the running list (under ex->lock) */
    ll_loop *loop;       /* loop thread only */
    ll_future *f;        /* loop thread only; NULL once ll_loop_free gave the job up */
    ll_work_fn fn;
    void *arg;
    ll_value_free arg_free, value_free;
    void *value;
    int rc;
    job_state state;     /* under ex->lock */
    bool abandoned;      /* loop thread: the future settled before the job ended */
} job;

struct ll__executor {
    pthread_mutex_t lock;
    pthread_cond_t cond;   /* workers: a job was queued, or stop */
    pthread_cond_t ended;  /* ll_loop_free: a running job ended */
    ll__dlist queue, running; /* of jobs */
    ll_loop *loop;         /* NULL once detached: workers then never touch the loop */
    pthread_t *threads;
    unsigned nthreads;
    unsigned live;         /* workers that have not exited */
    bool stop;
};

static job *job_of(ll__dlink *l) {
    return l ? LL__CONTAINER(l, job, link) : NULL;
}

static void free_arg(job *j) {
    if (j->arg_free && j->arg) j->arg_free(j->arg);
    j->arg = NULL;
}

static void free_value(ll_value_free value_free, void *value) {
    if (value && value_free) value_free(value);
}

/* Loop thread: the job is over for the loop (delivered, removed or given up). */
static void job_end(job *j) {
    ev_unref(j->loop->ev);
    ll__handle_unref(j->loop);
    ll_future_free(j->f);
    ll__free(j);
}

static void deliver(ll__work *w) {
    job *j = (job *)w;
    LL_ASSERT(j->state == JOB_FINISHED);
    if (j->abandoned || j->f->state != LL_FUTURE_PENDING) {
        free_value(j->value_free, j->value);
    } else if (j->rc == 0) {
        ll_future_resolve(j->f, j->value, j->value_free);
    } else {
        free_value(j->value_free, j->value);
        int code = j->rc < 0 ? j->rc : LL_EIO;
        ll_future_fail(j->f, code, "executor job failed: %s", ll_strerror(code));
    }
    job_end(j);
}

static void executor_destroy(ll__executor *ex) {
    pthread_mutex_destroy(&ex->lock);
    pthread_cond_destroy(&ex->cond);
    pthread_cond_destroy(&ex->ended);
    ll__free(ex->threads);
    ll__free(ex);
}

static void *worker(void *arg) {
    ll__executor *ex = arg;
    pthread_mutex_lock(&ex->lock);
    for (;;) {
        while (!ex->queue.head && !ex->stop) pthread_cond_wait(&ex->cond, &ex->lock);
        if (!ex->queue.head) break; /* stopping and nothing left */
        job *j = job_of(ex->queue.head);
        ll__list_remove(&ex->queue, &j->link);
        ll__list_push_back(&ex->running, &j->link);
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&ex->lock);
        void *value = NULL;
        int rc = j->fn(j->arg, &value);
        free_arg(j); /* the job is over: what it owned goes now, whoever still waits */
        pthread_mutex_lock(&ex->lock);
        ll__list_remove(&ex->running, &j->link);
        j->value = value;
        j->rc = rc;
        j->state = JOB_FINISHED;
        pthread_cond_signal(&ex->ended);
        ll_loop *loop = ex->loop;
        if (!loop) { /* the loop gave the job up and is gone: nobody else will see the value */
            free_value(j->value_free, value);
            ll__free(j);
            continue;
        }
        /* hand back to the loop thread without allocating */
        j->work.run = deliver;
        j->work.next = NULL;
        pthread_mutex_lock(&loop->ts_lock);
        *loop->ts_tail = &j->work;
        loop->ts_tail = &j->work.next;
        pthread_mutex_unlock(&loop->ts_lock);
        ev_async_send(loop->ev, &loop->async);
    }
    bool last = --ex->live == 0 && !ex->loop;
    pthread_mutex_unlock(&ex->lock);
    if (last) executor_destroy(ex); /* detached, and the last worker out */
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
    if (loop->executor || loop->executor_closed) return LL_ESTATE;
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ex->ended, &ca);
    pthread_condattr_destroy(&ca);
    ex->loop = loop;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_mutex_lock(&ex->lock); /* a worker that starts and sees nothing to do just waits */
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&ex->threads[i], NULL, worker, ex) != 0) break;
        ex->nthreads++;
        ex->live++;
    }
    pthread_mutex_unlock(&ex->lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ex->nthreads == 0) {
        executor_destroy(ex);
        return NULL;
    }
    loop->executor = ex;
    return ex;
}

static void job_cancel(ll_future *f, void *arg) {
    job *j = arg;
    ll__executor *ex = j->loop->executor;
    if (!ex) { /* ll_loop_free joined the workers: the job has finished, its delivery is queued */
        j->abandoned = true;
        ll_future_set_cancelled(f);
        return;
    }
    pthread_mutex_lock(&ex->lock);
    if (j->state == JOB_QUEUED) {
        ll__list_remove(&ex->queue, &j->link);
        pthread_mutex_unlock(&ex->lock);
        ll_future_set_cancelled(f);
        free_arg(j);
        job_end(j);
        return;
    }
    pthread_mutex_unlock(&ex->lock);
    j->abandoned = true; /* running or finished: delivery destroys the value */
    ll_future_set_cancelled(f);
}

static ll_future *refuse(ll_loop *loop, void *arg, ll_value_free arg_free, int code, const char *msg) {
    if (arg_free && arg) arg_free(arg);
    return ll_future_failed(loop, code, "ll_executor_run: %s", msg);
}

ll_future *ll_executor_run(ll_work_fn fn, void *arg, ll_value_free arg_free,
                           ll_value_free value_free, const ll_executor_opts *opts) {
    ll_loop *loop = ll__loop_or_current(opts ? opts->loop : NULL);
    if (!loop) return refuse(NULL, arg, arg_free, LL_EINVAL, "no loop on this thread");
    if (!fn) return refuse(loop, arg, arg_free, LL_EINVAL, "fn is NULL");
    if (loop->executor_closed) /* from a done callback run by ll_loop_free: no new threads */
        return refuse(loop, arg, arg_free, LL_ECLOSED, "the loop is being freed");
    ll_future *f = ll_future_new(loop);
    if (!f) {
        if (arg_free && arg) arg_free(arg);
        return NULL;
    }
    ll_future_set_label(f, opts && opts->label ? opts->label : "executor job");
    ll__executor *ex = executor_get(loop);
    job *j = ex ? ll__calloc(1, sizeof *j) : NULL;
    if (!j) {
        if (arg_free && arg) arg_free(arg);
        ll_future_fail(f, LL_ENOMEM, "ll_executor_run: cannot start the executor: out of memory "
                                     "or threads");
        return f;
    }
    j->loop = loop;
    j->f = ll_future_ref(f);
    j->fn = fn;
    j->arg = arg;
    j->arg_free = arg_free;
    j->value_free = value_free;
    j->state = JOB_QUEUED;
    ev_ref(loop->ev);
    ll__handle_ref(loop);
    ll_future_on_cancel(f, job_cancel, j);
    pthread_mutex_lock(&ex->lock);
    ll__list_push_back(&ex->queue, &j->link);
    pthread_cond_signal(&ex->cond);
    pthread_mutex_unlock(&ex->lock);
    return f;
}

/* Wait until no job runs or the grace is over; true if none runs. Called with ex->lock held. */
static bool wait_running(ll__executor *ex, double grace) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)grace;
    until.tv_nsec += (long)((grace - (double)(time_t)grace) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (ex->running.head) {
        if (pthread_cond_timedwait(&ex->ended, &ex->lock, &until) != 0 && ex->running.head)
            return false;
    }
    return true;
}

void ll__executor_free(ll_loop *loop) {
    loop->executor_closed = true; /* a job submitted from here on fails: no new executor */
    ll__executor *ex = loop->executor;
    if (!ex) return;
    pthread_mutex_lock(&ex->lock);
    ll__dlink *pending = ex->queue.head; /* the whole queue, taken at once */
    ex->queue.head = ex->queue.tail = NULL;
    ex->stop = true;
    pthread_cond_broadcast(&ex->cond);
    pthread_mutex_unlock(&ex->lock);
    /* jobs that never started end cancelled; their args are freed */
    while (pending) {
        job *j = job_of(pending);
        pending = pending->next;
        ll_future_set_cancelled(j->f);
        free_arg(j);
        job_end(j);
    }
    pthread_mutex_lock(&ex->lock);
    if (wait_running(ex, LL_EXECUTOR_FREE_GRACE)) {
        pthread_mutex_unlock(&ex->lock);
        for (unsigned i = 0; i < ex->nthreads; i++) pthread_join(ex->threads[i], NULL);
        ll__loop_pull_threadsafe(loop); /* deliveries: run by ll_loop_free's drain */
        loop->executor = NULL;
        executor_destroy(ex);
        return;
    }
    /* Jobs that do not return: give them up. Their futures end cancelled now (promise 2); each
     * worker finishes its job on its own and never touches the loop again (promise 1). */
    for (job *j = job_of(ex->running.head); j; j = job_of(j->link.next)) {
        ll_future_set_cancelled(j->f); /* LL_ESTATE if it was cancelled already: fine */
        ev_unref(loop->ev);
        ll__handle_unref(loop);
        ll_future_free(j->f);
        j->f = NULL;
    }
    ex->loop = NULL;
    bool none_left = ex->live == 0;
    pthread_mutex_unlock(&ex->lock);
    for (unsigned i = 0; i < ex->nthreads; i++) pthread_detach(ex->threads[i]);
    ll__loop_pull_threadsafe(loop); /* jobs that finished before the detach are delivered */
    loop->executor = NULL;
    if (loop->debug)
        ll__warn(loop, "ll_loop_free: executor jobs still running after %g s were detached; "
                       "their threads finish them on their own", LL_EXECUTOR_FREE_GRACE);
    if (none_left) executor_destroy(ex);
}
