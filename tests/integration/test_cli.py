"""The command line (SPEC sections 6 and 7): configuration errors, flags over
environment variables, secrets and their _FILE form, unknown variables and
commands, start-up failures, the password prompt, version, help, migrate and
the generated JWT secret."""
import errno
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import termios
import time
import unittest
import unittest.mock

from harness import BIN, ENGINE, EXIT_TIMEOUT, ServerTestCase, build_env, only_on, run_cli, run_sql, start_server

EXIT_START_FAILED = 1
EXIT_BAD_CONFIG = 2
START_BOUND = 8.0  # a bad configuration exits at once; still running after this means it started


def register_status(server):
    """The status of a registration: 201 with signup open, 403 closed."""
    body = json.dumps({"username": "user-%s" % secrets.token_hex(4), "password": "pw-" + secrets.token_hex(8)})
    return server.request("POST", "/auth/register", headers={"Content-Type": "application/json"}, body=body).status


class BadConfigurationTest(unittest.TestCase):
    BAD_VALUES = {
        "DOCFLOW_LISTEN": "nonsense",
        "DOCFLOW_ACCESS_TTL": "5x",
        "DOCFLOW_REFRESH_TTL": "soon",
        "DOCFLOW_MAX_UPLOAD_BYTES": "lots",
        "DOCFLOW_SIGNUP": "maybe",
        "DOCFLOW_JWT_SECRET": "short",
        "DOCFLOW_LOG_LEVEL": "loud",
        "DOCFLOW_WORKERS": "-1",
        "DOCFLOW_HEADER_TIMEOUT": "fast",
        "DOCFLOW_IDLE_TIMEOUT": "-1s",
        "DOCFLOW_LOGIN_MAX_FAILURES": "many",
        "DOCFLOW_ML_URL": "ftp://example.invalid",
        "DOCFLOW_OCR": "sometimes",
        "DOCFLOW_OCR_LANGUAGES": "eng,../../etc/passwd",
        "DOCFLOW_OCR_DPI": "10",
        "DOCFLOW_OCR_PAGE_TIMEOUT": "forever",
    }

    def test_bad_values_exit_2_naming_the_variable(self):
        for name, value in self.BAD_VALUES.items():
            with self.subTest(name=name, value=value):
                out = run_cli(["serve"], timeout=START_BOUND, **{name: value})
                self.assertEqual(out.returncode, EXIT_BAD_CONFIG, "stderr: %s" % out.stderr)
                self.assertIn(name, out.stderr)
                self.assertNotIn("server.listening", out.stdout)

    def test_every_bad_value_is_reported_on_its_own_line(self):
        bad = {"DOCFLOW_WORKERS": "-1", "DOCFLOW_LOG_LEVEL": "loud", "DOCFLOW_ACCESS_TTL": "5x"}
        out = run_cli(["serve"], timeout=START_BOUND, **bad)
        self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)
        lines = out.stderr.strip().splitlines()
        self.assertEqual(len(lines), len(bad), out.stderr)
        for name in bad:
            self.assertEqual(len([line for line in lines if name in line]), 1, out.stderr)
        self.assertIn("docflow: invalid configuration: DOCFLOW_WORKERS: '-1' must be between 0 and 256", lines)
        self.assertIn(
            "docflow: invalid configuration: DOCFLOW_LOG_LEVEL: 'loud' must be debug, info, warn or error", lines
        )
        self.assertIn("between 1s and 24h", out.stderr)

    def test_migrate_checks_configuration_too(self):
        out = run_cli(["migrate"], DOCFLOW_LOG_LEVEL="loud")
        self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)
        self.assertIn("DOCFLOW_LOG_LEVEL", out.stderr)

    def test_bad_value_does_not_create_data(self):
        data = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, data, True)
        out = run_cli(["serve"], data_dir=data, DOCFLOW_ACCESS_TTL="5x")
        self.assertEqual(out.returncode, EXIT_BAD_CONFIG)
        self.assertFalse(os.path.exists(os.path.join(data, "docflow.db")))

    def test_unknown_flag_is_an_error(self):
        out = run_cli(["serve", "--no-such-flag"])
        self.assertNotEqual(out.returncode, 0)


