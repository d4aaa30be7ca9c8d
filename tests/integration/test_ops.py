"""Operations endpoints (SPEC section 5): /healthz, /readyz, /metrics and the
access log."""
import fcntl
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import unittest

from harness import (ServerTestCase, SharedServerTestCase, database_url, metric, only_on, parse_metrics,
                     postgres_server, run_cli, run_sql, stored_blobs)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")

RECOVERY_BOUND = 15.0  # seconds; the PostgreSQL pool retries a lost server with a backoff of up to 5 s


class HealthTest(SharedServerTestCase):
    def test_healthz_is_200_json(self):
        res = self.server.get("/healthz")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.content_type, "application/json")
        self.assertEqual(res.json(), {"status": "ok"})

    def test_readyz_is_200_with_checks(self):
        res = self.server.get("/readyz")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.content_type, "application/json")
        self.assertEqual(res.json(), {"status": "ready", "checks": {"database": "ok", "storage": "ok"}})

    def test_head_healthz_has_length_but_no_body(self):
        get_body = self.server.get("/healthz").body
        conn = self.connect(self.server)
        head = conn.request("HEAD", "/healthz")
        self.assertEqual(head.status, 200, head)
        self.assertEqual(head.header("Content-Length"), str(len(get_body)), head)
        self.assertEqual(head.content_type, "application/json")
        self.assertTrue(head.header("X-Request-ID"))
        # Any stray body bytes would be read as the start of the next answer.
        after = conn.request("GET", "/healthz")
        self.assertEqual(after.status, 200, after)
        self.assertEqual(after.json(), {"status": "ok"})

    def test_head_works_on_every_get_route(self):
        for path in ("/readyz", "/metrics"):
            with self.subTest(path=path):
                conn = self.connect(self.server)
                res = conn.request("HEAD", path)
                self.assertEqual(res.status, 200, res)
                self.assertIsNotNone(res.header("Content-Length"), res)
                self.assertEqual(conn.request("GET", "/healthz").status, 200)


class ReadinessTest(ServerTestCase):
    """readyz opens a fresh database connection and writes a probe file on
    every call, so breaking either shows up at once and heals at once."""

    @only_on("sqlite", reason="it breaks <data>/docflow.db; the PostgreSQL test stops the server")
    def test_database_unavailable_then_recovers(self):
        server = self.start_server()
        db = os.path.join(server.data_dir, "docflow.db")
        aside = db + ".aside"
        self.assertTrue(os.path.isfile(db), "the database should be at <data>/docflow.db")
        os.rename(db, aside)
        os.mkdir(db)
        try:
            res = server.get("/readyz")
            body = self.assertProblem(res, 503, "service-unavailable", "/readyz")
            self.assertEqual(body.get("checks"), {"database": "unavailable", "storage": "ok"}, body)
            self.assertTrue(res.header("Retry-After"), "503 should say when to retry")
            self.assertNotIn(server.data_dir, res.body.decode(), "internal paths must not leak")
            # Liveness does not depend on dependencies.
            self.assertEqual(server.get("/healthz").status, 200)
        finally:
            os.rmdir(db)
            os.rename(aside, db)
        res = server.get("/readyz")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["checks"], {"database": "ok", "storage": "ok"})

    @only_on("postgres", reason="it stops the PostgreSQL server; the SQLite test breaks the file")
    def test_database_server_down_then_recovers_by_itself(self):
        server = self.start_server()
        postgres = postgres_server()
        database = database_url(server.data_dir)
        self.assertEqual(server.get("/readyz").status, 200)
        postgres.stop("fast")
        try:
            res = server.get("/readyz")
            body = self.assertProblem(res, 503, "service-unavailable", "/readyz")
            self.assertEqual(body.get("checks"), {"database": "unavailable", "storage": "ok"}, body)
            self.assertTrue(res.header("Retry-After"), "503 should say when to retry")
            for address in (database.rsplit("/", 1)[1], "127.0.0.1:%d" % postgres.port):
                self.assertNotIn(address, res.body.decode(), "the database's address must not leak")
            self.assertEqual(server.get("/healthz").status, 200)
        finally:
            postgres.start()
        # No restart of docflow: its pool reconnects once the server is back.
        deadline = time.monotonic() + RECOVERY_BOUND
        while True:
            res = server.get("/readyz")
            if res.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["checks"], {"database": "ok", "storage": "ok"})

    @only_on("file", reason="it breaks <data>/blobs/tmp; test_s3_store.py kills the S3 gateway")
    def test_storage_unavailable_then_recovers(self):
        server = self.start_server()
        tmp = os.path.join(server.data_dir, "blobs", "tmp")
        aside = tmp + ".aside"
        self.assertTrue(os.path.isdir(tmp), "the blob store should keep <data>/blobs/tmp")
        os.rename(tmp, aside)
        with open(tmp, "w") as f:
            f.write("not a directory")
        try:
            res = server.get("/readyz")
            body = self.assertProblem(res, 503, "service-unavailable", "/readyz")
            self.assertEqual(body.get("checks"), {"database": "ok", "storage": "unavailable"}, body)
            self.assertTrue(res.header("Retry-After"))
            self.assertNotIn(server.data_dir, res.body.decode(), "internal paths must not leak")
        finally:
            os.remove(tmp)
            os.rename(aside, tmp)
        res = server.get("/readyz")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["checks"], {"database": "ok", "storage": "ok"})


