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

namespace docflow::app {

/// The database DOCFLOW_DATABASE_URL names, opened, its schema untouched.
/// With backends.cpp, the only code that names a database implementation.
/// Throws store::store_error.
std::unique_ptr<store::database> make_database(const config::config& cfg);

/// The blob store DOCFLOW_STORAGE_URL names. The only code that names a
/// blob store implementation. Throws blob::blob_error.
std::unique_ptr<blob::blob_store> make_blob_store(const config::config& cfg);

}  // namespace docflow::app
