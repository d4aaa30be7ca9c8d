"""HTTP/1.1 behaviour of the server itself (SPEC section 1): routing errors,
problem+json, request ids, malformed input, limits, keep-alive, pipelining
and deadlines."""
import json
import socket
import time
import unittest

from harness import UUID_RE, ServerTestCase, SharedServerTestCase, format_request, metric, parse_metrics, wait_closed

CLOSE_BOUND = 5.0  # generous: the configured timeouts below are 300 ms


class RoutingErrorsTest(SharedServerTestCase):
    def test_unknown_path_is_404_problem(self):
        for path in ("/nope", "/healthz/extra", "/", "/HEALTHZ"):
            with self.subTest(path=path):
                res = self.server.get(path)
                body = self.assertProblem(res, 404, "not-found", path)
                self.assertIsNone(res.header("Allow"), "a 404 has no Allow header")
                self.assertNotIn("<html", res.body.decode().lower())
                self.assertEqual(set(body) - {"type", "title", "status", "detail", "instance", "request_id"}, set())

    def test_known_path_wrong_method_is_405_with_allow(self):
        for method, path in (("POST", "/healthz"), ("DELETE", "/readyz"), ("PUT", "/metrics"), ("PATCH", "/healthz")):
            with self.subTest(method=method, path=path):
                res = self.server.request(method, path)
                self.assertProblem(res, 405, "method-not-allowed", path)
                allowed = [m.strip() for m in res.header("Allow", "").split(",")]
                self.assertEqual(sorted(allowed), ["GET", "HEAD"], res)

    def test_query_string_does_not_affect_routing(self):
        res = self.server.get("/healthz?x=1&y=two")
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json(), {"status": "ok"})
        res = self.server.get("/nope?x=1")
        self.assertProblem(res, 404, "not-found", "/nope")  # instance is the path, no query
        res = self.server.request("POST", "/healthz?x=1")
        self.assertEqual(res.status, 405)

    def test_head_of_unknown_path_is_404_without_body(self):
        conn = self.connect(self.server)
        res = conn.request("HEAD", "/nope")
        self.assertEqual(res.status, 404, res)
        self.assertEqual(conn.request("GET", "/healthz").status, 200)


class RequestIdTest(SharedServerTestCase):
    def rid(self, value, path="/healthz"):
        res = self.server.get(path, headers={} if value is None else {"X-Request-ID": value})
        got = res.header("X-Request-ID")
        self.assertIsNotNone(got, "every response carries X-Request-ID")
        return res, got

    def test_valid_ids_are_echoed(self):
        for value in ("abc", "A", "req-1.2_3", "0123456789" * 12 + "abcdefgh", "x" * 128):
            with self.subTest(value=value):
                _, got = self.rid(value)
                self.assertEqual(got, value)

    def test_invalid_ids_are_replaced(self):
        cases = {
            "too long (129)": "x" * 129,
            "slash": "abc/def",
            "space inside": "abc def",
            "colon": "a:b",
            "non-ascii": "caf\u00e9".encode("utf-8").decode("latin-1"),
            "empty": "",
            "braces": "{abc}",
        }
        for name, value in cases.items():
            with self.subTest(name):
                _, got = self.rid(value)
                self.assertNotEqual(got, value)
                self.assertRegex(got, UUID_RE)

    def test_missing_id_is_generated_and_unique(self):
        ids = {self.rid(None)[1] for _ in range(5)}
        self.assertEqual(len(ids), 5, ids)
        for got in ids:
            self.assertRegex(got, UUID_RE)

    def test_problem_body_carries_the_same_id(self):
        res, got = self.rid("trace-me-404", path="/nope")
        self.assertEqual(got, "trace-me-404")
        self.assertEqual(res.json()["request_id"], "trace-me-404")
        res, got = self.rid("x" * 129, path="/nope")
        self.assertEqual(res.json()["request_id"], got)


