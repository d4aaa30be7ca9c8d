#include "api/accounts.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "api/api_keys.hpp"
#include "api/backend.hpp"
#include "api/document_json.hpp"
#include "api/errors.hpp"
#include "api/request_body.hpp"
#include "api/services.hpp"
#include "api/throttle.hpp"
#include "auth/api_key.hpp"
#include "auth/jwt.hpp"
#include "auth/password.hpp"
#include "auth/refresh_token.hpp"
#include "config/config.hpp"
#include "core/ids.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "store/database.hpp"

namespace docflow::api::accounts {

namespace {

using boost::asio::awaitable;
using std::chrono::duration_cast;
using std::chrono::seconds;

core::error too_many_attempts(std::string detail, seconds wait) {
  core::error e(core::errc::too_many_attempts, std::move(detail));
  e.retry_after = wait;
  return e;
}

void check_credentials(const std::optional<std::string>& username, const std::optional<std::string>& password,
                       std::vector<core::field_error>& errors) {
  if (username && !core::valid_username(*username)) {
    errors.push_back({"username", "must be 3-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"});
  }
  if (password && !core::valid_password_length(*password)) {
    errors.push_back({"password", "must be 8-1024 characters"});
  }
}

// Username and password from a JSON body or an OAuth2 password-grant form.
struct credentials {
  std::string username;
  std::string password;
};

core::result<credentials> read_credentials(const http::request& req) {
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::vector<core::field_error> errors;
  if (media_type(req) == "application/x-www-form-urlencoded") {
    auto form = form_body(req);
    if (!form) return form.error();
    const auto& fields = *form;
    const auto field = [&](std::string_view name) -> std::optional<std::string> {
      const auto it = fields.find(name);
      if (it == fields.end()) {
        errors.push_back({std::string(name), "is required"});
        return std::nullopt;
      }
      return it->second;
    };
    const auto grant = field("grant_type");
    if (grant && *grant != "password") {
      errors.push_back({"grant_type", "must be password"});
    }
    username = field("username");
    password = field("password");
  } else {
    auto body = json_object_body(req);
    if (!body) return body.error();
    username = required_string(*body, "username", errors);
    password = required_string(*body, "password", errors);
  }
  if (!errors.empty()) return core::invalid_fields(std::move(errors));
  return credentials{std::move(*username), std::move(*password)};
}

// The refresh_token member of a JSON body; empty string allowed (it is
// simply unknown), missing or non-string is 422.
core::result<std::string> read_refresh_token(const http::request& req) {
  auto body = json_object_body(req);
  if (!body) return body.error();
  std::vector<core::field_error> errors;
  auto token = required_string(*body, "refresh_token", errors);
  if (!token) return core::invalid_fields(std::move(errors));
  return std::move(*token);
}

// Issues an access token and a refresh token; `family` is set when the
// refresh token continues an existing login.
http::response token_pair(services& s, const core::user& u, const std::string& refresh_token) {
  const auto access_ttl = duration_cast<seconds>(s.cfg.access_ttl);
  const auto access = s.tokens.issue(u.id, core::to_string(u.role), s.clock.now(), access_ttl);
  auto res = http::response::json(
      200, boost::json::object{{"access_token", access},
                               {"refresh_token", refresh_token},
                               {"token_type", "bearer"},
                               {"expires_in", access_ttl.count()},
                               {"refresh_expires_in", duration_cast<seconds>(s.cfg.refresh_ttl).count()}});
  res.fields.set("Cache-Control", "no-store");  // RFC 6749 §5.1
  return res;
}

boost::json::object user_json(const core::user& u) {
  return {{"id", u.id}, {"username", u.username}, {"role", core::to_string(u.role)}};
}

}  // namespace

awaitable<http::response> register_user(services& s, http::request& req) {
  if (!s.cfg.signup_open) co_return error_response(req, core::errc::signup_closed);
  auto body = json_object_body(req);
  if (!body) co_return error_response(req, body.error());
  std::vector<core::field_error> errors;
  auto username = required_string(*body, "username", errors);
  auto password = required_string(*body, "password", errors);
  check_credentials(username, password, errors);
  if (!errors.empty()) co_return error_response(req, core::invalid_fields(std::move(errors)));
  // A hashing slot first, as for logins (below).
  const auto& address = req.remote_address;
  const auto throttled = [&req](seconds wait) {
    return error_response(
        req, too_many_attempts(
                 "Too many registrations from this address; retry after the time in Retry-After.", wait));
  };
  auto slot = s.signup_hashing.try_acquire();
  if (!slot) {
    if (const auto wait = co_await backend_call(s, cost::point_read,
                                                [&s, &address] { return s.signups.retry_after(address); })) {
      co_return throttled(*wait);
    }
    co_return error_response(req, core::errc::hashing_busy);
  }
  if (const auto wait =
          co_await backend_call(s, cost::blocking, [&s, &address] { return s.signups.begin(address); })) {
    co_return throttled(*wait);
  }
  core::user u{core::new_uuid_v7(), *username, {}, core::role::user, s.clock.now()};
  const auto created = co_await backend_call(s, cost::blocking, [&s, &u, &password] {
    u.password_hash = s.passwords.hash(*password);
    return s.db.create_user(u);
  });
  if (!created) co_return error_response(req, created.error());
  obs::log(obs::level::info, "auth.registered",
           {{"request_id", req.request_id}, {"user_id", u.id}, {"remote", req.remote_address}});
  auto json = user_json(u);
  json["created_at"] = core::format_rfc3339(u.created_at);
  auto res = http::response::json(201, json);
  res.fields.set("Location", "/auth/me");
  co_return res;
}

awaitable<http::response> login(services& s, http::request& req) {
  auto parsed = read_credentials(req);
  if (!parsed) co_return error_response(req, parsed.error());
  auto& creds = *parsed;
  const auto key = core::username_key(creds.username);
  const auto& address = req.remote_address;
  const auto throttled = [&s, &req](seconds wait) {
    s.metrics.add("docflow_auth_logins_total", obs::metrics::label("outcome", "throttled"));
    return error_response(
        req, too_many_attempts("Too many failed logins; retry after the time in Retry-After.", wait));
  };
  // The hashing slot comes before the count: an attempt turned away for
  // want of one (503) is never counted. Counted first and taken back a
  // database call later, a burst of 20 such attempts held 5 counts at once
  // and turned correct logins away with 429. Throttled still outranks busy.
  auto slot = s.hashing.try_acquire();
  if (!slot) {
    if (const auto wait = co_await backend_call(
            s, cost::point_read, [&s, &key, &address] { return s.throttle.retry_after(key, address); })) {
      co_return throttled(*wait);
    }
    s.metrics.add("docflow_auth_logins_total", obs::metrics::label("outcome", "busy"));
    co_return error_response(req, core::errc::hashing_busy);
  }
  if (const auto wait = co_await backend_call(
          s, cost::blocking, [&s, &key, &address] { return s.throttle.begin(key, address); })) {
    co_return throttled(*wait);
  }
  const auto user = co_await backend_call(s, cost::blocking, [&s, &creds]() -> std::optional<core::user> {
    auto found = s.db.find_user_by_name(creds.username);
    const bool ok =
        s.passwords.verify(found ? std::optional(found->password_hash) : std::nullopt, creds.password);
    return ok ? found : std::nullopt;
  });
  slot.reset();
  if (!user) {
    s.metrics.add("docflow_auth_logins_total", obs::metrics::label("outcome", "failed"));
    obs::log(obs::level::warn, "auth.login_failed",
             {{"request_id", req.request_id}, {"remote", req.remote_address}});
    co_return error_response(req, core::errc::invalid_credentials);
  }
  const auto refresh_token = docflow::auth::new_refresh_token();
  const auto now = s.clock.now();
  co_await backend_call(s, cost::blocking, [&] {
    s.throttle.succeeded(key, address);
    s.db.start_refresh_family({core::new_uuid_v7(), user->id,
                               docflow::auth::refresh_token_hash(refresh_token), now,
                               now + s.cfg.refresh_ttl});
  });
  s.metrics.add("docflow_auth_logins_total", obs::metrics::label("outcome", "succeeded"));
  obs::log(obs::level::info, "auth.login_succeeded",
           {{"request_id", req.request_id}, {"user_id", user->id}, {"remote", req.remote_address}});
  co_return token_pair(s, *user, refresh_token);
}

awaitable<http::response> refresh(services& s, http::request& req) {
  auto parsed = read_refresh_token(req);
  if (!parsed) co_return error_response(req, parsed.error());
  const auto& presented = *parsed;
  if (presented.empty()) co_return error_response(req, core::errc::invalid_refresh_token);
  const auto successor = docflow::auth::new_refresh_token();
  const auto now = s.clock.now();
  const auto result = co_await backend_call(s, cost::blocking, [&] {
    return s.db.rotate_refresh_token(
        docflow::auth::refresh_token_hash(presented),
        {{}, {}, docflow::auth::refresh_token_hash(successor), now, now + s.cfg.refresh_ttl},
        s.cfg.refresh_reuse_grace);
  });
  switch (result.decision) {
    case core::rotation_decision::rotate: co_return token_pair(s, *result.user, successor);
    case core::rotation_decision::reuse_detected:
      obs::log(obs::level::warn, "auth.refresh_reuse_detected",
               {{"request_id", req.request_id}, {"remote", req.remote_address}});
      break;
    case core::rotation_decision::reject: break;
  }
  co_return error_response(req, core::errc::invalid_refresh_token);
}

awaitable<http::response> logout(services& s, http::request& req) {
  auto parsed = read_refresh_token(req);
  if (!parsed) co_return error_response(req, parsed.error());
  const auto hash = docflow::auth::refresh_token_hash(*parsed);
  const auto now = s.clock.now();
  co_await backend_call(s, cost::blocking, [&] { s.db.revoke_refresh_family(hash, now); });
  co_return http::response::empty(204);
}

awaitable<http::response> me(services& s, http::request& req) {
  const auto id = req.user->user_id;
  const auto user = co_await backend_call(s, cost::point_read, [&s, &id] { return s.db.find_user(id); });
  if (!user) co_return error_response(req, core::errc::account_gone);
  const auto quota = co_await backend_call(s, cost::point_read, [&s, &id] { return s.db.find_quota(id); });
  auto json = user_json(*user);
  for (auto& [name, value] : quota_json(quota)) json[name] = std::move(value);
  co_return http::response::json(200, json);
}

awaitable<http::authentication> authenticate(services& s, std::string_view token) {
  const bool key = docflow::auth::looks_like_api_key(token);
  http::authentication out;
  if (key) {
    try {
      out = co_await api_keys::authenticate(s, token);
    } catch (const store::store_unavailable& e) {
      obs::log(obs::level::warn, "auth.api_key_unchecked", {{"error", e.what()}});
      out.unavailable = true;
    }
  } else {
    const auto result = s.tokens.verify(token, s.clock.now());
    if (result.claims) {
      out.who = http::identity{
          result.claims->subject, result.claims->role == "admin",
          std::chrono::system_clock::time_point{std::chrono::seconds{result.claims->expires_at}}};
    } else {
      out.error_description = docflow::auth::describe(result.error);
    }
  }
  const char* outcome = out.who ? "accepted" : out.unavailable ? "unavailable" : "refused";
  s.metrics.add("docflow_auth_requests_total",
                obs::metrics::label("method", key ? "api_key" : "access_token") + ',' +
                    obs::metrics::label("outcome", outcome));
  co_return out;
}

void describe_metrics(services& s) {
  s.metrics.describe("docflow_auth_logins_total", obs::metrics::kind::counter,
                     "Login attempts by outcome (succeeded, failed, throttled, busy).");
  s.metrics.describe("docflow_auth_requests_total", obs::metrics::kind::counter,
                     "Bearer credentials checked, by method (access_token, api_key) and outcome (accepted, "
                     "refused, unavailable).");
}

}  // namespace docflow::api::accounts