class FlagOverridesEnvTest(ServerTestCase):
    def test_good_flag_wins_over_bad_env(self):
        server = self.start_server("--listen", "127.0.0.1:0", DOCFLOW_LISTEN="nonsense")
        self.assertEqual(server.get("/healthz").status, 200)

    def test_good_flag_wins_over_bad_env_equals_form(self):
        server = self.start_server("--log-level=info", DOCFLOW_LOG_LEVEL="loud")
        self.assertEqual(server.get("/healthz").status, 200)

    def test_bad_flag_wins_over_good_env(self):
        for flag, env in (("--log-level=loud", "DOCFLOW_LOG_LEVEL"), ("--access-ttl=5x", "DOCFLOW_ACCESS_TTL")):
            with self.subTest(flag=flag):
                good = "info" if env == "DOCFLOW_LOG_LEVEL" else "15m"
                out = run_cli(["serve", flag], timeout=START_BOUND, **{env: good})
                self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)
                self.assertTrue(env in out.stderr or flag.split("=")[0] in out.stderr, out.stderr)

    def test_flag_alone_is_used(self):
        server = self.start_server("--signup", "closed", DOCFLOW_SIGNUP=None)
        self.assertEqual(register_status(server), 403)

    def test_flags_override_env_for_migrate(self):
        out = run_cli(["migrate", "--log-level=info"], DOCFLOW_LOG_LEVEL="loud")
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run_cli(["migrate", "--log-level=loud"], DOCFLOW_LOG_LEVEL="info")
        self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)

    def test_flag_value_is_the_one_used(self):
        server = self.start_server("--signup", "closed", DOCFLOW_SIGNUP="open")
        self.assertEqual(register_status(server), 403)
        server = self.start_server("--signup=open", DOCFLOW_SIGNUP="closed")
        self.assertEqual(register_status(server), 201)


