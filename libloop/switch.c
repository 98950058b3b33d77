/*
 * switch.c — sets up a task's first frame for the assembly switch, or wraps ucontext.
 *
 * Stack layout for the assembly switch. x86-64: the new stack holds what ll__switch_to pops (the
 * resume address, ll__trampoline, and rbp), then the entry's argument and the entry function, which
 * the trampoline pops before aligning the stack and calling the entry. aarch64: the callee-saved
 * registers that ll__switch pops, with the entry function and its argument in two of them and
 * ll__trampoline as the return address. The entry never returns.
 */
#include <stdint.h>
#include <string.h>
#include "switch.h"

#ifdef LL_USE_UCONTEXT

/* makecontext passes only ints: the context's address travels as two halves. */
static void uc_start(unsigned hi, unsigned lo) {
    ll__switch_ctx *c = (ll__switch_ctx *)(((uintptr_t)hi << 16 << 16) | (uintptr_t)lo);
    c->entry(c->arg);
}

void ll__switch_make(ll__switch_ctx *c, void *lo, size_t size, void (*entry)(void *), void *arg) {
    uintptr_t p = (uintptr_t)c;
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = lo;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    c->entry = entry;
    c->arg = arg;
    makecontext(&c->uc, (void (*)(void))uc_start, 2, (unsigned)(p >> 16 >> 16), (unsigned)p);
}

void ll__switch_to(ll__switch_ctx *from, ll__switch_ctx *to) {
    swapcontext(&from->uc, &to->uc);
}

#else

void ll__trampoline(void);

void ll__switch_make(ll__switch_ctx *c, void *lo, size_t size, void (*entry)(void *), void *arg) {
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* popped by ll__switch_to: the resume address and rbp; then by ll__trampoline: arg, entry */
    void **sp = (void **)top;
    *--sp = NULL;                      /* padding: keeps the layout 16-byte aligned */
    *--sp = (void *)entry;
    *--sp = arg;
    *--sp = NULL;                      /* rbp */
    *--sp = (void *)ll__trampoline;    /* the resume address */
    c->sp = sp;
#elif defined(__aarch64__)
    /* a 176-byte frame: x19..x30 then d8..d15, see switch_aarch64.S */
    void **sp = (void **)(top - 176);
    memset(sp, 0, 176);
    sp[0] = arg;                       /* x19 */
    sp[1] = (void *)entry;             /* x20 */
    sp[10] = NULL;                     /* x29 */
    sp[11] = (void *)ll__trampoline;   /* x30 */
    c->sp = sp;
#endif
}

#endif
