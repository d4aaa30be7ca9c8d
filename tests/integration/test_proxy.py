"""Behind a reverse proxy (DOCFLOW_TRUSTED_PROXIES): X-Forwarded-For and
X-Forwarded-Proto are believed from a trusted peer only, and the client
address they give is what the login and registration throttles count and
what the access log calls `remote`. The test client plays nginx: it
connects from 127.0.0.1 and sends the headers nginx would."""
import json
import unittest

from harness import ServerTestCase, run_cli
from test_auth import new_password, register, unique_name

PER_ADDRESS_LIMIT = 20  # failed logins per address per 15 minutes (SPEC section 2)
CLIENT = "198.51.100.7"
OTHER_CLIENT = "2001:db8::42"


def forwarded(address, proto=None):
    headers = {"X-Forwarded-For": address}
    if proto:
        headers["X-Forwarded-Proto"] = proto
    return headers


def login_from(server, headers, username, password):
    body = json.dumps({"username": username, "password": password})
    return server.request("POST", "/auth/login", headers={"Content-Type": "application/json", **headers}, body=body)


def register_from(server, headers, username, password):
    body = json.dumps({"username": username, "password": password})
    return server.request("POST", "/auth/register", headers={"Content-Type": "application/json", **headers},
                          body=body)


class ForwardedClientTest(ServerTestCase):
    def new_user(self, server):
        username, password = unique_name("proxied"), new_password()
        self.assertEqual(register(server, username, password).status, 201)
        return username, password

    def fail_logins_from(self, server, headers_for):
        """PER_ADDRESS_LIMIT failed logins, each for a username of its own
        (so that only the per-address limit can be reached)."""
        for i in range(PER_ADDRESS_LIMIT):
            res = login_from(server, headers_for(i), unique_name("spray"), "wrong-password")
            self.assertEqual(res.status, 401, res)

    def test_login_throttle_counts_the_forwarded_client_behind_a_trusted_proxy(self):
        server = self.start_server(DOCFLOW_TRUSTED_PROXIES="127.0.0.1,::1")
        username, password = self.new_user(server)
        self.fail_logins_from(server, lambda i: forwarded(CLIENT))
        res = login_from(server, forwarded(CLIENT), username, password)
        self.assertEqual(res.status, 429, res)
        # Another client behind the same proxy is not held back by the first.
        self.assertEqual(login_from(server, forwarded(OTHER_CLIENT), username, password).status, 200)
        # A client that writes its own X-Forwarded-For gains nothing: nginx
        # appends the address it saw, and that is the one counted.
        spoofed = {"X-Forwarded-For": "203.0.113.99, " + CLIENT}
        self.assertEqual(login_from(server, spoofed, username, password).status, 429)
        line = server.wait_for_log(event="auth.login_failed")
        self.assertEqual(line["remote"], CLIENT)

    def test_login_throttle_counts_the_peer_when_it_is_not_a_trusted_proxy(self):
        # Unset, and set to proxies other than the caller: the headers are
        # the client's own claim, and every attempt counts against 127.0.0.1.
        for env in ({}, {"DOCFLOW_TRUSTED_PROXIES": "10.0.0.0/8,fd00::/8"}):
            with self.subTest(env=env):
                server = self.start_server(**env)
                username, password = self.new_user(server)
                self.fail_logins_from(server, lambda i: forwarded("198.51.100.%d" % (i + 1)))
                res = login_from(server, forwarded("198.51.100.200"), username, password)
                self.assertEqual(res.status, 429, res)
                line = server.wait_for_log(event="auth.login_failed")
                self.assertEqual(line["remote"], "127.0.0.1")

    def test_registrations_per_address_count_the_forwarded_client(self):
        server = self.start_server(DOCFLOW_TRUSTED_PROXIES="127.0.0.1", DOCFLOW_SIGNUP_MAX_PER_ADDRESS="2")
        for _ in range(2):
            self.assertEqual(register_from(server, forwarded(CLIENT), unique_name(), new_password()).status, 201)
        self.assertEqual(register_from(server, forwarded(CLIENT), unique_name(), new_password()).status, 429)
        self.assertEqual(register_from(server, forwarded(OTHER_CLIENT), unique_name(), new_password()).status, 201)

    def test_the_access_log_names_client_peer_and_scheme(self):
        trusted = self.start_server(DOCFLOW_TRUSTED_PROXIES="127.0.0.1")
        trusted.get("/healthz", headers={**forwarded(CLIENT, "https"), "X-Request-ID": "proxy-log-1"})
        line = trusted.wait_for_log(event="http.request", request_id="proxy-log-1")
        self.assertEqual((line["remote"], line["peer"], line["proto"]), (CLIENT, "127.0.0.1", "https"))
        # A scheme other than http or https is ignored.
        trusted.get("/healthz", headers={**forwarded(CLIENT, "gopher"), "X-Request-ID": "proxy-log-2"})
        self.assertEqual(trusted.wait_for_log(event="http.request", request_id="proxy-log-2")["proto"], "http")

        direct = self.start_server()
        direct.get("/healthz", headers={**forwarded(CLIENT, "https"), "X-Request-ID": "proxy-log-3"})
        line = direct.wait_for_log(event="http.request", request_id="proxy-log-3")
        self.assertEqual((line["remote"], line["peer"], line["proto"]), ("127.0.0.1", "127.0.0.1", "http"))

    def test_a_malformed_list_stops_the_start_with_exit_2(self):
        for flag in ([], ["--trusted-proxies", "nginx.internal"]):
            env = {} if flag else {"DOCFLOW_TRUSTED_PROXIES": "10.0.0.1/8"}
            done = run_cli(["serve", "--listen", "127.0.0.1:0", *flag], **env)
            self.assertEqual(done.returncode, 2, done.stderr)
            self.assertIn("docflow: invalid configuration: DOCFLOW_TRUSTED_PROXIES: ", done.stderr)
        self.assertIn("did you mean 10.0.0.0/8", run_cli(["serve"], DOCFLOW_TRUSTED_PROXIES="10.0.0.1/8").stderr)


if __name__ == "__main__":
    unittest.main()
