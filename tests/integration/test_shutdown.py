"""Graceful shutdown: SIGTERM/SIGINT stop accepting, close idle connections,
let the request in flight finish with Connection: close, and exit 0 within
DOCFLOW_SHUTDOWN_TIMEOUT."""
import signal
import time
import unittest

from harness import EXIT_TIMEOUT, ServerTestCase, connection_refused, wait_closed

CLOSE_BOUND = 5.0
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
REST_OF_HEAD = b"X-Request-ID: in-flight-1\r\n\r\n"


class ShutdownTest(ServerTestCase):
    def start(self, **env):
        # A long drain deadline: every exit below must come from the server
        # finishing its work, not from the deadline running out.
        env.setdefault("DOCFLOW_SHUTDOWN_TIMEOUT", "60s")
        return self.start_server(**env)

    def begin_in_flight_request(self, server):
        """A connection whose request head is half sent (so: not idle)."""
        conn = self.connect(server)
        conn.send(HALF_HEAD)
        time.sleep(0.2)  # let the server read the first half
        return conn

    def test_sigterm_without_connections_exits_0(self):
        server = self.start()
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def test_sigint_exits_0(self):
        server = self.start()
        server.signal(signal.SIGINT)
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def test_sigterm_after_serving_exits_0(self):
        server = self.start()
        for _ in range(3):
            self.assertEqual(server.get("/healthz").status, 200)
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def test_idle_keep_alive_connection_is_closed(self):
        server = self.start()
        conn = self.connect(server)
        res = conn.request("GET", "/healthz")
        self.assertEqual(res.status, 200)
        self.assertFalse(res.closes)
        server.signal(signal.SIGTERM)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND), "the idle connection was not closed on SIGTERM")
        self.assertEqual(conn.buf, b"", "an idle connection gets no answer, just a close")
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def drain_with_a_proxys_idle_connection(self):
        """A server that trusts 127.0.0.1 as a proxy, draining, and a
        connection of that proxy, idle since its first answer."""
        server = self.start(DOCFLOW_TRUSTED_PROXIES="127.0.0.1")
        conn = self.connect(server)
        self.assertEqual(conn.request("GET", "/healthz").status, 200)
        server.signal(signal.SIGTERM)
        server.wait_for_log(event="server.draining", timeout=CLOSE_BOUND)
        return server, conn

    def test_a_trusted_proxys_idle_connection_stays_open_for_one_more_request(self):
        # nginx may be sending a request on its pooled connection as the
        # drain begins; closed under it, a POST could not be retried.
        server, conn = self.drain_with_a_proxys_idle_connection()
        time.sleep(0.3)  # an idle connection of anyone else is closed by now
        self.assertTrue(server.running, "the drain must wait for the proxy's connection")
        res = conn.request("GET", "/healthz", headers={"X-Request-ID": "after-drain-1"})
        self.assertEqual(res.status, 200, res)
        self.assertTrue(res.closes, "the answer must say Connection: close: %r" % res)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND))
        conn.close()
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def test_a_trusted_proxys_idle_connection_closed_by_it_ends_the_drain(self):
        server, conn = self.drain_with_a_proxys_idle_connection()
        conn.close()  # as nginx does once its keepalive_timeout passes
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def test_never_used_connection_is_closed(self):
        server = self.start()
        conn = self.connect(server)
        time.sleep(0.2)  # accepted, not a byte sent
        server.signal(signal.SIGTERM)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND))
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def test_in_flight_request_completes_with_connection_close(self):
        server = self.start()
        conn = self.begin_in_flight_request(server)
        server.signal(signal.SIGTERM)
        time.sleep(0.2)
        self.assertTrue(server.running, "the server must wait for the request in flight")
        self.assertTrue(conn.send(REST_OF_HEAD), "the server dropped the request in flight")
        res = conn.read_response()
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.header("X-Request-ID"), "in-flight-1")
        self.assertEqual(res.json(), {"status": "ok"})
        self.assertTrue(res.closes, "an answer during shutdown must say Connection: close: %r" % res)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND))
        conn.close()
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)
        server.wait_for_log(event="http.request", request_id="in-flight-1", timeout=1)

    def test_in_flight_body_completes(self):
        # The head is in, the body is not: the request is in flight.
        server = self.start()
        body = b'{"username": "nobody-here", "password": "wrong-password-1"}'
        conn = self.connect(server, timeout=15)
        conn.send(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(0.2)
        server.signal(signal.SIGTERM)
        server.wait_for_log(event="server.draining", timeout=CLOSE_BOUND)
        self.assertTrue(conn.send(body), "the server dropped the request in flight")
        res = conn.read_response()
        self.assertEqual(res.status, 401, res)
        self.assertTrue(res.closes, res)
        conn.close()
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def test_new_connections_are_refused_while_draining(self):
        server = self.start()
        conn = self.begin_in_flight_request(server)
        server.signal(signal.SIGTERM)
        server.wait_for_log(event="server.draining", timeout=CLOSE_BOUND)
        self.assertTrue(server.running)
        # The draining line may be logged just before the listener closes:
        # allow a moment, then every new connection must be refused.
        deadline = time.monotonic() + CLOSE_BOUND
        while not connection_refused(server.port):
            self.assertLess(time.monotonic(), deadline, "new connections were still accepted after SIGTERM")
            time.sleep(0.05)
        self.assertTrue(connection_refused(server.port))
        # The request in flight is still answered.
        conn.send(REST_OF_HEAD)
        self.assertEqual(conn.read_response().status, 200)
        conn.close()
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)

    def test_drain_deadline_bounds_a_stuck_request(self):
        server = self.start(DOCFLOW_SHUTDOWN_TIMEOUT="300ms")
        conn = self.begin_in_flight_request(server)  # never completed
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(CLOSE_BOUND), 0, server.stderr)
        self.assertTrue(wait_closed(conn, CLOSE_BOUND))

    def test_second_signal_does_not_break_the_drain(self):
        server = self.start()
        conn = self.begin_in_flight_request(server)
        server.signal(signal.SIGTERM)
        server.wait_for_log(event="server.draining", timeout=CLOSE_BOUND)
        server.signal(signal.SIGTERM)
        time.sleep(0.2)
        if server.running:
            conn.send(REST_OF_HEAD)
            self.assertEqual(conn.read_response().status, 200)
            conn.close()
        self.assertEqual(server.wait_exit(EXIT_TIMEOUT), 0, server.stderr)


if __name__ == "__main__":
    unittest.main()
