#include "blob/s3/client.hpp"

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "blob/s3/xml.hpp"
#include "core/backoff.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace docflow::blob::s3 {

s3_error::s3_error(const std::string& what, int status, std::string code, std::string request_id)
    : blob_error(what), status_(status), code_(std::move(code)), request_id_(std::move(request_id)) {}

std::string_view error_kind(const s3_error& e) noexcept {
  if (e.status() == 0) return "network";
  if (e.status() == 429 || e.status() == 503 || e.code() == "SlowDown") return "throttled";
  if (e.status() >= 500) return "server";
  return "client";
}

payload payload::memory(std::string_view bytes, std::string sha256_hex) {
  payload p;
  p.bytes = bytes;
  p.length = bytes.size();
  p.sha256_hex = std::move(sha256_hex);
  return p;
}

payload payload::file(int fd, std::uint64_t offset, std::uint64_t length, std::string sha256_hex) {
  payload p;
  p.fd = fd;
  p.offset = offset;
  p.length = length;
  p.sha256_hex = std::move(sha256_hex);
  return p;
}

namespace {

// An error's code is in its first bytes; a listing of 1,000 keys of 1 KiB
// is about 1.3 MB.
constexpr std::size_t max_error_body = 64 * 1024;
constexpr std::size_t max_answer_body = 16 * 1024 * 1024;
constexpr std::size_t hash_chunk = 256 * 1024;
constexpr unsigned max_part_number = 10000;
constexpr long stall_bytes_per_second = 1024;

// A failed attempt, and whether repeating it may help.
class attempt_failed : public s3_error {
public:
  attempt_failed(const std::string& what, int status, std::string code, std::string request_id,
                 bool retryable)
      : s3_error(what, status, std::move(code), std::move(request_id)), retryable_(retryable) {}
  bool retryable() const noexcept { return retryable_; }

private:
  bool retryable_;
};

// Answers that say "not now" rather than "no": S3 asks for these to be retried.
bool retryable_answer(long status, std::string_view code) {
  return status == 500 || status == 502 || status == 503 || status == 504 || status == 429 ||
         code == "RequestTimeout" || code == "SlowDown" || code == "InternalError" ||
         code == "ServiceUnavailable";
}

// Failures of the connection, not of the request: the next try may find
// the service back. Refused certificates, bad URLs and our own aborts are not.
bool retryable_transport(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return true;
    default: return false;
  }
}

struct md_ctx_free {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using md_ctx = std::unique_ptr<EVP_MD_CTX, md_ctx_free>;

md_ctx new_digest(const EVP_MD* md) {
  md_ctx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) throw blob_error("OpenSSL digest setup failed");
  return ctx;
}

std::string finish(EVP_MD_CTX* ctx) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx, out.data(), &len) != 1) throw blob_error("OpenSSL digest failed");
  return {reinterpret_cast<const char*>(out.data()), len};
}

std::string base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// Reads `n` bytes of the payload's file at `at` (relative to its offset);
// a file that ends early or fails is the caller's broken file, not S3's.
std::size_t read_file(const payload& p, std::uint64_t at, char* out, std::size_t n) {
  for (;;) {
    const auto got = ::pread(p.fd, out, n, static_cast<off_t>(p.offset + at));
    if (got > 0) return static_cast<std::size_t>(got);
    if (got == 0) throw blob_error("the upload's file ended before its declared length");
    if (errno != EINTR) throw blob_error(std::string("reading the upload's file: ") + std::strerror(errno));
  }
}

// Content-MD5 (base64) and the hex SHA-256 of a payload, in one pass.
struct digests {
  std::string md5;  // raw 16 bytes
  std::string sha256_hex;
};

