#!/usr/bin/env python3
"""Turns the raw output of bench/run.sh's runs into rows, one table and JSON.

    report.py wrk-row     ROWS --key K --scenario S --server docflow|nginx [--engine sqlite|postgres|s3]
                          --output WRK_OUT [measurements]
    report.py burst-row   ROWS ... --output BURST_OUT
    report.py process-row ROWS ... --output PROCESS_OUT
    report.py disk-row    ROWS --key K --scenario S --output DISK_OUT [--load L]
    report.py s3-row      ROWS --key K --scenario S --output S3_CEILING_OUT [--load L]
    report.py finish      ROWS OUT_JSON --rev R --load-before "1 5 15" [--changed N] [--note TEXT]
                          [--postgres TEXT] [--s3 TEXT]

ROWS is a file of JSON lines, one per run. `finish` picks, per (scenario,
server, engine), the run with the median main figure (requests/s or
documents/s; for the burst, the wall time), prints one table, the notes and
the targets, and writes OUT_JSON. docflow's rows carry the engine (sqlite,
postgres, or s3: SQLite with the blobs in S3); on PostgreSQL the server's CPU
figures include the PostgreSQL server's own CPU (--db-cpu-ticks), since
SQLite's work is inside docflow's process; on s3 they include the S3
server's daemons' (--s3-daemons), since the local store's writes are inside
docflow's process too.

Units: MB is 10^6 bytes and GB 10^9 bytes of *file* bytes (the multipart
framing, about 200 bytes per request, is not counted); MiB is 2^20 bytes (RSS).
"""
import argparse
import datetime
import json
import os
import sys

ORDER = ["upload_1m", "upload_64k", "burst", "get", "list_100000", "list_100",
         "process_1page", "process_50page", "process_docx", "process_e2e"]
ENGINES = ["sqlite", "postgres", "s3"]
TARGET_UPLOAD_RATIO = 0.7  # 1 MiB uploads: docflow MB/s >= 0.7 x nginx MB/s
TARGET_SMALL_UPLOAD_RATIO = 0.3  # 64 KiB uploads: docflow req/s >= 0.3 x nginx req/s
TARGET_BURST_RSS_MIB = 128.0
TARGET_BURST_WALL_RATIO = 1.5  # burst wall time <= 1.5 x nginx's
TARGET_GET_RPS = 30000.0
TARGET_GET_P99_MS = 10.0
TARGET_LIST_COST_RATIO = 2.0  # listing at 100,000 documents costs <= 2 x listing at 100
# PostgreSQL against SQLite on the same machine (issue 15)
TARGET_PG_UPLOAD_RATIO = 0.8  # 1 MiB and 64 KiB uploads: req/s >= 0.8 x SQLite's
TARGET_PG_GET_RATIO = 0.5  # GET /documents/{id}: req/s >= 0.5 x SQLite's, p99 <= TARGET_GET_P99_MS
# The S3 store against the local one on the same machine (issue 16)
TARGET_S3_UPLOAD_RATIO = 0.5  # 1 MiB uploads: req/s >= 0.5 x SQLite + local directory's
TARGET_S3_BURST_RSS_MIB = 256.0  # the burst's peak RSS on s3 (docflow's own, not the S3 server's)


def parse_marked_json(path, marker):
    with open(path) as f:
        for line in f:
            if line.startswith(marker + " "):
                return json.loads(line[len(marker) + 1 :])
    sys.exit(f"report: no {marker} line in {path}:\n" + open(path).read())


