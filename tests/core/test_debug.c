/*
 * test_debug.c — debug mode: slow steps, failures nobody retrieved, the task dump, the report of
 * what a freed loop left alive, LIBLOOP_DEBUG from the environment, SIGUSR1 (ll_run and
 * ll_loop_new), slow call_later and done callbacks, static functions named from the symbol table,
 * freed futures poisoned.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness/harness.h"

/* ---- slow steps ---- */

static int blocks(void *arg) {
    (void)arg;
    usleep(150 * 1000); /* blocking call on the loop thread: the bug debug mode is for */
    return ll_sleep(0.001);
}

static int polite(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++)
        if (ll_sleep(0.01)) return LL_EINVAL;
    return 0;
}

/* Exported: debug mode names a callback by its dynamic symbol (tests link with -rdynamic, but are
 * compiled with -fvisibility=hidden like the library). */
LL_EXPORT void blocking_callback(void *arg);
void blocking_callback(void *arg) {
    (void)arg;
    usleep(120 * 1000);
}

static void test_slow_step_warns(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    lt_warnings w;
    lt_collect_warnings(c.loop, &w);
    ll_loop_set_debug(c.loop, true, 100);
    assert_true(ll_loop_get_debug(c.loop));
    ll_spawn_opts o = {.loop = c.loop, .name = "blocker"};
    ll_future *f = ll_spawn_ex(blocks, NULL, &o);
    ll_spawn_opts p = {.loop = c.loop, .name = "polite"};
    ll_future *g = ll_spawn_ex(polite, NULL, &p);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(ll_future_code(f), 0);
    assert_int_equal(ll_future_code(g), 0);
    print_message("%s", w.text);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.text, "task #1 'blocker' blocked the loop for"));
    assert_null(strstr(w.text, "polite"));
    /* a callback is named by its function */
    assert_int_equal(ll_loop_call_soon(c.loop, blocking_callback, NULL), 0);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(w.count, 2);
    print_message("%s", w.text);
    assert_non_null(strstr(w.text, "blocking_callback blocked the loop"));
    /* debug off: silent */
    ll_loop_set_debug(c.loop, false, 0);
    assert_int_equal(ll_loop_call_soon(c.loop, blocking_callback, NULL), 0);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(w.count, 2);
    ll_future_free(f);
    ll_future_free(g);
    lt_teardown(&c);
}

/* call_later callbacks and future done callbacks are timed too; a task's wake is not reported as
 * a callback (its step is timed as the task's). */
static void blocking_done(ll_future *f, void *arg) {
    (void)f, (void)arg;
    usleep(120 * 1000);
}

static int awaits_gate(void *arg) {
    return ll_await(arg);
}

static void test_slow_callbacks_warn(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    lt_warnings w;
    lt_collect_warnings(c.loop, &w);
    ll_loop_set_debug(c.loop, true, 100);
    ll_future *l = ll_loop_call_later(c.loop, 0.001, blocking_callback, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, l), 0);
    ll_future_free(l);
    print_message("%s", w.text);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.text, "call_later callback blocking_callback blocked the loop for"));

    ll_future *f = ll_future_new(c.loop);
    ll_future_set_label(f, "smtp DATA");
    assert_int_equal(ll_future_add_done(f, blocking_done, NULL), 0);
    ll_spawn_opts o = {.loop = c.loop, .name = "gate-waiter"};
    ll_future *t = ll_spawn_ex(awaits_gate, f, &o); /* its wake is a done callback of f too */
    assert_int_equal(ll_loop_run(c.loop), 0);       /* the task is waiting now */
    ll_future_resolve(f, NULL, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, t), 0);
    print_message("%s", w.text);
    assert_int_equal(w.count, 2);
    /* a static function: named from the symbol table */
    assert_non_null(strstr(w.text, "done callback blocking_done (of future 'smtp DATA') blocked "
                                   "the loop for"));
    assert_null(strstr(w.text, "gate-waiter")); /* the task's own step was quick */
    ll_future_free(t);
    ll_future_free(f);
    lt_teardown(&c);
}

/* ---- failures nobody looked at ---- */

static int fails_quietly(void *arg) {
    (void)arg;
    return ll_task_fail(LL_ECONNREFUSED, "connect to 127.0.0.1:1: connection refused");
}

