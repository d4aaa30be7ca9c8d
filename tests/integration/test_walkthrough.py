"""examples/walkthrough.sh, the curl walk-through of docs/api.md, run for
real: a fresh `docflow serve`, then the script against it with DOCFLOW_URL
set. The script checks every status code itself and exits 0 only when the
whole session (register to logout) went as documented."""
import os
import subprocess
import unittest

from harness import ServerTestCase

REPO = os.environ.get("DOCFLOW_REPO") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCRIPT = os.path.join(REPO, "examples", "walkthrough.sh")
SCRIPT_TIMEOUT = 180.0  # seconds; detects a hang only


class WalkthroughTest(ServerTestCase):
    def run_script(self, server, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFLOW_")}
        env["DOCFLOW_URL"] = "http://127.0.0.1:%d" % server.port
        env["EVENTS_TIMEOUT"] = "60"
        try:
            return subprocess.run(
                ["bash", SCRIPT, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=SCRIPT_TIMEOUT,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError("walkthrough.sh still running after %.0fs; stdout so far:\n%s" % (SCRIPT_TIMEOUT, e.stdout))

    def test_walkthrough_runs_from_register_to_logout(self):
        # A short simulated delay, so the event stream shows PROCESSING
        # before COMPLETED, as in docs/api.md.
        server = self.start_server(DOCFLOW_WORKERS="1", DOCFLOW_SIMULATED_DELAY_MS="500")
        done = self.run_script(server)
        self.assertEqual(
            done.returncode,
            0,
            "walkthrough.sh exited %d\nstdout:\n%s\nstderr:\n%s" % (done.returncode, done.stdout, done.stderr),
        )
        self.assertIn("walk-through complete", done.stdout)
        self.assertIn("Idempotent-Replayed: true", done.stdout)
        self.assertIn('"status":"COMPLETED"', done.stdout)

        # The replayed upload and the keyed process request made one
        # document and one job.
        uploaded = server.find_logs(event="document.uploaded")
        self.assertEqual(len(uploaded), 1, uploaded)
        document_id = uploaded[0]["document_id"]
        self.assertEqual(len(server.find_logs(event="document.process_requested", document_id=document_id)), 1)
        self.assertEqual(len(server.find_logs(event="document.completed", document_id=document_id)), 1)

    def test_walkthrough_fails_loudly_on_a_wrong_status(self):
        # Registration closed: the first step answers 403 instead of 201.
        server = self.start_server(DOCFLOW_SIGNUP="closed")
        done = self.run_script(server)
        self.assertEqual(done.returncode, 1, done)
        self.assertIn("expected HTTP 201, got 403", done.stderr)
        self.assertIn("/problems/signup-closed", done.stderr)
        self.assertNotIn("walk-through complete", done.stdout)


if __name__ == "__main__":
    unittest.main()
