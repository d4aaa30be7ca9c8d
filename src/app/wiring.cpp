// The composition root, with backends.cpp: each command builds its parts
// here, from the backends make_database and make_blob_store give it.
#include "app/wiring.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <charconv>
#include <csignal>
#include <limits>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/json/array.hpp>
#include <boost/system/system_error.hpp>

#include "api/accounts.hpp"
#include "api/cursor.hpp"
#include "api/ops.hpp"
#include "api/routes.hpp"
#include "api/services.hpp"
#include "api/stream_limit.hpp"
#include "api/throttle.hpp"
#include "app/backends.hpp"
#include "auth/api_key.hpp"
#include "auth/jwt.hpp"
#include "auth/password.hpp"
#include "blob/blob_store.hpp"
#include "config/config.hpp"
#include "config/units.hpp"
#include "core/ids.hpp"
#include "http/admission.hpp"
#include "http/blocking_pool.hpp"
#include "http/server.hpp"
#include "jobs/worker_pool.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "obs/process.hpp"
#include "pipeline/enrich.hpp"
#include "pipeline/sandbox.hpp"
#include "pipeline/stage.hpp"
#include "pipeline/stages.hpp"
#include "store/change_feed.hpp"
#include "store/database.hpp"
#include "webhooks/sender.hpp"

