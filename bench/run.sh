#!/usr/bin/env bash
# Load-tests a docflow binary and prints one summary table.
#
#   bench/run.sh PATH_TO_DOCFLOW                     GET /healthz (also: bench/run.sh healthz PATH)
#   bench/run.sh --io-threads-sweep PATH_TO_DOCFLOW  the same for DOCFLOW_IO_THREADS=1..4
#   bench/run.sh all PATH_TO_DOCFLOW                 every scenario below, one table, results/all.json
#   bench/run.sh me|login|upload|burst PATH          one of them (results/<name>.json)
#
#   me      GET /auth/me with a valid token, wrk -c64 for ME_DURATION
#   login   POST /auth/login with correct credentials, wrk -c8 for LOGIN_DURATION
#   upload  POST /documents of a 64 KiB and a 1 MiB PDF, wrk -c64 for UPLOAD_DURATION,
#           against docflow and against nginx (bench/nginx.conf.template), interleaved
#   burst   bench/burst.py: 1000 connections opened first, then each uploads one
#           1 MiB PDF at the same moment; against docflow and nginx
#
# Each run starts the server on a free port of 127.0.0.1 with a fresh data
# directory, runs the load, reads the server's CPU time and peak RSS from
# /proc, stops it and removes its data (also on Ctrl-C or failure). Results
# also go to bench/results/*.json (gitignored).
#
# Environment (all optional):
#   DURATION=10s  CONNECTIONS=64  WRK_THREADS=2  SWEEP="1 2 3 4"     (healthz)
#   ME_DURATION=10s  LOGIN_DURATION=10s  LOGIN_CONNECTIONS=8
#   UPLOAD_DURATION=20s  UPLOAD_CONNECTIONS=64  UPLOAD_SIZES="65536 1048576"
#   BURST_CONNECTIONS=1000  BURST_FILE_BYTES=1048576  WRK_TIMEOUT=30s
#   NGINX=nginx   the nginx binary for the baseline; NGINX=skip leaves it out
#   BENCH_NOTE    free text stored with the results (e.g. how the binary was built)
#   BENCH_REV     the git revision to record (default: the repository's HEAD)
#   REPEAT=1      runs per setting; with more, the run with the median
#                 figure is reported (runs are interleaved across settings)
#   DOCFLOW_IO_THREADS   io threads for the single healthz run (default: docflow's own)
set -euo pipefail

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
SWEEP="${SWEEP:-1 2 3 4}"
REPEAT="${REPEAT:-1}"
ME_DURATION="${ME_DURATION:-10s}"
LOGIN_DURATION="${LOGIN_DURATION:-10s}"
LOGIN_CONNECTIONS="${LOGIN_CONNECTIONS:-8}"
UPLOAD_DURATION="${UPLOAD_DURATION:-20s}"
UPLOAD_CONNECTIONS="${UPLOAD_CONNECTIONS:-64}"
UPLOAD_SIZES="${UPLOAD_SIZES:-65536 1048576}"
BURST_CONNECTIONS="${BURST_CONNECTIONS:-1000}"
BURST_FILE_BYTES="${BURST_FILE_BYTES:-1048576}"
WRK_TIMEOUT="${WRK_TIMEOUT:-30s}"
NGINX="${NGINX:-nginx}"

usage() {
  echo "usage: bench/run.sh [healthz|--io-threads-sweep|all|me|login|upload|burst] PATH_TO_DOCFLOW" >&2
  exit 2
}

mode=single
case "${1:-}" in
  --io-threads-sweep) mode=sweep; shift ;;
  healthz) mode=single; shift ;;
  all | me | login | upload | burst) mode="$1"; shift ;;
