// What the fuzz targets share: reporting a broken invariant, and taking an
// input apart into the values a target needs. Header-only; not a target
// (only *_fuzz.cpp files are).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "core/encoding.hpp"

namespace docflow::fuzz {

/// Prints which invariant broke and aborts, which libFuzzer records as a
/// crash with the input that caused it.
[[noreturn]] inline void violated(const char* what) {
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

inline void check(bool holds, const char* what) {
  if (!holds) violated(what);
}

/// Whether `s` is valid UTF-8 (no overlong forms, surrogates or truncated
/// sequences): what every text the server produces must be.
inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto n = core::utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

/// Takes a fuzz input apart from the front; running out yields zeros and
/// empty strings, so every input is usable.
class input {
public:
  input(const std::uint8_t* data, std::size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}

  std::uint8_t byte() {
    if (rest_.empty()) return 0;
    const auto b = static_cast<std::uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }

  /// Up to 8 bytes, little-endian.
  std::uint64_t u64() { return little_endian(8); }
  /// Up to 4 bytes, little-endian.
  std::uint32_t u32() { return static_cast<std::uint32_t>(little_endian(4)); }

  /// The bytes up to `separator` (dropped), or everything left.
  std::string_view until(char separator) {
    const auto at = rest_.find(separator);
    const auto piece = rest_.substr(0, at);
    rest_ = at == std::string_view::npos ? std::string_view{} : rest_.substr(at + 1);
    return piece;
  }

  std::string_view rest() {
    const auto all = rest_;
    rest_ = {};
    return all;
  }

  bool empty() const { return rest_.empty(); }

private:
  std::uint64_t little_endian(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes && !rest_.empty(); ++i) v |= std::uint64_t{byte()} << (8 * i);
    return v;
  }

  std::string_view rest_;
};

}  // namespace docflow::fuzz
