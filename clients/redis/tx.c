/*
 * tx.c — MULTI/EXEC blocks, Lua scripts (EVALSHA with an EVAL fallback) and SCAN cursors: what is
 * built on plain commands.
 *
 * A transaction is written as one contiguous run (MULTI, the commands, EXEC) with one slot per
 * reply, so on a shared pipelined connection no other task's command can land inside it. The
 * replies to MULTI and each queued command ("+QUEUED" or an error) are checked by the slots of
 * kind SLOT_TXPART; the EXEC slot settles the caller's future.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>
#include <hiredis/hiredis.h>
#include "redis_internal.h"

struct ll_redis_tx {
    rp_buf cmds;
    size_t n;
};

typedef struct rtx {
    ll_redis_conn *conn;
    size_t idx;              /* replies seen so far (MULTI is 0) */
    size_t bad_idx;          /* the first command refused while queuing (1-based), 0 if none */
    char *bad_msg;
} rtx;

LL_EXPORT ll_redis_tx *ll_redis_tx_new(void) { return ll_calloc(1, sizeof(ll_redis_tx)); }

LL_EXPORT void ll_redis_tx_free(ll_redis_tx *tx) {
    if (!tx) return;
    ll__rp_buf_free(&tx->cmds);
    ll_free(tx);
}

LL_EXPORT int ll_redis_tx_add(ll_redis_tx *tx, int argc, const char *const *argv,
                              const size_t *lens) {
    if (!tx || argc <= 0 || !argv) return LL_EINVAL;
    int rc = ll__rp_format_argv(&tx->cmds, argc, argv, lens);
    if (!rc) tx->n++;
    return rc;
}

LL_EXPORT int ll_redis_tx_addf(ll_redis_tx *tx, const char *fmt, ...) {
    if (!tx) return LL_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    int rc = ll__rp_vformat(&tx->cmds, fmt, ap);
    va_end(ap);
    if (!rc) tx->n++;
    return rc;
}

static void rtx_free(rtx *t) {
    if (!t) return;
    ll_free(t->bad_msg);
    ll_free(t);
}

void ll__rtx_on_fail(rp_slot *s, int code, const char *msg) {
    if (s->kind != SLOT_TXEXEC) return;
    if (s->f) {
        if (code == LL_ECANCELED) ll_future_set_cancelled(s->f);
        else ll_future_fail(s->f, code, "%s", msg);
        ll_future_free(s->f);
        s->f = NULL;
    }
    rtx_free(s->ctx);
    s->ctx = NULL;
}

void ll__rtx_on_reply(ll_redis_conn *c, rp_slot *s, ll_redis_reply *r) {
    rtx *t = s->ctx;
    if (s->kind == SLOT_TXPART) {
        if (r->type == LL_REDIS_ERROR && !t->bad_idx) {
            t->bad_idx = t->idx ? t->idx : (size_t)-1;
            t->bad_msg = ll_strdup(r->str);
        }
        t->idx++;
        ll_redis_reply_free(r);
        return;
    }
    ll_future *f = s->f;
    if (f) {
        if (r->type == LL_REDIS_NIL) {
            ll_future_fail(f, LL_EREDIS_WATCH, "redis %s: transaction aborted: a watched key "
                           "changed (nothing ran)", ll__rc_peer(c));
            ll_redis_reply_free(r);
        } else if (r->type == LL_REDIS_ERROR) {
            if (t->bad_idx == (size_t)-1)
                ll_future_fail_detail(f, LL_EREDIS_REPLY, r, (ll_value_free)ll_redis_reply_free,
                                      "redis %s: %s (MULTI: %s)", ll__rc_peer(c), r->str,
                                      t->bad_msg ? t->bad_msg : "");
            else if (t->bad_idx)
                ll_future_fail_detail(f, LL_EREDIS_REPLY, r, (ll_value_free)ll_redis_reply_free,
                                      "redis %s: %s (command %zu: %s)", ll__rc_peer(c), r->str,
                                      t->bad_idx, t->bad_msg ? t->bad_msg : "");
            else
                ll__rc_deliver(c, f, r);
        } else {
            ll__rc_deliver(c, f, r);
        }
        ll_future_free(f);
    } else {
        ll_redis_reply_free(r);
    }
    rtx_free(t);
}

