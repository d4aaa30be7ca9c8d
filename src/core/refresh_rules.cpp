#include "core/refresh_rules.hpp"

namespace docflow::core {

rotation_decision decide_rotation(const refresh_token_state& token, time_point now,
                                  std::chrono::milliseconds grace) {
  if (token.family_revoked || now >= token.expires_at) {
    return rotation_decision::reject;
  }
  if (!token.used_at) {
    return rotation_decision::rotate;
  }
  // A zero grace means strictly once, even within the same millisecond.
  const bool within_grace = grace.count() > 0 && now - *token.used_at <= grace;
  return within_grace ? rotation_decision::rotate : rotation_decision::reuse_detected;
}

}  // namespace docflow::core
