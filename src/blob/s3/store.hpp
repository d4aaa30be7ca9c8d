#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "blob/blob_store.hpp"
#include "blob/s3/client.hpp"

namespace docflow::blob::s3 {

struct store_config {
  client_config client;
  /// Prepended to every key: "" or ending in '/'.
  std::string prefix;
  /// An upload above this size goes up as a multipart upload, in parts of
  /// this size (S3 allows 5 MiB to 5 GiB), while the client is still sending.
  std::uint64_t part_size = std::uint64_t{8} << 20;
  /// Uploads spool here, and workers' copies (fetch) are made here. Each
  /// process takes a directory of its own inside and removes those that
  /// processes which died left behind.
  std::filesystem::path scratch_dir;
  /// Part uploads running at once across all uploads of this process.
  std::size_t upload_threads = 8;
  /// When set, download_url gives presigned URLs that live this long.
  std::chrono::seconds presigned_downloads{0};
  /// Told of a failure no caller waits for (aborting a dropped upload), for
  /// the log; the maintenance pass cleans up after it.
  std::function<void(const std::string& what)> on_background_failure;
};

/// Blobs as objects in an S3 bucket, under `prefix` + key. An upload is
/// spooled to an unnamed local file (bounded memory whatever its size); a
/// small one is PUT at commit, a large one becomes a multipart upload whose
/// parts go up in the background as soon as each is complete, and commit
/// sends the last part and completes it. Nothing is visible under a key
/// before commit returns; a writer dropped before commit aborts its
/// multipart upload (in the background: the destructor never blocks).
///
/// A resumable upload (tus) is a multipart upload at its final key whose
/// parts go up, whole, as its requests bring the bytes; the bytes after the
/// last whole part wait in a "tail" object under `prefix` + "tus/<key>/"
/// (a name no blob key can have), where the next request, on any process,
/// finds them. Its state names the multipart upload, the parts sent and
/// the tail.
class store final : public blob_store {
public:
  /// Prepares the scratch directory (sweeping what dead processes left);
  /// does not contact S3 (check() does). Throws blob_error or
  /// std::invalid_argument (a bad endpoint, bucket or part size).
  explicit store(store_config config);
  ~store() override;
  store(const store&) = delete;
  store& operator=(const store&) = delete;

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
  std::size_t remove_incomplete_before(std::chrono::system_clock::time_point cutoff,
                                       const std::function<bool(const std::string& key)>& resumable) override;
  std::optional<std::string> download_url(const std::string& key, const download_headers& headers) override;

  struct impl;

private:
  // Deletes the tail objects of the resumable upload to `key`, but `keep`.
  void remove_tails(const std::string& key, const std::string& keep);

  std::shared_ptr<impl> impl_;
};

}  // namespace docflow::blob::s3
