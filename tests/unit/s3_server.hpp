#pragma once

// An S3 server of the tests' own: Ceph's radosgw on a one-node Ceph in a
// temporary directory, on 127.0.0.1, brought up by the integration tests'
// tests/integration/s3.py (`serve`), so both tiers start it one way. Why
// radosgw and what it costs: docs/architecture.md, "Testing against S3".

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "blob/s3/client.hpp"

namespace docflow::test {

class s3_server {
public:
  /// Starts the server (a few seconds). Throws std::runtime_error, with what
  /// s3.py and the daemons logged, when it does not come up: the tests that
  /// need it fail, they are not skipped.
  s3_server();
  /// Closes the server (its daemons are killed, its files removed).
  ~s3_server();
  s3_server(const s3_server&) = delete;
  s3_server& operator=(const s3_server&) = delete;

  /// "http://127.0.0.1:PORT": path-style addressing, plain HTTP.
  const std::string& endpoint() const noexcept { return endpoint_; }
  const std::string& access_key() const noexcept { return access_key_; }
  const std::string& secret_key() const noexcept { return secret_key_; }
  /// "us-east-1", the region to sign for.
  const std::string& region() const noexcept { return region_; }

  /// A client configuration for `bucket` on this server.
  blob::s3::client_config client_config(const std::string& bucket) const;

  /// A new, empty bucket; its name. Throws std::runtime_error when the
  /// server cannot make it (the gateway is killed, say).
  std::string create_bucket();
  /// SIGKILLs radosgw alone, as an S3 service that crashes: connections to
  /// the endpoint are refused until start_gateway(). Objects survive.
  void kill_gateway();
  /// Starts radosgw again on the same endpoint; returns once it answers.
  void start_gateway();

private:
  void close() noexcept;
  std::string command(std::string_view line);
  std::string read_line();
  std::string failure(std::string_view what);

  pid_t pid_ = -1;
  int channel_ = -1;  // the child's stdin and stdout
  std::string pending_;
  std::filesystem::path log_;  // the child's stderr
  std::string endpoint_, access_key_, secret_key_, region_;
};

/// The one server of this test binary's run, started on first use, closed
/// at exit. Each test makes its own bucket on it.
s3_server& shared_s3_server();

}  // namespace docflow::test
