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
  using window_t = std::deque<core::time_point>;
  using table = std::unordered_map<std::string, window_t>;

  std::optional<std::chrono::seconds> check(table& t, std::string_view key, unsigned limit,
                                            core::time_point now);
  void prune(table& t, core::time_point now);
  static void drop_newest(table& t, std::string_view key);

  unsigned max_per_user_;
  unsigned max_per_address_;
  std::chrono::seconds window_;
  const core::clock& clock_;
  std::mutex mutex_;
  table users_;
  table addresses_;
  std::size_t inserts_since_prune_ = 0;
};

}  // namespace docflow::auth
