#!/usr/bin/env python3
"""Processing benchmark driver: uploads documents, then has them all processed at once.

    bench/process.py upload --port P --token T --file F -n N --ids IDS
    bench/process.py run    --port P --token T --ids IDS [--timeout 600]

`upload` stores N copies of F through `POST /documents` and writes their ids,
one per line, to IDS. bench/run.sh runs it before it starts measuring.

`run` is the measured part: it sends `POST /documents/{id}/process` for every
id at once (--connections threads, each with its own kept-alive connection)
and records when each request was sent. It then polls
`GET /documents?status=PROCESSING&limit=1` until no document is processing,
and reads every document's status and `processing.finished_at` (the moment
the worker stored the result and set COMPLETED) through `GET /documents`.
It prints one line, `PROCESS_RESULT {json}`:

- wall_s: from the first process request to the last finished_at;
- docs_per_s: documents COMPLETED / wall_s;
- latency p50/p90/p95/p99/max: from a document's process request being sent to
  its finished_at (client and server share the machine's clock; the server
  writes milliseconds);
- queue_s: how long sending every process request took;
- failed (FAILED, with the error codes), errors (a process request not
  answered 202, or a document still not done at --timeout).

Python standard library only.
"""
import argparse
import datetime
import http.client
import json
import math
import os
import queue
import sys
import threading
import time
import urllib.parse


def connect(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def call(conn, method, path, token, body=None, headers=None):
    h = {"Authorization": f"Bearer {token}"}
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


def in_parallel(items, connections, port, work):
    """Runs work(conn, item) for every item on `connections` threads, each with its own connection."""
    pending, failures = queue.SimpleQueue(), []
    for item in items:
        pending.put(item)

    def loop():
        conn = connect(port)
        while True:
            try:
                item = pending.get_nowait()
            except queue.Empty:
                break
            try:
                work(conn, item)
            except (OSError, http.client.HTTPException):  # a dropped connection: count it, carry on
                failures.append(item)
                conn.close()
                conn = connect(port)
        conn.close()

    threads = [threading.Thread(target=loop) for _ in range(min(connections, len(items)) or 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def upload(a):
    with open(a.file, "rb") as f:
        data = f.read()
    name = os.path.basename(a.file)
    boundary = "docflow-bench-" + os.urandom(8).hex()
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    ids, refused, lock = [], [], threading.Lock()

    def one(conn, _):
        status, answer = call(conn, "POST", "/documents", a.token, body,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with lock:
            if status == 201:
                ids.append(json.loads(answer)["id"])
            else:
                refused.append(f"{status} {answer[:200]!r}")

    lost = in_parallel(range(a.n), a.connections, a.port, one)
    if lost or refused:
        raise SystemExit(f"process.py: of {a.n} uploads, {len(lost)} lost their connection and "
                         f"{len(refused)} were refused: {refused[:1]}")
    with open(a.ids, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(f"process.py: uploaded {len(ids)} x {name} ({len(data)} bytes)", file=sys.stderr)
    return 0


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def all_documents(conn, token):
    docs, cursor = {}, None
    while True:
        path = "/documents?limit=200" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        status, answer = call(conn, "GET", path, token)
        if status != 200:
            raise SystemExit(f"process.py: GET {path} answered {status}")
        page = json.loads(answer)
        for d in page["items"]:
            docs[d["id"]] = d
        cursor = page.get("next_cursor")
        if not cursor:
            return docs


def percentile(values, p):
    """Nearest rank, as burst.py."""
    if not values:
        return None
    return values[max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))]


def run(a):
    ids = [line.strip() for line in open(a.ids) if line.strip()]
    sent, answers, lock = {}, {}, threading.Lock()

    def one(conn, doc_id):
        t = time.time()
        status, _ = call(conn, "POST", f"/documents/{doc_id}/process", a.token)
        with lock:
            sent[doc_id] = t
            answers[str(status)] = answers.get(str(status), 0) + 1

    t0 = time.time()
    lost = in_parallel(ids, a.connections, a.port, one)
    queued = time.time()

    conn = connect(a.port)
    while time.time() - t0 < a.timeout:
        status, answer = call(conn, "GET", "/documents?status=PROCESSING&limit=1", a.token)
        if status == 200 and not json.loads(answer)["items"]:
            break
        time.sleep(0.1)
    docs = all_documents(conn, a.token)
    conn.close()

    latencies, finished, failed = [], [], {}
    for doc_id in ids:
        d = docs.get(doc_id, {})
        if d.get("status") == "COMPLETED" and doc_id in sent:
            done = parse_time(d["processing"]["finished_at"])
            finished.append(done)
            latencies.append(done - sent[doc_id])
        elif d.get("status") == "FAILED":
            code = (d["processing"].get("error") or {}).get("code", "unknown")
            failed[code] = failed.get(code, 0) + 1
    latencies.sort()
    wall = (max(finished) - t0) if finished else time.time() - t0
    not_done = len(ids) - len(finished) - sum(failed.values())

    def ms(v):
        return None if v is None else round(v * 1000, 1)

    result = {
        "documents": len(ids),
        "completed": len(finished),
        "failed": failed,
        "not_done_at_timeout": not_done,
        "process_answers": answers,
        "process_requests_lost": len(lost),
        "errors": len(ids) - len(finished),
        "queue_s": round(queued - t0, 3),
        "wall_s": round(wall, 3),
        "docs_per_s": round(len(finished) / wall, 2) if wall > 0 else None,
        "p50_ms": ms(percentile(latencies, 50)),
        "p90_ms": ms(percentile(latencies, 90)),
        "p95_ms": ms(percentile(latencies, 95)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(latencies[-1] if latencies else None),
        "connections": a.connections,
    }
    print("PROCESS_RESULT " + json.dumps(result), flush=True)
    print(f"process.py: {len(finished)}/{len(ids)} COMPLETED in {wall:.2f} s ({result['docs_per_s']} documents/s); "
          f"process answers {answers}; failed {failed}; p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms",
          file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("upload", "run"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--token", required=True)
        p.add_argument("--ids", required=True, help="file of document ids, one per line")
        p.add_argument("--connections", type=int, default=16 if name == "upload" else 64)
    sub.choices["upload"].add_argument("--file", required=True)
    sub.choices["upload"].add_argument("-n", type=int, required=True)
    sub.choices["run"].add_argument("--timeout", type=float, default=600, help="seconds to wait for the documents")
    a = ap.parse_args()
    return upload(a) if a.cmd == "upload" else run(a)


if __name__ == "__main__":
    sys.exit(main())
