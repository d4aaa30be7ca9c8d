#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <latch>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sqlite3.h>

#include "core/ids.hpp"
#include "store/database.hpp"
#include "store/sqlite/connection.hpp"
#include "store/sqlite/migrations.hpp"
#include "store/sqlite/sqlite_store.hpp"

using namespace docflow;
namespace fs = std::filesystem;
using store::store_error;
using store::sqlite::connection;
using store::sqlite::sqlite_store;
using store::sqlite::transaction;

namespace {

int latest_version() { return store::sqlite::migrations().back().version; }

// The first column of the first row of `sql`, read over a fresh connection.
std::int64_t query_int(const fs::path& db, std::string_view sql) {
  connection c(db, false);
  auto st = c.prepare(sql);
  if (!st.step()) {
    throw std::logic_error("no row: " + std::string(sql));
  }
  return st.column_int(0);
}

std::string query_text(connection& c, std::string_view sql) {
  auto st = c.prepare(sql);
  if (!st.step()) {
    throw std::logic_error("no row: " + std::string(sql));
  }
  return st.column_text(0);
}

// A fresh directory per test, removed afterwards.
class sqlite_test : public testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("docflow-unit-" + core::random_hex(8));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path db() const { return dir_ / "docflow.db"; }
  // Deletes the database with its WAL and shared-memory files.
  void remove_database_files() const {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      fs::remove(dir_ / (db().filename().string() + suffix));
    }
  }

  fs::path dir_;
};

using sqlite_store_test = sqlite_test;
using connection_test = sqlite_test;

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// migrations()

TEST(sqlite_migrations, are_numbered_upwards_from_one) {
  const auto& all = store::sqlite::migrations();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front().version, 1);
  for (std::size_t i = 1; i < all.size(); ++i) {
    EXPECT_GT(all[i].version, all[i - 1].version) << all[i].name;
  }
  for (const auto& m : all) {
    EXPECT_NE(std::string_view(m.name).find(".sql"), std::string_view::npos) << m.name;
    EXPECT_NE(std::string_view(m.sql).size(), 0U) << m.name;
  }
}

// -----------------------------------------------------------------------------------------------------------
// sqlite_store

TEST_F(sqlite_store_test, constructor_creates_the_file) {
  const sqlite_store s(db());
  EXPECT_TRUE(fs::is_regular_file(db()));
}

TEST_F(sqlite_store_test, migrate_returns_the_latest_version) {
  sqlite_store s(db());
  EXPECT_EQ(s.known_schema_version(), latest_version());
  EXPECT_EQ(s.migrate(), latest_version());
  EXPECT_EQ(s.schema_version(), latest_version());
}

TEST_F(sqlite_store_test, migrate_is_idempotent) {
  sqlite_store s(db());
  const int first = s.migrate();
  EXPECT_EQ(s.migrate(), first);
  EXPECT_EQ(s.schema_version(), first);
  const auto count = static_cast<std::size_t>(query_int(db(), "SELECT count(*) FROM schema_migrations"));
  EXPECT_EQ(count, store::sqlite::migrations().size());
  EXPECT_EQ(query_int(db(), "SELECT count(DISTINCT version) FROM schema_migrations"),
            static_cast<std::int64_t>(count));
}

TEST_F(sqlite_store_test, migrations_are_recorded_with_name_and_time) {
  sqlite_store s(db());
  s.migrate();
  connection c(db(), false);
  auto st = c.prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version");
  for (const auto& m : store::sqlite::migrations()) {
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.column_int(0), m.version);
    EXPECT_EQ(st.column_text(1), m.name);
    const auto applied = st.column_text(2);
    EXPECT_EQ(applied.size(), 24U) << applied;  // 2026-11-29T01:02:03.456Z
    EXPECT_EQ(applied.back(), 'Z') << applied;
  }
  EXPECT_FALSE(st.step());
}

TEST_F(sqlite_store_test, second_store_on_a_migrated_file_sees_the_version) {
  {
    sqlite_store s(db());
    s.migrate();
  }
  sqlite_store again(db());
  EXPECT_EQ(again.schema_version(), latest_version());
  EXPECT_EQ(again.migrate(), latest_version());
  EXPECT_EQ(query_int(db(), "SELECT count(*) FROM schema_migrations"),
            static_cast<std::int64_t>(store::sqlite::migrations().size()));
}

TEST_F(sqlite_store_test, schema_version_of_a_fresh_database_is_zero) {
  sqlite_store s(db());
  EXPECT_EQ(s.schema_version(), 0);  // documented: "0 when none"
}

