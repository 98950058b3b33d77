/*
 * test_loops.c — ll_loop_group (libloop/loops.h): N loops on N threads, each running its own main
 * task on its own thread and loop; work handed between loops with ll_loop_call_soon_threadsafe and
 * ll_loop_group_spawn; main codes reported by join; cancel; loops staying valid targets after their
 * main finished; bad arguments; join from a member thread refused; descriptors back after join.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "harness/harness.h"

#define N 4

/* Checks on the group's threads: a cmocka assert there would longjmp across threads and task
 * stacks, so the first failure is recorded and the test thread asserts there was none. */
static char thread_failure[256];
static atomic_flag failed_once = ATOMIC_FLAG_INIT;
#define TCHECK(c)                                                                                    \
    do {                                                                                             \
        if (!(c) && !atomic_flag_test_and_set(&failed_once))                                         \
            snprintf(thread_failure, sizeof thread_failure, "%s:%d: %s", __FILE__, __LINE__, #c);    \
    } while (0)
#define ASSERT_NO_THREAD_FAILURE() assert_string_equal(thread_failure, "")

typedef struct shared {
    ll_loop_group *g;
    pthread_t threads[N];
    ll_loop *loops[N];
    atomic_int ran;
    atomic_int pings;   /* posts received from the other loops */
    atomic_int spawned; /* tasks started by ll_loop_group_spawn */
    int join_from_member;
} shared;

/* Each main records its thread and loop, sleeps (so the loop really runs timers), does some awaits,
 * and returns a code that depends on its index. */
static int main_basic(size_t i, void *arg) {
    shared *s = arg;
    s->threads[i] = pthread_self();
    s->loops[i] = ll_loop_current();
    TCHECK(ll_sleep(0.01) == 0);
    for (int k = 0; k < 100; k++) TCHECK(ll_yield() == 0);
    atomic_fetch_add(&s->ran, 1);
    return i == 2 ? LL_EPROTO : 0;
}

static void test_group_runs_each_main_on_its_thread(void **state) {
    (void)state;
    int fds = lt_count_fds();
    shared s = {0};
    ll_loop_group *g = ll_loop_group_new(N, main_basic, &s, NULL);
    assert_non_null(g);
    assert_int_equal(ll_loop_group_size(g), N);
    assert_null(ll_loop_group_loop(g, N));
    int codes[N];
    assert_int_equal(ll_loop_group_join(g, codes), LL_EPROTO);
    assert_int_equal(atomic_load(&s.ran), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(codes[i], i == 2 ? LL_EPROTO : 0);
        for (int j = 0; j < i; j++) {
            assert_false(pthread_equal(s.threads[i], s.threads[j]));
            assert_ptr_not_equal(s.loops[i], s.loops[j]);
        }
        assert_false(pthread_equal(s.threads[i], pthread_self()));
    }
    assert_int_equal(ll_loop_group_join(g, NULL), LL_EALREADY);
    ll_loop_group_free(g);
    ll_loop_group_free(NULL);
    assert_int_equal(lt_count_fds(), fds);
    ASSERT_NO_THREAD_FAILURE();
}

/* ---- handing work between loops ---- */

typedef struct ping {
    shared *s;
    size_t to;
} ping;

static void on_ping(void *arg) {
    ping *p = arg;
    /* runs on the receiving loop's thread */
    TCHECK(ll_loop_current() == ll_loop_group_loop(p->s->g, p->to));
    atomic_fetch_add(&p->s->pings, 1);
    free(p);
}

static int spawned_task(void *arg) {
    shared *s = arg;
    TCHECK(ll_sleep(0.001) == 0);
    atomic_fetch_add(&s->spawned, 1);
    return 0;
}

static int main_post(size_t i, void *arg) {
    shared *s = arg;
    while (!__atomic_load_n(&s->g, __ATOMIC_ACQUIRE)) ll_sleep(0.001); /* set by the test thread right after ll_loop_group_new */
    for (size_t to = 0; to < N; to++) {
        if (to == i) continue;
        for (int k = 0; k < 50; k++) {
            ping *p = malloc(sizeof *p);
            *p = (ping){s, to};
            TCHECK(ll_loop_call_soon_threadsafe(ll_loop_group_loop(s->g, to), on_ping, p) == 0);
        }
        TCHECK(ll_loop_group_spawn(s->g, to, spawned_task, s) == 0);
    }
    /* The main returns at once: posts and spawns still arrive, as the loops live until join. */
    return 0;
}

static void test_group_cross_loop_posts(void **state) {
    (void)state;
    int fds = lt_count_fds();
    shared s = {0};
    ll_loop_group *g = ll_loop_group_new(N, main_post, &s, NULL);
    assert_non_null(g);
    __atomic_store_n(&s.g, g, __ATOMIC_RELEASE);
    assert_int_equal(ll_loop_group_spawn(g, 0, spawned_task, &s), 0); /* from a foreign thread */
    assert_int_equal(ll_loop_group_spawn(g, N, spawned_task, &s), LL_EINVAL);
    assert_int_equal(ll_loop_group_spawn(g, 0, NULL, &s), LL_EINVAL);
    assert_int_equal(ll_loop_group_join(g, NULL), 0);
    assert_int_equal(atomic_load(&s.pings), N * (N - 1) * 50);
    assert_int_equal(atomic_load(&s.spawned), N * (N - 1) + 1);
    ll_loop_group_free(g);
    assert_int_equal(lt_count_fds(), fds);
    ASSERT_NO_THREAD_FAILURE();
}

/* ---- cancel: mains that would sleep for a minute stop at once ---- */

static int main_forever(size_t i, void *arg) {
    (void)i;
    (void)arg;
    return ll_sleep(60);
}

static void test_group_cancel(void **state) {
    (void)state;
    ll_loop_group_opts o = {.stack_size = 64 * 1024, .pin = true};
    ll_loop_group *g = ll_loop_group_new(2, main_forever, NULL, &o);
    assert_non_null(g);
    ll_time t0 = ll_now();
    ll_loop_group_cancel(g);
    int codes[2];
    assert_int_equal(ll_loop_group_join(g, codes), LL_ECANCELED);
    assert_int_equal(codes[0], LL_ECANCELED);
    assert_int_equal(codes[1], LL_ECANCELED);
    assert_true(ll_now() - t0 < 10.0); /* generous: the machine is loaded; uncancelled it is 60 s */
    ll_loop_group_free(g);
}

/* ---- join and free from one of the group's own threads are refused ---- */

static int main_self_join(size_t i, void *arg) {
    shared *s = arg;
    while (!__atomic_load_n(&s->g, __ATOMIC_ACQUIRE)) ll_sleep(0.001);
    if (i == 0) {
        s->join_from_member = ll_loop_group_join(s->g, NULL);
        ll_loop_group_free(s->g); /* a no-op from inside: must not deadlock or free */
    }
    return 0;
}

static void test_group_join_from_member(void **state) {
    (void)state;
    shared s = {0};
    ll_loop_group *g = ll_loop_group_new(2, main_self_join, &s, NULL);
    assert_non_null(g);
    __atomic_store_n(&s.g, g, __ATOMIC_RELEASE);
    assert_int_equal(ll_loop_group_join(g, NULL), 0);
    assert_int_equal(s.join_from_member, LL_EBUSY);
    ASSERT_NO_THREAD_FAILURE();
    ll_loop_group_free(g);
}

static void test_group_bad_args(void **state) {
    (void)state;
    assert_null(ll_loop_group_new(0, main_basic, NULL, NULL));
    assert_null(ll_loop_group_new(2, NULL, NULL, NULL));
    assert_int_equal(ll_loop_group_size(NULL), 0);
    assert_null(ll_loop_group_loop(NULL, 0));
    assert_int_equal(ll_loop_group_join(NULL, NULL), LL_EINVAL);
    assert_int_equal(ll_loop_group_spawn(NULL, 0, spawned_task, NULL), LL_EINVAL);
    ll_loop_group_cancel(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_runs_each_main_on_its_thread),
        cmocka_unit_test(test_group_cross_loop_posts),
        cmocka_unit_test(test_group_cancel),
        cmocka_unit_test(test_group_join_from_member),
        cmocka_unit_test(test_group_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
