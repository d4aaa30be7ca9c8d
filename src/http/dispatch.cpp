#include "http/dispatch.hpp"

#include "core/encoding.hpp"
#include "http/problem.hpp"

namespace docflow::http {

namespace {

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

// Whether Transfer-Encoding names chunked alone (in any case, over any
// number of field lines): anything more is a coding the server would have to
// undo.
bool only_chunked(const std::vector<std::string>& fields) {
  std::size_t codings = 0;
  for (const std::string_view field : fields) {
    for (std::string_view rest = field; !rest.empty();) {
      const auto comma = rest.find(',');
      const auto coding = core::trim_ows(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (coding.empty()) continue;  // RFC 9110 §5.6.1: empty list elements are ignored
      if (!core::iequals(coding, "chunked") || ++codings > 1) return false;
    }
  }
  return codings == 1;
}

// Applies the route's auth policy (RFC 6750) to what the authenticator
// said of the bearer token: sets req.user, or returns the 401/403 answer
// to send instead of running the handler.
std::optional<response> authorize(const std::optional<authentication>& presented, auth_policy policy,
                                  request& req) {
  if (policy == auth_policy::none) return std::nullopt;
  if (!presented) {
    auto res = make_problem(
        req, unauthorized("This endpoint needs an access token: Authorization: Bearer <token>."));
    res.fields.set("WWW-Authenticate", R"(Bearer realm="docflow")");
    return res;
  }
  if (presented->unavailable) {
    auto res = make_problem(req, service_unavailable("The credential cannot be checked just now; try again "
                                                     "shortly."));
    res.fields.set("Retry-After", "2");
    return res;
  }
  if (!presented->who) {
    auto res = make_problem(
        req, unauthorized("The access token was refused: " + presented->error_description + '.'));
    res.fields.set("WWW-Authenticate",
                   R"(Bearer realm="docflow", error="invalid_token", error_description=")" +
                       presented->error_description + '"');
    return res;
  }
  const auto refuse = [&req](std::string detail) {
    auto res = make_problem(req, forbidden(std::move(detail)));
    res.fields.set("WWW-Authenticate", R"(Bearer realm="docflow", error="insufficient_scope")");
    return res;
  };
  if (policy == auth_policy::session && presented->who->api_key) {
    return refuse("An API key cannot manage API keys or change the account: use an access token.");
  }
  if (policy == auth_policy::admin && !presented->who->admin) {
    return refuse("This endpoint is for administrators.");
  }
  req.user = presented->who;
  return std::nullopt;
}

// An answer after which the connection closes.
response closing(response res) {
  res.close = true;
  return res;
}

}  // namespace

bool has_obs_fold(std::string_view head) noexcept {
  // The request line comes first; every later line that starts with SP or
  // HTAB folds onto the one before.
  for (auto at = head.find("\r\n"); at != std::string_view::npos; at = head.find("\r\n", at + 2)) {
    if (at + 2 < head.size() && (head[at + 2] == ' ' || head[at + 2] == '\t')) return true;
  }
  return false;
}

dispatch decide(const head_view& head, request& req, const router& routes) {
  dispatch d;
  const bool has_te = !head.transfer_encodings.empty();
  // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
  // framing; it may be answered, but the connection must close after it.
  d.keep_alive = head.keep_alive && !(head.version < 11 && has_te);
  d.has_body = head.chunked || head.content_length.value_or(0) > 0;
  if (head.content_length_fields > 0 && has_te) {
    d.answer = closing(make_problem(
        req, bad_request("A request must not carry both Content-Length and Transfer-Encoding.")));
  } else if (has_te && !head.chunked) {
    d.answer =
        closing(make_problem(req, bad_request("A request's Transfer-Encoding must end with chunked.")));
  } else if (has_te && !only_chunked(head.transfer_encodings)) {
    // gzip, chunked: the framing is clear, but a coding we do not undo would reach the handler.
    d.answer = closing(
        make_problem(req, not_implemented("The only transfer coding this server implements is chunked.")));
  } else if (head.host_fields > 1 || (head.version >= 11 && head.host_fields == 0)) {
    d.answer = closing(make_problem(req, bad_request("An HTTP/1.1 request needs exactly one Host header.")));
  }
  if (d.answer) return d;

  auto m = routes.match(req.method, req.path);
  if (!m.found) {
    d.answer = make_problem(req, m.allowed.empty() ? not_found() : method_not_allowed());
    if (!m.allowed.empty()) d.answer->fields.set("Allow", join(m.allowed, ", "));
    d.answer->close = d.has_body;  // the unread body would be taken for the next request
    return d;
  }
  d.matched = m.found;
  req.route = m.found->pattern;
  req.params = std::move(m.params);
  d.has_token = m.found->auth != auth_policy::none && bearer_token(req).has_value();
  return d;
}

void admit(const head_view& head, request& req, const std::optional<authentication>& presented, dispatch& d) {
  if (auto refused = authorize(presented, d.matched->auth, req)) {
    d.answer = std::move(*refused);
    d.answer->close = d.has_body;
    return;
  }
  if (head.content_length.value_or(0) > d.matched->body_limit) {
    d.answer =
        closing(make_problem(req, payload_too_large("The request body exceeds this endpoint's limit of " +
                                                    std::to_string(d.matched->body_limit) + " bytes.")));
    return;
  }
  d.found = d.matched;
  d.body_limit = d.matched->body_limit;
  // RFC 9110 §10.1.1: the expectation is compared case-insensitively.
  const auto expect = req.fields.get("Expect");
  d.expect_continue = d.has_body && expect && core::iequals(*expect, "100-continue");
}

}  // namespace docflow::http
