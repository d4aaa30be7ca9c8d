"""Machine clients (SPEC section 4, "API keys" and "Quotas and fairness"),
black-box over HTTP: API keys made, listed, used as a user's bearer
credential and revoked; per-user quotas on stored bytes and documents,
refused before the body is read and enforced exactly at the commit, also
under concurrent uploads; `docflow user set-quota`."""
import concurrent.futures
import json
import re
import unittest

from harness import ENGINE, JWT_SECRET, ServerTestCase, SharedServerTestCase, metric, parse_metrics, run_cli, run_sql
from test_documents import (
    KiB,
    bearer,
    form,
    file_part,
    form_type,
    make_pdf,
    new_user,
    unique_name,
    upload,
)

KEY_RE = re.compile(r"^dfk_[A-Za-z0-9_-]{43}$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
JSON_TYPE = {"Content-Type": "application/json"}


def post_json(server, path, obj, token=None):
    body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    headers = {**JSON_TYPE, **(bearer(token) if token else {})}
    return server.request("POST", path, headers=headers, body=body)


def make_key(server, token, name="scanner", **more):
    res = post_json(server, "/auth/api-keys", {"name": name, **more}, token)
    assert res.status == 201, res
    return res.json()


class ApiKeyTest(SharedServerTestCase):
    def test_a_key_is_shown_once_and_listed_without_it(self):
        token, user_id = new_user(self.server, "keys")
        res = post_json(self.server, "/auth/api-keys", {"name": "scanner station"}, token)
        self.assertEqual(res.status, 201, res)
        self.assertEqual(res.header("Cache-Control"), "no-store")
        made = res.json()
        self.assertEqual(set(made), {"id", "name", "key", "prefix", "created_at", "expires_at"})
        self.assertRegex(made["key"], KEY_RE)
        self.assertEqual(made["prefix"], made["key"][:12])
        self.assertEqual(made["name"], "scanner station")
        self.assertRegex(made["created_at"], RFC3339_RE)
        self.assertIsNone(made["expires_at"])
        listed = self.server.get("/auth/api-keys", headers=bearer(token))
        self.assertEqual(listed.status, 200, listed)
        items = listed.json()["items"]
        self.assertEqual(len(items), 1)
        self.assertEqual(
            set(items[0]), {"id", "name", "prefix", "created_at", "expires_at", "last_used_at"}, "no key in lists"
        )
        self.assertNotIn(made["key"], listed.body.decode())
        self.assertIsNone(items[0]["last_used_at"])
        # Only a hash of it is stored.
        stored = run_sql(self.server.data_dir, "SELECT key_hash FROM api_keys WHERE id = '%s'" % made["id"])
        self.assertEqual(len(stored), 1)
        self.assertNotIn(made["key"][4:], stored[0][0])
        self.assertRegex(stored[0][0], r"^[0-9a-f]{64}$")
        # A lifetime sets the expiry.
        expiring = make_key(self.server, token, "short", expires_in=3600)
        self.assertRegex(expiring["expires_at"], RFC3339_RE)
        self.assertEqual(user_id, self.server.get("/auth/me", headers=bearer(made["key"])).json()["id"])

    def test_a_key_acts_as_its_user_everywhere_but_key_management(self):
        token, user_id = new_user(self.server, "keys")
        key = make_key(self.server, token)["key"]
        me = self.server.get("/auth/me", headers=bearer(key))
        self.assertEqual(me.status, 200, me)
        self.assertEqual(me.json()["id"], user_id)
        res = upload(self.server, key, make_pdf("by key"))
        self.assertEqual(res.status, 201, res)
        doc = res.json()
        self.assertEqual(self.server.get("/documents/" + doc["id"], headers=bearer(token)).status, 200)
        self.assertEqual(self.server.get("/documents/" + doc["id"], headers=bearer(key)).status, 200)
        # Another user's key sees none of it.
        other_token, _ = new_user(self.server, "keys")
        other_key = make_key(self.server, other_token)["key"]
        self.assertProblem(self.server.get("/documents/" + doc["id"], headers=bearer(other_key)), 404, "not-found")
        # Keys cannot manage keys: a leaked key makes no more of them.
        for method, path, body in (
            ("POST", "/auth/api-keys", json.dumps({"name": "more"})),
            ("GET", "/auth/api-keys", None),
            ("DELETE", "/auth/api-keys/00000000-0000-7000-8000-000000000000", None),
        ):
            res = self.server.request(method, path, headers={**bearer(key), **JSON_TYPE}, body=body)
            self.assertProblem(res, 403, "forbidden")
            self.assertIn("insufficient_scope", res.header("WWW-Authenticate"))
        # Its use is recorded, and counted by method.
        items = self.server.get("/auth/api-keys", headers=bearer(token)).json()["items"]
        self.assertRegex(items[0]["last_used_at"], RFC3339_RE)
        samples = parse_metrics(self.server.get("/metrics").body.decode())
        self.assertGreaterEqual(
            metric(samples, "docflow_auth_requests_total", method="api_key", outcome="accepted"), 3
        )
        self.assertGreaterEqual(
            metric(samples, "docflow_auth_requests_total", method="access_token", outcome="accepted"), 1
        )

    def test_a_revoked_or_expired_or_unknown_key_is_refused(self):
        token, _ = new_user(self.server, "keys")
        made = make_key(self.server, token)
        self.assertEqual(self.server.get("/documents", headers=bearer(made["key"])).status, 200)
        res = self.server.request("DELETE", "/auth/api-keys/" + made["id"], headers=bearer(token))
        self.assertEqual(res.status, 204, res)
        res = self.server.get("/documents", headers=bearer(made["key"]))
        self.assertProblem(res, 401, "unauthorized")
        self.assertIn('error="invalid_token"', res.header("WWW-Authenticate"))
        self.assertProblem(
            self.server.request("DELETE", "/auth/api-keys/" + made["id"], headers=bearer(token)), 404, "not-found"
        )
        unknown = "dfk_" + "A" * 43
        self.assertProblem(self.server.get("/documents", headers=bearer(unknown)), 401, "unauthorized")
        expiring = make_key(self.server, token, "soon", expires_in=60)
        past = "1000" if ENGINE == "sqlite" else "now() - interval '1 minute'"
        run_sql(self.server.data_dir, "UPDATE api_keys SET expires_at = %s WHERE id = '%s'" % (past, expiring["id"]))
        res = self.server.get("/documents", headers=bearer(expiring["key"]))
        self.assertProblem(res, 401, "unauthorized")
        self.assertIn("expired", res.json()["detail"])
        samples = parse_metrics(self.server.get("/metrics").body.decode())
        self.assertGreaterEqual(metric(samples, "docflow_auth_requests_total", method="api_key", outcome="refused"), 3)

    def test_bad_requests_are_refused_and_make_nothing(self):
        token, _ = new_user(self.server, "keys")
        self.assertProblem(post_json(self.server, "/auth/api-keys", b"{not json", token), 400, "bad-request")
        for body, field in (
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "x" * 101}, "name"),
            ({"name": "tab\there"}, "name"),
            ({"name": 5}, "name"),
            ({"name": "ok", "expires_in": 59}, "expires_in"),
            ({"name": "ok", "expires_in": "3600"}, "expires_in"),
            ({"name": "ok", "expires_in": 1.5}, "expires_in"),
            ({"name": "ok", "expires_in": 10**10}, "expires_in"),
        ):
            problem = self.assertProblem(post_json(self.server, "/auth/api-keys", body, token), 422, None)
            self.assertIn(field, [e["field"] for e in problem["errors"]], body)
        self.assertProblem(
            post_json(self.server, "/auth/api-keys", {"name": "x" * (20 * KiB)}, token), 413, "payload-too-large"
        )
        self.assertProblem(post_json(self.server, "/auth/api-keys", {"name": "anon"}), 401, "unauthorized")
        self.assertProblem(self.server.get("/auth/api-keys"), 401, "unauthorized")
        self.assertProblem(self.server.request("DELETE", "/auth/api-keys/not-a-uuid", headers=bearer(token)), 404, "not-found")
        self.assertEqual(self.server.get("/auth/api-keys", headers=bearer(token)).json()["items"], [])
        # Another user's key cannot be revoked by id.
        other_token, _ = new_user(self.server, "keys")
        theirs = make_key(self.server, other_token)
        self.assertProblem(
            self.server.request("DELETE", "/auth/api-keys/" + theirs["id"], headers=bearer(token)), 404, "not-found"
        )
        self.assertEqual(self.server.get("/documents", headers=bearer(theirs["key"])).status, 200)


