#include "config/config.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string_view>
#include <utility>

#include <boost/url/encoding_opts.hpp>
#include <boost/url/host_type.hpp>
#include <boost/url/ipv4_address.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/pct_string_view.hpp>
#include <boost/url/scheme.hpp>
#include <boost/url/url.hpp>
#include <boost/url/url_view.hpp>

#include "config/units.hpp"
#include "core/encoding.hpp"

namespace docflow::config {

const std::vector<setting_info>& settings() {
  // serve reads every setting, worker those of storage and the pipeline,
  // migrate and user only where the database is.
  constexpr unsigned job_commands = for_serve | for_worker;
  constexpr unsigned every_command = for_serve | for_worker | for_migrate | for_user | for_maintenance;
  // The commands that open the blob store.
  constexpr unsigned storage_commands = job_commands | for_maintenance;
  static const std::vector<setting_info> all{
      {"DOCFLOW_LISTEN", "--listen", "address:port to listen on (default 127.0.0.1:8000)", for_serve},
      {"DOCFLOW_DATA_DIR", "--data-dir", "directory for the database, blobs and secrets (default ./data)",
       every_command},
      {"DOCFLOW_DATABASE_URL", "--database-url",
       "sqlite://PATH, or postgresql://USER@HOST:PORT/DB?sslmode=... for a shared database (default "
       "sqlite://<data>/docflow.db)",
       every_command},
      {"DOCFLOW_DATABASE_PASSWORD", "--database-password",
       "PostgreSQL password; wins over one in the URL (default: the URL's, or ~/.pgpass)", every_command,
       true},
      {"DOCFLOW_DATABASE_POOL", "--database-pool",
       "PostgreSQL connections this process may open (default: workers + 2 x cores + 2)", job_commands},
      {"DOCFLOW_STORAGE_URL", "--storage-url",
       "file://PATH, or s3://BUCKET[/PREFIX][?endpoint=http(s)://HOST[:PORT]&region=R&path_style=true] "
       "(default file://<data>/blobs; region default AWS_REGION, AWS_DEFAULT_REGION, us-east-1)",
       storage_commands},
      {"DOCFLOW_SCRATCH_DIR", "--scratch-dir",
       "directory for temporary local copies of blobs: upload spools, workers' inputs (default "
       "<data>/scratch)",
       storage_commands},
      {"DOCFLOW_S3_PART_SIZE", "--s3-part-size",
       "part size of multipart uploads to S3, 5MiB to 5GiB; larger uploads go up in parts (default 8MiB)",
       for_serve},
      {"DOCFLOW_S3_PRESIGNED_DOWNLOADS", "--s3-presigned-downloads",
       "on or off: /content answers 302 to a short-lived presigned S3 URL (default off; s3:// only)",
       for_serve},
      {"AWS_ACCESS_KEY_ID", "--aws-access-key-id", "S3 access key ID (required with s3://)", storage_commands,
       true},
      {"AWS_SECRET_ACCESS_KEY", "--aws-secret-access-key", "S3 secret access key (required with s3://)",
       storage_commands, true},
      {"AWS_SESSION_TOKEN", "--aws-session-token",
       "S3 session token, with temporary credentials (default unset)", storage_commands, true},
      {"DOCFLOW_AUTO_MIGRATE", "--auto-migrate",
       "on or off: whether this command applies pending migrations; off, it refuses an older schema "
       "(run docflow migrate) (default on with SQLite)",
       job_commands | for_user | for_maintenance},
      {"DOCFLOW_JWT_SECRET", "--jwt-secret",
       "HS256 key, at least 32 bytes (default: generated into <data>/jwt.secret; required with PostgreSQL)",
       job_commands, true},
      {"DOCFLOW_JWT_SECRET_PREVIOUS", "--jwt-secret-previous",
       "the key before the current one, still accepted when verifying during a rotation (default unset)",
       for_serve, true},
      {"DOCFLOW_API_KEY_SECRET", "--api-key-secret",
       "key of the hashes API keys are stored as, at least 32 bytes (default: DOCFLOW_JWT_SECRET); set it to "
       "the "
       "JWT secret before rotating that",
       for_serve, true},
      {"DOCFLOW_JWT_ISSUER", "--jwt-issuer", "iss claim of access tokens (default docflow)", for_serve},
      {"DOCFLOW_ACCESS_TTL", "--access-ttl", "access token lifetime (default 15m)", for_serve},
      {"DOCFLOW_REFRESH_TTL", "--refresh-ttl", "refresh token lifetime (default 7d)", for_serve},
      {"DOCFLOW_REFRESH_REUSE_GRACE", "--refresh-reuse-grace",
       "window in which a just-rotated refresh token is accepted again (default 0s)", for_serve},
      {"DOCFLOW_LOGIN_MAX_FAILURES", "--login-max-failures",
       "failed logins per username per 15 minutes before 429 (default 5)", for_serve},
      {"DOCFLOW_MAX_CONCURRENT_HASHES", "--max-concurrent-hashes",
       "argon2id hashes running at once (default: cores)", for_serve},
      {"DOCFLOW_SIGNUP", "--signup", "open or closed (default open)", for_serve},
      {"DOCFLOW_MAX_STREAMS_PER_USER", "--max-streams-per-user",
       "event streams one user may have open at once; more are 429 (default 16)", for_serve},
      {"DOCFLOW_SIGNUP_MAX_PER_ADDRESS", "--signup-max-per-address",
       "registrations per client address per hour before 429 (default 10)", for_serve},
      {"DOCFLOW_MAX_UPLOAD_BYTES", "--max-upload-bytes", "largest accepted file (default 100MiB)", for_serve},
      {"DOCFLOW_QUOTA_BYTES", "--quota-bytes",
       "bytes of documents each user may store, unless set for the user (default: unlimited)", for_serve},
      {"DOCFLOW_QUOTA_DOCUMENTS", "--quota-documents",
       "documents each user may store, unless set for the user (default: unlimited)", for_serve},
      {"DOCFLOW_MAX_ACTIVE_UPLOADS", "--max-active-uploads",
       "uploads receiving their body at once; more wait up to 5 s for a turn (default: 32 x cores)",
       for_serve},
      {"DOCFLOW_WORKERS", "--workers", "in-process workers; 0 for an API-only node (default: cores)",
       job_commands},
      {"DOCFLOW_WORKER_LISTEN", "--worker-listen",
       "address:port where docflow worker serves /healthz, /readyz and /metrics (default unset: none)",
       for_worker},
      {"DOCFLOW_JOB_LEASE", "--job-lease", "job lease duration (default 30s)", job_commands},
      {"DOCFLOW_JOB_MAX_ATTEMPTS", "--job-max-attempts", "attempts before a job fails (default 3)",
       job_commands},
      {"DOCFLOW_MAX_RUNNING_PER_USER", "--max-running-per-user",
       "jobs of one user that may run at once, over every process; 0: no limit (default 0)", job_commands},
      {"DOCFLOW_IDEMPOTENCY_TTL", "--idempotency-ttl",
       "how long Idempotency-Key responses are kept (default 24h)", for_serve},
      {"DOCFLOW_IDEMPOTENCY_CLAIM_TIMEOUT", "--idempotency-claim-timeout",
       "how long a request may hold an Idempotency-Key unanswered before a retry takes it over (default 5m)",
       for_serve},
      {"DOCFLOW_TUS_EXPIRY", "--tus-expiry",
       "how long a resumable upload (tus) is kept after its last bytes arrived (default 24h)", for_serve},
      {"DOCFLOW_QUEUE_MAX_DEPTH", "--queue-max-depth",
       "waiting jobs before /process answers 429 (default 10000)", for_serve},
      {"DOCFLOW_MAX_TEXT_BYTES", "--max-text-bytes",
       "extracted text kept per document; longer text is cut and the result says truncated (default 16MiB)",
       job_commands},
      {"DOCFLOW_SIMULATED_DELAY_MS", "--simulated-delay-ms",
       "extra delay inside processing, in ms (default 0)", job_commands},
      {"DOCFLOW_SANDBOX", "--sandbox",
       "strict or best-effort: whether documents are parsed when the kernel lacks a sandbox mechanism "
       "(default best-effort)",
       job_commands},
      {"DOCFLOW_OCR", "--ocr",
       "auto, always or never: which pages of PDFs and images are read by OCR; auto: images and pages "
       "without a text layer (default auto)",
       job_commands},
      {"DOCFLOW_OCR_LANGUAGES", "--ocr-languages",
       "comma-separated Tesseract languages OCR recognises, each with its tesseract-ocr-* package installed "
       "(default eng)",
       job_commands},
      {"DOCFLOW_OCR_DPI", "--ocr-dpi", "resolution PDF pages are rendered at for OCR (default 300)",
       job_commands},
      {"DOCFLOW_OCR_MIN_PAGE_CHARS", "--ocr-min-page-chars",
       "a PDF page whose text layer has fewer characters is read by OCR in auto mode (default 16)",
       job_commands},
      {"DOCFLOW_OCR_MAX_PAGES", "--ocr-max-pages",
       "pages of one document read by OCR at most; the others keep their text layer (default 100)",
       job_commands},
      {"DOCFLOW_OCR_PAGE_CPU_SECONDS", "--ocr-page-cpu-seconds",
       "CPU seconds the extraction child gets for each page it reads by OCR (default 30)", job_commands},
      {"DOCFLOW_OCR_PAGE_TIMEOUT", "--ocr-page-timeout",
       "time the extraction child gets for each page it reads by OCR (default 60s)", job_commands},
      {"DOCFLOW_ML_URL", "--ml-url", "URL of the optional ML enrich service (default unset)", job_commands},
      {"DOCFLOW_ML_TIMEOUT", "--ml-timeout",
       "time allowed for one call to the ML enrich service (default 30s)", job_commands},
      {"DOCFLOW_LOG_LEVEL", "--log-level", "debug, info, warn or error (default info)",
       job_commands | for_migrate | for_maintenance},
      {"DOCFLOW_HEADER_TIMEOUT", "--header-timeout", "time to receive a request head (default 30s)",
       for_serve},
      {"DOCFLOW_BODY_TIMEOUT", "--body-timeout", "longest pause between body bytes (default 60s)", for_serve},
      {"DOCFLOW_IDLE_TIMEOUT", "--idle-timeout", "keep-alive wait for the next request (default 60s)",
       for_serve},
      {"DOCFLOW_SHUTDOWN_TIMEOUT", "--shutdown-timeout",
       "how long in-flight requests may finish after SIGTERM (default 30s)", for_serve},
      {"DOCFLOW_IO_THREADS", "--io-threads", "threads running the event loop (default 2)", for_serve},
      {"DOCFLOW_MAX_CONNECTIONS", "--max-connections",
       "open client connections at most; more are closed at once (default: from the descriptor limit)",
       for_serve},
      {"DOCFLOW_MAX_CONNECTIONS_PER_ADDRESS", "--max-connections-per-address",
       "open connections from one client address at most; 0 for no cap (default 256)", for_serve},
      {"DOCFLOW_BLOCKING_THREADS", "--blocking-threads",
       "threads for database, fsync and hashing work (default: 32, or 4 x cores when more)", for_serve},
      {"DOCFLOW_METRICS_TOKEN", "--metrics-token", "bearer token required by /metrics (default unset: open)",
       job_commands, true},
      {"DOCFLOW_TRUSTED_PROXIES", "--trusted-proxies",
       "comma-separated addresses or CIDR blocks of reverse proxies whose X-Forwarded-For and "
       "X-Forwarded-Proto are believed, e.g. 127.0.0.1,10.0.0.0/8,::1 (default unset: none)",
       for_serve},
      {"DOCFLOW_WEBHOOK_ALLOWED_NETWORKS", "--webhook-allowed-networks",
       "comma-separated addresses or CIDR blocks that webhooks may reach although loopback, private, "
       "link-local or otherwise special-purpose, e.g. 10.1.0.0/16 (default unset: none)",
       for_serve | for_worker},
      {"DOCFLOW_WEBHOOK_TIMEOUT", "--webhook-timeout",
       "time allowed for one webhook delivery attempt (default 10s)", job_commands},
      {"DOCFLOW_WEBHOOK_CONCURRENCY", "--webhook-concurrency",
       "webhook deliveries this process sends at once; 0 sends none (default 4)", job_commands},
      {"DOCFLOW_WEBHOOK_RETRY_BASE", "--webhook-retry-base",
       "delay before a failed webhook delivery's first retry, doubling each time up to 1h, with jitter "
       "(default 30s)",
       job_commands},
      {"DOCFLOW_WEBHOOK_RETRY_FOR", "--webhook-retry-for",
       "how long a webhook delivery is retried before it is marked failed (default 24h)", job_commands},
      {"DOCFLOW_NODE_NAME", "--node-name",
       "this process's name in the `node` field of every log line and in docflow_build_info, 1-64 "
       "printable ASCII characters (default <hostname>:<pid>)",
       every_command},
  };
  return all;
}

namespace {

std::string join_lines(const std::vector<invalid_setting>& problems) {
  std::string out;
  for (const auto& p : problems) {
    out += (out.empty() ? "" : "\n") + p.setting + ": " + p.message;
  }
  return out;
}

// The largest unit that writes `d` exactly, as the docs write the ranges
// (0s, 5m, 24h, 366d).
std::string format_duration(milliseconds d) {
  using namespace std::chrono_literals;
  if (d == 0ms) {
    return "0s";
  }
  const std::pair<milliseconds, const char*> units[] = {{24h, "d"}, {1h, "h"}, {1min, "m"}, {1s, "s"}};
  for (const auto& [unit, suffix] : units) {
    if (d % unit == 0ms && !(unit == 24h && d == 24h)) {
      return std::to_string(d / unit) + suffix;
    }
  }
  return std::to_string(d.count()) + "ms";
}

// The largest binary unit that writes `bytes` exactly (5MiB, 5GiB).
std::string format_size(std::uint64_t bytes) {
  const std::pair<std::uint64_t, const char*> units[] = {
      {1ULL << 30, "GiB"}, {1ULL << 20, "MiB"}, {1ULL << 10, "KiB"}};
  for (const auto& [unit, suffix] : units) {
    if (bytes != 0 && bytes % unit == 0) {
      return std::to_string(bytes / unit) + suffix;
    }
  }
  return std::to_string(bytes) + "B";
}

// Reads raw values with defaults. A value that does not parse is noted and
// a placeholder returned, so that load() can go on and report every bad
// setting at once.
class reader {
public:
  explicit reader(const std::map<std::string, std::string>& values) : values_(values) {}

