#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace docflow::core {

/// An IPv4 or IPv6 address. An IPv4-mapped IPv6 address (::ffff:a.b.c.d,
/// what a dual-stack socket reports for an IPv4 peer) is the IPv4 address,
/// so that one list entry matches a peer however the socket saw it.
struct ip_address {
  bool v4 = false;
  std::array<std::uint8_t, 16> bytes{};  ///< network order; the first 4 for IPv4

  /// Dotted quad, or RFC 5952 text for IPv6 (as inet_ntop writes it).
  std::string to_string() const;
  friend bool operator==(const ip_address&, const ip_address&) = default;
};

/// An address block in CIDR notation: `prefix` leading bits of `base`.
struct ip_network {
  ip_address base;
  unsigned prefix = 0;

  bool contains(const ip_address& a) const noexcept;
};

/// A bare address, as inet_pton reads it (no brackets, port or zone);
/// nullopt for anything else.
std::optional<ip_address> parse_ip_address(std::string_view text);

/// Why a network could not be read: `message` is for the operator.
struct network_error {
  std::string message;
};

/// "10.0.0.0/8", "fd00::/8", or a single address ("127.0.0.1", "::1": all
/// its bits). Refuses a prefix longer than the address, and a base with bits
/// set past the prefix (10.0.0.1/8 is a mistake for 10.0.0.0/8 or for
/// 10.0.0.1, and the message names both).
std::optional<ip_network> parse_ip_network(std::string_view text, network_error& error);

/// Whether any of `networks` holds `a`.
bool any_contains(const std::vector<ip_network>& networks, const ip_address& a) noexcept;

}  // namespace docflow::core
