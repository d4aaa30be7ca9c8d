#!/usr/bin/env bash
# Benchmarks a docflow binary against nginx and prints one table
# (`make bench` builds a Release binary and runs this).
#
#   bench/run.sh PATH_TO_DOCFLOW
#
# Scenarios (bench/README.md explains each and every figure):
#   upload_1m, upload_64k  POST /documents of a 1 MiB / 64 KiB PDF, wrk -c64 for UPLOAD_DURATION
#   burst                  bench/burst.py: 1000 connections opened first, then each uploads
#                          one 1 MiB PDF at the same moment
#   get                    GET /documents/{id} with a bearer token, wrk -c64 for READ_DURATION
#   list_100000, list_100  GET /documents?limit=50 with 100,000 / 100 documents in the
#                          database (seeded straight into SQLite, see bench/seed.py)
#   process_1page, process_50page, process_docx
#                          PROCESS_DOCS documents (PROCESS_DOCS_50PAGE of the 50-page PDF)
#                          uploaded, then all queued at once and processed by the
#                          in-process workers (docflow only)
#   process_e2e            E2E_DOCS (1000) one-page PDFs uploaded, then all queued at once
#                          (docflow only)
# Every scenario runs against docflow and then nginx (bench/nginx.conf.template),
# REPEAT times, interleaved: docflow, nginx, docflow, nginx, ... per scenario.
# The two upload scenarios also run bench/disk_ceiling.py ("disk"): the files
# per second this disk can make durable the way docflow does (fsync, link,
# directory fsync, log fdatasync), with no HTTP at all, 64 writers.
# Each run starts its server on a free port of 127.0.0.1 with fresh files, runs
# the load, reads the server's CPU time and peak RSS from /proc, stops it and
# removes its files (also on Ctrl-C or failure). The table also goes to
# bench/results/bench.json (gitignored).
#
# Environment (all optional):
#   UPLOAD_DURATION=20s  UPLOAD_CONNECTIONS=64     the two upload scenarios
#   BURST_CONNECTIONS=1000                         the burst
#   READ_DURATION=20s  READ_CONNECTIONS=64         get and the two list scenarios
#   PROCESS_DOCS=200  PROCESS_DOCS_50PAGE=20  E2E_DOCS=1000  PROCESS_TIMEOUT=600 (seconds)
#   REPEAT=1          runs per scenario and server; with more, the run with the
#                     median figure is reported
#   SCENARIOS="..."   a subset of the scenario names above, in that order
#   WRK_THREADS=2  WRK_TIMEOUT=30s
#   NGINX=nginx       the nginx binary; NGINX=skip leaves the baseline out
#   BENCH_NOTE        free text stored with the results (e.g. how the binary was built)
#   BENCH_REV         the git revision to record (default: the repository's HEAD)
#   DOCFLOW_*         reach the server (what-if runs, e.g. DOCFLOW_WORKERS=4)
set -euo pipefail

UPLOAD_DURATION="${UPLOAD_DURATION:-20s}"
UPLOAD_CONNECTIONS="${UPLOAD_CONNECTIONS:-64}"
BURST_CONNECTIONS="${BURST_CONNECTIONS:-1000}"
READ_DURATION="${READ_DURATION:-20s}"
READ_CONNECTIONS="${READ_CONNECTIONS:-64}"
PROCESS_DOCS="${PROCESS_DOCS:-200}"
PROCESS_DOCS_50PAGE="${PROCESS_DOCS_50PAGE:-20}"
E2E_DOCS="${E2E_DOCS:-1000}"
PROCESS_TIMEOUT="${PROCESS_TIMEOUT:-600}"
REPEAT="${REPEAT:-1}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_TIMEOUT="${WRK_TIMEOUT:-30s}"
NGINX="${NGINX:-nginx}"
ALL_SCENARIOS="upload_1m upload_64k burst get list_100000 list_100 process_1page process_50page process_docx process_e2e"
SCENARIOS="${SCENARIOS:-$ALL_SCENARIOS}"