namespace docflow::app {

namespace {

constexpr int exit_failure = 1;
// sysexits' EX_TEMPFAIL: nothing wrong, try again later.
constexpr int exit_busy = 75;
constexpr const char* pipeline_version = "docflow-pipeline/1";
// Spec §2: 20 failures from one address, and the username limit, per 15 minutes.
constexpr unsigned login_max_failures_per_address = 20;
constexpr std::chrono::seconds login_window{15 * 60};
constexpr std::chrono::seconds signup_window{60 * 60};
// How often the one query that wakes event streams runs while any is open.
constexpr std::chrono::milliseconds event_poll{250};
// Often enough that RSS follows a burst down within seconds; a trim with
// little to give back takes a fraction of a millisecond.
constexpr std::chrono::seconds heap_trim_period{5};
// Orphan blobs and uncommitted uploads younger than this are left alone by
// the periodic pass: an upload may be between its blob and its row.
constexpr std::chrono::hours maintenance_min_age{1};
// How long an upload waits for a turn to receive its body before it goes
// ahead anyway: long enough for a burst's waves to drain, short enough that
// clients holding every turn (slowly) cannot stall the others.
constexpr std::chrono::seconds upload_patience{5};
// The sandboxed child (extraction, the DOCX check) is this very binary in
// its `extract` mode. Exec /proc/self/exe itself rather than the path it
// names: that still finds this binary after an upgrade replaced the file.
const std::filesystem::path self_exe{"/proc/self/exe"};

// The most client connections this process can hold without running out of
// descriptors: the soft RLIMIT_NOFILE (first raised to the hard limit, which
// costs nothing) less what the rest of the process needs at its busiest: the
// database and logs, a temporary file per upload receiving its body, a file
// per blocking thread, the pipes and blob of each job. At most 16384: each
// connection may hold a 80 KiB read buffer.
std::uint64_t connection_budget(const config::config& cfg) {
  constexpr std::uint64_t fewest = 16;
  constexpr std::uint64_t most = 16384;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return most;
  if (limit.rlim_cur < limit.rlim_max) {
    const rlimit raised{limit.rlim_max, limit.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  const std::uint64_t reserve =
      64 + cfg.blocking_threads + std::uint64_t{cfg.max_active_uploads} + 4 * std::uint64_t{cfg.workers};
  const std::uint64_t descriptors = limit.rlim_cur == RLIM_INFINITY ? most + reserve : limit.rlim_cur;
  const auto budget = descriptors > reserve + fewest ? descriptors - reserve : fewest;
  obs::log(
      obs::level::info, "server.descriptors",
      {{"limit", static_cast<std::int64_t>(descriptors)}, {"reserved", static_cast<std::int64_t>(reserve)}});
  return std::min(budget, most);
}

// Creates the data directory (and the database's) and checks it can be
// written, so that a mistake is one plain line instead of a failure deep
// inside SQLite or a std::filesystem message.
void prepare_directories(const config::config& cfg) {
  const auto prepare = [](const std::filesystem::path& dir, const std::string& what) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      throw std::runtime_error("cannot create " + what + " " + dir.string() + ": " + ec.message());
    }
    if (::access(dir.c_str(), W_OK) != 0) {
      throw std::runtime_error(what + " " + dir.string() + " is not writable: " + std::strerror(errno));
    }
  };
  prepare(cfg.data_dir, "data directory");
  if (cfg.database == config::database_kind::sqlite && cfg.sqlite_path.has_parent_path()) {
    prepare(cfg.sqlite_path.parent_path(), "database directory");
  }
}

// Asks a real child which sandbox mechanisms it gets on this machine, once
// at start, and says so in one `pipeline.sandbox` line: in strict mode a
// missing one means that every document will fail, which the operator must
// hear of before the first upload does.
void log_sandbox(const config::config& cfg) {
  const auto* mode = cfg.sandbox_strict ? "strict" : "best-effort";
  try {
    const auto r = pipeline::check_sandbox(self_exe);
    const auto missing = r.missing();
    boost::json::object fields{{"mode", mode},
                               {"no_new_privs", r.no_new_privs},
                               {"namespaces", r.namespaces},
                               {"landlock", r.landlock_abi > 0},
                               {"landlock_abi", r.landlock_abi},
                               {"seccomp", r.seccomp},
                               {"seccomp_syscalls", r.seccomp_syscalls},
                               {"missing", boost::json::array(missing.begin(), missing.end())}};
    if (missing.empty()) {
      obs::log(obs::level::info, "pipeline.sandbox", fields);
    } else if (cfg.sandbox_strict) {
      fields["message"] =
          "DOCFLOW_SANDBOX=strict: every extraction and DOCX check fails with sandbox_unavailable";
      obs::log(obs::level::error, "pipeline.sandbox", fields);
    } else {
      fields["message"] =
          "documents are parsed without the missing mechanisms; DOCFLOW_SANDBOX=strict refuses";
      obs::log(obs::level::warn, "pipeline.sandbox", fields);
    }
  } catch (const std::exception& e) {
    obs::log(obs::level::error, "pipeline.sandbox", {{"mode", mode}, {"error", e.what()}});
  }
}

pipeline::ocr_settings ocr_settings(const config::config& cfg) {
  pipeline::ocr_settings ocr;
  ocr.mode = pipeline::parse_ocr_mode(cfg.ocr).value_or(pipeline::ocr_mode::automatic);
  ocr.languages = cfg.ocr_languages;
  ocr.dpi = cfg.ocr_dpi;
  ocr.min_page_chars = cfg.ocr_min_page_chars;
  ocr.max_pages = cfg.ocr_max_pages;
  ocr.page_cpu_seconds = cfg.ocr_page_cpu_seconds;
  ocr.page_timeout = std::chrono::duration_cast<std::chrono::seconds>(cfg.ocr_page_timeout);
  return ocr;
}

// A language whose data is missing would fail every scanned document, each
// only after its retries: the workers refuse to start instead.
void check_ocr_languages(const config::config& cfg) {
  if (ocr_settings(cfg).mode == pipeline::ocr_mode::never) return;
  const auto missing = pipeline::missing_ocr_languages(cfg.ocr_languages);
  if (missing.empty()) return;
  std::string names;
  for (const auto& m : missing) names += (names.empty() ? "" : ", ") + m;
  throw std::runtime_error("DOCFLOW_OCR_LANGUAGES: no Tesseract data for " + names +
                           " (install tesseract-ocr-<language>, or set DOCFLOW_OCR=never)");
}

// HOST:PORT as a person writes it, brackets around an IPv6 host.
std::string address_text(const std::string& host, std::uint16_t port) {
  return (host.find(':') != std::string::npos ? '[' + host + ']' : host) + ':' + std::to_string(port);
}

// Why the server could not listen, for the operator: Boost's own message
// carries a source location and a function signature.
std::string listen_failure(const std::string& address, const boost::system::error_code& ec) {
  namespace errc = boost::system::errc;
  if (ec == errc::address_in_use) {
    return "address " + address + " is already in use";
  }
  if (ec == errc::address_not_available) {
    return "cannot assign address " + address + ": it is not an address of this machine";
  }
  if (ec == errc::permission_denied) {
    return "no permission to listen on " + address + " (ports below 1024 need privileges)";
  }
  return "cannot listen on " + address + ": " + ec.message();
}

// Reads <data>/jwt.secret, creating it (mode 0600) on first start.
std::string load_or_create_jwt_secret(const std::filesystem::path& data_dir) {
  const auto path = data_dir / "jwt.secret";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    auto secret = core::random_hex(32);
    const bool ok =
        ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
      std::filesystem::remove(path);
      throw std::runtime_error("cannot write " + path.string());
    }
    obs::log(obs::level::warn, "config.jwt_secret_generated",
             {{"path", path.string()},
              {"message",
               "DOCFLOW_JWT_SECRET is not set: generated one; set it explicitly when "
               "running more than one node"}});
    return secret;
  }
  std::ifstream in(path);
  std::string secret;
  std::getline(in, secret);
  if (secret.size() < 32) {
    throw std::runtime_error(path.string() + " holds fewer than 32 bytes; delete it to generate a new one");
  }
  return secret;
}

