#include "core/user.hpp"

#include <algorithm>

#include "core/encoding.hpp"

namespace docflow::core {

const char* to_string(role r) noexcept { return r == role::admin ? "admin" : "user"; }

std::optional<role> parse_role(std::string_view s) noexcept {
  if (s == "user") return role::user;
  if (s == "admin") return role::admin;
  return std::nullopt;
}

bool valid_username(std::string_view s) noexcept {
  return s.size() >= 3 && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
         });
}

bool valid_password_length(std::string_view password) noexcept {
  const auto n = utf8_length(password);
  return n >= 8 && n <= 1024;
}

std::string username_key(std::string_view username) { return ascii_lower(username); }

}  // namespace docflow::core
