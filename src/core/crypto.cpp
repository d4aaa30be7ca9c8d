#include "core/crypto.hpp"

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#include "core/encoding.hpp"

namespace docflow::core {

std::string sha256_hex(std::string_view bytes) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest.data());
  return hex_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

struct sha256::state {
  struct free_ctx {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, free_ctx> ctx{EVP_MD_CTX_new()};
};

sha256::sha256() : state_(std::make_unique<state>()) {
  if (!state_->ctx || EVP_DigestInit_ex(state_->ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("OpenSSL: no SHA-256 digest");
  }
}

sha256::~sha256() = default;

void sha256::update(std::string_view bytes) {
  if (EVP_DigestUpdate(state_->ctx.get(), bytes.data(), bytes.size()) != 1) {
    throw std::runtime_error("OpenSSL: SHA-256 update failed");
  }
}

std::string sha256::hex_final() {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(state_->ctx.get(), digest.data(), &n) != 1) {
    throw std::runtime_error("OpenSSL: SHA-256 final failed");
  }
  return hex_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), n));
}

namespace {
struct mac_ctx_free {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
struct mac_free {
  void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
};
}  // namespace

std::string hmac_sha256(std::string_view key, std::string_view data) {
  // HMAC() looks the algorithms up on every call, which showed at about half
  // of JWT verification in the GET /documents/{id} profile. Each thread keeps
  // one keyed context per key (the process has two: tokens and cursors) and
  // re-initialises it, which reuses the key's padded state.
  static const std::unique_ptr<EVP_MAC, mac_free> hmac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  thread_local std::vector<std::pair<std::string, std::unique_ptr<EVP_MAC_CTX, mac_ctx_free>>> keyed;
  constexpr std::size_t max_keys = 8;
  EVP_MAC_CTX* ctx = nullptr;
  for (const auto& [k, c] : keyed) {
    if (k == key) ctx = c.get();
  }
  if (!ctx) {
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    std::unique_ptr<EVP_MAC_CTX, mac_ctx_free> fresh(hmac ? EVP_MAC_CTX_new(hmac.get()) : nullptr);
    if (!fresh || EVP_MAC_init(fresh.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                               params) != 1) {
      throw std::runtime_error("HMAC-SHA256 setup failed");
    }
    if (keyed.size() >= max_keys) keyed.erase(keyed.begin());
    ctx = keyed.emplace_back(std::string(key), std::move(fresh)).second.get();
  } else if (EVP_MAC_init(ctx, nullptr, 0, nullptr) != 1) {
    throw std::runtime_error("HMAC-SHA256 init failed");
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  std::size_t len = 0;
  if (EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1 ||
      EVP_MAC_final(ctx, out.data(), &len, out.size()) != 1) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<const char*>(out.data()), len);
}

}  // namespace docflow::core
