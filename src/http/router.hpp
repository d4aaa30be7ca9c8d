#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"

namespace docflow::http {

/// Who may call a route. The server enforces it before reading the body.
enum class auth_policy {
  none,     ///< anyone
  user,     ///< any valid access token or API key
  session,  ///< a valid access token, never an API key: key management, account changes
  admin,    ///< a valid access token or API key of a user with role admin
};

/// What the server learns from a bearer token: an identity, or why not.
struct authentication {
  std::optional<identity> who;
  std::string error_description;  ///< for WWW-Authenticate when `who` is empty
  /// The token could not be checked just now (its database is down): the
  /// answer is 503, not a refusal of the token.
  bool unavailable = false;
};

/// Verifies a bearer token (the text after "Bearer "), on an I/O thread: it
/// must not block there, so what needs the database awaits it. `token`
/// stays valid until the coroutine ends.
using authenticator = std::function<boost::asio::awaitable<authentication>(std::string_view token)>;

using handler = std::function<boost::asio::awaitable<response>(request&)>;

/// One line of the route table.
struct route {
  std::string method;
  std::string pattern;  ///< literal segments and {name} parameters
  handler fn;
  auth_policy auth = auth_policy::none;
  std::size_t body_limit = 0;  ///< largest accepted request body in bytes
  bool stream_body = false;    ///< the handler reads request::body_stream itself
  /// Fields every answer to a request for this route carries, the server's
  /// own refusals (401, 413) among them: a protocol's marker (tus's
  /// Tus-Resumable) that its clients expect on each response.
  std::vector<std::pair<std::string, std::string>> response_fields{};
};

/// The outcome of matching a request against the route table.
struct match_result {
  const route* found = nullptr;  ///< set when method and path match
  std::map<std::string, std::string, std::less<>> params;
  std::vector<std::string> allowed;  ///< when the path matches under other methods (405)
};

/// Matches method and path against a fixed table. HEAD matches GET routes.
class router {
public:
  /// Throws std::invalid_argument on a malformed pattern or a duplicate route.
  explicit router(std::vector<route> routes);

  match_result match(std::string_view method, std::string_view path) const;
  const std::vector<route>& routes() const noexcept { return routes_; }

private:
  std::vector<route> routes_;
  std::vector<std::vector<std::string>> segments_;  // split patterns, parallel to routes_
};

}  // namespace docflow::http
