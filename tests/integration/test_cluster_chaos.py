"""The cluster proven under failure (issue 17, "the chaos test"), black-box.

One cluster (cluster.py: PostgreSQL, radosgw, two `serve` processes behind
nginx, two `docflow worker` processes of two threads each) runs for the
whole test. Each iteration registers fresh users and then, at once:

- a workload through nginx only: client threads upload (fixture PDFs and
  DOCX made unique, PDFs of random bytes that pass the upload checks but
  fail processing, now and then one large enough for a multipart upload),
  with and without Idempotency-Key (a keyed request is retried with the
  same key after a failure and once more after an answer), ask for
  processing (idempotent, also with keys), cancel, delete and download;
  stream threads follow documents' event streams, disconnect at random
  moments and reconnect with Last-Event-ID on a new connection (so nginx
  may hand them to the other serve node);
- a chaos thread that, at seeded random moments, kills -9 a serve process
  (started again a second later), kills -9 a worker in the middle of a job
  (started again), restarts PostgreSQL ("fast" or "immediate") and
  restarts the S3 gateway, until it has made DOCFLOW_CHAOS_KILLS such
  events.

Requests fail while things restart (502, 503, refused connections): they
are recorded, not asserted; a 500 (an internal error) is a violation. Lost
or duplicated state is too. Once the chaos
stops, every process is up again and the queue has drained (no job queued
or running, no document PROCESSING), the iteration checks:

- every upload answered 201 is listed, and its content, downloaded three
  times through nginx on new connections, has the SHA-256 of the bytes
  sent and of the answer's `sha256`; unless this test deleted it;
- a keyed upload that never got an answer to keep (5xx, 409 in flight, no
  answer) is sent once more with its key, as docs/api.md tells a client
  to, and gets 201 (the first document's, if one was made);
- every document listed is one this test uploaded (each upload's bytes
  are unique, so a document is matched to its upload by SHA-256), at most
  one per upload; an upload refused with a 4xx left no row, nor did one
  answered 5xx by docflow, except while PostgreSQL restarted (docs/api.md:
  a connection that broke as it committed); one whose answer was lost
  (502 from nginx, a broken connection) may exist, and is then intact;
- after `docflow maintenance --min-age 0s`: every object in the bucket
  belongs to a document row, every row has its object, and no multipart
  upload is left incomplete;
- every document is UPLOADED, COMPLETED or FAILED (none PROCESSING), and
  its status changes in the database (document_events) are numbered 1..n
  without a gap, begin with UPLOADED and follow the documented moves
  (UPLOADED -> PROCESSING -> COMPLETED | FAILED, FAILED -> PROCESSING), and
  the last is the document's status; progress events come only while
  it is PROCESSING. What is counted as "a completion the
  store accepted" is a COMPLETED row in document_events: the store writes
  it in the fenced transaction that completes the job, so a completion
  refused by fencing (lease lost to a takeover or a cancel) writes none.
  No document has two, a COMPLETED document has exactly one and a result
  row, and no worker logged `document.completed` for a document more often
  than the store accepted;
- every Idempotency-Key got one answer: every answer that was not a
  failure to retry (5xx, 429, 409 idempotency-key-in-flight, no answer) is
  the same status and the same body, byte for byte;
- every event stream saw, across its reconnects, consecutive event ids
  with no gap and no repeat (but for the progress events a fresh stream
  skips between the current status and the latest progress), each with the
  status the database holds for that id.

The seed (DOCFLOW_CHAOS_SEED; iteration i uses seed + i) is in every
assertion message. It fixes every choice the test makes (what to do, when,
to what), not the timing of the processes, so a replay repeats the same
scenario, not the same interleaving. DOCFLOW_CHAOS_ITERATIONS and
DOCFLOW_CHAOS_KILLS (events per iteration) make a longer run by hand. The
counts (events by kind, requests by outcome, documents, completions,
fencing refusals, reconnects, duration) are printed on stderr at the end.
Every wait is bounded and only detects hangs; nothing asserts a duration.
"""
import collections
import concurrent.futures
import hashlib
import http.client
import io
import itertools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import zipfile

