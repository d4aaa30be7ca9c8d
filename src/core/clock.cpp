#include "core/clock.hpp"

#include <array>
#include <charconv>
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

std::string format_http_date(time_point t) {
  static constexpr std::array<const char*, 7> days{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const auto secs =
      static_cast<std::time_t>(std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                days.at(static_cast<std::size_t>(tm.tm_wday)), tm.tm_mday,
                months.at(static_cast<std::size_t>(tm.tm_mon)), tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

namespace {
// Exactly `width` decimal digits at `text[pos]`, or -1.
int digits_at(std::string_view text, std::size_t pos, std::size_t width) {
  if (pos + width > text.size()) return -1;
  int value = 0;
  const auto* first = text.data() + pos;
  const auto [end, ec] = std::from_chars(first, first + width, value);
  return ec == std::errc{} && end == first + width && value >= 0 ? value : -1;
}
}  // namespace

std::optional<time_point> parse_rfc3339_utc(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS
  constexpr std::size_t seconds_end = 19;
  if (text.size() < seconds_end + 1 || text[4] != '-' || text[7] != '-' || text[10] != 'T' ||
      text[13] != ':' || text[16] != ':' || text.back() != 'Z') {
    return std::nullopt;
  }
  const int year = digits_at(text, 0, 4);
  const int month = digits_at(text, 5, 2);
  const int day = digits_at(text, 8, 2);
  const int hour = digits_at(text, 11, 2);
  const int minute = digits_at(text, 14, 2);
  const int second = digits_at(text, 17, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 ||
      second > 59) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year{year},
                                         std::chrono::month{static_cast<unsigned>(month)},
                                         std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok()) return std::nullopt;
  std::chrono::microseconds fraction{0};
  const auto rest = text.substr(seconds_end, text.size() - seconds_end - 1);
  if (!rest.empty()) {
    if (rest.size() < 2 || rest[0] != '.') return std::nullopt;
    std::int64_t scale = 100000;
    for (const char c : rest.substr(1)) {
      if (c < '0' || c > '9') return std::nullopt;
      fraction += std::chrono::microseconds{(c - '0') * scale};
      scale /= 10;
    }
  }
  return time_point{std::chrono::sys_days{date}} + std::chrono::hours{hour} + std::chrono::minutes{minute} +
         std::chrono::seconds{second} + fraction;
}

}  // namespace docflow::core
