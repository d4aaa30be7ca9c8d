#include "api/idempotency.hpp"

#include <algorithm>
#include <csignal>
#include <cstdlib>

#include "api/backend.hpp"
#include "api/errors.hpp"
#include "config/config.hpp"
#include "core/crypto.hpp"

namespace docflow::api {

namespace {

bool storable(int status) { return status < 500 && status != 429; }

}  // namespace

core::result<std::optional<std::string>> idempotency_key(const http::request& req) {
  const auto key = req.fields.get("Idempotency-Key");
  if (!key) return std::optional<std::string>();
  const bool valid = !key->empty() && key->size() <= 255 &&
                     std::all_of(key->begin(), key->end(), [](char c) { return c >= 0x21 && c <= 0x7E; });
  if (!valid) {
    return core::error(core::errc::invalid_request,
                       "Idempotency-Key must be 1-255 visible ASCII characters.");
  }
  return std::optional(std::string(*key));
}

void crash_point(std::string_view point) {
  static const char* const armed = std::getenv("DOCFLOW_TEST_CRASH_AT");
  if (armed && point == armed) ::raise(SIGKILL);
}

boost::asio::awaitable<http::response> once(
    services& s, const http::request& req, const std::string& key, const std::string& fingerprint,
    const std::function<boost::asio::awaitable<http::response>(idempotent_scope&)>& action) {
  const auto& user = req.user->user_id;
  const auto print = core::sha256_hex(fingerprint);
  const auto now = s.clock.now();
  const auto claim = co_await backend_call(s, cost::blocking, [&] {
    return s.db.begin_idempotent(user, key, print, now, s.cfg.idempotency_ttl,
                                 s.cfg.idempotency_claim_timeout);
  });
  if (!claim) co_return error_response(req, claim.error());
  if (claim->outcome == store::idempotency_claim::kind::replay) {
    auto res = http::response::text(claim->status, claim->body, claim->content_type);
    if (!claim->location.empty()) res.fields.set("Location", claim->location);
    res.fields.set("Idempotent-Replayed", "true");
    co_return res;
  }
  crash_point("claimed");
  idempotent_scope scope{user, key, claim->token};
  std::exception_ptr failure;
  http::response res;
  try {
    res = co_await action(scope);
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure || !storable(res.status)) {
    co_await backend_call(s, cost::blocking, [&] { s.db.abandon_idempotent(user, key, scope.claim); });
    if (failure) std::rethrow_exception(failure);
    co_return res;
  }
  if (!scope.recorded) {
    const store::idempotent_answer answer{
        user,
        key,
        scope.claim,
        res.status,
        res.body,
        std::string(res.fields.get("Content-Type").value_or("application/json")),
        std::string(res.fields.get("Location").value_or(""))};
    co_await backend_call(s, cost::blocking, [&] { s.db.finish_idempotent(answer); });
  }
  co_return res;
}

}  // namespace docflow::api
