// libFuzzer target for the access-token verifier (src/auth/jwt.cpp), which
// every authenticated request runs on the bearer token it carries.
//
// Input: a mode byte, a 4-byte clock offset (the verifier's "now" is within
// about 68 years of 2023-11-14), then:
// - mode 0: the token as sent, verbatim;
// - mode 1: a header and a payload separated by '\n', signed here with the
//   verifier's key, so the claims checks behind the signature are reached;
// - mode 2: a subject and a role separated by '\n' and a lifetime, issued
//   by the codec itself.
// Checks, besides no crash, no sanitizer report and no exception (verify
// never throws):
// - claims come exactly with error none, and oversized tokens say so;
// - every base64url segment that decodes re-encodes to itself;
// - a verified token's claims hold: our issuer, a subject, a jti, role user
//   or admin, not expired and not issued in the future (with the leeway);
// - a verified token's claims re-encode: the same claims, signed again,
//   verify to the same claims; with one signature byte changed they do not;
// - a token the codec issues for a UTF-8 subject and a known role verifies
//   to that subject and role until it expires, and not after.
// See tests/fuzz/README.md.
// fuzz-link: docflow_auth docflow_core Boost::json
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "auth/jwt.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "fuzz_input.hpp"

namespace {

using docflow::auth::token_error;
using docflow::fuzz::check;

const std::string key = "fuzz-key-fuzz-key-fuzz-key-fuzz-key-0123";
const std::string issuer = "https://docflow.test";
constexpr std::chrono::seconds leeway{10};
constexpr std::int64_t base_time = 1'700'000'000;

const docflow::auth::jwt_codec& codec() {
  static const docflow::auth::jwt_codec c(key, issuer, std::nullopt, leeway);
  return c;
}

std::string sign(std::string_view header, std::string_view payload) {
  std::string token =
      docflow::core::base64url_encode(header) + '.' + docflow::core::base64url_encode(payload);
  const auto signature = docflow::core::base64url_encode(docflow::core::hmac_sha256(key, token));
  return token + '.' + signature;
}

void check_segments(std::string_view token) {
  while (!token.empty()) {
    const auto dot = token.find('.');
    const auto segment = token.substr(0, dot);
    if (const auto bytes = docflow::core::base64url_decode(segment)) {
      check(docflow::core::base64url_encode(*bytes) == segment, "a base64url segment has two spellings");
    }
    if (dot == std::string_view::npos) break;
    token.remove_prefix(dot + 1);
  }
}

bool same(const docflow::auth::access_claims& a, const docflow::auth::access_claims& b) {
  return a.issuer == b.issuer && a.subject == b.subject && a.role == b.role && a.jti == b.jti &&
         a.issued_at == b.issued_at && a.expires_at == b.expires_at;
}

void check_verified(const docflow::auth::access_claims& c, std::int64_t now) {
  check(c.issuer == issuer, "verified a token from another issuer");
  check(!c.subject.empty() && !c.jti.empty(), "verified a token without a subject or jti");
  check(c.role == "user" || c.role == "admin", "verified a token with an unknown role");
  check(c.expires_at > now - leeway.count(), "verified an expired token");
  check(c.issued_at <= now + leeway.count(), "verified a token issued in the future");

  // Re-encode the claims, sign them again: the same claims come back.
  const boost::json::object payload{{"iss", c.issuer},     {"sub", c.subject}, {"iat", c.issued_at},
                                    {"exp", c.expires_at}, {"jti", c.jti},     {"role", c.role}};
  const auto token = sign(R"({"alg":"HS256","typ":"at+jwt"})", boost::json::serialize(payload));
  const auto when = docflow::core::time_point(std::chrono::seconds(now));
  const auto again = codec().verify(token, when);
  check(again.claims && same(*again.claims, c), "re-encoded claims did not verify to the same claims");

  // One signature byte changed: refused.
  const auto dot = token.rfind('.');
  auto signature = *docflow::core::base64url_decode(std::string_view(token).substr(dot + 1));
  signature[signature.size() / 2] = static_cast<char>(signature[signature.size() / 2] ^ 0x01);
  const auto forged = token.substr(0, dot + 1) + docflow::core::base64url_encode(signature);
  check(codec().verify(forged, when).error == token_error::bad_signature, "a changed signature was accepted");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  docflow::fuzz::input in(data, size);
  const auto mode = in.byte() % 3;
  const auto offset = static_cast<std::int32_t>(in.u32());
  const std::int64_t now = base_time + offset;
  const auto when = docflow::core::time_point(std::chrono::seconds(now));

  std::string token;
  if (mode == 0) {
    token = std::string(in.rest());
  } else if (mode == 1) {
    const auto header = in.until('\n');
    token = sign(header, in.rest());
  } else {
    const auto ttl = std::chrono::seconds(in.byte() * 3600 + in.byte());
    const auto subject = in.until('\n');
    const auto role = in.rest();
    token = codec().issue(subject, role, when, ttl);
    const auto r = codec().verify(token, when);
    if (!subject.empty() && docflow::fuzz::valid_utf8(subject) && docflow::fuzz::valid_utf8(role) &&
        (role == "user" || role == "admin")) {
      check(r.claims && r.claims->subject == subject && r.claims->role == role,
            "an issued token did not verify to its subject and role");
      const auto later = when + ttl + leeway;
      check(codec().verify(token, later).error == token_error::expired,
            "an issued token outlived its lifetime");
    }
  }

  const auto result = codec().verify(token, when);
  check(result.claims.has_value() == (result.error == token_error::none), "claims without validity or back");
  if (token.size() > docflow::auth::jwt_codec::max_token_bytes) {
    check(result.error == token_error::oversized, "an oversized token was not refused as such");
  } else {
    check_segments(token);
  }
  check(docflow::auth::describe(result.error) != nullptr, "no description for an error");
  if (result.claims) check_verified(*result.claims, now);
  return 0;
}
