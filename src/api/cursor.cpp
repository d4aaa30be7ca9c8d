#include "api/cursor.hpp"

#include <charconv>

#include <boost/url/parse_query.hpp>

#include <openssl/crypto.h>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"

namespace docflow::api {

namespace {
constexpr std::size_t tag_bytes = 16;

std::string derive_key(std::string_view secret) { return core::hmac_sha256(secret, "docflow cursor key v1"); }

std::string tag(const std::string& key, std::string_view payload) {
  return core::hmac_sha256(key, payload).substr(0, tag_bytes);
}

}  // namespace

cursor_codec::cursor_codec(std::string_view secret, const std::optional<std::string>& previous_secret)
    : key_(derive_key(secret)) {
  if (previous_secret) previous_key_ = derive_key(*previous_secret);
}

std::string cursor_codec::encode(core::time_point created_at, std::string_view id) const {
  const auto ms = core::to_unix_ms(created_at);
  const std::string payload = std::to_string(ms) + ':' + std::string(id);
  return core::base64url_encode(payload + tag(key_, payload));
}

std::optional<std::pair<core::time_point, std::string>> cursor_codec::decode(std::string_view cursor) const {
  if (cursor.size() > 256) return std::nullopt;
  const auto raw = core::base64url_decode(cursor);
  if (!raw || raw->size() <= tag_bytes) return std::nullopt;
  const std::string_view payload(raw->data(), raw->size() - tag_bytes);
  const auto tagged_with = [&](const std::string& key) {
    return CRYPTO_memcmp(tag(key, payload).data(), raw->data() + payload.size(), tag_bytes) == 0;
  };
  if (!tagged_with(key_) && !(previous_key_ && tagged_with(*previous_key_))) return std::nullopt;
  // A matching tag means this server wrote the payload; it is parsed with
  // every check all the same (no ':', or a time no time_point holds: refused).
  const auto colon = payload.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::int64_t ms = 0;
  const auto [end, ec] = std::from_chars(payload.data(), payload.data() + colon, ms);
  if (ec != std::errc{} || end != payload.data() + colon) return std::nullopt;
  const auto created_at = core::from_unix_ms(ms);
  const auto id = payload.substr(colon + 1);
  if (!created_at || !core::is_uuid(id)) return std::nullopt;
  return std::pair{*created_at, std::string(id)};
}

core::result<page_request> read_page_request(std::string_view query, const cursor_codec& cursors,
                                             const page_parameter& other) {
  auto params = boost::urls::parse_query(query);
  if (!params) return core::error{core::errc::invalid_request, "The query string cannot be parsed."};
  page_request page;
  std::vector<core::field_error> errors;
  const boost::urls::encoding_opts query_encoding(true);
  for (const auto& p : *params) {
    const auto key = p.key.decode(query_encoding);
    const auto value = p.value.decode(query_encoding);
    if (key == "limit") {
      std::int64_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || ec != std::errc{} || end != value.data() + value.size()) {
        return core::error{core::errc::invalid_request, "limit must be a whole number."};
      }
      if (n < 1 || n > 200) {
        errors.push_back({"limit", "must be between 1 and 200"});
      } else {
        page.limit = static_cast<std::size_t>(n);
      }
    } else if (key == "cursor") {
      page.after = cursors.decode(value);
      if (!page.after)
        return core::error{core::errc::invalid_request, "The cursor is not one this server issued."};
    } else if (other) {
      other(key, value, errors);
    }
  }
  if (!errors.empty()) return core::invalid_fields(std::move(errors));
  return page;
}

}  // namespace docflow::api
