// cxx_smoke.cpp — libloop from C++17: the headers compile as C++ (extern "C" via LL_BEGIN_DECLS)
// and the program links against the shared libraries and runs: tasks written as captureless
// lambdas, a gather under a deadline, a PostgreSQL query and an HTTP GET read through the typed
// accessors. Run it under build/tools/with-servers (LL_PG_URL, LL_HTTP_BASE). Exit status 0 = pass.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <libloop.h>
#include <libloop/http.h>
#include <libloop/pg.h>

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
    return failures ? LL_EINVAL : 0;
}

}  // namespace

int main() {
    int rc = ll_run(main_task, nullptr);
    std::printf("cxx_smoke: libloop %s, %s\n", ll_version_string(), rc == 0 ? "passed" : "FAILED");
    return rc == 0 ? 0 : 1;
}
