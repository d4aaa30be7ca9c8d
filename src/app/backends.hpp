#pragma once

#include <memory>

namespace docflow::config {
struct config;
}
namespace docflow::store {
class database;
}
namespace docflow::store::transfer {
class source;
class sink;
}  // namespace docflow::store::transfer
namespace docflow::blob {
class blob_store;
}
namespace docflow::obs {
class metrics;
}

namespace docflow::app {

/// The database DOCFLOW_DATABASE_URL names, opened, its schema untouched.
/// With backends.cpp, the only code that names a database implementation.
/// Throws store::store_error.
std::unique_ptr<store::database> make_database(const config::config& cfg);

/// The blob store DOCFLOW_STORAGE_URL names. The only code that names a
/// blob store implementation. With `metrics`, an S3 store counts its failed
/// requests in docflow_s3_errors_total (which it describes); `metrics` must
/// outlive the store. Throws blob::blob_error.
std::unique_ptr<blob::blob_store> make_blob_store(const config::config& cfg, obs::metrics* metrics = nullptr);

/// The configured database as the source of `docflow migrate-data`: held
/// exclusively while the object lives. Only SQLite can be one: nullptr for
/// another engine. Throws store::transfer::source_busy and store::store_error.
std::unique_ptr<store::transfer::source> make_transfer_source(const config::config& cfg);

/// The configured database as the target of `docflow migrate-data`. Only
/// PostgreSQL can be one: nullptr for another engine. Throws store::store_error.
std::unique_ptr<store::transfer::sink> make_transfer_sink(const config::config& cfg);

}  // namespace docflow::app
