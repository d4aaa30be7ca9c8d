#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/clock.hpp"

namespace docflow::api {

/// Keyset cursors for GET /documents: opaque to clients and tamper-evident
/// (an HMAC over the position), so a forged or edited cursor is a 400.
class cursor_codec {
public:
  /// Derives its own key from `secret` (the server's signing secret); a
  /// cursor made under `previous_secret` (before a rotation) still decodes.
  explicit cursor_codec(std::string_view secret,
                        const std::optional<std::string>& previous_secret = std::nullopt);

  std::string encode(core::time_point created_at, std::string_view id) const;

  /// The position, or nullopt for anything this codec did not produce.
  std::optional<std::pair<core::time_point, std::string>> decode(std::string_view cursor) const;

private:
  std::string key_;
  std::optional<std::string> previous_key_;
};

}  // namespace docflow::api
