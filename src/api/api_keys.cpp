#include "api/api_keys.hpp"

#include <algorithm>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "api/backend.hpp"
#include "api/document_json.hpp"
#include "api/errors.hpp"
#include "api/request_body.hpp"
#include "api/services.hpp"
#include "auth/api_key.hpp"
#include "config/config.hpp"
#include "core/ids.hpp"
#include "obs/log.hpp"
#include "store/database.hpp"

namespace docflow::api::api_keys {

namespace {

using boost::asio::awaitable;

constexpr std::size_t max_name_bytes = 100;
constexpr std::int64_t min_lifetime_seconds = 60;
constexpr std::int64_t max_lifetime_seconds = 5LL * 366 * 24 * 3600;
// last_used_at is for people reading the list: to the minute is enough,
// and it spares the database a write per request.
constexpr std::chrono::minutes last_used_resolution{1};

boost::json::object key_json(const store::api_key& k) {
  return {{"id", k.id},
          {"name", k.name},
          {"prefix", k.prefix},
          {"created_at", core::format_rfc3339(k.created_at)},
          {"expires_at", optional_time_json(k.expires_at)},
          {"last_used_at", optional_time_json(k.last_used_at)}};
}

bool printable(std::string_view name) {
  return std::ranges::none_of(name, [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

struct new_key {
  std::string name;
  std::optional<std::chrono::seconds> lifetime;
};

core::result<new_key> read_new_key(const http::request& req) {
  auto body = json_object_body(req);
  if (!body) return body.error();
  std::vector<core::field_error> errors;
  auto name = required_string(*body, "name", errors);
  if (name && (name->empty() || name->size() > max_name_bytes || !printable(*name))) {
    errors.push_back({"name", "must be 1-100 bytes of text without control characters"});
  }
  std::optional<std::chrono::seconds> lifetime;
  if (const auto* e = body->if_contains("expires_in"); e && !e->is_null()) {
    const auto* n = e->if_int64();
    if (!n || *n < min_lifetime_seconds || *n > max_lifetime_seconds) {
      errors.push_back({"expires_in", "must be null or whole seconds from 60 to 158112000 (five years)"});
    } else {
      lifetime = std::chrono::seconds{*n};
    }
  }
  if (!errors.empty()) return core::invalid_fields(std::move(errors));
  return new_key{std::move(*name), lifetime};
}

http::authentication refused(std::string why) { return {std::nullopt, std::move(why)}; }

}  // namespace

awaitable<http::response> create(services& s, http::request& req) {
  auto parsed = read_new_key(req);
  if (!parsed) co_return error_response(req, parsed.error());
  const auto key = docflow::auth::new_api_key();
  store::api_key k{core::new_uuid_v7(),
                   req.user->user_id,
                   std::move(parsed->name),
                   docflow::auth::api_key_prefix(key),
                   s.clock.now(),
                   std::nullopt,
                   std::nullopt};
  if (parsed->lifetime) k.expires_at = k.created_at + *parsed->lifetime;
  const auto hash = s.api_keys.hash(key);
  const auto made =
      co_await backend_call(s, cost::blocking, [&] { return s.db.create_api_key(k, hash, max_per_user); });
  if (!made) {
    co_return error_response(req, {made.error().code, "This account holds " + std::to_string(max_per_user) +
                                                          " API keys, the most it may; delete one first."});
  }
  obs::log(obs::level::info, "auth.api_key_created",
           {{"request_id", req.request_id}, {"user_id", k.user_id}, {"api_key_id", k.id}});
  auto json = key_json(k);
  json.erase("last_used_at");
  json["key"] = key;
  auto res = http::response::json(201, json);
  res.fields.set("Cache-Control", "no-store");
  co_return res;
}

awaitable<http::response> list(services& s, http::request& req) {
  const auto& user = req.user->user_id;
  const auto keys = co_await backend_call(s, cost::blocking, [&] { return s.db.list_api_keys(user); });
  boost::json::array items;
  for (const auto& k : keys) items.push_back(key_json(k));
  co_return http::response::json(200, boost::json::object{{"items", std::move(items)}});
}

awaitable<http::response> remove(services& s, http::request& req) {
  const std::string id(req.param("id"));
  const auto& user = req.user->user_id;
  const bool removed = core::is_uuid(id) && co_await backend_call(s, cost::blocking, [&] {
                         return s.db.delete_api_key(id, user);
                       });
  if (!removed) {
    co_return error_response(req,
                             {core::errc::not_found, "No API key with this id exists for this account."});
  }
  obs::log(obs::level::info, "auth.api_key_revoked",
           {{"request_id", req.request_id}, {"user_id", user}, {"api_key_id", id}});
  co_return http::response::empty(204);
}

awaitable<http::authentication> authenticate(services& s, std::string_view key) {
  const auto now = s.clock.now();
  const auto find = [&s](const std::string& hash) {
    return backend_call(s, cost::point_read, [&s, &hash] { return s.db.find_api_key(hash); });
  };
  const auto hash = s.api_keys.hash(key);
  auto found = co_await find(hash);
  if (!found) {
    // Stored under the signing secret being rotated out: stored again under
    // the current one, so that the old secret can go.
    if (const auto old = s.api_keys.previous_hash(key)) {
      found = co_await find(*old);
      if (found) {
        const auto& id = found->key.id;
        co_await backend_call(s, cost::blocking, [&] { s.db.rehash_api_key(id, hash); });
      }
    }
  }
  if (!found) co_return refused("the API key is unknown or was revoked");
  const auto& k = found->key;
  if (k.expires_at && *k.expires_at <= now) co_return refused("the API key has expired");
  if (!k.last_used_at || *k.last_used_at <= now - last_used_resolution) {
    co_await backend_call(s, cost::blocking, [&] { s.db.touch_api_key(k.id, now, last_used_resolution); });
  }
  // A key may live for years: what it opens for long (an event stream) ends
  // within an access token's lifetime all the same, and the client's
  // reconnection checks the key again, so a revocation reaches it too.
  const auto recheck_at = std::min(k.expires_at.value_or(core::time_point::max()), now + s.cfg.access_ttl);
  co_return http::authentication{
      http::identity{found->user.id, found->user.role == core::role::admin, recheck_at, true}, {}};
}

}  // namespace docflow::api::api_keys
