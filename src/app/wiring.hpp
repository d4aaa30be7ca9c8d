#pragma once

namespace docflow::config {
struct config;
}

namespace docflow::app {

/// `docflow serve`: migrates, then serves HTTP until SIGTERM/SIGINT.
/// Returns the process exit code.
int serve(config::config cfg);

/// `docflow migrate`: applies pending schema migrations and reports the
/// version reached. Returns the process exit code.
int migrate(const config::config& cfg);

}  // namespace docflow::app
