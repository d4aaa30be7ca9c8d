#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/sandbox.hpp"
#include "pipeline/stage.hpp"

namespace docflow::pipeline {

/// Re-checks the stored bytes: their SHA-256 must equal in.sha256, and they
/// must still be the kind the upload claimed (a PDF or an image by its
/// magic bytes, core::sniff; a DOCX passes is_docx, which runs in a
/// sandboxed child: is_docx_in_child with `limits`). Throws stage_error: checksum_mismatch (transient:
/// storage may recover) or storage_unavailable (transient) when the file
/// cannot be read; unreadable_document (permanent) for the wrong kind; what
/// is_docx_in_child throws when the check cannot be made.
class verify_stage final : public stage {
public:
  verify_stage(std::filesystem::path self_exe, sandbox_limits limits)
      : self_exe_(std::move(self_exe)), limits_(limits) {}
  const char* name() const noexcept override { return "verify"; }
  void run(const job_input& in, result_data& out) override;

private:
  std::filesystem::path self_exe_;
  sandbox_limits limits_;
};

/// Extracts text and metadata in a sandboxed child (extract_in_child), by
/// running `self_exe extract --task pdf|docx|image`, and reads by OCR the
/// pages `ocr` asks for in a second child. Throws what extract_in_child
/// throws, and whatever in.heartbeat throws when the job was lost.
class extract_stage final : public stage {
public:
  extract_stage(std::filesystem::path self_exe, sandbox_limits limits, ocr_settings ocr)
      : self_exe_(std::move(self_exe)), limits_(limits), ocr_(std::move(ocr)) {}
  const char* name() const noexcept override { return "extract"; }
  void run(const job_input& in, result_data& out) override;

private:
  std::filesystem::path self_exe_;
  sandbox_limits limits_;
  ocr_settings ocr_;
};

/// The pipeline, in order: verify → extract (which reads pages by OCR as
/// `ocr` says, and analyses the text in the same child: counts, language and
/// keywords, analyze()). The one place that
/// says which stages run; an optional enrich stage is appended by the caller.
/// Extraction runs under `limits`; verify's DOCX check under
/// docx_check_limits(limits.strict).
std::vector<std::unique_ptr<stage>> default_stages(const std::filesystem::path& self_exe,
                                                   sandbox_limits limits, const ocr_settings& ocr = {});

/// Lowercase hex SHA-256 of a file's bytes. Throws stage_error
/// storage_unavailable (transient) when it cannot be read.
std::string sha256_file(const std::filesystem::path& file);

}  // namespace docflow::pipeline
