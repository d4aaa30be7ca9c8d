#include "store/sqlite/sqlite_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <utility>

#include "core/clock.hpp"
#include "core/ids.hpp"
#include "store/failure_record.hpp"
#include "store/sqlite/connection.hpp"
#include "store/sqlite/migrations.hpp"

namespace docflow::store::sqlite {

namespace {
constexpr std::size_t max_idle_connections = 16;

core::time_point from_ms(std::int64_t ms) { return core::time_point{std::chrono::milliseconds{ms}}; }

constexpr std::string_view user_columns = "id, username, password_hash, role, created_at";

// The user_columns from column `at` on.
core::user read_user(const statement& st, int at = 0) {
  return {st.column_text(at), st.column_text(at + 1), st.column_text(at + 2),
          core::parse_role(st.column_text(at + 3)).value_or(core::role::user),
          from_ms(st.column_int(at + 4))};
}

std::optional<core::user> one_user(connection& c, std::string_view where, std::string_view value) {
  auto st = c.prepare("SELECT " + std::string(user_columns) + " FROM users WHERE " + std::string(where));
  st.bind(1, value);
  if (!st.step()) {
    return std::nullopt;
  }
  return read_user(st);
}

// A limit as a users row stores it: NULL for the default, -1 for none.
core::limit_setting read_limit(const statement& st, int i) {
  if (st.column_is_null(i)) return {};
  const auto v = st.column_int(i);
  return {false, v < 0 ? std::nullopt : std::optional(static_cast<std::uint64_t>(v))};
}

void bind_limit(statement& st, int i, const core::limit_setting& l) {
  if (l.inherit) {
    st.bind_null(i);
  } else {
    st.bind(i, l.value ? static_cast<std::int64_t>(*l.value) : std::int64_t{-1});
  }
}

core::quota_state read_quota(connection& c, std::string_view user_id, const core::quota_limits& defaults) {
  auto st = c.prepare(
      "SELECT u.quota_bytes, u.quota_documents, coalesce(g.bytes, 0), coalesce(g.documents, 0)"
      " FROM users u LEFT JOIN user_usage g ON g.user_id = u.id WHERE u.id = ?");
  st.bind(1, user_id);
  core::quota_state q{{}, defaults};
  if (!st.step()) return q;
  q.limits = {core::apply(read_limit(st, 0), defaults.bytes),
              core::apply(read_limit(st, 1), defaults.documents)};
  q.usage = {static_cast<std::uint64_t>(st.column_int(2)), static_cast<std::uint64_t>(st.column_int(3))};
  return q;
}

// Thrown inside a transaction that would take a user past their quota.
struct over_quota {
  core::quota_state state;
};

void check_quota(connection& c, const core::document& d, const core::quota_limits& defaults) {
  auto q = read_quota(c, d.owner_id, defaults);
  if (!core::fits(q, d.size_bytes)) throw over_quota{q};
}

void insert_token(connection& c, const refresh_grant& g) {
  c.prepare("INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES (?, ?, ?, ?)")
      .bind(1, g.token_hash)
      .bind(2, g.family_id)
      .bind(3, core::to_unix_ms(g.issued_at))
      .bind(4, core::to_unix_ms(g.expires_at))
      .step();
}

constexpr std::string_view document_columns =
    "id, owner_id, filename, title, kind, size_bytes, sha256, status, created_at, updated_at, attempts,"
    " started_at, finished_at, error_code, error_message, error_retryable, stage";

std::optional<core::time_point> optional_time(const statement& st, int i) {
  if (st.column_is_null(i)) return std::nullopt;
  return from_ms(st.column_int(i));
}

constexpr std::string_view api_key_columns =
    "k.id, k.user_id, k.name, k.prefix, k.created_at, k.expires_at, k.last_used_at";

api_key read_api_key(const statement& st) {
  return {st.column_text(0),         st.column_text(1),    st.column_text(2),   st.column_text(3),
          from_ms(st.column_int(4)), optional_time(st, 5), optional_time(st, 6)};
}

core::document read_document(const statement& st) {
  core::document d;
  d.id = st.column_text(0);
  d.owner_id = st.column_text(1);
  d.filename = st.column_text(2);
  if (!st.column_is_null(3)) d.title = st.column_text(3);
  d.kind = core::parse_kind(st.column_text(4)).value();  // the CHECK constraint admits no other
  d.size_bytes = static_cast<std::uint64_t>(st.column_int(5));
  d.sha256 = st.column_text(6);
  d.status = core::parse_status(st.column_text(7)).value_or(core::status::uploaded);
  d.created_at = from_ms(st.column_int(8));
  d.updated_at = from_ms(st.column_int(9));
  d.attempts = static_cast<unsigned>(st.column_int(10));
  d.started_at = optional_time(st, 11);
  d.finished_at = optional_time(st, 12);
  if (!st.column_is_null(13)) {
    d.error = core::failure{st.column_text(13), st.column_text(14), st.column_int(15) != 0};
  }
  if (!st.column_is_null(16)) d.stage = st.column_text(16);
  return d;
}

std::optional<core::document> load_document(connection& c, std::string_view id,
                                            const std::optional<std::string>& owner_id) {
  // Built once: this runs on every GET /documents/{id}.
  static const std::string by_id = "SELECT " + std::string(document_columns) + " FROM documents WHERE id = ?";
  static const std::string by_id_and_owner = by_id + " AND owner_id = ?";
  auto st = c.prepare(owner_id ? by_id_and_owner : by_id);
  st.bind(1, id);
  if (owner_id) st.bind(2, *owner_id);
  if (!st.step()) return std::nullopt;
  return read_document(st);
}

void bind_optional(statement& st, int i, std::optional<unsigned> v) {
  if (v) {
    st.bind(i, static_cast<std::int64_t>(*v));
  } else {
    st.bind_null(i);
  }
}

// Appends the next event of a document (seq = previous + 1): a status
// change, or with `progress` a progress report.
void append_event(connection& c, std::string_view document_id, core::status status, core::time_point at,
                  const std::optional<core::failure>& error,
                  const std::optional<core::progress>& progress = std::nullopt) {
  auto st = c.prepare(
      "INSERT INTO document_events (document_id, seq, status, at, error, kind, stage, pages_done, "
      "pages_total)"
      " SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM document_events"
      " WHERE document_id = ?1");
  st.bind(1, document_id).bind(2, core::to_string(status)).bind(3, core::to_unix_ms(at));
  if (error) {
    st.bind(4, failure_record(*error));
  } else {
    st.bind_null(4);
  }
  if (progress) {
    st.bind(5, "progress").bind(6, progress->stage);
    bind_optional(st, 7, progress->pages_done);
    bind_optional(st, 8, progress->pages_total);
  } else {
    st.bind(5, "status").bind_null(6).bind_null(7).bind_null(8);
  }
  st.step();
}

// Every status change goes through the core state machine, then is logged
// as an event in the same transaction.
void transition(connection& c, const core::document& d, core::status to, core::time_point now,
                const std::optional<core::failure>& error) {
  if (!core::can_transition(d.status, to)) {
    throw store_error(std::string("illegal transition ") + core::to_string(d.status) + " -> " +
                      core::to_string(to));
  }
  auto st = c.prepare(
      "UPDATE documents SET status = ?, updated_at = ?,"
      " started_at = CASE WHEN ? = 'PROCESSING' THEN NULL ELSE started_at END,"
      " finished_at = CASE WHEN ? IN ('COMPLETED', 'FAILED') THEN ? ELSE NULL END,"
      " error_code = ?, error_message = ?, error_retryable = ?, stage = NULL WHERE id = ?");
  const auto name = core::to_string(to);
  st.bind(1, name).bind(2, core::to_unix_ms(now)).bind(3, name).bind(4, name).bind(5, core::to_unix_ms(now));
  if (error) {
    st.bind(6, error->code).bind(7, error->message).bind(8, static_cast<std::int64_t>(error->retryable));
  } else {
    st.bind_null(6).bind_null(7).bind_null(8);
  }
  st.bind(9, d.id).step();
  append_event(c, d.id, to, now, error);
}

// A delivery of an event to a webhook, to be sent from `at` on.
void insert_delivery(connection& c, std::string_view id, std::string_view webhook_id,
                     std::string_view event_id, core::time_point at) {
  const auto ms = core::to_unix_ms(at);
  c.prepare(
       "INSERT INTO webhook_deliveries (id, webhook_id, event_id, state, attempts, available_at, created_at,"
       " updated_at) VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)")
      .bind(1, id)
      .bind(2, webhook_id)
      .bind(3, event_id)
      .bind(4, ms)
      .bind(5, ms)
      .bind(6, ms)
      .step();
}

// The outbox: an event for the owner's webhooks subscribed to `type`, and
// one delivery to each, in the transaction of the status change itself, so
// that a change that rolls back sends nothing and one that commits is sent.
// No row at all when no webhook listens.
void record_webhook_event(connection& c, core::webhook_event type, const core::document& d,
                          core::status status, core::time_point at,
                          const std::optional<core::failure>& error) {
  auto subscribed = c.prepare("SELECT id FROM webhooks WHERE owner_id = ? AND (events & ?) != 0");
  subscribed.bind(1, d.owner_id).bind(2, static_cast<std::int64_t>(core::bit(type)));
  std::vector<std::string> hooks;
  while (subscribed.step()) hooks.push_back(subscribed.column_text(0));
  if (hooks.empty()) return;
  const auto event_id = core::new_uuid_v7();
  auto event = c.prepare(
      "INSERT INTO webhook_events (id, type, owner_id, document_id, status, error, created_at)"
      " VALUES (?, ?, ?, ?, ?, ?, ?)");
  event.bind(1, event_id)
      .bind(2, core::to_string(type))
      .bind(3, d.owner_id)
      .bind(4, d.id)
      .bind(5, core::to_string(status));
  if (error) {
    event.bind(6, failure_record(*error));
  } else {
    event.bind_null(6);
  }
  event.bind(7, core::to_unix_ms(at)).step();
  for (const auto& hook : hooks) insert_delivery(c, core::new_uuid_v7(), hook, event_id, at);
}

// True when `job` still holds its lease (same token, still running).
bool holds_lease(connection& c, const claimed_job& job) {
  auto st = c.prepare("SELECT 1 FROM jobs WHERE id = ? AND lease_token = ? AND state = 'running'");
  st.bind(1, job.job_id).bind(2, job.lease_token);
  return st.step();
}

int read_version(connection& c) {
  auto exists =
      c.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
  exists.step();
  if (exists.column_int(0) == 0) return 0;  // never migrated
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

namespace {

// Foreign keys off for the life of this guard (when `off`), back on after.
class foreign_keys_off {
public:
  foreign_keys_off(connection& c, bool off) : c_(off ? &c : nullptr) {
    if (c_) c_->exec("PRAGMA foreign_keys=OFF");
  }
  ~foreign_keys_off() {
    if (!c_) return;
    try {
      c_->exec("PRAGMA foreign_keys=ON");
    } catch (...) {
      std::terminate();  // a connection without its foreign keys must not serve
    }
  }
  foreign_keys_off(const foreign_keys_off&) = delete;
  foreign_keys_off& operator=(const foreign_keys_off&) = delete;

private:
  connection* c_;
};

}  // namespace

int sqlite_store::migrate() {
  const lease c(*this);
  c->exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)");
  for (const auto& m : migrations()) {
    // A migration that rebuilds a referenced table runs with foreign keys
    // off (dropping the old table would cascade otherwise) and has them all
    // checked before it commits. The pragma is a no-op inside a transaction.
    const bool keys_off = std::string_view(m.sql).starts_with("-- docflow: foreign-keys-off");
    const foreign_keys_off keys(*c, keys_off);
    transaction tx(*c);
    if (read_version(*c) >= m.version) {
      continue;  // applied earlier, or by a process that started with us
    }
    c->exec(m.sql);
    if (keys_off && c->prepare("PRAGMA foreign_key_check").step()) {
      throw store_error("migration " + std::to_string(m.version) + " broke a foreign key");
    }
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

int sqlite_store::known_schema_version() const {
  return migrations().empty() ? 0 : migrations().back().version;
}

void sqlite_store::check() {
  connection fresh(path_, false);
  read_version(fresh);
}

}  // namespace docflow::store::sqlite

namespace docflow::store::sqlite {

core::result<void> sqlite_store::create_user(const core::user& u) {
  const lease c(*this);
  auto st = c->prepare(
      "INSERT INTO users (id, username, username_key, password_hash, role, created_at)"
      " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username_key) DO NOTHING");
  st.bind(1, u.id)
      .bind(2, u.username)
      .bind(3, core::username_key(u.username))
      .bind(4, u.password_hash)
      .bind(5, core::to_string(u.role))
      .bind(6, core::to_unix_ms(u.created_at));
  st.step();
  if (sqlite3_changes(c->handle()) != 1) return core::errc::username_taken;
  return {};
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

core::quota_state sqlite_store::find_quota(std::string_view user_id) {
  const lease c(*this);
  return read_quota(*c, user_id, default_quota_);
}

bool sqlite_store::set_quota(std::string_view user_id, const std::optional<core::limit_setting>& bytes,
                             const std::optional<core::limit_setting>& documents) {
  const lease c(*this);
  auto st = c->prepare(
      "UPDATE users SET quota_bytes = CASE WHEN ?1 THEN ?2 ELSE quota_bytes END,"
      " quota_documents = CASE WHEN ?3 THEN ?4 ELSE quota_documents END WHERE id = ?5");
  st.bind(1, static_cast<std::int64_t>(bytes.has_value()));
  bind_limit(st, 2, bytes.value_or(core::limit_setting{}));
  st.bind(3, static_cast<std::int64_t>(documents.has_value()));
  bind_limit(st, 4, documents.value_or(core::limit_setting{}));
  st.bind(5, user_id).step();
  return sqlite3_changes(c->handle()) == 1;
}

core::result<void> sqlite_store::create_api_key(const api_key& k, std::string_view key_hash,
                                                std::size_t max_per_user) {
  const lease c(*this);
  transaction tx(*c);
  auto count = c->prepare("SELECT count(*) FROM api_keys WHERE user_id = ?");
  count.bind(1, k.user_id).step();
  if (static_cast<std::size_t>(count.column_int(0)) >= max_per_user) return core::errc::limit_reached;
  auto st = c->prepare(
      "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at, expires_at)"
      " VALUES (?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, k.id).bind(2, k.user_id).bind(3, k.name).bind(4, k.prefix).bind(5, key_hash);
  st.bind(6, core::to_unix_ms(k.created_at));
  if (k.expires_at) {
    st.bind(7, core::to_unix_ms(*k.expires_at));
  } else {
    st.bind_null(7);
  }
  st.step();
  tx.commit();
  return {};
}

std::vector<api_key> sqlite_store::list_api_keys(std::string_view user_id) {
  const lease c(*this);
  auto st = c->prepare("SELECT " + std::string(api_key_columns) +
                       " FROM api_keys k WHERE k.user_id = ? ORDER BY k.created_at, k.id");
  st.bind(1, user_id);
  std::vector<api_key> out;
  while (st.step()) out.push_back(read_api_key(st));
  return out;
}

bool sqlite_store::delete_api_key(std::string_view id, std::string_view user_id) {
  const lease c(*this);
  c->prepare("DELETE FROM api_keys WHERE id = ? AND user_id = ?").bind(1, id).bind(2, user_id).step();
  return sqlite3_changes(c->handle()) == 1;
}

std::optional<api_key_holder> sqlite_store::find_api_key(std::string_view key_hash) {
  // Every request made with a key runs it: the text is built once.
  static const std::string sql = "SELECT " + std::string(api_key_columns) +
                                 ", u.id, u.username, u.password_hash, u.role, u.created_at"
                                 " FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?";
  const lease c(*this);
  auto st = c->prepare(sql);
  st.bind(1, key_hash);
  if (!st.step()) return std::nullopt;
  return api_key_holder{read_api_key(st), read_user(st, 7)};
}

void sqlite_store::rehash_api_key(std::string_view id, std::string_view key_hash) {
  const lease c(*this);
  c->prepare("UPDATE api_keys SET key_hash = ? WHERE id = ?").bind(1, key_hash).bind(2, id).step();
}

void sqlite_store::touch_api_key(std::string_view id, core::time_point now,
                                 std::chrono::milliseconds interval) {
  const lease c(*this);
  c->prepare(
       "UPDATE api_keys SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at <= ?3)")
      .bind(1, core::to_unix_ms(now))
      .bind(2, id)
      .bind(3, core::to_unix_ms(now - interval))
      .step();
}

void sqlite_store::start_refresh_family(const refresh_grant& first) {
  const lease c(*this);
  transaction tx(*c);
  c->prepare("INSERT INTO refresh_families (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
      .bind(1, first.family_id)
      .bind(2, first.user_id)
      .bind(3, core::to_unix_ms(first.issued_at))
      .bind(4, core::to_unix_ms(first.expires_at))
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
          .bind(1, core::to_unix_ms(now))
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
          .bind(1, core::to_unix_ms(now))
          .bind(2, presented_hash)
          .step();
      c->prepare("UPDATE refresh_families SET expires_at = ? WHERE id = ?")
          .bind(1, core::to_unix_ms(successor.expires_at))
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
      .bind(1, core::to_unix_ms(now))
      .bind(2, token_hash)
      .step();
}

std::size_t sqlite_store::purge_refresh_families(core::time_point now) {
  const lease c(*this);
  c->prepare("DELETE FROM refresh_families WHERE expires_at <= ?").bind(1, core::to_unix_ms(now)).step();
  return static_cast<std::size_t>(sqlite3_changes(c->handle()));
}

}  // namespace docflow::store::sqlite

namespace docflow::store::sqlite {

namespace {
void insert_document_row(connection& c, const core::document& d) {
  auto st = c.prepare("INSERT INTO documents (" + std::string(document_columns) +
                      ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL)");
  st.bind(1, d.id).bind(2, d.owner_id).bind(3, d.filename);
  if (d.title) {
    st.bind(4, *d.title);
  } else {
    st.bind_null(4);
  }
  st.bind(5, core::kind_name(d.kind))
      .bind(6, static_cast<std::int64_t>(d.size_bytes))
      .bind(7, d.sha256)
      .bind(8, core::to_string(d.status))
      .bind(9, core::to_unix_ms(d.created_at))
      .bind(10, core::to_unix_ms(d.updated_at))
      .bind(11, static_cast<std::int64_t>(d.attempts));
  st.step();
  append_event(c, d.id, d.status, d.created_at, std::nullopt);
  record_webhook_event(c, core::webhook_event::document_uploaded, d, d.status, d.created_at, std::nullopt);
}

// Stores the answer for its claim; false when the claim is no longer the
// answer's (taken over by a retry).
bool record_answer(connection& c, const idempotent_answer& a) {
  c.prepare(
       "UPDATE idempotency_keys SET state = 'done', status = ?, body = ?, content_type = ?, location = ?"
       " WHERE user_id = ? AND key = ? AND claim = ? AND state = 'in_flight'")
      .bind(1, static_cast<std::int64_t>(a.status))
      .bind(2, a.body)
      .bind(3, a.content_type)
      .bind(4, a.location)
      .bind(5, a.user_id)
      .bind(6, a.key)
      .bind(7, a.claim)
      .step();
  return sqlite3_changes(c.handle()) == 1;
}

// Thrown inside a batch of inserts to roll back one whose idempotency claim
// was taken over; its caller gets idempotency_key_in_flight.
struct claim_lost {};

void insert_with_answer(connection& c, const core::document& d, const idempotent_answer* answer,
                        const core::quota_limits& defaults) {
  check_quota(c, d, defaults);
  insert_document_row(c, d);
  if (answer && !record_answer(c, *answer)) throw claim_lost{};
}
}  // namespace

struct sqlite_store::pending_insert {
  const core::document& doc;
  const idempotent_answer* answer;
  std::exception_ptr error;
  bool done = false;
};

core::result<void> sqlite_store::insert_document(const core::document& d, const idempotent_answer* answer) {
  pending_insert me{d, answer, nullptr};
  std::unique_lock lock(inserts_mutex_);
  inserts_queued_.push_back(&me);
  while (!me.done) {
    if (inserts_leader_) {
      inserts_done_.wait(lock);
      continue;
    }
    inserts_leader_ = true;
    const auto batch = std::exchange(inserts_queued_, {});
    lock.unlock();
    insert_batch(batch);  // never throws: each caller gets its own outcome
    lock.lock();
    for (auto* p : batch) p->done = true;
    inserts_leader_ = false;
    inserts_done_.notify_all();
  }
  if (me.error) {
    try {
      std::rethrow_exception(me.error);
    } catch (const claim_lost&) {
      return core::errc::idempotency_key_in_flight;
    } catch (const over_quota& o) {
      return core::quota_exceeded(o.state);
    }
  }
  return {};
}

void sqlite_store::insert_batch(const std::vector<pending_insert*>& batch) {
  try {
    const lease c(*this);
    transaction tx(*c);
    for (const auto* p : batch) insert_with_answer(*c, p->doc, p->answer, default_quota_);
    tx.commit();
    return;
  } catch (...) {
    if (batch.size() == 1) {
      batch.front()->error = std::current_exception();
      return;
    }
  }
  // One bad row (or a failed commit) must not fail the others: one by one.
  for (auto* p : batch) {
    try {
      const lease c(*this);
      transaction tx(*c);
      insert_with_answer(*c, p->doc, p->answer, default_quota_);
      tx.commit();
    } catch (...) {
      p->error = std::current_exception();
    }
  }
}

std::optional<core::document> sqlite_store::find_document(std::string_view id,
                                                          const std::optional<std::string>& owner_id) {
  const lease c(*this);
  return load_document(*c, id, owner_id);
}

std::vector<core::document> sqlite_store::list_documents(const document_query& q) {
  std::string sql = "SELECT " + std::string(document_columns) + " FROM documents WHERE 1 = 1";
  if (q.owner_id) sql += " AND owner_id = ?";
  if (q.status) sql += " AND status = ?";
  if (q.after) sql += " AND (created_at, id) < (?, ?)";
  sql += " ORDER BY created_at DESC, id DESC LIMIT ?";
  const lease c(*this);
  auto st = c->prepare(sql);
  int i = 0;
  if (q.owner_id) st.bind(++i, *q.owner_id);
  if (q.status) st.bind(++i, core::to_string(*q.status));
  if (q.after) {
    st.bind(++i, core::to_unix_ms(q.after->first));
    st.bind(++i, q.after->second);
  }
  st.bind(++i, static_cast<std::int64_t>(q.limit));
  std::vector<core::document> out;
  while (st.step()) {
    out.push_back(read_document(st));
  }
  return out;
}

core::result<void> sqlite_store::delete_document(std::string_view id,
                                                 const std::optional<std::string>& owner_id) {
  const lease c(*this);
  transaction tx(*c);
  auto st = c->prepare(std::string("SELECT status FROM documents WHERE id = ?") +
                       (owner_id ? " AND owner_id = ?" : ""));
  st.bind(1, id);
  if (owner_id) st.bind(2, *owner_id);
  if (!st.step()) return core::errc::not_found;
  const auto status = core::parse_status(st.column_text(0)).value_or(core::status::processing);
  if (!core::can_delete(status)) {
    core::error busy(core::errc::document_busy);
    busy.document_status = status;
    return busy;
  }
  c->prepare("DELETE FROM documents WHERE id = ?").bind(1, id).step();
  tx.commit();
  return {};
}

}  // namespace docflow::store::sqlite

namespace docflow::store::sqlite {

core::result<process_result> sqlite_store::request_processing(std::string_view document_id,
                                                              const std::optional<std::string>& owner_id,
                                                              const std::string& job_id, core::time_point now,
                                                              std::uint64_t max_queued, bool force) {
  const lease c(*this);
  transaction tx(*c);
  auto doc = load_document(*c, document_id, owner_id);
  if (!doc) return core::errc::not_found;
  if (doc->status == core::status::completed && !force) {
    return process_result{process_outcome::completed, *doc};
  }
  if (doc->status == core::status::processing)
    return process_result{process_outcome::already_processing, *doc};
  auto depth = c->prepare("SELECT count(*) FROM jobs WHERE state = 'queued'");
  depth.step();
  if (static_cast<std::uint64_t>(depth.column_int(0)) >= max_queued) return core::errc::queue_full;
  transition(*c, *doc, core::status::processing, now, std::nullopt);
  c->prepare(
       "INSERT INTO jobs (id, document_id, state, attempts, available_at, created_at, updated_at, owner_id)"
       " VALUES (?1, ?2, 'queued', 0, ?3, ?3, ?3, ?4)")
      .bind(1, job_id)
      .bind(2, doc->id)
      .bind(3, core::to_unix_ms(now))
      .bind(4, doc->owner_id)
      .step();
  // As PostgreSQL's trigger does: every owner with a job has its row.
  c->prepare("INSERT OR IGNORE INTO job_owners (owner_id) VALUES (?)").bind(1, doc->owner_id).step();
  auto after = load_document(*c, document_id, owner_id);
  tx.commit();
  return process_result{process_outcome::accepted, std::move(*after)};
}

// The lapsed lease first; otherwise the least recently served owner that has
// a job available (and, with a limit, fewer running jobs than it) gives its
// oldest one. The owners are walked through jobs_owner_queued, one index
// probe per owner with queued jobs, never job by job; the write lock makes
// the count of running jobs exact.
std::optional<claimed_job> sqlite_store::claim_job(core::time_point now, std::chrono::milliseconds lease_for,
                                                   const std::string& lease_token,
                                                   unsigned max_running_per_owner) {
  const lease c(*this);
  transaction tx(*c);
  claimed_job job;
  std::string document_id;
  std::optional<std::string> owner_id;
  const auto take = [&](statement& st) {
    if (!st.step()) return false;
    job.job_id = st.column_text(0);
    document_id = st.column_text(1);
    job.attempt = static_cast<unsigned>(st.column_int(2)) + 1;
    job.queued_at = from_ms(st.column_int(3));
    if (!st.column_is_null(4)) owner_id = st.column_text(4);
    return true;
  };
  auto lapsed = c->prepare(
      "SELECT id, document_id, attempts, available_at, owner_id FROM jobs"
      " WHERE state = 'running' AND lease_expires_at < ? LIMIT 1");
  lapsed.bind(1, core::to_unix_ms(now));
  job.taken_over = take(lapsed);
  if (!job.taken_over) {
    auto next = c->prepare(
        "WITH RECURSIVE o(owner_id) AS ("
        " SELECT (SELECT owner_id FROM jobs WHERE state = 'queued' AND owner_id IS NOT NULL"
        " ORDER BY owner_id LIMIT 1)"
        " UNION ALL SELECT (SELECT owner_id FROM jobs WHERE state = 'queued' AND owner_id > o.owner_id"
        " ORDER BY owner_id LIMIT 1) FROM o WHERE o.owner_id IS NOT NULL),"
        " chosen AS (SELECT o.owner_id FROM o LEFT JOIN job_owners w ON w.owner_id = o.owner_id"
        " WHERE o.owner_id IS NOT NULL"
        " AND (SELECT available_at FROM jobs WHERE state = 'queued' AND owner_id = o.owner_id"
        " ORDER BY available_at LIMIT 1) <= ?1"
        " AND (?2 = 0 OR (SELECT count(*) FROM jobs WHERE state = 'running' AND owner_id = o.owner_id"
        " AND lease_expires_at >= ?1) < ?2)"
        " ORDER BY coalesce(w.served, 0), o.owner_id LIMIT 1)"
        " SELECT id, document_id, attempts, available_at, owner_id FROM jobs"
        " WHERE state = 'queued' AND owner_id = (SELECT owner_id FROM chosen) AND available_at <= ?1"
        " ORDER BY available_at LIMIT 1");
    next.bind(1, core::to_unix_ms(now)).bind(2, static_cast<std::int64_t>(max_running_per_owner));
    if (!take(next)) return std::nullopt;
  }
  if (owner_id) {
    c->prepare(
         "INSERT INTO job_owners (owner_id, served) VALUES (?1, (SELECT coalesce(max(served), 0) + 1 FROM "
         "job_owners)) ON CONFLICT (owner_id) DO UPDATE SET served = excluded.served")
        .bind(1, *owner_id)
        .step();
  }
  job.lease_token = lease_token;
  c->prepare(
       "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = ?, lease_expires_at = ?,"
       " updated_at = ? WHERE id = ?")
      .bind(1, lease_token)
      .bind(2, core::to_unix_ms(now + lease_for))
      .bind(3, core::to_unix_ms(now))
      .bind(4, job.job_id)
      .step();
  c->prepare(
       "UPDATE documents SET attempts = attempts + 1, started_at = coalesce(started_at, ?), updated_at = ?"
       " WHERE id = ?")
      .bind(1, core::to_unix_ms(now))
      .bind(2, core::to_unix_ms(now))
      .bind(3, document_id)
      .step();
  auto doc = load_document(*c, document_id, std::nullopt);
  if (!doc) return std::nullopt;  // cannot happen: jobs cascade with their document
  job.document = std::move(*doc);
  tx.commit();
  return job;
}

bool sqlite_store::lease_held(const claimed_job& job) {
  const lease c(*this);
  return holds_lease(*c, job);
}

bool sqlite_store::renew_lease(const claimed_job& job, core::time_point now,
                               std::chrono::milliseconds lease_for) {
  const lease c(*this);
  c->prepare("UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND state = 'running'")
      .bind(1, core::to_unix_ms(now + lease_for))
      .bind(2, job.job_id)
      .bind(3, job.lease_token)
      .step();
  return sqlite3_changes(c->handle()) == 1;
}

bool sqlite_store::report_progress(const claimed_job& job, const core::progress& p, core::time_point now) {
  const lease c(*this);
  transaction tx(*c);
  if (!holds_lease(*c, job)) return false;
  c->prepare("UPDATE documents SET stage = ? WHERE id = ?").bind(1, p.stage).bind(2, job.document.id).step();
  append_event(*c, job.document.id, core::status::processing, now, std::nullopt, p);
  tx.commit();
  return true;
}

bool sqlite_store::complete_job(const claimed_job& job, const stored_result& r) {
  const lease c(*this);
  transaction tx(*c);
  if (!holds_lease(*c, job)) return false;
  auto doc = load_document(*c, job.document.id, std::nullopt);
  if (!doc) return false;
  c->prepare(
       "INSERT OR REPLACE INTO results (document_id, pipeline_version, started_at, completed_at, attempts, "
       "summary, text, text_preview, text_bytes)"
       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, substr(?7, 1, 500), length(CAST(?7 AS BLOB)))")
      .bind(1, doc->id)
      .bind(2, r.pipeline_version)
      .bind(3, core::to_unix_ms(r.started_at))
      .bind(4, core::to_unix_ms(r.completed_at))
      .bind(5, static_cast<std::int64_t>(r.attempts))
      .bind(6, r.summary_json)
      .bind(7, r.text)
      .step();
  c->prepare("UPDATE jobs SET state = 'done', lease_token = NULL, updated_at = ? WHERE id = ?")
      .bind(1, core::to_unix_ms(r.completed_at))
      .bind(2, job.job_id)
      .step();
  transition(*c, *doc, core::status::completed, r.completed_at, std::nullopt);
  record_webhook_event(*c, core::webhook_event::document_completed, *doc, core::status::completed,
                       r.completed_at, std::nullopt);
  tx.commit();
  return true;
}

failure_outcome sqlite_store::fail_job(const claimed_job& job, core::time_point now,
                                       const core::failure& failure,
                                       std::optional<core::time_point> retry_at) {
  const lease c(*this);
  transaction tx(*c);
  if (!holds_lease(*c, job)) return failure_outcome::lease_lost;
  if (retry_at) {
    c->prepare(
         "UPDATE jobs SET state = 'queued', available_at = ?, lease_token = NULL, lease_expires_at = NULL,"
         " updated_at = ? WHERE id = ?")
        .bind(1, core::to_unix_ms(*retry_at))
        .bind(2, core::to_unix_ms(now))
        .bind(3, job.job_id)
        .step();
    // Queued again: no stage runs until the next claim.
    c->prepare("UPDATE documents SET stage = NULL WHERE id = ?").bind(1, job.document.id).step();
    tx.commit();
    return failure_outcome::retry_scheduled;
  }
  auto doc = load_document(*c, job.document.id, std::nullopt);
  if (!doc) return failure_outcome::lease_lost;
  c->prepare("UPDATE jobs SET state = 'failed', lease_token = NULL, updated_at = ? WHERE id = ?")
      .bind(1, core::to_unix_ms(now))
      .bind(2, job.job_id)
      .step();
  transition(*c, *doc, core::status::failed, now, failure);
  record_webhook_event(*c, core::webhook_event::document_failed, *doc, core::status::failed, now, failure);
  tx.commit();
  return failure_outcome::failed;
}

core::result<cancel_result> sqlite_store::cancel_processing(std::string_view document_id,
                                                            const std::optional<std::string>& owner_id,
                                                            const core::failure& failure,
                                                            core::time_point now) {
  const lease c(*this);
  transaction tx(*c);
  auto doc = load_document(*c, document_id, owner_id);
  if (!doc) return core::errc::not_found;
  if (doc->status != core::status::processing) {
    core::error refused(core::errc::not_processing);
    refused.document_status = doc->status;
    return refused;
  }
  auto live = c->prepare("SELECT id FROM jobs WHERE document_id = ? AND state IN ('queued', 'running')");
  live.bind(1, doc->id);
  std::string job_id = live.step() ? live.column_text(0) : std::string();
  c->prepare(
       "UPDATE jobs SET state = 'cancelled', lease_token = NULL, updated_at = ?"
       " WHERE document_id = ? AND state IN ('queued', 'running')")
      .bind(1, core::to_unix_ms(now))
      .bind(2, doc->id)
      .step();
  transition(*c, *doc, core::status::failed, now, failure);
  record_webhook_event(*c, core::webhook_event::document_failed, *doc, core::status::failed, now, failure);
  auto after = load_document(*c, document_id, owner_id);
  tx.commit();
  return cancel_result{std::move(*after), std::move(job_id)};
}

std::optional<stored_result> sqlite_store::find_result(std::string_view document_id) {
  const lease c(*this);
  auto st = c->prepare(
      "SELECT pipeline_version, started_at, completed_at, attempts, summary, text_preview, text_bytes"
      " FROM results WHERE document_id = ?");
  st.bind(1, document_id);
  if (!st.step()) return std::nullopt;
  return stored_result{st.column_text(0),         from_ms(st.column_int(1)),
                       from_ms(st.column_int(2)), static_cast<unsigned>(st.column_int(3)),
                       st.column_text(4),         {},
                       st.column_text(5),         static_cast<std::uint64_t>(st.column_int(6))};
}

// Incremental blob I/O reads only the pages that hold the range; a plain
// SELECT (or substr()) would load the whole text first.
std::optional<std::string> sqlite_store::read_result_text(std::string_view document_id,
                                                          core::time_point completed_at, std::uint64_t offset,
                                                          std::size_t max) {
  const lease c(*this);
  auto st = c->prepare("SELECT rowid FROM results WHERE document_id = ? AND completed_at = ?");
  st.bind(1, document_id).bind(2, core::to_unix_ms(completed_at));
  if (!st.step()) return std::nullopt;
  sqlite3_blob* blob = nullptr;
  if (sqlite3_blob_open(c->handle(), "main", "results", "text", st.column_int(0), 0, &blob) != SQLITE_OK) {
    sqlite3_blob_close(blob);
    throw store_error(std::string("open result text: ") + sqlite3_errmsg(c->handle()));
  }
  const auto size = static_cast<std::uint64_t>(sqlite3_blob_bytes(blob));
  std::string out;
  if (offset < size) {
    out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(max, size - offset)));
    const int rc =
        sqlite3_blob_read(blob, out.data(), static_cast<int>(out.size()), static_cast<int>(offset));
    if (rc != SQLITE_OK) {
      sqlite3_blob_close(blob);
      throw store_error(std::string("read result text: ") + sqlite3_errstr(rc));
    }
  }
  sqlite3_blob_close(blob);
  return out;
}

std::vector<document_event> sqlite_store::events_after(std::string_view document_id, std::int64_t after) {
  const lease c(*this);
  auto st = c->prepare(
      "SELECT seq, status, at, error, kind, stage, pages_done, pages_total FROM document_events"
      " WHERE document_id = ? AND seq > ? ORDER BY seq");
  st.bind(1, document_id).bind(2, after);
  std::vector<document_event> out;
  const auto count = [&st](int i) -> std::optional<unsigned> {
    if (st.column_is_null(i)) return std::nullopt;
    return static_cast<unsigned>(st.column_int(i));
  };
  while (st.step()) {
    document_event e;
    e.seq = st.column_int(0);
    e.status = core::parse_status(st.column_text(1)).value_or(core::status::uploaded);
    e.at = from_ms(st.column_int(2));
    if (!st.column_is_null(3)) e.error = parse_failure_record(st.column_text(3));
    if (st.column_text(4) == "progress") e.progress = core::progress{st.column_text(5), count(6), count(7)};
    out.push_back(std::move(e));
  }
  return out;
}

// The position is the rowid of document_events, which grows with each
// insert. SQLite may reuse the largest rowid after that row is deleted (its
// document deleted), so a change can, rarely, go unseen here; the streams'
// own heartbeat query catches it.
database::changed_documents sqlite_store::documents_with_events_since(std::int64_t position,
                                                                      std::size_t limit) {
  const lease c(*this);
  changed_documents out;
  if (position < 0) {
    auto st = c->prepare("SELECT coalesce(max(rowid), 0) FROM document_events");
    st.step();
    out.next = st.column_int(0);
    return out;
  }
  out.next = position;
  auto st =
      c->prepare("SELECT rowid, document_id FROM document_events WHERE rowid > ? ORDER BY rowid LIMIT ?");
  st.bind(1, position).bind(2, static_cast<std::int64_t>(limit));
  while (st.step()) {
    out.next = st.column_int(0);
    out.ids.push_back(st.column_text(1));
  }
  return out;
}

queue_stats sqlite_store::job_stats() {
  const lease c(*this);
  auto st = c->prepare(
      "SELECT coalesce(sum(state = 'queued'), 0), coalesce(sum(state = 'running'), 0),"
      " min(CASE WHEN state = 'queued' THEN available_at END) FROM jobs WHERE state IN ('queued', "
      "'running')");
  st.step();
  return {static_cast<std::uint64_t>(st.column_int(0)), static_cast<std::uint64_t>(st.column_int(1)),
          st.column_is_null(2) ? std::nullopt : std::optional(from_ms(st.column_int(2)))};
}

core::result<idempotency_claim> sqlite_store::begin_idempotent(std::string_view user_id, std::string_view key,
                                                               std::string_view fingerprint,
                                                               core::time_point now,
                                                               std::chrono::milliseconds ttl,
                                                               std::chrono::milliseconds abandoned_after) {
  const lease c(*this);
  transaction tx(*c);
  // An expired key is forgotten; so is a claim left in flight too long,
  // which only a process that died mid-request leaves behind (its answer,
  // had it committed a document, would have been stored with it).
  c->prepare(
       "DELETE FROM idempotency_keys WHERE user_id = ? AND key = ?"
       " AND (expires_at <= ? OR (state = 'in_flight' AND created_at <= ?))")
      .bind(1, user_id)
      .bind(2, key)
      .bind(3, core::to_unix_ms(now))
      .bind(4, core::to_unix_ms(now - abandoned_after))
      .step();
  auto st = c->prepare(
      "SELECT fingerprint, state, status, body, content_type, location FROM idempotency_keys"
      " WHERE user_id = ? AND key = ?");
  st.bind(1, user_id).bind(2, key);
  if (st.step()) {
    if (st.column_text(0) != fingerprint) return core::errc::idempotency_key_reused;
    if (st.column_text(1) == "in_flight") return core::errc::idempotency_key_in_flight;
    return idempotency_claim{idempotency_claim::kind::replay,
                             static_cast<int>(st.column_int(2)),
                             st.column_text(3),
                             st.column_text(4),
                             st.column_text(5),
                             {}};
  }
  idempotency_claim claim;
  claim.token = core::random_hex(16);
  c->prepare(
       "INSERT INTO idempotency_keys (user_id, key, fingerprint, state, created_at, expires_at, claim)"
       " VALUES (?, ?, ?, 'in_flight', ?, ?, ?)")
      .bind(1, user_id)
      .bind(2, key)
      .bind(3, fingerprint)
      .bind(4, core::to_unix_ms(now))
      .bind(5, core::to_unix_ms(now + ttl))
      .bind(6, claim.token)
      .step();
  tx.commit();
  return claim;
}

void sqlite_store::finish_idempotent(const idempotent_answer& answer) {
  const lease c(*this);
  record_answer(*c, answer);
}

void sqlite_store::abandon_idempotent(std::string_view user_id, std::string_view key,
                                      std::string_view claim) {
  const lease c(*this);
  c->prepare(
       "DELETE FROM idempotency_keys WHERE user_id = ? AND key = ? AND claim = ? AND state = 'in_flight'")
      .bind(1, user_id)
      .bind(2, key)
      .bind(3, claim)
      .step();
}

std::size_t sqlite_store::purge_idempotency_keys(core::time_point now) {
  const lease c(*this);
  c->prepare("DELETE FROM idempotency_keys WHERE expires_at <= ?").bind(1, core::to_unix_ms(now)).step();
  return static_cast<std::size_t>(sqlite3_changes(c->handle()));
}

}  // namespace docflow::store::sqlite

namespace docflow::store::sqlite {

namespace {

// When the keys next allow an attempt, if one of them refuses one at `now`:
// the latest of the refusing keys' oldest attempts still in their window.
std::optional<core::time_point> refused_until(connection& c, std::span<const attempt_key> keys,
                                              core::time_point now) {
  std::optional<core::time_point> until;
  for (const auto& k : keys) {
    auto st = c.prepare(
        "SELECT count(*), min(leaves_at) FROM throttle_attempts WHERE scope = ? AND key = ? AND leaves_at > "
        "?");
    st.bind(1, k.scope).bind(2, k.key).bind(3, core::to_unix_ms(now));
    st.step();
    if (st.column_int(0) < static_cast<std::int64_t>(k.limit)) continue;
    const auto frees = from_ms(st.column_int(1));
    until = until ? std::max(*until, frees) : frees;
  }
  return until;
}

// flock(2) on a file beside the database: one holder among the processes of
// this machine, the only ones that can share a SQLite file. The kernel
// releases it when the descriptor closes, however the process ends.
class file_lease final : public maintenance_lease {
public:
  explicit file_lease(int fd) noexcept : fd_(fd) {}
  ~file_lease() override { ::close(fd_); }
  file_lease(const file_lease&) = delete;
  file_lease& operator=(const file_lease&) = delete;

private:
  int fd_;
};

}  // namespace

// BEGIN IMMEDIATE takes the write lock first: no other attempt is counted
// between this one's count and its insert. Attempts are written without
// waiting for the disk (a relaxed commit): a power cut forgets the last few,
// which costs no security worth an fsync on every login.
std::optional<core::time_point> sqlite_store::count_attempt(std::span<const attempt_key> keys,
                                                            core::time_point now,
                                                            std::chrono::milliseconds window) {
  const lease c(*this);
  transaction tx(*c, durability::relaxed);
  if (auto until = refused_until(*c, keys, now)) return until;
  for (const auto& k : keys) {
    c->prepare("INSERT INTO throttle_attempts (scope, key, leaves_at) VALUES (?, ?, ?)")
        .bind(1, k.scope)
        .bind(2, k.key)
        .bind(3, core::to_unix_ms(now + window))
        .step();
  }
  tx.commit();
  return std::nullopt;
}

std::optional<core::time_point> sqlite_store::attempts_refused_until(std::span<const attempt_key> keys,
                                                                     core::time_point now) {
  const lease c(*this);
  return refused_until(*c, keys, now);
}

void sqlite_store::release_attempts(std::span<const attempt_release> releases) {
  const lease c(*this);
  transaction tx(*c, durability::relaxed);
  for (const auto& r : releases) {
    c->prepare(r.all ? "DELETE FROM throttle_attempts WHERE scope = ?1 AND key = ?2"
                     : "DELETE FROM throttle_attempts WHERE rowid = (SELECT rowid FROM throttle_attempts"
                       " WHERE scope = ?1 AND key = ?2 ORDER BY leaves_at DESC LIMIT 1)")
        .bind(1, r.scope)
        .bind(2, r.key)
        .step();
  }
  tx.commit();
}

std::size_t sqlite_store::purge_attempts(core::time_point now) {
  const lease c(*this);
  transaction tx(*c);
  std::size_t keys = 0;
  {
    auto gone = c->prepare(
        "SELECT count(*) FROM (SELECT 1 FROM throttle_attempts GROUP BY scope, key HAVING max(leaves_at) <= "
        "?)");
    gone.bind(1, core::to_unix_ms(now)).step();
    keys = static_cast<std::size_t>(gone.column_int(0));
  }
  c->prepare("DELETE FROM throttle_attempts WHERE leaves_at <= ?").bind(1, core::to_unix_ms(now)).step();
  tx.commit();
  return keys;
}

std::unique_ptr<maintenance_lease> sqlite_store::try_maintenance_lease() {
  return try_file_lease("-maintenance");
}

std::unique_ptr<maintenance_lease> sqlite_store::try_maintenance_leadership() {
  return try_file_lease("-leader");
}

std::unique_ptr<maintenance_lease> sqlite_store::try_file_lease(std::string_view suffix) {
  const auto path = path_.string() + std::string(suffix);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw store_error("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) return nullptr;
    throw store_error("cannot lock " + path + ": " + std::strerror(error));
  }
  return std::make_unique<file_lease>(fd);
}

// --- resumable uploads

namespace {
constexpr std::string_view upload_columns =
    "id, owner_id, length, received, metadata, idempotency_key, fingerprint, store_state, hash_state,"
    " created_at, expires_at, answer_status, answer_body, answer_content_type";

upload_record read_upload(const statement& st) {
  upload_record u;
  u.id = st.column_text(0);
  u.owner_id = st.column_text(1);
  u.length = static_cast<std::uint64_t>(st.column_int(2));
  u.offset = static_cast<std::uint64_t>(st.column_int(3));
  u.metadata = st.column_text(4);
  if (!st.column_is_null(5)) u.idempotency_key = st.column_text(5);
  u.fingerprint = st.column_text(6);
  u.store_state = st.column_text(7);
  u.hash_state = st.column_text(8);
  u.created_at = from_ms(st.column_int(9));
  u.expires_at = from_ms(st.column_int(10));
  u.answer_status = static_cast<int>(st.column_int(11));
  u.answer_body = st.column_text(12);
  u.answer_content_type = st.column_text(13);
  return u;
}

std::optional<upload_record> load_upload(connection& c, std::string_view id,
                                         const std::optional<std::string>& owner_id) {
  auto st = c.prepare("SELECT " + std::string(upload_columns) + " FROM uploads WHERE id = ?" +
                      (owner_id ? " AND owner_id = ?" : ""));
  st.bind(1, id);
  if (owner_id) st.bind(2, *owner_id);
  if (!st.step()) return std::nullopt;
  return read_upload(st);
}
}  // namespace

upload_record sqlite_store::create_upload(const upload_record& u) {
  const lease c(*this);
  transaction tx(*c);
  if (u.idempotency_key) {
    auto st = c->prepare("SELECT " + std::string(upload_columns) +
                         " FROM uploads WHERE owner_id = ? AND idempotency_key = ?");
    st.bind(1, u.owner_id).bind(2, *u.idempotency_key);
    if (st.step()) return read_upload(st);
  }
  auto st = c->prepare("INSERT INTO uploads (" + std::string(upload_columns) +
                       ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, u.id)
      .bind(2, u.owner_id)
      .bind(3, static_cast<std::int64_t>(u.length))
      .bind(4, static_cast<std::int64_t>(u.offset))
      .bind(5, u.metadata);
  if (u.idempotency_key) {
    st.bind(6, *u.idempotency_key);
  } else {
    st.bind_null(6);
  }
  st.bind(7, u.fingerprint)
      .bind(8, u.store_state)
      .bind(9, u.hash_state)
      .bind(10, core::to_unix_ms(u.created_at))
      .bind(11, core::to_unix_ms(u.expires_at))
      .bind(12, static_cast<std::int64_t>(u.answer_status))
      .bind(13, u.answer_body)
      .bind(14, u.answer_content_type)
      .step();
  tx.commit();
  return u;
}

std::optional<upload_record> sqlite_store::find_upload(std::string_view id,
                                                       const std::optional<std::string>& owner_id) {
  const lease c(*this);
  return load_upload(*c, id, owner_id);
}

upload_lock sqlite_store::lock_upload(std::string_view id, const std::optional<std::string>& owner_id,
                                      std::string_view token, core::time_point now,
                                      std::chrono::milliseconds lease_for) {
  const lease c(*this);
  transaction tx(*c);
  auto found = load_upload(*c, id, owner_id);
  if (!found) return {};
  c->prepare(
       "UPDATE uploads SET lock_token = ?, locked_until = ?"
       " WHERE id = ? AND (lock_token IS NULL OR locked_until <= ?)")
      .bind(1, token)
      .bind(2, core::to_unix_ms(now + lease_for))
      .bind(3, id)
      .bind(4, core::to_unix_ms(now))
      .step();
  if (sqlite3_changes(c->handle()) != 1) return {upload_lock::kind::busy, {}};
  tx.commit();
  return {upload_lock::kind::locked, std::move(*found)};
}

bool sqlite_store::renew_upload_lock(std::string_view id, std::string_view token, core::time_point now,
                                     std::chrono::milliseconds lease_for) {
  const lease c(*this);
  c->prepare("UPDATE uploads SET locked_until = ? WHERE id = ? AND lock_token = ?")
      .bind(1, core::to_unix_ms(now + lease_for))
      .bind(2, id)
      .bind(3, token)
      .step();
  return sqlite3_changes(c->handle()) == 1;
}

bool sqlite_store::advance_upload(const upload_record& u, std::string_view token) {
  const lease c(*this);
  c->prepare(
       "UPDATE uploads SET received = ?, store_state = ?, hash_state = ?, expires_at = ?"
       " WHERE id = ? AND lock_token = ?")
      .bind(1, static_cast<std::int64_t>(u.offset))
      .bind(2, u.store_state)
      .bind(3, u.hash_state)
      .bind(4, core::to_unix_ms(u.expires_at))
      .bind(5, u.id)
      .bind(6, token)
      .step();
  return sqlite3_changes(c->handle()) == 1;
}

void sqlite_store::unlock_upload(std::string_view id, std::string_view token) {
  const lease c(*this);
  c->prepare("UPDATE uploads SET lock_token = NULL, locked_until = NULL WHERE id = ? AND lock_token = ?")
      .bind(1, id)
      .bind(2, token)
      .step();
}

core::result<void> sqlite_store::finish_upload(const upload_record& u, std::string_view token,
                                               const core::document* doc) {
  const lease c(*this);
  transaction tx(*c);
  if (doc) {
    try {
      check_quota(*c, *doc, default_quota_);
    } catch (const over_quota& o) {
      return core::quota_exceeded(o.state);
    }
  }
  c->prepare(
       "UPDATE uploads SET received = ?, answer_status = ?, answer_body = ?, answer_content_type = ?,"
       " lock_token = NULL, locked_until = NULL WHERE id = ? AND lock_token = ?")
      .bind(1, static_cast<std::int64_t>(u.offset))
      .bind(2, static_cast<std::int64_t>(u.answer_status))
      .bind(3, u.answer_body)
      .bind(4, u.answer_content_type)
      .bind(5, u.id)
      .bind(6, token)
      .step();
  if (sqlite3_changes(c->handle()) != 1) return core::errc::upload_locked;
  if (doc) insert_document_row(*c, *doc);
  tx.commit();
  return {};
}

bool sqlite_store::delete_upload(std::string_view id, std::string_view token) {
  const lease c(*this);
  c->prepare("DELETE FROM uploads WHERE id = ? AND lock_token = ?").bind(1, id).bind(2, token).step();
  return sqlite3_changes(c->handle()) == 1;
}

std::vector<upload_record> sqlite_store::expired_uploads(core::time_point now, std::size_t limit) {
  const lease c(*this);
  auto st = c->prepare("SELECT " + std::string(upload_columns) +
                       " FROM uploads WHERE expires_at <= ?1 AND (lock_token IS NULL OR locked_until <= ?1)"
                       " ORDER BY expires_at LIMIT ?2");
  st.bind(1, core::to_unix_ms(now)).bind(2, static_cast<std::int64_t>(limit));
  std::vector<upload_record> out;
  while (st.step()) out.push_back(read_upload(st));
  return out;
}

}  // namespace docflow::store::sqlite

// --- webhooks

namespace docflow::store::sqlite {

namespace {
constexpr std::string_view webhook_columns = "id, owner_id, url, events, secret, created_at";

webhook read_webhook(const statement& st) {
  return {st.column_text(0), st.column_text(1),
          st.column_text(2), static_cast<unsigned>(st.column_int(3)),
          st.column_text(4), from_ms(st.column_int(5))};
}

// A delivery with its event: the columns read_delivery takes, from
// webhook_deliveries d joined with webhook_events e.
constexpr std::string_view delivery_columns =
    "d.id, d.webhook_id, d.state, d.attempts, d.available_at, d.last_status, d.last_error, d.created_at,"
    " d.delivered_at, e.id, e.type, e.document_id, e.status, e.error, e.created_at";

webhook_delivery read_delivery(const statement& st) {
  webhook_delivery d;
  d.id = st.column_text(0);
  d.webhook_id = st.column_text(1);
  d.state = st.column_text(2);
  d.attempts = static_cast<unsigned>(st.column_int(3));
  d.available_at = from_ms(st.column_int(4));
  if (!st.column_is_null(5)) d.last_status = static_cast<int>(st.column_int(5));
  if (!st.column_is_null(6)) d.last_error = st.column_text(6);
  d.created_at = from_ms(st.column_int(7));
  d.delivered_at = optional_time(st, 8);
  d.event.id = st.column_text(9);
  d.event.type =
      core::parse_webhook_event(st.column_text(10)).value_or(core::webhook_event::document_uploaded);
  d.event.document_id = st.column_text(11);
  d.event.status = core::parse_status(st.column_text(12)).value_or(core::status::uploaded);
  if (!st.column_is_null(13)) d.event.error = parse_failure_record(st.column_text(13));
  d.event.created_at = from_ms(st.column_int(14));
  return d;
}

std::optional<webhook_delivery> load_delivery(connection& c, std::string_view id) {
  static const std::string sql = "SELECT " + std::string(delivery_columns) +
                                 " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
                                 " WHERE d.id = ?";
  auto st = c.prepare(sql);
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_delivery(st);
}
}  // namespace

core::result<void> sqlite_store::create_webhook(const webhook& w, std::size_t max_per_owner) {
  const lease c(*this);
  transaction tx(*c);
  auto count = c->prepare("SELECT count(*) FROM webhooks WHERE owner_id = ?");
  count.bind(1, w.owner_id).step();
  if (static_cast<std::size_t>(count.column_int(0)) >= max_per_owner) return core::errc::limit_reached;
  c->prepare("INSERT INTO webhooks (" + std::string(webhook_columns) + ") VALUES (?, ?, ?, ?, ?, ?)")
      .bind(1, w.id)
      .bind(2, w.owner_id)
      .bind(3, w.url)
      .bind(4, static_cast<std::int64_t>(w.events))
      .bind(5, w.secret)
      .bind(6, core::to_unix_ms(w.created_at))
      .step();
  tx.commit();
  return {};
}

std::vector<webhook> sqlite_store::list_webhooks(std::string_view owner_id) {
  const lease c(*this);
  auto st = c->prepare("SELECT " + std::string(webhook_columns) +
                       " FROM webhooks WHERE owner_id = ? ORDER BY created_at, id");
  st.bind(1, owner_id);
  std::vector<webhook> out;
  while (st.step()) out.push_back(read_webhook(st));
  return out;
}

std::optional<webhook> sqlite_store::find_webhook(std::string_view id, std::string_view owner_id) {
  const lease c(*this);
  auto st =
      c->prepare("SELECT " + std::string(webhook_columns) + " FROM webhooks WHERE id = ? AND owner_id = ?");
  st.bind(1, id).bind(2, owner_id);
  if (!st.step()) return std::nullopt;
  return read_webhook(st);
}

bool sqlite_store::delete_webhook(std::string_view id, std::string_view owner_id) {
  const lease c(*this);
  c->prepare("DELETE FROM webhooks WHERE id = ? AND owner_id = ?").bind(1, id).bind(2, owner_id).step();
  return sqlite3_changes(c->handle()) == 1;
}

std::vector<webhook_delivery> sqlite_store::list_deliveries(const delivery_query& q) {
  std::string sql = "SELECT " + std::string(delivery_columns) +
                    " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
                    " JOIN webhooks w ON w.id = d.webhook_id WHERE d.webhook_id = ? AND w.owner_id = ?";
  if (q.after) sql += " AND (d.created_at, d.id) < (?, ?)";
  sql += " ORDER BY d.created_at DESC, d.id DESC LIMIT ?";
  const lease c(*this);
  auto st = c->prepare(sql);
  st.bind(1, q.webhook_id).bind(2, q.owner_id);
  int i = 2;
  if (q.after) {
    st.bind(++i, core::to_unix_ms(q.after->first));
    st.bind(++i, q.after->second);
  }
  st.bind(++i, static_cast<std::int64_t>(q.limit));
  std::vector<webhook_delivery> out;
  while (st.step()) out.push_back(read_delivery(st));
  return out;
}

std::optional<webhook_delivery> sqlite_store::redeliver(std::string_view webhook_id,
                                                        std::string_view delivery_id,
                                                        std::string_view owner_id, const std::string& new_id,
                                                        core::time_point now) {
  const lease c(*this);
  transaction tx(*c);
  auto st = c->prepare(
      "SELECT d.event_id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
      " WHERE d.id = ? AND d.webhook_id = ? AND w.owner_id = ?");
  st.bind(1, delivery_id).bind(2, webhook_id).bind(3, owner_id);
  if (!st.step()) return std::nullopt;
  insert_delivery(*c, new_id, webhook_id, st.column_text(0), now);
  auto made = load_delivery(*c, new_id);
  tx.commit();
  return made;
}

std::optional<claimed_delivery> sqlite_store::claim_delivery(core::time_point now,
                                                             std::chrono::milliseconds lease_for,
                                                             const std::string& lease_token) {
  const lease c(*this);
  transaction tx(*c);
  // One whose sender died first (its lease lapsed), then the longest available.
  auto st = c->prepare(
      "SELECT id FROM webhook_deliveries WHERE state = 'sending' AND lease_expires_at < ?1"
      " UNION ALL SELECT * FROM (SELECT id FROM webhook_deliveries"
      " WHERE state = 'pending' AND available_at <= ?1 ORDER BY available_at LIMIT 1) LIMIT 1");
  st.bind(1, core::to_unix_ms(now));
  if (!st.step()) return std::nullopt;
  const auto id = st.column_text(0);
  c->prepare(
       "UPDATE webhook_deliveries SET state = 'sending', attempts = attempts + 1, lease_token = ?,"
       " lease_expires_at = ?, updated_at = ? WHERE id = ?")
      .bind(1, lease_token)
      .bind(2, core::to_unix_ms(now + lease_for))
      .bind(3, core::to_unix_ms(now))
      .bind(4, id)
      .step();
  auto target = c->prepare(
      "SELECT w.url, w.secret FROM webhook_deliveries d JOIN webhooks w ON w.id = "
      "d.webhook_id WHERE d.id = ?");
  target.bind(1, id);
  if (!target.step()) return std::nullopt;  // cannot happen: deliveries cascade with their webhook
  claimed_delivery out;
  out.url = target.column_text(0);
  out.secret = target.column_text(1);
  out.lease_token = lease_token;
  out.delivery = std::move(*load_delivery(*c, id));
  tx.commit();
  return out;
}

bool sqlite_store::finish_delivery(const claimed_delivery& d, core::time_point now,
                                   const delivery_outcome& o) {
  using kind = delivery_outcome::kind;
  const lease c(*this);
  auto st = c->prepare(
      "UPDATE webhook_deliveries SET state = ?, lease_token = NULL, lease_expires_at = NULL,"
      " available_at = ?, last_status = ?, last_error = ?, updated_at = ?, delivered_at = ?"
      " WHERE id = ? AND lease_token = ? AND state = 'sending'");
  st.bind(1, o.outcome == kind::delivered ? "delivered"
             : o.outcome == kind::failed  ? "failed"
                                          : "pending")
      .bind(2, core::to_unix_ms(o.outcome == kind::retry ? o.retry_at : now));
  if (o.status) {
    st.bind(3, static_cast<std::int64_t>(*o.status));
  } else {
    st.bind_null(3);
  }
  if (o.error) {
    st.bind(4, *o.error);
  } else {
    st.bind_null(4);
  }
  st.bind(5, core::to_unix_ms(now));
  if (o.outcome == kind::delivered) {
    st.bind(6, core::to_unix_ms(now));
  } else {
    st.bind_null(6);
  }
  st.bind(7, d.delivery.id).bind(8, d.lease_token).step();
  return sqlite3_changes(c->handle()) == 1;
}

std::uint64_t sqlite_store::pending_deliveries() {
  const lease c(*this);
  auto st = c->prepare("SELECT count(*) FROM webhook_deliveries WHERE state IN ('pending', 'sending')");
  st.step();
  return static_cast<std::uint64_t>(st.column_int(0));
}

}  // namespace docflow::store::sqlite
