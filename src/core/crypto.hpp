#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace docflow::core {

/// SHA-256 of `bytes`, lowercase hex (64 chars).
std::string sha256_hex(std::string_view bytes);

/// SHA-256 of bytes that arrive in pieces (a blob read chunk by chunk).
/// Throws std::runtime_error when OpenSSL cannot make a digest context.
class sha256 {
public:
  sha256();
  ~sha256();
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;

  void update(std::string_view bytes);
  /// Lowercase hex (64 chars) of everything given to update(); call once.
  std::string hex_final();

private:
  struct state;
  std::unique_ptr<state> state_;
};

/// HMAC-SHA256 of `data` under `key`: the raw 32 bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

}  // namespace docflow::core
