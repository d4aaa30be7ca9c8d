#include "store/transfer.hpp"

#include <algorithm>
#include <stdexcept>

namespace docflow::store::transfer {

const std::vector<table>& tables() {
  using enum kind;
  static const std::vector<table> all{
      {"users",
       {{"id", id},
        {"username", text},
        {"username_key", text},
        {"password_hash", text},
        {"role", text},
        {"created_at", time},
        {"quota_bytes", integer},
        {"quota_documents", integer}}},
      {"refresh_families",
       {{"id", id}, {"user_id", id}, {"created_at", time}, {"expires_at", time}, {"revoked_at", time}}},
      {"refresh_tokens",
       {{"token_hash", text},
        {"family_id", id},
        {"issued_at", time},
        {"expires_at", time},
        {"used_at", time}}},
      // Before the jobs: on PostgreSQL their insert makes the owner's row
      // (served 0) when it is missing, and the source's would not be written then.
      {"job_owners", {{"owner_id", id}, {"served", integer}}},
      // Hashed under the signing secret: the target's DOCFLOW_JWT_SECRET must be the source's.
      {"api_keys",
       {{"id", id},
        {"user_id", id},
        {"name", text},
        {"prefix", text},
        {"key_hash", text},
        {"created_at", time},
        {"expires_at", time},
        {"last_used_at", time}}},
      {"documents",
       {{"id", id},
        {"owner_id", id},
        {"filename", text},
        {"title", text},
        {"kind", text},
        {"size_bytes", integer},
        {"sha256", text},
        {"status", text},
        {"created_at", time},
        {"updated_at", time},
        {"attempts", integer},
        {"started_at", time},
        {"finished_at", time},
        {"error_code", text},
        {"error_message", text},
        {"error_retryable", boolean},
        {"stage", text}}},
      {"jobs",
       {{"id", id},
        {"document_id", id},
        {"state", text},
        {"attempts", integer},
        {"available_at", time},
        {"lease_token", text},
        {"lease_expires_at", time},
        {"created_at", time},
        {"updated_at", time},
        {"owner_id", id}},
       1,
       true},
      {"results",
       {{"document_id", id},
        {"pipeline_version", text},
        {"started_at", time},
        {"completed_at", time},
        {"attempts", integer},
        {"summary", json},
        {"text", bytes},
        {"text_preview", bytes},
        {"text_bytes", integer}},
       1,
       true},
      {"document_events",
       {{"document_id", id},
        {"seq", integer},
        {"status", text},
        {"at", time},
        {"error", json},
        {"kind", text},
        {"stage", text},
        {"pages_done", integer},
        {"pages_total", integer}},
       2,
       true},
      // After the documents: an answer replayed names its document.
      {"idempotency_keys",
       {{"user_id", id},
        {"key", text},
        {"fingerprint", text},
        {"state", text},
        {"status", integer},
        {"body", text},
        {"content_type", text},
        {"location", text},
        {"created_at", time},
        {"expires_at", time},
        {"claim", text}},
       2},
      // One row per attempt; (scope, key) is what the attempts are counted against.
      {"throttle_attempts", {{"scope", text}, {"key", text}, {"leaves_at", time}}, 2},
      // Webhooks, then the outbox's events (which outlive their document, so
      // they are not copied with it), then the deliveries that name both.
      {"webhooks",
       {{"id", id},
        {"owner_id", id},
        {"url", text},
        {"events", integer},
        {"secret", text},
        {"created_at", time}}},
      {"webhook_events",
       {{"id", id},
        {"type", text},
        {"owner_id", id},
        {"document_id", id},
        {"status", text},
        {"error", json},
        {"created_at", time}}},
      {"webhook_deliveries",
       {{"id", id},
        {"webhook_id", id},
        {"event_id", id},
        {"state", text},
        {"attempts", integer},
        {"available_at", time},
        {"lease_token", text},
        {"lease_expires_at", time},
        {"last_status", integer},
        {"last_error", text},
        {"created_at", time},
        {"updated_at", time},
        {"delivered_at", time}}},
  };
  return all;
}

const table& table_named(std::string_view name) {
  const auto& all = tables();
  const auto it = std::find_if(all.begin(), all.end(), [&](const table& t) { return t.name == name; });
  if (it == all.end()) throw std::out_of_range("no table " + std::string(name) + " to transfer");
  return *it;
}

const std::vector<skipped_table>& not_copied() {
  static const std::vector<skipped_table> all{
      {"schema_migrations", "the target's own migrations record its schema version"},
      {"user_usage", "the target's own triggers count the documents as they are copied"},
      {"uploads",
       "a resumable upload's bytes so far are a partial file of the source's store, which the target cannot "
       "resume: its client starts it again (a finished one's Document is copied)"},
  };
  return all;
}

}  // namespace docflow::store::transfer
