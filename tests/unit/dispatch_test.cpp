// The server's decisions from a request head alone (http::decide): framing,
// Host, routing, auth, the declared length and 100-continue. No sockets.
#include <gtest/gtest.h>

#include <string>

#include "http/dispatch.hpp"

using namespace docflow;

namespace {

http::route make_route(std::string method, std::string pattern, http::auth_policy auth, std::size_t limit) {
  http::route r;
  r.method = std::move(method);
  r.pattern = std::move(pattern);
  r.auth = auth;
  r.body_limit = limit;
  return r;
}

const http::router& routes() {
  static const http::router r({make_route("GET", "/healthz", http::auth_policy::none, 0),
                               make_route("POST", "/auth/login", http::auth_policy::none, 16 * 1024),
                               make_route("GET", "/documents/{id}", http::auth_policy::user, 0),
                               make_route("POST", "/documents", http::auth_policy::user, 1 << 20),
                               make_route("POST", "/admin", http::auth_policy::admin, 0),
                               make_route("GET", "/keys", http::auth_policy::session, 0)});
  return r;
}

http::authentication authenticate(std::string_view token) {
  if (token == "user-token") return {http::identity{"u1", false}, {}};
  if (token == "admin-token") return {http::identity{"a1", true}, {}};
  if (token == "admin-key") {
    return {http::identity{"a1", true, std::chrono::system_clock::time_point::max(), true}, {}};
  }
  if (token == "unreachable") return {std::nullopt, {}, true};
  return {std::nullopt, "the token is not valid"};
}

struct exchange {
  http::head_view head;
  http::request req;

