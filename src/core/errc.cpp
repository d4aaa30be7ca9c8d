#include "core/errc.hpp"

#include <algorithm>
#include <array>
#include <string>

namespace docflow::core {

namespace {

struct entry {
  errc code;
  std::string_view name;
  std::string_view message;  ///< a sentence for people: the category's message
};

constexpr std::array entries{
    entry{errc::invalid_request, "invalid_request", "The request cannot be parsed."},
    entry{errc::invalid_fields, "invalid_fields", "One or more fields are invalid."},
    entry{errc::too_large, "too_large", "The request is over its size limit."},
    entry{errc::unsupported_media_type, "unsupported_media_type", "The media type is not supported."},
    entry{errc::not_found, "not_found", "No document with this id exists for this account."},
    entry{errc::range_not_satisfiable, "range_not_satisfiable",
          "The requested range lies outside the document."},
    entry{errc::signup_closed, "signup_closed",
          "Registration is closed on this server; ask an administrator for an account."},
    entry{errc::username_taken, "username_taken", "This username is already registered."},
    entry{errc::invalid_credentials, "invalid_credentials", "The username or password is wrong."},
    entry{errc::invalid_refresh_token, "invalid_refresh_token",
          "The refresh token is unknown, expired, revoked or already used."},
    entry{errc::account_gone, "account_gone", "The account behind this token no longer exists."},
    entry{errc::too_many_attempts, "too_many_attempts",
          "Too many attempts; retry after the time in Retry-After."},
    entry{errc::hashing_busy, "hashing_busy", "Too many password checks are running; retry shortly."},
    entry{errc::limit_reached, "limit_reached",
          "This account holds the most it may of these; delete one first."},
    entry{errc::quota_exceeded, "quota_exceeded",
          "This document would take the account past its quota; delete documents or ask for a larger one."},
    entry{errc::document_busy, "document_busy", "The document is being processed; cancel it first."},
    entry{errc::not_processing, "not_processing", "Only a document being processed can be cancelled."},
    entry{errc::result_not_ready, "result_not_ready",
          "The document has no result yet; request processing or wait for it to complete."},
    entry{errc::processing_failed, "processing_failed", "Processing this document failed; see error."},
    entry{errc::queue_full, "queue_full", "The processing queue is full; retry later."},
    entry{errc::too_many_streams, "too_many_streams",
          "This account has the most event streams open at once (DOCFLOW_MAX_STREAMS_PER_USER); close one."},
    entry{errc::storage_full, "storage_full", "The server has no room to store this file now; retry later."},
    entry{errc::unavailable, "unavailable", "A service this request needs is unavailable; retry later."},
    entry{errc::idempotency_key_reused, "idempotency_key_reused",
          "This Idempotency-Key was already used for a different request."},
    entry{errc::idempotency_key_in_flight, "idempotency_key_in_flight",
          "A request with this Idempotency-Key is still being handled; retry later."},
    entry{errc::tus_version_unsupported, "tus_version_unsupported",
          "This server speaks tus 1.0.0 only (Tus-Resumable: 1.0.0)."},
    entry{errc::upload_offset_mismatch, "upload_offset_mismatch",
          "Upload-Offset is not the number of bytes the upload has received."},
    entry{errc::upload_locked, "upload_locked", "Another request is writing to this upload; retry shortly."},
    entry{errc::upload_checksum_failed, "upload_checksum_failed",
          "The request's bytes do not match its Upload-Checksum; none were kept."},
    entry{errc::upload_incomplete, "upload_incomplete", "The upload has not received all its bytes yet."},
    entry{errc::checksum_mismatch, "checksum_mismatch", "The stored file does not match its checksum."},
    entry{errc::unreadable_document, "unreadable_document", "The document cannot be read."},
    entry{errc::document_too_complex, "document_too_complex", "The document exceeds the extraction limits."},
    entry{errc::extractor_crashed, "extractor_crashed", "The extractor stopped unexpectedly."},
    entry{errc::extractor_timeout, "extractor_timeout", "Extraction took too long."},
    entry{errc::sandbox_unavailable, "sandbox_unavailable", "The extraction sandbox is unavailable."},
    entry{errc::enrichment_failed, "enrichment_failed", "The enrichment service failed."},
    entry{errc::storage_unavailable, "storage_unavailable", "The stored file could not be read."},
    entry{errc::cancelled, "cancelled", "Processing was cancelled."},
};

constexpr bool in_declaration_order() {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (static_cast<std::size_t>(entries[i].code) != i + 1) return false;
  }
  return true;
}
// name() indexes the table by the code's value.
static_assert(in_declaration_order(), "one entry per errc, in declaration order");

constexpr auto codes = [] {
  std::array<errc, entries.size()> out{};
  for (std::size_t i = 0; i < entries.size(); ++i) out[i] = entries[i].code;
  return out;
}();

const entry* find(errc e) noexcept {
  const auto i = static_cast<std::size_t>(e);
  return i >= 1 && i <= entries.size() ? &entries[i - 1] : nullptr;
}

class category final : public std::error_category {
public:
  const char* name() const noexcept override { return "docflow"; }
  std::string message(int value) const override {
    const auto* e = find(static_cast<errc>(value));
    return e ? std::string(e->message) : "unknown docflow error " + std::to_string(value);
  }
};

}  // namespace

std::span<const errc> all_errc() noexcept { return codes; }

std::string_view name(errc e) noexcept {
  const auto* found = find(e);
  return found ? found->name : std::string_view("unknown");
}

std::optional<errc> parse_errc(std::string_view s) noexcept {
  const auto* it = std::find_if(entries.begin(), entries.end(), [s](const entry& e) { return e.name == s; });
  return it == entries.end() ? std::nullopt : std::optional(it->code);
}

const std::error_category& docflow_category() noexcept {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), docflow_category()}; }

}  // namespace docflow::core
