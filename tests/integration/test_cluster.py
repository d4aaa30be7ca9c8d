"""The cluster layout (issue 17), black-box: PostgreSQL, S3 (radosgw), two
`serve` processes behind nginx and two `docflow worker` processes, started
by cluster.py on the deployment files shipped in deploy/.

- ClusterScriptTest: `scripts/cluster up`, `status` and `down`, as the
  README shows them; a document is uploaded and processed through nginx.
- DeployFilesTest: every deployment file shipped is exercised. The systemd
  units pass `systemd-analyze verify` without a warning, and the process
  each unit describes (its ExecStart and Environment lines, instance name
  filled in) starts on the cluster's database and storage, answers, and
  exits 0 on the unit's KillSignal. The example nginx site passes `nginx
  -t` with its TLS files.
- RollingRestartTest: every serve process restarted one at a time (SIGTERM,
  drain, start) while 64 clients upload and read through nginx: no request
  fails. Then every worker restarted one at a time while jobs run: every
  job ends COMPLETED, none ran to completion twice.

Every wait is bounded and only detects hangs; nothing asserts a duration.
"""
import collections
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import cluster

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
DEPLOY = os.path.join(cluster.REPO, "deploy")
BOUNDARY = "docflow-cluster-boundary-Rr8w"
REQUEST_BOUND = 60.0  # seconds: a request not answered by then hangs
DONE_BOUND = 120.0  # every job done by then


def pdf_bytes(tag):
    """A real one-page PDF with `tag` after its end: bytes of its own."""
    with open(os.path.join(FIXTURES, "en-1page.pdf"), "rb") as f:
        return f.read() + b"\n%" + tag.encode() + b"\n"


def multipart(data, filename="doc.pdf"):
    b = BOUNDARY.encode()
    head = b'Content-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
    head += b"Content-Type: application/pdf\r\n"
    return b"--" + b + b"\r\n" + head + b"\r\n" + data + b"\r\n--" + b + b"--\r\n"


class Client:
    """One keep-alive connection to nginx, as a client would hold it."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict, body bytes)."""
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_BOUND)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read()
        except BaseException:
            self.close()
            raise
        if r.getheader("Connection", "").lower() == "close":
            self.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def json(self, method, path, obj=None):
        body = None if obj is None else json.dumps(obj)
        status, _, data = self.request(method, path, body=body,
                                       headers={"Content-Type": "application/json"} if body else None)
        return status, (json.loads(data) if data else None)

    def upload(self, data):
        status, _, body = self.request("POST", "/documents", body=multipart(data), headers={
            "Content-Type": "multipart/form-data; boundary=" + BOUNDARY})
        return status, json.loads(body) if status == 201 else body

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def new_user(port):
    """Registers and logs in a fresh account; returns its access token."""
    c = Client(port)
    name = "cl-%s" % secrets.token_hex(5)
    password = "pw-" + secrets.token_urlsafe(12)
    status, body = c.json("POST", "/auth/register", {"username": name, "password": password})
    assert status == 201, (status, body)
    status, body = c.json("POST", "/auth/login", {"username": name, "password": password})
    assert status == 200, (status, body)
    c.close()
    return body["access_token"]


def wait_until(predicate, bound, what):
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.0f s" % (what, bound))
        time.sleep(0.2)


def wait_processed(port, token, ids):
    """Waits until every document of `ids` is COMPLETED or FAILED; returns {id: status}."""
    c = Client(port, token)
    states = {}

    def done():
        for doc_id in ids:
            if states.get(doc_id) in ("COMPLETED", "FAILED"):
                continue
            status, body = c.json("GET", "/documents/" + doc_id)
            assert status == 200, (status, body)
            states[doc_id] = body["status"]
        return all(states[d] in ("COMPLETED", "FAILED") for d in ids)

    wait_until(done, DONE_BOUND, "every document processed")
    c.close()
    return states


