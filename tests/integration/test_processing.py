"""Processing (SPEC section 4) over HTTP, black-box: POST /documents/{id}/process,
the job queue and its workers (in `docflow serve` and in a separate
`docflow worker`), retries, the extractor sandbox's failures, cancellation,
crash recovery under leases, results, Server-Sent Events, backpressure, who
may see what, and what the logs and metrics say about jobs.

The documents are the real fixtures of tests/fixtures (README.md there gives
the expected values); broken files are built here at test time.

Every wait is bounded: a status is polled with a deadline that only detects
hangs, and no test asserts how long anything took."""
import datetime
import http.client
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
import unittest
import zipfile

from harness import (
    IO_TIMEOUT,
    UUID_RE,
    ConnectionClosed,
    RawConnection,
    ServerTestCase,
    SharedServerTestCase,
    format_request,
    metric,
    parse_metrics,
    start_server,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
PDF_TYPE = "application/pdf"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
BOUNDARY = "docflow-processing-boundary-Zq81"
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")

DONE_BOUND = 30.0  # a job that has not finished by then is hung (detects hangs only)
SETTLE = 1.0  # time given to a (wrong) second job to show itself in the log
TERMINAL = ("COMPLETED", "FAILED")
# The processing endpoints under /documents/{id}, for the ownership and auth checks.
DOCUMENT_ACTIONS = (
    ("POST", "/process"),
    ("POST", "/cancel"),
    ("GET", "/result"),
    ("GET", "/result/text"),
    ("GET", "/events"),
)

RESULT_FIELDS = {
    "document_id",
    "pipeline_version",
    "pipeline",
    "started_at",
    "completed_at",
    "duration_ms",
    "attempts",
    "pages",
    "word_count",
    "char_count",
    "line_count",
    "language",
    "language_confidence",
    "keywords",
    "metadata",
    "text_preview",
    "text_bytes",
    "truncated",
    "links",
    "ml",
    "page_sources",
    "ocr",
}

# tests/fixtures/README.md, per file: what extraction and analysis must find.
EXPECTED = {
    "en-1page.pdf": {
        "pages": 1,
        "title": "River Survey Report",
        "author": "Jane Doe",
        "created": "2024-03-15T10:30:00Z",
        "words": 42,
        "chars": 244,
        "lines": 2,
        "language": "en",
        "top": {"river": 2, "survey": 2, "water": 2},
        "text": "The quarterly report describes the progress of the river survey. Our team measured the water "
        "quality at twelve stations along the river. The results show that the water is cleaner than it "
        "was last year, and the survey will continue\nnext spring.",
    },
    "multipage.pdf": {
        "pages": 3,
        "title": "Budget Plan",
        "author": None,
        "created": "2023-01-02T03:04:05Z",
        "words": 26,
        "chars": 157,
        "lines": 3,
        "language": "en",
        "contains": [
            "Page one introduces the annual budget plan.",
            "Page two lists the expected costs for travel and equipment.",
            "Page three summarises the budget and closes the plan.",
        ],
    },
    "de.pdf": {
        "pages": 1,
        "title": "Der neue Park",
        "author": "Max Mustermann",
        "created": "2022-06-07T06:09:10Z",
        "words": 47,
        "chars": 271,
        "lines": 3,
        "language": "de",
        "top": {"park": 2},
        "contains": ["Die Stadt hat im letzten Jahr", "für die Bürger", "großen Spielplatz"],
    },
    "table-header-footer.docx": {
        "pages": 1,
        "title": "Quarterly Sales Summary",
        "author": "John Smith",
        "created": "2024-05-06T07:08:09Z",
        "words": 29,
        "chars": 189,
        "lines": 10,
        "language": "en",
        "top": {"region": 3},
        "text": "Sales grew in every region during the second quarter.\nRegion\tTotalSecond line\nafter break\n"
        "North\n1200\nSouth\n950\nSales in the south region need attention.\nACME Corporation\nConfidential footer",
    },
    "de.docx": {
        "pages": 1,
        "title": "Der neue Park",
        "author": "Erika Mustermann",
        "created": "2021-09-10T10:00:00Z",
        "words": 52,
        "chars": 302,
        "lines": 5,
        "language": "de",
        "contains": ["Der neue Park\nErika Mustermann\n", "für die Bürger", "großen Spielplatz"],
    },
}

_counter = iter(range(1, 1 << 30))


# --------------------------------------------------------------------------
# Files


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def corrupt_pdf():
    """A PDF header, then nothing a PDF parser can use."""
    return b"%PDF-1.4\n" + bytes((i * 131 + 17) % 256 for i in range(4096)) + b"\nnot an object\n"


CONTENT_TYPES_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"><Default Extension="xml" ContentType="application/xml"/><Override '
    'PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    'wordprocessingml.document.main+xml"/></Types>'
)


def docx_with_paragraphs(paragraphs):
    """A minimal DOCX whose body is `paragraphs`, one w:p each."""
    body = "".join("<w:p><w:r><w:t>%s</w:t></w:r></w:p>" % p for p in paragraphs)
    xml = ('<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
           'wordprocessingml/2006/main"><w:body>%s</w:body></w:document>' % body)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES_XML)
        z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships/>')
        z.writestr("word/document.xml", xml)
    return buf.getvalue()


def docx_zip_bomb(inflated=300 * 1024 * 1024):
    """A DOCX whose word/document.xml inflates to `inflated` bytes of one
    character: a few hundred KiB on the wire, a compression ratio near 1000.
    Written in chunks, so the test never holds the inflated bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES_XML)
        z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships/>')
        chunk = b"A" * (1024 * 1024)
        with z.open("word/document.xml", "w") as part:
            written = 0
            while written < inflated:
                n = min(len(chunk), inflated - written)
                part.write(chunk[:n])
                written += n
    return buf.getvalue()


# --------------------------------------------------------------------------
# Accounts and requests


def bearer(token):
    return {"Authorization": "Bearer " + token}


def post_json(server, path, obj):
    return server.request(
        "POST", path, headers={"Content-Type": "application/json"}, body=json.dumps(obj), timeout=30
    )


def new_user(server):
    """Registers and logs in a fresh user; returns the access token."""
    username = "proc-%d-%s" % (next(_counter), secrets.token_hex(3))
    password = "pw-" + secrets.token_urlsafe(12)
    res = post_json(server, "/auth/register", {"username": username, "password": password})
    assert res.status == 201, res
    res = post_json(server, "/auth/login", {"username": username, "password": password})
    assert res.status == 200, res
    return res.json()["access_token"]


def multipart(data, filename):
    b = BOUNDARY.encode()
    head = b'Content-Disposition: form-data; name="file"; filename="' + filename.encode() + b'"\r\n'
    head += b"Content-Type: application/octet-stream\r\n"
    return b"--" + b + b"\r\n" + head + b"\r\n" + data + b"\r\n--" + b + b"--\r\n"


def upload(server, token, data, filename):
    """Uploads a file; returns the new Document (asserting 201)."""
    res = server.request(
        "POST",
        "/documents",
        headers={"Content-Type": "multipart/form-data; boundary=" + BOUNDARY, **bearer(token)},
        body=multipart(data, filename),
        timeout=60,
    )
    assert res.status == 201, res
    return res.json()


def process(server, token, doc_id, timeout=IO_TIMEOUT):
    return server.request("POST", "/documents/%s/process" % doc_id, headers=bearer(token), timeout=timeout)


def cancel(server, token, doc_id):
    return server.request("POST", "/documents/%s/cancel" % doc_id, headers=bearer(token))


def get_doc(server, token, doc_id):
    res = server.get("/documents/" + doc_id, headers=bearer(token))
    assert res.status == 200, res
    return res.json()


def get_result(server, token, doc_id):
    return server.get("/documents/%s/result" % doc_id, headers=bearer(token))


def get_text(server, token, doc_id):
    return server.get("/documents/%s/result/text" % doc_id, headers=bearer(token))


def wait_status(server, token, doc_id, statuses=TERMINAL, timeout=DONE_BOUND):
    """Polls the Document until its status is one of `statuses`; returns it.
    Fails (with the last Document seen) when the deadline passes."""
    if isinstance(statuses, str):
        statuses = (statuses,)
    deadline = time.monotonic() + timeout
    while True:
        doc = get_doc(server, token, doc_id)
        if doc["status"] in statuses:
            return doc
        if time.monotonic() >= deadline:
            raise AssertionError(
                "document %s not %s within %.0fs; last seen: %r" % (doc_id, "/".join(statuses), timeout, doc)
            )
        time.sleep(0.05)


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def logs_for(lines_or_server, event, doc_id):
    """The parsed log lines with this event and document_id."""
    if hasattr(lines_or_server, "find_logs"):
        return lines_or_server.find_logs(event=event, document_id=doc_id)
    return [e for e in lines_or_server if isinstance(e, dict) and e.get("event") == event
            and e.get("document_id") == doc_id]


# --------------------------------------------------------------------------
# Server-Sent Events over a raw socket


class EventStream:
    """GET /documents/{id}/events read incrementally: the head at once, then
    one event at a time as the server sends it."""

    def __init__(self, server, doc_id, token, last_event_id=None, timeout=IO_TIMEOUT):
        headers = {"Accept": "text/event-stream", **bearer(token)}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn = RawConnection(server.port, timeout=timeout)
        self.conn.send(format_request("GET", "/documents/%s/events" % doc_id, headers))
        try:
            head = self.conn._read_until(b"\r\n\r\n", time.monotonic() + timeout).decode("latin-1")
        except socket.timeout:
            self.conn.close()
            raise AssertionError("no response head for the event stream within %.1fs" % timeout) from None
        lines = head[:-4].split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip(), value.strip()))
        self.chunked = "chunked" in (self.header("Transfer-Encoding") or "").lower()
        length = self.header("Content-Length")
        self.remaining = int(length) if length is not None else None
        self.body = b""
        self.ended = False
        self.clean_end = False  # ended by the last chunk (or the declared length), not a cut connection

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def _read_more(self, deadline):
        conn = self.conn
        try:
            if self.chunked:
                size = int(conn._read_until(b"\r\n", deadline).split(b";")[0].strip(), 16)
                if size == 0:
                    while conn._read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    self.ended = self.clean_end = True
                    return
                self.body += conn._read_exact(size, deadline)
                conn._read_exact(2, deadline)
            elif self.remaining is not None:
                if self.remaining == 0:
                    self.ended = self.clean_end = True
                    return
                if not conn.buf and not conn._fill(deadline):
                    self.ended = True
                    return
                take = conn.buf[: self.remaining]
                conn.buf = conn.buf[len(take):]
                self.remaining -= len(take)
                self.body += take
            else:
                if not conn.buf and not conn._fill(deadline):
                    self.ended = self.clean_end = True  # EOF delimits such a body
                    return
                self.body += conn.buf
                conn.buf = b""
        except ConnectionClosed:
            self.ended = True

    def next_event(self, timeout=IO_TIMEOUT):
        """The next event as {id, event, data}, or None when the stream ended.
        Comment-only blocks (heartbeats) are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            self.body = self.body.replace(b"\r\n", b"\n")
            if b"\n\n" in self.body:
                block, self.body = self.body.split(b"\n\n", 1)
                event = {"data": []}
                for line in block.decode("utf-8").split("\n"):
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        event["data"].append(value)
                    else:
                        event[name] = value
                if set(event) == {"data"} and not event["data"]:
                    continue  # a comment
                event["data"] = "\n".join(event["data"])
                return event
            if self.ended:
                return None
            try:
                self._read_more(deadline)
            except socket.timeout:
                raise AssertionError(
                    "no complete SSE event within %.1fs; have %r" % (timeout, self.body[:300])
                ) from None

    def events_until_end(self, timeout=DONE_BOUND):
        deadline = time.monotonic() + timeout
        out = []
        while True:
            e = self.next_event(timeout=max(0.1, deadline - time.monotonic()))
            if e is None:
                return out
            out.append(e)

    def close(self):
        self.conn.close()


