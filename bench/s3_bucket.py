#!/usr/bin/env python3
"""Tallies, then empties and removes, one bucket of the bench's S3 server.

    s3_bucket.py ENDPOINT REGION BUCKET   (keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)

Prints one JSON line (`S3_BUCKET {...}`) on stdout: the objects and bytes in
the bucket and the multipart uploads still open, as docflow's run left them
(every 201 should be one object of the file's size; no upload should be left
open). Then aborts the open uploads, deletes every object and the bucket: the
S3 server's OSD keeps objects in memory and hangs once its budget is spent,
so each run gives back what it took.

Needs boto3 (Debian's python3-boto3 is /usr/bin/python3's, which run.sh uses).
"""
import json
import sys

import boto3
import botocore.config


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, region, bucket = sys.argv[1:]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                      config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    keys, size = [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            keys.append(o["Key"])
            size += o["Size"]
    uploads = [(u["Key"], u["UploadId"])
               for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket)
               for u in page.get("Uploads", [])]
    print("S3_BUCKET " + json.dumps({"bucket": bucket, "objects": len(keys), "bytes": size,
                                     "open_multipart_uploads": len(uploads)}), flush=True)
    for key, upload_id in uploads:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]],
                                                          "Quiet": True})
        if answer.get("Errors"):
            print("s3_bucket: not deleted: %s" % answer["Errors"][:3], file=sys.stderr)
            return 1
    s3.delete_bucket(Bucket=bucket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
