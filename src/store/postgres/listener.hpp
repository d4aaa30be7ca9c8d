#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include "store/postgres/pq.hpp"
#include "store/wakeups.hpp"

namespace docflow::store::postgres {

/// The channel the store NOTIFYs on for each topic (the payloads are
/// those store::wakeup_topic describes).
std::string_view channel(wakeup_topic topic) noexcept;

/// store::wakeups on PostgreSQL: one connection of its own, outside the
/// pool (LISTEN belongs to a session, and a pooled connection is lent to
/// one call at a time), LISTENing on every channel, on a thread that sleeps
/// on its socket. The thread starts with the first subscription, so a
/// process that never waits for anything (`docflow migrate`) opens no such
/// connection.
///
/// A lost connection (a server restart, a network cut) is opened again
/// after a backoff; once it LISTENs again, every handler is called without
/// a payload: what was committed meanwhile was announced to nobody.
class listener final : public wakeups {
public:
  using connector = std::function<std::unique_ptr<pq::connection>()>;

  /// `connect` opens the connection (each time: the first, and after a
  /// loss); after a failed one, the next waits `min_backoff`, doubling up
  /// to `max_backoff`. Throws store_error when no eventfd can be made.
  listener(connector connect, std::chrono::milliseconds min_backoff, std::chrono::milliseconds max_backoff);
  ~listener() override;
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  /// The first call waits for the first attempt to connect and LISTEN (at
  /// most the connect timeout): what commits after it returns is announced.
  [[nodiscard]] subscription subscribe(wakeup_topic topic, handler on) override;

private:
  void unsubscribe(std::uint64_t id) noexcept override;
  void run();
  // Sleeps until `fd` (none when negative) turns readable or `timeout_ms`
  // (-1: no limit) passes; false when the listener is stopping.
  bool sleep(int fd, int timeout_ms) const;
  // Calls the handlers of `topic` (all of them when nullopt) with `payload`.
  void deliver(std::optional<wakeup_topic> topic, std::optional<std::string_view> payload);

  const connector connect_;
  const std::chrono::milliseconds min_backoff_;
  const std::chrono::milliseconds max_backoff_;
  const int stop_fd_;  ///< an eventfd, written to stop the thread

  std::mutex mutex_;  ///< held while handlers run: unsubscribe waits for them
  std::condition_variable first_attempt_;
  std::map<std::uint64_t, std::pair<wakeup_topic, handler>> handlers_;
  std::uint64_t next_id_ = 0;
  bool first_attempt_done_ = false;
  std::thread thread_;
};

}  // namespace docflow::store::postgres
