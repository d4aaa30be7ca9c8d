#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace docflow::core {

/// SHA-256 of `bytes`, lowercase hex (64 chars).
std::string sha256_hex(std::string_view bytes);

/// SHA-256 of bytes that arrive in pieces (a blob read chunk by chunk, a
/// resumable upload request by request).
class sha256 {
public:
  sha256();
  ~sha256();
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;

  void update(std::string_view bytes);
  /// Lowercase hex (64 chars) of everything given to update(); call once.
  std::string hex_final();

  /// The state after everything given so far, as text that restore() takes
  /// back, in another process or on another machine: a resumable upload
  /// hashes its bytes as they arrive, whichever process receives them.
  std::string save() const;
  /// The hash in the state save() gave; nullopt for text it did not give.
  static std::unique_ptr<sha256> restore(std::string_view saved);

private:
  struct state;
  std::unique_ptr<state> state_;
};

/// A digest by its name as HTTP clients give it ("sha256", "sha1", "md5"),
/// over bytes that arrive in pieces: the raw digest.
class named_digest {
public:
  /// Null for a name this does not know.
  static std::unique_ptr<named_digest> make(std::string_view name);
  ~named_digest();
  named_digest(const named_digest&) = delete;
  named_digest& operator=(const named_digest&) = delete;

  void update(std::string_view bytes);
  /// The raw digest of everything given to update(); call once.
  std::string final();

private:
  named_digest();
  struct state;
  std::unique_ptr<state> state_;
};

/// HMAC-SHA256 of `data` under `key`: the raw 32 bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

}  // namespace docflow::core
