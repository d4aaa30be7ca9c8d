// The one mapping from the domain's errors to HTTP (api/errors.cpp), and the
// error catalogue that docs/api.md and docs/openapi.json publish of it.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "api/errors.hpp"
#include "core/errc.hpp"
#include "core/result.hpp"
#include "http/problem.hpp"

using namespace docflow;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// Slug -> status, from the "Error catalogue" table of docs/api.md.
std::map<std::string, int> documented_catalogue() {
  std::istringstream doc(read_file(std::string(DOCFLOW_SOURCE_DIR) + "/docs/api.md"));
  std::map<std::string, int> out;
  bool in_catalogue = false;
  for (std::string line; std::getline(doc, line);) {
    if (line.starts_with("## ")) in_catalogue = line == "## Error catalogue";
    if (!in_catalogue || !line.starts_with("| `")) continue;
    const auto slug_end = line.find('`', 3);
    const auto status_at = line.find("| ", slug_end) + 2;
    out[line.substr(3, slug_end - 3)] = std::stoi(line.substr(status_at, 3));
  }
  return out;
}

// Slug -> status of every problem the server can send: the API's mapping of
// each errc, and the problems the HTTP layer makes itself.
std::map<std::string, int> produced_catalogue() {
  std::map<std::string, int> out;
  const auto add = [&out](std::string_view slug, int status) {
    const auto [it, fresh] = out.emplace(std::string(slug), status);
    EXPECT_EQ(it->second, status) << slug << " is sent with two statuses";
  };
  for (const auto e : core::all_errc()) {
    const auto shape = api::shape_of(e);
    add(shape.slug, shape.status);
  }
  for (const auto& p : {http::not_found(), http::method_not_allowed(), http::bad_request(""),
                        http::header_too_large(), http::payload_too_large(""), http::internal_error(),
                        http::unsupported_media_type(""), http::validation_failed({}), http::unauthorized(""),
                        http::forbidden(""), http::service_unavailable(""), http::not_implemented("")}) {
    add(p.slug, p.status);
  }
  return out;
}

http::request request_at(std::string path) {
  http::request req;
  req.method = "GET";
  req.path = std::move(path);
  req.request_id = "req-1";
  return req;
}

boost::json::object body_of(const http::response& r) { return boost::json::parse(r.body).as_object(); }

}  // namespace

TEST(errc, every_code_has_a_distinct_name_that_parses_back_and_a_sentence) {
  std::set<std::string_view> names;
  for (const auto e : core::all_errc()) {
    const auto name = core::name(e);
    EXPECT_TRUE(names.insert(name).second) << name << " twice";
    EXPECT_EQ(core::parse_errc(name), e) << name;
    const std::error_code code = e;
    EXPECT_EQ(code.category().name(), std::string("docflow"));
    EXPECT_FALSE(code.message().empty()) << name;
  }
  EXPECT_EQ(core::parse_errc("no_such_code"), std::nullopt);
  EXPECT_EQ(core::name(core::errc::extractor_timeout), "extractor_timeout");  // a document's error.code
}

TEST(error_catalogue, docs_api_md_lists_exactly_the_problems_the_server_sends) {
  const auto documented = documented_catalogue();
  ASSERT_GT(documented.size(), 10U) << "the catalogue table was not found in docs/api.md";
  EXPECT_EQ(documented, produced_catalogue());
}

TEST(error_catalogue, the_openapi_problem_type_enum_names_every_slug) {
  const auto spec = boost::json::parse(read_file(std::string(DOCFLOW_SOURCE_DIR) + "/docs/openapi.json"));
  const auto& types = spec.at_pointer("/components/schemas/Problem/properties/type/enum").as_array();
  std::set<std::string> listed;
  for (const auto& t : types) listed.insert(std::string(t.as_string()));
  std::set<std::string> sent;
  for (const auto& [slug, status] : produced_catalogue()) sent.insert("/problems/" + slug);
  EXPECT_EQ(listed, sent);
}

TEST(error_response, carries_the_shape_the_detail_and_what_the_error_names) {
  core::error busy(core::errc::document_busy);
  busy.document_status = core::status::processing;
  const auto res = api::error_response(request_at("/documents/x"), busy);
  EXPECT_EQ(res.status, 409);
  EXPECT_EQ(res.fields.get("Content-Type"), "application/problem+json");
  const auto body = body_of(res);
  EXPECT_EQ(body.at("type"), "/problems/document-busy");
  EXPECT_EQ(body.at("title"), "Conflict");
  EXPECT_EQ(body.at("detail"), "The document is being processed; cancel it first.");
  EXPECT_EQ(body.at("document_status"), "PROCESSING");
  EXPECT_EQ(body.at("instance"), "/documents/x");
  EXPECT_FALSE(body.contains("error"));
  EXPECT_FALSE(res.fields.get("Retry-After"));
}

TEST(error_response, a_failed_document_shows_its_error_and_a_given_detail_wins) {
  core::error failed(core::errc::processing_failed, "Custom detail.");
  failed.document_status = core::status::failed;
  failed.document_error = core::failure{core::errc::extractor_timeout, "extraction took too long", true};
  const auto body = body_of(api::error_response(request_at("/documents/x/result"), failed));
  EXPECT_EQ(body.at("detail"), "Custom detail.");
  EXPECT_EQ(body.at("error").at("code"), "extractor_timeout");
  EXPECT_EQ(body.at("error").at("retryable"), true);
}

TEST(error_response, retry_after_comes_from_the_error_or_the_shape) {
  core::error throttled(core::errc::too_many_attempts);
  throttled.retry_after = std::chrono::seconds{7};
  EXPECT_EQ(api::error_response(request_at("/auth/login"), throttled).fields.get("Retry-After"), "7");
  EXPECT_EQ(api::error_response(request_at("/d"), core::errc::queue_full).fields.get("Retry-After"), "5");
  EXPECT_EQ(api::error_response(request_at("/d"), core::errc::storage_full).fields.get("Retry-After"), "60");
  EXPECT_EQ(api::error_response(request_at("/d"), core::errc::hashing_busy).fields.get("Retry-After"), "1");
}

TEST(error_response, invalid_fields_are_listed) {
  const auto res = api::error_response(
      request_at("/auth/register"), core::invalid_fields({{"username", "is required"}, {"password", "x"}}));
  EXPECT_EQ(res.status, 422);
  const auto body = body_of(res);
  ASSERT_EQ(body.at("errors").as_array().size(), 2U);
  EXPECT_EQ(body.at("errors").as_array()[0].at("field"), "username");
}

TEST(error_response, a_gone_account_is_an_invalid_token) {
  const auto res = api::error_response(request_at("/auth/me"), core::errc::account_gone);
  EXPECT_EQ(res.status, 401);
  EXPECT_EQ(res.fields.get("WWW-Authenticate"), R"(Bearer realm="docflow", error="invalid_token")");
}

TEST(error_response, a_processing_failure_code_is_never_shown_as_an_answer) {
  // Such codes describe a document; reaching the mapping is a bug, and its
  // message must not leak.
  const auto res =
      api::error_response(request_at("/x"), core::error(core::errc::extractor_crashed, "secret internals"));
  EXPECT_EQ(res.status, 500);
  const auto body = body_of(res);
  EXPECT_EQ(body.at("type"), "/problems/internal-error");
  EXPECT_EQ(body.at("detail").as_string().find("secret"), std::string::npos);
}
