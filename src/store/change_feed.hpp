#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "store/wakeups.hpp"

namespace docflow::store {

class database;

/// Tells the watchers of a document that it has a new status event. One
/// thread asks the database for the documents changed since its last look
/// (`database::documents_with_events_since`), every `interval` while anyone
/// is watching and not at all otherwise, and calls their listeners: one
/// query per interval however many streams are open, instead of one query
/// per stream. Changes made by other processes are seen the same way.
///
/// When the database hands out wake-ups (PostgreSQL), a document_changed
/// hint calls the document's listeners at once, and the query runs only
/// every `woken_interval` and whenever hints may have been lost (the
/// database came back): a safety net, not the way changes are learnt.
class change_feed {
public:
  change_feed(database& db, std::chrono::milliseconds interval,
              std::chrono::milliseconds woken_interval = std::chrono::seconds(30));
  ~change_feed();
  change_feed(const change_feed&) = delete;
  change_feed& operator=(const change_feed&) = delete;

  /// Called on the feed's thread; must not block.
  using listener = std::function<void()>;

  /// Keeps a listener registered while it lives.
  class subscription {
  public:
    subscription(change_feed& feed, std::uint64_t id) : feed_(&feed), id_(id) {}
    subscription(subscription&& o) noexcept : feed_(std::exchange(o.feed_, nullptr)), id_(o.id_) {}
    subscription& operator=(subscription&&) = delete;
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription();

  private:
    change_feed* feed_;
    std::uint64_t id_;
  };

  /// Calls `on_change` after each new event of `document_id`.
  [[nodiscard]] subscription watch(std::string document_id, listener on_change);

  /// Calls the listeners of `document_id` now (a change this process made
  /// and knows of, such as a deletion, which leaves no event behind).
  void notify(std::string_view document_id);
  /// Calls every listener (the server is shutting down).
  void notify_all();

private:
  struct watcher {
    std::string document_id;
    listener on_change;
  };

  void run();

  database& db_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::uint64_t, watcher> watchers_;
  std::uint64_t next_id_ = 0;
  bool stopping_ = false;
  bool look_now_ = false;  ///< hints were lost: query before the interval is up
  std::optional<wakeups::subscription> hints_;
  std::thread thread_;
};

}  // namespace docflow::store
