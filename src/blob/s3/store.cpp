#include "blob/s3/store.hpp"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "blob/file_io.hpp"
#include "core/ids.hpp"

namespace docflow::blob::s3 {

namespace {

constexpr std::uint64_t min_part_size = std::uint64_t{5} << 20;
constexpr std::uint64_t max_part_size = std::uint64_t{5} << 30;
// A download is fetched in windows of this size: one request per window
// instead of one per read of the response body, and bounded memory per
// download whatever the object's size.
constexpr std::size_t read_window = 1 << 20;

// Whether trying again later may succeed: no answer, the service's own
// trouble, throttling. A refusal (403, 404, 400) stays a refusal.
bool transient(const s3_error& e) {
  return e.status() == 0 || e.status() >= 500 || e.status() == 429 || e.status() == 408 ||
         e.code() == "SlowDown" || e.code() == "RequestTimeout";
}

// S3 out of space (a quota on radosgw, MinIO's full disk) is the same wait
// as a full local disk: 507 to the client, not 503.
[[noreturn]] void rethrow(const std::exception_ptr& failure) {
  try {
    std::rethrow_exception(failure);
  } catch (const s3_error& e) {
    if (e.status() == 507 || e.code() == "QuotaExceeded" || e.code() == "XMinioStorageFull") {
      throw blob_full(e.what());
    }
    throw;
  }
}

class unique_fd {
public:
  explicit unique_fd(int fd = -1) noexcept : fd_(fd) {}
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  int get() const noexcept { return fd_; }
  void reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

private:
  int fd_;
};

// This process's own directory inside the scratch directory, locked
// (flock) for as long as the process lives. A directory whose lock can be
// taken belonged to a process that is gone: its leftovers (a worker's
// copy, killed mid-extraction) are removed when the next process starts.
// The directory is made under a temporary name and renamed once locked, so
// a sweep never sees a live process's directory unlocked.
class scratch_area {
public:
  explicit scratch_area(const std::filesystem::path& root) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(root, ec);
    if (ec) throw blob_error("create " + root.string() + ": " + ec.message());
    sweep(root);
    const auto name = core::random_hex(8);
    const auto making = root / (".new-" + name);
    fs::create_directory(making, ec);
    if (ec) throw blob_error("create " + making.string() + ": " + ec.message());
    lock_ = ::open((making / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_ < 0 || ::flock(lock_, LOCK_EX | LOCK_NB) != 0) fail("lock " + making.string(), errno, making);
    dir_ = root / ("p-" + name);
    fs::rename(making, dir_, ec);
    if (ec) fail("rename " + making.string(), ec.value(), making);
    check();  // at start-up, not at the first upload
  }

  // Uploads spool to unnamed files here: a file system without O_TMPFILE
  // (NFS, overlayfs before Linux 6.6) or a full or read-only one fails
  // every upload, so readiness and start-up find out.
  void check() const {
    const unique_fd fd(::open(dir_.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600));
    if (fd.get() < 0) throw_io_error("create a temporary file (O_TMPFILE) in " + dir_.string(), errno);
  }
  ~scratch_area() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    ::close(lock_);
  }

  [[noreturn]] void fail(const std::string& what, int err, const std::filesystem::path& making) {
    if (lock_ >= 0) ::close(lock_);
    std::error_code ignored;
    std::filesystem::remove_all(making, ignored);
    throw_io_error(what, err);
  }
  scratch_area(const scratch_area&) = delete;
  scratch_area& operator=(const scratch_area&) = delete;

  const std::filesystem::path& dir() const noexcept { return dir_; }

private:
  static void sweep(const std::filesystem::path& root) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      const auto name = entry.path().filename().string();
      if (name.rfind("p-", 0) != 0 || !entry.is_directory()) continue;
      // Removed only when its lock is provably free; any doubt (no
      // permission, no descriptors left) keeps it.
      const unique_fd lock(::open((entry.path() / ".lock").c_str(), O_RDWR | O_CLOEXEC));
      if (lock.get() < 0 || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) continue;
      std::error_code ignored;
      fs::remove_all(entry.path(), ignored);
    }
    // A process killed between mkdir and rename leaves a ".new-" directory;
    // one older than a minute is such a leftover.
    const auto stale = fs::file_time_type::clock::now() - std::chrono::minutes(1);
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      if (entry.path().filename().string().rfind(".new-", 0) != 0) continue;
      std::error_code ignored;
      if (entry.last_write_time(ignored) < stale) fs::remove_all(entry.path(), ignored);
    }
  }

  std::filesystem::path dir_;
  int lock_ = -1;
};

