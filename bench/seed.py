#!/usr/bin/env python3
"""Seeds N documents straight into docflow's SQLite database, bypassing the API.

    bench/seed.py DATABASE USERNAME N

Run after `docflow migrate` and `docflow user add USERNAME` on the same data
directory, with no server running. Uploading 100,000 documents through the
API would take longer than the benchmark itself, and the listing under test
reads only the `documents` table, so the rows are written directly, in the
shape docflow itself writes them (src/store/sqlite/migrations/0003_documents.sql):

- `id`: a UUIDv7 string whose 48-bit timestamp is the row's `created_at`, as
  core::new_uuid_v7() makes them, so ids and creation times agree;
- `created_at`, `updated_at`, `started_at`, `finished_at`: Unix milliseconds,
  spread over the past year, one document every few minutes;
- a mix of statuses (about 90% COMPLETED, 6% UPLOADED, 4% FAILED with an
  error record), PDFs and DOCX files, sizes from 20 KB to a few MB.

Every row belongs to USERNAME. There are no blobs, results or events behind
the rows: only the listing and the document endpoints may be used on them.
Prints the query plan of the first page of `GET /documents` on stderr and
fails if SQLite would not walk the (owner_id, created_at, id) index.
"""
import hashlib
import random
import sqlite3
import sys
import time
import uuid

WORDS = ("invoice contract report minutes budget proposal survey memo letter statement agreement "
         "summary plan review policy manual brief audit forecast quote").split()
FAILURES = (("unreadable_document", "The file is not a readable PDF.", 0),
            ("extractor_timeout", "extraction took too long", 1))


def uuid7(ms: int, rng: random.Random) -> str:
    b = bytearray(rng.getrandbits(128).to_bytes(16, "big"))
    b[0:6] = ms.to_bytes(6, "big")
    b[6] = 0x70 | (b[6] & 0x0F)  # version 7
    b[8] = 0x80 | (b[8] & 0x3F)  # variant 10
    return str(uuid.UUID(bytes=bytes(b)))


def rows(owner_id: str, n: int, rng: random.Random):
    now = int(time.time() * 1000)
    step = 365 * 24 * 3600 * 1000 // max(n, 1)  # n documents over the past year
    t = now - n * step
    for i in range(n):
        t += rng.randint(1, 2 * step - 1) if step > 1 else 1
        created = min(t, now - (n - i))  # strictly increasing, never in the future
        kind = "docx" if rng.random() < 0.2 else "pdf"
        name = f"{rng.choice(WORDS)}-{2024 + i % 3}-{i:06d}.{kind}"
        title = None if rng.random() < 0.3 else f"{rng.choice(WORDS).capitalize()} {i}"
        size = int(min(5e6, max(20e3, rng.lognormvariate(12, 1))))
        sha = hashlib.sha256(i.to_bytes(8, "big") + owner_id.encode()).hexdigest()
        r = rng.random()
        started = finished = code = message = retryable = None
        if r < 0.06:
            status, attempts, updated = "UPLOADED", 0, created
        else:
            started = created + rng.randint(50, 5000)
            finished = started + rng.randint(100, 3000)
            updated = finished
            if r < 0.10:
                status, attempts = "FAILED", 3
                code, message, retryable = rng.choice(FAILURES)
            else:
                status, attempts = "COMPLETED", 1
        yield (uuid7(created, rng), owner_id, name, title, kind, size, sha, status, created, updated, attempts,
               started, finished, code, message, retryable)


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, username, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")  # a scratch copy: a crash just means seeding again
    row = db.execute("SELECT id FROM users WHERE username_key = ?", (username.lower(),)).fetchone()
    if row is None:
        print(f"seed: no user {username!r} in {path} (run `docflow user add` first)", file=sys.stderr)
        return 1
    owner_id = row[0]
    with db:
        db.executemany(
            "INSERT INTO documents (id, owner_id, filename, title, kind, size_bytes, sha256, status, created_at,"
            " updated_at, attempts, started_at, finished_at, error_code, error_message, error_retryable)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(owner_id, n, random.Random(n)),
        )
    # The statement docflow runs for the first page (sqlite_store.cpp, list_documents).
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM documents WHERE 1 = 1 AND owner_id = ?"
        " ORDER BY created_at DESC, id DESC LIMIT ?", (owner_id, 51)).fetchall()
    plan_text = "; ".join(p[-1] for p in plan)
    count = db.execute("SELECT count(*) FROM documents WHERE owner_id = ?", (owner_id,)).fetchone()[0]
    db.close()
    print(f"seed: {count} documents of {username}; first-page plan: {plan_text}", file=sys.stderr)
    if "documents_owner_created" not in plan_text or "TEMP B-TREE" in plan_text:
        print("seed: the listing would not use the (owner_id, created_at, id) index", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
