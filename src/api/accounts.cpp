#include "api/accounts.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "api/request_body.hpp"
#include "api/services.hpp"
#include "auth/jwt.hpp"
#include "auth/password.hpp"
#include "auth/refresh_token.hpp"
#include "auth/throttle.hpp"
#include "config/config.hpp"
#include "core/ids.hpp"
#include "http/blocking_pool.hpp"
#include "http/problem.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "store/database.hpp"

namespace docflow::api::accounts {

namespace {

using boost::asio::awaitable;
using std::chrono::duration_cast;
using std::chrono::seconds;

http::response problem(const http::request& req, const http::problem& p) {
  return http::make_problem(req, p);
}

http::response retry_later(const http::request& req, int status, std::string slug, std::string title,
                           std::string detail, seconds after) {
  auto res = problem(req, {status, std::move(slug), std::move(title), std::move(detail), {}, {}});
  res.fields.set("Retry-After", std::to_string(after.count()));
  return res;
}

http::response busy_hashing(const http::request& req) {
  return retry_later(req, 503, "busy", "Service Unavailable",
                     "Too many password checks are running; retry shortly.", seconds{1});
}

http::response bad_refresh_token(const http::request& req) {
  return problem(req, {401,
                       "invalid-refresh-token",
                       "Unauthorized",
                       "The refresh token is unknown, expired, revoked or already used.",
                       {},
                       {}});
}

void check_credentials(const std::optional<std::string>& username, const std::optional<std::string>& password,
                       std::vector<http::field_error>& errors) {
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

std::variant<credentials, http::problem> read_credentials(const http::request& req) {
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::vector<http::field_error> errors;
  if (media_type(req) == "application/x-www-form-urlencoded") {
    auto form = form_body(req);
    if (auto* p = std::get_if<http::problem>(&form)) {
      return std::move(*p);
    }
    const auto& fields = std::get<0>(form);
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
    if (auto* p = std::get_if<http::problem>(&body)) {
      return std::move(*p);
    }
    const auto& o = std::get<0>(body);
    username = required_string(o, "username", errors);
    password = required_string(o, "password", errors);
  }
  if (!errors.empty()) {
    return http::validation_failed(std::move(errors));
  }
  return credentials{std::move(*username), std::move(*password)};
}

// The refresh_token member of a JSON body; empty string allowed (it is
// simply unknown), missing or non-string is 422.
std::variant<std::string, http::problem> read_refresh_token(const http::request& req) {
  auto body = json_object_body(req);
  if (auto* p = std::get_if<http::problem>(&body)) {
    return std::move(*p);
  }
  std::vector<http::field_error> errors;
  auto token = required_string(std::get<0>(body), "refresh_token", errors);
  if (!token) {
    return http::validation_failed(std::move(errors));
  }
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
  if (!s.cfg.signup_open) {
    co_return problem(req, {403,
                            "signup-closed",
                            "Forbidden",
                            "Registration is closed on this server; ask an administrator for an account.",
                            {},
                            {}});
  }
  auto body = json_object_body(req);
  if (auto* p = std::get_if<http::problem>(&body)) {
    co_return problem(req, *p);
  }
  std::vector<http::field_error> errors;
  const auto& o = std::get<0>(body);
  auto username = required_string(o, "username", errors);
  auto password = required_string(o, "password", errors);
  check_credentials(username, password, errors);
  if (!errors.empty()) {
    co_return problem(req, http::validation_failed(std::move(errors)));
  }
  if (const auto wait = s.signups.begin(req.remote_address)) {
    co_return retry_later(req, 429, "too-many-attempts", "Too Many Requests",
                          "Too many registrations from this address; retry after the time in Retry-After.",
                          *wait);
  }
  auto slot = s.signup_hashing.try_acquire();
  if (!slot) {
    s.signups.abandoned(req.remote_address);
    co_return busy_hashing(req);
  }
  core::user u{core::new_uuid_v7(), *username, {}, core::role::user, s.clock.now()};
  const bool created = co_await s.blocking.run([&s, &u, &password] {
    u.password_hash = s.passwords.hash(*password);
    return s.db.create_user(u);
  });
  if (!created) {
    co_return problem(req,
                      {409, "username-taken", "Conflict", "This username is already registered.", {}, {}});
  }
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
  if (auto* p = std::get_if<http::problem>(&parsed)) {
    co_return problem(req, *p);
  }
  auto& creds = std::get<credentials>(parsed);
  const auto key = core::username_key(creds.username);
  if (const auto wait = s.throttle.begin(key, req.remote_address)) {
    s.metrics.add("auth_logins_total", obs::metrics::label("outcome", "throttled"));
    co_return retry_later(req, 429, "too-many-attempts", "Too Many Requests",
                          "Too many failed logins; retry after the time in Retry-After.", *wait);
  }
  auto slot = s.hashing.try_acquire();
  if (!slot) {
    s.throttle.abandoned(key, req.remote_address);
    s.metrics.add("auth_logins_total", obs::metrics::label("outcome", "busy"));
    co_return busy_hashing(req);
  }
  const auto user = co_await s.blocking.run([&s, &creds]() -> std::optional<core::user> {
    auto found = s.db.find_user_by_name(creds.username);
    const bool ok =
        s.passwords.verify(found ? std::optional(found->password_hash) : std::nullopt, creds.password);
    return ok ? found : std::nullopt;
  });
  slot.reset();
  if (!user) {
    s.metrics.add("auth_logins_total", obs::metrics::label("outcome", "failed"));
    obs::log(obs::level::warn, "auth.login_failed",
             {{"request_id", req.request_id}, {"remote", req.remote_address}});
    co_return problem(
        req, {401, "invalid-credentials", "Unauthorized", "The username or password is wrong.", {}, {}});
  }
  s.throttle.succeeded(key, req.remote_address);
  const auto refresh_token = docflow::auth::new_refresh_token();
  const auto now = s.clock.now();
  co_await s.blocking.run([&] {
    s.db.start_refresh_family({core::new_uuid_v7(), user->id,
                               docflow::auth::refresh_token_hash(refresh_token), now,
                               now + s.cfg.refresh_ttl});
  });
  s.metrics.add("auth_logins_total", obs::metrics::label("outcome", "succeeded"));
  obs::log(obs::level::info, "auth.login_succeeded",
           {{"request_id", req.request_id}, {"user_id", user->id}, {"remote", req.remote_address}});
  co_return token_pair(s, *user, refresh_token);
}

awaitable<http::response> refresh(services& s, http::request& req) {
  auto parsed = read_refresh_token(req);
  if (auto* p = std::get_if<http::problem>(&parsed)) {
    co_return problem(req, *p);
  }
  const auto& presented = std::get<std::string>(parsed);
  if (presented.empty()) {
    co_return bad_refresh_token(req);
  }
  const auto successor = docflow::auth::new_refresh_token();
  const auto now = s.clock.now();
  const auto result = co_await s.blocking.run([&] {
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
  co_return bad_refresh_token(req);
}

awaitable<http::response> logout(services& s, http::request& req) {
  auto parsed = read_refresh_token(req);
  if (auto* p = std::get_if<http::problem>(&parsed)) {
    co_return problem(req, *p);
  }
  const auto hash = docflow::auth::refresh_token_hash(std::get<std::string>(parsed));
  const auto now = s.clock.now();
  co_await s.blocking.run([&] { s.db.revoke_refresh_family(hash, now); });
  co_return http::response::empty(204);
}

awaitable<http::response> me(services& s, http::request& req) {
  const auto id = req.user->user_id;
  const auto user = s.db.find_user(id);  // a primary-key read: inline, as documents::load explains
  if (!user) {
    auto res = problem(req, http::unauthorized("The account behind this token no longer exists."));
    res.fields.set("WWW-Authenticate", R"(Bearer realm="docflow", error="invalid_token")");
    co_return res;
  }
  co_return http::response::json(200, user_json(*user));
}

http::authentication authenticate(services& s, std::string_view token) {
  const auto result = s.tokens.verify(token, s.clock.now());
  if (!result.claims) {
    return {std::nullopt, docflow::auth::describe(result.error)};
  }
  const auto expires_at =
      std::chrono::system_clock::time_point{std::chrono::seconds{result.claims->expires_at}};
  return {http::identity{result.claims->subject, result.claims->role == "admin", expires_at}, {}};
}

void describe_metrics(services& s) {
  s.metrics.describe("auth_logins_total", obs::metrics::kind::counter,
                     "Login attempts by outcome (succeeded, failed, throttled, busy).");
}

}  // namespace docflow::api::accounts