// The threads that send parts while uploads are still arriving. Tasks
// never wait for one another, so a few threads serve any number of
// uploads; the queue holds only small closures (the bytes are in the
// uploads' spool files).
class task_pool {
public:
  explicit task_pool(std::size_t threads) {
    for (std::size_t i = 0; i < std::max<std::size_t>(threads, 1); ++i) {
      threads_.emplace_back([this] { run(); });
    }
  }
  // Runs what is queued (aborts of dropped uploads among it), then stops.
  ~task_pool() {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    threads_.clear();
  }
  task_pool(const task_pool&) = delete;
  task_pool& operator=(const task_pool&) = delete;

  void post(std::function<void()> task) {
    {
      const std::lock_guard lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::jthread> threads_;  // last: joined before the rest goes
};

}  // namespace

struct store::impl {
  explicit impl(store_config c)
      : cfg(std::move(c)),
        s3(cfg.client),
        probe(probe_config(cfg.client)),
        scratch(cfg.scratch_dir),
        pool(cfg.upload_threads) {}

  // Readiness asks once and answers: retrying would only delay the answer
  // that the service is not ready.
  static client_config probe_config(client_config c) {
    c.retry.max_attempts = 1;
    return c;
  }

  std::string object_key(const std::string& key) const {
    if (!valid_key(key)) throw blob_error("invalid blob key");
    return cfg.prefix + key;
  }

  // An abort that failed (S3 unreachable) is tried again when S3 is seen
  // back (check(), which readiness probes call), so a short outage leaves
  // no parts behind for the hour until maintenance.
  void abort_later(std::string object_key, std::string upload_id) {
    const std::lock_guard lock(aborts_mutex);
    // Bounded: past it, maintenance (an hour) and the bucket's lifecycle
    // rule clean up; readiness must stay quick.
    if (failed_aborts.size() < max_failed_aborts) {
      failed_aborts.emplace_back(std::move(object_key), std::move(upload_id));
    }
  }

  void retry_failed_aborts() {
    std::vector<std::pair<std::string, std::string>> pending;
    {
      const std::lock_guard lock(aborts_mutex);
      pending.swap(failed_aborts);
    }
    for (auto& [key, upload_id] : pending) {
      try {
        probe.abort_multipart_upload(key, upload_id);
      } catch (const s3_error& e) {
        if (transient(e)) abort_later(std::move(key), std::move(upload_id));
      }
    }
  }

  static constexpr std::size_t max_failed_aborts = 1000;

  store_config cfg;
  client s3;
  client probe;
  // One probe key per process: a probe whose delete failed is replaced by
  // the next, never piles up.
  std::string probe_key = cfg.prefix + ".docflow-ready-" + core::random_hex(8);
  scratch_area scratch;
  std::mutex aborts_mutex;
  std::vector<std::pair<std::string, std::string>> failed_aborts;  // key, upload id
  task_pool pool;  // last: its threads stop before what they use goes
};

namespace {

// What an upload's writer shares with the part uploads running for it in
// the pool; it outlives a dropped writer until its last part is done, and
// then aborts the multipart upload. It does not own the store: the pool's
// tasks must never hold the last reference to the store, whose destruction
// joins the pool's threads. The store outlives its tasks because its pool,
// destroyed first, runs what is queued before it stops.
struct upload_state {
  store::impl* owner = nullptr;
  std::string object_key;
  unique_fd spool;

  // `mutex` guards the fields below and is held only briefly: the writer
  // takes it on an I/O thread. `create_mutex` is held across the request
  // that creates the multipart upload, by pool threads only.
  std::mutex mutex;
  std::mutex create_mutex;
  std::condition_variable changed;
  std::string upload_id;  // created by the first part to go up
  std::vector<completed_part> parts;
  std::size_t in_flight = 0;
  std::exception_ptr failure;
  bool dropped = false;

  // Runs in the pool: creates the multipart upload if no part has yet,
  // then sends one part from the spool.
  void send_part(unsigned number, std::uint64_t offset, std::uint64_t length) {
    try {
      {
        std::unique_lock lock(mutex);
        if (dropped || failure) return finish_part(lock);
      }
      const auto id = multipart_upload_id();
      if (id.empty()) {
        std::unique_lock lock(mutex);
        return finish_part(lock);
      }
      const auto etag =
          owner->s3.upload_part(object_key, id, number, payload::file(spool.get(), offset, length));
      std::unique_lock lock(mutex);
      parts.push_back({number, etag});
      finish_part(lock);
    } catch (...) {
      std::unique_lock lock(mutex);
      if (!failure) failure = std::current_exception();
      finish_part(lock);
    }
  }

