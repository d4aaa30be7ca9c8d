"""A private S3 server for the tests: Ceph's radosgw on a one-node Ceph
cluster (a monitor and an OSD that keeps its objects in memory), started and
stopped by the tests themselves, on 127.0.0.1 only.

radosgw and not s3rver (npm): s3rver checks no signature and no digest, so a
signing or integrity bug would pass every test against it. radosgw is
production S3 code: a wrong signature gets 403 SignatureDoesNotMatch, a
wrong Content-MD5 400 BadDigest, as from AWS (test_s3_server.py shows them).

- S3Server(): brings a cluster up (about 2 s, 133 MiB); .endpoint,
  .access_key, .secret_key, .region; .create_bucket() makes a fresh empty
  bucket and returns its name; .client() is a boto3 client for tests.
- memstore_device_bytes: the OSD's memory budget for objects (2 GiB by
  default). Past it, writes hang: the OSD drops them ("full status failsafe
  engaged"). An object costs the OSD about twice its size in memory; a test
  that keeps more (a 1,000 x 1 MiB burst, run after others) asks for more.
- .kill_gateway() / .start_gateway(): SIGKILL radosgw alone and bring it
  back on the same port, as an S3 service that restarts: the objects live
  in the OSD and survive.
- .close(): SIGKILL everything and remove the files; also at exit.
- shared(): one server per test process, started on first use.
- die_with_parent() (a preexec_fn) and free_port(): for the other helpers
  that start daemons (cluster.py).

`python3 s3.py serve [--memstore-device-bytes N]` is the same server for
tests in other languages (tests/unit/s3_server.cpp): it prints one line of
JSON {"endpoint", "access_key", "secret_key", "region"}, then reads commands
on stdin, one a line: `bucket` prints a fresh bucket's name, `kill-gateway`
and `start-gateway` print `ok`; a command that fails prints `error: ...`.
EOF on stdin or SIGTERM closes it all.

The daemons run in the foreground as children of this process, never as
system services. The boto3 used is the interpreter's: Debian's
python3-boto3 (scripts/install-deps) is /usr/bin/python3's.
"""
import argparse
import atexit
import ctypes
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

START_TIMEOUT = 120  # seconds for each step of a start; a loaded CI machine is slow
DEFAULT_MEMSTORE_BYTES = 2 << 30  # taken as objects are written, not up front
REGION = "us-east-1"
TOOLS = ("monmaptool", "osdmaptool", "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph")

_servers = []


def _close_all():
    for server in list(_servers):
        server.close()


atexit.register(_close_all)

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    # Between fork and exec: a daemon must not outlive the test process that
    # started it, even one killed with SIGKILL.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _remove_leftovers():
    """The files, and any daemon still running, of servers whose test
    process died without closing them."""
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if not name.startswith("docflow-s3-"):
            continue
        try:
            with open(os.path.join(path, "owner.pid")) as f:
                os.kill(int(f.read()), 0)
            continue  # its owner is alive
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # starting, or not ours to judge
        try:
            with open(os.path.join(path, "daemons.pid")) as f:
                pids = [int(line) for line in f]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                # The pid may be another process's by now: only a daemon
                # that runs on this directory's configuration is killed.
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if os.path.join(path, "ceph.conf").encode() in f.read().split(b"\0"):
                        os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(path, ignore_errors=True)


def _boto3():
    try:
        import boto3
        import botocore.config
    except ImportError as e:
        raise RuntimeError("%s has no boto3: scripts/install-deps installs Debian's python3-boto3 "
                           "for /usr/bin/python3" % sys.executable) from e
    return boto3, botocore.config


class _PortTaken(RuntimeError):
    """A daemon could not bind a port found free a moment before."""