import cluster
from test_cluster import Client, new_user

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
SEED = int(os.environ.get("DOCFLOW_CHAOS_SEED", "17017"))
ITERATIONS = int(os.environ.get("DOCFLOW_CHAOS_ITERATIONS", "3"))
KILLS = int(os.environ.get("DOCFLOW_CHAOS_KILLS", "70"))  # chaos events per iteration
USERS = 3
CLIENTS = 5
STREAMERS = 3
BOUNDARY = "docflow-chaos-boundary-Qz3"
REQUEST_BOUND = 30.0  # seconds: a request not answered by then hangs
DRAIN_BOUND = 180.0  # every job done by then, retries and lease takeovers included
STREAM_BOUND = 40.0  # one stream followed this long at most
START_TRIES = 30  # starts of a killed process before the test gives up on it
POOL_BACKOFF = 10.0  # seconds a pool may wait before it reconnects to PostgreSQL
NGINX_FAIL_TIMEOUT = 6.0  # seconds: deploy/nginx's fail_timeout (5 s), and a little
PART_SIZE = 5 << 20  # DOCFLOW_S3_PART_SIZE: uploads larger go up as multipart uploads
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TERMINAL = ("COMPLETED", "FAILED")
MOVES = {None: {"UPLOADED"}, "UPLOADED": {"PROCESSING"}, "PROCESSING": {"COMPLETED", "FAILED"},
         "FAILED": {"PROCESSING"}, "COMPLETED": set()}
# Events a worker logs when it is done with a claimed job, one way or another.
JOB_ENDS = {"document.completed", "document.failed", "job.abandoned", "job.retry", "job.record_failed"}


