// The logger thread's queue: a reader that stalls must never block the
// threads that log, what does not fit is dropped and counted, and what was
// accepted arrives whole and in order once the reader reads again.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "obs/log_queue.hpp"

using docflow::obs::log_queue;
using namespace std::chrono_literals;

namespace {

std::string line(int n) {
  std::string text = "line " + std::to_string(n) + ' ';
  text.resize(1000, 'x');  // about 1 KiB, so the pipe and the queue fill quickly
  return text + '\n';
}

// Reads `fd` to its end, on a thread of its own.
class drain {
public:
  explicit drain(int fd)
      : thread_([this, fd] {
          char buf[65536];
          ssize_t n = 0;
          while ((n = ::read(fd, buf, sizeof buf)) > 0) text_.append(buf, static_cast<std::size_t>(n));
        }) {}
  std::string finish() {
    thread_.join();
    return std::move(text_);
  }

private:
  std::string text_;
  std::thread thread_;
};

struct pipe_fds {
  int read = -1;
  int write = -1;
  pipe_fds() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) == 0) {
      read = fds[0];
      write = fds[1];
    }
  }
  ~pipe_fds() {
    if (read >= 0) ::close(read);
    if (write >= 0) ::close(write);
  }
  pipe_fds(const pipe_fds&) = delete;
  pipe_fds& operator=(const pipe_fds&) = delete;
};

}  // namespace

TEST(log_queue, lines_arrive_whole_and_in_order) {
  pipe_fds p;
  ASSERT_GE(p.read, 0);
  drain reader(p.read);
  std::string expected;
  {
    log_queue q(p.write, 1 << 20);
    for (int i = 0; i < 2000; ++i) {
      // A reader that keeps up is never the cause of a drop; retry until the
      // queue has room so that the comparison below is exact.
      while (!q.push(line(i))) std::this_thread::yield();
      expected += line(i);
    }
    EXPECT_TRUE(q.flush(30s));
  }
  ::close(std::exchange(p.write, -1));
  EXPECT_EQ(reader.finish(), expected);
}

TEST(log_queue, a_stalled_reader_never_blocks_push_and_drops_are_counted) {
  // Closing the read end is how this test frees a writer stuck on it.
  std::signal(SIGPIPE, SIG_IGN);
  pipe_fds p;
  ASSERT_GE(p.read, 0);
  ASSERT_GE(::fcntl(p.write, F_SETPIPE_SZ, 4096), 0);  // a page: the writer is stuck after 4 lines
  std::optional<log_queue> q(std::in_place, p.write, 64 * 1024);
  constexpr int lines = 1000;  // about 1 MiB: far more than the pipe and the queue hold

  // Nobody reads the pipe. Pushing must still return, every time.
  auto pushes = std::async(std::launch::async, [&q] {
    std::vector<int> accepted;
    for (int i = 0; i < lines; ++i) {
      if (q->push(line(i))) accepted.push_back(i);
    }
    return accepted;
  });
  if (pushes.wait_for(60s) != std::future_status::ready) {
    ::close(std::exchange(p.read, -1));  // let the writer (and the test) go
    FAIL() << "push() blocked on a stalled reader";
  }
  const auto accepted = pushes.get();
  EXPECT_LT(accepted.size(), static_cast<std::size_t>(lines));
  EXPECT_GE(accepted.size(), 64U);  // the queue's 64 KiB were used
  EXPECT_EQ(q->dropped(), lines - accepted.size());
  EXPECT_FALSE(q->flush(50ms)) << "the reader is stalled: nothing can have been written in full";

  // The reader comes back: every accepted line arrives, whole and in order.
  drain reader(p.read);
  EXPECT_TRUE(q->flush(30s));
  q.reset();
  ::close(std::exchange(p.write, -1));
  std::string expected;
  for (const int i : accepted) expected += line(i);
  EXPECT_EQ(reader.finish(), expected);
}
