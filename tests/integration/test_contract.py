"""docs/openapi.json held against the server it describes.

- RouteTableTest: `docflow routes` (the route table the binary serves) and
  the document's paths and methods are the same set, both ways.
- DocumentShapeTest: what every response of the document must declare
  (X-Request-ID; 401 wherever a token is needed).
- ObservedTest: every answer the integration suites received
  (harness.record_exchange writes them to DOCFLOW_CONTRACT_LOG_DIR, one
  JSON line each) is documented: its status for that operation, its media
  type for that status, its JSON body valid against the documented schema
  (JSON Schema 2020-12), the response headers the document marks required
  present and valid, and no watched header (Location, Retry-After, ...)
  where the document does not declare it. Every answer carries X-Request-ID
  and every 405 Allow.

Answers to paths outside the route table are the server's generic ones,
documented once in the document's info.description rather than per path:
404 for an unknown path, 405 for a known path under another method (400 and
431 when the request head itself is bad, before any routing). They must be
Problems. Answers to requests the harness could not name (deliberately
broken ones) are checked only when they are Problems.

CTest runs this after the integration suites (DEPENDS); run alone, it checks
whatever the suites last recorded. DOCFLOW_CONTRACT_VERBOSE=1 lists the
documented answers no suite observed.
"""
import collections
import json
import os
import re
import subprocess
import sys
import time
import unittest

try:
    import jsonschema
except ImportError:  # pragma: no cover - depends on the machine
    # Debian's python3-jsonschema is installed for /usr/bin/python3; CMake
    # may have found another interpreter first (pyenv).
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__), *sys.argv[1:]])
    raise SystemExit("test_contract.py needs python3-jsonschema (Draft 2020-12 validation)")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("DOCFLOW_REPO") or os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("DOCFLOW_BIN") or os.path.join(REPO, "build", "src", "docflow")
DOCUMENT = os.path.join(REPO, "docs", "openapi.json")
LOG_DIR = os.environ.get("DOCFLOW_CONTRACT_LOG_DIR")

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Response headers whose presence means something: one of these on an answer
# that does not document it is drift.
WATCHED_HEADERS = (
    "Location",
    "Retry-After",
    "ETag",
    "WWW-Authenticate",
    "Content-Range",
    "Content-Disposition",
    "Accept-Ranges",
    "Idempotent-Replayed",
)
# The server's answers to requests that reach no operation (see above).
UNKNOWN_PATH_STATUSES = {400, 404, 431}
UNKNOWN_METHOD_STATUSES = {400, 405, 431}


def load_document():
    with open(DOCUMENT, encoding="utf-8") as f:
        return json.load(f)


def operations(doc):
    """{(METHOD, template): operation} for every operation of the document."""
    out = {}
    for template, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                out[(method.upper(), template)] = item[method]
    return out


