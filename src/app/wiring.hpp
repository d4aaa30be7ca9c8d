#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace docflow::config {
struct config;
}

namespace docflow::app {

/// `docflow serve`: migrates, then serves HTTP and runs DOCFLOW_WORKERS
/// in-process workers until SIGTERM/SIGINT.
/// Returns the process exit code.
int serve(config::config cfg);

/// `docflow worker`: runs the job workers alone against the configured
/// database until SIGTERM/SIGINT. Returns the process exit code.
int work(const config::config& cfg);

/// `docflow migrate`: applies pending schema migrations and reports the
/// version reached. Returns the process exit code.
int migrate(const config::config& cfg);

/// `docflow maintenance [--min-age D]`: one maintenance pass over the whole
/// store now: expired refresh families, idempotency keys and throttle
/// counts, orphan blobs and uncommitted uploads older than `min_age`. Exit
/// code 75 when another process holds the maintenance lease.
int maintain(const config::config& cfg, std::chrono::seconds min_age);

/// `docflow user add NAME [--admin]`: creates an account. The password is
/// typed twice without echo when standard input is a terminal, else it is
/// the first line of standard input. Exit code 2 for an invalid name or
/// password or two typings that differ, 1 when the name is taken.
int user_add(const config::config& cfg, const std::string& name, bool admin);

/// `docflow user set-quota NAME [--bytes B] [--documents N]`: sets the
/// user's own limits, each a size (bytes) or a count, `unlimited`, or
/// `default` (DOCFLOW_QUOTA_*); prints usage and limits as "what, used,
/// limit" lines. Exit code 2 for a bad value or no limit given, 1 for an
/// unknown user.
int user_set_quota(const config::config& cfg, const std::string& name,
                   const std::optional<std::string>& bytes, const std::optional<std::string>& documents);

/// `docflow user list`: prints id, username, role and creation time.
int user_list(const config::config& cfg);

}  // namespace docflow::app
