"""The S3 server the tests start (s3.py) is the real thing.

Why radosgw and not s3rver: an S3 client's signing and integrity checks can
only be tested against a server that checks them. Each refusal below is one
s3rver 3.7.1 answers with 200 (it implements no signature check and no
digest check), so a suite run against it would pass a client that signs
wrongly or sends corrupted bytes. Also: an object survives a restart of the
gateway (the fault the S3 store's tests play), and a bucket from
create_bucket() is fresh, empty and usable.

Requests go through Debian's boto3, or, to send what boto3 would not, as
raw HTTP signed with botocore's SigV4 signer.
"""
import base64
import hashlib
import http.client
import socket
import unittest
import urllib.parse

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions

import s3


def _server():
    return s3.shared()


def _raw(server, method, path, body=b"", sign=True, signed_body=None):
    """Sends one request as given; returns (status, body). Signed with SigV4
    for `signed_body` (by default `body`): the bytes whose SHA-256 goes in
    x-amz-content-sha256."""
    url = server.endpoint + path
    headers = {}
    if sign:
        request = botocore.awsrequest.AWSRequest(method=method, url=url,
                                                 data=body if signed_body is None else signed_body)
        credentials = botocore.credentials.Credentials(server.access_key, server.secret_key)
        botocore.auth.S3SigV4Auth(credentials, "s3", server.region).add_auth(request)
        headers = dict(request.headers.items())
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


class RefusesWhatAwsRefusesTest(unittest.TestCase):
    def setUp(self):
        self.server = _server()
        self.bucket = self.server.create_bucket()
        self.client = self.server.client()
        self.addCleanup(self.client.close)

    def _error(self, call):
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            call()
        error = caught.exception.response
        return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]

    def _keys(self):
        return self.client.list_objects_v2(Bucket=self.bucket)["KeyCount"]

    def test_a_wrong_secret_is_403_signature_does_not_match(self):
        wrong = self.server.client(secret_key=self.server.secret_key + "x")
        self.addCleanup(wrong.close)
        self.assertEqual(self._error(lambda: wrong.put_object(Bucket=self.bucket, Key="k", Body=b"data")),
                         (403, "SignatureDoesNotMatch"))
        self.assertEqual(self._error(lambda: wrong.list_objects_v2(Bucket=self.bucket)),
                         (403, "SignatureDoesNotMatch"))
        self.assertEqual(self._keys(), 0)

    def test_a_wrong_content_md5_is_400_bad_digest(self):
        wrong = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
        self.assertEqual(
            self._error(lambda: self.client.put_object(Bucket=self.bucket, Key="k", Body=b"data", ContentMD5=wrong)),
            (400, "BadDigest"))
        self.assertEqual(self._keys(), 0)
        right = base64.b64encode(hashlib.md5(b"data").digest()).decode()
        self.client.put_object(Bucket=self.bucket, Key="k", Body=b"data", ContentMD5=right)
        self.assertEqual(self.client.get_object(Bucket=self.bucket, Key="k")["Body"].read(), b"data")

    def test_a_body_that_is_not_the_signed_one_is_400(self):
        # Same length, other bytes: corrupted on the way.
        status, body = _raw(self.server, "PUT", "/%s/k" % self.bucket, body=b"sent bytes",
                            signed_body=b"sign bytes")
        self.assertEqual(status, 400, body)
        self.assertIn("<Code>XAmzContentSHA256Mismatch</Code>", body)
        self.assertEqual(self._keys(), 0)
        self.assertEqual(_raw(self.server, "PUT", "/%s/k" % self.bucket, body=b"sent bytes")[0], 200)

    def test_an_unsigned_write_is_403_access_denied(self):
        status, body = _raw(self.server, "PUT", "/%s/k" % self.bucket, body=b"data", sign=False)
        self.assertEqual(status, 403, body)
        self.assertIn("<Code>AccessDenied</Code>", body)
        self.assertEqual(self._keys(), 0)


class BucketsTest(unittest.TestCase):
    def setUp(self):
        self.server = _server()
        self.client = self.server.client()
        self.addCleanup(self.client.close)

    def test_a_new_bucket_is_empty_and_usable(self):
        first, second = self.server.create_bucket(), self.server.create_bucket()
        self.assertNotEqual(first, second)
        self.client.put_object(Bucket=first, Key="a/b", Body=b"payload")
        self.assertEqual(self.client.list_objects_v2(Bucket=second)["KeyCount"], 0)
        self.assertEqual(self.client.get_object(Bucket=first, Key="a/b")["Body"].read(), b"payload")
        self.client.delete_object(Bucket=first, Key="a/b")
        self.assertEqual(self.client.list_objects_v2(Bucket=first)["KeyCount"], 0)

    def test_a_bucket_can_be_named(self):
        self.assertEqual(self.server.create_bucket("docflow-named"), "docflow-named")
        self.assertIn("docflow-named", [b["Name"] for b in self.client.list_buckets()["Buckets"]])


class GatewayRestartTest(unittest.TestCase):
    def test_objects_survive_a_killed_gateway(self):
        server = _server()
        bucket = server.create_bucket()
        client = server.client()
        self.addCleanup(client.close)
        client.put_object(Bucket=bucket, Key="kept", Body=b"before the crash")
        port = urllib.parse.urlsplit(server.endpoint).port

        server.kill_gateway()
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

        server.start_gateway()
        self.assertEqual(client.get_object(Bucket=bucket, Key="kept")["Body"].read(), b"before the crash")
        # A new bucket is metadata: the new gateway writes it.
        fresh = server.create_bucket()
        client.put_object(Bucket=fresh, Key="after", Body=b"after the restart")
        self.assertEqual(client.get_object(Bucket=fresh, Key="after")["Body"].read(), b"after the restart")


if __name__ == "__main__":
    unittest.main()