LL_EXPORT ll_future *ll_redis_tx_exec(ll_redis_conn *c, const ll_redis_tx *tx) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_tx_exec: conn is NULL");
    if (!tx || !tx->n)
        return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_tx_exec: empty transaction");
    static const char multi[] = "*1\r\n$5\r\nMULTI\r\n", exec[] = "*1\r\n$4\r\nEXEC\r\n";
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "redis transaction");
    rp_buf b = {0};
    size_t nslots = tx->n + 2;
    rp_slot *slots = ll_calloc(nslots, sizeof *slots);
    rtx *t = ll_calloc(1, sizeof *t);
    int rc = LL_ENOMEM;
    if (slots && t && !ll__rp_buf_append(&b, multi, sizeof multi - 1) &&
        !ll__rp_buf_append(&b, tx->cmds.data, tx->cmds.len) &&
        !ll__rp_buf_append(&b, exec, sizeof exec - 1)) {
        t->conn = c;
        for (size_t i = 0; i + 1 < nslots; i++) slots[i] = (rp_slot){.kind = SLOT_TXPART, .ctx = t};
        slots[nslots - 1] = (rp_slot){.f = f, .kind = SLOT_TXEXEC, .ctx = t};
        rc = ll__rc_submit_multi(c, b.data, b.len, slots, nslots);
    }
    if (rc) {
        rtx_free(t);
        ll_future_fail(f, rc, "redis %s: %s", ll__rc_peer(c),
                       rc == LL_ECLOSED ? "connection is closed" : ll_strerror(rc));
    }
    ll_free(slots);
    ll__rp_buf_free(&b);
    return f;
}

/* ---- scripts ---- */

struct ll_redis_script {
    char sha[41];
    char *lua;
};

LL_EXPORT ll_redis_script *ll_redis_script_new(const char *lua) {
    if (!lua) return NULL;
    ll_redis_script *s = ll_calloc(1, sizeof *s);
    if (!s || !(s->lua = ll_strdup(lua))) {
        ll_free(s);
        return NULL;
    }
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)lua, strlen(lua), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(s->sha + 2 * i, 3, "%02x", d[i]);
    return s;
}

LL_EXPORT const char *ll_redis_script_sha(const ll_redis_script *s) { return s ? s->sha : ""; }

LL_EXPORT void ll_redis_script_free(ll_redis_script *s) {
    if (!s) return;
    ll_free(s->lua);
    ll_free(s);
}

typedef struct script_run {
    ll_future *outer, *inner;
    ll_redis_conn *conn;
    char *eval_cmd;          /* the EVAL fallback, formatted */
    size_t eval_len;
    bool fell_back;
} script_run;

static void run_free(script_run *r) {
    ll_future_free(r->inner);
    ll_future_free(r->outer);
    ll__rc_unref(r->conn);
    ll_free(r->eval_cmd);
    ll_free(r);
}

static void run_cancel(ll_future *f, void *arg) {
    script_run *r = arg;
    (void)f;
    ll_future_cancel(r->inner); /* its outcome (cancelled) reaches the outer future */
}

static void run_done(ll_future *inner, void *arg) {
    script_run *r = arg;
    if (!r->fell_back && ll_future_code(inner) == LL_EREDIS_REPLY &&
        ll_redis_error_is(inner, "NOSCRIPT") && !ll_future_done(r->outer)) {
        r->fell_back = true;
        ll_future_free(r->inner);
        r->inner = ll__rc_command_bytes(r->conn, r->eval_cmd, r->eval_len);
        if (r->inner && ll_future_add_done(r->inner, run_done, r) == 0) return;
        ll_future_fail(r->outer, LL_ENOMEM, "redis %s: out of memory", ll__rc_peer(r->conn));
        run_free(r);
        return;
    }
    if (!ll_future_done(r->outer)) ll__redis_forward(r->outer, inner);
    run_free(r);
}

