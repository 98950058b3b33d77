/*
 * test_loop_free.c — what ll_loop_free leaves behind, and what it must not: futures the
 * application still holds (they outlive the loop safely), posts from other threads still queued
 * (run, not leaked).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"

/* ---- futures that outlive their loop ---- */

static int value_frees, callbacks;
static void counted_free(void *p) {
    value_frees++;
    free(p);
}
static void count_cb(ll_future *f, void *arg) {
    (void)f, (void)arg;
    callbacks++;
}

static void test_future_outlives_loop(void **state) {
    (void)state;
    lt_track_begin();
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    value_frees = callbacks = 0;
    ll_future *done = ll_future_new(loop);
    assert_int_equal(ll_future_resolve(done, strdup("kept"), counted_free), 0);
    ll_future *pending = ll_future_new(loop);
    ll_future *failed = ll_future_failed(loop, LL_EPROTO, "bad greeting");
    assert_int_equal(ll_loop_free(loop), 0);
    /* read after the loop is gone: valid (ASan and valgrind check it) */
    assert_string_equal(ll_future_value(done), "kept");
    assert_int_equal(ll_future_code(failed), LL_EPROTO);
    assert_string_equal(ll_future_errmsg(failed), "bad greeting");
    assert_ptr_equal(ll_future_loop(pending), loop); /* the identity stays; the loop is unusable */
    /* settling or watching it does nothing harmful: no loop is left to run callbacks */
    assert_int_equal(ll_future_add_done(pending, count_cb, NULL), 0);
    assert_int_equal(ll_future_resolve(pending, NULL, NULL), 0);
    assert_int_equal(ll_future_cancel(done), LL_EALREADY);
    ll_future_free(done);
    assert_int_equal(value_frees, 1);
    ll_future_free(failed);
    ll_future_free(pending); /* the last one: the loop's record goes with it */
    assert_int_equal(callbacks, 0);
    assert_int_equal(lt_track_end(), 0);
}

/* ---- posts from other threads still queued at ll_loop_free ---- */

enum { POSTS = 1000 };
static int post_runs;
static void post_cb(void *arg) {
    (void)arg;
    post_runs++;
}

static void *poster(void *arg) {
    for (int i = 0; i < POSTS; i++) assert_int_equal(ll_loop_call_soon_threadsafe(arg, post_cb, NULL), 0);
    return NULL;
}

static void test_threadsafe_posts_at_free(void **state) {
    (void)state;
    lt_track_begin();
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    post_runs = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, poster, loop), 0);
    pthread_join(th, NULL); /* the loop never ran: all 1,000 are still queued */
    assert_int_equal(ll_loop_free(loop), 0);
    assert_int_equal(post_runs, POSTS); /* run, so whatever they own is released */
    assert_int_equal(lt_track_end(), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_future_outlives_loop),
        cmocka_unit_test(test_threadsafe_posts_at_free),
    };
    return cmocka_run_group_tests_name("loop_free", tests, NULL, NULL);
}
