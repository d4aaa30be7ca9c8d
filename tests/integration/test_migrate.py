"""docflow migrate-data, end to end (issue 17, "From one node to many"): a
single node (SQLite and a local directory) populated through the HTTP API,
moved into PostgreSQL (pg.py) and S3 (s3.py's radosgw) by the real binary,
killed with SIGKILL in the middle of a first run and finished by a second,
then `serve` started on the target and everything checked through the API:
documents byte for byte, results, logins, refresh tokens, the event stream
with Last-Event-ID, idempotent replays, and a queued job that runs there.

Runs once (its engines are fixed: SQLite as the source, PostgreSQL and S3
as the target), by Debian's Python for boto3 (tests/CMakeLists.txt). Every
wait is bounded and only detects hangs."""
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import s3
from harness import (
    BIN,
    EXIT_TIMEOUT,
    ServerTestCase,
    build_env,
    postgres_server,
    run_cli,
    s3_storage_env,
    start_server,
)
from test_documents import file_part, form, make_pdf, post_form
from test_processing import (
    EventStream,
    bearer,
    corrupt_pdf,
    fixture,
    get_doc,
    get_result,
    get_text,
    process,
    upload,
    wait_status,
)

MiB = 1024 * 1024
BULK_DOCUMENTS = 40  # enough that a run killed after a few has most still to do
BULK_SIZE = MiB
KILL_AFTER = 5  # documents logged as copied before the first run is killed
RUN_BOUND = 300.0  # a run of migrate-data that takes longer is hung


def statuses_from(events, first_id):
    """The (id, status) of a stream's status events, once its events (status
    and progress alike) are seen numbered on from `first_id` without a gap."""
    ids = [int(e["id"]) for e in events]
    assert ids == list(range(first_id, first_id + len(ids))), events
    return [(e["id"], json.loads(e["data"])["status"]) for e in events if e["event"] == "status"]


def post_json(server, path, obj):
    return server.request("POST", path, headers={"Content-Type": "application/json"}, body=json.dumps(obj),
                          timeout=30)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def log_events(stdout):
    out = []
    for line in stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


