#include "api/throttle.hpp"

#include <algorithm>
#include <array>
#include <string>

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "store/database.hpp"

namespace docflow::api {

namespace {

// The kinds of keys, as the database names them; the login scopes in this
// order everywhere (count_attempt locks its keys in the order given).
constexpr std::string_view login_user = "login_user";
constexpr std::string_view login_address = "login_address";
constexpr std::string_view signup_address = "signup_address";

// A key as stored: usernames and addresses as they are, so that an operator
// can find them; anything else a client may send as a username (over 128
// bytes, control characters, bytes that are not UTF-8) by its SHA-256,
// which every database column and index takes.
std::string stored_key(std::string_view key) {
  constexpr std::size_t longest = 128;
  const bool plain = !key.empty() && key.size() <= longest &&
                     std::all_of(key.begin(), key.end(), [](char c) { return c > ' ' && c < 0x7f; });
  return plain ? std::string(key) : "sha256:" + core::sha256_hex(key);
}

std::optional<std::chrono::seconds> wait_until(std::optional<core::time_point> until, core::time_point now) {
  if (!until) return std::nullopt;
  // Rounded up, and at least a second: Retry-After counts whole seconds.
  return std::max(std::chrono::ceil<std::chrono::seconds>(*until - now), std::chrono::seconds{1});
}

// A login's keys as stored, username first: the order count_attempt locks them in.
std::array<store::attempt_key, 2> login_keys(const std::string& user, const std::string& from,
                                             unsigned max_per_user, unsigned max_per_address) {
  return {store::attempt_key{login_user, user, max_per_user},
          store::attempt_key{login_address, from, max_per_address}};
}

}  // namespace

login_throttle::login_throttle(store::database& db, unsigned max_per_user, unsigned max_per_address,
                               std::chrono::seconds window, const core::clock& clock)
    : db_(db),
      clock_(clock),
      max_per_user_(max_per_user),
      max_per_address_(max_per_address),
      window_(window) {}

std::optional<std::chrono::seconds> login_throttle::retry_after(std::string_view user_key,
                                                                std::string_view address) {
  const auto user = stored_key(user_key);
  const auto from = stored_key(address);
  const auto now = clock_.now();
  return wait_until(db_.attempts_refused_until(login_keys(user, from, max_per_user_, max_per_address_), now),
                    now);
}

std::optional<std::chrono::seconds> login_throttle::begin(std::string_view user_key,
                                                          std::string_view address) {
  const auto user = stored_key(user_key);
  const auto from = stored_key(address);
  const auto now = clock_.now();
  return wait_until(db_.count_attempt(login_keys(user, from, max_per_user_, max_per_address_), now, window_),
                    now);
}

void login_throttle::succeeded(std::string_view user_key, std::string_view address) {
  const auto user = stored_key(user_key);
  const auto from = stored_key(address);
  db_.release_attempts(std::array{store::attempt_release{login_user, user, true},
                                  store::attempt_release{login_address, from, false}});
}

registration_throttle::registration_throttle(store::database& db, unsigned max_per_address,
                                             std::chrono::seconds window, const core::clock& clock)
    : db_(db), clock_(clock), max_per_address_(max_per_address), window_(window) {}

std::optional<std::chrono::seconds> registration_throttle::begin(std::string_view address) {
  const auto from = stored_key(address);
  const std::array keys{store::attempt_key{signup_address, from, max_per_address_}};
  const auto now = clock_.now();
  return wait_until(db_.count_attempt(keys, now, window_), now);
}

std::optional<std::chrono::seconds> registration_throttle::retry_after(std::string_view address) {
  const auto from = stored_key(address);
  const std::array keys{store::attempt_key{signup_address, from, max_per_address_}};
  const auto now = clock_.now();
  return wait_until(db_.attempts_refused_until(keys, now), now);
}

}  // namespace docflow::api
