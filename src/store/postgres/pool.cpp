#include "store/postgres/pool.hpp"

#include <algorithm>

namespace docflow::store::postgres {

pool::pool(std::string url, pool_settings options) : url_(std::move(url)), options_(std::move(options)) {
  if (options_.size == 0) throw store_error("postgres: a pool needs at least one connection");
}

pool::~pool() = default;

pool::lease::~lease() {
  if (p_ && c_) p_->give_back(std::move(c_));
}

std::unique_ptr<pq::connection> pool::connect_alone() const {
  return std::make_unique<pq::connection>(url_, options_.session);
}

pool::lease pool::acquire() {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + options_.acquire_timeout;
  std::vector<std::unique_ptr<pq::connection>> dead;  // closed outside the lock
  std::unique_lock lock(mutex_);
  for (;;) {
    while (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (c->usable()) return {*this, std::move(c)};
      --open_;
      dead.push_back(std::move(c));
    }
    if (open_ < options_.size) {
      const auto now = clock::now();
      if (failures_ > 0 && (probing_ || now < next_attempt_)) {
        throw store_unavailable("postgres: database unavailable (" + last_error_ + ")");
      }
      ++open_;
      probing_ = failures_ > 0;
      lock.unlock();
      dead.clear();
      try {
        auto c = std::make_unique<pq::connection>(url_, options_.session);
        lock.lock();
        failures_ = 0;
        probing_ = false;
        return {*this, std::move(c)};
      } catch (const std::exception& e) {
        lock.lock();
        --open_;
        probing_ = false;
        ++failures_;
        const std::chrono::milliseconds backoff = std::min<std::chrono::milliseconds>(
            options_.max_backoff, options_.min_backoff * (1 << std::min(failures_ - 1, 16U)));
        next_attempt_ = clock::now() + backoff;
        last_error_ = e.what();
        freed_.notify_one();
        throw store_unavailable(std::string(e.what()));
      }
    }
    if (freed_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= options_.size) {
      throw store_unavailable("postgres: no connection came free within " +
                              std::to_string(options_.acquire_timeout.count()) + " ms (pool of " +
                              std::to_string(options_.size) + ")");
    }
  }
}

void pool::give_back(std::unique_ptr<pq::connection> c) noexcept {
  const bool keep = c->usable();
  {
    const std::lock_guard lock(mutex_);
    if (keep) {
      idle_.push_back(std::move(c));
    } else {
      --open_;
    }
  }
  freed_.notify_one();
  // A broken connection is closed here, outside the lock.
}

}  // namespace docflow::store::postgres
