#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "blob/blob_store.hpp"
#include "blob/s3/sigv4.hpp"

namespace docflow::blob::s3 {

/// A request S3 refused, or one that got no answer. `what()` names the
/// operation, the key, the status, S3's code and the request id: for logs.
class s3_error : public blob_error {
public:
  s3_error(const std::string& what, int status, std::string code, std::string request_id);

  /// The HTTP status; 0 when no answer came (connection refused or broken,
  /// timed out).
  int status() const noexcept { return status_; }
  /// S3's error code (`NoSuchKey`, `SignatureDoesNotMatch`, `BadDigest`, ...),
  /// empty when the answer had none (HEAD, a proxy's page); without an
  /// answer, libcurl's description of the failure.
  const std::string& code() const noexcept { return code_; }
  /// `x-amz-request-id`, what S3's support asks for; may be empty.
  const std::string& request_id() const noexcept { return request_id_; }

private:
  int status_;
  std::string code_;
  std::string request_id_;
};

/// What kind of failure `e` is, for a metric's label: `network` (no
/// answer), `throttled` (429, 503, SlowDown), `server` (another 5xx) or
/// `client` (a 4xx: credentials, signature, a missing bucket).
std::string_view error_kind(const s3_error& e) noexcept;

/// How often and how patiently a request that may be repeated is repeated.
/// The waits follow core::retry_delay (exponential, equal jitter).
struct retry_policy {
  unsigned max_attempts = 6;  ///< the first try included
  std::chrono::milliseconds base{200};
  std::chrono::milliseconds cap{4000};
};

/// Faults for tests; production leaves them off.
struct test_faults {
  /// Sends the Content-MD5 of other bytes (the service must refuse: BadDigest).
  bool corrupt_content_md5 = false;
  /// Called after each answer arrives with the operation's name and the
  /// answer's status and body, which it may change (to play a service that
  /// answers otherwise); true drops the answer, as if the connection had
  /// broken before it.
  std::function<bool(std::string_view operation, long& status, std::string& body)> on_answer;
};

struct client_config {
  /// `scheme://host[:port]`, nothing after; empty for AWS
  /// (`https://s3.<region>.amazonaws.com`).
  std::string endpoint;
  std::string region = "us-east-1";
  std::string bucket;
  /// `endpoint/bucket/key` instead of `bucket.endpoint/key`.
  bool path_style = false;
  credentials creds;
  std::chrono::milliseconds connect_timeout{3000};
  /// A transfer that moves less than 1 KiB in this long is cut (then retried).
  std::chrono::seconds stall_timeout{15};
  retry_policy retry;
  /// Connections (libcurl handles) kept open between requests.
  std::size_t max_idle_connections = 32;
  /// Told of each failure about to be retried (for logs and metrics): the
  /// operation, the failure, the attempt that failed (1 = the first).
  std::function<void(std::string_view operation, const s3_error& failure, unsigned attempt)> on_retry;
  /// Told of every failed attempt, retried or not (for metrics). An answer
  /// that a call expects (404 from HeadObject, say) is no failure.
  std::function<void(std::string_view operation, const s3_error& failure)> on_error;
  test_faults faults;
};

/// Bytes to upload: a view of memory, or `length` bytes of an open file
/// from `offset` (read with pread; the descriptor stays the caller's). When
/// the caller already knows the bytes' SHA-256 (hex), it passes it and the
/// client does not hash them again; S3 checks it either way.
struct payload {
  static payload memory(std::string_view bytes, std::string sha256_hex = {});
  static payload file(int fd, std::uint64_t offset, std::uint64_t length, std::string sha256_hex = {});

