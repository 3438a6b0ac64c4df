#!/usr/bin/env bash
# Side-by-side A/B of two Porteiro binaries on SQLite, in alternating rounds (the machine's speed
# drifts, so only paired rounds compare): `me` (GET /api/auth/me, one token, 64 connections) and
# `refresh` (8 rotation chains, bench/wrk/refresh.lua). Each round starts each binary on a fresh
# database seeded with `porteiro bench seed`.
#
#   bench/ab.sh OLD_BIN NEW_BIN [ROUNDS]      e.g. a release build of an earlier commit vs
#                                             target/release/porteiro
# Prints each round's req/s and the new/old ratio. Needs wrk, curl and python3.
set -euo pipefail
old=$1 new=$2 rounds=${3:-3}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
password='Bench-Passw0rd-1'

run() { # BIN SCENARIO -> req/s
    local bin=$1 scenario=$2 port dir pid tokens
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    dir=$(mktemp -d /tmp/porteiro-ab.XXXXXX)
    export EMAIL_ENABLED=false SERVER_HOST=127.0.0.1 SERVER_PORT=$port DATA_DIR=$dir \
        DATABASE_URL=$dir/p.db RATE_LIMIT_ENABLED=false LOG_LEVEL=warn ADMIN_PASSWORD=Admin-Pass-123x
    printf '%s\n' "$password" | "$bin" bench seed --users 100 >/dev/null
    "$bin" serve >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 500); do
        curl -fsS "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break
        sleep 0.02
    done
    tokens=$(python3 - "http://127.0.0.1:$port" "$password" <<'PY'
import json, sys, urllib.request
url, password = sys.argv[1], sys.argv[2]
out = []
for i in range(8):
    body = json.dumps({"login": f"bench{i}", "password": password}).encode()
    req = urllib.request.Request(url + "/auth", body, {"Content-Type": "application/json"})
    out.append(json.load(urllib.request.urlopen(req)))
print(json.dumps(out))
PY
)
    if [[ $scenario == me ]]; then
        access=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[0]["auth"])' "$tokens")
        wrk -t2 -c64 -d6s -H "Authorization: Bearer $access" "http://127.0.0.1:$port/api/auth/me"
    else
        { python3 -c 'import json,sys; print("refresh_tokens = {" + ",".join("\"%s\"" % t["refresh"] for t in json.loads(sys.argv[1])) + "}")' "$tokens"
          cat "$root/bench/wrk/refresh.lua"; } >"$dir/refresh.lua"
        wrk -t8 -c8 -d8s -s "$dir/refresh.lua" "http://127.0.0.1:$port"
    fi | awk '/Requests\/sec/ {print $2}'
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

for scenario in me refresh; do
    for round in $(seq 1 "$rounds"); do
        a=$(run "$old" "$scenario")
        b=$(run "$new" "$scenario")
        python3 -c 'import sys; a, b = float(sys.argv[3]), float(sys.argv[4]); print(f"{sys.argv[1]} round {sys.argv[2]}: old {a:,.0f} req/s, new {b:,.0f} req/s, new/old {b/a:.3f}")' \
            "$scenario" "$round" "$a" "$b"
    done
done
