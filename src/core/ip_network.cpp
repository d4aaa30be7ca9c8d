#include "core/ip_network.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace docflow::core {

namespace {
constexpr std::array<std::uint8_t, 12> v4_mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

unsigned width(const ip_address& a) { return a.v4 ? 32 : 128; }

// Whether the first `bits` bits of `a` and `b` agree.
bool same_prefix(const ip_address& a, const ip_address& b, unsigned bits) {
  const unsigned whole = bits / 8;
  if (!std::equal(a.bytes.begin(), a.bytes.begin() + whole, b.bytes.begin())) return false;
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (a.bytes[whole] & mask) == (b.bytes[whole] & mask);
}

// `a` with every bit past `bits` cleared.
ip_address masked(ip_address a, unsigned bits) {
  for (unsigned i = 0; i < a.bytes.size(); ++i) {
    const unsigned from = i * 8;
    if (from >= bits) {
      a.bytes[i] = 0;
    } else if (bits - from < 8) {
      a.bytes[i] &= static_cast<std::uint8_t>(0xFF << (8 - (bits - from)));
    }
  }
  return a;
}
}  // namespace

std::string ip_address::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), text, sizeof text);
  return text;
}

bool ip_network::contains(const ip_address& a) const noexcept {
  return a.v4 == base.v4 && same_prefix(a, base, prefix);
}

std::optional<ip_address> parse_ip_address(std::string_view text) {
  // inet_pton wants a terminated string; longer text is no address anyway.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buffer[INET6_ADDRSTRLEN] = {};
  std::memcpy(buffer, text.data(), text.size());
  ip_address a;
  if (::inet_pton(AF_INET, buffer, a.bytes.data()) == 1) {
    a.v4 = true;
    return a;
  }
  if (::inet_pton(AF_INET6, buffer, a.bytes.data()) != 1) return std::nullopt;
  if (std::equal(v4_mapped_prefix.begin(), v4_mapped_prefix.end(), a.bytes.begin())) {
    std::copy(a.bytes.begin() + 12, a.bytes.end(), a.bytes.begin());
    std::fill(a.bytes.begin() + 4, a.bytes.end(), std::uint8_t{0});
    a.v4 = true;
  }
  return a;
}

std::optional<ip_network> parse_ip_network(std::string_view text, network_error& error) {
  const auto slash = text.find('/');
  const auto address_text = text.substr(0, slash);
  const auto address = parse_ip_address(address_text);
  if (!address) {
    error.message = "'" + std::string(text) + "' is not an IPv4 or IPv6 address or CIDR block";
    return std::nullopt;
  }
  ip_network n{*address, width(*address)};
  if (slash == std::string_view::npos) return n;
  const auto bits = text.substr(slash + 1);
  unsigned prefix = 0;
  const auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
  if (bits.empty() || ec != std::errc{} || end != bits.data() + bits.size() || prefix > width(*address)) {
    error.message =
        "'" + std::string(text) + "' has a prefix length that is not 0 to " + std::to_string(width(*address));
    return std::nullopt;
  }
  n.prefix = prefix;
  if (masked(n.base, prefix) != n.base) {
    error.message = "'" + std::string(text) + "' has bits set past its /" + std::string(bits) +
                    " (did you mean " + masked(n.base, prefix).to_string() + "/" + std::string(bits) +
                    ", or " + std::string(address_text) + " alone?)";
    return std::nullopt;
  }
  return n;
}

bool any_contains(const std::vector<ip_network>& networks, const ip_address& a) noexcept {
  return std::any_of(networks.begin(), networks.end(), [&a](const ip_network& n) { return n.contains(a); });
}

}  // namespace docflow::core