class MigrateDataTest(ServerTestCase):
    def setUp(self):
        self.node_dir = tempfile.mkdtemp(prefix="docflow-migrate-node-")
        self.addCleanup(shutil.rmtree, self.node_dir, True)
        self.target_url = postgres_server().create_database()
        storage = s3_storage_env(s3.shared().create_bucket())
        self.target_storage = storage.pop("DOCFLOW_STORAGE_URL")
        self.credentials = storage  # AWS_*: the target's, as the command documents

    # ---- the single node

    def account(self, server, name):
        password = "pw-" + secrets.token_urlsafe(12)
        res = post_json(server, "/auth/register", {"username": name, "password": password})
        self.assertEqual(res.status, 201, res)
        res = post_json(server, "/auth/login", {"username": name, "password": password})
        self.assertEqual(res.status, 200, res)
        return {"name": name, "password": password, "id": None, **res.json()}

    def populate(self):
        """Every kind of row the node can hold; returns what to check later."""
        node = start_server(data_dir=self.node_dir, DOCFLOW_WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32")
        try:
            alice = self.account(node, "alice-" + secrets.token_hex(3))
            bob = self.account(node, "bob-" + secrets.token_hex(3))
            # A webhook whose events (one per upload, completion, failure) nobody answers:
            # its deliveries, pending or failed, move with it.
            res = node.request("POST", "/webhooks", headers={"Content-Type": "application/json",
                                                             **bearer(alice["access_token"])},
                               body=json.dumps({"url": "http://127.0.0.1:9/hook",
                                                "events": ["document.uploaded", "document.completed",
                                                           "document.failed"]}))
            self.assertEqual(res.status, 201, res)
            alice["webhook"] = res.json()["id"]
            # A rotated refresh family: the newest token is the one to present later.
            res = post_json(node, "/auth/refresh", {"refresh_token": alice["refresh_token"]})
            self.assertEqual(res.status, 200, res)
            alice["refresh_token"] = res.json()["refresh_token"]

            docs = {}  # name -> (owner, id)
            for name, data, filename in (("pdf", fixture("en-1page.pdf"), "en.pdf"),
                                         ("docx", fixture("de.docx"), "de.docx"),
                                         ("failed", corrupt_pdf(), "broken.pdf"),
                                         ("uploaded", fixture("multipage.pdf"), "multi.pdf")):
                docs[name] = (alice, upload(node, alice["access_token"], data, filename)["id"])
            for name in ("pdf", "docx", "failed"):
                self.assertEqual(process(node, alice["access_token"], docs[name][1]).status, 202)
            self.assertEqual(wait_status(node, alice["access_token"], docs["pdf"][1])["status"], "COMPLETED")
            self.assertEqual(wait_status(node, alice["access_token"], docs["docx"][1])["status"], "COMPLETED")
            self.assertEqual(wait_status(node, alice["access_token"], docs["failed"][1])["status"], "FAILED")

            deleted = upload(node, alice["access_token"], make_pdf("deleted"), "gone.pdf")["id"]
            res = node.request("DELETE", "/documents/" + deleted, headers=bearer(alice["access_token"]))
            self.assertEqual(res.status, 204, res)

            self.idempotency_key = "migrate-" + secrets.token_hex(8)
            self.idempotent_body = form([file_part(make_pdf("idempotent"), "same.pdf")])
            res = post_form(node, bob["access_token"], self.idempotent_body,
                            headers={"Idempotency-Key": self.idempotency_key})
            self.assertEqual(res.status, 201, res)
            docs["idempotent"] = (bob, res.json()["id"])

            for i in range(BULK_DOCUMENTS):
                data = make_pdf("bulk-%d-%s" % (i, secrets.token_hex(4)), size=BULK_SIZE)
                docs["bulk-%d" % i] = (bob, upload(node, bob["access_token"], data, "bulk-%d.pdf" % i)["id"])
        finally:
            node.signal(signal.SIGTERM)
            node.wait_exit()
            node.cleanup(remove_data=False)

        # A job left queued: a node without workers accepts it and stops.
        node = start_server(data_dir=self.node_dir, DOCFLOW_WORKERS=0)
        try:
            docs["queued"] = (alice, upload(node, alice["access_token"], fixture("de.pdf"), "queued.pdf")["id"])
            self.assertEqual(process(node, alice["access_token"], docs["queued"][1]).status, 202)
            # What the target must show: the documents as they are now.
            expected = {}
            for name, (owner, doc_id) in docs.items():
                token = owner["access_token"]
                content = node.get("/documents/%s/content" % doc_id, headers=bearer(token), timeout=30)
                self.assertEqual(content.status, 200, content)
                result = get_result(node, token, doc_id)
                expected[name] = {
                    "doc": get_doc(node, token, doc_id),
                    "sha256": sha256(content.body),
                    "result": result.json() if result.status == 200 else None,
                    "text": get_text(node, token, doc_id).body if result.status == 200 else None,
                }
            self.assertEqual(expected["queued"]["doc"]["status"], "PROCESSING")
            # The node is running: its database is not to be copied now.
            busy = self.migrate(timeout=30)
            self.assertEqual(busy.returncode, 75, busy.stderr)
            self.assertIn("stop the node first", busy.stderr)
        finally:
            node.signal(signal.SIGTERM)
            node.wait_exit()
            node.cleanup(remove_data=False)
        return alice, bob, docs, deleted, expected

    # ---- migrate-data

    def command(self):
        return [BIN, "migrate-data", "--to-database", self.target_url, "--to-storage", self.target_storage]

    def migrate(self, data_dir=None, timeout=RUN_BOUND):
        return run_cli(self.command()[1:], data_dir=data_dir or self.node_dir, timeout=timeout, **self.credentials)

    def migrate_killed_midway(self):
        """Starts a run and kills it with SIGKILL once KILL_AFTER documents
        are logged as copied; returns how many it logged."""
        proc = subprocess.Popen(self.command(), env=build_env(self.node_dir, self.credentials),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        copied = 0
        deadline = threading.Timer(RUN_BOUND, proc.kill)
        deadline.start()
        try:
            for line in iter(proc.stdout.readline, b""):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "migrate.document" and event.get("blob") == "copied":
                    copied += 1
                    if copied == KILL_AFTER:
                        proc.kill()
                        break
        finally:
            deadline.cancel()
            proc.wait(timeout=EXIT_TIMEOUT)
            proc.stdout.close()
            stderr = proc.stderr.read().decode()
            proc.stderr.close()
        self.assertEqual(proc.returncode, -signal.SIGKILL, "the first run ended before the kill: %s" % stderr)
        return copied

    def test_a_single_node_moves_to_postgres_and_s3_and_the_cluster_serves_all_of_it(self):
        alice, bob, docs, deleted, expected = self.populate()

        self.migrate_killed_midway()
        started = time.monotonic()
        run = self.migrate()
        seconds = time.monotonic() - started
        self.assertEqual(run.returncode, 0, run.stderr)
        done = [e for e in log_events(run.stdout) if e.get("event") == "migrate.done"]
        self.assertEqual(len(done), 1, run.stdout)
        done = done[0]
        self.assertTrue(done["complete"], done)
        total = len(docs)
        self.assertEqual(done["blobs_verified"], total, done)
        self.assertGreaterEqual(done["blobs_present"], KILL_AFTER, "what the killed run copied is kept")
        self.assertEqual(done["blobs_copied"] + done["blobs_present"], total, done)
        for name, counts in done["tables"].items():
            self.assertEqual(counts["target"], counts["source"], (name, counts))
        self.assertEqual(done["tables"]["users"]["source"], 2)
        self.assertEqual(done["tables"]["documents"]["source"], total)
        self.assertEqual(done["tables"]["webhooks"]["source"], 1)
        self.assertGreater(done["tables"]["webhook_events"]["source"], 0)
        self.assertGreater(done["tables"]["webhook_deliveries"]["source"], 0)
        self.webhook_deliveries = done["tables"]["webhook_deliveries"]["source"]
        print("\nmigrate-data resumed: %d documents, %d bytes copied, %d bytes verified, %.1f s"
              % (total, done["bytes_copied"], done["bytes_verified"], seconds))

        # A run on a finished target writes nothing and verifies everything again.
        started = time.monotonic()
        again = self.migrate()
        seconds = time.monotonic() - started
        self.assertEqual(again.returncode, 0, again.stderr)
        again_done = [e for e in log_events(again.stdout) if e.get("event") == "migrate.done"][0]
        self.assertEqual(again_done["blobs_copied"], 0)
        self.assertEqual(again_done["blobs_present"], total)
        self.assertTrue(all(c["written"] == 0 for c in again_done["tables"].values()), again_done)
        print("migrate-data again: %d bytes verified in %.1f s" % (again_done["bytes_verified"], seconds))

        # Another node's data cannot be poured into this target.
        other = tempfile.mkdtemp(prefix="docflow-migrate-other-")
        self.addCleanup(shutil.rmtree, other, True)
        refused = self.migrate(data_dir=other)
        self.assertEqual(refused.returncode, 3, refused.stderr)
        self.assertIn("which the source does not", refused.stderr)

        # The cluster's serve, on the target.
        cluster_dir = tempfile.mkdtemp(prefix="docflow-migrate-cluster-")
        self.addCleanup(shutil.rmtree, cluster_dir, True)
        server = self.start_server(data_dir=cluster_dir, DOCFLOW_DATABASE_URL=self.target_url,
                                   DOCFLOW_STORAGE_URL=self.target_storage, **self.credentials)
        self.assert_everything_served(server, alice, bob, docs, deleted, expected)

    def assert_everything_served(self, server, alice, bob, docs, deleted, expected):
        for name, (owner, doc_id) in docs.items():
            token = owner["access_token"]
            want = expected[name]
            if name != "queued":
                self.assertEqual(get_doc(server, token, doc_id), want["doc"], name)
            content = server.get("/documents/%s/content" % doc_id, headers=bearer(token), timeout=30)
            self.assertEqual(content.status, 200, (name, content))
            self.assertEqual(sha256(content.body), want["sha256"], name)
            self.assertEqual(sha256(content.body), want["doc"]["sha256"], name)
            if want["result"] is not None:
                self.assertEqual(get_result(server, token, doc_id).json(), want["result"], name)
                self.assertEqual(get_text(server, token, doc_id).body, want["text"], name)
        res = server.get("/documents/" + deleted, headers=bearer(alice["access_token"]))
        self.assertEqual(res.status, 404, res)

        # The webhook and its delivery log, as the node left them.
        hooks = server.get("/webhooks", headers=bearer(alice["access_token"])).json()["items"]
        self.assertEqual([h["id"] for h in hooks], [alice["webhook"]])
        log = server.get("/webhooks/%s/deliveries?limit=200" % alice["webhook"],
                         headers=bearer(alice["access_token"])).json()["items"]
        self.assertGreaterEqual(len(log), self.webhook_deliveries)

        # The job left queued on the node runs on the cluster.
        queued = docs["queued"][1]
        self.assertEqual(wait_status(server, alice["access_token"], queued)["status"], "COMPLETED")

        # Old passwords log in; the newest refresh token of a family rotates.
        for user in (alice, bob):
            res = post_json(server, "/auth/login", {"username": user["name"], "password": user["password"]})
            self.assertEqual(res.status, 200, (user["name"], res))
        res = post_json(server, "/auth/refresh", {"refresh_token": alice["refresh_token"]})
        self.assertEqual(res.status, 200, res)

        # The upload sent again with its Idempotency-Key gets the first answer.
        res = post_form(server, bob["access_token"], self.idempotent_body,
                        headers={"Idempotency-Key": self.idempotency_key})
        self.assertEqual(res.status, 201, res)
        self.assertEqual(res.header("Idempotent-Replayed"), "true", res)
        self.assertEqual(res.json()["id"], docs["idempotent"][1])

        # Event streams: a client that saw the first event of the completed
        # document is sent the rest, with the numbers it had; the failed
        # document processed again goes on from its last number.
        pdf = docs["pdf"][1]
        stream = EventStream(server, pdf, alice["access_token"], last_event_id=1)
        self.addCleanup(stream.close)
        self.assertEqual(stream.status, 200)
        events = stream.events_until_end()
        self.assertEqual(statuses_from(events, 2), [("2", "PROCESSING"), (str(len(events) + 1), "COMPLETED")])
        failed = docs["failed"][1]
        self.assertEqual(process(server, alice["access_token"], failed).status, 202)
        self.assertEqual(wait_status(server, alice["access_token"], failed)["status"], "FAILED")
        stream = EventStream(server, failed, alice["access_token"], last_event_id=3)
        self.addCleanup(stream.close)
        events = stream.events_until_end()
        self.assertEqual(statuses_from(events, 4), [("4", "PROCESSING"), (str(len(events) + 3), "FAILED")])


if __name__ == "__main__":
    unittest.main()
