#!/usr/bin/env python3
"""What a 1-page text PDF costs end to end (issue 19, bench/README.md
"A text PDF's cost"): reports, asserts nothing.

    bench/text_pdf.py [--bin build/src/docflow] [--baseline-bin OLD_DOCFLOW]
                      [--docs 300] [--workers 1,2] [--rounds 1]

For each binary and each DOCFLOW_WORKERS in --workers: a fresh `docflow
serve` (SQLite, a new data directory), --docs copies of
tests/fixtures/en-1page.pdf uploaded (not measured), then all queued at
once (bench/process.py run). Reported: documents/s from the first process
request to the last COMPLETED, and the server's CPU per document over that
time: the server process, its zygotes and the extraction children they
reaped (/proc/PID/stat utime + stime + cutime + cstime over the process
tree), so verify, the sandboxed extraction and analysis, the database
writes and the HTTP requests of the run (the process requests and
process.py's polling) are all in. With --rounds N, the binaries take turns
N times and each figure is the median. Prints one `TEXT_PDF_RESULT {json}`
line and a summary on stderr.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

import ocr  # bench/: the server run and its CPU

REPO = ocr.REPO


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "src", "docflow"))
    ap.add_argument("--baseline-bin")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    pdf = os.path.join(REPO, "tests", "fixtures", "en-1page.pdf")
    bins = [("docflow", args.bin)] + ([("baseline", args.baseline_bin)] if args.baseline_bin else [])
    runs = {}
    work = tempfile.mkdtemp(prefix="docflow-text-pdf-bench-")
    try:
        for _ in range(args.rounds):
            for w in (int(x) for x in args.workers.split(",")):
                for name, b in bins:
                    r = ocr.throughput(b, pdf, args.docs, w, work)
                    if r.get("failed") or r.get("errors"):
                        raise SystemExit("text PDF bench: %s failed: %r" % (name, r))
                    runs.setdefault((name, w), []).append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"docs": args.docs, "rounds": args.rounds}
    for (name, w), rs in sorted(runs.items()):
        result["%s_workers_%d" % (name, w)] = {
            "docs_per_s": statistics.median(r["docs_per_s"] for r in rs),
            "cpu_ms_per_doc": round(statistics.median(1000 * r["cpu_s"] / args.docs for r in rs), 1),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
        }
    print("TEXT_PDF_RESULT " + json.dumps(result))
    print(json.dumps(result, indent=2), file=sys.stderr)


if __name__ == "__main__":
    main()
