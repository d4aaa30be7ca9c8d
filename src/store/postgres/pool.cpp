#include "store/postgres/pool.hpp"

#include <algorithm>
#include <condition_variable>
#include <optional>

namespace docflow::store::postgres {

// One caller waiting in line, on its own stack: it leaves only once woken
// (or timed out and taken out of the line), so whoever wakes it does so
// under the pool's lock.
struct pool::waiter {
  std::condition_variable cv;
  std::uint64_t ticket = 0;  ///< order of arrival
  bool woken = false;
  std::unique_ptr<pq::connection> conn;  ///< handed over by give_back, or none
};

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

std::size_t pool::waiting() const {
  const std::lock_guard lock(mutex_);
  return line_.size();
}

pool::stats pool::usage() const {
  const std::lock_guard lock(mutex_);
  return {open_ - idle_.size(), line_.size(), waits_, wait_seconds_};
}

bool pool::hand_to_next(std::unique_ptr<pq::connection>& c) {
  if (line_.empty()) return false;
  waiter* w = line_.front();
  line_.pop_front();
  w->conn = std::move(c);
  w->woken = true;
  w->cv.notify_one();
  return true;
}

pool::lease pool::acquire() {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + options_.acquire_timeout;
  std::vector<std::unique_ptr<pq::connection>> dead;  // closed outside the lock
  std::unique_lock lock(mutex_);
  // One that comes while others wait goes behind them, even if a connection
  // is being given back at this very moment.
  bool my_turn = line_.empty();
  std::uint64_t ticket = 0;  // place in line, once in it
  // How long this call waited in line, counted however it ends (with the
  // lock held: declared after it, so destroyed before it).
  struct wait_meter {
    pool& p;
    std::optional<clock::time_point> since;
    ~wait_meter() {
      if (since) p.wait_seconds_ += std::chrono::duration<double>(clock::now() - *since).count();
    }
  } meter{*this, std::nullopt};
  for (;;) {
    while (my_turn && !idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (c->usable()) return {*this, std::move(c)};
      --open_;
      dead.push_back(std::move(c));
    }
    if (my_turn && open_ < options_.size) {
      const bool backing_off = failures_ > 0 && (probing_ || clock::now() < next_attempt_);
      if (!backing_off) {
        ++open_;
        probing_ = failures_ > 0;
        lock.unlock();
        dead.clear();
        std::unique_ptr<pq::connection> c;
        std::string error;
        try {
          c = std::make_unique<pq::connection>(url_, options_.session);
        } catch (const std::exception& e) {
          error = e.what();
        }
        lock.lock();
        probing_ = false;
        std::unique_ptr<pq::connection> none;
        if (c) {
          failures_ = 0;
          // The database answers again: the next in line may open one too.
          if (open_ < options_.size) hand_to_next(none);
          return {*this, std::move(c)};
        }
        --open_;
        ++failures_;
        const std::chrono::milliseconds backoff = std::min<std::chrono::milliseconds>(
            options_.max_backoff, options_.min_backoff * (1 << std::min(failures_ - 1, 16U)));
        next_attempt_ = clock::now() + backoff;
        last_error_ = error;
        if (open_ == 0) {
          hand_to_next(none);  // which fails at once in turn
          throw store_unavailable(error);
        }
        // The connections open are fine as far as anyone knows (a connect
        // can fail on a slow or full server): take one given back while
        // this one was connecting, or wait in line for one.
        continue;
      } else if (open_ == 0) {
        std::unique_ptr<pq::connection> none;
        hand_to_next(none);
        throw store_unavailable("postgres: database unavailable (" + last_error_ + ")");
      }
    }
    waiter w;
    if (ticket == 0) {
      ticket = ++tickets_;
      ++waits_;
      meter.since = clock::now();
    }
    w.ticket = ticket;
    // In order of arrival: one back in line after a wake-up keeps its place.
    line_.insert(std::upper_bound(line_.begin(), line_.end(), ticket,
                                  [](std::uint64_t t, const waiter* o) { return t < o->ticket; }),
                 &w);
    // With room for another connection once the backoff is over, wake then
    // to try one: a pool that lost connections grows back under load too.
    auto until = deadline;
    if (open_ < options_.size && failures_ > 0 && !probing_ && next_attempt_ > clock::now()) {
      until = std::min(deadline, next_attempt_);
    }
    if (!w.cv.wait_until(lock, until, [&w] { return w.woken; })) {
      line_.erase(std::find(line_.begin(), line_.end(), &w));
      if (clock::now() >= deadline) {
        throw store_unavailable("postgres: no connection came free within " +
                                std::to_string(options_.acquire_timeout.count()) + " ms (pool of " +
                                std::to_string(options_.size) + ")");
      }
    }
    my_turn = true;
    if (w.conn) {
      if (w.conn->usable()) return {*this, std::move(w.conn)};
      --open_;
      dead.push_back(std::move(w.conn));
    }
  }
}

void pool::give_back(std::unique_ptr<pq::connection> c) noexcept {
  const bool keep = c->usable();
  {
    const std::lock_guard lock(mutex_);
    if (keep) {
      if (!hand_to_next(c)) idle_.push_back(std::move(c));
      return;
    }
    --open_;
    // Its place is free: the next in line may open a connection.
    std::unique_ptr<pq::connection> none;
    hand_to_next(none);
  }
  // A broken connection is closed here, outside the lock.
}

}  // namespace docflow::store::postgres