// Brings the schema to this binary's version when `migrate`, and refuses to
// work with any other: an older one lacks what the code needs, and a newer
// one may hold what this binary would misread or overwrite.
void ready_schema(store::database& db, bool migrate) {
  const int known = db.known_schema_version();
  int version = db.schema_version();
  if (version < known && migrate) {
    version = db.migrate();
  }
  if (version > known) {
    throw std::runtime_error("the database schema is at version " + std::to_string(version) +
                             ", newer than this docflow knows (version " + std::to_string(known) +
                             "): run a docflow at least as new as the one that migrated it");
  }
  if (version < known) {
    throw std::runtime_error("the database schema is at version " + std::to_string(version) +
                             ", older than this docflow's (version " + std::to_string(known) +
                             "): run `docflow migrate` first, or set DOCFLOW_AUTO_MIGRATE=on");
  }
}

// The configured database, its schema ready for this binary (see ready_schema).
std::unique_ptr<store::database> open_database(const config::config& cfg, bool migrate) {
  prepare_directories(cfg);
  auto db = make_database(cfg);
  ready_schema(*db, migrate);
  db->set_default_quota(cfg.default_quota);
  return db;
}

// Every command's first step: its log level, and the node its lines name.
void start_logging(const config::config& cfg, obs::level min) {
  obs::set_level(min);
  obs::set_node(cfg.node_name.value_or(obs::default_node_name()));
}

// The metrics every process exposes about itself.
void describe_process_metrics(obs::metrics& metrics) {
  obs::describe_process(metrics, DOCFLOW_VERSION, DOCFLOW_COMMIT);
}

// /healthz, /readyz and /metrics for a process that serves nothing else
// (`docflow worker`), on a thread of its own while the object lives.
class ops_endpoint {
public:
  ops_endpoint(const config::config& cfg, const config::listen_address& at, store::database& db,
               blob::blob_store& blobs, obs::metrics& metrics)
      : context_{cfg, db, blobs, metrics, blocking_, nullptr},
        router_(api::ops::routes([this] { return context_; })) {
    api::ops::describe_metrics(context_);
    http::server_options options;
    options.host = at.host;
    options.port = at.port;
    options.io_threads = 1;
    options.max_connections = scrapers;
    options.shutdown_timeout = std::chrono::seconds(5);
    // Every route here is open (auth_policy::none): no token is ever checked.
    const auto no_tokens = [](std::string_view) -> boost::asio::awaitable<http::authentication> {
      co_return http::authentication{std::nullopt, "no accounts here"};
    };
    try {
      server_.emplace(options, router_, no_tokens, metrics);
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("DOCFLOW_WORKER_LISTEN: " +
                               listen_failure(address_text(at.host, at.port), e.code()));
    }
    url_ = "http://" + address_text(at.host, server_->port());
    thread_ = std::thread([this] { server_->run(); });
  }
  ~ops_endpoint() {
    server_->stop();
    thread_.join();
    // Before server_'s io_context goes: a pool thread may still be inside
    // its post() of a completion to it (as serve() joins its pool).
    blocking_.join();
  }
  ops_endpoint(const ops_endpoint&) = delete;
  ops_endpoint& operator=(const ops_endpoint&) = delete;

  const std::string& url() const { return url_; }

private:
  // A few monitoring systems scrape a worker; nothing else connects.
  static constexpr std::size_t scrapers = 64;

  http::blocking_pool blocking_{1};
  api::ops_context context_;
  http::router router_;
  std::optional<http::server> server_;
  std::string url_;
  std::thread thread_;
};

}  // namespace

// What one maintenance pass removed.
struct purge_counts {
  std::uint64_t refresh_families = 0;
  std::uint64_t idempotency_keys = 0;
  std::uint64_t throttle_keys = 0;
  std::uint64_t orphan_blobs = 0;
  std::uint64_t incomplete_uploads = 0;
  std::uint64_t expired_uploads = 0;

  [[nodiscard]] bool any() const {
    return refresh_families > 0 || idempotency_keys > 0 || throttle_keys > 0 || orphan_blobs > 0 ||
           incomplete_uploads > 0 || expired_uploads > 0;
  }
};

