/*
 * test_shutdown.c — ll_loop_shutdown and ll_loop_free with work in flight: tasks mid-await end
 * cancelled; cleanup that outlasts the deadline is cut off and its tasks destroyed; no wait is
 * ever infinite.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "harness/harness.h"

typedef struct obs {
    int await_rc;     /* what the interrupted await returned */
    int cleanup_rc;   /* what the shielded cleanup await returned */
    bool cleaned;     /* the task got past its cleanup */
    bool hand_over;   /* stubborn: drop the gate's owner reference once it is awaited */
    ll_future *gate;  /* a future the test owns, for tasks that must hold nothing themselves */
} obs;

static int sleeps(void *arg) {
    obs *o = arg;
    o->await_rc = ll_sleep(30);
    o->cleaned = true;
    return o->await_rc;
}

static int awaits_gate(void *arg) {
    obs *o = arg;
    o->await_rc = ll_await(o->gate);
    o->cleaned = true;
    return o->await_rc;
}

static int child_sleeps(void *arg) {
    (void)arg;
    return ll_sleep(30);
}

static int awaits_child(void *arg) {
    obs *o = arg;
    ll_future *ch = ll_spawn(child_sleeps, NULL);
    o->await_rc = ll_await(ch);
    ll_future_free(ch);
    o->cleaned = true;
    return o->await_rc;
}

static int nap_job(void *arg, void **value) {
    (void)value;
    usleep((useconds_t)(uintptr_t)arg);
    return 0;
}

static int awaits_job(void *arg) {
    obs *o = arg;
    ll_future *j = ll_executor_run(nap_job, (void *)(uintptr_t)1000000, NULL, NULL, NULL);
    o->await_rc = ll_await(j);
    ll_future_free(j);
    o->cleaned = true;
    return o->await_rc;
}

/* Cleanup that awaits, in a shielded scope with its own short deadline: it completes. */
static int cleans_up_briefly(void *arg) {
    obs *o = arg;
    o->await_rc = ll_sleep(30);
    ll_scope s;
    ll_scope_enter_shielded(&s, ll_deadline_in(2));
    o->cleanup_rc = ll_sleep(0.02);
    ll_scope_exit(&s);
    o->cleaned = true;
    return o->await_rc;
}

static void test_shutdown_mid_await(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    enum { N = 6 };
    obs o[N + 1];
    memset(o, 0, sizeof o);
    for (int i = 0; i <= N; i++) o[i].await_rc = o[i].cleanup_rc = 1;
    o[1].gate = ll_future_new(c.loop);
    ll_task_fn fns[N] = {sleeps, awaits_gate, awaits_child, awaits_job, cleans_up_briefly, sleeps};
    ll_future *t[N + 1];
    ll_spawn_opts so = {.loop = c.loop};
    for (int i = 0; i < N; i++) t[i] = ll_spawn_ex(fns[i], &o[i], &so);
    ll_future *wait = ll_sleep_future(c.loop, 0.02);
    assert_int_equal(ll_loop_run_until(c.loop, wait), 0); /* all of them are awaiting now */
    ll_future_free(wait);
    t[N] = ll_spawn_ex(sleeps, &o[N], &so); /* and one that has not started */
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.tasks, N + 2); /* with awaits_child's child */

    /* an unrelated timer that is not a task: shutdown neither cancels nor waits for it */
    ll_future *idle = ll_sleep_future(c.loop, 30);

    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_shutdown(c.loop, ll_deadline_in(5)), 0);
    double took = ll_now() - t0;
    print_message("shutdown took %.3f s\n", took);
    /* Nothing waits for the 30 s timers, the 1 s job or the 5 s deadline (tolerance 0.5 s). */
    assert_true(took < 0.5);
    assert_false(ll_future_done(idle));
    ll_future_cancel(idle);
    ll_future_free(idle);
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.tasks, 0);
    for (int i = 0; i <= N; i++) {
        assert_int_equal(ll_future_code(t[i]), LL_ECANCELED);
        if (i < N) {
            assert_int_equal(o[i].await_rc, LL_ECANCELED);
            assert_true(o[i].cleaned);
        } else {
            assert_false(o[i].cleaned); /* cancelled before it ever ran */
        }
        ll_future_free(t[i]);
    }
    assert_int_equal(o[4].cleanup_rc, 0); /* shielded cleanup still worked */
    assert_int_equal(ll_future_get_state(o[1].gate), LL_FUTURE_CANCELLED);
    ll_future_free(o[1].gate);
    /* the job the cancelled task awaited cannot be interrupted: its result comes and is dropped */
    assert_int_equal(ll_loop_run(c.loop), 0);
    lt_teardown(&c);
}

