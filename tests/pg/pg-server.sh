#!/bin/sh
# pg-server.sh — a throwaway PostgreSQL for the doc examples and benchmarks (the C tests start
# their own through tests/harness/pgserver.c, which does the same).
#
#   eval "$(tests/pg/pg-server.sh start)"     # sets LL_PG_URL and LL_PG_SERVER_DIR
#   ... run things that read LL_PG_URL ...
#   tests/pg/pg-server.sh stop "$LL_PG_SERVER_DIR"
#
# initdb into a temporary directory, listen on a free loopback port and on a Unix socket in that
# directory, fsync off. As root the server runs as the system user llpgtest (made if missing) or
# nobody, since postgres refuses root. Extra server settings: PG_SERVER_OPTS="-c name=value ...".
set -eu

bindir=${LL_PG_BINDIR:-}
if [ -z "$bindir" ]; then
    for v in $(ls /usr/lib/postgresql 2>/dev/null | sort -rn); do
        [ -x "/usr/lib/postgresql/$v/bin/postgres" ] && { bindir=/usr/lib/postgresql/$v/bin; break; }
    done
fi
[ -n "$bindir" ] || { echo "pg-server: no PostgreSQL found (apt-get install postgresql)" >&2; exit 1; }

as_user() { # run "$@" as the server's user
    if [ -n "$runas" ]; then runuser -u "$runas" -- "$@"; else "$@"; fi
}

pick_user() {
    runas=""
    if [ "$(id -u)" = 0 ]; then
        id llpgtest >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin llpgtest \
            >/dev/null 2>&1 || true
        if id llpgtest >/dev/null 2>&1; then runas=llpgtest; else runas=nobody; fi
    fi
}

case "${1:-}" in
start)
    pick_user
    dir=$(mktemp -d /tmp/llpg-XXXXXX)
    [ -n "$runas" ] && chown "$runas" "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_user "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # shellcheck disable=SC2086
    as_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
            -c lc_messages=C ${PG_SERVER_OPTS:-}" start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "LL_PG_URL='host=127.0.0.1 port=$port user=postgres dbname=postgres'; export LL_PG_URL;"
    echo "LL_PG_SERVER_DIR='$dir'; export LL_PG_SERVER_DIR;"
    echo "LL_PG_PORT=$port; export LL_PG_PORT;"
    ;;
stop)
    dir=${2:-${LL_PG_SERVER_DIR:-}}
    case "$dir" in /tmp/llpg-*) ;; *) echo "pg-server: stop needs the directory start made" >&2; exit 2 ;; esac
    pick_user
    [ -f "$dir/data/postmaster.pid" ] && as_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
