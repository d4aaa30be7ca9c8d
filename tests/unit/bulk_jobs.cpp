#include "bulk_jobs.hpp"

#include <cstdint>

#include "core/ids.hpp"
#include "store/postgres/pq.hpp"
#include "store/sqlite/connection.hpp"

namespace docflow::test {

namespace {

std::int64_t ms(core::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

void bulk_queue_sqlite(const std::filesystem::path& path, const std::string& owner, int n,
                       core::time_point from, std::chrono::milliseconds step) {
  // The batch's documents, found again for their jobs by this name.
  const auto batch = "bulk-" + core::random_hex(8) + ".pdf";
  store::sqlite::connection c(path, false);
  store::sqlite::transaction tx(c, store::sqlite::durability::relaxed);
  c.prepare(
       "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?2)"
       " INSERT INTO documents (id, owner_id, filename, kind, size_bytes, sha256, status, created_at,"
       " updated_at)"
       " SELECT lower(hex(randomblob(16))), ?1, ?5, 'pdf', 1, 'a', 'PROCESSING', ?3 + i * ?4,"
       " ?3 + i * ?4 FROM n")
      .bind(1, owner)
      .bind(2, n)
      .bind(3, ms(from))
      .bind(4, step.count())
      .bind(5, batch)
      .step();
  c.prepare(
       "INSERT INTO jobs (id, document_id, state, attempts, available_at, created_at, updated_at, owner_id)"
       " SELECT lower(hex(randomblob(16))), id, 'queued', 0, created_at, created_at, created_at, owner_id"
       " FROM documents WHERE owner_id = ?1 AND filename = ?2")
      .bind(1, owner)
      .bind(2, batch)
      .step();
  c.prepare("INSERT OR IGNORE INTO job_owners (owner_id) VALUES (?)").bind(1, owner).step();
  tx.commit();
}

void bulk_queue_postgres(const std::string& url, const std::string& owner, int n, core::time_point from,
                         std::chrono::milliseconds step) {
  store::postgres::pq::connection c(url, {});
  c.script("BEGIN");
  c.exec(
      "WITH d AS (INSERT INTO documents"
      " (id, owner_id, filename, kind, size_bytes, sha256, status, created_at, updated_at)"
      " SELECT gen_random_uuid(), $1::uuid, 'a.pdf', 'pdf', 1, 'a', 'PROCESSING', t, t"
      " FROM (SELECT $3::timestamptz + i * make_interval(secs => $4::int8 / 1000.0) AS t"
      " FROM generate_series(0, $2::int - 1) i) s RETURNING id, owner_id, created_at)"
      " INSERT INTO jobs (id, document_id, state, attempts, available_at, created_at, updated_at, owner_id)"
      " SELECT gen_random_uuid(), id, 'queued', 0, created_at, created_at, created_at, owner_id FROM d",
      owner, n, from, step.count());
  c.script("COMMIT; ANALYZE jobs");
}

}  // namespace docflow::test
