// The rules behind SPEC §2 that need no server: refresh-token rotation, login
// throttling (on a manual clock), the hashing bound, base64url, usernames,
// refresh-token material and argon2id password hashing.
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
#include "auth/throttle.hpp"
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
// auth::login_throttle

class manual_clock : public docflow::core::clock {
public:
  explicit manual_clock(time_point start) : now_(start) {}
  time_point now() const override { return now_; }
  void advance(std::chrono::milliseconds d) { now_ += d; }

private:
  time_point now_;
};

using docflow::auth::login_throttle;
using docflow::auth::registration_throttle;

class ThrottleTest : public ::testing::Test {
protected:
  static constexpr unsigned per_user = 5;
  static constexpr unsigned per_address = 20;
  static constexpr std::chrono::seconds window{15 * 60};

  manual_clock clock{t0};
  login_throttle throttle{per_user, per_address, window, clock};

  // `n` failures for `user`, each from its own address so that only the
  // username limit is in play, one second apart.
  void fail_user(const std::string& user, unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      (void)throttle.begin(user, user + "-addr-" + std::to_string(i) + "-" + std::to_string(counter_++));
      clock.advance(1s);
    }
  }

  std::optional<std::chrono::seconds> check(const std::string& user,
                                            const std::string& address = "192.0.2.1") {
    return throttle.retry_after(user, address);
  }

private:
  unsigned counter_ = 0;
};

TEST_F(ThrottleTest, NothingRecordedMeansAllowed) {
  EXPECT_EQ(check("alice"), std::nullopt);
  EXPECT_EQ(check(""), std::nullopt);
}

TEST_F(ThrottleTest, PerUsernameLimitThenRetryAfterIsTheRemainingWindow) {
  fail_user("alice", per_user - 1);  // failures at t0 .. t0+3s
  EXPECT_EQ(check("alice"), std::nullopt) << "4 failures are under the limit of 5";
  fail_user("alice", 1);  // the 5th, at t0+4s; now t0+5s
  const auto wait = check("alice");
  ASSERT_TRUE(wait.has_value());
  // The oldest failure (t0) leaves the window at t0+900s.
  EXPECT_EQ(*wait, window - 5s);
  // From any address, and only for that username.
  EXPECT_TRUE(check("alice", "198.51.100.7").has_value());
  EXPECT_EQ(check("bob"), std::nullopt);
  clock.advance(100s);
  EXPECT_EQ(check("alice"), window - 105s);
}

TEST_F(ThrottleTest, RetryAfterIsRoundedUpAndAtLeastOneSecond) {
  fail_user("alice", per_user);        // oldest at t0
  clock.advance(window - 5s - 300ms);  // now = t0 + 900s - 300ms
  EXPECT_EQ(check("alice"), 1s);
  for (unsigned i = 0; i < per_user; ++i) {
    (void)throttle.begin("carol", "carol-" + std::to_string(i));  // all five at one instant
  }
  clock.advance(10s + 500ms);
  const auto wait = check("carol");
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, 890s) << "889.5 s remaining rounds up";
}

TEST_F(ThrottleTest, WindowSlidesWhenTheOldestFailureLeaves) {
  fail_user("alice", per_user);  // failures at t0 .. t0+4s, now t0+5s
  ASSERT_TRUE(check("alice"));
  clock.advance(window - 5s - 1ms);  // now t0+900s-1ms: the oldest is still in
  EXPECT_TRUE(check("alice"));
  clock.advance(1ms);  // t0+900s: the failure at t0 has left the window
  EXPECT_EQ(check("alice"), std::nullopt);
  // One more failure fills the window again, until the one at t0+1s leaves.
  (void)throttle.begin("alice", "203.0.113.9");
  EXPECT_EQ(check("alice"), 1s);
  clock.advance(1s);
  EXPECT_EQ(check("alice"), std::nullopt);
  // Long after, everything has left.
  clock.advance(window);
  fail_user("alice", per_user - 1);
  EXPECT_EQ(check("alice"), std::nullopt);
}

TEST_F(ThrottleTest, PerAddressLimitIsIndependentOfUsernames) {
  const std::string address = "192.0.2.50";
  for (unsigned i = 0; i < per_address - 1; ++i) {
    (void)throttle.begin("user-" + std::to_string(i), address);
  }
  EXPECT_EQ(check("someone-new", address), std::nullopt) << "19 failures from the address";
  (void)throttle.begin("user-last", address);
  const auto wait = check("someone-new", address);
  ASSERT_TRUE(wait.has_value()) << "the 20 failures came from one address, whatever the usernames";
  EXPECT_EQ(*wait, window);
  // The same usernames from another address are fine: each has one failure.
  EXPECT_EQ(check("user-0", "192.0.2.51"), std::nullopt);
  EXPECT_EQ(check("someone-new", "192.0.2.51"), std::nullopt);
}

TEST_F(ThrottleTest, WhenBothLimitsApplyTheLongerWaitWins) {
  const std::string crowded = "192.0.2.60";
  const std::string later = "192.0.2.61";
  for (unsigned i = 0; i < per_address; ++i) {
    (void)throttle.begin("filler-" + std::to_string(i), crowded);  // full, oldest at t0
  }
  clock.advance(100s);
  fail_user("alice", per_user);  // alice full, oldest at t0+100s; now t0+105s
  for (unsigned i = 0; i < per_address; ++i) {
    (void)throttle.begin("other-" + std::to_string(i), later);  // full, oldest at t0+105s
  }
  EXPECT_EQ(check("alice", crowded), window - 5s) << "alice's window ends after the address's";
  EXPECT_EQ(check("alice", later), window) << "the address's window ends after alice's";
}

