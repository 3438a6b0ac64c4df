#!/usr/bin/env bash
# Porteiro benchmark harness.
#
#   bench/run.sh [sqlite|postgres] [--smoke]
#
# Builds release binaries, starts Porteiro on a fresh database (PostgreSQL: a throwaway cluster
# with fsync on), seeds accounts in bulk, runs every scenario with wrk, and writes
# bench/results/<date>-<backend>.{md,json,svg}. --smoke runs each scenario for a second on a tiny
# database and only checks that they work (scripts/test.sh runs it); it never judges figures.
#
# Scenarios: baseline, health, me, login, me-under-login-flood, refresh, register, idle, startup,
# scale (login and me on 1k vs 1M accounts with 10M audit rows). See bench/README.md.
set -euo pipefail

backend=sqlite
smoke=0
for arg in "$@"; do
    case "$arg" in
        sqlite | postgres) backend=$arg ;;
        --smoke) smoke=1 ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d /tmp/porteiro-bench.XXXXXX)
chmod 755 "$work"
results="$work/results.jsonl"
: >"$results"
server_pid=""
flood_pid=""

cleanup() {
    [[ -n "$flood_pid" ]] && kill "$flood_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    if [[ "$backend" == postgres ]]; then
        # shellcheck source=../scripts/pg-cluster.sh
        source "$root/scripts/pg-cluster.sh"
        pg_stop "$work/pg" >/dev/null 2>&1 || true
    fi
    [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

log() { printf '==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- parameters
cores=$(nproc)
if ((smoke)); then
    warm=1s duration=1s small_users=200 large_users=2000 audit_rows=2000 idle_sessions=500 tokens=20
else
    duration=${BENCH_DURATION:-15s} warm=3s small_users=1000 large_users=1000000 audit_rows=10000000
    idle_sessions=100000 tokens=256
fi
password='Bench-Passw0rd-1'
port=18480
base_port=18490
url="http://127.0.0.1:$port"

# ---------------------------------------------------------------- prerequisites
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    fi
fi
for tool in curl python3; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is required" >&2; exit 1; }
done

log "building release binaries"
cargo build --release --quiet -p porteiro -p porteiro-bench-baseline
bin="$root/target/release/porteiro"
baseline_bin="$root/target/release/porteiro-bench-baseline"

# ---------------------------------------------------------------- database
database_url() {
    if [[ "$backend" == postgres ]]; then
        printf '%s\n' "$pg_url"
    else
        printf '%s\n' "$work/data/porteiro.db"
    fi
}
if [[ "$backend" == postgres ]]; then
    # shellcheck source=../scripts/pg-cluster.sh
    source "$root/scripts/pg-cluster.sh"
    pg_url=$(PG_FSYNC=on pg_start "$work/pg")
fi
mkdir -p "$work/data"

export DATABASE_URL DATA_DIR="$work/data" SERVER_HOST=127.0.0.1 SERVER_PORT=$port \
    ADMIN_PASSWORD='Bench-Admin-Passw0rd' EMAIL_ENABLED=false LOG_LEVEL=warn \
    RATE_LIMIT_ENABLED=false DATABASE_MAX_CONNECTIONS=$((cores * 4)) \
    MASTER_KEY=$(head -c 32 /dev/urandom | base64)
DATABASE_URL=$(database_url)

# ---------------------------------------------------------------- helpers
record() { # name json...
    python3 - "$1" "$2" >>"$results" <<'EOF'
import json, sys
print(json.dumps({"scenario": sys.argv[1], **json.loads(sys.argv[2])}))
EOF
}

start_server() {
    "$bin" serve >>"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 500); do
        curl -fsS "$url/api/health" >/dev/null 2>&1 && return 0
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; return 1; }
        sleep 0.02
    done
    echo "bench/run.sh: server did not become healthy" >&2
    return 1
}

stop_server() {
    [[ -n "$server_pid" ]] || return 0
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

reset_peak() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# wrk_run NAME PID URL SCRIPT CONNECTIONS THREADS [extra lua]
wrk_run() {
    local name=$1 pid=$2 target=$3 script=$4 conns=$5 threads=$6 extra=${7:-}
    local lua="$work/$name.lua"
    { printf '%s\n' "$extra"; cat "$root/bench/wrk/common.lua"; [[ -n "$script" ]] && cat "$root/bench/wrk/$script"; } >"$lua"
    reset_peak "$pid"
    local out
    out=$(wrk -t"$threads" -c"$conns" -d"$duration" --timeout 10s -s "$lua" "$target" | tail -n 1)
    local peak
    peak=$(peak_kb "$pid")
    printf '%s\n' "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read()); r["peak_rss_kb"] = int(sys.argv[1]); print(json.dumps(r))' "$peak"
}

seed() { # users start [sessions] [audit_rows]
    printf '%s\n' "$password" | "$bin" bench seed --users "$1" --start "$2" \
        --sessions "${3:-0}" --audit-rows "${4:-0}" >>"$work/seed.log"
}

# After a bulk seed, let the database catch up before measuring: on PostgreSQL, VACUUM ANALYZE
# (fresh statistics, visibility map) and a CHECKPOINT, so that neither the small nor the large runs
# pay for the other's background work.
settle() {
    if [[ "$backend" == postgres ]]; then
        "$(pg_bindir)/psql" -q "$pg_url" -c 'vacuum analyze' -c 'checkpoint' >/dev/null
    fi
}

# warm_up URL SCRIPT EXTRA: an unrecorded 3 s run (1 s in smoke mode) so that the
# small and large databases are both measured warm.
warm_up() {
    local lua="$work/warm.lua"
    { printf '%s\n' "$3"; cat "$root/bench/wrk/common.lua" "$root/bench/wrk/$2"; } >"$lua"
    wrk -t"$cores" -c64 -d"$warm" -s "$lua" "$1" >/dev/null
}

# sign_in_tokens COUNT FIELD -> a Lua table of access (or refresh) tokens of distinct users
sign_in_tokens() {
    python3 - "$url" "$1" "$2" "$password" "$small_users" <<'EOF'
import json, sys, urllib.request
url, count, field, password, users = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
out = []
for i in range(count):
    body = json.dumps({"login": f"bench{i % users}", "password": password}).encode()
    req = urllib.request.Request(url + "/auth", body, {"Content-Type": "application/json"})
    out.append(json.load(urllib.request.urlopen(req))[field])
print("{" + ",".join('"%s"' % t for t in out) + "}")
EOF
}

# Another process answering on our ports would be measured instead of ours.
for p in "$port" "$base_port"; do
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/"; then
        echo "bench/run.sh: something already listens on 127.0.0.1:$p; stop it first" >&2
        exit 1
    fi
done

# ---------------------------------------------------------------- idle (empty database)
log "idle: start-up on an empty database"
start_server
sleep 2
idle_empty=$(rss_kb "$server_pid")
stop_server

# ---------------------------------------------------------------- baseline
log "baseline: minimal axum server"
BASELINE_PORT=$base_port "$baseline_bin" &
base_pid=$!
for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$base_port/" >/dev/null 2>&1 && break; sleep 0.02; done
record baseline "$(wrk_run baseline "$base_pid" "http://127.0.0.1:$base_port/" "" 64 "$cores")"
kill "$base_pid"; wait "$base_pid" 2>/dev/null || true

# ---------------------------------------------------------------- small database
log "seeding $small_users accounts"
seed "$small_users" 0
settle
start_server

log "health"
record health "$(wrk_run health "$server_pid" "$url/api/health" "" 64 "$cores")"

log "me ($tokens users' tokens)"
me_tokens="tokens = $(sign_in_tokens "$tokens" auth)"
warm_up "$url" me.lua "$me_tokens"
record me "$(wrk_run me "$server_pid" "$url" me.lua 64 "$cores" "$me_tokens")"

log "login (and the hashing ceiling)"
login_lua="USERS = $small_users
PASSWORD = \"$password\""
login=$(wrk_run login "$server_pid" "$url" login.lua $((cores * 4)) "$cores" "$login_lua")
stop_server
ceiling=$("$bin" bench hash --iterations $((smoke ? 5 : 40)))
record login "$(python3 -c '
import json, sys
r, c = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r["ceiling_rps"] = round(c["ceiling_rps"], 1); r["verify_ms"] = round(c["verify_ms"], 2)
r["ratio"] = round(r["rps"] / c["ceiling_rps"], 3); print(json.dumps(r))' "$login" "$ceiling")"
start_server

log "me under a login flood"
flood_lua="$work/flood.lua"
{ printf '%s\n' "$login_lua"; cat "$root/bench/wrk/login.lua"; } >"$flood_lua"
wrk -t1 -c$((cores * 8)) -d"$duration" -s "$flood_lua" "$url" >/dev/null &
flood_pid=$!
sleep 0.3
record me-under-login-flood "$(wrk_run flood-me "$server_pid" "$url" me.lua 16 1 "$me_tokens")"
wait "$flood_pid" 2>/dev/null || true
flood_pid=""

log "refresh (rotation chains)"
chains=$((cores * 4))
refresh_lua="refresh_tokens = $(sign_in_tokens "$chains" refresh)"
refresh=$(wrk_run refresh "$server_pid" "$url" refresh.lua "$chains" "$chains" "$refresh_lua")
stop_server
rotate=$("$bin" bench rotate --iterations $((smoke ? 50 : 2000)) --chains "$chains")
record refresh "$(python3 -c '
import json, sys
r, c = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r["ceiling_rps"] = round(c["rps"], 1); r["ratio"] = round(r["rps"] / c["rps"], 3)
print(json.dumps(r))' "$refresh" "$rotate")"
start_server

log "register"
record register "$(wrk_run register "$server_pid" "$url" register.lua $((cores * 4)) "$cores" "PASSWORD = \"$password\"")"
small_login=$(python3 -c 'import json,sys; print(sys.argv[1])' "$login")
stop_server

# ---------------------------------------------------------------- scale
log "scale: seeding $((large_users - small_users)) more accounts, $idle_sessions sessions, $audit_rows audit rows"
seed_started=$(date +%s)
seed $((large_users - small_users)) "$small_users" "$idle_sessions" "$audit_rows"
seed_secs=$(($(date +%s) - seed_started))
settle

log "startup on the large database"
# Exec to first successful health check, polled every millisecond; the median of five.
startup=$(python3 - "$bin" "$port" <<'EOF'
import json, socket, subprocess, sys, time
binary, port = sys.argv[1], int(sys.argv[2])
def healthy():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05) as s:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
runs = []
for _ in range(5):
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not healthy():
        if p.poll() is not None:
            sys.exit("server exited during start-up")
        time.sleep(0.001)
    runs.append(round((time.perf_counter() - t0) * 1000, 1))
    p.terminate()
    p.wait()
print(json.dumps({"startup_ms": sorted(runs)[2], "runs_ms": runs}))
EOF
)

start_server
sleep 2
idle_sessions_rss=$(rss_kb "$server_pid")
record idle "{\"rss_kb\": $idle_empty, \"peak_rss_kb\": $idle_empty, \"rss_with_sessions_kb\": $idle_sessions_rss, \"sessions\": $idle_sessions}"
record startup "$startup"

log "scale: login and me on the large database"
large_tokens="tokens = $(sign_in_tokens "$tokens" auth)"
warm_up "$url" me.lua "$large_tokens"
large_me=$(wrk_run scale-me "$server_pid" "$url" me.lua 64 "$cores" "$large_tokens")
large_login=$(wrk_run scale-login "$server_pid" "$url" login.lua $((cores * 4)) "$cores" "USERS = $large_users
PASSWORD = \"$password\"")
record scale "$(python3 -c '
import json, sys
small_me, small_login = None, json.loads(sys.argv[3])
for line in open(sys.argv[4]):
    r = json.loads(line)
    if r["scenario"] == "me": small_me = r
lm, ll = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(json.dumps({
    "users": int(sys.argv[5]), "audit_rows": int(sys.argv[6]), "seed_secs": int(sys.argv[7]),
    "rps": lm["rps"], "p50_ms": lm["p50_ms"], "p99_ms": lm["p99_ms"], "peak_rss_kb": max(lm["peak_rss_kb"], ll["peak_rss_kb"]),
    "me": lm, "login": ll,
    "me_p50_change": round(lm["p50_ms"] / small_me["p50_ms"] - 1, 3),
    "login_p50_change": round(ll["p50_ms"] / small_login["p50_ms"] - 1, 3),
}))' "$large_me" "$large_login" "$small_login" "$results" "$large_users" "$audit_rows" "$seed_secs")"
stop_server

# ---------------------------------------------------------------- report
if ((smoke)); then
    # Smoke mode checks that every scenario ran and answered; its figures are not kept.
    python3 "$root/bench/report.py" --results "$results" --backend "$backend" --mode smoke \
        --out "$work/report" --cores "$cores"
else
    python3 "$root/bench/report.py" --results "$results" --backend "$backend" --mode full \
        --out "$root/bench/results" --cores "$cores"
fi
