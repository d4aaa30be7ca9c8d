#!/usr/bin/python3
"""Scaling on the local cluster (issue 17, "Scaling, measured"): `make bench-cluster`.

    bench/cluster.py PATH_TO_DOCFLOW

Runs on tests/integration/cluster.py's cluster: PostgreSQL 15, the S3 test
server (radosgw), `docflow serve` processes behind nginx and `docflow worker`
processes, all on 127.0.0.1. Every request goes through nginx.

- burst: a fresh cluster of 2 serve processes and no worker; bench/burst.py
  releases BURST_CONNECTIONS (1000) uploads of 1 MiB at once through nginx.
  Every upload must be answered 201; the others are counted as errors, by
  status and by socket error. Wall time, uploads/s, latency p50/p95/p99, and
  per process the CPU seconds and the peak RSS during the burst (VmHWM, reset
  through /proc/PID/clear_refs before the release): each serve process,
  nginx (master and workers summed), radosgw, ceph-osd, ceph-mon.
- process_cpu: the default pipeline (verify, extract and analyse in the
  sandboxed child). A fresh cluster of 2 serve processes; worker processes
  with DOCFLOW_WORKERS=WORKER_THREADS threads each are added one by one, and
  at 1, 2 and 4 of them (WORKER_COUNTS) CLUSTER_DOCS documents (half copies of
  tests/fixtures/en-1page.pdf, half of table-header-footer.docx, uploaded
  before the measurement) are queued at once with bench/process.py run and
  processed to COMPLETED.
- process_ml: the same with DOCFLOW_ML_URL pointing at a threaded HTTP
  service started here that answers every enrich request after ML_DELAY_MS
  (200) ms, with ML_DOCS documents.

Each processing run records documents/s (process.py: COMPLETED documents
from the first process request to the last finished_at) and the CPU seconds
it cost, from /proc/PID/stat (utime + stime + cutime + cstime, so the
workers' extractor children are in): the workers', the whole cluster's
(workers, serve processes, nginx, PostgreSQL, the S3 daemons), the client's
(this script and process.py), and what the machine as a whole spent
(/proc/stat), whose remainder is other people's load. The scaling factor of
a step is documents/s at the larger worker count over documents/s at the
smaller one (the medians with REPEAT > 1).

Runs under /usr/bin/python3, whose boto3 (Debian's python3-boto3) the S3
server's s3.py uses, as scripts/cluster does.

Prints one table and writes bench/results/cluster.json (gitignored, as
bench.json). Reports, never asserts: failures are in the errors column and
listed under the table.

Environment (all optional):
  REPEAT=1               rounds; each round runs every scenario; the median run is reported
  SCENARIOS="burst process_cpu process_ml"
  BURST_CONNECTIONS=1000
  S3_MEMSTORE_BYTES=3221225472  the S3 server's memory budget for objects (the burst keeps 1 GiB, ~2x that)
  WORKER_COUNTS="1 2 4"  WORKER_THREADS=1  worker processes per run, and DOCFLOW_WORKERS of each
  CLUSTER_DOCS=200  ML_DOCS=100  ML_DELAY_MS=200  PROCESS_TIMEOUT=600 (seconds)
  BENCH_NOTE             free text stored with the results
"""
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import burst  # noqa: E402  (bench/: the fd limit)
import report  # noqa: E402  (bench/: medians and table layout)

SCENARIOS = ("burst", "process_cpu", "process_ml")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-password-0123"
FIXTURES = (os.path.join(REPO, "tests", "fixtures", "en-1page.pdf"),
            os.path.join(REPO, "tests", "fixtures", "table-header-footer.docx"))


def setting(name, default):
    return os.environ.get(name) or default


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# --- /proc ------------------------------------------------------------------

def stat_fields(pid):
    """Fields 3.. of /proc/PID/stat (after the command name); None once gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children_of():
    """{ppid: [pid, ...]} of every process now."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = stat_fields(int(name))
            if f:
                out.setdefault(int(f[1]), []).append(int(name))
    return out


def tree(pid, children):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_s(pids):
    """utime + stime + cutime + cstime of the processes, in seconds: their own
    CPU and their reaped children's (the extractors, ended PostgreSQL backends)."""
    ticks = 0
    for p in pids:
        f = stat_fields(p)
        if f:
            ticks += sum(int(x) for x in f[11:15])
    return ticks / CLK_TCK


