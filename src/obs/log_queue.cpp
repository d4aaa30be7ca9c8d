#include "obs/log_queue.hpp"

#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>

namespace docflow::obs {

namespace {
// Writes all of `s`; gives up when the descriptor is gone (the log must not
// take the service down with it).
void write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const auto n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}
}  // namespace

log_queue::log_queue(int fd, std::size_t limit) : fd_(fd), limit_(limit), thread_([this] { run(); }) {}

log_queue::~log_queue() {
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool log_queue::push(std::string_view line) noexcept {
  try {
    bool wake = false;
    {
      const std::lock_guard lock(mutex_);
      if (queued_.size() + line.size() > limit_) {
        ++dropped_;
        return false;
      }
      queued_ += line;
      ++queued_lines_;
      ++pushed_;
      // Only a sleeping writer needs the system call; a busy one comes back
      // for the queue when its write is done.
      wake = writer_idle_;
      writer_idle_ = false;
    }
    if (wake) wake_.notify_one();
    return true;
  } catch (...) {
    return false;  // out of memory: the line is lost, the caller goes on
  }
}

bool log_queue::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  const auto target = pushed_;
  return written_.wait_for(lock, timeout, [&] { return done_ >= target; });
}

std::uint64_t log_queue::dropped() const noexcept {
  const std::lock_guard lock(mutex_);
  return dropped_;
}

void log_queue::run() {
  // Signals are for the threads that wait for them (sigwait, the server's
  // signal set); one delivered here would find no handler in `docflow worker`.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::string batch;
  std::unique_lock lock(mutex_);
  for (;;) {
    if (queued_.empty()) {
      if (stop_) return;
      writer_idle_ = true;
      wake_.wait(lock, [this] { return !queued_.empty() || stop_; });
      writer_idle_ = false;
      continue;
    }
    // One write for everything queued meanwhile: lines never interleave,
    // and a burst costs one system call.
    batch.clear();
    batch.swap(queued_);
    const auto lines = queued_lines_;
    queued_lines_ = 0;
    lock.unlock();
    write_all(fd_, batch);
    lock.lock();
    done_ += lines;
    written_.notify_all();
  }
}

}  // namespace docflow::obs
