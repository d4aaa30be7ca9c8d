#pragma once

#include <chrono>

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
namespace docflow::http {
class blocking_pool;
}

namespace docflow::api {

/// What the handlers work with. Built once by app/ and outliving the server.
struct services {
  const config::config& cfg;
  store::database& db;
  blob::blob_store& blobs;
  obs::metrics& metrics;
  http::blocking_pool& blocking;
  std::chrono::system_clock::time_point started_at;
};

}  // namespace docflow::api