def _read(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


PDF_FIXTURES = [_read("en-1page.pdf"), _read("multipage.pdf"), _read("de.pdf")]
DOCX_FIXTURES = [_read("de.docx"), _read("table-header-footer.docx")]


def fixture_pdf(rng, tag):
    """A real PDF (it processes) with `tag` in a comment after its end."""
    return rng.choice(PDF_FIXTURES) + b"\n%" + tag.encode() + b"\n"


def random_pdf(rng, tag, size):
    """Random bytes behind a PDF header: accepted at upload, unreadable when processed."""
    return b"%PDF-1.7\n%" + tag.encode() + b"\n" + rng.randbytes(size)


def fixture_docx(rng, tag):
    """A real DOCX with one more part naming `tag`, so its bytes are its own."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(rng.choice(DOCX_FIXTURES))) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("customXml/chaos.xml", "<chaos>%s</chaos>" % tag)
    return out.getvalue()


def multipart(data, filename, content_type):
    b = BOUNDARY.encode()
    head = b'Content-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
    head += b"Content-Type: " + content_type.encode() + b"\r\n"
    return b"--" + b + b"\r\n" + head + b"\r\n" + data + b"\r\n--" + b + b"--\r\n"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def problem_type(body):
    try:
        return json.loads(body).get("type", "")
    except (ValueError, AttributeError):
        return ""


def retry_later(answer):
    """Whether an answer (status, headers, body) or None (no answer) is one
    a client retries with the same key: the server kept nothing for it."""
    if answer is None:
        return True
    status, _, body = answer
    return status >= 500 or status == 429 or (status == 409 and problem_type(body).endswith("idempotency-key-in-flight"))


class Upload:
    """One upload a client meant to make, with every answer it got."""

    def __init__(self, user, data, key):
        self.user = user
        self.sha = sha256(data)
        self.key = key
        self.answers = []  # (status or None, body, started, ended); None: no answer
        self.doc_id = None  # from a 201


class Stream:
    """One document's event stream, followed across reconnects."""

    def __init__(self, user, doc_id):
        self.user = user
        self.doc_id = doc_id
        self.seen = []  # (id, status) in the order received
        self.connections = 0


class Iteration:
    """What one iteration's workload did and saw."""

    def __init__(self, test, seed):
        self.test = test
        self.cluster = test.cluster
        self.seed = seed
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.users = []  # (name, token)
        self.uploads = []
        self.by_sha = {}
        self.docs = {}  # doc_id -> Upload, from 201s
        self.processed = []  # doc ids asked to be processed
        self.delete_asked = set()
        self.deleted = set()  # 204, or 404 to a delete of a document that existed
        self.keys = collections.defaultdict(list)  # (user, key) -> answers (status, body) or None
        self.streams = []
        self.outcomes = collections.Counter()  # "upload 201", "process error", ...
        self.violations = []
        self.chaos_events = []  # (kind, started, ended)
        self.down = set()  # names of the processes killed and not yet started again
        self.unresolved = []  # keyed uploads without an answer to keep: (Upload, body, headers)
        self.errors = []  # exceptions of threads

    def violation(self, text):
        with self.lock:
            self.violations.append(text)

    def count(self, what, answer):
        with self.lock:
            self.outcomes["%s %s" % (what, "error" if answer is None else answer[0])] += 1

    # ---- requests

    def send(self, client, method, path, body=None, headers=None):
        """(status, headers, body), or None when no answer came. A 500 is a
        violation: a failure to ride out is 502, 503 or no answer."""
        try:
            answer = client.request(method, path, body=body, headers=headers)
        except (OSError, http.client.HTTPException):
            return None
        if answer[0] == 500:
            self.violation("%s %s answered 500: %r" % (method, path, answer[2][:300]))
        return answer

    def known_doc(self, rng, user):
        with self.lock:
            mine = [d for d, u in self.docs.items() if u.user == user and d not in self.deleted]
        return rng.choice(mine) if mine else None

    def upload(self, rng, client, user, n):
        tag = "chaos-%d-%d-%d" % (self.seed, rng.getrandbits(32), n)
        roll = rng.random()
        if roll < 0.45:
            data, name, ctype = fixture_pdf(rng, tag), "doc.pdf", "application/pdf"
        elif roll < 0.65:
            data, name, ctype = fixture_docx(rng, tag), "doc.docx", DOCX_TYPE
        elif roll < 0.96:
            data, name, ctype = random_pdf(rng, tag, rng.randint(1_000, 300_000)), "noise.pdf", "application/pdf"
        else:
            data, name, ctype = random_pdf(rng, tag, PART_SIZE + rng.randint(1, 2 << 20)), "big.pdf", "application/pdf"
        key = "chaos-up-%016x" % rng.getrandbits(64) if rng.random() < 0.5 else None
        up = Upload(user, data, key)
        with self.lock:
            self.uploads.append(up)
            self.by_sha[up.sha] = up
        body = multipart(data, name, ctype)
        headers = {"Content-Type": "multipart/form-data; boundary=" + BOUNDARY}
        if key:
            headers["Idempotency-Key"] = key
        # Without a key: one try. With one: retried after a failure, as a
        # client that lost its answer would, and once more after an answer.
        # A key still without an answer is tried again once everything is
        # up (unresolved_uploads).
        tries = 1 if key is None else 8
        replays = 0
        for _ in range(tries):
            answer = self.attempt_upload(client, up, body, headers)
            if key:
                if not retry_later(answer):
                    replays += 1
                    if replays == 2:
                        break
                    continue
                time.sleep(rng.uniform(0.2, 0.8))
        if key and not replays:
            with self.lock:
                self.unresolved.append((up, body, headers))

    def attempt_upload(self, client, up, body, headers):
        started = time.monotonic()
        answer = self.send(client, "POST", "/documents", body, headers)
        up.answers.append((answer and answer[0], answer and answer[2], started, time.monotonic()))
        self.count("upload", answer)
        if answer is not None and answer[0] == 201:
            doc = json.loads(answer[2])
            with self.lock:
                if up.doc_id is None:
                    up.doc_id = doc["id"]
                    self.docs[doc["id"]] = up
                elif up.doc_id != doc["id"]:
                    self.violations.append("upload %s with key %s: 201 for %s, then for %s" % (
                        up.sha[:12], up.key, up.doc_id, doc["id"]))
            if doc["sha256"] != up.sha:
                self.violation("upload %s answered sha256 %s" % (up.sha, doc["sha256"]))
        if up.key:
            self.keys[(up.user, up.key)].append(answer and (answer[0], answer[2]))
        return answer

    def unresolved_uploads(self, where):
        """Sends every keyed upload that never got an answer to keep (5xx,
        409 in flight, no answer) once more, now that everything is up, as
        docs/api.md tells a client to (a 503 may have committed): it must
        get 201, the first document's if there was one."""
        tokens = dict(self.users)
        for up, body, headers in self.unresolved:
            client = Client(self.cluster.port, tokens[up.user])
            try:
                for _ in range(10):
                    answer = self.attempt_upload(client, up, body, headers)
                    if not retry_later(answer):
                        break
                    time.sleep(1)  # a claim left in flight lapses after 3 s
            finally:
                client.close()
            if answer is None or answer[0] != 201:
                self.violation("%s: upload %s retried with key %s once everything was up: %s" % (
                    where, up.sha[:12], up.key, answer and (answer[0], answer[2][:200])))
        return len(self.unresolved)

    def process(self, rng, client, user):
        doc_id = self.known_doc(rng, user)
        if doc_id is None:
            return
        with self.lock:
            self.processed.append(doc_id)
        key = "chaos-pr-%016x" % rng.getrandbits(64) if rng.random() < 0.5 else None
        headers = {"Idempotency-Key": key} if key else None
        for _ in range(1 if key is None else 3):
            answer = self.send(client, "POST", "/documents/%s/process" % doc_id, b"", headers)
            self.count("process", answer)
            if key:
                self.keys[(user, key)].append(answer and (answer[0], answer[2]))
                if retry_later(answer):
                    time.sleep(rng.uniform(0.1, 0.5))

    def cancel(self, rng, client, user):
        doc_id = self.known_doc(rng, user)
        if doc_id is not None:
            self.count("cancel", self.send(client, "POST", "/documents/%s/cancel" % doc_id, b""))

    def delete(self, rng, client, user):
        doc_id = self.known_doc(rng, user)
        if doc_id is None:
            return
        with self.lock:
            self.delete_asked.add(doc_id)
        answer = self.send(client, "DELETE", "/documents/" + doc_id)
        self.count("delete", answer)
        # Only its owner deletes it, and it existed: a 404 means an earlier
        # delete did (or this one, on the node nginx tried first).
        if answer is not None and answer[0] in (204, 404):
            with self.lock:
                self.deleted.add(doc_id)

    def download(self, rng, client, user):
        doc_id = self.known_doc(rng, user)
        if doc_id is None:
            return
        answer = self.send(client, "GET", "/documents/%s/content" % doc_id)
        self.count("download", answer)
        if answer is not None and answer[0] == 200 and sha256(answer[2]) != self.docs[doc_id].sha:
            self.violation("download of %s during the chaos: wrong bytes" % doc_id)

    def client_loop(self, index):
        rng = random.Random(self.seed * 1000 + index)
        user, token = self.users[index % len(self.users)]
        client = Client(self.cluster.port, token)
        steps = (self.upload, self.process, self.cancel, self.delete, self.download)
        weights = (5, 4, 1, 1, 3)
        n = 0
        try:
            while not self.stop.is_set():
                step = rng.choices(steps, weights)[0]
                n += 1
                if step == self.upload:
                    self.upload(rng, client, user, n)
                else:
                    step(rng, client, user)
                time.sleep(rng.uniform(0, 0.2))
        except Exception as e:  # a bug in the test: fail, do not hide it
            self.errors.append("client %d: %r" % (index, e))
            raise
        finally:
            client.close()

    # ---- event streams

    def follow(self, rng, stream, token):
        """Reads `stream` until a terminal status, a 404 or STREAM_BOUND,
        disconnecting at random moments and reconnecting with
        Last-Event-ID on a new connection."""
        deadline = time.monotonic() + STREAM_BOUND
        while time.monotonic() < deadline and not self.stop.is_set():
            headers = {"Authorization": "Bearer " + token}
            if stream.seen:
                headers["Last-Event-ID"] = str(stream.seen[-1][0])
            conn = http.client.HTTPConnection("127.0.0.1", self.cluster.port, timeout=REQUEST_BOUND)
            try:
                conn.request("GET", "/documents/%s/events" % stream.doc_id, headers=headers)
                r = conn.getresponse()
                if r.status != 200:
                    self.count("stream", (r.status,))
                    if r.status == 500:
                        self.violation("the stream of %s answered 500" % stream.doc_id)
                    if r.status == 404:
                        return
                    time.sleep(0.3)
                    continue
                stream.connections += 1
                self.count("stream", (200,))
                cut_at = time.monotonic() + rng.uniform(0.2, 3.0)
                ended = self.read_events(r, conn, stream, cut_at)
                if ended:
                    return
            except (OSError, http.client.HTTPException):
                self.count("stream", None)
                time.sleep(0.2)
            finally:
                conn.close()

    def read_events(self, r, conn, stream, cut_at):
        """Reads events until `cut_at`; True once a terminal status came."""
        event_id, kind, data = None, None, None
        while True:
            left = cut_at - time.monotonic()
            if left <= 0:
                return False
            conn.sock.settimeout(left)
            try:
                line = r.readline()
            except TimeoutError:
                return False
            if not line:
                return False  # the server ended it (a restart): reconnect
            line = line.rstrip(b"\r\n").decode()
            if line.startswith("id:"):
                event_id = int(line[3:].strip())
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
            elif line == "" and data is not None:
                # A progress event is one of a PROCESSING document, as the database records it.
                status = data["status"] if kind == "status" else "PROCESSING"
                stream.seen.append((event_id, status))
                if status in TERMINAL:
                    return True
                event_id, kind, data = None, None, None

    def stream_loop(self, index):
        rng = random.Random(self.seed * 1000 + 500 + index)
        tokens = dict(self.users)
        try:
            while not self.stop.is_set():
                with self.lock:
                    recent = [d for d in self.processed[-20:] if d not in self.deleted]
                if not recent:
                    time.sleep(0.2)
                    continue
                doc_id = rng.choice(recent)
                stream = Stream(self.docs[doc_id].user, doc_id)
                with self.lock:
                    self.streams.append(stream)
                self.follow(rng, stream, tokens[stream.user])
        except Exception as e:
            self.errors.append("streamer %d: %r" % (index, e))
            raise

    # ---- chaos

    def open_job(self, worker, since):
        """Whether `worker` has claimed a job it has not finished in the run
        whose log begins at offset `since`."""
        last = {}
        with open(worker.log_path, "rb") as f:
            f.seek(since)
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("job_id") and (e.get("event") == "job.claimed" or e.get("event") in JOB_ENDS):
                    last[e["job_id"]] = e["event"]
        return any(v == "job.claimed" for v in last.values())

    def restart_later(self, p):
        """Starts `p` again a second after its kill, while the chaos goes on.
        A process that cannot reach PostgreSQL as it starts (restarting
        meanwhile) exits 1; like systemd (the units' Restart=on-failure,
        RestartSec=1s), this starts it again a second later."""
        killed = time.monotonic()

        def run():
            try:
                for tries in itertools.count(1):
                    time.sleep(max(0.0, killed + tries - time.monotonic()))
                    if p in self.cluster.workers:
                        self.test.log_offsets[p.name] = os.path.getsize(p.log_path)
                    try:
                        p.start()
                        break
                    except RuntimeError:
                        if p.running or tries == START_TRIES:
                            raise
                        with self.lock:
                            self.outcomes["process exited as it started, started again"] += 1
            except Exception as e:
                self.errors.append("restarting %s: %r" % (p.name, e))
            finally:
                with self.lock:
                    self.down.discard(p.name)

        self.test.restarter.submit(run)

    def chaos_loop(self, kills):
        rng = random.Random(self.seed)
        c = self.cluster
        kinds = ("serve", "worker", "postgres", "s3")
        weights = (45, 35, 10, 10)
        last_serve_kill = -NGINX_FAIL_TIMEOUT
        try:
            while len(self.chaos_events) < kills:
                time.sleep(rng.uniform(0.1, 0.8))
                kind = rng.choices(kinds, weights)[0]
                with self.lock:
                    down = set(self.down)
                started = time.monotonic()
                # One serve down at a time, and not again before nginx
                # tries the last one killed again (fail_timeout): with both
                # left alone, nginx answers nothing but 502. Workers: either
                # or both.
                if kind == "serve" and (any(p.name in down for p in c.serves) or
                                        time.monotonic() < last_serve_kill + NGINX_FAIL_TIMEOUT):
                    kind = "worker"
                if kind in ("serve", "worker"):
                    up = [p for p in (c.serves if kind == "serve" else c.workers) if p.name not in down]
                    if not up:
                        continue
                    p = rng.choice(up)
                    if kind == "worker":
                        # Mid-job: wait (a little) for it to hold a job.
                        offset = self.test.log_offsets[p.name]
                        deadline = time.monotonic() + 2
                        while not self.open_job(p, offset) and time.monotonic() < deadline:
                            time.sleep(0.1)
                        kind = "worker mid-job" if self.open_job(p, offset) else "worker idle"
                    with self.lock:
                        self.down.add(p.name)
                    p.kill()
                    if kind == "serve":
                        last_serve_kill = time.monotonic()
                    self.restart_later(p)
                elif kind == "postgres":
                    mode = rng.choice(("fast", "immediate"))
                    kind = "postgres " + mode
                    c.restart_postgres(mode)
                else:
                    c.restart_s3()
                self.chaos_events.append((kind, started, time.monotonic()))
        except Exception as e:
            self.errors.append("chaos: %r" % e)
            raise
        finally:
            self.stop.set()
            self.test.restarter.submit(lambda: None).result()  # every restart done

    def run(self, kills):
        for i in range(USERS):
            name = "chaos-%d-%d" % (self.seed, i)
            self.users.append((name, new_user(self.cluster.port)))
        threads = [threading.Thread(target=self.client_loop, args=(i,)) for i in range(CLIENTS)]
        threads += [threading.Thread(target=self.stream_loop, args=(i,)) for i in range(STREAMERS)]
        for t in threads:
            t.start()
        chaos = threading.Thread(target=self.chaos_loop, args=(kills,))
        time.sleep(1)  # some documents exist and jobs run
        chaos.start()
        chaos.join()
        for t in threads:
            t.join(REQUEST_BOUND * 6)
            if t.is_alive():
                self.errors.append("a client thread hangs")


class ClusterChaosTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = cluster.Cluster(serve=2, workers=2, worker_threads=2, env={
            # Jobs long enough to be killed in the middle.
            "DOCFLOW_SIMULATED_DELAY_MS": "700",
            # A dead worker's job is taken over within seconds, and a worker
            # that only stalled (PostgreSQL restarting) can lose its lease
            # to another: fencing at work.
            "DOCFLOW_JOB_LEASE": "4s",
            # A key left in flight by a killed serve is taken over by a
            # retry within the seconds a client keeps retrying; so may one
            # whose first request is still running (then fenced out).
            "DOCFLOW_IDEMPOTENCY_CLAIM_TIMEOUT": "3s",
            "DOCFLOW_S3_PART_SIZE": "5MiB",
            "DOCFLOW_SIGNUP_MAX_PER_ADDRESS": "100000",
        })
        cls.log_offsets = {p.name: 0 for p in cls.cluster.workers}
        # A process gets SIGKILL when the thread that started it ends
        # (cluster.py sets PR_SET_PDEATHSIG, which is per thread): restarts
        # run on one thread that lasts as long as the cluster.
        cls.restarter = concurrent.futures.ThreadPoolExecutor(1)
        cls.db = cls.cluster.database_url.rsplit("/", 1)[1]

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        cls.restarter.shutdown()

    def keep_logs(self):
        """Copies every process's log out of the cluster (which close()
        removes) and says where."""
        kept = tempfile.mkdtemp(prefix="docflow-chaos-logs-")
        shutil.copytree(os.path.join(self.cluster.dir, "logs"), kept, dirs_exist_ok=True)
        print("chaos: the cluster's logs are in %s" % kept, file=sys.stderr)

    def sql(self, statement):
        out = self.cluster.pg.psql(statement, database=self.db)
        return [line.split("|") for line in out.splitlines() if line]

    def test_chaos(self):
        began = time.monotonic()
        totals = collections.Counter()
        figures = collections.Counter()
        try:
            for i in range(ITERATIONS):
                seed = SEED + i
                it = Iteration(self, seed)
                started = time.monotonic()
                try:
                    it.run(KILLS)
                finally:
                    for kind, _, _ in it.chaos_events:
                        totals["kill: " + kind] += 1
                    totals.update(it.outcomes)
                figures["seconds of chaos"] += time.monotonic() - started
                where = "seed %d (iteration %d of %d; replay: DOCFLOW_CHAOS_SEED=%d DOCFLOW_CHAOS_ITERATIONS=1)" % (
                    seed, i + 1, ITERATIONS, seed)
                self.assertEqual(it.errors, [], where)
                started = time.monotonic()
                self.everything_up()
                self.drain(where)
                figures["seconds to drain"] += time.monotonic() - started
                started = time.monotonic()
                self.check(it, where, figures)
                self.check_storage(where, figures)
                figures["seconds of checks"] += time.monotonic() - started
                self.assertEqual(it.violations, [], where)
            self.check_streams_crossed_nodes("seed %d, %d iterations" % (SEED, ITERATIONS), figures)
        except BaseException:
            self.keep_logs()
            raise
        else:
            if os.environ.get("DOCFLOW_CHAOS_KEEP_LOGS"):
                self.keep_logs()
        finally:
            self.report(totals, figures, time.monotonic() - began)

    # ---- after the chaos

    def everything_up(self):
        for p in self.cluster.processes:
            if not p.running:
                if p in self.cluster.workers:
                    self.log_offsets[p.name] = os.path.getsize(p.log_path)
                p.start()
            p.wait_ready()
        # nginx leaves a node that failed alone for fail_timeout (5 s), and
        # answers 502 when it has none left: up once it passes a round of
        # requests to every node.
        in_a_row = 0
        deadline = time.monotonic() + cluster.START_TIMEOUT
        while in_a_row < 2 * len(self.cluster.serves):
            in_a_row = in_a_row + 1 if cluster.answers(self.cluster.url + "/readyz") else 0
            if time.monotonic() > deadline:
                self.fail("nginx does not pass requests on after the chaos")
            time.sleep(0.1)

    def drain(self, where):
        deadline = time.monotonic() + DRAIN_BOUND
        while True:
            left = self.sql("SELECT (SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')),"
                            " (SELECT count(*) FROM documents WHERE status = 'PROCESSING')")
            if left == [["0", "0"]]:
                return
            if time.monotonic() > deadline:
                self.fail("%s: the queue did not drain (jobs live, documents PROCESSING: %s)" % (where, left))
            time.sleep(0.5)

    def listing(self, token):
        c = Client(self.cluster.port, token)
        docs, cursor = {}, None
        try:
            while True:
                path = "/documents?limit=200" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
                status, body = c.json("GET", path)
                self.assertEqual(status, 200, body)
                for d in body["items"]:
                    docs[d["id"]] = d
                cursor = body["next_cursor"]
                if not cursor:
                    return docs
        finally:
            c.close()

    def during_postgres_restart(self, it, started, ended):
        """Whether a request overlapped a PostgreSQL restart, or the seconds
        after it while the pools reconnect (their backoff)."""
        return any(k.startswith("postgres") and s <= ended and e + POOL_BACKOFF >= started
                   for k, s, e in it.chaos_events)

    def check(self, it, where, figures):
        v = it.violations
        figures["uploads retried with their key once everything was up"] += it.unresolved_uploads(where)
        listed = {}
        for user, token in it.users:
            for doc_id, d in self.listing(token).items():
                listed[doc_id] = (user, d)

        # Every listed document is one upload's, at most one per upload.
        per_upload = collections.Counter()
        for doc_id, (user, d) in listed.items():
            up = it.by_sha.get(d["sha256"])
            if up is None or up.user != user:
                v.append("%s: document %s matches no upload of its owner" % (where, doc_id))
                continue
            per_upload[up.sha] += 1
            if d["status"] not in ("UPLOADED",) + TERMINAL:
                v.append("%s: document %s is %s after the drain" % (where, doc_id, d["status"]))
            if doc_id in it.deleted:
                v.append("%s: document %s was deleted (204) and is listed" % (where, doc_id))
        for sha, n in per_upload.items():
            if n > 1:
                v.append("%s: upload %s (key %s) made %d documents" % (where, sha[:12], it.by_sha[sha].key, n))

        # Every upload is accounted for.
        by_sha = collections.defaultdict(list)
        for doc_id, (_, d) in listed.items():
            by_sha[d["sha256"]].append(doc_id)
        classes = collections.Counter()
        for up in it.uploads:
            exists = by_sha.get(up.sha, [])
            statuses = [a[0] for a in up.answers]
            if up.doc_id is not None:
                classes["acknowledged"] += 1
                if up.doc_id in it.deleted or (up.doc_id in it.delete_asked and not exists):
                    classes["deleted"] += 1
                elif exists != [up.doc_id]:
                    v.append("%s: upload %s answered 201 %s is lost (listed: %s)" % (where, up.sha[:12], up.doc_id,
                                                                                 exists))
            elif None in statuses or 502 in statuses or 504 in statuses:
                classes["answer lost, %s" % ("exists" if exists else "absent")] += 1
            elif exists:
                committed_in_restart = all(s == 503 and self.during_postgres_restart(it, a[2], a[3])
                                           for s, a in zip(statuses, up.answers))
                if committed_in_restart:
                    classes["503 as PostgreSQL restarted, exists"] += 1
                else:
                    v.append("%s: upload %s answered %s left document %s" % (where, up.sha[:12], statuses,
                                                                             exists))
            else:
                classes["refused, absent"] += 1
        figures.update({"uploads " + k: n for k, n in classes.items()})

        # Every document's bytes, through nginx (which picks a node for
        # each request), several times, a few documents at once.
        tokens = dict(it.users)

        def downloads(doc_id, user, up):
            c = Client(self.cluster.port, tokens[user])
            try:
                for _ in range(3):
                    # A node nginx still leaves alone (502) is no loss; a
                    # missing object would be 503 every time.
                    for _ in range(5):
                        status, _, body = c.request("GET", "/documents/%s/content" % doc_id)
                        if status not in (502, 503):
                            break
                        time.sleep(1)
                    if status != 200 or sha256(body) != up.sha:
                        return "%s: %s downloads as %d with SHA-256 %s, uploaded %s" % (
                            where, doc_id, status, sha256(body) if status == 200 else "-", up.sha)
            finally:
                c.close()
            return None

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            found = pool.map(lambda item: downloads(item[0], item[1][0], it.by_sha[item[1][1]["sha256"]]),
                             [(doc_id, ud) for doc_id, ud in listed.items() if ud[1]["sha256"] in it.by_sha])
            v.extend(f for f in found if f)
        figures["documents"] += len(listed)
        figures["documents COMPLETED"] += sum(1 for _, d in listed.values() if d["status"] == "COMPLETED")
        figures["documents FAILED"] += sum(1 for _, d in listed.values() if d["status"] == "FAILED")
        figures["documents deleted"] += len(it.deleted)

        # Idempotency-Key: one answer per key.
        replayed = 0
        for (user, key), answers in it.keys.items():
            final = [a for a in answers if not retry_later(a and (a[0], {}, a[1]))]
            if any(a != final[0] for a in final[1:]):
                v.append("%s: key %s answered %s" % (where, key, [(a[0], a[1][:120]) for a in final]))
            replayed += max(0, len(final) - 1)
            figures["keys never answered to keep (process keys)"] += 0 if final else 1
        figures["keys"] += len(it.keys)
        figures["key retries that got the first answer"] += replayed

        self.check_events(it, where, listed, figures)

    def check_events(self, it, where, listed, figures):
        v = it.violations
        events = collections.defaultdict(list)
        progress = set()
        for doc_id, seq, status, kind in self.sql("SELECT document_id, seq, status, kind FROM document_events"
                                                  " ORDER BY document_id, seq"):
            events[doc_id].append((int(seq), status))
            if kind == "progress":
                progress.add((doc_id, int(seq)))
        last = dict((row[0], (int(row[1]), row[2])) for row in self.sql("SELECT id, last_event_seq, status"
                                                                        " FROM documents"))
        results = {row[0] for row in self.sql("SELECT document_id FROM results")}
        logged = collections.Counter()
        abandoned = 0
        for p in self.cluster.workers:
            for e in p.log_events():
                if e.get("event") == "document.completed":
                    logged[e["document_id"]] += 1
                elif e.get("event") == "job.abandoned":
                    abandoned += 1
        for doc_id in listed:
            seqs = events.get(doc_id, [])
            if [s for s, _ in seqs] != list(range(1, len(seqs) + 1)) or len(seqs) != last[doc_id][0]:
                v.append("%s: %s has events %s, last_event_seq %d" % (where, doc_id, seqs, last[doc_id][0]))
                continue
            before = None
            for seq, status in seqs:
                if (doc_id, seq) in progress:
                    if before != "PROCESSING":
                        v.append("%s: %s reported progress while %s: %s" % (where, doc_id, before, seqs))
                        break
                    continue
                if status not in MOVES[before]:
                    v.append("%s: %s moved %s -> %s: %s" % (where, doc_id, before, status, seqs))
                    break
                before = status
            if before != last[doc_id][1]:
                v.append("%s: %s is %s, its last event %s" % (where, doc_id, last[doc_id][1], before))
            completions = sum(1 for _, s in seqs if s == "COMPLETED")
            if completions > 1:
                v.append("%s: %s completed %d times" % (where, doc_id, completions))
            if (completions == 1) != (doc_id in results):
                v.append("%s: %s has %d completions and %s result" % (where, doc_id, completions,
                                                                      "a" if doc_id in results else "no"))
            if logged[doc_id] > completions:
                v.append("%s: workers logged %d completions of %s, the store accepted %d" % (
                    where, logged[doc_id], doc_id, completions))
            figures["completions accepted"] += completions

        # Streams: consecutive ids, each as the database has it. A fresh
        # stream begins with the current status and the latest progress
        # event, so the progress events between those two are skipped.
        for s in it.streams:
            ids = [i for i, _ in s.seen]
            rest = ids[1:]
            skipped = set(range(ids[0] + 1, rest[0])) if rest else set()
            gap = rest and (rest != list(range(rest[0], rest[0] + len(rest))) or rest[0] <= ids[0])
            # A deleted document's events are gone: its skipped ids cannot be checked.
            if gap or (s.doc_id in listed and any((s.doc_id, i) not in progress for i in skipped)):
                v.append("%s: the stream of %s saw ids %s" % (where, s.doc_id, ids))
            if s.doc_id in listed:
                held = dict(events[s.doc_id])
                for i, status in s.seen:
                    if held.get(i) != status:
                        v.append("%s: the stream of %s saw %d %s, the database has %s" % (
                            where, s.doc_id, i, status, held.get(i)))
            figures["streams"] += 1
            figures["stream events"] += len(s.seen)
            figures["stream reconnects"] += max(0, s.connections - 1)
        figures["jobs abandoned, lease lost to a takeover or a cancel (job.abandoned)"] = abandoned

    def check_storage(self, where, figures):
        """After one maintenance pass, the bucket holds exactly the rows'
        objects and no incomplete multipart upload."""
        self.cluster.maintenance(min_age="0s")
        client = self.cluster.s3.client()
        keys = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.cluster.bucket,
                                                                      Prefix=cluster.S3_PREFIX):
            keys.update(o["Key"] for o in page.get("Contents", []))
        rows = {"%s/%s" % (cluster.S3_PREFIX, row[0]) for row in self.sql("SELECT id FROM documents")}
        uploads = client.list_multipart_uploads(Bucket=self.cluster.bucket).get("Uploads", [])
        self.assertEqual(sorted(keys - rows), [], "%s: objects without a row" % where)
        self.assertEqual(sorted(rows - keys), [], "%s: rows without an object" % where)
        self.assertEqual([u["Key"] for u in uploads], [], "%s: incomplete multipart uploads" % where)
        figures["objects"] = len(keys)

    def check_streams_crossed_nodes(self, where, figures):
        # Stream connections nginx handed to each serve node, per document.
        nodes = collections.defaultdict(set)
        with open(self.cluster.nginx.access_log, errors="replace") as f:
            for line in f:
                m = re.search(r'"GET /documents/([0-9a-f-]+)/events HTTP/1.1" 200 .*upstream=(\S+)', line)
                if m:
                    nodes[m.group(1)].add(m.group(2))
        crossed = sum(1 for n in nodes.values() if len(n) > 1)
        figures["streams served by both serve nodes"] = crossed
        self.assertGreater(crossed, 0, "%s: no stream reconnected through another node" % where)

    def report(self, totals, figures, seconds):
        kills = {k: n for k, n in totals.items() if k.startswith("kill: ")}
        lines = ["chaos: seed %d, %d iterations, %.0f s, %d chaos events" % (SEED, ITERATIONS, seconds,
                                                                             sum(kills.values()))]
        lines += ["  %s: %d" % (k, n) for k, n in sorted(kills.items())]
        lines += ["  %s: %d" % (k, n) for k, n in sorted(totals.items()) if not k.startswith("kill: ")]
        lines += ["  %s: %d" % (k, n) for k, n in sorted(figures.items())]
        print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
