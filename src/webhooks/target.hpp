#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_network.hpp"

namespace docflow::webhooks {

/// The longest URL a webhook may have.
constexpr std::size_t max_url_length = 2048;

/// Where a webhook URL points.
struct target {
  bool https = false;
  std::string host;  ///< a DNS name (lowercase) or an address without brackets
  std::uint16_t port = 0;
};

/// A webhook URL checked for what registration requires: absolute http or
/// https with a host, no userinfo, no fragment, at most max_url_length
/// bytes. nullopt with `why` (a message for the field) otherwise.
std::optional<target> parse_target(std::string_view url, std::string& why);

/// What the target's host resolved to, sorted by whether a webhook may be
/// sent there (core::webhook_address_allowed).
struct resolution {
  std::vector<core::ip_address> allowed;
  std::vector<core::ip_address> refused;
  bool resolved() const noexcept { return !allowed.empty() || !refused.empty(); }
};

/// Resolves the target's host (an address literal is itself) and checks
/// every address against `allowed_networks`. Blocks on DNS: call it from a
/// blocking thread. Nothing resolved when the name does not exist or DNS
/// fails.
resolution resolve(const target& t, const std::vector<core::ip_network>& allowed_networks);

}  // namespace docflow::webhooks