def status_kib(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pids):
    """VmHWM := VmRSS, so the peak read later is the run's own."""
    for p in pids:
        try:
            with open("/proc/%d/clear_refs" % p, "w") as f:
                f.write("5")
        except OSError:
            pass


def machine_busy_s():
    """CPU seconds the whole machine spent busy (all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK


def parts(c):
    """The cluster's processes by part name: {name: [pid, ...]}."""
    children = children_of()
    # A docflow process with its zygotes, whose cutime has their ended children (the extractors).
    out = {p.name: tree(p.pid, children) for p in c.processes if p.running}
    out["nginx"] = tree(c.nginx.proc.pid, children)
    with open(os.path.join(c.pg.data, "postmaster.pid")) as f:
        out["postgresql"] = tree(int(f.readline()), children)
    # The S3 daemons are this process's children (s3.py), by command name.
    for pid in children.get(os.getpid(), []):
        try:
            with open("/proc/%d/comm" % pid) as f:
                name = f.read().strip()
        except OSError:
            continue
        if name in ("ceph-mon", "ceph-osd", "radosgw"):
            out.setdefault(name, []).append(pid)
    return out


class Meter:
    """CPU seconds per part, the client's, the machine's, and the load, over a run."""

    def __init__(self, c):
        self.c = c
        self.parts = parts(c)
        reset_peak_rss([p for pids in self.parts.values() for p in pids])
        self.cpu0 = {name: cpu_s(pids) for name, pids in self.parts.items()}
        self.client0 = self.client_s()
        self.machine0 = machine_busy_s()
        self.load0 = loadavg()
        self.t0 = time.monotonic()

    @staticmethod
    def client_s():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def end(self):
        seconds = time.monotonic() - self.t0
        now = parts(self.c)  # PostgreSQL's backends come and go; the cutime of the postmaster has the gone ones
        cpu = {name: round(cpu_s(now.get(name, [])) - self.cpu0[name], 2) for name in self.parts}
        rss = {name: round(sum(status_kib(p, "VmHWM") for p in pids) / 1024, 1)
               for name, pids in self.parts.items() if name != "postgresql"}
        client = self.client_s() - self.client0
        machine = machine_busy_s() - self.machine0
        cluster = sum(cpu.values())
        return {
            "cpu_s": cpu,
            "peak_rss_mib": rss,
            "cluster_cpu_s": round(cluster, 2),
            "client_cpu_s": round(client, 2),
            "machine_busy_s": round(machine, 2),
            "other_cpu_s": round(max(0.0, machine - cluster - client), 2),
            "seconds": round(seconds, 2),
            "load_start": self.load0,
            "load_end": loadavg(),
        }


# --- the cluster ----------------------------------------------------------

