"""PostgreSQL across processes (issue 15), black-box.

- ConcurrencyAcrossProcessesTest: two `docflow serve` processes on one
  database (one JWT secret, one shared file:// blob directory) take the
  same request at the same moment: 50 /process calls for one document, 16
  refreshes of one refresh token, and uploads with one Idempotency-Key,
  one to each process. Every request is sent but for its last byte, and
  the last bytes go out together after a barrier, so the servers begin
  handling them at once. What each decided is read back from the database
  (psql) as well as from the answers.
- DatabaseRestartTest: PostgreSQL stops ("fast", then "immediate", as a
  crash) and starts again while client threads upload, ask for processing
  and read, and workers run jobs. Every request is answered (503 with
  Retry-After while the database is away, never another 5xx, never a
  hang), both processes recover by themselves, every acknowledged upload
  is intact afterwards, so is every other document listed (one answered
  503 may have committed as its connection went), and every job ran once.

Each test has its own database on one private PostgreSQL 15 (pg.py).
Every wait is bounded and only detects hangs; nothing asserts how long
anything took. The restart test prints what it measured (outage length,
503s) on stderr, for docs/operations.md.
"""
import collections
import hashlib
import http.client
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

import pg
from harness import RawConnection, ServerTestCase, format_request, metric, parse_metrics, run_cli

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
BOUNDARY = "docflow-cluster-boundary-7Kq2"
REQUEST_BOUND = 20.0  # seconds: a request not answered by then hangs
DONE_BOUND = 90.0  # every job done by then, even one whose claim was lost in a crash (lease 30 s)

_server = None  # the PostgreSQL of this test process


def setUpModule():
    global _server
    _server = pg.PostgresServer()


def tearDownModule():
    _server.close()


# --------------------------------------------------------------------------
# Requests


def bearer(token):
    return {"Authorization": "Bearer " + token}


def pdf_bytes(tag):
    """A real one-page PDF (it processes) with `tag` in a comment after its
    end, so every upload's bytes and SHA-256 are its own."""
    with open(os.path.join(FIXTURES, "en-1page.pdf"), "rb") as f:
        return f.read() + b"\n%" + tag.encode() + b"\n"


def multipart(data, filename):
    b = BOUNDARY.encode()
    head = b'Content-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
    head += b"Content-Type: application/pdf\r\n"
    return b"--" + b + b"\r\n" + head + b"\r\n" + data + b"\r\n--" + b + b"--\r\n"


def upload_headers(token, key=None):
    headers = {"Content-Type": "multipart/form-data; boundary=" + BOUNDARY, **bearer(token)}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def post_json(server, path, obj, token=None):
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    return server.request("POST", path, headers=headers, body=json.dumps(obj), timeout=REQUEST_BOUND)


