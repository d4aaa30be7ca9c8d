#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/sandbox.hpp"

namespace docflow::pipeline {

/// A file descriptor closed when it goes.
class unique_fd {
public:
  explicit unique_fd(int fd = -1) : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  unique_fd& operator=(unique_fd&& other) noexcept;
  ~unique_fd() { reset(); }
  int get() const { return fd_; }
  void reset();

private:
  int fd_;
};

/// A child started by a zygote (start_child): killed on every way out that
/// has not seen it end. Its wait status comes from the zygote, which reaps
/// it (and kills what it may have started, its process group).
class started_child {
public:
  struct impl;
  explicit started_child(std::unique_ptr<impl> i);
  started_child(started_child&&) noexcept;
  started_child& operator=(started_child&&) = delete;
  ~started_child();

  /// Asks the zygote to SIGKILL it: the child's parent, which has not
  /// reaped it, so never another process that took its pid.
  void kill();
  /// The wait status once the child has ended; nullopt when `deadline`
  /// passes first. Throws stage_error extractor_crashed when the zygote
  /// fails to say.
  std::optional<int> wait_until(std::chrono::steady_clock::time_point deadline);

private:
  std::unique_ptr<impl> impl_;
};

/// Starts a child for `request` with `input` as its stdin and `output` as
/// its stdout (stderr: /dev/null), forked by a zygote: a process started
/// once (`self_exe extract --zygote`, with the environment `env` and nothing
/// else) that has loaded what every extraction loads and parsed nothing, so
/// each document still gets a fresh process, locked down before it parses,
/// without paying for exec and dynamic linking again. Zygotes are kept in a
/// pool, one per concurrent caller; one started with another environment or
/// executable is replaced, and a dead one is restarted once. Throws
/// stage_error extractor_crashed when no child can be started. Blocks.
started_child start_child(const std::filesystem::path& self_exe, const std::vector<std::string>& env,
                          const child_request& request, int input, int output);

/// `docflow extract --zygote`: reads requests on stdin (a socket) and forks
/// one child for each, until the socket closes. Returns the exit code.
int zygote_main();

}  // namespace docflow::pipeline
