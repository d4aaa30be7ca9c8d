#include "config/units.hpp"

#include <array>
#include <charconv>
#include <limits>
#include <utility>

namespace docflow::config {

namespace {

struct unit {
  std::string_view suffix;
  std::uint64_t factor;
};

// Splits "123abc" into 123 and "abc"; nullopt when there is no leading number.
std::optional<std::pair<std::uint64_t, std::string_view>> split_number(std::string_view s) {
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end == s.data()) {
    return std::nullopt;
  }
  return std::pair{n, s.substr(static_cast<std::size_t>(end - s.data()))};
}

template <std::size_t N>
std::optional<std::uint64_t> scale(std::string_view s, const std::array<unit, N>& units, bool unit_required) {
  const auto parsed = split_number(s);
  if (!parsed) {
    return std::nullopt;
  }
  const auto [n, suffix] = *parsed;
  if (suffix.empty() && !unit_required) {
    return n;
  }
  for (const auto& u : units) {
    if (suffix == u.suffix) {
      if (n > std::numeric_limits<std::uint64_t>::max() / u.factor) {
        return std::nullopt;
      }
      return n * u.factor;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view s) {
  static constexpr std::array<unit, 7> units{{{"B", 1},
                                              {"KiB", 1ULL << 10},
                                              {"MiB", 1ULL << 20},
                                              {"GiB", 1ULL << 30},
                                              {"KB", 1000},
                                              {"MB", 1000 * 1000},
                                              {"GB", 1000 * 1000 * 1000}}};
  return scale(s, units, false);
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) {
  static constexpr std::array<unit, 5> units{
      {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 24 * 3600 * 1000}}};
  const auto ms = scale(s, units, true);
  if (!ms || *ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return std::nullopt;
  }
  return std::chrono::milliseconds{static_cast<std::int64_t>(*ms)};
}

}  // namespace docflow::config
