#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "pipeline/stage.hpp"

namespace docflow::pipeline {

class ocr_engine;

/// Page count, text and Info-dictionary metadata of the PDF `bytes`, with
/// poppler. Pages are read in reading order (as pdftotext does) and joined by
/// '\n'; per_page says what each page's text layer held. With `engine`, the
/// pages `ocr_pages` (0-based, sorted) are drawn at `dpi` and read by OCR
/// instead. Without `engine`, up to `blank_checks` pages without text are
/// drawn small to see whether they are blank (page_info::blank), which spares
/// them OCR, until the first one that is not. Throws stage_error: unreadable_document (permanent) when the
/// file does not load, is encrypted with a password, or has no pages;
/// document_too_complex (permanent) past 2 GiB, which poppler cannot address.
/// Parsing an untrusted PDF can crash or exhaust the process: call it only
/// inside the extraction sandbox (sandbox.hpp), which hands it the file's
/// bytes (the child opens no file).
extraction extract_pdf(std::string_view bytes, ocr_engine* engine = nullptr,
                       const std::vector<int>& ocr_pages = {}, unsigned dpi = 300, unsigned blank_checks = 0);

/// The bounds a DOCX must stay within; all are checked on the central
/// directory before anything is inflated, except max_part_bytes, which caps
/// the bytes actually inflated from each part whatever its declared size.
struct docx_limits {
  std::size_t max_entries = 10000;
  std::uint64_t max_total_size = 256ULL << 20;  ///< sum of declared uncompressed sizes
  std::uint64_t max_ratio = 200;                ///< uncompressed : compressed, per entry...
  std::uint64_t ratio_min_size = 1ULL << 20;    ///< ...larger than this
  std::uint64_t max_part_bytes = 64ULL << 20;   ///< per part read (document, headers, ...)
  std::uint64_t max_directory_bytes = 16ULL << 20;
};

/// Text, core properties and (when docProps/app.xml records it) page count
/// of the DOCX `bytes`, with libzip and pugixml. The text is one line per paragraph of
/// word/document.xml (table cells included), then of the headers and the
/// footers; w:tab is '\t' and w:br '\n'.
/// Throws stage_error: document_too_complex (permanent) when the archive
/// breaks a docx_limits bound or has overlapping entries (a zip bomb);
/// unreadable_document (permanent) for a broken ZIP or XML or a missing
/// word/document.xml.
extraction extract_docx(std::string_view bytes, const docx_limits& limits = {});

/// Loads now what the parsers would otherwise read from disk when first
/// needed, so that they behave the same once the sandbox forbids opening
/// files: glibc's time zone (libzip turns DOS times into time_t with mktime,
/// and glibc looks at /etc/localtime again on every call unless TZ names
/// it), iconv's module cache (poppler converts its strings with iconv),
/// the analysis' own data (prepare_analysis, analyze.hpp), and poppler's
/// global state, kept for the process's life. The extraction child calls it
/// just before lock_down(); a zygote once, before it forks.
void prepare_extractors();

/// W3C-DTF (the dcterms:created format): YYYY, YYYY-MM, YYYY-MM-DD, or a
/// date with hh:mm[:ss[.s+]] and a zone (Z or ±hh:mm). nullopt otherwise.
std::optional<core::time_point> parse_w3cdtf(std::string_view text);

}  // namespace docflow::pipeline
