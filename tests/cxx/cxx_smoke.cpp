// cxx_smoke.cpp — libloop from C++17: the headers compile as C++ (extern "C" via LL_BEGIN_DECLS)
// and the program links against the shared libraries and runs: tasks written as captureless
// lambdas, a gather under a deadline, a PostgreSQL query and an HTTP GET read through the typed
// accessors, a Redis PING, a MIME message built. Run it under build/tools/with-servers (LL_PG_URL,
// LL_HTTP_BASE, LL_REDIS_URL). Exit status 0 = pass.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <libloop.h>
#include <libloop/http.h>
#include <libloop/pg.h>
#include <libloop/redis.h>
#include <libloop/mime.h>
#include <libloop/smtp.h>

namespace {

int failures = 0;

void check(bool ok, const char *what) {
    std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    if (!ok) failures++;
}

int main_task(void *) {
    // C++ lambdas without captures convert to ll_task_fn.
    ll_task_fn child = [](void *arg) -> int {
        int rc = ll_sleep(0.001);
        if (rc) return rc;
        ll_task_return(arg, nullptr);
        return 0;
    };
    ll_future *fs[2] = {ll_spawn(child, (void *)1), ll_spawn(child, (void *)2)};
    ll_future *all = ll_gather(fs, 2, LL_GATHER_FAIL_FAST);
    check(ll_await_timeout(all, 5.0) == 0, "gather of two lambda tasks");
    check(ll_future_value(fs[1]) == (void *)2, "task value");
    for (ll_future *f : fs) ll_future_free(f);
    ll_future_free(all);

    check(ll_version() == LL_VERSION_NUMBER, "ll_version() matches the headers");

    const char *pg_url = std::getenv("LL_PG_URL");
    check(pg_url != nullptr, "LL_PG_URL is set (run under with-servers)");
    if (pg_url) {
        ll_pg_pool *pool = ll_pg_pool_new(pg_url, nullptr);
        ll_future *q = ll_pg_pool_query(pool, "SELECT $1::int * 2", 1, "21");
        int rc = ll_await(q);
        ll_pg_result *r = ll_pg_result_of(q);
        int64_t v = 0;
        check(rc == 0 && r && ll_pg_int64(r, 0, 0, &v) == 0 && v == 42, "PostgreSQL query");
        if (rc) std::printf("  %s\n", ll_future_errmsg(q));
        ll_future_free(q);
        ll_pg_pool_free(pool);
    }

    const char *base = std::getenv("LL_HTTP_BASE");
    check(base != nullptr, "LL_HTTP_BASE is set (run under with-servers)");
    if (base) {
        ll_http_session *s = ll_http_session_new(nullptr);
        std::string url = std::string(base) + "/small.txt";
        ll_future *f = ll_http_get(s, url.c_str());
        int rc = ll_await(f);
        ll_http_response *resp = ll_http_response_of(f);
        check(rc == 0 && resp && ll_http_response_status(resp) == 200, "HTTP GET");
        check(ll_pg_result_of(f) == nullptr, "a response is not read as a PostgreSQL result");
        if (rc) std::printf("  %s\n", ll_future_errmsg(f));
        ll_future_free(f);
        ll_http_session_free(s);
    }
    const char *redis_url = std::getenv("LL_REDIS_URL");
    check(redis_url != nullptr, "LL_REDIS_URL is set (run under with-servers)");
    if (redis_url) {
        ll_future *cf = ll_redis_connect(redis_url, nullptr);
        int rc = ll_await(cf);
        check(rc == 0, "Redis connect");
        if (rc) std::printf("  %s\n", ll_future_errmsg(cf));
        ll_redis_conn *c = static_cast<ll_redis_conn *>(ll_future_take(cf));
        ll_future_free(cf);
        if (c) {
            ll_future *f = ll_redis_commandf(c, "PING");
            rc = ll_await(f);
            const char *s = nullptr;
            size_t len = 0;
            ll_redis_reply *r = ll_redis_reply_of(f);
            check(rc == 0 && r && ll_redis_reply_string(r, &s, &len) == 0 && std::string(s, len) == "PONG",
                  "Redis PING");
            ll_future_free(f);
            ll_redis_close(c);
        }
    }

    check(ll_smtp_result_of(nullptr) == nullptr, "SMTP: the typed accessor links");
    ll_smtp_mime *m = ll_smtp_mime_new();
    char *msg = nullptr, *err = nullptr;
    size_t len = 0;
    bool built = m && ll_smtp_mime_set_from(m, "C++", "cxx@example.com") == 0 &&
                 ll_smtp_mime_add_to(m, nullptr, "to@example.com") == 0 &&
                 ll_smtp_mime_set_subject(m, "h\xc3\xa9llo") == 0 &&
                 ll_smtp_mime_set_text(m, "hi") == 0 && ll_smtp_mime_build(m, &msg, &len, &err) == 0;
    check(built && std::string(msg, len).find("Subject: =?") != std::string::npos,
          "SMTP: a MIME message with an encoded subject built");
    ll_free(msg);
    ll_free(err);
    ll_smtp_mime_free(m);
    return failures ? LL_EINVAL : 0;
}

}  // namespace

int main() {
    int rc = ll_run(main_task, nullptr);
    std::printf("cxx_smoke: libloop %s, %s\n", ll_version_string(), rc == 0 ? "passed" : "FAILED");
    return rc == 0 ? 0 : 1;
}
