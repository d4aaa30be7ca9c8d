#pragma once

#include <string>
#include <string_view>

namespace docflow::core {

/// SHA-256 of `bytes`, lowercase hex (64 chars).
std::string sha256_hex(std::string_view bytes);

/// HMAC-SHA256 of `data` under `key`: the raw 32 bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

}  // namespace docflow::core
