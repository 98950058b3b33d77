/*
 * test_pool.c — the connection pool: reuse, FIFO service of 1,000 waiters on a pool of 10 within
 * their deadlines, release states (idle, reset, broken/mid-read), the liveness check on take, min
 * size, idle and lifetime reaping, connect failures and timeouts, cancellation, keys and the total
 * limit, close, counters, out of memory.
 *
 * Most tests use a fake connection type with an in-memory vtable: a connection is a struct, a
 * connect is a task that sleeps for a configurable time, "alive" is a flag the test can clear.
 * The last tests use real loopback TCP connections (libloop streams) and a libloop server.
 */
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"
#include "libloop/pool.h"
#include "libloop/server.h"
#include "libloop/stream.h"

/* ---- the fake connection type ---- */

typedef struct fake_env fake_env;

typedef struct fake_conn {
    int id;
    bool alive;
    fake_env *env;
} fake_conn;

struct fake_env {
    double connect_delay;  /* seconds a connect takes */
    int fail_code;         /* non-zero: connects fail with this code */
    int next_id;
    int live;              /* connections made and not closed */
    int closed;
    int connects_started;
    int connects_cancelled;
    int resets;
    bool reset_fails;
    double reset_delay;
    bool saw_task_deadline; /* a connect ran with a deadline inherited from the caller */
};

typedef struct connect_job {
    fake_env *env;
    char key[64];
} connect_job;

static int fake_connect_task(void *arg) {
    connect_job *j = arg;
    fake_env *env = j->env;
    if (ll_task_deadline() < LL_NEVER) env->saw_task_deadline = true;
    int rc = env->connect_delay > 0 ? ll_sleep(env->connect_delay) : 0;
    int fail = env->fail_code;
    const char *key = j->key; /* j is freed when the task's future settles */
    if (rc) {
        env->connects_cancelled++;
        return rc;
    }
    if (fail) return ll_task_fail(fail, "connect to %s: %s", key, ll_strerror(fail));
    fake_conn *c = calloc(1, sizeof *c);
    c->id = ++env->next_id;
    c->alive = true;
    c->env = env;
    env->live++;
    ll_task_return(c, free); /* the pool takes the value, disarming free */
    return 0;
}

static void free_job(ll_future *f, void *arg) {
    (void)f;
    free(arg);
}

static ll_future *fake_connect(void *arg, const char *key) {
    fake_env *env = arg;
    connect_job *j = calloc(1, sizeof *j);
    j->env = env;
    snprintf(j->key, sizeof j->key, "%s", key);
    env->connects_started++;
    ll_future *f = ll_spawn(fake_connect_task, j);
    /* the job lives until the task settles, even if it is cancelled before it ever runs */
    if (!f || ll_future_add_done(f, free_job, j) != 0) free(j);
    return f;
}

static bool fake_alive(void *arg, void *conn) {
    (void)arg;
    return ((fake_conn *)conn)->alive;
}

static void fake_close(void *arg, void *conn) {
    fake_env *env = arg;
    env->live--;
    env->closed++;
    free(conn);
}

static int fake_reset_task(void *arg) {
    fake_env *env = arg;
    env->resets++;
    if (env->reset_delay > 0) {
        int rc = ll_sleep(env->reset_delay);
        if (rc) return rc;
    }
    return env->reset_fails ? ll_task_fail(LL_EPROTO, "reset failed") : 0;
}

static ll_future *fake_reset(void *arg, void *conn) {
    (void)conn;
    return ll_spawn(fake_reset_task, arg);
}

static const ll_pool_vtable fake_vt = {fake_connect, fake_alive, fake_close, fake_reset};
static const ll_pool_vtable fake_vt_noreset = {fake_connect, fake_alive, fake_close, NULL};

/* Acquire inside a task; return the connection or NULL with *rc set. */
static fake_conn *get(ll_pool *p, const char *key, int *rc) {
    ll_future *f = ll_pool_acquire(p, key);
    int r = ll_await(f);
    fake_conn *c = r == 0 ? ll_future_value(f) : NULL;
    ll_future_free(f);
    if (rc) *rc = r;
    return c;
}

static ll_pool_stats stats(ll_pool *p) {
    ll_pool_stats st;
    ll_pool_get_stats(p, &st);
    return st;
}

/* Close the pool and run the loop until connect tasks it cancelled have unwound (the teardown
 * then proves the pool's handle is gone). */
static void close_and_drain(lt_ctx *c, ll_pool *p) {
    ll_pool_free(p);
    for (int i = 0; i < 100; i++) {
        ll_loop_stats st;
        ll_loop_get_stats(c->loop, &st);
        if (st.tasks == 0 && i > 0) break;
        ll_future *f = ll_sleep_future(c->loop, 0.01);
        ll_loop_run_until(c->loop, f);
        ll_future_free(f);
    }
}

typedef struct tctx {
    ll_pool *pool;
    fake_env *env;
} tctx;

/* ---- reuse and counters ---- */

