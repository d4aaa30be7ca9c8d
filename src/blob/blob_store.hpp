#pragma once

#include <stdexcept>

namespace docflow::blob {

/// A storage failure; `what()` is for the log, never for a client.
class blob_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Where document bytes live: local disk now, S3-compatible storage later.
/// Every method blocks: call it from the blocking pool.
class blob_store {
public:
  virtual ~blob_store() = default;

  /// Proves the store can take a write right now (readiness). Throws blob_error.
  virtual void check() = 0;
};

}  // namespace docflow::blob
