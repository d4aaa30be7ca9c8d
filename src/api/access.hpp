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

/// A quota_exceeded refusal when the caller's quota has no room for one
/// more document of at least `bytes`, checked before an upload's body is
/// read; the commit checks again, exactly (store::database::insert_document).
boost::asio::awaitable<std::optional<core::error>> quota_refusal(services& s, const http::request& req,
                                                                 std::uint64_t bytes);

}  // namespace docflow::api