def status_events(events):
    """The status events of a stream's events, their data parsed: what a
    lifecycle assertion looks at (a run long enough to watch also sends
    progress events between PROCESSING and its end)."""
    return [json.loads(e["data"]) for e in events if e.get("event") == "status"]


PROGRESS_FIELDS = {"document_id", "stage", "pages_done", "pages_total", "at"}


# --------------------------------------------------------------------------
# Test cases


class ProcessingCase(ServerTestCase):
    def assertAccepted(self, res, doc_id):
        """202 with the Document, now PROCESSING."""
        self.assertEqual(res.status, 202, res)
        self.assertEqual(res.content_type, "application/json", res)
        doc = res.json()
        self.assertEqual(doc["id"], doc_id)
        self.assertEqual(doc["status"], "PROCESSING", doc)
        return doc

    def assertFailed(self, doc, code, retryable, attempts=None):
        self.assertEqual(doc["status"], "FAILED", doc)
        error = doc["processing"]["error"]
        self.assertIsInstance(error, dict, doc)
        self.assertEqual(set(error), {"code", "message", "retryable"}, error)
        self.assertEqual(error["code"], code, doc)
        self.assertIs(error["retryable"], retryable, doc)
        self.assertIsInstance(error["message"], str)
        self.assertTrue(error["message"], error)
        if attempts is not None:
            self.assertEqual(doc["processing"]["attempts"], attempts, doc)
        self.assertIsNotNone(doc["processing"]["finished_at"], doc)
        return error

    def assertNotReady(self, res, doc_id, status, text=False):
        suffix = "/result/text" if text else "/result"
        body = self.assertProblem(res, 409, "result-not-ready", "/documents/%s%s" % (doc_id, suffix))
        self.assertEqual(body.get("document_status"), status, body)
        return body

    def assertProcessingFailed(self, res, doc_id, code, retryable, text=False):
        suffix = "/result/text" if text else "/result"
        body = self.assertProblem(res, 409, "processing-failed", "/documents/%s%s" % (doc_id, suffix))
        self.assertEqual(body.get("document_status"), "FAILED", body)
        error = body.get("error")
        self.assertIsInstance(error, dict, body)
        self.assertEqual(set(error), {"code", "message", "retryable"}, body)
        self.assertEqual(error["code"], code, body)
        self.assertIs(error["retryable"], retryable, body)
        return body

    def assertNotFound(self, res):
        return self.assertProblem(res, 404, "not-found")

    def assertLifecycleLine(self, line, doc_id, job_id=None, attempt=None):
        self.assertEqual(line.get("document_id"), doc_id, line)
        self.assertRegex(str(line.get("job_id")), UUID_RE, "no job_id on %r" % line)
        if job_id is not None:
            self.assertEqual(line.get("job_id"), job_id, line)
        self.assertIn("attempt", line, "no attempt on %r" % line)
        self.assertIsInstance(line["attempt"], int, line)
        if attempt is not None:
            self.assertEqual(line["attempt"], attempt, line)


