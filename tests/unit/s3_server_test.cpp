// The S3 server the tests start (s3_server.hpp) is up, makes buckets and
// restarts its gateway on the same endpoint. That it checks signatures and
// digests as AWS does is shown in tests/integration/test_s3_server.py.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "s3_server.hpp"

using namespace docflow;

namespace {

int port_of(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

// An anonymous GET on 127.0.0.1:port, read to the end; nullopt when the
// connection is refused.
std::optional<std::string> anonymous_get(int port, std::string_view path) {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    const int error = errno;
    ::close(s);
    if (error == ECONNREFUSED) return std::nullopt;
    throw std::runtime_error("connect failed: errno " + std::to_string(error));
  }
  const std::string request =
      "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  std::string response;
  if (::send(s, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    for (ssize_t n; (n = ::recv(s, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, n);
  }
  ::close(s);
  return response;
}

}  // namespace

TEST(s3_server, makes_fresh_buckets_on_a_gateway_that_answers_http) {
  auto& s3 = test::shared_s3_server();
  EXPECT_TRUE(s3.endpoint().starts_with("http://127.0.0.1:")) << s3.endpoint();
  EXPECT_EQ(s3.region(), "us-east-1");
  EXPECT_FALSE(s3.access_key().empty());
  EXPECT_FALSE(s3.secret_key().empty());

  const auto bucket = s3.create_bucket();
  EXPECT_NE(s3.create_bucket(), bucket);
  // Without a signature: the new bucket is there and private, a name never
  // made is not there.
  const auto made = anonymous_get(port_of(s3.endpoint()), "/" + bucket);
  ASSERT_TRUE(made);
  EXPECT_TRUE(made->starts_with("HTTP/1.1 403")) << *made;
  EXPECT_NE(made->find("<Code>AccessDenied</Code>"), std::string::npos) << *made;
  const auto unknown = anonymous_get(port_of(s3.endpoint()), "/" + bucket + "-never-made");
  ASSERT_TRUE(unknown);
  EXPECT_TRUE(unknown->starts_with("HTTP/1.1 404")) << *unknown;
  EXPECT_NE(unknown->find("<Code>NoSuchBucket</Code>"), std::string::npos) << *unknown;
}

TEST(s3_server, the_gateway_comes_back_on_its_endpoint_with_its_buckets) {
  auto& s3 = test::shared_s3_server();
  const auto bucket = s3.create_bucket();
  const int port = port_of(s3.endpoint());

  s3.kill_gateway();
  EXPECT_FALSE(anonymous_get(port, "/" + bucket)) << "the gateway still answers";
  EXPECT_THROW(s3.create_bucket(), std::runtime_error);

  s3.start_gateway();
  const auto after = anonymous_get(port, "/" + bucket);
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->starts_with("HTTP/1.1 403")) << *after;
  EXPECT_NE(s3.create_bucket(), bucket);
}
