/*
 * switch.h — the context switch between the loop and a task.
 *
 * On x86-64 the switch is inline assembly below (a jump between stacks, see ll__switch_to); on
 * aarch64 a few instructions of assembly that save the callee-saved registers on the old stack and
 * load them from the new one (switch_aarch64.S): no system call, no signal mask. Elsewhere, or with
 * -DLL_USE_UCONTEXT, ucontext is used.
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
#elif defined(__x86_64__)
/* Inline assembly, no call and no `ret`: the switch saves the resume address and the frame pointer
 * on the old stack and jumps to the other side's resume address (an indirect jump, which the CPU
 * predicts from its history). A `ret` across stacks is mispredicted (the return stack buffer holds
 * the other stack's calls) and so is every return after it on the same side; without a call or a
 * return in the switch, the return stack stays in step with each side's own calls: a task that
 * awaited returns from ll_await to the address its call pushed, because the loop side only makes
 * balanced calls meanwhile. (make bench-core (a): 6 mispredicted returns per op became none.)
 * Every register except rsp and rbp is declared clobbered, so the compiler keeps nothing live in
 * one across the switch (the other side runs arbitrary code); rbp is saved by hand because it may
 * be the frame pointer. The 128-byte red zone below rsp is skipped before pushing (a leaf's data
 * may live there). mxcsr and the x87 control word are not switched (they were not before either:
 * a task must not leave them changed). */
static inline __attribute__((always_inline)) void ll__switch_to(ll__switch_ctx *from,
                                                                ll__switch_ctx *to) {
    void **save = &from->sp;
    void *sp = to->sp;
    __asm__ volatile("leaq -128(%%rsp), %%rsp\n\t"
                     "pushq %%rbp\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "movq %%rsp, (%%rdi)\n\t"
                     "movq %%rsi, %%rsp\n\t"
                     "popq %%rax\n\t"
                     "popq %%rbp\n\t"
                     "jmpq *%%rax\n"
                     "1:\n\t"
                     "leaq 128(%%rsp), %%rsp"
                     : "+D"(save), "+S"(sp)
                     :
                     : "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
                       "r15", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                       "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
#ifdef __AVX512F__
                       "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
                       "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31",
#endif
                       "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)",
                       "memory", "cc");
}
#else
/* Inline: every call level around a switch is a return the CPU mispredicts after it (the return
 * stack buffer holds the other stack's calls), so the wrapper costs a mispredict on each side. */
void ll__switch(void **save_sp, void *new_sp);
static inline void ll__switch_to(ll__switch_ctx *from, ll__switch_ctx *to) {
    ll__switch(&from->sp, to->sp);
}
#endif

#endif
