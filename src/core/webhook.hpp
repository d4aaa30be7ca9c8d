#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_network.hpp"

namespace docflow::core {

/// What a webhook may subscribe to; the values are bits of a subscription
/// mask, as the database stores it.
enum class webhook_event : unsigned {
  document_uploaded = 1,
  document_completed = 2,
  document_failed = 4,
};

/// Every type, in the order of their bits.
std::span<const webhook_event> all_webhook_events() noexcept;

/// "document.uploaded", "document.completed", "document.failed".
std::string_view to_string(webhook_event e) noexcept;
std::optional<webhook_event> parse_webhook_event(std::string_view s) noexcept;

constexpr unsigned bit(webhook_event e) noexcept { return static_cast<unsigned>(e); }

/// The value of a `Docflow-Signature` header: `t=<unix_seconds>,v1=<hex
/// HMAC-SHA256(secret, "<unix_seconds>.<body>")>`, keyed with the bytes of
/// the secret as the user was shown it.
std::string webhook_signature(std::string_view secret, std::int64_t unix_seconds, std::string_view body);

/// Whether `a` is an address a webhook must not reach on its own say-so:
/// unspecified, loopback, link-local, private (RFC 1918, unique local
/// fc00::/7), shared (CGNAT 100.64.0.0/10), multicast, reserved or
/// broadcast, IPv4 written inside IPv6 (IPv4-compatible, NAT64 64:ff9b::/96,
/// 6to4 2002::/16) when the IPv4 address is one of those.
bool special_purpose_address(const ip_address& a) noexcept;

/// Whether a webhook may be sent to `a`: not special_purpose_address, or
/// inside one of `allowed` (DOCFLOW_WEBHOOK_ALLOWED_NETWORKS).
bool webhook_address_allowed(const ip_address& a, const std::vector<ip_network>& allowed) noexcept;

}  // namespace docflow::core
