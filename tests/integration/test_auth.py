"""Authentication (SPEC section 2) over HTTP, black-box: registration, login
(JSON and OAuth2 form), throttling, the bearer-token policy, refresh-token
rotation and reuse detection, logout, the bound on concurrent password
hashes, what the logs may and may not contain, and `docflow user add/list`.

Every failed login from 127.0.0.1 counts against the per-address limit (20
per 15 minutes) in the database of the server that saw it, so tests that
fail logins on purpose start their own server (with its own database), and
the shared servers see only a few."""
import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import pg
from harness import BIN, JWT_SECRET, UUID_RE, RawConnection, ServerTestCase, build_env, start_server

JSON_TYPE = {"Content-Type": "application/json"}
FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded"}
TOKEN_PAIR_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in", "refresh_expires_in"}
RFC3339_MS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
BASE64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
ACCESS_TTL = 900  # seconds: the default 15m
REFRESH_TTL = 7 * 24 * 3600  # the default 7d
BODY_LIMIT = 16 * 1024  # the auth endpoints' body limit
PER_ADDRESS_LIMIT = 20  # SPEC section 2
PARALLEL_BOUND = 60.0  # generous bound on a burst of parallel logins (detects hangs only)

_names = itertools.count(1)


def unique_name(prefix="user"):
    """A fresh valid username: tests sharing a server never collide."""
    return "%s-%d-%s" % (prefix, next(_names), secrets.token_hex(3))


def new_password():
    """A distinctive password, easy to look for in logs."""
    return "pw-" + secrets.token_urlsafe(12)


def post_json(server, path, obj, headers=None):
    body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    return server.request("POST", path, headers={**JSON_TYPE, **(headers or {})}, body=body)


def register(server, username, password):
    return post_json(server, "/auth/register", {"username": username, "password": password})


def login(server, username, password):
    return post_json(server, "/auth/login", {"username": username, "password": password})


def login_form(server, fields):
    return server.request("POST", "/auth/login", headers=FORM_TYPE, body=urllib.parse.urlencode(fields))


def refresh(server, token):
    return post_json(server, "/auth/refresh", {"refresh_token": token})


def logout(server, token):
    return post_json(server, "/auth/logout", {"refresh_token": token})


def bearer(token):
    return {"Authorization": "Bearer " + token}


def me(server, token):
    return server.get("/auth/me", headers=bearer(token))


def without_request_id(body):
    return {k: v for k, v in body.items() if k != "request_id"}


# ---- JWTs forged with the server's own secret


def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forge_jwt(claims, header=None, secret=JWT_SECRET, digest=hashlib.sha256, signed=True):
    """header.payload.signature, HMAC-signed with `secret` (the harness
    configures every server with JWT_SECRET); `signed=False` leaves the
    signature empty, as `alg: none` tokens do."""
    header = {"alg": "HS256", "typ": "at+jwt"} if header is None else header
    signing_input = b64url(json.dumps(header, separators=(",", ":"))) + "." + b64url(
        json.dumps(claims, separators=(",", ":"))
    )
    if not signed:
        return signing_input + "."
    signature = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), digest).digest()
    return signing_input + "." + b64url(signature)


def claims_for(user_id, role="user", **overrides):
    """The claims the server itself would put in a fresh access token."""
    now = int(time.time())
    claims = {"iss": "docflow", "sub": user_id, "iat": now, "exp": now + 600, "jti": secrets.token_hex(8), "role": role}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def jwt_parts(token):
    header, payload, _ = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload))


# ---- the CLI with a password on standard input


def run_cli_stdin(args, stdin_text, data_dir, timeout=30.0, **env):
    """`docflow ARGS` with `stdin_text` as standard input (the harness's
    run_cli gives /dev/null)."""
    try:
        return subprocess.run(
            [BIN, *args],
            env=build_env(data_dir, env),
            input=stdin_text,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("docflow %s was still running after %.1fs (killed)" % (" ".join(args), timeout)) from None


class AuthTestCase(ServerTestCase):
    def assertAnyProblem(self, res, status):
        """A problem+json answer with that status, whatever its slug."""
        self.assertEqual(res.status, status, res)
        self.assertEqual(res.content_type, "application/problem+json", res)
        body = res.json()
        self.assertEqual(body.get("status"), status, body)
        self.assertTrue(str(body.get("type", "")).startswith("/problems/"), body)
        self.assertEqual(body.get("request_id"), res.header("X-Request-ID"), body)
        return body

    def assertValidation(self, res, *fields):
        """422 validation-failed whose errors[] names each of `fields`."""
        body = self.assertProblem(res, 422, "validation-failed")
        self.assertIsInstance(body.get("errors"), list, body)
        for e in body["errors"]:
            self.assertIsInstance(e.get("field"), str, body)
            self.assertIsInstance(e.get("message"), str, body)
        named = {e["field"] for e in body["errors"]}
        for field in fields:
            self.assertIn(field, named, body)
        return body

    def assertTokenPair(self, res):
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.content_type, "application/json", res)
        self.assertIn("no-store", res.header("Cache-Control", ""), res)
        body = res.json()
        self.assertEqual(set(body), TOKEN_PAIR_FIELDS, body)
        self.assertEqual(body["token_type"], "bearer")
        self.assertIsInstance(body["expires_in"], int)
        self.assertIsInstance(body["refresh_expires_in"], int)
        self.assertEqual(body["access_token"].count("."), 2, body)
        self.assertEqual(len(body["refresh_token"]), 43, body)
        self.assertRegex(body["refresh_token"], BASE64URL_RE)
        return body

    def assertBearerRefused(self, res, invalid_token=True):
        """401 with an RFC 6750 challenge; error="invalid_token" exactly when
        a token was presented."""
        self.assertProblem(res, 401, "unauthorized")
        challenge = res.header("WWW-Authenticate")
        self.assertIsNotNone(challenge, res)
        self.assertTrue(challenge.startswith("Bearer "), challenge)
        self.assertIn('realm="docflow"', challenge)
        if invalid_token:
            self.assertIn('error="invalid_token"', challenge)
        else:
            self.assertEqual(challenge, 'Bearer realm="docflow"')
        return challenge

    def new_user(self, server, password=None, prefix="user"):
        """Registers a fresh account; returns (username, password, id)."""
        username = unique_name(prefix)
        password = password or new_password()
        res = register(server, username, password)
        self.assertEqual(res.status, 201, res)
        return username, password, res.json()["id"]

    def login_ok(self, server, username, password):
        return self.assertTokenPair(login(server, username, password))


