#include "store/postgres/listener.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>

namespace docflow::store::postgres {

namespace {

constexpr std::array topics{wakeup_topic::job_available, wakeup_topic::document_changed,
                            wakeup_topic::job_stopped};

std::optional<wakeup_topic> topic_of(std::string_view channel_name) noexcept {
  for (const auto t : topics) {
    if (channel(t) == channel_name) return t;
  }
  return std::nullopt;
}

int make_stop_fd() {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  if (fd < 0) throw store_error(std::string("postgres listener: eventfd: ") + std::strerror(errno));
  return fd;
}

}  // namespace

std::string_view channel(wakeup_topic topic) noexcept {
  switch (topic) {
    case wakeup_topic::job_available: return "docflow_jobs";
    case wakeup_topic::document_changed: return "docflow_events";
    case wakeup_topic::job_stopped: return "docflow_job_stopped";
  }
  return {};
}

listener::listener(connector connect, std::chrono::milliseconds min_backoff,
                   std::chrono::milliseconds max_backoff)
    : connect_(std::move(connect)),
      min_backoff_(std::max(min_backoff, std::chrono::milliseconds{1})),
      max_backoff_(std::max(max_backoff, min_backoff_)),
      stop_fd_(make_stop_fd()) {}

listener::~listener() {
  const std::uint64_t one = 1;
  if (::write(stop_fd_, &one, sizeof one) < 0) {
    // An eventfd write fails only when its counter would overflow: it is
    // readable already, which is all the thread looks at.
  }
  if (thread_.joinable()) thread_.join();
  ::close(stop_fd_);
}

wakeups::subscription listener::subscribe(wakeup_topic topic, handler on) {
  std::unique_lock lock(mutex_);
  const auto id = next_id_++;
  handlers_.emplace(id, std::pair{topic, std::move(on)});
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  first_attempt_.wait(lock, [this] { return first_attempt_done_; });
  return {*this, id};
}

void listener::unsubscribe(std::uint64_t id) noexcept {
  const std::lock_guard lock(mutex_);
  handlers_.erase(id);
}

void listener::deliver(std::optional<wakeup_topic> topic, std::optional<std::string_view> payload) {
  const std::lock_guard lock(mutex_);
  for (const auto& [id, entry] : handlers_) {
    if (!topic || entry.first == *topic) entry.second(payload);
  }
}

bool listener::sleep(int fd, int timeout_ms) const {
  std::array<pollfd, 2> fds{pollfd{stop_fd_, POLLIN, 0}, pollfd{fd, POLLIN, 0}};
  // EINTR: return as if woken; the caller looks and sleeps again.
  ::poll(fds.data(), fd >= 0 ? 2 : 1, timeout_ms);
  return (fds[0].revents & POLLIN) == 0;
}

void listener::run() {
  std::string listen;
  for (const auto t : topics) listen += "LISTEN " + std::string(channel(t)) + ';';
  bool first = true;
  std::chrono::milliseconds backoff{0};
  for (;;) {
    std::unique_ptr<pq::connection> c;
    try {
      c = connect_();
      c->script(listen);
    } catch (const std::exception&) {
      c.reset();  // the server is down or refuses us: try again after the backoff
    }
    if (first) {
      // The first subscriber waits for this attempt; what committed before
      // it returns is its own to look for, so nobody needs telling.
      first = false;
      const std::lock_guard lock(mutex_);
      first_attempt_done_ = true;
      first_attempt_.notify_all();
    } else if (c) {
      deliver(std::nullopt, std::nullopt);
    }
    if (!c) {
      backoff = std::clamp(backoff * 2, min_backoff_, max_backoff_);
      if (!sleep(-1, static_cast<int>(backoff.count()))) return;
      continue;
    }
    backoff = std::chrono::milliseconds{0};
    try {
      for (;;) {
        for (const auto& n : c->notifications()) {
          if (const auto topic = topic_of(n.channel)) deliver(topic, n.payload);
        }
        if (!sleep(c->socket(), -1)) return;
      }
    } catch (const std::exception&) {
      // Lost: open another at once (a single failure, such as one dropped
      // connection, costs no wait), then back off while that fails.
    }
  }
}

}  // namespace docflow::store::postgres