def simultaneous(requests, timeout=REQUEST_BOUND):
    """Sends each (server, request bytes) on a connection of its own: all
    but the last byte first, then, after a barrier, every last byte at
    once. Returns the responses in order (an exception where there was
    none)."""
    conns = []
    try:
        for server, _ in requests:
            conns.append(RawConnection(server.port, timeout=timeout))
        for conn, (_, data) in zip(conns, requests):
            conn.send(data[:-1])
        barrier = threading.Barrier(len(requests))
        answers = [None] * len(requests)

        def finish(i):
            try:
                barrier.wait(timeout=timeout)
                conns[i].send(requests[i][1][-1:])
                answers[i] = conns[i].read_response(timeout=timeout)
            except BaseException as e:  # noqa: BLE001 - returned to the test
                answers[i] = e

        threads = [threading.Thread(target=finish, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=2 * timeout)
        if any(t.is_alive() for t in threads):
            raise AssertionError("a request was still unanswered after %.0fs" % (2 * timeout))
        return answers
    finally:
        for conn in conns:
            conn.close()


class ClusterTestCase(ServerTestCase):
    """Two (or more) `docflow serve` on a fresh database of their own."""

    def start_cluster(self, nodes=2, **env):
        self.database_url = _server.create_database()
        self.database = self.database_url.rsplit("/", 1)[1]
        done = run_cli(["migrate"], DOCFLOW_DATABASE_URL=self.database_url)
        self.assertEqual(done.returncode, 0, done.stderr)
        # Blobs are files: processes on one machine share them through one directory.
        blobs = tempfile.mkdtemp(prefix="docflow-it-blobs-")
        self.addCleanup(shutil.rmtree, blobs, True)
        self.nodes = [
            self.start_server(DOCFLOW_DATABASE_URL=self.database_url, DOCFLOW_STORAGE_URL="file://" + blobs, **env)
            for _ in range(nodes)
        ]
        return self.nodes

    def sql(self, query):
        """psql's rows for `query`, each a list of columns."""
        out = _server.psql(query, self.database)
        return [line.split("|") for line in out.splitlines() if line]

    def sql_value(self, query):
        rows = self.sql(query)
        self.assertEqual(len(rows), 1, rows)
        return rows[0][0]

    def new_user(self):
        """Registered on the first node, logged in on the last: the token
        pair works on every node. Returns (user id, token pair)."""
        username = "cluster-%s" % secrets.token_hex(4)
        password = "pw-" + secrets.token_urlsafe(12)
        res = post_json(self.nodes[0], "/auth/register", {"username": username, "password": password})
        self.assertEqual(res.status, 201, res)
        user_id = res.json()["id"]
        res = post_json(self.nodes[-1], "/auth/login", {"username": username, "password": password})
        self.assertEqual(res.status, 200, res)
        return user_id, res.json()

    def upload(self, node, token, data, filename="doc.pdf"):
        res = node.request("POST", "/documents", headers=upload_headers(token), body=multipart(data, filename),
                           timeout=REQUEST_BOUND)
        self.assertEqual(res.status, 201, res)
        return res.json()

    def logs(self, event, **fields):
        """Every log line of every node with this event and fields."""
        return [e for node in self.nodes for e in node.find_logs(event=event, **fields)]


# --------------------------------------------------------------------------
# Concurrency across processes


class ConcurrencyAcrossProcessesTest(ClusterTestCase):
    def setUp(self):
        # No workers: the job stays queued while the requests race.
        self.start_cluster(DOCFLOW_WORKERS="0")
        self.user_id, pair = self.new_user()
        self.token = pair["access_token"]

    def process_everywhere(self, doc_id, n=50):
        """n /process calls for one document at once, spread over the
        nodes; asserts each is 202 with the document PROCESSING (SPEC 4:
        the first moves it there, the others find it there)."""
        request = format_request("POST", "/documents/%s/process" % doc_id, bearer(self.token))
        answers = simultaneous([(self.nodes[i % len(self.nodes)], request) for i in range(n)])
        for res in answers:
            self.assertNotIsInstance(res, BaseException)
            self.assertEqual(res.status, 202, res)
            self.assertEqual(res.json()["status"], "PROCESSING", res)

    def jobs_of(self, doc_id):
        return self.sql("SELECT state FROM jobs WHERE document_id = '%s' ORDER BY created_at" % doc_id)

    def events_of(self, doc_id):
        rows = self.sql("SELECT seq, status FROM document_events WHERE document_id = '%s' ORDER BY seq" % doc_id)
        return [(int(seq), status) for seq, status in rows]

    def test_fifty_process_calls_across_two_processes_make_one_job(self):
        doc_id = self.upload(self.nodes[0], self.token, pdf_bytes(secrets.token_hex(8)))["id"]
        self.process_everywhere(doc_id)
        self.assertEqual(self.jobs_of(doc_id), [["queued"]])
        self.assertEqual(len(self.logs("document.process_requested", document_id=doc_id)), 1)
        self.assertEqual(self.events_of(doc_id), [(1, "UPLOADED"), (2, "PROCESSING")])
        self.assertEqual(self.sql_value("SELECT last_event_seq FROM documents WHERE id = '%s'" % doc_id), "2")

        # Again from FAILED (cancelled): one more job, not fifty.
        res = self.nodes[1].request("POST", "/documents/%s/cancel" % doc_id, headers=bearer(self.token))
        self.assertEqual(res.status, 202, res)
        self.process_everywhere(doc_id)
        self.assertEqual(self.jobs_of(doc_id), [["cancelled"], ["queued"]])
        self.assertEqual(len(self.logs("document.process_requested", document_id=doc_id)), 2)
        self.assertEqual(
            self.events_of(doc_id), [(1, "UPLOADED"), (2, "PROCESSING"), (3, "FAILED"), (4, "PROCESSING")]
        )

    def test_sixteen_refreshes_of_one_token_across_two_processes_rotate_it_once(self):
        # SPEC 2 with DOCFLOW_REFRESH_REUSE_GRACE=0s: the token works once;
        # every other presentation is reuse, which is 401 and revokes the
        # login's every token, the one just issued included.
        for _ in range(3):
            user_id, pair = self.new_user()
            body = json.dumps({"refresh_token": pair["refresh_token"]})
            request = format_request("POST", "/auth/refresh", {"Content-Type": "application/json"}, body)
            answers = simultaneous([(self.nodes[i % 2], request) for i in range(16)])
            for res in answers:
                self.assertNotIsInstance(res, BaseException)
            statuses = sorted(res.status for res in answers)
            self.assertEqual(statuses, [200] + [401] * 15, answers)
            winner = next(res for res in answers if res.status == 200).json()
            # One successor was stored, and the family is revoked.
            tokens = self.sql_value(
                "SELECT count(*) FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id"
                " WHERE f.user_id = '%s'" % user_id)
            self.assertEqual(tokens, "2")
            self.assertEqual(
                self.sql("SELECT revoked_at IS NOT NULL FROM refresh_families WHERE user_id = '%s'" % user_id),
                [["t"]])
            res = post_json(self.nodes[0], "/auth/refresh", {"refresh_token": winner["refresh_token"]})
            self.assertEqual(res.status, 401, res)

    def test_one_idempotency_key_on_two_processes_at_once_makes_one_document(self):
        # docs/api.md, Idempotency-Key: the second of two requests with one
        # key is 409 idempotency-key-in-flight while the first runs, or its
        # replay once the first has answered. Several rounds, each a new
        # key and a new file, one upload to each process.
        rounds = 10
        for i in range(rounds):
            key = "cluster-key-%d-%s" % (i, secrets.token_hex(8))
            data = pdf_bytes(key)
            request = format_request("POST", "/documents", upload_headers(self.token, key),
                                     multipart(data, "same.pdf"))
            answers = simultaneous([(self.nodes[0], request), (self.nodes[1], request)])
            for res in answers:
                self.assertNotIsInstance(res, BaseException)
            created = [res for res in answers if res.status == 201]
            self.assertTrue(created, answers)
            if len(created) == 2:
                self.assertEqual(created[0].body, created[1].body)
                self.assertEqual(created[0].header("Location"), created[1].header("Location"))
                replayed = [res.header("Idempotent-Replayed") for res in created]
                self.assertEqual(sorted(replayed, key=str), [None, "true"], "one answer is the replay")
            else:
                other = next(res for res in answers if res.status != 201)
                self.assertEqual(other.status, 409, answers)
                self.assertEqual(other.json()["type"], "/problems/idempotency-key-in-flight", other)
            sha = hashlib.sha256(data).hexdigest()
            self.assertEqual(self.sql_value("SELECT count(*) FROM documents WHERE sha256 = '%s'" % sha), "1")
        res = self.nodes[0].get("/documents?limit=200", headers=bearer(self.token))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(len(res.json()["items"]), rounds)


# --------------------------------------------------------------------------
# Database restart


def wait_until(predicate, bound, what):
    """Polls `predicate` until it holds; fails after `bound` seconds."""
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not within %.0fs" % (what, bound))
        time.sleep(0.05)


class Exchange:
    """One request of the load and its answer, with when each happened."""

    def __init__(self, sent, answered, node, what, res):
        self.sent = sent
        self.answered = answered
        self.node = node
        self.what = what
        self.status = res.status
        self.retry_after = res.header("Retry-After")
        self.problem = res.json().get("type") if res.content_type == "application/problem+json" else None

    def __repr__(self):
        return "<%s on node %d: %d %s Retry-After=%s>" % (self.what, self.node, self.status, self.problem,
                                                           self.retry_after)


class Load:
    """Client threads that, until stopped, each on the nodes in turn:
    `clients` upload a new file, ask for its processing (again later while
    that is refused) and read a document back, `pace` seconds apart (no
    faster than the workers run jobs); `uploaders` only upload, nearly as
    fast as they are answered (`pace` apart while refused), so that many
    commits are under way when the database goes. Every request is bounded
    by REQUEST_BOUND; every answer is kept, and every request that got
    none."""

    def __init__(self, nodes, token, clients=4, pace=0.2, uploaders=2):
        self.nodes = nodes
        self.token = token
        self.pace = pace
        self.lock = threading.Lock()
        self.exchanges = []
        self.unanswered = []  # (what, node, exception)
        self.uploads = {}  # document id -> bytes, for every 201
        self.acknowledged_at = []  # when each 201 arrived
        self.processed = set()  # acknowledged uploads the clients asked to process
        self.to_process = []  # of those, the ones whose /process was not accepted when the clients stopped
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i, True), daemon=True) for i in range(clients)]
        self.threads += [threading.Thread(target=self.client, args=(clients + i, False), daemon=True)
                         for i in range(uploaders)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=3 * REQUEST_BOUND)
        if any(t.is_alive() for t in self.threads):
            raise AssertionError("a client thread is stuck")

    def call(self, node, what, method, path, headers, body=None):
        sent = time.monotonic()
        try:
            res = self.nodes[node].request(method, path, headers=headers, body=body, timeout=REQUEST_BOUND)
        except (OSError, http.client.HTTPException) as e:  # socket.timeout included: a hang
            with self.lock:
                self.unanswered.append((what, node, repr(e)))
            return None
        exchange = Exchange(sent, time.monotonic(), node, what, res)
        with self.lock:
            self.exchanges.append(exchange)
        return res

    def client(self, index, processing):
        pending = []  # this client's uploads whose /process was not accepted yet
        rounds = 0
        while not self.stopping.is_set():
            node = (index + rounds) % len(self.nodes)
            rounds += 1
            data = pdf_bytes("load-%d-%d-%s" % (index, rounds, secrets.token_hex(6)))
            res = self.call(node, "upload", "POST", "/documents", upload_headers(self.token),
                            multipart(data, "load.pdf"))
            if res is not None and res.status == 201:
                doc_id = res.json()["id"]
                with self.lock:
                    self.uploads[doc_id] = data
                    self.acknowledged_at.append(time.monotonic())
                    if processing:
                        self.processed.add(doc_id)
                        pending.append(doc_id)
            if not processing:
                # Refused: come back a little later, as Retry-After asks.
                self.stopping.wait(self.pace / 10 if res is not None and res.status == 201 else self.pace)
                continue
            for doc_id in list(pending):
                res = self.call(node, "process", "POST", "/documents/%s/process" % doc_id, bearer(self.token))
                if res is not None and res.status in (200, 202):
                    pending.remove(doc_id)
            with self.lock:
                last = next(reversed(self.uploads), None)
            if last:
                self.call(node, "get", "GET", "/documents/" + last, bearer(self.token))
            self.stopping.wait(self.pace)
        with self.lock:
            self.to_process.extend(pending)

    def answered_since(self, t, status):
        with self.lock:
            return sum(1 for e in self.exchanges if e.sent >= t and e.status == status)

    def acknowledged_since(self, t):
        with self.lock:
            return sum(1 for at in self.acknowledged_at if at >= t)


