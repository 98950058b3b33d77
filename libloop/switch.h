/*
 * switch.h — the context switch between the loop and a task.
 *
 * On x86-64 and aarch64 the switch is a few instructions of assembly that save the callee-saved
 * registers on the old stack and load them from the new one (switch_x86_64.S, switch_aarch64.S):
 * no system call, no signal mask. Elsewhere, or with -DLL_USE_UCONTEXT, ucontext is used.
 */
#ifndef LIBLOOP_SWITCH_H
#define LIBLOOP_SWITCH_H

#include <stddef.h>

#if !defined(LL_USE_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define LL_USE_UCONTEXT 1
#endif

#ifdef LL_USE_UCONTEXT
#include <ucontext.h>
typedef struct { ucontext_t uc; void (*entry)(void *); void *arg; } ll__switch_ctx;
#else
typedef struct { void *sp; } ll__switch_ctx;
#endif

/* Prepare `c` so that the first switch to it runs entry(arg) on the stack [lo, lo + size).
 * entry must never return. */
void ll__switch_make(ll__switch_ctx *c, void *lo, size_t size, void (*entry)(void *), void *arg);
/* Save the current context in `from` and continue in `to`. */
#ifdef LL_USE_UCONTEXT
void ll__switch_to(ll__switch_ctx *from, ll__switch_ctx *to);
#else
/* Inline: every call level around a switch is a return the CPU mispredicts after it (the return
 * stack buffer holds the other stack's calls), so the wrapper costs a mispredict on each side. */
void ll__switch(void **save_sp, void *new_sp);
static inline void ll__switch_to(ll__switch_ctx *from, ll__switch_ctx *to) {
    ll__switch(&from->sp, to->sp);
}
#endif

#endif
