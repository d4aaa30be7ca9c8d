"""Load and faults together (issue 13): for LOAD_SECONDS (default 60) 200
clients upload (with and without Idempotency-Key), download, request
processing and open event streams, while some cut their uploads mid-body,
and the server gets SIGTERM and is started again on the same data. Afterwards:

- every upload that got a 201 is there, byte for byte (SHA-256 of /content);
- every document is UPLOADED, COMPLETED or FAILED once the queue drains
  (nothing stuck in PROCESSING: the drain may be slow on a busy machine,
  but it fails once it stops making progress);
- the server's resident memory is back within 20% of where it started.

The random choices come from LOAD_SEED (printed on failure) so a run can be
replayed. Counts are printed; nothing here asserts a speed.
"""
import hashlib
import os
import random
import signal
import socket
import tempfile
import shutil
import threading
import time
import unittest

from harness import ServerTestCase, format_request
from test_documents import form, file_part, form_type, make_pdf, new_user

CLIENTS = 200
SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
SEED = int(os.environ.get("LOAD_SEED", "20261204"))
# The queue drains at whatever pace the machine allows, but it must move: the
# test fails when no document has left PROCESSING for this long.
STALL_BOUND = 60.0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class LoadAndFaultTest(ServerTestCase):
    def setUp(self):
        self.data_dir = tempfile.mkdtemp(prefix="docflow-it-load-")
        self.addCleanup(shutil.rmtree, self.data_dir, True)
        # A fixed port, so that clients find the server again after its restart.
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.listen = "127.0.0.1:%d" % probe.getsockname()[1]
        probe.close()
        self.settings = {"DOCFLOW_LISTEN": self.listen, "DOCFLOW_WORKERS": 2,
                         "DOCFLOW_MAX_CONNECTIONS_PER_ADDRESS": 0, "DOCFLOW_SHUTDOWN_TIMEOUT": "5s"}
        self.server = self.start_server(data_dir=self.data_dir, **self.settings)
        self.lock = threading.Lock()
        self.acknowledged = {}  # document id -> (token, sha256)
        self.counts = {}

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def request(self, method, path, token, body=None, headers=None, timeout=20):
        h = {"Authorization": "Bearer " + token, **(headers or {})}
        return self.server.request(method, path, headers=h, body=body, timeout=timeout)

    # ---- what a client does, one step at a time

    def upload(self, rng, token):
        data = make_pdf("load-%d" % rng.getrandbits(48), size=rng.randint(2_000, 200_000))
        headers = {"Content-Type": form_type()}
        if rng.random() < 0.5:
            headers["Idempotency-Key"] = "load-%d" % rng.getrandbits(48)
        body = form([file_part(data, "load.pdf")])
        res = self.request("POST", "/documents", token, body, headers)
        if res.status == 201:
            with self.lock:
                self.acknowledged[res.json()["id"]] = (token, hashlib.sha256(data).hexdigest())
            if "Idempotency-Key" in headers:  # a retry returns the first answer
                again = self.request("POST", "/documents", token, body, headers)
                if again.status == 201 and again.json()["id"] != res.json()["id"]:
                    self.count("idempotency_broken")
        self.count("upload_%d" % res.status)

    def cut_upload(self, rng, token):
        data = make_pdf("cut", size=100_000)
        body = form([file_part(data, "cut.pdf")])
        head = format_request("POST", "/documents", {"Content-Type": form_type(), "Authorization": "Bearer " + token,
                                                     "Content-Length": str(len(body))})
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as s:
            s.sendall(head + body[: rng.randint(1, len(body) - 1)])
        self.count("cut")

    def known(self, rng):
        with self.lock:
            if not self.acknowledged:
                return None
            doc_id = rng.choice(list(self.acknowledged))
            return doc_id, self.acknowledged[doc_id]

    def download(self, rng):
        picked = self.known(rng)
        if not picked:
            return
        doc_id, (token, sha) = picked
        res = self.request("GET", "/documents/%s/content" % doc_id, token)
        if res.status == 200 and hashlib.sha256(res.body).hexdigest() != sha:
            self.count("download_corrupt")
        self.count("download_%d" % res.status)

    def process(self, rng):
        picked = self.known(rng)
        if picked:
            doc_id, (token, _) = picked
            self.count("process_%d" % self.request("POST", "/documents/%s/process" % doc_id, token, b"").status)

    def stream(self, rng):
        picked = self.known(rng)
        if not picked:
            return
        doc_id, (token, _) = picked
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as s:
            s.sendall(format_request("GET", "/documents/%s/events" % doc_id, {"Authorization": "Bearer " + token}))
            s.settimeout(2)
            try:
                s.recv(4096)
            except OSError:
                pass
        self.count("stream")

    def client(self, index, tokens, deadline):
        rng = random.Random(SEED * 1000 + index)
        steps = (self.upload, self.cut_upload, self.download, self.process, self.stream)
        weights = (4, 1, 3, 2, 1)
        while time.monotonic() < deadline:
            step = rng.choices(steps, weights)[0]
            try:
                if step in (self.upload, self.cut_upload):
                    step(rng, rng.choice(tokens))
                else:
                    step(rng)
            except (OSError, AssertionError, ValueError):
                self.count("failed_request")  # the server is restarting, or cut us off
                time.sleep(0.2)

    def restart(self):
        """SIGTERM mid-load, then a new server on the same data and port."""
        self.server.signal(signal.SIGTERM)
        self.server.wait_exit(timeout=30)
        self.server = self.start_server(data_dir=self.data_dir, **self.settings)

    def test_acknowledged_uploads_survive_load_cuts_and_a_restart(self):
        tokens = [new_user(self.server, "load")[0] for _ in range(8)]
        started = time.monotonic()
        deadline = started + SECONDS
        threads = [threading.Thread(target=self.client, args=(i, tokens, deadline), daemon=True)
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(SECONDS / 3)
        self.restart()
        # Where the restarted server settles under the load: the highest of a
        # few samples once it has served a little (its working set), against
        # which what it keeps after the load is judged.
        time.sleep(2)
        samples = []
        for _ in range(5):
            samples.append(rss_kib(self.server.proc.pid))
            time.sleep(1)
        baseline = max(samples)
        for t in threads:
            t.join(timeout=SECONDS + 60)
        self.assertFalse(any(t.is_alive() for t in threads), "a client hung")

        context = "seed %d, counts %r" % (SEED, sorted(self.counts.items()))
        print("\nload: %s, acknowledged %d" % (context, len(self.acknowledged)))
        self.assertGreater(len(self.acknowledged), 0, context)
        self.assertNotIn("download_corrupt", self.counts, context)
        self.assertNotIn("idempotency_broken", self.counts, context)

        # The queue drains: nothing stays PROCESSING.
        fewest, moved = None, time.monotonic()
        while True:
            stuck = []
            for token in tokens:
                cursor = ""
                while True:
                    page = self.request("GET", "/documents?limit=200" + cursor, token).json()
                    stuck += [d["id"] for d in page["items"] if d["status"] == "PROCESSING"]
                    if not page.get("next_cursor"):
                        break
                    cursor = "&cursor=" + page["next_cursor"]
            if fewest is None or len(stuck) < fewest:
                fewest, moved = len(stuck), time.monotonic()
            if not stuck or time.monotonic() - moved > STALL_BOUND:
                break
            time.sleep(1)
        self.assertEqual(stuck, [], "documents stuck in PROCESSING; " + context)

        # Every acknowledged upload, byte for byte.
        for doc_id, (token, sha) in self.acknowledged.items():
            res = self.request("GET", "/documents/%s/content" % doc_id, token)
            self.assertEqual(res.status, 200, "%s lost; %s" % (doc_id, context))
            self.assertEqual(hashlib.sha256(res.body).hexdigest(), sha, "%s changed; %s" % (doc_id, context))

        time.sleep(2)
        after = rss_kib(self.server.proc.pid)
        print("load: RSS %d KiB after restart, %d KiB after the load" % (baseline, after))
        self.assertLessEqual(after, baseline * 1.2, "RSS did not come back; " + context)


if __name__ == "__main__":
    unittest.main()
