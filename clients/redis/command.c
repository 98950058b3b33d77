/*
 * command.c — the command entry points: format with hiredis (redisFormatCommandArgv or its
 * printf-style formatter), take a reply slot, return the future.
 */
#include <stdio.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "redis_internal.h"

ll_future *ll__rc_command_bytes(ll_redis_conn *c, const char *data, size_t len) {
    ll_future *f = ll_future_new(c->loop);
    if (!f) return NULL;
    ll_future_set_label(f, "redis command");
    int rc = ll__rc_submit(c, data, len, (rp_slot){.f = f, .kind = SLOT_USER});
    if (rc == LL_ECLOSED) ll_future_fail(f, rc, "redis %s: connection is closed", ll__rc_peer(c));
    else if (rc) ll_future_fail(f, rc, "redis %s: %s", ll__rc_peer(c), ll_strerror(rc));
    return f;
}

LL_EXPORT ll_future *ll_redis_command(ll_redis_conn *c, int argc, const char *const *argv,
                                      const size_t *lens) {
    if (!c) return ll_future_failed(NULL, LL_EINVAL, "ll_redis_command: conn is NULL");
    if (argc <= 0 || !argv)
        return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_command: no command (argc %d)", argc);
    for (int i = 0; i < argc; i++)
        if (!argv[i]) return ll_future_failed(c->loop, LL_EINVAL, "ll_redis_command: argv[%d] is "
                                              "NULL", i);
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, (const char **)argv, lens);
    if (n < 0 || !cmd) return ll_future_failed(c->loop, LL_ENOMEM, "ll_redis_command: out of memory");
    ll_future *f = ll__rc_command_bytes(c, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return f;
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
