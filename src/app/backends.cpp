// Every command reaches its backends through these two functions, so that a
// new backend (PostgreSQL, S3) is added here and nowhere else.
#include "app/backends.hpp"

#include "blob/fs_blob_store.hpp"
#include "blob/s3/store.hpp"
#include "config/config.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/postgres/transfer_sink.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/sqlite/transfer_source.hpp"

namespace docflow::app {

std::unique_ptr<store::database> make_database(const config::config& cfg) {
  switch (cfg.database) {
    case config::database_kind::sqlite: return std::make_unique<store::sqlite::sqlite_store>(cfg.sqlite_path);
    case config::database_kind::postgres:
      return store::postgres::open(cfg.postgres_url, cfg.database_pool, cfg.database_password.value_or(""));
  }
  throw std::logic_error("unknown database kind");
}

std::unique_ptr<store::transfer::source> make_transfer_source(const config::config& cfg) {
  if (cfg.database != config::database_kind::sqlite) return nullptr;
  return store::sqlite::open_transfer_source(cfg.sqlite_path);
}

std::unique_ptr<store::transfer::sink> make_transfer_sink(const config::config& cfg) {
  if (cfg.database != config::database_kind::postgres) return nullptr;
  return store::postgres::open_transfer_sink(cfg.postgres_url, cfg.database_password.value_or(""));
}

namespace {

// Long enough to start a download, short enough that a leaked URL is soon
// worthless; a client that needs the file again asks docflow again.
constexpr std::chrono::seconds presigned_url_lifetime{300};

std::unique_ptr<blob::blob_store> make_s3_store(const config::config& cfg, obs::metrics* metrics) {
  const auto& s3 = cfg.s3;
  blob::s3::store_config c;
  c.client.endpoint = s3.endpoint;
  c.client.region = s3.region;
  c.client.bucket = s3.bucket;
  c.client.path_style = s3.path_style;
  c.client.creds = {s3.access_key_id, s3.secret_access_key, s3.session_token};
  c.client.on_retry = [](std::string_view operation, const blob::s3::s3_error& failure, unsigned attempt) {
    obs::log(obs::level::warn, "storage.retry",
             {{"operation", std::string(operation)}, {"attempt", attempt}, {"error", failure.what()}});
  };
  if (metrics != nullptr) {
    metrics->describe("docflow_s3_errors_total", obs::metrics::kind::counter,
                      "Failed S3 requests (each attempt, retried or not), by operation and kind "
                      "(network, throttled, server, client).");
    c.client.on_error = [metrics](std::string_view operation, const blob::s3::s3_error& failure) {
      metrics->add("docflow_s3_errors_total", obs::metrics::label("operation", operation) + ',' +
                                                  obs::metrics::label("kind", blob::s3::error_kind(failure)));
    };
  }
  c.prefix = s3.prefix;
  c.part_size = s3.part_size;
  c.scratch_dir = cfg.scratch_dir;
  if (s3.presigned_downloads) c.presigned_downloads = presigned_url_lifetime;
  c.on_background_failure = [](const std::string& what) {
    obs::log(obs::level::warn, "storage.cleanup_failed", {{"error", what}});
  };
  return std::make_unique<blob::s3::store>(std::move(c));
}

}  // namespace

std::unique_ptr<blob::blob_store> make_blob_store(const config::config& cfg, obs::metrics* metrics) {
  switch (cfg.storage) {
    case config::storage_kind::file: return std::make_unique<blob::fs_blob_store>(cfg.blob_dir);
    case config::storage_kind::s3: return make_s3_store(cfg, metrics);
  }
  throw std::logic_error("unknown storage kind");
}

}  // namespace docflow::app
