#include "pipeline/stages.hpp"

#include <array>
#include <fstream>
#include <memory>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "core/crypto.hpp"
#include "core/encoding.hpp"

namespace docflow::pipeline {

namespace {

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
  if (in.kind == core::file_kind::pdf) {
    std::ifstream f(in.file, std::ios::binary);
    std::array<char, 5> head{};
    f.read(head.data(), head.size());
    right_kind = f.gcount() == 5 && std::string_view(head.data(), head.size()) == "%PDF-";
  } else {
    right_kind = is_docx_in_child(self_exe_, in.file, limits_);
  }
  if (!right_kind) {
    throw stage_error(core::failure{
        core::errc::unreadable_document,
        std::string("the file is not a valid ") + (in.kind == core::file_kind::pdf ? "PDF" : "DOCX"), false});
  }
}

void extract_stage::run(const job_input& in, result_data& out) {
  if (in.heartbeat) in.heartbeat();
  out.extraction = extract_in_child(self_exe_, in.file, in.kind, limits_, in.heartbeat);
}

std::vector<std::unique_ptr<stage>> default_stages(const std::filesystem::path& self_exe,
                                                   sandbox_limits limits) {
  std::vector<std::unique_ptr<stage>> stages;
  stages.push_back(std::make_unique<verify_stage>(self_exe, docx_check_limits(limits.strict)));
  stages.push_back(std::make_unique<extract_stage>(self_exe, limits));
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

}  // namespace docflow::pipeline
