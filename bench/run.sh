#!/usr/bin/env bash
# Load-tests a docflow binary with wrk and prints one summary table.
#
#   bench/run.sh PATH_TO_DOCFLOW                     the healthz scenario
#   bench/run.sh --io-threads-sweep PATH_TO_DOCFLOW  the same for DOCFLOW_IO_THREADS=1..4
#
# Each run starts the server on a free port of 127.0.0.1 with a fresh data
# directory, runs wrk against GET /healthz, reads the server's peak RSS, stops
# it with SIGTERM and removes the data directory. Results also go to
# bench/results/*.json (gitignored).
#
# Environment (all optional):
#   DURATION=10s  CONNECTIONS=64  WRK_THREADS=2  SWEEP="1 2 3 4"
#   REPEAT=1      runs per setting; with more, the run with the median
#                 requests/s is reported (runs are interleaved across settings)
#   DOCFLOW_IO_THREADS   io threads for the single run (default: docflow's own)
set -euo pipefail

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
SWEEP="${SWEEP:-1 2 3 4}"
REPEAT="${REPEAT:-1}"

usage() {
  echo "usage: bench/run.sh [--io-threads-sweep] PATH_TO_DOCFLOW" >&2
  exit 2
}

mode=single
if [ "${1:-}" = "--io-threads-sweep" ]; then
  mode=sweep
  shift
fi
[ $# -eq 1 ] || usage
bin="$(realpath "$1")"
[ -x "$bin" ] || { echo "bench: $1 is not an executable" >&2; exit 2; }
command -v wrk >/dev/null || { echo "bench: wrk is missing (scripts/install-deps installs it)" >&2; exit 2; }

repo="$(cd "$(dirname "$0")/.." && pwd)"
results_dir="$repo/bench/results"
mkdir -p "$results_dir"

work="$(mktemp -d -t docflow-bench.XXXXXX)"
server_pid=""

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
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
  local io_threads="$1" data="$work/data.$RANDOM"
  port="$(free_port)"
  (
    export DOCFLOW_LISTEN="127.0.0.1:$port"
    export DOCFLOW_DATA_DIR="$data"
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
    "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | wc -l)" <<'EOF'
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
EOF
}

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