void log_purge(const purge_counts& n) {
  obs::log(obs::level::info, "maintenance.purged",
           {{"refresh_families", n.refresh_families},
            {"idempotency_keys", n.idempotency_keys},
            {"throttle_keys", n.throttle_keys},
            {"orphan_blobs", n.orphan_blobs},
            {"incomplete_uploads", n.incomplete_uploads},
            {"expired_uploads", n.expired_uploads}});
}

// Blobs that no document row names: a crash between a blob's commit and its
// row's insert leaves one, so does a delete whose blob could not be removed.
// `min_age` keeps the sweep clear of an upload between those two steps
// (they are moments apart). One batch, from `cursor` on; `cursor` is where
// the next batch begins, empty once the whole store has been seen.
std::size_t remove_orphan_blobs(store::database& db, blob::blob_store& blobs, core::time_point now,
                                std::chrono::seconds min_age, std::string& cursor) {
  constexpr std::size_t batch = 10000;
  const auto keys = blobs.keys_stored_before(now - min_age, batch, cursor);
  cursor = keys.size() < batch ? std::string() : keys.back();
  std::size_t removed = 0;
  for (const auto& key : keys) {
    if (db.find_document(key, std::nullopt)) continue;
    blobs.remove(key);
    ++removed;
  }
  return removed;
}

// Resumable uploads past their expiry, each under its lock (one a request
// still writes to is left for the next pass), with what the store holds of
// them. Before its answer no Document names an upload's blob, so a blob
// committed by a last request that failed after it goes too.
std::size_t remove_expired_uploads(store::database& db, blob::blob_store& blobs, core::time_point now) {
  constexpr std::size_t batch = 1000;
  constexpr std::chrono::minutes lease{1};
  std::size_t removed = 0;
  for (const auto& expired : db.expired_uploads(now, batch)) {
    const auto token = core::random_hex(16);
    const auto got = db.lock_upload(expired.id, std::nullopt, token, now, lease);
    if (got.outcome != store::upload_lock::kind::locked) continue;
    if (got.record.answer_status == 0) blobs.remove(got.record.id);
    blobs.discard_resumable(got.record.id, got.record.store_state);
    if (db.delete_upload(got.record.id, token)) ++removed;
  }
  return removed;
}

// Removes what has expired (refresh families, idempotency keys, throttled
// attempts, resumable uploads), orphan blobs older than `min_age` (one batch
// from `cursor`) and uploads that began over `min_age` ago and never
// committed: their process died or dropped them and could not abort (S3
// unreachable).
purge_counts maintenance_pass(store::database& db, blob::blob_store& blobs, core::time_point now,
                              std::chrono::seconds min_age, std::string& cursor) {
  purge_counts n;
  n.refresh_families = db.purge_refresh_families(now);
  n.idempotency_keys = db.purge_idempotency_keys(now);
  n.throttle_keys = db.purge_attempts(now);
  n.orphan_blobs = remove_orphan_blobs(db, blobs, now, min_age, cursor);
  n.expired_uploads = remove_expired_uploads(db, blobs, now);
  // A resumable upload's multipart upload lives as long as the upload.
  n.incomplete_uploads = blobs.remove_incomplete_before(now - min_age, [&db](const std::string& key) {
    const auto upload = db.find_upload(key, std::nullopt);
    return upload && upload->answer_status == 0;
  });
  return n;
}

// Leads maintenance while it can: of the processes sharing the database,
// the one holding the leadership runs a pass every `period` (each under the
// maintenance lease, which `docflow maintenance` takes too) and reports the
// gauges read from shared state. The others try to take over every
// `leadership_retry`, so a leader that dies is replaced within that time.
class maintenance {
public:
  // The first try is made here, so that a process alone on its database
  // leads (and reports the queue) from its first request on.
  maintenance(store::database& db, blob::blob_store& blobs, const core::clock& clock,
              std::chrono::minutes period)
      : leadership_(first_try(db)),
        leading_(leadership_ != nullptr),
        thread_([this, &db, &blobs, &clock, period](const std::stop_token& stop) {
          loop(stop, db, blobs, clock, period);
        }) {}

  /// True while this process leads.
  const std::atomic<bool>& leading() const noexcept { return leading_; }

private:
  static constexpr std::chrono::seconds leadership_retry{15};

  static std::unique_ptr<store::maintenance_lease> first_try(store::database& db) {
    try {
      auto leadership = db.try_maintenance_leadership();
      if (leadership) obs::log(obs::level::info, "maintenance.leading", {});
      return leadership;
    } catch (const std::exception& e) {
      obs::log(obs::level::warn, "maintenance.failed", {{"error", e.what()}});
      return nullptr;
    }
  }

