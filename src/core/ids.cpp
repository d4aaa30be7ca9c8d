#include "core/ids.hpp"

#include <array>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace docflow::core {

void random_bytes(unsigned char* out, std::size_t n) {
  // Every request takes 16 random bytes for its id; one RAND_bytes call per
  // request showed at 7% of the CPU of GET /documents/{id}. Each thread draws
  // 4 KiB at a time and hands out slices. The bytes are as random as before;
  // a forked child must exec before it asks for any (ours do).
  constexpr std::size_t block = 4096;
  thread_local std::array<unsigned char, block> pool;
  thread_local std::size_t used = block;
  if (n > block / 4) {
    if (RAND_bytes(out, static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
    return;
  }
  if (used + n > block) {
    if (RAND_bytes(pool.data(), static_cast<int>(block)) != 1) throw std::runtime_error("RAND_bytes failed");
    used = 0;
  }
  std::memcpy(out, pool.data() + used, n);
  OPENSSL_cleanse(pool.data() + used, n);  // handed-out bytes do not stay behind
  used += n;
}

namespace {
constexpr char hex_digits[] = "0123456789abcdef";

void append_hex(std::string& s, const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    s.push_back(hex_digits[p[i] >> 4]);
    s.push_back(hex_digits[p[i] & 0x0f]);
  }
}
}  // namespace

std::string random_hex(std::size_t n) {
  std::string raw(n, '\0');
  random_bytes(reinterpret_cast<unsigned char*>(raw.data()), n);
  std::string s;
  s.reserve(2 * n);
  append_hex(s, reinterpret_cast<const unsigned char*>(raw.data()), n);
  return s;
}

std::string new_uuid_v7() {
  std::array<unsigned char, 16> b{};
  random_bytes(b.data(), b.size());
  const auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
  for (int i = 0; i < 6; ++i) {
    b[static_cast<std::size_t>(i)] = static_cast<unsigned char>(ms >> (40 - 8 * i));
  }
  b[6] = static_cast<unsigned char>(0x70 | (b[6] & 0x0f));  // version 7
  b[8] = static_cast<unsigned char>(0x80 | (b[8] & 0x3f));  // variant 10
  std::string s;
  s.reserve(36);
  append_hex(s, b.data(), 4);
  s.push_back('-');
  append_hex(s, b.data() + 4, 2);
  s.push_back('-');
  append_hex(s, b.data() + 6, 2);
  s.push_back('-');
  append_hex(s, b.data() + 8, 2);
  s.push_back('-');
  append_hex(s, b.data() + 10, 6);
  return s;
}

bool is_uuid(std::string_view s) noexcept {
  if (s.size() != 36) {
    return false;
  }
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') {
        return false;
      }
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

}  // namespace docflow::core
