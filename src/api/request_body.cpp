#include "api/request_body.hpp"

#include <algorithm>
#include <charconv>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/url/encoding_opts.hpp>
#include <boost/url/parse_query.hpp>

#include "core/encoding.hpp"

namespace docflow::api {

std::optional<std::uint64_t> count_field(const http::request& req, std::string_view name) {
  const auto v = req.fields.get(name);
  if (!v || v->empty()) return std::nullopt;
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc{} || end != v->data() + v->size()) return std::nullopt;
  return n;
}

std::string media_type(const http::request& req) {
  std::string_view type = req.fields.get("Content-Type").value_or("");
  return core::ascii_lower(core::trim_ows(type.substr(0, type.find(';'))));
}

core::result<boost::json::object> json_object_body(const http::request& req) {
  if (media_type(req) != "application/json") {
    return core::error(core::errc::unsupported_media_type,
                       "This endpoint takes a JSON body (Content-Type: application/json).");
  }
  boost::json::error_code ec;
  auto v = boost::json::parse(req.body, ec);
  if (ec) {
    return core::error(core::errc::invalid_request, "The body is not valid JSON.");
  }
  // JSON that parses is a request we understood with values we refuse (SPEC §1).
  if (!v.is_object()) {
    return core::invalid_fields({{"body", "must be a JSON object"}});
  }
  return std::move(v.as_object());
}

core::result<form_fields> form_body(const http::request& req) {
  auto params = boost::urls::parse_query(req.body);
  if (!params) {
    return core::error(core::errc::invalid_request,
                       "The form body is not valid application/x-www-form-urlencoded.");
  }
  const boost::urls::encoding_opts form_encoding(true);  // '+' is a space in forms
  form_fields out;
  for (const auto& p : *params) {
    out.emplace(p.key.decode(form_encoding), p.value.decode(form_encoding));
  }
  return out;
}

std::optional<std::string> required_string(const boost::json::object& o, std::string_view name,
                                           std::vector<core::field_error>& errors) {
  const auto* v = o.if_contains(name);
  if (!v) {
    errors.push_back({std::string(name), "is required"});
    return std::nullopt;
  }
  if (!v->is_string()) {
    errors.push_back({std::string(name), "must be a string"});
    return std::nullopt;
  }
  return std::string(v->as_string());
}

}  // namespace docflow::api
