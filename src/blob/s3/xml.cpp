#include "blob/s3/xml.hpp"

#include <charconv>
#include <sstream>

#include <pugixml.hpp>

#include "core/clock.hpp"

namespace docflow::blob::s3::xml {

namespace {

[[noreturn]] void malformed(std::string_view what) {
  throw s3_error("S3 answer without " + std::string(what), 200, "MalformedAnswer", "");
}

// The root element `root` of `body`, parsed into `doc`.
pugi::xml_node load(pugi::xml_document& doc, std::string_view body, const char* root) {
  if (!doc.load_buffer(body.data(), body.size())) malformed(std::string(root) + " (not XML)");
  const auto node = doc.child(root);
  if (!node) malformed(root);
  return node;
}

std::string text(const pugi::xml_node& parent, const char* name) {
  return parent.child(name).text().as_string();
}

std::uint64_t size_of(const pugi::xml_node& parent) {
  const auto value = std::string_view(parent.child("Size").text().as_string());
  std::uint64_t size = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), size);
  if (value.empty() || ec != std::errc{} || end != value.data() + value.size()) malformed("a valid Size");
  return size;
}

std::chrono::system_clock::time_point time_of(const pugi::xml_node& parent, const char* name) {
  const auto t = core::parse_rfc3339_utc(parent.child(name).text().as_string());
  if (!t) malformed(std::string("a valid ") + name);
  return *t;
}

bool truncated(const pugi::xml_node& result) {
  return std::string_view(text(result, "IsTruncated")) == "true";
}

}  // namespace

std::optional<error_body> parse_error(std::string_view body) {
  pugi::xml_document doc;
  if (body.empty() || !doc.load_buffer(body.data(), body.size())) return std::nullopt;
  const auto error = doc.child("Error");
  if (!error) return std::nullopt;
  return error_body{text(error, "Code"), text(error, "Message"), text(error, "RequestId")};
}

std::string parse_upload_id(std::string_view body) {
  pugi::xml_document doc;
  const auto result = load(doc, body, "InitiateMultipartUploadResult");
  auto id = text(result, "UploadId");
  if (id.empty()) malformed("UploadId");
  return id;
}

std::string parse_complete_etag(std::string_view body) {
  pugi::xml_document doc;
  const auto result = load(doc, body, "CompleteMultipartUploadResult");
  return text(result, "ETag");
}

object_page parse_object_page(std::string_view body) {
  pugi::xml_document doc;
  const auto result = load(doc, body, "ListBucketResult");
  object_page page;
  for (const auto& c : result.children("Contents")) {
    page.objects.push_back({text(c, "Key"), size_of(c), text(c, "ETag"), time_of(c, "LastModified")});
  }
  if (truncated(result)) {
    auto token = text(result, "NextContinuationToken");
    if (token.empty()) malformed("NextContinuationToken");
    page.next_continuation_token = std::move(token);
  }
  return page;
}

upload_page parse_upload_page(std::string_view body) {
  pugi::xml_document doc;
  const auto result = load(doc, body, "ListMultipartUploadsResult");
  upload_page page;
  for (const auto& u : result.children("Upload")) {
    page.uploads.push_back({text(u, "Key"), text(u, "UploadId"), time_of(u, "Initiated")});
  }
  if (truncated(result)) {
    upload_marker next{text(result, "NextKeyMarker"), text(result, "NextUploadIdMarker")};
    if (next.key.empty()) malformed("NextKeyMarker");
    page.next = std::move(next);
  }
  return page;
}

std::string complete_body(const std::vector<completed_part>& parts) {
  pugi::xml_document doc;
  auto root = doc.append_child("CompleteMultipartUpload");
  root.append_attribute("xmlns") = "http://s3.amazonaws.com/doc/2006-03-01/";
  for (const auto& p : parts) {
    auto part = root.append_child("Part");
    part.append_child("PartNumber").text().set(p.number);
    part.append_child("ETag").text().set(p.etag.c_str());
  }
  std::ostringstream out;
  doc.save(out, "", pugi::format_raw | pugi::format_no_declaration);
  return out.str();
}

}  // namespace docflow::blob::s3::xml