TEST_F(sqlite_store_test, check_succeeds_on_a_healthy_database) {
  sqlite_store s(db());
  s.migrate();
  EXPECT_NO_THROW(s.check());
  EXPECT_NO_THROW(s.check());
}

TEST_F(sqlite_store_test, check_throws_when_the_file_is_replaced_by_a_directory) {
  sqlite_store s(db());
  s.migrate();
  remove_database_files();
  fs::create_directory(db());
  EXPECT_THROW(s.check(), store_error);
}

TEST_F(sqlite_store_test, check_throws_when_the_file_vanished) {
  sqlite_store s(db());
  s.migrate();
  remove_database_files();
  EXPECT_THROW(s.check(), store_error);
  EXPECT_FALSE(fs::exists(db())) << "check() must not recreate the file";
}

TEST_F(sqlite_store_test, constructor_throws_when_the_parent_is_missing) {
  EXPECT_THROW(sqlite_store(dir_ / "missing" / "docflow.db"), store_error);
  EXPECT_FALSE(fs::exists(dir_ / "missing"));
}

TEST_F(sqlite_store_test, constructor_throws_when_the_path_is_a_directory) {
  fs::create_directory(db());
  EXPECT_THROW(sqlite_store{db()}, store_error);
}

namespace {

// A plain SQLite handle, as another process (or the sqlite3 shell) would hold it.
struct foreign_writer {
  explicit foreign_writer(const fs::path& path) {
    if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
      throw std::runtime_error("sqlite3_open failed");
    }
  }
  ~foreign_writer() { sqlite3_close(db); }
  foreign_writer(const foreign_writer&) = delete;
  foreign_writer& operator=(const foreign_writer&) = delete;
  int exec(const char* sql) const { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); }

  sqlite3* db = nullptr;
};

}  // namespace

// What makes concurrent first starts fail: switching a fresh file to WAL must wait (busy timeout) for a
// writer that holds the lock, not give up at once with "database is locked".
TEST_F(sqlite_store_test, opening_waits_for_a_writer_on_a_fresh_database) {
  const foreign_writer other(db());
  ASSERT_EQ(other.exec("BEGIN IMMEDIATE; CREATE TABLE other (x INTEGER)"), SQLITE_OK);
  std::jthread committer([&other] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    other.exec("COMMIT");
  });
  try {
    sqlite_store s(db());
    EXPECT_EQ(s.migrate(), latest_version());
  } catch (const store_error& e) {
    ADD_FAILURE() << "gave up instead of waiting for the lock: " << e.what();
  }
}

TEST_F(sqlite_store_test, concurrent_migrate_on_one_file_agrees) {
  constexpr int rounds = 20;  // the race is narrow: give it many chances
  for (int round = 0; round < rounds; ++round) {
    const auto path = dir_ / ("race-" + std::to_string(round) + ".db");
    std::array<int, 2> versions{-1, -1};
    std::array<std::string, 2> errors;
    std::latch start(2);
    {
      std::vector<std::jthread> threads;
      for (std::size_t i = 0; i < 2; ++i) {
        threads.emplace_back([&, i] {
          start.arrive_and_wait();
          const char* step = "open";
          try {
            sqlite_store s(path);
            step = "migrate";
            versions[i] = s.migrate();
          } catch (const std::exception& e) {
            errors[i] = std::string(step) + ": " + e.what();
          }
        });
      }
    }
    for (std::size_t i = 0; i < 2; ++i) {
      ASSERT_EQ(errors[i], "") << "round " << round << " thread " << i;
      ASSERT_EQ(versions[i], latest_version()) << "round " << round << " thread " << i;
    }
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM schema_migrations"),
              static_cast<std::int64_t>(store::sqlite::migrations().size()))
        << "round " << round;
  }
}

// -----------------------------------------------------------------------------------------------------------
// connection, statement, transaction

TEST_F(connection_test, open_without_create_fails_on_a_missing_file) {
  EXPECT_THROW(connection(db(), false), store_error);
  EXPECT_FALSE(fs::exists(db()));
}