static int t_reuse(void *arg) {
    tctx *t = arg;
    int rc;
    fake_conn *a = get(t->pool, "k1", &rc);
    assert_int_equal(rc, 0);
    assert_non_null(a);
    assert_false(ll_pool_conn_reused(t->pool, a));
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.in_use, 1);
    assert_int_equal(st.idle, 0);
    assert_int_equal(st.created, 1);
    assert_int_equal(ll_pool_release(t->pool, a, LL_POOL_IDLE), 0);
    st = stats(t->pool);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.in_use, 0);
    /* a free connection is taken at once: the future is already resolved */
    ll_future *f = ll_pool_acquire(t->pool, "k1");
    assert_true(ll_future_done(f));
    fake_conn *b = ll_future_value(f);
    ll_future_free(f);
    assert_ptr_equal(a, b);
    assert_true(ll_pool_conn_reused(t->pool, b));
    /* releasing twice, or something that is not ours, is refused and changes nothing */
    assert_int_equal(ll_pool_release(t->pool, b, LL_POOL_IDLE), 0);
    assert_int_equal(ll_pool_release(t->pool, b, LL_POOL_IDLE), LL_ENOENT);
    fake_conn stranger = {0};
    assert_int_equal(ll_pool_release(t->pool, &stranger, LL_POOL_IDLE), LL_ENOENT);
    /* another key never shares */
    fake_conn *c = get(t->pool, "k2", &rc);
    assert_non_null(c);
    assert_ptr_not_equal(c, a);
    ll_pool_release(t->pool, c, LL_POOL_IDLE);
    st = stats(t->pool);
    assert_int_equal(st.open, 2);
    assert_int_equal(st.idle, 2);
    assert_int_equal(st.created, 2);
    assert_int_equal(st.acquired, 3);
    assert_int_equal(st.reused, 1);
    assert_int_equal(st.discarded, 0);
    ll_pool_stats ks;
    assert_int_equal(ll_pool_get_key_stats(t->pool, "k1", &ks), 0);
    assert_int_equal(ks.open, 1);
    assert_int_equal(ks.acquired, 2);
    assert_int_equal(ll_pool_get_key_stats(t->pool, "nope", &ks), LL_ENOENT);
    return 0;
}

static void test_reuse_and_counters(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.name = "fake", .loop = c.loop};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    assert_non_null(p);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_reuse, &t), 0);
    ll_loop_stats ls;
    ll_loop_get_stats(c.loop, &ls);
    assert_int_equal(ls.handles, 1); /* the pool is a handle */
    close_and_drain(&c, p);
    assert_int_equal(env.live, 0);
    assert_int_equal(env.closed, 2);
    lt_teardown(&c);
}

/* ---- 1,000 waiters on a pool of 10 ---- */

#define NWAITERS 1000

typedef struct fifo_ctx {
    ll_pool *pool;
    int order[NWAITERS];     /* order[i] = the waiter served i-th */
    int nserved;
    int in_use, max_in_use;
    int failures;
    double max_wait;
} fifo_ctx;

typedef struct fifo_arg {
    fifo_ctx *fc;
    int id;
} fifo_arg;

static int fifo_waiter(void *arg) {
    fifo_arg *a = arg;
    fifo_ctx *fc = a->fc;
    ll_time t0 = ll_now();
    int rc;
    fake_conn *c = get(fc->pool, "db", &rc);
    if (!c) {
        fc->failures++;
        return rc;
    }
    double waited = ll_now() - t0;
    if (waited > fc->max_wait) fc->max_wait = waited;
    fc->order[fc->nserved++] = a->id;
    if (++fc->in_use > fc->max_in_use) fc->max_in_use = fc->in_use;
    ll_yield(); /* hold it across a loop iteration */
    fc->in_use--;
    ll_pool_release(fc->pool, c, LL_POOL_IDLE);
    return 0;
}

static void test_thousand_waiters_fifo(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {.connect_delay = 0.002};
    /* each waiter must be served within its deadline: the pool's 10 s and a 10 s task deadline */
    ll_pool_opts o = {.name = "fifo", .loop = c.loop, .max_per_key = 10, .acquire_timeout = 10};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    fifo_ctx *fc = calloc(1, sizeof *fc);
    fc->pool = p;
    fifo_arg *args = calloc(NWAITERS, sizeof *args);
    ll_future **fs = calloc(NWAITERS, sizeof *fs);
    ll_time deadline = ll_deadline_in(10);
    for (int i = 0; i < NWAITERS; i++) {
        args[i] = (fifo_arg){fc, i};
        ll_spawn_opts so = {.loop = c.loop, .deadline = deadline, .stack_size = 32768};
        fs[i] = ll_spawn_ex(fifo_waiter, &args[i], &so);
        assert_non_null(fs[i]);
    }
    ll_time t0 = ll_now();
    for (int i = 0; i < NWAITERS; i++) {
        assert_int_equal(ll_loop_run_until(c.loop, fs[i]), 0);
        ll_future_free(fs[i]);
    }
    double took = ll_now() - t0;
    assert_int_equal(fc->failures, 0);
    assert_int_equal(fc->nserved, NWAITERS);
    for (int i = 0; i < NWAITERS; i++) assert_int_equal(fc->order[i], i); /* first come, first served */
    assert_true(fc->max_in_use <= 10);
    assert_true(fc->max_wait < 10.0);
    assert_true(took < 10.0);
    ll_pool_stats st = stats(p);
    /* never more than the limit, all reused; how many of the 10 get made depends on how fast
     * releases come back (valgrind: fewer) */
    assert_true(st.created >= 1 && st.created <= 10);
    assert_int_equal(st.acquired, NWAITERS);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.open, st.created);
    assert_int_equal(st.idle, st.created);
    close_and_drain(&c, p);
    assert_int_equal(env.live, 0);
    free(fs);
    free(args);
    free(fc);
    lt_teardown(&c);
}

