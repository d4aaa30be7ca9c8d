#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "core/result.hpp"
#include "http/message.hpp"

namespace docflow::api {

/// How the API answers an errc: the one mapping from the domain's
/// vocabulary to HTTP. The error catalogue in docs/api.md is checked
/// against it (tests/unit/errors_test.cpp).
struct problem_shape {
  int status = 500;
  std::string_view slug;   ///< type: /problems/<slug>
  std::string_view title;  ///< fixed per slug
  std::optional<std::chrono::seconds> retry_after;
};

problem_shape shape_of(core::errc e) noexcept;

/// The application/problem+json answer to `e`: its shape, its detail (or
/// the code's own sentence), the fields, the document's status and error it
/// names, and Retry-After where the shape (or the error) gives a wait.
http::response error_response(const http::request& req, const core::error& e);

}  // namespace docflow::api
