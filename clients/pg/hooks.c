/*
 * hooks.c — the pool's hooks: a user function run on each new connection before it is first lent
 * (SETs, type lookups) and on each connection given back before the pool's reset.
 *
 * Design notes:
 * - A hook returns a future (usually a query's: ll_pg_exec(c, "SET ...")); the pool waits for it.
 *   A hook that fails (or returns NULL) discards the connection: a connection whose session setup
 *   did not happen must never be lent, and one whose release hook failed is not trusted to reset.
 * - Chained with callbacks (no task): the outer future the pool waits on settles with the
 *   connection (connect) or with the reset's outcome (release). Cancelling the outer future (the
 *   pool's connect or reset timeout, the pool closing) cancels the step running.
 */
#include "pg_internal.h"

typedef struct hook_job {
    ll_future *outer;
    ll_future *cur;          /* the step running */
    ll_future *conn_f;       /* connect: the connect future (it owns the connection) */
    ll_pg_conn *c;
    ll_pg_pool_hook hook;
    void *arg;
    ll_future *(*then)(void *then_arg, ll_pg_conn *c); /* release: the reset after the hook */
    void *then_arg;
    ll_pg_pool_hook hook2;   /* release: on_connect again after the reset (its RESET ALL undid
                              * the session's SETs), or NULL */
    int step;                /* 0: connect / hook; 1: hook / reset; 2: on_connect again */
    bool lent;               /* connect: the connection went to the pool */
} hook_job;

static void job_done(ll_future *f, void *arg);

static void finish(hook_job *j) {
    /* a connection made but not lent (its hook failed, or the pool gave up): a pooled connection
     * is freed by its pool's rule, not by the connect future's destructor (which only ends it) */
    if (j->conn_f && !j->lent && ll_future_done(j->conn_f) && ll_future_code(j->conn_f) == 0) {
        ll_pg_conn *c = ll_future_take(j->conn_f);
        if (c) ll__pg_conn_free(c);
    }
    ll_future_free(j->conn_f);
    ll_future_free(j->outer);
    ll_free(j);
}

static bool wait_for(hook_job *j, ll_future *f) {
    j->cur = f;
    if (f && ll_future_add_done(f, job_done, j) == 0) return true;
    if (f) {
        ll_future_cancel(f);
        ll_future_free(f);
    }
    j->cur = NULL;
    return false;
}

static void job_done(ll_future *f, void *arg) {
    hook_job *j = arg;
    j->cur = NULL;
    int rc = ll_future_code(f);
    if (rc != 0 || ll_future_done(j->outer)) {
        if (rc == LL_ECANCELED) ll_future_set_cancelled(j->outer);
        else if (rc) ll__pg_fail_from(j->outer, f);
        else ll_future_set_cancelled(j->outer); /* outer settled (cancelled) meanwhile */
        if (f != j->conn_f) ll_future_free(f);
        finish(j);
        return;
    }
    if (j->conn_f) {                       /* connect hook */
        if (j->step == 0) {                /* connected: run the hook */
            j->step = 1;
            j->c = ll_future_value(f);
            ll_future *h = j->hook(j->c, j->arg);
            if (!wait_for(j, h)) {
                ll_future_fail(j->outer, LL_EINVAL, "pool postgres: the on_connect hook "
                                                    "returned no future");
                finish(j);
            }
            return;
        }
        ll_future_free(f);                 /* the hook is done: lend the connection */
        ll_pg_conn *c = ll_future_take(j->conn_f);
        j->lent = true;
        ll_future_resolve(j->outer, c, (ll_value_free)ll_pg_close);
        finish(j);
        return;
    }
    /* release: the hook (if any) is done, now the reset, then on_connect again (if any) */
    if (j->step == 0) {
        j->step = 1;
        ll_future_free(f);
        if (!wait_for(j, j->then(j->then_arg, j->c))) {
            ll_future_fail(j->outer, LL_ENOMEM, "pool postgres: out of memory");
            finish(j);
        }
        return;
    }
    if (j->step == 1 && j->hook2) {
        j->step = 2;
        ll_future_free(f);
        if (!wait_for(j, j->hook2(j->c, j->arg))) {
            ll_future_fail(j->outer, LL_EINVAL, "pool postgres: the on_connect hook returned no "
                                                "future");
            finish(j);
        }
        return;
    }
    ll_future_resolve(j->outer, NULL, NULL);
    ll_future_free(f);
    finish(j);
}

static void job_cancel(ll_future *outer, void *arg) {
    (void)outer;
    hook_job *j = arg;
    if (j->cur) ll_future_cancel(j->cur); /* job_done settles outer */
}

static hook_job *job_new(ll_loop *loop) {
    hook_job *j = ll_calloc(1, sizeof *j);
    if (!j) return NULL;
    j->outer = ll_future_new(loop);
    if (!j->outer) {
        ll_free(j);
        return NULL;
    }
    return j;
}

ll_future *ll__pg_hook_connect(ll_loop *loop, ll_future *conn_f, ll_pg_pool_hook hook, void *arg) {
    if (!conn_f) return NULL;
    hook_job *j = job_new(loop);
    if (!j) {
        ll_future_cancel(conn_f);
        ll_future_free(conn_f);
        return NULL;
    }
    ll_future_set_label(j->outer, "pg pool connect + on_connect");
    ll_future *outer = ll_future_ref(j->outer);
    j->conn_f = conn_f;
    j->hook = hook;
    j->arg = arg;
    if (ll_future_add_done(conn_f, job_done, j) != 0) {
        ll_future_fail(outer, LL_ENOMEM, "pool postgres: out of memory");
        ll_future_cancel(conn_f);
        finish(j);
        return outer;
    }
    j->cur = conn_f;
    ll_future_on_cancel(outer, job_cancel, j);
    return outer;
}

ll_future *ll__pg_hook_release(ll_loop *loop, ll_pg_conn *c, ll_pg_pool_hook hook,
                               ll_pg_pool_hook hook2, void *arg,
                               ll_future *(*then)(void *then_arg, ll_pg_conn *c), void *then_arg) {
    hook_job *j = job_new(loop);
    if (!j) return NULL;
    ll_future_set_label(j->outer, "pg pool on_release + reset");
    ll_future *outer = ll_future_ref(j->outer);
    j->c = c;
    j->then = then;
    j->then_arg = then_arg;
    j->hook2 = hook2;
    j->arg = arg;
    if (!hook) { /* no release hook: the reset first */
        j->step = 1;
        if (!wait_for(j, then(then_arg, c))) {
            ll_future_fail(outer, LL_ENOMEM, "pool postgres: out of memory");
            finish(j);
            return outer;
        }
        ll_future_on_cancel(outer, job_cancel, j);
        return outer;
    }
    if (!wait_for(j, hook(c, arg))) {
        ll_future_fail(outer, LL_EINVAL, "pool postgres: the on_release hook returned no future");
        finish(j);
        return outer;
    }
    ll_future_on_cancel(outer, job_cancel, j);
    return outer;
}
