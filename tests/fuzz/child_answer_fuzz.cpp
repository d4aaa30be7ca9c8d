// libFuzzer target for the extraction child's answer protocol
// (pipeline::decode_child_output in src/pipeline/sandbox.cpp): the JSON a
// sandboxed child, which has just parsed an untrusted document and may be
// compromised, writes to its parent.
//
// Input: a mode byte, then:
// - mode 0: the answer verbatim;
// - mode 1: an extraction (page count, creation time, and text, title and
//   author separated by '\n', any bytes), encoded by encode_child_output;
// - mode 2: a failure (code, message separated by '\n'; retryable), encoded
//   by encode_child_failure.
// Checks, besides no crash, no sanitizer report, and no exception but
// stage_error (the one decode_child_output documents):
// - a refused answer is a stage_error with a code the child may report
//   (unreadable_document, document_too_complex, extractor_crashed,
//   sandbox_unavailable) and a
//   message of at most 512 bytes of valid UTF-8;
// - a decoded extraction has pages >= 0 and survives encode then decode;
// - whatever the encoders are given (invalid UTF-8 included) decodes: an
//   extraction to itself when its strings are UTF-8; a failure to itself
//   when its code is one the child may report, to extractor_crashed if not.
// See tests/fuzz/README.md.
// fuzz-link: docflow_pipeline docflow_core
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/encoding.hpp"
#include "fuzz_input.hpp"
#include "pipeline/sandbox.hpp"
#include "pipeline/stage.hpp"

namespace {

using docflow::fuzz::check;
using docflow::pipeline::extraction;
using docflow::pipeline::stage_error;
namespace core = docflow::core;

bool child_may_report(std::string_view code) {
  const auto known = core::parse_errc(code);
  return known == core::errc::unreadable_document || known == core::errc::document_too_complex ||
         known == core::errc::extractor_crashed || known == core::errc::sandbox_unavailable;
}

bool same(const extraction& a, const extraction& b) {
  return a.pages == b.pages && a.text == b.text && a.metadata.title == b.metadata.title &&
         a.metadata.author == b.metadata.author && a.metadata.created == b.metadata.created;
}

// The outcome of decoding: an extraction or the failure it was refused with.
struct outcome {
  std::optional<extraction> e;
  std::optional<docflow::core::failure> f;
};

outcome decode(std::string_view answer) {
  try {
    return {docflow::pipeline::decode_child_output(answer), std::nullopt};
  } catch (const stage_error& error) {
    const auto& f = error.failure();
    check(child_may_report(f.code), "a refused answer carried a code the child may not report");
    check(f.message.size() <= 512, "a refused answer's message is longer than 512 bytes");
    check(docflow::fuzz::valid_utf8(f.message), "a refused answer's message is not UTF-8");
    return {std::nullopt, f};
  }
}

void check_decoded(const extraction& e) {
  check(!e.pages || *e.pages >= 0, "a decoded extraction has a negative page count");
  const auto again = decode(docflow::pipeline::encode_child_output(e));
  check(again.e && same(*again.e, e), "a decoded extraction did not survive encode and decode");
}

std::optional<std::string> optional_text(docflow::fuzz::input& in, bool present) {
  const auto text = in.until('\n');
  if (!present) return std::nullopt;
  return std::string(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  docflow::fuzz::input in(data, size);
  const auto mode = in.byte();
  switch (mode % 3) {
    case 0: {
      const auto got = decode(in.rest());
      if (got.e) check_decoded(*got.e);
      break;
    }
    case 1: {
      extraction e;
      const auto pages = in.u64();
      if ((mode & 0x04) != 0) e.pages = static_cast<int>(pages & 0x7FFFFFFF);
      const auto created = static_cast<std::int64_t>(in.u64());
      if ((mode & 0x08) != 0) {
        e.metadata.created = docflow::core::time_point(std::chrono::nanoseconds(created));
      }
      e.text = std::string(in.until('\n'));
      e.metadata.title = optional_text(in, (mode & 0x10) != 0);
      e.metadata.author = optional_text(in, (mode & 0x20) != 0);
      const auto got = decode(docflow::pipeline::encode_child_output(e));
      check(got.e.has_value(), "the child's own encoding of an extraction was refused");
      const bool utf8 = docflow::fuzz::valid_utf8(e.text) &&
                        docflow::fuzz::valid_utf8(e.metadata.title.value_or("")) &&
                        docflow::fuzz::valid_utf8(e.metadata.author.value_or(""));
      if (e.metadata.created) {
        // The protocol carries milliseconds.
        e.metadata.created = docflow::core::time_point(
            std::chrono::duration_cast<std::chrono::milliseconds>(e.metadata.created->time_since_epoch()));
      }
      if (utf8) check(same(*got.e, e), "an extraction did not survive encode and decode");
      check_decoded(*got.e);
      break;
    }
    default: {
      docflow::core::failure f;
      f.retryable = (mode & 0x04) != 0;
      f.code = std::string(in.until('\n'));
      f.message = std::string(in.rest());
      const auto got = decode(docflow::pipeline::encode_child_failure(f));
      check(got.f.has_value(), "the child's own encoding of a failure decoded as an extraction");
      if (child_may_report(f.code)) {
        check(got.f->code == f.code && got.f->retryable == f.retryable,
              "a failure did not survive encode and decode");
        if (docflow::fuzz::valid_utf8(f.message) && f.message.size() <= 512) {
          check(got.f->message == f.message, "a failure's message did not survive encode and decode");
        }
      } else {
        check(got.f->is(core::errc::extractor_crashed),
              "a failure with a code the child may not report was believed");
      }
      break;
    }
  }
  return 0;
}
