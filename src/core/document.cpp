#include "core/document.hpp"

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
    case status::processing: return from == status::uploaded || from == status::failed;
    case status::completed:
    case status::failed: return from == status::processing;
    case status::uploaded: return false;
  }
  return false;
}

bool can_delete(status s) noexcept { return s != status::processing; }

const char* content_type(file_kind k) noexcept {
  return k == file_kind::pdf ? "application/pdf"
                             : "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
}

namespace {
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
    const auto c = static_cast<unsigned char>(name[i]);
    const bool control = n == 1 && (c < 0x20 || c == 0x7F);
    const bool c1_control = n == 2 && c == 0xC2 && static_cast<unsigned char>(name[i + 1]) < 0xA0;
    if (!control && !c1_control) out.append(name.substr(i, n));
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
  if (ends_with_ci(filename, ".pdf") && filename.size() > 4) return file_kind::pdf;
  if (ends_with_ci(filename, ".docx") && filename.size() > 5) return file_kind::docx;
  return std::nullopt;
}

std::optional<file_kind> sniff(std::string_view first_bytes) {
  if (first_bytes.substr(0, 5) == "%PDF-") return file_kind::pdf;
  if (first_bytes.substr(0, 4) == std::string_view("PK\x03\x04", 4)) return file_kind::docx;
  return std::nullopt;
}

}  // namespace docflow::core