digests digest(const payload& p) {
  const auto md5 = new_digest(EVP_md5());
  const bool need_sha = p.sha256_hex.empty();
  const auto sha = need_sha ? new_digest(EVP_sha256()) : md_ctx{};
  const auto update = [&](const char* data, std::size_t n) {
    if (EVP_DigestUpdate(md5.get(), data, n) != 1 || (sha && EVP_DigestUpdate(sha.get(), data, n) != 1)) {
      throw blob_error("OpenSSL digest failed");
    }
  };
  if (p.fd < 0) {
    update(p.bytes.data(), p.bytes.size());
  } else {
    std::string buffer(std::min<std::uint64_t>(hash_chunk, p.length), '\0');
    for (std::uint64_t done = 0; done < p.length;) {
      const auto n =
          read_file(p, done, buffer.data(), std::min<std::uint64_t>(buffer.size(), p.length - done));
      update(buffer.data(), n);
      done += n;
    }
  }
  return {finish(md5.get()), need_sha ? core::hex_encode(finish(sha.get())) : p.sha256_hex};
}

std::string strip_quotes(std::string_view etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return std::string(etag);
}

// The ETag S3 gives an object completed from `parts` when each part's ETag
// is its MD5: the MD5 of the parts' MD5s, a dash, their count. Nullopt when
// a part's ETag is not an MD5 (SSE-KMS and the like).
std::optional<std::string> multipart_etag(const std::vector<completed_part>& parts) {
  const auto md5 = new_digest(EVP_md5());
  for (const auto& part : parts) {
    const auto hex = strip_quotes(part.etag);
    long len = 0;
    std::unique_ptr<unsigned char, void (*)(unsigned char*)> raw(
        hex.size() == 32 ? OPENSSL_hexstr2buf(hex.c_str(), &len) : nullptr,
        [](unsigned char* b) { OPENSSL_free(b); });
    if (!raw || len != 16) return std::nullopt;
    if (EVP_DigestUpdate(md5.get(), raw.get(), 16) != 1) throw blob_error("OpenSSL digest failed");
  }
  return core::hex_encode(finish(md5.get())) + '-' + std::to_string(parts.size());
}

std::optional<std::uint64_t> parse_u64(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::mt19937_64& jitter_source() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

// One request, as the operations describe it.
struct request {
  std::string_view operation{};  // S3's name for it: logs, errors, test faults
  std::string_view method{};
  std::string key{};  // empty for requests on the bucket
  param_list query{};
  param_list headers{};  // signed and sent
  std::string payload_sha256 = std::string(empty_payload_sha256);
  const payload* upload = nullptr;                              // the body of a PUT
  std::string_view post_body{};                                 // the body of a POST
  const std::function<void(std::string_view)>* sink = nullptr;  // where a 2xx body goes
};

// What came back: the status, the headers (names lower-cased), the body
// unless a sink took it.
struct answer {
  long status = 0;
  std::map<std::string, std::string, std::less<>> headers;
  std::string body;

  std::string header(std::string_view name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

std::string error_code(const answer& a) {
  const auto error = xml::parse_error(a.body);
  return error ? error->code : std::string();
}

// The state libcurl's callbacks share during one attempt.
struct transfer {
  CURL* handle = nullptr;
  answer* out = nullptr;
  const request* req = nullptr;
  std::uint64_t sent = 0;    // body bytes handed to libcurl
  std::exception_ptr error;  // thrown by the sink or while reading the upload

  bool success() const {
    long status = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    return status >= 200 && status < 300;
  }
};

extern "C" size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<transfer*>(user);
  const std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    t.out->headers.clear();  // a new answer: 100 Continue, then the real one
  } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.remove_suffix(1);
    t.out->headers[core::ascii_lower(line.substr(0, colon))] = std::string(core::trim_ows(value));
  }
  return size * count;
}