class MetricsTest(ServerTestCase):
    def scrape(self, server, headers=None):
        res = server.get("/metrics", headers=headers)
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.header("Content-Type", "").startswith("text/plain"), res)
        return res.body.decode("utf-8"), parse_metrics(res.body.decode("utf-8"))

    def test_requests_are_counted_by_route_and_status(self):
        server = self.start_server()
        for _ in range(5):
            self.assertEqual(server.get("/healthz").status, 200)
        for path in ("/nope", "/also/not/here", "/healthz/extra"):
            self.assertEqual(server.get(path).status, 404)
        self.assertEqual(server.request("POST", "/healthz").status, 405)
        self.assertEqual(server.request("HEAD", "/healthz").status, 200)
        # The access-log line (and the count) is written after the answer.
        server.wait_for_log(event="http.request", method="HEAD")

        text, samples = self.scrape(server)
        self.assertEqual(metric(samples, "http_requests_total", method="GET", route="/healthz", status="200"), 5, text)
        self.assertEqual(metric(samples, "http_requests_total", method="GET", route="unmatched", status="404"), 3, text)
        # Which route label a 405 gets is not specified; that it is counted once is.
        posts = [v for (name, labels), v in samples.items()
                 if name == "http_requests_total" and ("method", "POST") in labels and ("status", "405") in labels]
        self.assertEqual(posts, [1], text)
        self.assertIn("# TYPE http_requests_total counter", text)

        # Histogram by method and route: 5 GETs, 1 HEAD.
        self.assertIn("# TYPE http_request_duration_seconds histogram", text)
        for method, count in (("GET", 5), ("HEAD", 1)):
            with self.subTest(method=method):
                self.assertEqual(metric(samples, "http_request_duration_seconds_count", method=method,
                                        route="/healthz"), count, text)
                self.assertEqual(metric(samples, "http_request_duration_seconds_bucket", method=method,
                                        route="/healthz", le="+Inf"), count, text)
                self.assertIsNotNone(metric(samples, "http_request_duration_seconds_sum", method=method,
                                            route="/healthz"), text)
        self.assertIsNone(metric(samples, "http_request_duration_seconds_count", route="/healthz"),
                          "the histogram lost its method label")

        self.assertIsNotNone(metric(samples, "http_requests_in_flight"), text)
        assert_process_metrics(self, text, samples)

    def test_logins_are_counted_under_the_docflow_prefix(self):
        server = self.start_server()
        account = json.dumps({"username": "metrics-user", "password": "a-long-enough-password"})
        json_body = {"Content-Type": "application/json"}
        self.assertEqual(server.request("POST", "/auth/register", headers=json_body, body=account).status, 201)
        self.assertEqual(server.request("POST", "/auth/login", headers=json_body, body=account).status, 200)
        text, samples = self.scrape(server)
        self.assertEqual(metric(samples, "docflow_auth_logins_total", outcome="succeeded"), 1, text)
        self.assertNotIn("\nauth_logins_total", text, "the old name is gone (docs/operations.md, metric changes)")

    def test_scrapes_count_themselves_afterwards(self):
        server = self.start_server()
        self.scrape(server)
        server.wait_for_log(event="http.request", route="/metrics")
        text, samples = self.scrape(server)
        self.assertEqual(metric(samples, "http_requests_total", method="GET", route="/metrics", status="200"), 1, text)

    def test_token_required_when_configured(self):
        token = "metrics-token-for-tests"
        server = self.start_server(DOCFLOW_METRICS_TOKEN=token)
        cases = {
            "missing": None,
            "wrong": "Bearer not-the-token",
            "prefix": "Bearer " + token[:-1],
            "longer": "Bearer " + token + "x",
            "other scheme": "Basic " + token,
            "no scheme": token,
        }
        for name, auth in cases.items():
            with self.subTest(name):
                res = server.get("/metrics", headers={"Authorization": auth} if auth else None)
                self.assertProblem(res, 401, "unauthorized", "/metrics")
                self.assertTrue(res.header("WWW-Authenticate", "").startswith("Bearer"), res)
                self.assertNotIn(b"http_requests_total", res.body)
        text, _ = self.scrape(server, headers={"Authorization": "Bearer " + token})
        self.assertIn("http_requests_total", text)
        # The token protects /metrics only.
        self.assertEqual(server.get("/healthz").status, 200)


    def test_token_scheme_is_case_insensitive(self):
        # RFC 9110 section 11.1: the authentication scheme is case-insensitive.
        token = "metrics-token-for-tests"
        server = self.start_server(DOCFLOW_METRICS_TOKEN=token)
        for scheme in ("bearer", "BEARER"):
            with self.subTest(scheme=scheme):
                res = server.get("/metrics", headers={"Authorization": scheme + " " + token})
                self.assertEqual(res.status, 200, res)


