#include "pipeline/docx_probe.hpp"

#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include <zip.h>

namespace docflow::pipeline {

namespace {

std::uint32_t le16(const std::string& b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8;
}

// The entry count from the end-of-central-directory record (the last 22 to
// 65557 bytes); nullopt when there is none. ZIP64 archives (count 0xFFFF)
// are refused outright: a DOCX never needs one.
std::optional<std::size_t> declared_entries(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::size_t>(in.tellg());
  constexpr std::size_t eocd = 22;
  const auto tail = std::min<std::size_t>(size, eocd + 0xFFFF);
  if (tail < eocd) return std::nullopt;
  std::string b(tail, '\0');
  in.seekg(static_cast<std::streamoff>(size - tail));
  in.read(b.data(), static_cast<std::streamsize>(tail));
  if (!in) return std::nullopt;
  for (auto at = tail - eocd + 1; at-- > 0;) {
    if (b.compare(at, 4, "PK\x05\x06", 4) == 0) {
      const auto entries = le16(b, at + 10);
      if (entries == 0xFFFF) return std::nullopt;
      return entries;
    }
  }
  return std::nullopt;
}

struct zip_closer {
  void operator()(zip_t* z) const { zip_discard(z); }
};

}  // namespace

bool is_docx(const std::filesystem::path& path) {
  const auto entries = declared_entries(path);
  if (!entries || *entries == 0 || *entries > max_zip_entries) return false;
  int error = 0;
  const std::unique_ptr<zip_t, zip_closer> archive(
      zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &error));
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
