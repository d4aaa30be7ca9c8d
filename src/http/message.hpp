#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

/// The caller, as established from a valid access token.
struct identity {
  std::string user_id;
  bool admin = false;
};

/// A parsed request as handlers see it. Handlers never see Beast types.
struct request {
  std::string method;
  std::string target;  ///< raw request target
  std::string path;    ///< target without the query
  std::string query;   ///< after '?', raw (not decoded)
  headers fields;
  std::string body;
  std::string remote_address;
  std::string request_id;
  std::string route;  ///< the matched route's pattern, e.g. /documents/{id}
  std::map<std::string, std::string, std::less<>> params;
  std::optional<identity> user;  ///< set when the route's auth policy admitted a caller

  /// A path parameter; empty when the route has no such parameter.
  std::string_view param(std::string_view name) const;
};

/// A response as handlers produce it.
struct response {
  int status = 200;
  headers fields;
  std::string body;
  bool close = false;  ///< close the connection after sending

  /// `body` serialised as application/json (or `content_type`).
  static response json(int status, const boost::json::value& body,
                       std::string content_type = "application/json");
  static response text(int status, std::string body, std::string content_type = "text/plain; charset=utf-8");
  static response empty(int status);
};

/// The caller's X-Request-ID when it is 1-128 chars of [A-Za-z0-9._-],
/// otherwise a freshly generated one.
std::string request_id_for(std::optional<std::string_view> incoming);

}  // namespace docflow::http
