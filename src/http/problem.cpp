#include "http/problem.hpp"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

namespace docflow::http {

response make_problem(const request& req, const problem& p) {
  boost::json::object body;
  body["type"] = "/problems/" + p.slug;
  body["title"] = p.title;
  body["status"] = p.status;
  body["detail"] = p.detail;
  body["instance"] = req.path.empty() ? std::string("/") : req.path;
  body["request_id"] = req.request_id;
  if (!p.errors.empty()) {
    boost::json::array errors;
    for (const auto& e : p.errors) {
      errors.push_back(boost::json::object{{"field", e.field}, {"message", e.message}});
    }
    body["errors"] = std::move(errors);
  }
  for (const auto& [k, v] : p.extensions) {
    body[k] = v;
  }
  return response::json(p.status, body, "application/problem+json");
}

problem not_found() { return {404, "not-found", "Not Found", "No resource exists at this path.", {}, {}}; }

problem method_not_allowed() {
  return {405,
          "method-not-allowed",
          "Method Not Allowed",
          "This resource does not support the request method; see the Allow header.",
          {},
          {}};
}

problem bad_request(std::string detail) {
  return {400, "bad-request", "Bad Request", std::move(detail), {}, {}};
}

problem header_too_large() {
  return {431,
          "request-header-too-large",
          "Request Header Fields Too Large",
          "The request line or header fields exceed the server's limit.",
          {},
          {}};
}

problem payload_too_large(std::string detail) {
  return {413, "payload-too-large", "Content Too Large", std::move(detail), {}, {}};
}

problem internal_error() {
  return {500,
          "internal-error",
          "Internal Server Error",
          "The server failed to handle the request; the request id identifies it in the logs.",
          {},
          {}};
}

problem unsupported_media_type(std::string detail) {
  return {415, "unsupported-media-type", "Unsupported Media Type", std::move(detail), {}, {}};
}

problem validation_failed(std::vector<field_error> errors) {
  return {422,
          "validation-failed",
          "Unprocessable Content",
          "One or more fields are invalid; see errors.",
          std::move(errors),
          {}};
}

problem unauthorized(std::string detail) {
  return {401, "unauthorized", "Unauthorized", std::move(detail), {}, {}};
}

problem forbidden(std::string detail) { return {403, "forbidden", "Forbidden", std::move(detail), {}, {}}; }

problem not_implemented(std::string detail) {
  return {501, "not-implemented", "Not Implemented", std::move(detail), {}, {}};
}

problem service_unavailable(std::string detail) {
  return {503, "service-unavailable", "Service Unavailable", std::move(detail), {}, {}};
}

}  // namespace docflow::http