def resolve(doc, node):
    """Follows a Reference Object (components only) to what it names."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise AssertionError("only local references are expected: %r" % ref)
        target = doc
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
        seen += 1
        if seen > 20:
            raise AssertionError("reference loop at %r" % ref)
    return node


def media_type(value):
    return (value or "").split(";", 1)[0].strip().lower()


class Validators:
    """JSON Schema 2020-12 validators for schemas inside the document. Each
    schema is validated in a root that also holds the document's components,
    so that its `#/components/...` references resolve the same way with the
    RefResolver of Debian's jsonschema 4.10 and the referencing registry of
    later versions."""

    def __init__(self, doc):
        self.components = doc["components"]
        self.cache = {}
        self.format_checker = jsonschema.FormatChecker()

    def errors(self, schema, instance):
        key = json.dumps(schema, sort_keys=True)
        validator = self.cache.get(key)
        if validator is None:
            root = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": self.components,
                "allOf": [schema],
            }
            validator = jsonschema.Draft202012Validator(root, format_checker=self.format_checker)
            self.cache[key] = validator
        return sorted(
            "%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(body)", e.message)
            for e in validator.iter_errors(instance)
        )


def template_regex(template):
    parts = []
    for segment in template.split("/"):
        parts.append("[^/]+" if re.fullmatch(r"\{[^/{}]+\}", segment) else re.escape(segment))
    return re.compile("^" + "/".join(parts) + "$")


class RouteTableTest(unittest.TestCase):
    maxDiff = None

    def test_document_and_route_table_agree(self):
        run = subprocess.run([BIN, "routes"], capture_output=True, text=True, timeout=20)
        self.assertEqual(run.returncode, 0, run.stderr)
        served = set()
        for line in run.stdout.splitlines():
            method, _, pattern = line.partition(" ")
            self.assertTrue(method and pattern.startswith("/"), "not 'METHOD PATH': %r" % line)
            served.add((method, pattern))
        self.assertTrue(served, "docflow routes printed nothing")
        documented = set(operations(load_document()))
        self.assertEqual(
            sorted(served - documented), [], "routes the binary serves that docs/openapi.json does not describe"
        )
        self.assertEqual(
            sorted(documented - served), [], "operations docs/openapi.json describes that the binary does not serve"
        )


class DocumentShapeTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.doc = load_document()

    def test_every_response_declares_x_request_id(self):
        missing = []
        for (method, template), op in operations(self.doc).items():
            for status, response in op["responses"].items():
                headers = resolve(self.doc, response).get("headers", {})
                if headers.get("X-Request-ID") != {"$ref": "#/components/headers/X-Request-ID"}:
                    missing.append("%s %s %s" % (method, template, status))
        self.assertEqual(missing, [], "responses without the shared X-Request-ID header")

    def test_operations_that_need_a_token_document_401(self):
        missing = []
        for (method, template), op in operations(self.doc).items():
            security = op.get("security", self.doc.get("security", []))
            needs_token = bool(security) and {} not in security
            if needs_token and "401" not in op["responses"]:
                missing.append("%s %s" % (method, template))
        self.assertEqual(missing, [], "operations that need a token but document no 401")


class ObservedTest(unittest.TestCase):
    """The answers the integration suites saw, against the document."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.doc = load_document()
        cls.ops = operations(cls.doc)
        cls.templates = sorted(
            ((template_regex(t), t) for t in cls.doc["paths"]),
            key=lambda rt: rt[1].count("{"),  # literal segments win, as in the router
        )
        cls.validators = Validators(cls.doc)

    def observations(self):
        if not LOG_DIR:
            self.fail("DOCFLOW_CONTRACT_LOG_DIR is not set: run this through CTest (ctest -R contract)")
        files = sorted(f for f in os.listdir(LOG_DIR) if f.endswith(".jsonl")) if os.path.isdir(LOG_DIR) else []
        out = []
        for name in files:
            with open(os.path.join(LOG_DIR, name), encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    entry = json.loads(line)
                    entry["origin"] = "%s:%d" % (name, n)
                    out.append(entry)
        if not out:
            self.fail(
                "no observed responses in %s: run the integration suites first "
                "(ctest -L integration runs them, then this test)" % LOG_DIR
            )
        if os.path.exists(BIN):
            stale = [f for f in files if os.path.getmtime(os.path.join(LOG_DIR, f)) < os.path.getmtime(BIN)]
            if stale:
                sys.stderr.write("note: recorded before the binary was last built: %s\n" % ", ".join(stale))
        return out

    def template_of(self, path):
        for regex, template in self.templates:
            if regex.match(path):
                return template
        return None

    def check_problem(self, entry, problems):
        """A generic answer: when it has a JSON body, it must be a Problem."""
        if "json" in entry:
            schema = {"$ref": "#/components/schemas/Problem"}
            for error in self.validators.errors(schema, entry["json"]):
                problems["invalid body"].append((entry, "Problem: " + error))
        elif media_type(entry.get("content_type")) not in ("", "application/problem+json"):
            problems["undocumented media type"].append((entry, "a generic answer that is not a problem"))

    def check_headers(self, entry, response, problems):
        headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
        if "headers" not in entry:
            return
        documented = {name.lower(): resolve(self.doc, h) for name, h in response.get("headers", {}).items()}
        for name, header in documented.items():
            if name not in headers:
                if header.get("required"):
                    problems["missing header"].append((entry, name))
                continue
            schema = header.get("schema", {})
            value = headers[name]
            if schema.get("type") == "integer":
                try:
                    value = int(value)
                except ValueError:
                    problems["invalid header"].append((entry, "%s: %r is not an integer" % (name, value)))
                    continue
            for error in self.validators.errors(schema, value):
                problems["invalid header"].append((entry, "%s: %s" % (name, error)))
        for name in WATCHED_HEADERS:
            if name.lower() in headers and name.lower() not in documented:
                problems["undocumented header"].append((entry, name))

    def check_sse(self, entry, media, problems):
        event_schema = media.get("x-sse-event")
        if event_schema is None or "text" not in entry:
            return
        data_schema = event_schema["properties"]["data"].get("contentSchema")
        # Only whole events: the recording may have cut the last one short.
        for block in entry["text"].replace("\r\n", "\n").split("\n\n")[:-1]:
            event = {}
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                event[name] = event[name] + "\n" + value if name in event else value
            if not event:
                continue  # a heartbeat
            for error in self.validators.errors(event_schema, event):
                problems["invalid body"].append((entry, "event: " + error))
            if data_schema is not None and "data" in event:
                try:
                    data = json.loads(event["data"])
                except ValueError as e:
                    problems["invalid body"].append((entry, "event data is not JSON: %s" % e))
                    continue
                for error in self.validators.errors(data_schema, data):
                    problems["invalid body"].append((entry, "event data: " + error))

    def check(self, entry, problems, seen):
        method, path, status = entry.get("method"), entry.get("path"), entry["status"]
        headers = {k.lower() for k in entry.get("headers", {})}
        if "headers" in entry and "x-request-id" not in headers:
            problems["missing header"].append((entry, "X-Request-ID (every answer carries one)"))
        if status == 405 and "headers" in entry and "allow" not in headers:
            problems["missing header"].append((entry, "Allow (every 405 carries one)"))
        if method is None or path is None:
            # Which request this answers is unknown: only a problem can be checked.
            if media_type(entry.get("content_type")) == "application/problem+json":
                self.check_problem(entry, problems)
            return
        template = self.template_of(path)
        if template is None:
            if status not in UNKNOWN_PATH_STATUSES:
                problems["unknown path"].append((entry, "answered %d" % status))
            self.check_problem(entry, problems)
            return
        op = self.ops.get(("GET" if method == "HEAD" else method, template))
        if op is None:
            if status not in UNKNOWN_METHOD_STATUSES:
                problems["unknown method"].append((entry, "%s %s answered %d" % (method, template, status)))
            self.check_problem(entry, problems)
            return
        entry["operation"] = "%s %s" % (method if method != "HEAD" else "GET", template)
        responses = op["responses"]
        key = str(status)
        if key not in responses:
            key = key[0] + "XX" if key[0] + "XX" in responses else "default"
        if key not in responses:
            problems["undocumented status"].append((entry, str(status)))
            return
        seen.add((entry["operation"], key))
        response = resolve(self.doc, responses[key])
        self.check_headers(entry, response, problems)
        content = response.get("content", {})
        observed_type = media_type(entry.get("content_type"))
        if not observed_type:
            if content and method != "HEAD" and status not in (204, 304):
                problems["undocumented media type"].append((entry, "no Content-Type where one is documented"))
            return
        media = next((m for name, m in content.items() if media_type(name) == observed_type), None)
        if media is None:
            problems["undocumented media type"].append((entry, entry.get("content_type")))
            return
        if entry.get("json_error"):
            problems["invalid body"].append((entry, "not JSON: " + entry["json_error"]))
        elif "json" in entry:
            for error in self.validators.errors(media.get("schema", {}), entry["json"]):
                problems["invalid body"].append((entry, error))
        self.check_sse(entry, media, problems)

    def test_observed_answers_are_documented(self):
        started = time.monotonic()
        entries = self.observations()
        problems = collections.defaultdict(list)
        seen = set()
        for entry in entries:
            self.check(entry, problems, seen)
        documented = {
            ("%s %s" % (method, template), status) for (method, template), op in self.ops.items()
            for status in op["responses"]
        }
        unseen = sorted(documented - seen)
        sys.stderr.write(
            "%d observed answers checked in %.1fs; %d of %d documented (operation, status) pairs observed\n"
            % (len(entries), time.monotonic() - started, len(documented) - len(unseen), len(documented))
        )
        if os.environ.get("DOCFLOW_CONTRACT_VERBOSE"):
            sys.stderr.write("never observed:\n" + "".join("  %s %s\n" % u for u in unseen))
        if problems:
            self.fail(self.report(problems))

    @staticmethod
    def report(problems):
        """One line per distinct finding, with how often and where first seen."""
        lines = ["the observed answers do not match docs/openapi.json:"]
        for kind in sorted(problems):
            grouped = collections.OrderedDict()
            for entry, what in problems[kind]:
                where = entry.get("operation") or "%s %s" % (entry.get("method"), entry.get("path"))
                key = (where, entry["status"], what)
                if key not in grouped:
                    grouped[key] = [0, entry]
                grouped[key][0] += 1
            for (where, status, what), (count, entry) in grouped.items():
                body = json.dumps(entry.get("json"))[:300] if "json" in entry else ""
                lines.append(
                    "  %s: %s -> %d: %s (%dx, first %s) %s" % (kind, where, status, what, count, entry["origin"], body)
                )
        return "\n".join(lines)


if __name__ == "__main__":
    unittest.main()
