// The composition root: the only place that names every concrete type.
#include "app/wiring.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iostream>

#include "api/routes.hpp"
#include "api/services.hpp"
#include "blob/fs_blob_store.hpp"
#include "config/config.hpp"
#include "core/ids.hpp"
#include "http/blocking_pool.hpp"
#include "http/server.hpp"
#include "obs/log.hpp"
#include "obs/metrics.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace docflow::app {

namespace {

constexpr int exit_failure = 1;

void prepare_directories(const config::config& cfg) {
  std::filesystem::create_directories(cfg.data_dir);
  if (cfg.sqlite_path.has_parent_path()) {
    std::filesystem::create_directories(cfg.sqlite_path.parent_path());
  }
}

// Reads <data>/jwt.secret, creating it (mode 0600) on first start.
std::string load_or_create_jwt_secret(const std::filesystem::path& data_dir) {
  const auto path = data_dir / "jwt.secret";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    const auto secret = core::random_hex(32);
    const bool ok = ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) &&
                    ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
      std::filesystem::remove(path);
      throw std::runtime_error("cannot write " + path.string());
    }
    obs::log(obs::level::warn, "config.jwt_secret_generated",
             {{"path", path.string()},
              {"message", "DOCFLOW_JWT_SECRET is not set: generated one; set it explicitly when "
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

}  // namespace

int migrate(const config::config& cfg) {
  obs::set_level(obs::parse_level(cfg.log_level).value_or(obs::level::info));
  try {
    prepare_directories(cfg);
    store::sqlite::sqlite_store db(cfg.sqlite_path);
    const int version = db.migrate();
    obs::log(obs::level::info, "store.migrated", {{"schema_version", version}});
    std::cerr << "docflow: database " << cfg.sqlite_path.string() << " at schema version " << version << '\n';
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "docflow: migrate failed: " << e.what() << '\n';
    return exit_failure;
  }
}

int serve(config::config cfg) {
  obs::set_level(obs::parse_level(cfg.log_level).value_or(obs::level::info));
  try {
    prepare_directories(cfg);
    if (!cfg.jwt_secret) {
      cfg.jwt_secret = load_or_create_jwt_secret(cfg.data_dir);
    }
    store::sqlite::sqlite_store db(cfg.sqlite_path);
    const int version = db.migrate();
    blob::fs_blob_store blobs(cfg.blob_dir);

    obs::metrics metrics;
    http::blocking_pool blocking(cfg.blocking_threads);
    api::services services{cfg, db, blobs, metrics, blocking, std::chrono::system_clock::now()};
    api::describe_metrics(services);
    const http::router router(api::routes(services));

    http::server_options options;
    options.host = cfg.listen.host;
    options.port = cfg.listen.port;
    options.header_timeout = cfg.header_timeout;
    options.body_timeout = cfg.body_timeout;
    options.idle_timeout = cfg.idle_timeout;
    options.shutdown_timeout = cfg.shutdown_timeout;
    options.io_threads = cfg.io_threads;
    http::server server(options, router, metrics);

    const auto host = cfg.listen.host.find(':') != std::string::npos ? '[' + cfg.listen.host + ']' : cfg.listen.host;
    const auto url = "http://" + host + ':' + std::to_string(server.port());
    obs::log(obs::level::info, "docflow.started",
             {{"url", url},
              {"data_dir", cfg.data_dir.string()},
              {"database", cfg.sqlite_path.string()},
              {"schema_version", version},
              {"blobs", cfg.blob_dir.string()}});
    std::cerr << "docflow: listening on " << url << " (data in " << cfg.data_dir.string() << ")\n";
    server.run();
    blocking.join();
    return 0;
  } catch (const std::exception& e) {
    obs::log(obs::level::error, "docflow.start_failed", {{"error", e.what()}});
    std::cerr << "docflow: " << e.what() << '\n';
    return exit_failure;
  }
}

}  // namespace docflow::app
