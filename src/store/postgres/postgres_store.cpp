#include "store/postgres/postgres_store.hpp"

#include <algorithm>
#include <climits>
#include <random>
#include <thread>
#include <type_traits>
#include <utility>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/ids.hpp"
#include "store/failure_record.hpp"
#include "store/postgres/migrations.hpp"

namespace docflow::store::postgres {

namespace {

using pq::bytes;

// A transaction that met a deadlock or a serialization failure runs again,
// at most this many times in all.
constexpr int max_attempts = 5;

// The session-level advisory lock that serialises migrations across
// processes ("docflow" in ASCII).
constexpr std::int64_t migration_lock = 0x646f63666c6f77;
// The session-level advisory lock of the one maintenance runner ("dfmaint").
constexpr std::int64_t maintenance_lock = 0x64666d61696e74;
// The session-level advisory lock of the maintenance leader ("dflead").
constexpr std::int64_t leadership_lock = 0x64666c656164;

// Ids are uuid columns. The SQLite store compares ids as text, so only the
// canonical lowercase form finds a row there; PostgreSQL would also accept
// upper case, braces or no dashes, and refuse text that is no uuid at all
// with an error. Both engines answer alike: anything but the canonical form
// names nothing.
bool canonical_id(std::string_view s) noexcept {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool canonical_owner(const std::optional<std::string>& owner_id) noexcept {
  return !owner_id || canonical_id(*owner_id);
}

void pause_before_retry(int attempt) {
  thread_local std::minstd_rand random{std::random_device{}()};
  const auto ms = std::uniform_int_distribution<int>(1, 5 * attempt)(random);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

constexpr std::string_view user_columns = "id, username, password_hash, role, created_at";

// The user_columns from column `at` on.
core::user read_user(const pq::result& r, int row, int at = 0) {
  return {r.text(row, at), r.text(row, at + 1), r.text(row, at + 2),
          core::parse_role(r.text(row, at + 3)).value_or(core::role::user), r.time(row, at + 4)};
}

std::optional<core::user> user_by_id(pq::connection& c, std::string_view id) {
  if (!canonical_id(id)) return std::nullopt;
  const auto r = c.exec("SELECT id, username, password_hash, role, created_at FROM users WHERE id = $1", id);
  if (r.empty()) return std::nullopt;
  return read_user(r, 0);
}

// A limit as a users row stores it: NULL for the default, -1 for none.
core::limit_setting read_limit(const pq::result& r, int row, int col) {
  if (r.is_null(row, col)) return {};
  const auto v = r.integer(row, col);
  return {false, v < 0 ? std::nullopt : std::optional(static_cast<std::uint64_t>(v))};
}

std::optional<std::int64_t> limit_param(const core::limit_setting& l) {
  if (l.inherit) return std::nullopt;
  return l.value ? static_cast<std::int64_t>(*l.value) : -1;
}

// The user's usage and limits. With `lock`, the users row is locked by a
// statement of its own first, so that the caller's insert is the only one
// of this user until it commits, and the usage is read after the lock was
// granted: one statement that locked and read would, having waited for
// the lock, still see the usage of its own snapshot.
core::quota_state read_quota(pq::connection& c, std::string_view user_id, const core::quota_limits& defaults,
                             bool lock) {
  core::quota_state q{{}, defaults};
  if (!canonical_id(user_id)) return q;
  // NO KEY UPDATE: it excludes the user's other inserts, not the key-share
  // locks of rows that refer to the user (a login's refresh family).
  if (lock) c.exec("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id);
  const auto r = c.exec(
      "SELECT u.quota_bytes, u.quota_documents, coalesce(g.bytes, 0), coalesce(g.documents, 0)"
      " FROM users u LEFT JOIN user_usage g ON g.user_id = u.id WHERE u.id = $1",
      user_id);
  if (r.empty()) return q;
  q.limits = {core::apply(read_limit(r, 0, 0), defaults.bytes),
              core::apply(read_limit(r, 0, 1), defaults.documents)};
  q.usage = {static_cast<std::uint64_t>(r.integer(0, 2)), static_cast<std::uint64_t>(r.integer(0, 3))};
  return q;
}

// Nothing when `d` fits its owner's quota (whose row is then locked);
// otherwise the refusal.
std::optional<core::error> quota_refusal(pq::connection& c, const core::document& d,
                                         const core::quota_limits& defaults) {
  auto q = read_quota(c, d.owner_id, defaults, true);
  if (core::fits(q, d.size_bytes)) return std::nullopt;
  return core::quota_exceeded(q);
}

constexpr std::string_view api_key_columns =
    "k.id, k.user_id, k.name, k.prefix, k.created_at, k.expires_at, k.last_used_at";

api_key read_api_key(const pq::result& r, int row) {
  return {r.text(row, 0), r.text(row, 1),          r.text(row, 2),         r.text(row, 3),
          r.time(row, 4), r.optional_time(row, 5), r.optional_time(row, 6)};
}

constexpr std::string_view document_columns =
    "id, owner_id, filename, title, kind, size_bytes, sha256, status, created_at, updated_at, attempts,"
    " started_at, finished_at, error_code, error_message, error_retryable, stage";

core::document read_document(const pq::result& r, int row) {
  core::document d;
  d.id = r.text(row, 0);
  d.owner_id = r.text(row, 1);
  d.filename = r.text(row, 2);
  d.title = r.optional_text(row, 3);
  d.kind = core::parse_kind(r.text(row, 4)).value();  // the CHECK constraint admits no other
  d.size_bytes = static_cast<std::uint64_t>(r.integer(row, 5));
  d.sha256 = r.text(row, 6);
  d.status = core::parse_status(r.text(row, 7)).value_or(core::status::uploaded);
  d.created_at = r.time(row, 8);
  d.updated_at = r.time(row, 9);
  d.attempts = static_cast<unsigned>(r.integer(row, 10));
  d.started_at = r.optional_time(row, 11);
  d.finished_at = r.optional_time(row, 12);
  if (!r.is_null(row, 13)) {
    d.error = core::failure{r.text(row, 13), r.text(row, 14), !r.is_null(row, 15) && r.boolean(row, 15)};
  }
  d.stage = r.optional_text(row, 16);
  return d;
}

// The document, locked against every other writer until the transaction
// ends when `lock` is set: what is decided from its status stays true.
std::optional<core::document> load_document(pq::connection& c, std::string_view id,
                                            const std::optional<std::string>& owner_id, bool lock) {
  if (!canonical_id(id) || !canonical_owner(owner_id)) return std::nullopt;
  static const std::string by_id =
      "SELECT " + std::string(document_columns) + " FROM documents WHERE id = $1";
  static const std::string by_id_and_owner = by_id + " AND owner_id = $2";
  static const std::string by_id_locked = by_id + " FOR UPDATE";
  static const std::string by_id_and_owner_locked = by_id_and_owner + " FOR UPDATE";
  const auto r = owner_id ? c.exec(lock ? by_id_and_owner_locked : by_id_and_owner, id, *owner_id)
                          : c.exec(lock ? by_id_locked : by_id, id);
  if (r.empty()) return std::nullopt;
  return read_document(r, 0);
}

// jsonb refuses the escape \u0000 (its text type cannot hold NUL), which a
// PDF's metadata or an enrichment answer may carry. Such strings keep
// U+FFFD in its place instead of failing the job.
std::string jsonb_safe(std::string json) {
  if (json.find("\\u0000") == std::string::npos) return json;
  boost::json::error_code ec;
  auto v = boost::json::parse(json, ec);
  if (ec) return json;  // the database will say what is wrong with it
  const auto clean = [](std::string_view s) {
    std::string out;
    for (const char ch : s) {
      if (ch == '\0') {
        out += "\xEF\xBF\xBD";
      } else {
        out.push_back(ch);
      }
    }
    return out;
  };
  const auto walk = [&](auto& self, boost::json::value& x) -> void {
    if (auto* s = x.if_string()) {
      *s = clean(*s);
    } else if (auto* a = x.if_array()) {
      for (auto& e : *a) self(self, e);
    } else if (auto* o = x.if_object()) {
      boost::json::object cleaned;
      for (auto& [k, e] : *o) {
        self(self, e);
        cleaned[clean(k)] = std::move(e);
      }
      *o = std::move(cleaned);
    }
  };
  walk(walk, v);
  return boost::json::serialize(v);
}

// Every status change goes through the core state machine, and is logged as
// the document's next event in the same statement: the UPDATE takes the
// row's lock and the next number from its counter. The same statement
// NOTIFYs the document's watchers, in every process, when it commits.
core::document transition(pq::connection& c, const core::document& d, core::status to, core::time_point now,
                          const std::optional<core::failure>& error) {
  if (!core::can_transition(d.status, to)) {
    throw store_error(std::string("illegal transition ") + core::to_string(d.status) + " -> " +
                      core::to_string(to));
  }
  static const std::string sql =
      "WITH d AS (UPDATE documents SET status = $1::text, updated_at = $2::timestamptz,"
      " started_at = CASE WHEN $1::text = 'PROCESSING' THEN NULL ELSE started_at END,"
      " finished_at = CASE WHEN $1::text IN ('COMPLETED', 'FAILED') THEN $2::timestamptz ELSE NULL END,"
      " error_code = $3::text, error_message = $4::text, error_retryable = $5::boolean, stage = NULL,"
      " last_event_seq = last_event_seq + 1 WHERE id = $6::uuid RETURNING " +
      std::string(document_columns) +
      ", last_event_seq),"
      " e AS (INSERT INTO document_events (document_id, seq, status, at, error)"
      " SELECT id, last_event_seq, status, $2::timestamptz, $7::jsonb FROM d)"
      " SELECT " +
      std::string(document_columns) + ", pg_notify($8, id::text) FROM d";
  const auto changed = channel(wakeup_topic::document_changed);
  const auto r = error ? c.exec(sql, core::to_string(to), now, error->code, error->message, error->retryable,
                                d.id, jsonb_safe(failure_record(*error)), changed)
                       : c.exec(sql, core::to_string(to), now, std::nullopt, std::nullopt, std::nullopt, d.id,
                                std::nullopt, changed);
  if (r.empty()) throw store_error("transition: document " + d.id + " vanished");
  return read_document(r, 0);
}

// The outbox, as the SQLite store writes it: an event for the owner's
// webhooks subscribed to `type` and one delivery to each, in the
// transaction of the status change; no row when no webhook listens.
void record_webhook_event(pq::connection& c, core::webhook_event type, const core::document& d,
                          core::status status, core::time_point at,
                          const std::optional<core::failure>& error) {
  const auto hooks = c.exec("SELECT id FROM webhooks WHERE owner_id = $1 AND (events & $2) != 0", d.owner_id,
                            core::bit(type));
  if (hooks.empty()) return;
  const auto event_id = core::new_uuid_v7();
  c.exec(
      "INSERT INTO webhook_events (id, type, owner_id, document_id, status, error, created_at)"
      " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
      event_id, core::to_string(type), d.owner_id, d.id, core::to_string(status),
      error ? std::optional(jsonb_safe(failure_record(*error))) : std::nullopt, at);
  for (int i = 0; i < hooks.rows(); ++i) {
    c.exec(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, state, attempts, available_at, created_at,"
        " updated_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4)",
        core::new_uuid_v7(), hooks.text(i, 0), event_id, at);
  }
}

// True when `job` still holds its lease (same token, still running).
bool holds_lease(pq::connection& c, const claimed_job& job) {
  return !c.exec("SELECT 1 FROM jobs WHERE id = $1 AND lease_token = $2 AND state = 'running'", job.job_id,
                 job.lease_token)
              .empty();
}

// The job's lease moves on: state and token change only while `job` holds
// it (the fence). False when it no longer does.
bool fenced_job_update(pq::connection& c, const claimed_job& job, std::string_view state,
                       core::time_point now, std::optional<core::time_point> available_at) {
  const auto r = c.exec(
      "UPDATE jobs SET state = $3::text, lease_token = NULL,"
      " lease_expires_at = CASE WHEN $3::text = 'queued' THEN NULL ELSE lease_expires_at END,"
      " available_at = coalesce($5::timestamptz, available_at), updated_at = $4::timestamptz"
      " WHERE id = $1 AND lease_token = $2 AND state = 'running'",
      job.job_id, job.lease_token, state, now, available_at);
  return r.affected() == 1;
}

int read_version(pq::connection& c) {
  if (!c.exec("SELECT to_regclass('schema_migrations') IS NOT NULL").boolean(0, 0)) return 0;
  return static_cast<int>(
      c.exec("SELECT coalesce(max(version), 0)::int8 FROM schema_migrations").integer(0, 0));
}

// Up to `max` characters (not bytes) from the start of `text`, as SQLite's
// substr() counts them: a character starts at every byte that is not a
// UTF-8 continuation byte.
std::string first_characters(const std::string& text, std::size_t max) {
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 && chars++ == max) return text.substr(0, i);
  }
  return text;
}

}  // namespace

template <class F>
auto postgres_store::retrying(F&& f) {
  for (int attempt = 1;; ++attempt) {
    try {
      auto c = pool_.acquire();
      return f(*c);
    } catch (const pq::error& e) {
      // Not from acquire(), which throws store_unavailable: the connection
      // was lent, so the call's statements may have reached the server.
      if (e.connection_lost()) throw store_outcome_unknown(e.what());
      if (e.transient()) throw store_unavailable(e.what());
      if (!e.retryable() || attempt >= max_attempts) throw;
    }
    pause_before_retry(attempt);
  }
}

template <class F>
auto postgres_store::in_transaction(F&& f) {
  return retrying([&](pq::connection& c) {
    pq::transaction tx(c);
    if constexpr (std::is_void_v<std::invoke_result_t<F&, pq::connection&, pq::transaction&>>) {
      f(c, tx);
      if (!tx.done()) tx.commit();
    } else {
      auto out = f(c, tx);
      if (!tx.done()) tx.commit();
      return out;
    }
  });
}

postgres_store::postgres_store(std::string url, const pool_settings& options)
    : pool_(std::move(url), options),
      listener_([this] { return pool_.connect_alone(); }, options.min_backoff, options.max_backoff) {
  const auto first = pool_.acquire();  // fail at start-up, not on the first request
}

postgres_store::~postgres_store() = default;

std::unique_ptr<database> open(const std::string& url, std::size_t pool_size, std::string password) {
  pool_settings o;
  o.size = pool_size;
  o.session.password = std::move(password);
  return std::make_unique<postgres_store>(url, o);
}

// A connection of its own: the advisory lock belongs to the session, and
// closing the connection releases it whatever happens.
int postgres_store::migrate() {
  const auto c = pool_.connect_alone();
  // Building an index on a large table may take long; waiting for another
  // process's migration may too, but not forever.
  c->script("SET statement_timeout = 0; SET lock_timeout = '5min'");
  c->exec("SELECT pg_advisory_lock($1)", migration_lock);
  c->script(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)");
  for (const auto& m : migrations()) {
    if (read_version(*c) >= m.version) continue;  // applied earlier, or by a process that started with us
    pq::transaction tx(*c);
    c->script(m.sql);
    c->exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", m.version,
            m.name, core::system_clock().now());
    tx.commit();
  }
  const int version = read_version(*c);
  c->exec("SELECT pg_advisory_unlock($1)", migration_lock);
  return version;
}

int postgres_store::schema_version() {
  return retrying([](pq::connection& c) { return read_version(c); });
}

int postgres_store::known_schema_version() const {
  return migrations().empty() ? 0 : migrations().back().version;
}

// A pooled connection is checked before it is lent, and a new one is made
// when none is left: a server that is down or restarted fails here.
void postgres_store::check() {
  auto c = pool_.acquire();
  read_version(*c);
}

// --- users

core::result<void> postgres_store::create_user(const core::user& u) {
  try {
    // ON CONFLICT waits for a concurrent insert of the same name to commit
    // and then inserts nothing: the second of two registrations is told the
    // name is taken, never given an error.
    const auto r = retrying([&](pq::connection& c) {
      return c.exec(
          "INSERT INTO users (id, username, username_key, password_hash, role, created_at)"
          " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username_key) DO NOTHING",
          u.id, u.username, core::username_key(u.username), u.password_hash, core::to_string(u.role),
          u.created_at);
    });
    if (r.affected() != 1) return core::errc::username_taken;
  } catch (const pq::error& e) {
    if (e.unique_violation() && e.constraint() == "users_username_key_key") return core::errc::username_taken;
    throw;
  }
  return {};
}

std::optional<core::user> postgres_store::find_user_by_name(std::string_view username) {
  return retrying([&](pq::connection& c) -> std::optional<core::user> {
    const auto r =
        c.exec("SELECT id, username, password_hash, role, created_at FROM users WHERE username_key = $1",
               core::username_key(username));
    if (r.empty()) return std::nullopt;
    return read_user(r, 0);
  });
}

std::optional<core::user> postgres_store::find_user(std::string_view id) {
  return retrying([&](pq::connection& c) { return user_by_id(c, id); });
}

std::vector<core::user> postgres_store::list_users() {
  return retrying([](pq::connection& c) {
    const auto r = c.exec("SELECT " + std::string(user_columns) + " FROM users ORDER BY created_at, id");
    std::vector<core::user> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_user(r, i));
    return out;
  });
}

