#include "store/sqlite/sqlite_store.hpp"

#include "core/clock.hpp"
#include "store/sqlite/connection.hpp"
#include "store/sqlite/migrations.hpp"

namespace docflow::store::sqlite {

namespace {
constexpr std::size_t max_idle_connections = 16;

int read_version(connection& c) {
  auto st = c.prepare("SELECT coalesce(max(version), 0) FROM schema_migrations");
  st.step();
  return static_cast<int>(st.column_int(0));
}
}  // namespace

sqlite_store::lease::lease(sqlite_store& s) : s_(s) {
  {
    const std::lock_guard lock(s_.mutex_);
    if (!s_.idle_.empty()) {
      c_ = std::move(s_.idle_.back());
      s_.idle_.pop_back();
    }
  }
  if (!c_) {
    c_ = std::make_unique<connection>(s_.path_, true);
  }
}

sqlite_store::lease::~lease() {
  const std::lock_guard lock(s_.mutex_);
  if (s_.idle_.size() < max_idle_connections) {
    s_.idle_.push_back(std::move(c_));
  }
}

sqlite_store::sqlite_store(std::filesystem::path path) : path_(std::move(path)) {
  const lease first(*this);  // fail at start-up, not on the first request
}

sqlite_store::~sqlite_store() = default;

int sqlite_store::migrate() {
  const lease c(*this);
  c->exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)");
  for (const auto& m : migrations()) {
    transaction tx(*c);
    if (read_version(*c) >= m.version) {
      continue;  // applied earlier, or by a process that started with us
    }
    c->exec(m.sql);
    c->prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
        .bind(1, static_cast<std::int64_t>(m.version))
        .bind(2, m.name)
        .bind(3, core::format_rfc3339(core::system_clock().now()))
        .step();
    tx.commit();
  }
  return read_version(*c);
}

int sqlite_store::schema_version() {
  const lease c(*this);
  return read_version(*c);
}

void sqlite_store::check() {
  connection fresh(path_, false);
  read_version(fresh);
}

}  // namespace docflow::store::sqlite