[ $# -eq 1 ] || { echo "usage: bench/run.sh PATH_TO_DOCFLOW" >&2; exit 2; }
bin="$(realpath "$1")"
[ -x "$bin" ] || { echo "bench: $1 is not an executable" >&2; exit 2; }
for s in $SCENARIOS; do
  case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "bench: unknown scenario $s (known: $ALL_SCENARIOS)" >&2; exit 2 ;; esac
done
need() { command -v "$1" >/dev/null || { echo "bench: $1 is missing ($2)" >&2; exit 2; }; }
need wrk "scripts/install-deps installs it"
need curl "scripts/install-deps installs it"
need python3 "scripts/install-deps installs it"
case " $SCENARIOS " in *" process_50page "*)
  need groff "Debian package groff: the 50-page PDF is made with groff -ms"
  need ps2pdf "Debian package ghostscript: the 50-page PDF is made with ps2pdf"
  ;;
esac
with_nginx=0
if [ "$NGINX" != skip ]; then
  need "$NGINX" "Debian package nginx (scripts/install-deps bench), or run with NGINX=skip"
  NGINX="$(command -v "$NGINX")"
  with_nginx=1
fi
# The burst holds 1000 connections at once, in the client and in the servers.
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt 4096 ]; then
  ulimit -n 4096 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
bench_dir="$repo/bench"
results_dir="$bench_dir/results"
mkdir -p "$results_dir"
work="$(mktemp -d -t docflow-bench.XXXXXX)"
chmod 755 "$work" # nginx's workers run as nobody when started by root
static_root="$work/www" # nginx serves $static_root/static/*.json
mkdir -p "$static_root/static"
rows="$work/rows.jsonl"
: >"$rows"

server_pid=""  # docflow
server_data="" # its data directory
nginx_pid=""   # nginx's master
nginx_dir=""   # its directory (config, temp files, the uploaded bodies)
server_pids="" # every process of the running server: measured together
port=""
token=""      # the bearer token of the running docflow
last_token="" # the latest docflow token, sent to nginx too so requests are byte for byte alike

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
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
report() { python3 "$bench_dir/report.py" "$@"; }

# ---------------------------------------------------------------------------
# docflow

bench_user="bench-user"
bench_password="bench-password-0123"

# The settings of every docflow command; LOG_LEVEL=warn keeps the access log
# from dominating. `env` execs the binary, so a server started in the
# background with it has the pid that $! reports.
docflow_env=(env DOCFLOW_JWT_SECRET="bench-secret-bench-secret-bench-secret-0123" DOCFLOW_LOG_LEVEL=warn)

# await_start NAME PID CHECK LOG...: runs CHECK every 0.1 s until it succeeds;
# stops the run with the LOG files shown when PID exits first or 10 s pass.
await_start() {
  local name="$1" pid="$2" check="$3"
  shift 3
  for _ in $(seq 1 100); do
    "$check" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "bench: $name exited during start-up:" >&2
      cat "$@" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "bench: $name did not answer within 10 s" >&2
  exit 1
}

# start_docflow [TEMPLATE_DIR]: docflow serve on a copy of TEMPLATE_DIR (or an
# empty data directory), then registers (unless the account exists) and logs
# in. Sets server_pid, server_pids, port, token.
start_docflow() {
  server_data="$work/data.$RANDOM"
  if [ -n "${1:-}" ]; then cp -a "$1" "$server_data"; fi
  port="$(free_port)"
  "${docflow_env[@]}" DOCFLOW_DATA_DIR="$server_data" DOCFLOW_LISTEN="127.0.0.1:$port" "$bin" serve \
    >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  server_pids="$server_pid"
  await_start docflow "$server_pid" docflow_answers "$work/server.err" "$work/server.out"
  local creds="{\"username\":\"$bench_user\",\"password\":\"$bench_password\"}" status
  status="$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$creds" \
    "http://127.0.0.1:$port/auth/register")"
  [ "$status" = 201 ] || [ "$status" = 409 ] || { echo "bench: /auth/register answered $status" >&2; exit 1; }
  token="$(curl -fsS -H 'Content-Type: application/json' -d "$creds" "http://127.0.0.1:$port/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"
  last_token="$token"
}
docflow_answers() { curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; }