class SecretsTest(ServerTestCase):
    """Secrets come from the environment, directly or as <NAME>_FILE, never
    from a flag."""

    def secret_file(self, content):
        fd, path = tempfile.mkstemp(prefix="docflow-it-secret-")
        self.addCleanup(os.remove, path)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        return path

    def test_metrics_token_from_a_file_without_its_trailing_newline(self):
        path = self.secret_file("token-from-a-file\n")
        server = self.start_server(DOCFLOW_METRICS_TOKEN=None, DOCFLOW_METRICS_TOKEN_FILE=path)
        self.assertEqual(server.get("/metrics").status, 401)
        self.assertEqual(server.get("/metrics", headers={"Authorization": "Bearer token-from-a-file"}).status, 200)

    def test_jwt_secret_from_a_file(self):
        path = self.secret_file("x" * 40 + "\n")
        server = self.start_server(DOCFLOW_JWT_SECRET=None, DOCFLOW_JWT_SECRET_FILE=path)
        self.assertEqual(register_status(server), 201)
        self.assertFalse(os.path.exists(os.path.join(server.data_dir, "jwt.secret")))
        self.assertEqual(server.find_logs(event="config.jwt_secret_generated"), [])

    def test_both_forms_set_is_an_error_naming_both(self):
        path = self.secret_file("x" * 40)
        out = run_cli(["serve"], timeout=START_BOUND, DOCFLOW_JWT_SECRET_FILE=path)  # the harness sets the other
        self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)
        self.assertIn("DOCFLOW_JWT_SECRET:", out.stderr)
        self.assertIn("DOCFLOW_JWT_SECRET_FILE", out.stderr)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)

    def test_unreadable_file_is_an_error_naming_variable_and_path(self):
        missing = os.path.join(tempfile.gettempdir(), "docflow-it-no-such-secret")
        out = run_cli(["serve"], timeout=START_BOUND, DOCFLOW_METRICS_TOKEN_FILE=missing)
        self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)
        self.assertRegex(out.stderr, r"DOCFLOW_METRICS_TOKEN_FILE: .*%s.*No such file" % re.escape(missing))

    def test_secret_flags_are_refused_without_echoing_the_value(self):
        value = "do-not-print-this-secret-0123456789abcdef"
        cases = (
            (["serve", "--jwt-secret", value], "DOCFLOW_JWT_SECRET"),
            (["serve", "--metrics-token=" + value], "DOCFLOW_METRICS_TOKEN"),
            (["user", "list", "--jwt-secret", value], "DOCFLOW_JWT_SECRET"),
            (["serve", "--aws-secret-access-key", value], "AWS_SECRET_ACCESS_KEY"),
            (["worker", "--aws-session-token=" + value], "AWS_SESSION_TOKEN"),
        )
        for args, env in cases:
            with self.subTest(args=args[:-1]):
                out = run_cli(args, timeout=START_BOUND)
                self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)
                self.assertIn(env + " or " + env + "_FILE", out.stderr)
                self.assertNotIn(value, out.stderr + out.stdout)

    def test_help_names_the_secret_variables_not_flags(self):
        out = run_cli(["serve", "--help"])
        self.assertEqual(out.returncode, 0, out.stderr)
        for env in ("DOCFLOW_JWT_SECRET", "DOCFLOW_METRICS_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                    "AWS_SESSION_TOKEN"):
            self.assertIn(env + "_FILE", out.stdout)
        for flag in ("--jwt-secret", "--metrics-token", "--aws-access-key-id", "--aws-secret-access-key",
                     "--aws-session-token"):
            self.assertNotIn(flag, out.stdout)


class UnknownVariableTest(ServerTestCase):
    def test_a_misspelt_setting_is_a_warning_naming_the_closest(self):
        server = self.start_server(DOCFLOW_WORKER="3")
        self.assertIn(
            "docflow: warning: DOCFLOW_WORKER is not a setting (did you mean DOCFLOW_WORKERS?)",
            server.stderr_lines,
        )
        self.assertEqual(server.get("/healthz").status, 200)

    def test_other_commands_warn_too(self):
        out = run_cli(["migrate"], DOCFLOW_DATADIR="/tmp/elsewhere")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("docflow: warning: DOCFLOW_DATADIR is not a setting (did you mean DOCFLOW_DATA_DIR?)", out.stderr)

    def test_secret_file_forms_and_the_test_suites_own_variables_are_not_warned_about(self):
        # The harness keeps its own DOCFLOW_* variables (DOCFLOW_BIN, DOCFLOW_REPO,
        # DOCFLOW_CONTRACT_*) out of the server's environment.
        fd, path = tempfile.mkstemp(prefix="docflow-it-secret-")
        self.addCleanup(os.remove, path)
        os.write(fd, b"t0k3n")
        os.close(fd)
        with unittest.mock.patch.dict(os.environ, {"DOCFLOW_REPO": "/repo", "DOCFLOW_CONTRACT_SUITE": "cli"}):
            out = run_cli(["migrate"], DOCFLOW_METRICS_TOKEN_FILE=path)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("warning", out.stderr)
        with unittest.mock.patch.dict(os.environ, {"DOCFLOW_BIN": BIN, "DOCFLOW_CONTRACT_VERBOSE": "1"}):
            server = self.start_server()
        self.assertNotIn("warning", server.stderr)


class StartFailureTest(unittest.TestCase):
    """A start that fails at run time is one plain line on stderr and exit 1."""

    def assertOneLine(self, out, expected):
        self.assertEqual(out.returncode, EXIT_START_FAILED, out.stderr)
        self.assertEqual(out.stderr.splitlines(), [expected], out.stderr)

    def test_port_in_use(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            address = "127.0.0.1:%d" % taken.getsockname()[1]
            out = run_cli(["serve"], timeout=START_BOUND, DOCFLOW_LISTEN=address)
        self.assertOneLine(out, "docflow: address %s is already in use" % address)

    def test_address_not_of_this_machine(self):
        out = run_cli(["serve"], timeout=START_BOUND, DOCFLOW_LISTEN="203.0.113.1:8000")
        self.assertOneLine(out, "docflow: cannot assign address 203.0.113.1:8000: it is not an address of this machine")

    def test_data_directory_that_cannot_be_created(self):
        parent = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, parent, True)
        not_a_dir = os.path.join(parent, "file")
        open(not_a_dir, "w").close()
        data = os.path.join(not_a_dir, "data")
        for command, prefix in ((["serve"], "docflow: "), (["migrate"], "docflow: migrate failed: ")):
            with self.subTest(command=command):
                out = run_cli(command, data_dir=data, timeout=START_BOUND)
                self.assertOneLine(out, prefix + "cannot create data directory %s: Not a directory" % data)

    def test_ocr_language_without_its_data(self):
        # Every scan would fail, each after its retries: the workers refuse to start.
        for command in ("serve", "worker"):
            with self.subTest(command=command):
                out = run_cli([command], timeout=START_BOUND, DOCFLOW_OCR_LANGUAGES="eng,xyz", DOCFLOW_WORKERS="1")
                prefix = "docflow: " if command == "serve" else "docflow: worker failed: "
                self.assertOneLine(
                    out,
                    prefix + "DOCFLOW_OCR_LANGUAGES: no Tesseract data for xyz "
                    "(install tesseract-ocr-<language>, or set DOCFLOW_OCR=never)",
                )

    @unittest.skipIf(os.geteuid() == 0, "root writes to any directory")
    def test_data_directory_not_writable(self):
        data = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, data, True)
        os.chmod(data, 0o500)
        self.addCleanup(os.chmod, data, 0o700)
        out = run_cli(["serve"], data_dir=data, timeout=START_BOUND)
        self.assertOneLine(out, "docflow: data directory %s is not writable: Permission denied" % data)


