#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

struct sqlite3;
struct sqlite3_stmt;

namespace docflow::store::sqlite {

class connection;

/// A prepared statement. Bind parameters are 1-based, columns 0-based.
/// Borrowed from its connection's cache and given back, reset, on
/// destruction: parsing and planning the SQL cost more than running a
/// point query.
class statement {
public:
  statement(connection& c, std::string_view sql);
  ~statement();
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int index, std::int64_t v);
  statement& bind(int index, std::string_view v);
  statement& bind_null(int index);

  /// Advances to the next row: true while a row is available. Throws store_error.
  bool step();
  std::int64_t column_int(int index) const;
  std::string column_text(int index) const;
  bool column_is_null(int index) const;

private:
  connection& owner_;
  std::string sql_;
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// One SQLite connection configured for docflow: WAL, synchronous=FULL (a
/// commit is on disk before we answer), foreign keys, a busy timeout.
class connection {
public:
  /// Opens `path`; `create` allows creating a missing file. Throws store_error.
  connection(const std::filesystem::path& path, bool create);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Runs one or more statements without results. Throws store_error.
  void exec(std::string_view sql);
  statement prepare(std::string_view sql);
  sqlite3* handle() const noexcept { return db_; }

private:
  friend class statement;
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> idle_;  ///< prepared statements not in use, by SQL
};

/// How a transaction's commit reaches the disk.
enum class durability {
  full,     ///< on disk when commit() returns (synchronous=FULL, the connection's setting)
  relaxed,  ///< in the WAL without waiting for the disk: a power cut may lose it (never corrupts)
};

/// BEGIN IMMEDIATE on construction, ROLLBACK on destruction unless committed.
class transaction {
public:
  explicit transaction(connection& c, durability d = durability::full);
  ~transaction();
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  void commit();

private:
  connection& c_;
  durability durability_;
  bool done_ = false;
};

}  // namespace docflow::store::sqlite
