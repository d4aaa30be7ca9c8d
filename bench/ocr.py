#!/usr/bin/env python3
"""What OCR costs (issue 19, bench/README.md "OCR"): reports, asserts nothing.

    bench/ocr.py [--bin build/src/docflow] [--pages 10] [--docs 8] [--workers 1,2]
                 [--text-runs 50] [--baseline-bin OLD_DOCFLOW]

1. A scanned PDF of --pages pages: the first pages of a groff text PDF,
   re-drawn by Ghostscript's pdfimage8 device at 300 dpi (pages that are
   only a picture, as a scanner makes them).
2. CPU per page read by OCR: the OCR child (`docflow extract --task ocr-pdf`,
   every page, DOCFLOW_OCR_DPI's default 300) on that file, three times;
   the CPU is the child's user + system time (RUSAGE_CHILDREN). Also what
   the first child (the text-layer pass every PDF gets) costs on the scan.
3. The text PDF's price: the extraction child on tests/fixtures/en-1page.pdf,
   --text-runs times, CPU per document; with --baseline-bin, the same for an
   older binary, run alternately, so a build without OCR can be compared.
4. Throughput: `docflow serve` (SQLite, a fresh data directory) with
   DOCFLOW_WORKERS = each of --workers; --docs copies of the scan uploaded,
   all queued at once (bench/process.py run), documents/s until the last is
   COMPLETED.

Needs Ghostscript and groff (scripts/install-deps bench). Prints one
`OCR_RESULT {json}` line and a human summary on stderr.
"""
import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_scan(work, pages):
    """The first `pages` pages of English text, as pictures only."""
    words = open("/usr/share/common-licenses/GPL-3").read().split()
    ms = [".ds CH"]
    for p in range(pages):
        if p:
            ms.append(".bp")
        ms.append(".LP")
        chunk = words[p * 400 : (p + 1) * 400]
        for i in range(0, len(chunk), 10):
            ms.append("\\&" + " ".join(w.replace("\\", "\\e") for w in chunk[i : i + 10]))
    src = os.path.join(work, "text.ms")
    with open(src, "w") as f:
        f.write("\n".join(ms) + "\n")
    ps = os.path.join(work, "text.ps")
    with open(ps, "wb") as out:
        subprocess.run(["groff", "-ms", "-Tps", src], stdout=out, check=True)
    scan = os.path.join(work, "scan-%d.pdf" % pages)
    subprocess.run(
        ["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=pdfimage8", "-r300", "-o", scan, ps],
        check=True,
    )
    return scan


def run_child(bin_path, task, path, extra=()):
    with open(path, "rb") as f:
        out = subprocess.run(
            [bin_path, "extract", "--task", task, *extra],
            stdin=f,
            stdout=subprocess.PIPE,
            env={"OMP_THREAD_LIMIT": "1"},
            check=True,
        ).stdout
    answer = json.loads(out)
    if not answer.get("ok"):
        raise SystemExit("ocr bench: the child failed: %r" % answer)
    return answer


def measure_child(bin_path, task, path, runs, extra=()):
    """CPU seconds and wall seconds per run of one child."""
    cpu0, t0 = child_cpu(), time.monotonic()
    answer = None
    for _ in range(runs):
        answer = run_child(bin_path, task, path, extra)
    return (child_cpu() - cpu0) / runs, (time.monotonic() - t0) / runs, answer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cpu_s(pid):
    """CPU seconds of `docflow serve` and its zygotes, with their reaped
    children: the extractors (bench/cluster.py's cpu_s over the tree)."""
    import cluster  # noqa: PLC0415  (bench/; imported late: ocr.py is also run alone)

    return cluster.cpu_s(cluster.tree(pid, cluster.children_of()))


