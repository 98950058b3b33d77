/* switch_x86_64.S — the first frame of a task on x86-64. The switch itself is inline assembly in
 * switch.h (ll__switch_to): it pops a resume address and rbp from the new stack and jumps. A new
 * stack (ll__switch_make) holds ll__trampoline as the resume address, a zero rbp, then the entry's
 * argument and the entry function, which the trampoline pops before calling the entry. */
#if defined(__x86_64__) && !defined(LL_USE_UCONTEXT)
    .text
    .globl ll__trampoline
    .hidden ll__trampoline
    .type ll__trampoline,@function
    .p2align 4
ll__trampoline:
    .cfi_startproc
    .cfi_undefined rip
    popq %rdi
    popq %rax
    andq $-16, %rsp
    callq *%rax
    ud2
    .cfi_endproc
    .size ll__trampoline,.-ll__trampoline
#endif
    .section .note.GNU-stack,"",@progbits
