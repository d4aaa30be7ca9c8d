#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "blob/s3/client.hpp"

// S3's XML answers, read with pugixml. Pure functions, apart from the client
// so that tests can feed them the samples of S3's documentation.
namespace docflow::blob::s3::xml {

/// An `<Error>` document's code, message and request id.
struct error_body {
  std::string code;
  std::string message;
  std::string request_id;
};

/// The error a body holds, or nullopt when it is not an `<Error>` document
/// (empty, HTML from a proxy, or a success).
std::optional<error_body> parse_error(std::string_view body);

/// The `<UploadId>` of InitiateMultipartUploadResult. Throws s3_error
/// (code "MalformedAnswer") when absent.
std::string parse_upload_id(std::string_view body);

/// The `<ETag>` of CompleteMultipartUploadResult; empty when the service
/// leaves it empty (radosgw 16 does). Throws s3_error (code
/// "MalformedAnswer") when the answer is not that document.
std::string parse_complete_etag(std::string_view body);

/// A ListBucketResult (ListObjectsV2). Throws s3_error ("MalformedAnswer").
object_page parse_object_page(std::string_view body);

/// A ListMultipartUploadsResult. Throws s3_error ("MalformedAnswer").
upload_page parse_upload_page(std::string_view body);

/// The CompleteMultipartUpload request body for `parts`.
std::string complete_body(const std::vector<completed_part>& parts);

}  // namespace docflow::blob::s3::xml