/* ---- deadlines: the pool's acquire_timeout and the task's own ---- */

typedef struct dl_ctx {
    ll_pool *pool;
    int rc[3];
    double took[3];
    char msg[256];
} dl_ctx;

static int dl_holder(void *arg) {
    dl_ctx *d = arg;
    int rc;
    fake_conn *c = get(d->pool, "slow", &rc);
    assert_non_null(c);
    ll_sleep(0.3);
    ll_pool_release(d->pool, c, LL_POOL_IDLE);
    return 0;
}

static int dl_pool_timeout(void *arg) {
    dl_ctx *d = arg;
    ll_time t0 = ll_now();
    ll_future *f = ll_pool_acquire(d->pool, "slow");
    d->rc[0] = ll_await(f);
    d->took[0] = ll_now() - t0;
    snprintf(d->msg, sizeof d->msg, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return 0;
}

static int dl_task_deadline(void *arg) {
    dl_ctx *d = arg;
    ll_time t0 = ll_now();
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.02));
    int rc;
    get(d->pool, "slow", &rc);
    ll_scope_exit(&s);
    d->rc[1] = rc;
    d->took[1] = ll_now() - t0;
    return 0;
}

static void test_waiter_deadlines(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.name = "dl", .loop = c.loop, .max_per_key = 1, .acquire_timeout = 0.1};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    dl_ctx d = {.pool = p};
    ll_spawn_opts so = {.loop = c.loop};
    ll_future *h = ll_spawn_ex(dl_holder, &d, &so);
    ll_future *a = ll_spawn_ex(dl_pool_timeout, &d, &so);
    ll_future *b = ll_spawn_ex(dl_task_deadline, &d, &so);
    assert_int_equal(ll_loop_run_until(c.loop, a), 0);
    assert_int_equal(ll_loop_run_until(c.loop, b), 0);
    assert_int_equal(ll_loop_run_until(c.loop, h), 0);
    assert_int_equal(d.rc[0], LL_ETIMEDOUT);
    assert_true(d.took[0] >= 0.099 && d.took[0] < 0.29); /* tolerance: noisy 2-core machine */
    assert_non_null(strstr(d.msg, "dl: no connection to slow within 0.1 s"));
    assert_int_equal(d.rc[1], LL_ETIMEDOUT);
    assert_true(d.took[1] >= 0.019 && d.took[1] < 0.29);
    ll_pool_stats st = stats(p);
    assert_int_equal(st.timeouts, 1); /* the task deadline is the task's, not the pool's */
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.created, 1);
    ll_future_free(h);
    ll_future_free(a);
    ll_future_free(b);
    close_and_drain(&c, p);
    lt_teardown(&c);
}

/* ---- release states ---- */

static int t_release_states(void *arg) {
    tctx *t = arg;
    int rc;
    /* mid-read (BROKEN): closed, never handed out again */
    fake_conn *a = get(t->pool, "k", &rc);
    int a_id = a->id;
    assert_int_equal(ll_pool_release(t->pool, a, LL_POOL_BROKEN), 0);
    assert_int_equal(t->env->closed, 1);
    fake_conn *b = get(t->pool, "k", &rc);
    assert_non_null(b);
    assert_int_not_equal(b->id, a_id);
    assert_false(ll_pool_conn_reused(t->pool, b));
    /* discard is the same */
    assert_int_equal(ll_pool_discard(t->pool, b), 0);
    assert_int_equal(t->env->closed, 2);
    /* an unknown state value is treated as broken */
    fake_conn *c = get(t->pool, "k", &rc);
    assert_int_equal(ll_pool_release(t->pool, c, (ll_pool_state)42), 0);
    assert_int_equal(t->env->closed, 3);
    /* RESET: the vtable's reset runs, then the connection is reused */
    fake_conn *d = get(t->pool, "k", &rc);
    int d_id = d->id;
    t->env->reset_delay = 0.01;
    assert_int_equal(ll_pool_release(t->pool, d, LL_POOL_RESET), 0);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.idle, 0); /* still being reset */
    fake_conn *e = get(t->pool, "k", &rc); /* waits for the reset, then gets the same one */
    assert_int_equal(e->id, d_id);
    assert_int_equal(t->env->resets, 1);
    assert_int_equal(st.created, 4);
    /* a reset that fails closes the connection */
    t->env->reset_fails = true;
    ll_pool_release(t->pool, e, LL_POOL_RESET);
    ll_sleep(0.05);
    st = stats(t->pool);
    assert_int_equal(st.open, 0);
    assert_int_equal(t->env->closed, 4);
    assert_int_equal(st.discarded, 4);
    return 0;
}

static void test_release_states(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_release_states, &t), 0);
    close_and_drain(&c, p);
    assert_int_equal(env.live, 0);
    lt_teardown(&c);
}