def assert_process_metrics(test, text, samples):
    """The metrics every docflow process exposes about itself."""
    started = metric(samples, "process_start_time_seconds")
    test.assertIsNotNone(started, text)
    test.assertLess(abs(started - time.time()), 3600, "process_start_time_seconds is not a Unix time")
    test.assertGreater(metric(samples, "process_cpu_seconds_total") or 0, 0, text)
    test.assertGreater(metric(samples, "process_resident_memory_bytes") or 0, 1 << 20, text)
    test.assertGreaterEqual(metric(samples, "process_open_fds") or 0, 3, text)  # stdin, stdout, stderr at least
    test.assertEqual(metric(samples, "docflow_log_lines_dropped_total"), 0, text)
    builds = [dict(labels) for (name, labels), value in samples.items() if name == "docflow_build_info" and value == 1]
    test.assertEqual(len(builds), 1, text)
    version = run_cli(["version"]).stdout.split()[-1]
    test.assertEqual(builds[0]["version"], version, text)
    test.assertRegex(builds[0]["commit"], r"^([0-9a-f]{7,40}|unknown)$", text)


class WorkerEndpointTest(ServerTestCase):
    """`docflow worker` serves /healthz, /readyz and /metrics, and nothing
    else, on DOCFLOW_WORKER_LISTEN; without it, it opens no port."""

    def test_worker_serves_health_readiness_and_metrics(self):
        worker = self.start_worker(DOCFLOW_WORKERS=1, DOCFLOW_WORKER_LISTEN="127.0.0.1:0")
        announced = "/healthz, /readyz and /metrics on http://127.0.0.1:%d" % worker.port
        deadline = time.monotonic() + 5  # the line follows the listener's start
        while announced not in worker.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn(announced, worker.stderr)
        res = worker.get("/healthz")
        self.assertEqual((res.status, res.json()), (200, {"status": "ok"}), res)
        res = worker.get("/readyz")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"status": "ready", "checks": {"database": "ok", "storage": "ok"}})
        self.assertEqual(worker.get("/documents").status, 404, "a worker serves no API")
        worker.wait_for_log(event="http.request", route="/readyz")

        res = worker.get("/metrics")
        self.assertEqual(res.status, 200, res)
        text = res.body.decode("utf-8")
        samples = parse_metrics(text)
        assert_process_metrics(self, text, samples)
        # The queue gauges are the maintenance leader's, and a worker never leads.
        self.assertEqual(metric(samples, "docflow_maintenance_leader"), 0, text)
        self.assertIsNone(metric(samples, "docflow_jobs_queued"), text)
        self.assertIsNone(metric(samples, "docflow_jobs_running"), text)
        self.assertIn("# TYPE docflow_jobs_total counter", text)
        self.assertEqual(metric(samples, "http_requests_total", method="GET", route="/healthz", status="200"), 1, text)
        self.assertNotIn("docflow_uploads_waiting", text, "a worker takes no uploads")

        worker.signal(signal.SIGTERM)
        self.assertEqual(worker.wait_exit(), 0)
        worker.wait_for_log(event="server.stopped")

    def test_worker_metrics_token_applies(self):
        token = "worker-metrics-token"
        worker = self.start_worker(DOCFLOW_WORKER_LISTEN="127.0.0.1:0", DOCFLOW_METRICS_TOKEN=token)
        self.assertProblem(worker.get("/metrics"), 401, "unauthorized", "/metrics")
        self.assertEqual(worker.get("/metrics", headers={"Authorization": "Bearer " + token}).status, 200)

    def test_no_listener_without_the_setting(self):
        worker = self.start_worker(DOCFLOW_WORKERS=1)
        self.assertIsNone(worker.port)
        self.assertEqual(worker.find_logs(event="server.listening"), [])
        self.assertNotIn("/metrics", worker.stderr)