class SharedProcessingCase(ProcessingCase, SharedServerTestCase):
    """One server (and two users) for the whole class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = new_user(cls.server)
        cls.other_token = new_user(cls.server)


# ==========================================================================
# A fast server: results, SSE, idempotency, failures, ownership, logs, metrics


class ProcessingTest(SharedProcessingCase):
    server_env = {"DOCFLOW_WORKERS": 4}

    def complete(self, filename, data=None):
        """Uploads, processes and waits; returns the COMPLETED Document."""
        doc = upload(self.server, self.token, data if data is not None else fixture(filename), filename)
        self.assertEqual(doc["status"], "UPLOADED", doc)
        self.assertAccepted(process(self.server, self.token, doc["id"]), doc["id"])
        done = wait_status(self.server, self.token, doc["id"])
        self.assertEqual(done["status"], "COMPLETED", done)
        return done

    def check_fixture(self, filename):
        exp = EXPECTED[filename]
        doc = self.complete(filename)
        doc_id = doc["id"]
        self.assertEqual(doc["processing"]["attempts"], 1, doc)
        self.assertIsNone(doc["processing"]["error"], doc)
        self.assertRegex(doc["processing"]["started_at"] or "", RFC3339_RE, doc)
        self.assertRegex(doc["processing"]["finished_at"] or "", RFC3339_RE, doc)

        res = get_result(self.server, self.token, doc_id)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.content_type, "application/json", res)
        r = res.json()
        self.assertEqual(set(r), RESULT_FIELDS, r)
        self.assertIsNone(r["ml"], "the enrich stage is off without DOCFLOW_ML_URL: %r" % r)
        self.assertEqual(r["document_id"], doc_id)
        self.assertIsInstance(r["pipeline_version"], str)
        self.assertTrue(r["pipeline_version"], r)
        self.assertRegex(r["started_at"], RFC3339_RE)
        self.assertRegex(r["completed_at"], RFC3339_RE)
        self.assertLessEqual(parse_time(r["started_at"]), parse_time(r["completed_at"]), r)
        self.assertIsInstance(r["duration_ms"], int, r)
        self.assertGreaterEqual(r["duration_ms"], 0, r)
        self.assertEqual(r["attempts"], 1, r)
        self.assertEqual(r["pages"], exp["pages"], r)
        self.assertEqual(r["word_count"], exp["words"], r)
        self.assertEqual(r["char_count"], exp["chars"], r)
        if "lines" in exp:
            self.assertEqual(r["line_count"], exp["lines"], r)
        self.assertEqual(r["language"], exp["language"], r)
        self.assertIsInstance(r["language_confidence"], (int, float), r)
        if exp["language"] == "und":
            self.assertEqual(r["language_confidence"], 0, r)
        else:
            self.assertGreater(r["language_confidence"], 0, r)
            self.assertLessEqual(r["language_confidence"], 1, r)

        # metadata
        self.assertEqual(set(r["metadata"]), {"title", "author", "created"}, r)
        self.assertEqual(r["metadata"]["title"], exp["title"], r)
        self.assertEqual(r["metadata"]["author"], exp["author"], r)
        if exp["created"] is None:
            self.assertIsNone(r["metadata"]["created"], r)
        else:
            self.assertRegex(r["metadata"]["created"] or "", RFC3339_RE, r)
            self.assertEqual(parse_time(r["metadata"]["created"]), parse_time(exp["created"]), r)

        # keywords: [{term, count}], most frequent first
        kws = r["keywords"]
        self.assertIsInstance(kws, list, r)
        for k in kws:
            self.assertEqual(set(k), {"term", "count"}, k)
            self.assertIsInstance(k["term"], str)
            self.assertIsInstance(k["count"], int)
            self.assertGreaterEqual(k["count"], 1, k)
        counts = [k["count"] for k in kws]
        self.assertEqual(counts, sorted(counts, reverse=True), "keywords not most frequent first: %r" % kws)
        if exp["words"] == 0:
            self.assertEqual(kws, [], r)
        if "top" in exp:
            top = {k["term"]: k["count"] for k in kws[: len(exp["top"])]}
            self.assertEqual(top, exp["top"], kws)

        # the full text
        tres = get_text(self.server, self.token, doc_id)
        self.assertEqual(tres.status, 200, tres)
        self.assertEqual(
            (tres.header("Content-Type") or "").replace(" ", "").lower(), "text/plain;charset=utf-8", tres
        )
        text = tres.body.decode("utf-8")
        self.assertEqual(len(text), exp["chars"], repr(text))
        if "text" in exp:
            self.assertEqual(text, exp["text"])
        for needle in exp.get("contains", []):
            self.assertIn(needle, text)
        self.assertEqual(r["text_preview"], text[:500], r)
        self.assertEqual(r["links"], {"text": "/documents/%s/result/text" % doc_id}, r)
        # Text from the text layer alone: OCR (auto) reads no page that has one.
        sources = [] if filename.endswith(".docx") else ["text_layer"] * exp["pages"]
        self.assertEqual([p["source"] for p in r["page_sources"]], sources, r)
        self.assertIsNone(r["ocr"], r)
        return doc, r

    def check_ocr(self, filename, content_type, pages, sources, phrases):
        """A scan or an image: its pages read by OCR; the text holds `phrases`
        (word for word; OCR keeps no exact layout)."""
        doc = self.complete(filename)
        self.assertEqual(doc["content_type"], content_type, doc)
        res = get_result(self.server, self.token, doc["id"])
        self.assertEqual(res.status, 200, res)
        r = res.json()
        self.assertEqual(set(r), RESULT_FIELDS, r)
        self.assertEqual(r["pages"], pages, r)
        self.assertEqual([p["source"] for p in r["page_sources"]], sources, r)
        for p in r["page_sources"]:
            self.assertEqual(set(p), {"source", "chars", "confidence", "blank"}, p)
            self.assertIsInstance(p["chars"], int, p)
            self.assertIs(p["blank"], False, p)
            if p["source"] == "ocr":
                self.assertIsInstance(p["confidence"], int, p)
                self.assertTrue(50 < p["confidence"] <= 100, p)
            else:
                self.assertIsNone(p["confidence"], p)
        ocr = r["ocr"]
        self.assertEqual(set(ocr), {"pages", "mean_confidence", "languages"}, r)
        self.assertEqual(ocr["pages"], sources.count("ocr"), r)
        confidences = [p["confidence"] for p in r["page_sources"] if p["source"] == "ocr"]
        self.assertAlmostEqual(ocr["mean_confidence"], sum(confidences) / len(confidences), places=6)
        self.assertEqual(ocr["languages"], ["eng"], r)
        text = get_text(self.server, self.token, doc["id"]).body.decode("utf-8")
        words = re.findall(r"[a-z0-9]+", text.lower())
        for phrase in phrases:
            want = re.findall(r"[a-z0-9]+", phrase.lower())
            self.assertTrue(
                any(words[i : i + len(want)] == want for i in range(len(words))), "%r not in %r" % (phrase, text)
            )
        self.assertEqual(r["char_count"], len(text), r)
        self.assertGreaterEqual(r["word_count"], sum(len(p.split()) for p in phrases), r)
        return r

    # ---- happy paths, one per fixture

    def test_en_1page_pdf(self):
        self.check_fixture("en-1page.pdf")

    def test_multipage_pdf(self):
        self.check_fixture("multipage.pdf")

    def test_de_pdf(self):
        self.check_fixture("de.pdf")

    # ---- OCR: scans and images (tests/fixtures/README.md)

    def test_scanned_pdf_is_read_by_ocr(self):
        self.check_ocr("scanned.pdf", "application/pdf", 1, ["ocr"], ["Scanned page without a text layer"])

    def test_an_empty_page_is_blank_and_not_read_by_ocr(self):
        empty = (
            b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
            b"2 0 obj <</Type /Pages /Kids [3 0 R] /Count 1>> endobj\n"
            b"3 0 obj <</Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]>> endobj\n"
            b"trailer <</Root 1 0 R>>\n%%EOF\n"
        )
        doc = self.complete("empty.pdf", empty)
        r = get_result(self.server, self.token, doc["id"]).json()
        self.assertEqual(r["page_sources"], [{"source": "none", "chars": 0, "confidence": None, "blank": True}], r)
        self.assertIsNone(r["ocr"], r)
        self.assertEqual(r["word_count"], 0, r)

    def test_a_page_stored_sideways_is_read_upright(self):
        self.check_ocr("rotated.pdf", "application/pdf", 1, ["ocr"], ["This page was scanned sideways"])

    def test_png_is_read_by_ocr(self):
        r = self.check_ocr("scan.png", "image/png", 1, ["ocr"], ["Scanned page without a text layer"])
        self.assertEqual(r["metadata"], {"title": None, "author": None, "created": None}, r)

    def test_jpeg_is_read_by_ocr(self):
        self.check_ocr(
            "receipt.jpg",
            "image/jpeg",
            1,
            ["ocr"],
            ["Photographed receipt from the harbour", "Total amount forty two euros"],
        )

    def test_two_page_tiff_is_read_page_by_page(self):
        self.check_ocr(
            "two-pages.tiff",
            "image/tiff",
            2,
            ["ocr", "ocr"],
            ["First page of the survey", "Second page lists the results"],
        )

    def test_table_header_footer_docx(self):
        self.check_fixture("table-header-footer.docx")

    def test_de_docx(self):
        self.check_fixture("de.docx")

    # ---- idempotent trigger

    def test_process_on_completed_document_is_200_and_enqueues_nothing(self):
        doc = self.complete("multipage.pdf")
        time.sleep(SETTLE)
        res = process(self.server, self.token, doc["id"])
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.content_type, "application/json", res)
        again = res.json()
        self.assertEqual(again["id"], doc["id"])
        self.assertEqual(again["status"], "COMPLETED", again)
        time.sleep(SETTLE)
        after = get_doc(self.server, self.token, doc["id"])
        self.assertEqual(after["status"], "COMPLETED", after)
        self.assertEqual(after["processing"]["attempts"], 1, after)
        self.assertEqual(len(logs_for(self.server, "document.process_requested", doc["id"])), 1)
        self.assertEqual(len(logs_for(self.server, "job.claimed", doc["id"])), 1)

    # ---- a new run on purpose: {"force": true}

    def force(self, doc_id, body=b'{"force": true}', content_type="application/json", token=None, headers=None):
        h = {"Content-Type": content_type, **bearer(token or self.token), **(headers or {})}
        return self.server.request("POST", "/documents/%s/process" % doc_id, headers=h, body=body)

    def test_force_runs_a_completed_document_again_and_replaces_its_result(self):
        doc = self.complete("multipage.pdf")
        first = get_result(self.server, self.token, doc["id"]).json()
        self.assertEqual(first["pipeline"], {"version": first["pipeline_version"], "stages": ["verify", "extract"]})
        # Not forced: today's answer, nothing queued.
        self.assertEqual(self.force(doc["id"], b'{"force": false}').status, 200)
        res = self.force(doc["id"])
        self.assertAccepted(res, doc["id"])
        self.assertIsNone(res.json()["processing"]["started_at"], res.json())
        # While it runs, there is no result to read (the old one is not the document's state).
        done = wait_status(self.server, self.token, doc["id"])
        self.assertEqual(done["status"], "COMPLETED", done)
        self.assertEqual(done["processing"]["attempts"], 2, done)
        second = get_result(self.server, self.token, doc["id"]).json()
        self.assertGreater(second["completed_at"], first["completed_at"])
        self.assertEqual(second["attempts"], 2, second)
        self.assertEqual(second["pipeline"], first["pipeline"])
        for same in ("pages", "word_count", "text_bytes", "keywords"):
            self.assertEqual(second[same], first[same], same)
        requested = logs_for(self.server, "document.process_requested", doc["id"])
        self.assertEqual([e["force"] for e in requested], [False, True])
        self.assertEqual(len(logs_for(self.server, "job.claimed", doc["id"])), 2)

    def test_force_on_a_document_being_processed_starts_nothing_new(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        self.assertAccepted(self.force(doc["id"]), doc["id"])  # UPLOADED: a first run, as without force
        self.assertIn(self.force(doc["id"]).status, (200, 202))  # PROCESSING (202) or already done (200)
        wait_status(self.server, self.token, doc["id"])
        time.sleep(SETTLE)
        self.assertEqual(len(logs_for(self.server, "job.claimed", doc["id"])), 1)

    def test_force_bodies_that_are_refused_change_nothing(self):
        doc = self.complete("en-1page.pdf")
        cases = [
            (b'{"force": "yes"}', "application/json", 422, "validation-failed"),
            (b'{"force": 1}', "application/json", 422, "validation-failed"),
            (b'{"forse": true}', "application/json", 422, "validation-failed"),
            (b"[true]", "application/json", 422, "validation-failed"),
            (b'{"force": true', "application/json", 400, "bad-request"),
            (b'{"force": true}', "text/plain", 415, "unsupported-media-type"),
            (b'{"force": true}' + b" " * 17000, "application/json", 413, "payload-too-large"),
        ]
        for body, content_type, status, slug in cases:
            with self.subTest(body=body[:20], content_type=content_type):
                self.assertProblem(self.force(doc["id"], body, content_type), status, slug)
        self.assertEqual(get_doc(self.server, self.token, doc["id"])["status"], "COMPLETED")
        self.assertEqual(len(logs_for(self.server, "document.process_requested", doc["id"])), 1)
        # Another user's document stays a 404, forced or not.
        self.assertNotFound(self.force(doc["id"], token=self.other_token))

    def test_force_with_an_idempotency_key_is_its_own_request(self):
        doc = self.complete("en-1page.pdf")
        key = {"Idempotency-Key": "force-" + secrets.token_hex(8)}
        first = self.force(doc["id"], headers=key)
        self.assertAccepted(first, doc["id"])
        wait_status(self.server, self.token, doc["id"])
        again = self.force(doc["id"], headers=key)
        self.assertEqual((again.status, again.body), (first.status, first.body))
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        plain = self.server.request(
            "POST", "/documents/%s/process" % doc["id"], headers={**key, **bearer(self.token)}
        )
        self.assertProblem(plain, 422, "idempotency-key-reused")
        self.assertEqual(len(logs_for(self.server, "job.claimed", doc["id"])), 2)

    def test_fifty_concurrent_process_requests_run_exactly_one_job(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        doc_id = doc["id"]
        n = 50
        barrier = threading.Barrier(n)
        statuses = [None] * n
        errors = []

        def hit(i):
            try:
                barrier.wait(timeout=10)
                res = process(self.server, self.token, doc_id, timeout=30)
                statuses[i] = res.status
                if res.status in (200, 202):
                    body = res.json()
                    if body["status"] not in ("PROCESSING", "COMPLETED"):
                        errors.append(body)
                else:
                    errors.append(res)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=hit, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertFalse(any(t.is_alive() for t in threads), "a request never returned")
        self.assertEqual(errors, [])
        self.assertTrue(all(s in (200, 202) for s in statuses), statuses)
        self.assertIn(202, statuses)

        done = wait_status(self.server, self.token, doc_id)
        self.assertEqual(done["status"], "COMPLETED", done)
        self.assertEqual(done["processing"]["attempts"], 1, done)
        time.sleep(SETTLE)  # a duplicate job would have been claimed by now
        self.assertEqual(len(logs_for(self.server, "document.process_requested", doc_id)), 1)
        self.assertEqual(len(logs_for(self.server, "job.claimed", doc_id)), 1)
        self.assertEqual(len(logs_for(self.server, "document.completed", doc_id)), 1)
        # the document's history: one run
        stream = EventStream(self.server, doc_id, self.token, last_event_id=0)
        self.addCleanup(stream.close)
        self.assertEqual(
            [d["status"] for d in status_events(stream.events_until_end())],
            ["UPLOADED", "PROCESSING", "COMPLETED"],
        )
        self.assertEqual(get_result(self.server, self.token, doc_id).json()["attempts"], 1)

    # ---- results before completion

    def test_result_of_uploaded_document_is_not_ready(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        self.assertNotReady(get_result(self.server, self.token, doc["id"]), doc["id"], "UPLOADED")
        self.assertNotReady(get_text(self.server, self.token, doc["id"]), doc["id"], "UPLOADED", text=True)

    # ---- permanent failures

    def fail_permanently(self, data, filename, code):
        doc = upload(self.server, self.token, data, filename)
        doc_id = doc["id"]
        self.assertAccepted(process(self.server, self.token, doc_id), doc_id)
        done = wait_status(self.server, self.token, doc_id)
        self.assertFailed(done, code, False, attempts=1)
        self.assertProcessingFailed(get_result(self.server, self.token, doc_id), doc_id, code, False)
        self.assertProcessingFailed(get_text(self.server, self.token, doc_id), doc_id, code, False, text=True)
        failed = self.server.wait_for_log(event="document.failed", document_id=doc_id)
        self.assertLifecycleLine(failed, doc_id, attempt=1)
        self.assertEqual(failed.get("code"), code, failed)
        time.sleep(SETTLE)
        self.assertEqual(logs_for(self.server, "job.retry", doc_id), [], "a permanent failure was retried")
        self.assertEqual(len(logs_for(self.server, "job.claimed", doc_id)), 1)
        self.assertEqual(get_doc(self.server, self.token, doc_id)["processing"]["attempts"], 1)
        return done

    def test_encrypted_pdf_fails_unreadable_after_one_attempt(self):
        self.fail_permanently(fixture("encrypted.pdf"), "encrypted.pdf", "unreadable_document")

    def test_corrupt_pdf_fails_unreadable(self):
        self.fail_permanently(corrupt_pdf(), "corrupt.pdf", "unreadable_document")

    def test_docx_zip_bomb_fails_too_complex(self):
        bomb = docx_zip_bomb()
        self.assertLess(len(bomb), 2 * 1024 * 1024, "the bomb should be small on the wire")
        self.fail_permanently(bomb, "bomb.docx", "document_too_complex")
        self.assertEqual(self.server.get("/healthz").status, 200)

    # ---- SSE

    def test_events_stream_then_reconnect_with_last_event_id(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        doc_id = doc["id"]
        stream = EventStream(self.server, doc_id, self.token)
        self.addCleanup(stream.close)
        self.assertEqual(stream.status, 200)
        self.assertEqual((stream.header("Content-Type") or "").split(";")[0].strip(), "text/event-stream")

        first = stream.next_event()
        self.assertIsNotNone(first, "the stream ended before the current status")
        self.assertAccepted(process(self.server, self.token, doc_id), doc_id)
        rest = stream.events_until_end()
        self.assertTrue(stream.ended and stream.clean_end, "the stream did not end cleanly after COMPLETED")
        events = [first] + rest

        kinds = [e.get("event") for e in events]
        self.assertEqual(kinds[:2] + kinds[-1:], ["status"] * 3, events)
        self.assertEqual(set(kinds[2:-1]) - {"progress"}, set(), events)
        ids = [int(e["id"]) for e in events]
        self.assertEqual(ids, list(range(1, len(events) + 1)), events)
        for e in events[2:-1]:
            self.assertEqual(set(json.loads(e["data"])), PROGRESS_FIELDS, e)
        datas = status_events(events)
        self.assertEqual([d["status"] for d in datas], ["UPLOADED", "PROCESSING", "COMPLETED"], datas)
        for d in datas:
            self.assertEqual(set(d), {"document_id", "status", "at", "error"}, d)
            self.assertEqual(d["document_id"], doc_id)
            self.assertRegex(d["at"], RFC3339_RE)
            self.assertIsNone(d["error"], d)
        ats = [parse_time(d["at"]) for d in datas]
        self.assertEqual(ats, sorted(ats), datas)

        again = EventStream(self.server, doc_id, self.token, last_event_id=1)
        self.addCleanup(again.close)
        self.assertEqual(again.status, 200)
        resumed = again.events_until_end()
        self.assertTrue(again.clean_end, "the resumed stream did not end cleanly")
        self.assertEqual([int(e["id"]) for e in resumed], ids[1:], resumed)
        # ids never change: the same events, byte for byte
        self.assertEqual([e["data"] for e in resumed], [e["data"] for e in events[1:]])

        fresh = EventStream(self.server, doc_id, self.token)
        self.addCleanup(fresh.close)
        now = fresh.events_until_end()
        self.assertEqual([(int(e["id"]), json.loads(e["data"])["status"]) for e in now], [(ids[-1], "COMPLETED")])

    def test_events_of_failed_document_carry_the_error(self):
        doc = upload(self.server, self.token, fixture("encrypted.pdf"), "encrypted.pdf")
        self.assertAccepted(process(self.server, self.token, doc["id"]), doc["id"])
        wait_status(self.server, self.token, doc["id"])
        stream = EventStream(self.server, doc["id"], self.token, last_event_id=0)
        self.addCleanup(stream.close)
        datas = status_events(stream.events_until_end())
        self.assertEqual([d["status"] for d in datas], ["UPLOADED", "PROCESSING", "FAILED"], datas)
        err = datas[-1]["error"]
        self.assertIsInstance(err, dict, datas)
        self.assertEqual(err.get("code"), "unreadable_document", err)
        self.assertIs(err.get("retryable"), False, err)

    # ---- ownership

    def test_other_users_document_is_404_everywhere(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        doc_id = doc["id"]
        other = bearer(self.other_token)
        for method, suffix in DOCUMENT_ACTIONS:
            with self.subTest(method=method, suffix=suffix):
                headers = dict(other)
                if suffix == "/events":
                    headers["Accept"] = "text/event-stream"
                res = self.server.request(method, "/documents/%s%s" % (doc_id, suffix), headers=headers)
                self.assertNotFound(res)
        time.sleep(0.5)
        after = get_doc(self.server, self.token, doc_id)
        self.assertEqual(after["status"], "UPLOADED", "another user's /process touched the document")
        self.assertEqual(logs_for(self.server, "document.process_requested", doc_id), [])

    def test_malformed_id_is_404(self):
        for method, suffix in DOCUMENT_ACTIONS:
            for bad in ("not-a-uuid", "01234567-89ab-cdef-0123-456789abcdeg", "1"):
                with self.subTest(method=method, suffix=suffix, id=bad):
                    res = self.server.request(method, "/documents/%s%s" % (bad, suffix), headers=bearer(self.token))
                    self.assertNotFound(res)
        # a well-formed id that does not exist
        missing = "01234567-89ab-7def-8123-456789abcdef"
        self.assertNotFound(process(self.server, self.token, missing))

    # ---- Idempotency-Key

    def test_a_process_retry_with_its_key_gets_the_first_answer_even_after_a_delete(self):
        """docs/api.md: a known key gets the first answer again, and a 404
        from /process is kept and replayed. Found by the chaos test: the
        document was looked up before the key, so a retry after the
        document's deletion got a 404 of its own instead of the first 202,
        and a 404 was never kept."""
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        path = "/documents/%s/process" % doc["id"]
        headers = {"Idempotency-Key": "retry-" + secrets.token_hex(8), **bearer(self.token)}
        first = self.server.request("POST", path, headers=headers)
        self.assertAccepted(first, doc["id"])
        wait_status(self.server, self.token, doc["id"])
        deleted = self.server.request("DELETE", "/documents/" + doc["id"], headers=bearer(self.token))
        self.assertEqual(deleted.status, 204, deleted)
        again = self.server.request("POST", path, headers=headers)
        self.assertEqual((again.status, again.body), (first.status, first.body))
        self.assertEqual(again.header("Idempotent-Replayed"), "true")

        # The 404 a new key gets now is kept: replayed, first request_id included.
        headers["Idempotency-Key"] = "missing-" + secrets.token_hex(8)
        missing = self.server.request("POST", path, headers=headers)
        self.assertNotFound(missing)
        again = self.server.request("POST", path, headers=headers)
        self.assertEqual((again.status, again.body), (missing.status, missing.body))
        self.assertEqual(again.header("Idempotent-Replayed"), "true")

    def test_no_token_is_401(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        for method, suffix in DOCUMENT_ACTIONS:
            with self.subTest(method=method, suffix=suffix):
                res = self.server.request(method, "/documents/%s%s" % (doc["id"], suffix))
                self.assertProblem(res, 401, None)
        self.assertEqual(get_doc(self.server, self.token, doc["id"])["status"], "UPLOADED")

    # ---- logs and metrics

    def test_lifecycle_log_lines_carry_document_job_and_attempt(self):
        doc = self.complete("en-1page.pdf")
        doc_id = doc["id"]
        completed = self.server.wait_for_log(event="document.completed", document_id=doc_id)
        claimed = logs_for(self.server, "job.claimed", doc_id)
        requested = logs_for(self.server, "document.process_requested", doc_id)
        self.assertEqual(len(claimed), 1, claimed)
        self.assertEqual(len(requested), 1, requested)
        job_id = claimed[0].get("job_id")
        self.assertLifecycleLine(claimed[0], doc_id, attempt=1)
        self.assertLifecycleLine(completed, doc_id, job_id=job_id, attempt=1)
        for line in (claimed[0], completed):
            self.assertIn(line.get("level"), ("info", "warn"), line)
            self.assertRegex(line.get("ts", ""), RFC3339_RE, line)
        # SPEC 5: every lifecycle line carries document_id, job_id and attempt
        self.assertLifecycleLine(requested[0], doc_id, job_id=job_id)

    def test_metrics_after_a_completion(self):
        self.complete("multipage.pdf")
        res = self.server.get("/metrics")
        self.assertEqual(res.status, 200, res)
        samples = parse_metrics(res.body.decode("utf-8"))
        completed = metric(samples, "docflow_jobs_total", outcome="completed")
        self.assertIsNotNone(completed, "no docflow_jobs_total{outcome=\"completed\"}")
        self.assertGreaterEqual(completed, 1)
        count = metric(samples, "docflow_job_duration_seconds_count")
        self.assertIsNotNone(count, "no docflow_job_duration_seconds_count")
        self.assertGreaterEqual(count, 1)
        self.assertIsNotNone(metric(samples, "docflow_jobs_queued"), "no docflow_jobs_queued")

    def test_metrics_count_permanent_failures_by_code(self):
        doc = upload(self.server, self.token, corrupt_pdf(), "broken.pdf")
        self.assertAccepted(process(self.server, self.token, doc["id"]), doc["id"])
        self.assertEqual(wait_status(self.server, self.token, doc["id"])["status"], "FAILED")
        self.server.wait_for_log(event="document.failed", document_id=doc["id"])
        samples = parse_metrics(self.server.get("/metrics").body.decode("utf-8"))
        failed = metric(samples, "docflow_jobs_total", outcome="failed", code="unreadable_document")
        self.assertIsNotNone(failed, sorted(k for k in samples if k[0] == "docflow_jobs_total"))
        self.assertGreaterEqual(failed, 1)


# ==========================================================================
# A slow server: documents stay PROCESSING long enough to look at them


SLOW_MS = 3000


class NoOcrTest(SharedProcessingCase):
    server_env = {"DOCFLOW_OCR": "never"}

    def test_a_scan_completes_without_text_and_says_why(self):
        doc = upload(self.server, self.token, fixture("scanned.pdf"), "scanned.pdf")
        self.assertAccepted(process(self.server, self.token, doc["id"]), doc["id"])
        self.assertEqual(wait_status(self.server, self.token, doc["id"])["status"], "COMPLETED")
        r = get_result(self.server, self.token, doc["id"]).json()
        self.assertEqual(r["word_count"], 0, r)
        self.assertEqual(r["page_sources"], [{"source": "none", "chars": 0, "confidence": None, "blank": False}], r)
        self.assertIsNone(r["ocr"], r)


class OcrProgressTest(SharedProcessingCase):
    # Every page read by OCR, so that three text pages take long enough to watch.
    server_env = {"DOCFLOW_OCR": "always"}

    def test_ocr_reports_its_pages_as_it_reads_them(self):
        doc = upload(self.server, self.token, fixture("multipage.pdf"), "multipage.pdf")
        stream = EventStream(self.server, doc["id"], self.token)
        self.addCleanup(stream.close)
        self.assertAccepted(process(self.server, self.token, doc["id"]), doc["id"])
        stages = []
        while "ocr" not in stages:
            seen = get_doc(self.server, self.token, doc["id"])
            self.assertEqual(seen["status"], "PROCESSING", "OCR ended unseen after stages %r: %r" % (stages, seen))
            stages.append(seen["stage"])
            time.sleep(0.05)
        self.assertEqual(set(stages) - {"queued", "verify", "extract", "ocr"}, set(), stages)
        events = stream.events_until_end()
        self.assertEqual(status_events(events)[-1]["status"], "COMPLETED", events)
        progress = [json.loads(e["data"]) for e in events if e["event"] == "progress"]
        ocr = [p for p in progress if p["stage"] == "ocr"]
        self.assertTrue(ocr, events)
        self.assertEqual({p["pages_total"] for p in ocr}, {3}, ocr)
        done = [p["pages_done"] for p in ocr]
        self.assertEqual(done, sorted(done), ocr)
        self.assertTrue(set(done) <= {0, 1, 2, 3} and max(done) >= 1, ocr)
        for p in progress:
            if p["stage"] != "ocr":
                self.assertEqual((p["pages_done"], p["pages_total"]), (None, None), p)


class SlowProcessingTest(SharedProcessingCase):
    server_env = {"DOCFLOW_WORKERS": 4, "DOCFLOW_SIMULATED_DELAY_MS": SLOW_MS}

    def start(self, filename="en-1page.pdf"):
        doc = upload(self.server, self.token, fixture(filename), filename)
        self.assertAccepted(process(self.server, self.token, doc["id"]), doc["id"])
        return doc["id"]

    def test_result_not_ready_while_processing_and_repeat_process_is_202(self):
        doc_id = self.start()
        self.assertNotReady(get_result(self.server, self.token, doc_id), doc_id, "PROCESSING")
        self.assertNotReady(get_text(self.server, self.token, doc_id), doc_id, "PROCESSING", text=True)
        for _ in range(3):
            res = process(self.server, self.token, doc_id)
            self.assertAccepted(res, doc_id)
        done = wait_status(self.server, self.token, doc_id)
        self.assertEqual(done["status"], "COMPLETED", done)
        self.assertEqual(done["processing"]["attempts"], 1, done)
        time.sleep(SETTLE)
        self.assertEqual(len(logs_for(self.server, "document.process_requested", doc_id)), 1)
        self.assertEqual(len(logs_for(self.server, "job.claimed", doc_id)), 1)
        self.assertEqual(len(logs_for(self.server, "document.completed", doc_id)), 1)
        self.assertEqual(get_result(self.server, self.token, doc_id).status, 200)

    def test_cancel_wins_over_the_late_worker_and_reprocess_completes(self):
        doc_id = self.start()
        claimed = self.server.wait_for_log(event="job.claimed", document_id=doc_id, timeout=10)
        job_id = claimed["job_id"]
        res = cancel(self.server, self.token, doc_id)
        self.assertEqual(res.status, 202, res)
        self.assertEqual(res.content_type, "application/json", res)
        doc = res.json()
        self.assertEqual(doc["id"], doc_id)
        self.assertFailed(doc, "cancelled", True)

        # the worker finishes its (simulated) work after the cancel: its
        # completion must be refused
        late = self.server.wait_for_log(
            lambda e: e.get("event") in ("job.abandoned", "document.completed") and e.get("job_id") == job_id,
            timeout=SLOW_MS / 1000 + 15,
        )
        time.sleep(0.5)
        after = get_doc(self.server, self.token, doc_id)
        self.assertFailed(after, "cancelled", True)
        self.assertEqual(late.get("event"), "job.abandoned", late)
        self.assertProcessingFailed(get_result(self.server, self.token, doc_id), doc_id, "cancelled", True)
        self.assertProcessingFailed(get_text(self.server, self.token, doc_id), doc_id, "cancelled", True, text=True)
        self.assertEqual(logs_for(self.server, "document.completed", doc_id), [])

        # cancelling a FAILED document: 409
        res = cancel(self.server, self.token, doc_id)
        self.assertEqual(res.status, 409, res)

        # FAILED -> PROCESSING -> COMPLETED
        self.assertAccepted(process(self.server, self.token, doc_id), doc_id)
        done = wait_status(self.server, self.token, doc_id)
        self.assertEqual(done["status"], "COMPLETED", done)
        self.assertIsNone(done["processing"]["error"], done)
        self.assertEqual(done["processing"]["attempts"], 2, done)
        self.assertEqual(get_result(self.server, self.token, doc_id).status, 200)
        self.assertEqual(len(logs_for(self.server, "document.completed", doc_id)), 1)

        stream = EventStream(self.server, doc_id, self.token, last_event_id=0)
        self.addCleanup(stream.close)
        datas = status_events(stream.events_until_end())
        self.assertEqual(
            [d["status"] for d in datas], ["UPLOADED", "PROCESSING", "FAILED", "PROCESSING", "COMPLETED"], datas
        )
        self.assertEqual((datas[2]["error"] or {}).get("code"), "cancelled", datas)
        self.assertIs((datas[2]["error"] or {}).get("retryable"), True, datas)

    def test_a_run_shows_its_stage_and_streams_progress(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        doc_id = doc["id"]
        self.assertIsNone(doc["stage"], doc)
        stream = EventStream(self.server, doc_id, self.token)
        self.addCleanup(stream.close)
        self.assertEqual(json.loads(stream.next_event()["data"])["status"], "UPLOADED")
        self.assertAccepted(process(self.server, self.token, doc_id), doc_id)
        # The simulated delay is spent in the first stage, verify.
        deadline = time.monotonic() + SLOW_MS / 1000
        seen = None
        while time.monotonic() < deadline:
            seen = get_doc(self.server, self.token, doc_id)
            if seen["stage"] == "verify":
                break
            self.assertEqual((seen["status"], seen["stage"]), ("PROCESSING", "queued"), seen)
            time.sleep(0.05)
        self.assertEqual((seen["status"], seen["stage"]), ("PROCESSING", "verify"), seen)

        events = stream.events_until_end()
        self.assertTrue(stream.clean_end, events)
        self.assertEqual(events[0]["event"], "status", events)
        self.assertEqual(json.loads(events[0]["data"])["status"], "PROCESSING", events)
        self.assertEqual(events[-1]["event"], "status", events)
        self.assertEqual(json.loads(events[-1]["data"])["status"], "COMPLETED", events)
        progress = [json.loads(e["data"]) for e in events[1:-1]]
        self.assertEqual([e["event"] for e in events[1:-1]], ["progress"] * len(progress), events)
        self.assertIn("verify", [p["stage"] for p in progress], events)
        for p in progress:
            self.assertEqual(set(p), PROGRESS_FIELDS, p)
            self.assertEqual(p["document_id"], doc_id, p)
            self.assertIn(p["stage"], ("verify", "extract"), p)
            self.assertIsNone(p["pages_done"], p)
            self.assertIsNone(p["pages_total"], p)
            self.assertRegex(p["at"], RFC3339_RE)
        self.assertIsNone(get_doc(self.server, self.token, doc_id)["stage"], "a COMPLETED document has no stage")

        # A stream opened while the document is in a stage begins with its
        # status, then where it has got.
        again = EventStream(self.server, doc_id, self.token, last_event_id=1)
        self.addCleanup(again.close)
        self.assertEqual([e["data"] for e in again.events_until_end()], [e["data"] for e in events])

    def test_a_stream_opened_mid_run_begins_with_the_status_and_the_stage(self):
        doc_id = self.start()
        while get_doc(self.server, self.token, doc_id)["stage"] != "verify":
            time.sleep(0.05)
        stream = EventStream(self.server, doc_id, self.token)
        self.addCleanup(stream.close)
        first, second = stream.next_event(), stream.next_event()
        self.assertEqual((first["event"], json.loads(first["data"])["status"]), ("status", "PROCESSING"), first)
        self.assertEqual((second["event"], json.loads(second["data"])["stage"]), ("progress", "verify"), second)
        self.assertGreater(int(second["id"]), int(first["id"]))

    def test_cancel_is_409_unless_processing(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        res = cancel(self.server, self.token, doc["id"])
        self.assertProblem(res, 409, None)
        self.assertEqual(res.json().get("document_status"), "UPLOADED", res)
        self.assertEqual(get_doc(self.server, self.token, doc["id"])["status"], "UPLOADED")

    def test_cancel_on_completed_document_is_409(self):
        doc_id = self.start("multipage.pdf")
        self.assertEqual(wait_status(self.server, self.token, doc_id)["status"], "COMPLETED")
        res = cancel(self.server, self.token, doc_id)
        self.assertProblem(res, 409, None)
        self.assertEqual(get_doc(self.server, self.token, doc_id)["status"], "COMPLETED")
        self.assertEqual(get_result(self.server, self.token, doc_id).status, 200)

    def test_cancel_logs_document_failed_with_ids(self):
        doc_id = self.start()
        res = cancel(self.server, self.token, doc_id)
        self.assertEqual(res.status, 202, res)
        line = self.server.wait_for_log(event="document.failed", document_id=doc_id)
        self.assertEqual(line.get("code"), "cancelled", line)
        requested = logs_for(self.server, "document.process_requested", doc_id)
        job_id = requested[0].get("job_id") if requested else None
        # SPEC 5: document.failed carries document_id, job_id and attempt
        self.assertLifecycleLine(line, doc_id, job_id=job_id)

    def test_sse_cancel_event_carries_the_error(self):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        doc_id = doc["id"]
        stream = EventStream(self.server, doc_id, self.token)
        self.addCleanup(stream.close)
        first = stream.next_event()
        self.assertEqual(json.loads(first["data"])["status"], "UPLOADED")
        self.assertAccepted(process(self.server, self.token, doc_id), doc_id)
        second = stream.next_event(timeout=5)
        self.assertEqual(json.loads(second["data"])["status"], "PROCESSING", second)
        self.assertEqual(cancel(self.server, self.token, doc_id).status, 202)
        rest = stream.events_until_end(timeout=10)
        datas = status_events(rest)
        self.assertEqual(len(datas), 1, rest)
        data = datas[0]
        self.assertEqual(data["status"], "FAILED", data)
        self.assertEqual(data["error"], {"code": "cancelled", "message": data["error"]["message"], "retryable": True})
        self.assertEqual(rest[-1]["event"], "status", rest)
        ids = [int(e["id"]) for e in [first, second] + rest]
        self.assertEqual(ids, list(range(1, len(ids) + 1)))


# ==========================================================================
# Servers of their own: backpressure, worker processes, faults, crashes


class BackpressureTest(ProcessingCase):
    def test_third_waiting_job_is_refused_with_429(self):
        server = self.start_server(DOCFLOW_WORKERS=0, DOCFLOW_QUEUE_MAX_DEPTH=2)
        token = new_user(server)
        docs = [upload(server, token, fixture("en-1page.pdf"), "en-1page.pdf")["id"] for _ in range(3)]
        self.assertAccepted(process(server, token, docs[0]), docs[0])
        self.assertAccepted(process(server, token, docs[1]), docs[1])
        res = process(server, token, docs[2])
        self.assertProblem(res, 429, None)
        retry_after = res.header("Retry-After")
        self.assertIsNotNone(retry_after, res)
        self.assertRegex(retry_after, r"^[1-9][0-9]*$", res)
        self.assertEqual(get_doc(server, token, docs[2])["status"], "UPLOADED")
        self.assertIsNone(get_doc(server, token, docs[2])["stage"], "only a PROCESSING document has a stage")
        waiting = get_doc(server, token, docs[0])
        self.assertEqual((waiting["status"], waiting["stage"]), ("PROCESSING", "queued"), waiting)
        self.assertEqual(logs_for(server, "document.process_requested", docs[2]), [])
        # a document already queued is still answered 202, not 429
        self.assertAccepted(process(server, token, docs[0]), docs[0])
        samples = parse_metrics(server.get("/metrics").body.decode("utf-8"))
        self.assertEqual(metric(samples, "docflow_jobs_queued"), 2)


class EventStreamLimitTest(ProcessingCase):
    """Event streams are bounded per user, end with their access token, and
    wait on the store's change feed instead of each polling the database."""

    def open_streams(self, server, doc_id, token, n):
        streams = []
        for _ in range(n):
            stream = EventStream(server, doc_id, token)
            self.addCleanup(stream.close)
            self.assertEqual(stream.status, 200)
            self.assertIsNotNone(stream.next_event(), "no current status")
            streams.append(stream)
        return streams

    def test_streams_per_user_are_capped(self):
        server = self.start_server(DOCFLOW_MAX_STREAMS_PER_USER="3", DOCFLOW_WORKERS=0)
        token, other = new_user(server), new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "a.pdf")["id"]
        streams = self.open_streams(server, doc_id, token, 3)
        res = server.get("/documents/%s/events" % doc_id, headers=bearer(token))
        self.assertProblem(res, 429, "too-many-streams")
        self.assertEqual(res.header("Retry-After"), "5")
        # Another user is not affected.
        other_doc = upload(server, other, fixture("en-1page.pdf"), "b.pdf")["id"]
        self.open_streams(server, other_doc, other, 1)
        # A closed stream gives its place back at once, not at its next heartbeat.
        streams[0].close()
        deadline = time.monotonic() + 5
        while True:
            again = EventStream(server, doc_id, token)
            self.addCleanup(again.close)
            if again.status == 200 or time.monotonic() > deadline:
                break
            again.close()
            time.sleep(0.1)
        self.assertEqual(again.status, 200, "the closed stream's place was not given back")

    def test_a_stream_ends_when_its_token_expires(self):
        server = self.start_server(DOCFLOW_ACCESS_TTL="3s", DOCFLOW_WORKERS=0)
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "a.pdf")["id"]
        stream = self.open_streams(server, doc_id, token, 1)[0]
        self.assertEqual(stream.events_until_end(timeout=10), [])
        self.assertTrue(stream.ended and stream.clean_end, "the stream outlived its access token")

    def test_a_stream_opened_with_an_api_key_ends_within_the_access_lifetime(self):
        # A key may never expire: its stream is held to the access-token
        # lifetime, so that the client reconnects and a revoked key is refused.
        server = self.start_server(DOCFLOW_ACCESS_TTL="3s", DOCFLOW_WORKERS=0)
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "a.pdf")["id"]
        made = server.request(
            "POST", "/auth/api-keys", headers={**bearer(token), "Content-Type": "application/json"},
            body=json.dumps({"name": "stream"}),
        )
        self.assertEqual(made.status, 201, made)
        key = made.json()
        stream = self.open_streams(server, doc_id, key["key"], 1)[0]
        self.assertEqual(server.request("DELETE", "/auth/api-keys/" + key["id"], headers=bearer(token)).status, 204)
        self.assertEqual(stream.events_until_end(timeout=10), [])
        self.assertTrue(stream.ended and stream.clean_end, "the stream outlived the check of its key")
        again = EventStream(server, doc_id, key["key"])
        self.addCleanup(again.close)
        self.assertEqual(again.status, 401)

    def test_shutdown_ends_streams_at_once(self):
        server = self.start_server(DOCFLOW_WORKERS=0)
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "a.pdf")["id"]
        stream = self.open_streams(server, doc_id, token, 1)[0]
        server.proc.send_signal(signal.SIGTERM)
        self.assertEqual(stream.events_until_end(timeout=5), [])  # well before the 15 s heartbeat
        self.assertTrue(stream.clean_end)

    def test_deleting_the_document_ends_its_streams(self):
        server = self.start_server(DOCFLOW_WORKERS=0)
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "a.pdf")["id"]
        streams = self.open_streams(server, doc_id, token, 2)
        self.assertEqual(server.request("DELETE", "/documents/" + doc_id, headers=bearer(token)).status, 204)
        for stream in streams:
            self.assertEqual(stream.events_until_end(timeout=5), [])
            self.assertTrue(stream.clean_end)


