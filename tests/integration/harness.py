"""Shared helpers for the black-box integration tests.

Every test starts the real `docflow` binary (DOCFLOW_BIN, set by CTest) on
127.0.0.1:0 with a fresh data directory and talks to it over real sockets.

- start_server(**env) -> Server: runs `docflow serve`, waits for the
  `server.listening` log line, keeps every stdout/stderr line.
- start_worker(**env) -> Server: the same for `docflow worker`, which
  listens (for /healthz, /readyz and /metrics) only with
  DOCFLOW_WORKER_LISTEN; without it, `port` is None.
- Server.request(...): one request through http.client.
- RawConnection / raw_request(...): exact bytes on a socket, for what
  http.client would refuse to send or would hide (pipelining, bad heads,
  interim 100 responses, timeouts).
- wait_closed(sock, timeout): did the server close the connection in time?
- run_cli(args, **env): runs a one-shot command (version, migrate, ...).
- ServerTestCase: a TestCase whose servers and sockets are always cleaned up.

The storage: the local directory (<data>/blobs), or S3 when
DOCFLOW_TEST_STORAGE=s3 (with PostgreSQL, in CTest's `.postgres` instances):
then one private radosgw (s3.shared()) per test process holds one bucket per
data directory, objects under docs/.
- STORAGE: "file" or "s3".
- stored_blobs(data_dir): what the store holds for `data_dir`, on either.

The engine: SQLite (a docflow.db in the data directory), or PostgreSQL
when DOCFLOW_TEST_DATABASE=postgres (CTest's `.postgres` instances of each
suite). Then one private server (pg.PostgresServer) per test process,
started on first use, holds one database per data directory, so that a
test that starts `serve` again on the same directory finds its data again.
- ENGINE: "sqlite" or "postgres".
- run_sql(data_dir, statement): a look behind the service, on either engine.
- only_on(engine or storage, reason=...): a test (or class) about one
  engine or one storage, left out on the other.

No wait here is unbounded, and every process started is killed at the
latest when the test (or, failing that, the interpreter) ends.
"""
import atexit
import gzip
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import pg
import s3

BIN = os.environ.get("DOCFLOW_BIN") or "/work/main/build-it/src/docflow"
JWT_SECRET = "integration-test-secret-0123456789abcdef"  # 40 bytes
assert len(JWT_SECRET) == 40

