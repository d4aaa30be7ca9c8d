// Every command reaches its backends through these two functions, so that a
// new backend (PostgreSQL, S3) is added here and nowhere else.
#include "app/backends.hpp"

#include "blob/fs_blob_store.hpp"
#include "config/config.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace docflow::app {

std::unique_ptr<store::database> make_database(const config::config& cfg) {
  switch (cfg.database) {
    case config::database_kind::sqlite: return std::make_unique<store::sqlite::sqlite_store>(cfg.sqlite_path);
    case config::database_kind::postgres:
      return store::postgres::open(cfg.postgres_url, cfg.database_pool, cfg.database_password.value_or(""));
  }
  throw std::logic_error("unknown database kind");
}

std::unique_ptr<blob::blob_store> make_blob_store(const config::config& cfg) {
  switch (cfg.storage) {
    case config::storage_kind::file: return std::make_unique<blob::fs_blob_store>(cfg.blob_dir);
    case config::storage_kind::s3: throw std::runtime_error("S3 storage is wired in by the store change");
  }
  throw std::logic_error("unknown storage kind");
}

}  // namespace docflow::app