class ApiKeyAcrossProcessesTest(ServerTestCase):
    def test_revocation_reaches_every_process_and_keys_outlive_a_secret_rotation(self):
        first = self.start_server()
        token, _ = new_user(first, "keys")
        made = make_key(first, token)
        kept = make_key(first, token, "kept")
        # A second process on the same database and storage.
        second = self.start_server(data_dir=first.data_dir)
        self.assertEqual(second.get("/documents", headers=bearer(made["key"])).status, 200)
        self.assertEqual(first.request("DELETE", "/auth/api-keys/" + made["id"], headers=bearer(token)).status, 204)
        self.assertProblem(second.get("/documents", headers=bearer(made["key"])), 401, "unauthorized")
        # The signing secret rotates: keys hashed under the old one still open, and are hashed again.
        rotated = self.start_server(
            data_dir=first.data_dir,
            DOCFLOW_JWT_SECRET="rotated-secret-" + "9" * 32,
            DOCFLOW_JWT_SECRET_PREVIOUS=JWT_SECRET,
        )
        before = run_sql(first.data_dir, "SELECT key_hash FROM api_keys WHERE id = '%s'" % kept["id"])
        self.assertEqual(rotated.get("/documents", headers=bearer(kept["key"])).status, 200)
        after = run_sql(first.data_dir, "SELECT key_hash FROM api_keys WHERE id = '%s'" % kept["id"])
        self.assertNotEqual(before, after)
        only_new = self.start_server(data_dir=first.data_dir, DOCFLOW_JWT_SECRET="rotated-secret-" + "9" * 32)
        self.assertEqual(only_new.get("/documents", headers=bearer(kept["key"])).status, 200)
        # Pinned to the old secret, keys do not depend on the JWT secret at all.
        pinned_token, _ = new_user(only_new, "keys")
        pinning = self.start_server(
            data_dir=first.data_dir, DOCFLOW_JWT_SECRET="rotated-secret-" + "9" * 32, DOCFLOW_API_KEY_SECRET=JWT_SECRET
        )
        pinned = make_key(pinning, pinned_token)
        again = self.start_server(
            data_dir=first.data_dir, DOCFLOW_JWT_SECRET="third-secret-" + "7" * 32, DOCFLOW_API_KEY_SECRET=JWT_SECRET
        )
        self.assertEqual(again.get("/documents", headers=bearer(pinned["key"])).status, 200)
        self.assertProblem(only_new.get("/documents", headers=bearer(pinned["key"])), 401, "unauthorized")


