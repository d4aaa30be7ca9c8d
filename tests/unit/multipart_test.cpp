#include <gtest/gtest.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "http/multipart.hpp"

using namespace docflow;
using http::form_data_boundary;
using http::multipart_error;
using http::multipart_handler;
using http::multipart_parser;
using http::part_info;

namespace {

// ---------------------------------------------------------------- recording

struct recorded_part {
  std::string name;
  std::optional<std::string> filename;
  std::string content_type;
  std::string data;
  bool ended = false;

  bool operator==(const recorded_part&) const = default;
};

std::ostream& operator<<(std::ostream& os, const recorded_part& p) {
  return os << "{name=" << testing::PrintToString(p.name)
            << " filename=" << testing::PrintToString(p.filename)
            << " type=" << testing::PrintToString(p.content_type)
            << " data=" << testing::PrintToString(p.data) << " ended=" << p.ended << '}';
}

// Records every callback and checks their order: data and end only inside a
// part, begin only outside one.
class recording_handler final : public multipart_handler {
public:
  void on_part_begin(const part_info& part) override {
    EXPECT_FALSE(open_) << "on_part_begin inside a part";
    parts.push_back({part.name, part.filename, part.content_type, {}, false});
    open_ = true;
  }
  void on_part_data(std::string_view bytes) override {
    EXPECT_TRUE(open_) << "on_part_data outside a part";
    EXPECT_FALSE(bytes.empty()) << "on_part_data with no bytes";
    if (!parts.empty()) parts.back().data.append(bytes);
    data_bytes += bytes.size();
  }
  void on_part_end() override {
    EXPECT_TRUE(open_) << "on_part_end outside a part";
    if (!parts.empty()) parts.back().ended = true;
    open_ = false;
  }

