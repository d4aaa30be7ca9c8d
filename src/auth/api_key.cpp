#include "auth/api_key.hpp"

#include <algorithm>
#include <array>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"

namespace docflow::auth {

namespace {

constexpr std::string_view scheme = "dfk_";
constexpr std::size_t random_bytes = 32;
constexpr std::size_t encoded_length = 43;  // base64url of 32 bytes, unpadded
constexpr std::size_t shown_characters = 8;

// One secret, two uses: the derived key keeps a key's hash from ever
// being a valid signature of anything the server signs with the secret.
std::string derive(std::string_view secret) { return core::hmac_sha256(secret, "docflow api-key hash v1"); }

}  // namespace

std::string new_api_key() {
  std::array<unsigned char, random_bytes> bytes{};
  core::random_bytes(bytes.data(), bytes.size());
  return std::string(scheme) +
         core::base64url_encode({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
}

bool looks_like_api_key(std::string_view token) noexcept {
  if (!token.starts_with(scheme) || token.size() != scheme.size() + encoded_length) return false;
  return std::ranges::all_of(token.substr(scheme.size()), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

std::string api_key_prefix(std::string_view key) {
  return std::string(key.substr(0, scheme.size() + shown_characters));
}

api_key_hasher::api_key_hasher(std::string_view secret, std::optional<std::string_view> previous)
    : key_(derive(secret)) {
  if (previous) previous_key_ = derive(*previous);
}

std::string api_key_hasher::hash(std::string_view key) const {
  return core::hex_encode(core::hmac_sha256(key_, key));
}

std::optional<std::string> api_key_hasher::previous_hash(std::string_view key) const {
  if (!previous_key_) return std::nullopt;
  return core::hex_encode(core::hmac_sha256(*previous_key_, key));
}

}  // namespace docflow::auth