extern "C" size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto& t = *static_cast<transfer*>(user);
  const std::string_view bytes(data, size * count);
  const bool success = t.success();
  if (success && t.req->sink) {
    try {
      (*t.req->sink)(bytes);
    } catch (...) {
      t.error = std::current_exception();
      return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
    }
    return bytes.size();
  }
  auto& body = t.out->body;
  if (!success) {
    body.append(bytes.substr(0, max_error_body - std::min(max_error_body, body.size())));
  } else if (body.size() + bytes.size() <= max_answer_body) {
    body.append(bytes);
  } else {
    t.error = std::make_exception_ptr(blob_error("S3 answer larger than 16 MiB"));
    return 0;
  }
  return bytes.size();
}

extern "C" size_t on_read(char* out, size_t size, size_t count, void* user) {
  auto& t = *static_cast<transfer*>(user);
  const payload& p = *t.req->upload;
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(size * count, p.length - t.sent));
  if (n == 0) return 0;
  try {
    std::size_t got = n;
    if (p.fd < 0) {
      std::memcpy(out, p.bytes.data() + t.sent, n);
    } else {
      got = read_file(p, t.sent, out, n);
    }
    t.sent += got;
    return got;
  } catch (...) {
    t.error = std::current_exception();
    return CURL_READFUNC_ABORT;
  }
}

// libcurl rewinds the body when it sends it again on a fresh connection.
extern "C" int on_seek(void* user, curl_off_t offset, int origin) {
  auto& t = *static_cast<transfer*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<std::uint64_t>(offset) > t.req->upload->length) {
    return CURL_SEEKFUNC_FAIL;
  }
  t.sent = static_cast<std::uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

struct slist_free {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

struct client::impl {
  client_config config;
  signer sigv4;
  std::string scheme;
  std::string endpoint_host;  // host[:port], as the Host header of path-style requests
  std::mutex pool_mutex;
  std::vector<CURL*> idle;  // handles with their open connections, for the next request

  explicit impl(client_config c) : config(std::move(c)), sigv4(config.creds, config.region) {}

  ~impl() {
    for (auto* h : idle) curl_easy_cleanup(h);
  }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  std::string host() const { return config.path_style ? endpoint_host : config.bucket + '.' + endpoint_host; }

  std::string path(std::string_view key) const {
    std::string p = "/";
    if (config.path_style) {
      p += config.bucket;
      if (!key.empty()) p += '/';
    }
    p += key;
    return p;
  }

  // A handle keeps its connection (and libcurl its DNS answers) from one
  // request to the next; curl_easy_reset keeps both.
  CURL* acquire() {
    {
      std::lock_guard lock(pool_mutex);
      if (!idle.empty()) {
        auto* h = idle.back();
        idle.pop_back();
        return h;
      }
    }
    auto* h = curl_easy_init();
    if (!h) throw blob_error("curl_easy_init failed");
    return h;
  }

  void release(CURL* h) {
    curl_easy_reset(h);
    std::unique_lock lock(pool_mutex);
    if (idle.size() < config.max_idle_connections) {
      idle.push_back(h);
      return;
    }
    lock.unlock();
    curl_easy_cleanup(h);
  }

  std::string describe(const request& r) const {
    return "S3 " + std::string(r.operation) + (r.key.empty() ? std::string() : " " + r.key);
  }

  // The failure an answer stands for.
  [[noreturn]] void fail(const request& r, const answer& a) const {
    const auto parsed = xml::parse_error(a.body);
    const auto code = parsed ? parsed->code : std::string();
    auto id = a.header("x-amz-request-id");
    if (id.empty() && parsed) id = parsed->request_id;
    std::string what = describe(r) + ": " + std::to_string(a.status);
    if (!code.empty()) what += " " + code;
    if (parsed && !parsed->message.empty()) what += ": " + parsed->message;
    if (!id.empty()) what += " (request id " + id + ")";
    throw attempt_failed(what, static_cast<int>(a.status), code, id, retryable_answer(a.status, code));
  }

