/*
 * harness.c — see harness.h.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define LT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LT_TSAN 1
#endif
#endif

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

/* ---- fault injection and allocation tracking ----
 * One allocator serves both: it refuses allocations from the fail_at-th on, and while tracking is
 * on records every live pointer in a small chained hash table (whose own nodes come from libc, so
 * they are neither counted nor failed). A pointer the table does not know (allocated before
 * tracking began) is simply freed: switching allocators mid-way stays safe. */

char lt_failure[4096];
char lt_last_err[1024];

int lt_run_checked(ll_loop *loop, ll_task_fn fn, void *arg) {
    lt_failure[0] = lt_last_err[0] = 0;
    int rc = lt_run_task(loop, fn, arg);
    if (lt_failure[0]) fail_msg("%s (last error: %s)", lt_failure, lt_last_err);
    return rc;
}

void lt_run_tracked(ll_task_fn fn, void *arg) {
    lt_track_begin();
    lt_ctx c;
    lt_setup(&c);
    assert_int_equal(lt_run_checked(c.loop, fn, arg), 0);
    lt_teardown(&c);
    assert_int_equal(lt_track_end(), 0);
}

static long fail_at = -1;
static long count;
static bool tracking;
static long live;
static pthread_mutex_t track_lock = PTHREAD_MUTEX_INITIALIZER;

#define TRACK_BUCKETS 4096
typedef struct track_node {
    void *p;
    struct track_node *next;
} track_node;
static track_node *track_table[TRACK_BUCKETS];

static size_t track_hash(const void *p) {
    uintptr_t v = (uintptr_t)p;
    return (size_t)((v >> 4) ^ (v >> 16)) % TRACK_BUCKETS;
}

static void track_add(void *p) {
    if (!p) return;
    track_node *n = malloc(sizeof *n);
    if (!n) abort(); /* the test harness itself out of memory: nothing sensible to do */
    pthread_mutex_lock(&track_lock);
    if (tracking) {
        size_t h = track_hash(p);
        n->p = p;
        n->next = track_table[h];
        track_table[h] = n;
        live++;
        n = NULL;
    }
    pthread_mutex_unlock(&track_lock);
    free(n);
}

/* By address value: realloc's old pointer may no longer be used as a pointer. */
static void track_remove(uintptr_t key) {
    if (!key) return;
    track_node *gone = NULL;
    pthread_mutex_lock(&track_lock);
    for (track_node **pp = &track_table[track_hash((void *)key)]; *pp; pp = &(*pp)->next) {
        if ((uintptr_t)(*pp)->p == key) {
            gone = *pp;
            *pp = gone->next;
            live--;
            break;
        }
    }
    pthread_mutex_unlock(&track_lock);
    free(gone);
}

static bool refuse(void) {
    pthread_mutex_lock(&track_lock);
    bool no = fail_at >= 0 && count++ >= fail_at;
    pthread_mutex_unlock(&track_lock);
    return no;
}

static void *t_malloc(size_t n) {
    if (refuse()) return NULL;
    void *p = malloc(n);
    track_add(p);
    return p;
}
static void *t_calloc(size_t n, size_t m) {
    if (refuse()) return NULL;
    void *p = calloc(n, m);
    track_add(p);
    return p;
}
static void *t_realloc(void *p, size_t n) {
    if (refuse()) return NULL;
    track_remove((uintptr_t)p);
    void *q = realloc(p, n);
    track_add(q ? q : p); /* a failed realloc leaves p allocated */
    return q;
}
static void t_free(void *p) {
    track_remove((uintptr_t)p);
    free(p);
}

static void install(void) {
    static const ll_allocator a = {t_malloc, t_calloc, t_realloc, t_free};
    if (fail_at >= 0 || tracking) ll_set_allocator(&a);
    else ll_set_allocator(NULL);
}

void lt_fail_after(long n) {
    fail_at = n;
    count = 0;
    install();
}

void lt_fail_reset(void) {
    fail_at = -1;
    install();
}

long lt_alloc_count(void) { return count; }