stop_docflow() {
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

# seeded_template N: a data directory (migrated, with the bench account) whose
# database holds N documents of that account, written by bench/seed.py
# straight into SQLite. Made once per N; each run starts on a copy.
seeded_template() {
  local dir="$work/seed.$1"
  if [ ! -d "$dir" ]; then
    { "${docflow_env[@]}" DOCFLOW_DATA_DIR="$dir" "$bin" migrate &&
      printf '%s\n' "$bench_password" | "${docflow_env[@]}" DOCFLOW_DATA_DIR="$dir" "$bin" user add "$bench_user"; } \
      >"$work/seed.log" 2>&1 || { cat "$work/seed.log" >&2; exit 1; }
    python3 "$bench_dir/seed.py" "$dir/docflow.db" "$bench_user" "$1"
  fi
  echo "$dir"
}

# ---------------------------------------------------------------------------
# nginx

# start_nginx: nginx from bench/nginx.conf.template on a free port of
# 127.0.0.1, its files in a fresh directory. Sets nginx_pid, server_pids
# (master and workers), port, token (the last docflow token).
start_nginx() {
  local responder_port user_line=""
  nginx_dir="$work/nginx.$RANDOM"
  mkdir -p "$nginx_dir"
  chmod 755 "$nginx_dir"
  [ "$(id -u)" -eq 0 ] && user_line="user nobody $(id -gn nobody);"
  port="$(free_port)"
  responder_port="$(free_port)"
  [ "$responder_port" != "$port" ] || responder_port="$(free_port)"
  sed -e "s|@PORT@|$port|g; s|@RESPONDER_PORT@|$responder_port|g; s|@DIR@|$nginx_dir|g" \
    -e "s|@STATIC@|$static_root|g; s|@USER@|$user_line|g" \
    "$bench_dir/nginx.conf.template" >"$nginx_dir/nginx.conf"
  "$NGINX" -p "$nginx_dir/" -e "$nginx_dir/error.log" -c "$nginx_dir/nginx.conf" >"$work/nginx.out" 2>&1 &
  nginx_pid=$!
  token="$last_token"
  await_start nginx "$nginx_pid" nginx_answers "$work/nginx.out" "$nginx_dir/error.log"
  server_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
}
nginx_answers() {
  [ "$(curl -sS -o /dev/null -w '%{http_code}' -X POST -d probe "http://127.0.0.1:$port/" 2>/dev/null)" = 201 ]
}

stop_nginx() {
  kill -TERM "$nginx_pid"
  wait "$nginx_pid" || true
  nginx_pid=""
  rm -rf "$nginx_dir" # the uploaded bodies
}

stop() {
  if [ "$1" = docflow ]; then stop_docflow; else stop_nginx; fi
  sync # the next run should not pay for this one's writeback
}

# ---------------------------------------------------------------------------
# Measuring the server from /proc

sum_proc() { # sum_proc FILE FIELD PIDS...: sums "FIELD: N" lines of /proc/PID/FILE
  local file="$1" field="$2" p total=0 v
  shift 2
  for p in "$@"; do
    v="$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/$file")"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# cpu_ticks PIDS: "SELF CHILDREN" clock ticks. SELF is utime + stime (every
# thread); CHILDREN is cutime + cstime, the CPU time of children the process
# has waited for: docflow's extractor processes, each reaped when it ends.
cpu_ticks() {
  local p self=0 children=0 u s cu cs
  for p in "$@"; do
    read -r u s cu cs < <(awk '{sub(/^.*\) /, ""); print $12, $13, $14, $15}' "/proc/$p/stat")
    self=$((self + u + s))
    children=$((children + cu + cs))
  done
  echo "$self $children"
}

# measure_begin / measure_end: server CPU time, bytes written and peak RSS
# over a run. Writing 5 to clear_refs resets VmHWM to the current RSS, so the
# peak is the run's own, not start-up's (docflow computes a 19 MiB argon2id
# hash at start-up and for the login).
measure_begin() {
  # shellcheck disable=SC2086 # server_pids is a list
  {
    hwm_reset=1
    for p in $server_pids; do echo 5 2>/dev/null >"/proc/$p/clear_refs" || hwm_reset=0; done
    read -r self0 children0 < <(cpu_ticks $server_pids)
    wchar0="$(sum_proc io wchar $server_pids)"
    load_start="$(loadavg)"
  }
}

measure_end() {
  local self1 children1
  # shellcheck disable=SC2086
  {
    read -r self1 children1 < <(cpu_ticks $server_pids)
    wchar=$(($(sum_proc io wchar $server_pids) - wchar0))
    hwm_kib="$(sum_proc status VmHWM $server_pids)"
  }
  ticks=$((self1 - self0))
  child_ticks=$((children1 - children0))
}

# record wrk|burst|process KEY SCENARIO SERVER OUTPUT FILE_BYTES SETTINGS: one row.
record() {
  report "$1-row" "$rows" --key "$2" --scenario "$3" --server "$4" --output "$5" --file-bytes "$6" \
    --settings "$7" --cpu-ticks "$ticks" --child-cpu-ticks "$child_ticks" --clk-tck "$(getconf CLK_TCK)" \
    --hwm-kib "$hwm_kib" --hwm-reset "$hwm_reset" --wchar "$wchar" --load "$load_start"
  tail -n 1 "$rows" | python3 -c '
import json, sys
r = json.load(sys.stdin)
rate = r.get("documents_per_s", r.get("requests_per_s"))
print("bench:   %s, %s: %s/s, p50 %s ms, p99 %s ms, errors %s. %s" % (r["scenario"], r["server"], rate,
      r["p50_ms"], r["p99_ms"], r["errors"], r.get("notes", "")))' >&2
}

# ---------------------------------------------------------------------------
# The scenarios. Each takes the server (docflow or nginx), starts it, measures
# one run and stops it.

# wrk_run SCRIPT PATH CONNECTIONS DURATION: wrk against the running server.
wrk_run() {
  BENCH_LUA_DIR="$bench_dir/wrk" BENCH_TOKEN="$token" BENCH_BODY="${body_file:-}" BENCH_BOUNDARY="${boundary:-}" \
    wrk -t"$WRK_THREADS" -c"$3" -d"$4" --timeout "$WRK_TIMEOUT" --latency -s "$bench_dir/wrk/$1" \
    "http://127.0.0.1:$port$2" >"$work/wrk.txt"
}

start() { if [ "$1" = docflow ]; then start_docflow "${2:-}"; else start_nginx; fi; }

# disk_ceiling FILE_BYTES KEY: the durable-write ceiling, as a row of server "disk".
disk_ceiling() {
  local seconds="${UPLOAD_DURATION%s}"
  load_start="$(loadavg)"
  python3 "$bench_dir/disk_ceiling.py" "$work/disk" "$1" "$seconds" "$UPLOAD_CONNECTIONS" >"$work/disk.txt"
  report disk-row "$rows" --key "$2" --scenario "upload $(size_label "$1")" --output "$work/disk.txt" \
    --load "$load_start"
}

# make_body FILE_BYTES: a multipart body holding one PDF-looking file. Sets
# body_file and boundary.
make_body() {
  body_file="$work/body.$1"
  if [ ! -f "$body_file" ]; then
    python3 "$bench_dir/make_upload.py" "$1" "$body_file" >"$body_file.boundary"
  fi
  boundary="$(cat "$body_file.boundary")"
}

size_label() { if [ "$1" -ge 1048576 ]; then echo "$(($1 / 1048576)) MiB"; else echo "$(($1 / 1024)) KiB"; fi; }

# scenario_upload FILE_BYTES KEY SERVER
scenario_upload() {
  local settings="wrk -t$WRK_THREADS -c$UPLOAD_CONNECTIONS -d$UPLOAD_DURATION"
  if [ "$3" = disk ]; then
    disk_ceiling "$1" "$2"
    return
  fi
  make_body "$1"
  start "$3"
  measure_begin
  wrk_run upload.lua /documents "$UPLOAD_CONNECTIONS" "$UPLOAD_DURATION"
  measure_end
  stop "$3"
  record wrk "$2" "upload $(size_label "$1")" "$3" "$work/wrk.txt" "$1" "$settings"
}

# scenario_burst SERVER
scenario_burst() {
  make_body 1048576
  start "$1"
  measure_begin
  python3 "$bench_dir/burst.py" --port "$port" --body "$body_file" --boundary "$boundary" --token "$token" \
    -n "$BURST_CONNECTIONS" --watch-pids "$server_pids" >"$work/burst.txt" 2>"$work/burst.err" || {
    cat "$work/burst.err" >&2
    exit 1
  }
  measure_end
  stop "$1"
  record burst burst "burst $BURST_CONNECTIONS x 1 MiB" "$1" "$work/burst.txt" 1048576 \
    "bench/burst.py -n $BURST_CONNECTIONS"
}

# read_run KEY SCENARIO SERVER DOCFLOW_PATH STATIC_NAME: wrk GETs of one URL
# on the running server. docflow's answer to DOCFLOW_PATH is saved as
# static/STATIC_NAME, which nginx serves in its own run of the scenario.
read_run() {
  local path="$4" settings="wrk -t$WRK_THREADS -c$READ_CONNECTIONS -d$READ_DURATION"
  if [ "$3" = docflow ]; then
    curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port$path" >"$static_root/static/$5"
    chmod 644 "$static_root/static/$5"
  else
    path="/static/$5"
  fi
  measure_begin
  wrk_run get.lua "$path" "$READ_CONNECTIONS" "$READ_DURATION"
  measure_end
  stop "$3"
  record wrk "$1" "$2" "$3" "$work/wrk.txt" 0 "$settings; answer $(wc -c <"$static_root/static/$5") bytes"
}

# scenario_get SERVER: GET /documents/{id} of a one-page PDF uploaded just before.
scenario_get() {
  local id=""
  start "$1"
  if [ "$1" = docflow ]; then
    id="$(curl -fsS -H "Authorization: Bearer $token" -F "file=@$repo/tests/fixtures/en-1page.pdf" \
      "http://127.0.0.1:$port/documents" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
  fi
  read_run get "GET /documents/{id}" "$1" "/documents/$id" document.json
}

# scenario_list N LABEL SERVER: the first page of the listing with N documents.
scenario_list() {
  local template=""
  if [ "$3" = docflow ]; then template="$(seeded_template "$1")"; fi
  start "$3" "$template"
  read_run "list_$1" "GET /documents?limit=50, $2 docs" "$3" "/documents?limit=50" "list-$1.json"
}

# make_long_pdf: a 50-page PDF of English text (the GPL, cycled), made like
# the test fixtures (tests/fixtures/README.md) with groff -ms and Ghostscript.
make_long_pdf() {
  long_pdf="$work/text-50page.pdf"
  [ -f "$long_pdf" ] && return 0
  awk -v pages=50 -v per_page=450 '
    { for (i = 1; i <= NF; i++) words[n++] = $i }
    END {
      print ".ds CH"; print ".ds LH Benchmark text"
      for (p = 0; p < pages; p++) {
        if (p > 0) print ".bp"
        print ".LP"
        line = ""
        for (k = 0; k < per_page; k++) {
          w = words[(p * per_page + k) % n]
          gsub(/\\/, "\\e", w)
          line = line (line == "" ? "" : " ") w
          if (length(line) > 60) { print "\\&" line; line = "" }
        }
        if (line != "") print "\\&" line
      }
    }' /usr/share/common-licenses/GPL-3 >"$work/text-50page.ms"
  groff -ms -Tps "$work/text-50page.ms" >"$work/text-50page.ps"
  ps2pdf "$work/text-50page.ps" "$long_pdf"
}

# scenario_process KEY SCENARIO FILE N: N copies of FILE uploaded (not
# measured), then all queued at once and processed (measured). docflow only.
scenario_process() {
  local ids="$work/ids.txt"
  start docflow
  python3 "$bench_dir/process.py" upload --port "$port" --token "$token" --file "$3" -n "$4" --ids "$ids"
  measure_begin
  python3 "$bench_dir/process.py" run --port "$port" --token "$token" --ids "$ids" --timeout "$PROCESS_TIMEOUT" \
    >"$work/process.txt" 2>"$work/process.err" || {
    cat "$work/process.err" >&2
    exit 1
  }
  measure_end
  stop docflow
  record process "$1" "$2" docflow "$work/process.txt" 0 "bench/process.py: $4 x $(basename "$3")"
}

# run_one SCENARIO SERVER
run_one() {
  echo "bench: $1, $2" >&2
  case "$1" in
    upload_1m) scenario_upload 1048576 "$1" "$2" ;;
    upload_64k) scenario_upload 65536 "$1" "$2" ;;
    burst) scenario_burst "$2" ;;
    get) scenario_get "$2" ;;
    list_100000) scenario_list 100000 100,000 "$2" ;;
    list_100) scenario_list 100 100 "$2" ;;
    process_1page) scenario_process "$1" "process 1-page PDF" "$repo/tests/fixtures/en-1page.pdf" "$PROCESS_DOCS" ;;
    process_50page)
      make_long_pdf
      scenario_process "$1" "process 50-page PDF" "$long_pdf" "$PROCESS_DOCS_50PAGE"
      ;;
    process_docx)
      scenario_process "$1" "process DOCX" "$repo/tests/fixtures/table-header-footer.docx" "$PROCESS_DOCS"
      ;;
    process_e2e) scenario_process "$1" "end-to-end $E2E_DOCS x 1-page PDF" "$repo/tests/fixtures/en-1page.pdf" "$E2E_DOCS" ;;
  esac
}

servers() { # servers SCENARIO: processing is docflow's alone; uploads add the disk's ceiling
  local s=docflow
  if [ "$with_nginx" = 1 ] && [ "${1#process_}" = "$1" ]; then s="$s nginx"; fi
  case "$1" in upload_*) s="$s disk" ;; esac
  echo "$s"
}

# ---------------------------------------------------------------------------

load_before="$(loadavg)"
echo "bench: load average before the run: $load_before ($(nproc) cores, shared by the load generators and the server)" >&2
for r in $(seq 1 "$REPEAT"); do
  for scenario in $SCENARIOS; do
    for server in $(servers "$scenario"); do
      [ "$REPEAT" = 1 ] || echo "bench: round $r/$REPEAT" >&2
      run_one "$scenario" "$server"
    done
  done
done
echo "bench: load average after the run: $(loadavg)" >&2
echo >&2
out="$results_dir/bench.json"
report finish "$rows" "$out" --rev "${BENCH_REV:-$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
  --load-before "$load_before" \
  --changed "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | wc -l)" \
  --note "load generators (wrk, burst.py, process.py) run on the same machine and share its $(nproc) cores with the server${BENCH_NOTE:+; $BENCH_NOTE}"
echo "bench: results written to ${out#"$repo"/}" >&2