core::quota_state postgres_store::find_quota(std::string_view user_id) {
  return retrying([&](pq::connection& c) { return read_quota(c, user_id, default_quota_, false); });
}

bool postgres_store::set_quota(std::string_view user_id, const std::optional<core::limit_setting>& bytes,
                               const std::optional<core::limit_setting>& documents) {
  if (!canonical_id(user_id)) return false;
  return retrying([&](pq::connection& c) {
    return c.exec(
                "UPDATE users SET quota_bytes = CASE WHEN $1 THEN $2::bigint ELSE quota_bytes END,"
                " quota_documents = CASE WHEN $3 THEN $4::bigint ELSE quota_documents END WHERE id = $5",
                bytes.has_value(), limit_param(bytes.value_or(core::limit_setting{})), documents.has_value(),
                limit_param(documents.value_or(core::limit_setting{})), user_id)
               .affected() == 1;
  });
}

core::result<void> postgres_store::create_api_key(const api_key& k, std::string_view key_hash,
                                                  std::size_t max_per_user) {
  return in_transaction([&](pq::connection& c, pq::transaction& tx) -> core::result<void> {
    c.exec("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", k.user_id);
    const auto held = c.exec("SELECT count(*) FROM api_keys WHERE user_id = $1", k.user_id).integer(0, 0);
    if (static_cast<std::size_t>(held) >= max_per_user) {
      tx.rollback();
      return core::errc::limit_reached;
    }
    c.exec(
        "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        k.id, k.user_id, k.name, k.prefix, key_hash, k.created_at, k.expires_at);
    return {};
  });
}

std::vector<api_key> postgres_store::list_api_keys(std::string_view user_id) {
  if (!canonical_id(user_id)) return {};
  return retrying([&](pq::connection& c) {
    const auto r = c.exec("SELECT " + std::string(api_key_columns) +
                              " FROM api_keys k WHERE k.user_id = $1 ORDER BY k.created_at, k.id",
                          user_id);
    std::vector<api_key> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_api_key(r, i));
    return out;
  });
}

