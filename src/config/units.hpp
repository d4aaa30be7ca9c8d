#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace docflow::config {

/// Parses a size written as a number and an optional unit: `512`, `64KiB`,
/// `100MiB`, `1GiB` (also KB/MB/GB as powers of 1000, and B). nullopt when
/// malformed or when it overflows 64 bits.
std::optional<std::uint64_t> parse_size(std::string_view s);

/// Parses a duration: a number and a unit among ms, s, m, h, d (`500ms`,
/// `2s`, `15m`, `7d`). nullopt when malformed, unitless or overflowing.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view s);

}  // namespace docflow::config
