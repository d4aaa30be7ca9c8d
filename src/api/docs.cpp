#include "api/docs.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "api/static_assets.hpp"
#include "http/problem.hpp"

namespace docflow::api::docs {

namespace {

// Swagger UI runs from our own origin only: scripts and styles from files
// (no inline script, no eval), icons from files or the data: URIs of its
// stylesheet, and fetch() to this server alone. Nothing may frame the page.
constexpr std::string_view content_security_policy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

void set_security_headers(http::response& res) {
  res.fields.set("Content-Security-Policy", std::string(content_security_policy));
  res.fields.set("X-Content-Type-Options", "nosniff");
  res.fields.set("Referrer-Policy", "no-referrer");
  res.fields.set("X-Frame-Options", "DENY");  // for browsers that ignore frame-ancestors
}

// Sends an asset straight from the binary's read-only data, a piece at a
// time, instead of copying megabytes into every response.
class memory_source : public http::body_source {
public:
  explicit memory_source(std::string_view bytes) : rest_(bytes) {}

  boost::asio::awaitable<std::size_t> read(char* out, std::size_t max) override {
    const auto n = std::min(max, rest_.size());
    std::memcpy(out, rest_.data(), n);
    rest_.remove_prefix(n);
    co_return n;
  }

private:
  std::string_view rest_;
};

}  // namespace

boost::asio::awaitable<http::response> asset(services&, http::request& req) {
  const auto* found = find_static_asset(req.path);
  if (!found) {
    co_return http::make_problem(req, http::not_found());
  }
  // The compressed copy was made at build time: choosing it costs nothing.
  const bool gzip =
      !found->gzip.empty() && http::accepts_gzip(req.fields.get("Accept-Encoding").value_or(""));
  const auto bytes = gzip ? found->gzip : found->bytes;
  // Each encoding is its own representation, so it gets its own strong tag.
  auto etag = std::string(found->etag);
  if (gzip) etag.insert(etag.size() - 1, "-gzip");
  http::response res;
  const auto if_none_match = req.fields.get("If-None-Match");
  if (if_none_match && http::if_none_match_names(*if_none_match, etag)) {
    res.status = 304;
  } else {
    res.status = 200;
    res.fields.set("Content-Type", std::string(found->content_type));
    if (gzip) res.fields.set("Content-Encoding", "gzip");
    res.stream = std::make_shared<memory_source>(bytes);
    res.stream_size = bytes.size();
  }
  if (!found->gzip.empty()) res.fields.set("Vary", "Accept-Encoding");
  res.fields.set("ETag", etag);
  // The URLs carry no version, so a cache must ask again each time; with the
  // ETag that costs a 304.
  res.fields.set("Cache-Control", "no-cache");
  set_security_headers(res);
  co_return res;
}

}  // namespace docflow::api::docs
