# migrate-0.2.sed — rewrite a program written for libloop 0.1 to the 0.2 names (CHANGELOG.md). GNU sed:
#   sed -E -i -f scripts/migrate-0.2.sed *.c *.h
# Word-bounded: ll__internal names and longer names are untouched. Multi-line ll_resolve_on(...)
# calls are not rewritten (the compiler points at them): write ll_resolve(host, port,
# &(ll_resolve_opts){.loop = LOOP, .family = FAMILY}) by hand.
s/\bll_open_connection\b/ll_stream_connect/g
s/\bll_open_unix\b/ll_stream_connect_unix/g
s/\bll_start_server\b/ll_server_open/g
s/\bll_start_unix_server\b/ll_server_open_unix/g
s/\bll_run_process\b/ll_process_run/g
s/\bll_pool_close\b/ll_pool_free/g
s/\bll_pg_pool_close\b/ll_pg_pool_free/g
s/\bll_pg_release\b/ll_pg_savepoint_release/g
s/\bll_pg_rollback_to\b/ll_pg_savepoint_rollback/g
s/\bll_call_soon\b/ll_loop_call_soon/g
s/\bll_call_soon_threadsafe\b/ll_loop_call_soon_threadsafe/g
s/\bll_call_later\b/ll_loop_call_later/g
s/\bll_task_cancel\b/ll_future_cancel/g
s/\bll_http_free\b/ll_free/g
s/\bll_conn_opts\b/ll_stream_opts/g
# ll_resolve(host, port, family) -> ll_resolve(host, port, opts); ll_resolve_on removed
s/\bll_resolve\(([^;]*), AF_UNSPEC\)/ll_resolve(\1, NULL)/g
s/\bll_resolve\(([^;]*), (AF_INET6?)\)/ll_resolve(\1, \&(ll_resolve_opts){.family = \2})/g
s/\bll_resolve_on\(([^,]+), ([^;]*), AF_UNSPEC\)/ll_resolve(\2, \&(ll_resolve_opts){.loop = \1})/g
s/\bll_resolve_on\(([^,]+), ([^;]*), ([^,;()]+)\)/ll_resolve(\2, \&(ll_resolve_opts){.loop = \1, .family = \3})/g
