/*
 * cluster_keys.c — the sans-I/O half of Redis Cluster support: hash slots (CRC16-XMODEM modulo
 * 16384, with {hash tags}), where a command's keys are, and parsing MOVED/ASK.
 *
 * Where the keys are comes from a small table of the commands whose layout is not "the key is
 * argv[1]", rather than from COMMAND (which would cost a round trip per node and parse a large
 * reply): a command missing here is treated as single-key at argv[1], the case of nearly every
 * data command. Commands with no key at all (PING, INFO, ...) are listed too.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cluster_internal.h"
#include "libloop/redis_cluster.h"

static unsigned crc16(const char *buf, size_t len) {
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)buf[i] << 8;
        for (int b = 0; b < 8; b++) crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

LL_EXPORT unsigned ll_redis_cluster_keyslot(const char *key, size_t len) {
    if (!key) return 0;
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) return crc16(open + 1, (size_t)(close - open - 1)) & 16383;
    }
    return crc16(key, len) & 16383;
}

typedef struct entry {
    const char *name;
    ll__cmd_info info;
} entry;

static const entry table[] = {
    /* no key */
    {"PING", {KEYS_NONE, SPLIT_NONE, true}}, {"ECHO", {KEYS_NONE, SPLIT_NONE, true}},
    {"INFO", {KEYS_NONE, SPLIT_NONE, true}}, {"TIME", {KEYS_NONE, SPLIT_NONE, true}},
    {"DBSIZE", {KEYS_NONE, SPLIT_NONE, true}}, {"CLUSTER", {KEYS_NONE, SPLIT_NONE, false}},
    {"CONFIG", {KEYS_NONE, SPLIT_NONE, false}}, {"CLIENT", {KEYS_NONE, SPLIT_NONE, false}},
    {"COMMAND", {KEYS_NONE, SPLIT_NONE, true}}, {"SCRIPT", {KEYS_NONE, SPLIT_NONE, false}},
    {"FUNCTION", {KEYS_NONE, SPLIT_NONE, false}}, {"WAIT", {KEYS_NONE, SPLIT_NONE, false}},
    {"PUBLISH", {KEYS_NONE, SPLIT_NONE, false}}, {"RANDOMKEY", {KEYS_NONE, SPLIT_NONE, true}},
    {"LASTSAVE", {KEYS_NONE, SPLIT_NONE, true}}, {"MEMORY", {KEYS_NONE, SPLIT_NONE, true}},
    {"SLOWLOG", {KEYS_NONE, SPLIT_NONE, true}}, {"LATENCY", {KEYS_NONE, SPLIT_NONE, true}},
    /* several keys: split where the result can be combined */
    {"MGET", {KEYS_ALL, SPLIT_MGET, true}}, {"DEL", {KEYS_ALL, SPLIT_SUM, false}},
    {"UNLINK", {KEYS_ALL, SPLIT_SUM, false}}, {"EXISTS", {KEYS_ALL, SPLIT_SUM, true}},
    {"TOUCH", {KEYS_ALL, SPLIT_SUM, true}}, {"MSET", {KEYS_PAIRS, SPLIT_MSET, false}},
    {"MSETNX", {KEYS_PAIRS, SPLIT_NONE, false}}, {"WATCH", {KEYS_ALL, SPLIT_NONE, false}},
    {"SUNION", {KEYS_ALL, SPLIT_NONE, true}}, {"SINTER", {KEYS_ALL, SPLIT_NONE, true}},
    {"SDIFF", {KEYS_ALL, SPLIT_NONE, true}}, {"SUNIONSTORE", {KEYS_ALL, SPLIT_NONE, false}},
    {"SINTERSTORE", {KEYS_ALL, SPLIT_NONE, false}}, {"SDIFFSTORE", {KEYS_ALL, SPLIT_NONE, false}},
    {"PFCOUNT", {KEYS_ALL, SPLIT_NONE, true}}, {"PFMERGE", {KEYS_ALL, SPLIT_NONE, false}},
    {"RENAME", {KEYS_TWO, SPLIT_NONE, false}}, {"RENAMENX", {KEYS_TWO, SPLIT_NONE, false}},
    {"SMOVE", {KEYS_TWO, SPLIT_NONE, false}}, {"RPOPLPUSH", {KEYS_TWO, SPLIT_NONE, false}},
    {"LMOVE", {KEYS_TWO, SPLIT_NONE, false}}, {"COPY", {KEYS_TWO, SPLIT_NONE, false}},
    {"BLPOP", {KEYS_ALL_BUT_LAST, SPLIT_NONE, false}}, {"BRPOP", {KEYS_ALL_BUT_LAST, SPLIT_NONE, false}},
    {"EVAL", {KEYS_NUMKEYS, SPLIT_NONE, false}}, {"EVALSHA", {KEYS_NUMKEYS, SPLIT_NONE, false}},
    {"EVAL_RO", {KEYS_NUMKEYS, SPLIT_NONE, true}}, {"EVALSHA_RO", {KEYS_NUMKEYS, SPLIT_NONE, true}},
    {"FCALL", {KEYS_NUMKEYS, SPLIT_NONE, false}}, {"FCALL_RO", {KEYS_NUMKEYS, SPLIT_NONE, true}},
    /* single key, read-only (replica reads) */
    {"GET", {KEYS_FIRST, SPLIT_NONE, true}}, {"STRLEN", {KEYS_FIRST, SPLIT_NONE, true}},
    {"GETRANGE", {KEYS_FIRST, SPLIT_NONE, true}}, {"TYPE", {KEYS_FIRST, SPLIT_NONE, true}},
    {"TTL", {KEYS_FIRST, SPLIT_NONE, true}}, {"PTTL", {KEYS_FIRST, SPLIT_NONE, true}},
    {"HGET", {KEYS_FIRST, SPLIT_NONE, true}}, {"HMGET", {KEYS_FIRST, SPLIT_NONE, true}},
    {"HGETALL", {KEYS_FIRST, SPLIT_NONE, true}}, {"HLEN", {KEYS_FIRST, SPLIT_NONE, true}},
    {"HEXISTS", {KEYS_FIRST, SPLIT_NONE, true}}, {"HKEYS", {KEYS_FIRST, SPLIT_NONE, true}},
    {"HVALS", {KEYS_FIRST, SPLIT_NONE, true}}, {"LRANGE", {KEYS_FIRST, SPLIT_NONE, true}},
    {"LLEN", {KEYS_FIRST, SPLIT_NONE, true}}, {"LINDEX", {KEYS_FIRST, SPLIT_NONE, true}},
    {"SMEMBERS", {KEYS_FIRST, SPLIT_NONE, true}}, {"SCARD", {KEYS_FIRST, SPLIT_NONE, true}},
    {"SISMEMBER", {KEYS_FIRST, SPLIT_NONE, true}}, {"ZRANGE", {KEYS_FIRST, SPLIT_NONE, true}},
    {"ZSCORE", {KEYS_FIRST, SPLIT_NONE, true}}, {"ZCARD", {KEYS_FIRST, SPLIT_NONE, true}},
    {"ZRANK", {KEYS_FIRST, SPLIT_NONE, true}}, {"ZCOUNT", {KEYS_FIRST, SPLIT_NONE, true}},
    {"XRANGE", {KEYS_FIRST, SPLIT_NONE, true}}, {"XLEN", {KEYS_FIRST, SPLIT_NONE, true}},
    {"BITCOUNT", {KEYS_FIRST, SPLIT_NONE, true}}, {"GETBIT", {KEYS_FIRST, SPLIT_NONE, true}},
};