def login(c):
    """Registers the bench account through nginx and returns a bearer token."""
    body = json.dumps({"username": "bench-user", "password": PASSWORD}).encode()
    for path in ("/auth/register", "/auth/login"):
        req = urllib.request.Request(c.url + path, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.load(r)
    return answer["access_token"]


def tool(argv, marker, log):
    """Runs a bench/ tool; returns its `MARKER {json}` line's JSON."""
    done = subprocess.run([sys.executable] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(done.stderr)
    log.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit("bench-cluster: %s failed (%d)" % (os.path.basename(argv[0]), done.returncode))
    for line in done.stdout.splitlines():
        if line.startswith(marker + " "):
            return json.loads(line[len(marker) + 1:])
    raise SystemExit("bench-cluster: no %s line from %s" % (marker, argv[0]))


def run_burst(cluster_mod, cfg, work, log):
    n = cfg["burst_connections"]
    body = os.path.join(work, "body.1m")
    if not os.path.exists(body):
        with open(body + ".boundary", "w") as out:
            subprocess.run([sys.executable, os.path.join(BENCH, "make_upload.py"), "1048576", body], stdout=out,
                           check=True)
    with open(body + ".boundary") as f:
        boundary = f.read().strip()
    c = cluster_mod.Cluster(serve=2, workers=0, env=cfg["env"], s3_memstore_bytes=cfg["s3_memstore_bytes"])
    try:
        token = login(c)
        meter = Meter(c)
        watch = " ".join(str(p) for name, pids in meter.parts.items() if name != "postgresql" for p in pids)
        b = tool([os.path.join(BENCH, "burst.py"), "--port", str(c.port), "--body", body, "--boundary", boundary,
                  "--token", token, "-n", str(n), "--watch-pids", watch], "BURST_RESULT", log)
        m = meter.end()
    finally:
        c.close()
    b.pop("timeline", None)
    return dict(m, key="burst", server="cluster", scenario="burst %d x 1 MiB" % n,
                setting="2 serve, PostgreSQL + S3, via nginx", successes=b["successes"], attempts=n,
                errors=n - b["successes"], statuses=b["statuses"], socket_errors=b["errors"], wall_s=b["wall_s"],
                requests_per_s=round(b["successes"] / b["wall_s"], 1) if b["wall_s"] else None,
                p50_ms=b["p50_ms"], p95_ms=b["p95_ms"], p99_ms=b["p99_ms"], max_ms=b["max_ms"],
                burst_client_cpu_s=b["client_cpu_s"])


class MLService:
    """The enrich stage's service: answers every POST after `delay` seconds,
    one thread per connection (tests/integration/test_processing.py's
    MLService speaks the same protocol)."""

    def __init__(self, delay):
        service = self
        self.requests = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # docflow's libcurl handle keeps its connection

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(delay)
                with service.lock:
                    service.requests += 1
                data = b'{"labels":["report"],"model":"bench-sleep"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/enrich" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_processing(cluster_mod, cfg, kind, work, log):
    """One round of one pipeline: a fresh cluster, then a run at each worker count."""
    env, ml, docs = dict(cfg["env"]), None, cfg["cluster_docs"]
    if kind == "process_ml":
        ml = MLService(cfg["ml_delay_ms"] / 1000)
        env["DOCFLOW_ML_URL"] = ml.url
        docs = cfg["ml_docs"]
    threads = cfg["worker_threads"]
    rows = []
    c = cluster_mod.Cluster(serve=2, workers=0, env=env)
    try:
        token = login(c)
        for count in cfg["worker_counts"]:
            ids = os.path.join(work, "ids")
            with open(ids, "w") as out:
                for i, path in enumerate(FIXTURES):
                    share = docs // len(FIXTURES) + (1 if i < docs % len(FIXTURES) else 0)
                    part = ids + ".%d" % i
                    subprocess.run([sys.executable, os.path.join(BENCH, "process.py"), "upload", "--port", str(c.port),
                                    "--token", token, "--file", path, "-n", str(share), "--ids", part], check=True)
                    with open(part) as f:
                        out.write(f.read())
            while len(c.workers) < count:
                c.add_worker(threads)
            served = ml.requests if ml else 0
            meter = Meter(c)
            p = tool([os.path.join(BENCH, "process.py"), "run", "--port", str(c.port), "--token", token, "--ids", ids,
                      "--timeout", str(cfg["process_timeout"])], "PROCESS_RESULT", log)
            m = meter.end()
            workers_cpu = sum(v for k, v in m["cpu_s"].items() if k.startswith("worker-"))
            done = p["completed"] or 1
            what = "CPU-bound default pipeline" if kind == "process_cpu" else "enrich calls a %d ms ML service" % (
                cfg["ml_delay_ms"])
            rows.append(dict(
                m, key="%s_w%d" % (kind, count), server="cluster", kind=kind,
                scenario="process %s, PDF + DOCX" % (
                    "CPU-bound" if kind == "process_cpu" else "with %d ms ML" % cfg["ml_delay_ms"]),
                setting="%d worker%s x %d thread%s" % (count, "s" if count > 1 else "", threads,
                                                       "s" if threads > 1 else ""),
                pipeline=what, worker_processes=count, worker_threads=threads, concurrency=count * threads,
                documents=p["documents"], completed=p["completed"], failed=p["failed"],
                not_done_at_timeout=p["not_done_at_timeout"], errors=p["errors"], wall_s=p["wall_s"],
                queue_s=p["queue_s"], documents_per_s=p["docs_per_s"], p50_ms=p["p50_ms"],
                p95_ms=p["p95_ms"], p99_ms=p["p99_ms"],
                workers_cpu_s=round(workers_cpu, 2),
                workers_cpu_ms_per_doc=round(workers_cpu * 1000 / done, 1),
                cluster_cpu_ms_per_doc=round(m["cluster_cpu_s"] * 1000 / done, 1),
                cluster_cores=round(m["cluster_cpu_s"] / p["wall_s"], 2) if p["wall_s"] else None,
                ml_requests=(ml.requests - served) if ml else None))
            r = rows[-1]
            print("bench-cluster: %s, %s: %s documents/s, %d/%d COMPLETED, CPU %.0f ms/doc (workers %.0f), "
                  "cluster %.2f cores, others %.2f s, load %s" % (
                      r["scenario"], r["setting"], r["documents_per_s"], r["completed"], r["documents"],
                      r["cluster_cpu_ms_per_doc"], r["workers_cpu_ms_per_doc"], r["cluster_cores"] or 0,
                      r["other_cpu_s"], r["load_start"]), file=sys.stderr)
    finally:
        c.close()
        if ml:
            ml.close()
    return rows


# --- the report -----------------------------------------------------------

def scaling(chosen):
    """{kind: [(from, to, factor), ...]} from the chosen (median) runs."""
    out = {}
    for kind in ("process_cpu", "process_ml"):
        runs = sorted((r for r in chosen if r.get("kind") == kind), key=lambda r: r["worker_processes"])
        steps = []
        for a, b in zip(runs, runs[1:]):
            if a["documents_per_s"] and b["documents_per_s"]:
                steps.append({"from": a["worker_processes"], "to": b["worker_processes"],
                              "factor": round(b["documents_per_s"] / a["documents_per_s"], 2)})
        if steps:
            out[kind] = steps
    return out


def projection(chosen):
    """What more cores would give the CPU-bound pipeline: cores / the
    cluster's CPU seconds per document, from the run with most workers."""
    runs = [r for r in chosen if r.get("kind") == "process_cpu" and r["completed"]]
    if not runs:
        return None
    r = max(runs, key=lambda r: r["worker_processes"])
    per_doc = r["cluster_cpu_ms_per_doc"] / 1000
    return {"from": r["key"], "cluster_cpu_s_per_doc": round(per_doc, 3),
            "workers_cpu_s_per_doc": round(r["workers_cpu_ms_per_doc"] / 1000, 3),
            "client_cpu_s_per_doc": round(r["client_cpu_s"] / r["completed"], 3),
            "documents_per_s_at_cores": {str(n): round(n / per_doc, 1) for n in (2, 4, 8, 16)}}


def print_report(chosen, steps, proj):
    factor = {(kind, s["to"]): s["factor"] for kind, ss in steps.items() for s in ss}
    table = [["scenario", "setting", "per s", "p50", "p95", "p99", "errors", "CPU ms/op", "workers ms/op",
              "cluster cores", "others' cores", "load 1m", "scaling"]]
    for r in chosen:
        wall = r["wall_s"] or 1
        per_op = r.get("cluster_cpu_ms_per_doc")
        if per_op is None and r.get("successes"):
            per_op = round(r["cluster_cpu_s"] * 1000 / r["successes"], 1)
        f = factor.get((r.get("kind"), r.get("worker_processes")))
        table.append([r["scenario"], r["setting"], report.fmt(report.rate(r)), report.fmt_ms(r["p50_ms"]),
                      report.fmt_ms(r["p95_ms"]), report.fmt_ms(r["p99_ms"]), report.fmt(r["errors"]),
                      report.fmt(per_op), report.fmt(r.get("workers_cpu_ms_per_doc")),
                      report.fmt(round(r["cluster_cpu_s"] / wall, 2), 2),
                      report.fmt(round(r["other_cpu_s"] / wall, 2), 2),
                      report.fmt(r["load_start"][0], 2), "%.2fx" % f if f else ""])
    report.print_columns(table)
    print()
    print("per s: uploads answered 201 per second of the burst's wall time; documents COMPLETED per second")
    print("from the first process request to the last finished_at. p50/p95/p99: from the release (burst) or")
    print("the process request to the answer or to COMPLETED. CPU ms/op: the cluster's CPU (serve, workers with")
    print("their extractor children, nginx, PostgreSQL, the S3 daemons) per upload or document; workers ms/op:")
    print("the worker processes' share. cluster cores: the cluster's CPU over the wall time; others' cores: the")
    print("machine's busy time not spent by the cluster or the client. scaling: documents/s over the row above.")
    for r in chosen:
        if r["key"] == "burst":
            print()
            print("%s: %d/%d x 201; statuses %s; socket errors %s; wall %.2f s, max %s" % (
                r["scenario"], r["successes"], r["attempts"], r["statuses"], r["socket_errors"] or "none",
                r["wall_s"], report.fmt_ms(r["max_ms"])))
            print("  peak RSS MiB: " + ", ".join("%s %.1f" % kv for kv in r["peak_rss_mib"].items()))
            print("  CPU s: " + ", ".join("%s %.2f" % kv for kv in r["cpu_s"].items())
                  + "; burst.py %.2f" % r["burst_client_cpu_s"])
    failures = [r for r in chosen if r["errors"]]
    if failures:
        print()
        for r in failures:
            print("FAILURES %s, %s: %d (%s)" % (r["scenario"], r["setting"], r["errors"],
                                                r.get("statuses") or r.get("failed") or r.get("socket_errors")))
    for kind, ss in steps.items():
        print()
        print("%s scaling: " % kind + ", ".join("%d -> %d workers %.2fx" % (s["from"], s["to"], s["factor"])
                                               for s in ss))
    if proj:
        print()
        print("CPU-bound pipeline, from %s: %.0f ms of cluster CPU per document "
              "(workers %.0f; the client %.0f besides):" % (
                  proj["from"], proj["cluster_cpu_s_per_doc"] * 1000, proj["workers_cpu_s_per_doc"] * 1000,
                  proj["client_cpu_s_per_doc"] * 1000))
        print("  at most " + ", ".join("%s documents/s on %s cores" % (v, n)
                                      for n, v in proj["documents_per_s_at_cores"].items())
              + " (with as many worker threads as cores, the cluster alone on them)")


def main():
    if len(sys.argv) != 2:
        print("usage: bench/cluster.py PATH_TO_DOCFLOW", file=sys.stderr)
        return 2
    binary = os.path.realpath(sys.argv[1])
    if not os.access(binary, os.X_OK):
        print("bench-cluster: %s is not an executable" % sys.argv[1], file=sys.stderr)
        return 2
    # cluster.py reads the binary's path when it is imported.
    os.environ["DOCFLOW_BIN"] = binary
    import cluster as cluster_mod

    scenarios = setting("SCENARIOS", " ".join(SCENARIOS)).split()
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        print("bench-cluster: unknown scenario %s (known: %s)" % (" ".join(unknown), " ".join(SCENARIOS)),
              file=sys.stderr)
        return 2
    cfg = {
        "repeat": int(setting("REPEAT", "1")),
        "burst_connections": int(setting("BURST_CONNECTIONS", "1000")),
        "s3_memstore_bytes": int(setting("S3_MEMSTORE_BYTES", str(3 << 30))),
        "worker_counts": [int(x) for x in setting("WORKER_COUNTS", "1 2 4").split()],
        "worker_threads": int(setting("WORKER_THREADS", "1")),
        "cluster_docs": int(setting("CLUSTER_DOCS", "200")),
        "ml_docs": int(setting("ML_DOCS", "100")),
        "ml_delay_ms": int(setting("ML_DELAY_MS", "200")),
        "process_timeout": float(setting("PROCESS_TIMEOUT", "600")),
        # As bench/run.sh: the access log would dominate.
        "env": {"DOCFLOW_LOG_LEVEL": "warn"},
    }
    # The burst's 1,000 connections, in the client and, inherited, in nginx and docflow.
    burst.raise_fd_limit(16384)
    results_dir = os.path.join(BENCH, "results")
    os.makedirs(results_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="docflow-bench-cluster-")
    rows = []
    load_before = loadavg()
    print("bench-cluster: load average before the run: %s (%d cores)" % (load_before, os.cpu_count()),
          file=sys.stderr)
    try:
        with open(os.path.join(work, "tools.log"), "w") as log:
            for r in range(1, cfg["repeat"] + 1):
                for scenario in scenarios:
                    print("bench-cluster: round %d/%d, %s" % (r, cfg["repeat"], scenario), file=sys.stderr)
                    if scenario == "burst":
                        new = [run_burst(cluster_mod, cfg, work, log)]
                    else:
                        new = run_processing(cluster_mod, cfg, scenario, work, log)
                    for row in new:
                        row["round"] = r
                    rows.extend(new)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = loadavg()
    print("bench-cluster: load average after the run: %s" % load_after, file=sys.stderr)
    print(file=sys.stderr)
    chosen = report.median_rows(rows)
    steps = scaling(chosen)
    proj = projection(chosen)
    print_report(chosen, steps, proj)
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True)
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "git_revision": rev.stdout.strip() or "unknown",
        "uncommitted_changes": bool(changed.stdout.strip()),
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "note": "load generators (burst.py, process.py) and the ML service run on the same machine as the cluster"
                + ("; " + os.environ["BENCH_NOTE"] if os.environ.get("BENCH_NOTE") else ""),
        "settings": cfg,
        "results": chosen,
        "scaling": steps,
        "cpu_bound_projection": proj,
        "all_runs": rows,
    }
    out = os.path.join(results_dir, "cluster.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("bench-cluster: results written to %s" % os.path.relpath(out, REPO), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
