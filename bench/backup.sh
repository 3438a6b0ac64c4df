#!/usr/bin/env bash
# The `backup` scenario: times `porteiro backup` and `porteiro restore` of a large database and
# reports seconds, MB/s (of the uncompressed stream) and each command's peak RSS
# (`/usr/bin/time -v`, "Maximum resident set size"). Public tools only: age-keygen (Debian `age`),
# GNU time (Debian `time`).
#
#   bench/backup.sh BIN SOURCE_DATABASE_URL TARGET_DATABASE_URL DATA_DIR
#
# SOURCE is an already seeded database (bench/run.sh passes its 1M-account, 10M-audit-row one;
# to run it alone: `porteiro bench seed --users N --audit-rows M` first, see bench/README.md).
# TARGET must be an empty database (a new SQLite path, or a new PostgreSQL database). Prints
# one JSON object.
set -euo pipefail
bin=$1 source_db=$2 target_db=$3 data_dir=$4

install() {
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}
command -v age-keygen >/dev/null 2>&1 || install age
[[ -x /usr/bin/time ]] || install time

work=$(mktemp -d /tmp/porteiro-bench-backup.XXXXXX)
trap 'rm -rf "$work"' EXIT
age-keygen -o "$work/key.txt" 2>/dev/null
recipient=$(sed -n 's/^# public key: //p' "$work/key.txt")

timed() { # NAME CMD...: runs CMD under GNU time; leaves its stdout in $work/NAME.out
    local name=$1; shift
    /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out"
}

DATABASE_URL=$source_db DATA_DIR=$data_dir BACKUP_RECIPIENT=$recipient LOG_LEVEL=warn \
    timed backup "$bin" backup "$work/bench.age"
DATABASE_URL=$target_db DATA_DIR=$data_dir BACKUP_IDENTITY_FILE=$work/key.txt LOG_LEVEL=warn \
    timed restore "$bin" restore "$work/bench.age"

python3 - "$work" <<'PY'
import json, os, re, sys
work = sys.argv[1]

def gnu_time(name):
    text = open(os.path.join(work, name + ".time")).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return secs, rss

backup_out = open(os.path.join(work, "backup.out")).read()
# "backup written to F: T tables, R rows, X MB (Y MB before compression) in S s"
m = re.search(r"(\d+) tables, (\d+) rows, ([\d.]+) MB \(([\d.]+) MB before compression\)", backup_out)
tables, rows, file_mb, stream_mb = int(m.group(1)), int(m.group(2)), float(m.group(3)), float(m.group(4))
bs, brss = gnu_time("backup")
rs, rrss = gnu_time("restore")
print(json.dumps({
    "tables": tables, "rows": rows, "file_mb": file_mb, "stream_mb": stream_mb,
    "backup_secs": round(bs, 2), "backup_mb_per_s": round(stream_mb / max(bs, 0.001), 1),
    "backup_peak_rss_kb": brss,
    "restore_secs": round(rs, 2), "restore_mb_per_s": round(stream_mb / max(rs, 0.001), 1),
    "restore_peak_rss_kb": rrss,
    "rows_per_s_backup": round(rows / max(bs, 0.001)), "rows_per_s_restore": round(rows / max(rs, 0.001)),
    "peak_rss_kb": max(brss, rrss),
}))
PY
