#include "store/change_feed.hpp"

#include <unordered_set>
#include <vector>

#include "store/database.hpp"

namespace docflow::store {

namespace {
// Documents reported per query: more wait for the next interval.
constexpr std::size_t batch = 1000;
}  // namespace

change_feed::change_feed(database& db, std::chrono::milliseconds interval,
                         std::chrono::milliseconds woken_interval)
    : db_(db), interval_(db.wakeups() ? woken_interval : interval) {
  if (auto* hints = db_.wakeups()) {
    hints_.emplace(
        hints->subscribe(wakeup_topic::document_changed, [this](std::optional<std::string_view> id) {
          if (id) {
            notify(*id);
            return;
          }
          {
            const std::lock_guard lock(mutex_);
            look_now_ = true;
          }
          wake_.notify_all();
        }));
  }
  thread_ = std::thread([this] { run(); });
}

change_feed::~change_feed() {
  hints_.reset();
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

change_feed::subscription::~subscription() {
  if (!feed_) return;
  const std::lock_guard lock(feed_->mutex_);
  feed_->watchers_.erase(id_);
}

change_feed::subscription change_feed::watch(std::string document_id, listener on_change) {
  std::uint64_t id = 0;
  {
    const std::lock_guard lock(mutex_);
    id = next_id_++;
    watchers_.emplace(id, watcher{std::move(document_id), std::move(on_change)});
  }
  wake_.notify_all();
  return {*this, id};
}

void change_feed::notify(std::string_view document_id) {
  const std::lock_guard lock(mutex_);
  for (const auto& [id, w] : watchers_) {
    if (w.document_id == document_id) w.on_change();
  }
}

void change_feed::notify_all() {
  const std::lock_guard lock(mutex_);
  for (const auto& [id, w] : watchers_) w.on_change();
}

void change_feed::run() {
  std::int64_t position = -1;  // from the first look on
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (watchers_.empty()) {
      // Nobody watches: ask nothing. Start again from "now" when someone does.
      position = -1;
      look_now_ = false;
      wake_.wait(lock, [this] { return stopping_ || !watchers_.empty(); });
      continue;
    }
    lock.unlock();
    std::unordered_set<std::string> changed;
    try {
      auto found = db_.documents_with_events_since(position, batch);
      changed.insert(found.ids.begin(), found.ids.end());
      position = found.next;
    } catch (const std::exception&) {
      // The database is busy or down: try again next interval. Streams do
      // not depend on it to end (their heartbeat looks for themselves).
    }
    lock.lock();
    for (const auto& [id, w] : watchers_) {
      if (changed.contains(w.document_id)) w.on_change();
    }
    wake_.wait_for(lock, interval_, [this] { return stopping_ || look_now_; });
    look_now_ = false;
  }
}

}  // namespace docflow::store
