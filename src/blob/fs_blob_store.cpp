#include "blob/fs_blob_store.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <queue>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob/file_io.hpp"

namespace docflow::blob {

namespace {

void fsync_path(const std::filesystem::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_io_error("open " + p.string(), errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw_io_error("fsync " + p.string(), err);
}

// The writer's file is created with O_TMPFILE: it has no name until commit
// links it into place, so an interrupted upload leaves nothing behind, and
// creating it takes no lock on a shared directory. 1,000 uploads creating
// named files in one tmp/ directory spent 13% of their CPU in open(), a
// third of that spinning on the directory's lock, and each paid a
// cross-directory rename at commit. It is opened for reading too, for the
// checks made before commit (read_at).
class fs_writer final : public blob_writer {
public:
  fs_writer(const fs_blob_store& store, const std::filesystem::path& dir, std::string key)
      : store_(store), key_(std::move(key)) {
    fd_ = ::open(dir.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
    if (fd_ < 0) throw_io_error("create a temporary file in " + dir.string(), errno);
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }

  ~fs_writer() override { ::close(fd_); }  // an unnamed file: closing it frees it

  fs_writer(const fs_writer&) = delete;
  fs_writer& operator=(const fs_writer&) = delete;

  void write(std::string_view bytes) override {
    write_all(fd_, bytes, "write an upload's file");
    size_ += bytes.size();
  }

  std::uint64_t size() const noexcept override { return size_; }

  std::size_t read_at(std::uint64_t offset, char* out, std::size_t n) override {
    return pread_fully(fd_, offset, out, n);
  }

  void commit() override {
    if (::fsync(fd_) != 0) throw_io_error("fsync " + path_.string(), errno);
    const auto target = store_.path_of(key_);
    const auto dir = target.parent_path();
    store_.ensure_shard(dir);
    if (::linkat(AT_FDCWD, path_.c_str(), AT_FDCWD, target.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      throw_io_error("link " + target.string(), errno);
    }
    fsync_path(dir);
  }

private:
  const fs_blob_store& store_;
  std::string key_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  // /proc/self/fd/N: what linkat gives the unnamed file its name through.
  std::filesystem::path path_;
};

// A resumable upload's partial file, opened by one request: writes go at
// explicit offsets after the recorded size, never at the file's end, so what
// an earlier request wrote and never recorded is written over.
class fs_resumable_writer final : public resumable_writer {
public:
  fs_resumable_writer(const fs_blob_store& store, std::string key, std::uint64_t size)
      : store_(store), key_(std::move(key)), size_(size) {
    const auto path = store_.partial_path_of(key_);
    fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) {
      if (errno != ENOENT) throw_io_error("open " + path.string(), errno);
      // No partial file: a commit that linked it into place and removed it
      // has run, and its caller may be repeating it (commit checks).
      return;
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw_io_error("stat " + path.string(), errno);
    if (static_cast<std::uint64_t>(st.st_size) < size_) {
      throw blob_error("the partial file " + path.string() + " holds fewer bytes than were recorded");
    }
    // Whatever follows the recorded bytes was never acknowledged.
    if (static_cast<std::uint64_t>(st.st_size) > size_ && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
      throw_io_error("truncate " + path.string(), errno);
    }
  }

  ~fs_resumable_writer() override {
    if (fd_ >= 0) ::close(fd_);
  }
  fs_resumable_writer(const fs_resumable_writer&) = delete;
  fs_resumable_writer& operator=(const fs_resumable_writer&) = delete;

  void write(std::string_view bytes) override {
    if (fd_ < 0) throw blob_error("the upload " + key_ + " was committed already");
    while (!bytes.empty()) {
      const auto n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(size_));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_io_error("write an upload's partial file", errno);
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
      size_ += static_cast<std::uint64_t>(n);
    }
  }

  std::uint64_t size() const noexcept override { return size_; }

  std::string persist() override {
    if (fd_ >= 0 && ::fsync(fd_) != 0) throw_io_error("fsync an upload's partial file", errno);
    return {};  // the file is the state
  }

  void commit() override {
    const auto target = store_.path_of(key_);
    if (fd_ < 0) {
      struct stat st {};
      if (::stat(target.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) == size_) return;
      throw blob_error("the upload " + key_ + " has neither its partial file nor its blob");
    }
    if (::fsync(fd_) != 0) throw_io_error("fsync an upload's partial file", errno);
    // The orphan sweep reads a blob's age from its modification time: the
    // last write may be long before this commit.
    if (::futimens(fd_, nullptr) != 0) throw_io_error("touch an upload's partial file", errno);
    const auto dir = target.parent_path();
    store_.ensure_shard(dir);
    const auto partial = store_.partial_path_of(key_);
    if (::link(partial.c_str(), target.c_str()) != 0) {
      // A blob left by an earlier commit whose caller did not record it:
      // no document names it, and this one replaces it.
      if (errno != EEXIST || ::unlink(target.c_str()) != 0 || ::link(partial.c_str(), target.c_str()) != 0) {
        throw_io_error("link " + target.string(), errno);
      }
    }
    fsync_path(dir);
    if (::unlink(partial.c_str()) != 0 && errno != ENOENT)
      throw_io_error("unlink " + partial.string(), errno);
  }

private:
  const fs_blob_store& store_;
  std::string key_;
  std::uint64_t size_;
  int fd_ = -1;
};

class fs_reader final : public blob_reader {
public:
  fs_reader(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
  ~fs_reader() override { ::close(fd_); }
  fs_reader(const fs_reader&) = delete;
  fs_reader& operator=(const fs_reader&) = delete;

  std::uint64_t size() const noexcept override { return size_; }

  std::size_t read_at(std::uint64_t offset, char* out, std::size_t n) override {
    return pread_fully(fd_, offset, out, n);
  }

private:
  int fd_;
  std::uint64_t size_;
};

}  // namespace

fs_blob_store::fs_blob_store(std::filesystem::path root) : root_(std::move(root)) {
  std::error_code ec;
  for (const auto* dir : {"tmp", "partial"}) {
    std::filesystem::create_directories(root_ / dir, ec);
    if (ec) throw blob_error("create " + (root_ / dir).string() + ": " + ec.message());
  }
  check();  // fail at start-up, not at the first upload
}

// A blob's modification time is its last write, moments before the commit
// that linked it into place. The shards scatter keys, so the smallest
// `limit` names after `after` are kept in a heap while every name is read
// (bounded memory however many blobs), and only those are stat'ed.
std::vector<std::string> fs_blob_store::keys_stored_before(std::chrono::system_clock::time_point cutoff,
                                                           std::size_t limit, const std::string& after) {
  std::priority_queue<std::string> smallest;  // the largest on top, to be pushed out
  std::error_code ec;
  for (const auto& shard : std::filesystem::directory_iterator(root_, ec)) {
    if (!shard.is_directory() || shard.path().filename() == "tmp" || shard.path().filename() == "partial")
      continue;
    for (const auto& entry : std::filesystem::directory_iterator(shard.path(), ec)) {
      auto key = entry.path().filename().string();
      if (!valid_key(key) || key <= after) continue;
      if (smallest.size() < limit) {
        smallest.push(std::move(key));
      } else if (limit > 0 && key < smallest.top()) {
        smallest.pop();
        smallest.push(std::move(key));
      }
    }
  }
  if (ec) throw blob_error("list " + root_.string() + ": " + ec.message());
  std::vector<std::string> out;
  while (!smallest.empty()) {
    out.push_back(smallest.top());
    smallest.pop();
  }
  std::reverse(out.begin(), out.end());
  std::erase_if(out, [this, cutoff](const std::string& key) {
    struct stat st {};
    const auto path = path_of(key);
    return ::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
           std::chrono::system_clock::from_time_t(st.st_mtime) >= cutoff;
  });
  return out;
}

std::filesystem::path fs_blob_store::path_of(const std::string& key) const {
  if (!valid_key(key)) {
    throw blob_error("invalid blob key");
  }
  return root_ / key.substr(key.size() - 2) / key;
}

std::filesystem::path fs_blob_store::partial_path_of(const std::string& key) const {
  if (!valid_key(key)) throw blob_error("invalid blob key");
  return root_ / "partial" / key;
}

void fs_blob_store::ensure_shard(const std::filesystem::path& dir) const {
  {
    const std::lock_guard lock(shards_mutex_);
    if (shards_.contains(dir.string())) return;
  }
  std::error_code ec;
  if (std::filesystem::create_directory(dir, ec)) {
    fsync_path(dir.parent_path());  // the new shard directory itself must survive a crash
  }
  if (ec) throw_io_error("mkdir " + dir.string(), ec.value());
  const std::lock_guard lock(shards_mutex_);
  shards_.insert(dir.string());
}

void fs_blob_store::check() {
  // Creating a file is the only honest test: permissions, a full disk, a
  // directory replaced by a file and a file system without O_TMPFILE all
  // show up here.
  const auto dir = root_ / "tmp";
  const int fd = ::open(dir.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw blob_error("cannot create a temporary file (O_TMPFILE) in " + dir.string() + ": " +
                     std::strerror(errno));
  }
  ::close(fd);
}

std::unique_ptr<blob_writer> fs_blob_store::begin(const std::string& key) {
  path_of(key);  // a key that is not ours fails here, before any byte
  return std::make_unique<fs_writer>(*this, root_ / "tmp", key);
}

std::unique_ptr<blob_reader> fs_blob_store::open(const std::string& key) {
  const auto path = path_of(key);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return nullptr;
    throw_io_error("open " + path.string(), errno);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw_io_error("stat " + path.string(), err);
  }
  return std::make_unique<fs_reader>(fd, static_cast<std::uint64_t>(st.st_size));
}

void fs_blob_store::remove(const std::string& key) {
  const auto path = path_of(key);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    throw_io_error("unlink " + path.string(), errno);
  }
}

bool fs_blob_store::exists(const std::string& key) {
  struct stat st {};
  return ::stat(path_of(key).c_str(), &st) == 0;
}

std::unique_ptr<local_copy> fs_blob_store::fetch(const std::string& key) {
  auto path = path_of(key);
  if (!exists(key)) throw blob_error("no blob " + key);
  return std::make_unique<local_copy>(std::move(path), false);  // already local: no copy
}

std::string fs_blob_store::begin_resumable(const std::string& key) {
  const auto path = partial_path_of(key);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw_io_error("create " + path.string(), errno);
  ::close(fd);
  fsync_path(path.parent_path());  // the name itself must survive a crash
  return {};
}

std::unique_ptr<resumable_writer> fs_blob_store::resume(const std::string& key, const std::string& /*state*/,
                                                        std::uint64_t size) {
  return std::make_unique<fs_resumable_writer>(*this, key, size);
}

void fs_blob_store::discard_resumable(const std::string& key, const std::string& /*state*/) {
  const auto path = partial_path_of(key);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_io_error("unlink " + path.string(), errno);
}

}  // namespace docflow::blob
