#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "http/router.hpp"

using namespace docflow;

namespace {

http::route make_route(std::string method, std::string pattern) {
  http::route r;
  r.method = std::move(method);
  r.pattern = std::move(pattern);
  return r;
}

// The route table the matching tests share; indices below refer to it.
http::router api_router() {
  return http::router({make_route("GET", "/"), make_route("GET", "/health"), make_route("GET", "/documents"),
                       make_route("POST", "/documents"), make_route("GET", "/documents/{id}"),
                       make_route("DELETE", "/documents/{id}"), make_route("GET", "/documents/{id}/content"),
                       make_route("PUT", "/documents/{doc}/tags/{tag}"),
                       make_route("POST", "/jobs/{id}/retry")});
}

using strings = std::vector<std::string>;

// Asserts that `method path` resolves to the route `method pattern`.
void expect_found(const http::router& r, std::string_view method, std::string_view path,
                  std::string_view route_method, std::string_view pattern) {
  const auto m = r.match(method, path);
  ASSERT_NE(m.found, nullptr) << method << ' ' << path;
  EXPECT_EQ(m.found->method, route_method) << method << ' ' << path;
  EXPECT_EQ(m.found->pattern, pattern) << method << ' ' << path;
}

// Asserts a 404: no route, and no other method would match either.
void expect_not_found(const http::router& r, std::string_view method, std::string_view path) {
  const auto m = r.match(method, path);
  EXPECT_EQ(m.found, nullptr) << method << ' ' << path;
  EXPECT_TRUE(m.allowed.empty()) << method << ' ' << path;
  EXPECT_TRUE(m.params.empty()) << method << ' ' << path;
}

}  // namespace

TEST(router, matches_literal_routes) {
  const auto r = api_router();
  expect_found(r, "GET", "/health", "GET", "/health");
  expect_found(r, "GET", "/documents", "GET", "/documents");
  expect_found(r, "POST", "/documents", "POST", "/documents");
  expect_found(r, "GET", "/", "GET", "/");
}

TEST(router, found_points_into_the_table) {
  const auto r = api_router();
  const auto m = r.match("POST", "/documents");
  EXPECT_EQ(m.found, &r.routes()[3]);
  EXPECT_TRUE(m.params.empty());
}

TEST(router, extracts_parameters) {
  const auto r = api_router();
  const auto one = r.match("GET", "/documents/0192f1c2-aaaa");
  ASSERT_NE(one.found, nullptr);
  EXPECT_EQ(one.found->pattern, "/documents/{id}");
  ASSERT_EQ(one.params.size(), 1U);
  EXPECT_EQ(one.params.at("id"), "0192f1c2-aaaa");

  const auto two = r.match("PUT", "/documents/d1/tags/a%20b");
  ASSERT_NE(two.found, nullptr);
  EXPECT_EQ(two.params.size(), 2U);
  EXPECT_EQ(two.params.at("doc"), "d1");
  EXPECT_EQ(two.params.at("tag"), "a%20b");  // raw, not decoded
}

TEST(router, parameters_of_the_found_route_only) {
  const auto r = api_router();
  const auto m = r.match("DELETE", "/documents/42");
  ASSERT_NE(m.found, nullptr);
  EXPECT_EQ(m.found->method, "DELETE");
  ASSERT_EQ(m.params.size(), 1U);
  EXPECT_EQ(m.params.at("id"), "42");
}

TEST(router, literal_segments_are_case_sensitive) {
  const auto r = api_router();
  expect_not_found(r, "GET", "/Health");
  expect_not_found(r, "GET", "/HEALTH");
}

TEST(router, trailing_slash_does_not_match) {
  const auto r = api_router();
  expect_not_found(r, "GET", "/health/");
  expect_not_found(r, "GET", "/documents/");
  expect_not_found(r, "GET", "/documents/42/");
}

TEST(router, empty_segments_do_not_match) {
  const auto r = api_router();
  expect_not_found(r, "GET", "//health");
  expect_not_found(r, "GET", "/documents//content");
  expect_not_found(r, "PUT", "/documents/d1/tags/");
  expect_not_found(r, "PUT", "/documents//tags/t");
}

TEST(router, paths_not_starting_with_slash_do_not_match) {
  const auto r = api_router();
  expect_not_found(r, "GET", "");
  expect_not_found(r, "GET", "health");
  expect_not_found(r, "GET", "*");
}

