#!/usr/bin/env bash
# The project's full check, as CI runs it (.ci/run calls this on a fresh machine):
#   prerequisites -> fmt + clippy -> Rust test suite against a throwaway PostgreSQL
#   -> JWT, TOTP, metrics and webhook interop checks against a live server -> hosted UI in Chromium (playwright-core)
#   -> cargo audit -> optional bench smoke run.
# Fails fast: the first failing step stops the run, and the summary says which one it was.
#
# Environment:
#   SKIP_CLIPPY=1     skip cargo fmt --check and clippy (quicker local runs; CI never sets it)
#   CARGO_TARGET_DIR  honoured when locating the built server binary
#   PG_BIN            PostgreSQL server bin dir, when not under /usr/lib/postgresql/*/bin
#   CHROMIUM_BIN      browser for the UI tests (default /usr/bin/chromium, installed if missing)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VENV="$ROOT/.venv-test"
REQUIREMENTS="$ROOT/tests/interop/requirements.txt"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
SERVER_BIN="$TARGET_DIR/debug/porteiro"

: "${RUST_BACKTRACE:=1}"
export RUST_BACKTRACE

# ---------------------------------------------------------------------------------------------
# Step bookkeeping and cleanup. Everything started here (PostgreSQL, the server) is stopped by
# the EXIT trap, so an aborted run leaves no stray processes or temp dirs on a shared machine.

SUMMARY=()
CURRENT_STEP=""
STEP_STARTED=0
PG_DIR=""
INTEROP_DIR=""
SERVER_PID=""

step() {
    CURRENT_STEP=$1
    STEP_STARTED=$SECONDS
    printf '\n==> %s\n' "$1"
}

step_ok() {
    SUMMARY+=("$(printf '  %-34s ok (%ds)' "$CURRENT_STEP" $((SECONDS - STEP_STARTED)))")
    CURRENT_STEP=""
}

