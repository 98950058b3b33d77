/*
 * demo.c — the main job (`make demo`). For now it shows the core: 10,000 concurrent tasks, each
 * with its own timeout, gathered; structured concurrency; blocking work in the executor; and the
 * live task dump. Client sections (PostgreSQL, HTTP fan-out, ...) are added as the clients land.
 *
 * Usage: demo [TASKS]
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libloop.h>

typedef struct {
    int ok, timed_out, failed;
} tally;

/* A worker: "work" for a pseudo-random 1..200 ms under a 100 ms budget. */
static int worker(void *arg) {
    uintptr_t i = (uintptr_t)arg;
    double work = 0.001 * (double)(1 + (i * 2654435761u) % 200);
    ll_scope s;
    ll_scope_enter(&s, ll_deadline_in(0.100));
    int rc = ll_sleep(work);
    ll_scope_exit(&s);
    return rc;
}

static int section_fanout(int n) {
    printf("== %d concurrent tasks, each with a 100 ms deadline, gathered\n", n);
    ll_future **fs = calloc((size_t)n, sizeof *fs);
    if (!fs) return LL_ENOMEM;
    ll_time t0 = ll_now();
    for (int i = 0; i < n; i++) fs[i] = ll_spawn(worker, (void *)(uintptr_t)i);
    ll_future *all = ll_gather(fs, (size_t)n, LL_GATHER_COLLECT);
    int rc = ll_await(all);
    double took = ll_now() - t0;
    tally t = {0, 0, 0};
    for (int i = 0; i < n; i++) {
        int c = ll_future_code(fs[i]);
        if (c == 0) t.ok++;
        else if (c == LL_ETIMEDOUT) t.timed_out++;
        else t.failed++;
        ll_future_free(fs[i]);
    }
    ll_future_free(all);
    free(fs);
    printf("   %d finished in time, %d timed out, %d failed — %.0f ms wall, %.0f tasks/s\n\n", t.ok,
           t.timed_out, t.failed, took * 1e3, n / took);
    return rc;
}

static int child_ok(void *arg) {
    (void)arg;
    return ll_sleep(0.02);
}

static int child_fails(void *arg) {
    (void)arg;
    ll_sleep(0.005);
    return ll_task_fail(LL_EPROTO, "child 'parser' found a malformed reply");
}

static int child_long(void *arg) {
    int *cancelled = arg;
    int rc = ll_sleep(10);
    if (rc == LL_ECANCELED) (*cancelled)++;
    return rc;
}

static int section_taskgroup(void) {
    printf("== a task group: one child fails, its siblings are cancelled\n");
    int cancelled = 0;
    ll_taskgroup *g = ll_taskgroup_new();
    if (!g) return LL_ENOMEM;
    ll_taskgroup_spawn(g, child_ok, NULL, "ok");
    ll_taskgroup_spawn(g, child_long, &cancelled, "long-1");
    ll_taskgroup_spawn(g, child_long, &cancelled, "long-2");
    ll_taskgroup_spawn(g, child_fails, NULL, "parser");
    ll_time t0 = ll_now();
    int rc = ll_taskgroup_wait(g);
    printf("   group: %s (%s) after %.0f ms; %d long siblings cancelled\n\n", ll_err_name(rc),
           ll_taskgroup_errmsg(g), (ll_now() - t0) * 1e3, cancelled);
    ll_taskgroup_free(g);
    return 0;
}

static int blocking_lookup(void *arg, void **value) {
    struct addrinfo *res = NULL;
    int e = getaddrinfo(arg, NULL, NULL, &res);
    if (e) return LL_ENOTFOUND;
    int n = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) n++;
    freeaddrinfo(res);
    *value = (void *)(uintptr_t)n;
    return 0;
}

static int ticker(void *arg) {
    int *ticks = arg;
    for (int i = 0; i < 5; i++) {
        if (ll_sleep(0.002)) break;
        (*ticks)++;
    }
    return 0;
}

static int section_executor(void) {
    printf("== blocking getaddrinfo in the executor while the loop keeps ticking\n");
    int ticks = 0;
    ll_future *t = ll_spawn(ticker, &ticks);
    ll_future *f = ll_run_in_executor(blocking_lookup, "localhost", NULL);
    int rc = ll_await(f);
    ll_await(t);
    printf("   getaddrinfo(localhost): %s, %lu result(s); ticker ran %d times meanwhile\n\n",
           rc ? ll_future_errmsg(f) : "ok", (unsigned long)(uintptr_t)ll_future_value(f), ticks);
    ll_future_free(f);
    ll_future_free(t);
    return 0;
}

static int waiter(void *arg) {
    return ll_event_wait(arg);
}

static int section_dump(void) {
    printf("== the live task dump (what `kill -USR1` prints in debug mode)\n");
    ll_event *ev = ll_event_new();
    ll_spawn_opts o = {.name = "waits-for-event"};
    ll_future *a = ll_spawn_ex(waiter, ev, &o);
    o.name = "sleeper";
    ll_future *b = ll_spawn_ex(child_ok, NULL, &o);
    ll_yield(); /* let them start */
    ll_loop_dump_tasks(ll_loop_current(), stdout);
    ll_event_set(ev);
    ll_await(a);
    ll_await(b);
    ll_future_free(a);
    ll_future_free(b);
    ll_event_free(ev);
    printf("\n");
    return 0;
}

static int main_task(void *arg) {
    int n = *(int *)arg;
    int rc = section_fanout(n);
    if (rc == 0) rc = section_taskgroup();
    if (rc == 0) rc = section_executor();
    if (rc == 0) rc = section_dump();
    return rc;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    if (n <= 0) n = 10000;
    printf("libloop demo — core runtime\n\n");
    int rc = ll_run(main_task, &n);
    if (rc) fprintf(stderr, "demo failed: %s\n", ll_strerror(rc));
    return rc ? 1 : 0;
}
