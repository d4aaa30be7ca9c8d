#!/usr/bin/env python3
"""Writes a multipart/form-data request body holding one PDF-looking file.

    bench/make_upload.py FILE_BYTES OUT_PATH      prints the boundary on stdout

The file is b"%PDF-1.4\\n" + random bytes + b"\\n%%EOF", exactly FILE_BYTES long,
sent as the part `file` with the filename bench.pdf: what docflow's upload
accepts (it judges a PDF by its `%PDF-` header). The body is built once and
sent unchanged by every request of a run (wrk's upload.lua and burst.py).
"""
import os
import sys

HEAD = b"%PDF-1.4\n"
TAIL = b"\n%%EOF"


def pdf_bytes(size: int) -> bytes:
    if size < len(HEAD) + len(TAIL):
        raise ValueError(f"a file of {size} bytes cannot hold the PDF header and trailer")
    return HEAD + os.urandom(size - len(HEAD) - len(TAIL)) + TAIL


def multipart(file: bytes, boundary: str) -> bytes:
    return (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="bench.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode() + file + f"\r\n--{boundary}--\r\n".encode()


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    size = int(sys.argv[1])
    file = pdf_bytes(size)
    while True:  # a boundary that the random bytes happen to contain would cut the file short
        boundary = "docflow-bench-" + os.urandom(12).hex()
        if boundary.encode() not in file:
            break
    with open(sys.argv[2], "wb") as out:
        out.write(multipart(file, boundary))
    print(boundary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
