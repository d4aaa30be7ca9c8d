#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/ip_network.hpp"
#include "http/forwarded.hpp"
#include "http/message.hpp"

using namespace docflow;

namespace {

std::vector<core::ip_network> networks(const std::vector<std::string>& texts) {
  std::vector<core::ip_network> out;
  for (const auto& t : texts) {
    core::network_error error;
    const auto n = core::parse_ip_network(t, error);
    EXPECT_TRUE(n.has_value()) << t << ": " << error.message;
    if (n) out.push_back(*n);
  }
  return out;
}

http::headers fields(const std::vector<std::pair<std::string, std::string>>& list) {
  http::headers h;
  for (const auto& [name, value] : list) h.add(name, value);
  return h;
}

const auto local_proxy = networks({"127.0.0.1", "::1"});

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// Addresses and blocks

TEST(ip_network, reads_both_families_and_folds_ipv4_mapped_addresses) {
  const auto v4 = core::parse_ip_address("192.0.2.7");
  ASSERT_TRUE(v4);
  EXPECT_TRUE(v4->v4);
  EXPECT_EQ(v4->to_string(), "192.0.2.7");
  const auto mapped = core::parse_ip_address("::ffff:192.0.2.7");
  ASSERT_TRUE(mapped);
  EXPECT_EQ(*mapped, *v4);
  const auto v6 = core::parse_ip_address("2001:DB8:0:0::1");
  ASSERT_TRUE(v6);
  EXPECT_FALSE(v6->v4);
  EXPECT_EQ(v6->to_string(), "2001:db8::1");
  for (const char* bad :
       {"", "localhost", "1.2.3", "1.2.3.4:80", "[::1]", "::1%lo", " 1.2.3.4", "1.2.3.4/32"}) {
    EXPECT_FALSE(core::parse_ip_address(bad)) << bad;
  }
}

TEST(ip_network, blocks_hold_what_their_prefix_covers_and_nothing_of_the_other_family) {
  const auto n = networks({"10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0", "172.16.0.0/12"});
  ASSERT_EQ(n.size(), 4U);
  const auto ip = [](const char* t) { return *core::parse_ip_address(t); };
  EXPECT_TRUE(n[0].contains(ip("10.200.3.4")));
  EXPECT_FALSE(n[0].contains(ip("11.0.0.1")));
  EXPECT_TRUE(n[1].contains(ip("2001:db8:ffff::1")));
  EXPECT_FALSE(n[1].contains(ip("2001:db9::1")));
  EXPECT_TRUE(n[2].contains(ip("203.0.113.9")));
  EXPECT_FALSE(n[2].contains(ip("::1")));  // 0.0.0.0/0 is every IPv4 address, no IPv6 one
  EXPECT_TRUE(n[3].contains(ip("172.31.255.255")));
  EXPECT_FALSE(n[3].contains(ip("172.32.0.0")));
  EXPECT_TRUE(n[0].contains(ip("::ffff:10.1.1.1")));  // a dual-stack socket's view of an IPv4 peer
}

// -----------------------------------------------------------------------------------------------------------
// Who the client is

TEST(forwarded_client, a_direct_client_is_the_peer_whatever_it_claims) {
  // Spoofed headers from a peer that is not a trusted proxy change nothing.
  const auto h = fields({{"X-Forwarded-For", "198.51.100.1"}, {"X-Forwarded-Proto", "https"}});
  const auto o = http::forwarded_client("203.0.113.9", h, local_proxy);
  EXPECT_EQ(o.address, "203.0.113.9");
  EXPECT_EQ(o.scheme, "http");
  // Nor with no proxy configured at all, even from 127.0.0.1.
  EXPECT_EQ(http::forwarded_client("127.0.0.1", h, {}).address, "127.0.0.1");
  EXPECT_EQ(http::forwarded_client("127.0.0.1", h, {}).scheme, "http");
}

TEST(forwarded_client, a_trusted_proxy_names_the_client_and_its_scheme) {
  const auto o = http::forwarded_client(
      "127.0.0.1", fields({{"X-Forwarded-For", "198.51.100.1"}, {"X-Forwarded-Proto", "HTTPS"}}),
      local_proxy);
  EXPECT_EQ(o.address, "198.51.100.1");
  EXPECT_EQ(o.scheme, "https");
  // Without the headers the proxy itself is the client.
  EXPECT_EQ(http::forwarded_client("127.0.0.1", {}, local_proxy).address, "127.0.0.1");
}

TEST(forwarded_client, what_the_client_wrote_before_the_proxy_is_not_believed) {
  // The client sent "X-Forwarded-For: 1.1.1.1"; nginx appended its peer.
  const auto o = http::forwarded_client("127.0.0.1", fields({{"X-Forwarded-For", "1.1.1.1, 198.51.100.1"}}),
                                        local_proxy);
  EXPECT_EQ(o.address, "198.51.100.1");
}

TEST(forwarded_client, a_chain_of_two_trusted_proxies_is_walked_through) {
  // client 198.51.100.1 -> edge proxy 10.0.0.5 -> local nginx -> docflow
  const auto trusted = networks({"127.0.0.1", "10.0.0.0/8"});
  const auto o = http::forwarded_client(
      "127.0.0.1", fields({{"X-Forwarded-For", "6.6.6.6, 198.51.100.1, 10.0.0.5"}}), trusted);
  EXPECT_EQ(o.address, "198.51.100.1");
  // The same chain, the hops in separate header lines, is read as one list.
  const auto split = http::forwarded_client(
      "127.0.0.1", fields({{"X-Forwarded-For", "6.6.6.6, 198.51.100.1"}, {"x-forwarded-for", "10.0.0.5"}}),
      trusted);
  EXPECT_EQ(split.address, "198.51.100.1");
  // Only the first proxy trusted: the second hop is taken for the client.
  EXPECT_EQ(http::forwarded_client("127.0.0.1", fields({{"X-Forwarded-For", "198.51.100.1, 10.0.0.5"}}),
                                   local_proxy)
                .address,
            "10.0.0.5");
}

TEST(forwarded_client, when_every_hop_is_trusted_the_leftmost_is_the_client) {
  const auto trusted = networks({"127.0.0.1", "10.0.0.0/8"});
  EXPECT_EQ(http::forwarded_client("127.0.0.1", fields({{"X-Forwarded-For", "10.1.1.1, 10.0.0.5"}}), trusted)
                .address,
            "10.1.1.1");
}

TEST(forwarded_client, ipv6_peers_and_clients) {
  const auto o =
      http::forwarded_client("::1", fields({{"X-Forwarded-For", "2001:db8::7"}}), networks({"::1"}));
  EXPECT_EQ(o.address, "2001:db8::7");
  // An IPv4 proxy reached over a dual-stack socket is still the trusted 127.0.0.1.
  EXPECT_EQ(
      http::forwarded_client("::ffff:127.0.0.1", fields({{"X-Forwarded-For", "2001:DB8::8"}}), local_proxy)
          .address,
      "2001:db8::8");
}

TEST(forwarded_client, garbage_stops_the_walk_at_the_last_address_read) {
  const auto trusted = networks({"127.0.0.1", "10.0.0.0/8"});
  // Garbage at the right: the peer.
  for (const char* list : {"198.51.100.1, garbage", "198.51.100.1, unknown", "198.51.100.1, 1.2.3.4:5678",
                           "198.51.100.1,", "", " , "}) {
    EXPECT_EQ(http::forwarded_client("127.0.0.1", fields({{"X-Forwarded-For", list}}), trusted).address,
              "127.0.0.1")
        << list;
  }
  // Garbage behind a trusted hop: that hop, never what lies left of the garbage.
  EXPECT_EQ(http::forwarded_client("127.0.0.1", fields({{"X-Forwarded-For", "198.51.100.1, junk, 10.0.0.5"}}),
                                   trusted)
                .address,
            "10.0.0.5");
  // Garbage left of the client does not matter: the walk has stopped there.
  EXPECT_EQ(http::forwarded_client("127.0.0.1", fields({{"X-Forwarded-For", "junk, 198.51.100.1"}}), trusted)
                .address,
            "198.51.100.1");
}

TEST(forwarded_client, only_http_and_https_are_schemes) {
  for (const char* proto : {"ftp", "https, http", "", "wss", "http"}) {
    EXPECT_EQ(http::forwarded_client("127.0.0.1", fields({{"X-Forwarded-Proto", proto}}), local_proxy).scheme,
              "http")
        << proto;
  }
  EXPECT_EQ(
      http::forwarded_client("127.0.0.1", fields({{"X-Forwarded-Proto", " https "}}), local_proxy).scheme,
      "https");
}
