/*
 * harness.c — see harness.h.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"

int lt_count_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void lt_setup(lt_ctx *c) {
    c->fds_before = lt_count_fds();
    c->loop = ll_loop_new();
    assert_non_null(c->loop);
}

void lt_teardown(lt_ctx *c) {
    ll_loop_stats st;
    ll_loop_get_stats(c->loop, &st);
    assert_int_equal(st.tasks, 0);
    assert_int_equal(st.futures, 0);
    assert_int_equal(st.handles, 0);
    assert_int_equal(ll_loop_free(c->loop), 0);
    c->loop = NULL;
    assert_int_equal(lt_count_fds(), c->fds_before);
}

int lt_run_task(ll_loop *loop, ll_task_fn fn, void *arg) {
    ll_spawn_opts o = {.loop = loop};
    ll_future *f = ll_spawn_ex(fn, arg, &o);
    assert_non_null(f);
    int rc = ll_loop_run_until(loop, f);
    ll_future_free(f);
    return rc;
}

static long fail_at = -1;
static long count;

static void *t_malloc(size_t n) {
    if (fail_at >= 0 && count++ >= fail_at) return NULL;
    return malloc(n);
}
static void *t_calloc(size_t n, size_t m) {
    if (fail_at >= 0 && count++ >= fail_at) return NULL;
    return calloc(n, m);
}
static void *t_realloc(void *p, size_t n) {
    if (fail_at >= 0 && count++ >= fail_at) return NULL;
    return realloc(p, n);
}

void lt_fail_after(long n) {
    static const ll_allocator a = {t_malloc, t_calloc, t_realloc, free};
    fail_at = n;
    count = 0;
    ll_set_allocator(&a);
}

void lt_fail_reset(void) {
    fail_at = -1;
    ll_set_allocator(NULL);
}

long lt_alloc_count(void) { return count; }

static void on_warn(const char *msg, void *arg) {
    lt_warnings *w = arg;
    size_t len = strlen(w->text);
    snprintf(w->text + len, sizeof w->text - len, "%s\n", msg);
    w->count++;
}

void lt_collect_warnings(ll_loop *loop, lt_warnings *w) {
    memset(w, 0, sizeof *w);
    ll_loop_set_warn_handler(loop, on_warn, w);
}
