#pragma once

#include <chrono>
#include <optional>

#include "core/clock.hpp"

namespace docflow::core {

/// What the database knows about a presented refresh token.
struct refresh_token_state {
  time_point expires_at;
  std::optional<time_point> used_at;  ///< when it was rotated, if it was
  bool family_revoked = false;
};

enum class rotation_decision {
  rotate,          ///< valid: issue a successor
  reuse_detected,  ///< already rotated outside the grace window: revoke the family
  reject,          ///< expired or revoked: refuse without side effects
};

/// The rotation rule: a token works once; presenting it again within `grace`
/// of its rotation still works (two tabs refreshing at once); later it is
/// reuse, which revokes every token of that login.
rotation_decision decide_rotation(const refresh_token_state& token, time_point now,
                                  std::chrono::milliseconds grace);

}  // namespace docflow::core
