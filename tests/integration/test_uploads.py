"""Resumable uploads (tus 1.0, issue 18) over HTTP, black-box, on both
engines and both stores: discovery, creation (with and without bytes),
HEAD, PATCH at the right and the wrong offset, checksums, the lock that
keeps two requests apart, a cut connection, the file checks POST /documents
makes, termination, expiry, idempotent creation, a crash between the last
byte and the Document, and two serve processes sharing one upload.

Requests are raw http.client calls (the tus-js-client interop is
test_tus_interop.py's), so each test controls every header."""
import base64
import hashlib
import io
import os
import socket
import time
import zipfile

from harness import ServerTestCase, SharedServerTestCase, format_request, only_on, run_cli, run_sql, stored_blobs
from test_documents import bearer, new_user, upload

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK_TYPE = {"Content-Type": "application/offset+octet-stream"}
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
LIMIT = 8 * 1024 * 1024  # DOCFLOW_MAX_UPLOAD_BYTES of these servers


def pdf(size):
    """A PDF of exactly `size` bytes: a real one padded after %%EOF, or (too
    small for that) a header the magic-byte check takes and padding."""
    with open(os.path.join(FIXTURES, "en-1page.pdf"), "rb") as f:
        data = f.read()
    if size < len(data):
        data = b"%PDF-1.4\n"
    return data + b"\n" * (size - len(data))


def blobs_of(server, location):
    """What the server's store holds of one upload (harness.stored_blobs)."""
    upload_id = location.rsplit("/", 1)[1]
    return [b for b in stored_blobs(server.data_dir) if upload_id in b]


def not_a_docx():
    """A ZIP (so its first bytes pass as a DOCX) that is no Word document."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("notes.txt", "x" * 5000)
    return out.getvalue()


def metadata(filename="scan.pdf", title=None, **more):
    pairs = {"filename": filename, **({"title": title} if title is not None else {}), **more}
    return ",".join(
        "%s %s" % (k, base64.b64encode(v.encode("utf-8")).decode("ascii")) for k, v in pairs.items() if v is not None
    )


def b64(digest):
    return base64.b64encode(digest).decode("ascii")


class UploadClient:
    """One user's tus requests against one server."""

    def __init__(self, server, token):
        self.server, self.token = server, token

    def headers(self, **more):
        return {**bearer(self.token), **TUS, **more}

    def create(self, length, meta=None, body=None, **more):
        h = self.headers(**{"Upload-Length": str(length), **more})
        if meta is None:
            meta = metadata()
        if meta != "":
            h["Upload-Metadata"] = meta
        if body is not None:
            h.update(CHUNK_TYPE)
        return self.server.request("POST", "/uploads", headers=h, body=body, timeout=60)

    def new(self, length, **kw):
        res = self.create(length, **kw)
        assert res.status == 201, res
        return res.header("Location")

    def patch(self, location, offset, data, **more):
        h = self.headers(**{"Upload-Offset": str(offset), **CHUNK_TYPE, **more})
        return self.server.request("PATCH", location, headers=h, body=data, timeout=60)

    def head(self, location):
        return self.server.request("HEAD", location, headers=self.headers(), timeout=60)

    def get(self, location):
        return self.server.request("GET", location, headers=bearer(self.token), timeout=60)

    def delete(self, location):
        return self.server.request("DELETE", location, headers=self.headers(), timeout=60)

    def send(self, location, data, pieces):
        """PATCHes `data` in pieces of the given sizes; returns the last answer."""
        at, res = 0, None
        for n in pieces:
            res = self.patch(location, at, data[at : at + n])
            assert res.status == 204, (at, res)
            at += n
        return res


def wait_locked(server, location):
    """Waits until a request holds the upload's lock, looking in the
    database (a request that asked would take the lock itself, and the one
    it waits for could then find it taken)."""
    upload_id = location.rsplit("/", 1)[1]
    query = "SELECT count(*) FROM uploads WHERE id = '%s' AND lock_token IS NOT NULL" % upload_id
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if run_sql(server.data_dir, query) == [["1"]]:
            return
        time.sleep(0.02)
    raise AssertionError("no request took the upload's lock")


