// The rules behind SPEC §2 that need no server: refresh-token rotation, the
// hashing bound, base64url, usernames, refresh-token material and argon2id
// password hashing. The login throttle counts in the database: its tests are
// in store_contract_test.cpp, on each engine.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "auth/password.hpp"
#include "auth/refresh_token.hpp"
#include "core/clock.hpp"
#include "core/encoding.hpp"
#include "core/refresh_rules.hpp"
#include "core/user.hpp"

// Readable failure messages for the enums (found by ADL).
namespace docflow::core {
[[maybe_unused]] static void PrintTo(rotation_decision d, std::ostream* os) {
  switch (d) {
    case rotation_decision::rotate: *os << "rotate"; return;
    case rotation_decision::reuse_detected: *os << "reuse_detected"; return;
    case rotation_decision::reject: *os << "reject"; return;
  }
  *os << "rotation_decision(" << static_cast<int>(d) << ')';
}
}  // namespace docflow::core

namespace {

using namespace std::chrono_literals;
using docflow::core::time_point;

const time_point t0{std::chrono::seconds{1'800'000'000}};

// ===========================================================================
// core::decide_rotation

using docflow::core::decide_rotation;
using docflow::core::refresh_token_state;
using docflow::core::rotation_decision;

refresh_token_state fresh_token() { return {t0 + 7 * 24h, std::nullopt, false}; }

refresh_token_state used_at(time_point when) {
  auto s = fresh_token();
  s.used_at = when;
  return s;
}

TEST(DecideRotation, FreshTokenRotates) {
  EXPECT_EQ(decide_rotation(fresh_token(), t0, 0ms), rotation_decision::rotate);
  EXPECT_EQ(decide_rotation(fresh_token(), t0 + 24h, 30s), rotation_decision::rotate);
}

TEST(DecideRotation, UsedTokenOutsideGraceIsReuse) {
  EXPECT_EQ(decide_rotation(used_at(t0), t0 + 1ms, 0ms), rotation_decision::reuse_detected);
  EXPECT_EQ(decide_rotation(used_at(t0), t0 + 31s, 30s), rotation_decision::reuse_detected);
  EXPECT_EQ(decide_rotation(used_at(t0), t0 + 24h, 30s), rotation_decision::reuse_detected);
}

TEST(DecideRotation, UsedTokenWithinGraceRotatesAgain) {
  EXPECT_EQ(decide_rotation(used_at(t0), t0 + 1s, 30s), rotation_decision::rotate);
  EXPECT_EQ(decide_rotation(used_at(t0), t0 + 29999ms, 30s), rotation_decision::rotate);
}

TEST(DecideRotation, GraceBoundaryIsInclusive) {
  EXPECT_EQ(decide_rotation(used_at(t0), t0 + 30s, 30s), rotation_decision::rotate);
  EXPECT_EQ(decide_rotation(used_at(t0), t0 + 30s + 1ms, 30s), rotation_decision::reuse_detected);
}

TEST(DecideRotation, ZeroGraceOpensNoWindowAtAll) {
  // SPEC §2: refresh tokens "each work once"; the default grace of 0s must
  // not let a replay in the same millisecond (two racing requests, or a
  // thief quick enough) rotate the token a second time and fork the login.
  EXPECT_EQ(decide_rotation(used_at(t0), t0, 0ms), rotation_decision::reuse_detected);
}

TEST(DecideRotation, ExpiredTokenIsRejectedWithoutReuseDetection) {
  const auto expired = fresh_token();
  EXPECT_EQ(decide_rotation(expired, expired.expires_at, 0ms), rotation_decision::reject);
  EXPECT_EQ(decide_rotation(expired, expired.expires_at + 1s, 0ms), rotation_decision::reject);
  EXPECT_EQ(decide_rotation(expired, expired.expires_at - 1ms, 0ms), rotation_decision::rotate);
  // Used long ago and now expired: rejected, not treated as reuse.
  EXPECT_EQ(decide_rotation(used_at(t0), t0 + 8 * 24h, 0ms), rotation_decision::reject);
}

TEST(DecideRotation, RevokedFamilyIsRejected) {
  auto revoked = fresh_token();
  revoked.family_revoked = true;
  EXPECT_EQ(decide_rotation(revoked, t0, 30s), rotation_decision::reject);
  auto revoked_used = used_at(t0);
  revoked_used.family_revoked = true;
  EXPECT_EQ(decide_rotation(revoked_used, t0 + 1s, 30s), rotation_decision::reject);
  EXPECT_EQ(decide_rotation(revoked_used, t0 + 1h, 30s), rotation_decision::reject);
}

// ===========================================================================
// auth::hash_slots

using docflow::auth::hash_slots;

TEST(HashSlots, AcquiresUpToCapacityThenRefuses) {
  hash_slots slots(3);
  std::vector<hash_slots::ticket> held;
  for (int i = 0; i < 3; ++i) {
    auto t = slots.try_acquire();
    ASSERT_TRUE(t.has_value()) << i;
    held.push_back(std::move(*t));
  }
  EXPECT_FALSE(slots.try_acquire().has_value());
  EXPECT_FALSE(slots.try_acquire().has_value()) << "a refusal takes no slot";
}

TEST(HashSlots, ZeroCapacityNeverGrants) {
  hash_slots slots(0);
  EXPECT_FALSE(slots.try_acquire().has_value());
}

TEST(HashSlots, ReleasedTicketFreesASlot) {
  hash_slots slots(1);
  auto first = slots.try_acquire();
  ASSERT_TRUE(first);
  EXPECT_FALSE(slots.try_acquire());
  first.reset();
  auto second = slots.try_acquire();
  EXPECT_TRUE(second) << "the slot came back";
  EXPECT_FALSE(slots.try_acquire());
}

TEST(HashSlots, MovedTicketReleasesExactlyOnce) {
  hash_slots slots(2);
  auto a = slots.try_acquire();
  ASSERT_TRUE(a);
  std::optional<hash_slots::ticket> moved;
  moved.emplace(std::move(*a));
  a.reset();  // the moved-from ticket must not release the slot
  auto b = slots.try_acquire();
  ASSERT_TRUE(b);
  EXPECT_FALSE(slots.try_acquire()) << "the moved ticket still holds its slot";
  moved.reset();
  auto c = slots.try_acquire();
  EXPECT_TRUE(c) << "released by the ticket that owns it";
  EXPECT_FALSE(slots.try_acquire()) << "and only once";
}

TEST(HashSlots, ConcurrentHoldersNeverExceedCapacity) {
  constexpr unsigned capacity = 2;
  hash_slots slots(capacity);
  std::atomic<unsigned> holding{0};
  std::atomic<unsigned> peak{0};
  std::atomic<unsigned> granted{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 6; ++t) {
    pool.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        if (auto ticket = slots.try_acquire()) {
          const auto now = ++holding;
          auto seen = peak.load();
          while (now > seen && !peak.compare_exchange_weak(seen, now)) {
          }
          ++granted;
          --holding;
        }
      }
    });
  }
  for (auto& th : pool) {
    th.join();
  }
  EXPECT_LE(peak.load(), capacity);
  EXPECT_GT(granted.load(), 0U);
  // Every ticket was released: the full capacity is available again.
  auto x = slots.try_acquire();
  auto y = slots.try_acquire();
  EXPECT_TRUE(x && y);
  EXPECT_FALSE(slots.try_acquire());
}

