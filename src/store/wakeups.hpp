#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>

namespace docflow::store {

/// What a wake-up announces, and what its payload names.
enum class wakeup_topic {
  /// A job can be claimed from a moment on: a new one, or a retry's
  /// re-queue. Payload: that moment, in milliseconds since the Unix epoch
  /// (the caller's `now` or `retry_at`, as the store recorded it).
  job_available,
  /// A document has a new status event, or was deleted. Payload: its id.
  document_changed,
  /// A live job was taken from whoever held it (cancelled). Payload: its id.
  job_stopped,
};

/// Hints, from any process, that the database changed, so that waiting
/// parts (idle workers, event streams, a worker's lease keeper) look at once
/// instead of at their next poll. A database that has them hands them out
/// (`database::wakeups()`): PostgreSQL, through LISTEN/NOTIFY on one
/// connection of the process's own. SQLite has none: who holds one polls
/// as before, and nothing on SQLite pays for what it does not use.
///
/// Hints only: one may come for a change another look has already seen,
/// and while the database is unreachable none come at all. After such a gap
/// every subscriber is called without a payload: look at everything again.
/// Hence holders keep a slow poll, and never decide from a hint alone.
class wakeups {
public:
  /// Called on the wake-ups' own thread; must neither block nor subscribe
  /// or unsubscribe. nullopt: hints may have been lost, look at everything.
  using handler = std::function<void(std::optional<std::string_view> payload)>;

  /// Keeps a handler registered while it lives; once it is destroyed the
  /// handler is not running and will not run again.
  class subscription {
  public:
    subscription(wakeups& w, std::uint64_t id) : w_(&w), id_(id) {}
    subscription(subscription&& o) noexcept : w_(std::exchange(o.w_, nullptr)), id_(o.id_) {}
    subscription& operator=(subscription&&) = delete;
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription() {
      if (w_) w_->unsubscribe(id_);
    }

  private:
    wakeups* w_;
    std::uint64_t id_;
  };

  virtual ~wakeups() = default;

  /// Calls `on` for every hint of `topic` committed after this returns (or,
  /// failing that, without a payload once hints flow again). What was
  /// committed before is the caller's to look for, after subscribing.
  [[nodiscard]] virtual subscription subscribe(wakeup_topic topic, handler on) = 0;

protected:
  virtual void unsubscribe(std::uint64_t id) noexcept = 0;
};

}  // namespace docflow::store