START_TIMEOUT = 15.0  # seconds for `serve` to log server.listening
IO_TIMEOUT = 5.0  # default bound on one socket read
EXIT_TIMEOUT = 10.0  # bound on a process exiting after a signal

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The first line of a report from ASan, LSan, UBSan or TSan (make test-asan,
# make test-tsan). A server that reports stops (-fno-sanitize-recover), but a
# report after a test's last request would otherwise go unseen.
SANITIZER_REPORT_RE = re.compile(
    r"==\d+==ERROR: \w+Sanitizer|WARNING: ThreadSanitizer|Sanitizer: CHECK failed|: runtime error: ")

_live_processes = []  # every Popen not yet reaped, killed at exit as a last resort


def _kill_leftovers():
    for proc in list(_live_processes):
        _kill(proc)


atexit.register(_kill_leftovers)


def _kill(proc):
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    if proc in _live_processes:
        _live_processes.remove(proc)


# --------------------------------------------------------------------------
# The database engine

ENGINES = ("sqlite", "postgres")
ENGINE = os.environ.get("DOCFLOW_TEST_DATABASE") or "sqlite"
if ENGINE not in ENGINES:
    raise SystemExit("DOCFLOW_TEST_DATABASE=%r: expected one of %s" % (ENGINE, ", ".join(ENGINES)))

STORAGES = ("file", "s3")
STORAGE = os.environ.get("DOCFLOW_TEST_STORAGE") or "file"
if STORAGE not in STORAGES:
    raise SystemExit("DOCFLOW_TEST_STORAGE=%r: expected one of %s" % (STORAGE, ", ".join(STORAGES)))
S3_PREFIX = "docs/"

_postgres = None  # this process's server, started by the first test that needs it
_databases = {}  # data directory -> the URL of its database
_buckets = {}  # data directory -> its bucket on s3.shared()
_databases_lock = threading.Lock()  # tests start servers from threads too


def postgres_server():
    """The PostgreSQL server of this test process (stopped at exit by pg)."""
    global _postgres
    with _databases_lock:
        if _postgres is None:
            _postgres = pg.PostgresServer()
        return _postgres


def database_url(data_dir):
    """The database of `data_dir` on PostgreSQL: the same one for every
    process started on that directory, a fresh one for a new directory."""
    server = postgres_server()
    key = os.path.realpath(data_dir)
    with _databases_lock:
        if key not in _databases:
            _databases[key] = server.create_database()
        return _databases[key]


def s3_bucket(data_dir):
    """The bucket of `data_dir` on this process's S3 server: the same one for
    every process started on that directory, a fresh one for a new one."""
    server = s3.shared()
    key = os.path.realpath(data_dir)
    with _databases_lock:
        if key not in _buckets:
            _buckets[key] = server.create_bucket()
        return _buckets[key]


def s3_storage_env(bucket, **settings):
    """The settings that put docflow's blobs in `bucket` on this process's S3
    server, under S3_PREFIX; `settings` are further query parameters."""
    server = s3.shared()
    query = {"endpoint": server.endpoint, "region": server.region, "path_style": "true"}
    query.update(settings)
    return {
        "DOCFLOW_STORAGE_URL": "s3://%s/%s?%s" % (bucket, S3_PREFIX.rstrip("/"), urllib.parse.urlencode(query)),
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
    }


def stored_blobs(data_dir):
    """What the store of `data_dir` holds, sorted: on the local disk every
    file under <data>/blobs (relative paths); on S3 every object under
    S3_PREFIX and every multipart upload not yet completed or aborted
    ("incomplete:<key>"). A finished upload of document D shows as a name
    ending in D on both."""
    if STORAGE == "file":
        root = os.path.join(data_dir, "blobs")
        out = []
        for dirpath, _, files in os.walk(root):
            out.extend(os.path.relpath(os.path.join(dirpath, f), root) for f in files)
        return sorted(out)
    client = s3.shared().client()
    bucket = s3_bucket(data_dir)
    objects = client.list_objects_v2(Bucket=bucket, Prefix=S3_PREFIX).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=S3_PREFIX).get("Uploads", [])
    return sorted([o["Key"] for o in objects] + ["incomplete:" + u["Key"] for u in uploads])


def run_sql(data_dir, statement):
    """Runs one SQL statement on the database of `data_dir`, as a test looks
    behind the service; returns the rows, each a list of strings."""
    if ENGINE == "postgres":
        database = database_url(data_dir).rsplit("/", 1)[1]
        return [line.split("|") for line in postgres_server().psql(statement, database).splitlines()]
    db = sqlite3.connect(os.path.join(data_dir, "docflow.db"))
    try:
        with db:  # commits
            return [[str(v) for v in row] for row in db.execute(statement).fetchall()]
    finally:
        db.close()


def only_on(where, reason):
    """A test method or class that runs on one engine or one storage only
    (`where`: "sqlite", "postgres", "file" or "s3"); `reason` says why it
    means nothing (or something else) on the other. Elsewhere it is left out
    where it is defined (its name is bound to None, which no test loader
    collects), so it stays out however the suite is run; stderr names it."""
    assert where in ENGINES + STORAGES, where
    current = ENGINE if where in ENGINES else STORAGE

    def mark(test):
        if where == current:
            return test
        sys.stderr.write("not on %s: %s.%s (%s)\n" % (current, test.__module__, test.__qualname__, reason))
        return None

    return mark