/* Cleanup that never finishes: shielded, with a deadline far beyond the shutdown's. It awaits a
 * future the test owns, so the destroyed task holds nothing of its own. */
static void drop_ref(void *f) {
    ll_future_free(f);
}

static int stubborn(void *arg) {
    obs *o = arg;
    o->await_rc = ll_sleep(30);
    ll_scope s;
    ll_scope_enter_shielded(&s, ll_deadline_in(30));
    /* Hand-over: once this task awaits the gate, the owner's reference is dropped, so only the
     * await's own reference is left (the task still holds nothing of its own). */
    if (o->hand_over) ll_loop_call_soon(NULL, drop_ref, o->gate);
    o->cleanup_rc = ll_await(o->gate); /* never returns: the task is destroyed */
    ll_scope_exit(&s);
    o->cleaned = true;
    return o->await_rc;
}

static void test_shutdown_deadline_destroys(void **state) {
    (void)state;
    lt_track_begin();
    lt_ctx c;
    lt_setup(&c);
    lt_warnings w;
    lt_collect_warnings(c.loop, &w);
    ll_loop_set_debug(c.loop, true, 1e6);
    obs o[4];
    memset(o, 0, sizeof o);
    ll_future *gate = ll_future_new(c.loop);
    ll_future *t[4];
    ll_spawn_opts so = {.loop = c.loop};
    for (int i = 0; i < 4; i++) {
        o[i].await_rc = o[i].cleanup_rc = 1;
        o[i].gate = gate;
        so.name = i < 2 ? "stubborn" : "quick";
        t[i] = ll_spawn_ex(i < 2 ? stubborn : cleans_up_briefly, &o[i], &so);
    }
    ll_future *wait = ll_sleep_future(c.loop, 0.02);
    assert_int_equal(ll_loop_run_until(c.loop, wait), 0);
    ll_future_free(wait);
    /* Time passes outside the loop: libev's cached time goes stale, as on a busy machine. */
    usleep(150 * 1000);

    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_shutdown(c.loop, ll_deadline_in(0.2)), LL_ETIMEDOUT);
    double took = ll_now() - t0;
    print_message("shutdown took %.3f s\n%s", took, w.text);
    assert_true(took >= 0.19 && took < 0.2 + 1.0); /* the deadline, plus 1 s tolerance */
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.tasks, 0);
    assert_int_equal(st.stacks_guarded + st.stacks_unguarded, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(o[i].await_rc, LL_ECANCELED);
        assert_int_equal(ll_future_code(t[i]), LL_ECANCELED);
        if (i < 2) {
            assert_false(o[i].cleaned); /* destroyed in the middle of its cleanup */
        } else {
            assert_true(o[i].cleaned);
            assert_int_equal(o[i].cleanup_rc, 0);
        }
        ll_future_free(t[i]);
    }
    assert_non_null(strstr(w.text, "'stubborn' did not finish cleaning up before the deadline"));
    assert_null(strstr(w.text, "'quick'"));
    /* the shield held off cancellation, not destruction: destroying a task cancels what it was
     * awaiting, so its producer can forget the waiter */
    assert_int_equal(ll_future_get_state(gate), LL_FUTURE_CANCELLED);
    ll_future_free(gate);
    lt_teardown(&c);
    assert_int_equal(lt_track_end(), 0); /* the destroyed tasks held nothing: no leak at all */
}

