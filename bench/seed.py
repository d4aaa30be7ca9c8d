#!/usr/bin/env python3
"""Seeds N documents straight into docflow's database, bypassing the API.

    bench/seed.py DATABASE USERNAME N

DATABASE is the path of a SQLite database or a postgresql:// URL. Run after
`docflow migrate` and `docflow user add USERNAME` on the same database, with
no server running. Uploading 100,000 documents through the API would take
longer than the benchmark itself, and the listing under test reads only the
`documents` table, so the rows are written directly, in the shape docflow
itself writes them (src/store/sqlite/migrations/0003_documents.sql,
src/store/postgres/migrations/0003_documents.sql):

- `id`: a UUIDv7 whose 48-bit timestamp is the row's `created_at`, as
  core::new_uuid_v7() makes them, so ids and creation times agree;
- `created_at`, `updated_at`, `started_at`, `finished_at`: spread over the
  past year, one document every few minutes (Unix milliseconds in SQLite,
  timestamptz to the millisecond in PostgreSQL);
- a mix of statuses (about 90% COMPLETED, 6% UPLOADED, 4% FAILED with an
  error record), PDFs and DOCX files, sizes from 20 KB to a few MB.

Both engines get the same rows for the same N. Every row belongs to
USERNAME. There are no blobs, results or events behind the rows: only the
listing and the document endpoints may be used on them.

SQLite: one executemany in one transaction. PostgreSQL: the rows go as CSV
through psql's `\copy ... FROM pstdin` (psql from $PG_BIN, else the PATH;
no driver needed), then VACUUM ANALYZE, so the planner knows the table and
autovacuum has nothing left to do on it during a measured run.

Prints the query plan of the first page of `GET /documents` on stderr and
fails unless the engine walks the (owner_id, created_at, id) index without a
sort. PostgreSQL: the statement is prepared as docflow prepares it (per
connection) and explained six times, since after five executions the plan
cache may switch to a generic plan; every plan is checked. Two exceptions,
both the planner's right choice: when USERNAME owns every row (as in the
bench), walking the (created_at, id) index and filtering on the owner reads
the same 51 rows from a smaller index; and a table of under 1,000 rows is
sorted rather than walked.
"""
import csv
import datetime
import hashlib
import io
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid

WORDS = ("invoice contract report minutes budget proposal survey memo letter statement agreement "
         "summary plan review policy manual brief audit forecast quote").split()
# The columns rows() yields, in its order; also what docflow selects for a
# listing, in the same order (postgres_store.cpp, document_columns).
COLUMNS = ("id", "owner_id", "filename", "title", "kind", "size_bytes", "sha256", "status", "created_at",
           "updated_at", "attempts", "started_at", "finished_at", "error_code", "error_message", "error_retryable")
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


def seed_sqlite(path: str, username: str, n: int) -> int:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")  # a scratch copy: a crash just means seeding again
    row = db.execute("SELECT id FROM users WHERE username_key = ?", (username.lower(),)).fetchone()
    if row is None:
        print(f"seed: no user {username!r} in {path} (run `docflow user add` first)", file=sys.stderr)
        return 1
    owner_id = row[0]
    with db:
        db.executemany(
            f"INSERT INTO documents ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
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


def psql(url: str, stdin: str, *args: str) -> str:
    """Runs psql ARGS on the database with STDIN (a script, or the data of a \\copy); returns its output."""
    pg_bin = os.environ.get("PG_BIN")
    argv = [os.path.join(pg_bin, "psql") if pg_bin else "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-d", url, *args]
    done = subprocess.run(argv, input=stdin.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode != 0:
        sys.exit(f"seed: psql failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def timestamptz(ms):
    if ms is None:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(timespec="milliseconds")


SORT_IS_FINE_BELOW = 1000  # documents: below this PostgreSQL may sort the owner's rows instead


def seed_postgres(url: str, username: str, n: int) -> int:
    owner_id = psql(url, f"SELECT id FROM users WHERE username_key = {literal(username.lower())};").strip()
    if not owner_id:
        print(f"seed: no user {username!r} in the database (run `docflow user add` first)", file=sys.stderr)
        return 1
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    times = {COLUMNS.index(c) for c in ("created_at", "updated_at", "started_at", "finished_at")}
    retryable = COLUMNS.index("error_retryable")
    for row in rows(owner_id, n, random.Random(n)):
        # CSV's unquoted empty field is NULL; no column of these rows holds an empty string.
        values = [timestamptz(v) if i in times else v for i, v in enumerate(row)]
        if values[retryable] is not None:
            values[retryable] = "true" if values[retryable] else "false"
        writer.writerow(values)
    psql(url, out.getvalue(), "-c", f"\\copy documents ({', '.join(COLUMNS)}) FROM pstdin WITH (FORMAT csv)")
    # A fresh table: statistics for the planner, and the visibility map set,
    # so that autovacuum does not pick the table up during a measured run.
    psql(url, "VACUUM (ANALYZE) documents;")
    # The statement docflow prepares for the first page (postgres_store.cpp,
    # list_documents), executed as often as it takes PostgreSQL's plan cache
    # to consider a generic plan; every plan must walk the index.
    executions = 6
    explain = f"EXPLAIN (COSTS OFF) EXECUTE first_page({literal(owner_id)}, 51);\n\\echo ----\n"
    plans = psql(url, f"PREPARE first_page AS SELECT {', '.join(COLUMNS)} FROM documents"
                      " WHERE true AND owner_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2;\n"
                 + explain * executions).split("----\n")[:executions]
    count, total = (int(v) for v in psql(
        url, f"SELECT count(*) FILTER (WHERE owner_id = {literal(owner_id)}), count(*) FROM documents;").split("|"))
    plan_text = "; ".join(line.strip() for line in plans[-1].splitlines() if line.strip())
    print(f"seed: {count} documents of {username}; first-page plan: {plan_text}", file=sys.stderr)
    # Walking (created_at, id) and filtering on the owner reads the same 51
    # rows as the owner's index when the owner has every row, as here; the
    # planner then prefers that smaller index. A small table is rightly
    # sorted rather than walked.
    ordered = ["documents_owner_created"] + (["documents_created"] if count == total else [])
    if total >= SORT_IS_FINE_BELOW and not all(
            "Sort" not in p and any(f"Index Scan using {index} " in p for index in ordered) for p in plans):
        print("seed: the listing would not walk the (owner_id, created_at, id) index:\n" + "----\n".join(plans),
              file=sys.stderr)
        return 1
    return 0


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    target, username, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if target.startswith(("postgresql://", "postgres://")):
        return seed_postgres(target, username, n)
    return seed_sqlite(target, username, n)


if __name__ == "__main__":
    sys.exit(main())
