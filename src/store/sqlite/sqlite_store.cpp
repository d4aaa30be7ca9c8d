#include "store/sqlite/sqlite_store.hpp"

#include <sqlite3.h>

#include "core/clock.hpp"
#include "store/sqlite/connection.hpp"
#include "store/sqlite/migrations.hpp"

namespace docflow::store::sqlite {

namespace {
constexpr std::size_t max_idle_connections = 16;

std::int64_t to_ms(core::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

core::time_point from_ms(std::int64_t ms) { return core::time_point{std::chrono::milliseconds{ms}}; }

constexpr std::string_view user_columns = "id, username, password_hash, role, created_at";

core::user read_user(const statement& st) {
  return {st.column_text(0), st.column_text(1), st.column_text(2),
          core::parse_role(st.column_text(3)).value_or(core::role::user), from_ms(st.column_int(4))};
}

std::optional<core::user> one_user(connection& c, std::string_view where, std::string_view value) {
  auto st = c.prepare("SELECT " + std::string(user_columns) + " FROM users WHERE " + std::string(where));
  st.bind(1, value);
  if (!st.step()) {
    return std::nullopt;
  }
  return read_user(st);
}

void insert_token(connection& c, const refresh_grant& g) {
  c.prepare("INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES (?, ?, ?, ?)")
      .bind(1, g.token_hash)
      .bind(2, g.family_id)
      .bind(3, to_ms(g.issued_at))
      .bind(4, to_ms(g.expires_at))
      .step();
}

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

namespace docflow::store::sqlite {

bool sqlite_store::create_user(const core::user& u) {
  const lease c(*this);
  auto st = c->prepare(
      "INSERT INTO users (id, username, username_key, password_hash, role, created_at)"
      " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username_key) DO NOTHING");
  st.bind(1, u.id)
      .bind(2, u.username)
      .bind(3, core::username_key(u.username))
      .bind(4, u.password_hash)
      .bind(5, core::to_string(u.role))
      .bind(6, to_ms(u.created_at));
  st.step();
  return sqlite3_changes(c->handle()) == 1;
}

std::optional<core::user> sqlite_store::find_user_by_name(std::string_view username) {
  const lease c(*this);
  return one_user(*c, "username_key = ?", core::username_key(username));
}

std::optional<core::user> sqlite_store::find_user(std::string_view id) {
  const lease c(*this);
  return one_user(*c, "id = ?", id);
}

std::vector<core::user> sqlite_store::list_users() {
  const lease c(*this);
  auto st = c->prepare("SELECT " + std::string(user_columns) + " FROM users ORDER BY created_at, id");
  std::vector<core::user> out;
  while (st.step()) {
    out.push_back(read_user(st));
  }
  return out;
}

void sqlite_store::start_refresh_family(const refresh_grant& first) {
  const lease c(*this);
  transaction tx(*c);
  c->prepare("INSERT INTO refresh_families (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
      .bind(1, first.family_id)
      .bind(2, first.user_id)
      .bind(3, to_ms(first.issued_at))
      .bind(4, to_ms(first.expires_at))
      .step();
  insert_token(*c, first);
  tx.commit();
}

rotation_result sqlite_store::rotate_refresh_token(std::string_view presented_hash, refresh_grant successor,
                                                   std::chrono::milliseconds grace) {
  const lease c(*this);
  transaction tx(*c);
  auto st = c->prepare(
      "SELECT t.expires_at, t.used_at, f.revoked_at IS NOT NULL, f.id, f.user_id"
      " FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = ?");
  st.bind(1, presented_hash);
  if (!st.step()) {
    return {};
  }
  core::refresh_token_state state{from_ms(st.column_int(0)), std::nullopt, st.column_int(2) != 0};
  if (!st.column_is_null(1)) {
    state.used_at = from_ms(st.column_int(1));
  }
  successor.family_id = st.column_text(3);
  successor.user_id = st.column_text(4);
  const auto now = successor.issued_at;
  rotation_result result;
  result.decision = core::decide_rotation(state, now, grace);
  switch (result.decision) {
    case core::rotation_decision::reject: return result;
    case core::rotation_decision::reuse_detected:
      c->prepare("UPDATE refresh_families SET revoked_at = ? WHERE id = ?")
          .bind(1, to_ms(now))
          .bind(2, successor.family_id)
          .step();
      break;
    case core::rotation_decision::rotate:
      result.user = one_user(*c, "id = ?", successor.user_id);
      if (!result.user) {
        result.decision = core::rotation_decision::reject;  // the account is gone
        return result;
      }
      c->prepare("UPDATE refresh_tokens SET used_at = coalesce(used_at, ?) WHERE token_hash = ?")
          .bind(1, to_ms(now))
          .bind(2, presented_hash)
          .step();
      c->prepare("UPDATE refresh_families SET expires_at = ? WHERE id = ?")
          .bind(1, to_ms(successor.expires_at))
          .bind(2, successor.family_id)
          .step();
      insert_token(*c, successor);
      break;
  }
  tx.commit();
  return result;
}

void sqlite_store::revoke_refresh_family(std::string_view token_hash, core::time_point now) {
  const lease c(*this);
  c->prepare(
       "UPDATE refresh_families SET revoked_at = coalesce(revoked_at, ?)"
       " WHERE id = (SELECT family_id FROM refresh_tokens WHERE token_hash = ?)")
      .bind(1, to_ms(now))
      .bind(2, token_hash)
      .step();
}

std::size_t sqlite_store::purge_refresh_families(core::time_point now) {
  const lease c(*this);
  c->prepare("DELETE FROM refresh_families WHERE expires_at <= ?").bind(1, to_ms(now)).step();
  return static_cast<std::size_t>(sqlite3_changes(c->handle()));
}

}  // namespace docflow::store::sqlite
