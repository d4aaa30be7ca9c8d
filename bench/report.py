#!/usr/bin/env python3
"""Turns the raw output of bench/run.sh's scenarios into rows, one table and JSON.

    report.py wrk-row   ROWS --key K --scenario S --server docflow|nginx --output WRK_OUT [measurements]
    report.py burst-row ROWS --key K --scenario S --server docflow|nginx --output BURST_OUT [measurements]
    report.py finish    ROWS OUT_JSON --rev R --load-before "1 5 15" [--changed N] [--note TEXT]

ROWS is a file of JSON lines, one per run. `finish` picks, per (scenario,
server), the run with the median main figure (requests/s; for the burst, the
wall time), prints one table, the docflow/nginx ratios and the targets, and
writes OUT_JSON.

Units: MB is 10^6 bytes and GB 10^9 bytes of *file* bytes (the multipart
framing, about 200 bytes per request, is not counted); MiB is 2^20 bytes (RSS).
"""
import argparse
import datetime
import json
import os
import sys

TARGET_UPLOAD_RATIO = 0.7  # 1 MiB uploads: docflow MB/s >= 0.7 x nginx MB/s
TARGET_BURST_RSS_MIB = 128.0


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
    ap.add_argument("--output", required=True, help="the load generator's output")
    ap.add_argument("--file-bytes", type=int, default=0, help="bytes of the uploaded file (not the body)")
    ap.add_argument("--cpu-ticks", type=int, default=None, help="server utime+stime over the run, clock ticks")
    ap.add_argument("--clk-tck", type=int, default=100)
    ap.add_argument("--hwm-kib", type=int, default=None, help="server VmHWM over the run (reset at its start)")
    ap.add_argument("--hwm-reset", type=int, default=1, help="0 when the VmHWM could not be reset")
    ap.add_argument("--wchar", type=int, default=None, help="bytes the server wrote (read+write syscalls) over the run")
    ap.add_argument("--load", default="", help="load average at the start of the run")
    ap.add_argument("--settings", default="", help="free text: wrk/burst parameters")


def base_row(a):
    return {
        "key": a.key,
        "scenario": a.scenario,
        "server": a.server,
        "settings": a.settings,
        "load_average_at_start": [float(x) for x in a.load.split()] if a.load else None,
        "file_bytes": a.file_bytes or None,
        "peak_rss_mib": round(a.hwm_kib / 1024, 1) if a.hwm_kib is not None else None,
        "peak_rss_is_since_run_start": bool(a.hwm_reset),
        "server_cpu_s": round(a.cpu_ticks / a.clk_tck, 2) if a.cpu_ticks is not None else None,
    }


def upload_figures(row, a, ok_uploads, seconds):
    if not a.file_bytes:
        return
    gb = ok_uploads * a.file_bytes / 1e9
    row["mb_per_s"] = round(ok_uploads * a.file_bytes / seconds / 1e6, 1) if seconds else None
    row["gb_uploaded"] = round(gb, 3)
    if a.cpu_ticks is not None and gb > 0:
        row["cpu_s_per_gb"] = round(a.cpu_ticks / a.clk_tck / gb, 2)
    if a.wchar is not None and gb > 0:
        row["server_bytes_written_per_file_byte"] = round(a.wchar / (gb * 1e9), 3)


def wrk_row(a):
    w = parse_marked_json(a.output, "BENCH_RESULT")
    socket_errors = w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"]
    row = base_row(a)
    row["wrk"] = w
    d = w["duration_s"]
    notes = []
    if a.key == "login":
        statuses = {int(k): v for k, v in w.get("statuses", {}).items()}
        ok = statuses.get(200, 0)
        busy = statuses.get(503, 0)
        answers = sum(statuses.values())
        row["requests_per_s"] = round(ok / d, 1)
        row["answers_per_s"] = round(answers / d, 1)
        row["share_503"] = round(busy / answers, 4) if answers else None
        row["errors"] = socket_errors + sum(v for k, v in statuses.items() if k not in (200, 503))
        notes.append(f"{ok} x 200, {busy} x 503 ({100 * busy / answers:.1f}% of {answers} answers)" if answers else "no answers")
    else:
        ok = w["requests"] - w["non_2xx_3xx"]
        row["requests_per_s"] = round(ok / d, 1)
        row["errors"] = w["non_2xx_3xx"] + socket_errors
        upload_figures(row, a, ok, d)
        if w["timeouts"]:
            notes.append(f"{w['timeouts']} wrk timeouts")
    row["p50_ms"] = w["p50_ms"]
    row["p99_ms"] = w["p99_ms"]
    row["notes"] = "; ".join(notes)
    append(a.rows, row)


def burst_row(a):
    b = parse_marked_json(a.output, "BURST_RESULT")
    row = base_row(a)
    row["burst"] = b
    ok = b["successes"]
    wall = b["wall_s"]
    row["successes"] = ok
    row["connections"] = b["connections"]
    row["wall_s"] = wall
    row["requests_per_s"] = round(ok / wall, 1) if wall else None
    row["p50_ms"] = b["p50_ms"]
    row["p99_ms"] = b["p99_ms"]
    row["errors"] = b["connections"] - ok
    upload_figures(row, a, ok, wall)
    notes = [f"{ok}/{b['connections']} x 201 in {wall:.2f} s", f"client CPU {b['client_cpu_s']:.2f} s"]
    if b["errors"]:
        notes.append("errors " + ", ".join(f"{k}: {v}" for k, v in b["errors"].items()))
    other = {k: v for k, v in b["statuses"].items() if k != "201"}
    if other:
        notes.append("statuses " + ", ".join(f"{k}: {v}" for k, v in other.items()))
    row["notes"] = "; ".join(notes)
    append(a.rows, row)