class ClusterScriptTest(unittest.TestCase):
    def run_script(self, *args, env):
        return subprocess.run([sys.executable, os.path.join(cluster.REPO, "scripts", "cluster"), *args], env=env,
                              capture_output=True, text=True, timeout=300)

    def test_up_status_down(self):
        state_dir = tempfile.mkdtemp(prefix="docflow-cluster-cli-")
        port = cluster.free_port()
        env = dict(os.environ, DOCFLOW_CLUSTER_DIR=state_dir)
        up = self.run_script("up", "--port", str(port), env=env)
        try:
            self.assertEqual(up.returncode, 0, up.stderr + up.stdout)
            self.assertIn("http://127.0.0.1:%d" % port, up.stdout)
            for name in ("nginx", "serve-1", "serve-2", "worker-1", "worker-2"):
                self.assertRegex(up.stdout, r"%s\s+pid \d+.*running" % name)
            with open(os.path.join(state_dir, "state.json")) as f:
                state = json.load(f)

            token = new_user(port)
            c = Client(port, token)
            self.addCleanup(c.close)
            status, doc = c.upload(pdf_bytes("cli"))
            self.assertEqual(status, 201, doc)
            status, body = c.json("POST", "/documents/%s/process" % doc["id"])
            self.assertEqual(status, 202, body)
            self.assertEqual(wait_processed(port, token, [doc["id"]]), {doc["id"]: "COMPLETED"})
            # The job ran in a worker process, whose own log names the document.
            worker_logs = ""
            for p in state["processes"]:
                if p["name"].startswith("worker-"):
                    with open(p["log"], errors="replace") as f:
                        worker_logs += f.read()
            self.assertIn(doc["id"], worker_logs)

            status = self.run_script("status", env=env)
            self.assertEqual(status.returncode, 0, status.stderr)
            self.assertNotIn("NOT RUNNING", status.stdout)
        finally:
            down = self.run_script("down", env=env)
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertFalse(os.path.exists(os.path.join(state_dir, "run")), "down leaves the data")
        for pid in [state["supervisor"], state["nginx"]["pid"]] + [p["pid"] for p in state["processes"]]:
            with self.assertRaises(ProcessLookupError, msg="pid %d still runs" % pid):
                os.kill(pid, 0)
        after = self.run_script("status", env=env)
        self.assertEqual(after.returncode, 1)
        self.assertIn("no cluster is up", after.stdout)
        shutil.rmtree(state_dir, ignore_errors=True)


def unit_file(name):
    """The [Service] settings of a shipped unit: (ExecStart, Environment
    dict, KillSignal, TimeoutStopSec in seconds)."""
    exec_start, env, kill, stop = None, {}, "SIGTERM", 90
    with open(os.path.join(DEPLOY, "systemd", name)) as f:
        for line in f:
            line = line.strip()
            if line.startswith("ExecStart="):
                exec_start = line[len("ExecStart="):].split()
            elif line.startswith("Environment="):
                key, _, value = line[len("Environment="):].partition("=")
                env[key] = value
            elif line.startswith("KillSignal="):
                kill = line[len("KillSignal="):]
            elif line.startswith("TimeoutStopSec="):
                stop = float(line[len("TimeoutStopSec="):].rstrip("s"))
    return exec_start, env, kill, stop


