#include "obs/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include "core/clock.hpp"
#include "obs/log_queue.hpp"

namespace docflow::obs {

namespace {
std::atomic<level> min_level{level::info};

// About 10,000 access-log lines: a few seconds of a busy server's log, held
// while stdout is slow, before lines are dropped instead of the server
// waiting for it.
constexpr std::size_t queue_limit = 4 << 20;
// How long exit waits for a stalled stdout to take the last lines.
constexpr std::chrono::seconds exit_flush{5};

// Never destroyed: lines logged from other static objects' destructors,
// after exit's flush, still find it.
log_queue& stdout_queue() {
  static log_queue* const queue = [] {
    auto* q = new log_queue(STDOUT_FILENO, queue_limit);
    std::atexit([] { flush_log(exit_flush); });
    return q;
  }();
  return *queue;
}

// The node's name, and the `"node":"..."` member every line carries,
// serialized once.
struct node_text {
  std::string name;
  std::string member;
};

node_text* make_node_text(std::string_view name) {
  return new node_text{std::string(name), R"("node":)" + boost::json::serialize(boost::json::string(name))};
}

// Set at start, read by every line. A name replaced is never freed: another
// thread may be writing a line with it (set_node runs once or twice per
// process, so this costs a few bytes).
std::atomic<const node_text*> current_node{nullptr};

const node_text& node() {
  if (const auto* n = current_node.load(std::memory_order_acquire)) return *n;
  const node_text* fresh = make_node_text(default_node_name());
  const node_text* expected = nullptr;
  if (current_node.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread's default came first
  return *expected;
}

const char* name(level l) {
  switch (l) {
    case level::debug: return "debug";
    case level::info: return "info";
    case level::warn: return "warn";
    case level::error: return "error";
  }
  return "info";
}
}  // namespace

std::optional<level> parse_level(std::string_view s) noexcept {
  if (s == "debug") return level::debug;
  if (s == "info") return level::info;
  if (s == "warn") return level::warn;
  if (s == "error") return level::error;
  return std::nullopt;
}

void set_node(std::string_view name) { current_node.store(make_node_text(name), std::memory_order_release); }

std::string default_node_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  return std::string(host) + ':' + std::to_string(::getpid());
}

std::string node_name() { return node().name; }

void set_level(level min) noexcept { min_level.store(min, std::memory_order_relaxed); }

bool enabled(level l) noexcept { return l >= min_level.load(std::memory_order_relaxed); }

namespace {
// Appends the members of `object_text` (a serialized object) and closes `line`.
void append_members(std::string& line, std::string_view object_text) {
  if (object_text.size() > 2) {
    line.push_back(',');
    line.append(object_text.substr(1));
  } else {
    line.push_back('}');
  }
}
}  // namespace

void log(level l, std::string_view event, const boost::json::object& fields) {
  if (!enabled(l)) {
    return;
  }
  try {
    // Built as text, not as a second object holding copies of the fields:
    // the access log writes one line per request (about a third of the cost
    // of logging in the GET /documents/{id} profile went to that copy).
    // ts, level, event and node are always the line's own.
    std::string text = R"({"ts":")" + core::format_rfc3339(core::system_clock().now()) + R"(","level":")" +
                       name(l) + R"(","event":)" + boost::json::serialize(boost::json::string(event)) + ',' +
                       node().member;
    if (fields.contains("ts") || fields.contains("level") || fields.contains("event") ||
        fields.contains("node")) {
      boost::json::object rest = fields;  // rare: drop what would repeat the line's own members
      for (const char* own : {"ts", "level", "event", "node"}) rest.erase(own);
      append_members(text, boost::json::serialize(rest));
    } else {
      append_members(text, boost::json::serialize(fields));
    }
    text.push_back('\n');
    stdout_queue().push(text);
  } catch (...) {
    // Out of memory while logging: drop the line rather than fail the caller.
  }
}

bool flush_log(std::chrono::milliseconds timeout) { return stdout_queue().flush(timeout); }

std::uint64_t log_lines_dropped() noexcept { return stdout_queue().dropped(); }

}  // namespace docflow::obs
