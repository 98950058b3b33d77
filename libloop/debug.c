/*
 * debug.c — debug mode: warnings about slow steps and unretrieved failures, the task dump, and the
 * report of what is still alive when a loop is freed.
 *
 * Warnings are formatted into a stack buffer and handed to the loop's warning handler; this is the
 * only place libloop writes anything on its own, and only in debug mode.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"
/* after ev.h: <elf.h> defines EV_NONE (the ELF version), which ev.h uses as an enum constant */
#include <elf.h>
#include <link.h>

double ll__mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- naming functions ----
 *
 * dladdr() knows only the dynamic symbol table, which holds exported functions; a task function is
 * usually static. So when dladdr finds no name, the full symbol table (.symtab) of the object that
 * holds the address is read: the executable (/proc/self/exe) or the shared library dladdr names.
 * Each object is mapped once, on first use, and kept mapped (debug mode only; never unmapped).
 * A stripped object has no .symtab: then "object+offset" is what can be said. */

typedef struct symfile {
    char path[256];
    const unsigned char *map;
    size_t len;
    struct symfile *next;
} symfile;

static symfile *symfiles;
static pthread_mutex_t sym_lock = PTHREAD_MUTEX_INITIALIZER;

static const symfile *symfile_get(const char *path) {
    for (symfile *f = symfiles; f; f = f->next)
        if (strcmp(f->path, path) == 0) return f;
    symfile *f = calloc(1, sizeof *f); /* not ll__calloc: kept for the life of the process */
    if (!f) return NULL;
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(ElfW(Ehdr))) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m != MAP_FAILED) {
            f->map = m;
            f->len = (size_t)st.st_size;
        }
    }
    if (fd >= 0) close(fd);
    f->next = symfiles; /* remembered even if unreadable: tried once */
    symfiles = f;
    return f;
}

/* The name of the function symbol covering `addr` (a link-time address) in an ELF image. */
static bool symtab_find(const symfile *f, uintptr_t addr, char *buf, size_t n) {
    if (!f || !f->map) return false;
    const ElfW(Ehdr) *eh = (const void *)f->map;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_shentsize != sizeof(ElfW(Shdr)) ||
        eh->e_shoff == 0 || eh->e_shoff + (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) > f->len)
        return false;
    const ElfW(Shdr) *sh = (const void *)(f->map + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const ElfW(Shdr) *strs = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > f->len || strs->sh_offset + strs->sh_size > f->len)
            return false;
        const ElfW(Sym) *sym = (const void *)(f->map + sh[i].sh_offset);
        size_t count = sh[i].sh_size / sizeof *sym;
        const char *names = (const char *)f->map + strs->sh_offset;
        for (size_t k = 0; k < count; k++) {
            if (ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC || sym[k].st_value == 0) continue;
            if (addr < sym[k].st_value || addr >= sym[k].st_value + (sym[k].st_size ? sym[k].st_size : 1))
                continue;
            if (sym[k].st_name >= strs->sh_size) return false;
            snprintf(buf, n, "%s", names + sym[k].st_name);
            return true;
        }
    }
    return false;
}

const char *ll__fn_name(const void *fn, char *buf, size_t n) {
    Dl_info info;
    struct link_map *lm = NULL;
    if (!dladdr1(fn, &info, (void **)&lm, RTLD_DL_LINKMAP)) {
        snprintf(buf, n, "%p", fn);
        return buf;
    }
    if (info.dli_sname) {
        snprintf(buf, n, "%s", info.dli_sname);
        return buf;
    }
    /* The executable's link map has an empty name; /proc/self/exe is its file. */
    bool found = false;
    if (lm) {
        const char *path = lm->l_name && *lm->l_name ? lm->l_name : "/proc/self/exe";
        pthread_mutex_lock(&sym_lock);
        const symfile *f = symfile_get(path);
        /* symbol values are link-time addresses: take the load bias off (0 for a non-PIE exe) */
        found = symtab_find(f, (uintptr_t)fn - (uintptr_t)lm->l_addr, buf, n);
        pthread_mutex_unlock(&sym_lock);
    }
    if (found) return buf;
    const char *base = info.dli_fname ? strrchr(info.dli_fname, '/') : NULL;
    snprintf(buf, n, "%s+%#lx", base ? base + 1 : info.dli_fname ? info.dli_fname : "?",
             (unsigned long)((const char *)fn - (const char *)info.dli_fbase));
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

void ll__debug_after_cb(ll_loop *loop, double t0, const char *kind, const void *fn,
                        const char *of) {
    double ms = ll__mono_ms() - t0;
    if (ms < loop->slow_ms) return;
    char name[128], what[384];
    snprintf(what, sizeof what, "%s %s%s%s%s", kind, ll__fn_name(fn, name, sizeof name),
             of ? " (of " : "", of ? of : "", of ? ")" : "");
    ll__debug_slow(loop, ms, what);
}

void ll_loop_set_debug(ll_loop *loop, bool on, double slow_ms) {
    if (!loop) return;
    loop->debug = on;
    if (slow_ms > 0) loop->slow_ms = slow_ms;
    if (!on) {
        while (loop->dbg_futures.head)
            ll__future_debug_unlink(ll__dbg_future_of(loop->dbg_futures.head));
    }
    ll__debug_usr1_update(loop);
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
    for (ll_task *t = ll__task_of(loop->tasks.head); t; t = ll__task_of(t->link.next)) {
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
    for (ll_future *f = ll__dbg_future_of(loop->dbg_futures.head); f && shown < 20;
         f = ll__dbg_future_of(f->ext->dbg.next), shown++) {
        char d[160];
        describe_future(f, d, sizeof d);
        ll__warn(loop, "  alive: future '%s' (%s)%s%s", d,
                 f->state == LL_FUTURE_PENDING ? "pending" : "settled",
                 f->ext->creator ? ", created by task " : "",
                 f->ext->creator ? f->ext->creator : "");
    }
}
