#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"

namespace docflow::auth {

/// The claims of an access token (RFC 9068 style).
struct access_claims {
  std::string issuer;           ///< iss
  std::string subject;          ///< sub: the user id
  std::string role;             ///< role: "user" or "admin"
  std::string jti;              ///< jti: unique per token
  std::int64_t issued_at = 0;   ///< iat, seconds since the epoch
  std::int64_t expires_at = 0;  ///< exp, seconds since the epoch
};

/// Why a token was refused. Only for logs and the RFC 6750 error_description;
/// every one of them is a 401.
enum class token_error {
  none,
  oversized,
  malformed,
  wrong_type,
  unsupported_algorithm,
  bad_signature,
  missing_claim,
  wrong_issuer,
  expired,
  not_yet_valid,
};

const char* describe(token_error e) noexcept;

struct verify_result {
  std::optional<access_claims> claims;
  token_error error = token_error::none;
};

/// Signs and verifies access tokens with HS256, the one algorithm the server
/// accepts: the header's `alg` is checked against it, never trusted.
class jwt_codec {
public:
  static constexpr std::size_t max_token_bytes = 4096;

  /// `key` is the HMAC key (at least 32 bytes) that signs and verifies;
  /// `previous_key`, during a rotation, still verifies the tokens it
  /// signed until they expire. `leeway` absorbs clock skew.
  jwt_codec(std::string key, std::string issuer, std::optional<std::string> previous_key = std::nullopt,
            std::chrono::seconds leeway = std::chrono::seconds{10});

  /// A token for `subject` with `role`, valid from `now` for `ttl`.
  std::string issue(std::string_view subject, std::string_view role, core::time_point now,
                    std::chrono::seconds ttl) const;

  /// Checks size, structure, typ, alg, signature, required claims, issuer and
  /// time. Never throws.
  verify_result verify(std::string_view token, core::time_point now) const;

  const std::string& issuer() const noexcept { return issuer_; }

private:
  std::string key_;
  std::optional<std::string> previous_key_;
  std::string issuer_;
  std::chrono::seconds leeway_;
};

}  // namespace docflow::auth