step_skipped() {
    SUMMARY+=("$(printf '  %-34s skipped (%s)' "$1" "$2")")
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # Give graceful shutdown a moment, then make sure the port is free for the next run.
        local _
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

cleanup() {
    local rc=$?
    set +e
    stop_server
    if [[ -n "$PG_DIR" ]]; then
        "$ROOT/scripts/pg-cluster.sh" stop "$PG_DIR"
        rm -rf "$PG_DIR"
    fi
    [[ -n "$INTEROP_DIR" ]] && rm -rf "$INTEROP_DIR"
    if [[ -n "$CURRENT_STEP" ]]; then
        SUMMARY+=("$(printf '  %-34s FAILED (%ds)' "$CURRENT_STEP" $((SECONDS - STEP_STARTED)))")
    fi
    printf '\n==> summary (%ds)\n' "$SECONDS"
    printf '%s\n' "${SUMMARY[@]}"
    if [[ $rc -eq 0 ]]; then
        echo "scripts/test.sh: all steps passed"
    else
        echo "scripts/test.sh: FAILED (exit $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
# Turn signals into a normal exit so the EXIT trap cleans up.
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------------------------------------
step "prerequisites"

# CI machines start without the PostgreSQL server (the client alone is there); the contract
# tests need a real one.
scripts/pg-cluster.sh install

# The UI tests drive Debian's Chromium through playwright-core (never a downloaded browser);
# the emoji font lets the screenshots show seed 003's message symbols. Node runs the tests.
apt_install() {
    local attempt
    for attempt in $(seq 1 10); do
        if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=60 -q update &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=60 -q install -y \
                --no-install-recommends "$@"; then
            return 0
        fi
        echo "apt-get install $* failed (attempt $attempt/10); retrying in 10 s" >&2
        sleep 10
    done
    return 1
}
missing=()
[[ -n "${CHROMIUM_BIN:-}" || -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]] || missing+=(fonts-noto-color-emoji)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# prlimit runs the server under a small descriptor limit (tests/api/connections.rs).
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)
# The backup tests read Porteiro backups with the standard tools (tests/api/backup.rs).
command -v age >/dev/null 2>&1 || missing+=(age)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || { echo "missing ${missing[*]} and not root to install them" >&2; exit 1; }
    apt_install "${missing[@]}"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
    echo "the UI tests need Node.js 20 or newer (playwright-core); found $(node --version)" >&2
    exit 1
fi
# Exact versions from the lock file; reinstall only when it changes.
UI_LOCK="$ROOT/tests/ui/package-lock.json"
want_lock=$(sha256sum "$UI_LOCK" | cut -d' ' -f1)
if [[ "$(cat "$ROOT/tests/ui/node_modules/.lock.sha256" 2>/dev/null || true)" != "$want_lock" ]]; then
    (cd "$ROOT/tests/ui" && npm ci --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$want_lock" >"$ROOT/tests/ui/node_modules/.lock.sha256"
fi

# A private venv keeps the interop check's Python deps off the system interpreter. Reinstall
# only when requirements.txt changes, so local reruns stay fast.
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV" || { rm -rf "$VENV"; echo "could not create $VENV" >&2; exit 1; }
fi
want_reqs=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [[ "$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)" != "$want_reqs" ]]; then
    PIP_NO_INPUT=1 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    printf '%s\n' "$want_reqs" >"$VENV/.requirements.sha256"
fi
step_ok

# ---------------------------------------------------------------------------------------------
if [[ "${SKIP_CLIPPY:-0}" == "1" ]]; then
    step_skipped "cargo fmt --check" "SKIP_CLIPPY=1"
    step_skipped "cargo clippy" "SKIP_CLIPPY=1"
else
    step "cargo fmt --check"
    cargo fmt --all -- --check
    step_ok

    step "cargo clippy"
    cargo clippy --workspace --all-targets -- -D warnings
    step_ok
fi

# ---------------------------------------------------------------------------------------------
step "postgresql (throwaway cluster)"
# Under /tmp, not a root-only dir: as root the cluster runs as 'postgres', which must reach it.
PG_DIR=$(mktemp -d /tmp/porteiro-pg.XXXXXX)
TEST_POSTGRES_URL=$(scripts/pg-cluster.sh start "$PG_DIR")
export TEST_POSTGRES_URL
echo "TEST_POSTGRES_URL=$TEST_POSTGRES_URL"
step_ok

# ---------------------------------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
    step "rust tests (cargo nextest)"
    cargo nextest run --workspace --no-fail-fast
else
    step "rust tests (cargo test)"
    cargo test --workspace --no-fail-fast
fi
step_ok

# ---------------------------------------------------------------------------------------------
# Independent clients must accept what we produce: PyJWT our tokens through our JWKS alone, pyotp
# our otpauth URIs (its codes must sign in), the reference Standard Webhooks library
# (`standardwebhooks`) a real webhook delivery, captured by a receiver the script runs on
# loopback, and Prometheus' reference parser (`prometheus-client`) our /metrics. The Rust tests
# can't show that, since they check with the same libraries that sign.
step "interop (PyJWT, pyotp, prometheus-client, standardwebhooks vs live server)"
cargo build -p porteiro --bin porteiro
INTEROP_DIR=$(mktemp -d /tmp/porteiro-interop.XXXXXX)
SERVER_PORT=$(free_port)
BASE_URL="http://127.0.0.1:$SERVER_PORT"
# A clean environment and a temp-dir cwd (the server loads .env from its cwd upwards) keep a
# developer's or CI's ambient settings (PUBLIC_URL, JWT_ISSUER, DATABASE_URL...) out of it:
# the check expects the default issuer, http://SERVER_HOST:SERVER_PORT. Cheap Argon2 settings
# keep register/login fast on a 2-core machine.
(
    cd "$INTEROP_DIR"
    exec env -i \
        PATH="$PATH" \
        HOME="${HOME:-$INTEROP_DIR}" \
        RUST_BACKTRACE="$RUST_BACKTRACE" \
        SERVER_HOST=127.0.0.1 \
        SERVER_PORT="$SERVER_PORT" \
        DATABASE_URL="$INTEROP_DIR/interop.db" \
        DATA_DIR="$INTEROP_DIR" \
        ADMIN_EMAIL=admin@example.com \
        ADMIN_PASSWORD=Interop-Admin-9x \
        ARGON2_MEMORY_KIB=1024 \
        ARGON2_ITERATIONS=1 \
        LOG_LEVEL=warn \
        WEBHOOK_ALLOW_PRIVATE=true \
        WEBHOOK_POLL_INTERVAL=100ms \
        "$SERVER_BIN" serve
) >"$INTEROP_DIR/server.log" 2>&1 &
SERVER_PID=$!

server_log() {
    echo "--- server log (last 50 lines) ---" >&2
    tail -n 50 "$INTEROP_DIR/server.log" >&2 || true
}

# curl is not guaranteed on a fresh machine; the venv's Python is.
healthy() {
    "$VENV/bin/python" -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
' "$1" 2>/dev/null
}

deadline=$((SECONDS + 30))
until healthy "$BASE_URL/api/health"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "porteiro exited before becoming healthy" >&2
        server_log
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "porteiro did not answer 200 on /api/health within 30 s" >&2
        server_log
        exit 1
    fi
    sleep 0.3
done

"$VENV/bin/python" tests/interop/jwt_interop.py "$BASE_URL" || { server_log; exit 1; }
# The same server, default metrics access (loopback only): Prometheus' reference parser
# (prometheus-client) must accept /metrics, after the traffic the JWT check made.
"$VENV/bin/python" tests/interop/webhook_interop.py "$BASE_URL" Interop-Admin-9x || { server_log; exit 1; }
# After the webhook check, so the delivery histogram has samples to be typed.
"$VENV/bin/python" tests/interop/metrics_interop.py "$BASE_URL" || { server_log; exit 1; }
# Authenticator-app codes made by pyotp from the otpauth URI we hand out (our tests use totp-rs,
# the library the server checks with). Last: its many sign-in steps drain the per-address
# sign-in bucket (it waits out the 429s as Retry-After says; the other checks do not).
"$VENV/bin/python" tests/interop/mfa_interop.py "$BASE_URL" || { server_log; exit 1; }
stop_server
step_ok

# ---------------------------------------------------------------------------------------------
# The hosted UI in a real browser: seed 003's security tests, the account journey, both
# languages, no-JavaScript use; screenshots land in docs/screenshots/. The suite starts its own
# server (this debug binary, fresh SQLite file) and SMTP sink.
step "web ui (chromium + playwright-core)"
(cd tests/ui && PORTEIRO_BIN="$SERVER_BIN" node --test --test-reporter=spec)
step_ok

# ---------------------------------------------------------------------------------------------
# Supply chain: RustSec advisories from the offline snapshot beside the project (accepted ones
# are listed with reasons in .cargo/audit.toml). Skipped where the snapshot is not present,
# since there is no network to fetch it from.
ADVISORY_DB=${ADVISORY_DB:-"$ROOT/../shared/advisory-db"}
if [[ -d "$ADVISORY_DB" ]]; then
    step "cargo audit"
    if ! cargo audit --version >/dev/null 2>&1; then
        cargo install --locked cargo-audit
    fi
    cargo audit --db "$ADVISORY_DB" --no-fetch --deny warnings
    step_ok
else
    step_skipped "cargo audit" "no advisory database at $ADVISORY_DB"
fi

# ---------------------------------------------------------------------------------------------
if [[ -x bench/run.sh ]]; then
    step "bench smoke (sqlite)"
    bench/run.sh --smoke sqlite
    step_ok
fi