esac
[ $# -eq 1 ] || usage
bin="$(realpath "$1")"
[ -x "$bin" ] || { echo "bench: $1 is not an executable" >&2; exit 2; }
command -v wrk >/dev/null || { echo "bench: wrk is missing (scripts/install-deps installs it)" >&2; exit 2; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
bench_dir="$repo/bench"
results_dir="$bench_dir/results"
mkdir -p "$results_dir"

with_nginx=0
if [ "$mode" = all ] || [ "$mode" = upload ] || [ "$mode" = burst ]; then
  if [ "$NGINX" != skip ]; then
    command -v "$NGINX" >/dev/null || {
      echo "bench: nginx is missing (apt-get install nginx), or run with NGINX=skip" >&2
      exit 2
    }
    NGINX="$(command -v "$NGINX")"
    with_nginx=1
  fi
  # The burst holds 1000 connections at once, in the client and in the servers.
  if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt 4096 ]; then
    ulimit -n 4096 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
  fi
fi

work="$(mktemp -d -t docflow-bench.XXXXXX)"
server_pid=""
server_data=""
nginx_pid=""

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
    kill -TERM "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server IO_THREADS (empty: docflow's default). Sets server_pid and port.
start_server() {
  local io_threads="$1"
  server_data="$work/data.$RANDOM"
  port="$(free_port)"
  (
    export DOCFLOW_LISTEN="127.0.0.1:$port"
    export DOCFLOW_DATA_DIR="$server_data"
    export DOCFLOW_JWT_SECRET="bench-secret-bench-secret-bench-secret-0123"
    export DOCFLOW_LOG_LEVEL=warn # keep the access log from dominating
    # shellcheck disable=SC2030 # on purpose: this environment is the server's alone
    if [ -n "$io_threads" ]; then export DOCFLOW_IO_THREADS="$io_threads"; else unset DOCFLOW_IO_THREADS; fi
    exec "$bin" serve
  ) >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "bench: docflow exited during start-up:" >&2
      cat "$work/server.err" "$work/server.out" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "bench: docflow did not answer /healthz within 10 s" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
  if [ "$rc" -ne 0 ]; then
    echo "bench: docflow exited with $rc after SIGTERM" >&2
    cat "$work/server.err" >&2
  fi
  rm -rf "$server_data"
}

# wrk prints latencies as 812.00us, 1.23ms or 1.02s; this returns milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# run_scenario IO_THREADS -> prints "io_threads rps p50 p99 peak_rss_mib rss_mib errors"
run_scenario() {
  local io_threads="$1"
  start_server "$io_threads"
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port/healthz" >"$work/wrk.txt"
  local hwm_kib rss_kib
  hwm_kib="$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")"
  rss_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status")"
  stop_server

  local rps p50 p99 non2xx sockerr
  rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")"
  p50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")")"
  p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")")"
  non2xx="$(awk -F: '/Non-2xx or 3xx responses/ {gsub(/ /, "", $2); print $2}' "$work/wrk.txt")"
  sockerr="$(awk '/Socket errors:/ {n = 0; for (i = 3; i <= NF; i += 2) n += $(i + 1); print n}' "$work/wrk.txt" |
    tr -d ',')"
  [ -n "$rps" ] || { echo "bench: could not parse wrk's output:" >&2; cat "$work/wrk.txt" >&2; exit 1; }
  echo "${io_threads:-default} $rps $p50 $p99 $(mib "$hwm_kib") $(mib "$rss_kib") $((${non2xx:-0} + ${sockerr:-0}))"
}

print_table() {
  printf '%-10s %12s %9s %9s %13s %8s %7s\n' io_threads "requests/s" "p50 ms" "p99 ms" "peak RSS MiB" "RSS MiB" errors
  while read -r io rps p50 p99 hwm rss errors; do
    printf '%-10s %12s %9s %9s %13s %8s %7s\n' "$io" "$rps" "$p50" "$p99" "$hwm" "$rss" "$errors"
  done <"$1"
}