class S3Server:
    def __init__(self, memstore_device_bytes=DEFAULT_MEMSTORE_BYTES):
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise RuntimeError("Ceph is not installed (no %s): scripts/install-deps installs radosgw, "
                               "ceph-mon and ceph-osd" % ", ".join(missing))
        _remove_leftovers()
        self.access_key = "docflow-test"
        self.secret_key = uuid.uuid4().hex
        self.region = REGION
        self._names = itertools.count(1)
        self._buckets_client = None
        self._buckets_client_lock = threading.Lock()
        self._mon = self._osd = self._gateway = None
        self.dir = None
        _servers.append(self)
        try:
            for attempt in itertools.count(1):
                self._new_dir()
                try:
                    self._bring_up(memstore_device_bytes)
                    return
                except _PortTaken:
                    if attempt == 3:
                        raise
                    self._kill_daemons()
        except BaseException:
            self.close()
            raise

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self._gateway_port

    # -- bring-up ---------------------------------------------------------

    def _new_dir(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = tempfile.mkdtemp(prefix="docflow-s3-")
        self._conf = os.path.join(self.dir, "ceph.conf")
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write("%d\n" % os.getpid())

    def _bring_up(self, memstore_device_bytes):
        fsid = str(uuid.uuid4())
        mon_address = ("127.0.0.1", free_port())
        self._gateway_port = free_port()
        self._write_conf(fsid, "v1:%s:%d" % mon_address, memstore_device_bytes)
        monmap = os.path.join(self.dir, "monmap")
        osdmap = os.path.join(self.dir, "osdmap")
        self._run(["monmaptool", "--create", "--add", "a", "v1:%s:%d" % mon_address, "--fsid", fsid, monmap])
        # The OSD is in the monitor's first map, CRUSH location included, so
        # it asks the monitor nothing before it boots. Left to add itself,
        # about one start in five failed: its first request went out before
        # it knew the cluster's fsid and was refused ("wrong fsid").
        self._run(["osdmaptool", "-c", self._conf, "--createsimple", "1", osdmap])
        self._run(["ceph-mon", "-c", self._conf, "--mkfs", "-i", "a", "--monmap", monmap, "--osdmap", osdmap])
        self._mon = self._spawn(["ceph-mon", "-c", self._conf, "-f", "-i", "a"])
        self._wait("ceph-mon to lead", self._mon_leads)
        os.mkdir(os.path.join(self.dir, "osd-0"))
        self._run(["ceph-osd", "-c", self._conf, "-i", "0", "--mkfs"])
        self._osd = self._spawn(["ceph-osd", "-c", self._conf, "-f", "-i", "0"])
        self.start_gateway()
        self._run(["radosgw-admin", "-c", self._conf, "user", "create", "--uid=docflow-test",
                   "--display-name=docflow tests", "--access-key=" + self.access_key,
                   "--secret-key=" + self.secret_key])

    def _mon_leads(self):
        # The monitor's own word: its port may answer for another program.
        # Its admin socket answers nothing, or an error, while it starts.
        try:
            leads = json.loads(self._admin_socket("mon.a", {"prefix": "mon_status"}))["state"] == "leader"
        except (ValueError, KeyError):
            leads = False
        if not leads:
            raise OSError("ceph-mon is not leading yet")

    def _write_conf(self, fsid, mon_address, memstore_device_bytes):
        d = self.dir
        settings = {
            "fsid": fsid,
            "mon_host": mon_address,
            "public_addr": "127.0.0.1",
            "ms_bind_ipv6": "false",
            # A port taken since we found it free: fail at once (and start
            # over on other ports), not after three tries 5 s apart.
            "ms_bind_retry_delay": "0",
            # Tests only: no keys to make and hand around.
            "auth_cluster_required": "none",
            "auth_service_required": "none",
            "auth_client_required": "none",
            # One OSD: one copy of everything, and no warning about it.
            "osd_pool_default_size": "1",
            "osd_pool_default_min_size": "1",
            "mon_allow_pool_size_one": "true",
            "mon_warn_on_pool_no_redundancy": "false",
            "osd_crush_chooseleaf_type": "0",
            "osd_crush_update_on_start": "false",
            "osd_class_update_on_start": "false",
            # radosgw creates its pools itself; with the default number of
            # placement groups they exceed the per-OSD limit and it fails.
            "osd_pool_default_pg_num": "8",
            "osd_pool_default_pgp_num": "8",
            "mon_max_pg_per_osd": "1000",
            # The monitor gathers changes for a second before it commits
            # them; radosgw's start and first bucket make about fifteen, one
            # after the other (its pools): 15 s of a start at the default.
            "paxos_propose_interval": "0.01",
            "paxos_min_wait": "0.01",
            "osd_objectstore": "memstore",
            "memstore_device_bytes": str(memstore_device_bytes),
            "run_dir": d,
            "admin_socket": os.path.join(d, "$name.asok"),
            "pid_file": os.path.join(d, "$name.pid"),
            "log_file": os.path.join(d, "$name.log"),
            "mon_data": os.path.join(d, "mon-$id"),
            "osd_data": os.path.join(d, "osd-$id"),
        }
        with open(self._conf, "w") as f:
            f.write("[global]\n")
            for key, value in settings.items():
                f.write("%s = %s\n" % (key, value))
            f.write("[client.rgw]\nrgw_frontends = beast endpoint=127.0.0.1:%d\n" % self._gateway_port)

    def logs(self):
        """The daemons' last log lines, for a failure's message."""
        text = ""
        for name in ("mon.a", "osd.0", "client.rgw"):
            try:
                with open(os.path.join(self.dir, name + ".log"), encoding="utf-8", errors="replace") as f:
                    text += "\n--- %s.log ---\n%s" % (name, f.read()[-4000:])
            except OSError:
                pass
        return text

    def _failed(self, what):
        logs = self.logs()
        kind = _PortTaken if "Address already in use" in logs else RuntimeError
        return kind("%s (S3 server in %s)%s" % (what, self.dir, logs))

    def _run(self, argv):
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=START_TIMEOUT,
                                  preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:
            raise self._failed("%s did not finish within %d s" % (argv[0], START_TIMEOUT)) from None
        if done.returncode != 0:
            raise self._failed("%s failed (%d): %s" % (" ".join(argv[:3]), done.returncode,
                                                        done.stdout.decode(errors="replace")[-4000:]))
        return done.stdout.decode(errors="replace")

    def _spawn(self, argv):
        # PR_SET_PDEATHSIG fires when the thread that forked ends: from a
        # thread that may end first, the daemons outlive it only until
        # close(), the exit or the next server's start (_remove_leftovers).
        main = threading.current_thread() is threading.main_thread()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, preexec_fn=die_with_parent if main else None)
        with open(os.path.join(self.dir, "daemons.pid"), "a") as f:
            f.write("%d\n" % process.pid)
        return process

    def _wait(self, what, attempt):
        """Calls attempt() until it raises no OSError, while every daemon
        started runs; raises with their logs when one exits or time is up."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for name, process in (("ceph-mon", self._mon), ("ceph-osd", self._osd), ("radosgw", self._gateway)):
                if process is not None and process.poll() is not None:
                    raise self._failed("%s exited (%d) while waiting for %s" % (name, process.returncode, what))
            try:
                attempt()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self._failed("no %s within %d s" % (what, START_TIMEOUT))
            time.sleep(0.05)

    # -- the gateway ------------------------------------------------------

    def start_gateway(self):
        """Starts radosgw (again) on its port; returns once it answers HTTP."""
        if self._gateway is not None:
            return
        self._gateway = self._spawn(["radosgw", "-c", self._conf, "-f", "-n", "client.rgw"])

        def answers():
            try:
                urllib.request.urlopen(self.endpoint, timeout=5).close()
            except urllib.error.HTTPError:
                pass  # an answer all the same

        self._wait("radosgw to answer HTTP", answers)

    def kill_gateway(self):
        """SIGKILLs radosgw alone: connections are refused until
        start_gateway(); the objects stay in the OSD."""
        if self._gateway is None:
            return
        self._gateway.kill()
        self._gateway.wait()
        self._gateway = None
        # The dead gateway's watches on its control objects outlive it by
        # 30 s in the OSD, and the next gateway's first metadata change (a
        # new bucket) waits until they time out. Blocklisting the dead
        # client drops them at once.
        watchers = json.loads(self._admin_socket("osd.0", {"prefix": "dump_watchers"}))
        for address in {"%s/%d" % (w["entity_addr_t"]["addr"], w["entity_addr_t"]["nonce"]) for w in watchers}:
            # Now and then the `ceph` client asks before it knows the
            # cluster's fsid and is refused (EPERM; the monitor logs "fsid
            # 00000000-... != ..."), as the OSD was at its start: again.
            for attempt in itertools.count(1):
                try:
                    self._run(["ceph", "-c", self._conf, "osd", "blocklist", "add", address])
                    break
                except RuntimeError:
                    if attempt == 3:
                        raise

    def _admin_socket(self, daemon, command):
        """A daemon's answer on its admin socket: the command goes as JSON
        and a NUL; the answer comes as its length (4 bytes, big-endian) and
        itself."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(START_TIMEOUT)
            s.connect(os.path.join(self.dir, daemon + ".asok"))
            s.sendall(json.dumps(command).encode() + b"\0")
            answer = b""
            while len(answer) < 4 or len(answer) < 4 + int.from_bytes(answer[:4], "big"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        return answer[4:].decode(errors="replace")

    # -- for tests --------------------------------------------------------

    def client(self, secret_key=None):
        """A boto3 S3 client for this server (path-style, SigV4); one that
        signs with another `secret_key`, if given."""
        boto3, config = _boto3()
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key,
                            config=config.Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def create_bucket(self, name=None):
        """A new, empty bucket; returns its name."""
        if name is None:
            name = "docflow-%d-%d" % (os.getpid(), next(self._names))
        with self._buckets_client_lock:
            if self._buckets_client is None:
                self._buckets_client = self.client()
        self._buckets_client.create_bucket(Bucket=name)
        return name

    def _kill_daemons(self):
        # SIGKILL: a test's data is not worth the seconds the in-memory OSD
        # spends writing itself out on a clean stop.
        for process in (self._gateway, self._osd, self._mon):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        self._mon = self._osd = self._gateway = None

    def close(self):
        if self in _servers:
            _servers.remove(self)
        if self._buckets_client is not None:
            self._buckets_client.close()
            self._buckets_client = None
        self._kill_daemons()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


_shared = None
_shared_lock = threading.Lock()  # tests start servers from threads too


def shared():
    """The one server of this test process, started on first use and
    closed at exit. Each test makes its own bucket on it."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = S3Server()
        return _shared


def serve(memstore_device_bytes):
    # SIGTERM ends the process through SystemExit, so through close().
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = S3Server(memstore_device_bytes)
    print(json.dumps({"endpoint": server.endpoint, "access_key": server.access_key,
                      "secret_key": server.secret_key, "region": server.region}), flush=True)
    commands = {
        "bucket": server.create_bucket,
        "kill-gateway": lambda: server.kill_gateway() or "ok",
        "start-gateway": lambda: server.start_gateway() or "ok",
    }
    try:
        for line in sys.stdin:
            command = commands.get(line.strip())
            try:
                if command is None:
                    raise ValueError("unknown command %r" % line.strip())
                answer = command()
            except Exception as e:  # the caller learns of it and decides
                print("%s: %s" % (line.strip(), e), file=sys.stderr, flush=True)
                answer = "error: " + " | ".join(str(e).splitlines()[:3])
            print(answer, flush=True)
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="An S3 server for tests (see the top of this file).")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--memstore-device-bytes", type=int, default=DEFAULT_MEMSTORE_BYTES,
                        help="the OSD's memory budget (default: %(default)d)")
    serve(parser.parse_args().memstore_device_bytes)
