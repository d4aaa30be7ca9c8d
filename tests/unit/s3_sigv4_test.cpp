// SigV4 for S3 (blob/s3/sigv4): the examples AWS publishes in the S3 API
// reference ("Signature Calculations for the Authorization Header" and
// "Authenticating Requests: Using Query Parameters"), with its example
// credentials, and presigned URLs compared with Debian's botocore.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "blob/s3/sigv4.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace {

using namespace std::chrono_literals;
namespace s3 = docflow::blob::s3;

const s3::credentials example_credentials{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                          ""};
const auto may_24_2013 = std::chrono::system_clock::time_point{1369353600s};  // 2013-05-24T00:00:00Z
constexpr const char* example_host = "examplebucket.s3.amazonaws.com";

std::string signature_of(const std::string& authorization) {
  return authorization.substr(authorization.rfind("Signature=") + 10);
}

// --- the published header-based examples ------------------------------------------------------------------

TEST(sigv4, get_object_with_a_range) {
  s3::request_to_sign request{
      "GET", "/test.txt", {}, {{"Host", example_host}, {"Range", "bytes=0-9"}}, s3::empty_payload_sha256};
  auto with_amz = request;
  with_amz.headers.emplace_back("x-amz-content-sha256", std::string(s3::empty_payload_sha256));
  with_amz.headers.emplace_back("x-amz-date", "20130524T000000Z");
  EXPECT_EQ(s3::canonical_request(with_amz),
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
            "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

  const auto signed_headers = s3::signer(example_credentials, "us-east-1").sign(request, may_24_2013);
  EXPECT_EQ(signed_headers.amz_date, "20130524T000000Z");
  EXPECT_EQ(signed_headers.content_sha256, s3::empty_payload_sha256);
  EXPECT_EQ(signed_headers.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(sigv4, put_object_with_a_key_to_encode) {
  const auto payload = docflow::core::sha256_hex("Welcome to Amazon S3.");
  ASSERT_EQ(payload, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  const s3::request_to_sign request{"PUT",
                                    "/test$file.text",
                                    {},
                                    {{"Host", example_host},
                                     {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                     {"x-amz-storage-class", "REDUCED_REDUNDANCY"}},
                                    payload};
  EXPECT_EQ(s3::canonical_uri(request.path), "/test%24file.text");
  const auto signed_headers = s3::signer(example_credentials, "us-east-1").sign(request, may_24_2013);
  EXPECT_EQ(signed_headers.content_sha256, payload);
  EXPECT_EQ(signed_headers.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
            "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

TEST(sigv4, get_bucket_lifecycle_a_parameter_without_value) {
  const s3::signer signer(example_credentials, "us-east-1");
  // The intermediate values the example gives: the signing key and the hash
  // of the canonical request (the last line of the string to sign).
  EXPECT_EQ(docflow::core::hex_encode(signer.signing_key("20130524")),
            "dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378");
  s3::request_to_sign request{
      "GET", "/", {{"lifecycle", ""}}, {{"Host", example_host}}, s3::empty_payload_sha256};
  auto with_amz = request;
  with_amz.headers.emplace_back("x-amz-content-sha256", std::string(s3::empty_payload_sha256));
  with_amz.headers.emplace_back("x-amz-date", "20130524T000000Z");
  EXPECT_EQ(docflow::core::sha256_hex(s3::canonical_request(with_amz)),
            "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca");
  EXPECT_EQ(signature_of(signer.sign(request, may_24_2013).authorization),
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST(sigv4, list_objects_with_the_query_sorted) {
  // Given in the opposite order: the canonical query sorts it.
  const s3::request_to_sign request{
      "GET", "/", {{"prefix", "J"}, {"max-keys", "2"}}, {{"Host", example_host}}, s3::empty_payload_sha256};
  EXPECT_EQ(s3::canonical_query(request.query), "max-keys=2&prefix=J");
  EXPECT_EQ(
      signature_of(s3::signer(example_credentials, "us-east-1").sign(request, may_24_2013).authorization),
      "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

// --- the published presigned URL
// ----------------------------------------------------------------------------

TEST(sigv4, presigned_get_of_the_example) {
  EXPECT_EQ(s3::signer(example_credentials, "us-east-1")
                .presign("GET", "https", example_host, "/test.txt", 86400s, may_24_2013),
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

TEST(sigv4, presigned_urls_live_one_second_to_seven_days) {
  const s3::signer signer(example_credentials, "us-east-1");
  EXPECT_THROW(signer.presign("GET", "https", example_host, "/k", 0s, may_24_2013), std::invalid_argument);
  EXPECT_THROW(signer.presign("GET", "https", example_host, "/k", 604801s, may_24_2013),
               std::invalid_argument);
  EXPECT_NE(
      signer.presign("GET", "https", example_host, "/k", 604800s, may_24_2013).find("X-Amz-Expires=604800&"),
      std::string::npos);
  EXPECT_NE(signer.presign("GET", "https", example_host, "/k", 1s, may_24_2013).find("X-Amz-Expires=1&"),
            std::string::npos);
}

// --- the rules the examples do not reach -----------------------------------------------------------------

TEST(sigv4, uri_encode_leaves_only_unreserved_bytes_bare) {
  EXPECT_EQ(s3::uri_encode("AZaz09-_.~", false), "AZaz09-_.~");
  EXPECT_EQ(s3::uri_encode("a b+c=d&e/f%g", false), "a%20b%2Bc%3Dd%26e%2Ff%25g");
  EXPECT_EQ(s3::uri_encode("a b/c", true), "a%20b/c");
  EXPECT_EQ(s3::uri_encode("\xC3\xBC*", false), "%C3%BC%2A");  // UTF-8 bytes, upper-case hex
}

TEST(sigv4, canonical_uri_encodes_each_segment_once) {
  EXPECT_EQ(s3::canonical_uri(""), "/");
  EXPECT_EQ(s3::canonical_uri("/"), "/");
  EXPECT_EQ(s3::canonical_uri("/bucket/a dir/f%20.txt"), "/bucket/a%20dir/f%2520.txt");
  EXPECT_EQ(s3::canonical_uri("/bucket//x/./y"), "/bucket//x/./y");  // S3 keys are not paths
}

TEST(sigv4, canonical_query_gives_every_name_an_equals_sign_and_sorts_encoded) {
  EXPECT_EQ(s3::canonical_query({{"uploads", ""}}), "uploads=");
  EXPECT_EQ(s3::canonical_query({{"prefix", "a/"}, {"list-type", "2"}, {"max-keys", "2"}}),
            "list-type=2&max-keys=2&prefix=a%2F");
  EXPECT_EQ(s3::canonical_query({{"uploadId", "x y"}, {"partNumber", "10"}}), "partNumber=10&uploadId=x%20y");
  // Sorted by code point: upper case before lower case.
  EXPECT_EQ(s3::canonical_query({{"b", "1"}, {"X-Amz-Date", "2"}, {"a", "3"}}), "X-Amz-Date=2&a=3&b=1");
  EXPECT_EQ(s3::canonical_query({}), "");
}

TEST(sigv4, header_values_are_trimmed_and_their_spaces_collapsed) {
  const s3::request_to_sign request{
      "GET", "/k", {}, {{"Host", "h"}, {"X-Meta", "  a   b \t c  "}, {"x-meta", "d"}}, "UNSIGNED-PAYLOAD"};
  EXPECT_EQ(s3::canonical_request(request),
            "GET\n/k\n\nhost:h\nx-meta:a b c,d\n\nhost;x-meta\nUNSIGNED-PAYLOAD");
}

TEST(sigv4, a_session_token_is_signed) {
  const s3::signer signer({"AK", "SK", "the-token"}, "eu-west-3");
  const auto signed_headers =
      signer.sign({"HEAD", "/b/k", {}, {{"host", "h:9000"}}, s3::empty_payload_sha256}, may_24_2013);
  EXPECT_NE(signed_headers.authorization.find(
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"),
            std::string::npos)
      << signed_headers.authorization;
  EXPECT_NE(signature_of(signed_headers.authorization),
            signature_of(
                s3::signer({"AK", "SK", ""}, "eu-west-3")
                    .sign({"HEAD", "/b/k", {}, {{"host", "h:9000"}}, s3::empty_payload_sha256}, may_24_2013)
                    .authorization));
  EXPECT_NE(signer.presign("GET", "http", "h:9000", "/b/k", 60s, may_24_2013)
                .find("&X-Amz-Security-Token=the-token&"),
            std::string::npos);
}

TEST(sigv4, the_signing_key_follows_the_day) {
  const s3::signer signer(example_credentials, "us-east-1");
  const s3::request_to_sign request{"GET", "/k", {}, {{"host", "h"}}, s3::empty_payload_sha256};
  const auto first = signer.sign(request, may_24_2013);
  const auto next_day = signer.sign(request, may_24_2013 + 24h);
  EXPECT_NE(first.authorization.find("/20130524/us-east-1/s3/aws4_request,"), std::string::npos);
  EXPECT_NE(next_day.authorization.find("/20130525/us-east-1/s3/aws4_request,"), std::string::npos);
  // A signer that never saw the first day computes the same: nothing stale was kept.
  EXPECT_EQ(s3::signer(example_credentials, "us-east-1").sign(request, may_24_2013 + 24h).authorization,
            next_day.authorization);
  EXPECT_EQ(signer.sign(request, may_24_2013).authorization, first.authorization);
}

// --- against botocore ------------------------------------------------------------------------------------

// The query parameters of a URL, sorted, and what comes before them.
std::pair<std::string, std::vector<std::string>> split_url(const std::string& url) {
  const auto q = url.find('?');
  std::vector<std::string> params;
  std::size_t start = q + 1;
  while (start <= url.size()) {
    const auto end = std::min(url.find('&', start), url.size());
    params.push_back(url.substr(start, end - start));
    start = end + 1;
  }
  std::sort(params.begin(), params.end());
  return {url.substr(0, q), params};
}

// The URLs botocore makes for `cases` (one python run: it takes about a second).
std::vector<std::string> botocore_presign(const boost::json::array& cases, std::int64_t unix_time) {
  const auto spec = boost::json::serialize(boost::json::object{{"endpoint", "http://127.0.0.1:9000"},
                                                               {"region", "eu-west-3"},
                                                               {"access_key", example_credentials.access_key},
                                                               {"secret_key", example_credentials.secret_key},
                                                               {"unix_time", unix_time},
                                                               {"cases", cases}});
  std::string command = DOCFLOW_S3_PYTHON " " DOCFLOW_SOURCE_DIR "/tests/unit/s3_presign_botocore.py '";
  for (const char c : spec) command += c == '\'' ? std::string("'\\''") : std::string(1, c);
  command += "' 2>&1";
  const std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  std::string out;
  std::array<char, 4096> buffer{};
  while (pipe) {
    const auto n = std::fread(buffer.data(), 1, buffer.size(), pipe.get());
    if (n == 0) break;
    out.append(buffer.data(), n);
  }
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Same inputs and clock, path-style: the same URL up to the order of its
// query parameters (botocore sorts them only to sign), so the same signature.
TEST(sigv4, presigned_urls_match_botocore) {
  struct presign_case {
    std::string key;
    std::string token;
    std::string disposition;
    std::chrono::seconds expires;
  };
  const std::vector<presign_case> cases{
      {"0192a7c8-1d2e-7f00-8000-0123456789ab", "", "", 300s},
      {"a dir/t$st \xC3\xBC+(1).pdf", "FwoGZXIvYXdzE/token+=", "", 604800s},
      {"doc", "", "attachment; filename=\"r\xC3\xA9sum\xC3\xA9 1.pdf\"", 900s},
  };
  boost::json::array spec;
  for (const auto& c : cases) {
    spec.push_back(boost::json::object{{"bucket", "bucket"},
                                       {"key", c.key},
                                       {"expires", c.expires.count()},
                                       {"session_token", c.token},
                                       {"disposition", c.disposition}});
  }
  const auto theirs = botocore_presign(spec, 1700000000);
  ASSERT_EQ(theirs.size(), cases.size()) << (theirs.empty() ? "" : theirs.front());
  const auto at = std::chrono::system_clock::time_point{1700000000s};
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    s3::param_list extra;
    if (!c.disposition.empty()) extra.emplace_back("response-content-disposition", c.disposition);
    const auto ours =
        s3::signer({example_credentials.access_key, example_credentials.secret_key, c.token}, "eu-west-3")
            .presign("GET", "http", "127.0.0.1:9000", "/bucket/" + c.key, c.expires, at, extra);
    EXPECT_EQ(split_url(ours), split_url(theirs[i])) << "ours:   " << ours << "\ntheirs: " << theirs[i];
  }
}

}  // namespace
