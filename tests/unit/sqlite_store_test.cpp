// What is SQLite's own: the file, WAL, connections and statements. What
// every engine does alike is in store_contract_test.cpp.
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

TEST_F(sqlite_store_test, knows_the_latest_migration_as_its_schema_version) {
  sqlite_store s(db());
  EXPECT_EQ(s.known_schema_version(), latest_version());
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
  int committed = -1;
  std::jthread committer([&other, &committed] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // Each retry of the opener holds a shared lock for a moment, and a COMMIT
    // without a busy timeout fails at once (SQLITE_BUSY) if it meets one:
    // then nothing releases the lock and the opener gives up after 5 s.
    sqlite3_busy_timeout(other.db, 5000);
    committed = other.exec("COMMIT");
  });
  try {
    sqlite_store s(db());
    EXPECT_EQ(s.migrate(), latest_version());
  } catch (const store_error& e) {
    ADD_FAILURE() << "gave up instead of waiting for the lock: " << e.what();
  }
  committer.join();
  EXPECT_EQ(committed, SQLITE_OK);
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

// Migration 0009 rebuilds `documents` (SQLite cannot widen a CHECK in
// place). Run again on a database with a document and its job and event, it
// keeps them all; its marker is what keeps the job and the event: with
// foreign keys on, dropping the old table takes them with it.
TEST_F(sqlite_store_test, rebuilding_the_documents_table_keeps_what_refers_to_it) {
  {
    sqlite_store s(db());
    s.migrate();
  }
  const auto& rebuild = store::sqlite::migrations().at(8);
  ASSERT_EQ(rebuild.version, 9);
  ASSERT_TRUE(std::string_view(rebuild.sql).starts_with("-- docflow: foreign-keys-off"));
  const auto seed = [&](connection& c, const std::string& id) {
    c.exec(
        "INSERT OR IGNORE INTO users (id, username, username_key, password_hash, role, created_at)"
        " VALUES ('u1', 'ann', 'ann', 'x', 'user', 1)");
    c.exec(
        "INSERT INTO documents (id, owner_id, filename, kind, size_bytes, sha256, status, created_at, "
        "updated_at)"
        " VALUES ('" +
        id + "', 'u1', 'scan.tiff', 'tiff', 9, 'ab', 'UPLOADED', 1, 1)");
    c.exec(
        "INSERT INTO jobs (id, document_id, state, available_at, created_at, updated_at)"
        " VALUES ('j-" +
        id + "', '" + id + "', 'queued', 1, 1, 1)");
    c.exec("INSERT INTO document_events (document_id, seq, status, at) VALUES ('" + id +
           "', 1, 'UPLOADED', 1)");
  };
  const auto count = [&](std::string_view table) {
    return query_int(db(), "SELECT count(*) FROM " + std::string(table));
  };
  {
    connection c(db(), false);
    seed(c, "d1");
    c.exec("PRAGMA foreign_keys=OFF");
    {
      transaction tx(c);
      c.exec(rebuild.sql);
      tx.commit();
    }
    c.exec("PRAGMA foreign_keys=ON");
  }
  EXPECT_EQ(count("documents"), 1);
  EXPECT_EQ(count("jobs"), 1);
  EXPECT_EQ(count("document_events"), 1);
  EXPECT_EQ(query_int(db(), "SELECT count(*) FROM pragma_foreign_key_check"), 0);
  {
    connection c(db(), false);
    c.exec("DELETE FROM documents WHERE id = 'd1'");  // the keys still hold after the rebuild
  }
  EXPECT_EQ(count("jobs"), 0);
  EXPECT_EQ(count("document_events"), 0);

  {
    connection c(db(), false);  // foreign keys on, as every connection has them
    seed(c, "d2");
    transaction tx(c);
    c.exec(rebuild.sql);
    tx.commit();
  }
  EXPECT_EQ(count("documents"), 1);
  EXPECT_EQ(count("jobs"), 0) << "without the marker, the rebuild would lose every job";
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

// The throttle's attempts are committed without an fsync; whatever the
// connection serves next is durable again, committed or rolled back.
TEST_F(connection_test, a_relaxed_transaction_leaves_its_connection_fully_synchronous) {
  connection c(db(), true);
  c.exec("CREATE TABLE t (x INTEGER)");
  {
    transaction tx(c, store::sqlite::durability::relaxed);
    EXPECT_EQ(query_text(c, "PRAGMA synchronous"), "1");  // NORMAL
    c.exec("INSERT INTO t VALUES (1)");
    tx.commit();
  }
  EXPECT_EQ(query_text(c, "PRAGMA synchronous"), "2");
  {
    transaction tx(c, store::sqlite::durability::relaxed);
    c.exec("INSERT INTO t VALUES (2)");
  }
  EXPECT_EQ(query_text(c, "PRAGMA synchronous"), "2");
  EXPECT_EQ(rows_in_t(db()), 1);
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
