"""docflow on S3, end to end (issue 16): the real binary with
DOCFLOW_STORAGE_URL=s3://..., against the private radosgw of s3.py, and a
standard S3 client (boto3) and curl looking at what it wrote.

- Interop: objects docflow wrote (a single PUT and a multipart upload) read
  back by boto3 byte for byte, with the document's SHA-256; workers process
  them from S3.
- /content from S3: whole, ranges, and presigned redirects fetched by curl.
- Faults: the S3 gateway killed in the middle of an upload, and wrong
  credentials: 503 with Retry-After, no row, nothing left in the bucket, and
  uploads work again once S3 is back, without restarting docflow.
- Configuration refused at start: s3:// without credentials.

Every test runs on S3 whatever DOCFLOW_TEST_STORAGE says (it names its own
bucket); the database is the suite's engine, as everywhere. Every wait is
bounded and only detects hangs."""
import hashlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

import botocore.exceptions

import s3
from harness import S3_PREFIX, RawConnection, ServerTestCase, run_cli, run_sql, s3_storage_env
from test_documents import (
    PDF_TYPE,
    DocumentTestCase,
    MiB,
    bearer,
    file_part,
    form,
    make_pdf,
    new_user,
    sha256,
    upload,
    upload_head,
    wait_until,
)
from test_processing import EXPECTED, fixture, get_text, process, wait_status

PART_SIZE = 5 * MiB  # DOCFLOW_S3_PART_SIZE=5MiB, the smallest S3 allows
S3_BOUND = 30.0  # docflow's retries of a dead S3 (6 tries, backoff to 4 s) end well within this


