"""A private PostgreSQL 15 for the integration tests, started and stopped by
the tests themselves: `initdb` into a temporary directory, listening on
127.0.0.1 (and a socket in that directory), fsync on (crash and restart
tests depend on durable commits), trust authentication (tests only).

- PostgresServer(): initdb and start; .url(db) is a postgresql:// URL;
  .create_database() makes a fresh database and returns its URL.
- .stop(mode) / .start() / .restart(mode): a clean or immediate shutdown
  (mode "fast" or "immediate"), as an operator's restart or a crash.
- .close(): stops the server and removes its files; also at exit.

initdb refuses to run as root: as root, every server command runs as the
`postgres` user (Debian's postgresql-15 creates it) on a directory that
user owns. The binaries are looked up in DOCFLOW_PG_BIN (set by CTest from
what CMake found), then Debian's /usr/lib/postgresql/15/bin.
"""
import atexit
import itertools
import os
import shutil
import socket
import subprocess
import tempfile

PG_BIN = os.environ.get("DOCFLOW_PG_BIN") or "/usr/lib/postgresql/15/bin"
START_TIMEOUT = 60  # seconds for pg_ctl -w; a loaded CI machine can be slow

_servers = []


def _close_all():
    for server in list(_servers):
        server.close()


atexit.register(_close_all)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available():
    """Whether this machine can run a test server (the binaries exist)."""
    return os.access(os.path.join(PG_BIN, "initdb"), os.X_OK)


class PostgresServer:
    def __init__(self):
        self.as_root = os.geteuid() == 0
        self.dir = tempfile.mkdtemp(prefix="docflow-pg-")
        os.chmod(self.dir, 0o755)
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = _free_port()
        self._names = itertools.count(1)
        self._running = False
        _servers.append(self)
        self._run(["initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-instructions",
                   "-E", "UTF8", "--locale=C"])
        self.start()

    def _run(self, argv, timeout=START_TIMEOUT):
        command = [os.path.join(PG_BIN, argv[0])] + argv[1:]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--"] + command
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError("%s failed (%d): %s\n%s" % (argv[0], done.returncode,
                                                          done.stdout.decode(errors="replace"),
                                                          self.server_log()))

    def server_log(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def start(self):
        options = " ".join([
            "-c listen_addresses=127.0.0.1",
            "-p %d" % self.port,
            "-k %s" % self.dir,
            "-c fsync=on",
            "-c synchronous_commit=on",
            # Several docflow processes, each with its pool and listener.
            "-c max_connections=200",
        ])
        self._run(["pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w",
                   "-t", str(START_TIMEOUT), "start"])
        self._running = True

    def stop(self, mode="fast"):
        """"fast": clients are disconnected and the server shuts down
        cleanly; "immediate": it stops at once, recovering from its WAL on
        the next start, as after a crash."""
        self._run(["pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", str(START_TIMEOUT), "stop"])
        self._running = False

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def url(self, database="postgres"):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, database)

    def psql(self, sql, database="postgres"):
        """Runs `sql`; returns psql's unaligned, tuples-only output."""
        done = subprocess.run(
            [os.path.join(PG_BIN, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.url(database), "-c", sql],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=START_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError("psql failed: %s" % done.stderr.decode(errors="replace"))
        return done.stdout.decode()

    def create_database(self):
        """A new empty database; returns its URL."""
        name = "docflow_%d_%d" % (os.getpid(), next(self._names))
        self.psql("CREATE DATABASE %s" % name)
        return self.url(name)

    def close(self):
        if self in _servers:
            _servers.remove(self)
        if self._running:
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
