#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/ip_network.hpp"

namespace docflow::core {
class clock;
}
namespace docflow::store {
class database;
}
namespace docflow::obs {
class metrics;
}

namespace docflow::webhooks {

struct sender_options {
  /// Deliveries in flight at once: one thread each.
  unsigned concurrency = 4;
  /// One attempt, from resolving the host to the answer's last byte.
  std::chrono::milliseconds timeout{10000};
  /// The first retry's delay; each next one doubles, up to retry_cap, with jitter.
  std::chrono::milliseconds retry_base{30000};
  std::chrono::milliseconds retry_cap{std::chrono::hours{1}};
  /// How long after its creation a delivery is retried before it fails.
  std::chrono::milliseconds retry_for{std::chrono::hours{24}};
  /// How often an idle thread looks for a delivery.
  std::chrono::milliseconds poll_interval{500};
  /// DOCFLOW_WEBHOOK_ALLOWED_NETWORKS: special-purpose addresses a webhook may reach all the same.
  std::vector<core::ip_network> allowed_networks;
  std::string user_agent = "docflow-webhooks";
};

/// Threads that claim webhook deliveries from the database (any process
/// may, as with jobs), POST each signed event to its endpoint, pinned to
/// the addresses checked for it, and record the outcome under the lease
/// token. Apart from the job workers, so that a slow or dead endpoint never
/// holds up a document.
class sender {
public:
  /// Starts `options.concurrency` threads at once.
  sender(store::database& db, sender_options options, obs::metrics& metrics, const core::clock& clock);
  /// Stops claiming and joins; an attempt under way runs to its timeout.
  ~sender();
  sender(const sender&) = delete;
  sender& operator=(const sender&) = delete;

  /// Asks the threads to stop after their current attempt; does not wait.
  void stop() noexcept;

  /// Declares the delivery metrics (call once per registry).
  static void describe_metrics(obs::metrics& metrics);

  struct impl;  ///< defined in sender.cpp

private:
  std::unique_ptr<impl> impl_;
};

/// What one POST came to: the answer's status, or why there was none.
struct attempt_result {
  std::optional<int> status;
  std::optional<std::string> error;
  bool delivered() const noexcept { return status && *status >= 200 && *status < 300; }
};

/// One attempt: resolves the URL's host, refuses it unless an address is
/// allowed (core::webhook_address_allowed), then POSTs `body` pinned to the
/// allowed addresses only, with no proxy and no redirect followed. Blocks
/// for at most `timeout` past the DNS lookup.
attempt_result post_event(const std::string& url, const std::vector<std::string>& headers,
                          const std::string& body, const sender_options& options);

}  // namespace docflow::webhooks
