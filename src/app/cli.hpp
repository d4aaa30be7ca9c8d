#pragma once

namespace docflow::app {

/// Parses the command line (and the DOCFLOW_* environment behind each flag),
/// runs the chosen command and returns the exit code: 0 on success, 2 for a
/// bad command line or configuration, 1 for a failure while running.
int run_cli(int argc, char** argv);

}  // namespace docflow::app
