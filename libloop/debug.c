/*
 * debug.c — debug mode: warnings about slow steps and unretrieved failures, the task dump, and the
 * report of what is still alive when a loop is freed.
 *
 * Warnings are formatted into a stack buffer and handed to the loop's warning handler; this is the
 * only place libloop writes anything on its own, and only in debug mode.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "internal.h"

double ll__mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

const char *ll__fn_name(const void *fn, char *buf, size_t n) {
    Dl_info info;
    if (dladdr(fn, &info) && info.dli_sname) {
        snprintf(buf, n, "%s", info.dli_sname);
    } else if (dladdr(fn, &info) && info.dli_fname) {
        const char *base = strrchr(info.dli_fname, '/');
        snprintf(buf, n, "%s+%#lx", base ? base + 1 : info.dli_fname,
                 (unsigned long)((const char *)fn - (const char *)info.dli_fbase));
    } else {
        snprintf(buf, n, "%p", fn);
    }
    return buf;
}

void ll__warn(ll_loop *loop, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (loop && loop->warn) loop->warn(msg, loop->warn_arg);
    else fprintf(stderr, "libloop debug: %s\n", msg);
}

void ll__debug_slow(ll_loop *loop, double ms, const char *what) {
    ll__warn(loop, "%s blocked the loop for %.0f ms (threshold %.0f ms): move blocking work to the "
                   "executor",
             what, ms, loop->slow_ms);
}

void ll_loop_set_debug(ll_loop *loop, bool on, double slow_ms) {
    if (!loop) return;
    loop->debug = on;
    if (slow_ms > 0) loop->slow_ms = slow_ms;
    if (!on) {
        while (loop->dbg_futures) ll__future_debug_unlink(loop->dbg_futures);
    }
    if (loop->signals_on && on && !loop->usr1_on) {
        ev_signal_start(loop->ev, &loop->sig_usr1);
        ev_unref(loop->ev);
        loop->usr1_on = true;
    }
}

bool ll_loop_get_debug(const ll_loop *loop) {
    return loop && loop->debug;
}

void ll_loop_set_warn_handler(ll_loop *loop, ll_warn_fn fn, void *arg) {
    if (!loop) return;
    loop->warn = fn;
    loop->warn_arg = arg;
}

static const char *state_name(const ll_task *t) {
    switch (t->state) {
    case LL__TASK_READY: return t->started ? "ready" : "new";
    case LL__TASK_RUNNING: return "running";
    case LL__TASK_WAITING: return "waiting";
    default: return "done";
    }
}

static void describe_future(ll_future *f, char *buf, size_t n) {
    if (f->task) {
        char name[128];
        snprintf(buf, n, "task #%llu '%s'", (unsigned long long)f->task->id,
                 ll__task_label(f->task, name, sizeof name));
    } else {
        snprintf(buf, n, "%s", ll_future_label(f));
    }
}

void ll_loop_dump_tasks(ll_loop *loop, FILE *out) {
    if (!loop || !out) return;
    fprintf(out, "libloop: %zu live task%s\n", loop->ntasks, loop->ntasks == 1 ? "" : "s");
    ll_time now = ll_now();
    for (ll_task *t = loop->tasks; t; t = t->next) {
        char name[128], what[192] = "";
        if (t->state == LL__TASK_WAITING && t->awaiting) {
            char d[160];
            describe_future(t->awaiting, d, sizeof d);
            snprintf(what, sizeof what, " on %s", d);
        }
        fprintf(out, "  #%-6llu %-24s %-8s%s", (unsigned long long)t->id,
                ll__task_label(t, name, sizeof name), state_name(t), what);
        if (t->scope->effective < LL_NEVER)
            fprintf(out, " (deadline in %.3fs)", t->scope->effective - now);
        if (t->cancelled) fprintf(out, " [cancelled]");
        fputc('\n', out);
    }
    fprintf(out, "libloop: %zu live future%s, %zu open handle%s\n", loop->nfutures,
            loop->nfutures == 1 ? "" : "s", loop->nhandles, loop->nhandles == 1 ? "" : "s");
    fflush(out);
}

void ll__debug_report_alive(ll_loop *loop) {
    if (loop->ntasks == 0 && loop->nfutures == 0 && loop->nhandles == 0) return;
    ll__warn(loop, "loop freed with %zu task(s), %zu future(s) and %zu handle(s) still alive",
             loop->ntasks, loop->nfutures, loop->nhandles);
    int shown = 0;
    for (ll_future *f = loop->dbg_futures; f && shown < 20; f = f->dbg_next, shown++) {
        char d[160];
        describe_future(f, d, sizeof d);
        ll__warn(loop, "  alive: future '%s' (%s)%s%s", d,
                 f->state == LL_FUTURE_PENDING ? "pending" : "settled",
                 f->creator ? ", created by task " : "", f->creator ? f->creator : "");
    }
}
