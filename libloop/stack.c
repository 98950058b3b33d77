/*
 * stack.c — task stacks: mmap'd slabs, large guard regions within a mapping budget, overflow
 * reports.
 *
 * Design notes:
 * - Every guarded stack has a large PROT_NONE guard region below it: GUARD_MIN (256 KiB) or the
 *   stack size, whichever is larger. Address space is free and a guard costs one mapping (VMA)
 *   whatever its size, so it is made large enough that a frame far bigger than the stack (a 160 KiB
 *   local array on a 128 KiB stack, only its low bytes written) still lands in it, instead of
 *   stepping over a one-page guard into the neighbouring stack. Not larger: with 1 MiB guards the
 *   stacks of 1,000 live tasks spread over 1.1 GiB, and the extra page-table walks made
 *   spawn + finish (make bench-core (b)) 10 % slower than with 256 KiB. Library code is built with
 *   -fstack-clash-protection (the Makefile), which probes every page of a large frame so that even
 *   a frame bigger than the guard faults in it; docs/core.md asks the same of task code.
 * - A slab is mapped PROT_NONE in one call (no commit charge for the guards) and its stacks are
 *   made read-write. Linux counts every run of pages with different protection as a separate VMA,
 *   so a guarded stack costs two, and vm.max_map_count defaults to 65530: 100,000 guarded stacks
 *   would need 200,000 VMAs. While the process stays within a guard budget (a quarter of
 *   vm.max_map_count, i.e. ~8,000 guarded stacks by default) slabs of GUARDED_STACKS stacks have a
 *   guard below every stack. Past the budget, slabs of UNGUARDED_STACKS stacks are one read-write
 *   mapping above one large guard region, and each stack is checked at every switch: its stack
 *   pointer must lie inside it, and a canary zone just below it must still be zero.
 * - The canary zone of an unguarded stack is the top CANARY_BYTES of the slot below it (reserved:
 *   the stack below never uses them). That page holds the lower task's own header, so it is
 *   resident anyway: checking the canary costs no memory. (It used to be the stack's own bottom
 *   page; on kernels where reading an untouched page makes it resident, as on the benchmark machine,
 *   that check cost a page per task: 804 MiB instead of ~420 MiB for 100,000 sleeping tasks.) The
 *   canary is zero, the value fresh and released pages hold, so it costs no write; an overflow
 *   writing only zeros there goes unseen, but a runaway call chain writes return addresses.
 * - What the unguarded path cannot see: one frame that jumps past the 256-byte canary, writes into
 *   the stack below and returns without a switch in between. Guarded stacks (the first ~8,000, or
 *   all of them with a higher vm.max_map_count) catch that too.
 * - On a fault in a guard region, or a fault while the running task's stack pointer lies outside
 *   its stack, a SIGSEGV handler on an alternate signal stack names the task whose stack
 *   overflowed, then lets the default action kill the process (an overflow cannot be undone).
 * - Under an address-space limit (RLIMIT_AS), or once a mapping with large guards has failed, guards
 *   are one page, as they used to be: large guards would cost stacks there.
 * - Test knob: LIBLOOP_STACK_GUARDS=0 in the environment makes every new slab unguarded (canary
 *   path), so tests can reach it without creating ~8,000 stacks first. Read at each slab creation.
 * - A new slab's task-header pages (the top page of every stack) are populated with one
 *   process_madvise(MADV_POPULATE_WRITE) call: on the benchmark machine (a VM) a page fault costs
 *   ~12 us, a batched populate ~1 us plus a cheaper first touch, and a task needs exactly that page.
 * - Freed stacks are kept per loop for reuse, most recently freed first (their pages are warm).
 *   Returning a stack's pages to the kernel (MADV_DONTNEED) as its task ends costs a system call
 *   plus fresh page faults when it is reused: with more tasks alive at once than a small cache holds
 *   (spawn 1,000, gather, repeat), spawn + finish ran at 0.3 M/s instead of 8 M/s (make bench-core).
 *   So releasing is deferred to a per-pool trim timer: once a second it returns the pages of the free
 *   stacks, beyond CACHE_STACKS, that no spawn needed during the whole second. Steady churn reuses
 *   warm stacks; a burst of tasks still does not pin its peak memory for long while the loop runs.
 *   The timer is unreferenced (it never keeps the loop alive) and stops when nothing is left to
 *   trim. Because the free list is a LIFO, the stacks unused for a whole interval are its bottom
 *   `low` entries (`low`: the fewest free stacks seen in the interval), and the released ones are
 *   always its bottom `nreleased` entries.
 * - Each stack is registered with valgrind so memcheck follows switches.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>
#include "internal.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define HAVE_VALGRIND 1
#endif
#endif
#ifndef HAVE_VALGRIND
#define VALGRIND_STACK_REGISTER(a, b) 0
#define VALGRIND_STACK_DEREGISTER(id) ((void)(id))
#define RUNNING_ON_VALGRIND 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LL_STACK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LL_STACK_ASAN 1
#endif
#endif
#ifdef LL_STACK_ASAN
#include <sanitizer/asan_interface.h>
#define STACK_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define STACK_UNPOISON(p, n) ((void)(p), (void)(n))
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define GUARDED_STACKS 16
#define UNGUARDED_STACKS 64
#define GUARD_MIN ((size_t)256 << 10)
#define CANARY_BYTES 256
#define MAX_STACK ((size_t)1 << 30)
#define CACHE_STACKS 64
#define TRIM_SECS 1.0

typedef struct slab {
    char *base;
    size_t len, slot;   /* slot = guard (if any) + stack (+ canary zone if unguarded) */
    size_t guard;       /* guard region below each stack (guarded) or below the slab */
    bool guarded;
    int n;              /* stacks in this slab */
    struct slab *next;   /* the pool's slabs */
    struct slab *gnext;  /* every slab of the process, for the fault handler */
    struct ll__stackpool *pool;
    unsigned *vg_id;
    ll__stack stacks[];
} slab;