class UploadTestCase(SharedServerTestCase):
    server_env = {"DOCFLOW_MAX_UPLOAD_BYTES": str(LIMIT)}

    def setUp(self):
        super().setUp()
        token, self.user_id = new_user(self.server, "tus")
        self.tus = UploadClient(self.server, token)

    def assertProblem(self, res, status, slug):
        self.assertEqual(res.status, status, res)
        self.assertEqual(res.header("Content-Type"), "application/problem+json", res)
        self.assertEqual(res.json()["type"], "/problems/" + slug, res)

    def offset(self, location):
        res = self.tus.head(location)
        self.assertEqual(res.status, 200, res)
        return int(res.header("Upload-Offset"))


class DiscoveryAndAccessTest(UploadTestCase):
    def test_options_advertises_the_protocol_without_a_token(self):
        res = self.server.request("OPTIONS", "/uploads")
        self.assertEqual(res.status, 204, res)
        self.assertEqual(res.header("Tus-Resumable"), "1.0.0")
        self.assertEqual(res.header("Tus-Version"), "1.0.0")
        self.assertEqual(
            set(res.header("Tus-Extension").split(",")),
            {"creation", "creation-with-upload", "termination", "checksum", "expiration"},
        )
        self.assertEqual(res.header("Tus-Max-Size"), str(LIMIT))
        self.assertEqual(set(res.header("Tus-Checksum-Algorithm").split(",")), {"sha256", "sha1", "md5"})

    def test_every_request_needs_a_token_and_every_answer_says_tus(self):
        location = self.tus.new(100)
        for method, path in (("POST", "/uploads"), ("HEAD", location), ("GET", location),
                             ("PATCH", location), ("DELETE", location)):
            res = self.server.request(method, path, headers={**TUS, "Upload-Length": "10", "Upload-Offset": "0"})
            self.assertEqual(res.status, 401, (method, res))
            self.assertEqual(res.header("Tus-Resumable"), "1.0.0", (method, res))
        self.assertEqual(self.offset(location), 0)

    def test_without_tus_resumable_1_0_0_it_is_412(self):
        location = self.tus.new(100)
        for version in (None, "0.2.2", "1.0"):
            h = {**bearer(self.tus.token), "Upload-Length": "100", "Upload-Metadata": metadata()}
            if version:
                h["Tus-Resumable"] = version
            res = self.server.request("POST", "/uploads", headers=h)
            self.assertProblem(res, 412, "tus-version-unsupported")
            self.assertEqual(res.header("Tus-Version"), "1.0.0")
            h = {**bearer(self.tus.token), **CHUNK_TYPE, "Upload-Offset": "0"}
            if version:
                h["Tus-Resumable"] = version
            self.assertEqual(self.server.request("PATCH", location, headers=h, body=b"%PDF-").status, 412)
        self.assertEqual(self.offset(location), 0)

    def test_another_users_upload_is_404_on_every_verb(self):
        location = self.tus.new(100)
        other = UploadClient(self.server, new_user(self.server, "tus-other")[0])
        for res in (other.head(location), other.get(location), other.patch(location, 0, b"%PDF-1.4"),
                    other.delete(location)):
            self.assertEqual(res.status, 404, res)
            self.assertEqual(res.header("Tus-Resumable"), "1.0.0")
        for path in ("/uploads/not-an-id", "/uploads/01938a3c-5f2e-7b41-9c0d-2e4f6a8b1c3d"):
            self.assertEqual(self.tus.head(path).status, 404)
            self.assertProblem(self.tus.patch(path, 0, b"x"), 404, "not-found")
        self.assertEqual(self.offset(location), 0, "the other user's requests changed the upload")


