#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace docflow::blob {

/// A storage failure; `what()` is for the log, never for a client.
class blob_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The store is out of space (ENOSPC, EDQUOT): the client may retry later.
class blob_full : public blob_error {
public:
  using blob_error::blob_error;
};

/// Whether `key` can name a blob in any store: 2 to 128 characters, none of
/// them a separator or a dot (keys are ours, document ids; this keeps a
/// mistaken one from reaching outside a store's directory or prefix).
inline bool valid_key(std::string_view key) {
  return key.size() >= 2 && key.size() <= 128 && key.find_first_of("/\\.") == std::string_view::npos;
}

/// An upload in progress to the key begin() was given. Nothing is visible
/// under the key until commit; destroying an uncommitted writer discards
/// the bytes (without blocking: it may run on an I/O thread).
class blob_writer {
public:
  virtual ~blob_writer() = default;

  /// Appends bytes. Does not wait for the device (for the local disk: they
  /// go to the page cache). Throws blob_full or blob_error.
  virtual void write(std::string_view bytes) = 0;

  /// The number of bytes written so far.
  virtual std::uint64_t size() const noexcept = 0;

  /// Reads up to `n` of the bytes written so far, from `offset`; fewer only at their end.
  /// For checks made before commit (the DOCX check). Throws blob_error.
  virtual std::size_t read_at(std::uint64_t offset, char* out, std::size_t n) = 0;

  /// Makes the bytes durable and visible under the key (for the local disk:
  /// fsync, link into place, fsync the directory; for S3: the object
  /// acknowledged whole). Blocks: call it on the blocking pool. Throws
  /// blob_full or blob_error; on failure nothing is visible under the key.
  virtual void commit() = 0;
};

/// The bytes of a resumable upload (tus), which arrive over many requests,
/// perhaps to different processes. One request resumes the upload from the
/// state its store recorded last (blob_store::resume), appends what it
/// receives, and persists: the state persist() returns names every byte
/// received, and is what the caller records in the database before it
/// acknowledges them. Until the caller records a new state the previous
/// one stays valid, so a request that fails (a checksum mismatch, a lost
/// lock, a crash) leaves the upload as it was last recorded.
class resumable_writer {
public:
  virtual ~resumable_writer() = default;

  /// Appends bytes after those received so far. Bounded memory, however
  /// large the upload. Throws blob_full or blob_error.
  virtual void write(std::string_view bytes) = 0;

  /// The bytes received in all, earlier requests' included.
  virtual std::uint64_t size() const noexcept = 0;

  /// Makes every byte written durable (for the local disk: fsync) and
  /// returns the state that names them. Blocks. Throws blob_full or blob_error.
  virtual std::string persist() = 0;

  /// Makes the whole upload the blob under its key, as blob_writer::commit
  /// does; call it with a writer resumed from the recorded state of an
  /// upload that has received every byte. Repeating it after a crash (the
  /// blob made, the caller's record not) succeeds. Blocks. Throws blob_full
  /// or blob_error.
  virtual void commit() = 0;
};

/// Random-access reads of a stored blob.
class blob_reader {
public:
  virtual ~blob_reader() = default;
  virtual std::uint64_t size() const noexcept = 0;
  /// Reads up to `n` bytes at `offset`; fewer only at the end. Throws blob_error.
  virtual std::size_t read_at(std::uint64_t offset, char* out, std::size_t n) = 0;
};

/// A local file holding a blob's bytes, for parsers that need a path. A
/// store that has to download the bytes makes a temporary that this deletes.
class local_copy {
public:
  local_copy(std::filesystem::path path, bool temporary) : path_(std::move(path)), temporary_(temporary) {}
  ~local_copy() {
    if (temporary_) {
      std::error_code ignored;
      std::filesystem::remove(path_, ignored);
    }
  }
  local_copy(const local_copy&) = delete;
  local_copy& operator=(const local_copy&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

private:
  std::filesystem::path path_;
  bool temporary_;
};

/// Where document bytes live: local disk now, S3-compatible storage later.
/// Keys are ours (document ids), never names a client chose. Methods that
/// touch the disk block: call them from the blocking pool.
class blob_store {
public:
  virtual ~blob_store() = default;