void ll__cluster_cmd_info(const char *name, size_t len, ll__cmd_info *out) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strlen(table[i].name) == len && strncasecmp(table[i].name, name, len) == 0) {
            *out = table[i].info;
            return;
        }
    }
    *out = (ll__cmd_info){KEYS_FIRST, SPLIT_NONE, false};
}

static size_t arglen(const char *const *argv, const size_t *lens, int i) {
    return lens ? lens[i] : strlen(argv[i]);
}

int ll__cluster_command_slot(int argc, const char *const *argv, const size_t *lens,
                             const ll__cmd_info *info, int *slot_a, int *slot_b) {
    int first = 1, last = argc - 1, step = 1;
    switch (info->keys) {
    case KEYS_NONE: return -1;
    case KEYS_FIRST: last = 1; break;
    case KEYS_TWO: last = 2; break;
    case KEYS_ALL: break;
    case KEYS_ALL_BUT_LAST: last = argc - 2; break;
    case KEYS_PAIRS:
        if ((argc - 1) % 2) return -3;
        step = 2;
        break;
    case KEYS_NUMKEYS: {
        if (argc < 3) return -3;
        char buf[24];
        size_t n = arglen(argv, lens, 2);
        if (n == 0 || n >= sizeof buf) return -3;
        memcpy(buf, argv[2], n);
        buf[n] = 0;
        char *end;
        long k = strtol(buf, &end, 10);
        if (*end || k < 0 || k > argc - 3) return -3;
        if (k == 0) return -1;
        first = 3;
        last = 2 + (int)k;
        break;
    }
    }
    if (last >= argc) last = argc - 1;
    if (first > last) return info->keys == KEYS_FIRST || info->keys == KEYS_TWO ? -3 : -1;
    int slot = -1;
    for (int i = first; i <= last; i += step) {
        int s = (int)ll_redis_cluster_keyslot(argv[i], arglen(argv, lens, i));
        if (slot < 0) slot = s;
        else if (s != slot) {
            *slot_a = slot;
            *slot_b = s;
            return -2;
        }
    }
    return slot;
}

bool ll__cluster_parse_redirect(const char *err, const char *word, int *slot, char *addr, size_t addr_n) {
    size_t w = strlen(word);
    if (!err || strncmp(err, word, w) != 0 || err[w] != ' ') return false;
    const char *p = err + w + 1;
    char *end;
    long s = strtol(p, &end, 10);
    if (end == p || *end != ' ' || s < 0 || s >= LL_CLUSTER_SLOTS) return false;
    p = end + 1;
    size_t n = strcspn(p, " \r\n");
    if (n == 0 || n >= addr_n || !memchr(p, ':', n)) return false;
    memcpy(addr, p, n);
    addr[n] = 0;
    *slot = (int)s;
    return true;
}