// ===========================================================================
// core::base64url_encode / base64url_decode / hex_encode

using docflow::core::base64url_decode;
using docflow::core::base64url_encode;

TEST(Base64url, Rfc4648TestVectorsWithoutPadding) {
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    SCOPED_TRACE(plain);
    EXPECT_EQ(base64url_encode(plain), encoded);
    EXPECT_EQ(base64url_decode(encoded), std::string(plain));
  }
}

TEST(Base64url, UsesTheUrlAlphabet) {
  // Standard base64 of fb ff bf is "+/+/"; base64url is "-_-_".
  EXPECT_EQ(base64url_encode("\xfb\xff\xbf"), "-_-_");
  EXPECT_EQ(base64url_decode("-_-_"), std::string("\xfb\xff\xbf"));
  EXPECT_EQ(base64url_encode(std::string_view("\0\0\0", 3)), "AAAA");
  EXPECT_EQ(base64url_encode("\xff"), "_w");
}

TEST(Base64url, RoundTripsEveryByteValueAtEveryLength) {
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all += static_cast<char>(b);
  }
  for (std::size_t len = 0; len <= all.size(); ++len) {
    const auto bytes = all.substr(all.size() - len);  // ends in 0xff, starts anywhere
    const auto encoded = base64url_encode(bytes);
    ASSERT_EQ(encoded.size(), (len * 4 + 2) / 3) << len;
    ASSERT_EQ(encoded.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos);
    ASSERT_EQ(base64url_decode(encoded), bytes) << len;
  }
}

