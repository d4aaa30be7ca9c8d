#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <system_error>

namespace docflow::core {

/// Every outcome of the domain that is not plain success: what a request
/// could not do, and why processing a document failed. One vocabulary for
/// the store, the pipeline and the API; api/errors.cpp alone turns a code
/// into an HTTP answer.
enum class errc {
  // A request that cannot be carried out as sent.
  invalid_request = 1,     ///< cannot be parsed (its body, form, query, cursor, a header)
  invalid_fields,          ///< parses, but values are invalid; core::error::fields says which
  too_large,               ///< a body or file over its limit
  unsupported_media_type,  ///< the wrong Content-Type, or a file that is not a PDF or DOCX
  not_found,               ///< no such document for this caller (malformed ids included)
  range_not_satisfiable,   ///< a byte range outside the document

  // Accounts.
  signup_closed,
  username_taken,
  invalid_credentials,
  invalid_refresh_token,
  account_gone,       ///< a valid token whose account no longer exists
  too_many_attempts,  ///< login or registration throttled; core::error::retry_after says how long
  hashing_busy,       ///< every password-hashing slot is taken
  limit_reached,      ///< the account holds the most it may of something (API keys)
  quota_exceeded,     ///< one more document would pass a quota; core::error::quota says which

  // Documents and their processing.
  document_busy,      ///< deleting a document being processed
  not_processing,     ///< cancelling a document that is not being processed
  result_not_ready,   ///< no result yet
  processing_failed,  ///< the document's processing failed: core::error::failure says how
  queue_full,
  too_many_streams,
  storage_full,
  unavailable,  ///< something the request needs (say, the sandbox that checks DOCX) is unavailable

  // Idempotency keys.
  idempotency_key_reused,
  idempotency_key_in_flight,

  // Webhooks.

  // Resumable uploads (tus).
  tus_version_unsupported,  ///< no or another Tus-Resumable than 1.0.0
  upload_offset_mismatch,   ///< a PATCH at another offset than the bytes received
  upload_locked,            ///< another request is writing to the upload just now
  upload_checksum_failed,   ///< the request's bytes do not match its Upload-Checksum
  upload_incomplete,        ///< the upload's outcome is asked for before its last byte

  // Why processing failed: a document's error.code, stored and shown by name.
  checksum_mismatch,     ///< transient: storage may recover
  unreadable_document,   ///< permanent
  document_too_complex,  ///< permanent (zip bombs, limits)
  extractor_crashed,     ///< transient
  extractor_timeout,     ///< transient
  sandbox_unavailable,   ///< permanent (DOCFLOW_SANDBOX=strict)
  enrichment_failed,     ///< transient
  storage_unavailable,   ///< transient
  cancelled,             ///< retryable by a new request
};

/// Every code, in declaration order.
std::span<const errc> all_errc() noexcept;

/// The code's stable name ("not_found", "extractor_timeout"): what a
/// document's error.code holds and the logs show.
std::string_view name(errc e) noexcept;

/// The code named `s`, if any.
std::optional<errc> parse_errc(std::string_view s) noexcept;

const std::error_category& docflow_category() noexcept;

std::error_code make_error_code(errc e) noexcept;

}  // namespace docflow::core

template <>
struct std::is_error_code_enum<docflow::core::errc> : std::true_type {};