  void loop(const std::stop_token& stop, store::database& db, blob::blob_store& blobs,
            const core::clock& clock, std::chrono::minutes period) {
    std::mutex m;
    std::condition_variable_any wake;
    auto& leadership = leadership_;
    auto next_pass = std::chrono::steady_clock::now();
    while (!stop.stop_requested()) {
      try {
        if (leadership && !leadership->held()) {
          leadership.reset();
          obs::log(obs::level::warn, "maintenance.leadership_lost",
                   {{"reason", "its database session ended"}});
        }
        const bool was_leading = leadership != nullptr;
        if (!leadership) leadership = db.try_maintenance_leadership();
        // Before the line: whoever reads it finds the gauge at 1.
        leading_ = leadership != nullptr;
        if (leadership && !was_leading) {
          obs::log(obs::level::info, "maintenance.leading", {});
          next_pass = std::chrono::steady_clock::now();
        }
        if (leadership && std::chrono::steady_clock::now() >= next_pass) {
          next_pass = std::chrono::steady_clock::now() + period;
          if (const auto lease = db.try_maintenance_lease()) {
            const auto purged = maintenance_pass(db, blobs, clock.now(), maintenance_min_age, cursor_);
            if (purged.any()) log_purge(purged);
          } else {
            obs::log(obs::level::debug, "maintenance.skipped",
                     {{"reason", "another process (docflow maintenance) holds the lease"}});
          }
        }
      } catch (const std::exception& e) {
        obs::log(obs::level::warn, "maintenance.failed", {{"error", e.what()}});
      }
      std::unique_lock lock(m);
      wake.wait_for(lock, stop, leadership_retry, [] { return false; });
    }
    leading_ = false;
    leadership.reset();
  }

  // Before thread_, which uses them.
  std::unique_ptr<store::maintenance_lease> leadership_;  // the thread's once it runs
  std::atomic<bool> leading_;
  std::string cursor_;  // where the orphan sweep goes on
  std::jthread thread_;
};

// Hands the heap's free pages back to the system every `period`: glibc
// keeps what a burst grew, over all its arenas, long after it is freed
// (docs/architecture.md, "Threads").
class heap_trimmer {
public:
  explicit heap_trimmer(std::chrono::seconds period)
      : thread_([period](const std::stop_token& stop) {
          std::mutex m;
          std::condition_variable_any wake;
          std::unique_lock lock(m);
          while (!wake.wait_for(lock, stop, period, [] { return false; }) && !stop.stop_requested()) {
            ::malloc_trim(0);
          }
        }) {}

private:
  std::jthread thread_;
};

// The workers of this process, configured from `cfg`; none when workers = 0.
std::unique_ptr<jobs::worker_pool> start_workers(const config::config& cfg, store::database& db,
                                                 blob::blob_store& blobs, obs::metrics& metrics,
                                                 const core::clock& clock) {
  jobs::worker_pool::describe_metrics(metrics);
  if (cfg.workers == 0) return nullptr;
  check_ocr_languages(cfg);
  jobs::worker_options options;
  options.workers = cfg.workers;
  options.lease = cfg.job_lease;
  options.max_attempts = cfg.job_max_attempts;
  options.max_running_per_owner = cfg.max_running_per_user;
  options.simulated_delay = cfg.simulated_delay;
  options.pipeline_version = pipeline_version;
  pipeline::sandbox_limits limits;
  limits.strict = cfg.sandbox_strict;
  limits.max_text_bytes = cfg.max_text_bytes;
  // The answer carries the text as JSON: escaping may make it up to six
  // times longer (\u00XX), plus metadata and counts.
  limits.max_output = std::max<std::size_t>(limits.max_output, 6 * cfg.max_text_bytes + (1 << 20));
  auto stages = pipeline::default_stages(self_exe, limits, ocr_settings(cfg));
  if (cfg.ml_url) {
    stages.push_back(
        std::make_unique<pipeline::enrich_stage>(pipeline::enrich_options{*cfg.ml_url, cfg.ml_timeout}));
  }
  obs::log(
      obs::level::info, "workers.started",
      {{"workers", cfg.workers}, {"pipeline_version", pipeline_version}, {"enrich", cfg.ml_url.has_value()}});
  return std::make_unique<jobs::worker_pool>(db, blobs, std::move(stages), options, metrics, clock);
}

