/*
 * cluster_internal.h — what the Redis Cluster files share (cluster_keys.c: the sans-I/O part,
 * cluster.c: the adapter). Never installed.
 */
#ifndef LL_REDIS_CLUSTER_INTERNAL_H
#define LL_REDIS_CLUSTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#define LL_CLUSTER_SLOTS 16384

/* How a command's keys are laid out. */
typedef enum {
    KEYS_NONE,       /* no key: any master */
    KEYS_FIRST,      /* argv[1] */
    KEYS_TWO,        /* argv[1], argv[2] (RENAME, SMOVE, LMOVE, COPY, ...) */
    KEYS_ALL,        /* argv[1..] (DEL, MGET, EXISTS, ...) */
    KEYS_ALL_BUT_LAST, /* argv[1..argc-2] (BLPOP, BRPOP: the last is the timeout) */
    KEYS_PAIRS,      /* argv[1], argv[3], ... (MSET, MSETNX) */
    KEYS_NUMKEYS     /* argv[2] = numkeys, keys argv[3..] (EVAL, EVALSHA, FCALL) */
} ll__keys_kind;

/* How a cross-slot command may be split. */
typedef enum { SPLIT_NONE, SPLIT_MGET, SPLIT_SUM, SPLIT_MSET } ll__split_kind;

typedef struct ll__cmd_info {
    ll__keys_kind keys;
    ll__split_kind split;
    bool readonly;   /* may be served by a replica under READONLY */
} ll__cmd_info;

/* The layout of argv[0] (case-insensitive). */
void ll__cluster_cmd_info(const char *name, size_t len, ll__cmd_info *out);
/* The slot of every key: -1 (no key), -2 (keys in several slots: *slot_a and *slot_b say two of
 * them), -3 (malformed: numkeys missing or too large, MSET with an odd count), else the slot. */
int ll__cluster_command_slot(int argc, const char *const *argv, const size_t *lens,
                             const ll__cmd_info *info, int *slot_a, int *slot_b);
/* Parse "MOVED 3999 127.0.0.1:6381" / "ASK ...": true and the slot and "host:port" (at most
 * addr_n bytes with its NUL). */
bool ll__cluster_parse_redirect(const char *err, const char *word, int *slot, char *addr, size_t addr_n);

#endif
