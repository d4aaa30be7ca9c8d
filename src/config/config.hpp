#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_network.hpp"
#include "core/quota.hpp"

namespace docflow::config {

using std::chrono::milliseconds;

/// The commands that read settings, as bits of setting_info::used_by.
enum command : unsigned {
  for_serve = 1U << 0,
  for_worker = 1U << 1,
  for_migrate = 1U << 2,
  for_user = 1U << 3,  ///< user add, user list
  for_maintenance = 1U << 4,
};

/// One configuration setting: its environment variable, the command-line flag
/// that overrides it, what it means and which commands read it. The table
/// drives both the CLI (each command offers, and its --help lists, only the
/// flags it reads) and the validation, so a setting is declared once.
struct setting_info {
  std::string env;   ///< DOCFLOW_LISTEN
  std::string flag;  ///< --listen
  std::string help;
  unsigned used_by = 0;  ///< `command` bits
  /// Never a flag (a command line is visible to every user of the machine);
  /// also read from a file named by <env>_FILE.
  bool secret = false;
};

/// Every setting docflow reads, in documentation order.
const std::vector<setting_info>& settings();

/// One setting that failed validation: its environment variable and a
/// message that says what is allowed.
struct invalid_setting {
  std::string setting;
  std::string message;
};

/// Every setting that failed validation; `what()` holds one
/// "SETTING: message" line for each, so an operator fixes them in one go.
class config_error : public std::runtime_error {
public:
  explicit config_error(std::vector<invalid_setting> problems);
  const std::vector<invalid_setting>& problems() const noexcept { return problems_; }

private:
  std::vector<invalid_setting> problems_;
};

struct listen_address {
  std::string host;
  std::uint16_t port = 0;
};

enum class database_kind { sqlite, postgres };
enum class storage_kind { file, s3 };

/// Where and how the S3 store keeps blobs:
/// DOCFLOW_STORAGE_URL=s3://BUCKET[/PREFIX][?endpoint=&region=&path_style=], the AWS_* credentials and the
/// DOCFLOW_S3_* settings.
struct s3_settings {
  std::string bucket;       ///< DNS-compatible: 3-63 of a-z 0-9 . -
  std::string prefix;       ///< "" or "a/b/": ends with '/' when not empty, never starts with one
  std::string endpoint;     ///< "" for AWS, else exactly scheme://host[:port] (http or https)
  std::string region;       ///< ?region=, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1
  bool path_style = false;  ///< endpoint/bucket/key rather than bucket.endpoint/key
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  ///< "" unless the credentials are temporary ones
  std::uint64_t part_size = std::uint64_t{8} << 20;
  bool presigned_downloads = false;  ///< /content answers 302 to a presigned URL
};

/// The validated configuration, loaded once at start-up.
struct config {
  listen_address listen;
  std::filesystem::path data_dir;
  database_kind database = database_kind::sqlite;
  std::filesystem::path sqlite_path;  ///< sqlite
  std::string postgres_url;           ///< postgres: as given, for libpq
  std::optional<std::string> database_password;
  unsigned database_pool = 0;  ///< PostgreSQL connections at most
  storage_kind storage = storage_kind::file;
  std::filesystem::path blob_dir;  ///< file
  s3_settings s3;                  ///< s3 (part_size is read with either store)
  /// Temporary local copies of blobs (upload spools, workers' inputs), with either store.
  std::filesystem::path scratch_dir;
  /// serve, worker and user apply pending migrations themselves; else they
  /// refuse a schema older than the binary's.
  bool auto_migrate = true;
  std::optional<std::string> jwt_secret;
  std::optional<std::string> jwt_secret_previous;  ///< verifies only, during a rotation
  /// Keys the hashes of API keys; unset: the JWT secret (and its previous one).
  std::optional<std::string> api_key_secret;
  std::string jwt_issuer;
  milliseconds access_ttl{};
  milliseconds refresh_ttl{};
  milliseconds refresh_reuse_grace{};
  unsigned login_max_failures = 0;
  unsigned max_concurrent_hashes = 0;
  bool signup_open = true;
  unsigned signup_max_per_address = 0;
  unsigned max_streams_per_user = 0;
  std::uint64_t max_upload_bytes = 0;
  /// For users without limits of their own; none: unlimited.
  core::quota_limits default_quota;
  unsigned max_active_uploads = 0;
  unsigned workers = 0;
  /// Where `docflow worker` serves /healthz, /readyz and /metrics; none when unset.
  std::optional<listen_address> worker_listen;
  milliseconds job_lease{};
  unsigned job_max_attempts = 0;
  /// Jobs of one owner running at once, over every process; 0: no limit.
  unsigned max_running_per_user = 0;
  milliseconds idempotency_ttl{};
  milliseconds idempotency_claim_timeout{};
  /// How long a resumable upload is kept after its last bytes arrived.
  milliseconds tus_expiry{};
  std::uint64_t queue_max_depth = 0;
  std::uint64_t max_text_bytes = 0;
  milliseconds simulated_delay{};
  /// DOCFLOW_OCR: "auto", "always" or "never".
  std::string ocr;
  /// Tesseract's names, joined by '+' as it takes them ("eng+deu").
  std::string ocr_languages;
  unsigned ocr_dpi = 0;
  unsigned ocr_min_page_chars = 0;
  unsigned ocr_max_pages = 0;
  unsigned ocr_page_cpu_seconds = 0;
  milliseconds ocr_page_timeout{};
  std::optional<std::string> ml_url;
  milliseconds ml_timeout{};
  std::string log_level;
  milliseconds header_timeout{};
  milliseconds body_timeout{};
  milliseconds idle_timeout{};
  milliseconds shutdown_timeout{};
  unsigned io_threads = 0;
  std::uint64_t max_connections = 0;              ///< 0: not set, derived from the descriptor limit at start
  std::uint64_t max_connections_per_address = 0;  ///< 0: no cap
  unsigned blocking_threads = 0;
  std::optional<std::string> metrics_token;
  /// Peers whose X-Forwarded-For and X-Forwarded-Proto are believed; none by default.
  std::vector<core::ip_network> trusted_proxies;
  /// Webhooks: special-purpose addresses they may reach all the same (none by default).
  std::vector<core::ip_network> webhook_allowed_networks;
  milliseconds webhook_timeout{};     ///< one delivery attempt
  unsigned webhook_concurrency = 0;   ///< deliveries in flight at once, per process
  milliseconds webhook_retry_base{};  ///< the first retry's delay, doubling up to an hour
  milliseconds webhook_retry_for{};   ///< how long a delivery is retried before it fails
  /// The `node` of every log line and of docflow_build_info; unset: <hostname>:<pid>.
  std::optional<std::string> node_name;
  /// DOCFLOW_SANDBOX=strict: no parsing without every sandbox mechanism.
  bool sandbox_strict = false;
};

/// A DOCFLOW_* variable that names no setting (a typo, or a setting of
/// another version), with the known name closest to it when one is close.
struct unknown_variable {
  std::string name;
  std::optional<std::string> suggestion;
};

/// Whether docflow reads the environment variable `name`: every DOCFLOW_*
/// one (an unknown one is warned about) and the standard AWS_* ones that
/// configure S3 (credentials, their _FILE forms, AWS_REGION and
/// AWS_DEFAULT_REGION). The CLI passes exactly these to load().
bool read_from_environment(std::string_view name);

/// The keys of `environment` that start with DOCFLOW_ but that docflow does
/// not read.
std::vector<unknown_variable> unknown_variables(const std::map<std::string, std::string>& environment);

/// Builds the configuration from raw values keyed by environment variable
/// name; a missing key takes its default. A secret setting may instead be
/// given as <env>_FILE, the path of a file holding it (one trailing newline
/// is dropped). `cores` is the machine's core count
/// (defaults that scale with it). Throws config_error naming every bad
/// setting.
config load(const std::map<std::string, std::string>& values, unsigned cores);

/// Checks what `cmd` needs beyond what load() checks: a setting optional on
/// its own but required with another (DOCFLOW_JWT_SECRET with PostgreSQL
/// for serve and worker). Throws config_error.
void require_for(const config& c, command cmd);

/// The database as the log and the operator see it: its URL without a
/// password.
std::string describe_database(const config& c);

/// The blob store as the log and the operator see it: file://PATH, or the
/// s3:// URL in its normal form (never with credentials, which the URL
/// cannot hold).
std::string describe_storage(const config& c);

}  // namespace docflow::config