bool postgres_store::delete_api_key(std::string_view id, std::string_view user_id) {
  if (!canonical_id(id) || !canonical_id(user_id)) return false;
  return retrying([&](pq::connection& c) {
    return c.exec("DELETE FROM api_keys WHERE id = $1 AND user_id = $2", id, user_id).affected() == 1;
  });
}

std::optional<api_key_holder> postgres_store::find_api_key(std::string_view key_hash) {
  // Every request made with a key runs it: the text is built once.
  static const std::string sql = "SELECT " + std::string(api_key_columns) +
                                 ", u.id, u.username, u.password_hash, u.role, u.created_at"
                                 " FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1";
  return retrying([&](pq::connection& c) -> std::optional<api_key_holder> {
    const auto r = c.exec(sql, key_hash);
    if (r.empty()) return std::nullopt;
    return api_key_holder{read_api_key(r, 0), read_user(r, 0, 7)};
  });
}

void postgres_store::rehash_api_key(std::string_view id, std::string_view key_hash) {
  if (!canonical_id(id)) return;
  retrying(
      [&](pq::connection& c) { c.exec("UPDATE api_keys SET key_hash = $1 WHERE id = $2", key_hash, id); });
}

void postgres_store::touch_api_key(std::string_view id, core::time_point now,
                                   std::chrono::milliseconds interval) {
  if (!canonical_id(id)) return;
  retrying([&](pq::connection& c) {
    c.exec(
        "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= "
        "$3)",
        now, id, now - interval);
  });
}

// --- refresh-token families

void postgres_store::start_refresh_family(const refresh_grant& first) {
  in_transaction([&](pq::connection& c, pq::transaction&) {
    c.exec("INSERT INTO refresh_families (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
           first.family_id, first.user_id, first.issued_at, first.expires_at);
    c.exec(
        "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
        first.token_hash, first.family_id, first.issued_at, first.expires_at);
  });
}

// The token's row and its family's are locked while the rule decides: of
// two presentations of one token at once, the second waits, then sees the
// first one's used_at (and within no grace, revokes the family).
rotation_result postgres_store::rotate_refresh_token(std::string_view presented_hash, refresh_grant successor,
                                                     std::chrono::milliseconds grace) {
  return in_transaction([&](pq::connection& c, pq::transaction&) {
    const auto r = c.exec(
        "SELECT t.expires_at, t.used_at, f.revoked_at IS NOT NULL, f.id, f.user_id"
        " FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id WHERE t.token_hash = $1"
        " FOR UPDATE OF t, f",
        presented_hash);
    rotation_result result;
    if (r.empty()) return result;
    const core::refresh_token_state state{r.time(0, 0), r.optional_time(0, 1), r.boolean(0, 2)};
    refresh_grant next = successor;
    next.family_id = r.text(0, 3);
    next.user_id = r.text(0, 4);
    const auto now = next.issued_at;
    result.decision = core::decide_rotation(state, now, grace);
    switch (result.decision) {
      case core::rotation_decision::reject: break;
      case core::rotation_decision::reuse_detected:
        c.exec("UPDATE refresh_families SET revoked_at = $1 WHERE id = $2", now, next.family_id);
        break;
      case core::rotation_decision::rotate:
        result.user = user_by_id(c, next.user_id);
        if (!result.user) {
          result.decision = core::rotation_decision::reject;  // the account is gone
          break;
        }
        c.exec("UPDATE refresh_tokens SET used_at = coalesce(used_at, $1) WHERE token_hash = $2", now,
               presented_hash);
        c.exec("UPDATE refresh_families SET expires_at = $1 WHERE id = $2", next.expires_at, next.family_id);
        c.exec(
            "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, "
            "$4)",
            next.token_hash, next.family_id, next.issued_at, next.expires_at);
        break;
    }
    return result;
  });
}

void postgres_store::revoke_refresh_family(std::string_view token_hash, core::time_point now) {
  retrying([&](pq::connection& c) {
    c.exec(
        "UPDATE refresh_families SET revoked_at = coalesce(revoked_at, $1)"
        " WHERE id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
        now, token_hash);
  });
}

std::size_t postgres_store::purge_refresh_families(core::time_point now) {
  return retrying([&](pq::connection& c) {
    return static_cast<std::size_t>(
        c.exec("DELETE FROM refresh_families WHERE expires_at <= $1", now).affected());
  });
}

// --- documents

namespace {

// The document and its first event (seq 1) in one statement.
void insert_document_row(pq::connection& c, const core::document& d) {
  static const std::string sql =
      "WITH d AS (INSERT INTO documents (" + std::string(document_columns) +
      ", last_event_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
      " NULL, NULL, NULL, NULL, NULL, NULL, 1) RETURNING id, status, created_at)"
      " INSERT INTO document_events (document_id, seq, status, at) SELECT id, 1, status, created_at FROM d";
  c.exec(sql, d.id, d.owner_id, d.filename, d.title, core::kind_name(d.kind), d.size_bytes, d.sha256,
         core::to_string(d.status), d.created_at, d.updated_at, d.attempts);
  record_webhook_event(c, core::webhook_event::document_uploaded, d, d.status, d.created_at, std::nullopt);
}

// Stores the answer for its claim; false when the claim is no longer the
// answer's (taken over by a retry).
bool record_answer(pq::connection& c, const idempotent_answer& a) {
  return c.exec(
              "UPDATE idempotency_keys SET state = 'done', status = $1, body = $2, content_type = $3,"
              " location = $4 WHERE user_id = $5 AND key = $6 AND claim = $7 AND state = 'in_flight'",
              a.status, a.body, a.content_type, a.location, a.user_id, a.key, a.claim)
             .affected() == 1;
}

}  // namespace

// No group commit as in the SQLite store: the server already flushes the
// WAL of commits that arrive together once (and each call holds its own
// connection), so inserts are one transaction each.
core::result<void> postgres_store::insert_document(const core::document& d, const idempotent_answer* answer) {
  return in_transaction([&](pq::connection& c, pq::transaction& tx) -> core::result<void> {
    if (auto refused = quota_refusal(c, d, default_quota_)) {
      tx.rollback();
      return *refused;
    }
    insert_document_row(c, d);
    if (!answer || record_answer(c, *answer)) return {};
    tx.rollback();
    return core::errc::idempotency_key_in_flight;
  });
}

std::optional<core::document> postgres_store::find_document(std::string_view id,
                                                            const std::optional<std::string>& owner_id) {
  return retrying([&](pq::connection& c) { return load_document(c, id, owner_id, false); });
}

