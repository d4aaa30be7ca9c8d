#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/cursor.hpp"
#include "api/range.hpp"
#include "core/clock.hpp"
#include "core/crypto.hpp"
#include "core/document.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"
#include "pipeline/docx_probe.hpp"

using namespace docflow;
using core::file_kind;
using core::status;

namespace {

constexpr std::array all_statuses = {status::uploaded, status::processing, status::completed, status::failed};

// ---------------------------------------------------------------- lifecycle

TEST(document_lifecycle, only_the_spec_transitions_are_allowed) {
  const std::vector<std::pair<status, status>> allowed = {
      {status::uploaded, status::processing},  {status::processing, status::completed},
      {status::processing, status::failed},    {status::failed, status::processing},
      {status::completed, status::processing},  // a forced re-run
  };
  int checked = 0;
  for (const auto from : all_statuses) {
    for (const auto to : all_statuses) {
      const bool expected = std::find(allowed.begin(), allowed.end(), std::pair{from, to}) != allowed.end();
      EXPECT_EQ(core::can_transition(from, to), expected)
          << core::to_string(from) << " -> " << core::to_string(to);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 16);
}

TEST(document_lifecycle, anything_but_processing_can_be_deleted) {
  EXPECT_TRUE(core::can_delete(status::uploaded));
  EXPECT_FALSE(core::can_delete(status::processing));
  EXPECT_TRUE(core::can_delete(status::completed));
  EXPECT_TRUE(core::can_delete(status::failed));
}

TEST(document_lifecycle, status_names_round_trip) {
  const std::array<std::string_view, 4> names = {"UPLOADED", "PROCESSING", "COMPLETED", "FAILED"};
  for (std::size_t i = 0; i < all_statuses.size(); ++i) {
    EXPECT_EQ(core::to_string(all_statuses[i]), names[i]);
    EXPECT_EQ(core::parse_status(names[i]), all_statuses[i]);
    EXPECT_EQ(core::parse_status(core::to_string(all_statuses[i])), all_statuses[i]);
  }
  for (const std::string_view bad : {"", "FOO", "uploaded", "Uploaded", "UPLOADED ", " FAILED", "COMPLETE"}) {
    EXPECT_EQ(core::parse_status(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(document_kinds, content_types) {
  EXPECT_STREQ(core::content_type(file_kind::pdf), "application/pdf");
  EXPECT_STREQ(core::content_type(file_kind::docx),
               "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
}

// ---------------------------------------------------------------- filenames

// True when `s` is valid UTF-8 without control characters (C0, DEL, C1).
bool clean_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80                 ? 1
                    : c >= 0xC2 && c <= 0xDF ? 2
                    : c >= 0xE0 && c <= 0xEF ? 3
                    : c >= 0xF0 && c <= 0xF4 ? 4
                                             : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    if (n == 1 && (c < 0x20 || c == 0x7F)) return false;
    if (n == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) return false;
    i += n;
  }
  return true;
}

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

TEST(sanitize_filename, keeps_only_the_last_path_component) {
  EXPECT_EQ(core::sanitize_filename("../../etc/passwd.pdf"), "passwd.pdf");
  EXPECT_EQ(core::sanitize_filename("/abs/path/report.pdf"), "report.pdf");
  EXPECT_EQ(core::sanitize_filename("C:\\Users\\me\\report.pdf"), "report.pdf");
  EXPECT_EQ(core::sanitize_filename("mixed/dirs\\and/more\\final.docx"), "final.docx");
  EXPECT_EQ(core::sanitize_filename("dir/"), "");
  EXPECT_EQ(core::sanitize_filename("..\\..\\"), "");
  EXPECT_EQ(core::sanitize_filename("plain.pdf"), "plain.pdf");
}

TEST(sanitize_filename, drops_control_characters) {
  EXPECT_EQ(core::sanitize_filename("a\tb\nc\r\x01.pdf"), "abc.pdf");
  EXPECT_EQ(core::sanitize_filename(std::string_view("a\0b.pdf", 7)), "ab.pdf");
  EXPECT_EQ(core::sanitize_filename("a\x7f"
                                    "b.pdf"),
            "ab.pdf");  // DEL
  EXPECT_EQ(core::sanitize_filename("a\xC2\x80\xC2\x85\xC2\x9F"
                                    "b.pdf"),
            "ab.pdf");  // C1: U+0080, U+0085, U+009F
  EXPECT_EQ(core::sanitize_filename("a\xC2\xA0"
                                    "b.pdf"),
            "a\xC2\xA0"
            "b.pdf");  // U+00A0 is not a control
}

TEST(sanitize_filename, drops_format_characters) {
  // U+202E RIGHT-TO-LEFT OVERRIDE would show "invoice\u202Efdp.exe" as "invoiceexe.pdf".
  EXPECT_EQ(core::sanitize_filename("invoice\xE2\x80\xAE"
                                    "fdp.exe"),
            "invoicefdp.exe");
  EXPECT_EQ(core::sanitize_filename("a\xE2\x80\x8B"
                                    "b\xEF\xBB\xBF"
                                    "c\xE2\x81\xA6"
                                    "d\xC2\xAD"
                                    "e.pdf"),
            "abcde.pdf");  // U+200B zero width space, U+FEFF, U+2066, U+00AD soft hyphen
  EXPECT_EQ(core::sanitize_filename("x\xF3\xA0\x80\x81"
                                    "y.pdf"),
            "xy.pdf");                                            // U+E0001 language tag
  EXPECT_EQ(core::sanitize_filename("\xE2\x80\x8F.pdf"), "pdf");  // only a mark before the dot
  // Neighbours that are not Cf stay: U+2010 hyphen, U+00AC not sign.
  EXPECT_EQ(core::sanitize_filename("a\xE2\x80\x90"
                                    "b\xC2\xAC.pdf"),
            "a\xE2\x80\x90"
            "b\xC2\xAC.pdf");
}

TEST(sanitize_filename, drops_invalid_utf8) {
  EXPECT_EQ(core::sanitize_filename("a\xFF\xFE"
                                    "b.pdf"),
            "ab.pdf");  // never valid bytes
  EXPECT_EQ(core::sanitize_filename("a\x80\xBF"
                                    "b.pdf"),
            "ab.pdf");  // lone continuation bytes
  EXPECT_EQ(core::sanitize_filename("a\xC0\xAF"
                                    "b.pdf"),
            "ab.pdf");  // overlong '/' (2 bytes)
  EXPECT_EQ(core::sanitize_filename("a\xC1\xBF"
                                    "b.pdf"),
            "ab.pdf");  // overlong (2 bytes)
  EXPECT_EQ(core::sanitize_filename("a\xE0\x80\xAF"
                                    "b.pdf"),
            "ab.pdf");  // overlong '/' (3 bytes)
  EXPECT_EQ(core::sanitize_filename("a\xF0\x80\x80\xAF"
                                    "b.pdf"),
            "ab.pdf");  // overlong '/' (4 bytes)
  EXPECT_EQ(core::sanitize_filename("a\xED\xA0\x80"
                                    "b.pdf"),
            "ab.pdf");  // high surrogate U+D800
  EXPECT_EQ(core::sanitize_filename("a\xED\xBF\xBF"
                                    "b.pdf"),
            "ab.pdf");  // low surrogate U+DFFF
  EXPECT_EQ(core::sanitize_filename("a\xF4\x90\x80\x80"
                                    "b.pdf"),
            "ab.pdf");  // above U+10FFFF
  EXPECT_EQ(core::sanitize_filename("a\xF5\x80\x80\x80"
                                    "b.pdf"),
            "ab.pdf");                                             // F5 never starts a sequence
  EXPECT_EQ(core::sanitize_filename("ab.pdf\xE2\x82"), "ab.pdf");  // truncated at the end
  EXPECT_EQ(core::sanitize_filename("a\xE2\x82"
                                    "b.pdf"),
            "ab.pdf");  // truncated in the middle
}

TEST(sanitize_filename, keeps_valid_utf8) {
  for (const std::string_view name :
       {"r\xC3\xA9sum\xC3\xA9.pdf", "\xE6\x8A\xA5\xE5\x91\x8A.docx", "\xF0\x9F\x93\x84 notes.pdf",
        "\xED\x9F\xBF.pdf", "\xEE\x80\x80.pdf", "\xF4\x8F\xBF\xBF.pdf"}) {  // U+D7FF, U+E000, U+10FFFF
    EXPECT_EQ(core::sanitize_filename(name), name);
  }
}

TEST(sanitize_filename, cuts_long_names_on_a_character_boundary_and_keeps_the_extension) {
  struct sample {
    std::string unit;
    std::size_t stem_bytes;  // the most whole characters that fit in 255 bytes beside ".pdf"
  };
  for (const auto& s : {sample{"a", 251}, sample{"\xC3\xA9", 250}, sample{"\xE2\x82\xAC", 249},
                        sample{"\xF0\x9F\x93\x84", 248}}) {
    const auto name = repeat(s.unit, 300 / s.unit.size()) + ".pdf";
    ASSERT_GE(name.size(), 300u);
    const auto out = core::sanitize_filename(name);
    EXPECT_EQ(out.size(), s.stem_bytes + 4) << s.unit;
    EXPECT_LE(out.size(), 255u);
    EXPECT_TRUE(clean_utf8(out));
    EXPECT_EQ(out, repeat(s.unit, s.stem_bytes / s.unit.size()) + ".pdf");
    EXPECT_EQ(core::kind_from_extension(out), core::file_kind::pdf);
  }
  // 1,000 characters ending in .docx: still a .docx.
  EXPECT_EQ(core::sanitize_filename(repeat("n", 995) + ".docx"), repeat("n", 250) + ".docx");
  // No extension to keep (none, or a "dot" too far from the end): a plain cut.
  const auto odd = core::sanitize_filename("x" + repeat("\xC3\xA9", 150));
  EXPECT_EQ(odd, "x" + repeat("\xC3\xA9", 127));
  EXPECT_EQ(core::sanitize_filename("a." + repeat("b", 300)), "a." + repeat("b", 253));
  // Exactly 255 bytes is kept whole.
  const auto exact = repeat("b", 251) + ".pdf";
  EXPECT_EQ(core::sanitize_filename(exact), exact);
}

TEST(sanitize_filename, strips_leading_dots_and_spaces) {
  EXPECT_EQ(core::sanitize_filename("..hidden.pdf"), "hidden.pdf");
  EXPECT_EQ(core::sanitize_filename(".bashrc"), "bashrc");
  EXPECT_EQ(core::sanitize_filename(" . .x.pdf"), "x.pdf");
  EXPECT_EQ(core::sanitize_filename("   a.pdf   "), "a.pdf");
  EXPECT_EQ(core::sanitize_filename("a b.pdf"), "a b.pdf");
  EXPECT_EQ(core::sanitize_filename("..."), "");
  EXPECT_EQ(core::sanitize_filename(".."), "");
  EXPECT_EQ(core::sanitize_filename(""), "");
  EXPECT_EQ(core::sanitize_filename("\x01\x02\x03"), "");
  // What remains after a path component's own leading dots.
  EXPECT_EQ(core::sanitize_filename("a/../..pdf"), "pdf");
}

TEST(sanitize_filename, output_is_always_clean) {
  // Any input at all: valid UTF-8, no controls, no separators, at most 255 bytes.
  std::string all_bytes;
  for (int c = 0; c < 256; ++c) all_bytes += static_cast<char>(c);
  for (const auto& name : {all_bytes, repeat(all_bytes, 3), repeat("\xE2\x82\xAC/\\\x7f", 200)}) {
    const auto out = core::sanitize_filename(name);
    EXPECT_LE(out.size(), 255u);
    EXPECT_TRUE(clean_utf8(out));
    EXPECT_EQ(out.find_first_of("/\\"), std::string::npos);
    if (!out.empty()) {
      EXPECT_NE(out.front(), '.');
      EXPECT_NE(out.front(), ' ');
      EXPECT_NE(out.back(), ' ');
    }
  }
}

// ---------------------------------------------------------------- kinds

TEST(kind_from_extension, case_insensitive_pdf_and_docx_only) {
  EXPECT_EQ(core::kind_from_extension("report.pdf"), file_kind::pdf);
  EXPECT_EQ(core::kind_from_extension("REPORT.PDF"), file_kind::pdf);
  EXPECT_EQ(core::kind_from_extension("a.Pdf"), file_kind::pdf);
  EXPECT_EQ(core::kind_from_extension("letter.docx"), file_kind::docx);
  EXPECT_EQ(core::kind_from_extension("letter.Docx"), file_kind::docx);
  EXPECT_EQ(core::kind_from_extension("LETTER.DOCX"), file_kind::docx);
  EXPECT_EQ(core::kind_from_extension("archive.tar.pdf"), file_kind::pdf);
}

TEST(kind_from_extension, images_by_their_usual_extensions) {
  EXPECT_EQ(core::kind_from_extension("scan.png"), file_kind::png);
  EXPECT_EQ(core::kind_from_extension("SCAN.PNG"), file_kind::png);
  EXPECT_EQ(core::kind_from_extension("photo.jpg"), file_kind::jpeg);
  EXPECT_EQ(core::kind_from_extension("photo.JPEG"), file_kind::jpeg);
  EXPECT_EQ(core::kind_from_extension("fax.tif"), file_kind::tiff);
  EXPECT_EQ(core::kind_from_extension("fax.Tiff"), file_kind::tiff);
}

TEST(kind_from_extension, other_names_claim_nothing) {
  for (const std::string_view name :
       {"pdf", ".pdf", "docx", ".docx", "", "a.doc", "a.pdfx", "a.pdf.exe", "a.txt", "a.zip", "a_pdf",
        "a.pdf ", "apdf", ".png", "a.gif", "a.jpe", "a.bmp", "a.webp", "a.tiff.txt"}) {
    EXPECT_EQ(core::kind_from_extension(name), std::nullopt) << '"' << name << '"';
  }
}

TEST(sniff, judges_images_by_their_signatures) {
  EXPECT_EQ(core::sniff(std::string_view("\x89PNG\r\n\x1a\n", 8)), file_kind::png);
  EXPECT_EQ(core::sniff(std::string_view("\xff\xd8\xff\xe0\x00\x10JF", 8)), file_kind::jpeg);
  EXPECT_EQ(core::sniff(std::string_view("II*\0\x08\0\0\0", 8)), file_kind::tiff);
  EXPECT_EQ(core::sniff(std::string_view("MM\0*\0\0\0\x08", 8)), file_kind::tiff);
  for (const std::string_view other :
       {std::string_view("\x89PNG\r\n\x1a", 7), std::string_view("\xff\xd8", 2), std::string_view("II*", 3),
        std::string_view("GIF89a"), std::string_view("BM\x36\0\0\0"), std::string_view("RIFF\0\0\0\0")}) {
    EXPECT_EQ(core::sniff(other), std::nullopt) << testing::PrintToString(std::string(other));
  }
  EXPECT_LE(core::sniff_bytes, 8u);
}

TEST(kinds, names_and_content_types) {
  for (const auto k : {file_kind::pdf, file_kind::docx, file_kind::png, file_kind::jpeg, file_kind::tiff}) {
    EXPECT_EQ(core::parse_kind(core::kind_name(k)), k) << core::kind_name(k);
  }
  EXPECT_STREQ(core::content_type(file_kind::png), "image/png");
  EXPECT_STREQ(core::content_type(file_kind::jpeg), "image/jpeg");
  EXPECT_STREQ(core::content_type(file_kind::tiff), "image/tiff");
  EXPECT_TRUE(core::is_image(file_kind::tiff));
  EXPECT_FALSE(core::is_image(file_kind::pdf));
  EXPECT_EQ(core::parse_kind("PNG"), std::nullopt);
  EXPECT_EQ(core::parse_kind("jpg"), std::nullopt);
}

TEST(sniff, judges_by_the_first_bytes) {
  EXPECT_EQ(core::sniff("%PDF-1.7\n"), file_kind::pdf);
  EXPECT_EQ(core::sniff("%PDF-"), file_kind::pdf);
  EXPECT_EQ(core::sniff(std::string_view("PK\x03\x04\x14\x00", 6)), file_kind::docx);
  EXPECT_EQ(core::sniff(std::string_view("PK\x03\x04", 4)), file_kind::docx);
  for (const std::string_view other :
       {std::string_view(""), std::string_view("%PDF"), std::string_view(" %PDF-1.7"),
        std::string_view("%pdf-1.7"),
        std::string_view("\x7f"
                         "ELF\x02\x01",
                         6),
        std::string_view("PK\x05\x06", 4), std::string_view("PK\x03", 3), std::string_view("hello world")}) {
    EXPECT_EQ(core::sniff(other), std::nullopt) << testing::PrintToString(std::string(other));
  }
}

// ---------------------------------------------------------------- cursors

core::time_point at_ms(std::int64_t ms) { return core::time_point{std::chrono::milliseconds{ms}}; }

TEST(cursor_codec, round_trips_position) {
  const api::cursor_codec codec("a-server-secret-of-some-length-0123456789");
  const auto id = core::new_uuid_v7();
  const auto t = at_ms(1'790'000'000'123);
  const auto cursor = codec.encode(t, id);
  const auto back = codec.decode(cursor);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->first, t);
  EXPECT_EQ(back->second, id);
  // Opaque: URL-safe and not showing the id.
  EXPECT_EQ(cursor.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_EQ(cursor.find(id), std::string::npos);
  // Times are kept to the millisecond.
  EXPECT_EQ(codec.decode(codec.encode(at_ms(0), id))->first, at_ms(0));
}

TEST(cursor_codec, every_tampered_byte_is_refused) {
  const api::cursor_codec codec("a-server-secret-of-some-length-0123456789");
  const auto cursor = codec.encode(at_ms(1'790'000'000'123), core::new_uuid_v7());
  const auto raw = core::base64url_decode(cursor);
  ASSERT_TRUE(raw);
  for (std::size_t i = 0; i < raw->size(); ++i) {
    auto flipped = *raw;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    EXPECT_EQ(codec.decode(core::base64url_encode(flipped)), std::nullopt) << "byte " << i;
  }
  // Also as text: any character changed (but the last, whose low bits may be padding).
  for (std::size_t i = 0; i + 1 < cursor.size(); ++i) {
    auto edited = cursor;
    edited[i] = edited[i] == 'A' ? 'B' : 'A';
    EXPECT_EQ(codec.decode(edited), std::nullopt) << "char " << i;
  }
}

TEST(cursor_codec, cursors_of_the_previous_secret_decode_during_a_rotation) {
  const std::string old_secret = "the-secret-before-the-rotation-0123456";
  const api::cursor_codec before(old_secret);
  const api::cursor_codec rotated("a-server-secret-of-some-length-0123456789", old_secret);
  const api::cursor_codec after_rotation("a-server-secret-of-some-length-0123456789");
  const auto id = core::new_uuid_v7();
  const auto old_cursor = before.encode(at_ms(1'790'000'000'123), id);
  ASSERT_TRUE(rotated.decode(old_cursor));
  EXPECT_EQ(rotated.decode(old_cursor)->second, id);
  EXPECT_EQ(after_rotation.decode(old_cursor), std::nullopt);
  // New cursors are made with the new secret alone.
  EXPECT_TRUE(after_rotation.decode(rotated.encode(at_ms(5), id)));
}

TEST(cursor_codec, truncated_foreign_and_garbage_cursors_are_refused) {
  const api::cursor_codec codec("a-server-secret-of-some-length-0123456789");
  const api::cursor_codec other("another-server-secret-of-some-length-987");
  const auto id = core::new_uuid_v7();
  const auto cursor = codec.encode(at_ms(1'790'000'000'123), id);
  for (std::size_t keep = 0; keep < cursor.size(); ++keep) {
    EXPECT_EQ(codec.decode(cursor.substr(0, keep)), std::nullopt) << "kept " << keep;
  }
  EXPECT_EQ(codec.decode(cursor + "A"), std::nullopt);
  EXPECT_EQ(codec.decode(other.encode(at_ms(1'790'000'000'123), id)), std::nullopt);
  EXPECT_EQ(other.decode(cursor), std::nullopt);
  for (const std::string_view garbage :
       {"", "!", "not a cursor", "====", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "%00%01"}) {
    EXPECT_EQ(codec.decode(garbage), std::nullopt) << garbage;
  }
  EXPECT_EQ(codec.decode(std::string(300, 'A')), std::nullopt);
  // A correctly signed payload that is not a position.
  EXPECT_EQ(codec.decode(codec.encode(at_ms(1), "not-a-uuid")), std::nullopt);
  EXPECT_EQ(codec.decode(codec.encode(at_ms(1), "")), std::nullopt);
}

// A payload tagged as cursor.cpp tags it (HMAC-SHA256 under a key derived
// from the secret, cut to 16 bytes): what only the server can write.
std::string tagged_cursor(std::string_view secret, std::string_view payload) {
  const auto key = core::hmac_sha256(secret, "docflow cursor key v1");
  return core::base64url_encode(std::string(payload) + core::hmac_sha256(key, payload).substr(0, 16));
}

// Found by tests/fuzz/cursor_fuzz.cpp: a tagged payload without ':' made
// decode() compute data() + npos, and one with a time beyond what a
// time_point holds overflowed converting it (both undefined behaviour).
TEST(cursor_codec, tagged_payloads_that_are_not_positions_are_refused) {
  const std::string secret = "a-server-secret-of-some-length-0123456789";
  const api::cursor_codec codec(secret);
  const std::string id = "018f2a3b-4c5d-7e6f-8a9b-0c1d2e3f4a5b";
  ASSERT_EQ(tagged_cursor(secret, "1790000000123:" + id), codec.encode(at_ms(1'790'000'000'123), id))
      << "tagged_cursor no longer writes what cursor.cpp writes";
  EXPECT_EQ(codec.decode(tagged_cursor(secret, "1790000000123")), std::nullopt);
  EXPECT_EQ(codec.decode(tagged_cursor(secret, "")), std::nullopt);
  EXPECT_EQ(codec.decode(tagged_cursor(secret, id)), std::nullopt);
  EXPECT_EQ(codec.decode(tagged_cursor(secret, "1700000000000000:" + id)), std::nullopt);
  EXPECT_EQ(codec.decode(tagged_cursor(secret, "-9223372036854775808:" + id)), std::nullopt);
  EXPECT_EQ(codec.decode(tagged_cursor(secret, "9223372036855:" + id)), std::nullopt);
  const auto edge = codec.decode(tagged_cursor(secret, "-9223372036854:" + id));
  ASSERT_TRUE(edge);
  EXPECT_EQ(edge->first, at_ms(-9'223'372'036'854));
}

TEST(from_unix_ms, holds_what_a_time_point_can_and_refuses_the_rest) {
  EXPECT_EQ(core::from_unix_ms(0), at_ms(0));
  EXPECT_EQ(core::from_unix_ms(1'790'000'000'123), at_ms(1'790'000'000'123));
  EXPECT_EQ(core::from_unix_ms(-86'400'000), at_ms(-86'400'000));
  // time_point counts nanoseconds: about ±292 years around 1970.
  EXPECT_EQ(core::from_unix_ms(9'223'372'036'854), at_ms(9'223'372'036'854));
  EXPECT_EQ(core::from_unix_ms(-9'223'372'036'854), at_ms(-9'223'372'036'854));
  EXPECT_EQ(core::from_unix_ms(9'223'372'036'855), std::nullopt);
  EXPECT_EQ(core::from_unix_ms(-9'223'372'036'855), std::nullopt);
  EXPECT_EQ(core::from_unix_ms(INT64_MAX), std::nullopt);
  EXPECT_EQ(core::from_unix_ms(INT64_MIN), std::nullopt);
}

// ---------------------------------------------------------------- Range

using byte_range = std::pair<std::uint64_t, std::uint64_t>;
constexpr byte_range unsatisfiable{1, 0};

TEST(parse_range, one_byte_range_is_clamped_to_the_document) {
  EXPECT_EQ(api::parse_range("bytes=0-99", 1000), byte_range(0, 99));
  EXPECT_EQ(api::parse_range("bytes=5-5", 1000), byte_range(5, 5));
  EXPECT_EQ(api::parse_range("bytes=900-5000", 1000), byte_range(900, 999));
  EXPECT_EQ(api::parse_range("bytes=100-", 1000), byte_range(100, 999));
  EXPECT_EQ(api::parse_range("bytes=0-18446744073709551615", 10), byte_range(0, 9));
}

TEST(parse_range, suffix_ranges_count_from_the_end) {
  EXPECT_EQ(api::parse_range("bytes=-500", 1000), byte_range(500, 999));
  EXPECT_EQ(api::parse_range("bytes=-5000", 1000), byte_range(0, 999));
  EXPECT_EQ(api::parse_range("bytes=-1", 1), byte_range(0, 0));
}

TEST(parse_range, ranges_outside_the_document_are_unsatisfiable) {
  EXPECT_EQ(api::parse_range("bytes=1000-", 1000), unsatisfiable);
  EXPECT_EQ(api::parse_range("bytes=1000-2000", 1000), unsatisfiable);
  EXPECT_EQ(api::parse_range("bytes=0-0", 0), unsatisfiable);
  EXPECT_EQ(api::parse_range("bytes=-1", 0), unsatisfiable);
  EXPECT_EQ(api::parse_range("bytes=-0", 1000), unsatisfiable);
}

TEST(parse_range, what_it_does_not_understand_serves_the_whole_body) {
  for (const std::string_view header :
       {"", "bytes", "bytes=", "bytes=-", "bytes=5", "bytes=5-2", "bytes=0-0,5-9", "items=0-1", "Bytes=0-1",
        "bytes= 0-1", "bytes=0 -1", "bytes=+0-1", "bytes=0x10-", "bytes=18446744073709551616-", "bytes=--1",
        "bytes=1-2-3"}) {
    EXPECT_EQ(api::parse_range(header, 1000), std::nullopt) << header;
  }
}

// ---------------------------------------------------------------- is_docx

std::uint32_t crc32(std::string_view data) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (const char ch : data) {
    crc ^= static_cast<unsigned char>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void put16(std::string& out, std::uint32_t v) {
  out += static_cast<char>(v & 0xFF);
  out += static_cast<char>((v >> 8) & 0xFF);
}

void put32(std::string& out, std::uint32_t v) {
  put16(out, v & 0xFFFF);
  put16(out, v >> 16);
}

struct zip_entry {
  std::string name;
  std::string data;
};

// A ZIP archive with every entry stored (no compression). The EOCD's entry
// counts may be overridden to build lying archives.
std::string make_zip(const std::vector<zip_entry>& entries, std::optional<std::uint16_t> claimed_count = {}) {
  std::string out;
  std::string central;
  constexpr std::uint32_t dos_date = (0 << 9) | (1 << 5) | 1;  // 1980-01-01
  for (const auto& e : entries) {
    const auto offset = static_cast<std::uint32_t>(out.size());
    const auto crc = crc32(e.data);
    const auto size = static_cast<std::uint32_t>(e.data.size());
    const auto name_len = static_cast<std::uint32_t>(e.name.size());
    put32(out, 0x04034b50);  // local file header
    put16(out, 20);          // version needed
    put16(out, 0);           // flags
    put16(out, 0);           // stored
    put16(out, 0);           // time
    put16(out, dos_date);
    put32(out, crc);
    put32(out, size);
    put32(out, size);
    put16(out, name_len);
    put16(out, 0);  // extra length
    out += e.name;
    out += e.data;
    put32(central, 0x02014b50);  // central directory header
    put16(central, 20);          // version made by
    put16(central, 20);          // version needed
    put16(central, 0);
    put16(central, 0);
    put16(central, 0);
    put16(central, dos_date);
    put32(central, crc);
    put32(central, size);
    put32(central, size);
    put16(central, name_len);
    put16(central, 0);  // extra
    put16(central, 0);  // comment
    put16(central, 0);  // disk
    put16(central, 0);  // internal attributes
    put32(central, 0);  // external attributes
    put32(central, offset);
    central += e.name;
  }
  const auto cd_offset = static_cast<std::uint32_t>(out.size());
  out += central;
  const std::uint32_t count = claimed_count.value_or(static_cast<std::uint16_t>(entries.size()));
  put32(out, 0x06054b50);  // end of central directory
  put16(out, 0);
  put16(out, 0);
  put16(out, count);
  put16(out, count);
  put32(out, static_cast<std::uint32_t>(central.size()));
  put32(out, cd_offset);
  put16(out, 0);  // comment length
  return out;
}

const zip_entry content_types{"[Content_Types].xml",
                              "<?xml version=\"1.0\"?><Types "
                              "xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"/>"};
const zip_entry document_xml{"word/document.xml",
                             "<?xml version=\"1.0\"?><w:document "
                             "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"/>"};

TEST(docx_probe, minimal_docx_is_a_docx) {
  EXPECT_TRUE(pipeline::is_docx(make_zip({content_types, document_xml})));
  // Entry order does not matter, and other entries may be present.
  EXPECT_TRUE(
      pipeline::is_docx(make_zip({{"_rels/.rels", "<Relationships/>"}, document_xml, content_types})));
}

TEST(docx_probe, zip_without_both_entries_is_not) {
  EXPECT_FALSE(pipeline::is_docx(make_zip({content_types})));
  EXPECT_FALSE(pipeline::is_docx(make_zip({document_xml})));
  EXPECT_FALSE(pipeline::is_docx(make_zip({{"readme.txt", "hello"}})));
  EXPECT_FALSE(pipeline::is_docx(make_zip({})));
  // Names must match exactly.
  EXPECT_FALSE(pipeline::is_docx(make_zip({content_types, {"Word/Document.xml", document_xml.data}})));
}

TEST(docx_probe, non_zip_files_are_not) {
  EXPECT_FALSE(pipeline::is_docx("just some text, long enough to have an end record? no."));
  EXPECT_FALSE(pipeline::is_docx(""));
  EXPECT_FALSE(pipeline::is_docx("%PDF-1.7\n%%EOF\n"));
  // A valid archive cut short loses its directory.
  const auto zip = make_zip({content_types, document_xml});
  EXPECT_FALSE(pipeline::is_docx(zip.substr(0, zip.size() - 30)));
}

TEST(docx_probe, lying_entry_counts_are_refused) {
  const std::vector<zip_entry> entries = {content_types, document_xml};
  EXPECT_FALSE(pipeline::is_docx(make_zip(entries, 60000)));
  EXPECT_FALSE(pipeline::is_docx(make_zip(entries, 0xFFFF)));
  EXPECT_FALSE(pipeline::is_docx(make_zip(entries, 0)));
}

TEST(docx_probe, entry_count_bound_is_applied_to_real_archives) {
  // Real, consistent archives: max_zip_entries is accepted, one more is not.
  std::vector<zip_entry> entries = {content_types, document_xml};
  for (std::size_t i = entries.size(); i < pipeline::max_zip_entries; ++i) {
    entries.push_back({"f/" + std::to_string(i), ""});
  }
  EXPECT_TRUE(pipeline::is_docx(make_zip(entries)));
  entries.push_back({"f/one-more", ""});
  EXPECT_FALSE(pipeline::is_docx(make_zip(entries)));
}

TEST(docx_probe, overlong_entry_names_are_refused) {
  const std::string long_name(pipeline::max_zip_name_bytes + 1, 'n');
  EXPECT_FALSE(pipeline::is_docx(make_zip({content_types, document_xml, {long_name, "x"}})));
  const std::string ok_name(pipeline::max_zip_name_bytes, 'n');
  EXPECT_TRUE(pipeline::is_docx(make_zip({content_types, document_xml, {ok_name, "x"}})));
}

}  // namespace
