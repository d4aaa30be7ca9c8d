#include "auth/refresh_token.hpp"

#include <array>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"

namespace docflow::auth {

std::string new_refresh_token() {
  std::array<unsigned char, 32> bytes{};
  core::random_bytes(bytes.data(), bytes.size());
  return core::base64url_encode(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::string refresh_token_hash(std::string_view token) { return core::sha256_hex(token); }

}  // namespace docflow::auth