class CreationTest(UploadTestCase):
    def test_creation_answers_where_and_until_when(self):
        res = self.tus.create(1000)
        self.assertEqual(res.status, 201, res)
        self.assertRegex(res.header("Location"), r"^/uploads/[0-9a-f-]{36}$")
        self.assertRegex(res.header("Upload-Expires"), r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
        head = self.tus.head(res.header("Location"))
        self.assertEqual(head.header("Upload-Offset"), "0")
        self.assertEqual(head.header("Upload-Length"), "1000")
        self.assertEqual(head.header("Upload-Metadata"), metadata())
        self.assertEqual(head.header("Cache-Control"), "no-store")

    def test_creation_refuses_what_post_documents_refuses_with_the_same_problem(self):
        cases = [
            (dict(meta=""), 422, "validation-failed", "file"),
            (dict(meta=metadata(filename="")), 422, "validation-failed", "file"),
            (dict(meta=metadata(filename="notes.txt")), 415, "unsupported-media-type", None),
            (dict(meta=metadata(title="t" * 257)), 422, "validation-failed", "title"),
        ]
        for kw, status, slug, field in cases:
            res = self.tus.create(1000, **kw)
            self.assertProblem(res, status, slug)
            if field:
                self.assertEqual(res.json()["errors"][0]["field"], field, res)
        # The very problems of POST /documents for the same faults.
        self.assertEqual(upload(self.server, self.tus.token, pdf(2000), filename="notes.txt").json()["type"],
                         "/problems/unsupported-media-type")
        self.assertEqual(upload(self.server, self.tus.token, pdf(2000), title="t" * 257).json()["errors"][0]["field"],
                         "title")
        empty = self.tus.create(0)
        self.assertProblem(empty, 422, "validation-failed")
        self.assertEqual(empty.json()["errors"], [{"field": "file", "message": "is empty"}])
        self.assertProblem(self.tus.create(LIMIT + 1), 413, "payload-too-large")
        self.assertEqual(self.tus.create(LIMIT).status, 201)

    def test_malformed_creations_are_400(self):
        h = self.tus.headers(**{"Upload-Metadata": metadata()})
        self.assertProblem(self.server.request("POST", "/uploads", headers=h), 400, "bad-request")
        for length in ("-1", "1e3", "0x10", "18446744073709551616"):
            self.assertProblem(self.tus.create(length), 400, "bad-request")
        self.assertProblem(self.tus.create(10, meta="filename !!notbase64"), 400, "bad-request")
        self.assertProblem(self.tus.create(10, meta=metadata() + "," + metadata()), 400, "bad-request")
        defer = self.tus.headers(**{"Upload-Defer-Length": "1", "Upload-Metadata": metadata()})
        self.assertProblem(self.server.request("POST", "/uploads", headers=defer), 400, "bad-request")

    def test_creation_with_upload_keeps_the_first_bytes(self):
        data = pdf(300_000)
        res = self.tus.create(len(data), body=data[:100_000])
        self.assertEqual(res.status, 201, res)
        self.assertEqual(res.header("Upload-Offset"), "100000")
        location = res.header("Location")
        last = self.tus.patch(location, 100_000, data[100_000:])
        self.assertEqual(last.status, 204, last)
        doc = self.tus.get(location).json()
        self.assertEqual(doc["sha256"], hashlib.sha256(data).hexdigest())

    def test_a_whole_file_sent_with_its_creation_is_a_document_at_once(self):
        data = pdf(50_000)
        res = self.tus.create(len(data), body=data)
        self.assertEqual(res.status, 201, res)
        self.assertEqual(res.header("Upload-Offset"), str(len(data)))
        got = self.tus.get(res.header("Location"))
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json()["size_bytes"], len(data))

    def test_an_image_becomes_a_document_of_its_type(self):
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "scan.png"), "rb") as f:
            data = f.read()
        res = self.tus.create(len(data), meta=metadata(filename="scan.png"), body=data)
        self.assertEqual(res.status, 201, res)
        doc = self.tus.get(res.header("Location")).json()
        self.assertEqual(doc["content_type"], "image/png", doc)
        self.assertEqual(doc["sha256"], hashlib.sha256(data).hexdigest())
        # A PNG named .jpg is refused at its first bytes, as POST /documents refuses it.
        location = self.tus.new(len(data), meta=metadata(filename="scan.jpg"))
        self.assertProblem(self.tus.patch(location, 0, data), 415, "unsupported-media-type")

    def test_the_same_idempotency_key_gives_the_same_upload(self):
        key = {"Idempotency-Key": "tus-key-1"}
        first = self.tus.create(1000, **key)
        self.assertEqual(first.status, 201, first)
        self.tus.patch(first.header("Location"), 0, pdf(1000)[:400])
        again = self.tus.create(1000, **key)
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.header("Location"), first.header("Location"))
        self.assertEqual(again.header("Upload-Offset"), "400")
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertProblem(self.tus.create(1001, **key), 422, "idempotency-key-reused")
        self.assertProblem(self.tus.create(1000, meta=metadata(title="other"), **key), 422, "idempotency-key-reused")
        other = UploadClient(self.server, new_user(self.server, "tus-key")[0])
        theirs = other.create(1000, **key)
        self.assertEqual(theirs.status, 201, theirs)
        self.assertNotEqual(theirs.header("Location"), first.header("Location"))