std::vector<core::document> postgres_store::list_documents(const document_query& q) {
  if (!canonical_owner(q.owner_id)) return {};
  std::string sql = "SELECT " + std::string(document_columns) + " FROM documents WHERE true";
  std::vector<pq::param> params;
  const auto next = [&] { return "$" + std::to_string(params.size()); };
  if (q.owner_id) {
    params.push_back(pq::to_param(*q.owner_id));
    sql += " AND owner_id = " + next();
  }
  if (q.status) {
    params.push_back(pq::to_param(core::to_string(*q.status)));
    sql += " AND status = " + next();
  }
  if (q.after) {
    params.push_back(pq::to_param(q.after->first));
    const auto at = next();
    // A cursor's id is checked as a uuid by the API; one in another form
    // would fail the cast, so it is compared as it is stored.
    params.push_back(pq::to_param(canonical_id(q.after->second) ? q.after->second : std::string(36, '0')));
    sql += " AND (created_at, id) < (" + at + ", " + next() + "::uuid)";
  }
  params.push_back(pq::to_param(q.limit));
  sql += " ORDER BY created_at DESC, id DESC LIMIT " + next();
  return retrying([&](pq::connection& c) {
    const auto r = c.run(sql, params);
    std::vector<core::document> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_document(r, i));
    return out;
  });
}

core::result<void> postgres_store::delete_document(std::string_view id,
                                                   const std::optional<std::string>& owner_id) {
  return in_transaction([&](pq::connection& c, pq::transaction&) -> core::result<void> {
    const auto doc = load_document(c, id, owner_id, true);
    if (!doc) return core::errc::not_found;
    if (!core::can_delete(doc->status)) {
      core::error busy(core::errc::document_busy);
      busy.document_status = doc->status;
      return busy;
    }
    // Its event streams, in every process, end at once: a deletion leaves
    // no event to find.
    c.exec(
        "WITH d AS (DELETE FROM documents WHERE id = $1 RETURNING id) SELECT pg_notify($2, id::text) FROM d",
        doc->id, channel(wakeup_topic::document_changed));
    return {};
  });
}

// --- processing

core::result<process_result> postgres_store::request_processing(std::string_view document_id,
                                                                const std::optional<std::string>& owner_id,
                                                                const std::string& job_id,
                                                                core::time_point now,
                                                                std::uint64_t max_queued, bool force) {
  const auto attempt = [&] {
    return in_transaction([&](pq::connection& c, pq::transaction&) -> core::result<process_result> {
      // Locked: of two requests at once, the second waits here and then
      // finds PROCESSING.
      auto doc = load_document(c, document_id, owner_id, true);
      if (!doc) return core::errc::not_found;
      if (doc->status == core::status::completed && !force) {
        return process_result{process_outcome::completed, *doc};
      }
      if (doc->status == core::status::processing) {
        return process_result{process_outcome::already_processing, *doc};
      }
      // The bound is approximate across processes: requests for different
      // documents at the same moment may each see room for one more.
      const auto depth = c.exec("SELECT count(*) FROM jobs WHERE state = 'queued'").integer(0, 0);
      if (static_cast<std::uint64_t>(depth) >= max_queued) return core::errc::queue_full;
      auto after = transition(c, *doc, core::status::processing, now, std::nullopt);
      // Idle workers, in every process, claim it as soon as this commits.
      c.exec(
          "WITH j AS (INSERT INTO jobs"
          " (id, document_id, state, attempts, available_at, created_at, updated_at, owner_id)"
          " VALUES ($1, $2, 'queued', 0, $3, $3, $3, $6) RETURNING id) SELECT pg_notify($4, $5) FROM j",
          job_id, doc->id, now, channel(wakeup_topic::job_available), core::to_unix_ms(now), doc->owner_id);
      return process_result{process_outcome::accepted, std::move(after)};
    });
  };
  try {
    return attempt();
  } catch (const pq::error& e) {
    // The index that allows one live job per document refused a second:
    // another request won. Asking again reports what it made.
    if (!e.unique_violation() || e.constraint() != "jobs_one_live_per_document") throw;
  }
  return attempt();
}

// One lapsed lease first (its worker died). Otherwise the owners that have
// a job available, least recently served first: the recursive query walks
// jobs_owner_queued from one owner to the next (a probe per owner with
// queued jobs, never one per job), and the first owner that yields a job
// gives its oldest. The job's row and its document's are locked together and
// skipped when either is locked already: two claimers never wait on each
// other or take the same job, and a claim never waits on a cancel or a
// delete. With a running limit the owner's row is locked too (skipped when
// another claim holds it) before its running jobs are counted, in a later
// statement so that the count sees every claim committed before the lock was
// ours: the limit is exact.
std::optional<claimed_job> postgres_store::claim_job(core::time_point now,
                                                     std::chrono::milliseconds lease_for,
                                                     const std::string& lease_token,
                                                     unsigned max_running_per_owner) {
  return in_transaction([&](pq::connection& c, pq::transaction&) -> std::optional<claimed_job> {
    static const std::string take =
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = $2, lease_expires_at = $3,"
        " updated_at = $1 WHERE id = (SELECT j.id FROM jobs j JOIN documents d ON d.id = j.document_id"
        " WHERE %s LIMIT 1 FOR UPDATE OF j, d SKIP LOCKED)"
        " RETURNING id, document_id, attempts, available_at, owner_id";
    static const std::string lapsed = [] {
      auto s = take;
      s.replace(s.find("%s"), 2,
                "j.state = 'running' AND j.lease_expires_at < $1 ORDER BY j.lease_expires_at");
      return s;
    }();
    static const std::string queued = [] {
      auto s = take;
      s.replace(s.find("%s"), 2,
                "j.state = 'queued' AND j.owner_id = $4 AND j.available_at <= $1 ORDER BY j.available_at");
      return s;
    }();
    static const std::string owners =
        "WITH RECURSIVE o AS ("
        " (SELECT owner_id, available_at FROM jobs WHERE state = 'queued' AND owner_id IS NOT NULL"
        " ORDER BY owner_id, available_at LIMIT 1)"
        " UNION ALL SELECT n.owner_id, n.available_at FROM o CROSS JOIN LATERAL"
        " (SELECT owner_id, available_at FROM jobs WHERE state = 'queued' AND owner_id > o.owner_id"
        " ORDER BY owner_id, available_at LIMIT 1) n)"
        " SELECT o.owner_id FROM o LEFT JOIN job_owners w ON w.owner_id = o.owner_id"
        " WHERE o.available_at <= $1 ORDER BY coalesce(w.served, 0), o.owner_id";
    static const std::string lock_owner =
        "SELECT 1 FROM job_owners WHERE owner_id = $1 FOR UPDATE SKIP LOCKED";
    static const std::string running =
        "SELECT count(*) FROM jobs WHERE state = 'running' AND owner_id = $1 AND lease_expires_at >= $2";
    // Skipped when another claim of the same owner holds the row: that one
    // marks the owner served.
    static const std::string served =
        "UPDATE job_owners SET served = (SELECT coalesce(max(served), 0) + 1 FROM job_owners)"
        " WHERE owner_id = (SELECT owner_id FROM job_owners WHERE owner_id = $1 FOR UPDATE SKIP LOCKED)";
    auto r = c.exec(lapsed, now, lease_token, now + lease_for);
    const bool taken_over = !r.empty();
    if (!taken_over) {
      const auto candidates = c.exec(owners, now);
      for (int i = 0; i < candidates.rows() && r.empty(); ++i) {
        const auto owner = candidates.text(i, 0);
        if (max_running_per_owner > 0) {
          if (c.exec(lock_owner, owner).empty()) continue;
          if (c.exec(running, owner, now).integer(0, 0) >= static_cast<std::int64_t>(max_running_per_owner))
            continue;
        }
        r = c.exec(queued, now, lease_token, now + lease_for, owner);
      }
    }
    if (r.empty()) return std::nullopt;
    if (!r.is_null(0, 4)) c.exec(served, r.text(0, 4));
    claimed_job job;
    job.taken_over = taken_over;
    job.job_id = r.text(0, 0);
    job.attempt = static_cast<unsigned>(r.integer(0, 2));
    job.queued_at = r.time(0, 3);
    job.lease_token = lease_token;
    static const std::string count_attempt =
        "UPDATE documents SET attempts = attempts + 1, started_at = coalesce(started_at, $1), updated_at = $1"
        " WHERE id = $2 RETURNING " +
        std::string(document_columns);
    const auto d = c.exec(count_attempt, now, r.text(0, 1));
    if (d.empty()) return std::nullopt;  // cannot happen: jobs cascade with their document
    job.document = read_document(d, 0);
    return job;
  });
}

bool postgres_store::lease_held(const claimed_job& job) {
  return retrying([&](pq::connection& c) { return holds_lease(c, job); });
}

