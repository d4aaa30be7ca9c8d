#pragma once

#include <memory>

namespace docflow::config {
struct config;
}
namespace docflow::store {
class database;
}
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

}  // namespace docflow::app
