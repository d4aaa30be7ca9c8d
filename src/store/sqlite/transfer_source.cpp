#include "store/sqlite/transfer_source.hpp"

#include <string>

#include <sqlite3.h>

#include "store/sqlite/connection.hpp"

namespace docflow::store::sqlite {

namespace {

std::string column_list(const transfer::table& t) {
  std::string out;
  for (const auto& c : t.columns) {
    out += (out.empty() ? "\"" : ", \"") + std::string(c.name) + '"';
  }
  return out;
}

std::string key_order(const transfer::table& t) {
  std::string out;
  for (std::size_t i = 0; i < t.key_columns; ++i) {
    out += (i == 0 ? "\"" : ", \"") + std::string(t.columns[i].name) + '"';
  }
  return out;
}

std::vector<transfer::row> read_rows(statement& st, std::size_t columns) {
  std::vector<transfer::row> out;
  while (st.step()) {
    transfer::row r;
    r.reserve(columns);
    for (std::size_t i = 0; i < columns; ++i) {
      const int index = static_cast<int>(i);
      r.push_back(st.column_is_null(index) ? transfer::cell{} : transfer::cell{st.column_text(index)});
    }
    out.push_back(std::move(r));
  }
  return out;
}

class transfer_source final : public transfer::source {
public:
  explicit transfer_source(const std::filesystem::path& path) : c_(path, false) {
    // Exclusive locking mode keeps the lock BEGIN IMMEDIATE takes until the
    // connection closes: a serve started meanwhile cannot open the file,
    // and a serve already running (its pooled connections hold a shared
    // lock for as long as they are open) makes BEGIN fail with SQLITE_BUSY.
    // Waiting would not help: that lock is held until the serve stops.
    sqlite3_busy_timeout(c_.handle(), 0);
    c_.exec("PRAGMA locking_mode=EXCLUSIVE");
    try {
      c_.exec("BEGIN IMMEDIATE");
    } catch (const store_error& e) {
      if ((sqlite3_extended_errcode(c_.handle()) & 0xff) == SQLITE_BUSY) {
        throw transfer::source_busy("the database " + path.string() +
                                    " is open in another process (is a docflow still running on it?)");
      }
      throw;
    }
  }

  // Read only: the transaction ends without a change.
  ~transfer_source() override {
    try {
      c_.exec("ROLLBACK");
    } catch (const store_error&) {  // closing the connection rolls back all the same
    }
  }

  transfer_source(const transfer_source&) = delete;
  transfer_source& operator=(const transfer_source&) = delete;

  int schema_version() override {
    auto exists =
        c_.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
    exists.step();
    if (exists.column_int(0) == 0) return 0;
    auto st = c_.prepare("SELECT coalesce(max(version), 0) FROM schema_migrations");
    st.step();
    return static_cast<int>(st.column_int(0));
  }

  std::vector<std::string> table_names() override {
    auto st = c_.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY name");
    std::vector<std::string> out;
    while (st.step()) out.push_back(st.column_text(0));
    return out;
  }

  std::vector<std::string> column_names(std::string_view table_name) override {
    auto st = c_.prepare("SELECT name FROM pragma_table_info(?) ORDER BY cid");
    st.bind(1, table_name);
    std::vector<std::string> out;
    while (st.step()) out.push_back(st.column_text(0));
    return out;
  }

  std::size_t count(const transfer::table& t) override {
    auto st = c_.prepare("SELECT count(*) FROM \"" + std::string(t.name) + '"');
    st.step();
    return static_cast<std::size_t>(st.column_int(0));
  }

  std::vector<transfer::row> read(const transfer::table& t) override {
    auto st = c_.prepare("SELECT " + column_list(t) + " FROM \"" + std::string(t.name) + "\" ORDER BY " +
                         key_order(t));
    return read_rows(st, t.columns.size());
  }

  std::vector<transfer::row> documents_after(std::string_view after, std::size_t limit) override {
    const auto& t = transfer::table_named("documents");
    auto st = c_.prepare("SELECT " + column_list(t) + " FROM documents WHERE id > ? ORDER BY id LIMIT ?");
    st.bind(1, after).bind(2, static_cast<std::int64_t>(limit));
    return read_rows(st, t.columns.size());
  }

  std::vector<transfer::row> read_for_document(const transfer::table& t,
                                               std::string_view document_id) override {
    auto st = c_.prepare("SELECT " + column_list(t) + " FROM \"" + std::string(t.name) +
                         "\" WHERE document_id = ? ORDER BY " + key_order(t));
    st.bind(1, document_id);
    return read_rows(st, t.columns.size());
  }

private:
  connection c_;
};

}  // namespace

std::unique_ptr<transfer::source> open_transfer_source(const std::filesystem::path& path) {
  return std::make_unique<transfer_source>(path);
}

}  // namespace docflow::store::sqlite
