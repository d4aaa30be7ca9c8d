#pragma once

#include <memory>
#include <string>

#include "store/transfer.hpp"

namespace docflow::store::postgres {

/// The PostgreSQL database at `url` as a transfer sink, on a connection of
/// its own; `password`, when not empty, wins over the URL's. Its schema must
/// already be at the source's version (database::migrate). Throws
/// store_error when the database cannot be reached.
std::unique_ptr<transfer::sink> open_transfer_sink(const std::string& url, std::string password);

}  // namespace docflow::store::postgres