  std::vector<recorded_part> parts;
  std::size_t data_bytes = 0;

private:
  bool open_ = false;
};

// ---------------------------------------------------------------- splitting

// How a body is cut into the pieces given to feed().
struct split {
  std::string name;
  std::function<std::vector<std::size_t>(std::size_t)> sizes;  // piece sizes summing to the length
};

std::vector<std::size_t> fixed_pieces(std::size_t total, std::size_t piece) {
  std::vector<std::size_t> out;
  for (std::size_t done = 0; done < total; done += piece) out.push_back(std::min(piece, total - done));
  return out;
}

std::vector<std::size_t> random_pieces(std::size_t total, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> size(1, 97);
  std::vector<std::size_t> out;
  for (std::size_t done = 0; done < total;) {
    const auto n = std::min(size(rng), total - done);
    out.push_back(n);
    done += n;
  }
  return out;
}

std::vector<split> all_splits() {
  std::vector<split> out = {
      {"whole", [](std::size_t n) { return std::vector<std::size_t>{n}; }},
      {"1-byte", [](std::size_t n) { return fixed_pieces(n, 1); }},
      {"7-byte", [](std::size_t n) { return fixed_pieces(n, 7); }},
  };
  for (const unsigned seed : {1u, 42u, 20261129u}) {
    out.push_back(
        {"random-" + std::to_string(seed), [seed](std::size_t n) { return random_pieces(n, seed); }});
  }
  return out;
}

struct outcome {
  multipart_error error = multipart_error::none;  // the first error from feed() or finish()
  bool failed_in_feed = false;
  std::vector<recorded_part> parts;
  std::size_t data_bytes = 0;
};

// Feeds `body` in the pieces `sp` chooses, then calls finish() if no piece failed.
outcome parse(std::string_view boundary, std::string_view body, const split& sp,
              http::multipart_limits limits = {}) {
  recording_handler h;
  multipart_parser parser(boundary, h, limits);
  outcome out;
  std::size_t at = 0;
  for (const auto n : sp.sizes(body.size())) {
    const auto e = parser.feed(body.substr(at, n));
    at += n;
    if (e != multipart_error::none) {
      out.error = e;
      out.failed_in_feed = true;
      // The first error sticks: feeding more, or finishing, repeats it.
      EXPECT_EQ(parser.feed("--more--"), e) << sp.name;
      EXPECT_EQ(parser.finish(), e) << sp.name;
      break;
    }
  }
  if (!out.failed_in_feed) out.error = parser.finish();
  out.parts = std::move(h.parts);
  out.data_bytes = h.data_bytes;
  EXPECT_LE(out.data_bytes, body.size()) << sp.name;
  return out;
}

// ---------------------------------------------------------------- samples

const std::string crlf = "\r\n";

std::string disposition(std::string_view name, std::optional<std::string_view> filename = std::nullopt) {
  std::string out = "Content-Disposition: form-data; name=\"" + std::string(name) + '"';
  if (filename) out += "; filename=\"" + std::string(*filename) + '"';
  return out + crlf;
}

// One part: its header lines (each ending in CRLF) and its bytes.
struct part_spec {
  std::string headers;
  std::string data;
};

// A body: optional preamble, "--boundary" lines, the parts, the closing
// delimiter, optional epilogue.
std::string make_body(std::string_view boundary, const std::vector<part_spec>& parts,
                      std::string_view preamble = "", std::string_view epilogue = "",
                      std::string_view padding = "") {
  std::string out(preamble);
  if (!preamble.empty()) out += crlf;
  for (const auto& p : parts) {
    out += "--" + std::string(boundary) + std::string(padding) + crlf + p.headers + crlf + p.data + crlf;
  }
  out += "--" + std::string(boundary) + "--" + std::string(padding);
  if (!epilogue.empty()) out += crlf + std::string(epilogue);
  return out;
}

struct valid_sample {
  std::string name;
  std::string content_type;  // the request's Content-Type, from which the boundary is taken
  std::string body;
  std::vector<recorded_part> expected;
};

recorded_part file_part(std::string data, std::string filename = "a.pdf",
                        std::string content_type = "application/pdf") {
  return {"file", std::move(filename), std::move(content_type), std::move(data), true};
}

recorded_part title_part(std::string text) { return {"title", std::nullopt, "", std::move(text), true}; }

const std::string pdf_type = "Content-Type: application/pdf\r\n";

std::vector<valid_sample> valid_samples() {
  const std::string b = "XyZzy-7";
  const std::string ct = "multipart/form-data; boundary=" + b;
  const std::string pdf = "%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
  // Binary content full of CRLFs, dashes and every proper prefix of the delimiter.
  std::string binary = "\r\n\r\n--\r\n-\r\r\n\n\r--X\r\n--Xy\r\n--XyZzy-\r\n--XyZzy\r--XyZzy-7";
  binary += std::string("\0\xff\x80\r\n--", 8) + "\r\n-" + "\r\n--XyZzy-" + "\r\n\r\n";
  const std::string punct = "'()+_,-./:=?";
  return {
      {"one file part", ct, make_body(b, {{disposition("file", "a.pdf") + pdf_type, pdf}}), {file_part(pdf)}},
      {"file and title",
       ct,
       make_body(b, {{disposition("file", "a.pdf") + pdf_type, pdf}, {disposition("title"), "Q3 report"}}),
       {file_part(pdf), title_part("Q3 report")}},
      {"title before file",
       ct,
       make_body(b, {{disposition("title"), "First"}, {disposition("file", "a.pdf") + pdf_type, pdf}}),
       {title_part("First"), file_part(pdf)}},
      {"quoted boundary",
       "multipart/form-data; boundary=\"quoted boundary:1\"",
       make_body("quoted boundary:1", {{disposition("file", "a.pdf") + pdf_type, pdf}}),
       {file_part(pdf)}},
      {"boundary with allowed punctuation",
       "multipart/form-data; boundary=\"" + punct + "\"",
       make_body(punct, {{disposition("file", "a.pdf") + pdf_type, pdf}}),
       {file_part(pdf)}},
      {"part without Content-Type",
       ct,
       make_body(b, {{disposition("file", "b.docx"), "PK\x03\x04rest"}}),
       {file_part("PK\x03\x04rest", "b.docx", "")}},
      {"transport padding after boundaries",
       ct,
       make_body(b, {{disposition("file", "a.pdf") + pdf_type, pdf}, {disposition("title"), "t"}}, "", "",
                 " \t "),
       {file_part(pdf), title_part("t")}},
      {"preamble and epilogue",
       ct,
       make_body(b, {{disposition("file", "a.pdf") + pdf_type, pdf}},
                 "This is the preamble.\r\nIt has lines -- and dashes --XyZzy- too.",
                 "This is the epilogue.\r\n--XyZzy-7\r\nstill epilogue\r\n"),
       {file_part(pdf)}},
      {"CRLF-heavy binary with delimiter fragments",
       ct,
       make_body(b, {{disposition("file", "bin.pdf") + pdf_type, binary}, {disposition("title"), "\r\n--X"}}),
       {file_part(binary, "bin.pdf"), title_part("\r\n--X")}},
      {"empty file part",
       ct,
       make_body(b, {{disposition("file", "empty.pdf") + pdf_type, ""}}),
       {file_part("", "empty.pdf")}},
  };
}

// ---------------------------------------------------------------- valid forms

TEST(multipart_parser, valid_samples_parse_identically_in_any_pieces) {
  for (const auto& sample : valid_samples()) {
    const auto boundary = form_data_boundary(sample.content_type);
    ASSERT_TRUE(boundary) << sample.name << ": " << sample.content_type;
    for (const auto& sp : all_splits()) {
      SCOPED_TRACE(sample.name + " / " + sp.name);
      const auto got = parse(*boundary, sample.body, sp);
      EXPECT_EQ(got.error, multipart_error::none) << http::describe(got.error, {});
      EXPECT_EQ(got.parts, sample.expected);
    }
  }
}

TEST(multipart_parser, body_may_open_with_the_boundary_or_a_crlf) {
  const std::string part = disposition("file", "a.pdf") + crlf + "x" + crlf;
  for (const auto& body : {"--b\r\n" + part + "--b--", "\r\n--b\r\n" + part + "--b--\r\n"}) {
    for (const auto& sp : all_splits()) {
      SCOPED_TRACE(sp.name);
      const auto got = parse("b", body, sp);
      EXPECT_EQ(got.error, multipart_error::none);
      EXPECT_EQ(got.parts, std::vector<recorded_part>{file_part("x", "a.pdf", "")});
    }
  }
}

TEST(multipart_parser, eight_parts_are_accepted) {
  std::vector<part_spec> parts;
  for (int i = 0; i < 8; ++i) parts.push_back({disposition("p" + std::to_string(i)), std::to_string(i)});
  for (const auto& sp : all_splits()) {
    SCOPED_TRACE(sp.name);
    const auto got = parse("b", make_body("b", parts), sp);
    EXPECT_EQ(got.error, multipart_error::none);
    EXPECT_EQ(got.parts.size(), 8u);
  }
}

const std::string small_part = disposition("file", "a.pdf") + crlf + "x" + crlf;

TEST(multipart_parser, preamble_of_exactly_the_limit_is_accepted_whatever_the_split) {
  const std::string body = std::string(16 * 1024, 'p') + "\r\n--b\r\n" + small_part + "--b--";
  for (const auto& sp : all_splits()) {
    SCOPED_TRACE(sp.name);
    EXPECT_EQ(parse("b", body, sp).error, multipart_error::none);
  }
}

TEST(multipart_parser, epilogue_of_exactly_the_limit_is_accepted_whatever_the_split) {
  // The epilogue counts what follows the closing "--", its CRLF included.
  const std::string body = "--b\r\n" + small_part + "--b--" + std::string(16 * 1024, 'e');
  for (const auto& sp : all_splits()) {
    SCOPED_TRACE(sp.name);
    EXPECT_EQ(parse("b", body, sp).error, multipart_error::none);
  }
}

TEST(multipart_parser, header_block_of_exactly_the_limit_is_accepted_whatever_the_split) {
  // The header block (without its closing blank line) is exactly 8 KiB.
  std::string headers = disposition("file", "a.pdf");
  const std::string pad_name = "X-Pad: ";
  headers += pad_name + std::string(8 * 1024 - headers.size() - pad_name.size(), 'h');
  ASSERT_EQ(headers.size(), 8u * 1024u);
  const std::string body = "--b\r\n" + headers + "\r\n\r\nx\r\n--b--";
  for (const auto& sp : all_splits()) {
    SCOPED_TRACE(sp.name);
    EXPECT_EQ(parse("b", body, sp).error, multipart_error::none);
  }
}

TEST(multipart_parser, long_transport_padding_is_judged_the_same_whatever_the_split) {
  // RFC 2046 puts no bound on transport padding; a parser may bound it, but
  // its verdict must not depend on how the body was cut into pieces.
  const std::string body =
      "--b" + std::string(100, ' ') + "\r\n" + disposition("file", "a.pdf") + crlf + "x\r\n--b--";
  const auto whole = parse("b", body, all_splits().front());
  for (const auto& sp : all_splits()) {
    SCOPED_TRACE(sp.name);
    EXPECT_EQ(parse("b", body, sp).error, whole.error);
  }
}

TEST(multipart_parser, filename_star_is_decoded_and_preferred) {
  const std::string headers =
      "Content-Disposition: form-data; name=\"file\"; filename=\"fallback.pdf\"; "
      "filename*=UTF-8''%E2%82%AC%20rates%2fq3.pdf\r\n";
  for (const auto& sp : all_splits()) {
    SCOPED_TRACE(sp.name);
    const auto got = parse("b", make_body("b", {{headers, "x"}}), sp);
    ASSERT_EQ(got.error, multipart_error::none);
    ASSERT_EQ(got.parts.size(), 1u);
    EXPECT_EQ(got.parts[0].filename, "\xE2\x82\xAC rates/q3.pdf");
  }
  // The charset is case-insensitive, and a language tag is allowed.
  const auto lower = parse("b",
                           make_body("b", {{"Content-Disposition: form-data; name=\"file\"; "
                                            "filename*=utf-8'en'%C3%A9t%C3%A9.pdf\r\n",
                                            "x"}}),
                           all_splits().front());
  ASSERT_EQ(lower.error, multipart_error::none);
  EXPECT_EQ(lower.parts.at(0).filename, "\xC3\xA9t\xC3\xA9.pdf");
}

TEST(multipart_parser, filename_star_that_cannot_be_decoded_is_malformed) {
  for (const std::string value :
       {"ISO-8859-1''caf%E9.pdf", "UTF-8''bad%zz.pdf", "UTF-8''cut%E", "no-quotes.pdf"}) {
    SCOPED_TRACE(value);
    const std::string headers = "Content-Disposition: form-data; name=\"file\"; filename*=" + value + crlf;
    EXPECT_EQ(parse("b", make_body("b", {{headers, "x"}}), all_splits().front()).error,
              multipart_error::malformed_part_header);
  }
}

TEST(multipart_parser, quoted_filename_keeps_escapes_and_semicolons) {
  const std::string headers =
      "content-disposition: FORM-DATA; NAME=\"file\"; filename=\"a \\\"b\\\"; c.pdf\"\r\n";
  const auto got = parse("b", make_body("b", {{headers, "x"}}), all_splits().front());
  ASSERT_EQ(got.error, multipart_error::none);
  ASSERT_EQ(got.parts.size(), 1u);
  EXPECT_EQ(got.parts[0].name, "file");
  EXPECT_EQ(got.parts[0].filename, "a \"b\"; c.pdf");
}

// ---------------------------------------------------------------- malformed forms

struct malformed_sample {
  std::string name;
  std::string body;
  multipart_error expected;
  bool in_feed;  // reported by feed() (as soon as seen), not only by finish()
};

std::vector<malformed_sample> malformed_samples() {
  const std::string part = disposition("file", "a.pdf") + crlf + "x" + crlf;
  std::vector<part_spec> nine;
  for (int i = 0; i < 9; ++i) nine.push_back({disposition("p" + std::to_string(i)), "v"});
  return {
      {"no boundary in a 17 KiB preamble", std::string(17 * 1024, 'p'), multipart_error::preamble_too_large,
       true},
      {"boundary after a preamble over 16 KiB",
       std::string(16 * 1024 + 1, 'p') + "\r\n--b\r\n" + part + "--b--", multipart_error::preamble_too_large,
       true},
      {"bad bytes after a boundary", "--bxyz\r\n" + part + "--b--", multipart_error::bad_boundary_line, true},
      {"bad bytes after padding", "--b  x\r\n" + part + "--b--", multipart_error::bad_boundary_line, true},
      {"bad bytes after a later boundary", "--b\r\n" + part + "--b-\r\n" + part + "--b--",
       multipart_error::bad_boundary_line, true},
      {"no final boundary", "--b\r\n" + part, multipart_error::missing_final_boundary, false},
      {"no final boundary, cut in the data", "--b\r\n" + disposition("file", "a.pdf") + crlf + "abc",
       multipart_error::missing_final_boundary, false},
      {"no final boundary, cut in the headers", "--b\r\nContent-Disposition: form-d",
       multipart_error::missing_final_boundary, false},
      {"no boundary at all", "just some text", multipart_error::missing_final_boundary, false},
      {"empty body", "", multipart_error::missing_final_boundary, false},
      {"part header block over 8 KiB",
       "--b\r\n" + disposition("file", "a.pdf") + "X-Pad: " + std::string(8 * 1024, 'h') +
           "\r\n\r\nx\r\n--b--",
       multipart_error::part_header_too_large, true},
      {"endless part header block", "--b\r\nX-Pad: " + std::string(9 * 1024, 'h'),
       multipart_error::part_header_too_large, true},
      {"nine parts", make_body("b", nine), multipart_error::too_many_parts, true},
      {"Content-Disposition without a name",
       "--b\r\nContent-Disposition: form-data; filename=\"a.pdf\"\r\n\r\nx\r\n--b--",
       multipart_error::not_form_data, true},
      {"Content-Disposition with an empty name",
       "--b\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n--b--", multipart_error::not_form_data,
       true},
      {"no Content-Disposition", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
       multipart_error::not_form_data, true},
      {"no headers at all", "--b\r\n\r\nx\r\n--b--", multipart_error::not_form_data, true},
      {"not form-data", "--b\r\nContent-Disposition: attachment; name=\"file\"\r\n\r\nx\r\n--b--",
       multipart_error::not_form_data, true},
      {"unterminated quoted filename",
       "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\r\n\r\nx\r\n--b--",
       multipart_error::malformed_part_header, true},
      {"header line without a colon", "--b\r\n" + disposition("file", "a.pdf") + "garbage\r\n\r\nx\r\n--b--",
       multipart_error::malformed_part_header, true},
      {"epilogue over 16 KiB", "--b\r\n" + part + "--b--\r\n" + std::string(17 * 1024, 'e'),
       multipart_error::epilogue_too_large, true},
      {"epilogue one byte over 16 KiB", "--b\r\n" + part + "--b--" + std::string(16 * 1024 + 1, 'e'),
       multipart_error::epilogue_too_large, true},
  };
}

TEST(multipart_parser, malformed_forms_give_the_right_error_in_any_pieces) {
  for (const auto& sample : malformed_samples()) {
    for (const auto& sp : all_splits()) {
      SCOPED_TRACE(sample.name + " / " + sp.name);
      const auto got = parse("b", sample.body, sp);
      EXPECT_EQ(got.error, sample.expected) << "got: " << http::describe(got.error, {});
      EXPECT_EQ(got.failed_in_feed, sample.in_feed);
    }
  }
}

TEST(multipart_parser, nine_parts_fail_as_the_ninth_begins) {
  std::vector<part_spec> nine;
  for (int i = 0; i < 9; ++i) nine.push_back({disposition("p" + std::to_string(i)), "v"});
  const auto got = parse("b", make_body("b", nine), all_splits().front());
  EXPECT_EQ(got.error, multipart_error::too_many_parts);
  EXPECT_EQ(got.parts.size(), 8u);  // the ninth never reaches the handler
}

TEST(multipart_parser, custom_limits_are_honoured) {
  http::multipart_limits tight;
  tight.max_parts = 2;
  tight.max_preamble = 10;
  tight.max_epilogue = 4;
  tight.max_part_header_bytes = 64;
  const std::string part = disposition("f") + crlf + "x" + crlf;
  const auto whole = all_splits().front();  // a copy: the vector is a temporary
  EXPECT_EQ(parse("b", "--b\r\n" + part + "--b\r\n" + part + "--b\r\n" + part + "--b--", whole, tight).error,
            multipart_error::too_many_parts);
  EXPECT_EQ(parse("b", std::string(11, 'p') + "\r\n--b\r\n" + part + "--b--", whole, tight).error,
            multipart_error::preamble_too_large);
  EXPECT_EQ(parse("b", "--b\r\n" + part + "--b--\r\nabc", whole, tight).error,
            multipart_error::epilogue_too_large);
  EXPECT_EQ(parse("b", "--b\r\n" + part + "--b--\r\nab", whole, tight).error, multipart_error::none);
  EXPECT_EQ(parse("b", "--b\r\nX: " + std::string(70, 'h') + "\r\n" + part + "--b--", whole, tight).error,
            multipart_error::part_header_too_large);
}

TEST(multipart_parser, describe_names_the_limit) {
  const http::multipart_limits limits;
  EXPECT_NE(http::describe(multipart_error::too_many_parts, limits).find('8'), std::string::npos);
  EXPECT_NE(http::describe(multipart_error::part_header_too_large, limits).find("8192"), std::string::npos);
  EXPECT_NE(http::describe(multipart_error::preamble_too_large, limits).find("16384"), std::string::npos);
  EXPECT_NE(http::describe(multipart_error::epilogue_too_large, limits).find("16384"), std::string::npos);
}

// ---------------------------------------------------------------- form_data_boundary

TEST(form_data_boundary, unquoted_and_quoted) {
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=abc123"), "abc123");
  EXPECT_EQ(form_data_boundary("multipart/form-data;boundary=abc123"), "abc123");
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=\"abc 123\""), "abc 123");
  EXPECT_EQ(form_data_boundary("multipart/form-data; charset=utf-8; boundary=\"x:y\""), "x:y");
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"),
            "----WebKitFormBoundary7MA4YWxkTrZu0gW");
}

