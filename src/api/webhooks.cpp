#include "api/webhooks.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "api/access.hpp"
#include "api/backend.hpp"
#include "api/cursor.hpp"
#include "api/document_json.hpp"
#include "api/errors.hpp"
#include "api/request_body.hpp"
#include "api/services.hpp"
#include "config/config.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"
#include "obs/log.hpp"
#include "store/database.hpp"
#include "webhooks/target.hpp"

namespace docflow::api::webhook_endpoints {

namespace {

using boost::asio::awaitable;

core::error no_such_webhook() {
  return {core::errc::not_found, "No webhook with this id exists for this account."};
}

boost::json::array event_names(unsigned mask) {
  boost::json::array out;
  for (const auto e : core::all_webhook_events()) {
    if ((mask & core::bit(e)) != 0) out.emplace_back(core::to_string(e));
  }
  return out;
}

boost::json::object webhook_json(const store::webhook& w) {
  return {{"id", w.id},
          {"url", w.url},
          {"events", event_names(w.events)},
          {"created_at", core::format_rfc3339(w.created_at)}};
}

boost::json::object delivery_json(const store::webhook_delivery& d) {
  // A delivery being sent is still pending to its owner: it has not
  // reached the endpoint yet, and may not.
  const bool pending = d.state == "pending" || d.state == "sending";
  boost::json::object o{
      {"id", d.id},
      {"webhook_id", d.webhook_id},
      {"event_id", d.event.id},
      {"event_type", core::to_string(d.event.type)},
      {"document_id", d.event.document_id},
      {"status", pending ? "pending" : d.state},
      {"attempts", d.attempts},
      {"last_status_code", nullptr},
      {"last_error", nullptr},
      {"next_attempt_at", optional_time_json(pending ? std::optional(d.available_at) : std::nullopt)},
      {"created_at", core::format_rfc3339(d.created_at)},
      {"delivered_at", optional_time_json(d.delivered_at)}};
  if (d.last_status) o["last_status_code"] = *d.last_status;
  if (d.last_error) o["last_error"] = *d.last_error;
  return o;
}

// "whsec_" and 32 random bytes: what the user copies into their receiver.
std::string new_secret() {
  std::string bytes(32, '\0');
  core::random_bytes(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size());
  return "whsec_" + core::base64url_encode(bytes);
}

// The events member: a non-empty array of distinct known names, as a mask.
std::optional<unsigned> read_events(const boost::json::object& body, std::vector<core::field_error>& errors) {
  const auto* v = body.if_contains("events");
  if (v == nullptr) {
    errors.push_back({"events", "is required"});
    return std::nullopt;
  }
  const auto* list = v->if_array();
  if (list == nullptr || list->empty()) {
    errors.push_back({"events", "must be a non-empty array of event types"});
    return std::nullopt;
  }
  unsigned mask = 0;
  for (const auto& item : *list) {
    const auto* name = item.if_string();
    const auto e = name != nullptr ? core::parse_webhook_event(*name) : std::nullopt;
    if (!e) {
      errors.push_back(
          {"events", "must hold only document.uploaded, document.completed and document.failed"});
      return std::nullopt;
    }
    if ((mask & core::bit(*e)) != 0) {
      errors.push_back({"events", "must not name an event type twice"});
      return std::nullopt;
    }
    mask |= core::bit(*e);
  }
  return mask;
}

// The webhook named by the path's {id}, when it is the caller's.
awaitable<std::optional<store::webhook>> caller_webhook(services& s, const http::request& req) {
  const std::string id(req.param("id"));
  if (!core::is_uuid(id)) co_return std::nullopt;
  const auto& owner = req.user->user_id;
  co_return co_await backend_call(s, cost::point_read,
                                  [&s, &id, &owner] { return s.db.find_webhook(id, owner); });
}

}  // namespace

awaitable<http::response> create(services& s, http::request& req) {
  auto body = json_object_body(req);
  if (!body) co_return error_response(req, body.error());
  std::vector<core::field_error> errors;
  auto url = required_string(*body, "url", errors);
  std::optional<webhooks::target> target;
  if (url) {
    std::string why;
    target = webhooks::parse_target(*url, why);
    if (!target) errors.push_back({"url", why});
  }
  const auto events = read_events(*body, errors);
  if (!errors.empty()) co_return error_response(req, core::invalid_fields(std::move(errors)));
  // The address check every attempt makes again, here so that a mistake
  // (or a probe of the internal network) is refused at once.
  const auto& allowed = s.cfg.webhook_allowed_networks;
  const auto resolved = co_await backend_call(
      s, cost::blocking, [&target, &allowed] { return webhooks::resolve(*target, allowed); });
  if (!resolved.resolved()) {
    co_return error_response(
        req, core::invalid_fields({{"url", "its host " + target->host + " does not resolve"}}));
  }
  if (resolved.allowed.empty()) {
    co_return error_response(
        req, core::invalid_fields({{"url",
                                    "its host resolves only to loopback, private, link-local or other "
                                    "special-purpose addresses (" +
                                        resolved.refused.front().to_string() +
                                        "), which webhooks may not reach unless the server allows them "
                                        "(DOCFLOW_WEBHOOK_ALLOWED_NETWORKS)"}}));
  }
  store::webhook w{core::new_uuid_v7(), req.user->user_id, *url, *events, new_secret(), s.clock.now()};
  const auto created =
      co_await backend_call(s, cost::blocking, [&s, &w] { return s.db.create_webhook(w, max_per_user); });
  if (!created) {
    co_return error_response(
        req, {created.error().code, "This account has " + std::to_string(max_per_user) +
                                        " webhooks, the most it may register; delete one first."});
  }
  obs::log(obs::level::info, "webhook.created",
           {{"request_id", req.request_id}, {"user_id", w.owner_id}, {"webhook_id", w.id}});
  auto json = webhook_json(w);
  json["secret"] = w.secret;
  auto res = http::response::json(201, json);
  res.fields.set("Location", "/webhooks/" + w.id);
  res.fields.set("Cache-Control", "no-store");  // the secret is shown this once
  co_return res;
}

awaitable<http::response> list(services& s, http::request& req) {
  const auto& owner = req.user->user_id;
  const auto hooks =
      co_await backend_call(s, cost::point_read, [&s, &owner] { return s.db.list_webhooks(owner); });
  boost::json::array items;
  for (const auto& w : hooks) items.push_back(webhook_json(w));
  co_return http::response::json(200, boost::json::object{{"items", std::move(items)}});
}

awaitable<http::response> remove(services& s, http::request& req) {
  const std::string id(req.param("id"));
  const auto& owner = req.user->user_id;
  if (!core::is_uuid(id)) co_return error_response(req, no_such_webhook());
  const bool removed =
      co_await backend_call(s, cost::blocking, [&s, &id, &owner] { return s.db.delete_webhook(id, owner); });
  if (!removed) co_return error_response(req, no_such_webhook());
  obs::log(obs::level::info, "webhook.deleted",
           {{"request_id", req.request_id}, {"user_id", owner}, {"webhook_id", id}});
  co_return http::response::empty(204);
}

awaitable<http::response> deliveries(services& s, http::request& req) {
  const auto page = read_page_request(req.query, s.cursors);
  if (!page) co_return error_response(req, page.error());
  store::delivery_query q;
  q.limit = page->limit;
  q.after = page->after;
  const auto hook = co_await caller_webhook(s, req);
  if (!hook) co_return error_response(req, no_such_webhook());
  q.webhook_id = hook->id;
  q.owner_id = hook->owner_id;
  const auto page_size = q.limit;
  ++q.limit;  // one more tells whether a next page exists
  auto found = co_await backend_call(s, cost::point_read, [&s, &q] { return s.db.list_deliveries(q); });
  const auto next = close_page(found, page_size, s.cursors);
  boost::json::array items;
  for (const auto& d : found) items.push_back(delivery_json(d));
  co_return http::response::json(
      200, boost::json::object{{"items", std::move(items)},
                               {"next_cursor", next ? boost::json::value(*next) : nullptr}});
}

awaitable<http::response> redeliver(services& s, http::request& req) {
  const std::string id(req.param("id"));
  const std::string delivery_id(req.param("delivery_id"));
  const auto& owner = req.user->user_id;
  if (!core::is_uuid(id) || !core::is_uuid(delivery_id)) co_return error_response(req, no_such_webhook());
  const auto new_id = core::new_uuid_v7();
  const auto now = s.clock.now();
  const auto made = co_await backend_call(
      s, cost::blocking, [&] { return s.db.redeliver(id, delivery_id, owner, new_id, now); });
  if (!made) {
    co_return error_response(req,
                             {core::errc::not_found, "No delivery with this id exists for this webhook."});
  }
  obs::log(obs::level::info, "webhook.redelivery",
           {{"request_id", req.request_id},
            {"webhook_id", id},
            {"delivery_id", made->id},
            {"event_id", made->event.id}});
  co_return http::response::json(202, delivery_json(*made));
}

}  // namespace docflow::api::webhook_endpoints