class TextLimitTest(ProcessingCase):
    """The stored text is capped by DOCFLOW_MAX_TEXT_BYTES, and /result/text
    streams it with its length from the store (a 7 MB DOCX of distinct words
    took the server past 1 GB when text went around whole)."""

    def test_long_text_is_cut_and_marked_truncated(self):
        server = self.start_server(DOCFLOW_MAX_TEXT_BYTES="1KiB")
        token = new_user(server)
        # 200 paragraphs of about 60 bytes, some words with two-byte characters.
        paragraphs = ["Paragraph %d of the long report, caf\u00e9 d\u00e9j\u00e0 vu, river survey." % i
                      for i in range(200)]
        doc_id = upload(server, token, docx_with_paragraphs(paragraphs), "long.docx")["id"]
        self.assertEqual(process(server, token, doc_id).status, 202)
        self.assertEqual(wait_status(server, token, doc_id)["status"], "COMPLETED")
        result = get_result(server, token, doc_id).json()
        self.assertIs(result["truncated"], True, result)
        text = get_text(server, token, doc_id)
        self.assertEqual(text.status, 200)
        self.assertEqual(int(text.header("Content-Length")), len(text.body))
        self.assertEqual(result["text_bytes"], len(text.body))
        self.assertLessEqual(len(text.body), 1024)
        words = text.body.decode("utf-8").split()  # cut on a character boundary: it decodes
        self.assertGreater(result["word_count"], len(words), "the counts should describe the whole text")
        self.assertTrue(text.body.decode("utf-8").startswith(result["text_preview"][:100]))

    def test_short_text_is_whole(self):
        server = self.start_server()
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "short.pdf")["id"]
        self.assertEqual(process(server, token, doc_id).status, 202)
        self.assertEqual(wait_status(server, token, doc_id)["status"], "COMPLETED")
        result = get_result(server, token, doc_id).json()
        self.assertIs(result["truncated"], False, result)
        text = get_text(server, token, doc_id)
        self.assertEqual(result["text_bytes"], len(text.body))
        self.assertEqual(result["text_preview"], text.body.decode("utf-8")[:500])