TEST(form_data_boundary, length_is_1_to_70) {
  const std::string seventy(70, 'a');
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=" + seventy), seventy);
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=\"" + seventy + "\""), seventy);
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=" + std::string(71, 'a')), std::nullopt);
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=x"), "x");
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=\"\""), std::nullopt);
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary="), std::nullopt);
  EXPECT_EQ(form_data_boundary("multipart/form-data"), std::nullopt);
  EXPECT_EQ(form_data_boundary("multipart/form-data; charset=utf-8"), std::nullopt);
}

TEST(form_data_boundary, characters_outside_rfc2046_are_refused) {
  for (const std::string bad : {"a@b", "a\"b", "a;b", "a[b]", "a\tb", "a{b}", "\xC3\xA9t\xC3\xA9"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=\"" + bad + "\""), std::nullopt);
  }
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=a@b"), std::nullopt);
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=\"unterminated"), std::nullopt);
}

TEST(form_data_boundary, trailing_space_is_refused_inner_space_is_not) {
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=\"abc \""), std::nullopt);
  EXPECT_EQ(form_data_boundary("multipart/form-data; boundary=\"a b\""), "a b");
}

TEST(form_data_boundary, other_media_types_are_refused) {
  EXPECT_EQ(form_data_boundary("multipart/mixed; boundary=abc"), std::nullopt);
  EXPECT_EQ(form_data_boundary("application/x-www-form-urlencoded; boundary=abc"), std::nullopt);
  EXPECT_EQ(form_data_boundary("text/plain"), std::nullopt);
  EXPECT_EQ(form_data_boundary(""), std::nullopt);
  EXPECT_EQ(form_data_boundary("multipart/form-datax; boundary=abc"), std::nullopt);
}

TEST(form_data_boundary, media_type_and_parameter_name_are_case_insensitive) {
  EXPECT_EQ(form_data_boundary("Multipart/Form-Data; boundary=abc"), "abc");
  EXPECT_EQ(form_data_boundary("MULTIPART/FORM-DATA; BOUNDARY=AbC"), "AbC");  // the value keeps its case
  EXPECT_EQ(form_data_boundary("  multipart/form-data  ;  boundary=abc  "), "abc");
}

}  // namespace