class DeployFilesTest(unittest.TestCase):
    UNITS = ("docflow-serve@.service", "docflow-worker@.service")

    @classmethod
    def setUpClass(cls):
        cls.cluster = cluster.Cluster(serve=1, workers=0)

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def test_units_pass_systemd_analyze_verify(self):
        d = tempfile.mkdtemp(prefix="docflow-units-")
        self.addCleanup(shutil.rmtree, d, True)
        instances = []
        for name in self.UNITS:
            with open(os.path.join(DEPLOY, "systemd", name)) as f:
                text = f.read()
            # verify checks that ExecStart's binary exists: the one built here.
            self.assertIn("ExecStart=/usr/local/bin/docflow ", text)
            text = text.replace("/usr/local/bin/docflow", cluster.BIN)
            instance = name.replace("@.", "@8000.")
            for n in (name, instance):
                with open(os.path.join(d, n), "w") as f:
                    f.write(text)
            instances.append(os.path.join(d, instance))
        done = subprocess.run(["systemd-analyze", "verify", *instances], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stderr.strip(), "", "systemd-analyze verify warned")

    def run_unit(self, name, port):
        """Starts what unit `name` (instance `port`) starts; returns the process."""
        exec_start, unit_env, kill, stop = unit_file(name)
        self.assertEqual(exec_start[0], "/usr/local/bin/docflow")
        env = dict(self.cluster.base_env)
        data = tempfile.mkdtemp(prefix="docflow-unit-")
        self.addCleanup(shutil.rmtree, data, True)
        for key, value in unit_env.items():
            value = value.replace("%i", str(port)).replace("%H", socket.gethostname())
            # StateDirectory= makes /var/lib/docflow/...; here, a temporary one.
            env[key] = value.replace("/var/lib/docflow", data)
        log = open(os.path.join(data, "log"), "w+b")
        self.addCleanup(log.close)
        proc = subprocess.Popen([cluster.BIN] + exec_start[1:], env=env, stdout=log, stderr=subprocess.STDOUT)
        return proc, env, getattr(signal, kill), stop, log

    def stop_unit(self, proc, kill, stop, log):
        proc.send_signal(kill)
        try:
            code = proc.wait(timeout=stop)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.seek(0)
        self.assertEqual(code, 0, log.read().decode(errors="replace")[-3000:])

    def test_serve_unit_starts_answers_and_stops(self):
        port = cluster.free_port()
        proc, env, kill, stop, log = self.run_unit("docflow-serve@.service", port)
        url = "http://127.0.0.1:%d" % port
        wait_until(lambda: cluster.answers(url + "/readyz") or proc.poll() is not None, 60, "serve ready")
        self.assertIsNone(proc.poll(), "the serve unit's process exited")
        self.assertEqual(env["DOCFLOW_WORKERS"], "0")
        token = new_user(port)
        c = Client(port, token)
        status, doc = c.upload(pdf_bytes("unit"))
        c.close()
        self.assertEqual(status, 201, doc)
        self.stop_unit(proc, kill, stop, log)

    def test_worker_unit_starts_processes_and_stops(self):
        port = cluster.free_port()
        token = new_user(self.cluster.port)
        c = Client(self.cluster.port, token)
        self.addCleanup(c.close)
        status, doc = c.upload(pdf_bytes("worker-unit"))
        self.assertEqual(status, 201, doc)
        self.assertEqual(c.json("POST", "/documents/%s/process" % doc["id"])[0], 202)
        proc, _, kill, stop, log = self.run_unit("docflow-worker@.service", port)
        # The cluster has no worker of its own: this one does the job.
        self.assertEqual(wait_processed(self.cluster.port, token, [doc["id"]]), {doc["id"]: "COMPLETED"})
        self.assertTrue(cluster.answers("http://127.0.0.1:%d/readyz" % port))
        self.stop_unit(proc, kill, stop, log)

    def test_behind_nginx_the_client_address_is_the_one_nginx_saw(self):
        # nginx speaks to docflow from PROXY_ADDRESS, the one trusted
        # address; the client, on 127.0.0.1, claims another in its own
        # X-Forwarded-For, which docflow must not believe.
        c = Client(self.cluster.port)
        self.addCleanup(c.close)
        status, _, _ = c.request("GET", "/healthz", headers={"X-Forwarded-For": "203.0.113.9",
                                                             "X-Request-ID": "forwarded-check-1"})
        self.assertEqual(status, 200)
        node = self.cluster.serves[0]

        def logged():
            return [e for e in node.log_events() if e.get("request_id") == "forwarded-check-1"]

        wait_until(logged, 10, "the request's log line")
        line = logged()[0]
        self.assertEqual(line["remote"], "127.0.0.1", line)
        self.assertEqual(line["peer"], cluster.PROXY_ADDRESS, line)
        self.assertEqual(line["node"], node.name, line)

    def test_example_site_passes_nginx_t(self):
        d = tempfile.mkdtemp(prefix="docflow-site-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=docflow.example.org", "-keyout", os.path.join(d, "privkey.pem"),
                        "-out", os.path.join(d, "fullchain.pem")], check=True, capture_output=True, timeout=60)
        with open(os.path.join(DEPLOY, "nginx", "docflow.conf.example")) as f:
            site = f.read()
        site = site.replace("/etc/nginx/docflow/", os.path.join(DEPLOY, "nginx") + "/")
        site = site.replace("/etc/ssl/docflow/", d + "/")
        site = site.replace("listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % cluster.free_port())
        with open(os.path.join(d, "site.conf"), "w") as f:
            f.write(site)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write("pid %s/nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\n  include %s/site.conf;\n}\n" % (d, d))
        done = subprocess.run([cluster.NGINX, "-t", "-p", d, "-c", os.path.join(d, "nginx.conf")],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertNotIn("[warn]", done.stderr)


def proxied_requests(process):
    """Requests the current run of `process` answered other than the
    readiness probes."""
    events = process.log_events()
    starts = [i for i, e in enumerate(events) if e.get("event") == "server.listening"]
    return sum(1 for e in events[starts[-1]:] if e.get("event") == "http.request" and e.get("route") != "/readyz")


class RollingRestartTest(unittest.TestCase):
    CLIENTS = 64

    def setUp(self):
        # Jobs long enough to be running when their worker is told to stop.
        self.cluster = cluster.Cluster(serve=2, workers=2, env={"DOCFLOW_SIMULATED_DELAY_MS": "300"})
        self.addCleanup(self.cluster.close)

    def test_serve_processes_restart_one_at_a_time_without_a_failed_request(self):
        port = self.cluster.port
        tokens = [new_user(port) for _ in range(4)]
        stop = threading.Event()
        failures, counts, uploaded = [], {"upload": 0, "read": 0}, []
        lock = threading.Lock()

        def client(i):
            c = Client(port, tokens[i % len(tokens)])
            mine = []
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if n % 2 or not mine:
                        data = pdf_bytes("c%d-%d" % (i, n))
                        status, body = c.upload(data)
                        ok = status == 201
                        if ok:
                            mine.append((body["id"], hashlib.sha256(data).hexdigest(), c.token))
                        kind = "upload"
                    else:
                        doc_id = mine[n % len(mine)][0]
                        status, _, body = c.request("GET", "/documents/" + doc_id) if n % 4 else \
                            c.request("GET", "/documents?limit=10")
                        ok = status == 200
                        kind = "read"
                    with lock:
                        counts[kind] += 1
                        if not ok:
                            failures.append((kind, status, body))
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        failures.append(("connection", repr(e), None))
            c.close()
            with lock:
                uploaded.extend(mine)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(self.CLIENTS)]
        for t in threads:
            t.start()
        try:
            time.sleep(2)  # load is on
            for p in self.cluster.serves:
                self.assertEqual(p.stop(), 0, p.log_tail())
                p.start()
                # nginx takes a node back fail_timeout (5 s) after it last
                # refused a connection: stopping the next one before then
                # would leave nginx no node to send requests to.
                wait_until(lambda: proxied_requests(p) > 0, 60, "nginx sends requests to %s again" % p.name)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=REQUEST_BOUND + 10)
        print("rolling restart of %d serve processes: %d uploads, %d reads, %d failed" % (
            len(self.cluster.serves), counts["upload"], counts["read"], len(failures)), file=sys.stderr)
        kinds = collections.Counter((kind, status) for kind, status, _ in failures)
        self.assertEqual(kinds, collections.Counter(), "failed requests during the rolling restart; e.g. %r"
                         % (failures[:3],))
        self.assertGreater(counts["upload"], 0)
        # Every upload acknowledged is there, byte for byte.
        c = Client(port, tokens[0])
        self.addCleanup(c.close)
        for doc_id, digest, token in uploaded[::max(1, len(uploaded) // 200)]:
            c.token = token
            status, _, data = c.request("GET", "/documents/%s/content" % doc_id)
            self.assertEqual(status, 200, "acknowledged upload %s is missing" % doc_id)
            self.assertEqual(hashlib.sha256(data).hexdigest(), digest, doc_id)

    def test_workers_restart_one_at_a_time_without_losing_or_repeating_a_job(self):
        port = self.cluster.port
        token = new_user(port)
        c = Client(port, token)
        self.addCleanup(c.close)
        ids = []
        for i in range(40):
            status, doc = c.upload(pdf_bytes("w%d" % i))
            self.assertEqual(status, 201, doc)
            ids.append(doc["id"])
            self.assertEqual(c.json("POST", "/documents/%s/process" % doc["id"])[0], 202)
        for p in self.cluster.workers:
            time.sleep(1)  # jobs are running on it
            self.assertEqual(p.stop(), 0, p.log_tail())
            p.start()
        states = wait_processed(port, token, ids)
        self.assertEqual(set(states.values()), {"COMPLETED"}, states)
        db = self.cluster.database_url.rsplit("/", 1)[1]
        completions = self.cluster.pg.psql(
            "SELECT document_id, count(*) FROM document_events WHERE status = 'COMPLETED' GROUP BY document_id",
            database=db)
        counted = dict(line.split("|") for line in completions.splitlines() if line)
        self.assertEqual(set(counted), set(ids))
        self.assertEqual({v for v in counted.values()}, {"1"}, "a document completed twice")


if __name__ == "__main__":
    unittest.main()