static int t_reset_without_vtable(void *arg) {
    tctx *t = arg;
    int rc;
    fake_conn *a = get(t->pool, "k", &rc);
    ll_pool_release(t->pool, a, LL_POOL_RESET); /* no reset function: closed */
    assert_int_equal(t->env->closed, 1);
    assert_int_equal(stats(t->pool).open, 0);
    return 0;
}

static void test_reset_without_vtable_closes(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop};
    ll_pool *p = ll_pool_new(&fake_vt_noreset, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_reset_without_vtable, &t), 0);
    close_and_drain(&c, p);
    lt_teardown(&c);
}

/* ---- liveness on take ---- */

static int t_liveness(void *arg) {
    tctx *t = arg;
    int rc;
    fake_conn *a = get(t->pool, "k", &rc);
    fake_conn *b = get(t->pool, "k", &rc);
    int b_id = b->id;
    ll_pool_release(t->pool, a, LL_POOL_IDLE);
    ll_pool_release(t->pool, b, LL_POOL_IDLE);
    b->alive = false; /* the peer closed it while it sat idle */
    /* b is the most recently used, so it is tried first: found dead, closed, a is handed out */
    fake_conn *c = get(t->pool, "k", &rc);
    assert_ptr_equal(c, a);
    assert_int_equal(t->env->closed, 1);
    c->alive = false;
    ll_pool_release(t->pool, c, LL_POOL_IDLE);
    /* the only idle one is dead: a new one is connected */
    fake_conn *d = get(t->pool, "k", &rc);
    assert_non_null(d);
    assert_int_not_equal(d->id, b_id);
    assert_false(ll_pool_conn_reused(t->pool, d));
    assert_int_equal(t->env->closed, 2);
    ll_pool_release(t->pool, d, LL_POOL_IDLE);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.created, 3);
    assert_int_equal(st.discarded, 2);
    assert_int_equal(st.open, 1);
    return 0;
}

static void test_liveness_on_take(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_liveness, &t), 0);
    close_and_drain(&c, p);
    lt_teardown(&c);
}

/* ---- min size, idle and lifetime reaping ---- */

static int t_min_and_idle(void *arg) {
    tctx *t = arg;
    assert_int_equal(ll_pool_warm(t->pool, "k"), 0);
    ll_sleep(0.05);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.open, 3);
    assert_int_equal(st.idle, 3);
    /* five at once: two more are made */
    fake_conn *c[5];
    int rc;
    for (int i = 0; i < 5; i++) assert_non_null(c[i] = get(t->pool, "k", &rc));
    assert_int_equal(stats(t->pool).open, 5);
    for (int i = 0; i < 5; i++) ll_pool_release(t->pool, c[i], LL_POOL_IDLE);
    /* max_idle 0.05: the extra two are reaped, the minimum stays */
    ll_sleep(0.4);
    st = stats(t->pool);
    assert_int_equal(st.open, 3);
    assert_int_equal(st.idle, 3);
    assert_int_equal(st.discarded, 2);
    /* a dead idle connection is noticed by the upkeep and replaced to keep the minimum */
    fake_conn *x = get(t->pool, "k", &rc);
    x->alive = false;
    ll_pool_release(t->pool, x, LL_POOL_IDLE);
    ll_sleep(0.2);
    st = stats(t->pool);
    assert_int_equal(st.open, 3);
    assert_int_equal(st.discarded, 3);
    assert_int_equal(st.created, 6);
    return 0;
}

static void test_min_size_and_idle_reaping(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop, .min_per_key = 3, .max_idle = 0.05, .max_lifetime = -1};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_min_and_idle, &t), 0);
    close_and_drain(&c, p);
    assert_int_equal(env.live, 0);
    lt_teardown(&c);
}

static int t_idle_to_zero(void *arg) {
    tctx *t = arg;
    int rc;
    fake_conn *a = get(t->pool, "k", &rc);
    fake_conn *b = get(t->pool, "other", &rc);
    ll_pool_release(t->pool, a, LL_POOL_IDLE);
    ll_pool_release(t->pool, b, LL_POOL_IDLE);
    ll_sleep(0.01);
    assert_int_equal(stats(t->pool).idle, 2); /* not yet */
    ll_sleep(0.4);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.discarded, 2);
    ll_pool_stats ks;
    assert_int_equal(ll_pool_get_key_stats(t->pool, "k", &ks), LL_ENOENT); /* forgotten */
    return 0;
}

static void test_idle_reaping(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop, .max_idle = 0.1};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_idle_to_zero, &t), 0);
    assert_int_equal(env.live, 0);
    close_and_drain(&c, p);
    lt_teardown(&c);
}

static int t_lifetime(void *arg) {
    tctx *t = arg;
    int rc;
    fake_conn *a = get(t->pool, "k", &rc);
    fake_conn *b = get(t->pool, "k", &rc);
    ll_pool_release(t->pool, a, LL_POOL_IDLE);
    ll_sleep(0.35);
    /* a was idle past its lifetime: reaped although max_idle is long */
    assert_int_equal(stats(t->pool).idle, 0);
    /* b was lent past its lifetime: closed when it comes back */
    ll_pool_release(t->pool, b, LL_POOL_IDLE);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.discarded, 2);
    return 0;
}

static void test_lifetime_reaping(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop, .max_idle = 100, .max_lifetime = 0.1};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_lifetime, &t), 0);
    close_and_drain(&c, p);
    assert_int_equal(env.live, 0);
    lt_teardown(&c);
}