# ==========================================================================
# Registration


class RegisterTest(AuthTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_created_user_shape(self):
        username = unique_name("Shape.User")
        res = register(self.server, username, new_password())
        self.assertEqual(res.status, 201, res)
        self.assertEqual(res.content_type, "application/json")
        body = res.json()
        self.assertEqual(set(body), {"id", "username", "role", "created_at"}, body)
        self.assertRegex(body["id"], UUID_RE)
        self.assertEqual(body["id"][14], "7", "a UUIDv7")
        self.assertEqual(body["username"], username, "kept as registered, case included")
        self.assertEqual(body["role"], "user")
        self.assertRegex(body["created_at"], RFC3339_MS_RE)

    def test_ids_differ(self):
        _, _, a = self.new_user(self.server)
        _, _, b = self.new_user(self.server)
        self.assertNotEqual(a, b)

    def test_duplicate_is_409_case_insensitively(self):
        username = unique_name("Dup")
        self.assertEqual(register(self.server, username, new_password()).status, 201)
        for variant in (username, username.lower(), username.upper()):
            with self.subTest(variant=variant):
                res = register(self.server, variant, new_password())
                self.assertAnyProblem(res, 409)

    def test_invalid_usernames_are_422(self):
        for username in ("ab", "x" * 65, "has space", "slash/name", "at@sign", "\u00e9mile", "", "tab\tname"):
            with self.subTest(username=username):
                self.assertValidation(register(self.server, username, new_password()), "username")

    def test_username_length_bounds_are_inclusive(self):
        for username in ("z" + secrets.token_hex(1), unique_name("L").ljust(64, "z")):
            with self.subTest(username=username):
                self.assertIn(len(username), (3, 64))
                res = register(self.server, username, new_password())
                self.assertEqual(res.status, 201, res)

    def test_invalid_passwords_are_422(self):
        for password in ("", "short", "7chars!", "p" * 1025):
            with self.subTest(length=len(password)):
                self.assertValidation(register(self.server, unique_name(), password), "password")

    def test_password_length_bounds_are_inclusive(self):
        for password in ("8chars!!", "p" * 1024):
            with self.subTest(length=len(password)):
                self.assertEqual(register(self.server, unique_name(), password).status, 201)

    def test_password_length_counts_characters_not_bytes(self):
        # SPEC: "Passwords: 8-1024 chars". Seven characters are too few even
        # when they take 14 bytes of UTF-8; 1024 two-byte characters are fine.
        res = register(self.server, unique_name(), "\u00e9" * 7)
        self.assertValidation(res, "password")
        res = register(self.server, unique_name(), "\u00e9" * 1024)
        self.assertEqual(res.status, 201, res)

    def test_both_fields_invalid_lists_both(self):
        self.assertValidation(register(self.server, "a", "b"), "username", "password")

    def test_missing_or_non_string_fields_are_422(self):
        cases = {
            "no username": ({"password": new_password()}, "username"),
            "no password": ({"username": unique_name()}, "password"),
            "empty object": ({}, "username"),
            "numeric username": ({"username": 12345, "password": new_password()}, "username"),
            "null password": ({"username": unique_name(), "password": None}, "password"),
        }
        for name, (obj, field) in cases.items():
            with self.subTest(name):
                self.assertValidation(post_json(self.server, "/auth/register", obj), field)

    def test_malformed_json_is_400(self):
        for body in ('{"username": "abc", "password":', "not json", '{"username": "abc",}'):
            with self.subTest(body=body):
                self.assertProblem(post_json(self.server, "/auth/register", body), 400, "bad-request")

    def test_json_that_is_not_an_object_is_422(self):
        # It parses, so it is not a 400 (SPEC section 1): the values are what is wrong.
        for path in ("/auth/register", "/auth/login", "/auth/refresh", "/auth/logout"):
            for body in ("[]", '["alice", "pw"]', '"alice"', "42", "null", "true"):
                with self.subTest(path=path, body=body):
                    self.assertValidation(post_json(self.server, path, body), "body")

    def test_wrong_content_type_is_415(self):
        body = json.dumps({"username": unique_name(), "password": new_password()})
        for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
            with self.subTest(headers=headers):
                res = self.server.request("POST", "/auth/register", headers=headers, body=body)
                self.assertProblem(res, 415, "unsupported-media-type")

    def test_content_type_parameters_are_fine(self):
        body = json.dumps({"username": unique_name(), "password": new_password()})
        res = self.server.request(
            "POST", "/auth/register", headers={"Content-Type": "Application/JSON; charset=utf-8"}, body=body
        )
        self.assertEqual(res.status, 201, res)

    def test_body_over_16_kib_is_413(self):
        body = json.dumps({"username": unique_name(), "password": "p" * (BODY_LIMIT + 100)})
        self.assertProblem(post_json(self.server, "/auth/register", body), 413, "payload-too-large")

    def test_chunked_body_over_16_kib_is_413(self):
        conn = self.connect(self.server)
        chunk = b"x" * 4096
        data = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
        head = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        res = conn.request("POST", "/auth/register", headers=head, body=data)
        self.assertProblem(res, 413, "payload-too-large")

    def test_body_of_exactly_16_kib_is_read(self):
        obj = json.dumps({"username": "ab", "password": new_password()})
        body = obj + " " * (BODY_LIMIT - len(obj))
        self.assertEqual(len(body), BODY_LIMIT)
        self.assertValidation(post_json(self.server, "/auth/register", body), "username")


class SignupThrottleTest(AuthTestCase):
    """Registration from one address in a loop (113 accounts in 4 s, seen by
    a review) must neither go on unbounded nor starve the logins of users
    who already have an account."""

    def test_registrations_past_the_limit_are_429_with_retry_after(self):
        server = self.start_server(DOCFLOW_SIGNUP_MAX_PER_ADDRESS="3")
        statuses = [register(server, unique_name("loop"), new_password()).status for _ in range(3)]
        self.assertEqual(statuses, [201, 201, 201])
        res = register(server, unique_name("loop"), new_password())
        self.assertProblem(res, 429, "too-many-attempts")
        self.assertGreaterEqual(int(res.header("Retry-After")), 55 * 60)
        # Refused before anything was stored: the name is still free later.
        self.assertEqual(server.get("/healthz").status, 200)

    def test_a_registration_flood_does_not_starve_logins(self):
        server = self.start_server(DOCFLOW_MAX_CONCURRENT_HASHES="2")
        username, password, _ = self.new_user(server)
        stop = threading.Event()

        def flood():
            while not stop.is_set():
                register(server, unique_name("flood"), new_password())

        threads = [threading.Thread(target=flood) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)  # the flood is running
            statuses = [login(server, username, password).status for _ in range(12)]
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(statuses, [200] * 12, "logins failed while registrations ran")


class SignupClosedTest(AuthTestCase):
    def test_closed_signup_is_403(self):
        server = self.start_server(DOCFLOW_SIGNUP="closed")
        res = register(server, unique_name(), new_password())
        self.assertAnyProblem(res, 403)
        # Nothing was created: the name cannot log in.
        self.assertEqual(login(server, "nobody-here", new_password()).status, 401)


# ==========================================================================
# Login


class LoginTest(AuthTestCase):
    """A shared server: fewer than 20 failed logins in total here."""

    @classmethod
    def setUpClass(cls):
        cls.server = start_server()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_json_login_returns_the_token_pair(self):
        username, password, user_id = self.new_user(self.server)
        pair = self.login_ok(self.server, username, password)
        self.assertEqual(pair["expires_in"], ACCESS_TTL)
        self.assertEqual(pair["refresh_expires_in"], REFRESH_TTL)
        header, claims = jwt_parts(pair["access_token"])
        self.assertEqual(header.get("alg"), "HS256")
        self.assertEqual(header.get("typ"), "at+jwt")
        self.assertEqual(claims["iss"], "docflow")
        self.assertEqual(claims["sub"], user_id)
        self.assertEqual(claims["role"], "user")
        self.assertEqual(claims["exp"] - claims["iat"], ACCESS_TTL)
        self.assertTrue(claims["jti"])

    def test_each_login_gets_new_tokens(self):
        username, password, _ = self.new_user(self.server)
        a = self.login_ok(self.server, username, password)
        b = self.login_ok(self.server, username, password)
        self.assertNotEqual(a["refresh_token"], b["refresh_token"])
        self.assertNotEqual(jwt_parts(a["access_token"])[1]["jti"], jwt_parts(b["access_token"])[1]["jti"])

    def test_username_is_case_insensitive_at_login(self):
        username, password, user_id = self.new_user(self.server, prefix="MixedCase")
        pair = self.login_ok(self.server, username.upper(), password)
        self.assertEqual(jwt_parts(pair["access_token"])[1]["sub"], user_id)

    def test_form_login_with_escapes_in_the_password(self):
        password = "p@ss w+rd%&=/" + secrets.token_hex(4)  # space becomes '+', the rest %-escapes
        username, _, user_id = self.new_user(self.server, password=password)
        body = urllib.parse.urlencode({"grant_type": "password", "username": username, "password": password})
        self.assertIn("+", body)
        self.assertIn("%", body)
        res = self.server.request("POST", "/auth/login", headers=FORM_TYPE, body=body)
        pair = self.assertTokenPair(res)
        self.assertEqual(pair["expires_in"], ACCESS_TTL)
        self.assertEqual(jwt_parts(pair["access_token"])[1]["sub"], user_id)
        self.assertEqual(me(self.server, pair["access_token"]).status, 200)

    def test_form_login_with_charset_parameter(self):
        username, password, _ = self.new_user(self.server)
        res = self.server.request(
            "POST",
            "/auth/login",
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
            body=urllib.parse.urlencode({"grant_type": "password", "username": username, "password": password}),
        )
        self.assertTokenPair(res)

    def test_form_with_another_grant_type_is_422(self):
        username, password, _ = self.new_user(self.server)
        for grant in ("client_credentials", "refresh_token", ""):
            with self.subTest(grant=grant):
                res = login_form(self.server, {"grant_type": grant, "username": username, "password": password})
                self.assertValidation(res, "grant_type")

    def test_form_missing_fields_is_422(self):
        res = login_form(self.server, {"username": "someone", "password": new_password()})
        self.assertValidation(res, "grant_type")
        res = login_form(self.server, {"grant_type": "password"})
        self.assertValidation(res, "username", "password")

    def test_undecodable_form_is_400(self):
        body = "grant_type=password&username=%zz&password=x"
        res = self.server.request("POST", "/auth/login", headers=FORM_TYPE, body=body)
        self.assertProblem(res, 400, "bad-request")

    def test_json_missing_fields_is_422(self):
        self.assertValidation(post_json(self.server, "/auth/login", {"username": "someone"}), "password")
        self.assertValidation(post_json(self.server, "/auth/login", {"password": 1, "username": "x"}), "password")

    def test_malformed_and_wrong_type_bodies(self):
        self.assertProblem(post_json(self.server, "/auth/login", '{"username":'), 400, "bad-request")
        res = self.server.request("POST", "/auth/login", headers={"Content-Type": "text/plain"}, body="x")
        self.assertProblem(res, 415, "unsupported-media-type")

    def test_unknown_user_and_wrong_password_get_the_same_401(self):
        username, password, _ = self.new_user(self.server)
        wrong = login(self.server, username, password + "x")
        unknown = login(self.server, unique_name("ghost"), password)
        for res in (wrong, unknown):
            self.assertProblem(res, 401, "invalid-credentials")
        self.assertEqual(without_request_id(wrong.json()), without_request_id(unknown.json()))
        self.assertEqual(wrong.header("WWW-Authenticate"), unknown.header("WWW-Authenticate"))
        self.assertEqual(
            sorted(k.lower() for k, _ in wrong.headers if k.lower() not in ("date", "content-length")),
            sorted(k.lower() for k, _ in unknown.headers if k.lower() not in ("date", "content-length")),
        )
        # The failure did not lock the account: the right password still works.
        self.login_ok(self.server, username, password)


# ==========================================================================
# Throttling


class ThrottleTest(AuthTestCase):
    """Each test has its own server and database: failures count in the
    database, shared by every process that uses it."""

    def assertThrottled(self, res):
        body = self.assertAnyProblem(res, 429)
        retry = res.header("Retry-After")
        self.assertIsNotNone(retry, res)
        self.assertRegex(retry, r"^[0-9]+$", "Retry-After is delay-seconds")
        self.assertGreaterEqual(int(retry), 1)
        self.assertLessEqual(int(retry), 15 * 60)
        return body

    def test_fourth_attempt_is_429_even_with_the_right_password(self):
        server = self.start_server(DOCFLOW_LOGIN_MAX_FAILURES="3")
        username, password, _ = self.new_user(server)
        for _ in range(3):
            self.assertEqual(login(server, username, "wrong-" + new_password()).status, 401)
        res = login(server, username, password)
        self.assertThrottled(res)
        # The wait is what remains of the 15-minute window (the failures were just now).
        self.assertGreaterEqual(int(res.header("Retry-After")), 10 * 60)
        self.assertThrottled(login(server, username, "wrong-again-123"))
        # Only that username: another account from the same address logs in.
        other, other_password, _ = self.new_user(server)
        self.login_ok(server, other, other_password)

    def test_simultaneous_guesses_cannot_pass_the_limit_together(self):
        # Counted when they begin, not when their hash finishes: 16 guesses
        # at once against a limit of 5 give at most 5 answers of 401.
        server = self.start_server(DOCFLOW_MAX_CONCURRENT_HASHES="16")
        username, _, _ = self.new_user(server)
        barrier = threading.Barrier(16)
        statuses = []

        def guess(i):
            barrier.wait()
            statuses.append(login(server, username, "wrong-guess-%d" % i).status)

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(statuses), 16)
        self.assertLessEqual(statuses.count(401), 5, statuses)
        self.assertEqual(statuses.count(401) + statuses.count(429), 16, statuses)

    def test_failures_count_across_letter_case(self):
        server = self.start_server(DOCFLOW_LOGIN_MAX_FAILURES="3")
        username, password, _ = self.new_user(server, prefix="CaseThrottle")
        for variant in (username, username.lower(), username.upper()):
            self.assertEqual(login(server, variant, "wrong-password-1").status, 401)
        self.assertThrottled(login(server, username, password))

    def test_unknown_usernames_are_throttled_the_same(self):
        server = self.start_server(DOCFLOW_LOGIN_MAX_FAILURES="3")
        ghost = unique_name("ghost")
        answers = [login(server, ghost, "wrong-password-%d" % i) for i in range(4)]
        self.assertEqual([r.status for r in answers[:3]], [401, 401, 401])
        self.assertThrottled(answers[3])

    def test_form_logins_are_throttled_too(self):
        server = self.start_server(DOCFLOW_LOGIN_MAX_FAILURES="3")
        username, password, _ = self.new_user(server)
        for _ in range(3):
            res = login_form(server, {"grant_type": "password", "username": username, "password": "nope-nope"})
            self.assertEqual(res.status, 401, res)
        res = login_form(server, {"grant_type": "password", "username": username, "password": password})
        self.assertThrottled(res)

    def test_success_resets_the_username_count(self):
        server = self.start_server(DOCFLOW_LOGIN_MAX_FAILURES="3")
        username, password, _ = self.new_user(server)
        for _ in range(2):
            self.assertEqual(login(server, username, "wrong-password").status, 401)
        self.login_ok(server, username, password)
        for _ in range(2):
            self.assertEqual(login(server, username, "wrong-password").status, 401)
        self.login_ok(server, username, password)  # only 2 failures since the success

    def test_twenty_failures_from_one_address_across_usernames(self):
        server = self.start_server()  # default: 5 per username
        username, password, _ = self.new_user(server)
        statuses = [login(server, unique_name("spray"), "wrong-password").status for _ in range(PER_ADDRESS_LIMIT)]
        self.assertEqual(statuses, [401] * PER_ADDRESS_LIMIT)
        # A username that never failed, with the right password: the address is over its limit.
        self.assertThrottled(login(server, username, password))
        self.assertThrottled(login(server, unique_name("fresh"), "whatever-pass"))

    def test_a_restart_forgets_no_failure(self):
        data_dir = tempfile.mkdtemp(prefix="docflow-it-throttle-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        server = self.start_server(data_dir=data_dir, DOCFLOW_LOGIN_MAX_FAILURES="3")
        username, password, _ = self.new_user(server)
        for _ in range(3):
            self.assertEqual(login(server, username, "wrong-password").status, 401)
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(), 0)
        server = self.start_server(data_dir=data_dir, DOCFLOW_LOGIN_MAX_FAILURES="3")
        self.assertThrottled(login(server, username, password))

    def test_two_nodes_on_one_postgresql_count_against_one_limit(self):
        # Counted in each process's memory, each node allowed 3 failures:
        # 6 guesses in all instead of 3.
        database = pg.PostgresServer()
        self.addCleanup(database.close)
        url = database.create_database()
        nodes = [self.start_server(DOCFLOW_DATABASE_URL=url, DOCFLOW_AUTO_MIGRATE="on",
                                   DOCFLOW_LOGIN_MAX_FAILURES="3") for _ in range(2)]
        username, password, _ = self.new_user(nodes[0])
        statuses = [login(nodes[i % 2], username, "wrong-password").status for i in range(3)]
        self.assertEqual(statuses, [401, 401, 401])
        for node in nodes:
            self.assertThrottled(login(node, username, password))
            self.assertThrottled(login(node, username, "wrong-again-123"))