  exchange(std::string method, std::string path) {
    req.method = std::move(method);
    req.path = std::move(path);
    req.request_id = "test-request";
    head.host_fields = 1;
  }
  exchange& header(const std::string& name, const std::string& value) {
    req.fields.add(name, value);
    return *this;
  }
  exchange& length(std::uint64_t n) {
    head.content_length = n;
    head.content_length_fields = 1;
    return *this;
  }
  exchange& coding(const std::string& value, bool ends_chunked) {
    head.transfer_encodings.push_back(value);
    head.chunked = ends_chunked;
    return *this;
  }
  // Both steps, as the server takes them, with a synchronous authenticator.
  http::dispatch decide() {
    auto d = http::decide(head, req, routes());
    if (d.answer) return d;
    std::optional<http::authentication> presented;
    if (d.has_token) presented = authenticate(*http::bearer_token(req));
    http::admit(head, req, presented, d);
    return d;
  }
};

void expect_answer(const http::dispatch& d, int status, bool close) {
  ASSERT_TRUE(d.answer.has_value());
  EXPECT_EQ(d.answer->status, status);
  EXPECT_EQ(d.answer->close, close) << status;
  EXPECT_EQ(d.found, nullptr);
}

TEST(dispatch, a_plain_request_runs_its_route) {
  exchange x("GET", "/healthz");
  const auto d = x.decide();
  ASSERT_FALSE(d.answer.has_value());
  ASSERT_NE(d.found, nullptr);
  EXPECT_EQ(d.found->pattern, "/healthz");
  EXPECT_FALSE(d.has_body);
  EXPECT_TRUE(d.keep_alive);
  EXPECT_EQ(x.req.route, "/healthz");
}

TEST(dispatch, content_length_with_transfer_encoding_is_400_and_closes) {
  exchange x("POST", "/auth/login");
  x.length(5).coding("chunked", true);
  expect_answer(x.decide(), 400, true);
}

TEST(dispatch, a_coding_list_not_ending_in_chunked_is_400_and_closes) {
  for (const char* te : {"gzip", "chunked, gzip", "identity", "chunked, chunked"}) {
    exchange x("POST", "/auth/login");
    x.coding(te, false);  // Beast: the last coding is not a single chunked
    expect_answer(x.decide(), 400, true);
  }
}

TEST(dispatch, a_coding_besides_chunked_is_501_and_closes) {
  for (const char* te : {"gzip, chunked", "deflate,chunked", "x-custom , Chunked"}) {
    exchange x("POST", "/auth/login");
    x.coding(te, true);
    const auto d = x.decide();
    expect_answer(d, 501, true);
  }
  exchange split("POST", "/auth/login");  // two field lines: gzip, then chunked
  split.coding("gzip", true).coding("chunked", true);
  expect_answer(split.decide(), 501, true);
}

TEST(dispatch, chunked_alone_in_any_case_is_read) {
  for (const char* te : {"chunked", "CHUNKED", " chunked , "}) {
    exchange x("POST", "/auth/login");
    x.coding(te, true);
    const auto d = x.decide();
    ASSERT_FALSE(d.answer.has_value()) << te;
    EXPECT_TRUE(d.has_body);
    EXPECT_EQ(d.body_limit, 16u * 1024);
  }
}

TEST(dispatch, http_1_0_with_transfer_encoding_is_answered_then_closed) {
  exchange x("POST", "/auth/login");
  x.head.version = 10;
  x.head.keep_alive = true;  // it asked for keep-alive
  x.coding("chunked", true);
  const auto d = x.decide();
  EXPECT_FALSE(d.answer.has_value());
  EXPECT_FALSE(d.keep_alive);
}

TEST(dispatch, host_rules_of_http_1_1) {
  exchange none("GET", "/healthz");
  none.head.host_fields = 0;
  expect_answer(none.decide(), 400, true);
  exchange two("GET", "/healthz");
  two.head.host_fields = 2;
  expect_answer(two.decide(), 400, true);
  exchange old("GET", "/healthz");  // HTTP/1.0 needs none
  old.head.version = 10;
  old.head.host_fields = 0;
  EXPECT_FALSE(old.decide().answer.has_value());
}

TEST(dispatch, unknown_path_is_404_and_closes_only_with_a_body) {
  exchange x("GET", "/nope");
  expect_answer(x.decide(), 404, false);
  exchange with_body("POST", "/nope");
  with_body.length(10);
  expect_answer(with_body.decide(), 404, true);
}

TEST(dispatch, wrong_method_is_405_with_allow) {
  exchange x("DELETE", "/healthz");
  const auto d = x.decide();
  expect_answer(d, 405, false);
  EXPECT_EQ(d.answer->fields.get("Allow").value_or(""), "GET, HEAD");
}

TEST(dispatch, auth_policies) {
  exchange missing("GET", "/documents/1");
  expect_answer(missing.decide(), 401, false);
  exchange bad("GET", "/documents/1");
  bad.header("Authorization", "Bearer forged");
  const auto refused = bad.decide();
  expect_answer(refused, 401, false);
  EXPECT_NE(refused.answer->fields.get("WWW-Authenticate").value_or("").find("invalid_token"),
            std::string::npos);
  exchange user("GET", "/documents/1");
  user.header("Authorization", "Bearer user-token");
  const auto ok = user.decide();
  EXPECT_FALSE(ok.answer.has_value());
  ASSERT_TRUE(user.req.user.has_value());
  EXPECT_EQ(user.req.user->user_id, "u1");
  EXPECT_EQ(user.req.param("id"), "1");
  exchange not_admin("POST", "/admin");
  not_admin.header("Authorization", "Bearer user-token");
  expect_answer(not_admin.decide(), 403, false);
  exchange admin("POST", "/admin");
  admin.header("Authorization", "Bearer admin-token");
  EXPECT_FALSE(admin.decide().answer.has_value());
}

// The route a refusal answers for is known, so that the server can put its
// response_fields on the refusal too; a path no route has matches none.
TEST(dispatch, a_refused_request_still_names_the_route_it_matched) {
  exchange missing("GET", "/documents/1");
  const auto refused = missing.decide();
  expect_answer(refused, 401, false);
  ASSERT_NE(refused.matched, nullptr);
  EXPECT_EQ(refused.matched->pattern, "/documents/{id}");
  EXPECT_EQ(refused.found, nullptr);
  exchange unknown("GET", "/nowhere");
  EXPECT_EQ(unknown.decide().matched, nullptr);
  exchange wrong_method("DELETE", "/healthz");
  EXPECT_EQ(wrong_method.decide().matched, nullptr);
}

// An API key acts as its user everywhere but where keys are managed and
// the account changes; admin routes follow the user's role.
TEST(dispatch, an_api_key_is_refused_where_only_a_session_may_go) {
  exchange key("GET", "/keys");
  key.header("Authorization", "Bearer admin-key");
  const auto refused = key.decide();
  expect_answer(refused, 403, false);
  EXPECT_NE(refused.answer->fields.get("WWW-Authenticate").value_or("").find("insufficient_scope"),
            std::string::npos);
  EXPECT_FALSE(key.req.user.has_value());
  exchange token("GET", "/keys");
  token.header("Authorization", "Bearer admin-token");
  EXPECT_FALSE(token.decide().answer.has_value());
  exchange admin("POST", "/admin");
  admin.header("Authorization", "Bearer admin-key");
  EXPECT_FALSE(admin.decide().answer.has_value());
  ASSERT_TRUE(admin.req.user.has_value());
  EXPECT_TRUE(admin.req.user->api_key);
}

TEST(dispatch, a_credential_that_cannot_be_checked_is_503_not_401) {
  exchange x("GET", "/documents/1");
  x.header("Authorization", "Bearer unreachable");
  const auto d = x.decide();
  expect_answer(d, 503, false);
  EXPECT_EQ(d.answer->fields.get("Retry-After").value_or(""), "2");
  EXPECT_FALSE(x.req.user.has_value());
}

TEST(dispatch, an_unauthorised_request_with_a_body_closes) {
  exchange x("POST", "/documents");
  x.length(100);
  expect_answer(x.decide(), 401, true);
}

TEST(dispatch, a_declared_length_over_the_limit_is_413_before_the_body) {
  exchange over("POST", "/auth/login");
  over.length(16 * 1024 + 1);
  expect_answer(over.decide(), 413, true);
  exchange at("POST", "/auth/login");
  at.length(16 * 1024);
  EXPECT_FALSE(at.decide().answer.has_value());
  exchange none("GET", "/healthz");  // a body where none is taken
  none.length(1);
  expect_answer(none.decide(), 413, true);
}

TEST(dispatch, continue_only_when_there_is_a_body_to_read) {
  exchange x("POST", "/auth/login");
  x.length(10).header("Expect", "100-Continue");
  EXPECT_TRUE(x.decide().expect_continue);
  exchange empty("POST", "/auth/login");
  empty.length(0).header("Expect", "100-continue");
  EXPECT_FALSE(empty.decide().expect_continue);
  exchange refused("POST", "/documents");  // no token: 401, never 100
  refused.length(10).header("Expect", "100-continue");
  const auto d = refused.decide();
  EXPECT_FALSE(d.expect_continue);
  expect_answer(d, 401, true);
}

TEST(dispatch, obs_fold_is_found_in_any_field) {
  EXPECT_TRUE(http::has_obs_fold("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n"));
  EXPECT_TRUE(http::has_obs_fold("POST / HTTP/1.1\r\nContent-Length:\r\n\t5\r\n"));
  EXPECT_TRUE(http::has_obs_fold("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n"));
  EXPECT_FALSE(http::has_obs_fold("GET / HTTP/1.1\r\nHost: x\r\nX-A: a b\r\n"));
  EXPECT_FALSE(http::has_obs_fold("GET / HTTP/1.1\r\nHost:  spaced\r\n"));
  EXPECT_FALSE(http::has_obs_fold(""));
}

}  // namespace
