#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace docflow::blob::s3 {

/// An access key, its secret and, for temporary credentials, the session
/// token (empty when there is none).
struct credentials {
  std::string access_key;
  std::string secret_key;
  std::string session_token;
};

using param_list = std::vector<std::pair<std::string, std::string>>;

/// The hex SHA-256 of no bytes: the payload hash of a request without a body.
inline constexpr std::string_view empty_payload_sha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Percent-encoding as SigV4 defines it (RFC 3986): only `A-Z a-z 0-9 - _ . ~`
/// stay bare, every other byte becomes `%XX` (upper-case hex); `/` too unless
/// `keep_slash`.
std::string uri_encode(std::string_view text, bool keep_slash);

/// The canonical URI of a path (`/bucket/some key`): each segment encoded
/// once (S3 does not double-encode), the slashes kept. It is also the path
/// to send, so that what is signed is what the server sees.
std::string canonical_uri(std::string_view path);

/// The canonical query string of unencoded parameters: names and values
/// encoded, sorted by encoded name (then value), every name followed by `=`
/// (`uploads=`). It is also the query string to send.
std::string canonical_query(const param_list& params);

/// An HTTP request as SigV4 sees it.
struct request_to_sign {
  std::string_view method;
  std::string_view path;  ///< unencoded, starting with '/'
  param_list query;       ///< unencoded
  /// The headers to sign, `host` among them; names in any case. `x-amz-date`,
  /// `x-amz-content-sha256` and `x-amz-security-token` are added by sign().
  param_list headers;
  std::string_view payload_sha256;  ///< hex, or "UNSIGNED-PAYLOAD"
};

/// The canonical request (task 1 of SigV4): method, canonical URI, canonical
/// query, the headers lower-cased, trimmed, sorted, each line ended by a
/// newline, the signed header names, the payload hash.
std::string canonical_request(const request_to_sign& request);

/// `YYYYMMDDTHHMMSSZ`, the form of `x-amz-date` and `X-Amz-Date`.
std::string amz_date(std::chrono::system_clock::time_point t);

/// The headers a signed request sends, beside those it was given.
struct signed_headers {
  std::string amz_date;        ///< x-amz-date
  std::string content_sha256;  ///< x-amz-content-sha256
  std::string authorization;   ///< Authorization
};

/// AWS Signature Version 4 for one region of S3. Thread-safe: the clients'
/// threads share one signer, which derives the signing key once a day.
class signer {
public:
  signer(credentials creds, std::string region);

  const credentials& creds() const noexcept { return creds_; }
  const std::string& region() const noexcept { return region_; }

  /// Signs `request` as sent at `now` (header-based authentication). The
  /// caller sends the request's headers, the three returned ones and, when
  /// the credentials have a session token, `x-amz-security-token`: all of
  /// them are signed. Throws std::runtime_error when OpenSSL fails.
  signed_headers sign(request_to_sign request, std::chrono::system_clock::time_point now) const;

  /// A presigned URL (query-string authentication) for `method` on `path` of
  /// `scheme://host`, valid for `expires` from `now` (1 s to 7 days, S3's
  /// bounds: std::invalid_argument otherwise). `extra` query parameters
  /// (`response-content-disposition`, ...) are signed with it. Only `host` is
  /// a signed header; the payload is UNSIGNED-PAYLOAD.
  std::string presign(std::string_view method, std::string_view scheme, std::string_view host,
                      std::string_view path, std::chrono::seconds expires,
                      std::chrono::system_clock::time_point now, const param_list& extra = {}) const;

  /// The signing key of a day (`YYYYMMDD`), raw: HMAC chain of
  /// "AWS4" + secret, date, region, "s3", "aws4_request".
  std::string signing_key(std::string_view yyyymmdd) const;

private:
  std::string scope(std::string_view yyyymmdd) const;
  std::string signature(std::string_view amz_date_value, std::string_view canonical) const;

  credentials creds_;
  std::string region_;
  mutable std::mutex key_mutex_;
  mutable std::string key_date_;  ///< the day key_ was derived for
  mutable std::string key_;
};

}  // namespace docflow::blob::s3