static int spawns_and_forgets(void *arg) {
    (void)arg;
    ll_future *f = ll_future_new(NULL);
    ll_future_set_label(f, "redis GET");
    ll_future_fail(f, LL_EREDIS_REPLY, "WRONGTYPE");
    ll_future_free(f); /* created by this task, failed, dropped unread */
    return 0;
}

static void test_unretrieved_failure(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    lt_warnings w;
    lt_collect_warnings(c.loop, &w);
    ll_loop_set_debug(c.loop, true, 0);

    /* failed and freed unread: warned, naming it, its code and message */
    ll_future *f = ll_future_new(c.loop);
    ll_future_set_label(f, "pg query");
    ll_future_fail(f, LL_EPG_SERVER, "relation \"users\" does not exist");
    ll_future_free(f);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.text, "'pg query'"));
    assert_non_null(strstr(w.text, "EPG_SERVER"));
    assert_non_null(strstr(w.text, "relation \"users\" does not exist"));

    /* retrieved (code, message, or through an await): silent */
    f = ll_future_new(c.loop);
    ll_future_fail(f, LL_EIO, "disk");
    assert_int_equal(ll_future_code(f), LL_EIO);
    ll_future_free(f);
    f = ll_future_new(c.loop);
    ll_future_fail(f, LL_EIO, "disk");
    assert_string_equal(ll_future_errmsg(f), "disk");
    ll_future_free(f);
    ll_spawn_opts o = {.loop = c.loop, .name = "awaited"};
    f = ll_spawn_ex(fails_quietly, NULL, &o);
    assert_int_equal(ll_loop_run_until(c.loop, f), LL_ECONNREFUSED);
    ll_future_free(f);
    /* cancelled and resolved futures are never reported */
    f = ll_future_new(c.loop);
    ll_future_cancel(f);
    ll_future_free(f);
    assert_int_equal(w.count, 1);

    /* a fire-and-forget task that fails is reported when it ends */
    o.name = "forgotten";
    ll_future_free(ll_spawn_ex(fails_quietly, NULL, &o));
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(w.count, 2);
    assert_non_null(strstr(w.text, "task #2 'forgotten' failed with ECONNREFUSED (connect to "
                                   "127.0.0.1:1: connection refused) and nobody holds its future"));
    /* the creating task is named */
    o.name = "creator";
    f = ll_spawn_ex(spawns_and_forgets, NULL, &o);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f);
    assert_int_equal(w.count, 3);
    assert_non_null(strstr(w.text, "'redis GET' created by task creator failed with EREDIS_REPLY"));
    print_message("%s", w.text);

    /* debug off: silent */
    ll_loop_set_debug(c.loop, false, 0);
    f = ll_future_new(c.loop);
    ll_future_fail(f, LL_EIO, "disk");
    ll_future_free(f);
    assert_int_equal(w.count, 3);
    lt_teardown(&c);
}

/* A future outlives the task that created it: the warning still names the creator (the task's own
 * name is long freed by then). */
static void free_future(void *f) {
    ll_future_free(f);
}

static int makes_future(void *arg) {
    (void)arg;
    ll_future *f = ll_future_new(NULL);
    ll_future_set_label(f, "http GET");
    ll_task_return(f, free_future);
    return 0;
}

static void test_creator_outlives_task(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    lt_warnings w;
    lt_collect_warnings(c.loop, &w);
    ll_loop_set_debug(c.loop, true, 0);
    ll_spawn_opts o = {.loop = c.loop, .name = "maker"};
    ll_future *t = ll_spawn_ex(makes_future, NULL, &o);
    assert_int_equal(ll_loop_run_until(c.loop, t), 0);
    ll_future *made = ll_future_take(t);
    ll_future_free(t); /* the task is gone */
    /* churn the allocator so that freed names get reused */
    o.name = "someone-else-entirely";
    for (int i = 0; i < 4; i++) ll_future_free(ll_spawn_ex(polite, NULL, &o));
    assert_int_equal(ll_loop_run(c.loop), 0);
    ll_future_fail(made, LL_EHTTP_STATUS, "503 from 127.0.0.1");
    ll_future_free(made);
    print_message("%s", w.text);
    assert_int_equal(w.count, 1);
    assert_non_null(strstr(w.text, "'http GET' created by task maker failed"));
    lt_teardown(&c);
}

/* ---- the task dump ---- */

typedef struct dump_env {
    ll_future *gate;
    char *text;
    size_t len;
} dump_env;