// The webhook sender of this process: wherever jobs are worked on, none on
// an API-only node (workers = 0) or with DOCFLOW_WEBHOOK_CONCURRENCY=0.
std::unique_ptr<webhooks::sender> start_webhook_sender(const config::config& cfg, store::database& db,
                                                       obs::metrics& metrics, const core::clock& clock) {
  webhooks::sender::describe_metrics(metrics);
  if (cfg.workers == 0 || cfg.webhook_concurrency == 0) return nullptr;
  webhooks::sender_options options;
  options.concurrency = cfg.webhook_concurrency;
  options.timeout = cfg.webhook_timeout;
  options.retry_base = cfg.webhook_retry_base;
  options.retry_for = cfg.webhook_retry_for;
  options.allowed_networks = cfg.webhook_allowed_networks;
  options.user_agent = std::string("docflow-webhooks/") + DOCFLOW_VERSION;
  obs::log(obs::level::info, "webhooks.started", {{"concurrency", cfg.webhook_concurrency}});
  return std::make_unique<webhooks::sender>(db, options, metrics, clock);
}

int migrate(const config::config& cfg) {
  start_logging(cfg, obs::parse_level(cfg.log_level).value_or(obs::level::info));
  try {
    const auto db = open_database(cfg, true);
    const int version = db->schema_version();
    obs::log(obs::level::info, "store.migrated", {{"schema_version", version}});
    std::cerr << "docflow: database " << config::describe_database(cfg) << " at schema version " << version
              << '\n';
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "docflow: migrate failed: " << e.what() << '\n';
    return exit_failure;
  }
}

int serve(config::config cfg) {
  start_logging(cfg, obs::parse_level(cfg.log_level).value_or(obs::level::info));
  try {
    const auto database = open_database(cfg, cfg.auto_migrate);
    auto& db = *database;
    if (!cfg.jwt_secret) {
      cfg.jwt_secret = load_or_create_jwt_secret(cfg.data_dir);
    }
    obs::metrics metrics;
    describe_process_metrics(metrics);
    const auto blob_store = make_blob_store(cfg, &metrics);
    auto& blobs = *blob_store;

    http::blocking_pool blocking(cfg.blocking_threads);
    http::admission_gate uploads(cfg.max_active_uploads, upload_patience);
    const auto& clock = core::system_clock();
    auth::jwt_codec tokens(*cfg.jwt_secret, cfg.jwt_issuer, cfg.jwt_secret_previous);
    // Pinned by DOCFLOW_API_KEY_SECRET, the hashes outlive a rotation of
    // the JWT secret; otherwise a key hashed under the previous JWT secret
    // is hashed again when it is next used.
    const auth::api_key_hasher api_keys(cfg.api_key_secret.value_or(*cfg.jwt_secret),
                                        cfg.api_key_secret ? std::nullopt : cfg.jwt_secret_previous);
    auth::password_hasher passwords;
    auth::hash_slots hashing(cfg.max_concurrent_hashes);
    auth::hash_slots signup_hashing(std::max(1U, cfg.max_concurrent_hashes / 2));
    api::login_throttle throttle(db, cfg.login_max_failures, login_max_failures_per_address, login_window,
                                 clock);
    api::registration_throttle signups(db, cfg.signup_max_per_address, signup_window, clock);
    const api::cursor_codec cursors(*cfg.jwt_secret, cfg.jwt_secret_previous);
    store::change_feed changes(db, event_poll);
    api::stream_limit streams(cfg.max_streams_per_user);
    api::services services{cfg,      clock,   db,       blobs,     metrics, blocking,
                           uploads,  tokens,  api_keys, passwords, hashing, signup_hashing,
                           throttle, signups, cursors,  changes,   streams, self_exe};
    api::describe_metrics(services);
    const http::router router(api::routes(services));

    log_sandbox(cfg);
    // Only serve runs it, one process at a time: a worker process may not
    // even be on the machine that the API answers from.
    const maintenance housekeeping(db, blobs, clock, std::chrono::minutes{10});
    services.maintenance_leader = &housekeeping.leading();
    const heap_trimmer trimmer(heap_trim_period);
    const auto workers = start_workers(cfg, db, blobs, metrics, clock);
    const auto hooks = start_webhook_sender(cfg, db, metrics, clock);
    http::server_options options;
    options.host = cfg.listen.host;
    options.port = cfg.listen.port;
    options.header_timeout = cfg.header_timeout;
    options.body_timeout = cfg.body_timeout;
    options.idle_timeout = cfg.idle_timeout;
    options.shutdown_timeout = cfg.shutdown_timeout;
    options.io_threads = cfg.io_threads;
    const auto budget = connection_budget(cfg);
    options.max_connections = cfg.max_connections != 0 ? cfg.max_connections : budget;
    if (options.max_connections > budget) {
      obs::log(obs::level::warn, "server.connections_over_budget",
               {{"max_connections", static_cast<std::int64_t>(options.max_connections)},
                {"budget", static_cast<std::int64_t>(budget)}});
    }
    options.max_connections_per_address = cfg.max_connections_per_address;
    options.trusted_proxies = cfg.trusted_proxies;
    options.on_drain = [&services, &workers, &hooks, &changes] {
      services.shutting_down = true;
      changes.notify_all();          // event streams wake, see the drain and end
      if (workers) workers->stop();  // no new jobs while HTTP drains
      if (hooks) hooks->stop();
    };
    std::optional<http::server> server;
    try {
      server.emplace(
          options, router,
          [&services](std::string_view token) { return api::accounts::authenticate(services, token); },
          metrics);
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error(listen_failure(address_text(cfg.listen.host, cfg.listen.port), e.code()));
    }

    const auto url = "http://" + address_text(cfg.listen.host, server->port());
    obs::log(obs::level::info, "docflow.started",
             {{"url", url},
              {"data_dir", cfg.data_dir.string()},
              {"database", config::describe_database(cfg)},
              {"schema_version", db.schema_version()},
              {"storage", config::describe_storage(cfg)}});
    std::cerr << "docflow: listening on " << url << " (data in " << cfg.data_dir.string() << ")\n";
    server->run();
    if (workers) workers->stop();  // running jobs finish (or their leases lapse) while the pool joins
    blocking.join();
    return 0;
  } catch (const std::exception& e) {
    obs::log(obs::level::error, "docflow.start_failed", {{"error", e.what()}});
    std::cerr << "docflow: " << e.what() << '\n';
    return exit_failure;
  }
}

