#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"

using namespace docflow;
using namespace std::chrono_literals;

namespace {

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The 48-bit millisecond timestamp at the front of a UUIDv7.
std::int64_t uuid_v7_ms(const std::string& id) {
  return static_cast<std::int64_t>(std::stoull(id.substr(0, 8) + id.substr(9, 4), nullptr, 16));
}

core::time_point at(std::chrono::system_clock::duration since_epoch) { return core::time_point(since_epoch); }

}  // namespace

// -----------------------------------------------------------------------------------------------------------
// new_uuid_v7

TEST(uuid_v7, has_canonical_lowercase_form_version_and_variant) {
  for (int i = 0; i < 200; ++i) {
    const auto id = core::new_uuid_v7();
    ASSERT_EQ(id.size(), 36U) << id;
    for (std::size_t p = 0; p < id.size(); ++p) {
      if (p == 8 || p == 13 || p == 18 || p == 23) {
        ASSERT_EQ(id[p], '-') << id;
      } else {
        ASSERT_TRUE(is_lower_hex(id[p])) << id;
      }
    }
    ASSERT_EQ(id[14], '7') << id;
    ASSERT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;
    ASSERT_TRUE(core::is_uuid(id)) << id;
  }
}

TEST(uuid_v7, leads_with_the_current_unix_milliseconds) {
  const auto before = unix_ms_now();
  const auto id = core::new_uuid_v7();
  const auto after = unix_ms_now();
  EXPECT_GE(uuid_v7_ms(id), before) << id;
  EXPECT_LE(uuid_v7_ms(id), after) << id;
}

TEST(uuid_v7, ids_made_a_millisecond_apart_sort_in_creation_order) {
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    ids.push_back(core::new_uuid_v7());
    std::this_thread::sleep_for(1100us);
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
}

TEST(uuid_v7, thousand_ids_are_unique) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    ids.insert(core::new_uuid_v7());
  }
  EXPECT_EQ(ids.size(), 1000U);
}

TEST(uuid_v7, random_part_varies_within_one_millisecond) {
  // 74 random bits: two ids sharing a timestamp must still differ after it.
  std::set<std::string> tails;
  for (int i = 0; i < 100; ++i) {
    tails.insert(core::new_uuid_v7().substr(15));
  }
  EXPECT_EQ(tails.size(), 100U);
}

// -----------------------------------------------------------------------------------------------------------
// is_uuid

namespace {
class is_uuid_accepts : public testing::TestWithParam<std::string> {};
class is_uuid_rejects : public testing::TestWithParam<std::string> {};
}  // namespace

TEST_P(is_uuid_accepts, canonical_form) { EXPECT_TRUE(core::is_uuid(GetParam())); }

INSTANTIATE_TEST_SUITE_P(valid, is_uuid_accepts,
                         testing::Values("0192f1c2-7a3b-7c4d-8e5f-0123456789ab",
                                         "0192F1C2-7A3B-7C4D-8E5F-0123456789AB",
                                         "00000000-0000-0000-0000-000000000000",
                                         "ffffffff-ffff-ffff-ffff-ffffffffffff",
                                         "550e8400-e29b-41d4-a716-446655440000"));

TEST_P(is_uuid_rejects, anything_else) { EXPECT_FALSE(core::is_uuid(GetParam())); }

INSTANTIATE_TEST_SUITE_P(
    invalid, is_uuid_rejects,
    testing::Values("", "0192f1c2-7a3b-7c4d-8e5f-0123456789a", "0192f1c2-7a3b-7c4d-8e5f-0123456789abc",
                    "0192f1c27a3b7c4d8e5f0123456789ab", "0192f1c2-7a3b-7c4d-8e5f0-123456789ab",
                    "0192f1c2a7a3b-7c4d-8e5f-0123456789ab", "0192f1c2-7a3b-7c4d-8e5f-0123456789ag",
                    "g192f1c2-7a3b-7c4d-8e5f-0123456789ab", "0192f1c2_7a3b_7c4d_8e5f_0123456789ab",
                    "{0192f1c2-7a3b-7c4d-8e5f-0123456789}", " 192f1c2-7a3b-7c4d-8e5f-0123456789ab",
                    "------------------------------------",
                    std::string("0192f1c2-7a3b-7c4d-8e5f-0123456789a\0", 36)));

// -----------------------------------------------------------------------------------------------------------
// random_hex / random_bytes

TEST(random_hex, has_two_lowercase_hex_chars_per_byte) {
  for (const std::size_t n : {std::size_t{1}, std::size_t{16}, std::size_t{32}, std::size_t{100}}) {
    const auto s = core::random_hex(n);
    EXPECT_EQ(s.size(), 2 * n);
    EXPECT_TRUE(std::all_of(s.begin(), s.end(), is_lower_hex)) << s;
  }
}

TEST(random_hex, zero_bytes_is_empty) { EXPECT_EQ(core::random_hex(0), ""); }

TEST(random_hex, successive_values_differ_and_use_the_whole_alphabet) {
  EXPECT_NE(core::random_hex(16), core::random_hex(16));
  const auto s = core::random_hex(512);
  const std::set<char> seen(s.begin(), s.end());
  EXPECT_EQ(seen.size(), 16U) << s;
}

TEST(random_bytes, fills_the_buffer) {
  std::array<unsigned char, 64> a{};
  std::array<unsigned char, 64> b{};
  core::random_bytes(a.data(), a.size());
  core::random_bytes(b.data(), b.size());
  EXPECT_NE(a, b);
  EXPECT_NE(a, (std::array<unsigned char, 64>{}));
}