class PasswordPromptTest(unittest.TestCase):
    """`docflow user add` asks a person at a terminal for the password twice,
    without echo; a script gives it as the first line of standard input."""

    TIMEOUT = 20.0

    def setUp(self):
        self.data_dir = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, self.data_dir, True)

    def read_until(self, fd, marker, shown):
        """Reads the terminal until `marker` shows up after what was `shown`;
        returns everything shown so far. b"" as the marker reads to the end."""
        deadline = time.monotonic() + self.TIMEOUT
        start = len(shown)
        while not marker or marker not in shown[start:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.fail("waited %.0fs for %r; the terminal showed %r" % (self.TIMEOUT, marker, shown))
            if not select.select([fd], [], [], remaining)[0]:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError as e:  # EIO: the program closed the terminal
                if e.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:
                if marker:
                    self.fail("the program closed the terminal before %r; it showed %r" % (marker, shown))
                break
            shown += chunk
        return shown

    def user_add_at_terminal(self, name, *typed):
        """Runs `docflow user add NAME` on a pseudo-terminal, typing each of
        `typed` once its prompt is shown. Returns (exit code, what the
        terminal showed, whether echo was back on at the end)."""
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        proc = subprocess.Popen(
            [BIN, "user", "add", name],
            env=build_env(self.data_dir, {}),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        shown = b""
        for prompt, text in zip((b"Password: ", b"Repeat password: "), typed):
            shown = self.read_until(master, prompt, shown)
            os.write(master, text.encode() + b"\n")
        shown = self.read_until(master, b"", shown)
        code = proc.wait(timeout=self.TIMEOUT)
        echo = bool(termios.tcgetattr(master)[3] & termios.ECHO)
        return code, shown.decode("utf-8", "replace"), echo

    def listed_users(self):
        out = run_cli(["user", "list"], data_dir=self.data_dir)
        self.assertEqual(out.returncode, 0, out.stderr)
        return [line.split("\t")[1] for line in out.stdout.splitlines()[1:]]

    def test_typed_twice_without_echo(self):
        password = "pw-" + secrets.token_hex(8)
        code, shown, echo = self.user_add_at_terminal("cli.tty", password, password)
        self.assertEqual(code, 0, shown)
        self.assertIn("Password: ", shown)
        self.assertIn("Repeat password: ", shown)
        self.assertNotIn(password, shown, "the password was echoed")
        self.assertRegex(shown, r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
        self.assertTrue(echo, "echo was left off")
        self.assertEqual(self.listed_users(), ["cli.tty"])
        server = start_server(data_dir=self.data_dir)
        self.addCleanup(server.cleanup)
        body = json.dumps({"username": "cli.tty", "password": password})
        res = server.request("POST", "/auth/login", headers={"Content-Type": "application/json"}, body=body)
        self.assertEqual(res.status, 200, res)

    def test_typings_that_differ_create_nothing(self):
        code, shown, echo = self.user_add_at_terminal("cli.typo", "pw-first-typing", "pw-second-typing")
        self.assertEqual(code, EXIT_BAD_CONFIG, shown)
        self.assertIn("docflow: the passwords do not match; no account was created", shown)
        self.assertTrue(echo, "echo was left off")
        self.assertEqual(self.listed_users(), [])

    def test_not_a_terminal_reads_the_first_line_without_a_prompt(self):
        password = "pw-" + secrets.token_hex(8)
        out = subprocess.run(
            [BIN, "user", "add", "cli.piped"],
            env=build_env(self.data_dir, {}),
            input=password + "\nignored\n",
            capture_output=True,
            text=True,
            timeout=self.TIMEOUT,
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertNotIn("Password", out.stderr)
        self.assertEqual(self.listed_users(), ["cli.piped"])


class CommandsTest(unittest.TestCase):
    def test_version(self):
        out = run_cli(["version"])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"^docflow \d+\.\d+\.\d+\S*\n?$")

    def test_version_flags_print_the_same(self):
        expected = run_cli(["version"]).stdout
        for flag in ("--version", "-V"):
            with self.subTest(flag=flag):
                out = run_cli([flag])
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertEqual(out.stdout, expected)
                self.assertEqual(out.stderr, "")

    def test_help(self):
        out = run_cli(["--help"])
        self.assertEqual(out.returncode, 0, out.stderr)
        for command in ("serve", "migrate", "version"):
            self.assertIn(command, out.stdout)

    def test_help_on_each_command(self):
        for command in ("serve", "migrate", "version"):
            with self.subTest(command=command):
                out = run_cli([command, "--help"])
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertIn(command, out.stdout + out.stderr)
        out = run_cli(["serve", "--help"])
        self.assertIn("--listen", out.stdout)
        self.assertIn("DOCFLOW_LISTEN", out.stdout)

    def test_help_lists_only_the_settings_the_command_reads(self):
        server_only = ("--listen", "--io-threads", "--header-timeout", "--signup", "--s3-part-size",
                       "--s3-presigned-downloads")
        jobs = ("--workers", "--job-lease", "--storage-url", "--scratch-dir", "--ml-url", "--simulated-delay-ms")
        worker_only = ("--worker-listen",)
        migrating = ("--auto-migrate",)  # every command that opens the database, but migrate itself
        cases = {
            ("serve",): server_only + jobs + migrating + ("--data-dir", "--database-url", "--log-level"),
            ("worker",): jobs + worker_only + migrating + ("--data-dir", "--database-url", "--log-level"),
            ("migrate",): ("--data-dir", "--database-url", "--log-level"),
            ("user", "add"): migrating + ("--data-dir", "--database-url", "--admin"),
            ("user", "list"): migrating + ("--data-dir", "--database-url"),
        }
        every_flag = set(server_only + jobs + worker_only + migrating + ("--data-dir", "--database-url", "--log-level"))
        for command, listed in cases.items():
            with self.subTest(command=command):
                out = run_cli([*command, "--help"])
                self.assertEqual(out.returncode, 0, out.stderr)
                flags = set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout))
                for flag in listed:
                    self.assertIn(flag, flags, out.stdout)
                for flag in every_flag - set(listed):
                    self.assertNotIn(flag, flags, out.stdout)

    def test_a_setting_the_command_does_not_read_is_not_a_flag_there(self):
        out = run_cli(["user", "list", "--listen", "127.0.0.1:9"])
        self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)

    def test_unknown_command_names_the_word_and_the_valid_commands(self):
        top = "docflow: unknown command 'bogus' (commands: serve, migrate, maintenance, migrate-data, version, worker, user)"
        cases = {
            ("bogus",): top,
            ("--help-all", "bogus"): top,
            ("user", "delete"): "docflow user: unknown command 'delete' (commands: add, list, set-quota)",
        }
        for args, message in cases.items():
            with self.subTest(args=args):
                out = run_cli(list(args))
                self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)
                self.assertEqual(out.stderr, message + "\n")
                self.assertEqual(out.stdout, "")

    def test_hidden_commands_still_run(self):
        out = run_cli(["routes"])
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("GET /healthz", out.stdout)

    def test_no_command_fails(self):
        self.assertNotEqual(run_cli([]).returncode, 0)

    def test_migrate_twice(self):
        data = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, data, True)
        versions = []
        for attempt in (1, 2):
            out = run_cli(["migrate"], data_dir=data)
            self.assertEqual(out.returncode, 0, "attempt %d: %s" % (attempt, out.stderr))
            m = re.search(r"schema version (\d+)", out.stderr)
            self.assertIsNotNone(m, out.stderr)
            versions.append(int(m.group(1)))
            self.assertEqual(recorded_versions(data)[-1], versions[-1])
        self.assertEqual(versions[0], versions[1])
        self.assertGreaterEqual(versions[0], 1)

    def test_serve_after_migrate_uses_the_same_database(self):
        data = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, data, True)
        self.assertEqual(run_cli(["migrate"], data_dir=data).returncode, 0)
        server = start_server(data_dir=data)
        self.addCleanup(server.cleanup)
        self.assertEqual(server.get("/readyz").status, 200)