TEST(Base64url, RejectsPadding) {
  EXPECT_EQ(base64url_decode("Zg=="), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm8="), std::nullopt);
  EXPECT_EQ(base64url_decode("===="), std::nullopt);
}

TEST(Base64url, RejectsTheStandardAlphabetAndOtherCharacters) {
  for (const std::string_view bad : {"+/+/", "ab+c", "ab/c", "ab c", "ab\nc", "Zm9!", "Zm.9", "Zm\xc3\xa9"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(base64url_decode(bad), std::nullopt);
  }
  EXPECT_EQ(base64url_decode(std::string_view("Zm\0v", 4)), std::nullopt);
}

TEST(Base64url, RejectsLengthsNoEncodingProduces) {
  // "A" and "Zm9vA" carry only zero bits past the last byte: the length alone refuses them.
  for (const std::string_view bad : {"Z", "A", "Zm9vY", "Zm9vA", "AAAAA", "Zm9vYmFyZ"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(base64url_decode(bad), std::nullopt);
  }
}

TEST(Base64url, RejectsNonZeroTrailingBits) {
  // "f" is "Zg"; "Zh" carries the same 8 bits plus a stray 1.
  EXPECT_EQ(base64url_decode("Zh"), std::nullopt);
  EXPECT_EQ(base64url_decode("Z_"), std::nullopt);
  // "fo" is "Zm8"; "Zm9" differs only in the unused bits.
  EXPECT_EQ(base64url_decode("Zm9"), std::nullopt);
  EXPECT_EQ(base64url_decode("Zm8"), std::string("fo"));
}

TEST(HexEncode, LowercaseTwoDigitsPerByte) {
  EXPECT_EQ(docflow::core::hex_encode(""), "");
  EXPECT_EQ(docflow::core::hex_encode(std::string_view("\x00\x0f\xa0\xff", 4)), "000fa0ff");
}

// ===========================================================================
// core::valid_username / username_key

using docflow::core::username_key;
using docflow::core::valid_username;

TEST(Username, ValidNames) {
  for (const std::string& ok : {std::string("abc"), std::string("A.b_c-9"), std::string("..."),
                                std::string("___"), std::string(64, 'z'), std::string("Alice")}) {
    EXPECT_TRUE(valid_username(ok)) << ok;
  }
}

TEST(Username, InvalidNames) {
  for (const std::string& bad : {std::string(""), std::string("ab"), std::string(65, 'z'), std::string("a b"),
                                 std::string("a/b"), std::string("a@b.c"), std::string("al\xc3\xa9x"),
                                 std::string("abc\n"), std::string("a+b"), std::string("abc", 4)}) {
    EXPECT_FALSE(valid_username(bad)) << bad;
  }
}

TEST(Username, KeyIgnoresAsciiCaseOnly) {
  EXPECT_EQ(username_key("Alice"), "alice");
  EXPECT_EQ(username_key("ALICE.B_1-Z"), "alice.b_1-z");
  EXPECT_EQ(username_key("alice"), "alice");
  EXPECT_EQ(username_key("Alice"), username_key("aLiCe"));
  EXPECT_NE(username_key("alice"), username_key("alice2"));
}

// ===========================================================================
// auth::new_refresh_token / refresh_token_hash

TEST(RefreshToken, HashIsSha256Hex) {
  EXPECT_EQ(docflow::auth::refresh_token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(docflow::auth::refresh_token_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(RefreshToken, NewTokensAre256BitsOfBase64url) {
  for (int i = 0; i < 20; ++i) {
    const auto token = docflow::auth::new_refresh_token();
    ASSERT_EQ(token.size(), 43U) << token;
    EXPECT_EQ(token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos)
        << token;
    const auto bytes = base64url_decode(token);
    ASSERT_TRUE(bytes) << token;
    EXPECT_EQ(bytes->size(), 32U);
  }
}

TEST(RefreshToken, NewTokensAreUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    seen.insert(docflow::auth::new_refresh_token());
  }
  EXPECT_EQ(seen.size(), 1000U);
}

// ===========================================================================
// auth::password_hasher

class PasswordHasherTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() { hasher_ = new docflow::auth::password_hasher(); }
  static void TearDownTestSuite() {
    delete hasher_;
    hasher_ = nullptr;
  }
  static const docflow::auth::password_hasher& hasher() { return *hasher_; }

private:
  static inline docflow::auth::password_hasher* hasher_ = nullptr;
};

TEST_F(PasswordHasherTest, HashIsArgon2idWithOwaspParameters) {
  const auto encoded = hasher().hash("correct horse battery staple");
  EXPECT_EQ(encoded.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0U) << encoded;
  EXPECT_EQ(encoded.find("correct horse"), std::string::npos);
}

TEST_F(PasswordHasherTest, HashesAreSaltedPerCall) {
  EXPECT_NE(hasher().hash("same password"), hasher().hash("same password"));
}

TEST_F(PasswordHasherTest, VerifyAcceptsOnlyTheRightPassword) {
  const std::optional<std::string> encoded = hasher().hash("s3cret-pass");
  EXPECT_TRUE(hasher().verify(encoded, "s3cret-pass"));
  EXPECT_FALSE(hasher().verify(encoded, "s3cret-pasS"));
  EXPECT_FALSE(hasher().verify(encoded, "s3cret-pass "));
  EXPECT_FALSE(hasher().verify(encoded, ""));
}

TEST_F(PasswordHasherTest, PasswordsWithNulAndNonAsciiBytesVerify) {
  const std::string password("p\xc3\xa4ss\0word", 10);
  const std::optional<std::string> encoded = hasher().hash(password);
  EXPECT_TRUE(hasher().verify(encoded, password));
  EXPECT_FALSE(hasher().verify(encoded, std::string_view("p\xc3\xa4ss", 5)));
}

TEST_F(PasswordHasherTest, UnknownUserNeverVerifies) {
  for (const char* guess : {"", "password", "0123456789abcdef0123456789abcdef"}) {
    EXPECT_FALSE(hasher().verify(std::nullopt, guess)) << guess;
  }
}

TEST_F(PasswordHasherTest, GarbageStoredHashDoesNotVerify) {
  EXPECT_FALSE(hasher().verify(std::string("not a hash"), "password"));
  EXPECT_FALSE(hasher().verify(std::string(""), "password"));
}

}  // namespace