  void fail(const std::string& name, const std::string& message) { problems_.push_back({name, message}); }
  const std::vector<invalid_setting>& problems() const { return problems_; }

  std::optional<std::string> raw(const std::string& name) const {
    const auto it = values_.find(name);
    if (it == values_.end()) {
      return std::nullopt;
    }
    return it->second;
  }

  std::string string(const std::string& name, const std::string& fallback) const {
    return raw(name).value_or(fallback);
  }

  std::optional<std::string> optional_string(const std::string& name) const {
    auto v = raw(name);
    if (v && v->empty()) {
      return std::nullopt;
    }
    return v;
  }

  milliseconds duration(const std::string& name, const std::string& fallback, milliseconds min,
                        milliseconds max) {
    const auto text = string(name, fallback);
    const auto range = format_duration(min) + " and " + format_duration(max);
    const auto d = parse_duration(text);
    if (!d) {
      fail(name,
           "'" + text + "' must be a duration between " + range + ", written like 500ms, 2s, 15m or 7d");
      return min;
    }
    if (*d < min || *d > max) {
      fail(name, "'" + text + "' must be between " + range);
      return min;
    }
    return *d;
  }

  std::uint64_t size(const std::string& name, const std::string& fallback, std::uint64_t min,
                     std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
    const auto text = string(name, fallback);
    const bool unbounded = max == std::numeric_limits<std::uint64_t>::max();
    const auto allowed = unbounded ? "at least " + std::to_string(min) + (min == 1 ? " byte" : " bytes")
                                   : "between " + format_size(min) + " and " + format_size(max);
    const auto n = parse_size(text);
    if (!n) {
      fail(name, "'" + text + "' must be a size " + (unbounded ? "of " : "") + allowed +
                     ", written like 64KiB or 100MiB");
      return min;
    }
    if (*n < min || *n > max) {
      fail(name, "'" + text + "' must be " + allowed);
      return min;
    }
    return *n;
  }

