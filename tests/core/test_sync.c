/*
 * test_sync.c — semaphore (fairness, no barging, the cancel-after-handoff race, deadlines), lock
 * (mutual exclusion, owner checks), event (wake-all), bounded queue (back-pressure, FIFO waiters,
 * handoff race), freeing primitives under waiting tasks, the task dump's labels, misuse.
 *
 * Assertions run in the test body, never inside a task: tasks record what they saw.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"

static ll_future *spawn(lt_ctx *c, ll_task_fn fn, void *arg, const char *name) {
    ll_spawn_opts o = {.loop = c->loop, .name = name};
    ll_future *f = ll_spawn_ex(fn, arg, &o);
    assert_non_null(f);
    return f;
}

static void run_all(lt_ctx *c, ll_future **fs, int n) {
    assert_int_equal(ll_loop_run(c->loop), 0);
    for (int i = 0; i < n; i++) {
        assert_true(ll_future_done(fs[i]));
        (void)ll_future_code(fs[i]); /* outcomes are checked through what the tasks recorded */
        ll_future_free(fs[i]);
    }
}

/* ---- semaphore ---- */

typedef struct sem_world {
    ll_sem *sem;
    int order[16];
    int norder;
    int rc[16];
} sem_world;

typedef struct sem_actor {
    sem_world *w;
    int id;
} sem_actor;

static int sem_user(void *arg) {
    sem_actor *a = arg;
    int rc = ll_sem_acquire(a->w->sem);
    a->w->rc[a->id] = rc;
    if (rc) return rc;
    a->w->order[a->w->norder++] = a->id;
    ll_yield(); /* hold it across a scheduling point */
    ll_sem_release(a->w->sem);
    return 0;
}

typedef struct {
    sem_world *w;
    int barge_rc;
    unsigned value_after_release;
} holder_obs;

static int sem_holder(void *arg) {
    holder_obs *h = arg;
    ll_sem_acquire(h->w->sem);
    ll_sleep(0.01); /* everyone queues meanwhile */
    ll_sem_release(h->w->sem);
    /* no barging: the permit went straight to the first waiter */
    h->value_after_release = ll_sem_value(h->w->sem);
    h->barge_rc = ll_sem_try_acquire(h->w->sem);
    return 0;
}

static void test_sem_basic(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_sem *s = ll_sem_new(2);
    assert_int_equal(ll_sem_value(s), 2);
    assert_int_equal(ll_sem_try_acquire(s), 0);
    assert_int_equal(ll_sem_try_acquire(s), 0);
    assert_int_equal(ll_sem_try_acquire(s), LL_EAGAIN);
    ll_sem_release(s);
    assert_int_equal(ll_sem_value(s), 1);
    ll_sem_release(s);
    ll_sem_release(s); /* above the initial value is allowed */
    assert_int_equal(ll_sem_value(s), 3);
    ll_sem_free(s);
    lt_teardown(&c);
}

