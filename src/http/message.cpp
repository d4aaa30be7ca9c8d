#include "http/message.hpp"

#include <algorithm>

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/encoding.hpp"
#include "core/ids.hpp"

namespace docflow::http {

std::optional<std::string_view> headers::get(std::string_view name) const {
  for (const auto& [k, v] : fields_) {
    if (core::iequals(k, name)) {
      return std::string_view(v);
    }
  }
  return std::nullopt;
}

void headers::set(std::string name, std::string value) {
  std::erase_if(fields_, [&](const auto& f) { return core::iequals(f.first, name); });
  fields_.emplace_back(std::move(name), std::move(value));
}

void headers::add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

std::string_view request::param(std::string_view name) const {
  const auto it = params.find(name);
  return it == params.end() ? std::string_view{} : std::string_view(it->second);
}

response response::json(int status, const boost::json::value& body, std::string content_type) {
  response r;
  r.status = status;
  r.fields.set("Content-Type", std::move(content_type));
  r.body = boost::json::serialize(body);
  return r;
}

response response::text(int status, std::string body, std::string content_type) {
  response r;
  r.status = status;
  r.fields.set("Content-Type", std::move(content_type));
  r.body = std::move(body);
  return r;
}

response response::empty(int status) {
  response r;
  r.status = status;
  return r;
}

std::optional<std::string_view> bearer_token(const request& req) {
  const auto header = req.fields.get("Authorization");
  constexpr std::string_view scheme = "bearer ";
  if (!header || header->size() <= scheme.size() ||
      !core::iequals(header->substr(0, scheme.size()), scheme)) {
    return std::nullopt;
  }
  auto token = header->substr(scheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

std::string request_id_for(std::optional<std::string_view> incoming) {
  if (incoming && !incoming->empty() && incoming->size() <= 128 &&
      std::all_of(incoming->begin(), incoming->end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
      })) {
    return std::string(*incoming);
  }
  return core::new_uuid_v7();
}

bool if_none_match_names(std::string_view header, std::string_view etag) {
  while (!header.empty()) {
    const auto comma = header.find(',');
    auto tag = core::trim_ows(header.substr(0, comma));
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == "*" || tag == etag) return true;
  }
  return false;
}

bool accepts_gzip(std::string_view accept_encoding) {
  std::optional<bool> gzip;
  bool star = false;
  while (!accept_encoding.empty()) {
    const auto comma = accept_encoding.find(',');
    auto item = accept_encoding.substr(0, comma);
    accept_encoding =
        comma == std::string_view::npos ? std::string_view{} : accept_encoding.substr(comma + 1);
    const auto semi = item.find(';');
    const auto coding = core::ascii_lower(core::trim_ows(item.substr(0, semi)));
    bool allowed = true;
    if (semi != std::string_view::npos) {
      // Only the weight matters: q=0 (0, 0.0, 0.000) refuses, anything else accepts.
      auto param = core::trim_ows(item.substr(semi + 1));
      if (param.size() >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
        const auto weight = core::trim_ows(param.substr(2));
        allowed = weight.find_first_not_of("0.") != std::string_view::npos;
      }
    }
    if (coding == "gzip" || coding == "x-gzip") {
      gzip = allowed;
    } else if (coding == "*") {
      star = allowed;
    }
  }
  return gzip.value_or(star);
}

}  // namespace docflow::http
