#pragma once

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"

namespace docflow::api {
struct services;
}

// `api::webhook_endpoints`, not `api::webhooks`: that name is the module
// whose target checks and sender these handlers sit beside.
namespace docflow::api::webhook_endpoints {

/// The most webhooks one account may register (409 limit-reached past it).
constexpr std::size_t max_per_user = 20;

boost::asio::awaitable<http::response> create(services& s, http::request& req);
boost::asio::awaitable<http::response> list(services& s, http::request& req);
boost::asio::awaitable<http::response> remove(services& s, http::request& req);
boost::asio::awaitable<http::response> deliveries(services& s, http::request& req);
boost::asio::awaitable<http::response> redeliver(services& s, http::request& req);

}  // namespace docflow::api::webhook_endpoints