def throughput(bin_path, scan, docs, workers, work):
    """Queues `docs` copies of `scan` at once on a fresh `docflow serve`;
    process.py's result, plus cpu_s: what the server used meanwhile."""
    data = tempfile.mkdtemp(prefix="ocr-bench-", dir=work)
    port = free_port()
    env = dict(os.environ, DOCFLOW_DATA_DIR=data, DOCFLOW_LISTEN="127.0.0.1:%d" % port, DOCFLOW_WORKERS=str(workers))
    server = subprocess.Popen([bin_path, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("ocr bench: docflow did not start: %s" % server.stderr.read().decode())
                time.sleep(0.1)
        creds = json.dumps({"username": "ocrbench", "password": "ocr-bench-password"}).encode()
        for path in ("/auth/register", "/auth/login"):
            req = urllib.request.Request(
                "http://127.0.0.1:%d%s" % (port, path), data=creds, headers={"Content-Type": "application/json"}
            )
            answer = json.loads(urllib.request.urlopen(req).read() or b"{}")
        token = answer["access_token"]
        ids = os.path.join(work, "ids-%d.txt" % workers)
        subprocess.run(
            [sys.executable, os.path.join(BENCH, "process.py"), "upload", "--port", str(port), "--token", token,
             "--file", scan, "-n", str(docs), "--ids", ids],
            check=True,
        )
        cpu0 = server_cpu_s(server.pid)
        out = subprocess.run(
            [sys.executable, os.path.join(BENCH, "process.py"), "run", "--port", str(port), "--token", token,
             "--ids", ids, "--timeout", "1800"],
            check=True, stdout=subprocess.PIPE, text=True,
        ).stdout
        cpu = server_cpu_s(server.pid) - cpu0
        line = next(l for l in out.splitlines() if l.startswith("PROCESS_RESULT "))
        return dict(json.loads(line[len("PROCESS_RESULT "):]), cpu_s=round(cpu, 3))
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "build", "src", "docflow"))
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--text-runs", type=int, default=50)
    ap.add_argument("--baseline-bin")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="docflow-ocr-bench-")
    try:
        scan = make_scan(work, args.pages)
        pages = ",".join(str(i) for i in range(args.pages))
        first_cpu, first_wall, first = measure_child(args.bin, "pdf", scan, 3)
        if any(p["chars"] for p in first["page_sources"]):
            raise SystemExit("ocr bench: the scan has a text layer")
        ocr_cpu, ocr_wall, ocr = measure_child(args.bin, "ocr-pdf", scan, 3, ("--ocr-pages", pages))
        result = {
            "pages": args.pages,
            "scan_bytes": os.path.getsize(scan),
            "first_child_cpu_s": round(first_cpu, 4),
            "ocr_child_cpu_s": round(ocr_cpu, 3),
            "ocr_cpu_s_per_page": round(ocr_cpu / args.pages, 3),
            "ocr_wall_s_per_page": round(ocr_wall / args.pages, 3),
            "ocr_words": ocr["analysis"]["words"],
            "ocr_mean_confidence": ocr["ocr"]["mean_confidence"],
        }
        text_pdf = os.path.join(REPO, "tests", "fixtures", "en-1page.pdf")
        bins = [("text_pdf_child", args.bin)] + ([("text_pdf_child_baseline", args.baseline_bin)] if args.baseline_bin else [])
        totals = {name: 0.0 for name, _ in bins}
        for _ in range(args.text_runs):  # alternately, so drift hits both alike
            for name, b in bins:
                cpu, _, _ = measure_child(b, "pdf", text_pdf, 1)
                totals[name] += cpu
        for name, _ in bins:
            result[name + "_cpu_ms"] = round(1000 * totals[name] / args.text_runs, 2)
        for w in (int(x) for x in args.workers.split(",")):
            r = throughput(args.bin, scan, args.docs, w, work)
            result["workers_%d" % w] = {
                "docs_per_s": r.get("docs_per_s"),
                "pages_per_s": round((r.get("docs_per_s") or 0) * args.pages, 3),
                "wall_s": r.get("wall_s"),
                "failed": r.get("failed"),
                "errors": r.get("errors"),
            }
        print("OCR_RESULT " + json.dumps(result))
        print(json.dumps(result, indent=2), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
