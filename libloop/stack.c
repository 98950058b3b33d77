/*
 * stack.c — task stacks: mmap'd slabs, guard pages within a mapping budget, overflow reports.
 *
 * Design notes:
 * - A guard page below each stack turns an overflow into a fault at the first byte past the end. But
 *   Linux counts every mapping with different protection as a separate VMA, and a guarded stack costs
 *   two; vm.max_map_count defaults to 65530. 100,000 guarded stacks would need 200,000 VMAs.
 * - So stacks come from slabs of SLAB_STACKS stacks. While the process stays within a guard budget
 *   (a quarter of vm.max_map_count, i.e. ~8,000 guarded stacks by default) a slab has a guard page
 *   below every stack. Past the budget, slabs are one mapping with a single guard page at the bottom,
 *   and every stack has a canary zone at its low end, checked each time its task switches out: an
 *   overflow into the neighbour is reported, naming the task, before any other task runs.
 * - On a fault in a guard page, a SIGSEGV handler on an alternate signal stack names the task whose
 *   stack overflowed, then lets the default action kill the process (an overflow cannot be undone).
 *   In an unguarded slab a runaway recursion runs through the stacks below its own into the slab's
 *   single guard page: the overflowing task is then the one running on the faulting thread.
 * - Test knob: LIBLOOP_STACK_GUARDS=0 in the environment makes every new slab unguarded (canary
 *   path), so tests can reach it without creating ~8,000 stacks first. Read at each slab creation.
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
#endif

#define SLAB_STACKS 16
#define CANARY_BYTES 256
#define CACHE_STACKS 64
#define TRIM_SECS 1.0
/* The canary is zero, the value the kernel gives fresh and released pages: it costs no write, and
 * checking it reads the kernel's shared zero page, so an idle stack's bottom page never becomes
 * resident (a 0xA5 canary cost one page per task: 806 MiB instead of ~450 MiB for 100,000 sleeping
 * tasks, make bench-core). The price is that an overflow writing only zeros into the zone goes
 * unseen; a runaway call chain writes return addresses and frame pointers, which are not zero. */
static const unsigned char CANARY = 0;

