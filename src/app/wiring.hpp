#pragma once

#include <iosfwd>
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

/// `docflow user add NAME [--admin]`: creates an account with the password
/// read from the first line of `password_input`. Exit code 2 for an invalid
/// name or password, 1 when the name is taken.
int user_add(const config::config& cfg, const std::string& name, bool admin, std::istream& password_input);

/// `docflow user list`: prints id, username, role and creation time.
int user_list(const config::config& cfg);

}  // namespace docflow::app
