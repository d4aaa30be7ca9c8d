#pragma once

#include <string>
#include <vector>

#include <boost/json/object.hpp>

#include "core/result.hpp"
#include "http/message.hpp"

namespace docflow::http {

using field_error = core::field_error;

/// An RFC 9457 problem. `slug` becomes `type: /problems/<slug>`; `detail` is
/// shown to the client, so it must never hold internal paths or messages.
struct problem {
  int status = 500;
  std::string slug;
  std::string title;
  std::string detail;
  std::vector<field_error> errors;  ///< validation failures, if any
  boost::json::object extensions;   ///< extra members named by the spec
};

/// The application/problem+json response for `p`, with `instance` set to the
/// request's path and `request_id` to its id.
response make_problem(const request& req, const problem& p);

/// Shorthands for the problems the HTTP layer itself produces.
problem not_found();
problem method_not_allowed();
problem bad_request(std::string detail);
problem header_too_large();
problem payload_too_large(std::string detail);
problem internal_error();
problem unsupported_media_type(std::string detail);
/// 422 with one entry per invalid field.
problem validation_failed(std::vector<field_error> errors);
problem unauthorized(std::string detail);
problem forbidden(std::string detail);
problem service_unavailable(std::string detail);
/// 501: a request feature the server does not implement (a transfer coding).
problem not_implemented(std::string detail);

}  // namespace docflow::http