bool postgres_store::renew_lease(const claimed_job& job, core::time_point now,
                                 std::chrono::milliseconds lease_for) {
  return retrying([&](pq::connection& c) {
    return c.exec(
                "UPDATE jobs SET lease_expires_at = $3 WHERE id = $1 AND lease_token = $2 AND state = "
                "'running'",
                job.job_id, job.lease_token, now + lease_for)
               .affected() == 1;
  });
}

// The document is locked first, as in complete_job, so that a cancel or a
// deletion cannot slip between the lease check and the event.
bool postgres_store::report_progress(const claimed_job& job, const core::progress& p, core::time_point now) {
  return in_transaction([&](pq::connection& c, pq::transaction& tx) {
    const auto doc = load_document(c, job.document.id, std::nullopt, true);
    if (!doc || doc->status != core::status::processing || !holds_lease(c, job)) {
      tx.rollback();
      return false;
    }
    // The stage, the event and its announcement in one statement, as transition() does.
    c.exec(
        "WITH d AS (UPDATE documents SET stage = $2, last_event_seq = last_event_seq + 1 WHERE id = $1"
        " RETURNING id, last_event_seq),"
        " e AS (INSERT INTO document_events (document_id, seq, status, at, kind, stage, pages_done, "
        "pages_total)"
        " SELECT id, last_event_seq, 'PROCESSING', $3, 'progress', $2, $4, $5 FROM d)"
        " SELECT pg_notify($6, id::text) FROM d",
        doc->id, p.stage, now, p.pages_done, p.pages_total, channel(wakeup_topic::document_changed));
    return true;
  });
}

// The document is locked first, as cancel and delete lock it, so the three
// never deadlock; then the job moves on only under the worker's token.
bool postgres_store::complete_job(const claimed_job& job, const stored_result& res) {
  const auto summary = jsonb_safe(res.summary_json);
  const auto preview = first_characters(res.text, 500);
  return in_transaction([&](pq::connection& c, pq::transaction& tx) {
    const auto doc = load_document(c, job.document.id, std::nullopt, true);
    if (!doc || !fenced_job_update(c, job, "done", res.completed_at, std::nullopt)) {
      tx.rollback();
      return false;
    }
    c.exec(
        "INSERT INTO results (document_id, pipeline_version, started_at, completed_at, attempts, summary, "
        "text,"
        " text_preview, text_bytes) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::bytea, $8::bytea, $9)"
        " ON CONFLICT (document_id) DO UPDATE SET pipeline_version = excluded.pipeline_version,"
        " started_at = excluded.started_at, completed_at = excluded.completed_at, attempts = "
        "excluded.attempts,"
        " summary = excluded.summary, text = excluded.text, text_preview = excluded.text_preview,"
        " text_bytes = excluded.text_bytes",
        doc->id, res.pipeline_version, res.started_at, res.completed_at, res.attempts, summary,
        bytes{res.text}, bytes{preview}, res.text.size());
    transition(c, *doc, core::status::completed, res.completed_at, std::nullopt);
    record_webhook_event(c, core::webhook_event::document_completed, *doc, core::status::completed,
                         res.completed_at, std::nullopt);
    return true;
  });
}

failure_outcome postgres_store::fail_job(const claimed_job& job, core::time_point now,
                                         const core::failure& failure,
                                         std::optional<core::time_point> retry_at) {
  return in_transaction([&](pq::connection& c, pq::transaction& tx) {
    const auto doc = load_document(c, job.document.id, std::nullopt, true);
    if (!doc || !fenced_job_update(c, job, retry_at ? "queued" : "failed", now, retry_at)) {
      tx.rollback();
      return failure_outcome::lease_lost;
    }
    if (retry_at) {
      // Queued again: no stage runs until the next claim.
      c.exec("UPDATE documents SET stage = NULL WHERE id = $1", doc->id);
      // Every process's idle workers learn when to look, rather than at their next poll.
      c.exec("SELECT pg_notify($1, $2)", channel(wakeup_topic::job_available), core::to_unix_ms(*retry_at));
      return failure_outcome::retry_scheduled;
    }
    transition(c, *doc, core::status::failed, now, failure);
    record_webhook_event(c, core::webhook_event::document_failed, *doc, core::status::failed, now, failure);
    return failure_outcome::failed;
  });
}

core::result<cancel_result> postgres_store::cancel_processing(std::string_view document_id,
                                                              const std::optional<std::string>& owner_id,
                                                              const core::failure& failure,
                                                              core::time_point now) {
  return in_transaction([&](pq::connection& c, pq::transaction&) -> core::result<cancel_result> {
    const auto doc = load_document(c, document_id, owner_id, true);
    if (!doc) return core::errc::not_found;
    if (doc->status != core::status::processing) {
      core::error refused(core::errc::not_processing);
      refused.document_status = doc->status;
      return refused;
    }
    // The worker holding the job, in whichever process, stops at once.
    const auto live = c.exec(
        "WITH j AS (UPDATE jobs SET state = 'cancelled', lease_token = NULL, updated_at = $2"
        " WHERE document_id = $1 AND state IN ('queued', 'running') RETURNING id)"
        " SELECT id, pg_notify($3, id::text) FROM j",
        doc->id, now, channel(wakeup_topic::job_stopped));
    std::string job_id = live.empty() ? std::string() : live.text(0, 0);
    auto after = transition(c, *doc, core::status::failed, now, failure);
    record_webhook_event(c, core::webhook_event::document_failed, *doc, core::status::failed, now, failure);
    return cancel_result{std::move(after), std::move(job_id)};
  });
}

std::optional<stored_result> postgres_store::find_result(std::string_view document_id) {
  if (!canonical_id(document_id)) return std::nullopt;
  return retrying([&](pq::connection& c) -> std::optional<stored_result> {
    const auto r = c.exec(
        "SELECT pipeline_version, started_at, completed_at, attempts, summary, text_preview, text_bytes"
        " FROM results WHERE document_id = $1",
        document_id);
    if (r.empty()) return std::nullopt;
    return stored_result{
        r.text(0, 0), r.time(0, 1), r.time(0, 2), static_cast<unsigned>(r.integer(0, 3)),
        r.text(0, 4), {},           r.text(0, 5), static_cast<std::uint64_t>(r.integer(0, 6))};
  });
}

// substring() of an EXTERNAL bytea fetches only the chunks that hold the
// range (a slice of the TOAST value), never the whole text.
std::optional<std::string> postgres_store::read_result_text(std::string_view document_id,
                                                            core::time_point completed_at,
                                                            std::uint64_t offset, std::size_t max) {
  if (!canonical_id(document_id)) return std::nullopt;
  // substring() counts in int4; a text is at most DOCFLOW_MAX_TEXT_BYTES.
  constexpr std::uint64_t int_max = INT_MAX;
  const auto from = std::min<std::uint64_t>(offset, int_max - 1) + 1;
  const auto count = std::min<std::uint64_t>(max, int_max);
  return retrying([&](pq::connection& c) -> std::optional<std::string> {
    const auto r = c.exec(
        "SELECT substring(text FROM $3::int4 FOR $4::int4) FROM results WHERE document_id = $1 AND "
        "completed_at = $2",
        document_id, completed_at, from, count);
    if (r.empty()) return std::nullopt;
    if (offset >= int_max - 1) return std::string();
    return r.text(0, 0);
  });
}

std::vector<document_event> postgres_store::events_after(std::string_view document_id, std::int64_t after) {
  if (!canonical_id(document_id)) return {};
  return retrying([&](pq::connection& c) {
    const auto r = c.exec(
        "SELECT seq, status, at, error, kind, stage, pages_done, pages_total FROM document_events"
        " WHERE document_id = $1 AND seq > $2 ORDER BY seq",
        document_id, after);
    const auto count = [&r](int row, int column) -> std::optional<unsigned> {
      if (r.is_null(row, column)) return std::nullopt;
      return static_cast<unsigned>(r.integer(row, column));
    };
    std::vector<document_event> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      document_event e;
      e.seq = r.integer(i, 0);
      e.status = core::parse_status(r.text(i, 1)).value_or(core::status::uploaded);
      e.at = r.time(i, 2);
      if (!r.is_null(i, 3)) e.error = parse_failure_record(r.text(i, 3));
      if (r.text(i, 4) == "progress") e.progress = core::progress{r.text(i, 5), count(i, 6), count(i, 7)};
      out.push_back(std::move(e));
    }
    return out;
  });
}

