#pragma once

#include <filesystem>
#include <mutex>
#include <unordered_set>

#include "blob/blob_store.hpp"

namespace docflow::blob {

/// Blobs as files: `root/<last two chars of key>/<key>`. An upload is an
/// unnamed file (O_TMPFILE) in `root/tmp/` until commit links it into place,
/// so a file under a key is always complete. A resumable upload, which
/// outlives its requests, is a named file `root/partial/<key>` until its
/// commit links it into place.
class fs_blob_store final : public blob_store {
public:
  /// Creates `root` and `root/tmp` when missing, and checks that a file can
  /// be created there (check()). Throws blob_error.
  explicit fs_blob_store(std::filesystem::path root);

  bool reads_inline() const noexcept override { return true; }
  void check() override;
  std::unique_ptr<blob_writer> begin(const std::string& key) override;
  std::unique_ptr<blob_reader> open(const std::string& key) override;
  void remove(const std::string& key) override;
  bool exists(const std::string& key) override;
  std::vector<std::string> keys_stored_before(std::chrono::system_clock::time_point cutoff, std::size_t limit,
                                              const std::string& after) override;
  std::unique_ptr<local_copy> fetch(const std::string& key) override;
  std::string begin_resumable(const std::string& key) override;
  std::unique_ptr<resumable_writer> resume(const std::string& key, const std::string& state,
                                           std::uint64_t size) override;
  void discard_resumable(const std::string& key, const std::string& state) override;

  /// Where `key` lives (also used by the writer to commit).
  std::filesystem::path path_of(const std::string& key) const;

  /// Where a resumable upload to `key` keeps its bytes until its commit.
  std::filesystem::path partial_path_of(const std::string& key) const;

  /// Creates the shard directory `dir` (durably) unless this store has seen
  /// it already: a mkdir per upload showed in the upload profile.
  void ensure_shard(const std::filesystem::path& dir) const;

private:
  std::filesystem::path root_;
  mutable std::mutex shards_mutex_;
  mutable std::unordered_set<std::string> shards_;  ///< shard directories known to exist
};

}  // namespace docflow::blob
