/*
 * replay.c — runs a fuzz target over its corpus without libFuzzer: every regular file under the
 * directories (or files) named on the command line, or under the target's own corpus directory
 * (FUZZ_CORPUS, compiled in) when none is named. make check runs it for every target, so each input
 * that once crashed a target — kept in tests/fuzz/corpus/<target>/ — is replayed by every build,
 * sanitizers included. Exit status 0 when every input ran; a failed invariant aborts.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz.h"

#ifndef FUZZ_CORPUS
#error "FUZZ_CORPUS must name the target's corpus directory"
#endif

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static long ran;

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) return -1;
    /* an exact-size copy, so ASan sees a read past the input */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    ran++;
    return 0;
}

static int run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return S_ISREG(st.st_mode) ? run_file(path) : 0;
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort); /* sorted: a repeatable order */
    if (n < 0) {
        perror(path);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, names[i]->d_name);
            if (run_path(sub) != 0) rc = -1;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (run_path(argv[i]) != 0) rc = 1;
    } else if (run_path(FUZZ_CORPUS) != 0) {
        rc = 1;
    }
    printf("%s: %ld inputs replayed%s\n", argc > 1 ? argv[1] : FUZZ_CORPUS, ran,
           rc ? ", some could not be read" : "");
    return rc || ran == 0; /* an empty corpus means the replay tests nothing */
}
