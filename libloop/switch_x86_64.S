/* switch_x86_64.S — ll__switch(void **save_sp, void *new_sp): saves the System V callee-saved
 * registers on the current stack, stores the stack pointer in *save_sp and resumes new_sp.
 * The caller-saved registers need no saving: ll__switch is an ordinary call for the compiler. */
#if defined(__x86_64__) && !defined(LL_USE_UCONTEXT)
    .text
    .globl ll__switch
    .hidden ll__switch
    .type ll__switch,@function
    .p2align 4
ll__switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ll__switch,.-ll__switch

    .globl ll__trampoline
    .hidden ll__trampoline
    .type ll__trampoline,@function
    .p2align 4
ll__trampoline:
    movq %r12, %rdi
    andq $-16, %rsp
    callq *%r13
    ud2
    .size ll__trampoline,.-ll__trampoline
#endif
    .section .note.GNU-stack,"",@progbits
