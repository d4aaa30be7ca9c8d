#include "auth/throttle.hpp"

#include <algorithm>

namespace docflow::auth {

namespace {
// Keys whose events have all left the window are dropped after this many
// counts, so a stream of one-off keys (sprayed addresses) cannot grow the map.
constexpr std::size_t prune_every = 1024;

std::optional<std::chrono::seconds> longer(std::optional<std::chrono::seconds> a,
                                           std::optional<std::chrono::seconds> b) {
  if (a && b) return std::max(*a, *b);
  return a ? a : b;
}
}  // namespace

std::optional<std::chrono::seconds> sliding_window::retry_after(std::string_view key, core::time_point now) {
  const auto it = keys_.find(std::string(key));
  if (it == keys_.end()) {
    return std::nullopt;
  }
  auto& w = it->second;
  while (!w.empty() && w.front() + window_ <= now) {
    w.pop_front();
  }
  if (w.size() < limit_) {
    return std::nullopt;
  }
  // Waiting until the oldest counted event expires frees one attempt.
  const auto wait = std::chrono::ceil<std::chrono::seconds>(w.front() + window_ - now);
  return std::max(wait, std::chrono::seconds{1});
}

void sliding_window::count(std::string_view key, core::time_point now) {
  keys_[std::string(key)].push_back(now);
  if (++counts_since_prune_ < prune_every) {
    return;
  }
  counts_since_prune_ = 0;
  std::erase_if(
      keys_, [&](const auto& entry) { return entry.second.empty() || entry.second.back() + window_ <= now; });
}

void sliding_window::take_back(std::string_view key) {
  const auto it = keys_.find(std::string(key));
  if (it == keys_.end()) return;
  if (!it->second.empty()) it->second.pop_back();
  if (it->second.empty()) keys_.erase(it);
}

void sliding_window::forget(std::string_view key) { keys_.erase(std::string(key)); }

login_throttle::login_throttle(unsigned max_per_user, unsigned max_per_address, std::chrono::seconds window,
                               const core::clock& clock)
    : clock_(clock), users_(max_per_user, window), addresses_(max_per_address, window) {}

std::optional<std::chrono::seconds> login_throttle::retry_after(std::string_view user_key,
                                                                std::string_view address) {
  const std::lock_guard lock(mutex_);
  const auto now = clock_.now();
  return longer(users_.retry_after(user_key, now), addresses_.retry_after(address, now));
}

std::optional<std::chrono::seconds> login_throttle::begin(std::string_view user_key,
                                                          std::string_view address) {
  const std::lock_guard lock(mutex_);
  const auto now = clock_.now();
  if (auto wait = longer(users_.retry_after(user_key, now), addresses_.retry_after(address, now))) {
    return wait;
  }
  users_.count(user_key, now);
  addresses_.count(address, now);
  return std::nullopt;
}

void login_throttle::abandoned(std::string_view user_key, std::string_view address) {
  const std::lock_guard lock(mutex_);
  users_.take_back(user_key);
  addresses_.take_back(address);
}

void login_throttle::succeeded(std::string_view user_key, std::string_view address) {
  const std::lock_guard lock(mutex_);
  users_.forget(user_key);
  addresses_.take_back(address);
}

registration_throttle::registration_throttle(unsigned max_per_address, std::chrono::seconds window,
                                             const core::clock& clock)
    : clock_(clock), addresses_(max_per_address, window) {}

std::optional<std::chrono::seconds> registration_throttle::begin(std::string_view address) {
  const std::lock_guard lock(mutex_);
  const auto now = clock_.now();
  if (auto wait = addresses_.retry_after(address, now)) {
    return wait;
  }
  addresses_.count(address, now);
  return std::nullopt;
}

void registration_throttle::abandoned(std::string_view address) {
  const std::lock_guard lock(mutex_);
  addresses_.take_back(address);
}

}  // namespace docflow::auth
