#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "http/message.hpp"
#include "http/router.hpp"

namespace docflow::http {

/// The facts of a parsed request head that the server's rules look at, read
/// off the parser by the socket code (server.cpp), so that the rules
/// themselves are a pure function with unit tests.
struct head_view {
  unsigned version = 11;   ///< 10 for HTTP/1.0, 11 for HTTP/1.1
  bool keep_alive = true;  ///< what the version and Connection ask for
  bool chunked = false;    ///< the last transfer coding is chunked
  std::optional<std::uint64_t> content_length;
  std::size_t content_length_fields = 0;
  std::size_t host_fields = 0;
  std::vector<std::string> transfer_encodings;  ///< each Transfer-Encoding field's value
};

/// What to do with a request whose head has arrived, before reading any of
/// its body.
struct dispatch {
  /// Set: answer this and do not run a handler. Its `close` says whether the
  /// connection must close after it (an unread body, or faulty framing).
  std::optional<response> answer;
  /// Otherwise: the route to run, with the body (when `has_body`) read up to
  /// `body_limit`; `expect_continue` asks for a 100 Continue first.
  const route* found = nullptr;
  /// The route the method and path matched, whether or not it runs (its
  /// response_fields go on the answer either way).
  const route* matched = nullptr;
  /// The route asks for a credential and the request carries a bearer
  /// token: the authenticator checks it before admit().
  std::size_t body_limit = 0;
  bool has_body = false;
  bool expect_continue = false;
  bool has_token = false;
  /// Whether the connection may carry another request after this one.
  bool keep_alive = true;
};

/// Whether a request head (its bytes up to the blank line) continues a field
/// on the next line (obs-fold, RFC 9112 §5.2): a line that starts with a
/// space or a tab. Beast would unfold it and honour the field; a proxy in
/// front might read it otherwise, so the server answers 400 instead.
bool has_obs_fold(std::string_view head) noexcept;

/// The server's first decisions from the head alone, in order: framing
/// (RFC 9112 §6: Content-Length with Transfer-Encoding, a coding list not
/// ending in chunked, a coding other than chunked, HTTP/1.0 with
/// Transfer-Encoding), Host (§3.2) and routing (404, 405 with Allow). Fills
/// req.route and req.params when a route matches. Touches no socket and
/// blocks on nothing.
dispatch decide(const head_view& head, request& req, const router& routes);

/// The rest, for a request decide() left unanswered, once the authenticator
/// checked its bearer token (`presented`; none when decide() found no token
/// to check): the route's auth policy (401, 403; sets req.user), the
/// declared length against the route's limit (413), and Expect:
/// 100-continue. Sets d.found when the handler is to run.
void admit(const head_view& head, request& req, const std::optional<authentication>& presented, dispatch& d);

}  // namespace docflow::http
