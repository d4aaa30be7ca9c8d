#pragma once

#include <string>
#include <string_view>

namespace docflow::auth {

/// A new opaque refresh token: 256 random bits, base64url (43 chars). It has
/// no dots, so it can never parse as a JWT, and vice versa.
std::string new_refresh_token();

/// What the database stores instead of the token: its SHA-256, hex.
std::string refresh_token_hash(std::string_view token);

}  // namespace docflow::auth