  // One attempt: the answer, whatever its status, in `out`. Throws
  // attempt_failed when no (complete) answer came, and what the sink or the
  // upload's file threw.
  void perform(const request& r, answer& out) {
    const auto request_host = host();
    const auto request_path = path(r.key);
    request_to_sign to_sign{r.method, request_path, r.query, r.headers, r.payload_sha256};
    to_sign.headers.emplace_back("host", request_host);
    const auto sig = sigv4.sign(std::move(to_sign), std::chrono::system_clock::now());

    const auto query = canonical_query(r.query);
    const auto url =
        scheme + "://" + request_host + canonical_uri(request_path) + (query.empty() ? "" : "?" + query);
    std::unique_ptr<curl_slist, slist_free> headers;
    const auto add = [&](const std::string& line) {
      auto* grown = curl_slist_append(headers.get(), line.c_str());
      if (!grown) throw blob_error("curl_slist_append failed");
      static_cast<void>(headers.release());
      headers.reset(grown);
    };
    add("Host: " + request_host);
    for (const auto& [name, value] : r.headers) add(std::string(name).append(": ").append(value));
    add("x-amz-date: " + sig.amz_date);
    add("x-amz-content-sha256: " + sig.content_sha256);
    if (!config.creds.session_token.empty()) add("x-amz-security-token: " + config.creds.session_token);
    add("Authorization: " + sig.authorization);
    // No 100-continue round trip (and no 1 s wait on a service that ignores
    // it); no form type on our bodiless POSTs.
    add("Expect:");
    bool typed = false;
    for (const auto& h : r.headers) typed = typed || core::iequals(h.first, "content-type");
    if (!typed) add("Content-Type:");

    // Back to the pool (reset) when this attempt ends, however it ends.
    struct lease {
      impl& owner;
      CURL* handle;
      ~lease() { owner.release(handle); }
    } leased{*this, acquire()};
    CURL* c = leased.handle;

    transfer t;
    t.handle = c;
    t.out = &out;
    t.req = &r;
    std::array<char, CURL_ERROR_SIZE> error_text{};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);    // called from many threads: no SIGALRM for DNS timeouts
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);  // keys are not paths: no dot-segment squashing
    curl_easy_setopt(c, CURLOPT_USERAGENT, "docflow");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_text.data());
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config.connect_timeout.count()));
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, stall_bytes_per_second);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(config.stall_timeout.count()));
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    if (r.method == "HEAD") {
      curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (r.method == "PUT") {
      curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(r.upload->length));
      curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(c, CURLOPT_READDATA, &t);
      curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
      curl_easy_setopt(c, CURLOPT_SEEKDATA, &t);
    } else if (r.method == "POST") {
      curl_easy_setopt(c, CURLOPT_POST, 1L);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, r.post_body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.post_body.size()));
    } else if (r.method != "GET") {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, std::string(r.method).c_str());
    }

    const auto code = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
    if (t.error) std::rethrow_exception(t.error);
    if (code != CURLE_OK) {
      const std::string detail = error_text[0] ? error_text.data() : curl_easy_strerror(code);
      throw attempt_failed(describe(r) + ": no answer: " + detail, 0, detail, "", retryable_transport(code));
    }
    if (config.faults.on_answer && config.faults.on_answer(r.operation, out.status, out.body)) {
      throw attempt_failed(describe(r) + ": answer dropped (test fault)", 0, "AnswerDropped", "", true);
    }
  }

  // Runs `attempt` (given its number, 1 = the first) until it returns, or
  // throws a failure that is final or the last allowed.
  template <class F>
  auto retrying(std::string_view operation, F&& attempt) -> decltype(attempt(1U)) {
    for (unsigned n = 1;; ++n) {
      try {
        return attempt(n);
      } catch (const attempt_failed& e) {
        if (config.on_error) config.on_error(operation, e);
        if (!e.retryable() || n >= config.retry.max_attempts) throw;
        if (config.on_retry) config.on_retry(operation, e, n);
      }
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      std::this_thread::sleep_for(
          core::retry_delay(n, config.retry.base, config.retry.cap, unit(jitter_source())));
    }
  }

  // Size, ETag and time from the headers of a 200 or 206.
  static std::optional<object_info> info_of(const answer& a) {
    object_info info;
    std::optional<std::uint64_t> size;
    if (a.status == 206) {
      const auto range = a.header("content-range");  // bytes 0-9/443
      const auto slash = range.rfind('/');
      if (slash != std::string::npos) size = parse_u64(std::string_view(range).substr(slash + 1));
    } else {
      size = parse_u64(a.header("content-length"));
    }
    if (!size) return std::nullopt;
    info.size = *size;
    info.etag = a.header("etag");
    const auto modified = a.header("last-modified");
    const auto seconds = modified.empty() ? -1 : curl_getdate(modified.c_str(), nullptr);
    if (seconds >= 0) info.last_modified = std::chrono::system_clock::from_time_t(seconds);
    return info;
  }

  object_info require_info(const request& r, const answer& a) const {
    auto info = info_of(a);
    if (!info)
      throw s3_error(describe(r) + ": answer without a usable size", static_cast<int>(a.status),
                     "MalformedAnswer", a.header("x-amz-request-id"));
    return *info;
  }

  std::string put(request r, const payload& body) {
    const auto d = digest(body);
    auto md5 = d.md5;
    if (config.faults.corrupt_content_md5) md5[0] = static_cast<char>(md5[0] ^ 0x5a);
    r.headers.emplace_back("content-md5", base64(md5));
    r.payload_sha256 = d.sha256_hex;
    r.upload = &body;
    return retrying(r.operation, [&](unsigned) {
      answer a;
      perform(r, a);
      if (a.status != 200) fail(r, a);
      return a.header("etag");
    });
  }
};