int work(const config::config& cfg) {
  start_logging(cfg, obs::parse_level(cfg.log_level).value_or(obs::level::info));
  // Block the stop signals before any thread starts, so that only sigwait
  // below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  try {
    const auto db = open_database(cfg, cfg.auto_migrate);
    obs::metrics metrics;
    describe_process_metrics(metrics);
    const auto blobs = make_blob_store(cfg, &metrics);
    auto config = cfg;
    config.workers = std::max(cfg.workers, 1U);
    log_sandbox(config);
    const heap_trimmer trimmer(heap_trim_period);
    const auto workers = start_workers(config, *db, *blobs, metrics, core::system_clock());
    const auto hooks = start_webhook_sender(config, *db, metrics, core::system_clock());
    std::optional<ops_endpoint> endpoint;
    if (cfg.worker_listen) {
      endpoint.emplace(cfg, *cfg.worker_listen, *db, *blobs, metrics);
    }
    std::cerr << "docflow: " << config.workers << " worker(s) on " << config::describe_database(cfg)
              << (endpoint ? "; /healthz, /readyz and /metrics on " + endpoint->url() : std::string())
              << '\n';
    int signo = 0;
    sigwait(&stop_signals, &signo);
    obs::log(obs::level::info, "workers.stopping", {{"signal", signo}});
    return 0;  // the endpoint stops, then the pool's destructor lets running jobs finish
  } catch (const std::exception& e) {
    std::cerr << "docflow: worker failed: " << e.what() << '\n';
    return exit_failure;
  }
}

namespace {

// Turns off echo on the terminal that is standard input, while it lives.
class echo_off {
public:
  echo_off() {
    ::tcgetattr(STDIN_FILENO, &saved_);
    termios quiet = saved_;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  ~echo_off() { ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_); }
  echo_off(const echo_off&) = delete;
  echo_off& operator=(const echo_off&) = delete;

private:
  termios saved_{};
};

std::string read_line(std::istream& in) {
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') {
    line.pop_back();
  }
  return line;
}

// A person at a terminal types the password twice, unseen (a typo would
// lock them out); a script gives it as the first line of standard input.
// nullopt when the two typings differ.
std::optional<std::string> read_password(bool at_terminal) {
  if (!at_terminal) {
    return read_line(std::cin);
  }
  const echo_off quiet;
  std::cerr << "Password: " << std::flush;
  auto first = read_line(std::cin);
  std::cerr << "\nRepeat password: " << std::flush;
  const auto second = read_line(std::cin);
  std::cerr << '\n';
  if (first != second) {
    return std::nullopt;
  }
  return first;
}

}  // namespace