typedef struct ll__stackpool {
    size_t size;
    ll__stack *free;
    size_t nfree;
    size_t low;         /* fewest free stacks since the last trim */
    size_t nreleased;   /* the bottom entries of `free` whose pages were returned */
    ev_timer trim;      /* active while free stacks beyond the cache may hold pages */
    slab *slabs;
    struct ll__stackpool *next;
} ll__stackpool;

/* Every slab of every loop, for the fault handler (which must not lock). Slabs are prepended with
 * a release store; an unmapped slab is unlinked under the lock and its memory freed after. */
/* Plain, not _Atomic: reached through __atomic builtins (which clang rejects on _Atomic) or under
 * slabs_lock. */
static slab *all_slabs;
static pthread_mutex_t slabs_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t page_size;
static long guard_budget = -1;   /* guarded stacks we may still create */
static bool small_guards; /* address space is limited or ran short once: one-page guards */
static struct sigaction prev_segv; /* the handler ours hands faults on to */
#define ALTSTACK_SIZE (64 * 1024)
static pthread_key_t altstack_key; /* releases a thread's alternate signal stack when it exits */
static bool altstack_key_ok;

static void fault_handler(int sig, siginfo_t *si, void *uc);

/* A mapping outlives its thread: without this, every thread that ever made a loop would leak its
 * alternate signal stack. */
static void altstack_release(void *mem) {
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    munmap(mem, ALTSTACK_SIZE);
}

static void global_init(void) {
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    long maxmap = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &maxmap) != 1) maxmap = 65530;
        fclose(f);
    }
    guard_budget = maxmap / 8; /* two VMAs each: a quarter of the limit */
    /* Under an address-space limit (ulimit -v) large guards would cost stacks: one page each. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) small_guards = true;
    altstack_key_ok = pthread_key_create(&altstack_key, altstack_release) == 0;
}

/* Put our SIGSEGV handler in front of whatever is installed (checked at every loop creation, since
 * applications and test frameworks install crash handlers of their own): it names the task whose
 * stack overflowed and then hands the fault on to that handler (a sanitizer's, a crash reporter's)
 * or to the default action. */
static void install_fault_handler(void) {
    struct sigaction cur;
    if (sigaction(SIGSEGV, NULL, &cur) != 0) return;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == fault_handler) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    pthread_mutex_lock(&slabs_lock);
    prev_segv = cur;
    sigaction(SIGSEGV, &sa, NULL);
    pthread_mutex_unlock(&slabs_lock);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Each thread that runs a loop needs an alternate signal stack, or the overflow report itself
 * would fault on the exhausted stack. */
void ll__stack_thread_init(void) {
    pthread_once(&once, global_init);
    install_fault_handler();
    static _Thread_local bool done;
    if (done) return;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) {
        done = true;
        return;
    }
    size_t sz = ALTSTACK_SIZE;
    void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return;
    stack_t ss = {.ss_sp = mem, .ss_size = sz, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) munmap(mem, sz);
    else if (altstack_key_ok) pthread_setspecific(altstack_key, mem); /* unmapped at thread exit */
    done = true;
}

