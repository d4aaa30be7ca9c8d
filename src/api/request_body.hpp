#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/json/object.hpp>

#include "http/message.hpp"
#include "http/problem.hpp"

namespace docflow::api {

/// The media type of the request (lowercased, parameters dropped), or "".
std::string media_type(const http::request& req);

/// The body as a JSON object, or the problem to answer: 415 unless the
/// Content-Type is application/json, 400 when the body is not a JSON object.
std::variant<boost::json::object, http::problem> json_object_body(const http::request& req);

/// The body as application/x-www-form-urlencoded fields (the first value of
/// each name wins), or a 400 problem when it cannot be decoded.
std::variant<std::map<std::string, std::string, std::less<>>, http::problem> form_body(
    const http::request& req);

/// A required string member: records a field error when it is missing or
/// not a string.
std::optional<std::string> required_string(const boost::json::object& o, std::string_view name,
                                           std::vector<http::field_error>& errors);

}  // namespace docflow::api