static int waits_for_gate(void *arg) {
    dump_env *e = arg;
    return ll_await(e->gate);
}

static int sleeps_with_deadline(void *arg) {
    (void)arg;
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(30));
    int rc = ll_sleep(20);
    ll_scope_exit(&s);
    return rc;
}

static int parent_of_child(void *arg) {
    ll_spawn_opts o = {.name = "child"};
    ll_future *ch = ll_spawn_ex(waits_for_gate, arg, &o);
    int rc = ll_await(ch);
    ll_future_free(ch);
    return rc;
}

static int dumper(void *arg) {
    dump_env *e = arg;
    FILE *out = open_memstream(&e->text, &e->len);
    if (!out) return LL_ENOMEM;
    ll_loop_dump_tasks(ll_loop_current(), out); /* from inside a task: it is the running one */
    fclose(out);
    return 0;
}

static bool line_has(const char *text, const char *a, const char *b) {
    for (const char *l = text; l && *l;) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        char line[512];
        if (n >= sizeof line) n = sizeof line - 1;
        memcpy(line, l, n);
        line[n] = 0;
        if (strstr(line, a) && (!b || strstr(line, b))) return true;
        l = end ? end + 1 : NULL;
    }
    return false;
}

/* An unnamed task shows as its function, static or not: from the symbol table, never as
 * program+offset. */
static int quietly_waits(void *arg) {
    return ll_await(arg);
}

