#include "auth/jwt.hpp"

#include <openssl/crypto.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"

namespace docflow::auth {

namespace {

std::int64_t epoch_seconds(core::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// Decodes one base64url JSON-object segment; nullopt when it is not one.
std::optional<boost::json::object> decode_object(std::string_view segment) {
  const auto bytes = core::base64url_decode(segment);
  if (!bytes) {
    return std::nullopt;
  }
  boost::json::error_code ec;
  auto v = boost::json::parse(*bytes, ec);
  if (ec || !v.is_object()) {
    return std::nullopt;
  }
  return std::move(v.as_object());
}

const boost::json::string* string_member(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v ? v->if_string() : nullptr;
}

const std::int64_t* int_member(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v ? v->if_int64() : nullptr;
}

bool is_access_token_type(std::string_view typ) {
  // RFC 9068: "at+jwt", or the full media type; compared case-insensitively.
  return core::iequals(typ, "at+jwt") || core::iequals(typ, "application/at+jwt");
}

}  // namespace

const char* describe(token_error e) noexcept {
  switch (e) {
    case token_error::none: return "valid";
    case token_error::oversized: return "the token is too long";
    case token_error::malformed: return "the token is malformed";
    case token_error::wrong_type: return "the token is not an access token";
    case token_error::unsupported_algorithm: return "the token's algorithm is not accepted";
    case token_error::bad_signature: return "the token's signature is invalid";
    case token_error::missing_claim: return "the token lacks a required claim";
    case token_error::wrong_issuer: return "the token was issued by someone else";
    case token_error::expired: return "the token has expired";
    case token_error::not_yet_valid: return "the token is not valid yet";
  }
  return "invalid token";
}

jwt_codec::jwt_codec(std::string key, std::string issuer, std::optional<std::string> previous_key,
                     std::chrono::seconds leeway)
    : key_(std::move(key)),
      previous_key_(std::move(previous_key)),
      issuer_(std::move(issuer)),
      leeway_(leeway) {}

std::string jwt_codec::issue(std::string_view subject, std::string_view role, core::time_point now,
                             std::chrono::seconds ttl) const {
  static const std::string header = core::base64url_encode(
      boost::json::serialize(boost::json::object{{"alg", "HS256"}, {"typ", "at+jwt"}}));
  const auto iat = epoch_seconds(now);
  const boost::json::object claims{{"iss", issuer_},
                                   {"sub", subject},
                                   {"iat", iat},
                                   {"exp", iat + ttl.count()},
                                   {"jti", core::new_uuid_v7()},
                                   {"role", role}};
  std::string token = header + '.' + core::base64url_encode(boost::json::serialize(claims));
  const auto signature = core::base64url_encode(core::hmac_sha256(key_, token));
  token += '.';
  token += signature;
  return token;
}

verify_result jwt_codec::verify(std::string_view token, core::time_point now) const {
  const auto fail = [](token_error e) { return verify_result{std::nullopt, e}; };
  if (token.size() > max_token_bytes) {
    return fail(token_error::oversized);
  }
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return fail(token_error::malformed);
  }
  const auto header = decode_object(token.substr(0, dot1));
  if (!header) {
    return fail(token_error::malformed);
  }
  const auto* typ = string_member(*header, "typ");
  if (!typ || !is_access_token_type(*typ)) {
    return fail(token_error::wrong_type);
  }
  const auto* alg = string_member(*header, "alg");
  if (!alg || *alg != "HS256" || header->contains("crit")) {
    return fail(token_error::unsupported_algorithm);
  }
  const auto signature = core::base64url_decode(token.substr(dot2 + 1));
  const auto signed_with = [&](const std::string& key) {
    const auto expected = core::hmac_sha256(key, token.substr(0, dot2));
    return signature && signature->size() == expected.size() &&
           CRYPTO_memcmp(signature->data(), expected.data(), expected.size()) == 0;
  };
  if (!signed_with(key_) && !(previous_key_ && signed_with(*previous_key_))) {
    return fail(token_error::bad_signature);
  }
  const auto payload = decode_object(token.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!payload) {
    return fail(token_error::malformed);
  }
  const auto* iss = string_member(*payload, "iss");
  const auto* sub = string_member(*payload, "sub");
  const auto* jti = string_member(*payload, "jti");
  const auto* role = string_member(*payload, "role");
  const auto* iat = int_member(*payload, "iat");
  const auto* exp = int_member(*payload, "exp");
  if (!iss || !sub || sub->empty() || !jti || jti->empty() || !role ||
      (*role != "user" && *role != "admin") || !iat || !exp) {
    return fail(token_error::missing_claim);
  }
  if (*iss != issuer_) {
    return fail(token_error::wrong_issuer);
  }
  // The leeway goes on the side of `now`, which is bounded: exp comes from the
  // token and may be anywhere in int64, where exp + leeway would overflow.
  const auto t = epoch_seconds(now);
  if (t - leeway_.count() >= *exp) {
    return fail(token_error::expired);
  }
  const auto* nbf = int_member(*payload, "nbf");
  if (*iat > t + leeway_.count() || (nbf && *nbf > t + leeway_.count())) {
    return fail(token_error::not_yet_valid);
  }
  return {
      access_claims{std::string(*iss), std::string(*sub), std::string(*role), std::string(*jti), *iat, *exp},
      token_error::none};
}

}  // namespace docflow::auth
