#pragma once

#include <filesystem>

#include "blob/blob_store.hpp"

namespace docflow::blob {

/// Blobs as files under one directory, written through a tmp/ subdirectory on
/// the same filesystem so that a rename publishes them atomically.
class fs_blob_store final : public blob_store {
public:
  /// Creates `root` and `root/tmp` when missing. Throws blob_error.
  explicit fs_blob_store(std::filesystem::path root);

  void check() override;

private:
  std::filesystem::path root_;
};

}  // namespace docflow::blob