class MalformedRequestTest(SharedServerTestCase):
    """What http.client refuses to send: raw bytes on a socket. Each bad
    request is answered 400 problem+json and the connection is closed."""

    def assertRejected(self, data, status=400, slug="bad-request"):
        res, conn = self.raw_request(self.server, data)
        self.assertProblem(res, status, slug)
        self.assertTrue(res.closes, "the answer should say Connection: close: %r" % res)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND), "the server kept the connection open")
        self.assertEqual(conn.buf, b"", "nothing may follow the error answer")
        return res

    def test_malformed_request_line(self):
        cases = {
            "bad version": b"GET /healthz HTTP/9\r\nHost: x\r\n\r\n",
            "not http": b"GET /healthz FTP/1.1\r\nHost: x\r\n\r\n",
            "missing target": b"GET HTTP/1.1\r\nHost: x\r\n\r\n",
            "space in target": b"GET /heal thz HTTP/1.1\r\nHost: x\r\n\r\n",
            "lowercase junk": b"hello\r\n\r\n",
        }
        for name, data in cases.items():
            with self.subTest(name):
                self.assertRejected(data)

    def test_malformed_header(self):
        cases = {
            "no colon": b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
            "space before colon": b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
            "bad name char": b"GET /healthz HTTP/1.1\r\nHo(st: x\r\n\r\n",
            "bad content-length": b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        }
        for name, data in cases.items():
            with self.subTest(name):
                self.assertRejected(data)

    def test_garbage_bytes(self):
        self.assertRejected(b"\x00\x01\x02\xff\xfe\x80 garbage \x1b[0m\r\n\r\n")

    def test_oversized_head_is_431(self):
        filler = "a" * (20 * 1024)
        cases = {
            "one big header": format_request("GET", "/healthz", {"X-Filler": filler}),
            "many headers": format_request("GET", "/healthz", {"X-F%04d" % i: "b" * 16 for i in range(1000)}),
            "long request line": format_request("GET", "/healthz?q=" + filler),
        }
        for name, data in cases.items():
            with self.subTest(name):
                res = self.assertRejected(data, status=431, slug="request-header-too-large")
                self.assertNotIn(filler[:100], res.body.decode())
        line = self.server.wait_for_log(event="http.request", status=431)
        self.assertEqual(line["route"], "unmatched")

    def test_large_but_allowed_head_is_served(self):
        data = format_request("GET", "/healthz", {"X-Filler": "a" * (12 * 1024)})
        res, _ = self.raw_request(self.server, data)
        self.assertEqual(res.status, 200, res)

    def test_content_length_with_transfer_encoding_is_400_and_closes(self):
        # A smuggling attempt: whichever framing a proxy chose, the server
        # must refuse and must not answer the tucked-in second request.
        smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
        body = b"0\r\n\r\n" + smuggled
        for method, path in (("GET", "/healthz"), ("POST", "/healthz"), ("POST", "/nope")):
            with self.subTest(method=method, path=path):
                data = (
                    b"%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
                    % (method.encode(), path.encode(), len(body))
                ) + body
                self.assertRejected(data)

    def test_transfer_encoding_not_ending_in_chunked_is_400_and_closes(self):
        # RFC 9112 section 6.3: the body length cannot be determined, so the
        # server must answer 400 and close; it must not read the bytes that
        # follow as a second request (request smuggling).
        smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-ID: smuggled\r\n\r\n"
        for coding in ("gzip", "identity", "chunked, gzip", "chunked, chunked"):
            with self.subTest(coding=coding):
                data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n" % coding.encode()
                self.assertRejected(data + smuggled)

    def test_transfer_coding_other_than_chunked_is_501_and_closes(self):
        # The framing is clear (it ends in chunked), but the server would
        # have to undo a coding it does not implement: 501, never ignored.
        for coding in ("gzip, chunked", "deflate,chunked", "x-custom ,  Chunked"):
            with self.subTest(coding=coding):
                data = (b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: %s\r\n\r\n2\r\n{}\r\n0\r\n\r\n" % coding.encode())
                res, conn = self.raw_request(self.server, data)
                self.assertProblem(res, 501, "not-implemented")
                self.assertTrue(wait_closed(conn, 5.0))
        for coding in ("chunked", "CHUNKED", " chunked , "):
            with self.subTest(coding=coding):
                data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: %s\r\n\r\n0\r\n\r\n" % coding.encode()
                res, _ = self.raw_request(self.server, data)
                self.assertEqual(res.status, 200, res)

    def test_obs_fold_is_400_and_closes(self):
        # RFC 9112 section 5.2: a field continued on the next line. Beast
        # unfolded and honoured it (a login body framed by a folded
        # Transfer-Encoding got 422); a proxy in front may frame it otherwise.
        cases = {
            "transfer-encoding": b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Transfer-Encoding:\r\n chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "content-length": b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length:\r\n\t2\r\n\r\n{}",
            "any field": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n b\r\n\r\n",
        }
        for name, data in cases.items():
            with self.subTest(name):
                res, conn = self.raw_request(self.server, data)
                self.assertProblem(res, 400, "bad-request")
                self.assertTrue(wait_closed(conn, 5.0))

    def test_http_1_0_with_transfer_encoding_closes_after_the_answer(self):
        # RFC 9112 section 6.1: the framing of such a message is faulty, so a
        # pipelined request behind it must not be answered.
        data = (b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        res, conn = self.raw_request(self.server, data)
        self.assertEqual(res.status, 200, res)
        self.assertTrue(wait_closed(conn, 5.0), "the connection stayed open for a second request")
        self.assertNotIn(b"HTTP/1.1", bytes(conn.buf), "the pipelined request was answered")

    def test_missing_or_repeated_host_is_400(self):
        # RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1
        # request without Host or with more than one.
        cases = {
            "missing": b"GET /healthz HTTP/1.1\r\n\r\n",
            "repeated": b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        }
        for name, data in cases.items():
            with self.subTest(name):
                res, _ = self.raw_request(self.server, data)
                self.assertProblem(res, 400, "bad-request")

    def test_bad_request_is_logged(self):
        rid_before = len(self.server.find_logs(event="http.request", status=400))
        self.raw_request(self.server, b"GET /healthz HTTP/9\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + CLOSE_BOUND
        while len(self.server.find_logs(event="http.request", status=400)) <= rid_before:
            self.assertLess(time.monotonic(), deadline, "no access-log line for the 400")
            time.sleep(0.05)
        self.assertTrue(self.server.running)


class KeepAliveTest(SharedServerTestCase):
    def test_two_requests_on_one_connection(self):
        conn = self.connect(self.server)
        first = conn.request("GET", "/healthz", {"X-Request-ID": "ka-1"})
        self.assertEqual(first.status, 200)
        self.assertFalse(first.closes, first)
        second = conn.request("GET", "/readyz", {"X-Request-ID": "ka-2"})
        self.assertEqual(second.status, 200)
        self.assertEqual(second.header("X-Request-ID"), "ka-2")
        self.assertEqual(second.json()["status"], "ready")

    def test_error_answers_keep_the_connection(self):
        conn = self.connect(self.server)
        self.assertEqual(conn.request("GET", "/nope").status, 404)
        self.assertEqual(conn.request("POST", "/healthz").status, 405)
        self.assertEqual(conn.request("GET", "/healthz").status, 200)

    def test_connection_close_is_honoured(self):
        conn = self.connect(self.server)
        res = conn.request("GET", "/healthz", {"Connection": "close"})
        self.assertEqual(res.status, 200)
        self.assertTrue(res.closes, res)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND))

    def test_http10_closes_by_default(self):
        res, conn = self.raw_request(self.server, b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(res.status, 200, res)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND))

    def test_pipelined_requests_are_answered_in_order(self):
        conn = self.connect(self.server)
        data = b"".join(
            [
                format_request("GET", "/healthz", {"X-Request-ID": "pipe-1"}),
                format_request("GET", "/nope", {"X-Request-ID": "pipe-2"}),
                format_request("GET", "/readyz", {"X-Request-ID": "pipe-3"}),
            ]
        )
        conn.send(data)  # one sendall
        answers = [conn.read_response() for _ in range(3)]
        self.assertEqual([r.status for r in answers], [200, 404, 200], answers)
        self.assertEqual([r.header("X-Request-ID") for r in answers], ["pipe-1", "pipe-2", "pipe-3"])
        self.assertEqual(answers[0].json(), {"status": "ok"})
        self.assertEqual(answers[1].json()["instance"], "/nope")
        self.assertEqual(answers[2].json()["status"], "ready")
        # The connection is still usable afterwards.
        self.assertEqual(conn.request("GET", "/healthz").status, 200)

    def test_pipelined_head_then_get(self):
        conn = self.connect(self.server)
        conn.send(format_request("HEAD", "/healthz", {"X-Request-ID": "h"}) + format_request("GET", "/healthz", {"X-Request-ID": "g"}))
        head = conn.read_response(head=True)
        get = conn.read_response()
        self.assertEqual((head.status, head.header("X-Request-ID")), (200, "h"))
        self.assertEqual((get.status, get.header("X-Request-ID")), (200, "g"))
        self.assertEqual(get.json(), {"status": "ok"})


