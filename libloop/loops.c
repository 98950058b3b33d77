/*
 * loops.c — ll_loop_group: N threads, one loop each (libloop/loops.h).
 *
 * Design notes:
 * - Each thread makes its own loop (a loop is bound to the thread that creates it: its
 *   current-loop slot is thread-local) and holds a reference on it (ll_loop_ref) so that the loop
 *   outlives its main task: another thread may still post to it. ll_loop_group_new waits on a
 *   condition variable until every thread has made its loop (or failed), so the loops can be
 *   handed out as soon as it returns.
 * - join first waits for every main task to finish (a done callback counts them under the group's
 *   mutex), then posts an unref to each loop; each ll_loop_run then returns when its loop has run
 *   out of work, and the thread frees its loop — but only after join's posts have all returned
 *   (ll_loop_call_soon_threadsafe still touches the loop after queueing: found by TSan). Waiting for all mains before releasing any loop
 *   keeps cross-loop posts made by still-running mains safe.
 * - The threads block SIGINT/SIGTERM and the other asynchronous signals, so they keep reaching the
 *   application's own thread (as the executor's workers do).
 * - The group's lock is touched only at start, at the end of each main task and at join: nothing
 *   on the per-operation path, which is the point of one loop per core.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "libloop/loops.h"

typedef enum { MEMBER_STARTING, MEMBER_READY, MEMBER_FAILED } member_state;

typedef struct member {
    struct ll_loop_group *g;
    size_t index;
    pthread_t thread;
    bool started;      /* pthread_create succeeded */
    member_state state;
    ll_loop *loop;
    ll_future *main;   /* owned by the member's thread; read there only */
    int code;          /* the main task's code, set when it finished */
    bool main_done;
} member;

struct ll_loop_group {
    size_t n;
    ll_loop_group_fn fn;
    void *arg;
    ll_loop_group_opts opts;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool go;           /* every loop exists: the threads may spawn their mains */
    bool abort;        /* start-up failed: the threads free their loops and exit */
    size_t mains_done;
    bool joined;
    bool posted;       /* join has finished posting the releases: loops may be freed */
    member *m;
};

static void main_finished(ll_future *f, void *arg) {
    member *m = arg;
    int code = ll_future_code(f);
    pthread_mutex_lock(&m->g->mu);
    m->code = code;
    m->main_done = true;
    m->g->mains_done++;
    pthread_cond_broadcast(&m->g->cv);
    pthread_mutex_unlock(&m->g->mu);
}

static int run_main(void *arg) {
    member *m = arg;
    return m->g->fn(m->index, m->g->arg);
}

static void pin_to_cpu(size_t index) {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    int count = CPU_COUNT(&allowed);
    if (count <= 0) return;
    int want = (int)(index % (size_t)count), seen = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
    }
}

static void *member_thread(void *arg) {
    member *m = arg;
    ll_loop_group *g = m->g;
    if (g->opts.pin) pin_to_cpu(m->index);
    ll_loop *loop = ll_loop_new();
    if (loop) {
        if (g->opts.stack_size) ll_loop_set_stack_size(loop, g->opts.stack_size);
        ll_loop_ref(loop);
    }
    pthread_mutex_lock(&g->mu);
    m->loop = loop;
    m->state = loop ? MEMBER_READY : MEMBER_FAILED;
    pthread_cond_broadcast(&g->cv);
    while (!g->go && !g->abort) pthread_cond_wait(&g->cv, &g->mu);
    bool aborted = g->abort;
    pthread_mutex_unlock(&g->mu);
    if (!loop) return NULL;
    if (aborted) {
        ll_loop_unref(loop);
        ll_loop_free(loop);
        return NULL;
    }
    char name[32];
    snprintf(name, sizeof name, "main-%zu", m->index);
    ll_spawn_opts so = {.name = name, .loop = loop};
    m->main = ll_spawn_ex(run_main, m, &so);
    if (!m->main || ll_future_add_done(m->main, main_finished, m) != 0) {
        /* No main task (out of memory): report it as this loop's outcome. */
        if (m->main) ll_future_cancel(m->main);
        pthread_mutex_lock(&g->mu);
        m->code = LL_ENOMEM;
        m->main_done = true;
        g->mains_done++;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
    }
    ll_loop_run(loop); /* returns once join has dropped the reference and the work is done */
    /* join may still be inside ll_loop_call_soon_threadsafe() on this loop (waking it after the
     * post we just ran): free the loop only once every post of join has returned. */
    pthread_mutex_lock(&g->mu);
    while (!g->posted) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    ll_future_free(m->main);
    ll_loop_shutdown(loop, ll_deadline_in(5.0));
    ll_loop_free(loop);
    return NULL;
}