TEST_F(ThrottleTest, UnknownUsernamesAreCountedTheSame) {
  // The throttle never sees whether a user exists: any key counts.
  fail_user("no-such-user-anywhere", per_user);
  EXPECT_TRUE(check("no-such-user-anywhere"));
}

TEST_F(ThrottleTest, SucceededResetsTheUsernameButNotTheAddress) {
  const std::string address = "192.0.2.70";
  for (unsigned i = 0; i < per_user - 1; ++i) {
    (void)throttle.begin("alice", address);
  }
  ASSERT_EQ(throttle.begin("alice", address), std::nullopt);  // the attempt that succeeds
  throttle.succeeded("alice", address);
  for (unsigned i = 0; i < per_user - 1; ++i) {
    (void)throttle.begin("alice", "other-" + std::to_string(i));
  }
  EXPECT_EQ(check("alice", "192.0.2.99"), std::nullopt) << "only 4 failures since the success";
  (void)throttle.begin("alice", "one-more");
  EXPECT_TRUE(check("alice", "192.0.2.99"));

  // The address keeps its count: 4 failures above, 16 more fill it.
  for (unsigned i = 0; i < per_address - (per_user - 1); ++i) {
    (void)throttle.begin("x" + std::to_string(i), address);
  }
  ASSERT_EQ(throttle.begin("someone", "192.0.2.71"), std::nullopt);
  throttle.succeeded("someone", "192.0.2.71");
  EXPECT_TRUE(check("someone", address));
}

TEST_F(ThrottleTest, SucceededForAnUnknownKeyIsHarmless) {
  throttle.succeeded("never-seen", "nowhere");
  fail_user("alice", per_user);
  throttle.succeeded("never-seen", "nowhere");
  EXPECT_TRUE(check("alice"));
}

TEST_F(ThrottleTest, ManyDistinctKeysDoNotBreakIt) {
  // Enough distinct keys to cross the internal pruning threshold several
  // times, spread over more than one window.
  for (int i = 0; i < 3000; ++i) {
    (void)throttle.begin("old-" + std::to_string(i),
                         "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250));
  }
  clock.advance(window + 1s);
  // The victim's first failure will have left the window when pruning runs,
  // the next four will not.
  (void)throttle.begin("victim", "v-first");
  clock.advance(850s);
  for (int i = 0; i < 4; ++i) {
    (void)throttle.begin("victim", "v-" + std::to_string(i));
  }
  clock.advance(60s);
  for (int i = 0; i < 3000; ++i) {
    (void)throttle.begin("new-" + std::to_string(i),
                         "10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250));
  }
  EXPECT_EQ(check("victim"), std::nullopt) << "four failures in the window";
  (void)throttle.begin("victim", "v-last");
  EXPECT_TRUE(check("victim")) << "recent failures survive pruning";
  EXPECT_EQ(check("old-0", "10.0.0.0"), std::nullopt) << "old ones have left the window";
  EXPECT_EQ(check("new-0", "10.9.9.9"), std::nullopt) << "one failure each";
}

TEST_F(ThrottleTest, AnAttemptCountsWhenItBeginsSoConcurrentGuessesSeeEachOther) {
  // 16 guesses arrive before any password check has finished: only the
  // limit's worth may go ahead.
  int allowed = 0;
  for (int i = 0; i < 16; ++i) {
    allowed += throttle.begin("alice", "198.51.100.1") ? 0 : 1;
  }
  EXPECT_EQ(allowed, static_cast<int>(per_user));
  EXPECT_TRUE(check("alice"));
}

TEST_F(ThrottleTest, AnAbandonedAttemptIsTakenBack) {
  for (unsigned i = 0; i < per_user; ++i) {
    ASSERT_EQ(throttle.begin("alice", "198.51.100.2"), std::nullopt);
  }
  ASSERT_TRUE(check("alice"));
  throttle.abandoned("alice", "198.51.100.2");  // the server was too busy to check it
  EXPECT_EQ(check("alice"), std::nullopt);
  EXPECT_EQ(throttle.begin("alice", "198.51.100.2"), std::nullopt);
  EXPECT_TRUE(throttle.begin("alice", "198.51.100.2"));
}

TEST_F(ThrottleTest, RegistrationsAreLimitedPerAddress) {
  registration_throttle signups(3, 1h, clock);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(signups.begin("192.0.2.80"), std::nullopt) << i;
    clock.advance(1s);
  }
  EXPECT_EQ(signups.begin("192.0.2.80"), 1h - 3s) << "until the first leaves the hour";
  EXPECT_EQ(signups.begin("192.0.2.81"), std::nullopt) << "another address has its own count";
  signups.abandoned("192.0.2.80");
  EXPECT_EQ(signups.begin("192.0.2.80"), std::nullopt) << "a registration that never ran is taken back";
  EXPECT_TRUE(signups.begin("192.0.2.80"));
  clock.advance(1h);
  EXPECT_EQ(signups.begin("192.0.2.80"), std::nullopt);
}

TEST_F(ThrottleTest, ConcurrentFailuresAreAllCounted) {
  constexpr int threads = 4;
  constexpr int per_thread = 50;
  login_throttle big(threads * per_thread, 1000000, window, clock);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&big, t] {
      for (int i = 0; i < per_thread; ++i) {
        (void)big.begin("shared", "addr-" + std::to_string(t) + "-" + std::to_string(i));
        (void)big.retry_after("shared", "elsewhere");
      }
    });
  }
  for (auto& th : pool) {
    th.join();
  }
  EXPECT_TRUE(big.retry_after("shared", "elsewhere")) << "every one of the 200 failures was recorded";
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
