#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

namespace boost::json {
class value;
}

namespace docflow::http {

/// Header fields in arrival order; names compare case-insensitively.
class headers {
public:
  /// The first value of `name`, if present.
  std::optional<std::string_view> get(std::string_view name) const;
  bool contains(std::string_view name) const { return get(name).has_value(); }
  /// Replaces every field called `name` with one holding `value`.
  void set(std::string name, std::string value);
  void add(std::string name, std::string value);

  auto begin() const { return fields_.begin(); }
  auto end() const { return fields_.end(); }

private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

/// The caller, as established from a valid access token or API key.
struct identity {
  std::string user_id;
  bool admin = false;
  /// When the credential that admitted the caller expires: a long-lived
  /// response (an event stream) ends then.
  std::chrono::system_clock::time_point expires_at = std::chrono::system_clock::time_point::max();
  bool api_key = false;  ///< admitted by an API key, not an access token
};

/// Why a request body could not be read to its end.
class body_error : public std::runtime_error {
public:
  enum class kind {
    too_large,     ///< past the route's limit: the server answers 413
    malformed,     ///< bad chunked framing: 400
    timeout,       ///< the client paused longer than the body timeout: no answer
    disconnected,  ///< the client went away: no answer
  };
  body_error(kind k, const std::string& what) : std::runtime_error(what), kind_(k) {}
  kind which() const noexcept { return kind_; }

private:
  kind kind_;
};

/// A request body read as it arrives (routes that stream, such as uploads).
class body_reader {
public:
  virtual ~body_reader() = default;
  /// Reads up to `max` bytes into `out`; returns 0 at the end of the body.
  /// Throws body_error.
  virtual boost::asio::awaitable<std::size_t> read_some(char* out, std::size_t max) = 0;
};

/// A response body produced piece by piece (downloads, event streams).
class body_source {
public:
  virtual ~body_source() = default;
  /// Reads up to `max` next bytes into `out`; 0 at the end. Each piece is
  /// sent as soon as it is read. Throws std::runtime_error on an I/O failure.
  virtual boost::asio::awaitable<std::size_t> read(char* out, std::size_t max) = 0;
};

/// A parsed request as handlers see it. Handlers never see Beast types.
struct request {
  std::string method;
  std::string target;  ///< raw request target
  std::string path;    ///< target without the query
  std::string query;   ///< after '?', raw (not decoded)
  headers fields;
  std::string body;
  /// The client: the TCP peer, or the address a trusted proxy forwarded
  /// (forwarded_client); what throttles and logs key on.
  std::string remote_address;
  std::string peer_address;    ///< the TCP peer itself (a proxy, when there is one)
  std::string scheme{"http"};  ///< "https" when a trusted proxy says the client used it
  std::string request_id;
  std::string route;  ///< the matched route's pattern, e.g. /documents/{id}
  std::map<std::string, std::string, std::less<>> params;
  std::optional<identity> user;        ///< set when the route's auth policy admitted a caller
  body_reader* body_stream = nullptr;  ///< set instead of `body` on streaming routes

  /// A path parameter; empty when the route has no such parameter.
  std::string_view param(std::string_view name) const;
};

/// A response as handlers produce it.
struct response {
  int status = 200;
  headers fields;
  std::string body;
  std::shared_ptr<body_source> stream;       ///< when set, sent instead of `body`
  std::optional<std::uint64_t> stream_size;  ///< Content-Length of `stream`; unknown: chunked
  bool close = false;                        ///< close the connection after sending

  /// `body` serialised as application/json (or `content_type`).
  static response json(int status, const boost::json::value& body,
                       std::string content_type = "application/json");
  static response text(int status, std::string body, std::string content_type = "text/plain; charset=utf-8");
  static response empty(int status);
};

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 9110 §11.1); nullopt when absent, another scheme,
/// or empty.
std::optional<std::string_view> bearer_token(const request& req);

/// Whether an If-None-Match value names `etag` (a quoted entity tag): "*" or
/// a list of tags, compared weakly as RFC 9110 §13.1.2 asks (W/"x" matches "x").
bool if_none_match_names(std::string_view header, std::string_view etag);

/// Whether an Accept-Encoding value accepts gzip (RFC 9110 §12.5.3): "gzip"
/// (or "x-gzip") or "*" with a non-zero q, unless gzip itself has q=0.
bool accepts_gzip(std::string_view accept_encoding);

/// The caller's X-Request-ID when it is 1-128 chars of [A-Za-z0-9._-],
/// otherwise a freshly generated one.
std::string request_id_for(std::optional<std::string_view> incoming);

}  // namespace docflow::http
