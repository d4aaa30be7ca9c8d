#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include "store/database.hpp"

namespace docflow::store::sqlite {

class connection;

/// The embedded database: one SQLite file in WAL mode, shared by the threads
/// of the blocking pool through a small set of reusable connections.
class sqlite_store final : public database {
public:
  /// Opens (creating if missing) the database file. Throws store_error.
  explicit sqlite_store(std::filesystem::path path);
  ~sqlite_store() override;

  bool point_reads_inline() const noexcept override { return true; }
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

private:
  // flock(2) on the file named by the database's path and `suffix`; null when another holds it.
  std::unique_ptr<maintenance_lease> try_file_lease(std::string_view suffix);

  // A connection borrowed from the pool, returned on destruction.
  class lease {
  public:
    explicit lease(sqlite_store& s);
    ~lease();
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    connection& operator*() const noexcept { return *c_; }
    connection* operator->() const noexcept { return c_.get(); }

  private:
    sqlite_store& s_;
    std::unique_ptr<connection> c_;
  };

  struct pending_insert;
  void insert_batch(const std::vector<pending_insert*>& batch);

  std::filesystem::path path_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<connection>> idle_;

  // Group commit of document inserts: concurrent callers queue, one of them
  // (the leader) writes the whole queue in one transaction, and all return
  // once it is durable. One WAL fsync per batch instead of one per upload,
  // and no callers sleeping in SQLite's busy handler for the write lock.
  std::mutex inserts_mutex_;
  std::condition_variable inserts_done_;
  std::vector<pending_insert*> inserts_queued_;
  bool inserts_leader_ = false;
};

}  // namespace docflow::store::sqlite
