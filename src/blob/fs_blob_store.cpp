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
  std::filesystem::create_directories(root_ / "tmp", ec);
  if (ec) {
    throw blob_error("create " + (root_ / "tmp").string() + ": " + ec.message());
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
    if (!shard.is_directory() || shard.path().filename() == "tmp") continue;
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

}  // namespace docflow::blob
