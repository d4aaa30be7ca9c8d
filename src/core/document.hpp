#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/errc.hpp"

namespace docflow::core {

/// UPLOADED → PROCESSING → COMPLETED | FAILED, and FAILED → PROCESSING.
enum class status { uploaded, processing, completed, failed };

const char* to_string(status s) noexcept;
/// "UPLOADED" etc.; nullopt for anything else.
std::optional<status> parse_status(std::string_view s) noexcept;

/// The lifecycle: true only for the transitions the spec allows.
bool can_transition(status from, status to) noexcept;

/// A document may be deleted unless it is being processed.
bool can_delete(status s) noexcept;

/// A processing failure, in the one taxonomy shared by API, logs and events.
struct failure {
  /// The name of an errc (core::name). Kept as text because it is stored
  /// and shown: a code written by a newer version is passed on as it is.
  std::string code;
  std::string message;  ///< safe to show the document's owner
  bool retryable = false;

  failure() = default;
  failure(errc c, std::string m, bool r) : code(name(c)), message(std::move(m)), retryable(r) {}
  failure(std::string c, std::string m, bool r) : code(std::move(c)), message(std::move(m)), retryable(r) {}

  bool is(errc c) const noexcept { return code == name(c); }
};

/// The accepted kinds of file, judged by their bytes. The images have no
/// text of their own: OCR reads them.
enum class file_kind { pdf, docx, png, jpeg, tiff };

const char* content_type(file_kind k) noexcept;

/// "pdf", "docx", "png", "jpeg", "tiff": how the kind is stored and how the
/// enrich request names it.
const char* kind_name(file_kind k) noexcept;
/// The inverse of kind_name; nullopt for anything else.
std::optional<file_kind> parse_kind(std::string_view name) noexcept;

/// PNG, JPEG and TIFF.
bool is_image(file_kind k) noexcept;

struct document {
  std::string id;
  std::string owner_id;
  std::string filename;  ///< sanitised client name, for display and downloads only
  std::optional<std::string> title;
  file_kind kind = file_kind::pdf;
  std::uint64_t size_bytes = 0;
  std::string sha256;  ///< lowercase hex
  core::status status = status::uploaded;
  time_point created_at;
  time_point updated_at;
  unsigned attempts = 0;
  std::optional<time_point> started_at;
  std::optional<time_point> finished_at;
  std::optional<failure> error;
  /// While PROCESSING: the stage its worker last reported (progress); unset
  /// before a worker reports one and after every status change.
  std::optional<std::string> stage;
};

/// How far a PROCESSING document's run has got, as its worker reports it:
/// the stage running ("verify", "extract", "ocr", "enrich") and, while OCR
/// reads pages, how many of how many are done.
struct progress {
  std::string stage;
  std::optional<unsigned> pages_done;
  std::optional<unsigned> pages_total;
  bool operator==(const progress&) const = default;
};

/// The client's file name made safe to store and show: the last path
/// component only, control and format characters (Unicode Cf: bidi controls,
/// zero-width characters) and invalid UTF-8 dropped, at most 255
/// bytes: a longer name loses the end of its stem (cut on a character
/// boundary) and keeps its extension. Empty when nothing is left.
std::string sanitize_filename(std::string_view name);

/// The kind a file name claims by its extension (case-insensitive .pdf,
/// .docx, .png, .jpg or .jpeg, .tif or .tiff); nullopt for any other name.
std::optional<file_kind> kind_from_extension(std::string_view filename);

/// What the first bytes say: PDF for "%PDF-", a ZIP local header for a
/// possible DOCX (confirmed later by its central directory), the PNG
/// signature, a JPEG's SOI marker followed by another marker, a TIFF header
/// (either byte order); nullopt otherwise.
std::optional<file_kind> sniff(std::string_view first_bytes);

/// How many first bytes sniff() needs to judge every kind.
inline constexpr std::size_t sniff_bytes = 8;

}  // namespace docflow::core
