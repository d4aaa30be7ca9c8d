#include "store/sqlite/connection.hpp"

#include <chrono>
#include <thread>

#include <sqlite3.h>

#include "store/database.hpp"

namespace docflow::store::sqlite {

namespace {
constexpr std::chrono::milliseconds busy_timeout{5000};
// The SQL texts are a fixed set (a few dozen); the bound only guards against
// a future caller building unbounded variants.
constexpr std::size_t max_idle_statements = 128;

[[noreturn]] void raise(sqlite3* db, std::string_view what) {
  throw store_error(std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
}
}  // namespace

statement::statement(connection& c, std::string_view sql) : owner_(c), sql_(sql), db_(c.db_) {
  // Taken out of the cache while in use, so a nested statement with the
  // same SQL prepares its own.
  if (const auto it = owner_.idle_.find(sql_); it != owner_.idle_.end()) {
    stmt_ = it->second;
    owner_.idle_.erase(it);
    return;
  }
  if (sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_,
                         nullptr) != SQLITE_OK) {
    raise(db_, "prepare");
  }
}

statement::~statement() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  if (owner_.idle_.size() >= max_idle_statements || !owner_.idle_.emplace(std::move(sql_), stmt_).second) {
    sqlite3_finalize(stmt_);
  }
}

statement& statement::bind(int index, std::int64_t v) {
  if (sqlite3_bind_int64(stmt_, index, v) != SQLITE_OK) {
    raise(db_, "bind");
  }
  return *this;
}

statement& statement::bind(int index, std::string_view v) {
  if (sqlite3_bind_text(stmt_, index, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT) != SQLITE_OK) {
    raise(db_, "bind");
  }
  return *this;
}

statement& statement::bind_null(int index) {
  if (sqlite3_bind_null(stmt_, index) != SQLITE_OK) {
    raise(db_, "bind");
  }
  return *this;
}

bool statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  raise(db_, "step");
}

std::int64_t statement::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }

std::string statement::column_text(int index) const {
  const auto* p = sqlite3_column_text(stmt_, index);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<std::size_t>(sqlite3_column_bytes(stmt_, index)))
           : std::string();
}

bool statement::column_is_null(int index) const { return sqlite3_column_type(stmt_, index) == SQLITE_NULL; }

connection::connection(const std::filesystem::path& path, bool create) {
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    const std::string message = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw store_error("open " + path.string() + ": " + message);
  }
  sqlite3_busy_timeout(db_, static_cast<int>(busy_timeout.count()));
  // Switching a fresh file to WAL takes a lock that SQLite does not wait for
  // through the busy handler, so two processes starting at once would fail:
  // retry for as long as the busy timeout.
  const auto deadline = std::chrono::steady_clock::now() + busy_timeout;
  for (;;) {
    const int rc = sqlite3_exec(db_, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) break;
    if (rc != SQLITE_BUSY || std::chrono::steady_clock::now() >= deadline) {
      const std::string message = sqlite3_errmsg(db_);
      sqlite3_close(db_);
      db_ = nullptr;
      throw store_error("open " + path.string() + ": " + message);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
}

connection::~connection() {
  for (const auto& [sql, stmt] : idle_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

void connection::exec(std::string_view sql) {
  const std::string text(sql);
  char* error = nullptr;
  if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error ? error : sqlite3_errmsg(db_);
    sqlite3_free(error);
    throw store_error("exec: " + message);
  }
}

statement connection::prepare(std::string_view sql) { return statement(*this, sql); }

// A relaxed commit in WAL mode appends to the log without an fsync; the
// next full commit's fsync (or a checkpoint) makes it durable too. The
// setting is the connection's, so it is set back before the connection
// serves anything else.
transaction::transaction(connection& c, durability d) : c_(c), durability_(d) {
  if (durability_ == durability::relaxed) c_.exec("PRAGMA synchronous=NORMAL");
  try {
    c_.prepare("BEGIN IMMEDIATE").step();
  } catch (...) {
    if (durability_ == durability::relaxed) c_.exec("PRAGMA synchronous=FULL");
    throw;
  }
}

transaction::~transaction() {
  if (!done_) {
    try {
      c_.exec("ROLLBACK");
    } catch (...) {
      // Already rolled back by SQLite (e.g. after SQLITE_FULL): nothing to undo.
    }
  }
  if (durability_ == durability::relaxed) {
    try {
      c_.exec("PRAGMA synchronous=FULL");
    } catch (...) {
      // Only out of memory fails a PRAGMA; nothing better to do here.
    }
  }
}

void transaction::commit() {
  c_.prepare("COMMIT").step();
  done_ = true;
}

}  // namespace docflow::store::sqlite
