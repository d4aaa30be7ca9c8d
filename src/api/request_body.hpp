#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "core/result.hpp"
#include "http/message.hpp"

namespace docflow::api {

/// The header `name` as a non-negative decimal that fits 64 bits, as
/// Content-Length, Upload-Length and Upload-Offset are written: no sign, no
/// spaces; none when it is missing or otherwise.
std::optional<std::uint64_t> count_field(const http::request& req, std::string_view name);

/// The media type of the request (lowercased, parameters dropped), or "".
std::string media_type(const http::request& req);

/// The body as a JSON object: unsupported_media_type unless the
/// Content-Type is application/json, invalid_request when it is not JSON,
/// invalid_fields (`body`) when it is JSON but not an object.
core::result<boost::json::object> json_object_body(const http::request& req);

using form_fields = std::map<std::string, std::string, std::less<>>;

/// The body as application/x-www-form-urlencoded fields (the first value of
/// each name wins), or invalid_request when it cannot be decoded.
core::result<form_fields> form_body(const http::request& req);

/// A required string member: records a field error when it is missing or
/// not a string.
std::optional<std::string> required_string(const boost::json::object& o, std::string_view name,
                                           std::vector<core::field_error>& errors);

}  // namespace docflow::api