# ==========================================================================
# The bearer-token policy and /auth/me


class BearerTest(AuthTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server()
        cls.username = unique_name("Bearer.User")
        cls.password = new_password()
        res = register(cls.server, cls.username, cls.password)
        assert res.status == 201, res
        cls.user_id = res.json()["id"]
        res = login(cls.server, cls.username, cls.password)
        assert res.status == 200, res
        cls.pair = res.json()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def test_me_returns_the_account(self):
        res = me(self.server, self.pair["access_token"])
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.content_type, "application/json")
        self.assertEqual(
            res.json(), {"id": self.user_id, "username": self.username, "role": "user", "usage": {"bytes": 0, "documents": 0}, "limits": {"bytes": None, "documents": None}}
        )

    def test_scheme_name_is_case_insensitive(self):
        for scheme in ("bearer", "BEARER"):
            with self.subTest(scheme=scheme):
                res = self.server.get("/auth/me", headers={"Authorization": scheme + " " + self.pair["access_token"]})
                self.assertEqual(res.status, 200, res)

    def test_no_token_is_401_without_error_attribute(self):
        cases = {
            "no header": None,
            "empty bearer": "Bearer ",
            "bare scheme": "Bearer",
            "basic": "Basic dXNlcjpwYXNz",
        }
        for name, value in cases.items():
            with self.subTest(name):
                res = self.server.get("/auth/me", headers={"Authorization": value} if value is not None else None)
                self.assertBearerRefused(res, invalid_token=False)
                self.assertNotIn("error=", res.header("WWW-Authenticate"))

    def test_access_token_forged_with_the_server_secret_is_accepted(self):
        # Guards the forging helper: each refusal below changes one thing.
        res = me(self.server, forge_jwt(claims_for(self.user_id)))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["id"], self.user_id)

    def test_refused_tokens(self):
        uid = self.user_id
        now = int(time.time())
        valid = self.pair["access_token"]
        head, payload, signature = valid.split(".")
        flipped = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
        cases = {
            "garbage": "garbage",
            "three garbage parts": "a.b.c",
            "malformed base64url": "!!!." + payload + "." + signature,
            "bad signature": head + "." + payload + "." + flipped,
            "expired": forge_jwt(claims_for(uid, iat=now - 3600, exp=now - 60)),
            "issued in the future": forge_jwt(claims_for(uid, iat=now + 3600, exp=now + 7200)),
            "not before in the future": forge_jwt(claims_for(uid, nbf=now + 3600)),
            "alg none": forge_jwt(claims_for(uid), header={"alg": "none", "typ": "at+jwt"}, signed=False),
            "alg none, signed": forge_jwt(claims_for(uid), header={"alg": "none", "typ": "at+jwt"}),
            "HS512 with the same key": forge_jwt(
                claims_for(uid), header={"alg": "HS512", "typ": "at+jwt"}, digest=hashlib.sha512
            ),
            "typ JWT": forge_jwt(claims_for(uid), header={"alg": "HS256", "typ": "JWT"}),
            "no typ": forge_jwt(claims_for(uid), header={"alg": "HS256"}),
            "crit": forge_jwt(claims_for(uid), header={"alg": "HS256", "typ": "at+jwt", "crit": ["exp"]}),
            "wrong issuer": forge_jwt(claims_for(uid, iss="someone-else")),
            "another key": forge_jwt(claims_for(uid), secret="another-secret-0123456789abcdef012345"),
            "role superuser": forge_jwt(claims_for(uid, role="superuser")),
            "refresh token as bearer": self.pair["refresh_token"],
            "oversized": "a" * 5000,
        }
        for claim in ("iss", "sub", "iat", "exp", "jti", "role"):
            cases["no " + claim] = forge_jwt(claims_for(uid, **{claim: None}))
        for name, token in cases.items():
            with self.subTest(name):
                res = me(self.server, token)
                self.assertBearerRefused(res)
                self.assertNotIn(token, res.body.decode("utf-8", "replace"))

    def test_expired_beyond_any_permitted_leeway(self):
        # SPEC: leeway at most 30 s, so 31 s past exp is refused whatever the leeway.
        now = int(time.time())
        res = me(self.server, forge_jwt(claims_for(self.user_id, iat=now - 900, exp=now - 31)))
        self.assertBearerRefused(res)

    def test_token_for_an_account_that_does_not_exist(self):
        res = me(self.server, forge_jwt(claims_for("01890000-0000-7000-8000-000000000000")))
        self.assertBearerRefused(res)

    def test_role_comes_from_the_account_not_the_token(self):
        res = me(self.server, forge_jwt(claims_for(self.user_id, role="admin")))
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["role"], "user")

    def test_access_token_is_not_a_refresh_token(self):
        res = refresh(self.server, self.pair["access_token"])
        self.assertAnyProblem(res, 401)
        self.assertEqual(me(self.server, self.pair["access_token"]).status, 200)

    def test_access_log_carries_the_user_id(self):
        rid = "auth-me-%s" % secrets.token_hex(4)
        res = self.server.get("/auth/me", headers={**bearer(self.pair["access_token"]), "X-Request-ID": rid})
        self.assertEqual(res.status, 200, res)
        line = self.server.wait_for_log(event="http.request", request_id=rid)
        self.assertEqual(line["route"], "/auth/me")
        self.assertEqual(line["user_id"], self.user_id)
        rid = "auth-me-anon-%s" % secrets.token_hex(4)
        self.server.get("/auth/me", headers={"X-Request-ID": rid})
        line = self.server.wait_for_log(event="http.request", request_id=rid)
        self.assertEqual(line["status"], 401)
        self.assertIsNone(line.get("user_id"))


