"""Request bodies: the 16 KiB limit of a JSON endpoint, chunked bodies, the
body inactivity deadline and Expect: 100-continue.

They target POST /auth/login (JSON body, limit 16 KiB): wrong credentials
answer 401, malformed JSON 400. Every test starts its own server, so login
throttling (per username and per client address) never carries over.
"""
import json
import time
import unittest

from harness import ServerTestCase, format_request, wait_closed

LOGIN = "/auth/login"
LIMIT = 16 * 1024
CLOSE_BOUND = 5.0
LOGIN_BOUND = 15.0  # password hashing is deliberately slow; bound, not speed


def credentials(username="nobody-here", password="wrong-password-1"):
    return json.dumps({"username": username, "password": password}).encode()


def padded_credentials(size, username="nobody-here"):
    """A valid JSON login body of exactly `size` bytes (trailing whitespace)."""
    body = credentials(username)
    assert len(body) <= size
    return body + b" " * (size - len(body))


def login_head(extra=None, content_length=None, chunked=False):
    headers = {"Content-Type": "application/json"}
    if content_length is not None:
        headers["Content-Length"] = str(content_length)
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    headers.update(extra or {})
    return format_request("POST", LOGIN, headers)


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


class BodyLimitTest(ServerTestCase):
    def setUp(self):
        self.server = self.start_server()

    def test_declared_length_over_limit_is_413_before_the_body(self):
        conn = self.connect(self.server)
        conn.send(login_head(content_length=LIMIT + 4000))  # head only, no body bytes
        res = conn.read_response(timeout=CLOSE_BOUND)
        self.assertProblem(res, 413, "payload-too-large", LOGIN)
        self.assertTrue(res.closes, res)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND))

    def test_declared_length_one_over_limit_is_413(self):
        conn = self.connect(self.server)
        conn.send(login_head(content_length=LIMIT + 1))
        self.assertProblem(conn.read_response(timeout=CLOSE_BOUND), 413, "payload-too-large", LOGIN)

    def test_body_of_exactly_the_limit_is_read(self):
        res, _ = self.raw_request(
            self.server, login_head(content_length=LIMIT) + padded_credentials(LIMIT), timeout=LOGIN_BOUND
        )
        self.assertProblem(res, 401, None, LOGIN)

    def test_chunked_body_growing_past_the_limit_is_413(self):
        conn = self.connect(self.server, timeout=LOGIN_BOUND)
        conn.send(login_head(chunked=True))
        sent = 0
        piece = b"x" * 1024
        while sent < LIMIT + 8 * 1024 and conn.send(chunk(piece)):
            sent += len(piece)
        # No terminating chunk: the server must answer on its own.
        res = conn.read_response(timeout=CLOSE_BOUND)
        self.assertProblem(res, 413, "payload-too-large", LOGIN)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND))

    def test_chunked_body_within_the_limit_is_read(self):
        body = credentials()
        data = login_head(chunked=True) + chunk(body[:10]) + chunk(body[10:]) + b"0\r\n\r\n"
        conn = self.connect(self.server, timeout=LOGIN_BOUND)
        conn.send(data)
        self.assertProblem(conn.read_response(), 401, None, LOGIN)
        self.assertEqual(conn.request("GET", "/healthz").status, 200, "keep-alive after a chunked body")