TEST_F(connection_test, is_configured_for_wal_full_sync_and_foreign_keys) {
  connection c(db(), true);
  EXPECT_EQ(query_text(c, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(query_text(c, "PRAGMA synchronous"), "2");  // FULL
  EXPECT_EQ(query_text(c, "PRAGMA foreign_keys"), "1");
}

TEST_F(connection_test, foreign_keys_are_enforced) {
  connection c(db(), true);
  c.exec(
      "CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (pid INTEGER REFERENCES parent(id))");
  EXPECT_THROW(c.exec("INSERT INTO child VALUES (5)"), store_error);
}

TEST_F(connection_test, bad_sql_throws_store_error) {
  connection c(db(), true);
  EXPECT_THROW(c.exec("SELEKT 1"), store_error);
  EXPECT_THROW(c.prepare("SELECT * FROM no_such_table"), store_error);
}

TEST_F(connection_test, statement_round_trips_values) {
  connection c(db(), true);
  c.exec("CREATE TABLE t (i INTEGER, s TEXT, n TEXT)");
  const std::string with_nul("a\0b\xc3\xa9", 5);
  constexpr auto big = std::numeric_limits<std::int64_t>::min();
  c.prepare("INSERT INTO t VALUES (?, ?, ?)")
      .bind(1, big)
      .bind(2, std::string_view(with_nul))
      .bind_null(3)
      .step();
  auto st = c.prepare("SELECT i, s, n FROM t");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.column_int(0), big);
  EXPECT_EQ(st.column_text(1), with_nul);
  EXPECT_FALSE(st.column_is_null(1));
  EXPECT_TRUE(st.column_is_null(2));
  EXPECT_EQ(st.column_text(2), "");
  EXPECT_FALSE(st.step());
}

TEST_F(connection_test, failing_step_throws_store_error) {
  connection c(db(), true);
  c.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  c.exec("INSERT INTO t VALUES (1)");
  auto st = c.prepare("INSERT INTO t VALUES (?)");
  st.bind(1, std::int64_t{1});
  EXPECT_THROW(st.step(), store_error);
}

namespace {

std::int64_t rows_in_t(const fs::path& db) { return query_int(db, "SELECT count(*) FROM t"); }

}  // namespace

TEST_F(connection_test, transaction_not_committed_rolls_back) {
  connection c(db(), true);
  c.exec("CREATE TABLE t (x INTEGER)");
  {
    transaction tx(c);
    c.exec("INSERT INTO t VALUES (1)");
    EXPECT_EQ(query_text(c, "SELECT count(*) FROM t"), "1");  // visible inside
  }
  EXPECT_EQ(query_text(c, "SELECT count(*) FROM t"), "0");
  EXPECT_EQ(rows_in_t(db()), 0);
}

TEST_F(connection_test, transaction_rolls_back_when_an_exception_unwinds) {
  connection c(db(), true);
  c.exec("CREATE TABLE t (x INTEGER)");
  EXPECT_THROW(
      {
        transaction tx(c);
        c.exec("INSERT INTO t VALUES (1)");
        c.exec("INSERT INTO no_such_table VALUES (1)");
        tx.commit();
      },
      store_error);
  EXPECT_EQ(rows_in_t(db()), 0);
  // The connection is usable again: a new transaction can start.
  transaction again(c);
  c.exec("INSERT INTO t VALUES (2)");
  again.commit();
  EXPECT_EQ(rows_in_t(db()), 1);
}

TEST_F(connection_test, committed_transaction_is_visible_to_other_connections) {
  connection c(db(), true);
  c.exec("CREATE TABLE t (x INTEGER)");
  {
    transaction tx(c);
    c.exec("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
    EXPECT_EQ(rows_in_t(db()), 0);  // not yet committed
    tx.commit();
  }
  EXPECT_EQ(rows_in_t(db()), 2);
}

// -----------------------------------------------------------------------------------------------------------
// Prepared statements are reused: what one use bound must not leak into the next.

TEST_F(connection_test, a_reused_statement_starts_unbound_and_reset) {
  connection c(db(), true);
  c.exec("CREATE TABLE t (i INTEGER)");
  c.prepare("INSERT INTO t VALUES (?)").bind(1, std::int64_t{7}).step();
  c.prepare("INSERT INTO t VALUES (?)").step();  // nothing bound this time: NULL
  EXPECT_EQ(query_text(c, "SELECT group_concat(coalesce(i, 'null'), ',') FROM t"), "7,null");

  auto first = c.prepare("SELECT i FROM t ORDER BY rowid");
  ASSERT_TRUE(first.step());  // left mid-way, then the same SQL again while it is in use
  auto second = c.prepare("SELECT i FROM t ORDER BY rowid");
  ASSERT_TRUE(second.step());
  EXPECT_EQ(second.column_int(0), 7);
  EXPECT_EQ(first.column_int(0), 7);
}

// -----------------------------------------------------------------------------------------------------------
// Group commit of document inserts

namespace {
core::document sample_document(const std::string& owner) {
  core::document d;
  d.id = core::new_uuid_v7();
  d.owner_id = owner;
  d.filename = "a.pdf";
  d.sha256 = std::string(64, 'a');
  d.size_bytes = 1;
  d.created_at = d.updated_at = core::time_point{std::chrono::milliseconds{1'700'000'000'000}};
  return d;
}
}  // namespace

TEST_F(sqlite_store_test, an_upload_answer_is_stored_with_its_document_under_its_claim_only) {
  using namespace std::chrono_literals;
  sqlite_store s(db());
  s.migrate();
  ASSERT_TRUE(s.create_user({"u1", "alice", "hash", core::role::user, core::time_point{}}).has_value());
  const core::time_point t0{std::chrono::hours(1000)};
  const auto first = s.begin_idempotent("u1", "k", "print", t0, 24h, 5min);
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->outcome, store::idempotency_claim::kind::fresh);
  ASSERT_FALSE(first->token.empty());
  // The first request stalls; a retry after the claim timeout takes the key over.
  EXPECT_EQ(s.begin_idempotent("u1", "k", "print", t0 + 1min, 24h, 5min).error().code,
            core::errc::idempotency_key_in_flight);
  EXPECT_EQ(s.begin_idempotent("u1", "k", "other print", t0 + 1min, 24h, 5min).error().code,
            core::errc::idempotency_key_reused);
  const auto second = s.begin_idempotent("u1", "k", "print", t0 + 6min, 24h, 5min);
  ASSERT_TRUE(second.has_value());
  ASSERT_EQ(second->outcome, store::idempotency_claim::kind::fresh);
  ASSERT_NE(second->token, first->token);

  // The stalled request can neither insert its document nor release the key.
  const auto stale_doc = sample_document("u1");
  const store::idempotent_answer stale{"u1", "k", first->token, 201, "{\"stale\":1}", "application/json", ""};
  EXPECT_EQ(s.insert_document(stale_doc, &stale).error().code, core::errc::idempotency_key_in_flight);
  EXPECT_FALSE(s.find_document(stale_doc.id, std::nullopt)) << "the document was inserted anyway";
  s.abandon_idempotent("u1", "k", first->token);
  EXPECT_EQ(s.begin_idempotent("u1", "k", "print", t0 + 6min, 24h, 5min).error().code,
            core::errc::idempotency_key_in_flight);

  // The claim's holder stores document and answer together; retries replay it.
  const auto doc = sample_document("u1");
  const store::idempotent_answer answer{"u1", "k", second->token, 201, "{\"id\":1}", "application/json",
                                        "/d"};
  ASSERT_TRUE(s.insert_document(doc, &answer).has_value());
  EXPECT_TRUE(s.find_document(doc.id, std::nullopt));
  const auto replay = s.begin_idempotent("u1", "k", "print", t0 + 7min, 24h, 5min);
  ASSERT_TRUE(replay.has_value());
  EXPECT_EQ(replay->outcome, store::idempotency_claim::kind::replay);
  EXPECT_EQ(replay->body, "{\"id\":1}");
  EXPECT_EQ(replay->location, "/d");
}

TEST_F(sqlite_store_test, concurrent_inserts_all_land_and_a_bad_one_fails_alone) {
  sqlite_store s(db());
  s.migrate();
  ASSERT_TRUE(s.create_user({"u1", "alice", "hash", core::role::user, core::time_point{}}).has_value());
  constexpr int threads = 32;
  const auto duplicate = sample_document("u1");
  ASSERT_TRUE(s.insert_document(duplicate, nullptr).has_value());

  std::vector<core::document> docs;
  for (int i = 0; i < threads; ++i) docs.push_back(sample_document("u1"));
  docs[threads / 2] = duplicate;          // its primary key is taken: this insert alone must fail
  docs[threads / 4].owner_id = "nobody";  // a foreign-key violation: this one too
  std::vector<std::exception_ptr> errors(threads);
  std::latch start(threads);
  {
    std::vector<std::jthread> pool;
    for (int i = 0; i < threads; ++i) {
      pool.emplace_back([&, i] {
        start.arrive_and_wait();
        try {
          static_cast<void>(s.insert_document(docs[i], nullptr));  // a failure throws
        } catch (...) {
          errors[i] = std::current_exception();
        }
      });
    }
  }
  for (int i = 0; i < threads; ++i) {
    const bool bad = i == threads / 2 || i == threads / 4;
    EXPECT_EQ(errors[i] != nullptr, bad) << i;
    if (!bad) {
      EXPECT_TRUE(s.find_document(docs[i].id, std::string("u1")).has_value()) << i;
    }
  }
  EXPECT_EQ(query_int(db(), "SELECT count(*) FROM documents"), threads - 1);
  EXPECT_THROW(std::rethrow_exception(errors[threads / 2]), store_error);
}
