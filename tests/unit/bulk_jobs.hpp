#pragma once

// Many queued jobs at once, for the tests and the benchmark that need a
// long queue: rows as request_processing leaves them (a PROCESSING
// document, its queued job, the owner's job_owners row), written in one
// transaction by SQL instead of two transactions per job. No status events
// are written; nothing that reads this queue looks for them.

#include <chrono>
#include <filesystem>
#include <string>

#include "core/clock.hpp"

namespace docflow::test {

/// Queues `n` jobs of `owner` in the SQLite database at `path`, the i-th
/// available at `from` + i × `step`.
void bulk_queue_sqlite(const std::filesystem::path& path, const std::string& owner, int n,
                       core::time_point from, std::chrono::milliseconds step);

/// The same in the PostgreSQL database at `url`.
void bulk_queue_postgres(const std::string& url, const std::string& owner, int n, core::time_point from,
                         std::chrono::milliseconds step);

}  // namespace docflow::test
