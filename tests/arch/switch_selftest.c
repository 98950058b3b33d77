/*
 * switch_selftest.c — the context switch alone, without libev or the rest of libloop, so it can be
 * cross-compiled and run under qemu for another architecture (make check-aarch64). It checks that
 * values survive switches in callee-saved integer and floating-point registers, that a coroutine
 * can call deep and return, and that the stack is 16-byte aligned on entry.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "switch.h"

static ll__switch_ctx main_ctx, co_ctx;
static volatile long shared;
static int failures;

#define CHECK(c)                                                                \
    do {                                                                        \
        if (!(c)) {                                                             \
            fprintf(stderr, "switch_selftest: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                         \
        }                                                                       \
    } while (0)

static long deep(int n) {
    volatile char pad[64];
    pad[0] = (char)n;
    return n == 0 ? pad[0] : deep(n - 1) + 1;
}

static void co_entry(void *arg) {
    long *counter = arg;
    _Alignas(16) volatile char probe[16]; /* misplaced if the entry stack was misaligned */
    probe[0] = 0;
    CHECK(((uintptr_t)probe & 15) == 0);
    double f = 1.5; /* kept across switches: lives in a callee-saved register or on our stack */
    for (int i = 0; i < 1000; i++) {
        (*counter)++;
        shared = i;
        f *= 1.0001;
        ll__switch_to(&co_ctx, &main_ctx);
    }
    CHECK(deep(1000) == 1000);
    CHECK(f > 1.5 && f < 1.8);
    *counter = -1;
    ll__switch_to(&co_ctx, &main_ctx);
    abort(); /* never resumed */
}

int main(void) {
    size_t size = 256 * 1024;
    void *stack = malloc(size);
    long counter = 0;
    ll__switch_make(&co_ctx, stack, size, co_entry, &counter);
    register double keep = 3.25; /* the loop side's floating-point state survives too */
    long local = 7;
    for (int i = 0; i < 1000; i++) {
        ll__switch_to(&main_ctx, &co_ctx);
        CHECK(counter == i + 1);
        CHECK(shared == i);
        CHECK(keep == 3.25 && local == 7);
        keep = keep * 1.0;
    }
    ll__switch_to(&main_ctx, &co_ctx);
    CHECK(counter == -1);
    free(stack);
    printf("switch_selftest: %s (%s)\n", failures ? "FAILED" : "ok",
#if defined(LL_USE_UCONTEXT)
           "ucontext"
#elif defined(__aarch64__)
           "aarch64 assembly"
#else
           "x86-64 assembly"
#endif
    );
    return failures ? 1 : 0;
}