# write_json FILE ROWS_FILE RUNS_FILE
write_json() {
  python3 - "$1" "$2" "$3" "$DURATION" "$CONNECTIONS" "$WRK_THREADS" "$(nproc)" \
    "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$load_before" \
    "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | wc -l)" <<'PY'
import datetime, json, sys
out, rows_file, runs_file, duration, connections, wrk_threads, cores, rev, load, changed = sys.argv[1:]
every = {}
for line in open(runs_file):
    io, rps = line.split()[:2]
    every.setdefault(io, []).append(float(rps))
rows = []
for line in open(rows_file):
    io, rps, p50, p99, hwm, rss, errors = line.split()
    rows.append({"io_threads": io if io == "default" else int(io), "requests_per_second": float(rps),
                 "latency_p50_ms": float(p50), "latency_p99_ms": float(p99),
                 "peak_rss_mib": float(hwm), "rss_after_run_mib": float(rss), "errors": int(errors),
                 "requests_per_second_all_runs": every[io]})
doc = {"scenario": "GET /healthz", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "git_revision": rev, "uncommitted_changes": int(changed) > 0, "cores": int(cores), "load_average_before": [float(x) for x in load.split()],
       "wrk": {"threads": int(wrk_threads), "connections": int(connections), "duration": duration},
       "runs_per_setting": len(next(iter(every.values()))),
       "note": "wrk runs on the same machine and shares its cores with the server",
       "results": rows}
with open(out, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
PY
}

# ---------------------------------------------------------------------------
# The scenarios of `all`: auth, login, uploads and the burst, with nginx as
# the upload baseline. Each run appends one JSON line to $rows (report.py).

bench_user="bench-user"
bench_password="bench-password-0123"
clk_tck="$(getconf CLK_TCK)"
report() { python3 "$bench_dir/report.py" "$@"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# docflow_token: registers the bench account on the running docflow and logs
# in. Sets token.
docflow_token() {
  local creds="{\"username\":\"$bench_user\",\"password\":\"$bench_password\"}"
  curl -fsS -o /dev/null -H 'Content-Type: application/json' -d "$creds" "http://127.0.0.1:$port/auth/register"
  token="$(curl -fsS -H 'Content-Type: application/json' -d "$creds" "http://127.0.0.1:$port/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"
}

# start_nginx: nginx from bench/nginx.conf.template on a free port of
# 127.0.0.1, its temp files in a fresh directory. Sets nginx_pid, port and
# server_pids (master and workers).
start_nginx() {
  local dir="$work/nginx.$RANDOM" responder_port user_line=""
  mkdir -p "$dir"
  # Workers run as nobody when started by root: they must reach their temp dir.
  chmod 755 "$work" "$dir"
  [ "$(id -u)" -eq 0 ] && user_line="user nobody $(id -gn nobody);"
  port="$(free_port)"
  responder_port="$(free_port)"
  [ "$responder_port" != "$port" ] || responder_port="$(free_port)"
  sed -e "s|@PORT@|$port|g; s|@RESPONDER_PORT@|$responder_port|g; s|@DIR@|$dir|g; s|@USER@|$user_line|g" \
    "$bench_dir/nginx.conf.template" >"$dir/nginx.conf"
  "$NGINX" -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$work/nginx.out" 2>&1 &
  nginx_pid=$!
  for _ in $(seq 1 100); do
    if [ "$(curl -sS -o /dev/null -w '%{http_code}' -X POST -d probe "http://127.0.0.1:$port/" 2>/dev/null)" = 201 ]; then
      server_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
      return 0
    fi
    if ! kill -0 "$nginx_pid" 2>/dev/null; then
      echo "bench: nginx exited during start-up:" >&2
      cat "$work/nginx.out" "$dir/error.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "bench: nginx did not answer within 10 s" >&2
  exit 1
}

stop_nginx() {
  kill -TERM "$nginx_pid"
  wait "$nginx_pid" || true
  nginx_pid=""
}

# start SERVER: docflow (logged in: sets token) or nginx (token empty).
start() {
  token=""
  if [ "$1" = docflow ]; then
    start_server ""
    server_pids="$server_pid"
    docflow_token
  else
    start_nginx
  fi
}

stop() {
  if [ "$1" = docflow ]; then stop_server; else stop_nginx; fi
  sync # the next run should not pay for this one's writeback
}

sum_proc() { # sum_proc FILE FIELD PIDS...: sums "FIELD: N" lines of /proc/PID/FILE
  local file="$1" field="$2" p total=0 v
  shift 2
  for p in "$@"; do
    v="$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/$file")"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

cpu_ticks() { # utime + stime of PIDS (every thread), in clock ticks
  local p total=0
  for p in "$@"; do
    total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
  done
  echo "$total"
}

# measure_begin / measure_end: server CPU time, bytes written and peak RSS
# over a run. Writing 5 to clear_refs resets VmHWM to the current RSS, so the
# peak is the run's own, not start-up's (docflow computes a 19 MiB argon2id
# hash once at start-up, and one per login).
measure_begin() {
  # shellcheck disable=SC2086 # server_pids is a list
  {
    hwm_reset=1
    for p in $server_pids; do echo 5 2>/dev/null >"/proc/$p/clear_refs" || hwm_reset=0; done
    ticks0="$(cpu_ticks $server_pids)"
    wchar0="$(sum_proc io wchar $server_pids)"
    load_start="$(loadavg)"
  }
}

measure_end() {
  # shellcheck disable=SC2086
  {
    ticks=$(($(cpu_ticks $server_pids) - ticks0))
    wchar=$(($(sum_proc io wchar $server_pids) - wchar0))
    hwm_kib="$(sum_proc status VmHWM $server_pids)"
  }
}

# record wrk-row|burst-row KEY SCENARIO SERVER OUTPUT FILE_BYTES SETTINGS
record() {
  report "$1" "$rows" --key "$2" --scenario "$3" --server "$4" --output "$5" --file-bytes "$6" --settings "$7" \
    --cpu-ticks "$ticks" --clk-tck "$clk_tck" --hwm-kib "$hwm_kib" --hwm-reset "$hwm_reset" \
    --wchar "$wchar" --load "$load_start"
  tail -n 1 "$rows" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("bench:   %s %s: %s req/s%s, p50 %s ms, p99 %s ms, errors %s %s" % (r["scenario"], r["server"], r["requests_per_s"],
      ", %s MB/s" % r["mb_per_s"] if r.get("mb_per_s") is not None else "", r["p50_ms"], r["p99_ms"], r["errors"], r.get("notes", "")))' >&2
}

# wrk_run SCRIPT PATH CONNECTIONS DURATION: wrk against the running server.
wrk_run() {
  BENCH_LUA_DIR="$bench_dir/wrk" BENCH_TOKEN="$token" BENCH_USER="$bench_user" BENCH_PASSWORD="$bench_password" \
    BENCH_BODY="${body_file:-}" BENCH_BOUNDARY="${boundary:-}" \
    wrk -t"$WRK_THREADS" -c"$3" -d"$4" --timeout "$WRK_TIMEOUT" --latency -s "$bench_dir/wrk/$1" \
    "http://127.0.0.1:$port$2" >"$work/wrk.txt"
}

scenario_me() {
  echo "bench: GET /auth/me, wrk -t$WRK_THREADS -c$CONNECTIONS -d$ME_DURATION" >&2
  start docflow
  measure_begin
  wrk_run me.lua /auth/me "$CONNECTIONS" "$ME_DURATION"
  measure_end
  stop docflow
  record wrk-row me "GET /auth/me" docflow "$work/wrk.txt" 0 "wrk -t$WRK_THREADS -c$CONNECTIONS -d$ME_DURATION"
}

scenario_login() {
  echo "bench: POST /auth/login, wrk -t$WRK_THREADS -c$LOGIN_CONNECTIONS -d$LOGIN_DURATION" >&2
  start docflow
  measure_begin
  wrk_run login.lua /auth/login "$LOGIN_CONNECTIONS" "$LOGIN_DURATION"
  measure_end
  stop docflow
  record wrk-row login "POST /auth/login" docflow "$work/wrk.txt" 0 \
    "wrk -t$WRK_THREADS -c$LOGIN_CONNECTIONS -d$LOGIN_DURATION"
}

size_label() { if [ "$1" -ge 1048576 ]; then echo "$(($1 / 1048576)) MiB"; else echo "$(($1 / 1024)) KiB"; fi; }
size_key() { if [ "$1" -ge 1048576 ]; then echo "$(($1 / 1048576))m"; else echo "$(($1 / 1024))k"; fi; }

# make_body FILE_BYTES: sets body_file and boundary.
make_body() {
  body_file="$work/body.$1"
  if [ ! -f "$body_file" ]; then
    python3 "$bench_dir/make_upload.py" "$1" "$body_file" >"$body_file.boundary"
  fi
  boundary="$(cat "$body_file.boundary")"
}

# scenario_upload FILE_BYTES SERVER
scenario_upload() {
  local label
  label="$(size_label "$1")"
  echo "bench: POST /documents, $label PDF, $2, wrk -t$WRK_THREADS -c$UPLOAD_CONNECTIONS -d$UPLOAD_DURATION" >&2
  make_body "$1"
  start "$2"
  measure_begin
  wrk_run upload.lua /documents "$UPLOAD_CONNECTIONS" "$UPLOAD_DURATION"
  measure_end
  stop "$2"
  record wrk-row "upload_$(size_key "$1")" "upload $label" "$2" "$work/wrk.txt" "$1" \
    "wrk -t$WRK_THREADS -c$UPLOAD_CONNECTIONS -d$UPLOAD_DURATION"
}

# scenario_burst SERVER
scenario_burst() {
  local label
  label="$(size_label "$BURST_FILE_BYTES")"
  echo "bench: burst, $BURST_CONNECTIONS connections x one $label PDF, $1" >&2
  make_body "$BURST_FILE_BYTES"
  start "$1"
  measure_begin
  python3 "$bench_dir/burst.py" --port "$port" --body "$body_file" --boundary "$boundary" --token "$token" \
    -n "$BURST_CONNECTIONS" >"$work/burst.txt" 2>"$work/burst.err" || {
    cat "$work/burst.err" >&2
    exit 1
  }
  measure_end
  stop "$1"
  record burst-row burst "burst $BURST_CONNECTIONS x $label" "$1" "$work/burst.txt" "$BURST_FILE_BYTES" \
    "bench/burst.py -n $BURST_CONNECTIONS"
}

servers() { if [ "$with_nginx" = 1 ]; then echo docflow nginx; else echo docflow; fi; }

run_scenarios() {
  local what="$1" r size s
  rows="$work/rows.jsonl"
  : >"$rows"
  load_before="$(loadavg)"
  echo "bench: load average before the run: $load_before ($(nproc) cores, shared by the load generator and the server)" >&2
  for r in $(seq 1 "$REPEAT"); do
    echo "bench: round $r/$REPEAT" >&2
    if [ "$what" = all ] || [ "$what" = me ]; then scenario_me; fi
    if [ "$what" = all ] || [ "$what" = login ]; then scenario_login; fi
    if [ "$what" = all ] || [ "$what" = upload ]; then
      for size in $UPLOAD_SIZES; do
        for s in $(servers); do scenario_upload "$size" "$s"; done
      done
    fi
    if [ "$what" = all ] || [ "$what" = burst ]; then
      for s in $(servers); do scenario_burst "$s"; done
    fi
  done
  echo "bench: load average after the run: $(loadavg)" >&2
  echo >&2
  local out="$results_dir/$what.json"
  report finish "$rows" "$out" --rev "${BENCH_REV:-$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
    --load-before "$load_before" \
    --changed "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | wc -l)" \
    --note "load generators (wrk, burst.py) run on the same machine and share its $(nproc) cores with the server${BENCH_NOTE:+; $BENCH_NOTE}"
  echo "bench: results written to ${out#"$repo"/}" >&2
}

case "$mode" in
  all | me | login | upload | burst)
    run_scenarios "$mode"
    exit 0
    ;;
esac

# ---------------------------------------------------------------------------
# GET /healthz, once or per DOCFLOW_IO_THREADS setting.

rows="$work/rows.txt"
runs="$work/runs.txt"
: >"$rows"
: >"$runs"
# Other work on the machine skews the figures: record how busy it was.
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench: load average before the run: $load_before" >&2
echo "bench: GET /healthz, wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION on $(nproc) cores (shared with the server)" >&2
if [ "$mode" = sweep ]; then
  settings="$SWEEP"
  out="$results_dir/healthz-io-threads.json"
else
  # shellcheck disable=SC2031 # the caller's value; the server's subshell does not change it
  settings="${DOCFLOW_IO_THREADS:-default}"
  out="$results_dir/healthz.json"
fi
for r in $(seq 1 "$REPEAT"); do
  for n in $settings; do
    echo "bench: run $r/$REPEAT, DOCFLOW_IO_THREADS=$n" >&2
    run_scenario "$([ "$n" = default ] || echo "$n")" >>"$runs"
  done
done
# One row per setting: the run with the median requests/s.
for n in $settings; do
  awk -v n="$n" '$1 == n' "$runs" | sort -k2,2 -g | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}' >>"$rows"
done
print_table "$rows"
write_json "$out" "$rows" "$runs"
echo "bench: results written to ${out#"$repo"/}" >&2
