#include "pipeline/docx_probe.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>

#include "pipeline/zip_archive.hpp"

namespace docflow::pipeline {

namespace {

std::uint32_t le16(std::string_view b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8;
}

// The entry count from the end-of-central-directory record (the last 22 to
// 65557 bytes); nullopt when there is none. ZIP64 archives (count 0xFFFF)
// are refused outright: a DOCX never needs one.
std::optional<std::size_t> declared_entries(std::string_view bytes) {
  constexpr std::size_t eocd = 22;
  const auto tail_size = std::min<std::size_t>(bytes.size(), eocd + 0xFFFF);
  if (tail_size < eocd) return std::nullopt;
  const auto tail = bytes.substr(bytes.size() - tail_size);
  for (auto at = tail_size - eocd + 1; at-- > 0;) {
    if (tail.compare(at, 4, "PK\x05\x06", 4) == 0) {
      const auto entries = le16(tail, at + 10);
      if (entries == 0xFFFF) return std::nullopt;
      return entries;
    }
  }
  return std::nullopt;
}

}  // namespace

bool is_docx(std::string_view bytes) {
  const auto entries = declared_entries(bytes);
  if (!entries || *entries == 0 || *entries > max_zip_entries) return false;
  const auto archive = open_zip(bytes);
  if (!archive) return false;
  const auto count = zip_get_num_entries(archive.get(), 0);
  if (count < 0 || static_cast<std::size_t>(count) > max_zip_entries) return false;
  bool content_types = false;
  bool document = false;
  for (zip_int64_t i = 0; i < count; ++i) {
    const char* name = zip_get_name(archive.get(), static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    if (!name) return false;
    const std::string_view n(name);
    if (n.size() > max_zip_name_bytes) return false;
    content_types = content_types || n == "[Content_Types].xml";
    document = document || n == "word/document.xml";
  }
  return content_types && document;
}

}  // namespace docflow::pipeline
