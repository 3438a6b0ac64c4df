#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the test suite.
#
#   scripts/pg-cluster.sh install       install the server packages if initdb is missing (root only)
#   scripts/pg-cluster.sh start DIR     initdb + start in DIR; prints the connection URL on stdout
#   scripts/pg-cluster.sh stop DIR      fast shutdown (no-op when nothing runs there)
#
# It can also be sourced; the functions pg_install, pg_start and pg_stop are then available.
#
# The cluster never touches the system one (a Debian install may auto-create and even start
# "15/main" on 5432): it lives entirely under DIR, listens on a random loopback port, keeps its
# Unix socket in DIR, trusts every local connection and runs with fsync off (PG_FSYNC=on for the
# benchmark, which must measure durable commits), since it holds only
# disposable test data. Nothing here relies on a service manager: CI machines have none.

# Where the server binaries are; PG_BIN overrides. Picks the newest installed major version so
# the script keeps working when Debian moves past 15.
pg_bindir() {
    if [[ -n "${PG_BIN:-}" ]]; then
        [[ -x "$PG_BIN/initdb" ]] || { echo "pg-cluster: PG_BIN=$PG_BIN has no initdb" >&2; return 1; }
        printf '%s\n' "$PG_BIN"
        return 0
    fi
    local initdb
    initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
    if [[ -x "$initdb" ]]; then
        dirname "$initdb"
        return 0
    fi
    # Non-Debian layouts put the server tools on PATH.
    if initdb=$(command -v initdb 2>/dev/null); then
        dirname "$initdb"
        return 0
    fi
    return 1
}

# apt may be busy (unattended upgrades, another engineer's install): wait for its locks rather
# than failing the whole run on a transient condition.
pg_apt() {
    local attempt
    for attempt in $(seq 1 10); do
        if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=60 -q "$@"; then
            return 0
        fi
        echo "pg-cluster: apt-get $* failed (attempt $attempt/10); retrying in 10 s" >&2
        sleep 10
    done
    return 1
}

pg_install() {
    if pg_bindir >/dev/null; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "pg-cluster: PostgreSQL server binaries not found and not root; install 'postgresql' or set PG_BIN" >&2
        return 1
    fi
    echo "pg-cluster: installing PostgreSQL from Debian's packages" >&2
    pg_apt update
    pg_apt install -y --no-install-recommends postgresql
    pg_bindir >/dev/null || { echo "pg-cluster: initdb still missing after install" >&2; return 1; }
}

# Runs a command as the cluster owner: root may not own a cluster, so as root use the
# 'postgres' account the Debian package creates; otherwise the current user owns it.
pg_as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        # su's -c takes one string: quote every argument so paths with spaces survive.
        su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# pg_start DIR: prints postgres://postgres@127.0.0.1:PORT/postgres. DIR must not contain
# spaces (it becomes the server's socket directory inside pg_ctl's -o string).
pg_start() {
    local dir=${1:?usage: pg_start DIR}
    pg_install || return 1
    local bin port
    bin=$(pg_bindir) || return 1
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir"
        # A DIR under a root-only parent (say /root/...) would fail deep inside initdb; say why.
        su -s /bin/sh postgres -c "$(printf 'test -w %q' "$dir")" || {
            echo "pg-cluster: the postgres account cannot write $dir (check its parents' permissions)" >&2
            return 1
        }
    fi
    # initdb would refuse a non-empty data dir anyway; fail early with a clear message.
    if [[ -e "$dir/data" ]]; then
        echo "pg-cluster: $dir/data already exists" >&2
        return 1
    fi
    # su starts in the caller's cwd, which postgres may not be able to read; run from DIR.
    (
        cd "$dir"
        pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1
    ) || {
        echo "pg-cluster: initdb failed:" >&2
        cat "$dir/initdb.log" >&2
        return 1
    }
    # A port picked this way can in principle be taken before the server binds it; a retry
    # with a fresh port makes that race harmless.
    local attempt
    for attempt in 1 2 3; do
        port=$(pg_free_port)
        if (cd "$dir" && pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=${PG_FSYNC:-off} -c max_connections=300" \
            start >&2); then
            printf '%s\n' "$port" >"$dir/port"
            printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$port"
            return 0
        fi
        echo "pg-cluster: start on port $port failed (attempt $attempt/3); server log:" >&2
        tail -n 20 "$dir/pg.log" >&2 2>/dev/null || true
    done
    return 1
}

# pg_stop DIR: safe to call from a trap, whatever state the cluster is in.
pg_stop() {
    local dir=${1:?usage: pg_stop DIR}
    [[ -f "$dir/data/postmaster.pid" ]] || return 0
    local bin
    bin=$(pg_bindir) || return 0
    (cd "$dir" && pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2) || {
        echo "pg-cluster: pg_ctl stop failed for $dir" >&2
        return 1
    }
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        install) pg_install ;;
        start) pg_start "${2:?usage: $0 start DIR}" ;;
        stop) pg_stop "${2:?usage: $0 stop DIR}" ;;
        *)
            echo "usage: $0 install | start DIR | stop DIR" >&2
            exit 2
            ;;
    esac
fi
