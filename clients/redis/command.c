/*
 * command.c — the command entry points: encode the command (arguments: straight into the
 * connection's output buffer, see ll__rp_format_argv; a format string: hiredis's printf-style
 * formatter), take a reply slot, return the future.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <hiredis/hiredis.h>
#include "redis_internal.h"

/* The n-th argument of a formatted command ("*N\r\n$L\r\n<bytes>\r\n..."), or false. */
static bool arg_at(const char *data, size_t len, int n, const char **arg, size_t *alen) {
    const char *p = memchr(data, '\n', len), *end = data + len;
    for (int i = 0; p && i <= n; i++) {
        if (++p >= end || *p != '$') return false;
        size_t l = strtoul(p + 1, NULL, 10);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl || (size_t)(end - nl - 1) < l + 2) return false;
        if (i == n) {
            *arg = nl + 1;
            *alen = l;
            return true;
        }
        p = nl + 1 + l + 1; /* at the '\n' after the argument */
    }
    return false;
}

static bool arg_is(const char *a, size_t n, const char *word) {
    return n == strlen(word) && strncasecmp(a, word, n) == 0;
}

/* Commands after which replies no longer match commands one to one: on a pipelined connection
 * they would hand one caller's reply to another, so they are refused (pub/sub has its own
 * connection type; MONITOR and CLIENT REPLY OFF/SKIP have no place on a shared one). a1 is NULL
 * when the command has one word. */
static const char *refused(const char *a0, size_t n0, const char *a1, size_t n1) {
    if (arg_is(a0, n0, "SUBSCRIBE") || arg_is(a0, n0, "PSUBSCRIBE") || arg_is(a0, n0, "SSUBSCRIBE"))
        return "subscribing turns the connection into a subscriber: use ll_redis_sub_connect";
    if (arg_is(a0, n0, "MONITOR")) return "MONITOR turns the connection into a feed";
    if (arg_is(a0, n0, "CLIENT") && a1 && arg_is(a1, n1, "REPLY"))
        return "CLIENT REPLY would leave commands without their replies";
    if (arg_is(a0, n0, "HELLO")) return "HELLO changes the protocol (RESP2 is spoken here)";
    return NULL;
}

static const char *refused_bytes(const char *data, size_t len) {
    const char *a0, *a1;
    size_t n0, n1;
    if (!arg_at(data, len, 0, &a0, &n0)) return NULL;
    if (!arg_at(data, len, 1, &a1, &n1)) a1 = NULL, n1 = 0;
    return refused(a0, n0, a1, n1);
}

static ll_future *command_future(ll_redis_conn *c) {
    ll_future *f = ll_future_new(c->loop);
    if (f) ll_future_set_label(f, "redis command");
    return f;
}

/* rc from submitting f's slot: on failure f fails with it. */
static ll_future *submitted(ll_redis_conn *c, ll_future *f, int rc) {
    if (rc == LL_ECLOSED) ll_future_fail(f, rc, "redis %s: connection is closed", ll__rc_peer(c));
    else if (rc) ll_future_fail(f, rc, "redis %s: %s", ll__rc_peer(c), ll_strerror(rc));
    return f;
}

ll_future *ll__rc_command_bytes(ll_redis_conn *c, const char *data, size_t len) {
    if (!c->pubsub) {
        const char *why = refused_bytes(data, len);
        if (why) return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_command: %s", why);
    }
    ll_future *f = command_future(c);
    if (!f) return NULL;
    return submitted(c, f, ll__rc_submit(c, data, len, (rp_slot){.f = f, .kind = SLOT_USER}));
}

LL_EXPORT ll_future *ll_redis_command(ll_redis_conn *c, int argc, const char *const *argv,
                                      const size_t *lens) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_command: conn is NULL");
    if (argc <= 0 || !argv)
        return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_command: no command (argc %d)", argc);
    for (int i = 0; i < argc; i++)
        if (!argv[i]) return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_command: argv[%d] is "
                                              "NULL", i);
    if (!c->pubsub) {
        size_t n0 = lens ? lens[0] : strlen(argv[0]);
        size_t n1 = argc < 2 ? 0 : lens ? lens[1] : strlen(argv[1]);
        const char *why = refused(argv[0], n0, argc < 2 ? NULL : argv[1], n1);
        if (why) return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_command: %s", why);
    }
    ll_future *f = command_future(c);
    if (!f) return NULL;
    return submitted(c, f, ll__rc_submit_argv(c, argc, argv, lens,
                                              (rp_slot){.f = f, .kind = SLOT_USER}));
}

LL_EXPORT ll_future *ll_redis_vcommandf(ll_redis_conn *c, const char *fmt, va_list ap) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_commandf: conn is NULL");
    if (!fmt || !*fmt) return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_commandf: empty format");
    char *cmd = NULL;
    int n = redisvFormatCommand(&cmd, fmt, ap);
    if (n == -2 || (n >= 0 && !cmd))
        return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_commandf: bad format \"%s\"", fmt);
    if (n < 0) return ll_future_failed(c->loop, LL_ENOMEM, "ll_redis_commandf: out of memory");
    ll_future *f = ll__rc_command_bytes(c, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return f;
}

LL_EXPORT ll_future *ll_redis_commandf(ll_redis_conn *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ll_future *f = ll_redis_vcommandf(c, fmt, ap);
    va_end(ap);
    return f;
}

bool ll__redis_argv_copy(int argc, const char *const *argv, const size_t *lens, char ***argv_out,
                         size_t **lens_out) {
    char **av = calloc((size_t)argc, sizeof *av);
    size_t *lv = calloc((size_t)argc, sizeof *lv);
    if (!av || !lv) goto oom;
    for (int i = 0; i < argc; i++) {
        lv[i] = lens ? lens[i] : strlen(argv[i]);
        if (!(av[i] = malloc(lv[i] + 1))) goto oom;
        memcpy(av[i], argv[i], lv[i]);
        av[i][lv[i]] = 0;
    }
    *argv_out = av;
    *lens_out = lv;
    return true;
oom:
    ll__redis_argv_free(argc, av, lv);
    *argv_out = NULL;
    *lens_out = NULL;
    return false;
}

void ll__redis_argv_free(int argc, char **argv, size_t *lens) {
    for (int i = 0; argv && i < argc; i++) free(argv[i]);
    free(argv);
    free(lens);
}

void ll__redis_forward(ll_future *dst, ll_future *src) {
    switch (ll_future_get_state(src)) {
    case LL_FUTURE_RESOLVED: {
        ll_redis_reply *r = ll_redis_reply_of(src);
        if (r) {
            ll_future_take(src);
            if (ll_future_resolve(dst, r, (ll_value_free)ll_redis_reply_free))
                ll_redis_reply_free(r);
        } else {
            ll_future_resolve(dst, NULL, NULL);
        }
        break;
    }
    case LL_FUTURE_FAILED: {
        ll_value_free fr = NULL;
        void *d = ll_future_error_detail(src, &fr);
        int code = ll_future_code(src);
        if (d) {
            ll_future_take_error_detail(src);
            if (ll_future_fail_detail(dst, code, d, fr, "%s", ll_future_errmsg(src)) && fr) fr(d);
        } else {
            ll_future_fail(dst, code, "%s", ll_future_errmsg(src));
        }
        break;
    }
    default: ll_future_set_cancelled(dst); break;
    }
}
