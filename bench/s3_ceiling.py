#!/usr/bin/env python3
"""The S3 server's own ceiling: PUTs of one size per second, with no docflow.

    s3_ceiling.py ENDPOINT REGION BUCKET FILE_BYTES SECONDS THREADS [--watch-pids "PID ..."]
    (keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)

THREADS threads, each with its own boto3 client (SigV4, path-style, as
docflow signs), PUT the same FILE_BYTES of random bytes under fresh keys of
BUCKET for SECONDS, as the `s3` row of the upload scenarios. Prints one JSON
line (`S3_CEILING_RESULT {...}`): PUTs per second, MB/s, and with
--watch-pids the CPU milliseconds per PUT of each of those processes (the
S3 server's daemons, by name) and of this client. The bucket is left to the
caller to empty (bench/s3_bucket.py).

Needs boto3 (Debian's python3-boto3 is /usr/bin/python3's, which run.sh uses).
"""
import argparse
import json
import os
import threading
import time

import boto3
import botocore.config


def cpu_ticks(pids):
    """utime+stime per process name (pids gone are left out)."""
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            fields = tail.split()
            name = head.split("(", 1)[1]
            out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for arg in ("endpoint", "region", "bucket"):
        ap.add_argument(arg)
    ap.add_argument("file_bytes", type=int)
    ap.add_argument("seconds", type=float)
    ap.add_argument("threads", type=int)
    ap.add_argument("--watch-pids", default="")
    a = ap.parse_args()
    config = botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                    retries={"mode": "standard", "max_attempts": 1})
    clients = [boto3.client("s3", endpoint_url=a.endpoint, region_name=a.region, config=config)
               for _ in range(a.threads)]
    body = os.urandom(a.file_bytes)
    done, errors = [0] * a.threads, [0] * a.threads
    stop = threading.Event()

    def put(i):
        n = 0
        while not stop.is_set():
            try:
                clients[i].put_object(Bucket=a.bucket, Key=f"ceiling/{i}/{n}", Body=body)
                done[i] += 1
            except Exception:  # counted; the figure is what succeeded
                errors[i] += 1
            n += 1

    pids = a.watch_pids.split()
    threads = [threading.Thread(target=put, args=(i,)) for i in range(a.threads)]
    ticks0, cpu0, t0 = cpu_ticks(pids), os.times(), time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    # PUTs that finish after the window are not counted, but their server
    # CPU is: read it at the window's end, as run.sh does for docflow.
    ok, ticks1, cpu1, wall = sum(done), cpu_ticks(pids), os.times(), time.perf_counter() - t0
    for t in threads:
        t.join()
    hz = os.sysconf("SC_CLK_TCK")
    result = {"threads": a.threads, "seconds": a.seconds, "file_bytes": a.file_bytes, "puts": ok,
              "errors": sum(errors), "files_per_s": round(ok / wall, 1),
              "mb_per_s": round(ok * a.file_bytes / wall / 1e6, 1),
              "client_cpu_ms_per_put": round(1000 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / ok, 2)
              if ok else None,
              "server_cpu_ms_per_put": {name: round(1000 * (ticks1[name] - ticks0.get(name, 0)) / hz / ok, 2)
                                        for name in ticks1} if ok else {}}
    print("S3_CEILING_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