def build_env(data_dir, env):
    """The process environment: ours minus every DOCFLOW_* variable, plus the
    test defaults, plus `env` (a value of None removes the variable). The
    suites' own DOCFLOW_BIN, DOCFLOW_REPO and DOCFLOW_CONTRACT_* are dropped
    with the settings, or docflow would warn that they are not settings.
    On PostgreSQL the defaults name the data directory's database and turn
    DOCFLOW_AUTO_MIGRATE on, as SQLite's default is; a test of the
    PostgreSQL default passes None. On S3 they name the data directory's
    bucket and the server's credentials."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("DOCFLOW_")}
    out["DOCFLOW_LISTEN"] = "127.0.0.1:0"
    out["DOCFLOW_DATA_DIR"] = data_dir
    out["DOCFLOW_JWT_SECRET"] = JWT_SECRET
    if ENGINE == "postgres":
        if "DOCFLOW_DATABASE_URL" not in env:
            out["DOCFLOW_DATABASE_URL"] = database_url(data_dir)
        out["DOCFLOW_AUTO_MIGRATE"] = "on"
    if STORAGE == "s3" and "DOCFLOW_STORAGE_URL" not in env:
        out.update(s3_storage_env(s3_bucket(data_dir)))
    # Every suite registers its users from 127.0.0.1; the per-address limit
    # has its own tests, which set it back.
    out["DOCFLOW_SIGNUP_MAX_PER_ADDRESS"] = "100000"
    for key, value in env.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = str(value)
    return out


# --------------------------------------------------------------------------
# Contract observations: every response the suites read through this module
# is appended, as one JSON line, to DOCFLOW_CONTRACT_LOG_DIR/<suite>.jsonl,
# where test_contract.py checks it against docs/openapi.json. Nothing is
# written when the variable is unset.

CONTRACT_LOG_DIR = os.environ.get("DOCFLOW_CONTRACT_LOG_DIR")
_CONTRACT_JSON_LIMIT = 1 << 20  # bigger bodies are noted as truncated, not parsed
_CONTRACT_TEXT_LIMIT = 64 * 1024
_contract_lock = threading.Lock()
_contract_path = None
# Enough of HTTP/1.1 framing to name the requests a RawConnection sends.
_REQUEST_LINE_RE = re.compile(rb"^([A-Za-z]+) (\S+) HTTP/\d\.\d$")
_CONTENT_LENGTH_RE = re.compile(rb"^content-length:[ \t]*([0-9]+)[ \t]*\r?$", re.I | re.M)
_TRANSFER_ENCODING_RE = re.compile(rb"^transfer-encoding:(.*?)\r?$", re.I | re.M)


def _contract_log_path():
    """The suite's file, emptied once per process: a suite run replaces its
    previous observations instead of adding to them. CTest names the suite;
    a process it did not start writes under its pid."""
    global _contract_path
    if _contract_path is None:
        os.makedirs(CONTRACT_LOG_DIR, exist_ok=True)
        name = os.environ.get("DOCFLOW_CONTRACT_SUITE") or str(os.getpid())
        _contract_path = os.path.join(CONTRACT_LOG_DIR, re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".jsonl")
        open(_contract_path, "w").close()
    return _contract_path


def record_exchange(method, target, res):
    """Notes one response (method and target None when the request line was
    not readable) for the contract test."""
    if not CONTRACT_LOG_DIR or res.status < 200:
        return
    entry = {
        "method": method,
        "path": target.split("?", 1)[0][:2048] if target is not None else None,
        "status": res.status,
        "content_type": res.header("Content-Type"),
        "headers": dict(res.headers),
    }
    media = res.content_type
    body = res.body
    if (res.header("Content-Encoding") or "").lower() == "gzip":
        body = gzip.decompress(body)  # what any client undoes before reading the JSON
    if media == "application/json" or media.endswith("+json"):
        if len(body) > _CONTRACT_JSON_LIMIT:
            entry["truncated"] = True
        elif body:
            try:
                entry["json"] = json.loads(body.decode("utf-8"))
            except ValueError as e:
                entry["json_error"] = str(e)
    elif media == "text/event-stream":
        entry["text"] = body[:_CONTRACT_TEXT_LIMIT].decode("utf-8", "replace")
    line = json.dumps(entry) + "\n"
    with _contract_lock:
        with open(_contract_log_path(), "a", encoding="utf-8") as f:
            f.write(line)


# --------------------------------------------------------------------------
# Responses


class Response:
    """One HTTP response: status, reason, headers (in order), body bytes."""

    def __init__(self, status, reason, headers, body, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.version = version

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def content_type(self):
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def closes(self):
        """True when the server announced it closes the connection."""
        return "close" in (self.header("Connection") or "").lower()

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %s %r %r>" % (self.status, self.reason, self.headers, self.body[:300])


class ConnectionClosed(AssertionError):
    """The server closed the connection before a complete response."""


class NoResponse(AssertionError):
    """The server sent no complete response in time."""


class RawConnection:
    """A client socket with a read buffer, speaking bytes."""

    def __init__(self, port, timeout=IO_TIMEOUT, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        # Requests sent and not answered yet, oldest first, as (method,
        # target): read from the bytes sent, so that raw requests are named
        # too. Once the framing is lost (a request that could not be read)
        # later requests go unnamed.
        self._requests = []
        self._unframed = b""  # sent bytes not yet framed into requests
        self._body_left = 0  # body (or chunk) bytes still to come
        self._chunked = False  # in a chunked body, between chunks
        self._framing_lost = False

    def _note_requests(self, data):
        if not CONTRACT_LOG_DIR or self._framing_lost:
            return
        buf = self._unframed + data
        while True:
            if self._body_left:
                skip = min(self._body_left, len(buf))
                buf, self._body_left = buf[skip:], self._body_left - skip
                if self._body_left:
                    break
            if self._chunked:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    break
                try:
                    size = int(buf[:eol].split(b";")[0].strip(), 16)
                except ValueError:
                    self._framing_lost = True
                    break
                if size:
                    buf, self._body_left = buf[eol + 2 :], size + 2  # the chunk and its CRLF
                    continue
                rest = buf[eol + 2 :]
                if rest.startswith(b"\r\n"):
                    after = 2
                else:
                    trailers = rest.find(b"\r\n\r\n")  # trailer fields end with an empty line
                    if trailers < 0:
                        break
                    after = trailers + 4
                buf, self._chunked = rest[after:], False
                continue
            buf = buf.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before a request are ignored
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 1 << 20:
                    self._framing_lost = True
                break
            head, buf = buf[:end], buf[end + 4 :]
            line = _REQUEST_LINE_RE.match(head.split(b"\r\n", 1)[0])
            if not line:
                self._requests.append((None, None))
                self._framing_lost = True
                break
            self._requests.append((line.group(1).decode("latin-1"), line.group(2).decode("latin-1")))
            lengths = _CONTENT_LENGTH_RE.findall(head)
            encoding = _TRANSFER_ENCODING_RE.findall(head)
            chunked = bool(encoding) and encoding[-1].split(b",")[-1].strip().lower() == b"chunked"
            if len(set(lengths)) > 1 or (encoding and (lengths or not chunked)):
                self._framing_lost = True  # the server refuses these and closes
                break
            self._chunked = bool(encoding)
            self._body_left = int(lengths[0]) if lengths else 0
        self._unframed = b"" if self._framing_lost else buf

    def send(self, data):
        """Sends all of `data`; returns False when the server already closed."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        self._note_requests(data)
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline):
        """Reads more bytes into buf; returns False at EOF/reset. Raises
        socket.timeout when the deadline passes."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, marker, deadline):
        while marker not in self.buf:
            if not self._fill(deadline):
                raise ConnectionClosed("connection closed before %r; buffered %r" % (marker, self.buf[:500]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionClosed("connection closed after %d of %d body bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head=False, timeout=None, interim=False):
        """Reads one response. `head`: it answers a HEAD request (no body).
        `interim`: return 1xx responses instead of skipping them. A response
        that does not arrive in time fails the test (NoResponse)."""
        timeout = timeout or self.timeout
        try:
            res = self._read_response(head, time.monotonic() + timeout, interim)
            if res.status >= 200:
                method, target = self._requests.pop(0) if self._requests else (None, None)
                record_exchange(method, target, res)
            return res
        except socket.timeout:
            raise NoResponse("no complete response within %.1fs; received %r" % (timeout, self.buf[:500])) from None

    def _read_response(self, head, deadline, interim):
        while True:
            raw = self._read_until(b"\r\n\r\n", deadline).decode("latin-1")
            lines = raw[:-4].split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise AssertionError("not an HTTP status line: %r" % lines[0])
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise AssertionError("malformed response header line: %r" % line)
                headers.append((name.strip(), value.strip()))
            res = Response(status, reason, headers, b"", parts[0])
            if 100 <= status < 200:
                if interim:
                    return res
                continue
            break
        if head or status in (204, 304):
            return res
        if "chunked" in (res.header("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size_line = self._read_until(b"\r\n", deadline)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass  # trailer fields
                    break
                body += self._read_exact(size, deadline)
                self._read_exact(2, deadline)
            res.body = body
        elif res.header("Content-Length") is not None:
            res.body = self._read_exact(int(res.header("Content-Length")), deadline)
        else:
            while self._fill(deadline):
                pass
            res.body, self.buf = self.buf, b""
        return res

    def request(self, method, path, headers=None, body=b"", timeout=None):
        """Sends one well-formed request and reads its response."""
        self.send(format_request(method, path, headers, body))
        return self.read_response(head=(method == "HEAD"), timeout=timeout)

    def wait_closed(self, timeout):
        return wait_closed(self, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def format_request(method, path, headers=None, body=b"", host="127.0.0.1"):
    """Builds request bytes; adds Host and, for a body, Content-Length."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = dict(headers or {})
    lower = {k.lower() for k in headers}
    if "host" not in lower:
        headers = {"Host": host, **headers}
    if body and "content-length" not in lower and "transfer-encoding" not in lower:
        headers["Content-Length"] = str(len(body))
    head = "%s %s HTTP/1.1\r\n" % (method, path)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


