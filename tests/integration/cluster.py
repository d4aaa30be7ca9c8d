"""A docflow cluster on 127.0.0.1: one PostgreSQL 15 (pg.py), one S3 server
(radosgw, s3.py), N `docflow serve` processes (API only) behind nginx, M
`docflow worker` processes. `scripts/cluster up|down|status` runs one for a
person; the cluster tests and `make bench-cluster` run it in-process.

nginx runs on the files docs/operations.md recommends for production,
deploy/nginx/docflow-http.conf and docflow-locations.conf, unchanged; only
the main context, the upstream block (as deploy/nginx/docflow.conf.example
has it, on this cluster's ports) and `listen` are written here.

- Cluster(serve=2, workers=2, env={...}): starts everything and returns
  once nginx and every process answer; .url is nginx's base URL, .port its
  port, .serves and .workers the processes (Process), .pg and .s3 the
  servers, .database_url, .bucket, .storage_env.
- Process.kill() (SIGKILL), .stop() (SIGTERM, waits for the exit and
  returns its code), .start() (again, on the same port and data
  directory), .log_path (stdout and stderr, appended across restarts).
- .restart_postgres(mode), .restart_s3(): an operator's restart, or a crash.
- .close(): stops everything and removes every file, logs included.

Each process is named on its log lines by DOCFLOW_NODE_NAME (serve-1,
worker-2, ...). The processes die with the Python process that started them
(PR_SET_PDEATHSIG), so a test that dies leaves none running. That signal
comes when the *thread* that started a process ends: start (and restart)
processes from a thread that outlives them, such as the main thread.
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pg
import s3
from s3 import die_with_parent, free_port

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("DOCFLOW_BIN") or os.path.join(REPO, "build", "src", "docflow")
NGINX = os.environ.get("DOCFLOW_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_DIR = os.path.join(REPO, "deploy", "nginx")
START_TIMEOUT = 60.0  # seconds for one process to answer; a loaded CI machine is slow
STOP_TIMEOUT = 60.0  # seconds for a drain (DOCFLOW_SHUTDOWN_TIMEOUT is 30 s by default)
S3_PREFIX = "docs"
PROXY_ADDRESS = "127.0.0.2"  # nginx's address towards docflow (proxy_bind)

def answers(url, timeout=2.0):
    """Whether `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


class Process:
    """One docflow process of the cluster, on a fixed port and data directory."""

    def __init__(self, cluster, name, argv, env, port):
        self.cluster = cluster
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.log_path = os.path.join(cluster.dir, "logs", name + ".log")
        self.proc = None
        self.starts = 0

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True):
        assert not self.running, "%s is running" % self.name
        os.makedirs(self.env["DOCFLOW_DATA_DIR"], exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([BIN] + self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.starts += 1
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not answers(self.url + "/readyz"):
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%d) while starting:\n%s" % (self.name, self.proc.returncode,
                                                                         self.log_tail()))
            if time.monotonic() > deadline:
                raise RuntimeError("%s is not ready after %d s:\n%s" % (self.name, timeout, self.log_tail()))
            time.sleep(0.05)

    def kill(self):
        """SIGKILL, as a crash."""
        if self.running:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and the exit code once it has drained; SIGKILL past `timeout`."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("%s did not exit within %d s of SIGTERM" % (self.name, timeout)) from None

    def restart(self):
        self.stop()
        self.start()

    def log_tail(self, size=6000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_events(self):
        """Every JSON line of its log, across restarts."""
        out = []
        with open(self.log_path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


def example_upstream(ports):
    """The body of the `upstream docflow` block of
    deploy/nginx/docflow.conf.example, its `server` lines replaced by one per
    port with the parameters of the example's first."""
    with open(os.path.join(NGINX_DIR, "docflow.conf.example")) as f:
        text = f.read()
    body = text[text.index("upstream docflow {") + len("upstream docflow {"):]
    body = body[:body.index("\n}")].strip("\n").split("\n")
    servers = [line.split() for line in body if line.split()[:1] == ["server"]]
    parameters = " ".join(servers[0][2:]).rstrip(";")
    rest = [line for line in body if line.split()[:1] != ["server"]]
    lines = ["    server 127.0.0.1:%d %s;" % (port, parameters) for port in ports] + rest
    return "".join("    " + line + "\n" for line in lines)


class Nginx:
    def __init__(self, cluster, port):
        self.cluster = cluster
        self.port = port
        self.dir = os.path.join(cluster.dir, "nginx")
        os.makedirs(self.dir)
        # As root, nginx's workers run as nobody: they need to reach the files.
        os.chmod(cluster.dir, 0o755)
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.log_path = os.path.join(cluster.dir, "logs", "nginx.log")
        self.access_log = os.path.join(cluster.dir, "logs", "nginx-access.log")
        self.proc = None

    def write_conf(self, serves):
        d = self.dir
        upstream = example_upstream([s.port for s in serves])
        text = """# Written by tests/integration/cluster.py: the main context, the upstream
# list and `listen`; everything else is deploy/nginx/ as shipped.
worker_processes 2;
daemon off;
pid {d}/nginx.pid;
error_log {log} warn;
worker_rlimit_nofile 16384;

events {{
    worker_connections 8192;
}}

http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format docflow '$remote_addr "$request" $status $body_bytes_sent '
                       'upstream=$upstream_addr upstream_status=$upstream_status '
                       'request_id=$upstream_http_x_request_id';
    access_log {access} docflow;

    include {shipped}/docflow-http.conf;

    upstream docflow {{
{upstream}    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        # nginx reaches docflow from an address of its own, as from another
        # machine: only it is in DOCFLOW_TRUSTED_PROXIES, not the clients.
        proxy_bind {proxy_address};
        include {shipped}/docflow-locations.conf;
    }}
}}
""".format(d=d, log=self.log_path, access=self.access_log, shipped=NGINX_DIR, upstream=upstream, port=self.port,
           proxy_address=PROXY_ADDRESS)
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self):
        check = subprocess.run([NGINX, "-t", "-q", "-p", self.dir, "-c", self.conf], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("nginx -t: %s" % check.stderr)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while not answers("http://127.0.0.1:%d/healthz" % self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nginx did not start: %s" % open(self.log_path, errors="replace").read()[-4000:])
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    def __init__(self, serve=2, workers=2, env=None, directory=None, port=None, worker_threads=None,
                 s3_memstore_bytes=s3.DEFAULT_MEMSTORE_BYTES):
        """`env`: settings for every docflow process (None unsets one);
        `worker_threads`: DOCFLOW_WORKERS of each worker process (default:
        docflow's, the number of cores); `s3_memstore_bytes`: the S3 server's
        memory budget for objects (s3.py), for runs that keep more than its
        default allows (a 1,000 x 1 MiB burst)."""
        self.dir = directory or tempfile.mkdtemp(prefix="docflow-cluster-")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.pg = self.s3 = self.nginx = None
        self.serves, self.workers = [], []
        try:
            self._start(serve, workers, env or {}, port, worker_threads, s3_memstore_bytes)
        except BaseException:
            self.close()
            raise

    def _start(self, serve, workers, env, port, worker_threads, s3_memstore_bytes):
        self.pg = pg.PostgresServer()
        self.database_url = self.pg.create_database()
        self.s3 = s3.S3Server(s3_memstore_bytes)
        self.bucket = self.s3.create_bucket("docflow")
        query = urllib.parse.urlencode({"endpoint": self.s3.endpoint, "region": self.s3.region,
                                        "path_style": "true"})
        self.storage_env = {
            "DOCFLOW_STORAGE_URL": "s3://%s/%s?%s" % (self.bucket, S3_PREFIX, query),
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
        }
        secret = os.path.join(self.dir, "jwt.secret")
        with open(secret, "w") as f:
            f.write(secrets.token_hex(32))
        os.chmod(secret, 0o600)
        self.metrics_token = secrets.token_hex(16)
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFLOW_")}
        self.base_env.update(self.storage_env)
        self.base_env.update({
            "DOCFLOW_DATABASE_URL": self.database_url,
            "DOCFLOW_JWT_SECRET_FILE": secret,
            "DOCFLOW_METRICS_TOKEN": self.metrics_token,
            # Behind nginx every client comes from its address: cap clients
            # there, and believe the address it forwards.
            "DOCFLOW_MAX_CONNECTIONS_PER_ADDRESS": "0",
            "DOCFLOW_TRUSTED_PROXIES": PROXY_ADDRESS,
            # The schema is migrated once, below, as an operator would.
            "DOCFLOW_AUTO_MIGRATE": "off",
        })
        for key, value in env.items():
            if value is None:
                self.base_env.pop(key, None)
            else:
                self.base_env[key] = value
        migrate = subprocess.run([BIN, "migrate"], env=dict(self.base_env, DOCFLOW_DATA_DIR=self.dir),
                                 capture_output=True, text=True, timeout=START_TIMEOUT)
        if migrate.returncode != 0:
            raise RuntimeError("docflow migrate failed (%d): %s" % (migrate.returncode, migrate.stderr))
        for i in range(1, serve + 1):
            self.add_serve()
        for i in range(1, workers + 1):
            self.add_worker(worker_threads)
        self.nginx = Nginx(self, port or free_port())
        self.nginx.write_conf(self.serves)
        self.nginx.start()

    def _process(self, name, argv, port, settings):
        env = dict(self.base_env)
        env.update({"DOCFLOW_DATA_DIR": os.path.join(self.dir, name), "DOCFLOW_NODE_NAME": name})
        env.update(settings)
        process = Process(self, name, argv, env, port)
        process.start()
        return process

    def add_serve(self):
        """Starts one more `serve` process (not in nginx's list until the
        configuration is written again)."""
        port = free_port()
        name = "serve-%d" % (len(self.serves) + 1)
        self.serves.append(self._process(name, ["serve"], port, {
            "DOCFLOW_LISTEN": "127.0.0.1:%d" % port,
            "DOCFLOW_WORKERS": "0",
        }))
        return self.serves[-1]

    def add_worker(self, threads=None):
        port = free_port()
        name = "worker-%d" % (len(self.workers) + 1)
        settings = {"DOCFLOW_WORKER_LISTEN": "127.0.0.1:%d" % port}
        if threads is not None:
            settings["DOCFLOW_WORKERS"] = str(threads)
        self.workers.append(self._process(name, ["worker"], port, settings))
        return self.workers[-1]

    @property
    def port(self):
        return self.nginx.port

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.nginx.port

    @property
    def processes(self):
        return self.serves + self.workers

    def restart_postgres(self, mode="fast"):
        self.pg.restart(mode)

    def restart_s3(self):
        """radosgw is killed and started again on its port; objects survive."""
        self.s3.kill_gateway()
        self.s3.start_gateway()

    def maintenance(self, min_age=None):
        """One maintenance pass (orphans, expired records, stale multipart
        uploads), as the maintenance timer would run it; `min_age` ("0s")
        is passed as --min-age, for a check made while no upload is in
        flight."""
        argv = [BIN, "maintenance"] + (["--min-age", min_age] if min_age is not None else [])
        done = subprocess.run(argv, env=dict(self.base_env, DOCFLOW_DATA_DIR=self.dir),
                              capture_output=True, text=True, timeout=START_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError("docflow maintenance failed (%d): %s" % (done.returncode, done.stderr))
        return done.stdout

    def status(self):
        """One line per part: name, pid, port, whether it answers."""
        rows = [("nginx", self.nginx.proc.pid if self.nginx and self.nginx.proc else None, self.port,
                 answers(self.url + "/healthz"))]
        for p in self.processes:
            rows.append((p.name, p.pid if p.running else None, p.port, answers(p.url + "/readyz")))
        return rows

    def close(self):
        if self.nginx is not None:
            self.nginx.stop()
        for p in self.serves + self.workers:
            try:
                p.stop()
            except RuntimeError:
                pass
        if self.s3 is not None:
            self.s3.close()
        if self.pg is not None:
            self.pg.close()
        shutil.rmtree(self.dir, ignore_errors=True)