static void say(const char *s) {
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static void say_num(unsigned long long v) {
    char buf[32];
    int i = 31;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    say(buf + i);
}

static void say_hex(uintptr_t v) {
    char buf[32];
    int i = 31;
    buf[i] = 0;
    do {
        buf[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v && i > 2);
    buf[--i] = 'x';
    buf[--i] = '0';
    say(buf + i);
}

/* Async-signal-safe: only write(2). An unnamed task is named by its function's address (the
 * symbol lookup takes locks); the canary and stack-pointer checks, which run outside a signal
 * handler, name it by its symbol. */
static void report_overflow(const ll__stack *s, const char *how) {
    say("libloop: task ");
    const ll_task *t = s->owner;
    if (t) {
        say("#");
        say_num(t->id);
        say(" '");
        if (t->name) {
            say(t->name);
        } else {
            say("fn ");
            say_hex((uintptr_t)t->fn);
        }
        say("'");
    }
    say(" overflowed its ");
    say_num(s->size);
    say("-byte stack (");
    say(how);
    say("); give it a larger stack with ll_spawn_ex() or ll_loop_set_stack_size()\n");
}

/* The stack pointer at the fault, or 0 where we do not know how to read it. */
static uintptr_t fault_sp(void *uc) {
    const ucontext_t *u = uc;
#if defined(__x86_64__)
    return (uintptr_t)u->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)u->uc_mcontext.sp;
#else
    (void)u;
    return 0;
#endif
}

/* Only the running task can fault on a task stack, so the task to name is ll__tls_task: an
 * overflow moves its stack pointer below its stack (a frame is allocated before it is written),
 * except for a leaf function's red zone, which the fault address shows. */
static void fault_handler(int sig, siginfo_t *si, void *uc) {
    static volatile sig_atomic_t reported; /* a handler we chain to may return: fault again */
    char *addr = si->si_addr;
    ll_task *t = ll__tls_task;
    const ll__stack *s = t ? t->stack : NULL;
    uintptr_t sp = fault_sp(uc);
    if (s && !reported) {
        bool sp_out = sp && (sp < (uintptr_t)s->lo || sp > (uintptr_t)s->lo + s->size);
        const char *how = NULL;
        for (slab *sl = __atomic_load_n(&all_slabs, __ATOMIC_ACQUIRE); sl; sl = sl->gnext) {
            if (s < sl->stacks || s >= sl->stacks + sl->n) continue; /* not the task's slab */
            if (sl->guarded && addr < s->lo && addr >= s->lo - sl->guard)
                how = addr >= s->lo - page_size ? "hit the guard page"
                                                : "a frame reached into its guard region";
            else if (!sl->guarded && addr >= sl->base && addr < sl->base + sl->guard)
                how = "ran through the stacks below it into the guard region";
            break;
        }
        if (!how && sp_out) how = "its stack pointer left the stack: a frame larger than the guard";
        if (how) {
            reported = 1;
            report_overflow(s, how);
        }
    }
    /* Hand the fault on to the handler that was there before ours; with none, restore the default
     * action so that the faulting instruction, run again, ends the process with the signal. */
    struct sigaction prev = prev_segv;
    if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction) {
        prev.sa_sigaction(sig, si, uc);
    } else if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler != SIG_DFL &&
               prev.sa_handler != SIG_IGN) {
        prev.sa_handler(sig);
    } else {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, NULL);
    }
}

/* Populate the given pages in one system call, where the kernel can (Linux 5.14+ for the advice,
 * 5.10+ for process_madvise; on self with any advice since 6.13). Best effort: on failure the
 * pages fault in on first touch as before. Skipped under valgrind, which may not know the call. */
static void populate(struct iovec *iov, size_t n) {
#if defined(SYS_process_madvise) && defined(SYS_pidfd_open)
    if (RUNNING_ON_VALGRIND || n == 0) return;
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0) return;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < 1024 ? n - done : 1024; /* UIO_MAXIOV */
        if (syscall(SYS_process_madvise, pidfd, iov + done, k, MADV_POPULATE_WRITE, 0) < 0) break;
        done += k;
    }
    close(pidfd);
#else
    (void)iov, (void)n;
#endif
}

/* How a slab is laid out: large guards, one-page guards, or unguarded. A guarded slab with large
 * guards needs ~6 MiB of address space (16 x 384 KiB); where that fails (an RLIMIT_AS), the caller retries with
 * one-page guards, and from then on starts there (small_guards); where that fails too (a process near
 * vm.max_map_count), with an unguarded slab. */
typedef enum { SLAB_LARGE_GUARDS, SLAB_PAGE_GUARDS, SLAB_UNGUARDED } slab_kind;

