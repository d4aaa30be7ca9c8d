#pragma once

#include <filesystem>
#include <memory>

#include "store/transfer.hpp"

namespace docflow::store::sqlite {

/// The SQLite database at `path` (which must exist) as a transfer source:
/// one connection in exclusive locking mode inside one transaction, so that
/// the copy reads one snapshot and no docflow can open the file until the
/// source is destroyed. Throws transfer::source_busy when another
/// connection has the file open (a docflow still running on it), and
/// store_error otherwise.
std::unique_ptr<transfer::source> open_transfer_source(const std::filesystem::path& path);

}  // namespace docflow::store::sqlite
