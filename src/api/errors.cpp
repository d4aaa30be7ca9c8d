#include "api/errors.hpp"

#include "api/document_json.hpp"
#include "http/problem.hpp"

namespace docflow::api {

namespace {
using std::chrono::seconds;

// Processing failures are a document's state, never an answer of their own;
// one reaching here is a bug, answered as one.
constexpr problem_shape internal{500, "internal-error", "Internal Server Error", std::nullopt};
}  // namespace

problem_shape shape_of(core::errc e) noexcept {
  using core::errc;
  switch (e) {
    case errc::invalid_request: return {400, "bad-request", "Bad Request", std::nullopt};
    case errc::invalid_fields: return {422, "validation-failed", "Unprocessable Content", std::nullopt};
    case errc::too_large: return {413, "payload-too-large", "Content Too Large", std::nullopt};
    case errc::unsupported_media_type:
      return {415, "unsupported-media-type", "Unsupported Media Type", std::nullopt};
    case errc::not_found: return {404, "not-found", "Not Found", std::nullopt};
    case errc::range_not_satisfiable:
      return {416, "range-not-satisfiable", "Range Not Satisfiable", std::nullopt};
    case errc::signup_closed: return {403, "signup-closed", "Forbidden", std::nullopt};
    case errc::username_taken: return {409, "username-taken", "Conflict", std::nullopt};
    case errc::invalid_credentials: return {401, "invalid-credentials", "Unauthorized", std::nullopt};
    case errc::invalid_refresh_token: return {401, "invalid-refresh-token", "Unauthorized", std::nullopt};
    case errc::account_gone: return {401, "unauthorized", "Unauthorized", std::nullopt};
    case errc::too_many_attempts: return {429, "too-many-attempts", "Too Many Requests", std::nullopt};
    case errc::hashing_busy: return {503, "busy", "Service Unavailable", seconds{1}};
    case errc::limit_reached: return {409, "limit-reached", "Conflict", std::nullopt};
    case errc::quota_exceeded: return {403, "quota-exceeded", "Forbidden", std::nullopt};
    case errc::document_busy: return {409, "document-busy", "Conflict", std::nullopt};
    case errc::not_processing: return {409, "not-processing", "Conflict", std::nullopt};
    case errc::result_not_ready: return {409, "result-not-ready", "Conflict", std::nullopt};
    case errc::processing_failed: return {409, "processing-failed", "Conflict", std::nullopt};
    case errc::queue_full: return {429, "queue-full", "Too Many Requests", seconds{5}};
    case errc::too_many_streams: return {429, "too-many-streams", "Too Many Requests", seconds{5}};
    case errc::storage_full: return {507, "storage-full", "Insufficient Storage", seconds{60}};
    case errc::unavailable: return {503, "service-unavailable", "Service Unavailable", std::nullopt};
    case errc::idempotency_key_reused:
      return {422, "idempotency-key-reused", "Unprocessable Content", std::nullopt};
    case errc::idempotency_key_in_flight: return {409, "idempotency-key-in-flight", "Conflict", std::nullopt};
    case errc::tus_version_unsupported:
      return {412, "tus-version-unsupported", "Precondition Failed", std::nullopt};
    case errc::upload_offset_mismatch: return {409, "upload-offset-mismatch", "Conflict", std::nullopt};
    case errc::upload_locked: return {423, "upload-locked", "Locked", seconds{1}};
    // 460 is tus's own status for it (the checksum extension).
    case errc::upload_checksum_failed: return {460, "checksum-mismatch", "Checksum Mismatch", std::nullopt};
    case errc::upload_incomplete: return {409, "upload-incomplete", "Conflict", std::nullopt};
    case errc::checksum_mismatch:
    case errc::unreadable_document:
    case errc::document_too_complex:
    case errc::extractor_crashed:
    case errc::extractor_timeout:
    case errc::sandbox_unavailable:
    case errc::enrichment_failed:
    case errc::storage_unavailable:
    case errc::cancelled: return internal;
  }
  return internal;
}

http::response error_response(const http::request& req, const core::error& e) {
  const auto shape = shape_of(e.code);
  http::problem p{shape.status, std::string(shape.slug), std::string(shape.title), e.detail, e.fields, {}};
  if (shape.status == 500) {
    p = http::internal_error();
  } else if (p.detail.empty()) {
    p.detail = core::make_error_code(e.code).message();
  }
  if (e.document_status) p.extensions["document_status"] = core::to_string(*e.document_status);
  if (e.code == core::errc::processing_failed) p.extensions["error"] = failure_json(e.document_error);
  if (e.quota) {
    for (auto& [name, value] : quota_json(*e.quota)) p.extensions[name] = std::move(value);
  }
  auto res = http::make_problem(req, p);
  if (const auto wait = e.retry_after ? e.retry_after : shape.retry_after) {
    res.fields.set("Retry-After", std::to_string(wait->count()));
  }
  if (e.code == core::errc::account_gone) {
    res.fields.set("WWW-Authenticate", R"(Bearer realm="docflow", error="invalid_token")");
  }
  return res;
}

}  // namespace docflow::api