def recorded_versions(data):
    """The schema versions the database of `data` records, oldest first."""
    table = {"sqlite": "SELECT count(*) FROM sqlite_master WHERE name = 'schema_migrations'",
             "postgres": "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"}[ENGINE]
    if run_sql(data, table) == [["0"]]:
        return []
    return [int(v) for (v,) in run_sql(data, "SELECT version FROM schema_migrations ORDER BY version")]


class SchemaVersionTest(ServerTestCase):
    """`docflow migrate` migrates; serve, worker and user migrate only with
    DOCFLOW_AUTO_MIGRATE=on (the default with SQLite), and every command
    refuses a schema newer than it knows."""

    COMMANDS = {  # the prefix each command puts before a failure
        ("serve",): "docflow: ",
        ("worker",): "docflow: worker failed: ",
        ("user", "list"): "docflow: user list failed: ",
    }

    def data_dir(self):
        data = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, data, True)
        return data

    def migrate(self, data):
        """The schema version this binary migrates to."""
        out = run_cli(["migrate"], data_dir=data)
        self.assertEqual(out.returncode, 0, out.stderr)
        return int(re.search(r"schema version (\d+)", out.stderr).group(1))

    def test_a_newer_schema_is_refused_naming_both_versions(self):
        data = self.data_dir()
        known = self.migrate(data)
        newer = known + 7
        # What a later docflow would leave.
        run_sql(data, "INSERT INTO schema_migrations VALUES (%d, '%04d_later.sql', '2030-01-01T00:00:00.000Z')"
                % (newer, newer))
        message = ("the database schema is at version %d, newer than this docflow knows (version %d): "
                   "run a docflow at least as new as the one that migrated it" % (newer, known))
        commands = dict(self.COMMANDS)
        commands[("migrate",)] = "docflow: migrate failed: "
        for command, prefix in commands.items():
            for auto in ("on", "off"):
                with self.subTest(command=command, auto_migrate=auto):
                    out = run_cli(list(command), data_dir=data, timeout=START_BOUND, DOCFLOW_AUTO_MIGRATE=auto)
                    self.assertEqual(out.returncode, EXIT_START_FAILED, out.stderr)
                    self.assertEqual(out.stderr.splitlines(), [prefix + message])
        self.assertEqual(recorded_versions(data)[-1], newer)

    def test_without_auto_migrate_an_unmigrated_database_is_refused(self):
        data = self.data_dir()
        scratch = self.data_dir()
        known = self.migrate(scratch)
        message = ("the database schema is at version 0, older than this docflow's (version %d): "
                   "run `docflow migrate` first, or set DOCFLOW_AUTO_MIGRATE=on" % known)
        for command, prefix in self.COMMANDS.items():
            with self.subTest(command=command):
                out = run_cli(list(command), data_dir=data, timeout=START_BOUND, DOCFLOW_AUTO_MIGRATE="off")
                self.assertEqual(out.returncode, EXIT_START_FAILED, out.stderr)
                self.assertEqual(out.stderr.splitlines(), [prefix + message])
        self.assertEqual(recorded_versions(data), [], "nothing may have been migrated")

        # Once migrated by hand, the same settings start.
        self.assertEqual(self.migrate(data), known)
        server = self.start_server(data_dir=data, DOCFLOW_AUTO_MIGRATE="off")
        self.assertEqual(server.get("/readyz").status, 200)
        out = run_cli(["user", "list"], data_dir=data, DOCFLOW_AUTO_MIGRATE="off")
        self.assertEqual(out.returncode, 0, out.stderr)

    @only_on("sqlite", reason="PostgreSQL's default is off: the next test")
    def test_by_default_every_command_migrates_a_fresh_embedded_database(self):
        scratch = self.data_dir()
        known = self.migrate(scratch)
        for command in self.COMMANDS:
            with self.subTest(command=command):
                data = self.data_dir()
                if command == ("serve",):
                    self.start_server(data_dir=data)
                elif command == ("worker",):
                    self.start_worker(data_dir=data)
                else:
                    out = run_cli(list(command), data_dir=data)
                    self.assertEqual(out.returncode, 0, out.stderr)
                self.assertEqual(recorded_versions(data)[-1], known)

    @only_on("postgres", reason="SQLite's default is on: the test before")
    def test_by_default_no_command_migrates_a_shared_database(self):
        # Several nodes share the database: its schema changes when an
        # operator runs `docflow migrate`, not when one node starts.
        scratch = self.data_dir()
        known = self.migrate(scratch)
        message = ("the database schema is at version 0, older than this docflow's (version %d): "
                   "run `docflow migrate` first, or set DOCFLOW_AUTO_MIGRATE=on" % known)
        data = self.data_dir()
        for command, prefix in self.COMMANDS.items():
            with self.subTest(command=command):
                out = run_cli(list(command), data_dir=data, timeout=START_BOUND, DOCFLOW_AUTO_MIGRATE=None)
                self.assertEqual(out.returncode, EXIT_START_FAILED, out.stderr)
                self.assertEqual(out.stderr.splitlines(), [prefix + message])
        self.assertEqual(recorded_versions(data), [], "nothing may have been migrated")


