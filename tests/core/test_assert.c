/*
 * test_assert.c — LL_ASSERT, the core's debug assertions (libloop/internal.h), is compiled into the
 * test builds, and a broken invariant stops the process with the condition and where it failed,
 * rather than running on with inconsistent memory.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include "harness/harness.h"
#include "internal.h"

#ifdef NDEBUG
#error "the tests are built without NDEBUG, so LL_ASSERT is on"
#endif

static int broken_invariant(void *arg, int ready_fd) {
    (void)arg, (void)ready_fd;
    int settled_twice = 2;
    LL_ASSERT(settled_twice == 1);
    return 0; /* not reached */
}

static int kept_invariant(void *arg, int ready_fd) {
    (void)arg, (void)ready_fd;
    LL_ASSERT(1 + 1 == 2);
    return 7;
}

static void test_assert_fails_loudly(void **state) {
    (void)state;
    lt_child ch;
    lt_child_start(&ch, broken_invariant, NULL);
    assert_true(lt_child_wait(&ch, 20));
    print_message("child stderr: %s", ch.out);
    assert_true(WIFSIGNALED(ch.status));
    assert_int_equal(WTERMSIG(ch.status), SIGABRT);
    assert_non_null(strstr(ch.out, "libloop: internal assertion failed: settled_twice == 1 "
                                   "(tests/core/test_assert.c:"));
    assert_non_null(strstr(ch.out, "broken_invariant)"));

    lt_child_start(&ch, kept_invariant, NULL);
    assert_true(lt_child_wait(&ch, 20));
    assert_true(WIFEXITED(ch.status));
    assert_int_equal(WEXITSTATUS(ch.status), 7);
    assert_int_equal(ch.outlen, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assert_fails_loudly),
    };
    return cmocka_run_group_tests_name("assert", tests, NULL, NULL);
}
