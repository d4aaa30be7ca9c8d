#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace docflow::core {

/// Base64url without padding (RFC 4648 §5), as JWTs and cursors use it.
std::string base64url_encode(std::string_view bytes);

/// Strict decoding: nullopt on any character outside the alphabet, on
/// padding, or on a length that no encoding produces.
std::optional<std::string> base64url_decode(std::string_view text);

/// The number of characters (code points) in UTF-8 text: the bytes that do
/// not continue a sequence. Meant for length limits on validated text.
std::size_t utf8_length(std::string_view text) noexcept;

/// Lowercase hex of `bytes`.
std::string hex_encode(std::string_view bytes);

}  // namespace docflow::core
