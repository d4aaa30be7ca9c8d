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

/// Decodes standard base64 (RFC 4648 §4: '+' and '/'), with its '='
/// padding or without; nullopt for anything else.
std::optional<std::string> base64_decode(std::string_view text);

/// The number of characters (code points) in UTF-8 text: the bytes that do
/// not continue a sequence. Meant for length limits on validated text.
std::size_t utf8_length(std::string_view text) noexcept;

/// Length of the UTF-8 sequence starting at text[i], or 0 when it is
/// invalid (overlong, surrogate, out of range or truncated).
std::size_t utf8_sequence_length(std::string_view text, std::size_t i) noexcept;

/// True for valid UTF-8 (no overlong forms, surrogates or truncated
/// sequences) without control characters (C0, DEL, C1): text fit to store
/// and show, such as a document title.
bool is_plain_text(std::string_view text) noexcept;

/// ASCII case folding (A-Z only), for protocol tokens such as header names
/// and media types; never for user text.
char ascii_lower(char c) noexcept;
std::string ascii_lower(std::string_view s);
bool iequals(std::string_view a, std::string_view b) noexcept;

/// `s` without leading and trailing spaces and tabs (HTTP's optional
/// whitespace, RFC 9110 §5.6.3).
std::string_view trim_ows(std::string_view s) noexcept;

/// Lowercase hex of `bytes`.
std::string hex_encode(std::string_view bytes);

}  // namespace docflow::core
