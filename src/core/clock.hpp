#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace docflow::core {

using time_point = std::chrono::system_clock::time_point;

/// Where "now" comes from. Production uses system_clock(); tests of leases,
/// expiry and throttling inject a manual clock.
class clock {
public:
  virtual ~clock() = default;
  virtual time_point now() const = 0;
};

/// The process-wide wall clock.
const clock& system_clock();

/// The time `ms` milliseconds after the Unix epoch, or nullopt when a
/// time_point cannot hold it (it counts nanoseconds: about ±292 years).
/// For milliseconds that arrive from outside, where converting blindly
/// would overflow.
std::optional<time_point> from_unix_ms(std::int64_t ms) noexcept;

/// Whole milliseconds since the Unix epoch (truncated), as stored and sent.
std::int64_t to_unix_ms(time_point t) noexcept;

/// RFC 3339 UTC with milliseconds: 2026-11-29T01:02:03.456Z.
std::string format_rfc3339(time_point t);

/// An HTTP date (RFC 9110 §5.6.7 IMF-fixdate): Sun, 06 Nov 1994 08:49:37 GMT.
std::string format_http_date(time_point t);

/// The UTC form of RFC 3339 that format_rfc3339 writes and S3 answers with
/// (`2026-11-29T01:02:03Z`, any number of fraction digits, kept to the
/// microsecond); nullopt for anything else, offsets other than `Z` included.
std::optional<time_point> parse_rfc3339_utc(std::string_view text);

}  // namespace docflow::core