  // The upload's id, created by the first part to ask; empty when the
  // upload has failed or been dropped meanwhile (a part waiting here while
  // the create failed must not try again: each try may take seconds).
  std::string multipart_upload_id() {
    const std::lock_guard creating(create_mutex);
    {
      const std::lock_guard lock(mutex);
      if (!upload_id.empty() || failure || dropped) return upload_id;
    }
    auto id = owner->s3.create_multipart_upload(object_key);
    const std::lock_guard lock(mutex);
    upload_id = id;
    return id;
  }

  // The last part done for a dropped upload aborts it.
  void finish_part(std::unique_lock<std::mutex>& lock) {
    --in_flight;
    const bool abort = dropped && in_flight == 0 && !upload_id.empty();
    lock.unlock();
    changed.notify_all();
    if (abort) abort_upload();
  }

  void abort_upload() noexcept {
    try {
      owner->s3.abort_multipart_upload(object_key, upload_id);
    } catch (const std::exception& e) {
      // Tried again when S3 is back; failing that, maintenance aborts it after an hour.
      owner->abort_later(object_key, upload_id);
      if (owner->cfg.on_background_failure) owner->cfg.on_background_failure(e.what());
    }
  }
};

class s3_writer final : public blob_writer {
public:
  s3_writer(std::shared_ptr<store::impl> owner, std::string object_key)
      : owner_(std::move(owner)), state_(std::make_shared<upload_state>()) {
    const auto& dir = owner_->scratch.dir();
    state_->spool.reset(::open(dir.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600));
    if (state_->spool.get() < 0) throw_io_error("create a temporary file in " + dir.string(), errno);
    state_->owner = owner_.get();
    state_->object_key = std::move(object_key);
    part_size_ = state_->owner->cfg.part_size;
  }

  ~s3_writer() override {
    if (committed_) return;
    std::unique_lock lock(state_->mutex);
    state_->dropped = true;
    if (state_->in_flight > 0 || state_->upload_id.empty()) return;  // the last part aborts, or nothing began
    lock.unlock();
    // Never blocks here (an I/O thread may drop a writer): the pool aborts.
    state_->owner->pool.post([state = state_] { state->abort_upload(); });
  }

  s3_writer(const s3_writer&) = delete;
  s3_writer& operator=(const s3_writer&) = delete;

  void write(std::string_view bytes) override {
    {
      const std::lock_guard lock(state_->mutex);
      if (state_->failure) rethrow(state_->failure);  // fail the upload early
    }
    write_all(state_->spool.get(), bytes, "write the upload's spool file");
    size_ += bytes.size();
    // A part goes up once a byte after it has arrived: then it is not the
    // last, and an upload of exactly one part stays a single PUT.
    while (size_ > (sent_parts_ + 1) * part_size_) send(sent_parts_ * part_size_, part_size_);
  }

  std::uint64_t size() const noexcept override { return size_; }

  // From the spool, which holds every byte until commit, sent or not.
  std::size_t read_at(std::uint64_t offset, char* out, std::size_t n) override {
    return pread_fully(state_->spool.get(), offset, out, n);
  }

  void commit() override {
    try {
      send_rest_and_complete();
    } catch (...) {
      rethrow(std::current_exception());  // the destructor aborts what began
    }
  }

private:
  void send_rest_and_complete() {
    auto& s3 = state_->owner->s3;
    const auto& key = state_->object_key;
    if (sent_parts_ == 0) {
      s3.put_object(key, payload::file(state_->spool.get(), 0, size_));
      committed_ = true;
      return;
    }
    const auto tail = sent_parts_ * part_size_;
    send(tail, size_ - tail);
    std::unique_lock lock(state_->mutex);
    state_->changed.wait(lock, [this] { return state_->in_flight == 0; });
    if (state_->failure) std::rethrow_exception(state_->failure);
    auto parts = state_->parts;
    const auto upload_id = state_->upload_id;
    lock.unlock();
    std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.number < b.number; });
    s3.complete_multipart_upload(key, upload_id, parts, size_);
    committed_ = true;
  }