class AccessLogTest(ServerTestCase):
    def test_one_access_line_per_request_with_fields(self):
        server = self.start_server()
        rid = "itest-access-log-0001"
        res = server.get("/healthz?probe=1", headers={"X-Request-ID": rid})
        self.assertEqual(res.status, 200)
        line = server.wait_for_log(event="http.request", request_id=rid)
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["route"], "/healthz")
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["level"], "info")
        self.assertIsInstance(line["ts"], str)
        self.assertRegex(line["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertIsInstance(line["duration_ms"], (int, float))
        self.assertGreaterEqual(line["duration_ms"], 0)
        self.assertGreater(line["bytes_in"], 0)
        self.assertGreaterEqual(line["bytes_out"], len(res.body))
        self.assertEqual(len(server.find_logs(event="http.request", request_id=rid)), 1)

    def test_unmatched_route_is_logged_as_unmatched(self):
        server = self.start_server()
        rid = "itest-access-log-404"
        self.assertEqual(server.get("/no/such/thing", headers={"X-Request-ID": rid}).status, 404)
        line = server.wait_for_log(event="http.request", request_id=rid)
        self.assertEqual(line["route"], "unmatched")
        self.assertEqual(line["status"], 404)

    def test_route_template_not_raw_path(self):
        server = self.start_server()
        rid = "itest-access-log-query"
        server.get("/readyz?secret=abc", headers={"X-Request-ID": rid})
        line = server.wait_for_log(event="http.request", request_id=rid)
        self.assertEqual(line["route"], "/readyz")

    def test_stdout_is_json_lines(self):
        server = self.start_server()
        server.get("/healthz")
        server.get("/nope")
        server.wait_for_log(event="http.request", status=404)
        for raw, parsed in zip(server.lines, server.events):
            self.assertIsInstance(parsed, dict, "stdout line is not a JSON object: %r" % raw)
            for field in ("ts", "level", "event"):
                self.assertIn(field, parsed, raw)


def upload_pdf(test, server, token, data):
    """Uploads `data` as a.pdf; returns the new document's id."""
    boundary = "ops-maintenance-boundary"
    body = (b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\"file\"; "
            b"filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\n" + data + b"\r\n--"
            + boundary.encode() + b"--\r\n")
    res = server.request("POST", "/documents", body=body, headers={
        "Authorization": "Bearer " + token, "Content-Type": "multipart/form-data; boundary=" + boundary})
    test.assertEqual(res.status, 201, res)
    return res.json()["id"]


class NodeNameTest(ServerTestCase):
    """Every log line of every process names its node, so that one
    document's life can be followed across a cluster with grep."""

    def build_info(self, server):
        samples = parse_metrics(server.get("/metrics").body.decode("utf-8"))
        builds = [dict(labels) for (name, labels), _ in samples.items() if name == "docflow_build_info"]
        self.assertEqual(len(builds), 1, builds)
        return builds[0]

    def test_serve_names_its_node_on_request_and_job_lines(self):
        server = self.start_server(DOCFLOW_NODE_NAME="api-7 (eu)", DOCFLOW_WORKERS="1")
        credentials = json.dumps({"username": "node-watcher", "password": "pw-" + "n" * 16})
        headers = {"Content-Type": "application/json"}
        self.assertEqual(server.request("POST", "/auth/register", body=credentials, headers=headers).status, 201)
        token = server.request("POST", "/auth/login", body=credentials, headers=headers).json()["access_token"]
        with open(os.path.join(FIXTURES, "en-1page.pdf"), "rb") as f:
            doc_id = upload_pdf(self, server, token, f.read())
        res = server.request("POST", "/documents/%s/process" % doc_id, headers={"Authorization": "Bearer " + token})
        self.assertEqual(res.status, 202, res)
        server.wait_for_log(event="document.completed", document_id=doc_id)
        request = server.wait_for_log(event="http.request", route="/documents/{id}/process")
        self.assertEqual(request["node"], "api-7 (eu)")
        for event in ("job.claimed", "document.completed"):
            self.assertEqual(server.wait_for_log(event=event, document_id=doc_id)["node"], "api-7 (eu)", event)
        # This process's workers ran each stage once, and are idle again (a
        # worker leaves its busy count just after the completion's line).
        deadline = time.monotonic() + 5
        while True:
            samples = parse_metrics(server.get("/metrics").body.decode("utf-8"))
            if metric(samples, "docflow_workers_busy") == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for stage in ("verify", "extract"):
            self.assertEqual(metric(samples, "docflow_stage_duration_seconds_count", stage=stage), 1, stage)
        self.assertEqual(metric(samples, "docflow_workers"), 1)
        self.assertEqual(metric(samples, "docflow_workers_busy"), 0)
        self.assertEqual(metric(samples, "docflow_job_lease_takeovers_total"), 0)
        # Not one line without it, from the first (the start) on.
        self.assertEqual([e for e in server.events if not isinstance(e, dict) or e.get("node") != "api-7 (eu)"], [])
        self.assertEqual(self.build_info(server)["node"], "api-7 (eu)")

    def test_a_worker_names_its_node_and_the_default_is_host_and_pid(self):
        worker = self.start_worker(DOCFLOW_WORKERS="1", DOCFLOW_WORKER_LISTEN="127.0.0.1:0",
                                   DOCFLOW_NODE_NAME="worker-3")
        self.assertEqual(worker.wait_for_log(event="workers.started")["node"], "worker-3")
        self.assertEqual(self.build_info(worker)["node"], "worker-3")

        server = self.start_server()
        default = "%s:%d" % (socket.gethostname(), server.proc.pid)
        server.get("/healthz", headers={"X-Request-ID": "node-default"})
        self.assertEqual(server.wait_for_log(event="http.request", request_id="node-default")["node"], default)
        self.assertEqual(self.build_info(server)["node"], default)

    def test_commands_that_log_name_their_node(self):
        done = run_cli(["migrate"], DOCFLOW_NODE_NAME="migrator")
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        self.assertTrue(lines, done.stdout)
        self.assertEqual({line["node"] for line in lines}, {"migrator"})

    def test_an_invalid_name_stops_the_start_with_exit_2(self):
        for name in ("", "x" * 65, "tab\there"):
            done = run_cli(["serve", "--listen", "127.0.0.1:0"], DOCFLOW_NODE_NAME=name)
            self.assertEqual(done.returncode, 2, done.stderr)
            self.assertIn("docflow: invalid configuration: DOCFLOW_NODE_NAME: ", done.stderr)


class MaintenanceLeaderTest(ServerTestCase):
    """Gauges read from the database are the same in every process: only the
    maintenance leader reports them, so that sums over a cluster count the
    queue once."""

    LEADERSHIP_BOUND = 30.0  # seconds: the others try to take over every 15 s

    def scrape(self, server):
        return parse_metrics(server.get("/metrics").body.decode("utf-8"))

    def test_one_leader_reports_the_queue_and_another_takes_over_when_it_dies(self):
        data_dir = tempfile.mkdtemp(prefix="docflow-it-leader-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        first = self.start_server(data_dir=data_dir, DOCFLOW_WORKERS="0")
        first.wait_for_log(event="maintenance.leading", timeout=self.LEADERSHIP_BOUND)
        second = self.start_server(data_dir=data_dir, DOCFLOW_WORKERS="0")
        worker = self.start_worker(data_dir=data_dir, DOCFLOW_WORKERS="1", DOCFLOW_WORKER_LISTEN="127.0.0.1:0")
        leader, follower, worker_samples = self.scrape(first), self.scrape(second), self.scrape(worker)
        self.assertEqual(metric(leader, "docflow_maintenance_leader"), 1)
        self.assertEqual(metric(leader, "docflow_jobs_queued"), 0)
        self.assertEqual(metric(leader, "docflow_jobs_running"), 0)
        self.assertEqual(metric(leader, "docflow_jobs_oldest_queued_age_seconds"), 0)
        for samples in (follower, worker_samples):
            self.assertEqual(metric(samples, "docflow_maintenance_leader"), 0)
            for name in ("docflow_jobs_queued", "docflow_jobs_running", "docflow_jobs_oldest_queued_age_seconds"):
                self.assertIsNone(metric(samples, name), name)
        self.assertEqual(metric(worker_samples, "docflow_workers"), 1)

        first.kill()
        second.wait_for_log(event="maintenance.leading", timeout=self.LEADERSHIP_BOUND)
        taken = self.scrape(second)
        self.assertEqual(metric(taken, "docflow_maintenance_leader"), 1)
        self.assertEqual(metric(taken, "docflow_jobs_queued"), 0)



class MaintenanceCommandTest(ServerTestCase):
    """`docflow maintenance`: one pass now, on either engine and store."""

    def upload(self, server, token, data):
        return upload_pdf(self, server, token, data)

    def test_removes_orphan_blobs_older_than_min_age_and_keeps_the_rest(self):
        server = self.start_server()
        credentials = json.dumps({"username": "maintainer", "password": "pw-" + "x" * 16})
        headers = {"Content-Type": "application/json"}
        self.assertEqual(server.request("POST", "/auth/register", body=credentials, headers=headers).status, 201)
        token = server.request("POST", "/auth/login", body=credentials, headers=headers).json()["access_token"]
        with open(os.path.join(FIXTURES, "en-1page.pdf"), "rb") as f:
            pdf = f.read()
        kept = self.upload(server, token, pdf + b"%kept\n")
        orphan = self.upload(server, token, pdf + b"%orphan\n")
        data_dir = server.data_dir
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(), 0)
        # A row lost after its blob was stored, as a crash between the two leaves it.
        run_sql(data_dir, "DELETE FROM documents WHERE id = '%s'" % orphan)

        def blobs_named(doc_id):
            return [b for b in stored_blobs(data_dir) if b.endswith(doc_id)]

        done = run_cli(["maintenance"], data_dir=data_dir)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn('"orphan_blobs":0', done.stdout)
        self.assertEqual(len(blobs_named(orphan)), 1, "an orphan younger than the default hour was removed")

        done = run_cli(["maintenance", "--min-age", "0s"], data_dir=data_dir)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn('"orphan_blobs":1', done.stdout)
        self.assertEqual(blobs_named(orphan), [])
        self.assertEqual(len(blobs_named(kept)), 1)

    def test_bad_min_age_exits_2(self):
        done = run_cli(["maintenance", "--min-age", "soon"])
        self.assertEqual(done.returncode, 2)
        self.assertIn("--min-age", done.stderr)

    @only_on("sqlite", "the lease is a lock on a file next to the database")
    def test_exits_75_while_another_process_holds_the_lease(self):
        data_dir = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        self.assertEqual(run_cli(["migrate"], data_dir=data_dir).returncode, 0)
        with open(os.path.join(data_dir, "docflow.db-maintenance"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = run_cli(["maintenance"], data_dir=data_dir)
        self.assertEqual(done.returncode, 75, done.stderr)
        self.assertIn("another process", done.stderr)
        self.assertEqual(run_cli(["maintenance"], data_dir=data_dir).returncode, 0)


if __name__ == "__main__":
    unittest.main()
