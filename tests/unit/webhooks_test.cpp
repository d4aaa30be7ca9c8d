// Webhooks without a network: the signature, the address classifier behind
// the SSRF guard, URL checks and the event body. The store's side is in
// store_contract_test.cpp; sending, end to end, in
// tests/integration/test_webhooks.py.
#include <gtest/gtest.h>

#include <string>

#include <boost/json/parse.hpp>

#include "core/clock.hpp"
#include "core/webhook.hpp"
#include "store/database.hpp"
#include "webhooks/event_body.hpp"
#include "webhooks/target.hpp"

using namespace docflow;

namespace {

core::ip_address ip(std::string_view text) {
  const auto a = core::parse_ip_address(text);
  EXPECT_TRUE(a) << text;
  return a.value_or(core::ip_address{});
}

std::vector<core::ip_network> networks(std::initializer_list<std::string_view> texts) {
  std::vector<core::ip_network> out;
  for (const auto t : texts) {
    core::network_error e;
    out.push_back(core::parse_ip_network(t, e).value());
  }
  return out;
}

}  // namespace

TEST(webhook_signature, matches_a_vector_computed_elsewhere) {
  // python3: hmac.new(b'whsec_test', b'1700000000.{"a":1}', hashlib.sha256).hexdigest(),
  // and the same from `openssl dgst -sha256 -hmac whsec_test`.
  EXPECT_EQ(core::webhook_signature("whsec_test", 1700000000, R"({"a":1})"),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
}

TEST(webhook_signature, changes_with_the_time_the_body_and_the_secret) {
  const auto base = core::webhook_signature("whsec_a", 1, "{}");
  EXPECT_NE(base, core::webhook_signature("whsec_a", 2, "{}"));
  EXPECT_NE(base, core::webhook_signature("whsec_a", 1, "{ }"));
  EXPECT_NE(base, core::webhook_signature("whsec_b", 1, "{}"));
}

TEST(webhook_events, names_round_trip) {
  for (const auto e : core::all_webhook_events()) EXPECT_EQ(core::parse_webhook_event(core::to_string(e)), e);
  EXPECT_FALSE(core::parse_webhook_event("document.deleted"));
  EXPECT_FALSE(core::parse_webhook_event("DOCUMENT.UPLOADED"));
}

TEST(webhook_addresses, special_purpose_ranges_are_refused) {
  for (const auto* text :
       {"0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.255.255", "172.16.0.1",
        "172.31.255.255", "192.168.0.1", "192.168.255.255", "169.254.169.254", "100.64.0.1",
        "100.127.255.255", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.8",
        "198.18.0.1",
        // IPv6
        "::", "::1", "fe80::1", "febf:ffff::1", "fc00::1", "fd12:3456::1", "ff02::1", "ff05::2", "fec0::1",
        // IPv4-mapped (normalised to IPv4) and IPv4 inside IPv6
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.168.1.1", "::127.0.0.1",
        "64:ff9b::10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "2002:c0a8:101::1"}) {
    EXPECT_TRUE(core::special_purpose_address(ip(text))) << text;
    EXPECT_FALSE(core::webhook_address_allowed(ip(text), {})) << text;
  }
}

TEST(webhook_addresses, public_addresses_are_allowed) {
  for (const auto* text :
       {"8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "172.15.255.255", "100.63.255.255",
        "100.128.0.1", "169.253.0.1", "192.169.0.1", "11.0.0.1", "223.255.255.255", "2606:4700:4700::1111",
        "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"}) {
    EXPECT_FALSE(core::special_purpose_address(ip(text))) << text;
    EXPECT_TRUE(core::webhook_address_allowed(ip(text), {})) << text;
  }
}

TEST(webhook_addresses, the_allow_list_overrides_the_refusal) {
  const auto allowed = networks({"127.0.0.1/32", "10.1.0.0/16", "fd00::/8"});
  EXPECT_TRUE(core::webhook_address_allowed(ip("127.0.0.1"), allowed));
  EXPECT_TRUE(core::webhook_address_allowed(ip("::ffff:127.0.0.1"), allowed));
  EXPECT_FALSE(core::webhook_address_allowed(ip("127.0.0.2"), allowed));
  EXPECT_TRUE(core::webhook_address_allowed(ip("10.1.200.3"), allowed));
  EXPECT_FALSE(core::webhook_address_allowed(ip("10.2.0.1"), allowed));
  EXPECT_TRUE(core::webhook_address_allowed(ip("fd00::5"), allowed));
  EXPECT_FALSE(core::webhook_address_allowed(ip("fc00::5"), allowed));
  EXPECT_FALSE(core::webhook_address_allowed(ip("::1"), allowed));
}

TEST(webhook_targets, good_urls_parse) {
  std::string why;
  auto t = webhooks::parse_target("https://hooks.example.com/docflow?token=x", why);
  ASSERT_TRUE(t) << why;
  EXPECT_TRUE(t->https);
  EXPECT_EQ(t->host, "hooks.example.com");
  EXPECT_EQ(t->port, 443);
  t = webhooks::parse_target("http://Example.COM:8080/", why);
  ASSERT_TRUE(t) << why;
  EXPECT_EQ(t->host, "example.com");
  EXPECT_EQ(t->port, 8080);
  t = webhooks::parse_target("HTTP://127.0.0.1:9/x", why);
  ASSERT_TRUE(t) << why;
  EXPECT_EQ(t->host, "127.0.0.1");
  t = webhooks::parse_target("http://[::1]:8000/hook", why);
  ASSERT_TRUE(t) << why;
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, 8000);
}

TEST(webhook_targets, bad_urls_are_refused_with_a_reason) {
  for (const auto* url :
       {"", "example.com/hook", "/relative", "ftp://example.com/", "file:///etc/passwd",
        "javascript:alert(1)", "https://user:pass@example.com/", "https://user@example.com/", "https:///path",
        "https://example.com/#frag", "http://exa mple.com/", "http://example.com:0/",
        "https://%65xample.com/", "gopher://example.com/"}) {
    std::string why;
    EXPECT_FALSE(webhooks::parse_target(url, why)) << url;
    EXPECT_FALSE(why.empty()) << url;
  }
  std::string why;
  const std::string longest = "https://example.com/" + std::string(webhooks::max_url_length - 20, 'a');
  EXPECT_TRUE(webhooks::parse_target(longest, why)) << why;
  EXPECT_FALSE(webhooks::parse_target(longest + "a", why));
}

TEST(webhook_targets, literal_addresses_resolve_to_themselves) {
  std::string why;
  const auto loopback = webhooks::parse_target("http://127.0.0.1:9/", why);
  ASSERT_TRUE(loopback);
  auto r = webhooks::resolve(*loopback, {});
  EXPECT_TRUE(r.resolved());
  EXPECT_TRUE(r.allowed.empty());
  ASSERT_EQ(r.refused.size(), 1U);
  r = webhooks::resolve(*loopback, networks({"127.0.0.1/32"}));
  EXPECT_EQ(r.allowed.size(), 1U);
  const auto mapped = webhooks::parse_target("http://[::ffff:10.0.0.1]/", why);
  ASSERT_TRUE(mapped);
  EXPECT_TRUE(webhooks::resolve(*mapped, {}).allowed.empty());
  const auto nowhere = webhooks::parse_target("http://no-such-host.invalid/", why);
  ASSERT_TRUE(nowhere);
  EXPECT_FALSE(webhooks::resolve(*nowhere, {}).resolved());
}

TEST(webhook_body, carries_the_event_and_no_content) {
  store::webhook_event_record e;
  e.id = "0193aaaa-0000-7000-8000-000000000001";
  e.type = core::webhook_event::document_failed;
  e.document_id = "0193aaaa-0000-7000-8000-000000000002";
  e.status = core::status::failed;
  e.error = core::failure{core::errc::unreadable_document, "The document cannot be read.", false};
  e.created_at = core::time_point{std::chrono::milliseconds{1'800'000'000'123}};
  const auto body = webhooks::event_body(e);
  EXPECT_EQ(body, webhooks::event_body(e)) << "the same bytes on every attempt";
  const auto v = boost::json::parse(body).as_object();
  EXPECT_EQ(v.at("id").as_string(), e.id);
  EXPECT_EQ(v.at("type").as_string(), "document.failed");
  EXPECT_EQ(v.at("created_at").as_string(), core::format_rfc3339(e.created_at));
  const auto& data = v.at("data").as_object();
  EXPECT_EQ(data.at("document_id").as_string(), e.document_id);
  EXPECT_EQ(data.at("status").as_string(), "FAILED");
  EXPECT_EQ(data.at("error").at("code").as_string(), "unreadable_document");
  EXPECT_EQ(data.at("error").at("retryable").as_bool(), false);
  EXPECT_EQ(data.at("result_url").as_string(), "/documents/" + e.document_id + "/result");
  EXPECT_EQ(data.size(), 4U);
  e.error.reset();
  EXPECT_TRUE(boost::json::parse(webhooks::event_body(e)).at("data").at("error").is_null());
}
