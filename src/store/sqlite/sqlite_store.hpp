#pragma once

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

  int migrate() override;
  int schema_version() override;
  void check() override;

  bool create_user(const core::user& u) override;
  std::optional<core::user> find_user_by_name(std::string_view username) override;
  std::optional<core::user> find_user(std::string_view id) override;
  std::vector<core::user> list_users() override;

  void start_refresh_family(const refresh_grant& first) override;
  rotation_result rotate_refresh_token(std::string_view presented_hash, refresh_grant successor,
                                       std::chrono::milliseconds grace) override;
  void revoke_refresh_family(std::string_view token_hash, core::time_point now) override;
  std::size_t purge_refresh_families(core::time_point now) override;

  void insert_document(const core::document& d) override;
  std::optional<core::document> find_document(std::string_view id,
                                              const std::optional<std::string>& owner_id) override;
  std::vector<core::document> list_documents(const document_query& q) override;
  delete_outcome delete_document(std::string_view id, const std::optional<std::string>& owner_id) override;

private:
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

  std::filesystem::path path_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<connection>> idle_;
};

}  // namespace docflow::store::sqlite
