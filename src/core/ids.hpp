#pragma once

#include <string>
#include <string_view>

namespace docflow::core {

/// A new UUIDv7 (RFC 9562) in canonical lowercase form: 48-bit Unix
/// milliseconds, then random bits, so ids sort by creation time.
std::string new_uuid_v7();

/// True when `s` is a canonical UUID string (36 chars, lowercase or uppercase hex).
bool is_uuid(std::string_view s) noexcept;

/// `n` bytes from the system CSPRNG, hex encoded (2n chars).
std::string random_hex(std::size_t n);

/// Fills `out` with bytes from the system CSPRNG. Throws std::runtime_error if
/// the generator fails (it does not on Linux once booted).
void random_bytes(unsigned char* out, std::size_t n);

}  // namespace docflow::core
