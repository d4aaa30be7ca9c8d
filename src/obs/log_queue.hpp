#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace docflow::obs {

/// Lines written to a file descriptor by a thread of its own, so that a
/// reader that is slow or stalls (a full pipe, a stopped terminal) never
/// blocks the threads that log: at most `limit` bytes wait in the queue, and
/// a line that does not fit is dropped and counted.
class log_queue {
public:
  log_queue(int fd, std::size_t limit);
  /// Writes what is queued, however long the reader takes, then stops.
  ~log_queue();
  log_queue(const log_queue&) = delete;
  log_queue& operator=(const log_queue&) = delete;

  /// Queues `line` (newline included) and returns at once; false when it was
  /// dropped because the queue is full. Never blocks on the descriptor.
  bool push(std::string_view line) noexcept;

  /// Waits until every line queued before the call is written, at most
  /// `timeout`; false when the reader did not take them in time.
  bool flush(std::chrono::milliseconds timeout);

  /// Lines dropped so far.
  std::uint64_t dropped() const noexcept;

private:
  void run();

  const int fd_;
  const std::size_t limit_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;     // the writer: lines queued, or stop
  std::condition_variable written_;  // flush(): the writer finished a batch
  std::string queued_;               // whole lines, oldest first
  std::uint64_t queued_lines_ = 0;   // in queued_
  std::uint64_t pushed_ = 0;         // lines accepted, ever
  std::uint64_t done_ = 0;           // of those, lines written (or given up on)
  std::uint64_t dropped_ = 0;
  bool writer_idle_ = false;
  bool stop_ = false;
  std::jthread thread_;
};

}  // namespace docflow::obs
