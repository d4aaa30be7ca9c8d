#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store/postgres/pq.hpp"

namespace docflow::store::postgres {

struct pool_settings {
  std::size_t size = 10;  ///< connections open at most, in use or idle
  pq::session_settings session;
  /// How long a call waits for a connection when all are in use.
  std::chrono::milliseconds acquire_timeout{10'000};
  /// After a failed connect, no new one is tried for this long, doubling
  /// per failure up to max_backoff; calls meanwhile fail at once.
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{5'000};
};

/// A bounded set of connections to one database. A connection is checked
/// before it is lent (a server restart leaves every idle one dead) and
/// dropped when it comes back broken.
///
/// Callers that find none free wait in line: a connection given back goes
/// to the longest waiting caller, never to one that arrived later, so under
/// saturation every call waits about as long as the others.
///
/// After a connect fails, no new one is tried until a backoff has passed
/// (one call at a time then tries). Meanwhile a call waits for one of the
/// connections already open, when there are any; when there are none (the
/// database is down) it fails with store_unavailable at once instead of
/// waiting for a connect timeout.
class pool {
public:
  pool(std::string url, pool_settings options);
  ~pool();
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  /// A connection lent to one caller, given back on destruction.
  class lease {
  public:
    lease(pool& p, std::unique_ptr<pq::connection> c) : p_(&p), c_(std::move(c)) {}
    ~lease();
    lease(lease&& o) noexcept = default;
    lease& operator=(lease&&) = delete;
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    pq::connection& operator*() const noexcept { return *c_; }
    pq::connection* operator->() const noexcept { return c_.get(); }

  private:
    pool* p_;
    std::unique_ptr<pq::connection> c_;
  };

  /// Throws store_unavailable when no connection is open and none can be
  /// (the database is down, or backing off), or when none came free within
  /// the acquire timeout.
  lease acquire();

  /// A connection of its own, outside the bound (migrations hold a
  /// session-level advisory lock on one). Throws store_error.
  std::unique_ptr<pq::connection> connect_alone() const;

  /// Callers waiting in line for a connection now.
  std::size_t waiting() const;

  struct stats {
    std::size_t in_use = 0;   ///< lent, or being connected
    std::size_t waiting = 0;  ///< callers in line
    std::uint64_t waits = 0;  ///< calls that found none free and waited, since start
    double wait_seconds = 0;  ///< the time they waited, in all
  };
  /// Never blocks on the database (a moment on the pool's mutex).
  stats usage() const;

  const std::string& url() const noexcept { return url_; }
  const pool_settings& options() const noexcept { return options_; }

private:
  struct waiter;
  void give_back(std::unique_ptr<pq::connection> c) noexcept;
  // Hands `c` (or, when null, leave to open a connection or to look at the
  // pool again) to the longest waiting caller; false when none waits.
  bool hand_to_next(std::unique_ptr<pq::connection>& c);

  const std::string url_;
  const pool_settings options_;

  mutable std::mutex mutex_;
  std::deque<waiter*> line_;  ///< callers waiting, longest first; never non-empty while idle_ is not
  std::vector<std::unique_ptr<pq::connection>> idle_;
  std::uint64_t tickets_ = 0;  ///< places in line handed out
  std::size_t open_ = 0;       ///< idle, lent, or being connected
  unsigned failures_ = 0;      ///< connects failed in a row
  bool probing_ = false;       ///< a reconnect is under way while the database is believed down
  std::chrono::steady_clock::time_point next_attempt_{};
  std::string last_error_;
  std::uint64_t waits_ = 0;
  double wait_seconds_ = 0;
};

}  // namespace docflow::store::postgres