  void send(std::uint64_t offset, std::uint64_t length) {
    const auto number = static_cast<unsigned>(++sent_parts_);
    {
      const std::lock_guard lock(state_->mutex);
      ++state_->in_flight;
    }
    state_->owner->pool.post(
        [state = state_, number, offset, length] { state->send_part(number, offset, length); });
  }

  std::shared_ptr<store::impl> owner_;  // keeps the store alive while the writer is
  std::shared_ptr<upload_state> state_;
  std::uint64_t part_size_ = 0;
  std::uint64_t size_ = 0;
  std::uint64_t sent_parts_ = 0;
  bool committed_ = false;
};

// A resumable upload's state, as text: the multipart upload's id on the
// first line, then a line per part sent ("p NUMBER SIZE ETAG") and, when
// bytes wait after the last part, "t SIZE NAME" (the tail object's key).
struct resumable_state {
  std::string upload_id;
  struct part {
    unsigned number = 0;
    std::uint64_t size = 0;
    std::string etag;
  };
  std::vector<part> parts;
  std::uint64_t tail_size = 0;
  std::string tail_key;

  static resumable_state parse(const std::string& text) {
    resumable_state st;
    std::istringstream in(text);
    std::string line;
    if (!std::getline(in, st.upload_id) || st.upload_id.empty())
      throw blob_error("a resumable state without its upload");
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string kind;
      fields >> kind;
      if (kind == "p") {
        part p;
        fields >> p.number >> p.size >> p.etag;
        st.parts.push_back(std::move(p));
      } else if (kind == "t") {
        fields >> st.tail_size >> st.tail_key;
      }
      if (!fields && !fields.eof()) throw blob_error("a resumable state that cannot be read: " + line);
    }
    return st;
  }

  std::string text() const {
    std::string out = upload_id + '\n';
    for (const auto& p : parts) {
      out += "p " + std::to_string(p.number) + ' ' + std::to_string(p.size) + ' ' + p.etag + '\n';
    }
    if (!tail_key.empty()) out += "t " + std::to_string(tail_size) + ' ' + tail_key + '\n';
    return out;
  }
};

// One request's hold on a resumable upload. The bytes not yet in a part
// (the recorded tail, then what this request brings) sit in an unnamed
// spool file; each whole part goes up as soon as it is complete. Writes run
// on the blocking pool, so a part is sent in the caller's thread.
class s3_resumable_writer final : public resumable_writer {
public:
  s3_resumable_writer(std::shared_ptr<store::impl> owner, std::string key, const std::string& state,
                      std::uint64_t size)
      : owner_(std::move(owner)),
        key_(std::move(key)),
        object_key_(owner_->object_key(key_)),
        state_(resumable_state::parse(state)),
        size_(size) {
    const auto& dir = owner_->scratch.dir();
    spool_.reset(::open(dir.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600));
    if (spool_.get() < 0) throw_io_error("create a temporary file in " + dir.string(), errno);
    if (!state_.tail_key.empty()) {
      const auto found = owner_->s3.get_object(state_.tail_key, std::nullopt, [this](std::string_view bytes) {
        write_all(spool_.get(), bytes, "write the upload's spool file");
        spooled_ += bytes.size();
      });
      if (!found || spooled_ != state_.tail_size) {
        throw blob_error("the tail of the upload " + key_ + " is gone or shorter than recorded");
      }
    }
    std::uint64_t in_parts = 0;
    for (const auto& p : state_.parts) in_parts += p.size;
    if (in_parts + state_.tail_size != size_)
      throw blob_error("the upload " + key_ + "'s state disagrees with its size");
  }

  void write(std::string_view bytes) override {
    write_all(spool_.get(), bytes, "write the upload's spool file");
    spooled_ += bytes.size();
    size_ += bytes.size();
    const auto part_size = owner_->cfg.part_size;
    try {
      while (spooled_ - sent_from_spool_ >= part_size) send_part(part_size);
    } catch (...) {
      rethrow(std::current_exception());
    }
  }

  std::uint64_t size() const noexcept override { return size_; }

  std::string persist() override {
    const auto waiting = spooled_ - sent_from_spool_;
    state_.tail_size = waiting;
    state_.tail_key.clear();
    if (waiting > 0) {
      // Named by the offset it ends at: a persist that is never recorded
      // cannot overwrite the tail that is.
      state_.tail_key = tail_prefix(*owner_, key_) + std::to_string(size_);
      try {
        owner_->s3.put_object(state_.tail_key, payload::file(spool_.get(), sent_from_spool_, waiting));
      } catch (...) {
        rethrow(std::current_exception());
      }
    }
    return state_.text();
  }