def wait_closed(conn, timeout):
    """True when the server closes (EOF or reset) within `timeout` seconds;
    bytes that arrive meanwhile are discarded (kept in conn.buf for a
    RawConnection). False if the connection is still open at the deadline."""
    if isinstance(conn, RawConnection):
        deadline = time.monotonic() + timeout
        try:
            while conn._fill(deadline):
                pass
            return True
        except socket.timeout:
            return False
    sock = conn
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True


def raw_request(port, data, head=False, timeout=IO_TIMEOUT):
    """Opens a connection, sends `data` (bytes, exactly), reads one response.
    Returns (response, connection); the caller closes the connection."""
    conn = RawConnection(port, timeout=timeout)
    try:
        conn.send(data)
        return conn.read_response(head=head, timeout=timeout), conn
    except BaseException:
        conn.close()
        raise


def connection_refused(port, timeout=2.0):
    """True when a TCP connect to the port is refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


# --------------------------------------------------------------------------
# Prometheus text


_SAMPLE_RE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
_LABEL_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """Returns {(name, frozenset(labels.items())): value} for every sample;
    raises AssertionError on a line that is not exposition format."""
    samples = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % line)
        labels = {}
        rest = m.group(3) or ""
        pos = 0
        while pos < len(rest):
            lm = _LABEL_RE.match(rest, pos)
            if not lm or lm.end() == pos:
                raise AssertionError("bad label set in %r" % line)
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return samples


def metric(samples, name, **labels):
    """The value of one sample, or None when it is absent."""
    return samples.get((name, frozenset(labels.items())))


# --------------------------------------------------------------------------
# The server process


class Server:
    """A running `docflow serve` (or `docflow worker`). Use start_server()
    or start_worker()."""

    def __init__(self, args=(), data_dir=None, nofile=None, command="serve", **env):
        """`nofile`: the server's RLIMIT_NOFILE, soft and hard (unchanged if None)."""
        self._own_dir = data_dir is None
        self.command = command
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="docflow-it-")
        self.env = build_env(self.data_dir, env)
        self.lines = []  # raw stdout lines
        self.stderr_lines = []
        self._cond = threading.Condition()
        self.port = None
        limit = None if nofile is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
        self.proc = subprocess.Popen(
            [BIN, command, *args],
            env=self.env,
            preexec_fn=limit,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _live_processes.append(self.proc)
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines), daemon=True),
        ]
        for t in self._threads:
            t.start()
        listens = command == "serve" or self.env.get("DOCFLOW_WORKER_LISTEN")
        ready = "server.listening" if listens else "workers.started"
        try:
            event = self.wait_for_log(lambda e: e.get("event") == ready, timeout=START_TIMEOUT)
        except AssertionError:
            self.cleanup()
            raise AssertionError(
                "docflow %s did not start (exit %r)\nstdout:\n%s\nstderr:\n%s"
                % (command, self.proc.returncode, "\n".join(self.lines), "\n".join(self.stderr_lines))
            )
        self.port = int(event["port"]) if listens else None

    def _pump(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self._cond:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    # ---- logs

    @property
    def events(self):
        """Every stdout line parsed as JSON (None for a line that is not)."""
        out = []
        with self._cond:
            lines = list(self.lines)
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append(None)
        return out

    def find_logs(self, pred=None, **fields):
        out = []
        for e in self.events:
            if isinstance(e, dict) and all(e.get(k) == v for k, v in fields.items()) and (pred is None or pred(e)):
                out.append(e)
        return out

    def wait_for_log(self, pred=None, timeout=IO_TIMEOUT, **fields):
        """Waits for a stdout JSON line matching `pred` and `fields`; returns it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.find_logs(pred, **fields)
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                exited = self.proc.poll() is not None and not any(t.is_alive() for t in self._threads)
                if remaining <= 0 or exited:
                    tail = "\n".join(self.lines[-30:])
                    why = "the process exited" if exited else "%.1fs passed" % timeout
                    raise AssertionError("no log line matching %r (%s); last lines:\n%s" % (fields, why, tail))
                self._cond.wait(min(remaining, 0.1))

    @property
    def stderr(self):
        with self._cond:
            return "\n".join(self.stderr_lines)

    # ---- requests

    def request(self, method, path, headers=None, body=None, timeout=IO_TIMEOUT):
        """One request on a fresh http.client connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            body = r.read()
            res = Response(r.status, r.reason, list(r.getheaders()), body)
            if self.command == "serve":  # docs/openapi.json describes serve, not a worker's endpoints
                record_exchange(method, path, res)
            return res
        finally:
            conn.close()

    def get(self, path, headers=None, **kw):
        return self.request("GET", path, headers=headers, **kw)

    def connect(self, timeout=IO_TIMEOUT):
        return RawConnection(self.port, timeout=timeout)

    def raw_request(self, data, head=False, timeout=IO_TIMEOUT):
        return raw_request(self.port, data, head=head, timeout=timeout)

    # ---- lifecycle

    def signal(self, signo):
        self.proc.send_signal(signo)

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        """The exit code; AssertionError (after killing it) if still running."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("docflow did not exit within %.1fs" % timeout)
        for t in self._threads:
            t.join(timeout=2)
        if self.proc in _live_processes:
            _live_processes.remove(self.proc)
        return code

    @property
    def running(self):
        return self.proc.poll() is None

    def kill(self):
        _kill(self.proc)
        for t in self._threads:
            t.join(timeout=2)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def cleanup(self, remove_data=None):
        """Kills the server and removes its data directory (its own, by
        default); AssertionError if it printed a sanitizer report."""
        self.kill()
        if remove_data if remove_data is not None else self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        with self._cond:
            stderr = list(self.stderr_lines)
        for i, line in enumerate(stderr):
            if SANITIZER_REPORT_RE.search(line):
                raise AssertionError("docflow printed a sanitizer report:\n" + "\n".join(stderr[i:i + 60]))


def start_server(*args, data_dir=None, nofile=None, **env):
    """Starts `docflow serve [args]` with the test defaults overridden by env
    (e.g. DOCFLOW_HEADER_TIMEOUT="300ms"; None unsets a variable)."""
    return Server(args=args, data_dir=data_dir, nofile=nofile, **env)


def start_worker(*args, data_dir=None, **env):
    """Starts `docflow worker [args]` like start_server; it waits for
    `server.listening` when DOCFLOW_WORKER_LISTEN is set, else for
    `workers.started`."""
    return Server(args=args, data_dir=data_dir, command="worker", **env)


def run_cli(args, data_dir=None, timeout=20.0, **env):
    """Runs `docflow ARGS` to completion (killed after `timeout`), returning
    the CompletedProcess with text stdout/stderr."""
    own = data_dir is None
    data_dir = data_dir or tempfile.mkdtemp(prefix="docflow-it-")
    try:
        return subprocess.run(
            [BIN, *args],
            env=build_env(data_dir, env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:  # run() has killed it
        stderr = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else e.stderr
        raise AssertionError(
            "docflow %s was still running after %.1fs (killed); stderr: %s" % (" ".join(args), timeout, stderr)
        ) from None
    finally:
        if own:
            shutil.rmtree(data_dir, ignore_errors=True)


class ServerTestCase(unittest.TestCase):
    """start_server/connect/raw_request that clean up after the test."""

    maxDiff = None

    def start_server(self, *args, **env):
        server = start_server(*args, **env)
        self.addCleanup(server.cleanup)
        return server

    def start_worker(self, *args, **env):
        worker = start_worker(*args, **env)
        self.addCleanup(worker.cleanup)
        return worker

    def connect(self, server, timeout=IO_TIMEOUT):
        conn = server.connect(timeout=timeout)
        self.addCleanup(conn.close)
        return conn

    def raw_request(self, server, data, head=False, timeout=IO_TIMEOUT):
        res, conn = server.raw_request(data, head=head, timeout=timeout)
        self.addCleanup(conn.close)
        return res, conn

    def assertProblem(self, res, status, slug, instance=None):
        """An RFC 9457 problem with the documented members."""
        self.assertEqual(res.status, status, res)
        self.assertEqual(res.content_type, "application/problem+json", res)
        body = res.json()
        for member in ("type", "title", "status", "detail", "instance", "request_id"):
            self.assertIn(member, body, body)
        if slug is not None:
            self.assertEqual(body["type"], "/problems/" + slug, body)
        self.assertTrue(str(body["type"]).startswith("/problems/"), body)
        self.assertEqual(body["status"], status, body)
        self.assertIsInstance(body["title"], str)
        self.assertTrue(body["title"], body)
        self.assertIsInstance(body["detail"], str)
        if instance is not None:
            self.assertEqual(body["instance"], instance, body)
        self.assertEqual(body["request_id"], res.header("X-Request-ID"), "body and header request ids differ")
        return body


class SharedServerTestCase(ServerTestCase):
    """One server for all tests of the class, for tests that leave it as
    they found it. `server_env` configures it."""

    server_env = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = start_server(**cls.server_env)
        cls.addClassCleanup(cls.server.cleanup)