static void test_sem_fifo_no_barging(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    sem_world w = {.sem = ll_sem_new(1)};
    holder_obs h = {.w = &w};
    sem_actor a[5];
    ll_future *fs[6];
    fs[0] = spawn(&c, sem_holder, &h, "holder");
    for (int i = 0; i < 5; i++) {
        a[i] = (sem_actor){&w, i};
        fs[i + 1] = spawn(&c, sem_user, &a[i], NULL);
    }
    run_all(&c, fs, 6);
    assert_int_equal(h.value_after_release, 0);
    assert_int_equal(h.barge_rc, LL_EAGAIN);
    assert_int_equal(w.norder, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(w.order[i], i); /* order of arrival */
    assert_int_equal(ll_sem_value(w.sem), 1);
    ll_sem_free(w.sem);
    lt_teardown(&c);
}

/* The race: the permit is handed to A, then A's task is cancelled before it runs again. A must not
 * keep it: it passes it on to B and reports LL_ECANCELED. */
typedef struct {
    sem_world *w;
    ll_future *victim;
    unsigned value_after_cancel;
} race_obs;

static int race_holder(void *arg) {
    race_obs *r = arg;
    ll_sem_acquire(r->w->sem);
    ll_sleep(0.01);
    ll_sem_release(r->w->sem);  /* hands the permit to A: A's await is now resolved ... */
    ll_future_cancel(r->victim); /* ... and A is cancelled before it resumes */
    r->value_after_cancel = ll_sem_value(r->w->sem);
    return 0;
}

static void test_sem_cancel_after_handoff(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    sem_world w = {.sem = ll_sem_new(1)};
    sem_actor a[2] = {{&w, 0}, {&w, 1}};
    race_obs r = {.w = &w};
    ll_future *fs[3];
    fs[0] = spawn(&c, race_holder, &r, "holder");
    fs[1] = spawn(&c, sem_user, &a[0], "A");
    fs[2] = spawn(&c, sem_user, &a[1], "B");
    r.victim = fs[1];
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(r.value_after_cancel, 0);
    assert_int_equal(w.rc[0], LL_ECANCELED);
    assert_int_equal(ll_future_get_state(fs[1]), LL_FUTURE_CANCELLED);
    assert_int_equal(w.rc[1], 0);
    assert_int_equal(w.norder, 1);
    assert_int_equal(w.order[0], 1); /* B got it */
    assert_int_equal(ll_sem_value(w.sem), 1); /* and released it: nothing lost */
    run_all(&c, fs, 3);
    ll_sem_free(w.sem);
    lt_teardown(&c);
}

/* Cancelled before the handoff: the waiter leaves the line and the next one is served. */
static int cancel_waiting_holder(void *arg) {
    race_obs *r = arg;
    ll_sem_acquire(r->w->sem);
    ll_sleep(0.01);
    ll_future_cancel(r->victim);
    ll_sleep(0.001);
    ll_sem_release(r->w->sem);
    return 0;
}

static void test_sem_cancel_while_waiting(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    sem_world w = {.sem = ll_sem_new(1)};
    sem_actor a[2] = {{&w, 0}, {&w, 1}};
    race_obs r = {.w = &w};
    ll_future *fs[3];
    fs[0] = spawn(&c, cancel_waiting_holder, &r, "holder");
    fs[1] = spawn(&c, sem_user, &a[0], "A");
    fs[2] = spawn(&c, sem_user, &a[1], "B");
    r.victim = fs[1];
    run_all(&c, fs, 3);
    assert_int_equal(w.rc[0], LL_ECANCELED);
    assert_int_equal(w.rc[1], 0);
    assert_int_equal(ll_sem_value(w.sem), 1);
    ll_sem_free(w.sem);
    lt_teardown(&c);
}

typedef struct {
    ll_sem *sem;
    int rc;
    double took;
} deadline_obs;

static int sem_with_deadline(void *arg) {
    deadline_obs *o = arg;
    ll_scope s;
    ll_time t0 = ll_now();
    ll_scope_enter(&s, ll_deadline_in(0.02));
    o->rc = ll_sem_acquire(o->sem);
    ll_scope_exit(&s);
    o->took = ll_now() - t0;
    return 0;
}

static void test_sem_deadline(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    deadline_obs o = {.sem = ll_sem_new(0)};
    assert_int_equal(lt_run_task(c.loop, sem_with_deadline, &o), 0);
    assert_int_equal(o.rc, LL_ETIMEDOUT);
    assert_true(o.took >= 0.019 && o.took < 1.0); /* tolerance: a loaded 2-core machine */
    ll_sem_release(o.sem); /* the timed-out waiter left the line: the permit stays free */
    assert_int_equal(ll_sem_value(o.sem), 1);
    ll_sem_free(o.sem);
    lt_teardown(&c);
}

/* ---- lock ---- */

typedef struct {
    ll_lock *lock;
    int inside, max_inside, total;
    int first_rc;
} lock_world;

static int lock_user(void *arg) {
    lock_world *w = arg;
    for (int i = 0; i < 3; i++) {
        int rc = ll_lock_acquire(w->lock);
        if (rc) return rc;
        w->inside++;
        if (w->inside > w->max_inside) w->max_inside = w->inside;
        ll_sleep(0.001);
        w->total++;
        w->inside--;
        rc = ll_lock_release(w->lock);
        if (rc) return rc;
    }
    return 0;
}

static void test_lock_mutual_exclusion(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    lock_world w = {.lock = ll_lock_new()};
    ll_future *fs[4];
    for (int i = 0; i < 4; i++) fs[i] = spawn(&c, lock_user, &w, NULL);
    assert_int_equal(ll_loop_run(c.loop), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(ll_future_code(fs[i]), 0);
    run_all(&c, fs, 4);
    assert_int_equal(w.max_inside, 1);
    assert_int_equal(w.total, 12);
    assert_false(ll_lock_locked(w.lock));
    ll_lock_free(w.lock);
    lt_teardown(&c);
}

typedef struct {
    ll_lock *lock;
    int unlocked_release, again, release_rc, foreign_release, stranger_acquire;
    ll_future *stranger;
} owner_obs;

static int stranger(void *arg) {
    owner_obs *o = arg;
    o->foreign_release = ll_lock_release(o->lock); /* not ours */
    o->stranger_acquire = ll_lock_acquire(o->lock);
    if (o->stranger_acquire == 0) ll_lock_release(o->lock);
    return 0;
}

static int owner(void *arg) {
    owner_obs *o = arg;
    o->unlocked_release = ll_lock_release(o->lock);
    ll_lock_acquire(o->lock);
    o->again = ll_lock_acquire(o->lock); /* not re-entrant: refused instead of a deadlock */
    o->stranger = ll_spawn(stranger, o);
    ll_sleep(0.01);
    o->release_rc = ll_lock_release(o->lock);
    return ll_await(o->stranger);
}

static void test_lock_owner_checks(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    owner_obs o = {.lock = ll_lock_new()};
    assert_int_equal(lt_run_task(c.loop, owner, &o), 0);
    assert_int_equal(o.unlocked_release, LL_ESTATE);
    assert_int_equal(o.again, LL_ESTATE);
    assert_int_equal(o.foreign_release, LL_ESTATE);
    assert_int_equal(o.release_rc, 0);
    assert_int_equal(o.stranger_acquire, 0);
    assert_false(ll_lock_locked(o.lock));
    assert_int_equal(ll_lock_release(o.lock), LL_ESTATE); /* outside a task, unlocked */
    ll_future_free(o.stranger);
    ll_lock_free(o.lock);
    lt_teardown(&c);
}

/* The lock is handed to A, A is cancelled before it resumes: ownership moves on to B. */
typedef struct {
    ll_lock *lock;
    ll_future *victim;
    int rc[2];
    int got;
    int holder_second_release;
} lock_race;

typedef struct {
    lock_race *r;
    int id;
} lock_actor;

static int lock_racer(void *arg) {
    lock_actor *a = arg;
    int rc = ll_lock_acquire(a->r->lock);
    a->r->rc[a->id] = rc;
    if (rc) return rc;
    a->r->got = a->id;
    return ll_lock_release(a->r->lock);
}

static int lock_race_holder(void *arg) {
    lock_race *r = arg;
    ll_lock_acquire(r->lock);
    ll_sleep(0.01);
    ll_lock_release(r->lock);
    ll_future_cancel(r->victim);
    r->holder_second_release = ll_lock_release(r->lock); /* no longer ours */
    return 0;
}

static void test_lock_cancel_after_handoff(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    lock_race r = {.lock = ll_lock_new(), .got = -1};
    lock_actor a[2] = {{&r, 0}, {&r, 1}};
    ll_future *fs[3];
    fs[0] = spawn(&c, lock_race_holder, &r, "holder");
    fs[1] = spawn(&c, lock_racer, &a[0], "A");
    fs[2] = spawn(&c, lock_racer, &a[1], "B");
    r.victim = fs[1];
    run_all(&c, fs, 3);
    assert_int_equal(r.holder_second_release, LL_ESTATE);
    assert_int_equal(r.rc[0], LL_ECANCELED);
    assert_int_equal(r.rc[1], 0);
    assert_int_equal(r.got, 1);
    assert_false(ll_lock_locked(r.lock));
    ll_lock_free(r.lock);
    lt_teardown(&c);
}

/* ---- event ---- */

typedef struct {
    ll_event *ev;
    int rc[8];
    int woken;
    double deadline;
} event_world;

typedef struct {
    event_world *w;
    int id;
} event_actor;

static int event_waiter(void *arg) {
    event_actor *a = arg;
    ll_scope s;
    ll_scope_enter(&s, a->w->deadline > 0 ? ll_deadline_in(a->w->deadline) : LL_NEVER);
    a->w->rc[a->id] = ll_event_wait(a->w->ev);
    ll_scope_exit(&s);
    if (a->w->rc[a->id] == 0) a->w->woken++;
    return 0;
}

static void set_event(void *arg) {
    ll_event_set(arg);
}

static void test_event_wake_all(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    event_world w = {.ev = ll_event_new()};
    for (int i = 0; i < 8; i++) w.rc[i] = 1;
    event_actor a[6];
    ll_future *fs[6];
    for (int i = 0; i < 5; i++) {
        a[i] = (event_actor){&w, i};
        fs[i] = spawn(&c, event_waiter, &a[i], NULL);
    }
    assert_false(ll_event_is_set(w.ev));
    ll_future *later = ll_loop_call_later(c.loop, 0.01, set_event, w.ev);
    run_all(&c, fs, 5);
    assert_int_equal(w.woken, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(w.rc[i], 0);
    assert_true(ll_event_is_set(w.ev));
    /* already set: returns at once */
    a[5] = (event_actor){&w, 5};
    assert_int_equal(lt_run_task(c.loop, event_waiter, &a[5]), 0);
    assert_int_equal(w.rc[5], 0);
    /* cleared: waits again (here until its deadline) */
    ll_event_clear(w.ev);
    assert_false(ll_event_is_set(w.ev));
    w.deadline = 0.02;
    assert_int_equal(lt_run_task(c.loop, event_waiter, &a[5]), 0);
    assert_int_equal(w.rc[5], LL_ETIMEDOUT);
    ll_future_free(later);
    ll_event_free(w.ev);
    lt_teardown(&c);
}

/* ---- queue ---- */

typedef struct {
    ll_queue *q;
    size_t cap;
    int n;
    int puts_done, gets_done;
    int max_ahead;        /* puts returned minus gets returned, at its highest */
    int producer_blocked; /* puts that found the queue full */
    int got[32];
    int ngot;
    int put_rc, get_rc;
} pc_world;

static int producer(void *arg) {
    pc_world *w = arg;
    for (int i = 0; i < w->n; i++) {
        if (ll_queue_size(w->q) == w->cap) w->producer_blocked++;
        int rc = ll_queue_put(w->q, (void *)(intptr_t)(i + 1));
        if (rc) return w->put_rc = rc;
        w->puts_done++;
        if (w->puts_done - w->gets_done > w->max_ahead) w->max_ahead = w->puts_done - w->gets_done;
    }
    return 0;
}

static int consumer(void *arg) {
    pc_world *w = arg;
    for (int i = 0; i < w->n; i++) {
        void *item;
        int rc = ll_queue_get(w->q, &item);
        if (rc) return w->get_rc = rc;
        w->gets_done++;
        w->got[w->ngot++] = (int)(intptr_t)item - 1;
        ll_sleep(0.002); /* a slow consumer */
    }
    return 0;
}

static void test_queue_back_pressure(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    pc_world w = {.cap = 3, .n = 20};
    w.q = ll_queue_new(w.cap);
    ll_future *fs[2] = {spawn(&c, producer, &w, "producer"), spawn(&c, consumer, &w, "consumer")};
    ll_time t0 = ll_now();
    run_all(&c, fs, 2);
    assert_int_equal(w.put_rc, 0);
    assert_int_equal(w.get_rc, 0);
    assert_int_equal(w.ngot, 20);
    for (int i = 0; i < 20; i++) assert_int_equal(w.got[i], i); /* FIFO */
    assert_true(w.max_ahead <= (int)w.cap);                     /* never more than cap ahead */
    assert_true(w.producer_blocked >= 10);                      /* the producer had to wait */
    assert_true(ll_now() - t0 >= 0.02);                         /* paced by the consumer */
    assert_int_equal(ll_queue_size(w.q), 0);
    ll_queue_free(w.q);
    lt_teardown(&c);
}

typedef struct {
    ll_queue *q;
    int id;
    int *order;
    int *n;
    int rc;
    void *item;
} getter_actor;

static int getter(void *arg) {
    getter_actor *g = arg;
    g->rc = ll_queue_get(g->q, &g->item);
    if (g->rc == 0) g->order[(*g->n)++] = g->id;
    return 0;
}

static void test_queue_try_and_fifo_getters(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_queue *q = ll_queue_new(2);
    void *item = NULL;
    assert_int_equal(ll_queue_try_get(q, &item), LL_EEMPTY);
    assert_int_equal(ll_queue_try_put(q, "a"), 0);
    assert_int_equal(ll_queue_try_put(q, "b"), 0);
    assert_int_equal(ll_queue_try_put(q, "c"), LL_EFULL);
    assert_int_equal(ll_queue_size(q), 2);
    assert_int_equal(ll_queue_try_get(q, &item), 0);
    assert_string_equal(item, "a");
    assert_int_equal(ll_queue_try_get(q, &item), 0);
    assert_string_equal(item, "b");

    /* getters are served in the order they arrived, each with the next item */
    int order[3], n = 0;
    getter_actor g[3];
    ll_future *fs[3];
    for (int i = 0; i < 3; i++) {
        g[i] = (getter_actor){.q = q, .id = i, .order = order, .n = &n};
        fs[i] = spawn(&c, getter, &g[i], NULL);
    }
    ll_future *tick = ll_sleep_future(c.loop, 0.005);
    assert_int_equal(ll_loop_run_until(c.loop, tick), 0); /* all three wait */
    ll_future_free(tick);
    assert_int_equal(ll_queue_try_put(q, "x"), 0);
    assert_int_equal(ll_queue_try_put(q, "y"), 0);
    assert_int_equal(ll_queue_try_put(q, "z"), LL_EFULL); /* x and y, promised, still count */
    assert_int_equal(ll_queue_try_get(q, &item), LL_EEMPTY); /* and cannot be taken by others */
    run_all(&c, fs, 2);
    assert_int_equal(n, 2);
    assert_int_equal(order[0], 0);
    assert_string_equal(g[0].item, "x");
    assert_string_equal(g[1].item, "y");
    assert_int_equal(ll_queue_try_put(q, "z"), 0);
    run_all(&c, fs + 2, 1);
    assert_string_equal(g[2].item, "z");
    ll_queue_free(q);
    lt_teardown(&c);
}

/* A getter promised an item is cancelled before it resumes: the item stays at the head, for the
 * next getter or whoever comes, and items still leave in the order they came. */
typedef struct {
    ll_queue *q;
    ll_future *victim;
    int second_put_rc, full_rc;
} qrace;

static int qrace_putter(void *arg) {
    qrace *r = arg;
    ll_sleep(0.01);
    ll_queue_put(r->q, "first");  /* promised to the waiting getter */
    ll_future_cancel(r->victim);   /* which is cancelled before it runs */
    r->second_put_rc = ll_queue_put(r->q, "second");
    r->full_rc = ll_queue_try_put(r->q, "third"); /* "first" still takes a slot */
    return 0;
}

static void test_queue_cancel_after_handoff(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    /* no other getter: the item returns to the head of the queue */
    ll_queue *q = ll_queue_new(2);
    int order[2], n = 0;
    getter_actor g = {.q = q, .id = 0, .order = order, .n = &n};
    qrace r = {.q = q};
    ll_future *fs[2];
    fs[0] = spawn(&c, getter, &g, "getter");
    fs[1] = spawn(&c, qrace_putter, &r, "putter");
    r.victim = fs[0];
    run_all(&c, fs, 2);
    assert_int_equal(g.rc, LL_ECANCELED);
    assert_int_equal(n, 0);
    assert_int_equal(r.second_put_rc, 0);
    assert_int_equal(r.full_rc, LL_EFULL);
    assert_int_equal(ll_queue_size(q), 2);
    void *item;
    assert_int_equal(ll_queue_try_get(q, &item), 0);
    assert_string_equal(item, "first");
    assert_int_equal(ll_queue_try_get(q, &item), 0);
    assert_string_equal(item, "second");

    /* a second getter waits: it receives the item */
    getter_actor g2[2] = {{.q = q, .id = 0, .order = order, .n = &n},
                          {.q = q, .id = 1, .order = order, .n = &n}};
    ll_future *gs[3];
    gs[0] = spawn(&c, getter, &g2[0], "A");
    gs[1] = spawn(&c, getter, &g2[1], "B");
    gs[2] = spawn(&c, qrace_putter, &r, "putter");
    r.victim = gs[0];
    run_all(&c, gs, 3);
    assert_int_equal(g2[0].rc, LL_ECANCELED);
    assert_int_equal(g2[1].rc, 0);
    assert_string_equal(g2[1].item, "first"); /* items still leave in order */
    assert_int_equal(r.full_rc, LL_EFULL);     /* "first" counted until B took it */
    assert_int_equal(ll_queue_try_get(q, &item), 0);
    assert_string_equal(item, "second");
    assert_int_equal(ll_queue_try_get(q, &item), LL_EEMPTY);
    ll_queue_free(q);
    lt_teardown(&c);
}

typedef struct {
    ll_queue *q;
    int rc;
} put_obs;

static int blocked_put(void *arg) {
    put_obs *o = arg;
    o->rc = ll_queue_put(o->q, "late");
    return 0;
}

static void test_queue_put_cancelled(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_queue *q = ll_queue_new(1);
    assert_int_equal(ll_queue_try_put(q, "only"), 0);
    put_obs o = {.q = q};
    ll_future *f = spawn(&c, blocked_put, &o, "putter");
    ll_future *tick = ll_sleep_future(c.loop, 0.005);
    assert_int_equal(ll_loop_run_until(c.loop, tick), 0);
    ll_future_free(tick);
    ll_future_cancel(f);
    run_all(&c, &f, 1);
    assert_int_equal(o.rc, LL_ECANCELED);
    void *item;
    assert_int_equal(ll_queue_try_get(q, &item), 0); /* "late" was never queued */
    assert_string_equal(item, "only");
    assert_int_equal(ll_queue_try_get(q, &item), LL_EEMPTY);
    ll_queue_free(q);
    lt_teardown(&c);
}

/* ---- freeing under waiting tasks ---- */

typedef struct {
    ll_sem *sem;
    ll_lock *lock;
    ll_event *ev;
    ll_queue *qget, *qput;
    int rc[5];
} close_world;

static int wait_sem(void *arg) { close_world *w = arg; return w->rc[0] = ll_sem_acquire(w->sem); }
static int wait_lock(void *arg) {
    close_world *w = arg;
    return w->rc[1] = ll_lock_acquire(w->lock);
}
static int wait_event(void *arg) { close_world *w = arg; return w->rc[2] = ll_event_wait(w->ev); }
static int wait_get(void *arg) {
    close_world *w = arg;
    void *item;
    return w->rc[3] = ll_queue_get(w->qget, &item);
}
static int wait_put(void *arg) {
    close_world *w = arg;
    return w->rc[4] = ll_queue_put(w->qput, "x");
}

static int lock_forever(void *arg) {
    close_world *w = arg;
    ll_lock_acquire(w->lock);
    return 0; /* ends holding it */
}

static void test_free_wakes_waiters(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    close_world w = {.sem = ll_sem_new(0), .lock = ll_lock_new(), .ev = ll_event_new(),
                     .qget = ll_queue_new(1), .qput = ll_queue_new(1)};
    assert_int_equal(ll_queue_try_put(w.qput, "full"), 0);
    assert_int_equal(lt_run_task(c.loop, lock_forever, &w), 0);
    ll_task_fn fns[5] = {wait_sem, wait_lock, wait_event, wait_get, wait_put};
    ll_future *fs[5];
    for (int i = 0; i < 5; i++) {
        w.rc[i] = 1;
        fs[i] = spawn(&c, fns[i], &w, NULL);
    }
    ll_future *tick = ll_sleep_future(c.loop, 0.005);
    assert_int_equal(ll_loop_run_until(c.loop, tick), 0);
    ll_future_free(tick);
    for (int i = 0; i < 5; i++) assert_int_equal(w.rc[i], 1); /* all waiting */
    ll_sem_free(w.sem);
    ll_lock_free(w.lock);
    ll_event_free(w.ev);
    ll_queue_free(w.qget);
    ll_queue_free(w.qput); /* still holding "full", a literal: nothing to free */
    run_all(&c, fs, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(w.rc[i], LL_ECLOSED);
    lt_teardown(&c);
}

/* Freed in the window between a handoff and the waiter's resumption: the waiter must not touch
 * the freed object (ASan and valgrind watch this). */
typedef struct {
    ll_sem *sem;
    ll_queue *q;
    int sem_rc, get_rc;
    void *item;
} window_obs;

static int window_sem(void *arg) { window_obs *o = arg; return o->sem_rc = ll_sem_acquire(o->sem); }
static int window_get(void *arg) {
    window_obs *o = arg;
    return o->get_rc = ll_queue_get(o->q, &o->item);
}

static int window_closer(void *arg) {
    window_obs *o = arg;
    ll_sleep(0.005);
    ll_sem_release(o->sem);
    ll_sem_free(o->sem);
    ll_queue_put(o->q, "handed");
    ll_queue_free(o->q);
    return 0;
}

static void test_free_after_handoff(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    window_obs o = {.sem = ll_sem_new(0), .q = ll_queue_new(1), .sem_rc = 1, .get_rc = 1};
    ll_future *fs[3] = {spawn(&c, window_sem, &o, NULL), spawn(&c, window_get, &o, NULL),
                        spawn(&c, window_closer, &o, NULL)};
    run_all(&c, fs, 3);
    assert_int_equal(o.sem_rc, LL_ECLOSED); /* its permit belonged to a semaphore now gone */
    assert_int_equal(o.get_rc, 0);          /* the item was delivered before the free */
    assert_string_equal(o.item, "handed");
    lt_teardown(&c);
}

/* ---- the task dump shows what a task waits for ---- */

typedef struct {
    ll_lock *lock;
    ll_queue *q;
    char dump[4096];
} dump_obs;

static int dump_lock_waiter(void *arg) { return ll_lock_acquire(((dump_obs *)arg)->lock); }
static int dump_get_waiter(void *arg) {
    void *item;
    return ll_queue_get(((dump_obs *)arg)->q, &item);
}

static int dumper(void *arg) {
    dump_obs *o = arg;
    ll_lock_acquire(o->lock);
    ll_future *a = ll_spawn(dump_lock_waiter, o);
    ll_future *b = ll_spawn(dump_get_waiter, o);
    ll_sleep(0.005);
    FILE *m = fmemopen(o->dump, sizeof o->dump - 1, "w");
    if (m) {
        ll_loop_dump_tasks(ll_loop_current(), m);
        fclose(m);
    }
    ll_lock_release(o->lock);
    ll_queue_try_put(o->q, "x");
    ll_await(a);
    ll_await(b);
    ll_future_free(a);
    ll_future_free(b);
    return 0;
}

static void test_dump_labels(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    dump_obs o = {.lock = ll_lock_new(), .q = ll_queue_new(1)};
    assert_int_equal(lt_run_task(c.loop, dumper, &o), 0);
    assert_non_null(strstr(o.dump, "on lock"));
    assert_non_null(strstr(o.dump, "on queue get"));
    ll_lock_free(o.lock);
    ll_queue_free(o.q);
    lt_teardown(&c);
}

/* ---- out of memory and misuse ---- */

static int oom_acquire(void *arg) {
    ll_sem *s = arg;
    lt_fail_after(0);
    int rc = ll_sem_acquire(s); /* must wait, and cannot make its future */
    lt_fail_reset();
    return rc;
}

static void test_out_of_memory(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    lt_fail_after(0);
    assert_null(ll_sem_new(1));
    assert_null(ll_lock_new());
    assert_null(ll_event_new());
    assert_null(ll_queue_new(4));
    lt_fail_after(1); /* the queue struct, then not its ring */
    assert_null(ll_queue_new(4));
    lt_fail_reset();
    ll_sem *s = ll_sem_new(0);
    assert_int_equal(lt_run_task(c.loop, oom_acquire, s), LL_ENOMEM);
    ll_sem_release(s);
    assert_int_equal(ll_sem_value(s), 1); /* no stale waiter was left in the line */
    ll_sem_free(s);
    lt_teardown(&c);
}

static void test_misuse(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    /* NULL handles */
    assert_int_equal(ll_sem_acquire(NULL), LL_EINVAL);
    assert_int_equal(ll_sem_try_acquire(NULL), LL_EINVAL);
    ll_sem_release(NULL);
    assert_int_equal(ll_sem_value(NULL), 0);
    assert_int_equal(ll_lock_acquire(NULL), LL_EINVAL);
    assert_int_equal(ll_lock_release(NULL), LL_EINVAL);
    assert_false(ll_lock_locked(NULL));
    assert_int_equal(ll_event_wait(NULL), LL_EINVAL);
    ll_event_set(NULL);
    ll_event_clear(NULL);
    assert_false(ll_event_is_set(NULL));
    void *item;
    assert_int_equal(ll_queue_put(NULL, NULL), LL_EINVAL);
    assert_int_equal(ll_queue_get(NULL, &item), LL_EINVAL);
    assert_int_equal(ll_queue_try_put(NULL, NULL), LL_EINVAL);
    assert_int_equal(ll_queue_try_get(NULL, &item), LL_EINVAL);
    assert_int_equal(ll_queue_size(NULL), 0);
    assert_null(ll_queue_new(0));
    ll_sem_free(NULL);
    ll_lock_free(NULL);
    ll_event_free(NULL);
    ll_queue_free(NULL);

    /* waiting calls outside a task */
    ll_sem *s = ll_sem_new(1);
    ll_lock *l = ll_lock_new();
    ll_event *e = ll_event_new();
    ll_queue *q = ll_queue_new(1);
    assert_int_equal(ll_sem_acquire(s), LL_ENOTASK);
    assert_int_equal(ll_sem_value(s), 1);
    assert_int_equal(ll_lock_acquire(l), LL_ENOTASK);
    assert_int_equal(ll_event_wait(e), LL_ENOTASK);
    assert_int_equal(ll_queue_put(q, "x"), LL_ENOTASK);
    assert_int_equal(ll_queue_get(q, &item), LL_ENOTASK);
    assert_int_equal(ll_queue_try_get(q, NULL), LL_EINVAL);
    /* releasing a lock nobody holds */
    assert_int_equal(ll_lock_release(l), LL_ESTATE);
    assert_false(ll_lock_locked(l));
    ll_sem_free(s);
    ll_lock_free(l);
    ll_event_free(e);
    ll_queue_free(q);
    lt_teardown(&c);
}

/* ---- handed over to a task destroyed at shutdown ---- */

/* A task that waits in shielded cleanup: shutdown's cancellation does not stop it, the deadline
 * destroys it. */
typedef struct stubborn_waiter {
    ll_sem *sem;
    ll_queue *q;
    int rc;
} stubborn_waiter;

static int waits_shielded(void *arg) {
    stubborn_waiter *w = arg;
    ll_scope s;
    ll_scope_enter_shielded(&s, ll_deadline_in(30));
    void *item = NULL;
    w->rc = w->sem ? ll_sem_acquire(w->sem) : ll_queue_get(w->q, &item);
    ll_scope_exit(&s);
    return w->rc;
}

/* From a timer (outside the ready queue): hand over, then keep the loop busy past the shutdown
 * deadline, so the waiter is destroyed with the handoff delivered but not yet seen. */
static void hand_over_then_stall(void *arg) {
    stubborn_waiter *w = arg;
    if (w->sem) ll_sem_release(w->sem);
    else assert_int_equal(ll_queue_try_put(w->q, (void *)(uintptr_t)42), 0);
    ll_time until = ll_now() + 0.15;
    while (ll_now() < until) {
    }
}

static void test_handoff_to_destroyed_task(void **state) {
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        lt_ctx c;
        lt_setup(&c);
        stubborn_waiter w = {NULL, NULL, 1};
        if (kind == 0) w.sem = ll_sem_new(0);
        else w.q = ll_queue_new(2);
        ll_future *t = spawn(&c, waits_shielded, &w, "stubborn");
        ll_future *wait = ll_sleep_future(c.loop, 0.01);
        assert_int_equal(ll_loop_run_until(c.loop, wait), 0); /* the task waits now */
        ll_future_free(wait);
        ll_future *timer = ll_loop_call_later(c.loop, 0.03, hand_over_then_stall, &w);
        assert_int_equal(ll_loop_shutdown(c.loop, ll_deadline_in(0.1)), LL_ETIMEDOUT);
        assert_int_equal(ll_future_code(t), LL_ECANCELED);
        assert_int_equal(w.rc, 1); /* it never resumed */
        if (kind == 0) {
            assert_int_equal(ll_sem_value(w.sem), 1); /* the permit was passed on, not lost */
            ll_sem_free(w.sem); /* and nothing on the list points into the released stack */
        } else {
            void *item = NULL;
            assert_int_equal(ll_queue_try_get(w.q, &item), 0); /* no longer promised */
            assert_ptr_equal(item, (void *)(uintptr_t)42);
            ll_queue_free(w.q);
        }
        ll_future_free(timer);
        ll_future_free(t);
        lt_teardown(&c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sem_basic),
        cmocka_unit_test(test_sem_fifo_no_barging),
        cmocka_unit_test(test_sem_cancel_after_handoff),
        cmocka_unit_test(test_sem_cancel_while_waiting),
        cmocka_unit_test(test_sem_deadline),
        cmocka_unit_test(test_lock_mutual_exclusion),
        cmocka_unit_test(test_lock_owner_checks),
        cmocka_unit_test(test_lock_cancel_after_handoff),
        cmocka_unit_test(test_event_wake_all),
        cmocka_unit_test(test_queue_back_pressure),
        cmocka_unit_test(test_queue_try_and_fifo_getters),
        cmocka_unit_test(test_queue_cancel_after_handoff),
        cmocka_unit_test(test_queue_put_cancelled),
        cmocka_unit_test(test_free_wakes_waiters),
        cmocka_unit_test(test_free_after_handoff),
        cmocka_unit_test(test_handoff_to_destroyed_task),
        cmocka_unit_test(test_dump_labels),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests_name("sync", tests, NULL, NULL);
}