  void commit() override {
    try {
      const auto waiting = spooled_ - sent_from_spool_;
      if (waiting > 0 || state_.parts.empty()) send_part(waiting);
      std::vector<completed_part> parts;
      for (const auto& p : state_.parts) parts.push_back({p.number, p.etag});
      owner_->s3.complete_multipart_upload(object_key_, state_.upload_id, parts, size_);
    } catch (const s3_error& e) {
      // Completed before, by a request whose caller did not record it.
      const auto info = e.code() == "NoSuchUpload" ? owner_->s3.head_object(object_key_) : std::nullopt;
      if (!info || info->size != size_) rethrow(std::current_exception());
    }
  }

  static std::string tail_prefix(const store::impl& owner, const std::string& key) {
    return owner.cfg.prefix + "tus/" + key + '/';
  }

private:
  void send_part(std::uint64_t length) {
    const auto number = state_.parts.empty() ? 1U : state_.parts.back().number + 1;
    auto etag = owner_->s3.upload_part(object_key_, state_.upload_id, number,
                                       payload::file(spool_.get(), sent_from_spool_, length));
    state_.parts.push_back({number, length, std::move(etag)});
    sent_from_spool_ += length;
  }

  std::shared_ptr<store::impl> owner_;
  std::string key_;
  std::string object_key_;
  resumable_state state_;
  std::uint64_t size_;
  unique_fd spool_;
  std::uint64_t spooled_ = 0;          // bytes in the spool: the tail, then this request's
  std::uint64_t sent_from_spool_ = 0;  // of those, the ones in parts now
};

class s3_reader final : public blob_reader {
public:
  s3_reader(std::shared_ptr<store::impl> owner, std::string object_key, std::uint64_t size)
      : owner_(std::move(owner)), object_key_(std::move(object_key)), size_(size) {}

  std::uint64_t size() const noexcept override { return size_; }

  std::size_t read_at(std::uint64_t offset, char* out, std::size_t n) override {
    if (offset >= size_ || n == 0) return 0;
    n = static_cast<std::size_t>(std::min<std::uint64_t>(n, size_ - offset));
    if (offset < window_start_ || offset + n > window_start_ + window_.size()) fill(offset, n);
    std::memcpy(out, window_.data() + (offset - window_start_), n);
    return n;
  }

private:
  void fill(std::uint64_t offset, std::size_t n) {
    const auto length = std::min<std::uint64_t>(size_ - offset, std::max(n, read_window));
    window_.clear();
    window_.reserve(static_cast<std::size_t>(length));
    window_start_ = offset;
    const auto found = owner_->s3.get_object(object_key_, byte_range{offset, offset + length - 1},
                                             [this](std::string_view bytes) { window_.append(bytes); });
    if (!found || window_.size() != length) {
      window_.clear();
      throw blob_error("the object " + object_key_ + " is gone or shorter than it was");
    }
  }

  std::shared_ptr<store::impl> owner_;
  std::string object_key_;
  std::uint64_t size_;
  std::uint64_t window_start_ = 0;
  std::string window_;
};

}  // namespace

store::store(store_config config) {
  if (config.part_size < min_part_size || config.part_size > max_part_size) {
    throw std::invalid_argument("the S3 part size must be between 5 MiB and 5 GiB");
  }
  if (!config.prefix.empty() && (config.prefix.back() != '/' || config.prefix.front() == '/')) {
    throw std::invalid_argument("an S3 key prefix ends with '/' and does not start with one");
  }
  impl_ = std::make_shared<impl>(std::move(config));
}

store::~store() = default;

// A write, as an upload makes one, proves the bucket, the credentials and
// the network; the probe object is deleted again and, not being a key,
// never listed as a blob.
void store::check() {
  impl_->scratch.check();
  impl_->probe.put_object(impl_->probe_key, payload::memory("ready"));
  impl_->probe.delete_object(impl_->probe_key);
  impl_->retry_failed_aborts();
}

std::unique_ptr<blob_writer> store::begin(const std::string& key) {
  return std::make_unique<s3_writer>(impl_, impl_->object_key(key));
}

std::unique_ptr<blob_reader> store::open(const std::string& key) {
  auto object_key = impl_->object_key(key);
  const auto info = impl_->s3.head_object(object_key);
  if (!info) return nullptr;
  return std::make_unique<s3_reader>(impl_, std::move(object_key), info->size);
}

