// The digests a resumable upload needs: SHA-256 carried across requests in
// saved text, the checksums clients send per request, and standard base64.
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace docflow {
namespace {

std::string pattern(std::size_t n) {
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<char>((i * 131 + i / 7) & 0xFF);
  return out;
}

TEST(Sha256Save, RestoredStateFinishesAsOneHashWouldAtEveryCut) {
  const auto bytes = pattern(1000);
  const auto whole = core::sha256_hex(bytes);
  // Cuts inside a block, at block boundaries and across several blocks.
  for (const std::size_t cut : {0, 1, 55, 63, 64, 65, 127, 128, 500, 999, 1000}) {
    core::sha256 first;
    first.update(std::string_view(bytes).substr(0, cut));
    const auto saved = first.save();
    auto second = core::sha256::restore(saved);
    ASSERT_NE(second, nullptr) << "cut " << cut;
    second->update(std::string_view(bytes).substr(cut));
    EXPECT_EQ(second->hex_final(), whole) << "cut " << cut;
  }
}

TEST(Sha256Save, SavingTwiceAcrossThreeRequestsStillAgrees) {
  const auto bytes = pattern(300);
  core::sha256 a;
  a.update(std::string_view(bytes).substr(0, 70));
  auto b = core::sha256::restore(a.save());
  b->update(std::string_view(bytes).substr(70, 130));
  auto c = core::sha256::restore(b->save());
  c->update(std::string_view(bytes).substr(200));
  EXPECT_EQ(c->hex_final(), core::sha256_hex(bytes));
}

TEST(Sha256Save, RestoreRefusesTextItDidNotWrite) {
  core::sha256 h;
  h.update("abc");
  const auto saved = h.save();
  EXPECT_EQ(core::sha256::restore(""), nullptr);
  EXPECT_EQ(core::sha256::restore("x" + saved.substr(1)), nullptr);              // another version
  EXPECT_EQ(core::sha256::restore(saved.substr(0, saved.size() - 2)), nullptr);  // a byte short
  EXPECT_EQ(core::sha256::restore(saved + "00"), nullptr);                       // a byte over
  auto upper = saved;
  upper.back() = 'G';
  EXPECT_EQ(core::sha256::restore(upper), nullptr);
}

TEST(NamedDigest, KnowsTheThreeChecksumAlgorithmsOfTus) {
  // FIPS 180 and RFC 1321 test vectors for "abc", base64 as Upload-Checksum carries them.
  const auto digest_of = [](std::string_view name) {
    auto d = core::named_digest::make(name);
    d->update("a");
    d->update("bc");
    return d->final();
  };
  EXPECT_EQ(digest_of("sha256"), *core::base64_decode("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="));
  EXPECT_EQ(digest_of("sha1"), *core::base64_decode("qZk+NkcGgWq6PiVxeFDCbJzQ2J0="));
  EXPECT_EQ(digest_of("md5"), *core::base64_decode("kAFQmDzST7DWlj99KOF/cg=="));
  EXPECT_EQ(core::named_digest::make("crc32"), nullptr);
  EXPECT_EQ(core::named_digest::make("SHA256"), nullptr);
}

TEST(Base64, DecodesPaddedAndUnpaddedStandardText) {
  EXPECT_EQ(core::base64_decode(""), "");
  EXPECT_EQ(core::base64_decode("Zg=="), "f");
  EXPECT_EQ(core::base64_decode("Zm8="), "fo");
  EXPECT_EQ(core::base64_decode("Zm9v"), "foo");
  EXPECT_EQ(core::base64_decode("Zg"), "f");
  EXPECT_EQ(core::base64_decode("+/+/"), std::string("\xfb\xff\xbf", 3));
}

TEST(Base64, RefusesWhatNoEncoderWrites) {
  EXPECT_EQ(core::base64_decode("Zg="), std::nullopt);  // padding short of the length
  EXPECT_EQ(core::base64_decode("Zm9v===="), std::nullopt);
  EXPECT_EQ(core::base64_decode("Z=g="), std::nullopt);  // padding inside
  EXPECT_EQ(core::base64_decode("Zh=="), std::nullopt);  // leftover bits set
  EXPECT_EQ(core::base64_decode("Z"), std::nullopt);
  EXPECT_EQ(core::base64_decode("-_-_"), std::nullopt);  // the URL alphabet
  EXPECT_EQ(core::base64_decode("Zm 9v"), std::nullopt);
}

}  // namespace
}  // namespace docflow
