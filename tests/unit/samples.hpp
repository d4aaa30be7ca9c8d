#pragma once

// Rows and bytes the store tests store, built one way for every suite.

#include <cstdint>
#include <string>

#include "core/clock.hpp"
#include "core/document.hpp"
#include "core/ids.hpp"

namespace docflow::test {

/// A one-byte PDF of `owner`, uploaded at `at`, not yet inserted.
inline core::document sample_document(const std::string& owner, core::time_point at) {
  core::document d;
  d.id = core::new_uuid_v7();
  d.owner_id = owner;
  d.filename = "a.pdf";
  d.sha256 = std::string(64, 'a');
  d.size_bytes = 1;
  d.created_at = d.updated_at = at;
  return d;
}

/// `n` bytes that differ at every offset (xorshift from `seed`), so a
/// misplaced range or a part out of order shows.
inline std::string pattern(std::size_t n, unsigned seed) {
  std::string out(n, '\0');
  std::uint32_t x = 2463534242U + seed;
  for (auto& c : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  return out;
}

}  // namespace docflow::test
