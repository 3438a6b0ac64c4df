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
# Scenarios: baseline, health, me, check-permission (a permission check, alternating with me),
# login, login-2fa (password + authenticator code, alternating with login), me-under-login-flood,
# refresh, register, messages (send + read), webhooks (login and register with one subscribed endpoint vs none; delivery
# throughput), idle, password-policy, startup, scale (login and me on 1k vs 1M accounts with 10M audit rows),
# users-search (an administrator's user search on the 1M-account database), backup (backup and
# restore of that database: seconds, MB/s, peak RSS). See bench/README.md.
#
# The machine's speed drifts by several per cent over minutes, so every ratio is taken from runs
# made side by side: baseline and me alternate (same wrk script and headers), the hashing and
# rotation ceilings are measured just before and just after their scenario, and scale alternates
# between a server on the small database and one on the large database.
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
large_pid=""
base_pid=""
flood_pid=""

cleanup() {
    [[ -n "$flood_pid" ]] && kill "$flood_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    [[ -n "$large_pid" ]] && kill "$large_pid" 2>/dev/null || true
    [[ -n "$base_pid" ]] && kill "$base_pid" 2>/dev/null || true
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
    rounds=1 mfa_per_round=200
else
    duration=${BENCH_DURATION:-15s} warm=3s small_users=1000 large_users=1000000 audit_rows=10000000
    idle_sessions=100000 tokens=256 rounds=${BENCH_ROUNDS:-3} mfa_per_round=2000
fi
password='Bench-Passw0rd-1'
port=18480
large_port=18481
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
# Two databases: the small one (1k accounts) and the large one (1M accounts, sessions, audit rows),
# so that scale can alternate between them.
mkdir -p "$work/data"
if [[ "$backend" == postgres ]]; then
    # shellcheck source=../scripts/pg-cluster.sh
    source "$root/scripts/pg-cluster.sh"
    pg_url=$(PG_FSYNC=on pg_start "$work/pg")
    "$(pg_bindir)/psql" -q "$pg_url" -c 'create database porteiro_large' >/dev/null
    small_db=$pg_url
    large_db=${pg_url%/*}/porteiro_large
else
    small_db="$work/data/porteiro.db"
    large_db="$work/data/porteiro-large.db"
fi

export DATABASE_URL DATA_DIR="$work/data" SERVER_HOST=127.0.0.1 SERVER_PORT=$port \
    ADMIN_PASSWORD='Bench-Admin-Passw0rd' EMAIL_ENABLED=false LOG_LEVEL=warn \
    RATE_LIMIT_ENABLED=false MESSAGES_PER_HOUR=1000000 DATABASE_MAX_CONNECTIONS=$((cores * 4)) WEBHOOK_ALLOW_PRIVATE=true \
    MASTER_KEY=$(head -c 32 /dev/urandom | base64)
DATABASE_URL=$small_db

# ---------------------------------------------------------------- helpers
record() { # name json...
    python3 - "$1" "$2" >>"$results" <<'EOF'
import json, sys
print(json.dumps({"scenario": sys.argv[1], **json.loads(sys.argv[2])}))
EOF
}

# launch PORT DATABASE: starts Porteiro and waits until it is healthy; its pid is in $launched.
launch() {
    local p=$1 db=$2 log="$work/server-$1.log"
    SERVER_PORT=$p DATABASE_URL=$db "$bin" serve >>"$log" 2>&1 &
    launched=$!
    for _ in $(seq 1 500); do
        curl -fsS "http://127.0.0.1:$p/api/health" >/dev/null 2>&1 && return 0
        kill -0 "$launched" 2>/dev/null || { cat "$log" >&2; return 1; }
        sleep 0.02
    done
    echo "bench/run.sh: server did not become healthy" >&2
    return 1
}

start_server() { launch "$port" "$small_db"; server_pid=$launched; }

stop_server() {
    [[ -n "$server_pid" ]] || return 0
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# median RUN_JSON_LINES: the run with the median throughput, plus every run's in "rounds_rps".
median() {
    python3 -c '
import json, sys
runs = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
pick = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
pick["rounds_rps"] = [r["rps"] for r in runs]
print(json.dumps(pick))' "$1"
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

seed() { # users start [sessions] [audit_rows] [readers] (into $DATABASE_URL)
    printf '%s\n' "$password" | "$bin" bench seed --users "$1" --start "$2" \
        --sessions "${3:-0}" --audit-rows "${4:-0}" --readers "${5:-0}" >>"$work/seed.log"
}

# After a bulk seed, let the database catch up before measuring: on PostgreSQL, VACUUM ANALYZE
# (fresh statistics, visibility map) and a CHECKPOINT, so that neither the small nor the large runs
# pay for the other's background work.
settle() { # [database]
    if [[ "$backend" == postgres ]]; then
        "$(pg_bindir)/psql" -q "${1:-$small_db}" -c 'vacuum analyze' -c 'checkpoint' >/dev/null
    fi
}

# warm_up URL SCRIPT EXTRA: an unrecorded 3 s run (1 s in smoke mode) so that the
# small and large databases are both measured warm.
warm_up() {
    local lua="$work/warm.lua"
    { printf '%s\n' "$3"; cat "$root/bench/wrk/common.lua" "$root/bench/wrk/$2"; } >"$lua"
    wrk -t"$cores" -c64 -d"$warm" -s "$lua" "$1" >/dev/null
}

# sign_in_tokens COUNT FIELD [URL] -> a Lua table of access (or refresh) tokens of distinct users
sign_in_tokens() {
    python3 - "${3:-$url}" "$1" "$2" "$password" "$small_users" <<'EOF'
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

# check_paths 'tokens = {...}' -> 'paths = {...}': each access token's own
# /api/rbac/check-permission/{sub}/users:read, in the same order. (The table goes through a
# file: 256 tokens are more than one command-line argument may hold.)
check_paths() {
    printf '%s' "$1" >"$work/check-tokens.lua"
    python3 - "$work/check-tokens.lua" <<'EOF'
import base64, json, re, sys
paths = []
for token in re.findall(r'"([^"]+)"', open(sys.argv[1]).read()):
    payload = token.split(".")[1]
    sub = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    paths.append('"/api/rbac/check-permission/%s/users:read"' % sub)
print("paths = {" + ",".join(paths) + "}")
EOF
}

# admin_token URL -> an access token of the bench administrator (benchadmin, made by the CLI on
# the large database, whose seeded accounts keep start-up from creating the first administrator).
admin_token() {
    curl -fsS -H 'Content-Type: application/json' \
        -d "{\"login\": \"benchadmin\", \"password\": \"$ADMIN_PASSWORD\"}" "$1/auth" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["auth"])'
}

# Another process answering on our ports would be measured instead of ours.
for p in "$port" "$large_port" "$base_port"; do
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

# ---------------------------------------------------------------- password policy (no server)
# `porteiro bench policy`: the policy check (seed-003 rules, breached list, zxcvbn) per password,
# each password's median over its iterations; the first check's time and RSS before/after it.
log "password-policy: cost of one policy check, server stopped"
record password-policy "$("$bin" bench policy --iterations $((smoke ? 5 : 200)))"

# ---------------------------------------------------------------- small database
log "seeding $small_users accounts ($tokens of them with a role holding users:read)"
seed "$small_users" 0 0 0 "$tokens"
settle
start_server

log "health"
record health "$(wrk_run health "$server_pid" "$url/api/health" "" 64 "$cores")"

# me against the baseline: rounds alternate between the two servers, with the same wrk script
# (the same per-request Lua and the same Authorization headers; the hello-world ignores them), so
# the load generator costs the same on both sides and drift hits both alike. check-permission
# (the same users, each asking whether it holds users:read) runs in the same rounds, right after
# me, and is compared with it.
log "me ($tokens users' tokens) against the baseline, and check-permission, $rounds alternating rounds"
me_tokens="tokens = $(sign_in_tokens "$tokens" auth)"
check_lua="$me_tokens
$(check_paths "$me_tokens")"
printf '%s' "$check_lua" >"$work/check.lua"
allowed=$(python3 - "$url" "$work/check.lua" <<'EOF'
import json, re, sys, urllib.request
url, lua = sys.argv[1], open(sys.argv[2]).read()
token = re.search(r'tokens = \{"([^"]+)"', lua).group(1)
path = re.search(r'paths = \{"([^"]+)"', lua).group(1)
req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
print(json.load(urllib.request.urlopen(req))["data"]["allowed"])
EOF
)
[[ "$allowed" == True ]] || { echo "bench/run.sh: check-permission answered allowed=$allowed" >&2; exit 1; }
BASELINE_PORT=$base_port "$baseline_bin" &
base_pid=$!
for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$base_port/" >/dev/null 2>&1 && break; sleep 0.02; done
base_url="http://127.0.0.1:$base_port"
warm_up "$base_url" me.lua "$me_tokens
ME_PATH = \"/\""
warm_up "$url" me.lua "$me_tokens"
warm_up "$url" check.lua "$check_lua"
base_runs="" me_runs="" check_runs=""
for _ in $(seq 1 "$rounds"); do
    base_runs+=$(wrk_run baseline "$base_pid" "$base_url" me.lua 64 "$cores" "$me_tokens
ME_PATH = \"/\"")$'\n'
    me_runs+=$(wrk_run me "$server_pid" "$url" me.lua 64 "$cores" "$me_tokens")$'\n'
    check_runs+=$(wrk_run check-permission "$server_pid" "$url" check.lua 64 "$cores" "$check_lua")$'\n'
done
kill "$base_pid"; wait "$base_pid" 2>/dev/null || true
base_pid=""
record baseline "$(median "$base_runs")"
record me "$(median "$me_runs")"
record check-permission "$(python3 -c '
import json, sys
check, me = (json.loads(a) for a in sys.argv[1:3])
check["me_rps"] = me["rps"]
check["rounds_me_rps"] = me["rounds_rps"]
check["ratio"] = round(check["rps"] / me["rps"], 3)
print(json.dumps(check))' "$(median "$check_runs")" "$(median "$me_runs")")"

# hash_ceiling: `porteiro bench hash` with the server stopped (it would compete for the cores).
hash_ceiling() { "$bin" bench hash --iterations $((smoke ? 5 : 40)); }

log "login (the hashing ceiling measured just before and just after)"
login_lua="USERS = $small_users
PASSWORD = \"$password\""
stop_server
ceiling_before=$(hash_ceiling)
start_server
login=$(wrk_run login "$server_pid" "$url" login.lua $((cores * 4)) "$cores" "$login_lua")
stop_server
ceiling_after=$(hash_ceiling)
record login "$(python3 -c '
import json, sys
r, before, after = (json.loads(a) for a in sys.argv[1:4])
ceiling = (before["ceiling_rps"] + after["ceiling_rps"]) / 2
r["ceiling_rps"] = round(ceiling, 1)
r["verify_ms"] = round((before["verify_ms"] + after["verify_ms"]) / 2, 2)
r["verify_ms_before_after"] = [round(before["verify_ms"], 2), round(after["verify_ms"], 2)]
r["ratio"] = round(r["rps"] / ceiling, 3); print(json.dumps(r))' "$login" "$ceiling_before" "$ceiling_after")"

# login-2fa: the same sign-in with an authenticator app, two requests each (password, then code).
# Its accounts are seeded with the server stopped, all on one secret (see `porteiro bench seed
# --totp`), and the codes of the next hour's steps go to wrk as a table. Each round signs in as
# accounts of its own (which steps an account spent lives in one wrk run's Lua state). Rounds
# alternate with one-step login rounds (login.lua, as above) and the medians are compared: next to
# the hash, the second step must be cheap.
log "login-2fa: password + authenticator code, $rounds rounds alternating with login"
mfa_users=$((mfa_per_round * rounds))
mfa_secret=$(printf '%s\n' "$password" | "$bin" bench seed --users "$mfa_users" --prefix benchmfa --totp |
    tee -a "$work/seed.log" | python3 -c 'import json, sys; print(json.load(sys.stdin)["totp_secret_hex"])')
settle
start_server
mfa_codes=$(python3 - "$mfa_secret" <<'EOF'
import hashlib, hmac, struct, sys, time
secret = bytes.fromhex(sys.argv[1])
def code(step):  # RFC 6238 over RFC 4226's dynamic truncation: SHA-1, 6 digits, 30 s
    mac = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1000000)
now = int(time.time()) // 30
print("CODES = {" + ",".join('[%d]="%s"' % (s, code(s)) for s in range(now - 1, now + 121)) + "}")
EOF
)
mfa_lua="ACCOUNTS = $mfa_per_round
PREFIX = \"benchmfa\"
PASSWORD = \"$password\"
THREADS = $((cores * 4))
$mfa_codes"
paired_login="" login_2fa=""
for round in $(seq 0 $((rounds - 1))); do
    paired_login+=$(wrk_run login-paired "$server_pid" "$url" login.lua $((cores * 4)) "$cores" "$login_lua")$'\n'
    login_2fa+=$(wrk_run login-2fa "$server_pid" "$url" login2fa.lua $((cores * 4)) $((cores * 4)) "FIRST = $((round * mfa_per_round))
$mfa_lua")$'\n'
done
record login-2fa "$(python3 -c '
import json, sys
logins = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
twos = [json.loads(l) for l in sys.argv[2].splitlines() if l.strip()]
r = sorted(twos, key=lambda x: x["sign_ins_per_sec"])[len(twos) // 2]
login = sorted(logins, key=lambda x: x["rps"])[len(logins) // 2]
r["rounds_sign_ins_per_sec"] = [x["sign_ins_per_sec"] for x in twos]
r["login_rps"] = login["rps"]
r["rounds_login_rps"] = [x["rps"] for x in logins]
r["ratio"] = round(r["sign_ins_per_sec"] / login["rps"], 3)
r["accounts_per_round"] = int(sys.argv[3])
print(json.dumps(r))' "$paired_login" "$login_2fa" "$mfa_per_round")"

log "me under a login flood"
me_tokens="tokens = $(sign_in_tokens "$tokens" auth)" # fresh: access tokens live five minutes
flood_lua="$work/flood.lua"
{ printf '%s\n' "$login_lua"; cat "$root/bench/wrk/login.lua"; } >"$flood_lua"
wrk -t1 -c$((cores * 8)) -d"$duration" -s "$flood_lua" "$url" >/dev/null &
flood_pid=$!
sleep 0.3
record me-under-login-flood "$(wrk_run flood-me "$server_pid" "$url" me.lua 16 1 "$me_tokens")"
wait "$flood_pid" 2>/dev/null || true
flood_pid=""

log "refresh (rotation chains; the raw rotation measured just before and just after)"
chains=$((cores * 4))
refresh_lua="refresh_tokens = $(sign_in_tokens "$chains" refresh)"
raw_rotate() { "$bin" bench rotate --iterations $((smoke ? 50 : 2000)) --chains "$chains"; }
stop_server
rotate_before=$(raw_rotate)
start_server
refresh=$(wrk_run refresh "$server_pid" "$url" refresh.lua "$chains" "$chains" "$refresh_lua")
stop_server
rotate_after=$(raw_rotate)
record refresh "$(python3 -c '
import json, sys
r, before, after = (json.loads(a) for a in sys.argv[1:4])
ceiling = (before["rps"] + after["rps"]) / 2
r["ceiling_rps"] = round(ceiling, 1)
r["ceiling_before_after"] = [round(before["rps"], 1), round(after["rps"], 1)]
r["ratio"] = round(r["rps"] / ceiling, 3)
print(json.dumps(r))' "$refresh" "$rotate_before" "$rotate_after")"
start_server

log "register"
record register "$(wrk_run register "$server_pid" "$url" register.lua $((cores * 4)) "$cores" "PASSWORD = \"$password\"")"

# messages: private messages between the seeded accounts, one connection per wrk thread, each
# sending a message (about 1 KiB) and then reading it as its recipient, in turn; rps counts both
# (sends/s = reads/s = rps / 2). MESSAGES_PER_HOUR is lifted for it (see the exports above).
log "messages: send + read by the recipient"
msg_tokens="tokens = $(sign_in_tokens "$tokens" auth)" # fresh: access tokens live five minutes
record messages "$(wrk_run messages "$server_pid" "$url" messages.lua $((cores * 4)) $((cores * 4)) "$msg_tokens")"

# webhooks: the cost of writing deliveries with every security event. login and register run
# with one endpoint subscribed to every event and with none, rounds alternating; after each
# subscribed round the backlog drains before the next round starts (its delivery work would
# otherwise slow the next round). Then delivery throughput: a replay queues up to 10,000 events
# at once and the time until the backlog is empty gives deliveries per second. The receiver is
# the baseline server's POST /hook (204).
log "webhooks: login and register with one subscribed endpoint vs none, $rounds alternating rounds; delivery throughput"
BASELINE_PORT=$base_port "$baseline_bin" &
base_pid=$!
for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$base_port/" >/dev/null 2>&1 && break; sleep 0.02; done
hooks() { # ACTION [ARG]: the admin calls of this scenario, one small Python client
    python3 "$root/bench/hooks.py" --url "$url" --admin-password "$ADMIN_PASSWORD" "$@"
}
hook_id=$(hooks create "http://127.0.0.1:$base_port/hook")
hooks_started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
login_off="" login_on="" register_off="" register_on=""
for _ in $(seq 1 "$rounds"); do
    hooks enable "$hook_id" false
    login_off+=$(wrk_run hooks-login-off "$server_pid" "$url" login.lua $((cores * 4)) "$cores" "$login_lua")$'\n'
    register_off+=$(wrk_run hooks-register-off "$server_pid" "$url" register.lua $((cores * 4)) "$cores" "PASSWORD = \"$password\"")$'\n'
    hooks enable "$hook_id" true
    login_on+=$(wrk_run hooks-login-on "$server_pid" "$url" login.lua $((cores * 4)) "$cores" "$login_lua")$'\n'
    register_on+=$(wrk_run hooks-register-on "$server_pid" "$url" register.lua $((cores * 4)) "$cores" "PASSWORD = \"$password\"")$'\n'
    hooks drain >/dev/null
done
throughput=$(hooks throughput "$hook_id" "$hooks_started")
kill "$base_pid"; wait "$base_pid" 2>/dev/null || true
base_pid=""
record webhooks "$(python3 -c '
import json, sys
lo, ln, ro, rn, tp = (json.loads(a) for a in sys.argv[1:6])
print(json.dumps({
    "rps": ln["rps"], "p50_ms": ln["p50_ms"], "p99_ms": ln["p99_ms"], "peak_rss_kb": ln["peak_rss_kb"],
    "login_off": lo, "login_on": ln, "register_off": ro, "register_on": rn,
    "login_change": round(ln["rps"] / lo["rps"] - 1, 3),
    "register_change": round(rn["rps"] / ro["rps"] - 1, 3),
    **tp,
}))' "$(median "$login_off")" "$(median "$login_on")" "$(median "$register_off")" \
    "$(median "$register_on")" "$throughput")"

# ---------------------------------------------------------------- large database
log "seeding the large database: $large_users accounts, $idle_sessions sessions, $audit_rows audit rows"
stop_server
seed_started=$(date +%s)
DATABASE_URL=$large_db seed "$large_users" 0 "$idle_sessions" "$audit_rows"
seed_secs=$(($(date +%s) - seed_started))
# The seeded accounts keep start-up from creating the first administrator: users-search signs in
# as one made here.
printf '%s\n' "$ADMIN_PASSWORD" | DATABASE_URL=$large_db "$bin" user create --username benchadmin \
    --email benchadmin@example.com --admin --verified --password-stdin >>"$work/seed.log"
settle "$large_db"

log "startup on the large database"
# Exec to first successful health check, polled every millisecond; the median of five.
startup=$(DATABASE_URL=$large_db python3 - "$bin" "$port" <<'EOF'
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

launch "$large_port" "$large_db"
large_pid=$launched
large_url="http://127.0.0.1:$large_port"
sleep 2
idle_sessions_rss=$(rss_kb "$large_pid")
record idle "{\"rss_kb\": $idle_empty, \"peak_rss_kb\": $idle_empty, \"rss_with_sessions_kb\": $idle_sessions_rss, \"sessions\": $idle_sessions}"
record startup "$startup"

# scale: one server on each database, both up; short runs alternate between them and the medians
# are compared, so that drift over the minutes of a run cancels out.
log "scale: me and login, $rounds rounds alternating between 1k and 1M accounts"
start_server
small_tokens="tokens = $(sign_in_tokens "$tokens" auth)"
large_tokens="tokens = $(sign_in_tokens "$tokens" auth "$large_url")"
warm_up "$url" me.lua "$small_tokens"
warm_up "$large_url" me.lua "$large_tokens"
small_me="" large_me="" small_login="" large_login=""
for _ in $(seq 1 "$rounds"); do
    small_me+=$(wrk_run scale-me-small "$server_pid" "$url" me.lua 64 "$cores" "$small_tokens")$'\n'
    large_me+=$(wrk_run scale-me-large "$large_pid" "$large_url" me.lua 64 "$cores" "$large_tokens")$'\n'
done
for _ in $(seq 1 "$rounds"); do
    small_login+=$(wrk_run scale-login-small "$server_pid" "$url" login.lua $((cores * 4)) "$cores" "$login_lua")$'\n'
    large_login+=$(wrk_run scale-login-large "$large_pid" "$large_url" login.lua $((cores * 4)) "$cores" "USERS = $large_users
PASSWORD = \"$password\"")$'\n'
done
record scale "$(python3 -c '
import json, sys
sm, lm, sl, ll = (json.loads(a) for a in sys.argv[1:5])
print(json.dumps({
    "users": int(sys.argv[5]), "small_users": int(sys.argv[6]), "audit_rows": int(sys.argv[7]),
    "seed_secs": int(sys.argv[8]),
    "rps": lm["rps"], "p50_ms": lm["p50_ms"], "p99_ms": lm["p99_ms"],
    "peak_rss_kb": max(lm["peak_rss_kb"], ll["peak_rss_kb"]),
    "me": lm, "login": ll, "small_me": sm, "small_login": sl,
    "me_p50_change": round(lm["p50_ms"] / sm["p50_ms"] - 1, 3),
    "login_p50_change": round(ll["p50_ms"] / sl["p50_ms"] - 1, 3),
}))' "$(median "$small_me")" "$(median "$large_me")" "$(median "$small_login")" \
    "$(median "$large_login")" "$large_users" "$small_users" "$audit_rows" "$seed_secs")"
stop_server

# users-search: an administrator searching the 1M accounts by username or email prefix, 20 per
# page, with the total; the p99 of the median round counts.
log "users-search on $large_users accounts, $rounds rounds"
search_lua="TOKEN = \"$(admin_token "$large_url")\""
warm_up "$large_url" users_search.lua "$search_lua"
search_runs=""
for _ in $(seq 1 "$rounds"); do
    search_runs+=$(wrk_run users-search "$large_pid" "$large_url" users_search.lua $((cores * 4)) "$cores" "$search_lua")$'\n'
done
record users-search "$(median "$search_runs")"
kill "$large_pid"; wait "$large_pid" 2>/dev/null || true
large_pid=""

# backup: `porteiro backup` of the large database (1M accounts, 10M audit rows), then `porteiro
# restore` of it into an empty database; seconds, MB/s and each command's peak RSS.
log "backup and restore of the large database"
if [[ "$backend" == postgres ]]; then
    "$(pg_bindir)/psql" -q "$pg_url" -c 'create database porteiro_restored' >/dev/null
    restored_db=${pg_url%/*}/porteiro_restored
else
    restored_db="$work/data/porteiro-restored.db"
fi
record backup "$(bench/backup.sh "$bin" "$large_db" "$restored_db" "$work/data")"

# ---------------------------------------------------------------- report
if ((smoke)); then
    # Smoke mode checks that every scenario ran and answered; its figures are not kept.
    python3 "$root/bench/report.py" --results "$results" --backend "$backend" --mode smoke \
        --out "$work/report" --cores "$cores"
else
    python3 "$root/bench/report.py" --results "$results" --backend "$backend" --mode full \
        --out "$root/bench/results" --cores "$cores"
fi