class PromptCancelTest(ProcessingCase):
    """A cancelled job used to keep its worker until the next lease renewal
    (a third of the lease: 20 s here). The worker now looks every second."""

    def test_a_cancel_frees_the_worker_within_seconds(self):
        server = self.start_server(DOCFLOW_WORKERS=1, DOCFLOW_JOB_LEASE="60s", DOCFLOW_SIMULATED_DELAY_MS=60000)
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "slow.pdf")["id"]
        self.assertEqual(process(server, token, doc_id).status, 202)
        claimed = server.wait_for_log(event="job.claimed", document_id=doc_id, timeout=10)
        self.assertEqual(cancel(server, token, doc_id).status, 202)
        # Bounded well under the 20 s renewal period: the worker gave the job up.
        server.wait_for_log(event="job.abandoned", job_id=claimed["job_id"], timeout=5)


class WorkerProcessTest(ProcessingCase):
    def test_separate_worker_completes_documents_and_exits_0_on_sigterm(self):
        server = self.start_server(DOCFLOW_WORKERS=0)
        token = new_user(server)
        docs = [
            upload(server, token, fixture(name), name)["id"] for name in ("en-1page.pdf", "table-header-footer.docx")
        ]
        for d in docs:
            self.assertAccepted(process(server, token, d), d)
        time.sleep(SETTLE)
        for d in docs:  # an API-only node runs nothing
            doc = get_doc(server, token, d)
            self.assertEqual(doc["status"], "PROCESSING", doc)
            self.assertEqual(doc["processing"]["attempts"], 0, doc)

        worker = self.start_worker(data_dir=server.data_dir, DOCFLOW_WORKERS=2,
                                   DOCFLOW_WORKER_LISTEN="127.0.0.1:0")
        for d in docs:
            done = wait_status(server, token, d)
            self.assertEqual(done["status"], "COMPLETED", done)
            self.assertEqual(done["processing"]["attempts"], 1, done)
            self.assertEqual(get_result(server, token, d).status, 200)
        self.assertEqual(logs_for(server, "job.claimed", docs[0]), [], "the API-only node claimed a job")

        # The worker counts its own jobs, and shows them on its own /metrics.
        res = worker.get("/metrics")
        self.assertEqual(res.status, 200, res)
        samples = parse_metrics(res.body.decode("utf-8"))
        self.assertEqual(metric(samples, "docflow_jobs_total", outcome="completed"), 2, res.body)
        self.assertIsNone(metric(samples, "docflow_jobs_queued"), "the queue is the maintenance leader's to report")
        scraped = parse_metrics(server.get("/metrics").body.decode("utf-8"))
        self.assertIsNone(metric(scraped, "docflow_jobs_total", outcome="completed"), "serve ran no job")
        self.assertEqual(metric(scraped, "docflow_jobs_queued"), 0, "serve leads, and reports the queue")

        worker.signal(signal.SIGTERM)
        self.assertEqual(worker.wait_exit(), 0)
        for d in docs:
            self.assertEqual(len(logs_for(worker, "job.claimed", d)), 1, worker.lines)
            self.assertEqual(len(logs_for(worker, "document.completed", d)), 1, worker.lines)


