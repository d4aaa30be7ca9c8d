"""Prints the presigned GET URLs Debian's botocore makes, at a frozen clock,
one line per case: what s3_sigv4_test compares ours with.

usage: s3_presign_botocore.py JSON
JSON: {"endpoint", "region", "access_key", "secret_key", "unix_time",
       "cases": [{"bucket", "key", "expires", "session_token", "disposition"}]}
(an empty session_token or disposition: none)
"""
import datetime
import json
import sys
import types

import boto3
import botocore.auth
from botocore.config import Config

spec = json.loads(sys.argv[1])
frozen_at = datetime.datetime.utcfromtimestamp(spec["unix_time"])


class FrozenClock(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return frozen_at


# botocore 1.29 reads the time through the module's `datetime` name.
botocore.auth.datetime = types.SimpleNamespace(datetime=FrozenClock)
for case in spec["cases"]:
    client = boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        aws_access_key_id=spec["access_key"],
        aws_secret_access_key=spec["secret_key"],
        aws_session_token=case["session_token"] or None,
        region_name=spec["region"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    params = {"Bucket": case["bucket"], "Key": case["key"]}
    if case["disposition"]:
        params["ResponseContentDisposition"] = case["disposition"]
    print(client.generate_presigned_url("get_object", Params=params, ExpiresIn=case["expires"]))
