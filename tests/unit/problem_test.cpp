#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "core/ids.hpp"
#include "http/message.hpp"
#include "http/problem.hpp"

using namespace docflow;

namespace {

http::request request_at(std::string path, std::string request_id = "req-1") {
  http::request req;
  req.method = "GET";
  req.path = std::move(path);
  req.target = req.path;
  req.request_id = std::move(request_id);
  return req;
}

http::problem conflict() {
  http::problem p;
  p.status = 409;
  p.slug = "version-conflict";
  p.title = "Version Conflict";
  p.detail = "The document changed since you read it.";
  return p;
}

boost::json::object body_of(const http::response& r) { return boost::json::parse(r.body).as_object(); }

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// make_problem

TEST(make_problem, renders_the_rfc9457_members) {
  const auto r = http::make_problem(request_at("/documents/42", "abc-123"), conflict());
  EXPECT_EQ(r.status, 409);
  const auto body = body_of(r);
  EXPECT_EQ(body.at("type").as_string(), "/problems/version-conflict");
  EXPECT_EQ(body.at("title").as_string(), "Version Conflict");
  EXPECT_EQ(body.at("status").to_number<int>(), 409);
  EXPECT_EQ(body.at("detail").as_string(), "The document changed since you read it.");
  EXPECT_EQ(body.at("instance").as_string(), "/documents/42");
  EXPECT_EQ(body.at("request_id").as_string(), "abc-123");
  EXPECT_FALSE(body.contains("errors"));
  EXPECT_EQ(body.size(), 6U);
}

TEST(make_problem, content_type_is_problem_json) {
  const auto r = http::make_problem(request_at("/x"), conflict());
  EXPECT_EQ(r.fields.get("Content-Type"), "application/problem+json");
  EXPECT_EQ(r.fields.get("content-type"), "application/problem+json");
  int count = 0;
  for (const auto& field : r.fields) {
    count += field.first == "Content-Type" ? 1 : 0;
  }
  EXPECT_EQ(count, 1);
}

TEST(make_problem, instance_is_the_path_without_query) {
  auto req = request_at("/documents");
  req.target = "/documents?limit=5";
  req.query = "limit=5";
  EXPECT_EQ(body_of(http::make_problem(req, conflict())).at("instance").as_string(), "/documents");
}

TEST(make_problem, empty_path_becomes_root_instance) {
  EXPECT_EQ(body_of(http::make_problem(request_at(""), conflict())).at("instance").as_string(), "/");
}

TEST(make_problem, errors_are_listed_in_order_when_present) {
  auto p = http::bad_request("The request body is invalid.");
  p.errors = {{"title", "must not be empty"}, {"tags[2]", "too long"}};
  const auto body = body_of(http::make_problem(request_at("/documents"), p));
  ASSERT_TRUE(body.contains("errors"));
  const auto& errors = body.at("errors").as_array();
  ASSERT_EQ(errors.size(), 2U);
  EXPECT_EQ(errors[0].at("field").as_string(), "title");
  EXPECT_EQ(errors[0].at("message").as_string(), "must not be empty");
  EXPECT_EQ(errors[1].at("field").as_string(), "tags[2]");
  EXPECT_EQ(errors[1].at("message").as_string(), "too long");
  EXPECT_EQ(errors[1].as_object().size(), 2U);
}

TEST(make_problem, extensions_are_merged_into_the_body) {
  auto p = conflict();
  p.extensions["current_version"] = 7;
  p.extensions["retry"] = boost::json::object{{"after_seconds", 3}};
  const auto body = body_of(http::make_problem(request_at("/documents/1"), p));
  EXPECT_EQ(body.at("current_version").to_number<int>(), 7);
  EXPECT_EQ(body.at("retry").at("after_seconds").to_number<int>(), 3);
  EXPECT_EQ(body.at("type").as_string(), "/problems/version-conflict");
  EXPECT_EQ(body.size(), 8U);
}

TEST(make_problem, text_needing_json_escapes_round_trips) {
  auto p = conflict();
  p.detail = "quote \" backslash \\ newline \n tab \t unicode \xc3\xa9";
  const auto req = request_at("/documents/\"odd\"", "r.1");
  const auto body = body_of(http::make_problem(req, p));
  EXPECT_EQ(body.at("detail").as_string(), p.detail);
  EXPECT_EQ(body.at("instance").as_string(), req.path);
}

namespace {

struct shorthand_case {
  const char* name;
  http::problem p;
  int status;
  const char* slug;
};

void PrintTo(const shorthand_case& c, std::ostream* os) { *os << c.name; }

class problem_shorthand : public testing::TestWithParam<shorthand_case> {};

}  // namespace

TEST_P(problem_shorthand, has_status_slug_title_and_detail) {
  const auto& c = GetParam();
  EXPECT_EQ(c.p.status, c.status);
  EXPECT_EQ(c.p.slug, c.slug);
  EXPECT_FALSE(c.p.title.empty());
  EXPECT_FALSE(c.p.detail.empty());
  const auto r = http::make_problem(request_at("/p"), c.p);
  EXPECT_EQ(r.status, c.status);
  EXPECT_EQ(body_of(r).at("type").as_string(), std::string("/problems/") + c.slug);
}

INSTANTIATE_TEST_SUITE_P(
    all, problem_shorthand,
    testing::Values(
        shorthand_case{"not_found", http::not_found(), 404, "not-found"},
        shorthand_case{"method_not_allowed", http::method_not_allowed(), 405, "method-not-allowed"},
        shorthand_case{"bad_request", http::bad_request("bad"), 400, "bad-request"},
        shorthand_case{"header_too_large", http::header_too_large(), 431, "request-header-too-large"},
        shorthand_case{"payload_too_large", http::payload_too_large("big"), 413, "payload-too-large"},
        shorthand_case{"internal_error", http::internal_error(), 500, "internal-error"},
        shorthand_case{"unsupported_media_type", http::unsupported_media_type("xml"), 415,
                       "unsupported-media-type"},
        shorthand_case{"validation_failed", http::validation_failed({{"f", "bad"}}), 422,
                       "validation-failed"},
        shorthand_case{"unauthorized", http::unauthorized("expired"), 401, "unauthorized"},
        shorthand_case{"forbidden", http::forbidden("admins only"), 403, "forbidden"},
        shorthand_case{"service_unavailable", http::service_unavailable("busy"), 503, "service-unavailable"}),
    [](const auto& test_info) { return std::string(test_info.param.name); });

TEST(problem_shorthands, detail_argument_is_used) {
  EXPECT_EQ(http::bad_request("missing field").detail, "missing field");
  EXPECT_EQ(http::payload_too_large("over 1 MiB").detail, "over 1 MiB");
  EXPECT_EQ(http::unsupported_media_type("use JSON").detail, "use JSON");
  EXPECT_EQ(http::unauthorized("token expired").detail, "token expired");
  EXPECT_EQ(http::forbidden("admins only").detail, "admins only");
  EXPECT_EQ(http::service_unavailable("draining").detail, "draining");
}

TEST(problem_shorthands, only_validation_failed_carries_errors) {
  for (const auto& p : {http::not_found(), http::bad_request("x"), http::unauthorized("x"),
                        http::forbidden("x"), http::internal_error()}) {
    EXPECT_TRUE(p.errors.empty()) << p.slug;
  }
  const auto body = body_of(
      http::make_problem(request_at("/auth/signup"),
                         http::validation_failed({{"username", "taken"}, {"password", "too short"}})));
  EXPECT_EQ(body.at("status").to_number<int>(), 422);
  const auto& errors = body.at("errors").as_array();
  ASSERT_EQ(errors.size(), 2U);
  EXPECT_EQ(errors[0].at("field").as_string(), "username");
  EXPECT_EQ(errors[1].at("message").as_string(), "too short");
}

// -----------------------------------------------------------------------------------------------------------
// request_id_for

namespace {
const std::string all_allowed_chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

class request_id_echoed : public testing::TestWithParam<std::string> {};
class request_id_replaced : public testing::TestWithParam<std::string> {};
}  // namespace

TEST_P(request_id_echoed, valid_incoming_id_is_kept) {
  EXPECT_EQ(http::request_id_for(std::string_view(GetParam())), GetParam());
}

INSTANTIATE_TEST_SUITE_P(valid, request_id_echoed,
                         testing::Values("a", "7", "-", std::string(128, 'x'), all_allowed_chars,
                                         "0192f1c2-7a3b-7c4d-8e5f-0123456789ab", "trace.span_01-A"));

TEST_P(request_id_replaced, invalid_incoming_id_gets_a_fresh_uuid) {
  const auto id = http::request_id_for(std::string_view(GetParam()));
  EXPECT_NE(id, GetParam());
  EXPECT_TRUE(core::is_uuid(id)) << id;
}

INSTANTIATE_TEST_SUITE_P(invalid, request_id_replaced,
                         testing::Values(std::string(129, 'x'), "", " ", "a b", "a/b", "abc\n", "a:b", "a\tb",
                                         "caf\xc3\xa9", std::string("a\0b", 3), "id+1", "<script>"));

TEST(request_id_for, missing_id_gets_a_fresh_uuid) {
  const auto a = http::request_id_for(std::nullopt);
  const auto b = http::request_id_for(std::nullopt);
  EXPECT_TRUE(core::is_uuid(a)) << a;
  EXPECT_TRUE(core::is_uuid(b)) << b;
  EXPECT_NE(a, b);
}

// -----------------------------------------------------------------------------------------------------------
// headers

namespace {
using field_list = std::vector<std::pair<std::string, std::string>>;

field_list fields_of(const http::headers& h) { return field_list(h.begin(), h.end()); }
}  // namespace

TEST(headers, get_is_case_insensitive) {
  http::headers h;
  h.add("Content-Type", "text/plain");
  EXPECT_EQ(h.get("content-type"), "text/plain");
  EXPECT_EQ(h.get("CONTENT-TYPE"), "text/plain");
  EXPECT_EQ(h.get("Content-Type"), "text/plain");
  EXPECT_TRUE(h.contains("cOnTeNt-TyPe"));
}

TEST(headers, get_of_a_missing_field_is_nullopt) {
  http::headers h;
  EXPECT_FALSE(h.get("X-Missing").has_value());
  h.add("X-Missing-Not", "1");
  EXPECT_FALSE(h.get("X-Missing").has_value());
  EXPECT_FALSE(h.contains("X-Missin"));
}

TEST(headers, names_differing_in_non_letters_are_different) {
  // '^' and '~' (and '-' vs CR, '_' vs DEL) differ only in bit 0x20 but are not case variants.
  http::headers h;
  h.add("X-A^B", "caret");
  h.add("X-1", "one");
  EXPECT_FALSE(h.get("X-A~B").has_value());
  EXPECT_FALSE(h.get("X\rA^B").has_value());
  EXPECT_FALSE(h.get("X-\x11").has_value());
  EXPECT_EQ(h.get("x-a^b"), "caret");
}

TEST(headers, add_keeps_every_value_and_get_returns_the_first) {
  http::headers h;
  h.add("Accept", "text/html");
  h.add("accept", "application/json");
  EXPECT_EQ(h.get("ACCEPT"), "text/html");
  EXPECT_EQ(fields_of(h), (field_list{{"Accept", "text/html"}, {"accept", "application/json"}}));
}

TEST(headers, set_replaces_every_field_of_that_name) {
  http::headers h;
  h.add("Vary", "Accept");
  h.add("X-Other", "1");
  h.add("vary", "Origin");
  h.set("VARY", "Cookie");
  EXPECT_EQ(h.get("vary"), "Cookie");
  EXPECT_EQ(fields_of(h), (field_list{{"X-Other", "1"}, {"VARY", "Cookie"}}));
}

TEST(headers, set_on_a_new_name_appends) {
  http::headers h;
  h.add("A", "1");
  h.set("B", "2");
  EXPECT_EQ(fields_of(h), (field_list{{"A", "1"}, {"B", "2"}}));
}

TEST(headers, fields_keep_arrival_order) {
  http::headers h;
  h.add("Z", "1");
  h.add("A", "2");
  h.add("M", "3");
  EXPECT_EQ(fields_of(h), (field_list{{"Z", "1"}, {"A", "2"}, {"M", "3"}}));
}

TEST(request, param_returns_value_or_empty) {
  http::request req;
  req.params = {{"id", "42"}};
  EXPECT_EQ(req.param("id"), "42");
  EXPECT_TRUE(req.param("other").empty());
}