// -----------------------------------------------------------------------------------------------------------
// clock

TEST(system_clock, follows_the_wall_clock) {
  const auto before = std::chrono::system_clock::now();
  const auto now = core::system_clock().now();
  const auto after = std::chrono::system_clock::now();
  EXPECT_LE(before, now);
  EXPECT_LE(now, after);
  EXPECT_EQ(&core::system_clock(), &core::system_clock());
}

namespace {

struct rfc3339_case {
  std::chrono::system_clock::duration since_epoch;
  std::string expected;
};

void PrintTo(const rfc3339_case& c, std::ostream* os) { *os << c.expected; }

class format_rfc3339 : public testing::TestWithParam<rfc3339_case> {};

}  // namespace

TEST_P(format_rfc3339, formats_utc_with_milliseconds) {
  EXPECT_EQ(core::format_rfc3339(at(GetParam().since_epoch)), GetParam().expected);
}

// What format_rfc3339 writes reads back as the same instant, to the millisecond.
TEST_P(format_rfc3339, parses_back_to_the_millisecond) {
  EXPECT_EQ(core::parse_rfc3339_utc(GetParam().expected),
            at(std::chrono::floor<std::chrono::milliseconds>(GetParam().since_epoch)));
}

INSTANTIATE_TEST_SUITE_P(fixed_points, format_rfc3339,
                         testing::Values(rfc3339_case{0ms, "1970-01-01T00:00:00.000Z"},
                                         rfc3339_case{1700000000123ms, "2023-11-14T22:13:20.123Z"},
                                         rfc3339_case{1700000000000ms, "2023-11-14T22:13:20.000Z"},
                                         rfc3339_case{1700000000007ms, "2023-11-14T22:13:20.007Z"},
                                         rfc3339_case{1700000000050ms, "2023-11-14T22:13:20.050Z"},
                                         rfc3339_case{1709208000000ms, "2024-02-29T12:00:00.000Z"},
                                         rfc3339_case{1767225599999ms, "2025-12-31T23:59:59.999Z"},
                                         rfc3339_case{-1ms, "1969-12-31T23:59:59.999Z"},
                                         rfc3339_case{-86400000ms, "1969-12-31T00:00:00.000Z"},
                                         rfc3339_case{-14182940000ms, "1969-07-20T20:17:40.000Z"}));

// RFC 9110's own example, a leap day, and a time just before a second ends.
TEST(format_http_date, writes_imf_fixdate) {
  EXPECT_EQ(core::format_http_date(at(784111777s)), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(core::format_http_date(at(1709208000000ms)), "Thu, 29 Feb 2024 12:00:00 GMT");
  EXPECT_EQ(core::format_http_date(at(1767225599999ms)), "Wed, 31 Dec 2025 23:59:59 GMT");
}

// Sub-millisecond parts are truncated towards the past, never rounded to the next millisecond.
INSTANTIATE_TEST_SUITE_P(sub_millisecond, format_rfc3339,
                         testing::Values(rfc3339_case{1700000000123999us, "2023-11-14T22:13:20.123Z"},
                                         rfc3339_case{1700000000999999us, "2023-11-14T22:13:20.999Z"},
                                         rfc3339_case{-500us, "1969-12-31T23:59:59.999Z"},
                                         rfc3339_case{-1500us, "1969-12-31T23:59:59.998Z"}));

// S3 writes LastModified and Initiated with milliseconds; other services send
// none or more digits.
TEST(parse_rfc3339_utc, reads_the_forms_s3_services_send) {
  EXPECT_EQ(core::parse_rfc3339_utc("2009-10-12T17:50:30.000Z"), at(1255369830000ms));
  EXPECT_EQ(core::parse_rfc3339_utc("2009-10-12T17:50:30Z"), at(1255369830000ms));
  EXPECT_EQ(core::parse_rfc3339_utc("2009-10-12T17:50:30.5Z"), at(1255369830500ms));
  EXPECT_EQ(core::parse_rfc3339_utc("2009-10-12T17:50:30.123456789Z"), at(1255369830123456us));
  EXPECT_EQ(core::parse_rfc3339_utc("2024-02-29T00:00:00Z"), at(1709164800000ms));
}

TEST(parse_rfc3339_utc, refuses_anything_else) {
  for (const char* text :
       {"", "2009-10-12", "2009-10-12T17:50:30", "2009-10-12T17:50:30+00:00", "2009-10-12T17:50:30.000z",
        "2009-10-12 17:50:30Z", "2009-10-12T17:50:30.Z", "2009-10-12T17:50:30.1xZ", "2023-02-29T00:00:00Z",
        "2009-13-12T17:50:30Z", "2009-10-12T24:00:00Z", "2009-10-12T17:60:30Z", "2009-10-12T17:50:60Z",
        "+009-10-12T17:50:30Z", "2009-1a-12T17:50:30Z"}) {
    EXPECT_EQ(core::parse_rfc3339_utc(text), std::nullopt) << text;
  }
}

// RFC 4231 test cases 1 and 2, interleaved: each thread keeps a keyed context
// per key, so alternating keys must not mix them up.
TEST(hmac_sha256, matches_rfc_4231_with_keys_alternating) {
  const std::string key1(20, '\x0b');
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(docflow::core::hex_encode(docflow::core::hmac_sha256(key1, "Hi There")),
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    EXPECT_EQ(docflow::core::hex_encode(docflow::core::hmac_sha256("Jefe", "what do ya want for nothing?")),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  }
}