void store::remove(const std::string& key) { impl_->s3.delete_object(impl_->object_key(key)); }

bool store::exists(const std::string& key) {
  return impl_->s3.head_object(impl_->object_key(key)).has_value();
}

std::vector<std::string> store::keys_stored_before(std::chrono::system_clock::time_point cutoff,
                                                   std::size_t limit, const std::string& after) {
  std::vector<std::string> out;
  const auto& prefix = impl_->cfg.prefix;
  const auto start_after = after.empty() ? std::string() : prefix + after;
  std::optional<std::string> token;
  do {
    auto page = impl_->s3.list_objects_v2(prefix, token, 1000, start_after);
    for (const auto& object : page.objects) {
      const auto key = object.key.substr(prefix.size());
      if (!valid_key(key) || object.last_modified >= cutoff) continue;  // deeper keys, probes: not blobs
      out.push_back(key);
      if (out.size() >= limit) return out;
    }
    token = std::move(page.next_continuation_token);
  } while (token);
  return out;
}

std::unique_ptr<local_copy> store::fetch(const std::string& key) {
  const auto object_key = impl_->object_key(key);
  auto path = impl_->scratch.dir() / (key + '-' + core::random_hex(4));
  auto copy = std::make_unique<local_copy>(path, true);  // removes the file whatever happens next
  const unique_fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) throw_io_error("create " + path.string(), errno);
  // A retried GET resumes after what was written (the client's promise),
  // so appending is right.
  const auto found = impl_->s3.get_object(object_key, std::nullopt, [&fd](std::string_view bytes) {
    write_all(fd.get(), bytes, "write a fetched blob");
  });
  if (!found) throw blob_error("no object " + object_key);
  return copy;
}

std::string store::begin_resumable(const std::string& key) {
  try {
    return impl_->s3.create_multipart_upload(impl_->object_key(key)) + '\n';
  } catch (...) {
    rethrow(std::current_exception());
  }
}

std::unique_ptr<resumable_writer> store::resume(const std::string& key, const std::string& state,
                                                std::uint64_t size) {
  auto writer = std::make_unique<s3_resumable_writer>(impl_, key, state, size);
  // Tails that persists left and the state never named (or named before the
  // recorded one) go now: the recorded state is the only one that counts.
  const auto recorded = resumable_state::parse(state).tail_key;
  remove_tails(key, recorded);
  return writer;
}

void store::discard_resumable(const std::string& key, const std::string& state) {
  const auto upload_id = resumable_state::parse(state).upload_id;
  impl_->s3.abort_multipart_upload(impl_->object_key(key), upload_id);
  remove_tails(key, {});
}

void store::remove_tails(const std::string& key, const std::string& keep) {
  const auto prefix = s3_resumable_writer::tail_prefix(*impl_, key);
  std::optional<std::string> token;
  do {
    auto page = impl_->s3.list_objects_v2(prefix, token);
    for (const auto& object : page.objects) {
      if (object.key != keep) impl_->s3.delete_object(object.key);
    }
    token = std::move(page.next_continuation_token);
  } while (token);
}

std::size_t store::remove_incomplete_before(std::chrono::system_clock::time_point cutoff,
                                            const std::function<bool(const std::string& key)>& resumable) {
  std::size_t aborted = 0;
  std::optional<upload_marker> after;
  do {
    auto page = impl_->s3.list_multipart_uploads(impl_->cfg.prefix, after);
    for (const auto& upload : page.uploads) {
      const auto key = upload.key.substr(impl_->cfg.prefix.size());
      if (upload.initiated >= cutoff || !valid_key(key) || resumable(key)) continue;
      try {
        impl_->s3.abort_multipart_upload(upload.key, upload.upload_id);
        ++aborted;
      } catch (const s3_error& e) {
        // The others still go; this one is listed again next pass.
        if (impl_->cfg.on_background_failure) impl_->cfg.on_background_failure(e.what());
      }
    }
    after = std::move(page.next);
  } while (after);
  return aborted;
}

std::optional<std::string> store::download_url(const std::string& key, const download_headers& headers) {
  const auto ttl = impl_->cfg.presigned_downloads;
  if (ttl.count() <= 0) return std::nullopt;
  return impl_->s3.presign_get(impl_->object_key(key), ttl,
                               {{"response-content-type", headers.content_type},
                                {"response-content-disposition", headers.content_disposition}});
}

}  // namespace docflow::blob::s3