client::client(client_config config) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (config.bucket.empty()) throw std::invalid_argument("S3: the bucket is empty");
  if (config.region.empty()) throw std::invalid_argument("S3: the region is empty");
  impl_ = std::make_unique<impl>(std::move(config));
  auto& cfg = impl_->config;
  if (cfg.endpoint.empty()) {
    impl_->scheme = "https";
    impl_->endpoint_host = "s3." + cfg.region + ".amazonaws.com";
    return;
  }
  const std::unique_ptr<CURLU, void (*)(CURLU*)> url(curl_url(), curl_url_cleanup);
  const auto part = [&](CURLUPart which) -> std::optional<std::string> {
    char* value = nullptr;
    if (curl_url_get(url.get(), which, &value, 0) != CURLUE_OK) return std::nullopt;
    std::string out(value);
    curl_free(value);
    return out;
  };
  const auto bad = [&](const std::string& why) {
    throw std::invalid_argument("S3 endpoint '" + cfg.endpoint + "': " + why);
  };
  if (!url || curl_url_set(url.get(), CURLUPART_URL, cfg.endpoint.c_str(), 0) != CURLUE_OK) bad("not a URL");
  const auto scheme = part(CURLUPART_SCHEME);
  if (!scheme || (*scheme != "http" && *scheme != "https")) bad("the scheme must be http or https");
  const auto path = part(CURLUPART_PATH);
  if ((path && *path != "/") || part(CURLUPART_QUERY) || part(CURLUPART_FRAGMENT) || part(CURLUPART_USER)) {
    bad("only scheme://host[:port] is allowed");
  }
  const auto host = part(CURLUPART_HOST);
  if (!host || host->empty()) bad("no host");
  const bool ip_literal = host->front() == '[' || host->find_first_not_of("0123456789.") == std::string::npos;
  if (!cfg.path_style && ip_literal) bad("virtual-hosted addressing needs a host name (use path-style)");
  impl_->scheme = *scheme;
  impl_->endpoint_host = *host;
  if (const auto port = part(CURLUPART_PORT)) impl_->endpoint_host += ':' + *port;
}

