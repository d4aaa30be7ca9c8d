"""Interop with the tus reference client (issue 18): tus-js-client 4 on
Node 18 (tests/interop/tus_upload.mjs) uploads a 50 MB PDF in 5 MiB chunks
through a proxy that cuts its connection in the middle of a chunk, three
times; the client asks where to resume (HEAD) and goes on, and the Document
docflow makes has the file's SHA-256 and bytes. Runs on both engines and
both stores, like every suite."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading

from harness import ServerTestCase
from test_documents import bearer, new_user
from test_uploads import pdf

REPO = os.environ.get("DOCFLOW_REPO") or os.path.join(os.path.dirname(__file__), "..", "..")
CLIENT = os.path.join(REPO, "tests", "interop", "tus_upload.mjs")
MIB = 1024 * 1024


class CuttingProxy:
    """Forwards 127.0.0.1:port to docflow, one connection for one, and
    closes the N-th PATCH connection (counted from 1) once `cuts[N]` bytes
    of it have gone up. Notes each request line and Upload-Offset it sees."""

    def __init__(self, target_port, cuts):
        self.target_port = target_port
        self.cuts = dict(cuts)
        self.cut = 0
        self.requests = []  # (method, Upload-Offset or None)
        self.patches = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def close(self):
        self.listener.close()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self.up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self.down, args=(upstream, client), daemon=True).start()

    def note(self, head):
        lines = head.decode("latin-1").split("\r\n")
        method = lines[0].split(" ", 1)[0]
        offset = next((l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("upload-offset:")), None)
        with self.lock:
            self.requests.append((method, offset))
            if method != "PATCH":
                return None
            self.patches += 1
            return self.cuts.get(self.patches)

    def up(self, src, dst):
        sent, limit, head = 0, None, b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if head is not None:
                    head += data
                    if b"\r\n\r\n" in head:
                        limit = self.note(head.split(b"\r\n\r\n", 1)[0])
                        head = None  # one request per connection is all this needs to see
                sent += len(data)
                if limit is not None and sent >= limit:
                    dst.sendall(data[: len(data) - (sent - limit)])
                    with self.lock:
                        self.cut += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def down(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class TusJsClientTest(ServerTestCase):
    def test_tus_js_client_resumes_a_50_mb_upload_cut_three_times(self):
        node = os.environ.get("DOCFLOW_NODE") or shutil.which("node")
        self.assertTrue(node, "node is not installed (scripts/install-deps)")
        server = self.start_server(DOCFLOW_MAX_UPLOAD_BYTES="64MiB")
        token = new_user(server, "tus-js")[0]
        work = tempfile.mkdtemp(prefix="docflow-tus-js-")
        self.addCleanup(shutil.rmtree, work, True)
        data = pdf(50 * 1000 * 1000)
        path = os.path.join(work, "scan.pdf")
        with open(path, "wb") as f:
            f.write(data)
        # Mid-chunk cuts: in the 1st, 3rd and 6th PATCH, at different depths.
        proxy = CuttingProxy(server.port, {1: 2_500_000, 3: 700_000, 6: 4_000_000})
        self.addCleanup(proxy.close)
        run = subprocess.run(
            [node, CLIENT, "http://127.0.0.1:%d/uploads" % proxy.port, token, path, "scan.pdf"],
            capture_output=True, text=True, timeout=600, cwd=REPO,
        )
        self.assertEqual(run.returncode, 0, run.stderr)
        out = json.loads(run.stdout.strip().splitlines()[-1])
        self.assertEqual(proxy.cut, 3, proxy.requests)
        methods = [m for m, _ in proxy.requests]
        self.assertEqual(methods.count("POST"), 1, proxy.requests)
        self.assertGreaterEqual(methods.count("HEAD"), 3, "the client did not ask where to resume")
        offsets = [int(o) for m, o in proxy.requests if m == "PATCH"]
        self.assertTrue(any(o % (5 * MIB) for o in offsets),
                        "no PATCH resumed inside a chunk: the cut chunks' bytes were not kept: %s" % offsets)
        doc = out["document"]
        self.assertEqual(doc["sha256"], hashlib.sha256(data).hexdigest())
        self.assertEqual(doc["size_bytes"], len(data))
        self.assertEqual(doc["filename"], "scan.pdf")
        content = server.get("/documents/%s/content" % doc["id"], headers=bearer(token), timeout=120)
        self.assertEqual(content.status, 200)
        self.assertTrue(content.body == data, "the stored bytes differ from the file")


if __name__ == "__main__":
    import unittest

    unittest.main()
