#include "core/clock.hpp"

#include <cstdio>
#include <ctime>

namespace docflow::core {

namespace {
class wall_clock final : public clock {
public:
  time_point now() const override { return std::chrono::system_clock::now(); }
};
}  // namespace

const clock& system_clock() {
  static const wall_clock instance;
  return instance;
}

std::int64_t to_unix_ms(time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::optional<time_point> from_unix_ms(std::int64_t ms) noexcept {
  constexpr auto limit =
      std::chrono::duration_cast<std::chrono::milliseconds>(time_point::duration::max()).count();
  if (ms > limit || ms < -limit) return std::nullopt;
  return time_point(std::chrono::milliseconds(ms));
}

std::string format_rfc3339(time_point t) {
  // floor, not duration_cast: before 1970 the latter rounds toward zero.
  const auto ms_total = std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(ms_total / 1000);
  auto ms = static_cast<int>(ms_total % 1000);
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];  // roomy enough for any int fields, so no truncation is possible
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

}  // namespace docflow::core
