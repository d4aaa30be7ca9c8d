#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "core/document.hpp"
#include "core/quota.hpp"

namespace docflow::api {

/// RFC 3339 time, or null: every optional time of an answer.
boost::json::value optional_time_json(const std::optional<core::time_point>& t);

/// {"code", "message", "retryable"}, or null without a failure: a
/// document's processing.error, the error of an event and of a 409.
boost::json::value failure_json(const std::optional<core::failure>& f);

/// {"usage": {"bytes", "documents"}, "limits": {"bytes", "documents"}},
/// a limit null where there is none: GET /auth/me and a quota-exceeded
/// problem.
boost::json::object quota_json(const core::quota_state& q);

/// The Document of spec §3, with its links.
boost::json::object document_json(const core::document& d);

}  // namespace docflow::api