LL_EXPORT ll_future *ll_redis_script_run(ll_redis_conn *c, const ll_redis_script *s, int nkeys,
                                         const char *const *keys, int nargs,
                                         const char *const *args) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_script_run: conn is NULL");
    if (!s || nkeys < 0 || nargs < 0 || (nkeys && !keys) || (nargs && !args))
        return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_script_run: bad arguments");
    int argc = 3 + nkeys + nargs;
    const char **av = ll_malloc((size_t)argc * sizeof *av);
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    script_run *r = ll_calloc(1, sizeof *r);
    ll_future *outer = ll_future_new(c->loop);
    char *sha_cmd = NULL;
    int sha_len = -1, eval_len = -1;
    if (av && r && outer) {
        av[0] = "EVALSHA";
        av[1] = s->sha;
        av[2] = nk;
        for (int i = 0; i < nkeys; i++) av[3 + i] = keys[i];
        for (int i = 0; i < nargs; i++) av[3 + nkeys + i] = args[i];
        sha_len = redisFormatCommandArgv(&sha_cmd, argc, av, NULL);
        av[0] = "EVAL";
        av[1] = s->lua;
        eval_len = redisFormatCommandArgv(&r->eval_cmd, argc, av, NULL);
    }
    ll_free(av);
    if (sha_len < 0 || eval_len < 0) {
        if (r) ll_free(r->eval_cmd);
        redisFreeCommand(sha_cmd);
        ll_free(r);
        if (outer) ll_future_fail(outer, LL_ENOMEM, "ll_redis_script_run: out of memory");
        return outer;
    }
    /* hiredis allocated eval_cmd with malloc: keep our own copy so ll_free matches */
    char *copy = ll_malloc((size_t)eval_len);
    if (copy) memcpy(copy, r->eval_cmd, (size_t)eval_len);
    redisFreeCommand(r->eval_cmd);
    r->eval_cmd = copy;
    r->eval_len = (size_t)eval_len;
    r->conn = c;
    c->refs++;
    r->outer = ll_future_ref(outer);
    ll_future_set_label(outer, "redis script");
    r->inner = copy ? ll__rc_command_bytes(c, sha_cmd, (size_t)sha_len) : NULL;
    redisFreeCommand(sha_cmd);
    if (!r->inner || ll_future_add_done(r->inner, run_done, r)) {
        ll_future_fail(outer, LL_ENOMEM, "ll_redis_script_run: out of memory");
        run_free(r);
        return outer;
    }
    ll_future_on_cancel(outer, run_cancel, r);
    return outer;
}

/* ---- SCAN cursors ---- */

struct ll_redis_scan {
    ll_redis_conn *conn;
    char cmd[8];
    char *key, *match;
    long count;
    char cursor[32];
    bool done;
    ll_future *last;         /* holds the current batch */
};

LL_EXPORT ll_redis_scan *ll_redis_scan_new(ll_redis_conn *c, const char *cmd, const char *key,
                                           const char *match, long count) {
    if (!c || !cmd) return NULL;
    bool is_scan = strcmp(cmd, "SCAN") == 0;
    if (!is_scan && strcmp(cmd, "HSCAN") && strcmp(cmd, "SSCAN") && strcmp(cmd, "ZSCAN"))
        return NULL;
    if (!is_scan && !key) return NULL;
    ll_redis_scan *it = ll_calloc(1, sizeof *it);
    if (!it) return NULL;
    snprintf(it->cmd, sizeof it->cmd, "%s", cmd);
    if ((key && !is_scan && !(it->key = ll_strdup(key))) || (match && !(it->match = ll_strdup(match)))) {
        ll_redis_scan_free(it);
        return NULL;
    }
    it->conn = c;
    c->refs++;
    it->count = count;
    strcpy(it->cursor, "0");
    return it;
}

LL_EXPORT int ll_redis_scan_next(ll_redis_scan *it, const ll_redis_reply **batch) {
    if (batch) *batch = NULL;
    if (!it) return LL_EINVAL;
    ll_future_free(it->last);
    it->last = NULL;
    if (it->done) return LL_EOF;
    const char *av[8];
    int ac = 0;
    char cnt[24];
    av[ac++] = it->cmd;
    if (it->key) av[ac++] = it->key;
    av[ac++] = it->cursor;
    if (it->match) {
        av[ac++] = "MATCH";
        av[ac++] = it->match;
    }
    if (it->count > 0) {
        snprintf(cnt, sizeof cnt, "%ld", it->count);
        av[ac++] = "COUNT";
        av[ac++] = cnt;
    }
    ll_future *f = ll_redis_command(it->conn, ac, av, NULL);
    int rc = ll_await(f);
    if (rc) {
        it->last = f; /* keeps the error message readable until the next call */
        return rc;
    }
    const ll_redis_reply *r = ll_redis_reply_of(f);
    const ll_redis_reply *cur = ll_redis_reply_element(r, 0), *items = ll_redis_reply_element(r, 1);
    const char *cs;
    size_t cl;
    if (ll_redis_reply_len(r) != 2 || ll_redis_reply_string(cur, &cs, &cl) || cl >= sizeof it->cursor ||
        ll_redis_reply_type(items) != LL_REDIS_ARRAY) {
        ll_future_free(f);
        return LL_EREDIS_PROTO;
    }
    memcpy(it->cursor, cs, cl);
    it->cursor[cl] = 0;
    if (strcmp(it->cursor, "0") == 0) it->done = true;
    it->last = f;
    if (batch) *batch = items;
    return 0;
}

LL_EXPORT void ll_redis_scan_free(ll_redis_scan *it) {
    if (!it) return;
    ll_future_free(it->last);
    if (it->conn) ll__rc_unref(it->conn);
    ll_free(it->key);
    ll_free(it->match);
    ll_free(it);
}
