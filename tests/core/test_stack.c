/*
 * test_stack.c — task stacks: sizes and accounting, reuse, and stack overflow caught and named in
 * a child process, one shape each: on guarded stacks a runaway recursion (the guard page), frames
 * of 137 KiB and 160 KiB on a 128 KiB stack with only their low bytes written (the large guard
 * region), and a frame bigger than stack and guard that awaits; on unguarded stacks a recursion
 * past the end and back (the canary, at the switch), a frame past the end that awaits (the
 * stack-pointer check at the switch) and a runaway recursion (the slab's guard region).
 *
 * Under ASan, libloop's handler reports first and hands the fault on; should ASan's own handler
 * take the fault instead, its report is accepted in place of libloop's. Under valgrind the
 * children die the same way (memcheck prints its own "process terminating" note as well).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness/harness.h"

/* ---- sizes, accounting, reuse ---- */

static int uses_stack(void *arg) {
    /* touch most of a 64 KiB stack: it must really be there */
    volatile char big[48 * 1024];
    memset((char *)big, 0x5a, sizeof big);
    int rc = ll_yield();
    *(int *)arg += big[1000] == 0x5a;
    return rc;
}

static void test_stack_sizes_and_stats(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    int ok = 0;
    ll_spawn_opts o = {.loop = c.loop, .stack_size = 64 * 1024};
    ll_future *fs[20];
    for (int i = 0; i < 20; i++) fs[i] = ll_spawn_ex(uses_stack, &ok, &o);
    ll_loop_stats st;
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.stacks_guarded + st.stacks_unguarded, 20);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(ok, 20);
    ll_loop_get_stats(c.loop, &st);
    assert_int_equal(st.stacks_guarded + st.stacks_unguarded, 0); /* returned to the pool */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(ll_future_code(fs[i]), 0);
        ll_future_free(fs[i]);
    }
    /* reuse: the same tasks again, twice, with the loop's default size set small */
    ll_loop_set_stack_size(c.loop, 1); /* rounded up to the 16 KiB minimum */
    ll_loop_set_stack_size(c.loop, 64 * 1024);
    for (int round = 0; round < 2; round++) {
        ll_spawn_opts d = {.loop = c.loop};
        for (int i = 0; i < 20; i++) fs[i] = ll_spawn_ex(uses_stack, &ok, &d);
        assert_int_equal(ll_loop_run(c.loop), 0);
        for (int i = 0; i < 20; i++) {
            assert_int_equal(ll_future_code(fs[i]), 0);
            ll_future_free(fs[i]);
        }
    }
    assert_int_equal(ok, 60);
    lt_teardown(&c);
}

/* ---- overflow: one child process per shape ---- */

typedef enum {
    RUNAWAY,      /* recursion of 256-byte frames, never switching */
    PAST_AND_BACK,/* recursion a little past the end, back up, then a switch: the canary */
    BIG_FRAME,    /* one frame of `frame` bytes, only its lowest bytes written, then return */
    BIG_AWAIT     /* one frame of `frame` bytes, nothing written, then a switch inside it */
} overflow_shape;

typedef struct overflow_cfg {
    const char *guards;   /* LIBLOOP_STACK_GUARDS for the child, or NULL */
    overflow_shape shape;
    size_t stack_size;
    size_t frame;         /* BIG_FRAME / BIG_AWAIT */
} overflow_cfg;

static uintptr_t stack_start;
static size_t stack_budget;

/* Each frame fills a 256-byte buffer and uses it after the recursive call: no tail call, every
 * frame really written. */
static int recurse(int depth, const overflow_cfg *cfg) {
    volatile char buf[256];
    memset((char *)buf, depth & 0x7f, sizeof buf);
    if (cfg->shape == PAST_AND_BACK && stack_start - (uintptr_t)buf > stack_budget + 1024)
        return buf[7]; /* 1 KiB past the end: back up, through the canary zone */
    return recurse(depth + 1, cfg) + buf[3];
}

/* A frame of cfg->frame bytes (a VLA: the size is only known at run time, as a careless
 * `char buf[BIG]` would be at compile time); only its lowest bytes are written, as a task that
 * reads a short reply into a big buffer would. Not inlined, so the frame is its own. */
__attribute__((noinline)) static int big_frame(const overflow_cfg *cfg) {
    volatile char buf[cfg->frame];
    if (cfg->shape == BIG_AWAIT) {
        ll_yield(); /* the switch checks the stack pointer */
        return buf[cfg->frame - 1];
    }
    for (int i = 0; i < 64; i++) buf[i] = (char)i;
    return buf[3];
}

static int overflows(void *arg) {
    const overflow_cfg *cfg = arg;
    volatile char here;
    stack_start = (uintptr_t)&here;
    stack_budget = cfg->stack_size;
    if (cfg->shape == BIG_FRAME || cfg->shape == BIG_AWAIT) {
        big_frame(cfg);
        return ll_yield(); /* a silent overflow would end here, and the child exit 0 */
    }
    int rc = recurse(0, cfg);
    ll_yield(); /* switching out is where the canary is checked */
    return rc;
}

static int bystander(void *arg) {
    (void)arg;
    return ll_sleep(10);
}