  std::uint64_t integer(const std::string& name, std::uint64_t fallback, std::uint64_t min,
                        std::uint64_t max) {
    const auto text = raw(name);
    if (!text) {
      return fallback;
    }
    const auto range = std::to_string(min) + " and " + std::to_string(max);
    // Signed, so that '-1' is reported as out of range rather than as not a number.
    std::int64_t n = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
    if (ec == std::errc::invalid_argument || end != text->data() + text->size()) {
      fail(name, "'" + *text + "' must be a whole number between " + range);
      return min;
    }
    if (ec == std::errc::result_out_of_range || n < 0 || static_cast<std::uint64_t>(n) < min ||
        static_cast<std::uint64_t>(n) > max) {
      fail(name, "'" + *text + "' must be between " + range);
      return min;
    }
    return static_cast<std::uint64_t>(n);
  }

private:
  const std::map<std::string, std::string>& values_;
  std::vector<invalid_setting> problems_;
};

std::optional<listen_address> parse_listen(const std::string& text) {
  listen_address a;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::nullopt;
    }
    a.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) {
      return std::nullopt;
    }
    a.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned n = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (a.host.empty() || port.empty() || ec != std::errc{} || end != port.data() + port.size() || n > 65535) {
    return std::nullopt;
  }
  a.port = static_cast<std::uint16_t>(n);
  return a;
}

// The part after "scheme://", or a problem noted against the setting.
std::string strip_scheme(reader& r, const std::string& setting, const std::string& url,
                         const std::string& scheme, const std::string& example) {
  const std::string prefix = scheme + "://";
  if (url.rfind(prefix, 0) != 0 || url.size() == prefix.size()) {
    r.fail(setting, "'" + url + "' is not supported (expected " + example + ")");
    return {};
  }
  return url.substr(prefix.size());
}

constexpr std::uint64_t mib = std::uint64_t{1} << 20;
// S3's bounds on a part of a multipart upload, and on the number of parts.
constexpr std::uint64_t s3_min_part = 5 * mib;
constexpr std::uint64_t s3_max_part = std::uint64_t{5} << 30;
constexpr std::uint64_t s3_max_parts = 10000;

// The standard variables that name an AWS region; the URL's ?region= wins.
const std::vector<std::string> aws_region_variables{"AWS_REGION", "AWS_DEFAULT_REGION"};