# ==========================================================================
# Refresh rotation, reuse detection, logout


class RefreshTest(AuthTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = start_server()  # DOCFLOW_REFRESH_REUSE_GRACE: default 0s

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def setUp(self):
        self.username, self.password, self.user_id = self.new_user(self.server)

    def fresh_login(self):
        return self.login_ok(self.server, self.username, self.password)

    def rotate(self, token):
        pair = self.assertTokenPair(refresh(self.server, token))
        # With the default grace of 0 s, a replay in the same millisecond
        # would still count as "within grace": step past it.
        time.sleep(0.01)
        return pair

    def test_rotation_gives_a_working_new_pair(self):
        first = self.fresh_login()
        second = self.rotate(first["refresh_token"])
        self.assertEqual(second["expires_in"], ACCESS_TTL)
        self.assertEqual(second["refresh_expires_in"], REFRESH_TTL)
        self.assertNotEqual(second["refresh_token"], first["refresh_token"])
        self.assertNotEqual(second["access_token"], first["access_token"])
        res = me(self.server, second["access_token"])
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["id"], self.user_id)
        third = self.rotate(second["refresh_token"])
        self.assertEqual(me(self.server, third["access_token"]).status, 200)

    def test_reuse_is_401_and_revokes_the_whole_family(self):
        first = self.fresh_login()
        second = self.rotate(first["refresh_token"])
        third = self.rotate(second["refresh_token"])
        res = refresh(self.server, first["refresh_token"])  # replayed
        self.assertAnyProblem(res, 401)
        # The newest token of that login stops working too.
        self.assertAnyProblem(refresh(self.server, third["refresh_token"]), 401)
        self.assertAnyProblem(refresh(self.server, second["refresh_token"]), 401)
        # Access tokens already issued stay valid until they expire (documented).
        self.assertEqual(me(self.server, third["access_token"]).status, 200)

    def test_reuse_of_the_latest_used_token_also_revokes(self):
        first = self.fresh_login()
        second = self.rotate(first["refresh_token"])
        self.assertAnyProblem(refresh(self.server, first["refresh_token"]), 401)
        self.assertAnyProblem(refresh(self.server, second["refresh_token"]), 401)

    def test_reuse_revokes_only_that_login(self):
        a = self.fresh_login()
        b = self.fresh_login()
        self.rotate(a["refresh_token"])
        self.assertAnyProblem(refresh(self.server, a["refresh_token"]), 401)
        self.rotate(b["refresh_token"])  # the other login is untouched

    def test_missing_field_is_422(self):
        for obj in ({}, {"token": "x"}):
            with self.subTest(obj=obj):
                self.assertValidation(post_json(self.server, "/auth/refresh", obj), "refresh_token")

    def test_non_string_is_422(self):
        for value in (123, None, ["abc"], {"t": 1}, True):
            with self.subTest(value=value):
                res = post_json(self.server, "/auth/refresh", {"refresh_token": value})
                self.assertValidation(res, "refresh_token")

    def test_empty_or_unknown_is_401(self):
        for token in ("", "unknown-token", secrets.token_urlsafe(32), "a.b.c"):
            with self.subTest(token=token):
                res = refresh(self.server, token)
                self.assertAnyProblem(res, 401)

    def test_malformed_or_wrong_type_body(self):
        self.assertProblem(post_json(self.server, "/auth/refresh", '{"refresh_token": '), 400, "bad-request")
        res = self.server.request("POST", "/auth/refresh", headers=FORM_TYPE, body="refresh_token=abc")
        self.assertProblem(res, 415, "unsupported-media-type")

    def test_logout_revokes_the_family(self):
        pair = self.fresh_login()
        res = logout(self.server, pair["refresh_token"])
        self.assertEqual(res.status, 204, res)
        self.assertEqual(res.body, b"")
        self.assertAnyProblem(refresh(self.server, pair["refresh_token"]), 401)
        # Issued access tokens stay valid until they expire (documented).
        self.assertEqual(me(self.server, pair["access_token"]).status, 200)

    def test_logout_with_an_older_token_revokes_the_newest(self):
        first = self.fresh_login()
        second = self.rotate(first["refresh_token"])
        self.assertEqual(logout(self.server, first["refresh_token"]).status, 204)
        self.assertAnyProblem(refresh(self.server, second["refresh_token"]), 401)

    def test_logout_leaves_other_logins_alone(self):
        a = self.fresh_login()
        b = self.fresh_login()
        self.assertEqual(logout(self.server, a["refresh_token"]).status, 204)
        self.rotate(b["refresh_token"])

    def test_logout_is_idempotent_and_quiet_about_unknown_tokens(self):
        pair = self.fresh_login()
        self.assertEqual(logout(self.server, pair["refresh_token"]).status, 204)
        self.assertEqual(logout(self.server, pair["refresh_token"]).status, 204)
        self.assertEqual(logout(self.server, secrets.token_urlsafe(32)).status, 204)

    def test_logout_missing_field_is_422(self):
        self.assertValidation(post_json(self.server, "/auth/logout", {}), "refresh_token")
        self.assertValidation(post_json(self.server, "/auth/logout", {"refresh_token": 5}), "refresh_token")