  /// Whether reading a blob (open, read_at) is quick enough to run on an
  /// I/O thread: true for local disk, whose reads come from the page cache;
  /// never for a store across a network. api::backend asks.
  virtual bool reads_inline() const noexcept { return false; }

  /// Proves the store can take a write right now (readiness). Throws blob_error.
  virtual void check() = 0;

  /// Starts an upload to `key`, a key no blob has: the key is known from
  /// the start so that a store across a network can send the bytes while
  /// they arrive. Throws blob_full or blob_error.
  virtual std::unique_ptr<blob_writer> begin(const std::string& key) = 0;

  /// Starts a resumable upload (tus) to `key`, a key no blob has; returns
  /// its first state (no byte received). Blocks. Throws blob_full or blob_error.
  virtual std::string begin_resumable(const std::string& key) = 0;

  /// Resumes the upload to `key` at a state persist() returned, which named
  /// `size` bytes. Blocks. Throws blob_error.
  virtual std::unique_ptr<resumable_writer> resume(const std::string& key, const std::string& state,
                                                   std::uint64_t size) = 0;

  /// Frees what the resumable upload to `key` holds besides a committed
  /// blob (a partial file, S3's multipart upload and spooled tail), whether
  /// `state` or a later write that was never recorded made it; what is
  /// missing already is no error. For an upload terminated, expired or
  /// refused, and after one whose blob was committed. Blocks. Throws blob_error.
  virtual void discard_resumable(const std::string& key, const std::string& state) = 0;

  /// Opens a blob; nullptr when no blob has that key. Throws blob_error.
  virtual std::unique_ptr<blob_reader> open(const std::string& key) = 0;

  /// Deletes a blob; a missing one is not an error. Throws blob_error.
  virtual void remove(const std::string& key) = 0;

  virtual bool exists(const std::string& key) = 0;

  /// Up to `limit` keys of blobs stored (committed) before `cutoff`, in key
  /// order, the first of them after `after` ("" for the very first): what
  /// the maintenance pass checks for blobs that no document row names (a
  /// crash between commit and the row's insert, a delete whose blob could
  /// not be removed). It checks a batch per pass and goes on after the
  /// batch's last key the next time, starting over after an empty batch,
  /// so every blob is checked in turn however many there are. A store may
  /// return fewer than `limit` before the end (the local disk drops the
  /// young ones among the next `limit` keys).
  virtual std::vector<std::string> keys_stored_before(std::chrono::system_clock::time_point cutoff,
                                                      std::size_t limit, const std::string& after) = 0;

  /// The blob as a local file. Throws blob_error when it is missing.
  virtual std::unique_ptr<local_copy> fetch(const std::string& key) = 0;

  /// Frees what uploads begun before `cutoff` and never committed still
  /// hold in the store (S3's incomplete multipart uploads, which a crash
  /// leaves), except those to a key for which `resumable` is true (a
  /// resumable upload still under way, which may last for days); returns
  /// how many. The local disk keeps nothing of them.
  virtual std::size_t remove_incomplete_before(
      std::chrono::system_clock::time_point /*cutoff*/,
      const std::function<bool(const std::string& key)>& /*resumable*/) {
    return 0;
  }

  /// Headers a download through download_url is to carry.
  struct download_headers {
    std::string content_type;
    std::string content_disposition;
  };

  /// A URL from which a client may download the blob itself, without
  /// credentials, for a short while (an S3 presigned URL), or nullopt when
  /// the bytes are to pass through docflow (the local disk; S3 unless
  /// presigned downloads are on). Does not check that the blob exists.
  virtual std::optional<std::string> download_url(const std::string& /*key*/,
                                                  const download_headers& /*headers*/) {
    return std::nullopt;
  }
};

}  // namespace docflow::blob
