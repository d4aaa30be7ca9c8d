#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

namespace docflow::api {

/// Open event streams per user, against DOCFLOW_MAX_STREAMS_PER_USER: one
/// account cannot hold thousands of streams (3,000 used two thirds of two
/// cores when each polled on its own).
class stream_limit {
public:
  explicit stream_limit(unsigned per_user) : per_user_(per_user) {}

  /// A stream's place; given back when it is destroyed.
  class ticket {
  public:
    ticket(stream_limit& owner, std::string user_id) : owner_(&owner), user_id_(std::move(user_id)) {}
    ticket(ticket&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), user_id_(std::move(o.user_id_)) {}
    ticket& operator=(ticket&&) = delete;
    ticket(const ticket&) = delete;
    ticket& operator=(const ticket&) = delete;
    ~ticket() {
      if (!owner_) return;
      const std::lock_guard lock(owner_->mutex_);
      if (const auto it = owner_->open_.find(user_id_); it != owner_->open_.end() && --it->second == 0) {
        owner_->open_.erase(it);
      }
    }

  private:
    stream_limit* owner_;
    std::string user_id_;
  };

  /// A ticket, or nullopt when the user already has the most streams open.
  std::optional<ticket> try_open(const std::string& user_id) {
    const std::lock_guard lock(mutex_);
    auto& n = open_[user_id];
    if (n >= per_user_) return std::nullopt;
    ++n;
    return std::optional<ticket>(std::in_place, *this, user_id);
  }

private:
  unsigned per_user_;
  std::mutex mutex_;
  std::unordered_map<std::string, unsigned> open_;
};

}  // namespace docflow::api