client::~client() = default;

std::string client::put_object(const std::string& key, const payload& body) {
  return impl_->put({.operation = "PutObject", .method = "PUT", .key = key}, body);
}

std::optional<object_info> client::get_object(const std::string& key, const std::optional<byte_range>& range,
                                              const std::function<void(std::string_view)>& sink) {
  std::uint64_t delivered = 0;
  std::string etag;
  std::optional<object_info> info;
  const std::function<void(std::string_view)> counting = [&](std::string_view bytes) {
    sink(bytes);
    delivered += bytes.size();
  };
  return impl_->retrying("GetObject", [&](unsigned) -> std::optional<object_info> {
    request r{.operation = "GetObject", .method = "GET", .key = key, .sink = &counting};
    auto first = range ? range->first : 0;
    if (delivered > 0) {
      // Resume after what the sink has, from the very same object.
      if (etag.empty()) throw s3_error(impl_->describe(r) + ": cut off, and no ETag to resume by", 0, "", "");
      first += delivered;
      r.headers.emplace_back("if-match", etag);
    }
    if (range || delivered > 0) {
      auto value = "bytes=" + std::to_string(first) + '-';
      if (range && range->last) value += std::to_string(*range->last);
      r.headers.emplace_back("range", value);
    }
    answer a;
    try {
      impl_->perform(r, a);
    } catch (const attempt_failed&) {
      // Cut off mid-body: keep what identifies the object for the resume.
      if (delivered > 0 && etag.empty()) etag = a.header("etag");
      if (!info && (a.status == 200 || a.status == 206)) info = impl::info_of(a);
      throw;
    }
    if (a.status == 404 && delivered == 0 && error_code(a) == "NoSuchKey") return std::nullopt;
    if (a.status != 200 && a.status != 206) impl_->fail(r, a);
    if (!info) info = impl_->require_info(r, a);
    return info;
  });
}

std::optional<object_info> client::head_object(const std::string& key) {
  return impl_->retrying("HeadObject", [&](unsigned) -> std::optional<object_info> {
    const request r{.operation = "HeadObject", .method = "HEAD", .key = key};
    answer a;
    impl_->perform(r, a);
    if (a.status == 404) return std::nullopt;
    if (a.status != 200) impl_->fail(r, a);
    return impl_->require_info(r, a);
  });
}

void client::delete_object(const std::string& key) {
  impl_->retrying("DeleteObject", [&](unsigned) {
    const request r{.operation = "DeleteObject", .method = "DELETE", .key = key};
    answer a;
    impl_->perform(r, a);
    if (a.status != 204 && a.status != 200) impl_->fail(r, a);
  });
}

std::string client::create_multipart_upload(const std::string& key) {
  // Repeating it after a lost answer leaves an upload nobody completes: the
  // sweep of stale uploads (and the bucket's lifecycle rule) aborts it.
  return impl_->retrying("CreateMultipartUpload", [&](unsigned) {
    const request r{
        .operation = "CreateMultipartUpload", .method = "POST", .key = key, .query = {{"uploads", ""}}};
    answer a;
    impl_->perform(r, a);
    if (a.status != 200) impl_->fail(r, a);
    return xml::parse_upload_id(a.body);
  });
}

std::string client::upload_part(const std::string& key, const std::string& upload_id, unsigned part_number,
                                const payload& body) {
  if (part_number < 1 || part_number > max_part_number) {
    throw std::invalid_argument("S3 part numbers run from 1 to 10,000");
  }
  return impl_->put({.operation = "UploadPart",
                     .method = "PUT",
                     .key = key,
                     .query = {{"partNumber", std::to_string(part_number)}, {"uploadId", upload_id}}},
                    body);
}

