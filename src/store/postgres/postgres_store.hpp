#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "store/database.hpp"
#include "store/postgres/listener.hpp"
#include "store/postgres/pool.hpp"

namespace docflow::store::postgres {

/// The shared database: PostgreSQL through libpq, for several docflow
/// processes at once. Every read-check-write holds under READ COMMITTED
/// with any number of processes: the row checked is locked (SELECT ... FOR
/// UPDATE) or the write is conditional, and a deadlock is retried here.
class postgres_store final : public database {
public:
  /// Connects once (so a wrong URL fails at start-up). Throws store_error.
  postgres_store(std::string url, const pool_settings& options);
  ~postgres_store() override;

  // A network database: no call is cheap enough for an I/O thread.
  bool point_reads_inline() const noexcept override { return false; }
  // LISTEN/NOTIFY: the changes that wake others NOTIFY in their own
  // transaction, so the hint is delivered when (and only if) they commit.
  store::wakeups* wakeups() noexcept override { return &listener_; }
  int migrate() override;
  int schema_version() override;
  int known_schema_version() const override;
  void check() override;

  core::result<void> create_user(const core::user& u) override;
  std::optional<core::user> find_user_by_name(std::string_view username) override;
  std::optional<core::user> find_user(std::string_view id) override;
  std::vector<core::user> list_users() override;

  core::quota_state find_quota(std::string_view user_id) override;
  bool set_quota(std::string_view user_id, const std::optional<core::limit_setting>& bytes,
                 const std::optional<core::limit_setting>& documents) override;

  core::result<void> create_api_key(const api_key& k, std::string_view key_hash,
                                    std::size_t max_per_user) override;
  std::vector<api_key> list_api_keys(std::string_view user_id) override;
  bool delete_api_key(std::string_view id, std::string_view user_id) override;
  std::optional<api_key_holder> find_api_key(std::string_view key_hash) override;
  void rehash_api_key(std::string_view id, std::string_view key_hash) override;
  void touch_api_key(std::string_view id, core::time_point now, std::chrono::milliseconds interval) override;

  void start_refresh_family(const refresh_grant& first) override;
  rotation_result rotate_refresh_token(std::string_view presented_hash, refresh_grant successor,
                                       std::chrono::milliseconds grace) override;
  void revoke_refresh_family(std::string_view token_hash, core::time_point now) override;
  std::size_t purge_refresh_families(core::time_point now) override;

  core::result<void> insert_document(const core::document& d, const idempotent_answer* answer) override;
  std::optional<core::document> find_document(std::string_view id,
                                              const std::optional<std::string>& owner_id) override;
  std::vector<core::document> list_documents(const document_query& q) override;
  core::result<void> delete_document(std::string_view id,
                                     const std::optional<std::string>& owner_id) override;

  core::result<process_result> request_processing(std::string_view document_id,
                                                  const std::optional<std::string>& owner_id,
                                                  const std::string& job_id, core::time_point now,
                                                  std::uint64_t max_queued, bool force) override;
  std::optional<claimed_job> claim_job(core::time_point now, std::chrono::milliseconds lease_for,
                                       const std::string& lease_token,
                                       unsigned max_running_per_owner = 0) override;
  bool lease_held(const claimed_job& job) override;
  bool renew_lease(const claimed_job& job, core::time_point now,
                   std::chrono::milliseconds lease_for) override;
  bool report_progress(const claimed_job& job, const core::progress& p, core::time_point now) override;
  bool complete_job(const claimed_job& job, const stored_result& result) override;
  failure_outcome fail_job(const claimed_job& job, core::time_point now, const core::failure& failure,
                           std::optional<core::time_point> retry_at) override;
  core::result<cancel_result> cancel_processing(std::string_view document_id,
                                                const std::optional<std::string>& owner_id,
                                                const core::failure& failure, core::time_point now) override;
  std::optional<stored_result> find_result(std::string_view document_id) override;
  std::optional<std::string> read_result_text(std::string_view document_id, core::time_point completed_at,
                                              std::uint64_t offset, std::size_t max) override;
  std::vector<document_event> events_after(std::string_view document_id, std::int64_t after) override;
  changed_documents documents_with_events_since(std::int64_t position, std::size_t limit) override;
  queue_stats job_stats() override;

