"""Webhooks (SPEC section 4, "Webhooks") over HTTP, black-box: registration
and its checks (the SSRF guard included), the signed events a receiver in
this process gets for uploads, completions and failures, retries after 500s
and timeouts with the same event id, the delivery log and redelivery, and a
delivery that survives kill -9 of the server mid-request.

The receiver is an HTTP server on 127.0.0.1, which the server may reach only
because DOCFLOW_WEBHOOK_ALLOWED_NETWORKS allows it; it checks every
signature itself with Python's hmac. Retries are shortened through
DOCFLOW_WEBHOOK_RETRY_BASE and DOCFLOW_WEBHOOK_TIMEOUT. Every wait is
bounded and only detects hangs: no test asserts how long anything took."""
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import threading
import time
import unittest

from harness import UUID_RE, ServerTestCase, SharedServerTestCase, start_server

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
BOUNDARY = "docflow-webhooks-boundary-7Hq2"
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SIGNATURE_RE = re.compile(r"^t=(\d+),v1=([0-9a-f]{64})$")
EVENTS = ["document.uploaded", "document.completed", "document.failed"]
BOUND = 30.0  # a delivery not seen by then is lost (detects hangs only)
SETTLE = 1.5  # time given to a delivery that must not happen to show itself

FAST_RETRIES = {
    "DOCFLOW_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "DOCFLOW_WEBHOOK_RETRY_BASE": "200ms",
    "DOCFLOW_WEBHOOK_TIMEOUT": "1s",
    "DOCFLOW_WORKERS": 1,
}

_counter = iter(range(1, 1 << 30))


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def bearer(token):
    return {"Authorization": "Bearer " + token}


def post_json(server, path, obj, token=None):
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    return server.request("POST", path, headers=headers, body=json.dumps(obj), timeout=30)


def new_user(server):
    username = "hook-%d-%s" % (next(_counter), secrets.token_hex(3))
    password = "pw-" + secrets.token_urlsafe(12)
    assert post_json(server, "/auth/register", {"username": username, "password": password}).status == 201
    res = post_json(server, "/auth/login", {"username": username, "password": password})
    assert res.status == 200, res
    return res.json()["access_token"]


def upload(server, token, data, filename):
    b = BOUNDARY.encode()
    body = b"--" + b + b"\r\n"
    body += b'Content-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
    body += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--" + b + b"--\r\n"
    res = server.request(
        "POST",
        "/documents",
        headers={"Content-Type": "multipart/form-data; boundary=" + BOUNDARY, **bearer(token)},
        body=body,
        timeout=60,
    )
    assert res.status == 201, res
    return res.json()


def wait_status(server, token, doc_id, statuses=("COMPLETED", "FAILED")):
    deadline = time.monotonic() + BOUND
    while True:
        doc = server.get("/documents/" + doc_id, headers=bearer(token)).json()
        if doc["status"] in statuses:
            return doc
        if time.monotonic() > deadline:
            raise AssertionError("document %s still %s" % (doc_id, doc["status"]))
        time.sleep(0.05)


