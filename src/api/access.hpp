#pragma once

#include <optional>
#include <string>

#include "http/message.hpp"
#include "http/problem.hpp"

namespace docflow::api {

/// Whose documents the caller may see: their own, or (admin) everyone's.
inline std::optional<std::string> owner_scope(const http::request& req) {
  return req.user->admin ? std::nullopt : std::optional(req.user->user_id);
}

/// The one 404 for a document that is missing, malformed or someone else's,
/// so that no answer tells them apart.
inline http::problem document_not_found() {
  return {404, "not-found", "Not Found", "No document with this id exists for this account.", {}, {}};
}

}  // namespace docflow::api
