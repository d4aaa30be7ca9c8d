#!/usr/bin/env bash
# Benchmarks a docflow binary on SQLite, on PostgreSQL and on SQLite with its
# blobs in S3, against nginx, and prints one table (`make bench` builds a
# Release binary and runs this).
#
#   bench/run.sh PATH_TO_DOCFLOW
#
# Scenarios (bench/README.md explains each and every figure):
#   upload_1m, upload_64k  POST /documents of a 1 MiB / 64 KiB PDF, wrk -c64 for UPLOAD_DURATION
#   burst                  bench/burst.py: 1000 connections opened first, then each uploads
#                          one 1 MiB PDF at the same moment
#   get                    GET /documents/{id} with a bearer token, wrk -c64 for READ_DURATION
#   list_100000, list_100  GET /documents?limit=50 with 100,000 / 100 documents in the
#                          database (seeded straight into it, see bench/seed.py)
#   process_1page, process_50page, process_docx
#                          PROCESS_DOCS documents (PROCESS_DOCS_50PAGE of the 50-page PDF)
#                          uploaded, then all queued at once and processed by the
#                          in-process workers (docflow only)
#   process_e2e            E2E_DOCS (1000) one-page PDFs uploaded, then all queued at once
#                          (docflow only)
# Every scenario runs against docflow on each engine of ENGINES, then nginx
# (bench/nginx.conf.template), REPEAT times, interleaved: docflow (sqlite),
# docflow (postgres), nginx, docflow (sqlite), ... per scenario.
# PostgreSQL is a private server started once per bench run (initdb in the
# work directory, 127.0.0.1 on a free port, fsync and synchronous_commit on,
# shared_buffers a quarter of the memory) and stopped at the end; each docflow
# run gets a fresh database (CREATE DATABASE, `docflow migrate`), dropped after.
# The two upload scenarios also run bench/disk_ceiling.py ("disk"): the files
# per second this disk can make durable the way docflow does (fsync, link,
# directory fsync, log fdatasync), with no HTTP at all, 64 writers; and with
# s3, bench/s3_ceiling.py ("radosgw"): the S3 server's PUTs per second of the
# same size from 64 boto3 clients, no docflow.
# Each run starts its server on a free port of 127.0.0.1 with fresh files, runs
# the load, reads the server's CPU time and peak RSS from /proc, stops it and
# removes its files (also on Ctrl-C or failure).
# With s3 in ENGINES, one S3 server (Ceph radosgw, tests/integration/s3.py)
# is started for the bench run and stopped at its end; each docflow run on s3
# gets a fresh bucket, emptied and removed after the run, and the S3 daemons'
# CPU (ceph-mon, ceph-osd, radosgw) is measured beside docflow's. Only the
# upload scenarios and the burst run on s3: the others never touch the blob
# store, or (processing) are not part of the S3 figures yet.
# The table also goes to
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
#   ENGINES="sqlite postgres s3"  docflow's storage: SQLite, PostgreSQL (both with blobs in a
#                     local directory), s3 = SQLite with blobs in S3 (ENGINES=sqlite: no servers)
#   PG_BIN=/usr/lib/postgresql/15/bin  PostgreSQL's initdb, pg_ctl, psql (default: DOCFLOW_PG_BIN, then Debian's)
#   PG_SHARED_BUFFERS, PG_EFFECTIVE_CACHE_SIZE  default: a quarter and three quarters of the memory
#   PG_MAX_CONNECTIONS=200
#   S3_PYTHON=/usr/bin/python3  the interpreter for tests/integration/s3.py (needs boto3)
#   S3_MEMSTORE_BYTES=6442450944  the S3 server's memory budget for objects (its OSD hangs past it)
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
ENGINES="${ENGINES:-sqlite postgres s3}"
S3_PYTHON="${S3_PYTHON:-/usr/bin/python3}"
S3_MEMSTORE_BYTES="${S3_MEMSTORE_BYTES:-$((6 << 30))}"
PG_BIN="${PG_BIN:-${DOCFLOW_PG_BIN:-/usr/lib/postgresql/15/bin}}"
PG_MAX_CONNECTIONS="${PG_MAX_CONNECTIONS:-200}"
ALL_SCENARIOS="upload_1m upload_64k burst get list_100000 list_100 process_1page process_50page process_docx process_e2e"
SCENARIOS="${SCENARIOS:-$ALL_SCENARIOS}"