def append(path, row):
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


ORDER = ["me", "login", "upload_64k", "upload_1m", "burst"]


def median_rows(rows):
    """One row per (key, server): the run with the median main figure."""
    groups = {}
    for r in rows:
        groups.setdefault((r["key"], r["server"]), []).append(r)
    out = []
    for (key, server), runs in groups.items():
        figure = (lambda r: -r["wall_s"]) if key == "burst" else (lambda r: r["requests_per_s"] or 0)
        ranked = sorted(runs, key=figure)
        chosen = dict(ranked[(len(ranked) - 1) // 2])
        chosen["runs"] = len(runs)
        chosen["requests_per_s_all_runs" if key != "burst" else "wall_s_all_runs"] = [
            r["requests_per_s"] if key != "burst" else r["wall_s"] for r in runs
        ]
        out.append(chosen)
    out.sort(key=lambda r: (ORDER.index(r["key"]) if r["key"] in ORDER else 99, r["server"] != "docflow"))
    return out


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def targets(rows):
    by = {(r["key"], r["server"]): r for r in rows}
    out = []
    up_d, up_n = by.get(("upload_1m", "docflow")), by.get(("upload_1m", "nginx"))
    if up_d and up_n and up_n.get("mb_per_s"):
        ratio = up_d["mb_per_s"] / up_n["mb_per_s"]
        out.append({"target": f"1 MiB uploads >= {TARGET_UPLOAD_RATIO} x nginx MB/s", "value": round(ratio, 3),
                    "text": f"{ratio:.2f} x ({up_d['mb_per_s']:.1f} / {up_n['mb_per_s']:.1f} MB/s)",
                    "met": ratio >= TARGET_UPLOAD_RATIO})
    b = by.get(("burst", "docflow"))
    if b:
        # The targets are for 1000 uploads of 1 MiB; other settings only report.
        standard = b["connections"] == 1000 and b.get("file_bytes") == 1048576
        caveat = "" if standard else " (the target is for 1000 x 1 MiB)"
        rss = b["peak_rss_mib"]
        out.append({"target": "burst: 1000/1000 uploads succeed", "value": b["successes"],
                    "text": f"{b['successes']}/{b['connections']}{caveat}",
                    "met": b["successes"] == 1000 if standard else None})
        if rss is not None:
            out.append({"target": f"burst: peak RSS <= {TARGET_BURST_RSS_MIB:.0f} MiB", "value": rss,
                        "text": f"{rss:.1f} MiB{caveat}", "met": rss <= TARGET_BURST_RSS_MIB if standard else None})
    me = by.get(("me", "docflow"))
    if me:
        out.append({"target": "GET /auth/me (a figure, no threshold)", "value": me["requests_per_s"],
                    "text": f"{me['requests_per_s']:,.0f} requests/s, p50 {me['p50_ms']:.2f} ms, p99 {me['p99_ms']:.2f} ms",
                    "met": None})
    return out


def ratios(rows):
    by = {(r["key"], r["server"]): r for r in rows}
    out = {}
    for key in ("upload_64k", "upload_1m", "burst"):
        d, n = by.get((key, "docflow")), by.get((key, "nginx"))
        if d and n and n.get("mb_per_s") and d.get("mb_per_s") is not None:
            out[key] = round(d["mb_per_s"] / n["mb_per_s"], 3)
    return out


def finish(a):
    rows = [json.loads(line) for line in open(a.rows) if line.strip()]
    if not rows:
        sys.exit("report: no rows")
    chosen = median_rows(rows)
    head = ["scenario", "server", "req/s", "MB/s", "p50 ms", "p99 ms", "CPU s/GB", "peak RSS MiB", "errors", "notes"]
    table = [head]
    for r in chosen:
        table.append([r["scenario"], r["server"], fmt(r.get("requests_per_s")), fmt(r.get("mb_per_s")),
                      fmt(r.get("p50_ms"), 2), fmt(r.get("p99_ms"), 2), fmt(r.get("cpu_s_per_gb"), 2),
                      fmt(r.get("peak_rss_mib")), fmt(r.get("errors")), r.get("notes", "")])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print("  ".join(c.ljust(widths[j]) if j in (0, 1, 9) else c.rjust(widths[j]) for j, c in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    rat = ratios(chosen)
    if rat:
        print()
        print("docflow MB/s as a share of nginx's: " + ", ".join(f"{k} {v:.2f}x" for k, v in rat.items()))
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
        "units": "MB = 1e6 and GB = 1e9 bytes of file content; RSS in MiB; latencies in ms",
        "results": chosen,
        "docflow_over_nginx_mb_per_s": rat,
        "targets": tg,
        "all_runs": rows,
    }
    with open(a.out_json, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_measurement_args(sub.add_parser("wrk-row"))
    add_measurement_args(sub.add_parser("burst-row"))
    f = sub.add_parser("finish")
    f.add_argument("rows")
    f.add_argument("out_json")
    f.add_argument("--rev", default="unknown")
    f.add_argument("--load-before", default="0 0 0")
    f.add_argument("--changed", type=int, default=0)
    f.add_argument("--note", default="")
    a = ap.parse_args()
    {"wrk-row": wrk_row, "burst-row": burst_row, "finish": finish}[a.cmd](a)


if __name__ == "__main__":
    main()
