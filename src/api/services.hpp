#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>

namespace docflow::config {
struct config;
}
namespace docflow::core {
class clock;
}
namespace docflow::store {
class database;
class change_feed;
}  // namespace docflow::store
namespace docflow::blob {
class blob_store;
}
namespace docflow::obs {
class metrics;
}
namespace docflow::http {
class blocking_pool;
class admission_gate;
}  // namespace docflow::http
namespace docflow::auth {
class jwt_codec;
class api_key_hasher;
class password_hasher;
class hash_slots;
}  // namespace docflow::auth

namespace docflow::api {

class cursor_codec;
class stream_limit;
class login_throttle;
class registration_throttle;

/// What the operations endpoints (api/ops.hpp) read. `serve` makes one from
/// its services; `docflow worker`, which serves nothing else, has only this.
struct ops_context {
  const config::config& cfg;
  store::database& db;
  blob::blob_store& blobs;
  obs::metrics& metrics;
  http::blocking_pool& blocking;
  /// For docflow_uploads_waiting; null in a process that takes no uploads.
  const http::admission_gate* uploads = nullptr;
  /// Set while this process leads maintenance (and so reports the gauges
  /// read from shared state); null in a process that never leads.
  const std::atomic<bool>* maintenance_leader = nullptr;
};

/// What the handlers work with. Built once by app/ and outliving the server.
struct services {
  const config::config& cfg;
  const core::clock& clock;
  store::database& db;
  blob::blob_store& blobs;
  obs::metrics& metrics;
  http::blocking_pool& blocking;
  /// Uploads receiving their body at once (DOCFLOW_MAX_ACTIVE_UPLOADS).
  http::admission_gate& uploads;
  docflow::auth::jwt_codec& tokens;
  const docflow::auth::api_key_hasher& api_keys;
  docflow::auth::password_hasher& passwords;
  /// Password hashing for logins; registrations have their own, smaller
  /// budget, so that a registration loop cannot starve existing users' logins.
  docflow::auth::hash_slots& hashing;
  docflow::auth::hash_slots& signup_hashing;
  login_throttle& throttle;
  registration_throttle& signups;
  const cursor_codec& cursors;
  /// Wakes event streams when their document has a new event.
  store::change_feed& changes;
  stream_limit& streams;
  /// This binary, started as the sandboxed child that checks DOCX uploads.
  const std::filesystem::path& self_exe;
  /// Set when the server starts draining: long-lived streams end.
  std::atomic<bool> shutting_down{false};
  /// See ops_context::maintenance_leader.
  const std::atomic<bool>* maintenance_leader = nullptr;
};

}  // namespace docflow::api
