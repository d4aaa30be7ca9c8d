// libFuzzer target for the `Range` header of GET /documents/{id}/content
// (src/api/range.cpp).
//
// Input: the representation's size (8 bytes; with the first byte's bit 0
// clear, only its low 16 bits, so small documents are common), then the
// header value. Checks, besides no crash, no sanitizer report and no
// exception:
// - the answer is nullopt (the whole body), {1, 0} (unsatisfiable), or a
//   range first <= last < size, so the bytes served never overrun;
// - it agrees with a plain reading of RFC 9110 §14.1.2 for one range:
//   "bytes=" then digits "-" digits (first <= last), digits "-", or "-" digits.
// See tests/fuzz/README.md.
// fuzz-link: docflow_api docflow_core
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "api/range.hpp"
#include "fuzz_input.hpp"

namespace {

using docflow::fuzz::check;
using range = std::pair<std::uint64_t, std::uint64_t>;

// Digits only, no sign or space, and no wider than 64 bits.
std::optional<std::uint64_t> decimal(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<range> reference(std::string_view h, std::uint64_t size) {
  constexpr std::string_view unit = "bytes=";
  if (!h.starts_with(unit)) return std::nullopt;
  const auto spec = h.substr(unit.size());
  if (spec.find(',') != std::string_view::npos) return std::nullopt;  // several ranges: the whole body
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const auto first = spec.substr(0, dash);
  const auto last = spec.substr(dash + 1);
  const range unsatisfiable{1, 0};
  if (first.empty()) {
    const auto n = decimal(last);
    if (!n) return std::nullopt;
    if (*n == 0 || size == 0) return unsatisfiable;
    return range{size - std::min(*n, size), size - 1};
  }
  const auto a = decimal(first);
  if (!a) return std::nullopt;
  std::uint64_t b = UINT64_MAX;
  if (!last.empty()) {
    const auto parsed = decimal(last);
    if (!parsed || *parsed < *a) return std::nullopt;
    b = *parsed;
  }
  if (*a >= size) return unsatisfiable;
  return range{*a, std::min(b, size - 1)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  docflow::fuzz::input in(data, size);
  std::uint64_t length = in.u64();
  if ((length & 1) == 0) length = (length >> 1) & 0xFFFF;
  const auto header = in.rest();

  const auto r = docflow::api::parse_range(header, length);
  if (r && r->first <= r->second) {
    check(r->second < length, "a range ends past the document");
  } else if (r) {
    check(*r == range(1, 0), "an unsatisfiable range is not {1, 0}");
  }
  check(r == reference(header, length), "parse_range disagrees with the plain reading");
  return 0;
}