// The position is a transaction id: every event written by a transaction
// older than the oldest one still running has been committed (or never
// will be), so reading up to that bound and continuing from it misses
// nothing, however commits interleave. Events of the last transaction read
// may be reported twice when `limit` cuts through it: a spurious wake-up.
database::changed_documents postgres_store::documents_with_events_since(std::int64_t position,
                                                                        std::size_t limit) {
  return retrying([&](pq::connection& c) {
    changed_documents out;
    if (position < 0) {
      out.next = c.exec("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8").integer(0, 0);
      return out;
    }
    const auto r = c.exec(
        "SELECT s.xmin::text::int8, e.xid::text::int8, e.document_id"
        " FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) s"
        " LEFT JOIN LATERAL (SELECT xid, document_id FROM document_events"
        "  WHERE xid >= $1::text::xid8 AND xid < s.xmin ORDER BY xid LIMIT $2) e ON true",
        position, limit);
    out.next = r.integer(0, 0);
    if (r.is_null(0, 1)) return out;
    for (int i = 0; i < r.rows(); ++i) out.ids.push_back(r.text(i, 2));
    if (static_cast<std::size_t>(r.rows()) >= limit) {
      const auto first = r.integer(0, 1);
      const auto last = r.integer(r.rows() - 1, 1);
      // Ask again from the last transaction read; past it, if it alone
      // filled the page (its remaining events are left to the streams'
      // own heartbeat rather than reported forever).
      out.next = last == first ? last + 1 : last;
    }
    return out;
  });
}

queue_stats postgres_store::job_stats() {
  return retrying([](pq::connection& c) {
    const auto r = c.exec(
        "SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'running'),"
        " min(available_at) FILTER (WHERE state = 'queued') FROM jobs WHERE state IN ('queued', 'running')");
    return queue_stats{static_cast<std::uint64_t>(r.integer(0, 0)),
                       static_cast<std::uint64_t>(r.integer(0, 1)), r.optional_time(0, 2)};
  });
}

// --- idempotency keys

core::result<idempotency_claim> postgres_store::begin_idempotent(
    std::string_view user_id, std::string_view key, std::string_view fingerprint, core::time_point now,
    std::chrono::milliseconds ttl, std::chrono::milliseconds abandoned_after) {
  return retrying([&](pq::connection& c) -> core::result<idempotency_claim> {
    // An expired key is forgotten; so is a claim left in flight too long,
    // which only a process that died mid-request leaves behind. Of two
    // requests that find it so, one deletes it; the other's DELETE waits
    // for that and then finds nothing to delete.
    c.exec(
        "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2"
        " AND (expires_at <= $3 OR (state = 'in_flight' AND created_at <= $4))",
        user_id, key, now, now - abandoned_after);
    // Bounded: the row an insert collided with can only vanish by being
    // released (abandoned) in between, each time by another request.
    for (int round = 0; round < max_attempts; ++round) {
      // The insert is the claim: of two at once, ON CONFLICT makes the
      // second wait for the first to commit and then insert nothing.
      auto token = core::random_hex(16);
      const auto inserted = c.exec(
          "INSERT INTO idempotency_keys (user_id, key, fingerprint, state, created_at, expires_at, claim)"
          " VALUES ($1, $2, $3, 'in_flight', $4, $5, $6) ON CONFLICT (user_id, key) DO NOTHING",
          user_id, key, fingerprint, now, now + ttl, token);
      if (inserted.affected() == 1) {
        idempotency_claim claim;
        claim.token = std::move(token);
        return claim;
      }
      const auto r = c.exec(
          "SELECT fingerprint, state, status, body, content_type, location FROM idempotency_keys"
          " WHERE user_id = $1 AND key = $2",
          user_id, key);
      if (r.empty()) continue;
      if (r.text(0, 0) != fingerprint) return core::errc::idempotency_key_reused;
      if (r.text(0, 1) == "in_flight") return core::errc::idempotency_key_in_flight;
      return idempotency_claim{idempotency_claim::kind::replay,    static_cast<int>(r.integer(0, 2)),
                               r.optional_text(0, 3).value_or(""), r.optional_text(0, 4).value_or(""),
                               r.optional_text(0, 5).value_or(""), {}};
    }
    return core::errc::idempotency_key_in_flight;
  });
}

void postgres_store::finish_idempotent(const idempotent_answer& answer) {
  retrying([&](pq::connection& c) { record_answer(c, answer); });
}

void postgres_store::abandon_idempotent(std::string_view user_id, std::string_view key,
                                        std::string_view claim) {
  retrying([&](pq::connection& c) {
    c.exec(
        "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND claim = $3 AND state = 'in_flight'",
        user_id, key, claim);
  });
}

std::size_t postgres_store::purge_idempotency_keys(core::time_point now) {
  return retrying([&](pq::connection& c) {
    return static_cast<std::size_t>(
        c.exec("DELETE FROM idempotency_keys WHERE expires_at <= $1", now).affected());
  });
}

// --- attempt throttles

namespace {

// When the keys next allow an attempt, if one of them refuses one at `now`:
// the latest of the refusing keys' oldest attempts still in their window.
std::optional<core::time_point> refused_until(pq::connection& c, std::span<const attempt_key> keys,
                                              core::time_point now) {
  std::optional<core::time_point> until;
  for (const auto& k : keys) {
    const auto r = c.exec(
        "SELECT count(*), min(t) FROM throttle_attempts a, unnest(a.leaves_at) t"
        " WHERE a.scope = $1 AND a.key = $2 AND t > $3",
        k.scope, k.key, now);
    if (r.integer(0, 0) < static_cast<std::int64_t>(k.limit)) continue;
    const auto frees = r.time(0, 1);
    until = until ? std::max(*until, frees) : frees;
  }
  return until;
}

// Unlocked before the connection closes: the server releases a session's
// locks only once its backend has seen the close, a moment later, and the
// next holder should not have to wait for that.
class advisory_lease final : public maintenance_lease {
public:
  advisory_lease(std::unique_ptr<pq::connection> c, std::int64_t key) noexcept
      : c_(std::move(c)), key_(key) {}
  ~advisory_lease() override {
    try {
      c_->exec("SELECT pg_advisory_unlock($1)", key_);
    } catch (const std::exception&) {
      // The connection is broken: its end releases the lock all the same.
    }
  }
  advisory_lease(const advisory_lease&) = delete;
  advisory_lease& operator=(const advisory_lease&) = delete;

  // The session still being there is the lock still being held; once the
  // connection broke, another process may hold it already.
  bool held() override {
    try {
      c_->exec("SELECT 1");
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }

private:
  std::unique_ptr<pq::connection> c_;
  std::int64_t key_;
};

std::unique_ptr<maintenance_lease> try_advisory(const pool& p, std::int64_t key) {
  auto c = p.connect_alone();
  if (!c->exec("SELECT pg_try_advisory_lock($1)", key).boolean(0, 0)) return nullptr;
  return std::make_unique<advisory_lease>(std::move(c), key);
}

}  // namespace

// Each key's row is locked by the upsert that counts on it, whether it
// counts or not (ON CONFLICT DO UPDATE locks the row it finds, and its WHERE
// sees the row's latest version): concurrent attempts on one key, from any
// node, are counted one after the other, never both on a stale count.
// Attempts are committed without waiting for the WAL flush: a server crash
// forgets the last few, which costs no security worth a flush on every
// login.
std::optional<core::time_point> postgres_store::count_attempt(std::span<const attempt_key> keys,
                                                              core::time_point now,
                                                              std::chrono::milliseconds window) {
  return in_transaction([&](pq::connection& c, pq::transaction& tx) -> std::optional<core::time_point> {
    c.exec("SET LOCAL synchronous_commit = off");
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const auto& k = keys[i];
      const auto counted = c.exec(
          "INSERT INTO throttle_attempts AS a (scope, key, leaves_at) VALUES ($1, $2, ARRAY[$4::timestamptz])"
          " ON CONFLICT (scope, key) DO UPDATE SET leaves_at = array("
          "  SELECT t FROM unnest(a.leaves_at || $4::timestamptz) t WHERE t > $3::timestamptz ORDER BY t)"
          " WHERE (SELECT count(*) FROM unnest(a.leaves_at) t WHERE t > $3::timestamptz) < $5::int8",
          k.scope, k.key, now, now + window, k.limit);
      if (counted.affected() == 1) continue;
      // The keys before this one had room (they counted), so only this one,
      // locked, and those not yet tried can be refusing.
      auto until = refused_until(c, keys.subspan(i), now);
      tx.rollback();
      return until;
    }
    return std::nullopt;
  });
}

std::optional<core::time_point> postgres_store::attempts_refused_until(std::span<const attempt_key> keys,
                                                                       core::time_point now) {
  return retrying([&](pq::connection& c) { return refused_until(c, keys, now); });
}

