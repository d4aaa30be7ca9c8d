#include "core/webhook.hpp"

#include <algorithm>
#include <array>

#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace docflow::core {

namespace {
constexpr std::array<webhook_event, 3> events{
    webhook_event::document_uploaded, webhook_event::document_completed, webhook_event::document_failed};

struct block {
  std::array<std::uint8_t, 16> base;
  unsigned prefix;
};

bool in(const ip_address& a, const block& b) {
  return ip_network{ip_address{false, b.base}, b.prefix}.contains(a);
}

bool special_v4(const ip_address& a) {
  const auto o = a.bytes;
  const auto within = [&o](std::uint8_t first, std::uint8_t mask, std::uint8_t value) {
    return (o[0] == first) && ((o[1] & mask) == value);
  };
  return o[0] == 0                                   // 0.0.0.0/8: "this network", unspecified
         || o[0] == 10                               // 10.0.0.0/8
         || within(100, 0xC0, 64)                    // 100.64.0.0/10: shared address space (CGNAT)
         || o[0] == 127                              // loopback
         || within(169, 0xFF, 254)                   // 169.254.0.0/16: link-local (cloud metadata)
         || within(172, 0xF0, 16)                    // 172.16.0.0/12
         || (o[0] == 192 && o[1] == 0 && o[2] == 0)  // 192.0.0.0/24: protocol assignments
         || within(192, 0xFF, 168)                   // 192.168.0.0/16
         || within(198, 0xFE, 18)                    // 198.18.0.0/15: benchmarking
         || o[0] >= 224;                             // multicast, reserved, broadcast
}

ip_address v4_of(const std::uint8_t* four) {
  ip_address v4;
  v4.v4 = true;
  std::copy(four, four + 4, v4.bytes.begin());
  return v4;
}
}  // namespace

std::span<const webhook_event> all_webhook_events() noexcept { return events; }

std::string_view to_string(webhook_event e) noexcept {
  switch (e) {
    case webhook_event::document_uploaded: return "document.uploaded";
    case webhook_event::document_completed: return "document.completed";
    case webhook_event::document_failed: return "document.failed";
  }
  return "unknown";
}

std::optional<webhook_event> parse_webhook_event(std::string_view s) noexcept {
  for (const auto e : events) {
    if (to_string(e) == s) return e;
  }
  return std::nullopt;
}

std::string webhook_signature(std::string_view secret, std::int64_t unix_seconds, std::string_view body) {
  const auto t = std::to_string(unix_seconds);
  std::string signed_text;
  signed_text.reserve(t.size() + 1 + body.size());
  signed_text.append(t).append(1, '.').append(body);
  return "t=" + t + ",v1=" + hex_encode(hmac_sha256(secret, signed_text));
}

bool special_purpose_address(const ip_address& a) noexcept {
  if (a.v4) return special_v4(a);
  const auto& b = a.bytes;
  // Blocks that are special whatever follows.
  static const std::array<block, 6> blocks{{
      {{}, 96},                                          // ::/96: unspecified, loopback, IPv4-compatible
      {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96},  // IPv4-mapped, should it arrive unnormalised
      {{0xfe, 0x80}, 10},                                // link-local
      {{0xfe, 0xc0}, 10},                                // site-local (deprecated, still routed inside sites)
      {{0xfc}, 7},                                       // unique local
      {{0xff}, 8},                                       // multicast
  }};
  if (std::any_of(blocks.begin(), blocks.end(), [&a](const block& x) { return in(a, x); })) return true;
  // IPv4 carried inside IPv6 reaches that IPv4 address through a gateway.
  static const block nat64{{0, 0x64, 0xff, 0x9b}, 96};
  if (in(a, nat64)) return special_v4(v4_of(b.data() + 12));
  if (b[0] == 0x20 && b[1] == 0x02) return special_v4(v4_of(b.data() + 2));  // 6to4, 2002::/16
  return false;
}

bool webhook_address_allowed(const ip_address& a, const std::vector<ip_network>& allowed) noexcept {
  return !special_purpose_address(a) || any_contains(allowed, a);
}

}  // namespace docflow::core