static void block_async_signals(sigset_t *old) {
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, old);
}

static void group_destroy(ll_loop_group *g) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    ll__free(g->m);
    ll__free(g);
}

ll_loop_group *ll_loop_group_new(size_t n, ll_loop_group_fn fn, void *arg, const ll_loop_group_opts *opts) {
    if (n == 0 || !fn) return NULL;
    ll_loop_group *g = ll__calloc(1, sizeof *g);
    if (!g) return NULL;
    g->m = ll__calloc(n, sizeof *g->m);
    if (!g->m) {
        ll__free(g);
        return NULL;
    }
    g->n = n;
    g->fn = fn;
    g->arg = arg;
    if (opts) g->opts = *opts;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    sigset_t old;
    block_async_signals(&old);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        g->m[i].g = g;
        g->m[i].index = i;
        g->m[i].state = MEMBER_STARTING;
        g->m[i].started = pthread_create(&g->m[i].thread, NULL, member_thread, &g->m[i]) == 0;
        ok = g->m[i].started;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < n; i++) {
        if (!g->m[i].started) continue;
        while (g->m[i].state == MEMBER_STARTING) pthread_cond_wait(&g->cv, &g->mu);
        if (g->m[i].state == MEMBER_FAILED) ok = false;
    }
    if (ok) g->go = true;
    else g->abort = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            if (g->m[i].started) pthread_join(g->m[i].thread, NULL);
        group_destroy(g);
        return NULL;
    }
    return g;
}

size_t ll_loop_group_size(const ll_loop_group *g) {
    return g ? g->n : 0;
}

ll_loop *ll_loop_group_loop(const ll_loop_group *g, size_t i) {
    if (!g || i >= g->n) return NULL;
    return g->m[i].loop;
}

typedef struct spawn_msg {
    ll_loop *loop;
    ll_task_fn fn;
    void *arg;
} spawn_msg;

static void spawn_here(void *arg) {
    spawn_msg *s = arg;
    ll_spawn_opts so = {.name = "posted", .loop = s->loop};
    ll_future_free(ll_spawn_ex(s->fn, s->arg, &so)); /* the loop keeps the task until it ends */
    ll__free(s);
}

int ll_loop_group_spawn(ll_loop_group *g, size_t i, ll_task_fn fn, void *arg) {
    if (!g || i >= g->n || !fn) return LL_EINVAL;
    spawn_msg *s = ll__malloc(sizeof *s);
    if (!s) return LL_ENOMEM;
    *s = (spawn_msg){g->m[i].loop, fn, arg};
    int rc = ll_loop_call_soon_threadsafe(g->m[i].loop, spawn_here, s);
    if (rc != 0) ll__free(s);
    return rc;
}

static void cancel_main(void *arg) {
    member *m = arg;
    if (m->main) ll_future_cancel(m->main);
}

void ll_loop_group_cancel(ll_loop_group *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n; i++) ll_loop_call_soon_threadsafe(g->m[i].loop, cancel_main, &g->m[i]);
}

static void release_loop(void *arg) {
    ll_loop_unref(arg);
}

static bool on_member_thread(const ll_loop_group *g) {
    for (size_t i = 0; i < g->n; i++)
        if (g->m[i].started && pthread_equal(g->m[i].thread, pthread_self())) return true;
    return false;
}

int ll_loop_group_join(ll_loop_group *g, int *codes) {
    if (!g) return LL_EINVAL;
    if (on_member_thread(g)) return LL_EBUSY;
    pthread_mutex_lock(&g->mu);
    if (g->joined) {
        pthread_mutex_unlock(&g->mu);
        return LL_EALREADY;
    }
    g->joined = true;
    while (g->mains_done < g->n) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    for (size_t i = 0; i < g->n; i++) {
        /* The post can only fail for lack of memory; then unref from here is the lesser evil
         * than a loop that never ends: wake it by posting again until it goes through. */
        while (ll_loop_call_soon_threadsafe(g->m[i].loop, release_loop, g->m[i].loop) != 0) sched_yield();
    }
    pthread_mutex_lock(&g->mu);
    g->posted = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    int first = 0;
    for (size_t i = 0; i < g->n; i++) {
        pthread_join(g->m[i].thread, NULL);
        g->m[i].loop = NULL;
        if (codes) codes[i] = g->m[i].code;
        if (!first && g->m[i].code) first = g->m[i].code;
    }
    return first;
}

void ll_loop_group_free(ll_loop_group *g) {
    if (!g) return;
    if (on_member_thread(g)) return; /* cannot join from inside: leak rather than deadlock */
    ll_loop_group_join(g, NULL);
    group_destroy(g);
}
