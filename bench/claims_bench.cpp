// What one claim costs with 100,000 jobs queued, on SQLite and PostgreSQL,
// for the fair claim (store::database::claim_job) and for the claim it
// replaced (oldest available job first, as of fd9147a, replayed below in
// SQL). Built into docflow_unit as disabled tests, so that it costs no link
// of its own; bench/README.md ("Claims") says how to run it. It prints
// figures and asserts no time.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bulk_jobs.hpp"
#include "core/ids.hpp"
#include "pg_server.hpp"
#include "store/database.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/postgres/pq.hpp"
#include "store/sqlite/connection.hpp"
#include "store/sqlite/sqlite_store.hpp"

using namespace docflow;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace sqlite = store::sqlite;
namespace pq = store::postgres::pq;

namespace {

const core::time_point t0{std::chrono::seconds{1'800'000'000}};
constexpr int light_owners = 100;
constexpr int claims = 2'000;

// Jobs queued in all: 100,000, or DOCFLOW_BENCH_QUEUED (to see whether a
// claim's cost follows the queue's length); the heavy owner holds 90 % of
// them, the light owners the rest, evenly.
int queued() {
  const char* v = std::getenv("DOCFLOW_BENCH_QUEUED");
  return v ? std::max(10 * light_owners, std::atoi(v)) : 100'000;
}
int light_jobs() { return queued() / 10 / light_owners; }
int heavy_jobs() { return queued() - light_jobs() * light_owners; }

// One queue as the benchmark sees it: how to claim, and the owner of the
// burst.
struct queue {
  std::function<std::optional<std::string>()> claim;  ///< the claimed job's owner
  std::string heavy;
};

std::int64_t ms(core::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

void report(const char* engine, const char* variant, const queue& q) {
  std::vector<double> micros;
  micros.reserve(claims);
  int first_light = 0;
  for (int i = 1; i <= claims; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const auto owner = q.claim();
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
    ASSERT_TRUE(owner) << "claim " << i;
    if (first_light == 0 && *owner != q.heavy) first_light = i;
  }
  double total = 0;
  for (const auto m : micros) total += m;
  std::sort(micros.begin(), micros.end());
  const auto at = [&](double p) {
    return micros[static_cast<std::size_t>(p * static_cast<double>(micros.size() - 1))];
  };
  std::printf(
      "%-8s %-4s %7d queued %5d claims  p50 %7.0f us  p95 %7.0f us  p99 %7.0f us  %7.0f claims/s  first "
      "light job: %s\n",
      engine, variant, queued(), claims, at(0.50), at(0.95), at(0.99), claims / (total / 1e6),
      first_light ? ("claim " + std::to_string(first_light)).c_str() : "none in these claims");
}

// The heavy owner's burst first (oldest), then the light owners' jobs,
// interleaved.
void fill(
    const std::vector<std::string>& owners,
    const std::function<void(const std::string&, int, core::time_point, std::chrono::milliseconds)>& add) {
  for (std::size_t o = 0; o < owners.size(); ++o) {
    if (o == 0) {
      add(owners[o], heavy_jobs(), t0, 1ms);
    } else {
      add(owners[o], light_jobs(), t0 + std::chrono::milliseconds(heavy_jobs() + static_cast<int>(o)),
          std::chrono::milliseconds(light_owners + 1));
    }
  }
}

std::vector<std::string> add_owners(store::database& db) {
  std::vector<std::string> ids;
  for (int i = 0; i <= light_owners; ++i) {
    core::user u{core::new_uuid_v7(), "owner" + std::to_string(i), "hash", core::role::user, t0};
    EXPECT_TRUE(db.create_user(u).has_value());
    ids.push_back(u.id);
  }
  return ids;
}

// --- SQLite

// The claim of fd9147a, statement for statement.
std::optional<std::string> old_sqlite_claim(sqlite::connection& c, core::time_point now) {
  sqlite::transaction tx(c);
  auto st = c.prepare(
      "SELECT id, document_id, attempts, available_at, 1 FROM jobs"
      " WHERE state = 'running' AND lease_expires_at < ?1"
      " UNION ALL SELECT * FROM (SELECT id, document_id, attempts, available_at, 0 FROM jobs"
      " WHERE state = 'queued' AND available_at <= ?1 ORDER BY available_at LIMIT 1) LIMIT 1");
  st.bind(1, ms(now));
  if (!st.step()) return std::nullopt;
  const auto job = st.column_text(0);
  const auto document = st.column_text(1);
  c.prepare(
       "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = ?, lease_expires_at = ?,"
       " updated_at = ? WHERE id = ?")
      .bind(1, core::random_hex(16))
      .bind(2, ms(now + 30s))
      .bind(3, ms(now))
      .bind(4, job)
      .step();
  c.prepare(
       "UPDATE documents SET attempts = attempts + 1, started_at = coalesce(started_at, ?), updated_at = ?"
       " WHERE id = ?")
      .bind(1, ms(now))
      .bind(2, ms(now))
      .bind(3, document)
      .step();
  auto owner = c.prepare("SELECT owner_id FROM documents WHERE id = ?");
  owner.bind(1, document).step();
  auto out = owner.column_text(0);
  tx.commit();
  return out;
}

void sqlite_run(bool fair) {
  const auto dir = fs::temp_directory_path() / ("docflow-claims-" + core::random_hex(6));
  fs::create_directories(dir);
  {
    sqlite::sqlite_store db(dir / "docflow.db");
    db.migrate();
    const auto owners = add_owners(db);
    fill(owners, [&](const std::string& owner, int n, core::time_point from, std::chrono::milliseconds step) {
      test::bulk_queue_sqlite(dir / "docflow.db", owner, n, from, step);
    });
    sqlite::connection c(dir / "docflow.db", false);
    const auto now = t0 + 1h;
    queue q{fair ? std::function<std::optional<std::string>()>([&]() -> std::optional<std::string> {
              const auto job = db.claim_job(now, 30s, core::random_hex(16));
              if (!job) return std::nullopt;
              return job->document.owner_id;
            })
                 : [&] { return old_sqlite_claim(c, now); },
            owners[0]};
    report("sqlite", fair ? "new" : "old", q);
  }
  fs::remove_all(dir);
}

// --- PostgreSQL

// The claim of fd9147a, statement for statement.
std::optional<std::string> old_postgres_claim(pq::connection& c, core::time_point now) {
  static const std::string take =
      "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = $2, lease_expires_at = $3,"
      " updated_at = $1 WHERE id = (SELECT j.id FROM jobs j JOIN documents d ON d.id = j.document_id"
      " WHERE %s LIMIT 1 FOR UPDATE OF j, d SKIP LOCKED)"
      " RETURNING id, document_id, attempts, available_at";
  const auto with = [](const std::string& where) {
    auto s = take;
    s.replace(s.find("%s"), 2, where);
    return s;
  };
  static const std::string lapsed =
      with("j.state = 'running' AND j.lease_expires_at < $1 ORDER BY j.lease_expires_at");
  static const std::string queued =
      with("j.state = 'queued' AND j.available_at <= $1 ORDER BY j.available_at");
  c.script("BEGIN");
  const auto token = core::random_hex(16);
  auto r = c.exec(lapsed, now, token, now + 30s);
  if (r.empty()) r = c.exec(queued, now, token, now + 30s);
  if (r.empty()) {
    c.script("ROLLBACK");
    return std::nullopt;
  }
  const auto d = c.exec(
      "UPDATE documents SET attempts = attempts + 1, started_at = coalesce(started_at, $1), updated_at = $1"
      " WHERE id = $2 RETURNING owner_id",
      now, r.text(0, 1));
  c.script("COMMIT");
  return d.text(0, 0);
}

void postgres_run(bool fair) {
  const auto url = test::shared_pg_server().create_database();
  const auto db = store::postgres::open(url, 2);
  db->migrate();
  const auto owners = add_owners(*db);
  fill(owners, [&](const std::string& owner, int n, core::time_point from, std::chrono::milliseconds step) {
    test::bulk_queue_postgres(url, owner, n, from, step);
  });
  pq::connection c(url, {});
  const auto now = t0 + 1h;
  queue q{fair ? std::function<std::optional<std::string>()>([&]() -> std::optional<std::string> {
            const auto job = db->claim_job(now, 30s, core::random_hex(16));
            if (!job) return std::nullopt;
            return job->document.owner_id;
          })
               : [&] { return old_postgres_claim(c, now); },
          owners[0]};
  report("postgres", fair ? "new" : "old", q);
}

}  // namespace

TEST(DISABLED_claim_cost, sqlite) {
  sqlite_run(false);
  sqlite_run(true);
}

TEST(DISABLED_claim_cost, postgres) {
  postgres_run(false);
  postgres_run(true);
}
