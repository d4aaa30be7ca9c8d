#pragma once

#include <cstdint>
#include <optional>

namespace docflow::core {

/// What a user stores.
struct usage {
  std::uint64_t bytes = 0;      ///< the sum of their documents' sizes
  std::uint64_t documents = 0;  ///< how many documents they have
};

/// Limits on a user's usage; none where there is no limit.
struct quota_limits {
  std::optional<std::uint64_t> bytes;
  std::optional<std::uint64_t> documents;
};

/// One limit as a user's account sets it, over the server's default.
struct limit_setting {
  bool inherit = true;                 ///< the server's default applies
  std::optional<std::uint64_t> value;  ///< otherwise this limit, or none at all
};

/// A user's usage with the limits that apply to them.
struct quota_state {
  core::usage usage;
  quota_limits limits;
};

/// The limit `own` makes of `fallback`.
inline std::optional<std::uint64_t> apply(const limit_setting& own, std::optional<std::uint64_t> fallback) {
  return own.inherit ? fallback : own.value;
}

/// Whether one more document of `bytes` stays within `q`'s limits.
inline bool fits(const quota_state& q, std::uint64_t bytes) {
  return (!q.limits.documents || q.usage.documents + 1 <= *q.limits.documents) &&
         (!q.limits.bytes || q.usage.bytes + bytes <= *q.limits.bytes);
}

}  // namespace docflow::core