void postgres_store::release_attempts(std::span<const attempt_release> releases) {
  in_transaction([&](pq::connection& c, pq::transaction&) {
    c.exec("SET LOCAL synchronous_commit = off");
    for (const auto& r : releases) {
      c.exec(r.all ? "DELETE FROM throttle_attempts WHERE scope = $1 AND key = $2"
                   : "UPDATE throttle_attempts SET leaves_at = trim_array(leaves_at, 1)"
                     " WHERE scope = $1 AND key = $2 AND cardinality(leaves_at) > 0",
             r.scope, r.key);
    }
  });
}

// A key's times are sorted, so its last one is when its newest attempt
// leaves (an empty array's is NULL: nothing left to wait for either).
std::size_t postgres_store::purge_attempts(core::time_point now) {
  return retrying([&](pq::connection& c) {
    return static_cast<std::size_t>(
        c.exec("DELETE FROM throttle_attempts WHERE coalesce(leaves_at[cardinality(leaves_at)] <= $1, true)",
               now)
            .affected());
  });
}

// --- maintenance

// A connection of the lease's own, outside the pool: the lock belongs to
// the session, and a process that dies closes it.
std::unique_ptr<maintenance_lease> postgres_store::try_maintenance_lease() {
  return try_advisory(pool_, maintenance_lock);
}

std::unique_ptr<maintenance_lease> postgres_store::try_maintenance_leadership() {
  return try_advisory(pool_, leadership_lock);
}

std::optional<pool_usage> postgres_store::connection_pool() const {
  const auto u = pool_.usage();
  return pool_usage{pool_.options().size, u.in_use, u.waiting, u.waits, u.wait_seconds};
}

// --- resumable uploads

namespace {
constexpr std::string_view upload_columns =
    "id, owner_id, length, received, metadata, idempotency_key, fingerprint, store_state, hash_state,"
    " created_at, expires_at, answer_status, answer_body, answer_content_type";

upload_record read_upload(const pq::result& r, int row) {
  upload_record u;
  u.id = r.text(row, 0);
  u.owner_id = r.text(row, 1);
  u.length = static_cast<std::uint64_t>(r.integer(row, 2));
  u.offset = static_cast<std::uint64_t>(r.integer(row, 3));
  u.metadata = r.text(row, 4);
  u.idempotency_key = r.optional_text(row, 5);
  u.fingerprint = r.text(row, 6);
  u.store_state = r.text(row, 7);
  u.hash_state = r.text(row, 8);
  u.created_at = r.time(row, 9);
  u.expires_at = r.time(row, 10);
  u.answer_status = static_cast<int>(r.integer(row, 11));
  u.answer_body = r.text(row, 12);
  u.answer_content_type = r.text(row, 13);
  return u;
}

std::optional<upload_record> load_upload(pq::connection& c, std::string_view id,
                                         const std::optional<std::string>& owner_id) {
  if (!canonical_id(id) || !canonical_owner(owner_id)) return std::nullopt;
  static const std::string by_id = "SELECT " + std::string(upload_columns) + " FROM uploads WHERE id = $1";
  static const std::string by_id_and_owner = by_id + " AND owner_id = $2";
  const auto r = owner_id ? c.exec(by_id_and_owner, id, *owner_id) : c.exec(by_id, id);
  if (r.empty()) return std::nullopt;
  return read_upload(r, 0);
}
}  // namespace

upload_record postgres_store::create_upload(const upload_record& u) {
  static const std::string insert =
      "INSERT INTO uploads (" + std::string(upload_columns) +
      ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
      " ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
      " DO NOTHING";
  static const std::string by_key =
      "SELECT " + std::string(upload_columns) + " FROM uploads WHERE owner_id = $1 AND idempotency_key = $2";
  return retrying([&](pq::connection& c) {
    // Of two creations under one key, the second waits for the first's
    // commit, inserts nothing, and reads the first's row.
    if (c.exec(insert, u.id, u.owner_id, u.length, u.offset, u.metadata, u.idempotency_key, u.fingerprint,
               u.store_state, u.hash_state, u.created_at, u.expires_at, u.answer_status, u.answer_body,
               u.answer_content_type)
            .affected() == 1) {
      return u;
    }
    const auto r = c.exec(by_key, u.owner_id, *u.idempotency_key);
    if (r.empty()) throw store_error("an upload's idempotency key conflicted, and its row is gone");
    return read_upload(r, 0);
  });
}

std::optional<upload_record> postgres_store::find_upload(std::string_view id,
                                                         const std::optional<std::string>& owner_id) {
  return retrying([&](pq::connection& c) { return load_upload(c, id, owner_id); });
}

upload_lock postgres_store::lock_upload(std::string_view id, const std::optional<std::string>& owner_id,
                                        std::string_view token, core::time_point now,
                                        std::chrono::milliseconds lease_for) {
  if (!canonical_id(id) || !canonical_owner(owner_id)) return {};
  static const std::string take =
      "UPDATE uploads SET lock_token = $2, locked_until = $3 WHERE id = $1"
      " AND (lock_token IS NULL OR locked_until <= $4) AND ($5::uuid IS NULL OR owner_id = $5::uuid) "
      "RETURNING " +
      std::string(upload_columns);
  return retrying([&](pq::connection& c) -> upload_lock {
    const auto r = c.exec(take, id, token, now + lease_for, now, owner_id);
    if (!r.empty()) return {upload_lock::kind::locked, read_upload(r, 0)};
    return {load_upload(c, id, owner_id) ? upload_lock::kind::busy : upload_lock::kind::not_found, {}};
  });
}

bool postgres_store::renew_upload_lock(std::string_view id, std::string_view token, core::time_point now,
                                       std::chrono::milliseconds lease_for) {
  return retrying([&](pq::connection& c) {
    return c.exec("UPDATE uploads SET locked_until = $3 WHERE id = $1 AND lock_token = $2", id, token,
                  now + lease_for)
               .affected() == 1;
  });
}

bool postgres_store::advance_upload(const upload_record& u, std::string_view token) {
  return retrying([&](pq::connection& c) {
    return c.exec(
                "UPDATE uploads SET received = $3, store_state = $4, hash_state = $5, expires_at = $6"
                " WHERE id = $1 AND lock_token = $2",
                u.id, token, u.offset, u.store_state, u.hash_state, u.expires_at)
               .affected() == 1;
  });
}

void postgres_store::unlock_upload(std::string_view id, std::string_view token) {
  retrying([&](pq::connection& c) {
    c.exec("UPDATE uploads SET lock_token = NULL, locked_until = NULL WHERE id = $1 AND lock_token = $2", id,
           token);
  });
}

core::result<void> postgres_store::finish_upload(const upload_record& u, std::string_view token,
                                                 const core::document* doc) {
  return in_transaction([&](pq::connection& c, pq::transaction& tx) -> core::result<void> {
    if (doc) {
      if (auto refused = quota_refusal(c, *doc, default_quota_)) {
        tx.rollback();
        return *refused;
      }
    }
    const auto ended = c.exec(
        "UPDATE uploads SET received = $3, answer_status = $4, answer_body = $5, answer_content_type = $6,"
        " lock_token = NULL, locked_until = NULL WHERE id = $1 AND lock_token = $2",
        u.id, token, u.offset, u.answer_status, u.answer_body, u.answer_content_type);
    if (ended.affected() != 1) {
      tx.rollback();
      return core::errc::upload_locked;
    }
    if (doc) insert_document_row(c, *doc);
    return {};
  });
}

bool postgres_store::delete_upload(std::string_view id, std::string_view token) {
  if (!canonical_id(id)) return false;
  return retrying([&](pq::connection& c) {
    return c.exec("DELETE FROM uploads WHERE id = $1 AND lock_token = $2", id, token).affected() == 1;
  });
}

std::vector<upload_record> postgres_store::expired_uploads(core::time_point now, std::size_t limit) {
  static const std::string sql =
      "SELECT " + std::string(upload_columns) +
      " FROM uploads WHERE expires_at <= $1 AND (lock_token IS NULL OR locked_until <= $1)"
      " ORDER BY expires_at LIMIT $2";
  return retrying([&](pq::connection& c) {
    const auto r = c.exec(sql, now, limit);
    std::vector<upload_record> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_upload(r, i));
    return out;
  });
}

}  // namespace docflow::store::postgres

// --- webhooks