TEST(router, extra_or_missing_segments_do_not_match) {
  const auto r = api_router();
  expect_not_found(r, "GET", "/health/x");
  expect_not_found(r, "GET", "/documents/42/content/x");
  expect_not_found(r, "POST", "/jobs/7");
}

TEST(router, unknown_path_is_404_without_allowed_methods) {
  const auto r = api_router();
  expect_not_found(r, "GET", "/nope");
  expect_not_found(r, "DELETE", "/nope/deeper");
}

TEST(router, known_path_with_other_method_is_405_with_sorted_allowed_list) {
  const auto r = api_router();
  const auto m = r.match("PATCH", "/documents/42");
  EXPECT_EQ(m.found, nullptr);
  EXPECT_EQ(m.allowed, (strings{"DELETE", "GET", "HEAD"}));
}

TEST(router, get_implies_head_in_allowed) {
  const auto r = api_router();
  EXPECT_EQ(r.match("DELETE", "/health").allowed, (strings{"GET", "HEAD"}));
  EXPECT_EQ(r.match("PUT", "/documents").allowed, (strings{"GET", "HEAD", "POST"}));
}

TEST(router, head_is_not_allowed_without_get) {
  const auto r = api_router();
  const auto m = r.match("GET", "/jobs/7/retry");
  EXPECT_EQ(m.found, nullptr);
  EXPECT_EQ(m.allowed, (strings{"POST"}));
  const auto head = r.match("HEAD", "/jobs/7/retry");
  EXPECT_EQ(head.found, nullptr);
  EXPECT_EQ(head.allowed, (strings{"POST"}));
}

TEST(router, head_matches_get_route) {
  const auto r = api_router();
  expect_found(r, "HEAD", "/health", "GET", "/health");
  const auto m = r.match("HEAD", "/documents/9/content");
  ASSERT_NE(m.found, nullptr);
  EXPECT_EQ(m.found->method, "GET");
  EXPECT_EQ(m.params.at("id"), "9");
}

TEST(router, methods_are_case_sensitive) {
  const auto r = api_router();
  const auto m = r.match("get", "/health");
  EXPECT_EQ(m.found, nullptr);
  EXPECT_EQ(m.allowed, (strings{"GET", "HEAD"}));
}

TEST(router, first_route_wins_when_literal_and_param_both_match) {
  const http::router param_first({make_route("GET", "/users/{id}"), make_route("GET", "/users/me")});
  const auto a = param_first.match("GET", "/users/me");
  ASSERT_NE(a.found, nullptr);
  EXPECT_EQ(a.found, &param_first.routes()[0]);
  EXPECT_EQ(a.params.at("id"), "me");

  const http::router literal_first({make_route("GET", "/users/me"), make_route("GET", "/users/{id}")});
  const auto b = literal_first.match("GET", "/users/me");
  ASSERT_NE(b.found, nullptr);
  EXPECT_EQ(b.found, &literal_first.routes()[0]);
  EXPECT_TRUE(b.params.empty());
  expect_found(literal_first, "GET", "/users/42", "GET", "/users/{id}");
}

TEST(router, allowed_list_has_no_duplicates_when_several_patterns_match) {
  const http::router r({make_route("GET", "/users/{id}"), make_route("GET", "/users/me"),
                        make_route("DELETE", "/users/{id}")});
  EXPECT_EQ(r.match("POST", "/users/me").allowed, (strings{"DELETE", "GET", "HEAD"}));
}

TEST(router, empty_table_matches_nothing) {
  const http::router r(std::vector<http::route>{});
  expect_not_found(r, "GET", "/");
}

TEST(router, duplicate_route_throws) {
  EXPECT_THROW(
      http::router({make_route("GET", "/a/{id}"), make_route("POST", "/a"), make_route("GET", "/a/{id}")}),
      std::invalid_argument);
}

TEST(router, duplicate_route_differing_only_in_parameter_name_throws) {
  // The second route could never be reached: it is a duplicate under another name.
  EXPECT_THROW(http::router({make_route("GET", "/a/{id}"), make_route("GET", "/a/{name}")}),
               std::invalid_argument);
}

TEST(router, same_pattern_under_different_methods_is_fine) {
  EXPECT_NO_THROW(
      http::router({make_route("GET", "/a"), make_route("POST", "/a"), make_route("DELETE", "/a")}));
}

TEST(router, pattern_without_leading_slash_throws) {
  for (const char* pattern : {"", "a", "a/b", "{id}", " /a"}) {
    EXPECT_THROW(http::router({make_route("GET", pattern)}), std::invalid_argument) << "'" << pattern << "'";
  }
}
