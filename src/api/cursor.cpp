#include "api/cursor.hpp"

#include <charconv>

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

}  // namespace docflow::api
