#pragma once

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"

namespace docflow::api {
struct services;
}

namespace docflow::api::docs {

/// The embedded file served at the request's path: the OpenAPI document,
/// the Swagger UI page at /docs and its scripts, styles, icons and licence.
/// Text is sent gzip-compressed (compressed at build time) when
/// Accept-Encoding allows it. Sends an ETag per encoding, and answers 304
/// when If-None-Match names it; 404 problem for a path
/// with no embedded file. Every answer carries the security headers
/// (Content-Security-Policy and friends).
boost::asio::awaitable<http::response> asset(services& s, http::request& req);

}  // namespace docflow::api::docs