[ $# -eq 1 ] || { echo "usage: bench/run.sh PATH_TO_DOCFLOW" >&2; exit 2; }
bin="$(realpath "$1")"
[ -x "$bin" ] || { echo "bench: $1 is not an executable" >&2; exit 2; }
for s in $SCENARIOS; do
  case " $ALL_SCENARIOS " in *" $s "*) ;; *) echo "bench: unknown scenario $s (known: $ALL_SCENARIOS)" >&2; exit 2 ;; esac
done
for e in $ENGINES; do
  case "$e" in sqlite | postgres | s3) ;; *) echo "bench: unknown engine $e (known: sqlite postgres s3)" >&2; exit 2 ;; esac
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
with_postgres=0
case " $ENGINES " in *" postgres "*)
  for b in initdb pg_ctl psql; do
    need "$PG_BIN/$b" "Debian package postgresql-15 (scripts/install-deps bench), or run with ENGINES=sqlite"
  done
  with_postgres=1
  ;;
esac
with_s3=0
case " $ENGINES " in *" s3 "*)
  for s in $SCENARIOS; do case "$s" in upload_* | burst) with_s3=1 ;; esac; done
  if [ "$with_s3" = 1 ]; then
    for b in ceph-mon ceph-osd radosgw; do need "$b" "scripts/install-deps installs Ceph, or run without s3 in ENGINES"; done
    "$S3_PYTHON" -c 'import boto3' 2>/dev/null ||
      { echo "bench: $S3_PYTHON has no boto3 (Debian package python3-boto3; or set S3_PYTHON)" >&2; exit 2; }
  fi
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
engine=""      # the engine of the running docflow: sqlite, postgres or s3 (SQLite, blobs in S3)
server_db=""   # its PostgreSQL database
pg_dir=""      # the PostgreSQL server's directory (data, socket, log)
pg_port=""
pg_started=0   # 1 once pg_ctl start has been called
s3_pid=""      # tests/integration/s3.py serve (its daemons are its children)
s3_bucket=""   # the running docflow's bucket (s3)
port=""
token=""      # the bearer token of the running docflow
last_token="" # the latest docflow token, sent to nginx too so requests are byte for byte alike

# ---------------------------------------------------------------------------
# PostgreSQL: one private server per bench run, started as the integration
# tests start theirs (tests/integration/pg.py). initdb refuses to run as root,
# so as root the server's commands run as the postgres user (Debian's
# postgresql-15 creates it) on a directory that user owns.

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_url() { echo "postgresql://postgres@127.0.0.1:$pg_port/$1"; }
pg_sql() { "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$(pg_url postgres)" -c "$1"; }

# memory_mib: the machine's memory, or its memory cgroup's limit if lower.
memory_mib() {
  local mib limit
  mib=$(($(awk '$1 == "MemTotal:" {print $2}' /proc/meminfo) / 1024))
  limit="$(cat /sys/fs/cgroup/memory.max 2>/dev/null || echo max)"
  if [ "$limit" != max ] && [ $((limit / 1048576)) -lt "$mib" ]; then mib=$((limit / 1048576)); fi
  echo "$mib"
}

# start_postgres: initdb and start, with PostgreSQL's defaults plus what
# docs/operations.md recommends for docflow ("Settings that matter on the
# server"). Sets pg_dir, pg_port, pg_settings.
start_postgres() {
  local mem
  mem="$(memory_mib)"
  pg_dir="$work/pg"
  mkdir -p "$pg_dir"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$pg_dir"
  as_pg "$PG_BIN/initdb" -D "$pg_dir/data" -A trust -U postgres --no-instructions -E UTF8 --locale=C \
    >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; exit 1; }
  pg_port="$(free_port)"
  # Durable commits as in production: an upload is acknowledged after its
  # row commits, so fsync and synchronous_commit stay on (never off here).
  pg_settings="fsync=on synchronous_commit=on"
  pg_settings="$pg_settings shared_buffers=${PG_SHARED_BUFFERS:-$((mem / 4))MB}"
  pg_settings="$pg_settings effective_cache_size=${PG_EFFECTIVE_CACHE_SIZE:-$((mem * 3 / 4))MB}"
  pg_settings="$pg_settings max_connections=$PG_MAX_CONNECTIONS"
  local options="-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir" setting
  for setting in $pg_settings; do options="$options -c $setting"; done
  pg_started=1
  as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -o "$options" -w -t 60 start \
    >"$work/pg_ctl.log" 2>&1 || { cat "$work/pg_ctl.log" "$pg_dir/server.log" >&2; exit 1; }
}