static int overflow_child(void *arg, int ready_fd) {
    const overflow_cfg *cfg = arg;
    (void)ready_fd;
    /* cmocka catches SIGSEGV to report a failed test; in this child the fault must end the
     * process, as it would in an application: libloop's handler chains to the default action. */
    signal(SIGSEGV, SIG_DFL);
    if (cfg->guards) setenv("LIBLOOP_STACK_GUARDS", cfg->guards, 1);
    ll_loop *loop = ll_loop_new();
    if (!loop) return 2;
    ll_loop_stats st;
    /* a bystander on the neighbouring stack above (stacks are handed out top down) */
    ll_spawn_opts b = {.loop = loop, .name = "bystander", .stack_size = cfg->stack_size};
    ll_future *by = ll_spawn_ex(bystander, NULL, &b);
    ll_spawn_opts o = {.loop = loop, .name = "deep-recursion", .stack_size = cfg->stack_size};
    ll_future *f = ll_spawn_ex(overflows, (void *)cfg, &o);
    ll_loop_get_stats(loop, &st);
    if (cfg->guards && st.stacks_unguarded != 2) return 3;
    if (!cfg->guards && st.stacks_guarded != 2) return 4;
    ll_loop_run_until(loop, f);
    ll_future_free(by);
    ll_future_free(f);
    ll_loop_free(loop);
    return 0; /* reached only if the overflow went unseen */
}

/* want_sig 0: SIGSEGV or SIGABRT, whichever check sees the overflow first. */
static void run_overflow(const overflow_cfg *cfg, int want_sig, const char *want_text) {
    lt_child ch;
    lt_child_start(&ch, overflow_child, (void *)cfg);
    assert_true(lt_child_wait(&ch, 20));
    print_message("child stderr: %.600s\n", ch.out);
    if (lt_under_asan() && strstr(ch.out, "ERROR: AddressSanitizer")) {
        /* ASan's handler reported the fault itself and ended the child */
        assert_false(WIFEXITED(ch.status) && WEXITSTATUS(ch.status) == 0);
        return;
    }
    assert_true(WIFSIGNALED(ch.status));
    if (want_sig) assert_int_equal(WTERMSIG(ch.status), want_sig);
    else assert_true(WTERMSIG(ch.status) == SIGSEGV || WTERMSIG(ch.status) == SIGABRT);
    assert_non_null(strstr(ch.out, want_text));
}

static void test_overflow_guarded(void **state) {
    (void)state;
    overflow_cfg cfg = {.shape = RUNAWAY, .stack_size = 32 * 1024};
    run_overflow(&cfg, SIGSEGV, "libloop: task #2 'deep-recursion' overflowed its 32768-byte stack "
                                "(hit the guard page)");
}

/* A 137 KiB frame on a 128 KiB stack: its low bytes lie 9 KiB below the stack, past a one-page
 * guard (this used to fault without a report, or corrupt the neighbour). */
static void test_overflow_frame_just_past(void **state) {
    (void)state;
    overflow_cfg cfg = {.shape = BIG_FRAME, .stack_size = 128 * 1024, .frame = 137 * 1024};
    run_overflow(&cfg, SIGSEGV, "libloop: task #2 'deep-recursion' overflowed its 131072-byte "
                                "stack (a frame reached into its guard region)");
}

/* A 160 KiB frame: 32 KiB past the end, where the neighbour's stack used to be (it exited 0). */
static void test_overflow_frame_far_past(void **state) {
    (void)state;
    overflow_cfg cfg = {.shape = BIG_FRAME, .stack_size = 128 * 1024, .frame = 160 * 1024};
    run_overflow(&cfg, SIGSEGV, "libloop: task #2 'deep-recursion' overflowed its 131072-byte "
                                "stack (a frame reached into its guard region)");
}

/* A frame larger than stack and guard together, awaiting inside it: whatever its stack pointer
 * lands on (another slot's guard, another stack, nothing), the overflow is named. */
static void test_overflow_frame_past_guard(void **state) {
    (void)state;
    overflow_cfg cfg = {.shape = BIG_AWAIT, .stack_size = 64 * 1024, .frame = 3 << 20};
    run_overflow(&cfg, 0, "libloop: task #2 'deep-recursion' overflowed its 65536-byte stack (");
}

static void test_overflow_canary(void **state) {
    (void)state;
    overflow_cfg cfg = {.guards = "0", .shape = PAST_AND_BACK, .stack_size = 32 * 1024};
    run_overflow(&cfg, SIGABRT, "libloop: task #2 'deep-recursion' overflowed its 32512-byte stack "
                                "(canary overwritten)");
}

/* Unguarded: a frame past the end that awaits is caught by the stack-pointer check at the
 * switch, before the loop or the neighbour runs. */
static void test_overflow_unguarded_await(void **state) {
    (void)state;
    overflow_cfg cfg = {.guards = "0", .shape = BIG_AWAIT, .stack_size = 32 * 1024,
                        .frame = 40 * 1024};
    run_overflow(&cfg, SIGABRT, "libloop: task #2 'deep-recursion' overflowed its 32512-byte stack "
                                "(its stack pointer was outside the stack at a switch)");
}

static void test_overflow_unguarded_runaway(void **state) {
    (void)state;
    overflow_cfg cfg = {.guards = "0", .shape = RUNAWAY, .stack_size = 32 * 1024};
    run_overflow(&cfg, SIGSEGV,
                 "libloop: task #2 'deep-recursion' overflowed its 32512-byte stack (ran through");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stack_sizes_and_stats),
        cmocka_unit_test(test_overflow_guarded),
        cmocka_unit_test(test_overflow_frame_just_past),
        cmocka_unit_test(test_overflow_frame_far_past),
        cmocka_unit_test(test_overflow_frame_past_guard),
        cmocka_unit_test(test_overflow_canary),
        cmocka_unit_test(test_overflow_unguarded_await),
        cmocka_unit_test(test_overflow_unguarded_runaway),
    };
    return cmocka_run_group_tests_name("stack", tests, NULL, NULL);
}