/* ---- connect failures and timeouts ---- */

typedef struct fail_ctx {
    ll_pool *pool;
    fake_env *env;
    int rc[4];
    char msg[4][256];
} fail_ctx;

static int t_connect_fails(void *arg) {
    fail_ctx *x = arg;
    ll_future *f = ll_pool_acquire(x->pool, "127.0.0.1:6380");
    x->rc[0] = ll_await(f);
    snprintf(x->msg[0], sizeof x->msg[0], "%s", ll_future_errmsg(f));
    ll_future_free(f);
    /* the connect does not inherit the caller's deadline */
    assert_false(x->env->saw_task_deadline);
    x->env->fail_code = 0;
    x->env->connect_delay = 10; /* hangs: the pool's connect_timeout cuts it */
    f = ll_pool_acquire(x->pool, "127.0.0.1:6380");
    x->rc[1] = ll_await(f);
    snprintf(x->msg[1], sizeof x->msg[1], "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return 0;
}

static void test_connect_failure_and_timeout(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {.fail_code = LL_ECONNREFUSED};
    ll_pool_opts o = {.name = "redis", .loop = c.loop, .connect_timeout = 0.05};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    fail_ctx x = {.pool = p, .env = &env};
    ll_spawn_opts so = {.loop = c.loop, .deadline = ll_deadline_in(5)};
    ll_future *f = ll_spawn_ex(t_connect_fails, &x, &so);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f);
    assert_int_equal(x.rc[0], LL_ECONNREFUSED);
    assert_string_equal(x.msg[0], "connect to 127.0.0.1:6380: connection refused");
    assert_int_equal(x.rc[1], LL_ETIMEDOUT);
    assert_string_equal(x.msg[1], "redis: connect to 127.0.0.1:6380 timed out after 0.05 s");
    ll_pool_stats st = stats(p);
    assert_int_equal(st.connect_failures, 2);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.connecting, 0);
    assert_int_equal(env.connects_cancelled, 1);
    close_and_drain(&c, p);
    lt_teardown(&c);
}

/* ---- cancellation ---- */

typedef struct cancel_ctx {
    ll_pool *pool;
    int rc;
} cancel_ctx;

static int t_cancelled_waiter(void *arg) {
    cancel_ctx *x = arg;
    get(x->pool, "k", &x->rc);
    return x->rc;
}

static void cancel_cb(void *arg) {
    ll_future_cancel(arg);
}

static void test_cancelled_waiter(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {.connect_delay = 0.05};
    ll_pool_opts o = {.loop = c.loop};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    cancel_ctx x = {.pool = p};
    ll_spawn_opts so = {.loop = c.loop};
    ll_future *f = ll_spawn_ex(t_cancelled_waiter, &x, &so);
    ll_future *later = ll_loop_call_later(c.loop, 0.01, cancel_cb, f);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_ECANCELED);
    assert_int_equal(x.rc, LL_ECANCELED);
    ll_pool_stats st = stats(p);
    assert_int_equal(st.waiting, 0);  /* left the queue at once */
    assert_int_equal(st.connecting, 1); /* the connect made for it goes on, detached */
    ll_future *s = ll_sleep_future(c.loop, 0.1);
    ll_loop_run_until(c.loop, s);
    ll_future_free(s);
    st = stats(p);
    assert_int_equal(st.idle, 1); /* and its connection stays in the pool */
    assert_int_equal(st.in_use, 0);
    assert_int_equal(env.connects_cancelled, 0);
    ll_future_free(later);
    ll_future_free(f);
    close_and_drain(&c, p);
    assert_int_equal(env.live, 0);
    lt_teardown(&c);
}

/* A caller that frees its acquire future without awaiting is dropped when its turn comes: the
 * connection goes to the next one, not to nobody. */
static int t_abandoned(void *arg) {
    tctx *t = arg;
    int rc;
    fake_conn *a = get(t->pool, "k", &rc);
    ll_future *gone = ll_pool_acquire(t->pool, "k");
    ll_future *next = ll_pool_acquire(t->pool, "k");
    assert_int_equal(stats(t->pool).waiting, 2);
    ll_future_free(gone);
    ll_pool_release(t->pool, a, LL_POOL_IDLE);
    assert_int_equal(ll_await(next), 0);
    assert_ptr_equal(ll_future_value(next), a);
    ll_pool_release(t->pool, a, LL_POOL_IDLE);
    ll_future_free(next);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.acquired, 2);
    return 0;
}

static void test_abandoned_waiter(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop, .max_per_key = 1};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_abandoned, &t), 0);
    close_and_drain(&c, p);
    lt_teardown(&c);
}

/* ---- keys and the total limit ---- */