class QuotaTest(ServerTestCase):
    def test_documents_past_the_quota_are_refused_until_one_is_deleted(self):
        server = self.start_server(DOCFLOW_QUOTA_DOCUMENTS="2", DOCFLOW_QUOTA_BYTES="1MiB")
        token, _ = new_user(server, "quota")
        me = server.get("/auth/me", headers=bearer(token)).json()
        self.assertEqual(me["usage"], {"bytes": 0, "documents": 0})
        self.assertEqual(me["limits"], {"bytes": 1024 * KiB, "documents": 2})
        first = upload(server, token, make_pdf("one")).json()
        second = upload(server, token, make_pdf("two"))
        self.assertEqual(second.status, 201, second)
        refused = upload(server, token, make_pdf("three"))
        problem = self.assertProblem(refused, 403, "quota-exceeded")
        used = len(make_pdf("one")) + len(make_pdf("two"))
        self.assertEqual(problem["usage"], {"bytes": used, "documents": 2})
        self.assertEqual(problem["limits"], {"bytes": 1024 * KiB, "documents": 2})
        self.assertEqual(len(server.get("/documents", headers=bearer(token)).json()["items"]), 2)
        # Another user has a quota of their own.
        other, _ = new_user(server, "quota")
        self.assertEqual(upload(server, other, make_pdf("theirs")).status, 201)
        # Deleting frees room.
        self.assertEqual(server.request("DELETE", "/documents/" + first["id"], headers=bearer(token)).status, 204)
        self.assertEqual(server.get("/auth/me", headers=bearer(token)).json()["usage"]["documents"], 1)
        self.assertEqual(upload(server, token, make_pdf("three")).status, 201)

    def test_an_upload_that_cannot_fit_is_refused_before_its_body_and_a_tus_one_at_creation(self):
        server = self.start_server(DOCFLOW_QUOTA_BYTES="100KiB")
        token, _ = new_user(server, "quota")
        # The head alone: the server answers without waiting for the body.
        body = form([file_part(make_pdf("big", size=300 * KiB))])
        conn = self.connect(server)
        conn.send(
            (
                "POST /documents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\n"
                "Content-Length: %d\r\n\r\n" % (token, form_type(), len(body))
            ).encode()
        )
        res = conn.read_response()
        self.assertProblem(res, 403, "quota-exceeded")
        tus = server.request(
            "POST",
            "/uploads",
            headers={**bearer(token), "Tus-Resumable": "1.0.0", "Upload-Length": str(101 * KiB),
                     "Upload-Metadata": "filename YS5wZGY="},
        )
        self.assertProblem(tus, 403, "quota-exceeded")
        self.assertEqual(run_sql(server.data_dir, "SELECT count(*) FROM uploads"), [["0"]])
        self.assertEqual(server.get("/auth/me", headers=bearer(token)).json()["usage"], {"bytes": 0, "documents": 0})

    def test_concurrent_uploads_never_pass_the_quota_together(self):
        size = 20 * KiB
        server = self.start_server(DOCFLOW_QUOTA_BYTES=str(3 * size))
        token, _ = new_user(server, "quota")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: upload(server, token, make_pdf("c%d" % i, size=size)).status, range(8)))
        self.assertEqual(sorted(answers), [201] * 3 + [403] * 5, answers)
        self.assertEqual(server.get("/auth/me", headers=bearer(token)).json()["usage"], {"bytes": 3 * size, "documents": 3})
        self.assertEqual(len(server.get("/documents", headers=bearer(token)).json()["items"]), 3)

    def test_set_quota_overrides_the_defaults_for_one_user(self):
        server = self.start_server(DOCFLOW_QUOTA_DOCUMENTS="1")
        username = unique_name("quota")
        res = post_json(server, "/auth/register", {"username": username, "password": "pw-long-enough-1"})
        self.assertEqual(res.status, 201, res)
        token = server.request(
            "POST", "/auth/login", headers=JSON_TYPE,
            body=json.dumps({"username": username, "password": "pw-long-enough-1"}),
        ).json()["access_token"]
        self.assertEqual(upload(server, token, make_pdf("a")).status, 201)
        self.assertProblem(upload(server, token, make_pdf("b")), 403, "quota-exceeded")
        done = run_cli(
            ["user", "set-quota", username, "--documents", "3", "--bytes", "unlimited"], data_dir=server.data_dir
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.splitlines(), ["bytes\t%d\tunlimited" % len(make_pdf("a")), "documents\t1\t3"])
        self.assertEqual(server.get("/auth/me", headers=bearer(token)).json()["limits"], {"bytes": None, "documents": 3})
        self.assertEqual(upload(server, token, make_pdf("b")).status, 201)
        back = run_cli(["user", "set-quota", username, "--documents", "default"], data_dir=server.data_dir)
        self.assertEqual(back.returncode, 0, back.stderr)
        self.assertEqual(server.get("/auth/me", headers=bearer(token)).json()["limits"]["documents"], 1)
        for args, code in (
            (["user", "set-quota", username], 2),
            (["user", "set-quota", username, "--documents", "-1"], 2),
            (["user", "set-quota", username, "--bytes", "lots"], 2),
            (["user", "set-quota", "nobody-" + username, "--documents", "3"], 1),
        ):
            res = run_cli(args, data_dir=server.data_dir)
            self.assertEqual(res.returncode, code, (args, res.stderr))


if __name__ == "__main__":
    unittest.main()