def add_measurement_args(ap):
    ap.add_argument("rows")
    ap.add_argument("--key", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--engine", default=None, choices=ENGINES, help="docflow's database")
    ap.add_argument("--output", required=True, help="the load generator's output")
    ap.add_argument("--file-bytes", type=int, default=0, help="bytes of the uploaded file (not the body)")
    ap.add_argument("--cpu-ticks", type=int, required=True, help="server utime+stime over the run, clock ticks")
    ap.add_argument("--child-cpu-ticks", type=int, default=0, help="cutime+cstime: reaped children (extractors)")
    ap.add_argument("--clk-tck", type=int, default=100)
    ap.add_argument("--hwm-kib", type=int, default=None, help="server VmHWM over the run (reset at its start)")
    ap.add_argument("--hwm-reset", type=int, default=1, help="0 when the VmHWM could not be reset")
    ap.add_argument("--wchar", type=int, default=None, help="bytes the server wrote (write syscalls) over the run")
    ap.add_argument("--db-cpu-ticks", type=int, default=None, help="the PostgreSQL server's CPU over the run")
    ap.add_argument("--db-wchar", type=int, default=None, help="bytes the PostgreSQL server wrote over the run")
    ap.add_argument("--s3-daemons", default=None,
                    help="the S3 server's daemons: NAME:CPU_TICKS:PEAK_RSS_KIB,... over the run")
    ap.add_argument("--s3-bucket", default=None, help="bench/s3_bucket.py's output for the run's bucket")
    ap.add_argument("--load", default="", help="load average at the start of the run")
    ap.add_argument("--settings", default="", help="free text: the load generator's parameters")


def base_row(a):
    return {
        "key": a.key,
        "scenario": a.scenario,
        "server": a.server,
        "engine": a.engine,
        "settings": a.settings,
        "load_average_at_start": [float(x) for x in a.load.split()] if a.load else None,
        "file_bytes": a.file_bytes or None,
        "peak_rss_mib": round(a.hwm_kib / 1024, 1) if a.hwm_kib is not None else None,
        "peak_rss_is_since_run_start": bool(a.hwm_reset),
        "server_cpu_s": round(a.cpu_ticks / a.clk_tck, 2),
        "children_cpu_s": round(a.child_cpu_ticks / a.clk_tck, 2),
        "database_cpu_s": round(a.db_cpu_ticks / a.clk_tck, 2) if a.db_cpu_ticks is not None else None,
        "database_bytes_written": a.db_wchar,
        **s3_figures(a),
    }


def s3_figures(a):
    """On s3: each S3 daemon's CPU and peak RSS over the run, their CPU summed, and what the bucket held."""
    if a.s3_daemons is None:
        return {}
    daemons = {}
    for item in filter(None, a.s3_daemons.split(",")):
        name, ticks, kib = item.split(":")
        daemons[name] = {"cpu_s": round(int(ticks) / a.clk_tck, 2), "peak_rss_mib": round(int(kib) / 1024, 1)}
    return {"s3_cpu_s": round(sum(d["cpu_s"] for d in daemons.values()), 2), "s3_daemons": daemons,
            "s3_bucket": parse_marked_json(a.s3_bucket, "S3_BUCKET") if a.s3_bucket else None}


def s3_ticks(a):
    return sum(int(item.split(":")[1]) for item in filter(None, (a.s3_daemons or "").split(",")))


def cost_figures(row, a, ok, seconds):
    """CPU per operation (docflow, its extractors and the PostgreSQL or S3 server); for uploads also MB/s,
    CPU per GB and bytes written per file byte."""
    cpu_s = (a.cpu_ticks + a.child_cpu_ticks + (a.db_cpu_ticks or 0) + s3_ticks(a)) / a.clk_tck
    if ok:
        row["cpu_ms_per_op"] = round(1000 * cpu_s / ok, 3)
        if a.s3_daemons is not None:
            row["docflow_cpu_ms_per_op"] = round(1000 * (a.cpu_ticks + a.child_cpu_ticks) / a.clk_tck / ok, 3)
            row["s3_cpu_ms_per_op"] = round(1000 * s3_ticks(a) / a.clk_tck / ok, 3)
    if not a.file_bytes:
        return
    gb = ok * a.file_bytes / 1e9
    row["mb_per_s"] = round(ok * a.file_bytes / seconds / 1e6, 1) if seconds else None
    row["gb_uploaded"] = round(gb, 3)
    if gb > 0:
        row["cpu_s_per_gb"] = round(cpu_s / gb, 2)
        if a.wchar is not None:
            row["server_bytes_written_per_file_byte"] = round(a.wchar / (gb * 1e9), 3)
        if a.db_wchar is not None:
            row["database_bytes_written_per_file_byte"] = round(a.db_wchar / (gb * 1e9), 3)


def database_note(row):
    """On PostgreSQL: how much of the CPU was the database server's."""
    db = row.get("database_cpu_s")
    if db is None:
        return []
    total = row["server_cpu_s"] + row["children_cpu_s"] + db
    share = f" ({100 * db / total:.0f}%)" if total else ""
    return [f"PostgreSQL CPU {db:.2f} s of {total:.2f} s{share}"]


def s3_note(row, ok, window=False):
    """On s3: the CPU split between docflow and the S3 daemons, their memory, and what the bucket held
    against the uploads that succeeded. window: ok counts the 201s within wrk's window, and the uploads in
    flight at its end were stored too, so the bucket holds more."""
    if row.get("s3_cpu_s") is None:
        return []
    own = row["server_cpu_s"] + row["children_cpu_s"]
    total = own + row["s3_cpu_s"]
    daemons = row["s3_daemons"]
    notes = [f"S3 server CPU {row['s3_cpu_s']:.2f} s of {total:.2f} s"
             + (f" ({100 * row['s3_cpu_s'] / total:.0f}%)" if total else "") + ": "
             + ", ".join(f"{name} {d['cpu_s']:.2f} s" for name, d in sorted(daemons.items()))]
    if "s3_cpu_ms_per_op" in row:
        notes.append(f"CPU per upload: docflow {row['docflow_cpu_ms_per_op']:.2f} ms, "
                     f"S3 server {row['s3_cpu_ms_per_op']:.2f} ms")
    notes.append("S3 daemons' peak RSS (not docflow's) "
                 + ", ".join(f"{name} {d['peak_rss_mib']:.0f} MiB" for name, d in sorted(daemons.items())))
    b = row.get("s3_bucket")
    if b:
        expected = ok * (row.get("file_bytes") or 0)
        if window:
            held = f"{b['objects']:,} objects, {b['bytes'] / 1e6:,.1f} MB (the uploads in flight at wrk's end included)"
        else:
            held = (f"{b['objects']:,} objects for {ok:,} uploads, {b['bytes'] / 1e6:,.1f} MB"
                    + ("" if b["bytes"] == expected else f" (uploads: {expected / 1e6:,.1f} MB)"))
        notes.append(f"bucket after the run: {held}, {b['open_multipart_uploads']} multipart uploads open")
    return notes


def wrk_row(a):
    w = parse_marked_json(a.output, "BENCH_RESULT")
    socket_errors = w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"]
    row = base_row(a)
    row["wrk"] = w
    ok = w["requests"] - w["non_2xx_3xx"]
    row["requests_per_s"] = round(ok / w["duration_s"], 1)
    row["errors"] = w["non_2xx_3xx"] + socket_errors
    for p in ("p50_ms", "p90_ms", "p99_ms"):
        row[p] = w[p]
    cost_figures(row, a, ok, w["duration_s"])
    notes = [f"{w['timeouts']} wrk timeouts"] if w["timeouts"] else []
    if w["non_2xx_3xx"]:
        notes.append(f"{w['non_2xx_3xx']} answers not 2xx")
    row["notes"] = "; ".join(notes + database_note(row) + s3_note(row, ok, window=True))
    append(a.rows, row)


def burst_row(a):
    b = parse_marked_json(a.output, "BURST_RESULT")
    row = base_row(a)
    row["burst"] = b
    ok, wall = b["successes"], b["wall_s"]
    row.update(successes=ok, connections=b["connections"], wall_s=wall,
               requests_per_s=round(ok / wall, 1) if wall else None, errors=b["connections"] - ok,
               p50_ms=b["p50_ms"], p90_ms=b["p90_ms"], p99_ms=b["p99_ms"])
    cost_figures(row, a, ok, wall)
    notes = [f"{ok}/{b['connections']} x 201, last answer {wall:.2f} s after the release",
             f"client CPU {b['client_cpu_s']:.2f} s ({100 * b['client_cpu_s'] / wall:.0f}% of one core)"
             if wall else f"client CPU {b['client_cpu_s']:.2f} s"]
    if "tail_s" in b:
        notes.append(f"server under one core for the last {b['tail_s']:.2f} s, "
                     f"while the disks wrote {b['tail_disk_mb']:.0f} MB")
    if b["errors"]:
        notes.append("errors " + ", ".join(f"{k}: {v}" for k, v in b["errors"].items()))
    other = {k: v for k, v in b["statuses"].items() if k != "201"}
    if other:
        notes.append("statuses " + ", ".join(f"{k}: {v}" for k, v in other.items()))
    row["notes"] = "; ".join(notes + database_note(row) + s3_note(row, ok))
    append(a.rows, row)


def process_row(a):
    p = parse_marked_json(a.output, "PROCESS_RESULT")
    row = base_row(a)
    row["process"] = p
    row.update(documents_per_s=p["docs_per_s"], wall_s=p["wall_s"], errors=p["errors"],
               p50_ms=p["p50_ms"], p90_ms=p["p90_ms"], p99_ms=p["p99_ms"])
    cost_figures(row, a, p["completed"], p["wall_s"])
    if "cpu_ms_per_op" in row:
        row["cpu_s_per_document"] = round(row["cpu_ms_per_op"] / 1000, 4)
    db = f" + {row['database_cpu_s']:.2f} s PostgreSQL" if row["database_cpu_s"] is not None else ""
    notes = [f"{p['completed']}/{p['documents']} COMPLETED in {p['wall_s']:.2f} s",
             f"queued in {p['queue_s']:.2f} s",
             f"CPU {row['server_cpu_s']:.2f} s server + {row['children_cpu_s']:.2f} s extractors{db}"]
    if p["failed"]:
        notes.append("FAILED " + ", ".join(f"{k}: {v}" for k, v in p["failed"].items()))
    if p["not_done_at_timeout"]:
        notes.append(f"{p['not_done_at_timeout']} not done at the timeout")
    if set(p["process_answers"]) - {"202"}:
        notes.append(f"process answers {p['process_answers']}")
    row["notes"] = "; ".join(notes)
    append(a.rows, row)


def disk_row(a):
    d = parse_marked_json(a.output, "DISK_RESULT")
    row = {"key": a.key, "scenario": a.scenario, "server": "disk", "load_average": a.load,
           "settings": f"bench/disk_ceiling.py: {d['threads']} writers, {d['seconds']} s", "disk": d,
           "requests_per_s": d["files_per_s"], "mb_per_s": d["mb_per_s"], "errors": 0,
           "notes": "the disk's ceiling: files made durable per second as docflow makes an upload durable, no HTTP"}
    append(a.rows, row)


def s3_row(a):
    c = parse_marked_json(a.output, "S3_CEILING_RESULT")
    server = c["server_cpu_ms_per_put"]
    row = {"key": a.key, "scenario": a.scenario, "server": "radosgw", "load_average": a.load,
           "settings": f"bench/s3_ceiling.py: {c['threads']} boto3 clients, {c['seconds']:g} s", "s3_ceiling": c,
           "requests_per_s": c["files_per_s"], "mb_per_s": c["mb_per_s"], "errors": c["errors"],
           "cpu_ms_per_op": round(sum(server.values()), 3) if server else None,
           "notes": "the S3 server's ceiling: PUTs of the file per second from boto3 clients, no docflow; CPU per PUT "
                    + ", ".join(f"{name} {ms:.2f} ms" for name, ms in sorted(server.items()))
                    + (f", the client {c['client_cpu_ms_per_put']:.2f} ms" if c["client_cpu_ms_per_put"] else "")}
    append(a.rows, row)


def append(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def rate(r):
    """The row's main figure: successful requests/s, or documents/s for processing."""
    return r.get("documents_per_s") if r["key"].startswith("process") else r.get("requests_per_s")


def label(r):
    """The server column: docflow with its database, or nginx, or disk."""
    return f"{r['server']} ({r['engine']})" if r.get("engine") else r["server"]


def median_rows(rows):
    """One row per (key, server, engine): the run with the median main figure."""
    groups = {}
    for r in rows:
        groups.setdefault((r["key"], r["server"], r.get("engine")), []).append(r)
    out = []
    for (key, _, _), runs in groups.items():
        figure = (lambda r: -r["wall_s"]) if key == "burst" else (lambda r: rate(r) or 0)
        ranked = sorted(runs, key=figure)
        chosen = dict(ranked[(len(ranked) - 1) // 2])
        chosen["runs"] = len(runs)
        chosen["main_figure_all_runs"] = [r["wall_s"] if key == "burst" else rate(r) for r in runs]
        out.append(chosen)
    out.sort(key=lambda r: (ORDER.index(r["key"]) if r["key"] in ORDER else 99, r["server"] != "docflow",
                            ENGINES.index(r["engine"]) if r.get("engine") in ENGINES else 0))
    return out


def index(rows):
    return {(r["key"], r["server"], r.get("engine")): r for r in rows}


def ratios(rows):
    """Per engine, docflow's main figure over nginx's; and per engine other than sqlite (postgres, s3), its
    figure over SQLite's; per scenario that has both."""
    by = index(rows)
    over_nginx, over_sqlite = {}, {}
    for (key, server, engine), d in by.items():
        if server != "docflow" or rate(d) is None:
            continue
        n = by.get((key, "nginx", None))
        if n and rate(n):
            over_nginx.setdefault(engine, {})[key] = round(rate(d) / rate(n), 3)
        lite = by.get((key, "docflow", "sqlite"))
        if engine != "sqlite" and lite and rate(lite):
            over_sqlite.setdefault(engine, {})[key] = round(rate(d) / rate(lite), 3)
    return over_nginx, over_sqlite


def ratio_target(target, mine, theirs, minimum, unit, digits):
    """A target of the form "MINE >= MINIMUM x THEIRS"."""
    ratio = mine / theirs
    return {"target": target, "value": round(ratio, 3),
            "text": f"{ratio:.2f} x ({mine:,.{digits}f} / {theirs:,.{digits}f} {unit})", "met": ratio >= minimum}


def burst_targets(name, b, rss_what, rss_limit):
    """The burst's two targets: every upload succeeds, within the peak RSS."""
    # The targets are for 1000 simultaneous uploads; fewer (BURST_CONNECTIONS) only report.
    standard = b["connections"] == 1000
    caveat = "" if standard else " (the target is for 1000 connections)"
    out = [{"target": f"{name}: burst: 1000/1000 uploads succeed", "value": b["successes"],
            "text": f"{b['successes']}/{b['connections']}{caveat}",
            "met": b["successes"] == 1000 if standard else None}]
    if b["peak_rss_mib"] is not None:
        out.append({"target": f"{name}: burst: {rss_what} <= {rss_limit:.0f} MiB",
                    "value": b["peak_rss_mib"], "text": f"{b['peak_rss_mib']:.1f} MiB{caveat}",
                    "met": b["peak_rss_mib"] <= rss_limit if standard else None})
    return out


def nginx_targets(by, engine):
    """The service's targets against nginx and its own, for docflow on ENGINE."""
    out = []
    name = f"docflow ({engine})"
    up_d, up_n = by.get(("upload_1m", "docflow", engine)), by.get(("upload_1m", "nginx", None))
    if up_d and up_n and up_n.get("mb_per_s"):
        out.append(ratio_target(f"{name}: 1 MiB uploads >= {TARGET_UPLOAD_RATIO} x nginx MB/s", up_d["mb_per_s"],
                                up_n["mb_per_s"], TARGET_UPLOAD_RATIO, "MB/s", 1))
    for key, size in (("upload_1m", "1 MiB"), ("upload_64k", "64 KiB")):
        d, disk = by.get((key, "docflow", engine)), by.get((key, "disk", None))
        if d and disk and disk.get("requests_per_s"):
            n = by.get((key, "nginx", None))
            nginx = f"; nginx {rate(n) / disk['requests_per_s']:.2f} x (no fsync)" if n and rate(n) else ""
            out.append({"target": f"{name}: (for reference) {size} uploads over the disk's durable ceiling",
                        "met": None, "value": round(rate(d) / disk["requests_per_s"], 3),
                        "text": f"docflow {rate(d) / disk['requests_per_s']:.2f} x "
                                f"({rate(d):,.0f} / {disk['requests_per_s']:,.0f} files/s){nginx}"})
    small_d, small_n = by.get(("upload_64k", "docflow", engine)), by.get(("upload_64k", "nginx", None))
    if small_d and small_n and rate(small_n):
        out.append(ratio_target(f"{name}: 64 KiB uploads >= {TARGET_SMALL_UPLOAD_RATIO} x nginx req/s",
                                rate(small_d), rate(small_n), TARGET_SMALL_UPLOAD_RATIO, "req/s", 0))
    b = by.get(("burst", "docflow", engine))
    bn = by.get(("burst", "nginx", None))
    if b and bn and bn.get("wall_s"):
        ratio = b["wall_s"] / bn["wall_s"]
        out.append({"target": f"{name}: burst: wall time <= {TARGET_BURST_WALL_RATIO} x nginx's",
                    "value": round(ratio, 3), "text": f"{ratio:.2f} x ({b['wall_s']:.2f} / {bn['wall_s']:.2f} s)",
                    "met": ratio <= TARGET_BURST_WALL_RATIO})
    if b:
        out += burst_targets(name, b, "peak RSS", TARGET_BURST_RSS_MIB)
    g = by.get(("get", "docflow", engine))
    if g:
        out.append({"target": f"{name}: GET /documents/{{id}}: >= {TARGET_GET_RPS:,.0f} req/s, "
                              f"p99 <= {TARGET_GET_P99_MS:.0f} ms",
                    "value": rate(g), "text": f"{rate(g):,.0f} req/s, p99 {g['p99_ms']:.2f} ms",
                    "met": rate(g) >= TARGET_GET_RPS and g["p99_ms"] <= TARGET_GET_P99_MS})
    big, small = by.get(("list_100000", "docflow", engine)), by.get(("list_100", "docflow", engine))
    if big and small and small.get("cpu_ms_per_op") and big.get("cpu_ms_per_op"):
        cost = big["cpu_ms_per_op"] / small["cpu_ms_per_op"]
        p50 = big["p50_ms"] / small["p50_ms"] if small["p50_ms"] else None
        what = "CPU (docflow + PostgreSQL)" if engine == "postgres" else "CPU"
        out.append({"target": f"{name}: GET /documents?limit=50: {what} per request at 100,000 documents "
                              f"<= {TARGET_LIST_COST_RATIO:.0f} x at 100",
                    "value": round(cost, 3),
                    "text": f"{cost:.2f} x ({big['cpu_ms_per_op']:.3f} / {small['cpu_ms_per_op']:.3f} ms); "
                            f"p50 {p50:.2f} x; req/s {big['requests_per_s'] / small['requests_per_s']:.2f} x"
                            if p50 and small["requests_per_s"] else f"{cost:.2f} x",
                    "met": cost <= TARGET_LIST_COST_RATIO})
    return out


def postgres_targets(by):
    """PostgreSQL against SQLite on the same machine. The listing's own target (100,000 against 100
    documents) is among nginx_targets' for the engine."""
    out = []
    for key, what in (("upload_1m", "1 MiB uploads"), ("upload_64k", "64 KiB uploads")):
        pg, lite = by.get((key, "docflow", "postgres")), by.get((key, "docflow", "sqlite"))
        if pg and lite and rate(lite):
            out.append(ratio_target(f"docflow (postgres): {what} >= {TARGET_PG_UPLOAD_RATIO} x SQLite req/s",
                                    rate(pg), rate(lite), TARGET_PG_UPLOAD_RATIO, "req/s", 1))
    pg, lite = by.get(("get", "docflow", "postgres")), by.get(("get", "docflow", "sqlite"))
    if pg and lite and rate(lite):
        t = ratio_target(f"docflow (postgres): GET /documents/{{id}} >= {TARGET_PG_GET_RATIO} x SQLite req/s, "
                         f"p99 <= {TARGET_GET_P99_MS:.0f} ms", rate(pg), rate(lite), TARGET_PG_GET_RATIO, "req/s", 0)
        t["text"] += f", p99 {pg['p99_ms']:.2f} ms"
        t["met"] = t["met"] and pg["p99_ms"] <= TARGET_GET_P99_MS
        out.append(t)
    return out


def s3_targets(by):
    """The S3 store's own (issue 16): the burst, and 1 MiB uploads against SQLite with the local store. The
    service's targets against nginx stay the local store's."""
    out = []
    s3, lite = by.get(("upload_1m", "docflow", "s3")), by.get(("upload_1m", "docflow", "sqlite"))
    if s3 and lite and rate(lite):
        out.append(ratio_target(f"docflow (s3): 1 MiB uploads >= {TARGET_S3_UPLOAD_RATIO} x SQLite + local "
                                f"directory req/s", rate(s3), rate(lite), TARGET_S3_UPLOAD_RATIO, "req/s", 1))
    for key, size in (("upload_1m", "1 MiB"), ("upload_64k", "64 KiB")):
        d, ceiling = by.get((key, "docflow", "s3")), by.get((key, "radosgw", None))
        if d and ceiling and rate(ceiling):
            out.append({"target": f"docflow (s3): (for reference) {size} uploads over the S3 server's own PUT "
                                  f"ceiling", "met": None, "value": round(rate(d) / rate(ceiling), 3),
                        "text": f"docflow {rate(d) / rate(ceiling):.2f} x ({rate(d):,.1f} / {rate(ceiling):,.1f} "
                                f"PUTs/s)"})
    b = by.get(("burst", "docflow", "s3"))
    if b:
        out += burst_targets("docflow (s3)", b, "docflow's peak RSS", TARGET_S3_BURST_RSS_MIB)
    return out


def targets(rows):
    by = index(rows)
    engines = [e for e in ("sqlite", "postgres") if any(k[1] == "docflow" and k[2] == e for k in by)]
    return [t for e in engines for t in nginx_targets(by, e)] + postgres_targets(by) + s3_targets(by)


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def fmt_ms(v):
    if v is None:
        return "-"
    return f"{v / 1000:,.2f} s" if v >= 1000 else f"{v:.2f} ms"


def print_columns(table, left=2):
    """Prints rows of strings as aligned columns, the first `left` flush left,
    the figures flush right, with a rule under the first row (the heads)."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(widths[j]) if j < left else c.rjust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_table(chosen, over_nginx, over_sqlite):
    head = ["scenario", "server", "req/s", "MB/s", "p50", "p90", "p99", "errors", "CPU s/GB", "CPU ms/op",
            "peak RSS MiB", "x nginx", "x sqlite"]
    table = [head]
    for r in chosen:
        ratio = over_nginx.get(r.get("engine"), {}).get(r["key"])
        pg_ratio = over_sqlite.get(r.get("engine"), {}).get(r["key"])
        table.append([r["scenario"], label(r), fmt(rate(r)), fmt(r.get("mb_per_s")), fmt_ms(r.get("p50_ms")),
                      fmt_ms(r.get("p90_ms")), fmt_ms(r.get("p99_ms")), fmt(r.get("errors")),
                      fmt(r.get("cpu_s_per_gb"), 2), fmt(r.get("cpu_ms_per_op"), 3), fmt(r.get("peak_rss_mib")),
                      f"{ratio:.2f}x" if ratio is not None else "", f"{pg_ratio:.2f}x" if pg_ratio is not None else ""])
    print_columns(table)
    print()
    print("req/s: successful requests per second (process rows: documents COMPLETED per second). p50/p90/p99:")
    print("request latency (process rows: from the process request to COMPLETED). CPU: server utime+stime, plus")
    print("its extractor children and, on PostgreSQL, the PostgreSQL server's processes, on s3 the S3 server's")
    print("daemons; per GB of file bytes and per request or document. peak RSS: VmHWM during the run (nginx:")
    print("master + workers; docflow's own, not PostgreSQL's or the S3 server's). x nginx: docflow's req/s over")
    print("nginx's. x sqlite: docflow's req/s on PostgreSQL, or on s3 (SQLite, blobs in S3), over its req/s on")
    print("SQLite with blobs in a local directory. Details: bench/README.md.")


def finish(a):
    rows = [json.loads(line) for line in open(a.rows) if line.strip()]
    if not rows:
        sys.exit("report: no rows")
    chosen = median_rows(rows)
    over_nginx, over_sqlite = ratios(chosen)
    print_table(chosen, over_nginx, over_sqlite)
    if a.postgres:
        print()
        print(f"PostgreSQL: {a.postgres}")
    if a.s3:
        print(f"S3: {a.s3}")
    notes = [r for r in chosen if r.get("notes")]
    if notes:
        print()
        for r in notes:
            print(f"{r['scenario']}, {label(r)}: {r['notes']}")
    tg = targets(chosen)
    if tg:
        print()
        for t in tg:
            verdict = "" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
            print(f"target  {t['target']}: {t['text']}  {verdict}".rstrip())
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": a.rev,
        "uncommitted_changes": a.changed > 0,
        "cores": os.cpu_count(),
        "load_average_before": [float(x) for x in a.load_before.split()],
        "load_average_after": [float(x) for x in open("/proc/loadavg").read().split()[:3]],
        "note": a.note,
        "postgres": a.postgres or None,
        "s3": a.s3 or None,
        "units": "MB = 1e6 and GB = 1e9 bytes of file content; RSS in MiB; latencies in ms",
        "results": chosen,
        "docflow_over_nginx": over_nginx,
        "postgres_over_sqlite": over_sqlite.get("postgres", {}),
        "s3_over_sqlite": over_sqlite.get("s3", {}),
        "targets": tg,
        "all_runs": rows,
    }
    with open(a.out_json, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("wrk-row", "burst-row", "process-row"):
        add_measurement_args(sub.add_parser(name))
    for name in ("disk-row", "s3-row"):
        d = sub.add_parser(name)
        d.add_argument("rows")
        for arg in ("--key", "--scenario", "--output"):
            d.add_argument(arg, required=True)
        d.add_argument("--load", default="")
    f = sub.add_parser("finish")
    f.add_argument("rows")
    f.add_argument("out_json")
    f.add_argument("--rev", default="unknown")
    f.add_argument("--load-before", default="0 0 0")
    f.add_argument("--changed", type=int, default=0)
    f.add_argument("--note", default="")
    f.add_argument("--postgres", default="", help="the PostgreSQL server and its settings, if it ran")
    f.add_argument("--s3", default="", help="the S3 server, if it ran")
    a = ap.parse_args()
    {"wrk-row": wrk_row, "burst-row": burst_row, "process-row": process_row, "disk-row": disk_row,
     "s3-row": s3_row, "finish": finish}[a.cmd](a)


if __name__ == "__main__":
    main()