void lt_track_begin(void) {
    pthread_mutex_lock(&track_lock);
    /* Forget what a failed test left tracked (its memory may still be in use: not freed), so one
     * failure does not cascade into the next test's count. */
    for (size_t i = 0; i < TRACK_BUCKETS; i++) {
        while (track_table[i]) {
            track_node *t = track_table[i];
            track_table[i] = t->next;
            free(t);
        }
    }
    live = 0;
    tracking = true;
    pthread_mutex_unlock(&track_lock);
    install();
}

long lt_track_live(void) {
    pthread_mutex_lock(&track_lock);
    long n = live;
    pthread_mutex_unlock(&track_lock);
    return n;
}

long lt_track_end(void) {
    pthread_mutex_lock(&track_lock);
    tracking = false;
    long n = live;
    for (size_t i = 0; i < TRACK_BUCKETS; i++) {
        while (track_table[i]) {
            track_node *t = track_table[i];
            track_table[i] = t->next;
            free(t->p);
            free(t);
        }
    }
    live = 0;
    pthread_mutex_unlock(&track_lock);
    install();
    return n;
}

/* ---- child processes ---- */

void lt_child_start(lt_child *c, lt_child_fn fn, void *arg) {
    memset(c, 0, sizeof *c);
    int err[2], ready[2];
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(err[0]);
        close(ready[0]);
        dup2(err[1], 2);
        close(err[1]);
        _exit(fn(arg, ready[1]));
    }
    close(err[1]);
    close(ready[1]);
    c->pid = pid;
    c->err_fd = err[0];
    c->ready_fd = ready[0];
}

void lt_child_notify(int ready_fd) {
    char b = 'r';
    ssize_t r = write(ready_fd, &b, 1);
    (void)r;
}

bool lt_child_wait_ready(lt_child *c, double timeout) {
    struct pollfd p = {.fd = c->ready_fd, .events = POLLIN};
    if (poll(&p, 1, (int)(timeout * 1000)) != 1) return false;
    char b;
    return read(c->ready_fd, &b, 1) == 1;
}

bool lt_child_wait(lt_child *c, double timeout) {
    ll_time end = ll_now() + timeout;
    bool in_time = true;
    for (;;) {
        double left = end - ll_now();
        if (left <= 0) {
            in_time = false;
            break;
        }
        struct pollfd p = {.fd = c->err_fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        char buf[4096];
        ssize_t n = read(c->err_fd, buf, sizeof buf);
        if (n <= 0) break; /* EOF: the child (and anything it forked) is gone */
        size_t room = sizeof c->out - 1 - c->outlen;
        if ((size_t)n > room) n = (ssize_t)room;
        memcpy(c->out + c->outlen, buf, (size_t)n);
        c->outlen += (size_t)n;
        c->out[c->outlen] = 0;
    }
    if (!in_time) kill(c->pid, SIGKILL);
    while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
    }
    close(c->err_fd);
    close(c->ready_fd);
    c->err_fd = c->ready_fd = -1;
    return in_time;
}

bool lt_under_valgrind(void) {
#ifdef RUNNING_ON_VALGRIND
    if (RUNNING_ON_VALGRIND) return true;
#endif
    const char *e = getenv("LIBLOOP_VALGRIND");
    return e && strcmp(e, "1") == 0;
}

bool lt_under_asan(void) {
#ifdef LT_ASAN
    return true;
#else
    return false;
#endif
}

bool lt_under_tsan(void) {
#ifdef LT_TSAN
    return true;
#else
    return false;
#endif
}

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

int lt_await_free(ll_future *f) {
    int rc = ll_await(f);
    ll_future_free(f);
    return rc;
}

int lt_await_msg(ll_future *f, char *msg, size_t n) {
    int rc = ll_await(f);
    snprintf(msg, n, "%s", ll_future_errmsg(f));
    ll_future_free(f);
    return rc;
}

int lt_echo_handler(ll_stream *s, void *arg) {
    (void)arg;
    char buf[16384];
    for (;;) {
        ll_future *r = ll_stream_read(s, buf, sizeof buf);
        int rc = ll_await(r);
        size_t n = (uintptr_t)ll_future_value(r);
        ll_future_free(r);
        if (rc == LL_EOF) return 0;
        if (rc) return rc;
        if ((rc = lt_await_free(ll_stream_write(s, buf, n)))) return rc;
    }
}
