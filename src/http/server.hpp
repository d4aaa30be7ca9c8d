#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/ip_network.hpp"
#include "http/router.hpp"

namespace docflow::obs {
class metrics;
}

namespace docflow::http {

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0: any free port (tests)
  std::chrono::milliseconds header_timeout{30000};
  std::chrono::milliseconds body_timeout{60000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds shutdown_timeout{30000};
  unsigned io_threads = 2;
  std::size_t header_limit = 16 * 1024;  ///< request line + header fields
  /// Open connections at most, and from one client address at most (0: no
  /// cap). Past either, a new connection is closed at once, unread, and
  /// counted in docflow_connections_rejected_total.
  std::size_t max_connections = 0;
  std::size_t max_connections_per_address = 0;
  /// Peers whose X-Forwarded-For and X-Forwarded-Proto name the client
  /// (forwarded_client). The connection caps count TCP peers regardless:
  /// they act before a header is read. A proxy pools its connections, so
  /// during the drain its idle ones stay open until it closes them, their
  /// idle_timeout passes, or one more request comes (answered with
  /// Connection: close): closing one could cross a request the proxy is
  /// sending, which it may not retry elsewhere (a POST).
  std::vector<core::ip_network> trusted_proxies;
  /// Called once when draining starts (signal or stop()), on an I/O thread:
  /// the place to stop background work and end long-lived streams.
  std::function<void()> on_drain;
};

/// The HTTP/1.1 server: accepts connections, reads each request head,
/// routes it, enforces deadlines and limits, runs the handler, writes the
/// answer, logs it and counts it. Every error it answers itself is
/// problem+json.
class server {
public:
  /// Binds and listens at once, so port() is known before run(). Throws
  /// std::system_error when the address cannot be bound.
  /// `auth` verifies bearer tokens for routes whose policy is not none.
  server(server_options options, const router& routes, authenticator auth, obs::metrics& metrics);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The bound port (useful with port 0).
  std::uint16_t port() const noexcept;

  /// Serves until SIGTERM/SIGINT or stop(), then drains: stops accepting,
  /// closes idle connections (not a trusted proxy's), lets
  /// in-flight requests finish within shutdown_timeout, and returns.
  void run();

  /// Starts the graceful shutdown from any thread.
  void stop();

  struct impl;  ///< defined in server.cpp; public only so its helpers can name it

private:
  std::unique_ptr<impl> impl_;
};

}  // namespace docflow::http
