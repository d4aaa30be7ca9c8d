#include "blob/s3/sigv4.hpp"

#include <algorithm>
#include <ctime>
#include <stdexcept>

#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace docflow::blob::s3 {

namespace {

constexpr std::string_view algorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view service = "s3";
constexpr std::chrono::seconds max_presign_expiry{7 * 24 * 3600};

bool unreserved(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

// A header value as SigV4 signs it: outer spaces trimmed, inner runs of
// spaces collapsed to one.
std::string canonical_value(std::string_view value) {
  value = core::trim_ows(value);
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    const bool space = c == ' ' || c == '\t';
    if (space && !out.empty() && out.back() == ' ') continue;
    out += space ? ' ' : c;
  }
  return out;
}

// The canonical header lines and the signed header names of `headers`.
std::pair<std::string, std::string> canonical_headers(const param_list& headers) {
  param_list lowered;
  lowered.reserve(headers.size());
  for (const auto& [name, value] : headers)
    lowered.emplace_back(core::ascii_lower(name), canonical_value(value));
  std::stable_sort(lowered.begin(), lowered.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string lines;
  std::string names;
  for (std::size_t i = 0; i < lowered.size(); ++i) {
    if (i > 0 && lowered[i].first == lowered[i - 1].first) {
      // A repeated header is signed once, its values joined by commas.
      lines.insert(lines.size() - 1, "," + lowered[i].second);
      continue;
    }
    lines += lowered[i].first + ':' + lowered[i].second + '\n';
    if (!names.empty()) names += ';';
    names += lowered[i].first;
  }
  return {std::move(lines), std::move(names)};
}

std::string signed_header_names(const param_list& headers) { return canonical_headers(headers).second; }

}  // namespace

std::string uri_encode(std::string_view text, bool keep_slash) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (unreserved(c) || (keep_slash && c == '/')) {
      out += c;
    } else {
      const auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += hex[byte >> 4];
      out += hex[byte & 0xF];
    }
  }
  return out;
}

std::string canonical_uri(std::string_view path) { return path.empty() ? "/" : uri_encode(path, true); }

std::string canonical_query(const param_list& params) {
  param_list encoded;
  encoded.reserve(params.size());
  for (const auto& [name, value] : params)
    encoded.emplace_back(uri_encode(name, false), uri_encode(value, false));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out += '&';
    out.append(name).append("=").append(value);
  }
  return out;
}

std::string canonical_request(const request_to_sign& request) {
  const auto [lines, names] = canonical_headers(request.headers);
  std::string out;
  out.reserve(256 + lines.size());
  out.append(request.method).append("\n");
  out.append(canonical_uri(request.path)).append("\n");
  out.append(canonical_query(request.query)).append("\n");
  out.append(lines).append("\n");
  out.append(names).append("\n");
  out.append(request.payload_sha256);
  return out;
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  const auto secs = std::chrono::system_clock::to_time_t(std::chrono::floor<std::chrono::seconds>(t));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  if (std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm) == 0)
    throw std::runtime_error("amz_date: bad time");
  return buf;
}

signer::signer(credentials creds, std::string region)
    : creds_(std::move(creds)), region_(std::move(region)) {}

std::string signer::signing_key(std::string_view yyyymmdd) const {
  std::lock_guard lock(key_mutex_);
  if (key_date_ != yyyymmdd) {
    const auto k_date = core::hmac_sha256("AWS4" + creds_.secret_key, yyyymmdd);
    const auto k_region = core::hmac_sha256(k_date, region_);
    const auto k_service = core::hmac_sha256(k_region, service);
    key_ = core::hmac_sha256(k_service, "aws4_request");
    key_date_ = std::string(yyyymmdd);
  }
  return key_;
}

std::string signer::scope(std::string_view yyyymmdd) const {
  std::string out(yyyymmdd);
  out.append("/").append(region_).append("/").append(service).append("/aws4_request");
  return out;
}

std::string signer::signature(std::string_view amz_date_value, std::string_view canonical) const {
  const auto day = amz_date_value.substr(0, 8);
  std::string to_sign(algorithm);
  to_sign.append("\n").append(amz_date_value).append("\n").append(scope(day)).append("\n");
  to_sign.append(core::sha256_hex(canonical));
  return core::hex_encode(core::hmac_sha256(signing_key(day), to_sign));
}

signed_headers signer::sign(request_to_sign request, std::chrono::system_clock::time_point now) const {
  signed_headers out{amz_date(now), std::string(request.payload_sha256), {}};
  request.headers.emplace_back("x-amz-date", out.amz_date);
  request.headers.emplace_back("x-amz-content-sha256", out.content_sha256);
  if (!creds_.session_token.empty())
    request.headers.emplace_back("x-amz-security-token", creds_.session_token);
  const auto sig = signature(out.amz_date, canonical_request(request));
  out.authorization = std::string(algorithm) + " Credential=" + creds_.access_key + '/' +
                      scope(std::string_view(out.amz_date).substr(0, 8)) +
                      ",SignedHeaders=" + signed_header_names(request.headers) + ",Signature=" + sig;
  return out;
}

std::string signer::presign(std::string_view method, std::string_view scheme, std::string_view host,
                            std::string_view path, std::chrono::seconds expires,
                            std::chrono::system_clock::time_point now, const param_list& extra) const {
  if (expires < std::chrono::seconds{1} || expires > max_presign_expiry) {
    throw std::invalid_argument("presigned URLs expire within 1 s to 7 days");
  }
  const auto date = amz_date(now);
  request_to_sign request{method, path, extra, {{"host", std::string(host)}}, "UNSIGNED-PAYLOAD"};
  request.query.emplace_back("X-Amz-Algorithm", algorithm);
  request.query.emplace_back("X-Amz-Credential",
                             creds_.access_key + '/' + scope(std::string_view(date).substr(0, 8)));
  request.query.emplace_back("X-Amz-Date", date);
  request.query.emplace_back("X-Amz-Expires", std::to_string(expires.count()));
  request.query.emplace_back("X-Amz-SignedHeaders", "host");
  if (!creds_.session_token.empty()) request.query.emplace_back("X-Amz-Security-Token", creds_.session_token);
  const auto sig = signature(date, canonical_request(request));
  std::string url(scheme);
  url.append("://")
      .append(host)
      .append(canonical_uri(path))
      .append("?")
      .append(canonical_query(request.query));
  url.append("&X-Amz-Signature=").append(sig);
  return url;
}

}  // namespace docflow::blob::s3
