#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace docflow::http {

/// Bounds on the framing of one multipart/form-data body (spec §3).
struct multipart_limits {
  std::size_t max_parts = 8;
  std::size_t max_part_header_bytes = 8 * 1024;
  std::size_t max_preamble = 16 * 1024;
  std::size_t max_epilogue = 16 * 1024;
};

/// What a part's headers say about it.
struct part_info {
  std::string name;                     ///< Content-Disposition name
  std::optional<std::string> filename;  ///< filename* (RFC 5987) or filename, raw
  std::string content_type;             ///< advisory only
};

enum class multipart_error {
  none,
  bad_boundary_line,  ///< bytes after a boundary that are neither "--" nor CRLF
  malformed_part_header,
  not_form_data,  ///< Content-Disposition missing, not form-data, or without a name
  too_many_parts,
  part_header_too_large,
  preamble_too_large,
  epilogue_too_large,
  missing_final_boundary,
};

/// A sentence for the client, e.g. "the body has more than 8 parts".
std::string describe(multipart_error e, const multipart_limits& limits);

/// Receives the parts in order as the parser finds them.
class multipart_handler {
public:
  virtual ~multipart_handler() = default;
  virtual void on_part_begin(const part_info& part) = 0;
  virtual void on_part_data(std::string_view bytes) = 0;
  virtual void on_part_end() = 0;
};

/// A streaming multipart/form-data parser (RFC 7578, RFC 2046): feed it the
/// body in pieces of any size; it holds at most one piece plus a boundary's
/// length, whatever the size of the parts. No I/O, no allocation per byte.
class multipart_parser {
public:
  multipart_parser(std::string_view boundary, multipart_handler& handler, multipart_limits limits = {});

  /// Parses `bytes`. The first error sticks: later calls return it at once.
  multipart_error feed(std::string_view bytes);

  /// Call at the end of the body: missing_final_boundary unless the closing
  /// boundary was seen.
  multipart_error finish();

  const multipart_limits& limits() const noexcept { return limits_; }

private:
  enum class state { preamble, boundary_line, headers, body, epilogue, failed };

  multipart_error fail(multipart_error e);
  bool step();                                          // one transition; false when more input is needed
  std::string_view body_bytes(std::string_view bytes);  // in a part: returns what follows its end
  multipart_error parse_headers(std::string_view block, part_info& out) const;

  std::string delimiter_;  // CRLF "--" boundary
  multipart_handler& handler_;
  multipart_limits limits_;
  state state_ = state::preamble;
  multipart_error error_ = multipart_error::none;
  std::string buf_;
  std::size_t preamble_seen_ = 0;
  std::size_t epilogue_seen_ = 0;
  std::size_t parts_ = 0;
};

/// The boundary parameter of a multipart/form-data Content-Type, validated
/// against RFC 2046 (1-70 characters of its alphabet). nullopt when the
/// media type is another one or the boundary is missing or invalid.
std::optional<std::string> form_data_boundary(std::string_view content_type);

}  // namespace docflow::http