int user_add(const config::config& cfg, const std::string& name, bool admin) {
  start_logging(cfg, obs::level::warn);
  if (!core::valid_username(name)) {
    std::cerr << "docflow: invalid username: use 3-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'\n";
    return 2;
  }
  const bool at_terminal = ::isatty(STDIN_FILENO) == 1;
  const auto password = read_password(at_terminal);
  if (!password) {
    std::cerr << "docflow: the passwords do not match; no account was created\n";
    return 2;
  }
  if (!core::valid_password_length(*password)) {
    std::cerr << "docflow: the password" << (at_terminal ? "" : " (first line of standard input)")
              << " must be 8-1024 characters\n";
    return 2;
  }
  try {
    const auto db = open_database(cfg, cfg.auto_migrate);
    const auth::password_hasher passwords;
    core::user u{core::new_uuid_v7(), name, passwords.hash(*password),
                 admin ? core::role::admin : core::role::user, core::system_clock().now()};
    if (!db->create_user(u)) {
      std::cerr << "docflow: username '" << name << "' is already taken\n";
      return exit_failure;
    }
    std::cout << u.id << '\n';
    std::cerr << "docflow: created " << core::to_string(u.role) << " '" << name << "'\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "docflow: user add failed: " << e.what() << '\n';
    return exit_failure;
  }
}

int maintain(const config::config& cfg, std::chrono::seconds min_age) {
  start_logging(cfg, obs::parse_level(cfg.log_level).value_or(obs::level::info));
  try {
    const auto db = open_database(cfg, cfg.auto_migrate);
    const auto blobs = make_blob_store(cfg);
    const auto lease = db->try_maintenance_lease();
    if (!lease) {
      std::cerr << "docflow: maintenance: another process is running a pass; try again in a moment\n";
      return exit_busy;
    }
    // One pass, then the orphan sweep's further batches: the whole store.
    const auto now = core::system_clock().now();
    std::string cursor;
    auto purged = maintenance_pass(*db, *blobs, now, min_age, cursor);
    while (!cursor.empty()) purged.orphan_blobs += remove_orphan_blobs(*db, *blobs, now, min_age, cursor);
    log_purge(purged);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "docflow: maintenance failed: " << e.what() << '\n';
    return exit_failure;
  }
}

namespace {

// "default", "unlimited", or a size (bytes) or count (documents).
std::optional<core::limit_setting> parse_limit(std::string_view text, bool size) {
  if (text == "default") return core::limit_setting{};
  if (text == "unlimited") return core::limit_setting{false, std::nullopt};
  std::optional<std::uint64_t> n;
  if (size) {
    n = config::parse_size(text);
  } else {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec == std::errc{} && end == text.data() + text.size() && !text.empty()) n = v;
  }
  if (!n || *n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
  return core::limit_setting{false, n};
}

std::string limit_text(std::optional<std::uint64_t> l) { return l ? std::to_string(*l) : "unlimited"; }

}  // namespace

int user_set_quota(const config::config& cfg, const std::string& name,
                   const std::optional<std::string>& bytes, const std::optional<std::string>& documents) {
  start_logging(cfg, obs::level::warn);
  if (!bytes && !documents) {
    std::cerr << "docflow: user set-quota: give --bytes, --documents or both\n";
    return 2;
  }
  const auto bytes_limit = bytes ? parse_limit(*bytes, true) : std::nullopt;
  const auto documents_limit = documents ? parse_limit(*documents, false) : std::nullopt;
  if ((bytes && !bytes_limit) || (documents && !documents_limit)) {
    std::cerr << "docflow: user set-quota: a limit is a "
              << (bytes && !bytes_limit ? "size like 10GiB" : "whole number")
              << ", 'unlimited' or 'default'\n";
    return 2;
  }
  try {
    const auto db = open_database(cfg, cfg.auto_migrate);
    const auto user = db->find_user_by_name(name);
    if (!user || !db->set_quota(user->id, bytes_limit, documents_limit)) {
      std::cerr << "docflow: no user '" << name << "'\n";
      return exit_failure;
    }
    const auto q = db->find_quota(user->id);
    std::cout << "bytes\t" << q.usage.bytes << '\t' << limit_text(q.limits.bytes) << '\n'
              << "documents\t" << q.usage.documents << '\t' << limit_text(q.limits.documents) << '\n';
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "docflow: user set-quota failed: " << e.what() << '\n';
    return exit_failure;
  }
}

int user_list(const config::config& cfg) {
  start_logging(cfg, obs::level::warn);
  try {
    const auto db = open_database(cfg, cfg.auto_migrate);
    std::cout << "id\tusername\trole\tcreated_at\n";
    for (const auto& u : db->list_users()) {
      std::cout << u.id << '\t' << u.username << '\t' << core::to_string(u.role) << '\t'
                << core::format_rfc3339(u.created_at) << '\n';
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "docflow: user list failed: " << e.what() << '\n';
    return exit_failure;
  }
}

}  // namespace docflow::app