// Why `name` breaks S3's rules for a bucket that can also be a host name
// (bucket.endpoint), or nullopt when it keeps them.
std::optional<std::string> bucket_problem(std::string_view name) {
  const auto alnum = [](char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'); };
  if (name.size() < 3 || name.size() > 63) return "must be 3 to 63 characters long";
  if (!std::all_of(name.begin(), name.end(), [&](char ch) { return alnum(ch) || ch == '.' || ch == '-'; })) {
    return "may hold only a-z, 0-9, '.' and '-'";
  }
  if (!alnum(name.front()) || !alnum(name.back())) return "must begin and end with a letter or a digit";
  if (name.find("..") != std::string_view::npos) return "must not hold two periods in a row";
  if (boost::urls::parse_ipv4_address(name)) return "must not be an IP address";
  return std::nullopt;
}

struct endpoint {
  std::string url;  ///< scheme://host[:port]
  bool ip_literal = false;
};

// `text` as scheme://host[:port] (one trailing '/' dropped), or nullopt
// with `why` set.
std::optional<endpoint> parse_endpoint(std::string_view text, std::string& why) {
  namespace urls = boost::urls;
  const auto u = urls::parse_uri(text);
  if (!u) {
    why = "is not a URL";
    return std::nullopt;
  }
  if (u->scheme_id() != urls::scheme::http && u->scheme_id() != urls::scheme::https) {
    why = "must be an http:// or https:// URL";
    return std::nullopt;
  }
  if (u->encoded_host().empty()) {
    why = "names no host";
    return std::nullopt;
  }
  if (u->has_port()) {
    const auto port = u->port();
    unsigned n = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (ec != std::errc{} || end != port.data() + port.size() || n == 0 || n > 65535) {
      why = "has no valid port (1 to 65535)";
      return std::nullopt;
    }
  }
  if ((!u->encoded_path().empty() && u->encoded_path() != "/") || u->has_query() || u->has_fragment()) {
    why = "must be scheme://host[:port] only, without a path or a query";
    return std::nullopt;
  }
  return endpoint{
      std::string(urls::to_string(u->scheme_id())) + "://" + std::string(u->encoded_host_and_port()),
      u->host_type() != urls::host_type::name};
}

// The settings an s3:// DOCFLOW_STORAGE_URL holds, problems noted against it
// (or against the AWS_* variable the region came from). The URL is never
// quoted whole: it might hold credentials, which it is refused for.
s3_settings parse_s3_url(reader& r, const std::string& url) {
  namespace urls = boost::urls;
  const std::string setting = "DOCFLOW_STORAGE_URL";
  const auto fail = [&](const std::string& message) { r.fail(setting, message); };
  s3_settings s;
  // user:secret@bucket, where a '/' in the secret would end the authority
  // early: any '@' before the query is refused, the URL unquoted.
  if (url.substr(0, url.find('?')).find('@') != std::string::npos) {
    fail(
        "must not hold credentials (an '@' in a prefix is written %40); set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (or their _FILE forms)");
    return s;
  }
  const auto u = urls::parse_uri(url);
  if (!u) {
    fail(
        "is not a valid s3:// URL (a '%' must start a %XX escape; percent-encode '&', '#' and '%' in "
        "values)");
    return s;
  }
  if (u->has_port() || u->has_fragment()) {
    fail("must be s3://BUCKET[/PREFIX][?endpoint=...]: a service's address and port go in ?endpoint=");
  }

  s.bucket = u->host();
  if (s.bucket.empty()) {
    fail("names no bucket (s3://BUCKET[/PREFIX])");
  } else if (const auto why = bucket_problem(s.bucket)) {
    fail("bucket '" + s.bucket + "' " + *why);
  }

  // The prefix is taken as given but for its slashes: an empty segment
  // within it, or a dot segment (which HTTP clients resolve away), would
  // make keys that no other S3 tool writes the same way; S3 keys are UTF-8.
  // Split by hand, since Boost.URL's segments() hides a leading "." one.
  const std::string_view path = u->encoded_path();
  for (std::size_t start = path.empty() ? path.size() : 1; start < path.size();) {
    const auto end = std::min(path.find('/', start), path.size());
    const auto segment = urls::pct_string_view(path.substr(start, end - start)).decode();
    const bool last = end >= path.size() - 1;
    start = end + 1;
    if ((segment.empty() && !last) || segment == "." || segment == ".." || !core::is_plain_text(segment)) {
      fail("the prefix '" + std::string(u->encoded_path()) +
           "' must be segments separated by single '/', none of them '.' or '..', in UTF-8 without "
           "control characters");
      break;
    }
    if (!segment.empty()) s.prefix += segment + "/";
  }

  std::map<std::string, std::string> given;
  std::string unknown;
  // A '+' in a URL is a '+'; only HTML forms make it a space.
  for (const auto& p : u->params(urls::encoding_opts(false))) {
    if (p.key != "endpoint" && p.key != "region" && p.key != "path_style") {
      unknown += (unknown.empty() ? "'" : ", '") + p.key + "'";
    } else if (given.contains(p.key)) {
      fail("?" + p.key + "= is given twice");
    } else if (p.value.empty()) {
      fail("?" + p.key + "= is empty");
    } else {
      given[p.key] = p.value;
    }
  }
  if (!unknown.empty()) fail("unknown parameter " + unknown + " (known: endpoint, region, path_style)");

  if (const auto it = given.find("path_style"); it != given.end()) {
    if (it->second != "true" && it->second != "false") {
      fail("?path_style='" + it->second + "' must be true or false");
    }
    s.path_style = it->second == "true";
  }
  if (const auto it = given.find("endpoint"); it != given.end()) {
    std::string why;
    // As in the URL itself, a secret with a '/' would hide from has_userinfo().
    if (it->second.find('@') != std::string::npos) {
      fail("?endpoint= must not hold credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    } else if (const auto e = parse_endpoint(it->second, why)) {
      s.endpoint = e->url;
      if (e->ip_literal && !s.path_style) {
        fail("?endpoint='" + s.endpoint +
             "' is an IP address, which a bucket cannot be a subdomain of; add &path_style=true");
      }
    } else {
      fail("?endpoint='" + it->second + "' " + why + " (expected http(s)://HOST[:PORT])");
    }
  }

  // SigV4 puts the region in every signature and AWS in its host name.
  const auto valid_region = [](std::string_view region) {
    return region.size() <= 64 && std::all_of(region.begin(), region.end(), [](char ch) {
             return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_' || ch == '.';
           });
  };
  std::string region_source = setting;
  if (const auto it = given.find("region"); it != given.end()) {
    s.region = it->second;
  } else {
    s.region = "us-east-1";
    for (const auto& name : aws_region_variables) {
      if (const auto region = r.optional_string(name)) {
        s.region = *region;
        region_source = name;
        break;
      }
    }
  }
  if (!valid_region(s.region)) {
    r.fail(region_source, "region '" + s.region + "' may hold only letters, digits, '-', '_' and '.'");
  }
  return s;
}

// The entries of a comma-separated list, each without its spaces (empty
// ones included: the caller refuses them), in order.
std::vector<std::string_view> comma_separated(std::string_view text) {
  std::vector<std::string_view> entries;
  for (bool more = true; more;) {
    const auto comma = text.find(',');
    entries.push_back(core::trim_ows(text.substr(0, comma)));
    more = comma != std::string_view::npos;
    if (more) text.remove_prefix(comma + 1);
  }
  return entries;
}

// DOCFLOW_TRUSTED_PROXIES, DOCFLOW_WEBHOOK_ALLOWED_NETWORKS: every entry is
// checked, so that one run names every bad one.
std::vector<core::ip_network> parse_networks(reader& r, const std::string& setting, const std::string& text) {
  std::vector<core::ip_network> out;
  for (const auto entry : comma_separated(text)) {
    core::network_error error;
    if (entry.empty()) {
      r.fail(setting, "'" + text + "' has an empty entry; write addresses or CIDR blocks " +
                          "separated by commas, e.g. 127.0.0.1,10.0.0.0/8,::1");
    } else if (const auto n = core::parse_ip_network(entry, error)) {
      out.push_back(*n);
    } else {
      r.fail(setting, error.message + " (e.g. 127.0.0.1,10.0.0.0/8,::1)");
    }
  }
  return out;
}

// DOCFLOW_OCR_LANGUAGES: Tesseract's names (eng, deu, chi_sim), which are
// also file names under its tessdata directory: no path can hide in one.
std::string ocr_languages(reader& r) {
  const auto text = r.string("DOCFLOW_OCR_LANGUAGES", "eng");
  std::string out;
  for (const auto entry : comma_separated(text)) {
    const bool valid =
        !entry.empty() && entry.size() <= 32 && std::all_of(entry.begin(), entry.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        });
    if (!valid) {
      r.fail("DOCFLOW_OCR_LANGUAGES",
             "'" + text + "' must be Tesseract language names separated by commas, e.g. eng,deu");
      return "eng";
    }
    out += (out.empty() ? "" : "+") + std::string(entry);
  }
  return out;
}

// A node name goes into every log line and a Prometheus label: visible
// ASCII and spaces, short enough to read.
bool valid_node_name(std::string_view name) {
  constexpr std::size_t most = 64;
  return !name.empty() && name.size() <= most &&
         std::all_of(name.begin(), name.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// An AWS credential, "" when unset. Never quoted in a message.
std::string credential(reader& r, const std::string& name) {
  auto value = r.optional_string(name).value_or("");
  if (std::any_of(value.begin(), value.end(), [](unsigned char ch) { return ch <= ' ' || ch == 0x7f; })) {
    r.fail(name, "holds a space or a control character (a CR of a Windows line ending in its file?)");
  }
  return value;
}

// A secret file's contents without one trailing newline (editors add one),
// or nullopt with `error` set to why not.
std::optional<std::string> read_secret_file(const std::string& path, std::string& error) {
  // A secret is short; a bound keeps a mistaken /dev/zero from filling memory.
  constexpr std::size_t limit = 64 * 1024;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  ssize_t n = 0;
  while (out.size() <= limit && (n = ::read(fd, buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  const int read_errno = errno;
  ::close(fd);
  if (n < 0) {
    error = std::strerror(read_errno);
    return std::nullopt;
  }
  if (out.size() > limit) {
    error = "larger than 64 KiB, not a secret";
    return std::nullopt;
  }
  if (!out.empty() && out.back() == '\n') {
    out.pop_back();
  }
  if (out.empty()) {
    error = "the file is empty";
    return std::nullopt;
  }
  return out;
}

// `values` with each secret given as <env>_FILE replaced by the file's
// contents; problems with either form go to `problems`.
std::map<std::string, std::string> with_secret_files(const std::map<std::string, std::string>& values,
                                                     std::vector<invalid_setting>& problems) {
  auto out = values;
  const auto given = [&](const std::string& name) {
    const auto it = values.find(name);
    return it != values.end() && !it->second.empty();
  };
  for (const auto& s : settings()) {
    const auto file_env = s.env + "_FILE";
    if (!s.secret || !given(file_env)) {
      continue;
    }
    if (given(s.env)) {
      problems.push_back({s.env, "is set, and so is " + file_env + "; set only one of them"});
      continue;
    }
    const auto& path = values.at(file_env);
    std::string error;
    if (const auto secret = read_secret_file(path, error)) {
      out[s.env] = *secret;
    } else {
      problems.push_back({file_env, "cannot read '" + path + "': " + std::move(error)});
    }
  }
  return out;
}

// Variables read elsewhere that are not settings, for tests: the extractor's
// fault injection (pipeline/sandbox.cpp) and the crash points of an
// idempotent upload (api/idempotency.cpp).
const std::vector<std::string> other_variables{"DOCFLOW_TEST_EXTRACTOR_FAULT", "DOCFLOW_TEST_CRASH_AT"};

// Levenshtein distance: single-character insertions, deletions, substitutions.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const auto above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::vector<unknown_variable> unknown_variables(const std::map<std::string, std::string>& environment) {
  const std::string prefix = "DOCFLOW_";
  std::vector<std::string> known;
  for (const auto& s : settings()) {
    known.push_back(s.env);
    if (s.secret) {
      known.push_back(s.env + "_FILE");
    }
  }
  const auto is_one_of = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  std::vector<unknown_variable> out;
  for (const auto& entry : environment) {
    const auto& name = entry.first;
    if (name.rfind(prefix, 0) != 0 || is_one_of(known, name) || is_one_of(other_variables, name)) {
      continue;
    }
    // A suggestion that shares less than half of the name is noise, not a typo fixed.
    auto best = (name.size() - prefix.size()) / 2 + 1;
    unknown_variable u{name, std::nullopt};
    for (const auto& k : known) {
      if (const auto d = edit_distance(name, k); d < best) {
        best = d;
        u.suggestion = k;
      }
    }
    out.push_back(std::move(u));
  }
  return out;
}

config_error::config_error(std::vector<invalid_setting> problems)
    : std::runtime_error(join_lines(problems)), problems_(std::move(problems)) {}

config load(const std::map<std::string, std::string>& given, unsigned cores) {
  cores = std::max(cores, 1U);
  std::vector<invalid_setting> secret_problems;
  const auto values = with_secret_files(given, secret_problems);
  reader r(values);
  for (const auto& p : secret_problems) {
    r.fail(p.setting, p.message);
  }
  config c;

  const auto listen = r.string("DOCFLOW_LISTEN", "127.0.0.1:8000");
  if (const auto a = parse_listen(listen)) {
    c.listen = *a;
  } else {
    r.fail("DOCFLOW_LISTEN", "'" + listen + "' is not HOST:PORT (e.g. 127.0.0.1:8000, [::1]:8000)");
  }
  c.data_dir = r.string("DOCFLOW_DATA_DIR", "./data");
  if (c.data_dir.empty()) {
    r.fail("DOCFLOW_DATA_DIR", "must not be empty");
  }

  const auto db = r.string("DOCFLOW_DATABASE_URL", "sqlite://" + (c.data_dir / "docflow.db").string());
  if (db.rfind("postgresql://", 0) == 0 || db.rfind("postgres://", 0) == 0) {
    c.database = database_kind::postgres;
    c.postgres_url = db;
  } else {
    c.sqlite_path = strip_scheme(r, "DOCFLOW_DATABASE_URL", db, "sqlite",
                                 "sqlite://PATH or postgresql://USER@HOST:PORT/DB");
  }
  c.database_password = r.optional_string("DOCFLOW_DATABASE_PASSWORD");
  if (c.database_password && c.database != database_kind::postgres) {
    r.fail("DOCFLOW_DATABASE_PASSWORD",
           "is for a postgresql:// DOCFLOW_DATABASE_URL; SQLite has no password");
  }

  const auto storage = r.string("DOCFLOW_STORAGE_URL", "file://" + (c.data_dir / "blobs").string());
  if (storage.rfind("s3://", 0) == 0) {
    c.storage = storage_kind::s3;
    c.s3 = parse_s3_url(r, storage);
  } else {
    c.blob_dir =
        strip_scheme(r, "DOCFLOW_STORAGE_URL", storage, "file", "file://PATH or s3://BUCKET[/PREFIX]");
  }
  c.scratch_dir = r.string("DOCFLOW_SCRATCH_DIR", (c.data_dir / "scratch").string());
  if (c.scratch_dir.empty()) {
    r.fail("DOCFLOW_SCRATCH_DIR", "must not be empty");
  } else if (c.storage == storage_kind::file && !c.blob_dir.empty()) {
    // Scratch files are swept; blobs among them, or scratch files among
    // the blobs, would be lost or taken for blobs.
    const auto scratch = c.scratch_dir.lexically_normal() / "";
    const auto blobs = c.blob_dir.lexically_normal() / "";
    if (scratch.string().starts_with(blobs.string()) || blobs.string().starts_with(scratch.string())) {
      r.fail("DOCFLOW_SCRATCH_DIR",
             "'" + c.scratch_dir.string() +
                 "' must be apart from the blob directory, neither in it nor holding it");
    }
  }
  // Validated with either store, so that a bad value is heard of before a
  // move to S3; it means nothing to a local directory.
  c.s3.part_size = r.size("DOCFLOW_S3_PART_SIZE", "8MiB", s3_min_part, s3_max_part);
  const auto presigned = r.string("DOCFLOW_S3_PRESIGNED_DOWNLOADS", "off");
  if (presigned != "on" && presigned != "off") {
    r.fail("DOCFLOW_S3_PRESIGNED_DOWNLOADS", "'" + presigned + "' must be on or off");
  } else if (presigned == "on" && c.storage != storage_kind::s3) {
    r.fail("DOCFLOW_S3_PRESIGNED_DOWNLOADS",
           "is for an s3:// DOCFLOW_STORAGE_URL; a local directory has no presigned URLs");
  }
  c.s3.presigned_downloads = presigned == "on";
  // With file:// they may be set for some other tool: ignored.
  if (c.storage == storage_kind::s3) {
    c.s3.access_key_id = credential(r, "AWS_ACCESS_KEY_ID");
    c.s3.secret_access_key = credential(r, "AWS_SECRET_ACCESS_KEY");
    c.s3.session_token = credential(r, "AWS_SESSION_TOKEN");
  }

  // An embedded database belongs to the one binary that opens it, so that
  // binary may as well migrate it; a shared server database is for the
  // operator to migrate, once, before the new version rolls out.
  const auto auto_migrate =
      r.string("DOCFLOW_AUTO_MIGRATE", c.database == database_kind::sqlite ? "on" : "off");
  if (auto_migrate != "on" && auto_migrate != "off") {
    r.fail("DOCFLOW_AUTO_MIGRATE", "'" + auto_migrate + "' must be on or off");
  }
  c.auto_migrate = auto_migrate == "on";

  c.jwt_secret = r.optional_string("DOCFLOW_JWT_SECRET");
  if (c.jwt_secret && c.jwt_secret->size() < 32) {
    r.fail("DOCFLOW_JWT_SECRET", "must be at least 32 bytes long");
  }
  c.api_key_secret = r.optional_string("DOCFLOW_API_KEY_SECRET");
  if (c.api_key_secret && c.api_key_secret->size() < 32) {
    r.fail("DOCFLOW_API_KEY_SECRET", "must be at least 32 bytes long");
  }
  c.jwt_secret_previous = r.optional_string("DOCFLOW_JWT_SECRET_PREVIOUS");
  if (c.jwt_secret_previous && c.jwt_secret_previous->size() < 32) {
    r.fail("DOCFLOW_JWT_SECRET_PREVIOUS", "must be at least 32 bytes long");
  }
  c.jwt_issuer = r.string("DOCFLOW_JWT_ISSUER", "docflow");
  if (c.jwt_issuer.empty()) {
    r.fail("DOCFLOW_JWT_ISSUER", "must not be empty");
  }
  using namespace std::chrono_literals;
  c.access_ttl = r.duration("DOCFLOW_ACCESS_TTL", "15m", 1s, 24h);
  c.refresh_ttl = r.duration("DOCFLOW_REFRESH_TTL", "7d", 1s, 24h * 366);
  c.refresh_reuse_grace = r.duration("DOCFLOW_REFRESH_REUSE_GRACE", "0s", 0ms, 5min);
  c.login_max_failures = static_cast<unsigned>(r.integer("DOCFLOW_LOGIN_MAX_FAILURES", 5, 1, 1000));
  c.max_concurrent_hashes = static_cast<unsigned>(r.integer("DOCFLOW_MAX_CONCURRENT_HASHES", cores, 1, 256));

  const auto signup = r.string("DOCFLOW_SIGNUP", "open");
  if (signup != "open" && signup != "closed") {
    r.fail("DOCFLOW_SIGNUP", "'" + signup + "' must be open or closed");
  }
  c.signup_open = signup == "open";
  c.max_streams_per_user = static_cast<unsigned>(r.integer("DOCFLOW_MAX_STREAMS_PER_USER", 16, 1, 100000));
  c.signup_max_per_address =
      static_cast<unsigned>(r.integer("DOCFLOW_SIGNUP_MAX_PER_ADDRESS", 10, 1, 100000));

  c.max_upload_bytes = r.size("DOCFLOW_MAX_UPLOAD_BYTES", "100MiB", 1);
  if (r.optional_string("DOCFLOW_QUOTA_BYTES")) c.default_quota.bytes = r.size("DOCFLOW_QUOTA_BYTES", "", 0);
  if (r.optional_string("DOCFLOW_QUOTA_DOCUMENTS")) {
    c.default_quota.documents =
        r.integer("DOCFLOW_QUOTA_DOCUMENTS", 0, 0, std::numeric_limits<std::int64_t>::max());
  }
  if (c.storage == storage_kind::s3 && c.max_upload_bytes > c.s3.part_size * s3_max_parts) {
    const auto least = (c.max_upload_bytes + s3_max_parts - 1) / s3_max_parts;
    r.fail("DOCFLOW_S3_PART_SIZE",
           "S3 takes at most 10000 parts: DOCFLOW_MAX_UPLOAD_BYTES needs parts of at least " +
               std::to_string(least) + " bytes");
  }
  c.max_active_uploads =
      static_cast<unsigned>(r.integer("DOCFLOW_MAX_ACTIVE_UPLOADS", 32 * cores, 1, 100000));
  c.workers = static_cast<unsigned>(r.integer("DOCFLOW_WORKERS", cores, 0, 256));
  if (const auto worker_listen = r.optional_string("DOCFLOW_WORKER_LISTEN")) {
    if (const auto a = parse_listen(*worker_listen)) {
      c.worker_listen = *a;
    } else {
      r.fail("DOCFLOW_WORKER_LISTEN",
             "'" + *worker_listen +
                 "' is not HOST:PORT (e.g. 127.0.0.1:9100, [::1]:9100); leave it empty for none");
    }
  }
  c.job_lease = r.duration("DOCFLOW_JOB_LEASE", "30s", 1s, 24h);
  c.job_max_attempts = static_cast<unsigned>(r.integer("DOCFLOW_JOB_MAX_ATTEMPTS", 3, 1, 100));
  c.max_running_per_user = static_cast<unsigned>(r.integer("DOCFLOW_MAX_RUNNING_PER_USER", 0, 0, 100000));
  c.idempotency_ttl = r.duration("DOCFLOW_IDEMPOTENCY_TTL", "24h", 1s, 24h * 366);
  c.tus_expiry = r.duration("DOCFLOW_TUS_EXPIRY", "24h", 1s, 24h * 366);
  c.idempotency_claim_timeout = r.duration("DOCFLOW_IDEMPOTENCY_CLAIM_TIMEOUT", "5m", 1s, 24h);
  c.queue_max_depth =
      r.integer("DOCFLOW_QUEUE_MAX_DEPTH", 10000, 1, std::numeric_limits<std::uint32_t>::max());
  c.max_text_bytes = r.size("DOCFLOW_MAX_TEXT_BYTES", "16MiB", 1024);
  if (c.max_text_bytes > (std::uint64_t{1} << 30)) r.fail("DOCFLOW_MAX_TEXT_BYTES", "must be at most 1GiB");
  c.simulated_delay =
      milliseconds{static_cast<std::int64_t>(r.integer("DOCFLOW_SIMULATED_DELAY_MS", 0, 0, 3600 * 1000))};

  const auto sandbox = r.string("DOCFLOW_SANDBOX", "best-effort");
  if (sandbox != "strict" && sandbox != "best-effort") {
    r.fail("DOCFLOW_SANDBOX", "'" + sandbox + "' must be strict or best-effort");
  }
  c.sandbox_strict = sandbox == "strict";

  c.ocr = r.string("DOCFLOW_OCR", "auto");
  if (c.ocr != "auto" && c.ocr != "always" && c.ocr != "never") {
    r.fail("DOCFLOW_OCR", "'" + c.ocr + "' must be auto, always or never");
  }
  c.ocr_languages = ocr_languages(r);
  c.ocr_dpi = static_cast<unsigned>(r.integer("DOCFLOW_OCR_DPI", 300, 72, 1200));
  c.ocr_min_page_chars = static_cast<unsigned>(r.integer("DOCFLOW_OCR_MIN_PAGE_CHARS", 16, 0, 1000000));
  c.ocr_max_pages = static_cast<unsigned>(r.integer("DOCFLOW_OCR_MAX_PAGES", 100, 1, 10000));
  c.ocr_page_cpu_seconds = static_cast<unsigned>(r.integer("DOCFLOW_OCR_PAGE_CPU_SECONDS", 30, 1, 3600));
  c.ocr_page_timeout = r.duration("DOCFLOW_OCR_PAGE_TIMEOUT", "60s", 1s, 1h);

  c.ml_url = r.optional_string("DOCFLOW_ML_URL");
  if (c.ml_url && c.ml_url->rfind("http://", 0) != 0 && c.ml_url->rfind("https://", 0) != 0) {
    r.fail("DOCFLOW_ML_URL", "'" + *c.ml_url + "' must be an http:// or https:// URL");
  }
  c.ml_timeout = r.duration("DOCFLOW_ML_TIMEOUT", "30s", 1s, 1h);

  c.log_level = r.string("DOCFLOW_LOG_LEVEL", "info");
  if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" && c.log_level != "error") {
    r.fail("DOCFLOW_LOG_LEVEL", "'" + c.log_level + "' must be debug, info, warn or error");
  }

  c.header_timeout = r.duration("DOCFLOW_HEADER_TIMEOUT", "30s", 1ms, 1h);
  c.body_timeout = r.duration("DOCFLOW_BODY_TIMEOUT", "60s", 1ms, 1h);
  c.idle_timeout = r.duration("DOCFLOW_IDLE_TIMEOUT", "60s", 1ms, 1h);
  c.shutdown_timeout = r.duration("DOCFLOW_SHUTDOWN_TIMEOUT", "30s", 0ms, 1h);
  c.io_threads = static_cast<unsigned>(r.integer("DOCFLOW_IO_THREADS", 2, 1, 256));
  c.max_connections = r.integer("DOCFLOW_MAX_CONNECTIONS", 0, 1, 1000000);
  c.max_connections_per_address = r.integer("DOCFLOW_MAX_CONNECTIONS_PER_ADDRESS", 256, 0, 1000000);
  // Mostly waiting on the disk (fsync), not computing: a disk completes more
  // syncs per second the more are in flight (bench/README.md), and the CPU
  // work on this pool is bounded elsewhere (argon2id by its slots).
  c.blocking_threads =
      static_cast<unsigned>(r.integer("DOCFLOW_BLOCKING_THREADS", std::max(32U, 4 * cores), 1, 1024));
  c.metrics_token = r.optional_string("DOCFLOW_METRICS_TOKEN");
  if (const auto proxies = r.optional_string("DOCFLOW_TRUSTED_PROXIES")) {
    c.trusted_proxies = parse_networks(r, "DOCFLOW_TRUSTED_PROXIES", *proxies);
  }
  if (const auto networks = r.optional_string("DOCFLOW_WEBHOOK_ALLOWED_NETWORKS")) {
    c.webhook_allowed_networks = parse_networks(r, "DOCFLOW_WEBHOOK_ALLOWED_NETWORKS", *networks);
  }
  c.webhook_timeout = r.duration("DOCFLOW_WEBHOOK_TIMEOUT", "10s", 100ms, 5min);
  c.webhook_concurrency = static_cast<unsigned>(r.integer("DOCFLOW_WEBHOOK_CONCURRENCY", 4, 0, 256));
  c.webhook_retry_base = r.duration("DOCFLOW_WEBHOOK_RETRY_BASE", "30s", 10ms, 1h);
  c.webhook_retry_for = r.duration("DOCFLOW_WEBHOOK_RETRY_FOR", "24h", 1s, 24h * 30);
  c.node_name = r.raw("DOCFLOW_NODE_NAME");
  if (c.node_name && !valid_node_name(*c.node_name)) {
    // Not echoed: it may hold the control characters that made it invalid.
    r.fail("DOCFLOW_NODE_NAME", "is " + std::to_string(c.node_name->size()) +
                                    " bytes; it must be 1-64 printable ASCII characters (letters, digits, "
                                    "punctuation, spaces)");
  }
  // Each worker (recording an outcome), the event feed and maintenance,
  // and for the API about two calls per core: a database call needs this
  // process's CPU too, so more connections mostly add threads (and, on a
  // PostgreSQL sharing the machine, backends) competing for the cores. On
  // 2 cores with PostgreSQL beside it, 8 connections against 20 cut a GET's
  // p99 from 4.1 s to 0.12 s at 64 clients and added 11 % throughput
  // (bench/README.md); a call finding every connection lent waits in line.
  c.database_pool =
      static_cast<unsigned>(r.integer("DOCFLOW_DATABASE_POOL", c.workers + 2 * cores + 2, 1, 10000));
  if (!r.problems().empty()) {
    throw config_error(r.problems());
  }
  return c;
}

void require_for(const config& c, command cmd) {
  std::vector<invalid_setting> problems;
  // A key generated on each node would make a token valid on that node
  // only: with a shared database the nodes must share their key too.
  if ((cmd & (for_serve | for_worker)) != 0 && c.database == database_kind::postgres && !c.jwt_secret) {
    problems.push_back({"DOCFLOW_JWT_SECRET",
                        "must be set (or DOCFLOW_JWT_SECRET_FILE) with a postgresql:// database: every "
                        "node must sign and verify with the same key"});
  }
  // Not required by load(): migrate and user never open the blob store.
  if ((cmd & (for_serve | for_worker | for_maintenance)) != 0 && c.storage == storage_kind::s3) {
    for (const auto& [name, value] : {std::pair{"AWS_ACCESS_KEY_ID", &c.s3.access_key_id},
                                      {"AWS_SECRET_ACCESS_KEY", &c.s3.secret_access_key}}) {
      if (value->empty()) {
        problems.push_back(
            {name, std::string("must be set (or ") + name + "_FILE) with an s3:// DOCFLOW_STORAGE_URL"});
      }
    }
  }
  if (!problems.empty()) throw config_error(std::move(problems));
}

std::string describe_database(const config& c) {
  if (c.database == database_kind::sqlite) return "sqlite://" + c.sqlite_path.string();
  // postgresql://user:password@host/...: the log is no place for the password.
  const auto scheme_end = c.postgres_url.find("://") + 3;
  const auto at = c.postgres_url.find('@', scheme_end);
  const auto colon = c.postgres_url.find(':', scheme_end);
  if (at == std::string::npos || colon == std::string::npos || colon > at) return c.postgres_url;
  return c.postgres_url.substr(0, colon) + ":***" + c.postgres_url.substr(at);
}

std::string describe_storage(const config& c) {
  if (c.storage == storage_kind::file) return "file://" + c.blob_dir.string();
  boost::urls::url u;
  u.set_scheme("s3");
  u.set_host(c.s3.bucket);
  if (!c.s3.prefix.empty()) u.set_path("/" + c.s3.prefix);
  if (!c.s3.endpoint.empty()) u.params().append({"endpoint", c.s3.endpoint});
  u.params().append({"region", c.s3.region});
  if (c.s3.path_style) u.params().append({"path_style", "true"});
  return std::string(u.buffer());
}

bool read_from_environment(std::string_view name) {
  if (name.starts_with("DOCFLOW_")) return true;
  for (const auto& s : settings()) {
    if (name == s.env || (s.secret && name == s.env + "_FILE")) return true;
  }
  return std::find(aws_region_variables.begin(), aws_region_variables.end(), name) !=
         aws_region_variables.end();
}

}  // namespace docflow::config
