// The S3 client's pure parts: reading S3's XML answers in the shapes its API
// reference documents, writing the Complete body, and addressing (endpoint,
// path-style and virtual-hosted URLs). The client against a real service is
// in s3_client_test.cpp.
#include <gtest/gtest.h>

#include <string>

#include "blob/s3/client.hpp"
#include "blob/s3/xml.hpp"

namespace {

using namespace std::chrono_literals;
namespace s3 = docflow::blob::s3;
namespace xml = docflow::blob::s3::xml;

std::chrono::system_clock::time_point at(std::chrono::milliseconds since_epoch) {
  return std::chrono::system_clock::time_point{since_epoch};
}

TEST(s3xml, an_error_document_gives_code_message_and_request_id) {
  const auto error = xml::parse_error(
      R"(<?xml version="1.0" encoding="UTF-8"?>)"
      "<Error><Code>NoSuchKey</Code><Message>The resource you requested does not exist</Message>"
      "<Resource>/mybucket/myfoto.jpg</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>");
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, "NoSuchKey");
  EXPECT_EQ(error->message, "The resource you requested does not exist");
  EXPECT_EQ(error->request_id, "4442587FB7D0A2F9");
}

TEST(s3xml, anything_else_is_no_error_document) {
  EXPECT_FALSE(xml::parse_error(""));
  EXPECT_FALSE(xml::parse_error("<html><body>502 Bad Gateway</body></html>"));
  EXPECT_FALSE(xml::parse_error("not xml <"));
  EXPECT_FALSE(xml::parse_error(
      "<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag></CompleteMultipartUploadResult>"));
}

TEST(s3xml, initiate_and_complete_results) {
  EXPECT_EQ(xml::parse_upload_id(
                R"(<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket><Key>example-object</Key>
  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>)"),
            "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");
  EXPECT_EQ(xml::parse_complete_etag(
                R"(<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Location>http://Example-Bucket.s3.region.amazonaws.com/Example-Object</Location>
  <Bucket>Example-Bucket</Bucket><Key>Example-Object</Key>
  <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag>
</CompleteMultipartUploadResult>)"),
            "\"3858f62230ac3c915f300c664312c11f-9\"");
}

TEST(s3xml, answers_missing_what_they_must_hold_are_errors) {
  for (const char* body :
       {"", "<InitiateMultipartUploadResult/>", "<Error><Code>InternalError</Code></Error>"}) {
    try {
      xml::parse_upload_id(body);
      ADD_FAILURE() << body;
    } catch (const s3::s3_error& e) {
      EXPECT_EQ(e.code(), "MalformedAnswer") << body;
    }
  }
  EXPECT_THROW(xml::parse_complete_etag("<Error><Code>InternalError</Code></Error>"), s3::s3_error);
  // radosgw 16 answers so; the client then asks the object.
  EXPECT_EQ(xml::parse_complete_etag(
                "<CompleteMultipartUploadResult><ETag></ETag></CompleteMultipartUploadResult>"),
            "");
  EXPECT_THROW(xml::parse_object_page("<ListBucketResult><Contents><Key>k</Key><Size>x</Size>"
                                      "<LastModified>2009-10-12T17:50:30.000Z</LastModified></Contents>"
                                      "</ListBucketResult>"),
               s3::s3_error);
  EXPECT_THROW(xml::parse_object_page("<ListBucketResult><Contents><Key>k</Key><Size>1</Size>"
                                      "<LastModified>yesterday</LastModified></Contents></ListBucketResult>"),
               s3::s3_error);
  // Truncated without saying where to go on: following it would loop.
  EXPECT_THROW(xml::parse_object_page("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"),
               s3::s3_error);
}

