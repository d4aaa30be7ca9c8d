// sha256 keeps its state in OpenSSL's low-level SHA256_CTX (see there).
#define OPENSSL_SUPPRESS_DEPRECATED

#include "core/crypto.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
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

// The low-level SHA-256 interface, which OpenSSL 3 keeps but marks
// deprecated, is the only one whose state can be read out and put back
// (save, restore); it runs the same assembly as EVP's.
struct sha256::state {
  SHA256_CTX ctx{};
};

sha256::sha256() : state_(std::make_unique<state>()) { SHA256_Init(&state_->ctx); }

sha256::~sha256() = default;

void sha256::update(std::string_view bytes) { SHA256_Update(&state_->ctx, bytes.data(), bytes.size()); }

std::string sha256::hex_final() {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256_Final(digest.data(), &state_->ctx);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

namespace {
constexpr std::string_view saved_version = "s1:";
constexpr std::size_t word_hex = 8;

void put_word(std::string& out, std::uint32_t w) {
  static constexpr char hex[] = "0123456789abcdef";
  for (int shift = 28; shift >= 0; shift -= 4) out += hex[(w >> shift) & 0xF];
}

int nibble(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

std::optional<std::uint32_t> take_word(std::string_view& in) {
  if (in.size() < word_hex) return std::nullopt;
  std::uint32_t w = 0;
  for (const char c : in.substr(0, word_hex)) {
    const int v = nibble(c);
    if (v < 0) return std::nullopt;
    w = (w << 4) | static_cast<std::uint32_t>(v);
  }
  in.remove_prefix(word_hex);
  return w;
}
}  // namespace

// The words as numbers and the partial block as the bytes it holds, so the
// text means the same on any machine; md_len is always the digest's size.
std::string sha256::save() const {
  const auto& c = state_->ctx;
  std::string out(saved_version);
  for (const auto h : c.h) put_word(out, h);
  put_word(out, c.Nl);
  put_word(out, c.Nh);
  put_word(out, c.num);
  out += hex_encode(std::string_view(reinterpret_cast<const char*>(c.data), c.num));
  return out;
}

std::unique_ptr<sha256> sha256::restore(std::string_view saved) {
  if (!saved.starts_with(saved_version)) return nullptr;
  saved.remove_prefix(saved_version.size());
  auto out = std::make_unique<sha256>();
  auto& c = out->state_->ctx;
  for (auto& h : c.h) {
    const auto w = take_word(saved);
    if (!w) return nullptr;
    h = *w;
  }
  const auto nl = take_word(saved);
  const auto nh = take_word(saved);
  const auto num = take_word(saved);
  if (!nl || !nh || !num || *num >= SHA256_CBLOCK || saved.size() != std::size_t{*num} * 2) return nullptr;
  c.Nl = *nl;
  c.Nh = *nh;
  c.num = *num;
  auto* block = reinterpret_cast<unsigned char*>(c.data);
  for (std::uint32_t i = 0; i < *num; ++i) {
    const int high = nibble(saved[2 * i]);
    const int low = nibble(saved[2 * i + 1]);
    if (high < 0 || low < 0) return nullptr;
    block[i] = static_cast<unsigned char>(high * 16 + low);
  }
  return out;
}

struct named_digest::state {
  struct free_ctx {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, free_ctx> ctx{EVP_MD_CTX_new()};
};

named_digest::named_digest() : state_(std::make_unique<state>()) {}
named_digest::~named_digest() = default;

std::unique_ptr<named_digest> named_digest::make(std::string_view name) {
  const EVP_MD* md = name == "sha256" ? EVP_sha256()
                     : name == "sha1" ? EVP_sha1()
                     : name == "md5"  ? EVP_md5()
                                      : nullptr;
  if (!md) return nullptr;
  std::unique_ptr<named_digest> out(new named_digest());
  if (!out->state_->ctx || EVP_DigestInit_ex(out->state_->ctx.get(), md, nullptr) != 1) {
    throw std::runtime_error("OpenSSL: no digest " + std::string(name));
  }
  return out;
}

void named_digest::update(std::string_view bytes) {
  if (EVP_DigestUpdate(state_->ctx.get(), bytes.data(), bytes.size()) != 1) {
    throw std::runtime_error("OpenSSL: digest update failed");
  }
}

std::string named_digest::final() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(state_->ctx.get(), digest.data(), &n) != 1) {
    throw std::runtime_error("OpenSSL: digest final failed");
  }
  return std::string(reinterpret_cast<const char*>(digest.data()), n);
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
