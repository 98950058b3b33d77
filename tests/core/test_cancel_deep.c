/*
 * test_cancel_deep.c — cancellation is iterative: cancelling the head of a long chain (tasks each
 * awaiting the next, gathers nested in gathers) never overflows the canceller's stack, and the
 * whole chain ends cancelled with nothing left alive.
 */
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"

/* ---- a chain of tasks, each awaiting the next ---- */

enum { CHAIN = 10000, NEST = 10000 };

typedef struct chain {
    ll_loop *loop;
    int built;       /* tasks started so far */
    int cancelled;   /* awaits that returned LL_ECANCELED */
    ll_event *ready; /* set by the last task */
} chain;

static chain ch;

static int link_task(void *arg) {
    int depth = (int)(intptr_t)arg;
    ch.built++;
    if (depth == CHAIN - 1) {
        ll_event_set(ch.ready);
        return ll_sleep(30);
    }
    ll_spawn_opts o = {.stack_size = 32 * 1024};
    ll_future *next = ll_spawn_ex(link_task, (void *)(intptr_t)(depth + 1), &o);
    int rc = ll_await(next);
    ll_future_free(next);
    if (rc == LL_ECANCELED) ch.cancelled++;
    return rc;
}

/* Cancels from a task: a default 128 KiB stack, which one frame per link would overflow. */
static int canceller(void *arg) {
    return ll_future_cancel(arg);
}

static void test_cancel_task_chain(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    memset(&ch, 0, sizeof ch);
    ch.loop = c.loop;
    ch.ready = ll_event_new();
    ll_spawn_opts o = {.loop = c.loop, .stack_size = 32 * 1024};
    ll_future *head = ll_spawn_ex(link_task, (void *)(intptr_t)0, &o);
    while (!ll_event_is_set(ch.ready)) {
        ll_future *tick = ll_sleep_future(c.loop, 0.01);
        assert_int_equal(ll_loop_run_until(c.loop, tick), 0);
        ll_future_free(tick);
    }
    assert_int_equal(ch.built, CHAIN);
    assert_int_equal(lt_run_task(c.loop, canceller, head), 0);
    assert_int_equal(ll_loop_run_until(c.loop, head), LL_ECANCELED);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(ch.cancelled, CHAIN - 1);
    ll_future_free(head);
    ll_event_free(ch.ready);
    lt_teardown(&c);
}

/* ---- gathers nested 10,000 deep ---- */

static void test_cancel_nested_gathers(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *leaf = ll_future_new(c.loop);
    ll_future *g = ll_future_ref(leaf);
    for (int i = 0; i < NEST; i++) {
        ll_future *outer = ll_gather(&g, 1, i % 2 ? LL_GATHER_COLLECT : LL_GATHER_FAIL_FAST);
        assert_non_null(outer);
        ll_future_free(g); /* the outer gather holds it */
        g = outer;
    }
    assert_int_equal(lt_run_task(c.loop, canceller, g), 0);
    assert_int_equal(ll_future_get_state(leaf), LL_FUTURE_CANCELLED);
    assert_int_equal(ll_loop_run_until(c.loop, g), LL_ECANCELED);
    ll_future_free(g);
    ll_future_free(leaf);
    assert_int_equal(ll_loop_run(c.loop), 0);
    lt_teardown(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_task_chain),
        cmocka_unit_test(test_cancel_nested_gathers),
    };
    return cmocka_run_group_tests_name("cancel_deep", tests, NULL, NULL);
}
