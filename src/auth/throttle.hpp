#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/clock.hpp"

namespace docflow::auth {

/// Events per key in a sliding window, against a limit. Not synchronised:
/// its owner holds a lock around each use.
class sliding_window {
public:
  sliding_window(unsigned limit, std::chrono::seconds window) : limit_(limit), window_(window) {}

  /// How long until `key` is under its limit again; nullopt when it is now.
  std::optional<std::chrono::seconds> retry_after(std::string_view key, core::time_point now);
  /// Counts one event for `key` at `now`.
  void count(std::string_view key, core::time_point now);
  /// Takes back one event of `key`. Events close together are
  /// interchangeable: taking back the newest leaves the same number, a
  /// little later at most.
  void take_back(std::string_view key);
  /// Forgets every event of `key`.
  void forget(std::string_view key);

private:
  using events = std::deque<core::time_point>;

  unsigned limit_;
  std::chrono::seconds window_;
  std::unordered_map<std::string, events> keys_;
  std::size_t counts_since_prune_ = 0;
};

/// Counts failed logins per username and per client address in a sliding
/// window. Past a limit, logins are refused until the oldest failure leaves
/// the window. In memory, per process: a node that restarts forgets.
///
/// An attempt is counted when it begins, before the password is checked, so
/// that concurrent guesses see each other: counted after, 16 simultaneous
/// guesses all passed a limit of 5. A success or an attempt that never ran
/// takes its count back.
class login_throttle {
public:
  login_throttle(unsigned max_per_user, unsigned max_per_address, std::chrono::seconds window,
                 const core::clock& clock);

  /// How long the caller must wait; nullopt when a login may be attempted.
  std::optional<std::chrono::seconds> retry_after(std::string_view user_key, std::string_view address);

  /// Checks both limits and, when the login may go ahead, counts it as a
  /// failure for both keys at once (unknown usernames count the same).
  /// Returns the wait when refused, and then counts nothing.
  std::optional<std::chrono::seconds> begin(std::string_view user_key, std::string_view address);

  /// Takes back the count of a begun attempt that was never made (no
  /// password was checked).
  void abandoned(std::string_view user_key, std::string_view address);

  /// After a successful login: forgets the username's failures, and takes
  /// back the address's count of this attempt.
  void succeeded(std::string_view user_key, std::string_view address);

private:
  const core::clock& clock_;
  std::mutex mutex_;
  sliding_window users_;
  sliding_window addresses_;
};

/// Counts registrations per client address in a sliding window, so that one
/// address cannot create accounts in a loop. Counted when a registration
/// begins; one that never ran (no hashing slot) takes its count back.
class registration_throttle {
public:
  registration_throttle(unsigned max_per_address, std::chrono::seconds window, const core::clock& clock);

  /// Counts the registration and returns nullopt, or returns the wait and
  /// counts nothing.
  std::optional<std::chrono::seconds> begin(std::string_view address);
  void abandoned(std::string_view address);

private:
  const core::clock& clock_;
  std::mutex mutex_;
  sliding_window addresses_;
};

}  // namespace docflow::auth
