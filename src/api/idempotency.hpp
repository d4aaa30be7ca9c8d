#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "core/result.hpp"
#include "http/message.hpp"

namespace docflow::api {

struct services;

/// The request's Idempotency-Key: none, a valid key (1-255 visible ASCII
/// characters), or invalid_request for an invalid one.
core::result<std::optional<std::string>> idempotency_key(const http::request& req);

/// The fresh claim an action runs under. An action whose effect and answer
/// must survive a crash together (an upload: its document) stores the answer
/// itself in its own transaction and sets `recorded`; so does one that found
/// its claim taken over by a retry (whose answer is then the one that counts).
struct idempotent_scope {
  std::string user_id;
  std::string key;
  std::string claim;  ///< the claim's token (store::idempotency_claim::token)
  bool recorded = false;
};

/// Runs `action` at most once per (user, key): a retry with the same
/// `fingerprint` gets the first answer again with Idempotent-Replayed: true;
/// another fingerprint is 422, a request still in flight 409. Answers a retry
/// should repeat (429 and 5xx, or an exception) release the key.
boost::asio::awaitable<http::response> once(
    services& s, const http::request& req, const std::string& key, const std::string& fingerprint,
    const std::function<boost::asio::awaitable<http::response>(idempotent_scope&)>& action);

/// TEST ONLY: when DOCFLOW_TEST_CRASH_AT names `point`, the process kills
/// itself there (SIGKILL, as kill -9 would), for the crash-safety tests of
/// idempotent uploads and of resumable ones. Points: claimed, blob_committed,
/// inserted, upload_received (a resumable upload's last byte recorded, its
/// Document not yet made).
void crash_point(std::string_view point);

}  // namespace docflow::api
