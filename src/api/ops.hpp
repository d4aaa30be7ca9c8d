#pragma once

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"

namespace docflow::api {
struct services;
}

namespace docflow::api::ops {

/// 200 while the process runs.
boost::asio::awaitable<http::response> healthz(services& s, http::request& req);

/// 200 when the database and the blob store answer; 503 problem with a
/// `checks` member naming what failed otherwise.
boost::asio::awaitable<http::response> readyz(services& s, http::request& req);

/// Prometheus text; when a metrics token is configured, 401 without it.
boost::asio::awaitable<http::response> metrics(services& s, http::request& req);

void describe_metrics(services& s);

}  // namespace docflow::api::ops