TEST(s3xml, a_page_of_objects) {
  const auto page = xml::parse_object_page(R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>docs/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents><Key>docs/a</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>"fba9dede5f27731c9771645a39863328"</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>docs/b</Key><LastModified>2009-10-12T17:50:31.250Z</LastModified>
    <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>)");
  ASSERT_EQ(page.objects.size(), 2U);
  EXPECT_EQ(page.objects[0].key, "docs/a");
  EXPECT_EQ(page.objects[0].size, 434234U);
  EXPECT_EQ(page.objects[0].etag, "\"fba9dede5f27731c9771645a39863328\"");
  EXPECT_EQ(page.objects[0].last_modified, at(1255369830000ms));
  EXPECT_EQ(page.objects[1].key, "docs/b");
  EXPECT_EQ(page.objects[1].size, 0U);
  EXPECT_EQ(page.objects[1].last_modified, at(1255369831250ms));
  EXPECT_EQ(page.next_continuation_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");

  const auto last = xml::parse_object_page(
      "<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>");
  EXPECT_TRUE(last.objects.empty());
  EXPECT_FALSE(last.next_continuation_token);
}

TEST(s3xml, a_page_of_multipart_uploads) {
  const auto page = xml::parse_upload_page(R"(<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>bucket</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>my-movie.m2ts</NextKeyMarker><NextUploadIdMarker>YW55IGlkZWEgd2h5</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>my-divisor</Key><UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
    <StorageClass>STANDARD</StorageClass><Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
  <Upload><Key>my-movie.m2ts</Key><UploadId>YW55IGlkZWEgd2h5</UploadId>
    <StorageClass>STANDARD</StorageClass><Initiated>2010-11-10T20:49:33.000Z</Initiated></Upload>
</ListMultipartUploadsResult>)");
  ASSERT_EQ(page.uploads.size(), 2U);
  EXPECT_EQ(page.uploads[0].key, "my-divisor");
  EXPECT_EQ(page.uploads[0].upload_id, "XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw");
  EXPECT_EQ(page.uploads[0].initiated, at(1289422113000ms));
  EXPECT_EQ(page.uploads[1].initiated, at(1289422173000ms));
  ASSERT_TRUE(page.next);
  EXPECT_EQ(page.next->key, "my-movie.m2ts");
  EXPECT_EQ(page.next->upload_id, "YW55IGlkZWEgd2h5");

  EXPECT_FALSE(xml::parse_upload_page("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
                                      "</ListMultipartUploadsResult>")
                   .next);
}

TEST(s3xml, the_complete_body_lists_the_parts_in_order) {
  EXPECT_EQ(xml::complete_body(
                {{1, "\"a54357aff0632cce46d942af68356b38\""}, {2, "\"0c78aef83f66abc1fa1e8477f296d394\""}}),
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            "<Part><PartNumber>1</PartNumber><ETag>\"a54357aff0632cce46d942af68356b38\"</ETag></Part>"
            "<Part><PartNumber>2</PartNumber><ETag>\"0c78aef83f66abc1fa1e8477f296d394\"</ETag></Part>"
            "</CompleteMultipartUpload>");
}

// --- addressing
// ---------------------------------------------------------------------------------------------

s3::client_config config(std::string endpoint, bool path_style) {
  s3::client_config c;
  c.endpoint = std::move(endpoint);
  c.region = "eu-west-3";
  c.bucket = "docs";
  c.path_style = path_style;
  c.creds = {"AK", "SK", ""};
  return c;
}

TEST(s3addressing, path_style_puts_the_bucket_in_the_path) {
  EXPECT_EQ(s3::client(config("http://127.0.0.1:7480", true)).url_of("a b/c$"),
            "http://127.0.0.1:7480/docs/a%20b/c%24");
  EXPECT_EQ(s3::client(config("http://[::1]:9000/", true)).url_of("k"), "http://[::1]:9000/docs/k");
  EXPECT_EQ(s3::client(config("https://minio.example", true)).url_of(""), "https://minio.example/docs");
}

TEST(s3addressing, virtual_hosted_puts_the_bucket_in_the_host) {
  EXPECT_EQ(s3::client(config("https://storage.example:8443", false)).url_of("k"),
            "https://docs.storage.example:8443/k");
  EXPECT_EQ(s3::client(config("https://storage.example:8443", false)).url_of(""),
            "https://docs.storage.example:8443/");
}

TEST(s3addressing, without_an_endpoint_it_is_aws_in_the_region) {
  EXPECT_EQ(s3::client(config("", false)).url_of("k"), "https://docs.s3.eu-west-3.amazonaws.com/k");
  EXPECT_EQ(s3::client(config("", true)).url_of("k"), "https://s3.eu-west-3.amazonaws.com/docs/k");
}

TEST(s3addressing, presigned_urls_use_the_same_address) {
  const auto url = s3::client(config("http://127.0.0.1:7480", true)).presign_get("a b", 60s);
  EXPECT_TRUE(url.starts_with("http://127.0.0.1:7480/docs/a%20b?X-Amz-Algorithm=AWS4-HMAC-SHA256&")) << url;
  EXPECT_NE(url.find("%2Feu-west-3%2Fs3%2Faws4_request&"), std::string::npos) << url;
  EXPECT_THROW(s3::client(config("http://127.0.0.1:7480", true)).presign_get("k", 8 * 24h),
               std::invalid_argument);
}

TEST(s3addressing, endpoints_other_than_scheme_host_port_are_refused) {
  for (const char* endpoint : {"127.0.0.1:7480", "ftp://h", "http://h/prefix", "http://h?x=1", "http://u:p@h",
                               "http://h#f", "not a url"}) {
    EXPECT_THROW(s3::client(config(endpoint, true)), std::invalid_argument) << endpoint;
  }
  // An address has no name to put the bucket in front of.
  EXPECT_THROW(s3::client(config("http://127.0.0.1:7480", false)), std::invalid_argument);
  EXPECT_THROW(s3::client(config("http://[::1]:7480", false)), std::invalid_argument);
  auto no_bucket = config("http://h", true);
  no_bucket.bucket.clear();
  EXPECT_THROW(s3::client{no_bucket}, std::invalid_argument);
}

}  // namespace
