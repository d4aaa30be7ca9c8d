#pragma once

#include <functional>
#include <optional>
#include <string>
#include <variant>

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"
#include "http/problem.hpp"

namespace docflow::api {

struct services;

/// The request's Idempotency-Key: none, a valid key (1-255 visible ASCII
/// characters), or the 400 problem for an invalid one.
std::variant<std::monostate, std::string, http::problem> idempotency_key(const http::request& req);

/// Runs `action` at most once per (user, key): a retry with the same
/// `fingerprint` gets the first answer again with Idempotent-Replayed: true;
/// another fingerprint is 422, a request still in flight 409. Answers a retry
/// should repeat (429 and 5xx, or an exception) release the key.
boost::asio::awaitable<http::response> once(
    services& s, const http::request& req, const std::string& key, const std::string& fingerprint,
    const std::function<boost::asio::awaitable<http::response>()>& action);

}  // namespace docflow::api
