#pragma once

#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "core/result.hpp"
#include "http/message.hpp"

namespace docflow::api {

struct services;

/// Whose documents the caller may see: their own, or (admin) everyone's.
inline std::optional<std::string> owner_scope(const http::request& req) {
  return req.user->admin ? std::nullopt : std::optional(req.user->user_id);
}

/// The document named by the path's {id}, if the caller may see it:
/// not_found alike for a malformed id, a missing document and another
/// user's, so that no answer tells them apart. Every per-document handler
/// starts here.
boost::asio::awaitable<core::result<core::document>> caller_document(services& s, const http::request& req);

}  // namespace docflow::api
