#pragma once

#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"
#include "http/router.hpp"

namespace docflow::api {
struct services;
}

namespace docflow::api::accounts {

/// POST /auth/register: 201 {id, username, role, created_at}; 403 when signup
/// is closed, 409 when the username is taken, 422 for invalid fields, 503
/// when every hashing slot is busy.
boost::asio::awaitable<http::response> register_user(services& s, http::request& req);

/// POST /auth/login (JSON or OAuth2 password form): 200 token pair; 401 for
/// any bad credentials, 429 when throttled, 503 when hashing is saturated.
boost::asio::awaitable<http::response> login(services& s, http::request& req);

/// POST /auth/refresh: 200 new token pair; 401 for an unknown, revoked,
/// expired or reused token (reuse also revokes its family); 422 when missing.
boost::asio::awaitable<http::response> refresh(services& s, http::request& req);

/// POST /auth/logout: 204; revokes the token's family.
boost::asio::awaitable<http::response> logout(services& s, http::request& req);

/// GET /auth/me: 200 {id, username, role, usage, limits}.
boost::asio::awaitable<http::response> me(services& s, http::request& req);

/// Checks a bearer token, an access token or an API key, for the server's
/// auth policies; counted in docflow_auth_requests_total.
boost::asio::awaitable<http::authentication> authenticate(services& s, std::string_view token);

void describe_metrics(services& s);

}  // namespace docflow::api::accounts