static int t_total_limit(void *arg) {
    tctx *t = arg;
    int rc;
    fake_conn *a = get(t->pool, "a", &rc);
    fake_conn *b = get(t->pool, "b", &rc);
    ll_pool_release(t->pool, a, LL_POOL_IDLE);
    /* total is 2: a third key evicts a's idle connection rather than wait */
    fake_conn *c = get(t->pool, "c", &rc);
    assert_non_null(c);
    assert_int_equal(t->env->closed, 1);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.open, 2);
    /* now both are lent: a fourth waits until one comes back, whatever its key */
    ll_future *f = ll_pool_acquire(t->pool, "d");
    ll_sleep(0.02);
    assert_false(ll_future_done(f));
    assert_int_equal(stats(t->pool).waiting, 1);
    ll_pool_release(t->pool, b, LL_POOL_IDLE);
    assert_int_equal(ll_await(f), 0);
    fake_conn *d = ll_future_value(f);
    ll_future_free(f);
    assert_int_equal(t->env->closed, 2); /* b was evicted for d */
    ll_pool_release(t->pool, c, LL_POOL_IDLE);
    ll_pool_release(t->pool, d, LL_POOL_IDLE);
    assert_true(stats(t->pool).open <= 2);
    return 0;
}

static void test_total_limit_and_eviction(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop, .max_per_key = 2, .max_total = 2};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_total_limit, &t), 0);
    close_and_drain(&c, p);
    assert_int_equal(env.live, 0);
    lt_teardown(&c);
}

static int t_max_waiters(void *arg) {
    tctx *t = arg;
    int rc;
    fake_conn *a = get(t->pool, "k", &rc);
    ll_future *w1 = ll_pool_acquire(t->pool, "k");
    ll_future *w2 = ll_pool_acquire(t->pool, "k");
    assert_int_equal(ll_future_code(w2), LL_EFULL);
    ll_pool_release(t->pool, a, LL_POOL_IDLE);
    assert_int_equal(ll_await(w1), 0);
    ll_pool_release(t->pool, ll_future_value(w1), LL_POOL_IDLE);
    ll_future_free(w1);
    ll_future_free(w2);
    return 0;
}

static void test_max_waiters(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop, .max_per_key = 1, .max_waiters = 1};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    tctx t = {p, &env};
    assert_int_equal(lt_run_task(c.loop, t_max_waiters, &t), 0);
    close_and_drain(&c, p);
    lt_teardown(&c);
}

/* ---- close ---- */

typedef struct close_ctx {
    ll_pool *pool;
    fake_env *env;
    fake_conn *lent;
    int waiter_rc;
    char msg[256];
} close_ctx;

static int t_close_waiter(void *arg) {
    close_ctx *x = arg;
    ll_future *f = ll_pool_acquire(x->pool, "k");
    x->waiter_rc = ll_await(f);
    snprintf(x->msg, sizeof x->msg, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return 0;
}

static void test_close(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.name = "pg", .loop = c.loop, .max_per_key = 2};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    /* one lent, one idle, one waiter on another full key, one connect in flight */
    ll_future *f1 = ll_pool_acquire(p, "k");
    ll_future *f2 = ll_pool_acquire(p, "k");
    assert_int_equal(ll_loop_run_until(c.loop, f1), 0);
    assert_int_equal(ll_loop_run_until(c.loop, f2), 0);
    fake_conn *lent = ll_future_value(f1);
    ll_pool_release(p, ll_future_value(f2), LL_POOL_IDLE);
    ll_future_free(f1);
    ll_future_free(f2);
    close_ctx x = {.pool = p, .env = &env};
    ll_future *f3 = ll_pool_acquire(p, "k"); /* takes the idle one */
    fake_conn *second = ll_future_value(f3);
    ll_future_free(f3);
    ll_spawn_opts so = {.loop = c.loop};
    ll_future *w = ll_spawn_ex(t_close_waiter, &x, &so);
    env.connect_delay = 10;
    ll_future *inflight = ll_pool_acquire(p, "slow");
    ll_future *y = ll_sleep_future(c.loop, 0.01);
    ll_loop_run_until(c.loop, y);
    ll_future_free(y);
    assert_int_equal(stats(p).waiting, 2);
    ll_pool_release(p, second, LL_POOL_IDLE); /* goes to the waiter of "k" */
    assert_int_equal(ll_loop_run_until(c.loop, w), 0);
    assert_int_equal(x.waiter_rc, 0);
    ll_future_free(w);
    /* now: 'lent' and 'second' lent, a connect in flight for "slow" with its waiter */
    ll_pool_free(p);
    assert_int_equal(ll_loop_run_until(c.loop, inflight), LL_EPOOLCLOSED);
    assert_non_null(strstr(ll_future_errmsg(inflight), "pg closed while waiting for a connection to slow"));
    ll_future_free(inflight);
    assert_int_equal(env.live, 2); /* lent ones stay open until released */
    ll_pool_release(p, lent, LL_POOL_IDLE);
    assert_int_equal(env.live, 1);
    ll_loop_stats ls;
    ll_loop_get_stats(c.loop, &ls);
    assert_int_equal(ls.handles, 1); /* still waiting for the last one */
    ll_pool_release(p, second, LL_POOL_IDLE);
    assert_int_equal(env.live, 0);
    /* the cancelled connect task unwinds, then the pool's memory is freed */
    y = ll_sleep_future(c.loop, 0.02);
    ll_loop_run_until(c.loop, y);
    ll_future_free(y);
    assert_int_equal(env.connects_cancelled, 1);
    ll_loop_get_stats(c.loop, &ls);
    assert_int_equal(ls.handles, 0);
    lt_teardown(&c);
}