typedef struct slab {
    char *base;
    size_t len, slot;   /* slot = guard (if any) + stack */
    bool guarded;
    struct slab *next;   /* the pool's slabs */
    struct slab *gnext;  /* every slab of the process, for the fault handler */
    struct ll__stackpool *pool;
    ll__stack stacks[SLAB_STACKS];
    unsigned vg_id[SLAB_STACKS];
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

static void report_overflow(const ll__stack *s, const char *how) {
    say("libloop: task ");
    if (s->owner) {
        say("#");
        say_num(s->owner->id);
        say(" '");
        say(s->owner->name ? s->owner->name : "?");
        say("'");
    }
    say(" overflowed its ");
    say_num(s->size);
    say("-byte stack (");
    say(how);
    say("); give it a larger stack with ll_spawn_ex() or ll_loop_set_stack_size()\n");
}

static void fault_handler(int sig, siginfo_t *si, void *uc) {
    static volatile sig_atomic_t reported; /* a handler we chain to may return: fault again */
    char *addr = si->si_addr;
    for (slab *sl = __atomic_load_n(&all_slabs, __ATOMIC_ACQUIRE); sl; sl = sl->gnext) {
        if (addr < sl->base || addr >= sl->base + sl->len) continue;
        if (reported) break;
        if (!sl->guarded) {
            /* Only the slab's bottom page is a guard. The task that ran into it is the one
             * running on this thread; its own ll_task, at the top of its stack, is intact. */
            ll_task *t = ll__tls_task;
            const ll__stack *s = t ? t->stack : NULL;
            uintptr_t first = (uintptr_t)sl->stacks, end = (uintptr_t)(sl->stacks + SLAB_STACKS);
            if (addr < sl->base + page_size && s && (uintptr_t)s >= first && (uintptr_t)s < end) {
                reported = 1;
                report_overflow(s, "ran through the stacks below it into the guard page");
            }
            break;
        }
        size_t idx = (size_t)(addr - sl->base) / sl->slot;
        if (idx >= SLAB_STACKS) idx = SLAB_STACKS - 1;
        ll__stack *s = &sl->stacks[idx];
        if (addr < s->lo) {
            reported = 1;
            report_overflow(s, "hit the guard page");
        }
        break;
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

static slab *slab_new(ll_loop *loop, ll__stackpool *pool) {
    size_t size = pool->size;
    bool guarded = false;
    const char *knob = getenv("LIBLOOP_STACK_GUARDS"); /* test knob, see the top of this file */
    bool allow_guards = !(knob && strcmp(knob, "0") == 0);
    pthread_mutex_lock(&slabs_lock);
    if (allow_guards && guard_budget >= SLAB_STACKS) {
        guard_budget -= SLAB_STACKS;
        guarded = true;
    }
    pthread_mutex_unlock(&slabs_lock);
    size_t slot = guarded ? size + page_size : size;
    size_t len = slot * SLAB_STACKS + (guarded ? 0 : page_size);
    slab *sl = ll__calloc(1, sizeof *sl);
    if (!sl) goto fail;
    char *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) goto fail;
    if (guarded) {
        for (int i = 0; i < SLAB_STACKS; i++) {
            if (mprotect(base + (size_t)i * slot, page_size, PROT_NONE) != 0) {
                munmap(base, len);
                goto fail;
            }
        }
    } else if (mprotect(base, page_size, PROT_NONE) != 0) {
        munmap(base, len);
        goto fail;
    }
    sl->base = base;
    sl->len = len;
    sl->slot = slot;
    sl->guarded = guarded;
    sl->pool = pool;
    for (int i = 0; i < SLAB_STACKS; i++) {
        ll__stack *s = &sl->stacks[i];
        s->lo = guarded ? base + (size_t)i * slot + page_size : base + page_size + (size_t)i * slot;
        s->size = size;
        s->guarded = guarded;
        s->pool = pool;
        sl->vg_id[i] = VALGRIND_STACK_REGISTER(s->lo, s->lo + size);
        s->next_free = pool->free;
        pool->free = s;
        pool->nfree++;
    }
    sl->next = pool->slabs;
    pool->slabs = sl;
    pthread_mutex_lock(&slabs_lock);
    sl->gnext = all_slabs;
    __atomic_store_n(&all_slabs, sl, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&slabs_lock);
    (void)loop;
    return sl;
fail:
    ll__free(sl);
    if (guarded) {
        pthread_mutex_lock(&slabs_lock);
        guard_budget += SLAB_STACKS;
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
    if (!pool->free && !slab_new(loop, pool)) return NULL;
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

bool ll__stack_intact(const ll__stack *s) {
    if (s->guarded) return true;
    for (size_t i = 0; i < CANARY_BYTES; i++)
        if ((unsigned char)s->lo[i] != CANARY) return false;
    return true;
}

void ll__stack_put(ll_loop *loop, ll__stack *s) {
    ll__stackpool *pool = s->pool;
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
            for (int i = 0; i < SLAB_STACKS; i++) VALGRIND_STACK_DEREGISTER(sl->vg_id[i]);
            pthread_mutex_lock(&slabs_lock);
            slab **pp = (slab **)&all_slabs;
            while (*pp && *pp != sl) pp = &(*pp)->gnext;
            if (*pp) __atomic_store_n(pp, sl->gnext, __ATOMIC_RELEASE);
            if (sl->guarded) guard_budget += SLAB_STACKS;
            pthread_mutex_unlock(&slabs_lock);
            munmap(sl->base, sl->len);
            ll__free(sl);
            sl = sn;
        }
        ll__free(pool);
        pool = pn;
    }
    loop->stackpools = NULL;
}
