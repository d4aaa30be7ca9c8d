#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"

namespace docflow::core {

enum class role { user, admin };

const char* to_string(role r) noexcept;
std::optional<role> parse_role(std::string_view s) noexcept;

/// An account. `password_hash` is the encoded argon2id hash, never a password.
struct user {
  std::string id;
  std::string username;  ///< as registered; uniqueness ignores case
  std::string password_hash;
  core::role role = role::user;
  time_point created_at;
};

/// Usernames are 3-64 chars of [A-Za-z0-9._-].
bool valid_username(std::string_view s) noexcept;

/// Passwords are 8-1024 characters (code points, not bytes).
bool valid_password_length(std::string_view password) noexcept;

/// The key that makes usernames unique case-insensitively.
std::string username_key(std::string_view username);

}  // namespace docflow::core