static slab *slab_new(ll_loop *loop, ll__stackpool *pool, slab_kind kind) {
    size_t size = pool->size;
    bool guarded = false;
    const char *knob = getenv("LIBLOOP_STACK_GUARDS"); /* test knob, see the top of this file */
    bool allow_guards = kind != SLAB_UNGUARDED && !(knob && strcmp(knob, "0") == 0);
    pthread_mutex_lock(&slabs_lock);
    if (allow_guards && guard_budget >= GUARDED_STACKS) {
        guard_budget -= GUARDED_STACKS;
        guarded = true;
    }
    pthread_mutex_unlock(&slabs_lock);
    int n = guarded ? GUARDED_STACKS : UNGUARDED_STACKS;
    size_t guard = size > GUARD_MIN ? size : GUARD_MIN;
    if (kind != SLAB_LARGE_GUARDS && __atomic_load_n(&small_guards, __ATOMIC_RELAXED))
        guard = page_size;
    size_t slot = guarded ? guard + size : size;
    size_t len = slot * (size_t)n + (guarded ? 0 : guard);
    char *base = MAP_FAILED;
    slab *sl = ll__calloc(1, sizeof *sl + (size_t)n * sizeof(ll__stack));
    /* valgrind's stack ids, kept only when running under it (4 bytes a task otherwise wasted) */
    unsigned *vg = sl && RUNNING_ON_VALGRIND ? ll__calloc((size_t)n, sizeof *vg) : NULL;
    if (!sl || (RUNNING_ON_VALGRIND && !vg)) goto fail;
    /* Everything PROT_NONE first: the guards are never charged as committed memory. */
    base = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1,
                0);
    if (base == MAP_FAILED) goto fail;
    if (guarded) {
        for (int i = 0; i < n; i++)
            if (mprotect(base + (size_t)i * slot + guard, size, PROT_READ | PROT_WRITE) != 0)
                goto fail;
    } else if (mprotect(base + guard, slot * (size_t)n, PROT_READ | PROT_WRITE) != 0) {
        goto fail;
    }
    sl->base = base;
    sl->len = len;
    sl->slot = slot;
    sl->guard = guard;
    sl->guarded = guarded;
    sl->n = n;
    sl->pool = pool;
    sl->vg_id = vg;
    struct iovec iov[UNGUARDED_STACKS];
    /* The last one pushed is handed out first: stacks go out from the top of the slab down. */
    for (int i = 0; i < n; i++) {
        ll__stack *s = &sl->stacks[i];
        if (guarded) {
            s->lo = base + (size_t)i * slot + guard;
            s->size = (uint32_t)size;
        } else {
            /* The top CANARY_BYTES of each slot are the canary zone of the stack above it. */
            s->lo = base + guard + (size_t)i * slot;
            s->size = (uint32_t)(size - CANARY_BYTES);
            s->canary = i > 0 ? s->lo - CANARY_BYTES : NULL; /* slot 0 sits on the guard */
        }
        s->guarded = guarded;
        s->pool = pool;
        if (vg) vg[i] = VALGRIND_STACK_REGISTER(s->lo, s->lo + s->size);
        iov[i].iov_base = s->lo + size - page_size; /* the slot's top page: the task header */
        iov[i].iov_len = page_size;
        s->next_free = pool->free;
        pool->free = s;
        pool->nfree++;
    }
    populate(iov, (size_t)n);
    sl->next = pool->slabs;
    pool->slabs = sl;
    pthread_mutex_lock(&slabs_lock);
    sl->gnext = all_slabs;
    __atomic_store_n(&all_slabs, sl, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&slabs_lock);
    (void)loop;
    return sl;
fail:
    if (base != MAP_FAILED) munmap(base, len);
    ll__free(vg);
    ll__free(sl);
    if (guarded) {
        pthread_mutex_lock(&slabs_lock);
        guard_budget += GUARDED_STACKS;
        pthread_mutex_unlock(&slabs_lock);
    }
    return NULL;
}

static size_t round_size(size_t size) {
    if (size < 16384) size = 16384;
    return (size + page_size - 1) & ~(page_size - 1);
}

static void release(ll__stack *s) {
    /* keep the address space, return the memory */
    madvise(s->lo, s->size, MADV_DONTNEED); /* zero-filled again: the canary holds */
}

