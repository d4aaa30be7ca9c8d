// libFuzzer target for the `Idempotency-Key` header check
// (api::idempotency_key in src/api/idempotency.cpp), run on the key every
// POST /documents and /documents/{id}/process may carry.
//
// Input: a flags byte (bit 0: the field is present; bit 1: a second
// Idempotency-Key field follows; bits 2-3: the spelling of the field name),
// then the value or values separated by '\n'. Checks, besides no crash, no
// sanitizer report and no exception:
// - no field: no key (monostate);
// - the first field's value is the key exactly when it is 1-255 visible
//   ASCII characters (0x21-0x7E), whatever the name's case; otherwise a 400.
// See tests/fuzz/README.md.
// fuzz-link: docflow_api docflow_core
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/idempotency.hpp"
#include "fuzz_input.hpp"

namespace {

using docflow::fuzz::check;

constexpr std::string_view names[] = {"Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY",
                                      "iDeMpOtEnCy-KeY"};

bool valid_key(std::string_view v) {
  return !v.empty() && v.size() <= 255 &&
         std::all_of(v.begin(), v.end(), [](char c) { return c >= 0x21 && c <= 0x7E; });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  docflow::fuzz::input in(data, size);
  const auto flags = in.byte();
  const bool present = (flags & 1) != 0;
  const bool second = (flags & 2) != 0;
  const auto name = names[(flags >> 2) & 3];

  docflow::http::request req;
  req.fields.add("Content-Type", "application/pdf");
  std::string_view value;
  if (present) {
    value = second ? in.until('\n') : in.rest();
    req.fields.add(std::string(name), std::string(value));
    if (second) req.fields.add("Idempotency-Key", std::string(in.rest()));
  }

  const auto key = docflow::api::idempotency_key(req);
  if (!present) {
    check(key && !*key, "a key without an Idempotency-Key field");
  } else if (valid_key(value)) {
    check(key && *key && **key == value, "a valid key was refused or changed");
  } else {
    check(!key && key.error().code == docflow::core::errc::invalid_request, "an invalid key was not a 400");
  }
  return 0;
}