class RefreshGraceTest(AuthTestCase):
    def test_just_rotated_token_works_again_within_grace(self):
        server = self.start_server(DOCFLOW_REFRESH_REUSE_GRACE="30s")
        username, password, _ = self.new_user(server)
        first = self.login_ok(server, username, password)
        second = self.assertTokenPair(refresh(server, first["refresh_token"]))
        again = self.assertTokenPair(refresh(server, first["refresh_token"]))  # the other tab
        self.assertNotEqual(again["refresh_token"], second["refresh_token"])
        # Both successors belong to the login and work.
        self.assertEqual(me(server, again["access_token"]).status, 200)
        self.assertTokenPair(refresh(server, second["refresh_token"]))
        self.assertTokenPair(refresh(server, again["refresh_token"]))
        # Logout still ends the whole login.
        self.assertEqual(logout(server, first["refresh_token"]).status, 204)
        self.assertAnyProblem(refresh(server, first["refresh_token"]), 401)


# ==========================================================================
# The bound on concurrent password hashes


def parallel_logins(port, body, n):
    """Fires `n` logins at once (connections opened first, then released
    together); returns the responses (or the exception of a failed one)."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def one(i):
        try:
            conn = RawConnection(port, timeout=PARALLEL_BOUND)
            try:
                barrier.wait(timeout=PARALLEL_BOUND)
                results[i] = conn.request("POST", "/auth/login", headers=JSON_TYPE, body=body)
            finally:
                conn.close()
        except Exception as e:  # reported by the caller
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=PARALLEL_BOUND)
    return results


class HashLimitTest(AuthTestCase):
    def test_logins_past_the_hashing_limit_are_503(self):
        server = self.start_server(DOCFLOW_MAX_CONCURRENT_HASHES="1")
        username, password, _ = self.new_user(server)
        body = json.dumps({"username": username, "password": password})
        results = parallel_logins(server.port, body, 20)
        for r in results:
            self.assertNotIsInstance(r, (Exception, type(None)), "a login got no answer: %r" % (r,))
        statuses = [r.status for r in results]
        self.assertTrue(set(statuses) <= {200, 503}, statuses)
        self.assertIn(503, statuses)
        self.assertIn(200, statuses)
        for r in results:
            if r.status == 503:
                self.assertAnyProblem(r, 503)
                self.assertRegex(r.header("Retry-After", ""), r"^[0-9]+$", r)
            else:
                self.assertTokenPair(r)
        self.assertEqual(server.get("/healthz").status, 200)
        # Busy is not a failed login: nothing was throttled, the user still logs in.
        self.login_ok(server, username, password)


# ==========================================================================
# Logs


class AuthLogTest(AuthTestCase):
    def test_login_events_and_no_secrets_in_any_line(self):
        server = self.start_server(DOCFLOW_LOG_LEVEL="debug")  # not even at debug level
        username, password, user_id = self.new_user(server)
        wrong_password = new_password()
        form_password = "form p@ss+%" + secrets.token_hex(4)
        form_user, _, _ = self.new_user(server, password=form_password)

        secrets_seen = [password, wrong_password, form_password, urllib.parse.quote_plus(form_password)]
        ok_rid = "login-ok-%s" % secrets.token_hex(4)
        res = post_json(server, "/auth/login", {"username": username, "password": password}, {"X-Request-ID": ok_rid})
        pair = self.assertTokenPair(res)
        bad_rid = "login-bad-%s" % secrets.token_hex(4)
        res = post_json(
            server, "/auth/login", {"username": username, "password": wrong_password}, {"X-Request-ID": bad_rid}
        )
        self.assertEqual(res.status, 401)
        form_pair = self.assertTokenPair(
            login_form(server, {"grant_type": "password", "username": form_user, "password": form_password})
        )
        rotated = self.assertTokenPair(refresh(server, pair["refresh_token"]))
        time.sleep(0.01)
        self.assertEqual(refresh(server, pair["refresh_token"]).status, 401)  # reuse, logged
        self.assertEqual(me(server, rotated["access_token"]).status, 200)
        forged = forge_jwt(claims_for(user_id, exp=int(time.time()) - 60))
        self.assertEqual(me(server, forged).status, 401)
        self.assertEqual(logout(server, form_pair["refresh_token"]).status, 204)
        secrets_seen += [forged]
        for p in (pair, form_pair, rotated):
            secrets_seen += [p["access_token"], p["refresh_token"]]
            secrets_seen += p["access_token"].split(".")[1:]  # payload and signature alone

        ok = server.wait_for_log(event="auth.login_succeeded", request_id=ok_rid)
        self.assertEqual(ok["user_id"], user_id)
        self.assertEqual(ok["remote"], "127.0.0.1")
        bad = server.wait_for_log(event="auth.login_failed", request_id=bad_rid)
        self.assertEqual(bad["remote"], "127.0.0.1")
        self.assertEqual(bad["level"], "warn")
        # Every request's access line is written by now.
        server.wait_for_log(event="http.request", route="/auth/logout")

        lines = list(server.lines) + server.stderr.splitlines()
        self.assertGreater(len(lines), 10)
        for line in lines:
            for secret in secrets_seen:
                self.assertNotIn(secret, line, "a secret reached the log")


# ==========================================================================
# The command line


class UserCommandTest(AuthTestCase):
    def setUp(self):
        self.data_dir = tempfile.mkdtemp(prefix="docflow-it-auth-")
        self.addCleanup(shutil.rmtree, self.data_dir, True)

    def user_add(self, name, password_line, *flags):
        return run_cli_stdin(["user", "add", name, *flags], password_line, self.data_dir)

    def assertNoPassword(self, out, password):
        self.assertNotIn(password, out.stdout)
        self.assertNotIn(password, out.stderr)

    def test_add_then_login_over_http(self):
        password = new_password()
        out = self.user_add("cli.alice", password + "\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        user_id = out.stdout.strip()
        self.assertRegex(user_id, UUID_RE)
        self.assertNoPassword(out, password)

        admin_password = new_password()
        out = self.user_add("cli.root", admin_password + "\r\n", "--admin")  # a CRLF line ending
        self.assertEqual(out.returncode, 0, out.stderr)
        admin_id = out.stdout.strip()
        self.assertNoPassword(out, admin_password)

        server = self.start_server(data_dir=self.data_dir, DOCFLOW_SIGNUP="closed")
        pair = self.login_ok(server, "cli.alice", password)
        res = me(server, pair["access_token"])
        self.assertEqual(res.json(), {"id": user_id, "username": "cli.alice", "role": "user", "usage": {"bytes": 0, "documents": 0}, "limits": {"bytes": None, "documents": None}})
        pair = self.login_ok(server, "CLI.ROOT", admin_password)
        res = me(server, pair["access_token"])
        self.assertEqual(res.json(), {"id": admin_id, "username": "cli.root", "role": "admin", "usage": {"bytes": 0, "documents": 0}, "limits": {"bytes": None, "documents": None}})
        self.assertEqual(jwt_parts(pair["access_token"])[1]["role"], "admin")
        for line in server.lines + server.stderr_lines:
            self.assertNotIn(password, line)
            self.assertNotIn(admin_password, line)

    def test_only_the_first_line_is_the_password(self):
        out = self.user_add("cli.lines", "first-line-pass\nsecond-line-pass\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        server = self.start_server(data_dir=self.data_dir)
        self.login_ok(server, "cli.lines", "first-line-pass")

    def test_bad_input_exits_2(self):
        cases = {
            "short password": ("cli.short", "short\n"),
            "no password": ("cli.nopass", ""),
            "long password": ("cli.long", "p" * 1025 + "\n"),
            "bad username": ("no spaces allowed", new_password() + "\n"),
            "short username": ("ab", new_password() + "\n"),
        }
        for name, (user, stdin_text) in cases.items():
            with self.subTest(name):
                out = self.user_add(user, stdin_text)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertTrue(out.stderr.strip(), "an explanation on stderr")
        out = run_cli_stdin(["user", "list"], "", self.data_dir)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("cli.", out.stdout, "nothing was created")

    def test_duplicate_exits_1(self):
        first = new_password()
        self.assertEqual(self.user_add("cli.dup", first + "\n").returncode, 0)
        second = new_password()
        out = self.user_add("CLI.Dup", second + "\n")
        self.assertEqual(out.returncode, 1, out.stderr)
        self.assertEqual(out.stdout.strip(), "")
        self.assertNoPassword(out, second)
        # The first account is unchanged.
        server = self.start_server(data_dir=self.data_dir)
        self.login_ok(server, "cli.dup", first)
        self.assertEqual(login(server, "cli.dup", second).status, 401)

    def test_list_prints_usernames_with_roles(self):
        password = new_password()
        self.assertEqual(self.user_add("cli.bob", password + "\n").returncode, 0)
        self.assertEqual(self.user_add("cli.admin", password + "\n", "--admin").returncode, 0)
        out = run_cli_stdin(["user", "list"], "", self.data_dir)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn(password, out.stdout + out.stderr)
        self.assertNotIn("$argon2", out.stdout, "hashes are not listed either")
        rows = {}
        for line in out.stdout.splitlines():
            cells = line.split("\t")
            if len(cells) >= 3 and UUID_RE.match(cells[0]):
                rows[cells[1]] = cells[2]
        self.assertEqual(rows, {"cli.bob": "user", "cli.admin": "admin"}, out.stdout)

    def test_user_added_while_the_server_runs_can_log_in(self):
        server = self.start_server(data_dir=self.data_dir)
        password = new_password()
        out = self.user_add("cli.live", password + "\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.login_ok(server, "cli.live", password)
        # And the reverse: a user registered over HTTP is listed.
        self.assertEqual(register(server, "http.carol", new_password()).status, 201)
        out = run_cli_stdin(["user", "list"], "", self.data_dir)
        self.assertIn("http.carol\tuser", out.stdout)


if __name__ == "__main__":
    unittest.main()
