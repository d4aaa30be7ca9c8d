#include "auth/throttle.hpp"

namespace docflow::auth {

namespace {
constexpr std::size_t prune_every = 1024;
}  // namespace

login_throttle::login_throttle(unsigned max_per_user, unsigned max_per_address, std::chrono::seconds window,
                               const core::clock& clock)
    : max_per_user_(max_per_user), max_per_address_(max_per_address), window_(window), clock_(clock) {}

std::optional<std::chrono::seconds> login_throttle::check(table& t, std::string_view key, unsigned limit,
                                                          core::time_point now) {
  const auto it = t.find(std::string(key));
  if (it == t.end()) {
    return std::nullopt;
  }
  auto& w = it->second;
  while (!w.empty() && w.front() + window_ <= now) {
    w.pop_front();
  }
  if (w.size() < limit) {
    return std::nullopt;
  }
  // Waiting until the oldest counted failure expires frees one attempt.
  const auto wait = std::chrono::ceil<std::chrono::seconds>(w.front() + window_ - now);
  return std::max(wait, std::chrono::seconds{1});
}

std::optional<std::chrono::seconds> login_throttle::retry_after(std::string_view user_key,
                                                                std::string_view address) {
  const std::lock_guard lock(mutex_);
  const auto now = clock_.now();
  const auto by_user = check(users_, user_key, max_per_user_, now);
  const auto by_address = check(addresses_, address, max_per_address_, now);
  if (by_user && by_address) {
    return std::max(*by_user, *by_address);
  }
  return by_user ? by_user : by_address;
}

void login_throttle::prune(table& t, core::time_point now) {
  for (auto it = t.begin(); it != t.end();) {
    if (it->second.empty() || it->second.back() + window_ <= now) {
      it = t.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<std::chrono::seconds> login_throttle::begin(std::string_view user_key,
                                                          std::string_view address) {
  const std::lock_guard lock(mutex_);
  const auto now = clock_.now();
  const auto by_user = check(users_, user_key, max_per_user_, now);
  const auto by_address = check(addresses_, address, max_per_address_, now);
  if (by_user || by_address) {
    return std::max(by_user.value_or(std::chrono::seconds{0}), by_address.value_or(std::chrono::seconds{0}));
  }
  users_[std::string(user_key)].push_back(now);
  addresses_[std::string(address)].push_back(now);
  if (++inserts_since_prune_ >= prune_every) {
    inserts_since_prune_ = 0;
    prune(users_, now);
    prune(addresses_, now);
  }
  return std::nullopt;
}

// Concurrent attempts are interchangeable: taking back the newest count
// leaves the same number, a little later at most.
void login_throttle::drop_newest(table& t, std::string_view key) {
  const auto it = t.find(std::string(key));
  if (it == t.end()) return;
  if (!it->second.empty()) it->second.pop_back();
  if (it->second.empty()) t.erase(it);
}

void login_throttle::abandoned(std::string_view user_key, std::string_view address) {
  const std::lock_guard lock(mutex_);
  drop_newest(users_, user_key);
  drop_newest(addresses_, address);
}

void login_throttle::succeeded(std::string_view user_key, std::string_view address) {
  const std::lock_guard lock(mutex_);
  users_.erase(std::string(user_key));
  drop_newest(addresses_, address);
}

}  // namespace docflow::auth
