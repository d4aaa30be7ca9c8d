#pragma once

// A PostgreSQL 15 server of the tests' own: initdb in a temporary directory,
// listening on 127.0.0.1 at a free port and on a socket in that directory,
// stopped and removed when the object goes. Nothing else is needed: no
// system cluster, no password.

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace docflow::test {

class pg_server {
public:
  /// `durable`: fsync on, for tests about restarts; off, a unit test's
  /// server starts and writes faster. Throws std::runtime_error (with the
  /// server's log) when the binaries are missing or the server does not
  /// come up: the tests that need it fail, they are not skipped.
  explicit pg_server(bool durable = false);
  ~pg_server();
  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;

  int port() const noexcept { return port_; }
  /// A libpq URL for `database` on this server.
  std::string url(std::string_view database = "postgres") const;
  /// A new, empty database (CREATE DATABASE ... TEMPLATE template0); its URL.
  std::string create_database();

  /// Stops the server (a fast shutdown: clients are disconnected).
  void stop();
  /// Starts it again on the same port and data.
  void start();
  bool running() const noexcept { return pid_ > 0; }

  /// Where initdb and postgres are: $DOCFLOW_PG_BIN, else the build's
  /// DOCFLOW_PG_BIN_DEFAULT (/usr/lib/postgresql/15/bin).
  static std::filesystem::path bin_dir();

private:
  void wait_until_ready();

  std::filesystem::path dir_;
  int port_ = 0;
  bool durable_;
  pid_t pid_ = -1;
};

/// The one server of this test binary's run, started on first use, stopped
/// and removed at exit. Each test makes its own database on it.
pg_server& shared_pg_server();

}  // namespace docflow::test