def text_pdf(text, filler_bytes=0, seed=0):
    """A one-page PDF that shows `text` (ASCII), made bigger by a stream no
    page uses of `filler_bytes` random bytes: a part of a multipart upload
    lost, repeated or out of order would change its bytes."""
    filler = random.Random(seed).randbytes(filler_bytes)
    content = b"BT /F1 12 Tf 72 720 Td (" + text.encode("ascii") + b") Tj ET"

    def stream(data):
        return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"

    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        stream(content),
        stream(filler),
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def split_curl_output(raw):
    """`curl -s -D -` output: (status, {lower-case name: value}, body)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


def curl(url, *args):
    done = subprocess.run(["curl", "-s", "-D", "-", *args, url], capture_output=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError("curl failed (%d): %r" % (done.returncode, done.stderr))
    return split_curl_output(done.stdout)


class S3TestCase(DocumentTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.s3 = s3.shared()
        cls.client = cls.s3.client()
        cls.addClassCleanup(cls.client.close)

    def start_s3_server(self, bucket=None, data_dir=None, **env):
        """docflow serve on a fresh bucket (or `bucket`); env overrides."""
        bucket = bucket or self.s3.create_bucket()
        settings = s3_storage_env(bucket)
        settings.update(env)
        server = self.start_server(data_dir=data_dir, **settings)
        server.bucket = bucket
        return server

    def stored(self, bucket):
        """Every object and every incomplete multipart upload under docs/."""
        objects = self.client.list_objects_v2(Bucket=bucket, Prefix=S3_PREFIX).get("Contents", [])
        uploads = self.client.list_multipart_uploads(Bucket=bucket, Prefix=S3_PREFIX).get("Uploads", [])
        return sorted([o["Key"] for o in objects] + ["incomplete:" + u["Key"] for u in uploads])

    def get_object(self, bucket, doc_id):
        return self.client.get_object(Bucket=bucket, Key=S3_PREFIX + doc_id)

    def assertNoObject(self, bucket, doc_id):
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            self.client.head_object(Bucket=bucket, Key=S3_PREFIX + doc_id)
        self.assertEqual(caught.exception.response["Error"]["Code"], "404", caught.exception.response)

    def assertStorageUnavailable(self, res, instance=None):
        """The 503 of a storage that cannot be reached."""
        self.assertProblem(res, 503, "service-unavailable", instance)
        self.assertEqual(res.header("Retry-After"), "2", res)

    def assertReadyz(self, server, storage):
        res = server.get("/readyz", timeout=S3_BOUND)
        if storage == "ok":
            self.assertEqual(res.status, 200, res)
        else:
            self.assertProblem(res, 503, "service-unavailable", None)
        self.assertEqual(res.json()["checks"]["storage"], storage, res)

    def document_rows(self, server, filename):
        rows = run_sql(server.data_dir, "SELECT count(*) FROM documents WHERE filename = '%s'" % filename)
        return int(rows[0][0])


# ==========================================================================
# A standard S3 client reads what docflow wrote; workers read it back


class InteropTest(S3TestCase):
    def test_boto3_reads_the_bytes_docflow_wrote_and_workers_process_them(self):
        server = self.start_s3_server(DOCFLOW_S3_PART_SIZE="5MiB")
        token, _ = new_user(server, "s3interop")
        small = fixture("en-1page.pdf")
        large_text = "A large survey stored on S3 in two parts"
        large = text_pdf(large_text, filler_bytes=PART_SIZE + 2 * MiB, seed=16)
        self.assertTrue(PART_SIZE < len(large) <= 2 * PART_SIZE)
        cases = (
            ("small.pdf", small, None, EXPECTED["en-1page.pdf"]["text"]),
            ("large.pdf", large, 2, large_text),
        )
        for filename, data, parts, text in cases:
            with self.subTest(filename=filename):
                doc = self.assertCreated(upload(server, token, data, filename), filename=filename,
                                         content_type=PDF_TYPE, data=data)
                obj = self.get_object(server.bucket, doc["id"])
                body = obj["Body"].read()
                self.assertEqual(len(body), len(data))
                self.assertTrue(body == data, "the object's bytes differ from the upload's")
                self.assertEqual(sha256(body), doc["sha256"])
                etag = obj["ETag"].strip('"')
                if parts is None:  # a single PUT: S3's ETag is the MD5 of the bytes
                    self.assertEqual(etag, hashlib.md5(data).hexdigest())
                else:
                    self.assertTrue(etag.endswith("-%d" % parts), "ETag %s: not a %d-part upload" % (etag, parts))

                self.assertEqual(process(server, token, doc["id"]).status, 202)
                done = wait_status(server, token, doc["id"])
                self.assertEqual(done["status"], "COMPLETED", done)
                res = get_text(server, token, doc["id"])
                self.assertEqual(res.status, 200, res)
                self.assertIn(text, res.body.decode("utf-8"))
        self.assertEqual(self.stored(server.bucket), sorted(S3_PREFIX + d for d in self.document_ids(server, token)))

    def document_ids(self, server, token):
        res = server.get("/documents", headers=bearer(token))
        self.assertEqual(res.status, 200, res)
        return [d["id"] for d in res.json()["items"]]


# ==========================================================================
# /content streamed from S3, and presigned downloads


class ContentTest(S3TestCase):
    def test_content_streams_from_s3_with_ranges(self):
        server = self.start_s3_server(DOCFLOW_S3_PART_SIZE="5MiB")
        token, _ = new_user(server, "s3content")
        data = text_pdf("ranges", filler_bytes=PART_SIZE + MiB, seed=2)
        n = len(data)
        doc = upload(server, token, data, "ranges.pdf").json()
        path = "/documents/%s/content" % doc["id"]

        def get(headers=None):
            return server.get(path, headers={**bearer(token), **(headers or {})}, timeout=30)

        res = get()
        self.assertEqual(res.status, 200, res)
        self.assertEqual(res.content_type, PDF_TYPE)
        self.assertEqual(res.header("Content-Length"), str(n))
        self.assertTrue(res.body == data, "the body differs from the upload")

        res = get({"Range": "bytes=100-199"})
        self.assertEqual(res.status, 206, res)
        self.assertEqual(res.header("Content-Range"), "bytes 100-199/%d" % n)
        self.assertEqual(res.body, data[100:200])

        # Across the boundary between the object's two parts.
        res = get({"Range": "bytes=%d-%d" % (PART_SIZE - 10, PART_SIZE + 9)})
        self.assertEqual(res.status, 206, res)
        self.assertEqual(res.body, data[PART_SIZE - 10 : PART_SIZE + 10])

        res = get({"Range": "bytes=-500"})
        self.assertEqual(res.status, 206, res)
        self.assertEqual(res.header("Content-Range"), "bytes %d-%d/%d" % (n - 500, n - 1, n))
        self.assertEqual(res.body, data[-500:])

        res = get({"Range": "bytes=%d-" % n})
        self.assertProblem(res, 416, "range-not-satisfiable", path)
        self.assertEqual(res.header("Content-Range"), "bytes */%d" % n)

    def test_presigned_download_is_a_redirect_curl_can_follow(self):
        data_dir = tempfile.mkdtemp(prefix="docflow-it-presigned-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        name = "r\u00e9sum\u00e9 2026.pdf"
        data = make_pdf("presigned", size=64 * 1024)

        # What docflow sends when the bytes pass through it.
        server = self.start_s3_server(data_dir=data_dir)
        token, _ = new_user(server, "s3presigned")
        other, _ = new_user(server, "s3other")
        doc = upload(server, token, data, name).json()
        path = "/documents/%s/content" % doc["id"]
        direct = server.get(path, headers=bearer(token))
        self.assertEqual(direct.status, 200, direct)
        disposition = direct.header("Content-Disposition")
        server.signal(signal.SIGTERM)
        self.assertEqual(server.wait_exit(), 0)

        server = self.start_s3_server(bucket=server.bucket, data_dir=data_dir, DOCFLOW_S3_PRESIGNED_DOWNLOADS="on")
        res = server.get(path, headers=bearer(token))
        self.assertEqual(res.status, 302, res)
        self.assertEqual(res.body, b"")
        location = res.header("Location")
        self.assertTrue(location.startswith(self.s3.endpoint + "/"), location)
        self.assertIn("X-Amz-Expires=300", location)

        status, headers, body = curl(location)
        self.assertEqual(status, 200, headers)
        self.assertTrue(body == data, "the presigned URL gave other bytes")
        self.assertEqual(headers.get("content-type"), PDF_TYPE, headers)
        self.assertEqual(headers.get("content-disposition"), disposition, headers)

        status, headers, body = curl(location, "-H", "Range: bytes=100-199")
        self.assertEqual(status, 206, headers)
        self.assertEqual(body, data[100:200])
        self.assertEqual(headers.get("content-range"), "bytes 100-199/%d" % len(data), headers)

        res = server.get(path, headers=bearer(other))
        self.assertProblem(res, 404, "not-found", path)
        self.assertIsNone(res.header("Location"), res)
        res = server.get(path)
        self.assertEqual(res.status, 401, res)
        self.assertIsNone(res.header("Location"), res)


# ==========================================================================
# Faults: S3 gone in the middle of an upload, wrong credentials


class FaultTest(S3TestCase):
    def test_gateway_killed_mid_upload_is_503_and_leaves_nothing(self):
        server = self.start_s3_server(DOCFLOW_S3_PART_SIZE="5MiB")
        token, _ = new_user(server, "s3fault")
        kept = make_pdf("kept before the fault")
        kept_doc = upload(server, token, kept, "kept.pdf").json()
        kept_path = "/documents/%s/content" % kept_doc["id"]

        body = form([file_part(text_pdf("cut", filler_bytes=3 * PART_SIZE, seed=4), "cut.pdf")])
        conn = RawConnection(server.port, timeout=S3_BOUND)
        self.addCleanup(conn.close)
        conn.send(upload_head(token, content_length=len(body)))
        first = PART_SIZE + MiB
        conn.send(body[:first])
        # The first part is on its way: the multipart upload exists.
        self.assertTrue(
            wait_until(lambda: any(k.startswith("incomplete:") for k in self.stored(server.bucket)), S3_BOUND),
            "no multipart upload began: %r" % self.stored(server.bucket),
        )

        self.s3.kill_gateway()
        self.addCleanup(self.s3.start_gateway)  # for the next tests, whatever happens here
        self.assertReadyz(server, "unavailable")
        self.assertStorageUnavailable(server.get(kept_path, headers=bearer(token), timeout=S3_BOUND), kept_path)

        # The rest, in pieces; docflow may answer (and close) before the end.
        sent_all = True
        for offset in range(first, len(body), 256 * 1024):
            try:
                sent_all = conn.send(body[offset : offset + 256 * 1024])
            except socket.timeout:
                sent_all = False  # it no longer reads: its answer is on the way
            if not sent_all:
                break
        res = conn.read_response(timeout=S3_BOUND)
        self.assertStorageUnavailable(res, "/documents")
        if not sent_all:
            self.assertTrue(conn.wait_closed(S3_BOUND), "answered before the body's end, and kept the connection")
        # The writer's abort retries for a few seconds, then waits for the
        # readiness check to see S3 back and tries again then.
        self.s3.start_gateway()
        self.assertTrue(wait_until(lambda: server.get("/readyz", timeout=S3_BOUND).status == 200, S3_BOUND))

        self.assertEqual(self.document_rows(server, "cut.pdf"), 0)
        only_kept = [S3_PREFIX + kept_doc["id"]]
        self.assertTrue(
            wait_until(lambda: self.stored(server.bucket) == only_kept, S3_BOUND),
            "left in the bucket after the failed upload: %r; the abort's log:\n%s"
            % (self.stored(server.bucket), "\n".join(l for l in server.lines if "Abort" in l or "cleanup" in l)),
        )

        # S3 is back: the same docflow answers again.
        self.assertReadyz(server, "ok")
        data = text_pdf("after the fault", filler_bytes=PART_SIZE + MiB, seed=5)
        doc = self.assertCreated(upload(server, token, data, "after.pdf"), filename="after.pdf",
                                 content_type=PDF_TYPE, data=data)
        self.assertTrue(self.get_object(server.bucket, doc["id"])["Body"].read() == data)
        res = server.get(kept_path, headers=bearer(token))
        self.assertEqual((res.status, res.body), (200, kept))

    def test_wrong_secret_key_is_503_and_writes_nothing(self):
        server = self.start_s3_server(AWS_SECRET_ACCESS_KEY="wrong-" + self.s3.secret_key,
                                      DOCFLOW_S3_PART_SIZE="5MiB")
        token, _ = new_user(server, "s3badkey")
        self.assertReadyz(server, "unavailable")
        # A single PUT, and a multipart upload (refused at its first part).
        for name, data in (("small.pdf", make_pdf("bad key")), ("large.pdf", text_pdf("bad key", 6 * MiB))):
            with self.subTest(name=name):
                res = upload(server, token, data, name)
                self.assertStorageUnavailable(res, "/documents")
                self.assertEqual(self.document_rows(server, name), 0)
        self.assertEqual(self.stored(server.bucket), [])


# ==========================================================================
# Deletion


class DeleteTest(S3TestCase):
    def test_delete_removes_the_object(self):
        server = self.start_s3_server()
        token, _ = new_user(server, "s3delete")
        doc = upload(server, token, make_pdf("delete me"), "gone.pdf").json()
        self.client.head_object(Bucket=server.bucket, Key=S3_PREFIX + doc["id"])  # stored
        res = server.request("DELETE", "/documents/" + doc["id"], headers=bearer(token))
        self.assertEqual(res.status, 204, res)
        self.assertNoObject(server.bucket, doc["id"])
        self.assertEqual(self.stored(server.bucket), [])


# ==========================================================================
# Configuration refused at start


class ConfigTest(ServerTestCase):
    def test_s3_without_credentials_refuses_to_start(self):
        settings = s3_storage_env("docflow-no-credentials")
        for missing in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            with self.subTest(missing=missing):
                env = {**settings, missing: None, missing + "_FILE": None}
                out = run_cli(["serve"], **env)
                self.assertEqual(out.returncode, 2, out.stderr)
                self.assertIn(missing, out.stderr)


if __name__ == "__main__":
    unittest.main()