static void test_dump_names_static_fn(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    ll_future *gate = ll_future_new(c.loop);
    ll_future *t = ll_spawn_ex(quietly_waits, gate, &(ll_spawn_opts){.loop = c.loop});
    assert_int_equal(ll_loop_run(c.loop), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    ll_loop_dump_tasks(c.loop, out);
    fclose(out);
    print_message("%s", text);
    assert_true(line_has(text, "quietly_waits", "waiting"));
    assert_null(strstr(text, "+0x"));
    free(text);
    ll_future_resolve(gate, NULL, NULL);
    assert_int_equal(ll_loop_run_until(c.loop, t), 0);
    ll_future_free(t);
    ll_future_free(gate);
    lt_teardown(&c);
}

static void test_dump_tasks(void **state) {
    (void)state;
    lt_ctx c;
    lt_setup(&c);
    dump_env e = {0};
    e.gate = ll_future_new(c.loop);
    ll_future_set_label(e.gate, "redis GET");
    ll_spawn_opts o = {.loop = c.loop};
    o.name = "gate-waiter";
    ll_future *a = ll_spawn_ex(waits_for_gate, &e, &o);
    o.name = "sleeper";
    ll_future *b = ll_spawn_ex(sleeps_with_deadline, NULL, &o);
    o.name = "parent";
    ll_future *p = ll_spawn_ex(parent_of_child, &e, &o);
    ll_future *wait = ll_sleep_future(c.loop, 0.01);
    assert_int_equal(ll_loop_run_until(c.loop, wait), 0); /* everyone is waiting now */
    ll_future_free(wait);
    o.name = "fresh";
    ll_future *n = ll_spawn_ex(waits_for_gate, &e, &o); /* not started yet */
    ll_future_cancel(b);                                  /* asked to stop; not yet run */

    /* from outside the loop */
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    ll_loop_dump_tasks(c.loop, out);
    fclose(out);
    print_message("%s", text);
    assert_non_null(strstr(text, "5 live tasks"));
    assert_true(line_has(text, "gate-waiter", "waiting  on redis GET"));
    assert_true(line_has(text, "sleeper", "on sleep"));
    assert_true(line_has(text, "sleeper", "(deadline in "));
    assert_true(line_has(text, "sleeper", "[cancelled]"));
    assert_true(line_has(text, "parent", "on task #4 'child'"));
    assert_true(line_has(text, "child ", "on redis GET"));
    assert_true(line_has(text, "fresh", "new"));
    assert_true(line_has(text, "live futures", NULL));
    free(text);

    /* from inside a task */
    o.name = "dumper";
    ll_future *d = ll_spawn_ex(dumper, &e, &o);
    assert_int_equal(ll_loop_run_until(c.loop, d), 0);
    ll_future_free(d);
    assert_non_null(e.text);
    assert_true(line_has(e.text, "dumper", "running"));
    free(e.text);

    ll_future_resolve(e.gate, NULL, NULL);
    assert_int_equal(ll_loop_run(c.loop), 0);
    assert_int_equal(ll_future_code(a), 0);
    assert_int_equal(ll_future_code(b), LL_ECANCELED);
    assert_int_equal(ll_future_code(p), 0);
    assert_int_equal(ll_future_code(n), 0);
    ll_future_free(a);
    ll_future_free(b);
    ll_future_free(p);
    ll_future_free(n);
    ll_future_free(e.gate);
    ll_loop_dump_tasks(NULL, stderr); /* no-op */
    lt_teardown(&c);
}

/* ---- what a freed loop left alive ---- */

static void test_free_reports_alive(void **state) {
    (void)state;
    lt_track_begin(); /* the forgotten future below is released by lt_track_end */
    ll_loop *loop = ll_loop_new();
    assert_non_null(loop);
    lt_warnings w;
    lt_collect_warnings(loop, &w);
    ll_loop_set_debug(loop, true, 0);
    ll_future *forgotten = ll_future_new(loop);
    ll_future_set_label(forgotten, "smtp DATA");
    (void)forgotten; /* the application's bug: never freed */
    ll_future *fine = ll_future_new(loop);
    ll_future_free(fine);
    assert_int_equal(ll_loop_free(loop), 0);
    print_message("%s", w.text);
    assert_non_null(strstr(w.text, "loop freed with 0 task(s), 1 future(s) and 0 handle(s) still"));
    assert_non_null(strstr(w.text, "alive: future 'smtp DATA' (pending)"));
    /* exactly the forgotten future, its debug-mode record (creator, list link: libloop/future.c)
     * and the loop record it keeps alive (futures may outlive their loop: the record stays until
     * the last of them is freed) */
    assert_int_equal(lt_track_end(), 3);

    /* a clean loop says nothing */
    lt_track_begin();
    loop = ll_loop_new();
    lt_collect_warnings(loop, &w);
    ll_loop_set_debug(loop, true, 0);
    ll_future_free(ll_sleep_future(loop, 10)); /* closed by the free, not reported */
    assert_int_equal(ll_loop_free(loop), 0);
    assert_int_equal(w.count, 0);
    assert_int_equal(lt_track_end(), 0);
}

/* ---- LIBLOOP_DEBUG ---- */

static void test_env_turns_debug_on(void **state) {
    (void)state;
    setenv("LIBLOOP_DEBUG", "1", 1);
    lt_ctx c;
    lt_setup(&c);
    unsetenv("LIBLOOP_DEBUG");
    assert_true(ll_loop_get_debug(c.loop));
    lt_warnings w;
    lt_collect_warnings(c.loop, &w);
    ll_spawn_opts o = {.loop = c.loop, .name = "from-env"};
    ll_future *f = ll_spawn_ex(blocks, NULL, &o);
    assert_int_equal(ll_loop_run_until(c.loop, f), 0);
    ll_future_free(f);
    assert_non_null(strstr(w.text, "'from-env' blocked the loop"));
    lt_teardown(&c);

    setenv("LIBLOOP_DEBUG", "0", 1);
    lt_setup(&c);
    unsetenv("LIBLOOP_DEBUG");
    assert_false(ll_loop_get_debug(c.loop));
    lt_teardown(&c);
    lt_setup(&c);
    assert_false(ll_loop_get_debug(c.loop));
    lt_teardown(&c);
}

/* ---- SIGUSR1 dumps the tasks (debug mode, signals handled) ---- */

static int usr1_main(void *arg) {
    int ready_fd = (int)(intptr_t)arg;
    lt_child_notify(ready_fd);
    return ll_sleep(10); /* until SIGTERM: LL_ECANCELED */
}

static int usr1_child(void *arg, int ready_fd) {
    (void)arg;
    setenv("LIBLOOP_DEBUG", "1", 1);
    return ll_run(usr1_main, (void *)(intptr_t)ready_fd) == LL_ECANCELED ? 0 : 1;
}

static void test_sigusr1_dump(void **state) {
    (void)state;
    lt_child ch;
    lt_child_start(&ch, usr1_child, NULL);
    assert_true(lt_child_wait_ready(&ch, 10));
    assert_int_equal(kill(ch.pid, SIGUSR1), 0);
    usleep(200 * 1000);
    assert_int_equal(kill(ch.pid, SIGTERM), 0);
    assert_true(lt_child_wait(&ch, 10));
    print_message("%s", ch.out);
    assert_true(WIFEXITED(ch.status));
    assert_int_equal(WEXITSTATUS(ch.status), 0);
    assert_true(line_has(ch.out, "main", "waiting  on sleep"));
}

/* ---- a freed future is poisoned (debug builds: the tests are built without NDEBUG) ---- */

static int use_after_free_child(void *arg, int ready_fd) {
    (void)ready_fd;
    int how = (int)(intptr_t)arg;
    ll_loop *loop = ll_loop_new();
    ll_future *f = ll_future_new(loop);
    ll_future_set_label(f, "redis GET");
    ll_future_free(f);
    if (how == 0) ll_future_free(f);               /* a double free */
    else if (how == 1) (void)ll_future_code(f);    /* a read */
    else ll_future_resolve(f, NULL, NULL);         /* a late settle */
    ll_loop_free(loop);
    return 0; /* reached only if the use went unseen */
}

static void test_freed_future_poisoned(void **state) {
    (void)state;
    static const char *const what[] = {"ll_future_free", "ll__future_retrieve",
                                       "ll_future_resolve"};
    for (int how = 0; how < 3; how++) {
        lt_child ch;
        lt_child_start(&ch, use_after_free_child, (void *)(intptr_t)how);
        assert_true(lt_child_wait(&ch, 10));
        print_message("child stderr: %.400s\n", ch.out);
        assert_false(WIFEXITED(ch.status) && WEXITSTATUS(ch.status) == 0);
        if (lt_under_asan() && strstr(ch.out, "ERROR: AddressSanitizer")) continue; /* ASan saw it */
        assert_true(WIFSIGNALED(ch.status));
        assert_int_equal(WTERMSIG(ch.status), SIGABRT);
        char want[160];
        snprintf(want, sizeof want, "libloop: %s: future ", what[how]);
        assert_non_null(strstr(ch.out, want));
        assert_non_null(strstr(ch.out, "(label 'redis GET') used after it was freed"));
    }
}

/* SIGUSR1 dumps the tasks of a loop made with ll_loop_new in debug mode (it used to kill the
 * process: only ll_run handled it). */
static int usr1_loop_child(void *arg, int ready_fd) {
    (void)arg;
    ll_loop *loop = ll_loop_new();
    ll_loop_set_debug(loop, true, 0);
    ll_future *gate = ll_future_new(loop);
    ll_future *t = ll_spawn_ex(awaits_gate, gate, &(ll_spawn_opts){.loop = loop, .name = "idler"});
    ll_loop_run(loop); /* idler waits now */
    lt_child_notify(ready_fd);
    ll_future *nap = ll_sleep_future(loop, 0.5); /* the parent signals meanwhile */
    ll_loop_run_until(loop, nap);
    ll_future_free(nap);
    ll_future_resolve(gate, NULL, NULL);
    int rc = ll_loop_run_until(loop, t);
    ll_future_free(t);
    ll_future_free(gate);
    ll_loop_free(loop);
    return rc == 0 ? 0 : 1;
}

static void test_sigusr1_dump_loop_new(void **state) {
    (void)state;
    lt_child ch;
    lt_child_start(&ch, usr1_loop_child, NULL);
    assert_true(lt_child_wait_ready(&ch, 10));
    usleep(50 * 1000);
    assert_int_equal(kill(ch.pid, SIGUSR1), 0);
    assert_true(lt_child_wait(&ch, 10));
    print_message("%s", ch.out);
    assert_true(WIFEXITED(ch.status));
    assert_int_equal(WEXITSTATUS(ch.status), 0);
    assert_true(line_has(ch.out, "idler", "waiting  on future"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_step_warns),
        cmocka_unit_test(test_slow_callbacks_warn),
        cmocka_unit_test(test_dump_names_static_fn),
        cmocka_unit_test(test_unretrieved_failure),
        cmocka_unit_test(test_creator_outlives_task),
        cmocka_unit_test(test_dump_tasks),
        cmocka_unit_test(test_free_reports_alive),
        cmocka_unit_test(test_env_turns_debug_on),
        cmocka_unit_test(test_sigusr1_dump),
        cmocka_unit_test(test_sigusr1_dump_loop_new),
        cmocka_unit_test(test_freed_future_poisoned),
    };
    return cmocka_run_group_tests_name("debug", tests, NULL, NULL);
}