namespace docflow::store::postgres {

namespace {
constexpr std::string_view webhook_columns = "id, owner_id, url, events, secret, created_at";

webhook read_webhook(const pq::result& r, int row) {
  return {r.text(row, 0), r.text(row, 1), r.text(row, 2), static_cast<unsigned>(r.integer(row, 3)),
          r.text(row, 4), r.time(row, 5)};
}

// As the SQLite store's: webhook_deliveries d joined with webhook_events e.
constexpr std::string_view delivery_columns =
    "d.id, d.webhook_id, d.state, d.attempts, d.available_at, d.last_status, d.last_error, d.created_at,"
    " d.delivered_at, e.id, e.type, e.document_id, e.status, e.error, e.created_at";

webhook_delivery read_delivery(const pq::result& r, int row) {
  webhook_delivery d;
  d.id = r.text(row, 0);
  d.webhook_id = r.text(row, 1);
  d.state = r.text(row, 2);
  d.attempts = static_cast<unsigned>(r.integer(row, 3));
  d.available_at = r.time(row, 4);
  if (!r.is_null(row, 5)) d.last_status = static_cast<int>(r.integer(row, 5));
  d.last_error = r.optional_text(row, 6);
  d.created_at = r.time(row, 7);
  d.delivered_at = r.optional_time(row, 8);
  d.event.id = r.text(row, 9);
  d.event.type = core::parse_webhook_event(r.text(row, 10)).value_or(core::webhook_event::document_uploaded);
  d.event.document_id = r.text(row, 11);
  d.event.status = core::parse_status(r.text(row, 12)).value_or(core::status::uploaded);
  if (!r.is_null(row, 13)) d.event.error = parse_failure_record(r.text(row, 13));
  d.event.created_at = r.time(row, 14);
  return d;
}

std::optional<webhook_delivery> load_delivery(pq::connection& c, std::string_view id) {
  static const std::string sql = "SELECT " + std::string(delivery_columns) +
                                 " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
                                 " WHERE d.id = $1";
  const auto r = c.exec(sql, id);
  if (r.empty()) return std::nullopt;
  return read_delivery(r, 0);
}
}  // namespace

core::result<void> postgres_store::create_webhook(const webhook& w, std::size_t max_per_owner) {
  return in_transaction([&](pq::connection& c, pq::transaction& tx) -> core::result<void> {
    // The owner's row, locked: two registrations at once count one after the other.
    c.exec("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", w.owner_id);
    const auto n = c.exec("SELECT count(*) FROM webhooks WHERE owner_id = $1", w.owner_id).integer(0, 0);
    if (static_cast<std::size_t>(n) >= max_per_owner) {
      tx.rollback();
      return core::errc::limit_reached;
    }
    c.exec("INSERT INTO webhooks (" + std::string(webhook_columns) + ") VALUES ($1, $2, $3, $4, $5, $6)",
           w.id, w.owner_id, w.url, w.events, w.secret, w.created_at);
    return {};
  });
}

std::vector<webhook> postgres_store::list_webhooks(std::string_view owner_id) {
  if (!canonical_id(owner_id)) return {};
  return retrying([&](pq::connection& c) {
    const auto r = c.exec("SELECT " + std::string(webhook_columns) +
                              " FROM webhooks WHERE owner_id = $1 ORDER BY created_at, id",
                          owner_id);
    std::vector<webhook> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_webhook(r, i));
    return out;
  });
}

std::optional<webhook> postgres_store::find_webhook(std::string_view id, std::string_view owner_id) {
  if (!canonical_id(id) || !canonical_id(owner_id)) return std::nullopt;
  return retrying([&](pq::connection& c) -> std::optional<webhook> {
    const auto r =
        c.exec("SELECT " + std::string(webhook_columns) + " FROM webhooks WHERE id = $1 AND owner_id = $2",
               id, owner_id);
    if (r.empty()) return std::nullopt;
    return read_webhook(r, 0);
  });
}

bool postgres_store::delete_webhook(std::string_view id, std::string_view owner_id) {
  if (!canonical_id(id) || !canonical_id(owner_id)) return false;
  return retrying([&](pq::connection& c) {
    return c.exec("DELETE FROM webhooks WHERE id = $1 AND owner_id = $2", id, owner_id).affected() == 1;
  });
}

std::vector<webhook_delivery> postgres_store::list_deliveries(const delivery_query& q) {
  if (!canonical_id(q.webhook_id) || !canonical_id(q.owner_id)) return {};
  std::string sql = "SELECT " + std::string(delivery_columns) +
                    " FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
                    " JOIN webhooks w ON w.id = d.webhook_id WHERE d.webhook_id = $1 AND w.owner_id = $2";
  std::vector<pq::param> params{pq::to_param(q.webhook_id), pq::to_param(q.owner_id)};
  const auto next = [&] { return "$" + std::to_string(params.size()); };
  if (q.after) {
    params.push_back(pq::to_param(q.after->first));
    const auto at = next();
    params.push_back(pq::to_param(canonical_id(q.after->second) ? q.after->second : std::string(36, '0')));
    sql += " AND (d.created_at, d.id) < (" + at + ", " + next() + "::uuid)";
  }
  params.push_back(pq::to_param(q.limit));
  sql += " ORDER BY d.created_at DESC, d.id DESC LIMIT " + next();
  return retrying([&](pq::connection& c) {
    const auto r = c.run(sql, params);
    std::vector<webhook_delivery> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_delivery(r, i));
    return out;
  });
}

std::optional<webhook_delivery> postgres_store::redeliver(std::string_view webhook_id,
                                                          std::string_view delivery_id,
                                                          std::string_view owner_id,
                                                          const std::string& new_id, core::time_point now) {
  if (!canonical_id(webhook_id) || !canonical_id(delivery_id) || !canonical_id(owner_id)) return std::nullopt;
  return in_transaction([&](pq::connection& c, pq::transaction&) -> std::optional<webhook_delivery> {
    const auto made = c.exec(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, state, attempts, available_at, created_at,"
        " updated_at) SELECT $4, d.webhook_id, d.event_id, 'pending', 0, $5, $5, $5"
        " FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
        " WHERE d.id = $1 AND d.webhook_id = $2 AND w.owner_id = $3",
        delivery_id, webhook_id, owner_id, new_id, now);
    if (made.affected() != 1) return std::nullopt;
    return load_delivery(c, new_id);
  });
}

// As claim_job: a lapsed lease first, else the longest available; rows
// another claimer holds are skipped, never waited for.
std::optional<claimed_delivery> postgres_store::claim_delivery(core::time_point now,
                                                               std::chrono::milliseconds lease_for,
                                                               const std::string& lease_token) {
  return in_transaction([&](pq::connection& c, pq::transaction&) -> std::optional<claimed_delivery> {
    static const std::string take =
        "UPDATE webhook_deliveries SET state = 'sending', attempts = attempts + 1, lease_token = $2,"
        " lease_expires_at = $3, updated_at = $1 WHERE id = (SELECT id FROM webhook_deliveries"
        " WHERE %s LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id";
    static const std::string lapsed = [] {
      auto s = take;
      s.replace(s.find("%s"), 2, "state = 'sending' AND lease_expires_at < $1 ORDER BY lease_expires_at");
      return s;
    }();
    static const std::string pending = [] {
      auto s = take;
      s.replace(s.find("%s"), 2, "state = 'pending' AND available_at <= $1 ORDER BY available_at");
      return s;
    }();
    auto r = c.exec(lapsed, now, lease_token, now + lease_for);
    if (r.empty()) r = c.exec(pending, now, lease_token, now + lease_for);
    if (r.empty()) return std::nullopt;
    const auto id = r.text(0, 0);
    const auto target = c.exec(
        "SELECT w.url, w.secret FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE d.id "
        "= $1",
        id);
    auto delivery = load_delivery(c, id);
    if (target.empty() || !delivery) return std::nullopt;  // cannot happen: one transaction
    return claimed_delivery{std::move(*delivery), lease_token, target.text(0, 0), target.text(0, 1)};
  });
}

bool postgres_store::finish_delivery(const claimed_delivery& d, core::time_point now,
                                     const delivery_outcome& o) {
  using kind = delivery_outcome::kind;
  const char* state = o.outcome == kind::delivered ? "delivered"
                      : o.outcome == kind::failed  ? "failed"
                                                   : "pending";
  const auto available = o.outcome == kind::retry ? o.retry_at : now;
  const auto delivered = o.outcome == kind::delivered ? std::optional(now) : std::nullopt;
  return retrying([&](pq::connection& c) {
    return c.exec(
                "UPDATE webhook_deliveries SET state = $3, lease_token = NULL, lease_expires_at = NULL,"
                " available_at = $4, last_status = $5, last_error = $6, updated_at = $7, delivered_at = $8"
                " WHERE id = $1 AND lease_token = $2 AND state = 'sending'",
                d.delivery.id, d.lease_token, state, available, o.status, o.error, now, delivered)
               .affected() == 1;
  });
}

std::uint64_t postgres_store::pending_deliveries() {
  return retrying([](pq::connection& c) {
    return static_cast<std::uint64_t>(
        c.exec("SELECT count(*) FROM webhook_deliveries WHERE state IN ('pending', 'sending')")
            .integer(0, 0));
  });
}

}  // namespace docflow::store::postgres
