#include "api/static_assets.hpp"

#include <algorithm>

namespace docflow::api {

const static_asset* find_static_asset(std::string_view path) {
  // A handful of entries: a linear scan beats building an index.
  const auto all = static_assets();
  const auto it = std::find_if(all.begin(), all.end(), [&](const static_asset& a) { return a.path == path; });
  return it == all.end() ? nullptr : &*it;
}

}  // namespace docflow::api
