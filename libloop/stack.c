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
 * - Freed stacks are kept per loop for reuse; beyond a small cache their pages are returned to the
 *   kernel with MADV_DONTNEED, so a burst of tasks does not pin its peak memory.
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
static const unsigned char CANARY = 0xA5;

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
    slab *slabs;
    struct ll__stackpool *next;
} ll__stackpool;

/* Every slab of every loop, for the fault handler (which must not lock). Slabs are prepended with
 * a release store; an unmapped slab is unlinked under the lock and its memory freed after. */
static slab *_Atomic all_slabs;
static pthread_mutex_t slabs_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t page_size;
static long guard_budget = -1;   /* guarded stacks we may still create */
static struct sigaction prev_segv;
static bool handler_installed;

static void fault_handler(int sig, siginfo_t *si, void *uc);

static void global_init(void) {
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    long maxmap = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &maxmap) != 1) maxmap = 65530;
        fclose(f);
    }
    guard_budget = maxmap / 8; /* two VMAs each: a quarter of the limit */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    struct sigaction old;
    sigaction(SIGSEGV, NULL, &old);
    /* Respect a handler someone else installed (a sanitizer reports overflows itself). */
    if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL) {
        if (sigaction(SIGSEGV, &sa, &prev_segv) == 0) handler_installed = true;
    }
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Each thread that runs a loop needs an alternate signal stack, or the overflow report itself
 * would fault on the exhausted stack. */
void ll__stack_thread_init(void) {
    pthread_once(&once, global_init);
    static _Thread_local bool done;
    if (done) return;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) {
        done = true;
        return;
    }
    size_t sz = 64 * 1024;
    void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return;
    stack_t ss = {.ss_sp = mem, .ss_size = sz, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) munmap(mem, sz);
    done = true; /* the mapping lives as long as the thread: the kernel reclaims it */
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
    (void)uc;
    char *addr = si->si_addr;
    for (slab *sl = __atomic_load_n(&all_slabs, __ATOMIC_ACQUIRE); sl; sl = sl->gnext) {
        if (addr < sl->base || addr >= sl->base + sl->len) continue;
        size_t idx = (size_t)(addr - sl->base) / sl->slot;
        if (idx >= SLAB_STACKS) idx = SLAB_STACKS - 1;
        ll__stack *s = &sl->stacks[idx];
        if (addr < s->lo) report_overflow(s, "hit the guard page");
        break;
    }
    /* Let the default action end the process with the signal. */
    sigaction(sig, &prev_segv, NULL);
}

static slab *slab_new(ll_loop *loop, ll__stackpool *pool) {
    size_t size = pool->size;
    bool guarded = false;
    pthread_mutex_lock(&slabs_lock);
    if (guard_budget >= SLAB_STACKS) {
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
        if (!guarded) memset(s->lo, CANARY, CANARY_BYTES);
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

ll__stack *ll__stack_get(ll_loop *loop, size_t size) {
    size = round_size(size);
    ll__stackpool *pool = loop->stackpools;
    while (pool && pool->size != size) pool = pool->next;
    if (!pool) {
        pool = ll__calloc(1, sizeof *pool);
        if (!pool) return NULL;
        pool->size = size;
        pool->next = loop->stackpools;
        loop->stackpools = pool;
    }
    if (!pool->free && !slab_new(loop, pool)) return NULL;
    ll__stack *s = pool->free;
    pool->free = s->next_free;
    pool->nfree--;
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
    if (pool->nfree >= CACHE_STACKS) {
        /* keep the address space, return the memory */
        madvise(s->lo, s->size, MADV_DONTNEED);
        if (!s->guarded) memset(s->lo, CANARY, CANARY_BYTES);
    }
    s->next_free = pool->free;
    pool->free = s;
    pool->nfree++;
}

void ll__stack_pools_free(ll_loop *loop) {
    ll__stackpool *pool = loop->stackpools;
    while (pool) {
        ll__stackpool *pn = pool->next;
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