std::string client::complete_multipart_upload(const std::string& key, const std::string& upload_id,
                                              const std::vector<completed_part>& parts,
                                              std::uint64_t expected_size) {
  const auto body = xml::complete_body(parts);
  request r{.operation = "CompleteMultipartUpload",
            .method = "POST",
            .key = key,
            .query = {{"uploadId", upload_id}},
            .headers = {{"content-type", "application/xml"}},
            .payload_sha256 = core::sha256_hex(body),
            .post_body = body};
  return impl_->retrying(r.operation, [&](unsigned attempt) {
    answer a;
    impl_->perform(r, a);
    if (a.status == 200) {
      // S3 may answer 200 and then report a failure in the body.
      if (xml::parse_error(a.body)) impl_->fail(r, a);
      // radosgw 16 gives the ETag of a repeated Complete without its quotes.
      if (auto etag = xml::parse_complete_etag(a.body); !etag.empty()) return '"' + strip_quotes(etag) + '"';
      // radosgw 16 leaves the ETag empty: the object has it.
      const auto object = head_object(key);
      if (!object)
        throw s3_error(impl_->describe(r) + ": completed, but the object is missing", 404, "NoSuchKey", "");
      return object->etag;
    }
    if (attempt > 1 && a.status == 404 && error_code(a) == "NoSuchUpload") {
      // An earlier attempt's answer was lost: it may have completed the
      // upload. Only the object itself can say.
      const auto object = head_object(key);
      const auto etag = multipart_etag(parts);
      if (object && object->size == expected_size && (!etag || strip_quotes(object->etag) == *etag)) {
        return object->etag;
      }
    }
    impl_->fail(r, a);
  });
}

void client::abort_multipart_upload(const std::string& key, const std::string& upload_id) {
  impl_->retrying("AbortMultipartUpload", [&](unsigned) {
    const request r{.operation = "AbortMultipartUpload",
                    .method = "DELETE",
                    .key = key,
                    .query = {{"uploadId", upload_id}}};
    answer a;
    impl_->perform(r, a);
    if (a.status == 204 || a.status == 200) return;
    if (a.status == 404 && error_code(a) == "NoSuchUpload") return;
    impl_->fail(r, a);
  });
}

upload_page client::list_multipart_uploads(const std::string& prefix,
                                           const std::optional<upload_marker>& after) {
  request r{
      .operation = "ListMultipartUploads", .method = "GET", .query = {{"uploads", ""}, {"prefix", prefix}}};
  if (after) {
    r.query.emplace_back("key-marker", after->key);
    r.query.emplace_back("upload-id-marker", after->upload_id);
  }
  return impl_->retrying(r.operation, [&](unsigned) {
    answer a;
    impl_->perform(r, a);
    if (a.status != 200) impl_->fail(r, a);
    return xml::parse_upload_page(a.body);
  });
}

object_page client::list_objects_v2(const std::string& prefix,
                                    const std::optional<std::string>& continuation_token, unsigned max_keys,
                                    const std::string& start_after) {
  request r{
      .operation = "ListObjectsV2",
      .method = "GET",
      .query = {
          {"list-type", "2"}, {"prefix", prefix}, {"max-keys", std::to_string(std::min(max_keys, 1000U))}}};
  if (continuation_token) r.query.emplace_back("continuation-token", *continuation_token);
  if (!start_after.empty()) r.query.emplace_back("start-after", start_after);
  return impl_->retrying(r.operation, [&](unsigned) {
    answer a;
    impl_->perform(r, a);
    if (a.status != 200) impl_->fail(r, a);
    return xml::parse_object_page(a.body);
  });
}

std::string client::presign_get(const std::string& key, std::chrono::seconds expires,
                                const param_list& extra) const {
  return impl_->sigv4.presign("GET", impl_->scheme, impl_->host(), impl_->path(key), expires,
                              std::chrono::system_clock::now(), extra);
}

std::string client::url_of(const std::string& key) const {
  return impl_->scheme + "://" + impl_->host() + canonical_uri(impl_->path(key));
}

}  // namespace docflow::blob::s3