class DeadlineTest(ServerTestCase):
    def test_partial_head_is_closed_after_header_timeout(self):
        server = self.start_server(DOCFLOW_HEADER_TIMEOUT="300ms")
        conn = self.connect(server)
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line
        self.assertTrue(wait_closed(conn, CLOSE_BOUND), "a partial head outlived the header timeout")
        self.assertNotIn(b"HTTP/1.1 200", conn.buf)
        self.assertEqual(server.get("/healthz").status, 200, "the server itself must carry on")

    def test_silent_connection_is_closed_after_header_timeout(self):
        server = self.start_server(DOCFLOW_HEADER_TIMEOUT="300ms")
        conn = self.connect(server)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND), "a connection that never sent a byte stayed open")

    def test_trickled_head_does_not_extend_the_deadline(self):
        # Slowloris: a byte every 100 ms keeps the connection busy but the
        # head must still be complete within the header timeout from accept.
        server = self.start_server(DOCFLOW_HEADER_TIMEOUT="500ms")
        conn = self.connect(server)
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        deadline = time.monotonic() + CLOSE_BOUND
        closed = False
        for byte in head:
            if time.monotonic() > deadline:
                break
            if not conn.send(bytes([byte])):
                closed = True
                break
            if wait_closed(conn, 0.1):
                closed = True
                break
        self.assertTrue(closed, "a trickling client kept its head open past the header timeout")

    def test_header_timeout_applies_to_later_requests_from_their_first_byte(self):
        server = self.start_server(DOCFLOW_HEADER_TIMEOUT="300ms", DOCFLOW_IDLE_TIMEOUT="60s")
        conn = self.connect(server)
        self.assertEqual(conn.request("GET", "/healthz").status, 200)
        conn.send(b"GET /healthz HTTP/1.1\r\n")  # second head, never completed
        self.assertTrue(wait_closed(conn, CLOSE_BOUND), "a partial second head outlived the header timeout")

    def test_complete_head_within_timeout_is_served(self):
        server = self.start_server(DOCFLOW_HEADER_TIMEOUT="2s")
        conn = self.connect(server)
        conn.send(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.2)
        conn.send(b"Host: x\r\n\r\n")
        self.assertEqual(conn.read_response().status, 200)

    def test_idle_keep_alive_connection_is_closed(self):
        server = self.start_server(DOCFLOW_IDLE_TIMEOUT="300ms", DOCFLOW_HEADER_TIMEOUT="60s")
        conn = self.connect(server)
        res = conn.request("GET", "/healthz")
        self.assertEqual(res.status, 200)
        self.assertFalse(res.closes)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND), "an idle kept-alive connection outlived the idle timeout")
        self.assertEqual(conn.buf, b"", "no unsolicited answer on an idle connection")

    def test_connection_used_within_idle_timeout_stays_open(self):
        server = self.start_server(DOCFLOW_IDLE_TIMEOUT="5s")
        conn = self.connect(server)
        for _ in range(3):
            self.assertEqual(conn.request("GET", "/healthz").status, 200)
            time.sleep(0.2)


