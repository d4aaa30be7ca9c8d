#pragma once

#include <stdexcept>
#include <string>

namespace docflow::store {

/// A database failure; `what()` is for the log, never for a client.
class store_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The database behind docflow, shaped so that SQLite and PostgreSQL can both
/// implement it without callers knowing which one they hold. Every method
/// blocks: call it from the blocking pool, never from an I/O thread.
class database {
public:
  virtual ~database() = default;

  /// Applies every migration newer than the schema's version, each in its own
  /// transaction; safe when several processes start at once. Returns the
  /// version reached. Throws store_error.
  virtual int migrate() = 0;

  /// The schema version recorded in the database (0 when none).
  virtual int schema_version() = 0;

  /// Answers a trivial query over a fresh connection, so that a database file
  /// that vanished or was damaged is noticed. Throws store_error.
  virtual void check() = 0;
};

}  // namespace docflow::store
