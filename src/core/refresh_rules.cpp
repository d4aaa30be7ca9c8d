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
  return now - *token.used_at <= grace ? rotation_decision::rotate : rotation_decision::reuse_detected;
}

}  // namespace docflow::core
