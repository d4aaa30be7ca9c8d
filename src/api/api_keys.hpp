#pragma once

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"
#include "http/router.hpp"

namespace docflow::api {
struct services;
}

/// API keys: long-lived bearer credentials for programs, each acting as
/// the user who made it. Managed with an access token only (the routes'
/// auth_policy::session): a leaked key cannot make more keys.
namespace docflow::api::api_keys {

/// Most keys one account may hold at once.
inline constexpr std::size_t max_per_user = 100;

/// POST /auth/api-keys {name, expires_in?}: 201 {id, name, key, prefix,
/// created_at, expires_at}, the key shown this once; 409 limit-reached past
/// max_per_user; 422 for invalid fields.
boost::asio::awaitable<http::response> create(services& s, http::request& req);

/// GET /auth/api-keys: 200 {items: [{id, name, prefix, created_at,
/// expires_at, last_used_at}]}, oldest first.
boost::asio::awaitable<http::response> list(services& s, http::request& req);

/// DELETE /auth/api-keys/{id}: 204, the key refused from the next request
/// on; 404 for another user's key and an unknown one.
boost::asio::awaitable<http::response> remove(services& s, http::request& req);

/// The credential of a bearer token that has an API key's form: the key's
/// user, unless it is unknown, revoked or expired. Records when it was last
/// used (at most once a minute).
boost::asio::awaitable<http::authentication> authenticate(services& s, std::string_view key);

}  // namespace docflow::api::api_keys
