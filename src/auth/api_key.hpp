#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace docflow::auth {

/// A new API key: "dfk_" and 256 random bits, base64url (47 characters).
std::string new_api_key();

/// Whether `token` has an API key's form: an access token (a JWT, with
/// dots) or a refresh token never does.
bool looks_like_api_key(std::string_view token) noexcept;

/// What a key's owner sees of it in lists: "dfk_" and its next 8
/// characters (48 random bits, too few to guess the rest by).
std::string api_key_prefix(std::string_view key);

/// What the database stores instead of a key: HMAC-SHA256 under a key
/// derived from the server's signing secret, hex. A fast hash is right for
/// 256 random bits, which no one can guess (argon2id is for passwords);
/// the secret makes a row written by someone who can write the database
/// but does not hold the secret useless. `previous` is the signing secret
/// being rotated out: a key stored under it still matches until it is
/// stored again under the current one.
class api_key_hasher {
public:
  explicit api_key_hasher(std::string_view secret, std::optional<std::string_view> previous = std::nullopt);

  std::string hash(std::string_view key) const;
  /// Under the previous secret, while one is set.
  std::optional<std::string> previous_hash(std::string_view key) const;

private:
  std::string key_;
  std::optional<std::string> previous_key_;
};

}  // namespace docflow::auth