class HeaderLimitInSegmentsTest(SharedServerTestCase):
    """Found by tests/fuzz/http_head_fuzz.cpp (tests/fuzz/README.md): Beast
    1.81 applies the parser's header limit to the bytes of each read, not to
    the whole head, so a head whose segments each end one byte into the next
    field line passed the 16 KiB limit without end. serve_one() now reads the
    whole head itself and holds it to the limit."""

    def test_head_over_the_limit_sent_in_segments_is_431(self):
        conn = self.connect(self.server)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX")
        for i in range(64):  # 64 KiB of fields, four times the limit
            conn.send(b"-F%04d: %s\r\nX" % (i, b"b" * 1000))
            time.sleep(0.002)
        conn.send(b"-Last: 1\r\n\r\n")
        res = conn.read_response()
        self.assertEqual(res.status, 431, res)


if __name__ == "__main__":
    unittest.main()

class ConnectionCapTest(ServerTestCase):
    """Clients that send one byte and stop each hold a connection until the
    header timeout. With 256 descriptors they used to exhaust the server:
    health checks, uploads and /process stopped answering while accept
    failed 20 times a second. Connections past a cap are closed at once."""

    FLOOD = 400

    def flood(self, server, source="127.0.0.2"):
        """FLOOD connections from `source` that each send one byte and stop."""
        socks = []
        for _ in range(self.FLOOD):
            try:
                s = socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(source, 0))
                s.send(b"G")
            except OSError:
                continue  # reset by the server: also fine
            socks.append(s)
        self.addCleanup(lambda: [s.close() for s in socks])
        time.sleep(0.5)  # the server has accepted, and refused, what it will
        return socks

    def still_serves(self, conn):
        body = json.dumps({"username": "capped-%d" % time.monotonic_ns(), "password": "a long password 1"})
        res = conn.request("POST", "/auth/register", {"Content-Type": "application/json"}, body.encode())
        self.assertEqual(res.status, 201, res)  # hashing, the database: the process still has descriptors
        self.assertEqual(conn.request("GET", "/readyz").status, 200)

    def test_one_address_cannot_take_every_connection(self):
        server = self.start_server(nofile=256, DOCFLOW_MAX_CONNECTIONS_PER_ADDRESS="50")
        self.flood(server)
        # A client from another address connects and is served.
        self.assertEqual(server.get("/healthz").status, 200)
        self.still_serves(self.connect(server))
        samples = parse_metrics(server.get("/metrics").body.decode())
        self.assertGreaterEqual(metric(samples, "docflow_connections_rejected_total", reason="address"),
                                self.FLOOD - 50)
        self.assertFalse(server.find_logs(event="http.accept_failed"), "the server ran out of descriptors")

    def test_the_total_stays_below_the_descriptor_limit(self):
        server = self.start_server(nofile=256, DOCFLOW_MAX_CONNECTIONS_PER_ADDRESS="0")
        before = self.connect(server)  # admitted before the flood
        self.assertEqual(before.request("GET", "/healthz").status, 200)
        self.flood(server)
        self.still_serves(before)
        samples = parse_metrics(before.request("GET", "/metrics").body.decode())
        self.assertGreater(metric(samples, "docflow_connections_rejected_total", reason="total") or 0, 0)
        self.assertFalse(server.find_logs(event="http.accept_failed"), "the server ran out of descriptors")
