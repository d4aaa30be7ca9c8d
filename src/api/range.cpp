#include "api/range.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>

namespace docflow::api {

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_range(std::string_view h, std::uint64_t size) {
  constexpr std::string_view unit = "bytes=";
  if (h.substr(0, unit.size()) != unit || h.find(',') != std::string_view::npos) return std::nullopt;
  h.remove_prefix(unit.size());
  const auto dash = h.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const auto number = [](std::string_view t) -> std::optional<std::uint64_t> {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc{} || end != t.data() + t.size()) return std::nullopt;
    return v;
  };
  const auto first = h.substr(0, dash);
  const auto last = h.substr(dash + 1);
  if (first.empty()) {  // suffix: the last N bytes
    const auto n = number(last);
    if (!n) return std::nullopt;
    if (*n == 0 || size == 0) return std::pair<std::uint64_t, std::uint64_t>{1, 0};
    return std::pair{size - std::min(*n, size), size - 1};
  }
  const auto a = number(first);
  const auto b = last.empty() ? std::optional<std::uint64_t>(UINT64_MAX) : number(last);
  if (!a || !b || *b < *a) return std::nullopt;  // invalid syntax: ignored
  if (*a >= size) return std::pair<std::uint64_t, std::uint64_t>{1, 0};
  return std::pair{*a, std::min(*b, size - 1)};
}

}  // namespace docflow::api
