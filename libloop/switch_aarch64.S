/* switch_aarch64.S — ll__switch(void **save_sp, void *new_sp) for AAPCS64: saves x19-x30 and
 * d8-d15 in a 176-byte frame on the current stack, stores sp in *save_sp, and restores the same
 * frame from new_sp. */
#if defined(__aarch64__) && !defined(LL_USE_UCONTEXT)
    .text
    .globl ll__switch
    .hidden ll__switch
    .type ll__switch,%function
    .p2align 4
ll__switch:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x2, sp
    str x2, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    ret
    .size ll__switch,.-ll__switch

    .globl ll__trampoline
    .hidden ll__trampoline
    .type ll__trampoline,%function
    .p2align 4
ll__trampoline:
    mov x0, x19
    blr x20
    brk #0
    .size ll__trampoline,.-ll__trampoline
#endif
    .section .note.GNU-stack,"",%progbits
