/*
 * fuzz.h — what the fuzz targets in tests/fuzz/ share. Each fuzz_<client>_<what>.c defines
 * LLVMFuzzerTestOneInput (and may define LLVMFuzzerInitialize); it is linked either with libFuzzer
 * (`make fuzz`: clang -fsanitize=fuzzer,address,undefined) or with replay.c, which runs every file
 * of the target's corpus once in the normal build (`make check`), so an input that crashed once
 * stays fixed. A target checks invariants with FUZZ_CHECK, which aborts: libFuzzer then saves the
 * input, and the replay run fails.
 */
#ifndef LL_FUZZ_H
#define LL_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(c)                                                                       \
    do {                                                                                    \
        if (!(c)) {                                                                         \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #c);  \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* A small deterministic generator (xorshift64*), seeded from the input so a run is repeatable. */
typedef struct fuzz_rng {
    uint64_t s;
} fuzz_rng;

static inline void fuzz_rng_seed(fuzz_rng *r, const uint8_t *data, size_t size) {
    uint64_t h = 1469598103934665603ull ^ size;
    for (size_t i = 0; i < size && i < 64; i++) h = (h ^ data[i]) * 1099511628211ull;
    r->s = h ? h : 1;
}

static inline uint64_t fuzz_rng_next(fuzz_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}

/* 1..max */
static inline size_t fuzz_rng_len(fuzz_rng *r, size_t max) {
    return max ? 1 + (size_t)(fuzz_rng_next(r) % max) : 0;
}

/* FNV-1a over a byte run, continuing from h. */
static inline uint64_t fuzz_hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* A NUL-terminated copy of data[0..n) (malloc; abort on out of memory: a harness failure). */
static inline char *fuzz_strndup(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    for (size_t i = 0; i < n; i++) s[i] = (char)data[i];
    s[n] = 0;
    return s;
}

#endif