  std::string_view bytes;
  int fd = -1;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::string sha256_hex;
};

/// Bytes `first` to `last` (inclusive; to the end when absent).
struct byte_range {
  std::uint64_t first = 0;
  std::optional<std::uint64_t> last;
};

struct object_info {
  std::uint64_t size = 0;  ///< of the whole object, also after a range read
  std::string etag;        ///< as S3 gives it, quotes included
  std::chrono::system_clock::time_point last_modified;
};

struct object_entry {
  std::string key;
  std::uint64_t size = 0;
  std::string etag;
  std::chrono::system_clock::time_point last_modified;
};

struct object_page {
  std::vector<object_entry> objects;
  /// Pass to the next call; absent on the last page.
  std::optional<std::string> next_continuation_token;
};

struct upload_entry {
  std::string key;
  std::string upload_id;
  std::chrono::system_clock::time_point initiated;
};

/// Where a listing of multipart uploads goes on.
struct upload_marker {
  std::string key;
  std::string upload_id;
};

struct upload_page {
  std::vector<upload_entry> uploads;
  std::optional<upload_marker> next;  ///< absent on the last page
};

struct completed_part {
  unsigned number = 0;  ///< 1 to 10,000
  std::string etag;     ///< as upload_part returned it
};

/// An S3 client for one bucket. Every method blocks (run it on the blocking
/// pool or a worker thread) and may be called from many threads at once.
/// Requests are signed with our SigV4 and sent on reused connections; those
/// safe to repeat are retried on connection failures, timeouts, 500, 502,
/// 503 and 504 (InternalError, SlowDown, ServiceUnavailable), 429 and
/// RequestTimeout, per the retry policy. Failures throw s3_error; a broken
/// local file or a throwing sink throws what it threw.
class client {
public:
  /// Throws std::invalid_argument on an endpoint that is not
  /// `http(s)://host[:port]` or an empty bucket or region.
  explicit client(client_config config);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Stores `body` under `key` with Content-MD5 and its SHA-256 signed;
  /// returns the ETag. Replacing a key with the same bytes is harmless, so
  /// it is retried.
  std::string put_object(const std::string& key, const payload& body);

  /// Streams the object (or `range` of it) to `sink`, piece by piece;
  /// nullopt when there is no such key. A retry after bytes were delivered
  /// resumes after them, and only from the same object (If-Match on its
  /// ETag: a replaced object is 412, PreconditionFailed). A range past the
  /// end is 416 InvalidRange.
  std::optional<object_info> get_object(const std::string& key, const std::optional<byte_range>& range,
                                        const std::function<void(std::string_view)>& sink);

  /// Size, ETag and time of the object; nullopt when there is none.
  std::optional<object_info> head_object(const std::string& key);

  /// Deletes `key`; a missing key is not an error (S3 answers 204 either way).
  void delete_object(const std::string& key);

  /// Starts a multipart upload to `key`; returns its upload id.
  std::string create_multipart_upload(const std::string& key);

  /// Uploads part `part_number` (1 to 10,000; all but the last at least
  /// 5 MiB) with Content-MD5; returns its ETag, for complete.
  std::string upload_part(const std::string& key, const std::string& upload_id, unsigned part_number,
                          const payload& body);

  /// Joins the parts, in order, into the object; `expected_size` is their
  /// total. Returns the object's ETag. Complete is the one request that is
  /// not simply repeated: when an attempt's answer was lost (no answer, or
  /// a 5xx that may have come after the work was done) and the retry finds
  /// the upload gone (NoSuchUpload), it succeeded only if the object now
  /// exists with `expected_size` bytes and, when the parts' ETags are their
  /// MD5s (no SSE-KMS), with the ETag S3 gives such an object (the MD5 of
  /// the parts' MD5s, `-`, their count); otherwise the NoSuchUpload error is
  /// thrown. S3's "200 with an error inside" answer is treated as that error.
  std::string complete_multipart_upload(const std::string& key, const std::string& upload_id,
                                        const std::vector<completed_part>& parts,
                                        std::uint64_t expected_size);

  /// Aborts the upload and frees its parts; one already gone is not an error.
  void abort_multipart_upload(const std::string& key, const std::string& upload_id);

  /// One page (up to 1,000) of the unfinished multipart uploads under
  /// `prefix`, oldest first within a key, from `after` on.
  upload_page list_multipart_uploads(const std::string& prefix,
                                     const std::optional<upload_marker>& after = {});

  /// One page (up to `max_keys`, at most 1,000) of the objects under
  /// `prefix`, in key order, from the first key after `start_after` (a
  /// whole key; empty for the first) or where `continuation_token` says.
  object_page list_objects_v2(const std::string& prefix,
                              const std::optional<std::string>& continuation_token = {},
                              unsigned max_keys = 1000, const std::string& start_after = {});

  /// A URL that GETs `key` without credentials until `expires` from now (at
  /// most 7 days); `extra` query parameters (response-content-disposition,
  /// ...) are signed with it.
  std::string presign_get(const std::string& key, std::chrono::seconds expires,
                          const param_list& extra = {}) const;

  /// The URL a request for `key` goes to (without its query): path-style or
  /// virtual-hosted as configured.
  std::string url_of(const std::string& key) const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace docflow::blob::s3