class PatchTest(UploadTestCase):
    def test_a_file_in_many_requests_becomes_the_document_post_documents_would_make(self):
        data = pdf(3 * 1024 * 1024 + 17)
        location = self.tus.new(len(data), meta=metadata(filename="Q3 scan.pdf", title="Q3 scan"))
        pieces = [1, 1000, 1024 * 1024 + 1]
        pieces.append(len(data) - sum(pieces))
        last = self.tus.send(location, data, pieces)
        doc_id = location.rsplit("/", 1)[1]
        self.assertEqual(last.header("Location"), "/documents/" + doc_id)
        self.assertEqual(last.header("Upload-Offset"), str(len(data)))
        outcome = self.tus.get(location)
        self.assertEqual(outcome.status, 200, outcome)
        self.assertEqual(outcome.header("Location"), "/documents/" + doc_id)
        doc = self.server.get("/documents/" + doc_id, headers=bearer(self.tus.token)).json()
        self.assertEqual(outcome.json(), {**doc, "updated_at": outcome.json()["updated_at"]})
        self.assertEqual(doc["filename"], "Q3 scan.pdf")
        self.assertEqual(doc["title"], "Q3 scan")
        self.assertEqual(doc["status"], "UPLOADED")
        self.assertEqual(doc["content_type"], "application/pdf")
        self.assertEqual(doc["size_bytes"], len(data))
        self.assertEqual(doc["sha256"], hashlib.sha256(data).hexdigest())
        content = self.server.get("/documents/%s/content" % doc_id, headers=bearer(self.tus.token), timeout=60)
        self.assertEqual(content.body, data)
        head = self.tus.head(location)
        self.assertEqual(head.header("Upload-Offset"), str(len(data)))
        self.assertEqual(head.header("Location"), "/documents/" + doc_id)
        # A retry of the last request, whose answer was lost, hears it again.
        self.assertEqual(self.tus.patch(location, len(data), b"").status, 204)

    def test_a_document_made_by_an_upload_is_processed_like_any_other(self):
        data = pdf(20_000)
        location = self.tus.new(len(data))
        self.tus.send(location, data, [len(data)])
        doc_id = location.rsplit("/", 1)[1]
        res = self.server.request("POST", "/documents/%s/process" % doc_id, headers=bearer(self.tus.token))
        self.assertEqual(res.status, 202, res)
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            status = self.server.get("/documents/" + doc_id, headers=bearer(self.tus.token)).json()["status"]
            if status in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.2)
        self.assertEqual(status, "COMPLETED")

    def test_a_wrong_offset_is_409_and_changes_nothing(self):
        data = pdf(10_000)
        location = self.tus.new(len(data))
        self.tus.send(location, data, [4000])
        for offset in (0, 3999, 4001, 10_000):
            self.assertProblem(self.tus.patch(location, offset, data[offset : offset + 10]), 409,
                               "upload-offset-mismatch")
        self.assertEqual(self.offset(location), 4000)
        self.tus.patch(location, 4000, data[4000:])
        self.assertEqual(self.tus.get(location).json()["sha256"], hashlib.sha256(data).hexdigest())

    def test_malformed_patches(self):
        location = self.tus.new(1000)
        h = self.tus.headers(**{"Upload-Offset": "0", "Content-Type": "application/octet-stream"})
        self.assertProblem(self.server.request("PATCH", location, headers=h, body=b"%PDF-1.4"), 415,
                           "unsupported-media-type")
        h = self.tus.headers(**CHUNK_TYPE)
        self.assertProblem(self.server.request("PATCH", location, headers=h, body=b"%PDF-1.4"), 400, "bad-request")
        self.assertProblem(self.tus.patch(location, "x", b"%PDF-1.4"), 400, "bad-request")
        self.assertEqual(self.offset(location), 0)

    def test_bytes_past_the_length_are_413_and_none_are_kept(self):
        data = pdf(2000)
        location = self.tus.new(len(data))
        self.tus.send(location, data, [1000])
        self.assertProblem(self.tus.patch(location, 1000, data[1000:] + b"extra"), 413, "payload-too-large")
        self.assertEqual(self.offset(location), 1000)
        # Sent chunked, the length is only known as the bytes arrive.
        conn = self.server.connect()
        try:
            head = {**self.tus.headers(**{"Upload-Offset": "1000", **CHUNK_TYPE}), "Transfer-Encoding": "chunked"}
            body = data[1000:] + b"extra"
            conn.send(format_request("PATCH", location, head) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            self.assertEqual(conn.read_response().status, 413)
        finally:
            conn.close()
        self.assertEqual(self.offset(location), 1000)

    def test_checksums_of_each_algorithm_and_a_mismatch(self):
        data = pdf(9000)
        location = self.tus.new(len(data))
        at = 0
        for name in ("sha256", "sha1", "md5"):
            piece = data[at : at + 3000]
            good = "%s %s" % (name, b64(hashlib.new(name, piece).digest()))
            bad = "%s %s" % (name, b64(hashlib.new(name, piece + b"!").digest()))
            self.assertProblem(self.tus.patch(location, at, piece, **{"Upload-Checksum": bad}), 460,
                               "checksum-mismatch")
            self.assertEqual(self.offset(location), at, "a mismatched chunk was kept")
            res = self.tus.patch(location, at, piece, **{"Upload-Checksum": good})
            self.assertEqual(res.status, 204, res)
            at += 3000
        self.assertEqual(self.tus.get(location).json()["sha256"], hashlib.sha256(data).hexdigest())

    def test_an_unknown_checksum_algorithm_is_400(self):
        location = self.tus.new(100)
        for value in ("crc32 AAAAAA==", "sha256", "sha256 not*base64"):
            self.assertProblem(self.tus.patch(location, 0, b"%PDF-", **{"Upload-Checksum": value}), 400,
                               "bad-request")
        self.assertEqual(self.offset(location), 0)

    def test_two_requests_on_one_upload_never_mix_their_bytes(self):
        data = pdf(400_000)
        location = self.tus.new(len(data))
        slow = self.server.connect(timeout=60)
        try:
            head = self.tus.headers(**{"Upload-Offset": "0", **CHUNK_TYPE, "Content-Length": str(len(data))})
            slow.send(format_request("PATCH", location, head) + data[:100_000])
            wait_locked(self.server, location)
            other = self.tus.patch(location, 0, b"%PDF-" + b"x" * 50_000)
            self.assertProblem(other, 423, "upload-locked")
            self.assertEqual(other.header("Retry-After"), "1")
            slow.send(data[100_000:])
            res = slow.read_response()
            self.assertEqual(res.status, 204, res)
        finally:
            slow.close()
        self.assertEqual(self.tus.get(location).json()["sha256"], hashlib.sha256(data).hexdigest())

    def wait_unlocked(self, location, data):
        """Waits until a cut request has let go of the upload; its offset."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            probe = self.tus.patch(location, len(data) + 1, b"")  # always the wrong offset
            if probe.status != 423:
                return self.offset(location)
            time.sleep(0.05)
        self.fail("the cut request never let go of the upload")

    def test_a_cut_connection_keeps_what_arrived(self):
        data = pdf(600_000)
        location = self.tus.new(len(data))
        conn = self.server.connect()
        head = self.tus.headers(**{"Upload-Offset": "0", **CHUNK_TYPE, "Content-Length": str(len(data))})
        conn.send(format_request("PATCH", location, head) + data[:300_000])
        time.sleep(0.3)
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        kept = self.wait_unlocked(location, data)
        self.assertLessEqual(kept, 300_000)
        self.assertGreater(kept, 0, "nothing kept of 300,000 bytes sent")
        self.tus.patch(location, kept, data[kept:])
        self.assertEqual(self.tus.get(location).json()["sha256"], hashlib.sha256(data).hexdigest())

    def test_a_cut_connection_with_a_checksum_keeps_nothing(self):
        data = pdf(600_000)
        location = self.tus.new(len(data))
        conn = self.server.connect()
        head = self.tus.headers(**{"Upload-Offset": "0", **CHUNK_TYPE, "Content-Length": str(len(data)),
                                   "Upload-Checksum": "sha256 " + b64(hashlib.sha256(data).digest())})
        conn.send(format_request("PATCH", location, head) + data[:300_000])
        time.sleep(0.3)
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        self.assertEqual(self.wait_unlocked(location, data), 0)


class RefusalAndEndTest(UploadTestCase):
    def documents(self):
        return self.server.get("/documents", headers=bearer(self.tus.token)).json()["items"]

    def test_a_file_refused_at_its_last_byte_leaves_nothing_and_says_why(self):
        data = not_a_docx()
        location = self.tus.new(len(data), meta=metadata(filename="report.docx"))
        half = len(data) // 2
        self.assertEqual(self.tus.patch(location, 0, data[:half]).status, 204)
        res = self.tus.patch(location, half, data[half:])
        self.assertProblem(res, 415, "unsupported-media-type")
        direct = upload(self.server, self.tus.token, data, filename="report.docx")
        self.assertEqual(res.json()["detail"], direct.json()["detail"])
        self.assertEqual(self.documents(), [])
        self.assertEqual(blobs_of(self.server, location), [])
        self.assertEqual(self.tus.head(location).status, 415)
        self.assertProblem(self.tus.get(location), 415, "unsupported-media-type")
        self.assertEqual(self.tus.patch(location, len(data), b"").status, 415)

    def test_first_bytes_that_are_no_pdf_end_the_upload_at_once(self):
        location = self.tus.new(5 * 1024 * 1024)
        res = self.tus.patch(location, 0, b"GIF89a" + b"\0" * 100_000)
        self.assertProblem(res, 415, "unsupported-media-type")
        self.assertEqual(self.tus.head(location).status, 415)
        self.assertEqual(blobs_of(self.server, location), [])

    def test_get_before_the_last_byte_is_409(self):
        location = self.tus.new(1000)
        self.tus.send(location, pdf(1000), [10])
        res = self.tus.get(location)
        self.assertProblem(res, 409, "upload-incomplete")
        self.assertIn("10 of 1000", res.json()["detail"])

    def test_termination_removes_the_upload_and_its_bytes(self):
        data = pdf(6 * 1024 * 1024)
        location = self.tus.new(len(data))
        self.tus.send(location, data, [5 * 1024 * 1024 + 3])
        res = self.tus.delete(location)
        self.assertEqual(res.status, 204, res)
        self.assertEqual(self.tus.head(location).status, 404)
        self.assertEqual(self.tus.delete(location).status, 404)
        self.assertEqual(blobs_of(self.server, location), [])

    def test_terminating_a_finished_upload_keeps_its_document(self):
        data = pdf(5000)
        location = self.tus.new(len(data))
        self.tus.send(location, data, [len(data)])
        self.assertEqual(self.tus.delete(location).status, 204)
        self.assertEqual(self.tus.head(location).status, 404)
        doc_id = location.rsplit("/", 1)[1]
        self.assertEqual(self.server.get("/documents/" + doc_id, headers=bearer(self.tus.token)).status, 200)


class ExpiryTest(ServerTestCase):
    def test_the_maintenance_pass_removes_expired_uploads_with_their_bytes(self):
        server = self.start_server(DOCFLOW_TUS_EXPIRY="1s")
        tus = UploadClient(server, new_user(server, "tus-exp")[0])
        data = pdf(6 * 1024 * 1024)
        expiring = tus.new(len(data))
        tus.send(expiring, data, [5 * 1024 * 1024 + 10])  # a whole S3 part and a tail
        finished = tus.new(3000)
        tus.send(finished, pdf(3000), [3000])
        self.assertNotEqual(stored_blobs(server.data_dir), [])
        time.sleep(1.5)
        done = run_cli(["maintenance", "--min-age", "0s"], data_dir=server.data_dir)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn('"expired_uploads":2', done.stdout + done.stderr)
        self.assertEqual(tus.head(expiring).status, 404)
        self.assertEqual(tus.head(finished).status, 404)
        doc_id = finished.rsplit("/", 1)[1]
        blobs = stored_blobs(server.data_dir)
        self.assertEqual(len(blobs), 1, blobs)  # the finished upload's Document, alone
        self.assertTrue(blobs[0].endswith(doc_id), blobs)


class CrashTest(ServerTestCase):
    def test_a_crash_between_the_last_byte_and_the_document_is_finished_by_the_next_request(self):
        first = self.start_server(DOCFLOW_TEST_CRASH_AT="upload_received")
        token = new_user(first, "tus-crash")[0]
        data = pdf(200_000)
        location = UploadClient(first, token).new(len(data))
        try:
            UploadClient(first, token).patch(location, 0, data)
        except Exception:
            pass  # the process died mid-request
        first.wait_exit()
        again = self.start_server(data_dir=first.data_dir)
        tus = UploadClient(again, token)
        doc_id = location.rsplit("/", 1)[1]
        # The dead request's lock holds until its lease (30 s) lapses; HEAD
        # tells the offset meanwhile, then makes the Document.
        deadline = time.monotonic() + 60  # a bound, not a timing
        while True:
            head = tus.head(location)
            self.assertEqual(head.status, 200, head)
            self.assertEqual(head.header("Upload-Offset"), str(len(data)))
            if head.header("Location") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(head.header("Location"), "/documents/" + doc_id)
        doc = again.get("/documents/" + doc_id, headers=bearer(token)).json()
        self.assertEqual(doc["sha256"], hashlib.sha256(data).hexdigest())


@only_on("postgres", "two serve processes share one upload only through a database server")
class AcrossProcessesTest(ServerTestCase):
    def test_an_upload_made_on_one_process_is_finished_through_another(self):
        a = self.start_server()
        b = self.start_server(data_dir=a.data_dir)
        token = new_user(a, "tus-two")[0]
        on_a, on_b = UploadClient(a, token), UploadClient(b, token)
        data = pdf(7 * 1024 * 1024 + 5)
        location = on_a.new(len(data))
        at = 0
        for i, n in enumerate([3 * 1024 * 1024, 1, 3 * 1024 * 1024, 1024 * 1024 + 4]):
            res = (on_b if i % 2 == 0 else on_a).patch(location, at, data[at : at + n])
            self.assertEqual(res.status, 204, (i, res))
            at += n
        self.assertEqual(on_a.head(location).header("Upload-Offset"), str(len(data)))
        doc = on_b.get(location).json()
        self.assertEqual(doc["sha256"], hashlib.sha256(data).hexdigest())
        content = a.get("/documents/%s/content" % doc["id"], headers=bearer(token), timeout=60)
        self.assertEqual(content.body, data)

    def test_a_request_held_open_on_one_process_locks_the_upload_on_the_other(self):
        a = self.start_server()
        b = self.start_server(data_dir=a.data_dir)
        token = new_user(a, "tus-lock")[0]
        data = pdf(300_000)
        location = UploadClient(a, token).new(len(data))
        slow = a.connect(timeout=60)
        try:
            head = {**bearer(token), **TUS, **CHUNK_TYPE, "Upload-Offset": "0", "Content-Length": str(len(data))}
            slow.send(format_request("PATCH", location, head) + data[:50_000])
            wait_locked(b, location)
            res = UploadClient(b, token).patch(location, 0, data[:1000])
            self.assertEqual(res.status, 423, res)
            slow.send(data[50_000:])
            self.assertEqual(slow.read_response().status, 204)
        finally:
            slow.close()
        self.assertEqual(UploadClient(b, token).get(location).json()["sha256"], hashlib.sha256(data).hexdigest())


if __name__ == "__main__":
    import unittest

    unittest.main()
