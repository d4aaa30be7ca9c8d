#include "core/document.hpp"

#include <utility>

#include "core/encoding.hpp"

namespace docflow::core {

const char* to_string(status s) noexcept {
  switch (s) {
    case status::uploaded: return "UPLOADED";
    case status::processing: return "PROCESSING";
    case status::completed: return "COMPLETED";
    case status::failed: return "FAILED";
  }
  return "UPLOADED";
}

std::optional<status> parse_status(std::string_view s) noexcept {
  if (s == "UPLOADED") return status::uploaded;
  if (s == "PROCESSING") return status::processing;
  if (s == "COMPLETED") return status::completed;
  if (s == "FAILED") return status::failed;
  return std::nullopt;
}

bool can_transition(status from, status to) noexcept {
  switch (to) {
    // From COMPLETED only when the owner asks for a new run (force).
    case status::processing: return from != status::processing;
    case status::completed:
    case status::failed: return from == status::processing;
    case status::uploaded: return false;
  }
  return false;
}

bool can_delete(status s) noexcept { return s != status::processing; }

const char* content_type(file_kind k) noexcept {
  switch (k) {
    case file_kind::pdf: return "application/pdf";
    case file_kind::docx: return "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
    case file_kind::png: return "image/png";
    case file_kind::jpeg: return "image/jpeg";
    case file_kind::tiff: return "image/tiff";
  }
  return "application/octet-stream";
}

const char* kind_name(file_kind k) noexcept {
  switch (k) {
    case file_kind::pdf: return "pdf";
    case file_kind::docx: return "docx";
    case file_kind::png: return "png";
    case file_kind::jpeg: return "jpeg";
    case file_kind::tiff: return "tiff";
  }
  return "";
}

std::optional<file_kind> parse_kind(std::string_view name) noexcept {
  for (const auto k : {file_kind::pdf, file_kind::docx, file_kind::png, file_kind::jpeg, file_kind::tiff}) {
    if (name == kind_name(k)) return k;
  }
  return std::nullopt;
}

bool is_image(file_kind k) noexcept {
  return k == file_kind::png || k == file_kind::jpeg || k == file_kind::tiff;
}

namespace {

// The code point of the valid UTF-8 sequence of `n` bytes at text[i].
char32_t decode_utf8(std::string_view text, std::size_t i, std::size_t n) noexcept {
  static constexpr unsigned char lead_mask[] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  char32_t c = static_cast<unsigned char>(text[i]) & lead_mask[n];
  for (std::size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
  return c;
}

// Unicode's format characters (general category Cf, Unicode 15): invisible,
// and some reorder what is shown around them (U+202E makes "cod.exe" of
// "exe.doc"), so a name that keeps them can pass for another.
bool is_format_character(char32_t c) noexcept {
  static constexpr std::pair<char32_t, char32_t> ranges[] = {
      {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},   {0x06DD, 0x06DD},   {0x070F, 0x070F},
      {0x0890, 0x0891},   {0x08E2, 0x08E2},   {0x180E, 0x180E},   {0x200B, 0x200F},   {0x202A, 0x202E},
      {0x2060, 0x2064},   {0x2066, 0x206F},   {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD},
      {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
      {0xE0020, 0xE007F},
  };
  for (const auto& [first, last] : ranges) {
    if (c >= first && c <= last) return true;
  }
  return false;
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i) {
    if (ascii_lower(s[s.size() - suffix.size() + i]) != suffix[i]) return false;
  }
  return true;
}
}  // namespace

std::string sanitize_filename(std::string_view name) {
  constexpr std::size_t max_bytes = 255;     // what most file systems allow
  constexpr std::size_t max_extension = 16;  // ".docx" and friends, not a dot deep in a sentence
  // Browsers on Windows may send C:\dir\file.pdf; either separator ends a directory.
  const auto slash = name.find_last_of("/\\");
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  std::string out;
  for (std::size_t i = 0; i < name.size();) {
    const auto n = utf8_sequence_length(name, i);
    if (n == 0) {
      ++i;
      continue;
    }
    const auto c = decode_utf8(name, i, n);
    const bool control = c < 0x20 || (c >= 0x7F && c < 0xA0);  // C0, DEL, C1
    if (!control && !is_format_character(c)) out.append(name.substr(i, n));
    i += n;
  }
  while (!out.empty() && (out.front() == ' ' || out.front() == '.'))
    out.erase(0, 1);  // no hidden or "..": names
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.size() <= max_bytes) return out;
  // Too long: shorten the stem and keep the extension, which decides the
  // file's claimed type. The cut falls on a character boundary.
  const auto dot = out.rfind('.');
  const auto extension_at =
      dot != std::string::npos && dot > 0 && out.size() - dot <= max_extension ? dot : out.size();
  auto cut = max_bytes - (out.size() - extension_at);
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
  out.erase(cut, extension_at - cut);
  return out;
}

std::optional<file_kind> kind_from_extension(std::string_view filename) {
  static constexpr std::pair<std::string_view, file_kind> extensions[] = {
      {".pdf", file_kind::pdf},   {".docx", file_kind::docx}, {".png", file_kind::png},
      {".jpg", file_kind::jpeg},  {".jpeg", file_kind::jpeg}, {".tif", file_kind::tiff},
      {".tiff", file_kind::tiff},
  };
  for (const auto& [extension, kind] : extensions) {
    // A name that is only the extension names no file.
    if (filename.size() > extension.size() && ends_with_ci(filename, extension)) return kind;
  }
  return std::nullopt;
}

std::optional<file_kind> sniff(std::string_view first_bytes) {
  const auto starts = [first_bytes](std::string_view magic) {
    return first_bytes.substr(0, magic.size()) == magic;
  };
  using namespace std::string_view_literals;
  if (starts("%PDF-"sv)) return file_kind::pdf;
  if (starts("PK\x03\x04"sv)) return file_kind::docx;
  if (starts("\x89PNG\r\n\x1a\n"sv)) return file_kind::png;
  if (starts("\xff\xd8\xff"sv)) return file_kind::jpeg;
  if (starts("II*\0"sv) || starts("MM\0*"sv)) return file_kind::tiff;
  return std::nullopt;
}

}  // namespace docflow::core
