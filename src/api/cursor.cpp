#include "api/cursor.hpp"

#include <charconv>

#include <openssl/crypto.h>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"

namespace docflow::api {

namespace {
constexpr std::size_t tag_bytes = 16;

}  // namespace

cursor_codec::cursor_codec(std::string_view secret)
    : key_(core::hmac_sha256(secret, "docflow cursor key v1")) {}

std::string cursor_codec::tag(std::string_view payload) const {
  return core::hmac_sha256(key_, payload).substr(0, tag_bytes);
}

std::string cursor_codec::encode(core::time_point created_at, std::string_view id) const {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(created_at.time_since_epoch()).count();
  const std::string payload = std::to_string(ms) + ':' + std::string(id);
  return core::base64url_encode(payload + tag(payload));
}

std::optional<std::pair<core::time_point, std::string>> cursor_codec::decode(std::string_view cursor) const {
  if (cursor.size() > 256) return std::nullopt;
  const auto raw = core::base64url_decode(cursor);
  if (!raw || raw->size() <= tag_bytes) return std::nullopt;
  const std::string_view payload(raw->data(), raw->size() - tag_bytes);
  const auto expected = tag(payload);
  if (CRYPTO_memcmp(expected.data(), raw->data() + payload.size(), tag_bytes) != 0) return std::nullopt;
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
