#include "api/routes.hpp"

#include <iterator>

#include "api/accounts.hpp"
#include "api/api_keys.hpp"
#include "api/docs.hpp"
#include "api/documents.hpp"
#include "api/errors.hpp"
#include "api/ops.hpp"
#include "api/processing.hpp"
#include "api/services.hpp"
#include "api/uploads.hpp"
#include "api/webhooks.hpp"
#include "blob/blob_store.hpp"
#include "config/config.hpp"
#include "obs/log.hpp"
#include "store/database.hpp"

namespace docflow::api {

namespace {
constexpr std::size_t no_body = 0;
constexpr std::size_t small_json = 16 * 1024;

ops_context ops_of(services& s) {
  return {s.cfg, s.db, s.blobs, s.metrics, s.blocking, &s.uploads, s.maintenance_leader};
}

// A database or a document storage that cannot be reached (restarting,
// its connections all busy, S3 unreachable or throttling past the client's
// retries) is a wait, not a fault: whichever handler meets it, the client
// hears 503 and when to come back. Whatever the handler had begun rolled
// back with the failed call (each store call is one transaction). A full
// blob store is the upload's to answer (507).
http::response unavailable(const http::request& r, const char* event, const std::exception& e,
                           const char* what) {
  obs::log(obs::level::warn, event, {{"request_id", r.request_id}, {"route", r.route}, {"error", e.what()}});
  core::error refusal(core::errc::unavailable,
                      std::string(what) + " is unavailable just now; try again shortly");
  refusal.retry_after = std::chrono::seconds{2};
  return error_response(r, refusal);
}

template <class Handler>
boost::asio::awaitable<http::response> answer(Handler fn, services& s, http::request& r) {
  try {
    co_return co_await fn(s, r);
  } catch (const store::store_unavailable& e) {
    co_return unavailable(r, "store.unavailable", e, "the database");
  } catch (const blob::blob_error& e) {
    co_return unavailable(r, "storage.unavailable", e, "the document storage");
  }
}

// The table itself. `s` is null only for route_signatures(), whose handlers
// are never called: one list serves both, so they cannot drift apart.
std::vector<http::route> table(services* s, std::size_t upload_limit, std::size_t chunk_limit) {
  using http::auth_policy;
  // Each handler is a free coroutine; the lambdas only bind the services.
  const auto bind = [s](auto fn) { return [s, fn](http::request& r) { return answer(fn, *s, r); }; };
  // The operations endpoints first: the same three that `docflow worker` serves.
  auto out = ops::routes([s] { return ops_of(*s); });
  const auto tus = uploads::response_fields();
  std::vector<http::route> api{
      {"GET", "/openapi.json", bind(docs::asset), auth_policy::none, no_body},
      {"GET", "/docs", bind(docs::asset), auth_policy::none, no_body},
      {"GET", "/docs/{asset}", bind(docs::asset), auth_policy::none, no_body},
      {"POST", "/auth/register", bind(accounts::register_user), auth_policy::none, small_json},
      {"POST", "/auth/login", bind(accounts::login), auth_policy::none, small_json},
      {"POST", "/auth/refresh", bind(accounts::refresh), auth_policy::none, small_json},
      {"POST", "/auth/logout", bind(accounts::logout), auth_policy::none, small_json},
      {"GET", "/auth/me", bind(accounts::me), auth_policy::user, no_body},
      {"POST", "/auth/api-keys", bind(api_keys::create), auth_policy::session, small_json},
      {"GET", "/auth/api-keys", bind(api_keys::list), auth_policy::session, no_body},
      {"DELETE", "/auth/api-keys/{id}", bind(api_keys::remove), auth_policy::session, no_body},
      {"POST", "/documents", bind(documents::upload), auth_policy::user, upload_limit, true},
      {"GET", "/documents", bind(documents::list), auth_policy::user, no_body},
      {"GET", "/documents/{id}", bind(documents::get), auth_policy::user, no_body},
      {"DELETE", "/documents/{id}", bind(documents::remove), auth_policy::user, no_body},
      {"GET", "/documents/{id}/content", bind(documents::content), auth_policy::user, no_body},
      {"POST", "/documents/{id}/process", bind(processing::process), auth_policy::user, small_json},
      {"POST", "/documents/{id}/cancel", bind(processing::cancel), auth_policy::user, no_body},
      {"GET", "/documents/{id}/result", bind(processing::result), auth_policy::user, no_body},
      {"GET", "/documents/{id}/result/text", bind(processing::result_text), auth_policy::user, no_body},
      {"GET", "/documents/{id}/events", bind(processing::events), auth_policy::user, no_body},
      // tus: HEAD /uploads/{id} reaches uploads::status through the GET route.
      {"OPTIONS", "/uploads", bind(uploads::options), auth_policy::none, no_body, false, tus},
      {"POST", "/uploads", bind(uploads::create), auth_policy::user, chunk_limit, true, tus},
      {"GET", "/uploads/{id}", bind(uploads::status), auth_policy::user, no_body, false, tus},
      {"PATCH", "/uploads/{id}", bind(uploads::append), auth_policy::user, chunk_limit, true, tus},
      {"DELETE", "/uploads/{id}", bind(uploads::terminate), auth_policy::user, no_body, false, tus},
      {"POST", "/webhooks", bind(webhook_endpoints::create), auth_policy::user, small_json},
      {"GET", "/webhooks", bind(webhook_endpoints::list), auth_policy::user, no_body},
      {"DELETE", "/webhooks/{id}", bind(webhook_endpoints::remove), auth_policy::user, no_body},
      {"GET", "/webhooks/{id}/deliveries", bind(webhook_endpoints::deliveries), auth_policy::user, no_body},
      {"POST", "/webhooks/{id}/deliveries/{delivery_id}/retry", bind(webhook_endpoints::redeliver),
       auth_policy::user, no_body},
  };
  out.insert(out.end(), std::make_move_iterator(api.begin()), std::make_move_iterator(api.end()));
  return out;
}
}  // namespace

std::vector<http::route> routes(services& s) {
  const auto file_limit = static_cast<std::size_t>(s.cfg.max_upload_bytes);
  return table(&s, file_limit + documents::multipart_framing, file_limit);
}

std::vector<route_signature> route_signatures() {
  std::vector<route_signature> out;
  for (const auto& r : table(nullptr, 0, 0)) out.push_back({r.method, r.pattern});
  return out;
}

void describe_metrics(services& s) {
  ops::describe_metrics(ops_of(s));
  accounts::describe_metrics(s);
  documents::describe_metrics(s);
}

}  // namespace docflow::api
