#include "auth/password.hpp"

#include <new>
#include <stdexcept>

#include <sodium.h>

#include "core/ids.hpp"

namespace docflow::auth {

namespace {
constexpr unsigned long long ops_limit = 2;
constexpr std::size_t mem_limit = 19 * 1024 * 1024;
}  // namespace

password_hasher::password_hasher() {
  if (sodium_init() < 0) {
    throw std::runtime_error("libsodium failed to initialise");
  }
  dummy_ = hash(core::random_hex(16));
}

std::string password_hasher::hash(std::string_view password) const {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), ops_limit, mem_limit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::bad_alloc();
  }
  return out;
}

bool password_hasher::verify(const std::optional<std::string>& encoded, std::string_view password) const {
  const auto& target = encoded ? *encoded : dummy_;
  const bool match = crypto_pwhash_str_verify(target.c_str(), password.data(), password.size()) == 0;
  return match && encoded.has_value();
}

std::optional<hash_slots::ticket> hash_slots::try_acquire() {
  auto n = in_use_.load();
  do {
    if (n >= capacity_) {
      return std::nullopt;
    }
  } while (!in_use_.compare_exchange_weak(n, n + 1));
  return ticket(*this);
}

}  // namespace docflow::auth