class ExtractorFaultTest(ProcessingCase):
    def test_crashing_extractor_retries_then_fails_and_a_later_retry_completes(self):
        data_dir = tempfile.mkdtemp(prefix="docflow-proc-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        server = self.start_server(
            data_dir=data_dir,
            DOCFLOW_WORKERS=2,
            DOCFLOW_JOB_MAX_ATTEMPTS=2,
            DOCFLOW_TEST_EXTRACTOR_FAULT="crash",
        )
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "en-1page.pdf")["id"]
        self.assertAccepted(process(server, token, doc_id), doc_id)
        done = wait_status(server, token, doc_id)
        self.assertFailed(done, "extractor_crashed", True, attempts=2)
        self.assertEqual(server.get("/healthz").status, 200, "the server did not survive the crash")
        self.assertTrue(server.running)
        self.assertProcessingFailed(get_result(server, token, doc_id), doc_id, "extractor_crashed", True)

        failed = server.wait_for_log(event="document.failed", document_id=doc_id)
        retries = logs_for(server, "job.retry", doc_id)
        self.assertEqual(len(retries), 1, retries)
        self.assertLifecycleLine(retries[0], doc_id, attempt=1)
        self.assertEqual(retries[0].get("code"), "extractor_crashed", retries[0])
        self.assertLifecycleLine(failed, doc_id, job_id=retries[0]["job_id"], attempt=2)
        self.assertEqual(failed.get("code"), "extractor_crashed", failed)
        events = [e for e in server.events if isinstance(e, dict)]
        self.assertLess(events.index(retries[0]), events.index(failed), "job.retry must come before document.failed")
        self.assertEqual([c.get("attempt") for c in logs_for(server, "job.claimed", doc_id)], [1, 2])

        # the fault switch off: the same data, a new process request
        server.signal(signal.SIGTERM)
        server.wait_exit()
        server = self.start_server(data_dir=data_dir, DOCFLOW_WORKERS=2, DOCFLOW_JOB_MAX_ATTEMPTS=2)
        self.assertFailed(get_doc(server, token, doc_id), "extractor_crashed", True, attempts=2)
        self.assertAccepted(process(server, token, doc_id), doc_id)
        done = wait_status(server, token, doc_id)
        self.assertEqual(done["status"], "COMPLETED", done)
        self.assertIsNone(done["processing"]["error"], done)
        self.assertEqual(done["processing"]["attempts"], 3, done)  # every attempt counts
        res = get_result(server, token, doc_id)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["word_count"], EXPECTED["en-1page.pdf"]["words"])

    def test_oom_extractor_fails_without_hurting_the_server(self):
        server = self.start_server(DOCFLOW_WORKERS=2, DOCFLOW_JOB_MAX_ATTEMPTS=1, DOCFLOW_TEST_EXTRACTOR_FAULT="oom")
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "en-1page.pdf")["id"]
        self.assertAccepted(process(server, token, doc_id), doc_id)
        done = wait_status(server, token, doc_id)
        self.assertEqual(done["status"], "FAILED", done)
        self.assertIn(done["processing"]["error"]["code"], ("extractor_crashed", "document_too_complex"), done)
        self.assertEqual(server.get("/healthz").status, 200)
        self.assertTrue(server.running)