/* The loop stays usable after a shutdown. */
static int returns_7(void *arg) {
    (void)arg;
    ll_task_return((void *)(uintptr_t)7, NULL);
    return ll_sleep(0.001);
}

static void test_loop_usable_after_shutdown(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    obs o = {0};
    ll_spawn_opts so = {.loop = c.loop};
    ll_future *t = ll_spawn_ex(sleeps, &o, &so);
    assert_int_equal(ll_loop_shutdown(c.loop, ll_deadline_in(1)), 0);
    assert_int_equal(ll_future_code(t), LL_ECANCELED);
    ll_future_free(t);
    assert_int_equal(ll_loop_shutdown(c.loop, ll_deadline_in(1)), 0); /* nothing to do */
    t = ll_spawn_ex(returns_7, NULL, &so);
    assert_int_equal(ll_loop_run_until(c.loop, t), 0);
    assert_int_equal((uintptr_t)ll_future_value(t), 7);
    ll_future_free(t);
    lt_teardown(&c);
}

/* ll_loop_free with tasks still awaiting (their futures already dropped): they are cancelled and
 * cleaned up quickly, everything is released. A task stuck in its cleanup is destroyed after the
 * free's 5-second deadline: a bounded wait, never an infinite one. */
static void test_free_with_tasks(void **state) {
    (void)state;
    int fds = lt_count_fds();
    lt_track_begin();
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    obs o[3];
    memset(o, 0, sizeof o);
    ll_spawn_opts so = {.loop = loop};
    ll_future_free(ll_spawn_ex(sleeps, &o[0], &so));
    ll_future_free(ll_spawn_ex(awaits_child, &o[1], &so));
    ll_future_free(ll_spawn_ex(cleans_up_briefly, &o[2], &so));
    ll_future *wait = ll_sleep_future(loop, 0.01);
    assert_int_equal(ll_loop_run_until(loop, wait), 0);
    ll_future_free(wait);
    ll_time t0 = ll_now();
    assert_int_equal(ll_loop_free(loop), 0);
    assert_true(ll_now() - t0 < 1.0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o[i].await_rc, LL_ECANCELED);
        assert_true(o[i].cleaned);
    }
    assert_int_equal(lt_track_end(), 0);
    assert_int_equal(lt_count_fds(), fds);

    lt_track_begin();
    loop = ll_loop_new();
    obs s = {0};
    s.gate = ll_future_new(loop);
    so.loop = loop;
    ll_future_free(ll_spawn_ex(stubborn, &s, &so));
    wait = ll_sleep_future(loop, 0.01);
    assert_int_equal(ll_loop_run_until(loop, wait), 0);
    ll_future_free(wait);
    s.hand_over = true;
    t0 = ll_now();
    assert_int_equal(ll_loop_free(loop), LL_ETIMEDOUT);
    double took = ll_now() - t0;
    assert_true(took >= 4.9 && took < 5.0 + 1.5);
    assert_false(s.cleaned);
    /* destroying the task dropped its await's reference, the last one: the gate is gone too */
    assert_int_equal(lt_track_end(), 0);
    assert_int_equal(lt_count_fds(), fds);
}

/* Shutdown from inside a task is refused. */
static int tries_shutdown(void *arg) {
    return ll_loop_shutdown(arg, ll_deadline_in(1)) == LL_EBUSY ? 0 : LL_EINVAL;
}

static void test_shutdown_misuse(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_task(c.loop, tries_shutdown, c.loop), 0);
    assert_int_equal(ll_loop_shutdown(NULL, 0), LL_EINVAL);
    assert_int_equal(ll_loop_shutdown(c.loop, 0), 0); /* empty loop, past deadline: fine */
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shutdown_mid_await),
        cmocka_unit_test(test_shutdown_deadline_destroys),
        cmocka_unit_test(test_loop_usable_after_shutdown),
        cmocka_unit_test(test_free_with_tasks),
        cmocka_unit_test(test_shutdown_misuse),
    };
    return cmocka_run_group_tests_name("shutdown", tests, NULL, NULL);
}