class JwtSecretTest(ServerTestCase):
    @only_on("sqlite", reason="with PostgreSQL the nodes share a key: it is never generated, the next test")
    def test_generated_once_with_mode_0600_and_reused(self):
        data = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, data, True)
        path = os.path.join(data, "jwt.secret")

        first = self.start_server(data_dir=data, DOCFLOW_JWT_SECRET=None)
        warning = first.wait_for_log(event="config.jwt_secret_generated", timeout=1)
        self.assertEqual(warning["level"], "warn")
        self.assertTrue(os.path.isfile(path))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, "rb") as f:
            secret = f.read()
        self.assertGreaterEqual(len(secret.strip()), 32)
        self.assertNotIn(secret.strip().decode("latin-1"), "\n".join(first.lines), "the secret must not be logged")
        first.signal(signal.SIGTERM)
        self.assertEqual(first.wait_exit(EXIT_TIMEOUT), 0)

        second = self.start_server(data_dir=data, DOCFLOW_JWT_SECRET=None)
        self.assertEqual(second.find_logs(event="config.jwt_secret_generated"), [])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), secret, "the secret changed on the second start")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    @only_on("postgres", reason="SQLite generates one: the test before")
    def test_serve_and_worker_refuse_to_start_without_one(self):
        data = tempfile.mkdtemp(prefix="docflow-it-")
        self.addCleanup(shutil.rmtree, data, True)
        message = ("docflow: invalid configuration: DOCFLOW_JWT_SECRET: must be set (or DOCFLOW_JWT_SECRET_FILE) "
                   "with a postgresql:// database: every node must sign and verify with the same key")
        for command in ("serve", "worker"):
            with self.subTest(command=command):
                out = run_cli([command], data_dir=data, timeout=START_BOUND, DOCFLOW_JWT_SECRET=None)
                self.assertEqual(out.returncode, EXIT_BAD_CONFIG, out.stderr)
                self.assertEqual(out.stderr.splitlines(), [message])
                self.assertFalse(os.path.exists(os.path.join(data, "jwt.secret")))
        # The commands that sign nothing run without it.
        out = run_cli(["user", "list"], data_dir=data, DOCFLOW_JWT_SECRET=None)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_not_generated_when_configured(self):
        server = self.start_server()
        self.assertFalse(os.path.exists(os.path.join(server.data_dir, "jwt.secret")))
        self.assertEqual(server.find_logs(event="config.jwt_secret_generated"), [])


if __name__ == "__main__":
    unittest.main()