HOSTILE_ATTEMPTS = ("read_secret", "read_parent_environ", "connect", "fork", "write_outside", "allocate", "exec")


class SandboxTest(ProcessingCase):
    """The extraction child's sandbox, end to end: what `serve` logs about it
    at start, and a deliberately hostile child (DOCFLOW_TEST_EXTRACTOR_FAULT=
    hostile:..., see src/pipeline/test_faults.hpp) aimed at the real server's
    secrets, whose every attempt must fail while the job still ends."""

    def test_start_logs_the_mechanisms_in_force(self):
        server = self.start_server(DOCFLOW_WORKERS=1)
        line = server.wait_for_log(event="pipeline.sandbox")
        self.assertEqual(line["mode"], "best-effort", line)
        for field in ("no_new_privs", "namespaces", "landlock", "seccomp"):
            self.assertIsInstance(line[field], bool, line)
        self.assertEqual(line["landlock"], line["landlock_abi"] > 0, line)
        self.assertEqual(line["missing"], [m for m in ("no_new_privs", "namespaces", "landlock", "seccomp")
                                           if not line[m]], line)
        self.assertEqual(line["seccomp_syscalls"] > 0, line["seccomp"], line)
        self.assertEqual(line["level"], "info" if not line["missing"] else "warn", line)

    def test_hostile_extractor_is_contained_and_its_job_completes(self):
        data_dir = tempfile.mkdtemp(prefix="docflow-proc-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        secret_path = os.path.join(data_dir, "jwt.secret")
        escape_path = os.path.join(data_dir, "escaped.txt")
        hostile = "hostile:secret=%s;write=%s;port=%d" % (secret_path, escape_path, listener.getsockname()[1])
        # The signing key in <data>/jwt.secret, where SQLite's generated one
        # lives, is the file the child goes for. Written here, not generated:
        # with PostgreSQL the key is always configured.
        secret = secrets.token_hex(32)
        with open(os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secret + "\n")
        server = self.start_server(data_dir=data_dir, DOCFLOW_WORKERS=1, DOCFLOW_JWT_SECRET=None,
                                   DOCFLOW_JWT_SECRET_FILE=secret_path, DOCFLOW_TEST_EXTRACTOR_FAULT=hostile)
        token = new_user(server)
        doc_id = upload(server, token, fixture("en-1page.pdf"), "en-1page.pdf")["id"]
        self.assertAccepted(process(server, token, doc_id), doc_id)
        done = wait_status(server, token, doc_id)
        self.assertEqual(done["status"], "COMPLETED", done)  # the child's report is its text

        res = get_text(server, token, doc_id)
        self.assertEqual(res.status, 200, res)
        report = res.body.decode()
        lines = dict(line.split(": ", 1) for line in report.splitlines())
        self.assertEqual(sorted(lines), sorted(HOSTILE_ATTEMPTS), report)
        for attempt in HOSTILE_ATTEMPTS:
            if attempt == "allocate" and lines[attempt].startswith("not tried (sanitizer build"):
                continue  # a sanitizer build's child has no RLIMIT_AS (src/pipeline/sandbox.hpp)
            self.assertTrue(lines[attempt].startswith("blocked ("), "%s: %s" % (attempt, lines[attempt]))
        self.assertNotIn(secret, report)
        self.assertFalse(os.path.exists(escape_path))
        with self.assertRaises(BlockingIOError):
            listener.accept()  # nobody connected
        self.assertEqual(server.get("/healthz").status, 200)
        self.assertTrue(server.running)


class CrashRecoveryTest(ProcessingCase):
    def test_killed_server_jobs_are_taken_over_and_complete_exactly_once(self):
        data_dir = tempfile.mkdtemp(prefix="docflow-proc-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        first = self.start_server(
            data_dir=data_dir, DOCFLOW_WORKERS=4, DOCFLOW_JOB_LEASE="2s", DOCFLOW_SIMULATED_DELAY_MS=3000
        )
        token = new_user(first)
        docs = [upload(first, token, fixture("en-1page.pdf"), "en-1page.pdf")["id"] for _ in range(5)]
        for d in docs:
            self.assertAccepted(process(first, token, d), d)
        first.wait_for_log(event="job.claimed", timeout=10)
        time.sleep(0.5)  # let the other workers claim too
        first.kill()  # SIGKILL, mid-job
        self.assertFalse(first.running)
        first_logs = [e for e in first.events if isinstance(e, dict)]
        running = {e["document_id"] for e in first_logs if e.get("event") == "job.claimed"}
        self.assertTrue(running, "no job was running when the server died")

        second = self.start_server(
            data_dir=data_dir, DOCFLOW_WORKERS=4, DOCFLOW_JOB_LEASE="2s", DOCFLOW_SIMULATED_DELAY_MS=0
        )
        for d in docs:
            done = wait_status(second, token, d)
            self.assertEqual(done["status"], "COMPLETED", done)
        time.sleep(SETTLE)
        second_logs = [e for e in second.events if isinstance(e, dict)]
        for d in docs:
            with self.subTest(document=d):
                completions = logs_for(first_logs, "document.completed", d) + logs_for(
                    second_logs, "document.completed", d
                )
                self.assertEqual(len(completions), 1, completions)
                doc = get_doc(second, token, d)
                if d in running:
                    self.assertGreaterEqual(doc["processing"]["attempts"], 2, doc)
                    self.assertGreaterEqual(completions[0].get("attempt", 0), 2, completions)
                else:
                    self.assertGreaterEqual(doc["processing"]["attempts"], 1, doc)
                res = get_result(second, token, d)
                self.assertEqual(res.status, 200, res)
                stream = EventStream(second, d, token, last_event_id=0)
                self.addCleanup(stream.close)
                self.assertEqual(
                    [d["status"] for d in status_events(stream.events_until_end())],
                    ["UPLOADED", "PROCESSING", "COMPLETED"],
                )


# ==========================================================================
# The enrich stage, against a real HTTP service on loopback


class MLService:
    """A stand-in for the external ML service: a real HTTP server on
    127.0.0.1 that records every request and answers per document, as the
    test scripts it (a list of actions per document_id, the last repeated)."""

    DEFAULT = ("json", {"labels": ["report"], "model": "test-model-1"})

    def __init__(self):
        import http.server

        service = self
        self.requests = []
        self.scripts = {}
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                payload = json.loads(body)
                with service.lock:
                    service.requests.append((self.path, dict(self.headers), payload))
                    script = service.scripts.get(payload.get("document_id"), [service.DEFAULT])
                    action = script.pop(0) if len(script) > 1 else script[0]
                kind, arg = action
                if kind == "sleep":
                    time.sleep(arg)
                    kind, arg = service.DEFAULT
                if kind == "status":
                    self.send_response(arg)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps(arg).encode() if kind == "json" else arg
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # docflow gave up waiting (the timeout test)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d/enrich" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def script(self, doc_id, *actions):
        with self.lock:
            self.scripts[doc_id] = list(actions)

    def requests_for(self, doc_id):
        with self.lock:
            return [r for r in self.requests if r[2].get("document_id") == doc_id]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class EnrichTest(ProcessingCase):
    """DOCFLOW_ML_URL set: the text goes to the ML service and its answer is
    kept under `ml`; every failure of the service is enrichment_failed,
    retried, then FAILED with retryable true."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ml = MLService()
        cls.addClassCleanup(cls.ml.close)
        cls.server = start_server(
            DOCFLOW_WORKERS=2,
            DOCFLOW_ML_URL=cls.ml.url,
            DOCFLOW_ML_TIMEOUT="1s",
            DOCFLOW_JOB_MAX_ATTEMPTS=2,
        )
        cls.addClassCleanup(cls.server.cleanup)
        cls.token = new_user(cls.server)

    def run_scripted(self, *actions):
        doc = upload(self.server, self.token, fixture("en-1page.pdf"), "en-1page.pdf")
        if actions:
            self.ml.script(doc["id"], *actions)
        self.assertAccepted(process(self.server, self.token, doc["id"]), doc["id"])
        return doc["id"], wait_status(self.server, self.token, doc["id"])

    def test_answer_is_kept_under_ml_and_the_service_gets_text_and_metadata(self):
        answer = {"labels": ["survey", "river"], "embedding": [0.25, -1.5], "nested": {"ok": True}}
        doc_id, done = self.run_scripted(("json", answer))
        self.assertEqual(done["status"], "COMPLETED", done)
        res = get_result(self.server, self.token, doc_id)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.json()["ml"], answer)

        calls = self.ml.requests_for(doc_id)
        self.assertEqual(len(calls), 1, calls)
        path, headers, payload = calls[0]
        self.assertEqual(path, "/enrich")
        self.assertEqual(headers.get("Content-Type"), "application/json")
        self.assertEqual(set(payload), {"document_id", "text", "metadata"}, payload)
        self.assertEqual(payload["text"], get_text(self.server, self.token, doc_id).body.decode())
        meta = payload["metadata"]
        exp = EXPECTED["en-1page.pdf"]
        self.assertEqual(meta["title"], exp["title"], meta)
        self.assertEqual(meta["author"], exp["author"], meta)
        self.assertEqual(meta["pages"], exp["pages"], meta)
        self.assertEqual(meta["language"], exp["language"], meta)
        self.assertEqual(meta["kind"], "pdf", meta)

    def test_a_failing_service_is_retried_then_the_answer_kept(self):
        doc_id, done = self.run_scripted(("status", 503), self.ml.DEFAULT)
        self.assertEqual(done["status"], "COMPLETED", done)
        self.assertEqual(done["processing"]["attempts"], 2, done)
        self.assertEqual(len(self.ml.requests_for(doc_id)), 2)
        retries = logs_for(self.server, "job.retry", doc_id)
        self.assertEqual([r["code"] for r in retries], ["enrichment_failed"], retries)
        self.assertEqual(get_result(self.server, self.token, doc_id).json()["ml"], self.ml.DEFAULT[1])

    def test_an_answer_that_is_not_json_fails_after_every_attempt(self):
        doc_id, done = self.run_scripted(("raw", b"<html>oops</html>"))
        error = self.assertFailed(done, "enrichment_failed", True, attempts=2)
        self.assertIn("not JSON", error["message"])
        self.assertProcessingFailed(get_result(self.server, self.token, doc_id), doc_id, "enrichment_failed", True)

    def test_a_service_slower_than_the_timeout_fails_the_attempt(self):
        _, done = self.run_scripted(("sleep", 3))
        error = self.assertFailed(done, "enrichment_failed", True, attempts=2)
        self.assertIn("did not answer within 1000 ms", error["message"])

    def test_a_service_error_status_fails_the_attempt(self):
        _, done = self.run_scripted(("status", 500))
        error = self.assertFailed(done, "enrichment_failed", True, attempts=2)
        self.assertIn("HTTP 500", error["message"])


class EnrichCancelTest(ProcessingCase):
    """A cancel reaches a call to the ML service that is still waiting: the
    worker gives the call up at its next lease renewal, long before the
    service would answer or DOCFLOW_ML_TIMEOUT would end it."""

    SERVICE_DELAY = 60.0  # the service would answer only after this
    ABANDON_BOUND = 20.0  # detects a call that was not given up (hangs only)

    def test_cancel_gives_up_a_waiting_call(self):
        ml = MLService()
        self.addCleanup(ml.close)
        server = start_server(
            DOCFLOW_WORKERS=1,
            DOCFLOW_ML_URL=ml.url,
            DOCFLOW_ML_TIMEOUT="120s",
            DOCFLOW_JOB_LEASE="3s",  # renewed every second
        )
        self.addCleanup(server.cleanup)
        token = new_user(server)
        doc = upload(server, token, fixture("en-1page.pdf"), "en-1page.pdf")
        ml.script(doc["id"], ("sleep", self.SERVICE_DELAY))
        self.assertAccepted(process(server, token, doc["id"]), doc["id"])
        deadline = time.monotonic() + DONE_BOUND
        while not ml.requests_for(doc["id"]):
            self.assertLess(time.monotonic(), deadline, "the ML service was never called")
            time.sleep(0.05)

        res = cancel(server, token, doc["id"])
        self.assertEqual(res.status, 202, res)
        server.wait_for_log(event="job.abandoned", document_id=doc["id"], timeout=self.ABANDON_BOUND)
        done = get_doc(server, token, doc["id"])
        self.assertFailed(done, "cancelled", True, attempts=1)
        self.assertEqual(logs_for(server, "document.completed", doc["id"]), [])


class EnrichUnreachableTest(ProcessingCase):
    def test_an_unreachable_service_fails_with_enrichment_failed(self):
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = start_server(
            DOCFLOW_WORKERS=1, DOCFLOW_ML_URL="http://127.0.0.1:%d/" % port, DOCFLOW_JOB_MAX_ATTEMPTS=1
        )
        self.addCleanup(server.cleanup)
        token = new_user(server)
        doc = upload(server, token, fixture("en-1page.pdf"), "en-1page.pdf")
        self.assertAccepted(process(server, token, doc["id"]), doc["id"])
        done = wait_status(server, token, doc["id"])
        error = self.assertFailed(done, "enrichment_failed", True, attempts=1)
        self.assertIn("could not be reached", error["message"])
        self.assertEqual(server.get("/healthz").status, 200)


if __name__ == "__main__":
    unittest.main()