class Receiver:
    """An HTTP endpoint that records every POST and answers as told: each
    request takes the next behaviour of `script` (then `default`): an int is
    the status to answer, ("sleep", s) answers 200 after s seconds, "hold"
    keeps the request open until release()."""

    def __init__(self):
        self.requests = []
        self.script = []
        self.default = 204
        self.cond = threading.Condition()
        self.released = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.cond:
                    behaviour = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "body": body,
                         "behaviour": behaviour}
                    )
                    receiver.cond.notify_all()
                status = 200
                if behaviour == "hold":
                    receiver.released.wait(60)
                    return
                if isinstance(behaviour, tuple):
                    time.sleep(behaviour[1])
                else:
                    status = behaviour
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return "http://127.0.0.1:%d%s" % (self.httpd.server_address[1], path)

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_for(self, pred, count=1):
        """The first `count` requests matching pred(request) (asserting they come)."""
        deadline = time.monotonic() + BOUND
        with self.cond:
            while True:
                found = [r for r in self.requests if pred(r)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("%d of %d expected webhook requests arrived: %r" % (
                        len(found), count, [(r["path"], r["body"][:200]) for r in self.requests]))
                self.cond.wait(min(remaining, 0.1))

    def on(self, path):
        with self.cond:
            return [r for r in self.requests if r["path"] == path]


def event_of(request):
    return json.loads(request["body"])


class WebhookCase(ServerTestCase):
    def setUp(self):
        super().setUp()
        self.receiver = Receiver()
        self.addCleanup(self.receiver.close)

    def register(self, server, token, url, events=EVENTS):
        res = post_json(server, "/webhooks", {"url": url, "events": events}, token)
        self.assertEqual(res.status, 201, res)
        hook = res.json()
        # Gone with the test, so that its receiver's port, reused later, gets nothing.
        self.addCleanup(lambda: server.running and server.request(
            "DELETE", "/webhooks/" + hook["id"], headers=bearer(token)))
        return hook

    def assertSigned(self, request, secret):
        """Checks the request as a receiver would, independently of the server's code."""
        headers = {k.lower(): v for k, v in request["headers"].items()}
        self.assertEqual(headers.get("content-type"), "application/json")
        self.assertRegex(headers.get("user-agent", ""), r"^docflow-webhooks/\d+\.\d+")
        match = SIGNATURE_RE.match(headers.get("docflow-signature", ""))
        self.assertIsNotNone(match, headers)
        timestamp = match.group(1)
        expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
        self.assertTrue(hmac.compare_digest(expected, match.group(2)), "bad signature")
        self.assertLess(abs(time.time() - int(timestamp)), 600, "t is the send time")
        event = event_of(request)
        self.assertEqual(headers.get("docflow-event-id"), event["id"])
        return event

    def assertEvent(self, event, type_, doc_id, status):
        self.assertEqual(set(event), {"id", "type", "created_at", "data"}, event)
        self.assertRegex(event["id"], UUID_RE)
        self.assertEqual(event["type"], type_)
        self.assertRegex(event["created_at"], RFC3339_RE)
        data = event["data"]
        self.assertEqual(set(data), {"document_id", "status", "error", "result_url"}, data)
        self.assertEqual(data["document_id"], doc_id)
        self.assertEqual(data["status"], status)
        self.assertEqual(data["result_url"], "/documents/%s/result" % doc_id)
        return data

    def deliveries(self, server, token, hook_id, query=""):
        res = server.get("/webhooks/%s/deliveries%s" % (hook_id, query), headers=bearer(token))
        self.assertEqual(res.status, 200, res)
        return res.json()

    def wait_delivery(self, server, token, hook_id, pred):
        deadline = time.monotonic() + BOUND
        while True:
            items = self.deliveries(server, token, hook_id)["items"]
            found = [d for d in items if pred(d)]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError("no delivery as expected in %r" % items)
            time.sleep(0.05)


# ==========================================================================
# Events end to end, retries, the log, redelivery


class EventsTest(WebhookCase, SharedServerTestCase):
    server_env = FAST_RETRIES

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = new_user(cls.server)
        cls.other_token = new_user(cls.server)

    def test_upload_and_completion_arrive_signed_in_order(self):
        hook = self.register(self.server, self.token, self.receiver.url("/completed"))
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        [uploaded] = self.receiver.wait_for(lambda r: r["path"] == "/completed")
        event = self.assertSigned(uploaded, hook["secret"])
        data = self.assertEvent(event, "document.uploaded", doc["id"], "UPLOADED")
        self.assertIsNone(data["error"])
        self.assertNotIn(b"en-1page", uploaded["body"], "no file name in the body")
        res = self.server.request("POST", "/documents/%s/process" % doc["id"], headers=bearer(self.token))
        self.assertEqual(res.status, 202, res)
        self.assertEqual(wait_status(self.server, self.token, doc["id"])["status"], "COMPLETED")
        first, second = self.receiver.wait_for(lambda r: r["path"] == "/completed", 2)
        completed = self.assertSigned(second, hook["secret"])
        self.assertEvent(completed, "document.completed", doc["id"], "COMPLETED")
        self.assertNotEqual(completed["id"], event["id"])
        delivered = self.wait_delivery(self.server, self.token, hook["id"],
                                       lambda d: d["event_type"] == "document.completed" and d["status"] == "delivered")
        self.assertEqual(delivered["event_id"], completed["id"])
        self.assertEqual(delivered["attempts"], 1)
        self.assertEqual(delivered["last_status_code"], 204)
        self.assertIsNone(delivered["next_attempt_at"])
        self.assertRegex(delivered["delivered_at"], RFC3339_RE)
        metrics = self.server.get("/metrics").body.decode()
        self.assertRegex(metrics, r'docflow_webhook_deliveries_total\{outcome="delivered"\} [1-9]')
        self.assertIn("docflow_webhook_deliveries_pending", metrics)
        logs = self.server.find_logs(event="webhook.delivered", event_id=completed["id"])
        self.assertTrue(logs)
        self.assertNotIn(hook["secret"], "\n".join(self.server.lines))

    def test_a_failed_document_sends_document_failed_with_its_error(self):
        hook = self.register(self.server, self.token, self.receiver.url("/failed"), ["document.failed"])
        doc = upload(self.server, self.token, fixture("encrypted.pdf"), "encrypted.pdf")
        self.server.request("POST", "/documents/%s/process" % doc["id"], headers=bearer(self.token))
        self.assertEqual(wait_status(self.server, self.token, doc["id"])["status"], "FAILED")
        [failed] = self.receiver.wait_for(lambda r: r["path"] == "/failed")
        data = self.assertEvent(self.assertSigned(failed, hook["secret"]), "document.failed", doc["id"], "FAILED")
        self.assertEqual(data["error"]["code"], "unreadable_document")
        self.assertIs(data["error"]["retryable"], False)
        time.sleep(SETTLE)
        self.assertEqual(len(self.receiver.on("/failed")), 1, "subscribed to document.failed only")

    def test_retries_after_a_500_and_a_timeout_keep_the_event_id(self):
        hook = self.register(self.server, self.token, self.receiver.url("/retry"), ["document.uploaded"])
        self.receiver.script = [500, ("sleep", 3.0)]
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        attempts = self.receiver.wait_for(lambda r: r["path"] == "/retry", 3)
        ids = {self.assertSigned(r, hook["secret"])["id"] for r in attempts}
        self.assertEqual(len(ids), 1, "one event id across retries")
        self.assertEqual([r["behaviour"] for r in attempts], [500, ("sleep", 3.0), 204])
        delivery = self.wait_delivery(self.server, self.token, hook["id"], lambda d: d["status"] == "delivered")
        self.assertEqual(delivery["attempts"], 3)
        self.assertEqual(delivery["document_id"], doc["id"])
        failures = self.server.find_logs(event="webhook.failed", webhook_id=hook["id"])
        self.assertEqual([f.get("status") for f in failures[:2]], [500, None], failures)
        self.assertEqual(failures[1]["error"], "timeout")

    def test_redelivery_sends_the_same_event_again(self):
        hook = self.register(self.server, self.token, self.receiver.url("/again"), ["document.uploaded"])
        upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        [first] = self.receiver.wait_for(lambda r: r["path"] == "/again")
        delivery = self.wait_delivery(self.server, self.token, hook["id"], lambda d: d["status"] == "delivered")
        res = self.server.request(
            "POST", "/webhooks/%s/deliveries/%s/retry" % (hook["id"], delivery["id"]), headers=bearer(self.token))
        self.assertEqual(res.status, 202, res)
        again = res.json()
        self.assertEqual(again["event_id"], delivery["event_id"])
        self.assertNotEqual(again["id"], delivery["id"])
        self.assertEqual(again["status"], "pending")
        _, second = self.receiver.wait_for(lambda r: r["path"] == "/again", 2)
        self.assertEqual(event_of(second)["id"], event_of(first)["id"])
        self.assertEqual(second["body"], first["body"], "the same body, signed anew")
        log = self.deliveries(self.server, self.token, hook["id"])
        self.assertEqual([d["id"] for d in log["items"]], [again["id"], delivery["id"]], "newest first")
        page = self.deliveries(self.server, self.token, hook["id"], "?limit=1")
        self.assertEqual(len(page["items"]), 1)
        self.assertIsNotNone(page["next_cursor"])
        rest = self.deliveries(self.server, self.token, hook["id"], "?limit=1&cursor=" + page["next_cursor"])
        self.assertEqual(rest["items"][0]["id"], delivery["id"])

    def test_another_users_documents_send_nothing(self):
        self.register(self.server, self.token, self.receiver.url("/mine"))
        doc = upload(self.server, self.other_token, fixture("en-1page.pdf"), "en-1page.pdf")
        other_hook = self.register(self.server, self.other_token, self.receiver.url("/theirs"), ["document.uploaded"])
        mine = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        [request] = self.receiver.wait_for(lambda r: r["path"] == "/mine")
        self.assertEqual(event_of(request)["data"]["document_id"], mine["id"])
        time.sleep(SETTLE)
        bodies = [r["body"] for r in self.receiver.requests]
        self.assertFalse(any(doc["id"].encode() in b for b in bodies), "the other user's upload came before their hook")
        self.assertEqual(self.receiver.on("/theirs"), [])
        self.assertEqual(self.deliveries(self.server, self.other_token, other_hook["id"])["items"], [])

    def test_deleting_a_webhook_stops_its_deliveries(self):
        hook = self.register(self.server, self.token, self.receiver.url("/gone"), ["document.uploaded"])
        self.receiver.default = 500
        self.addCleanup(setattr, self.receiver, "default", 204)
        upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        self.receiver.wait_for(lambda r: r["path"] == "/gone")
        res = self.server.request("DELETE", "/webhooks/" + hook["id"], headers=bearer(self.token))
        self.assertEqual(res.status, 204, res)
        time.sleep(SETTLE)
        seen = len(self.receiver.on("/gone"))
        time.sleep(SETTLE)
        self.assertEqual(len(self.receiver.on("/gone")), seen, "no attempt after the deletion settled")


# ==========================================================================
# Registration: the checks, ownership, limits


class RegistrationTest(WebhookCase, SharedServerTestCase):
    server_env = {"DOCFLOW_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32", "DOCFLOW_WORKERS": 0}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = new_user(cls.server)
        cls.other_token = new_user(cls.server)

    def test_registration_answers_the_secret_once(self):
        hook = self.register(self.server, self.token, self.receiver.url(), ["document.completed", "document.uploaded"])
        self.assertEqual(set(hook), {"id", "url", "events", "created_at", "secret"})
        self.assertRegex(hook["id"], UUID_RE)
        self.assertRegex(hook["secret"], r"^whsec_[A-Za-z0-9_-]{43}$")
        self.assertEqual(hook["events"], ["document.uploaded", "document.completed"])
        self.assertRegex(hook["created_at"], RFC3339_RE)
        listed = self.server.get("/webhooks", headers=bearer(self.token)).json()["items"]
        mine = [h for h in listed if h["id"] == hook["id"]]
        self.assertEqual(len(mine), 1)
        self.assertNotIn("secret", mine[0])
        self.assertEqual(self.server.get("/webhooks", headers=bearer(self.other_token)).json()["items"], [])

    def test_bad_bodies_are_400_415_or_422(self):
        headers = {"Content-Type": "application/json", **bearer(self.token)}
        res = self.server.request("POST", "/webhooks", headers=headers, body="{not json")
        self.assertProblem(res, 400, "bad-request")
        res = self.server.request("POST", "/webhooks", headers={**bearer(self.token), "Content-Type": "text/plain"},
                                  body="x")
        self.assertProblem(res, 415, "unsupported-media-type")
        res = self.server.request("POST", "/webhooks", headers=headers, body=json.dumps({"url": "x" * 20000}))
        self.assertProblem(res, 413, "payload-too-large")
        good = self.receiver.url()
        for body, field in [
            ({}, "url"),
            ({"url": good}, "events"),
            ({"url": 5, "events": EVENTS}, "url"),
            ({"url": "ftp://127.0.0.1/x", "events": EVENTS}, "url"),
            ({"url": "/relative", "events": EVENTS}, "url"),
            ({"url": "http://user:pw@127.0.0.1/", "events": EVENTS}, "url"),
            ({"url": "http://127.0.0.1/" + "a" * 2100, "events": EVENTS}, "url"),
            ({"url": good, "events": []}, "events"),
            ({"url": good, "events": "document.uploaded"}, "events"),
            ({"url": good, "events": ["document.deleted"]}, "events"),
            ({"url": good, "events": ["document.failed", "document.failed"]}, "events"),
            ({"url": good, "events": [1]}, "events"),
        ]:
            res = self.server.request("POST", "/webhooks", headers=headers, body=json.dumps(body))
            problem = self.assertProblem(res, 422, "validation-failed")
            self.assertIn(field, [e["field"] for e in problem["errors"]], (body, problem))
        res = self.server.request("POST", "/webhooks", headers=headers, body="[1]")
        self.assertProblem(res, 422, "validation-failed")

    def test_a_body_where_none_belongs_is_413(self):
        hook = self.register(self.server, self.token, self.receiver.url())
        delivery = "00000000-0000-7000-8000-000000000000"
        for method, path in [("GET", "/webhooks"), ("DELETE", "/webhooks/" + hook["id"]),
                             ("GET", "/webhooks/%s/deliveries" % hook["id"]),
                             ("POST", "/webhooks/%s/deliveries/%s/retry" % (hook["id"], delivery))]:
            res = self.server.request(method, path, headers={"Content-Type": "application/json",
                                                             **bearer(self.token)}, body="{}" * 512)
            self.assertProblem(res, 413, "payload-too-large")
        self.assertEqual(self.server.get("/webhooks/%s/deliveries" % hook["id"], headers=bearer(self.token)).status,
                         200, "the webhook is still there")

    def test_every_endpoint_needs_a_token(self):
        fake = "00000000-0000-7000-8000-000000000000"
        for method, path in [("POST", "/webhooks"), ("GET", "/webhooks"), ("DELETE", "/webhooks/" + fake),
                             ("GET", "/webhooks/%s/deliveries" % fake),
                             ("POST", "/webhooks/%s/deliveries/%s/retry" % (fake, fake))]:
            for headers in ({}, {"Authorization": "Bearer nonsense"}):
                res = self.server.request(method, path, headers=headers)
                self.assertProblem(res, 401, "unauthorized")
                self.assertIn("Bearer", res.header("WWW-Authenticate", ""))

    def test_another_users_webhook_is_not_found(self):
        hook = self.register(self.server, self.token, self.receiver.url())
        delivery = "00000000-0000-7000-8000-000000000000"
        for path in ["/webhooks/%s/deliveries" % hook["id"], "/webhooks/nonsense/deliveries",
                     "/webhooks/%s/deliveries" % delivery]:
            self.assertProblem(self.server.get(path, headers=bearer(self.other_token)), 404, "not-found")
        for path in ["/webhooks/%s/deliveries/%s/retry" % (hook["id"], delivery),
                     "/webhooks/nonsense/deliveries/%s/retry" % delivery]:
            res = self.server.request("POST", path, headers=bearer(self.token))
            self.assertProblem(res, 404, "not-found")
        for token, path in [(self.other_token, hook["id"]), (self.token, "nonsense"), (self.token, delivery)]:
            res = self.server.request("DELETE", "/webhooks/" + path, headers=bearer(token))
            self.assertProblem(res, 404, "not-found")
        self.assertEqual(self.server.get("/webhooks/%s/deliveries" % hook["id"], headers=bearer(self.token)).status, 200)
        res = self.server.request("DELETE", "/webhooks/" + hook["id"], headers=bearer(self.token))
        self.assertEqual(res.status, 204, res)
        res = self.server.request("DELETE", "/webhooks/" + hook["id"], headers=bearer(self.token))
        self.assertProblem(res, 404, "not-found")

    def test_the_delivery_log_checks_its_query(self):
        hook = self.register(self.server, self.token, self.receiver.url())
        base = "/webhooks/%s/deliveries" % hook["id"]
        self.assertProblem(self.server.get(base + "?limit=x", headers=bearer(self.token)), 400, "bad-request")
        self.assertProblem(self.server.get(base + "?cursor=forged", headers=bearer(self.token)), 400, "bad-request")
        self.assertProblem(self.server.get(base + "?limit=0", headers=bearer(self.token)), 422, "validation-failed")
        self.assertProblem(self.server.get(base + "?limit=201", headers=bearer(self.token)), 422,
                           "validation-failed")
        self.assertEqual(self.deliveries(self.server, self.token, hook["id"]), {"items": [], "next_cursor": None})

    def test_an_account_holds_at_most_twenty(self):
        token = new_user(self.server)
        for _ in range(20):
            self.register(self.server, token, self.receiver.url(), ["document.uploaded"])
        res = post_json(self.server, "/webhooks", {"url": self.receiver.url(), "events": EVENTS}, token)
        self.assertProblem(res, 409, "limit-reached")


class GuardTest(WebhookCase, SharedServerTestCase):
    """No DOCFLOW_WEBHOOK_ALLOWED_NETWORKS: the defaults."""

    server_env = {"DOCFLOW_WORKERS": 0}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = new_user(cls.server)

    def test_internal_and_unresolvable_targets_are_refused(self):
        for url in [self.receiver.url(), "http://localhost:8080/", "http://10.0.0.1/", "http://[::1]/",
                    "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/",
                    "http://no-such-host.invalid/"]:
            res = post_json(self.server, "/webhooks", {"url": url, "events": EVENTS}, self.token)
            problem = self.assertProblem(res, 422, "validation-failed")
            [error] = problem["errors"]
            self.assertEqual(error["field"], "url")
            self.assertRegex(error["message"], "special-purpose|does not resolve", url)


# ==========================================================================
# Crash: kill -9 of the server while the receiver holds the request


class CrashTest(WebhookCase):
    def test_a_delivery_cut_by_kill_9_is_sent_after_the_restart(self):
        # Longer than the moment between the request's arrival and the kill.
        env = dict(FAST_RETRIES, DOCFLOW_WEBHOOK_TIMEOUT="2s")
        server = self.start_server(**env)
        token = new_user(server)
        hook = self.register(server, token, self.receiver.url("/crash"), ["document.uploaded"])
        self.receiver.script = ["hold"]
        upload(server, token, fixture("en-1page.pdf"), "en-1page.pdf")
        [held] = self.receiver.wait_for(lambda r: r["path"] == "/crash")
        server.kill()  # SIGKILL, mid-request
        self.receiver.release()
        again = self.start_server(data_dir=server.data_dir, **env)
        _, resent = self.receiver.wait_for(lambda r: r["path"] == "/crash", 2)
        self.assertEqual(event_of(resent)["id"], event_of(held)["id"])
        self.assertSigned(resent, hook["secret"])
        delivery = self.wait_delivery(again, token, hook["id"], lambda d: d["status"] == "delivered")
        self.assertEqual(delivery["attempts"], 2)


if __name__ == "__main__":
    unittest.main()
