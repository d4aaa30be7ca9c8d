#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace docflow::core {
class clock;
}
namespace docflow::store {
class database;
}

namespace docflow::api {

/// Counts failed logins per username and per client address in a sliding
/// window. Past a limit, logins are refused until the oldest failure leaves
/// the window. The counts live in the database (store::database's attempt
/// throttle), so every process sharing it counts against the same limits:
/// N nodes do not allow N times as many guesses, and a restart forgets
/// nothing. Every method blocks on the database: call it through
/// backend_call, never on an I/O thread.
///
/// An attempt is counted when it begins, before the password is checked, so
/// that concurrent guesses see each other: counted after, 16 simultaneous
/// guesses all passed a limit of 5. A success takes its count back.
class login_throttle {
public:
  login_throttle(store::database& db, unsigned max_per_user, unsigned max_per_address,
                 std::chrono::seconds window, const core::clock& clock);

  /// How long the caller must wait; nullopt when a login may be attempted.
  std::optional<std::chrono::seconds> retry_after(std::string_view user_key, std::string_view address);

  /// Checks both limits and, when the login may go ahead, counts it as a
  /// failure for both keys at once (unknown usernames count the same).
  /// Returns the wait when refused, and then counts nothing.
  std::optional<std::chrono::seconds> begin(std::string_view user_key, std::string_view address);

  /// After a successful login: forgets the username's failures, and takes
  /// back the address's count of this attempt.
  void succeeded(std::string_view user_key, std::string_view address);

private:
  store::database& db_;
  const core::clock& clock_;
  unsigned max_per_user_;
  unsigned max_per_address_;
  std::chrono::seconds window_;
};

/// Counts registrations per client address in a sliding window, so that one
/// address cannot create accounts in a loop. Counted when a registration
/// begins. In the database, like login_throttle, and blocking like it.
class registration_throttle {
public:
  registration_throttle(store::database& db, unsigned max_per_address, std::chrono::seconds window,
                        const core::clock& clock);

  /// Counts the registration and returns nullopt, or returns the wait and
  /// counts nothing.
  std::optional<std::chrono::seconds> begin(std::string_view address);
  /// How long the caller must wait; nullopt when a registration may begin.
  std::optional<std::chrono::seconds> retry_after(std::string_view address);

private:
  store::database& db_;
  const core::clock& clock_;
  unsigned max_per_address_;
  std::chrono::seconds window_;
};

}  // namespace docflow::api
