#!/usr/bin/env python3
"""What checking an API key costs against checking an access token (issue
20, bench/README.md "API keys"): reports, asserts nothing.

    DOCFLOW_BIN=build/src/docflow bench/auth_keys.py [--rounds 3] [--duration 8s]
    DOCFLOW_TEST_DATABASE=postgres DOCFLOW_PG_BIN=/usr/lib/postgresql/15/bin \\
        DOCFLOW_BIN=build/src/docflow bench/auth_keys.py

One `docflow serve` without workers, started by the integration harness
(SQLite, or with DOCFLOW_TEST_DATABASE=postgres a PostgreSQL it starts);
one user, one uploaded PDF, one API key. Then wrk (-t2 -c64) sends GET
/documents/{id} with the access token and with the key, taking turns
--rounds times. An access token is checked in memory; a key is read from
the database by its hash on every request. Prints requests/s and latency
percentiles per round, and the medians.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
os.environ.setdefault("DOCFLOW_REPO", REPO)

from harness import start_server  # noqa: E402
from test_documents import bearer, make_pdf, new_user, upload  # noqa: E402


def wrk(url, credential, duration):
    out = subprocess.run(
        ["wrk", "-t2", "-c64", "-d" + duration, "--latency", "-H", "Authorization: Bearer " + credential, url],
        capture_output=True, text=True, check=True,
    ).stdout
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not refused, "wrk saw refusals: " + out
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1),
        "p99": re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="8s")
    args = parser.parse_args()
    server = start_server(DOCFLOW_WORKERS="0")
    try:
        token, _ = new_user(server, "bench")
        doc = upload(server, token, make_pdf("bench")).json()["id"]
        made = server.request("POST", "/auth/api-keys", body=json.dumps({"name": "bench"}),
                              headers={**bearer(token), "Content-Type": "application/json"})
        key = made.json()["key"]
        url = "http://127.0.0.1:%d/documents/%s" % (server.port, doc)
        runs = {"access_token": [], "api_key": []}
        for _ in range(args.rounds):
            for name, credential in (("access_token", token), ("api_key", key)):
                runs[name].append(wrk(url, credential, args.duration))
        engine = os.environ.get("DOCFLOW_TEST_DATABASE", "sqlite")
        for name, rows in runs.items():
            print("%s %-12s %s  median %.0f req/s" % (engine, name, rows, statistics.median(r["rps"] for r in rows)))
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