static void test_acquire_after_close(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    fake_env env = {0};
    ll_pool_opts o = {.loop = c.loop};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    /* bad arguments fail the future, naming the function or the pool */
    ll_future *f = ll_pool_acquire(NULL, "k");
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    assert_string_equal(ll_future_errmsg(f), "ll_pool_acquire: pool is NULL");
    ll_future_free(f);
    f = ll_pool_acquire(p, NULL);
    assert_int_equal(ll_future_code(f), LL_EINVAL);
    assert_non_null(strstr(ll_future_errmsg(f), "acquire without a key"));
    ll_future_free(f);
    f = ll_pool_acquire(p, "k");
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    void *conn = ll_future_value(f);
    ll_future_free(f);
    ll_pool_free(p);
    ll_pool_free(NULL);
    f = ll_pool_acquire(p, "k");
    assert_int_equal(ll_future_code(f), LL_EPOOLCLOSED);
    ll_future_free(f);
    assert_int_equal(ll_pool_warm(p, "k"), LL_EPOOLCLOSED);
    assert_int_equal(ll_pool_discard(p, conn), 0); /* frees the pool */
    assert_int_equal(env.live, 0);
    lt_teardown(&c);
}

/* ---- out of memory ---- */

static void test_out_of_memory(void **state) {
    (void)state;
    /* Fail the n-th allocation for growing n, until a run needs no more than n: every path ends in
     * success or LL_ENOMEM (LL_ESTACK for the connect task), and each teardown proves that nothing
     * leaked. The sequence: make a pool, acquire (connect), queue a second caller, release to it. */
    bool clean_run = false;
    for (long n = 0; n < 500 && !clean_run; n++) {
        lt_ctx c;
        lt_setup(&c);
        fake_env env = {0};
        ll_pool_opts o = {.loop = c.loop, .max_per_key = 1};
        lt_fail_after(n);
        ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
        ll_future *f1 = p ? ll_pool_acquire(p, "key") : NULL;
        int rc1 = f1 ? ll_loop_run_until(c.loop, f1) : LL_ENOMEM;
        int rc2 = LL_ENOMEM;
        if (rc1 == 0) {
            ll_future *f2 = ll_pool_acquire(p, "key");
            ll_pool_release(p, ll_future_value(f1), LL_POOL_IDLE);
            rc2 = f2 ? ll_loop_run_until(c.loop, f2) : LL_ENOMEM;
            if (rc2 == 0) {
                assert_ptr_equal(ll_future_value(f2), ll_future_value(f1));
                ll_pool_release(p, ll_future_value(f2), LL_POOL_IDLE);
            }
            ll_future_free(f2);
        }
        clean_run = lt_alloc_count() <= n;
        lt_fail_reset();
        assert_true(rc1 == 0 || rc1 == LL_ENOMEM || rc1 == LL_ESTACK);
        assert_true(rc2 == 0 || rc2 == LL_ENOMEM);
        if (clean_run) assert_int_equal(rc2, 0);
        ll_future_free(f1);
        if (p) close_and_drain(&c, p);
        assert_int_equal(env.live, 0);
        lt_teardown(&c);
    }
    assert_true(clean_run);
}

/* ---- real TCP connections: streams through the pool ---- */

typedef struct tcp_env {
    uint16_t port;
    int mode;      /* server: 0 answer one line then close; 1 answer every line with two lines */
    int served;
} tcp_env;

static ll_future *tcp_connect(void *arg, const char *key) {
    (void)key;
    tcp_env *e = arg;
    return ll_stream_connect("127.0.0.1", e->port, NULL);
}

static bool tcp_alive(void *arg, void *conn) {
    (void)arg;
    return ll_stream_alive(conn);
}

static void tcp_close(void *arg, void *conn) {
    (void)arg;
    ll_stream_close(conn);
}

static const ll_pool_vtable tcp_vt = {tcp_connect, tcp_alive, tcp_close, NULL};

static int line_server(ll_stream *s, void *arg) {
    tcp_env *e = arg;
    char line[256];
    for (;;) {
        ll_future *r = ll_stream_read_until(s, "\n", 1, line, sizeof line);
        int rc = ll_await(r);
        ll_future_free(r);
        if (rc) return rc == LL_EOF ? 0 : rc;
        e->served++;
        const char *reply = e->mode == 0 ? "pong\n" : "a\nb\n";
        ll_future *w = ll_stream_write(s, reply, strlen(reply));
        rc = ll_await(w);
        ll_future_free(w);
        if (rc) return rc;
        if (e->mode == 0) return 0; /* the server closes the connection after one answer */
    }
}

/* Inside a task: send one line, read one line back. */
static int ask(ll_stream *s, char *out, size_t n) {
    ll_future *w = ll_stream_write(s, "q\n", 2);
    int rc = ll_await(w);
    ll_future_free(w);
    if (rc) return rc;
    ll_future *r = ll_stream_read_until(s, "\n", 1, out, n - 1);
    rc = ll_await(r);
    size_t got = rc == 0 ? (uintptr_t)ll_future_value(r) : 0;
    ll_future_free(r);
    out[got] = 0;
    return rc;
}

typedef struct tcp_ctx {
    ll_pool *pool;
    tcp_env *env;
    ll_server *srv;
} tcp_ctx;

