// docflow::auth::jwt_codec: what it issues verifies, and every forgery of
// SPEC §2 is refused with the matching token_error. Tokens are built and
// signed here independently of the codec (OpenSSL HMAC + base64url), and every
// time is a fixed point: nothing here reads the wall clock.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <cstdint>
#include <ostream>
#include <set>
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "auth/jwt.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"

// Readable failure messages for token_error (found by ADL).
namespace docflow::auth {
[[maybe_unused]] static void PrintTo(token_error e, std::ostream* os) {
  *os << static_cast<int>(e) << " (" << describe(e) << ')';
}
}  // namespace docflow::auth

namespace {

using docflow::auth::jwt_codec;
using docflow::auth::token_error;
using docflow::core::base64url_encode;
using docflow::core::time_point;
using std::chrono::seconds;

const std::string key = "unit-test-secret-0123456789abcdef0123";  // 36 bytes
const std::string issuer = "docflow";
constexpr std::int64_t t0 = 1'800'000'000;  // 2027-01-15T08:00:00Z
constexpr std::int64_t leeway = 10;         // jwt_codec's default

time_point at(std::int64_t epoch_seconds) { return time_point{seconds{epoch_seconds}}; }

std::string hmac(const EVP_MD* md, std::string_view k, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, k.data(), static_cast<int>(k.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

boost::json::object standard_header() { return {{"alg", "HS256"}, {"typ", "at+jwt"}}; }

// The claims jwt_codec::issue would write, valid from t0 for 15 minutes.
boost::json::object standard_claims() {
  return {{"iss", issuer},  {"sub", "0193a2b4-0000-7000-8000-000000000001"},
          {"iat", t0},      {"exp", t0 + 900},
          {"jti", "jti-1"}, {"role", "user"}};
}

// header.payload.signature from raw JSON texts.
std::string sign_raw(std::string_view header_json, std::string_view payload_json,
                     const EVP_MD* md = EVP_sha256(), std::string_view k = key) {
  std::string input = base64url_encode(header_json) + '.' + base64url_encode(payload_json);
  const auto signature = base64url_encode(hmac(md, k, input));
  return input + '.' + signature;
}

std::string sign(const boost::json::object& header, const boost::json::object& claims,
                 const EVP_MD* md = EVP_sha256(), std::string_view k = key) {
  return sign_raw(boost::json::serialize(header), boost::json::serialize(claims), md, k);
}

std::string sign_claims(const boost::json::object& claims) { return sign(standard_header(), claims); }

class JwtTest : public ::testing::Test {
protected:
  jwt_codec codec{key, issuer};

  token_error verify_error(std::string_view token, std::int64_t now = t0) const {
    const auto r = codec.verify(token, at(now));
    EXPECT_EQ(r.claims.has_value(), r.error == token_error::none) << token;
    return r.error;
  }

  void expect_accepted(std::string_view token, std::int64_t now = t0) const {
    const auto r = codec.verify(token, at(now));
    EXPECT_EQ(r.error, token_error::none) << docflow::auth::describe(r.error) << ": " << token;
    EXPECT_TRUE(r.claims.has_value()) << token;
  }
};

boost::json::object decode_segment(std::string_view segment) {
  const auto bytes = docflow::core::base64url_decode(segment);
  EXPECT_TRUE(bytes.has_value()) << segment;
  return boost::json::parse(bytes.value_or("{}")).as_object();
}

// ---------------------------------------------------------------------------
// Issue and verify

TEST_F(JwtTest, IssueVerifyRoundTripCarriesEveryClaim) {
  const auto token = codec.issue("user-id-1", "admin", at(t0), seconds{900});
  const auto r = codec.verify(token, at(t0 + 1));
  ASSERT_EQ(r.error, token_error::none) << docflow::auth::describe(r.error);
  ASSERT_TRUE(r.claims);
  EXPECT_EQ(r.claims->issuer, "docflow");
  EXPECT_EQ(r.claims->subject, "user-id-1");
  EXPECT_EQ(r.claims->role, "admin");
  EXPECT_TRUE(docflow::core::is_uuid(r.claims->jti)) << r.claims->jti;
  EXPECT_EQ(r.claims->issued_at, t0);
  EXPECT_EQ(r.claims->expires_at, t0 + 900);
}

TEST_F(JwtTest, IssuedTokenHasAccessTokenHeaderAndAllRequiredClaims) {
  const auto token = codec.issue("user-id-1", "user", at(t0), seconds{60});
  const auto dot1 = token.find('.');
  const auto dot2 = token.rfind('.');
  ASSERT_NE(dot1, std::string::npos);
  ASSERT_NE(dot1, dot2);
  const auto header = decode_segment(std::string_view(token).substr(0, dot1));
  EXPECT_EQ(header.at("alg"), "HS256");
  EXPECT_EQ(header.at("typ"), "at+jwt");
  const auto claims = decode_segment(std::string_view(token).substr(dot1 + 1, dot2 - dot1 - 1));
  for (const char* name : {"iss", "sub", "iat", "exp", "jti", "role"}) {
    EXPECT_TRUE(claims.contains(name)) << name;
  }
  EXPECT_EQ(claims.at("iat").as_int64(), t0);
  EXPECT_EQ(claims.at("exp").as_int64(), t0 + 60);
  // The signature is HMAC-SHA256 over header.payload with the key.
  EXPECT_EQ(token.substr(dot2 + 1), base64url_encode(hmac(EVP_sha256(), key, token.substr(0, dot2))));
}

TEST_F(JwtTest, EveryIssuedTokenHasItsOwnJti) {
  std::set<std::string> jtis;
  for (int i = 0; i < 50; ++i) {
    const auto r = codec.verify(codec.issue("u", "user", at(t0), seconds{60}), at(t0));
    ASSERT_TRUE(r.claims);
    jtis.insert(r.claims->jti);
  }
  EXPECT_EQ(jtis.size(), 50U);
}

TEST_F(JwtTest, HandBuiltTokenWithStandardClaimsIsAccepted) {
  // Guards the helpers: the forgeries below differ from this in one point.
  expect_accepted(sign_claims(standard_claims()));
  const auto r = codec.verify(sign_claims(standard_claims()), at(t0));
  ASSERT_TRUE(r.claims);
  EXPECT_EQ(r.claims->jti, "jti-1");
  EXPECT_EQ(r.claims->role, "user");
}

TEST_F(JwtTest, AdminRoleIsAccepted) {
  auto claims = standard_claims();
  claims["role"] = "admin";
  expect_accepted(sign_claims(claims));
}

// ---------------------------------------------------------------------------
// Algorithm and signature

TEST_F(JwtTest, AlgNoneUnsignedTokenIsRefused) {
  const auto header = boost::json::serialize(boost::json::object{{"alg", "none"}, {"typ", "at+jwt"}});
  const auto token =
      base64url_encode(header) + '.' + base64url_encode(boost::json::serialize(standard_claims())) + '.';
  EXPECT_EQ(verify_error(token), token_error::unsupported_algorithm);
}

TEST_F(JwtTest, AlgNoneWithAValidHs256SignatureIsStillRefused) {
  // The header's alg is checked against the pinned one, never trusted.
  const auto token = sign({{"alg", "none"}, {"typ", "at+jwt"}}, standard_claims());
  EXPECT_EQ(verify_error(token), token_error::unsupported_algorithm);
}

TEST_F(JwtTest, Hs512SignedWithTheSameKeyIsRefused) {
  const auto token = sign({{"alg", "HS512"}, {"typ", "at+jwt"}}, standard_claims(), EVP_sha512());
  EXPECT_EQ(verify_error(token), token_error::unsupported_algorithm);
}

TEST_F(JwtTest, OtherAlgorithmNamesAreRefused) {
  for (const char* alg : {"hs256", "HS384", "RS256", "ES256", "", "HS256 "}) {
    SCOPED_TRACE(alg);
    EXPECT_EQ(verify_error(sign({{"alg", alg}, {"typ", "at+jwt"}}, standard_claims())),
              token_error::unsupported_algorithm);
  }
  EXPECT_EQ(verify_error(sign({{"typ", "at+jwt"}}, standard_claims())), token_error::unsupported_algorithm);
  EXPECT_EQ(verify_error(sign({{"alg", 256}, {"typ", "at+jwt"}}, standard_claims())),
            token_error::unsupported_algorithm);
}

TEST_F(JwtTest, CritHeaderIsRefused) {
  auto header = standard_header();
  header["crit"] = boost::json::array{"exp"};
  EXPECT_EQ(verify_error(sign(header, standard_claims())), token_error::unsupported_algorithm);
}

TEST_F(JwtTest, FlippedSignatureCharacterIsRefused) {
  const auto token = codec.issue("u", "user", at(t0), seconds{60});
  // Flip a character in the middle: the last one may carry unused bits.
  auto forged = token;
  auto& c = forged[token.rfind('.') + 5];
  c = c == 'A' ? 'B' : 'A';
  EXPECT_EQ(verify_error(forged), token_error::bad_signature);
}

TEST_F(JwtTest, TamperedPayloadIsRefused) {
  // Re-encode the payload with role admin but keep the old signature.
  const auto token = sign_claims(standard_claims());
  auto claims = standard_claims();
  claims["role"] = "admin";
  const auto dot1 = token.find('.');
  const auto dot2 = token.rfind('.');
  const auto forged =
      token.substr(0, dot1) + '.' + base64url_encode(boost::json::serialize(claims)) + token.substr(dot2);
  EXPECT_EQ(verify_error(forged), token_error::bad_signature);
}

TEST_F(JwtTest, EmptyOrTruncatedSignatureIsRefused) {
  const auto token = codec.issue("u", "user", at(t0), seconds{60});
  const auto input = token.substr(0, token.rfind('.') + 1);
  EXPECT_EQ(verify_error(input), token_error::bad_signature);
  EXPECT_EQ(verify_error(token.substr(0, token.size() - 4)), token_error::bad_signature);
}

TEST_F(JwtTest, TokenSignedWithAnotherKeyIsRefused) {
  const jwt_codec other("another-secret-of-at-least-32-bytes!!", issuer);
  EXPECT_EQ(verify_error(other.issue("u", "user", at(t0), seconds{60})), token_error::bad_signature);
  EXPECT_EQ(verify_error(sign(standard_header(), standard_claims(), EVP_sha256(),
                              "another-key-0123456789abcdef012345")),
            token_error::bad_signature);
}

TEST_F(JwtTest, PreviousKeyVerifiesDuringRotationButNeverSigns) {
  const std::string old_key = "the-key-before-the-rotation-0123456789";
  const jwt_codec before(old_key, issuer);
  const jwt_codec rotated(key, issuer, old_key);
  const auto old_token = before.issue("u", "user", at(t0), seconds{60});
  const auto r = rotated.verify(old_token, at(t0));
  EXPECT_EQ(r.error, token_error::none);
  ASSERT_TRUE(r.claims);
  EXPECT_EQ(r.claims->subject, "u");
  // New tokens carry the new key: a node without the old one accepts them.
  expect_accepted(rotated.issue("u", "user", at(t0), seconds{60}));
  // Once the previous key is dropped, its tokens are refused.
  EXPECT_EQ(verify_error(old_token), token_error::bad_signature);
  // A third key is refused whatever the rotation.
  const jwt_codec stranger("a-key-nobody-configured-0123456789abc", issuer);
  EXPECT_EQ(rotated.verify(stranger.issue("u", "user", at(t0), seconds{60}), at(t0)).error,
            token_error::bad_signature);
}

// ---------------------------------------------------------------------------
// Required claims

TEST_F(JwtTest, EachMissingRequiredClaimIsRefused) {
  for (const char* name : {"iss", "sub", "iat", "exp", "jti", "role"}) {
    SCOPED_TRACE(name);
    auto claims = standard_claims();
    ASSERT_TRUE(claims.erase(name));
    EXPECT_EQ(verify_error(sign_claims(claims)), token_error::missing_claim);
  }
}

TEST_F(JwtTest, ClaimsOfTheWrongJsonTypeCountAsMissing) {
  const std::pair<const char*, boost::json::value> cases[] = {
      {"iss", 7},
      {"sub", 1},
      {"jti", nullptr},
      {"role", boost::json::array{"user"}},
      {"iat", "0"},
      {"exp", "99999999999"},
      {"exp", 1.8e9 + 900.5},
      {"iat", nullptr},
  };
  for (const auto& [name, value] : cases) {
    SCOPED_TRACE(std::string(name) + " = " + boost::json::serialize(value));
    auto claims = standard_claims();
    claims[name] = value;
    EXPECT_EQ(verify_error(sign_claims(claims)), token_error::missing_claim);
  }
}

TEST_F(JwtTest, EmptySubjectOrJtiIsRefused) {
  for (const char* name : {"sub", "jti"}) {
    SCOPED_TRACE(name);
    auto claims = standard_claims();
    claims[name] = "";
    EXPECT_EQ(verify_error(sign_claims(claims)), token_error::missing_claim);
  }
}

TEST_F(JwtTest, RoleOtherThanUserOrAdminIsRefused) {
  for (const char* role : {"superuser", "Admin", "USER", "", "admin "}) {
    SCOPED_TRACE(role);
    auto claims = standard_claims();
    claims["role"] = role;
    EXPECT_EQ(verify_error(sign_claims(claims)), token_error::missing_claim);
  }
}

TEST_F(JwtTest, WrongIssuerIsRefused) {
  for (const char* iss : {"evil", "Docflow", "docflow ", ""}) {
    SCOPED_TRACE(iss);
    auto claims = standard_claims();
    claims["iss"] = iss;
    EXPECT_EQ(verify_error(sign_claims(claims)), token_error::wrong_issuer);
  }
  const jwt_codec other_issuer(key, "someone-else");
  EXPECT_EQ(verify_error(other_issuer.issue("u", "user", at(t0), seconds{60})), token_error::wrong_issuer);
}

// ---------------------------------------------------------------------------
// Time

TEST_F(JwtTest, ExpiredBeyondLeewayIsRefused) {
  const auto token = codec.issue("u", "user", at(t0), seconds{900});
  const auto exp = t0 + 900;
  EXPECT_EQ(verify_error(token, exp + leeway), token_error::expired);
  EXPECT_EQ(verify_error(token, exp + leeway + 1), token_error::expired);
  EXPECT_EQ(verify_error(token, exp + 86400), token_error::expired);
}

TEST_F(JwtTest, ExpiredWithinLeewayIsAccepted) {
  const auto token = codec.issue("u", "user", at(t0), seconds{900});
  const auto exp = t0 + 900;
  expect_accepted(token, exp - 1);
  expect_accepted(token, exp);
  expect_accepted(token, exp + leeway - 1);
}

TEST_F(JwtTest, LeewayIsConfigurable) {
  const jwt_codec strict(key, issuer, std::nullopt, seconds{0});
  const auto token = strict.issue("u", "user", at(t0), seconds{60});
  EXPECT_EQ(strict.verify(token, at(t0 + 59)).error, token_error::none);
  EXPECT_EQ(strict.verify(token, at(t0 + 60)).error, token_error::expired);
}

// Found by tests/fuzz/jwt_fuzz.cpp: exp + leeway overflowed for an exp near
// INT64_MAX (undefined behaviour) instead of meaning "far in the future".
TEST_F(JwtTest, ExtremeExpiryTimesDoNotOverflow) {
  auto claims = standard_claims();
  claims["exp"] = INT64_MAX;
  expect_accepted(sign_claims(claims), t0);
  claims["exp"] = INT64_MAX - leeway + 1;
  expect_accepted(sign_claims(claims), t0);
  claims["exp"] = INT64_MIN;
  EXPECT_EQ(verify_error(sign_claims(claims), t0), token_error::expired);
}

TEST_F(JwtTest, IssuedInTheFutureBeyondLeewayIsNotYetValid) {
  auto claims = standard_claims();
  claims["iat"] = t0 + leeway + 1;
  claims["exp"] = t0 + 900;
  EXPECT_EQ(verify_error(sign_claims(claims), t0), token_error::not_yet_valid);
  // Within the leeway it is clock skew, and accepted.
  claims["iat"] = t0 + leeway;
  expect_accepted(sign_claims(claims), t0);
}

TEST_F(JwtTest, NotBeforeInTheFutureBeyondLeewayIsNotYetValid) {
  auto claims = standard_claims();
  claims["nbf"] = t0 + leeway + 1;
  EXPECT_EQ(verify_error(sign_claims(claims), t0), token_error::not_yet_valid);
  claims["nbf"] = t0 + leeway;
  expect_accepted(sign_claims(claims), t0);
  claims["nbf"] = t0 - 100;
  expect_accepted(sign_claims(claims), t0);
}

// ---------------------------------------------------------------------------
// Token type

TEST_F(JwtTest, TypJwtIsNotAnAccessToken) {
  EXPECT_EQ(verify_error(sign({{"alg", "HS256"}, {"typ", "JWT"}}, standard_claims())),
            token_error::wrong_type);
}

TEST_F(JwtTest, MissingOrNonStringTypIsRefused) {
  EXPECT_EQ(verify_error(sign({{"alg", "HS256"}}, standard_claims())), token_error::wrong_type);
  EXPECT_EQ(verify_error(sign({{"alg", "HS256"}, {"typ", 1}}, standard_claims())), token_error::wrong_type);
  EXPECT_EQ(verify_error(sign({{"alg", "HS256"}, {"typ", "rt+jwt"}}, standard_claims())),
            token_error::wrong_type);
}

TEST_F(JwtTest, FullAccessTokenMediaTypeIsAccepted) {
  expect_accepted(sign({{"alg", "HS256"}, {"typ", "application/at+jwt"}}, standard_claims()));
  expect_accepted(
      sign({{"alg", "HS256"}, {"typ", "AT+JWT"}}, standard_claims()));  // RFC 7515: case-insensitive
}

// ---------------------------------------------------------------------------
// Structure and size

TEST_F(JwtTest, MalformedBase64urlIsRefused) {
  const auto token = sign_claims(standard_claims());
  EXPECT_EQ(verify_error("!" + token), token_error::malformed);
  // A payload that is not base64url, correctly signed: the signature holds,
  // the payload still cannot be decoded.
  const std::string input = base64url_encode(boost::json::serialize(standard_header())) + ".e30!";
  EXPECT_EQ(verify_error(input + '.' + base64url_encode(hmac(EVP_sha256(), key, input))),
            token_error::malformed);
}

TEST_F(JwtTest, SegmentsThatAreNotJsonObjectsAreMalformed) {
  EXPECT_EQ(verify_error(sign_raw("[1,2]", boost::json::serialize(standard_claims()))),
            token_error::malformed);
  EXPECT_EQ(verify_error(sign_raw("{\"alg\":", boost::json::serialize(standard_claims()))),
            token_error::malformed);
  EXPECT_EQ(verify_error(sign_raw(boost::json::serialize(standard_header()), "\"claims\"")),
            token_error::malformed);
  EXPECT_EQ(verify_error(sign_raw(boost::json::serialize(standard_header()), "")), token_error::malformed);
}

TEST_F(JwtTest, WrongNumberOfDotsIsMalformed) {
  const auto token = sign_claims(standard_claims());
  const auto two_parts = token.substr(0, token.rfind('.'));
  EXPECT_EQ(verify_error(two_parts), token_error::malformed);
  EXPECT_EQ(verify_error(token + ".extra"), token_error::malformed);
  EXPECT_EQ(verify_error(token + "."), token_error::malformed);
  EXPECT_EQ(verify_error("nodots"), token_error::malformed);
  EXPECT_EQ(verify_error(""), token_error::malformed);
  EXPECT_EQ(verify_error(".."), token_error::malformed);
}

TEST_F(JwtTest, OversizedTokenIsRefusedBeforeParsing) {
  const std::string huge(100 * 1024, 'a');
  EXPECT_EQ(verify_error(huge), token_error::oversized);
  // Even a well-formed, correctly signed one.
  auto claims = standard_claims();
  claims["pad"] = std::string(jwt_codec::max_token_bytes, 'x');
  EXPECT_EQ(verify_error(sign_claims(claims)), token_error::oversized);
}

TEST_F(JwtTest, ARefreshTokenIsNeverAnAccessToken) {
  // 43 base64url chars without dots, as auth::new_refresh_token makes them.
  EXPECT_EQ(verify_error(base64url_encode(std::string(32, '\x5a'))), token_error::malformed);
}

TEST_F(JwtTest, DescribeNamesEveryError) {
  for (const auto e :
       {token_error::none, token_error::oversized, token_error::malformed, token_error::wrong_type,
        token_error::unsupported_algorithm, token_error::bad_signature, token_error::missing_claim,
        token_error::wrong_issuer, token_error::expired, token_error::not_yet_valid}) {
    const std::string text = docflow::auth::describe(e);
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(text.find('"'), std::string::npos) << "goes into a quoted WWW-Authenticate parameter: " << text;
  }
}

}  // namespace