def peak_rss_kib(server):
    """The server's peak resident set (VmHWM), in KiB."""
    with open("/proc/%d/status" % server.proc.pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/%d/status" % server.proc.pid)


class ChunkMetadataTest(ServerTestCase):
    """Chunk extensions and trailers are not body bytes, so the body limit
    does not see them: what bounds them is the connection's read buffer.
    Unbounded, 400 MB of extension took the server to 464 MB."""

    SENT = 16 * 1024 * 1024
    # Peak growth allowed while 16 MiB arrive: far below what buffering them would cost.
    GROWTH_KIB = 6 * 1024

    def setUp(self):
        self.server = self.start_server()

    def flood(self, head, prefix):
        """Sends `head`, `prefix`, then SENT bytes that never finish the line;
        returns the response, or None if the server closed without one."""
        conn = self.connect(self.server, timeout=LOGIN_BOUND)
        conn.send(head + prefix)
        piece = b"a" * 65536
        sent = 0
        while sent < self.SENT and conn.send(piece):
            sent += len(piece)
        try:
            return conn.read_response(timeout=CLOSE_BOUND)
        except AssertionError:  # closed before an answer: also a refusal
            return None

    def check(self, path, method, prefix):
        before = peak_rss_kib(self.server)
        head = format_request(method, path, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        res = self.flood(head, prefix)
        if res is not None:
            self.assertProblem(res, 400, "bad-request", path)
        grown = peak_rss_kib(self.server) - before
        self.assertLess(grown, self.GROWTH_KIB, "peak RSS grew by %d KiB" % grown)
        self.assertEqual(self.server.get("/healthz").status, 200)

    def test_endless_chunk_extension(self):
        for path, method in ((LOGIN, "POST"), ("/healthz", "GET")):
            with self.subTest(path=path):
                self.check(path, method, b"5;ext=")

    def test_endless_trailer(self):
        for path, method in ((LOGIN, "POST"), ("/healthz", "GET")):
            with self.subTest(path=path):
                self.check(path, method, b"0\r\nX-Trailer: ")


class LoginBodyTest(ServerTestCase):
    def setUp(self):
        self.server = self.start_server()

    def test_wrong_credentials_are_401(self):
        res = self.server.request(
            "POST", LOGIN, body=credentials(), headers={"Content-Type": "application/json"}, timeout=LOGIN_BOUND
        )
        self.assertProblem(res, 401, None, LOGIN)

    def test_malformed_json_is_400_and_keeps_the_connection(self):
        conn = self.connect(self.server, timeout=LOGIN_BOUND)
        body = b'{"username": "nobody", "password": '
        res = conn.request("POST", LOGIN, {"Content-Type": "application/json"}, body)
        self.assertProblem(res, 400, "bad-request", LOGIN)
        self.assertEqual(conn.request("GET", "/healthz").status, 200)

    def test_pipelined_bodies_are_framed_correctly(self):
        conn = self.connect(self.server, timeout=LOGIN_BOUND)
        json_type = {"Content-Type": "application/json"}
        conn.send(
            format_request("POST", LOGIN, {**json_type, "X-Request-ID": "b1"}, credentials())
            + format_request("POST", LOGIN, {**json_type, "X-Request-ID": "b2"}, b"{not json")
            + format_request("GET", "/healthz", {"X-Request-ID": "b3"})
        )
        answers = [conn.read_response() for _ in range(3)]
        self.assertEqual([r.status for r in answers], [401, 400, 200], answers)
        self.assertEqual([r.header("X-Request-ID") for r in answers], ["b1", "b2", "b3"])

    def test_access_log_counts_body_bytes(self):
        body = credentials()
        res = self.server.request(
            "POST",
            LOGIN,
            body=body,
            headers={"Content-Type": "application/json", "X-Request-ID": "body-bytes"},
            timeout=LOGIN_BOUND,
        )
        self.assertEqual(res.status, 401)
        line = self.server.wait_for_log(event="http.request", request_id="body-bytes")
        self.assertEqual(line["route"], LOGIN)
        self.assertGreater(line["bytes_in"], len(body))
        self.assertNotIn("wrong-password-1", "\n".join(self.server.lines), "passwords never appear in logs")


class BodyDeadlineTest(ServerTestCase):
    def test_stalled_body_is_cut_off(self):
        server = self.start_server(DOCFLOW_BODY_TIMEOUT="300ms")
        for sent in (10, 0):
            with self.subTest(body_bytes_sent=sent):
                conn = self.connect(server)
                conn.send(login_head(content_length=100) + b'{"username": "nobody"'[:sent])
                self.assertTrue(wait_closed(conn, CLOSE_BOUND), "a stalled body outlived the body timeout")
                self.assertNotIn(b"HTTP/1.1 2", conn.buf)
        self.assertEqual(server.get("/healthz").status, 200)

    def test_slow_but_steady_body_is_read(self):
        # The body timeout bounds each pause, not the whole body.
        server = self.start_server(DOCFLOW_BODY_TIMEOUT="1s")
        body = credentials()
        conn = self.connect(server, timeout=LOGIN_BOUND)
        conn.send(login_head(content_length=len(body)))
        step = (len(body) + 14) // 15
        for i in range(0, len(body), step):  # ~15 pieces, ~1.5 s in all
            self.assertTrue(conn.send(body[i : i + step]), "the server closed during a steady body")
            time.sleep(0.1)
        self.assertProblem(conn.read_response(), 401, None, LOGIN)


class ExpectContinueTest(ServerTestCase):
    def setUp(self):
        self.server = self.start_server()

    def test_100_continue_comes_first(self):
        body = credentials()
        conn = self.connect(self.server, timeout=LOGIN_BOUND)
        conn.send(login_head({"Expect": "100-continue"}, content_length=len(body)))
        interim = conn.read_response(interim=True, timeout=CLOSE_BOUND)
        self.assertEqual((interim.version, interim.status), ("HTTP/1.1", 100), interim)
        self.assertEqual(interim.body, b"")
        conn.send(body)
        self.assertProblem(conn.read_response(), 401, None, LOGIN)
        self.assertEqual(conn.request("GET", "/healthz").status, 200)

    def test_expectation_is_case_insensitive(self):
        # RFC 9110 section 10.1.1: "The Expect field value is case-insensitive."
        body = credentials()
        conn = self.connect(self.server, timeout=LOGIN_BOUND)
        conn.send(login_head({"Expect": "100-Continue"}, content_length=len(body)))
        interim = conn.read_response(interim=True, timeout=CLOSE_BOUND)
        self.assertEqual(interim.status, 100, interim)

    def test_too_large_gets_413_instead_of_100(self):
        conn = self.connect(self.server)
        conn.send(login_head({"Expect": "100-continue"}, content_length=LIMIT * 4))
        res = conn.read_response(interim=True, timeout=CLOSE_BOUND)
        self.assertProblem(res, 413, "payload-too-large", LOGIN)


if __name__ == "__main__":
    unittest.main()
