#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"
#include "http/problem.hpp"

namespace docflow::api {

struct services;

/// The request's Idempotency-Key: none, a valid key (1-255 visible ASCII
/// characters), or the 400 problem for an invalid one.
std::variant<std::monostate, std::string, http::problem> idempotency_key(const http::request& req);

/// The fresh claim an action runs under. An action whose effect and answer
/// must survive a crash together (an upload: its document) stores the answer
/// itself in its own transaction and sets `recorded`.
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
/// idempotent uploads. Points: claimed, blob_committed, inserted.
void crash_point(std::string_view point);

}  // namespace docflow::api