static int t_server_closed_idle(void *arg) {
    tcp_ctx *t = arg;
    const char *key = "tcp://127.0.0.1 tls=off";
    int rc;
    ll_stream *s1 = (ll_stream *)get(t->pool, key, &rc);
    assert_int_equal(rc, 0);
    char reply[64];
    assert_int_equal(ask(s1, reply, sizeof reply), 0);
    assert_string_equal(reply, "pong\n");
    assert_int_equal(ll_pool_release(t->pool, s1, LL_POOL_IDLE), 0);
    /* the server closes its end while the connection sits idle in the pool */
    ll_sleep(0.05);
    assert_int_equal(stats(t->pool).idle, 1);
    ll_stream *s2 = (ll_stream *)get(t->pool, key, &rc);
    assert_int_equal(rc, 0);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.discarded, 1); /* the dead one was noticed on take and closed */
    assert_int_equal(st.created, 2);
    assert_false(ll_pool_conn_reused(t->pool, s2));
    assert_int_equal(ask(s2, reply, sizeof reply), 0); /* the request goes out on a live one */
    assert_string_equal(reply, "pong\n");
    ll_pool_release(t->pool, s2, LL_POOL_IDLE);
    assert_int_equal(ll_server_accepted(t->srv), 2);
    return 0;
}

static int t_mid_read(void *arg) {
    tcp_ctx *t = arg;
    const char *key = "tcp://127.0.0.1 tls=off";
    int rc;
    ll_stream *s1 = (ll_stream *)get(t->pool, key, &rc);
    char reply[64];
    assert_int_equal(ask(s1, reply, sizeof reply), 0);
    assert_string_equal(reply, "a\n");
    /* "b\n" is still to be read: the connection is not idle, so it is released as broken */
    assert_int_equal(ll_pool_release(t->pool, s1, LL_POOL_BROKEN), 0);
    ll_stream *s2 = (ll_stream *)get(t->pool, key, &rc);
    assert_int_equal(rc, 0);
    assert_false(ll_pool_conn_reused(t->pool, s2));
    assert_int_equal(ask(s2, reply, sizeof reply), 0);
    assert_string_equal(reply, "a\n"); /* its own reply, never the previous caller's "b" */
    ll_pool_release(t->pool, s2, LL_POOL_BROKEN);
    ll_pool_stats st = stats(t->pool);
    assert_int_equal(st.created, 2);
    assert_int_equal(st.discarded, 2);
    assert_int_equal(st.reused, 0);
    assert_int_equal(ll_server_accepted(t->srv), 2);
    return 0;
}

static void run_tcp_test(int mode, ll_task_fn fn) {
    lt_ctx c;
    lt_setup(&c);
    tcp_env env = {.mode = mode};
    ll_future *f = ll_server_open("127.0.0.1", 0, line_server, &env, NULL);
    assert_int_equal(ll_future_code(f), 0);
    ll_server *srv = ll_future_take(f);
    ll_future_free(f);
    env.port = ll_server_port(srv);
    ll_pool_opts o = {.name = "tcp", .loop = c.loop};
    ll_pool *p = ll_pool_new(&tcp_vt, &env, &o);
    tcp_ctx t = {p, &env, srv};
    assert_int_equal(lt_run_task(c.loop, fn, &t), 0);
    close_and_drain(&c, p);
    f = ll_server_close(srv, 0);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f);
    lt_teardown(&c);
}

static void test_tcp_server_closed_idle_not_handed_out(void **state) {
    (void)state;
    run_tcp_test(0, t_server_closed_idle);
}

static void test_tcp_released_mid_read_is_closed(void **state) {
    (void)state;
    run_tcp_test(1, t_mid_read);
}

/* The loop closes a pool the application forgot, so no watcher outlives it. */
static void test_loop_free_closes_pool(void **state) {
    (void)state;
    int fds = lt_count_fds();
    ll_loop *loop = ll_loop_new();
    fake_env env = {0};
    ll_pool_opts o = {.loop = loop};
    ll_pool *p = ll_pool_new(&fake_vt, &env, &o);
    ll_future *f = ll_pool_acquire(p, "k");
    assert_int_equal(ll_loop_run_until(loop, f), 0);
    ll_pool_release(p, ll_future_value(f), LL_POOL_IDLE);
    ll_future_free(f);
    assert_int_equal(env.live, 1);
    assert_int_equal(ll_loop_free(loop), 0);
    assert_int_equal(env.live, 0);
    assert_int_equal(lt_count_fds(), fds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_and_counters),
        cmocka_unit_test(test_thousand_waiters_fifo),
        cmocka_unit_test(test_waiter_deadlines),
        cmocka_unit_test(test_release_states),
        cmocka_unit_test(test_reset_without_vtable_closes),
        cmocka_unit_test(test_liveness_on_take),
        cmocka_unit_test(test_min_size_and_idle_reaping),
        cmocka_unit_test(test_idle_reaping),
        cmocka_unit_test(test_lifetime_reaping),
        cmocka_unit_test(test_connect_failure_and_timeout),
        cmocka_unit_test(test_cancelled_waiter),
        cmocka_unit_test(test_abandoned_waiter),
        cmocka_unit_test(test_total_limit_and_eviction),
        cmocka_unit_test(test_max_waiters),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_acquire_after_close),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_tcp_server_closed_idle_not_handed_out),
        cmocka_unit_test(test_tcp_released_mid_read_is_closed),
        cmocka_unit_test(test_loop_free_closes_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