class DatabaseRestartTest(ClusterTestCase):
    def readyz(self, node):
        return node.get("/readyz", timeout=REQUEST_BOUND)

    def assertUnavailable(self, res):
        """503 service-unavailable with a Retry-After in seconds."""
        body = self.assertProblem(res, 503, "service-unavailable")
        self.assertTrue((res.header("Retry-After") or "").isdigit(), res)
        return body

    def check_down(self, token, doc_id):
        """While the database is stopped, each node says so on every kind of
        route, at once: readiness, an upload, a read."""
        for node in self.nodes:
            res = self.readyz(node)
            body = self.assertUnavailable(res)
            self.assertEqual(body["checks"]["database"], "unavailable", body)
            res = node.request("POST", "/documents", headers=upload_headers(token),
                               body=multipart(pdf_bytes("while-down"), "down.pdf"), timeout=REQUEST_BOUND)
            self.assertUnavailable(res)
            self.assertUnavailable(node.get("/documents/" + doc_id, headers=bearer(token), timeout=REQUEST_BOUND))

    def history(self, doc_id):
        """The log lines of every node about the document and its jobs."""
        jobs = {e.get("job_id") for e in self.logs("job.claimed", document_id=doc_id)}
        return "\n".join("node %d: %s" % (i, json.dumps(e)) for i, node in enumerate(self.nodes)
                         for e in node.find_logs(lambda e: e.get("document_id") == doc_id or e.get("job_id") in jobs))

    def all_documents(self, token):
        items, cursor = [], None
        while True:
            path = "/documents?limit=200" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
            res = self.nodes[0].get(path, headers=bearer(token), timeout=REQUEST_BOUND)
            self.assertEqual(res.status, 200, res)
            page = res.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def test_restarts_under_load_lose_no_upload_and_run_no_job_twice(self):
        # The default lease (30 s) outlasts each outage: a worker that could
        # not record its job while the database was away still holds it
        # when the database is back. (A job whose claim was lost with its
        # connection is taken over when that lease lapses, within DONE_BOUND.)
        self.start_cluster(DOCFLOW_WORKERS="2", DOCFLOW_SIMULATED_DELAY_MS="300")
        _, pair = self.new_user()
        token = pair["access_token"]
        load = Load(self.nodes, token)
        load.start()
        self.addCleanup(load.stop)
        wait_until(lambda: len(load.uploads) >= 6 and len(self.logs("document.completed")) >= 2, 60,
                   "uploads and jobs under way")

        outages = []
        for mode in ("fast", "immediate"):
            # Stopped while a worker is inside a job, which it then cannot record.
            wait_until(lambda: self.sql_value("SELECT count(*) FROM jobs WHERE state = 'running'") != "0", 60,
                       "a job running")
            stopping = time.monotonic()
            _server.stop(mode)
            stopped = time.monotonic()
            with load.lock:
                known = next(iter(load.uploads))
            self.check_down(token, known)
            wait_until(lambda: load.answered_since(stopped, 503) >= 3, REQUEST_BOUND,
                       "the clients' requests answered while the database is down")
            _server.start()
            started = time.monotonic()
            wait_until(lambda: all(self.readyz(node).status == 200 for node in self.nodes), 30,
                       "both nodes ready again")
            ready = time.monotonic()
            wait_until(lambda: load.acknowledged_since(ready) >= 4, 60, "uploads acknowledged again")
            outages.append((mode, stopping, started, ready))
        load.stop()

        # Whatever the clients could not get processed, now.
        for doc_id in load.to_process:
            res = self.nodes[0].request("POST", "/documents/%s/process" % doc_id, headers=bearer(token),
                                        timeout=REQUEST_BOUND)
            self.assertIn(res.status, (200, 202), res)
        ids = sorted(load.processed)
        id_list = ", ".join("'%s'" % i for i in ids)

        def unfinished():
            return self.sql("SELECT id, status FROM documents WHERE id IN (%s) AND status <> 'COMPLETED'" % id_list)

        wait_until(lambda: not unfinished(), DONE_BOUND, "every acknowledged upload processed")

        # Every request was answered; none with a fault.
        self.assertEqual(load.unanswered, [])
        statuses = {e.status for e in load.exchanges}
        self.assertLessEqual(statuses, {200, 201, 202, 503}, [e for e in load.exchanges if e.status not in
                                                                (200, 201, 202, 503)][:10])
        refused = [e for e in load.exchanges if e.status == 503]
        for e in refused:
            self.assertEqual(e.problem, "/problems/service-unavailable", e)
            self.assertTrue((e.retry_after or "").isdigit(), e)
            # Only while the database was away: sent before the nodes were ready again.
            self.assertTrue(any(stopping <= e.answered and e.sent <= ready for _, stopping, _, ready in outages),
                            e)

        # Every acknowledged upload is there, byte for byte; so is every
        # document listed (none has a row without its bytes).
        listed = self.all_documents(token)
        self.assertLessEqual(set(load.uploads), {d["id"] for d in listed})
        for i, doc in enumerate(listed):
            res = self.nodes[i % 2].get("/documents/%s/content" % doc["id"], headers=bearer(token),
                                        timeout=REQUEST_BOUND)
            self.assertEqual(res.status, 200, "%r\n%s" % (res, self.history(doc["id"])))
            self.assertEqual(hashlib.sha256(res.body).hexdigest(), doc["sha256"], doc)
            if doc["id"] in load.uploads:
                self.assertEqual(res.body, load.uploads[doc["id"]], doc)

        # No job ran twice: one job per document, claimed once (a claim lost
        # with its connection runs nowhere and logs nothing), and one
        # COMPLETED event per document.
        jobs = self.sql("SELECT document_id, count(*), bool_and(state = 'done'), max(attempts) FROM jobs"
                        " WHERE document_id IN (%s) GROUP BY document_id" % id_list)
        self.assertEqual(len(jobs), len(ids))
        for doc_id, count, done, _ in jobs:
            self.assertEqual((count, done), ("1", "t"), doc_id)
        lost_claims = sum(int(attempts) - 1 for _, _, _, attempts in jobs)
        completions = dict(self.sql("SELECT document_id, count(*) FROM document_events"
                                    " WHERE status = 'COMPLETED' GROUP BY document_id"))
        logged = collections.Counter((e.get("event"), e.get("document_id")) for node in self.nodes
                                     for e in node.find_logs())
        for doc_id in ids:
            self.assertEqual(completions.get(doc_id), "1", doc_id)
            self.assertEqual(logged[("job.claimed", doc_id)], 1, self.history(doc_id))
            self.assertLessEqual(logged[("document.completed", doc_id)], 1, self.history(doc_id))
        # Nothing failed inside: no handler exception (a 500), no outcome a
        # worker gave up recording. (pipeline.sandbox says what this machine
        # lacks.)
        errors = [e for node in self.nodes for e in node.find_logs(level="error")
                  if e.get("event") != "pipeline.sandbox"]
        self.assertEqual(errors, [])
        completed_total = 0
        for node in self.nodes:
            res = node.get("/metrics", timeout=REQUEST_BOUND)
            self.assertEqual(res.status, 200, res)
            completed_total += metric(parse_metrics(res.body.decode()), "docflow_jobs_total",
                                      outcome="completed") or 0
        self.assertEqual(completed_total, sum(n for (event, _), n in logged.items() if event == "document.completed"))

        for mode, stopping, started, ready in outages:
            window = [e for e in refused if stopping <= e.answered and e.sent <= ready]
            print("database restart (%s): down %.2fs, ready %.2fs after it started; %d answers of 503 to the"
                  " clients, from %.2fs to %.2fs after the stop" % (
                      mode, started - stopping, ready - started, len(window),
                      min(e.answered for e in window) - stopping, max(e.answered for e in window) - stopping),
                  file=sys.stderr)
        print("%d uploads acknowledged (%d processed, %d claims lost with their connection), %d documents in all;"
              " answers to the clients by status: %s" % (
                  len(load.uploads), len(ids), lost_claims, len(listed),
                  dict(collections.Counter(e.status for e in load.exchanges))), file=sys.stderr)
