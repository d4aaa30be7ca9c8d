#include "auth/refresh_token.hpp"

#include <array>

#include <openssl/sha.h>

#include "core/encoding.hpp"
#include "core/ids.hpp"

namespace docflow::auth {

std::string new_refresh_token() {
  std::array<unsigned char, 32> bytes{};
  core::random_bytes(bytes.data(), bytes.size());
  return core::base64url_encode(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::string refresh_token_hash(std::string_view token) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return core::hex_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

}  // namespace docflow::auth
