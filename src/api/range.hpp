#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

namespace docflow::api {

/// A `Range` header (RFC 9110 §14.2) against a representation of `size`
/// bytes, for GET /documents/{id}/content. Only one "bytes=" range is
/// honoured:
/// - nullopt: serve the whole body (another unit, several ranges, or a
///   syntax we ignore, as RFC 9110 allows);
/// - {first, last} with first <= last < size: serve those bytes (206);
/// - {1, 0} (first > last): the range is unsatisfiable (416).
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_range(std::string_view header,
                                                                   std::uint64_t size);

}  // namespace docflow::api