# stop_postgres: stops the server at once if it runs (its files are thrown
# away, so there is nothing to checkpoint). pg_ctl start detaches the server
# from the bench's process group, so Ctrl-C does not reach it; when pg_ctl
# itself was interrupted, the server may still be starting: it is given 5 s
# to write its pid file, without which it cannot be stopped.
stop_postgres() {
  [ "$pg_started" = 1 ] || return 0
  local tries=50
  while [ ! -f "$pg_dir/data/postmaster.pid" ] && [ $((tries -= 1)) -gt 0 ]; do sleep 0.1; done
  if [ -f "$pg_dir/data/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
  fi
}

# proc_counters PID: "TICKS CHILD_TICKS WCHAR" of one process (utime+stime,
# cutime+cstime, bytes written); nothing if it has gone.
proc_counters() {
  local stat k v wchar=0
  local -a f
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
  read -ra f <<<"${stat##*) }" # f[0] is field 3 (state), so utime (14) is f[11]
  { while read -r k v; do [ "$k" != wchar: ] || wchar="$v"; done <"/proc/$1/io"; } 2>/dev/null || return 0
  echo "$((f[11] + f[12])) $((f[13] + f[14])) $wchar"
}

# pg_counters: "TICKS WCHAR" of the whole PostgreSQL server so far: the
# postmaster and every live child (backends, checkpointer, WAL writer,
# autovacuum), plus what the children the postmaster has reaped (backends
# that ended) left in its cutime+cstime and in its /proc/PID/io.
pg_counters() {
  local pm p t c w ticks=0 wchar=0
  pm="$(head -n 1 "$pg_dir/data/postmaster.pid")"
  for p in "$pm" $(pgrep -P "$pm" || true); do
    read -r t c w < <(proc_counters "$p") || continue
    ticks=$((ticks + t + c))
    wchar=$((wchar + w))
  done
  echo "$ticks $wchar"
}

# ---------------------------------------------------------------------------
# S3: one server per bench run, the tests' own (tests/integration/s3.py):
# Ceph's radosgw on a one-node cluster whose OSD keeps the objects in memory,
# on 127.0.0.1. It runs as a coprocess: it prints its endpoint and keys as
# one JSON line, then answers commands on its stdin (`bucket`: a fresh
# bucket's name); SIGTERM stops it and its daemons.

start_s3() {
  local line
  coproc S3 {
    exec "$S3_PYTHON" "$repo/tests/integration/s3.py" serve --memstore-device-bytes "$S3_MEMSTORE_BYTES" \
      2>"$work/s3.log"
  }
  # shellcheck disable=SC2153 # coproc sets S3_PID
  s3_pid="$S3_PID"
  read -r -t 300 line <&"${S3[0]}" || { echo "bench: the S3 server did not start:" >&2; cat "$work/s3.log" >&2; exit 1; }
  read -r s3_endpoint s3_access_key s3_secret_key s3_region < <(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print(d["endpoint"], d["access_key"], d["secret_key"], d["region"])' "$line")
}

# s3_bucket: sets s3_bucket to a fresh bucket of the S3 server.
s3_bucket() {
  echo bucket >&"${S3[1]}"
  if ! read -r -t 120 s3_bucket <&"${S3[0]}" || [ "${s3_bucket#error}" != "$s3_bucket" ]; then
    echo "bench: the S3 server made no bucket: $s3_bucket" >&2
    cat "$work/s3.log" >&2
    exit 1
  fi
}

# s3_empty OUTPUT: tallies what the run left in its bucket into OUTPUT
# (bench/s3_bucket.py), then empties and removes the bucket, so the OSD's
# memory is free for the next run.
s3_empty() {
  AWS_ACCESS_KEY_ID="$s3_access_key" AWS_SECRET_ACCESS_KEY="$s3_secret_key" \
    "$S3_PYTHON" "$bench_dir/s3_bucket.py" "$s3_endpoint" "$s3_region" "$s3_bucket" >"$1" 2>"$work/s3_bucket.err" ||
    { cat "$work/s3_bucket.err" >&2; exit 1; }
  s3_bucket=""
}

stop_s3() {
  [ -n "$s3_pid" ] || return 0
  kill -TERM "$s3_pid" 2>/dev/null || true
  wait "$s3_pid" 2>/dev/null || true
  s3_pid=""
}

# s3_counters: "NAME TICKS KIB" per S3 daemon (ceph-mon, ceph-osd, radosgw:
# the children of s3.py), one a line: utime+stime and VmHWM.
s3_counters() {
  local p name t c w
  for p in $(pgrep -P "$s3_pid" || true); do
    name="$(cat "/proc/$p/comm" 2>/dev/null)" || continue
    read -r t c w < <(proc_counters "$p") || continue
    echo "$name $t $(awk '$1 == "VmHWM:" {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)"
  done
}

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
    kill -TERM "$nginx_pid" 2>/dev/null || true
    wait "$nginx_pid" 2>/dev/null || true
  fi
  stop_postgres
  stop_s3
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
# from dominating. Every load generator connects from 127.0.0.1, as clients
# behind a proxy do, so the per-address cap (256 by default) is off, as
# docs/operations.md advises there: with it the burst got 256 of its 1,000
# connections served and the rest closed. `env` execs the binary, so a
# server started in the background with it has the pid that $! reports. The
# database is the engine's (db_env), never one from the caller's
# environment; so is the blob store (storage_env).
docflow_env=(env -u DOCFLOW_DATABASE_URL -u DOCFLOW_STORAGE_URL -u AWS_SESSION_TOKEN -u AWS_SESSION_TOKEN_FILE
  -u AWS_ACCESS_KEY_ID_FILE -u AWS_SECRET_ACCESS_KEY_FILE DOCFLOW_JWT_SECRET="bench-secret-bench-secret-bench-secret-0123"
  DOCFLOW_LOG_LEVEL=warn DOCFLOW_MAX_CONNECTIONS_PER_ADDRESS="${DOCFLOW_MAX_CONNECTIONS_PER_ADDRESS:-0}")
db_env=()  # on PostgreSQL: DOCFLOW_DATABASE_URL=... (SQLite: DATA_DIR/docflow.db, the default)
storage_env=() # on s3: DOCFLOW_STORAGE_URL=s3://... and the keys (else DATA_DIR/blobs, the default)
pg_runs=0  # databases made for runs so far (their names)

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

# use_database NAME: db_env for the PostgreSQL database NAME.
use_database() { db_env=(DOCFLOW_DATABASE_URL="$(pg_url "$1")"); }

# migrate DATA_DIR: `docflow migrate` on DATA_DIR and db_env.
migrate() {
  "${docflow_env[@]}" "${db_env[@]}" DOCFLOW_DATA_DIR="$1" "$bin" migrate >"$work/migrate.log" 2>&1 ||
    { cat "$work/migrate.log" >&2; exit 1; }
}

# start_docflow [TEMPLATE]: docflow serve on the engine's database, then
# registers (unless the account exists) and logs in. SQLite: the data
# directory is a copy of TEMPLATE (a directory) or empty. PostgreSQL: a new
# database (a copy of the database TEMPLATE, or empty), migrated as an
# operator would, with `docflow migrate`; the data directory (blobs) is
# empty. s3: SQLite as above, the blobs in a fresh bucket of the S3 server.
# Sets server_pid, server_pids, server_db, port, token.
start_docflow() {
  server_data="$work/data.$RANDOM"
  storage_env=()
  if [ "$engine" = s3 ]; then
    s3_bucket
    local endpoint
    endpoint="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$s3_endpoint")"
    storage_env=(AWS_ACCESS_KEY_ID="$s3_access_key" AWS_SECRET_ACCESS_KEY="$s3_secret_key"
      DOCFLOW_STORAGE_URL="s3://$s3_bucket/docs?endpoint=$endpoint&region=$s3_region&path_style=true")
  fi
  if [ "$engine" = postgres ]; then
    pg_runs=$((pg_runs + 1))
    server_db="docflow_run_$pg_runs"
    pg_sql "CREATE DATABASE $server_db${1:+ TEMPLATE $1}"
    use_database "$server_db"
    migrate "$server_data"
  else
    db_env=()
    if [ -n "${1:-}" ]; then cp -a "$1" "$server_data"; fi
  fi
  port="$(free_port)"
  "${docflow_env[@]}" "${db_env[@]}" "${storage_env[@]}" DOCFLOW_DATA_DIR="$server_data" DOCFLOW_LISTEN="127.0.0.1:$port" "$bin" serve \
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
  if [ -n "$s3_bucket" ]; then s3_empty "$work/s3_bucket.txt"; fi
  if [ -n "$server_db" ]; then
    pg_sql "DROP DATABASE $server_db WITH (FORCE)"
    server_db=""
  fi
}

# seeded_template N: sets template to, on SQLite, a data directory, on
# PostgreSQL a database (migrated, with the bench account) that holds N
# documents of that account, written by bench/seed.py straight into the
# database. Made once per N and engine; each run starts on a copy. (Not run
# in a command substitution, where a failing seed.py would not stop the run.)
seeded_template() {
  local dir="$work/seed.$engine.$1" db="" database
  if [ "$engine" = postgres ]; then
    db="docflow_seed_$1"
    use_database "$db"
    database="$(pg_url "$db")"
  else
    db_env=()
    database="$dir/docflow.db"
  fi
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    [ -z "$db" ] || pg_sql "CREATE DATABASE $db"
    migrate "$dir"
    printf '%s\n' "$bench_password" |
      "${docflow_env[@]}" "${db_env[@]}" DOCFLOW_DATA_DIR="$dir" "$bin" user add "$bench_user" >"$work/seed.log" 2>&1 ||
      { cat "$work/seed.log" >&2; exit 1; }
    PG_BIN="$PG_BIN" python3 "$bench_dir/seed.py" "$database" "$bench_user" "$1"
  fi
  template="${db:-$dir}"
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
  if [ "$engine" = postgres ]; then read -r db_ticks0 db_wchar0 < <(pg_counters); fi
  if [ "$engine" = s3 ]; then
    for p in $(pgrep -P "$s3_pid" || true); do echo 5 2>/dev/null >"/proc/$p/clear_refs" || true; done
    s3_counters >"$work/s3_counters.0"
  fi
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
  engine_args=()
  if [ "$engine" = postgres ]; then
    local db_ticks1 db_wchar1
    read -r db_ticks1 db_wchar1 < <(pg_counters)
    engine_args=(--engine postgres --db-cpu-ticks $((db_ticks1 - db_ticks0)) --db-wchar $((db_wchar1 - db_wchar0)))
  elif [ "$engine" = s3 ]; then
    s3_counters >"$work/s3_counters.1"
    # "NAME:TICKS:KIB,..." per daemon: CPU over the run, peak RSS during it.
    engine_args=(--engine s3 --s3-daemons "$(awk 'NR == FNR {t0[$1] = $2; next} {printf "%s%s:%d:%d", sep, $1, $2 - t0[$1], $3; sep = ","}' \
      "$work/s3_counters.0" "$work/s3_counters.1")")
  elif [ -n "$engine" ]; then
    engine_args=(--engine "$engine")
  fi
}

# record wrk|burst|process KEY SCENARIO SERVER OUTPUT FILE_BYTES SETTINGS: one row.
record() {
  local tally=()
  [ "$engine" != s3 ] || tally=(--s3-bucket "$work/s3_bucket.txt")
  report "$1-row" "$rows" --key "$2" --scenario "$3" --server "$4" --output "$5" --file-bytes "$6" \
    --settings "$7" --cpu-ticks "$ticks" --child-cpu-ticks "$child_ticks" --clk-tck "$(getconf CLK_TCK)" \
    --hwm-kib "$hwm_kib" --hwm-reset "$hwm_reset" --wchar "$wchar" --load "$load_start" "${engine_args[@]}" \
    "${tally[@]}"
  tail -n 1 "$rows" | python3 -c '
import json, sys
r = json.load(sys.stdin)
rate = r.get("documents_per_s", r.get("requests_per_s"))
server = r["server"] + (" (%s)" % r["engine"] if r.get("engine") else "")
print("bench:   %s, %s: %s/s, p50 %s ms, p99 %s ms, errors %s. %s" % (r["scenario"], server, rate,
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

# s3_ceiling FILE_BYTES KEY: the S3 server's own PUT ceiling, as a row of server "radosgw".
s3_ceiling() {
  load_start="$(loadavg)"
  s3_bucket
  AWS_ACCESS_KEY_ID="$s3_access_key" AWS_SECRET_ACCESS_KEY="$s3_secret_key" \
    "$S3_PYTHON" "$bench_dir/s3_ceiling.py" "$s3_endpoint" "$s3_region" "$s3_bucket" "$1" "${UPLOAD_DURATION%s}" \
    "$UPLOAD_CONNECTIONS" --watch-pids "$(pgrep -P "$s3_pid" | tr '\n' ' ')" >"$work/s3_ceiling.txt" ||
    { cat "$work/s3_ceiling.txt" >&2; exit 1; }
  s3_empty "$work/s3_bucket.txt"
  report s3-row "$rows" --key "$2" --scenario "upload $(size_label "$1")" --output "$work/s3_ceiling.txt" \
    --load "$load_start"
}

# scenario_upload FILE_BYTES KEY SERVER
scenario_upload() {
  local settings="wrk -t$WRK_THREADS -c$UPLOAD_CONNECTIONS -d$UPLOAD_DURATION"
  if [ "$3" = disk ]; then
    disk_ceiling "$1" "$2"
    return
  fi
  if [ "$3" = radosgw ]; then
    s3_ceiling "$1" "$2"
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
  local watch
  make_body 1048576
  start "$1"
  # On s3 the S3 server does the storing: its daemons are sampled with docflow.
  watch="$server_pids"
  [ "$engine" != s3 ] || watch="$watch $(pgrep -P "$s3_pid" | tr '\n' ' ')"
  measure_begin
  python3 "$bench_dir/burst.py" --port "$port" --body "$body_file" --boundary "$boundary" --token "$token" \
    -n "$BURST_CONNECTIONS" --watch-pids "$watch" >"$work/burst.txt" 2>"$work/burst.err" || {
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
  if [ "$3" = docflow ]; then seeded_template "$1"; fi
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

# run_one SCENARIO SERVER: SERVER is docflow:ENGINE, nginx, disk or radosgw (the S3 server's ceiling).
run_one() {
  local server="${2%%:*}"
  engine=""
  [ "$server" = "$2" ] || engine="${2#*:}"
  echo "bench: $1, $server${engine:+ ($engine)}" >&2
  case "$1" in
    upload_1m) scenario_upload 1048576 "$1" "$server" ;;
    upload_64k) scenario_upload 65536 "$1" "$server" ;;
    burst) scenario_burst "$server" ;;
    get) scenario_get "$server" ;;
    list_100000) scenario_list 100000 100,000 "$server" ;;
    list_100) scenario_list 100 100 "$server" ;;
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

servers() { # servers SCENARIO: docflow on each engine (s3: uploads and the burst only); processing is
  # docflow's alone; uploads add the disk's ceiling
  local s="" e
  for e in $ENGINES; do
    case "$e:$1" in s3:upload_* | s3:burst | sqlite:* | postgres:*) s="$s docflow:$e" ;; esac
  done
  if [ "$with_nginx" = 1 ] && [ "${1#process_}" = "$1" ]; then s="$s nginx"; fi
  case "$1" in upload_*) s="$s disk" ;; esac
  case "$with_s3:$1" in 1:upload_*) s="$s radosgw" ;; esac
  echo "$s"
}

# ---------------------------------------------------------------------------

pg_note=""
if [ "$with_postgres" = 1 ]; then
  start_postgres
  pg_note="$("$PG_BIN/postgres" --version) on 127.0.0.1 (TCP), $pg_settings"
  echo "bench: $pg_note" >&2
fi
s3_note=""
if [ "$with_s3" = 1 ]; then
  start_s3
  s3_note="$(radosgw --version | head -n 1 | cut -d' ' -f1-3) (radosgw beast, one memstore OSD) on $s3_endpoint, S3_MEMSTORE_BYTES=$S3_MEMSTORE_BYTES"
  echo "bench: S3: $s3_note" >&2
fi
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
  --changed "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | wc -l)" --postgres "$pg_note" --s3 "$s3_note" \
  --note "load generators (wrk, burst.py, process.py) run on the same machine and share its $(nproc) cores with the server${BENCH_NOTE:+; $BENCH_NOTE}"
echo "bench: results written to ${out#"$repo"/}" >&2
