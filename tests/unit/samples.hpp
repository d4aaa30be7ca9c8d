#pragma once

// Rows the store tests insert, built one way for every suite.

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

}  // namespace docflow::test
