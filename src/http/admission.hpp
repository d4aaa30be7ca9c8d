#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

#include <boost/asio/awaitable.hpp>

namespace docflow::http {

/// Lets at most `slots` holders through at once. Later arrivals queue in
/// order of arrival and wait at most `patience`; past it they go ahead
/// without a slot, so holders that never finish (a slow client) delay the
/// others by the patience, never longer.
///
/// Uploads pass through one: a thousand bodies received all at once finish
/// together at the end and only then queue for the disk, while a few dozen
/// at a time finish in waves whose commits overlap the next wave's
/// receiving (bench/README.md, "What limits the burst").
class admission_gate {
public:
  /// A slot, or none when the wait ran out of patience. Destroying it (or
  /// release()) frees the slot for the next in line.
  class pass {
  public:
    pass() = default;
    explicit pass(admission_gate* gate) : gate_(gate) {}
    pass(pass&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
    pass& operator=(pass&& other) noexcept {
      if (this != &other) {
        release();
        gate_ = std::exchange(other.gate_, nullptr);
      }
      return *this;
    }
    pass(const pass&) = delete;
    pass& operator=(const pass&) = delete;
    ~pass() { release(); }

    bool holds_slot() const noexcept { return gate_ != nullptr; }
    void release() {
      if (gate_) std::exchange(gate_, nullptr)->leave();
    }

  private:
    admission_gate* gate_ = nullptr;
  };

  admission_gate(std::size_t slots, std::chrono::milliseconds patience);
  ~admission_gate();
  admission_gate(const admission_gate&) = delete;
  admission_gate& operator=(const admission_gate&) = delete;

  /// Waits for a slot (on the calling coroutine's executor).
  boost::asio::awaitable<pass> enter();

  /// How many are waiting now.
  std::size_t waiting() const;

private:
  struct waiter;
  void leave();

  mutable std::mutex mutex_;
  std::size_t free_;
  std::chrono::milliseconds patience_;
  std::deque<std::shared_ptr<waiter>> queue_;
};

}  // namespace docflow::http
