#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "core/result.hpp"

namespace docflow::api {

/// Keyset cursors for GET /documents: opaque to clients and tamper-evident
/// (an HMAC over the position), so a forged or edited cursor is a 400.
class cursor_codec {
public:
  /// Derives its own key from `secret` (the server's signing secret); a
  /// cursor made under `previous_secret` (before a rotation) still decodes.
  explicit cursor_codec(std::string_view secret,
                        const std::optional<std::string>& previous_secret = std::nullopt);

  std::string encode(core::time_point created_at, std::string_view id) const;

  /// The position, or nullopt for anything this codec did not produce.
  std::optional<std::pair<core::time_point, std::string>> decode(std::string_view cursor) const;

private:
  std::string key_;
  std::optional<std::string> previous_key_;
};

/// A page fetched with one row more than `page_size` (the extra row tells
/// that another page exists): drops that row and answers the cursor of the
/// next page, or nullopt on the last one. Rows have `created_at` and `id`.
template <class Row>
std::optional<std::string> close_page(std::vector<Row>& rows, std::size_t page_size,
                                      const cursor_codec& cursors) {
  if (rows.size() <= page_size) return std::nullopt;
  rows.resize(page_size);
  return cursors.encode(rows.back().created_at, rows.back().id);
}

/// What a listing's query string asks for: `limit` (1-200, default 50) and
/// `cursor`, a keyset position.
struct page_request {
  std::size_t limit = 50;
  std::optional<std::pair<core::time_point, std::string>> after;
};

/// Reads `limit` and `cursor` from `query`, handing any other parameter to
/// `other` (which records its own field errors). invalid_request for a
/// query, a limit or a cursor that cannot be parsed; invalid_fields for a
/// limit out of range and whatever `other` recorded.
using page_parameter =
    std::function<void(std::string_view key, std::string_view value, std::vector<core::field_error>& errors)>;
core::result<page_request> read_page_request(std::string_view query, const cursor_codec& cursors,
                                             const page_parameter& other = {});

}  // namespace docflow::api
