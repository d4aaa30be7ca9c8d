// libFuzzer target for the listing cursor (src/api/cursor.cpp): the
// `cursor` query parameter of GET /documents, which clients send back.
//
// Input: a mode byte, then:
// - mode 0: the cursor as sent, verbatim;
// - mode 1: a time (8 bytes, nanoseconds since the epoch) and an id, either
//   the remaining text or, with the mode byte's bit 7, a UUID spelt from 16
//   bytes, encoded by the codec;
// - mode 2: a position payload of the fuzzer's choosing, tagged here as the
//   codec tags (HMAC-SHA256 under the key derived from the secret, 16 bytes),
//   so the parsing behind the tag check is reached. The target checks once
//   that its copy of the format still matches the codec's own encoding.
// Checks, besides no crash, no sanitizer report and no exception:
// - decode(encode(t, id)) == (t to the millisecond, id) for a UUID id, and
//   nullopt for any other id;
// - an encoded cursor is base64url text;
// - whatever decodes has a UUID id and survives encode then decode.
// See tests/fuzz/README.md.
// fuzz-link: docflow_api docflow_core
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/cursor.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/ids.hpp"
#include "fuzz_input.hpp"

namespace {

using docflow::fuzz::check;
using docflow::fuzz::violated;

const std::string secret = "fuzz cursor secret";

const docflow::api::cursor_codec& codec() {
  static const docflow::api::cursor_codec c(secret);
  return c;
}

// The codec's format, as cursor.cpp writes it: base64url(payload + tag).
std::string tagged(std::string_view payload) {
  static const std::string key = docflow::core::hmac_sha256(secret, "docflow cursor key v1");
  const auto tag = docflow::core::hmac_sha256(key, payload).substr(0, 16);
  return docflow::core::base64url_encode(std::string(payload) + tag);
}

void check_format_copy() {
  static const bool same = [] {
    const std::string id = "018f2a3b-4c5d-7e6f-8a9b-0c1d2e3f4a5b";
    const auto t = docflow::core::time_point(std::chrono::milliseconds(1'700'000'000'123));
    return codec().encode(t, id) == tagged("1700000000123:" + id);
  }();
  if (!same) violated("the target's copy of the cursor format no longer matches cursor.cpp");
}

std::string uuid_from(docflow::fuzz::input& in) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    const auto b = in.byte();
    out += hex[b >> 4];
    out += hex[b & 0x0F];
  }
  return out;
}

bool base64url_text(std::string_view s) {
  for (const char c : s) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

void check_decoded(std::string_view cursor) {
  const auto position = codec().decode(cursor);
  if (!position) return;
  check(docflow::core::is_uuid(position->second), "a cursor decoded to an id that is not a UUID");
  const auto again = codec().decode(codec().encode(position->first, position->second));
  check(again && *again == *position, "a decoded position did not survive encode and decode");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_format_copy();
  docflow::fuzz::input in(data, size);
  const auto mode = in.byte();
  switch (mode % 3) {
    case 0: check_decoded(in.rest()); break;
    case 1: {
      const auto ns = static_cast<std::int64_t>(in.u64());
      const auto t = docflow::core::time_point(std::chrono::nanoseconds(ns));
      const std::string id = (mode & 0x80) != 0 ? uuid_from(in) : std::string(in.rest());
      const auto cursor = codec().encode(t, id);
      check(base64url_text(cursor), "an encoded cursor is not base64url text");
      const auto position = codec().decode(cursor);
      if (docflow::core::is_uuid(id)) {
        // encode keeps milliseconds, truncated towards zero as duration_cast does.
        const auto expected = docflow::core::time_point(
            std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()));
        check(position && position->first == expected && position->second == id,
              "decode(encode(t, id)) is not (t, id)");
      } else {
        check(!position, "a cursor with an id that is not a UUID decoded");
      }
      break;
    }
    default: check_decoded(tagged(in.rest())); break;
  }
  return 0;
}