  core::result<idempotency_claim> begin_idempotent(std::string_view user_id, std::string_view key,
                                                   std::string_view fingerprint, core::time_point now,
                                                   std::chrono::milliseconds ttl,
                                                   std::chrono::milliseconds abandoned_after) override;
  void finish_idempotent(const idempotent_answer& answer) override;
  void abandon_idempotent(std::string_view user_id, std::string_view key, std::string_view claim) override;
  std::size_t purge_idempotency_keys(core::time_point now) override;

  std::optional<core::time_point> count_attempt(std::span<const attempt_key> keys, core::time_point now,
                                                std::chrono::milliseconds window) override;
  std::optional<core::time_point> attempts_refused_until(std::span<const attempt_key> keys,
                                                         core::time_point now) override;
  void release_attempts(std::span<const attempt_release> releases) override;
  std::size_t purge_attempts(core::time_point now) override;

  upload_record create_upload(const upload_record& u) override;
  std::optional<upload_record> find_upload(std::string_view id,
                                           const std::optional<std::string>& owner_id) override;
  upload_lock lock_upload(std::string_view id, const std::optional<std::string>& owner_id,
                          std::string_view token, core::time_point now,
                          std::chrono::milliseconds lease_for) override;
  bool renew_upload_lock(std::string_view id, std::string_view token, core::time_point now,
                         std::chrono::milliseconds lease_for) override;
  bool advance_upload(const upload_record& u, std::string_view token) override;
  void unlock_upload(std::string_view id, std::string_view token) override;
  core::result<void> finish_upload(const upload_record& u, std::string_view token,
                                   const core::document* doc) override;
  bool delete_upload(std::string_view id, std::string_view token) override;
  std::vector<upload_record> expired_uploads(core::time_point now, std::size_t limit) override;

  core::result<void> create_webhook(const webhook& w, std::size_t max_per_owner) override;
  std::vector<webhook> list_webhooks(std::string_view owner_id) override;
  std::optional<webhook> find_webhook(std::string_view id, std::string_view owner_id) override;
  bool delete_webhook(std::string_view id, std::string_view owner_id) override;
  std::vector<webhook_delivery> list_deliveries(const delivery_query& q) override;
  std::optional<webhook_delivery> redeliver(std::string_view webhook_id, std::string_view delivery_id,
                                            std::string_view owner_id, const std::string& new_id,
                                            core::time_point now) override;
  std::optional<claimed_delivery> claim_delivery(core::time_point now, std::chrono::milliseconds lease_for,
                                                 const std::string& lease_token) override;
  bool finish_delivery(const claimed_delivery& d, core::time_point now, const delivery_outcome& o) override;
  std::uint64_t pending_deliveries() override;

  std::unique_ptr<maintenance_lease> try_maintenance_lease() override;
  std::unique_ptr<maintenance_lease> try_maintenance_leadership() override;

  std::optional<pool_usage> connection_pool() const override;

private:
  // Runs f(connection) on a pooled connection; a deadlock or serialization
  // failure runs it again, a bounded number of times.
  template <class F>
  auto retrying(F&& f);
  // The same, inside BEGIN ... COMMIT; f(connection, transaction) may roll
  // back itself.
  template <class F>
  auto in_transaction(F&& f);

  pool pool_;
  listener listener_;  ///< after pool_, whose connect_alone it uses
};

/// The store for `url` (a postgresql:// URL or libpq key=value string) with
/// at most `pool_size` connections and the default timeouts; `password`,
/// when not empty, wins over the URL's. Throws store_error when the
/// database cannot be reached.
std::unique_ptr<database> open(const std::string& url, std::size_t pool_size, std::string password = {});

}  // namespace docflow::store::postgres
