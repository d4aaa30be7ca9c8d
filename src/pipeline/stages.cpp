#include "pipeline/stages.hpp"

#include <array>
#include <fstream>
#include <memory>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace docflow::pipeline {

namespace {

const char* kind_label(core::file_kind k) {
  switch (k) {
    case core::file_kind::pdf: return "PDF";
    case core::file_kind::docx: return "DOCX";
    case core::file_kind::png: return "PNG";
    case core::file_kind::jpeg: return "JPEG";
    case core::file_kind::tiff: return "TIFF";
  }
  return "document";
}

[[noreturn]] void unavailable() {
  throw stage_error(
      core::failure{core::errc::storage_unavailable, "the stored file could not be read", true});
}

}  // namespace

std::string sha256_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) unavailable();
  core::sha256 sha;
  std::array<char, 64 * 1024> buffer;
  while (in) {
    in.read(buffer.data(), buffer.size());
    const auto n = in.gcount();
    if (n > 0) sha.update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
  if (in.bad()) unavailable();
  return sha.hex_final();
}

void verify_stage::run(const job_input& in, result_data&) {
  if (!core::iequals(sha256_file(in.file), in.sha256)) {
    throw stage_error(
        core::failure{core::errc::checksum_mismatch, "the stored file does not match its checksum", true});
  }
  bool right_kind = false;
  if (in.kind == core::file_kind::docx) {
    right_kind = is_docx_in_child(self_exe_, in.file, limits_);
  } else {
    std::ifstream f(in.file, std::ios::binary);
    std::array<char, core::sniff_bytes> head{};
    f.read(head.data(), head.size());
    right_kind = core::sniff(std::string_view(head.data(), static_cast<std::size_t>(f.gcount()))) == in.kind;
  }
  if (!right_kind) {
    throw stage_error(core::failure{core::errc::unreadable_document,
                                    std::string("the file is not a valid ") + kind_label(in.kind), false});
  }
}

void extract_stage::run(const job_input& in, result_data& out) {
  if (in.heartbeat) in.heartbeat();
  out.extraction = extract_in_child(self_exe_, in.file, in.kind, limits_, in.heartbeat, ocr_, in.progress);
}

std::vector<std::unique_ptr<stage>> default_stages(const std::filesystem::path& self_exe,
                                                   sandbox_limits limits, const ocr_settings& ocr) {
  std::vector<std::unique_ptr<stage>> stages;
  stages.push_back(std::make_unique<verify_stage>(self_exe, docx_check_limits(limits.strict)));
  stages.push_back(std::make_unique<extract_stage>(self_exe, limits, ocr));
  return stages;
}

boost::json::object metadata_json(const metadata& m) {
  const auto text = [](const std::optional<std::string>& s) {
    return s ? boost::json::value(*s) : boost::json::value(nullptr);
  };
  return {{"title", text(m.title)},
          {"author", text(m.author)},
          {"created",
           m.created ? boost::json::value(core::format_rfc3339(*m.created)) : boost::json::value(nullptr)}};
}

const char* to_string(page_source s) noexcept {
  switch (s) {
    case page_source::text_layer: return "text_layer";
    case page_source::ocr: return "ocr";
    case page_source::none: return "none";
  }
  return "";
}

std::optional<page_source> parse_page_source(std::string_view s) noexcept {
  for (const auto p : {page_source::text_layer, page_source::ocr, page_source::none}) {
    if (s == to_string(p)) return p;
  }
  return std::nullopt;
}

boost::json::array page_sources_json(const std::vector<page_info>& pages) {
  boost::json::array out;
  out.reserve(pages.size());
  for (const auto& p : pages) {
    out.push_back(boost::json::object{
        {"source", to_string(p.source)},
        {"chars", p.chars},
        {"confidence", p.confidence ? boost::json::value(*p.confidence) : boost::json::value(nullptr)},
        {"blank", p.blank}});
  }
  return out;
}

boost::json::value ocr_json(const std::optional<ocr_summary>& ocr) {
  if (!ocr) return nullptr;
  boost::json::array languages;
  for (const auto& l : ocr->languages) languages.emplace_back(l);
  return boost::json::object{
      {"pages", ocr->pages}, {"mean_confidence", ocr->mean_confidence}, {"languages", std::move(languages)}};
}

}  // namespace docflow::pipeline