/* Release the free stacks that stayed unused for the whole interval, beyond the cache. */
static void on_trim(struct ev_loop *ev, ev_timer *w, int revents) {
    (void)revents;
    ll__stackpool *pool = w->data;
    if (pool->low > CACHE_STACKS + pool->nreleased) {
        size_t target = pool->low - CACHE_STACKS; /* release bottom entries [nreleased, target) */
        size_t skip = pool->nfree - target;       /* head entries to keep */
        ll__stack *s = pool->free;
        for (size_t i = 0; i < skip; i++) s = s->next_free;
        for (size_t i = target; i > pool->nreleased; i--, s = s->next_free) release(s);
        pool->nreleased = target;
    }
    pool->low = pool->nfree;
    if (pool->nfree - pool->nreleased <= CACHE_STACKS) {
        ev_ref(ev); /* the timer never keeps the loop alive */
        ev_timer_stop(ev, w);
    }
}

ll__stack *ll__stack_get(ll_loop *loop, size_t size) {
    if (size > MAX_STACK) return NULL; /* reported as a stack that cannot be mapped */
    size = round_size(size);
    ll__stackpool *pool = loop->stackpools;
    while (pool && pool->size != size) pool = pool->next;
    if (!pool) {
        pool = ll__calloc(1, sizeof *pool);
        if (!pool) return NULL;
        pool->size = size;
        ev_timer_init(&pool->trim, on_trim, TRIM_SECS, TRIM_SECS);
        pool->trim.data = pool;
        pool->next = loop->stackpools;
        loop->stackpools = pool;
    }
    if (!pool->free) {
        slab *sl = NULL;
        if (!__atomic_load_n(&small_guards, __ATOMIC_RELAXED)) {
            sl = slab_new(loop, pool, SLAB_LARGE_GUARDS);
            if (!sl) __atomic_store_n(&small_guards, true, __ATOMIC_RELAXED);
        }
        if (!sl) sl = slab_new(loop, pool, SLAB_PAGE_GUARDS);
        if (!sl) sl = slab_new(loop, pool, SLAB_UNGUARDED);
        if (!sl) return NULL;
    }
    ll__stack *s = pool->free;
    pool->free = s->next_free;
    pool->nfree--;
    if (pool->nfree < pool->low) pool->low = pool->nfree;
    if (pool->nfree < pool->nreleased) pool->nreleased = pool->nfree;
    s->next_free = NULL;
    if (s->guarded) loop->stacks_guarded++;
    else loop->stacks_unguarded++;
    return s;
}

bool ll__stack_canary_ok(const ll__stack *s) {
    const uint64_t *w = (const uint64_t *)(const void *)s->canary;
    uint64_t acc = 0;
    for (size_t i = 0; i < CANARY_BYTES / sizeof *w; i++) acc |= w[i];
    return acc == 0;
}

void ll__stack_put(ll_loop *loop, ll__stack *s) {
    ll__stackpool *pool = s->pool;
    /* A task destroyed while suspended never returned through its frames, so ASan still has their
     * redzones poisoned: the next task on this stack would trip over them. */
    STACK_UNPOISON(s->lo, s->size);
    s->owner = NULL;
    if (s->guarded) loop->stacks_guarded--;
    else loop->stacks_unguarded--;
    s->next_free = pool->free;
    pool->free = s;
    pool->nfree++;
    if (pool->nfree - pool->nreleased > CACHE_STACKS && !ev_is_active(&pool->trim)) {
        pool->low = pool->nfree;
        ev_timer_again(loop->ev, &pool->trim);
        ev_unref(loop->ev);
    }
}

void ll__stack_pools_free(ll_loop *loop) {
    ll__stackpool *pool = loop->stackpools;
    while (pool) {
        ll__stackpool *pn = pool->next;
        if (ev_is_active(&pool->trim)) {
            ev_ref(loop->ev);
            ev_timer_stop(loop->ev, &pool->trim);
        }
        slab *sl = pool->slabs;
        while (sl) {
            slab *sn = sl->next;
            for (int i = 0; sl->vg_id && i < sl->n; i++) VALGRIND_STACK_DEREGISTER(sl->vg_id[i]);
            pthread_mutex_lock(&slabs_lock);
            slab **pp = (slab **)&all_slabs;
            while (*pp && *pp != sl) pp = &(*pp)->gnext;
            if (*pp) __atomic_store_n(pp, sl->gnext, __ATOMIC_RELEASE);
            if (sl->guarded) guard_budget += GUARDED_STACKS;
            pthread_mutex_unlock(&slabs_lock);
            munmap(sl->base, sl->len);
            ll__free(sl->vg_id);
            ll__free(sl);
            sl = sn;
        }
        ll__free(pool);
        pool = pn;
    }
    loop->stackpools = NULL;
}
