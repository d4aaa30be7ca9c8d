#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/document.hpp"
#include "core/refresh_rules.hpp"
#include "core/user.hpp"

namespace docflow::store {

/// A new refresh token: the family it belongs to and its lifetime.
struct refresh_grant {
  std::string family_id;
  std::string user_id;
  std::string token_hash;  ///< SHA-256 hex of the opaque token
  core::time_point issued_at;
  core::time_point expires_at;
};

/// What presenting a refresh token did.
struct rotation_result {
  core::rotation_decision decision = core::rotation_decision::reject;
  std::optional<core::user> user;  ///< the token's owner, when rotated
};

/// A page request over documents, newest first.
struct document_query {
  std::optional<std::string> owner_id;  ///< nullopt: every owner (admins)
  std::optional<core::status> status;
  std::size_t limit = 50;
  /// Keyset position: only documents strictly older than (created_at, id).
  std::optional<std::pair<core::time_point, std::string>> after;
};

enum class delete_outcome { deleted, not_found, busy };

/// A database failure; `what()` is for the log, never for a client.
class store_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The database behind docflow, shaped so that SQLite and PostgreSQL can both
/// implement it without callers knowing which one they hold. Every method
/// blocks: call it from the blocking pool, never from an I/O thread.
class database {
public:
  virtual ~database() = default;

  /// Applies every migration newer than the schema's version, each in its own
  /// transaction; safe when several processes start at once. Returns the
  /// version reached. Throws store_error.
  virtual int migrate() = 0;

  /// The schema version recorded in the database (0 when none).
  virtual int schema_version() = 0;

  /// Answers a trivial query over a fresh connection, so that a database file
  /// that vanished or was damaged is noticed. Throws store_error.
  virtual void check() = 0;

  // --- users

  /// Inserts `u`; false when the username is taken (ignoring case).
  virtual bool create_user(const core::user& u) = 0;
  virtual std::optional<core::user> find_user_by_name(std::string_view username) = 0;
  virtual std::optional<core::user> find_user(std::string_view id) = 0;
  /// Every user, oldest first.
  virtual std::vector<core::user> list_users() = 0;

  // --- refresh-token families

  /// Starts a family (a login) holding its first token.
  virtual void start_refresh_family(const refresh_grant& first) = 0;

  /// In one transaction: finds `presented_hash`, applies
  /// core::decide_rotation, and then either stores `successor` in the same
  /// family (rotate), revokes the family (reuse_detected), or does nothing
  /// (reject; also for an unknown token). successor.family_id and user_id are
  /// filled in by the store.
  virtual rotation_result rotate_refresh_token(std::string_view presented_hash, refresh_grant successor,
                                               std::chrono::milliseconds grace) = 0;

  /// Revokes the family holding `token_hash`; unknown tokens are ignored.
  virtual void revoke_refresh_family(std::string_view token_hash, core::time_point now) = 0;

  /// Deletes families that expired before `now`; returns how many.
  virtual std::size_t purge_refresh_families(core::time_point now) = 0;

  // --- documents

  virtual void insert_document(const core::document& d) = 0;

  /// The document `id`, if it exists and (when `owner_id` is set) belongs to that owner.
  virtual std::optional<core::document> find_document(std::string_view id,
                                                      const std::optional<std::string>& owner_id) = 0;

  /// Up to q.limit documents in (created_at, id) descending order.
  virtual std::vector<core::document> list_documents(const document_query& q) = 0;

  /// Deletes the row unless core::can_delete refuses its status (busy); the
  /// check and the delete are one transaction.
  virtual delete_outcome delete_document(std::string_view id, const std::optional<std::string>& owner_id) = 0;
};

}  // namespace docflow::store
