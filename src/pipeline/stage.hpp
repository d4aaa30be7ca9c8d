#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/document.hpp"

namespace boost::json {
class array;
class object;
class value;
}  // namespace boost::json

namespace docflow::pipeline {

/// A stage failed; `failure` is in the one taxonomy (docs/api.md): its code,
/// a message safe to show the document's owner, and whether a retry can help.
class stage_error : public std::runtime_error {
public:
  explicit stage_error(core::failure f)
      : std::runtime_error(f.code + ": " + f.message), failure_(std::move(f)) {}
  const core::failure& failure() const noexcept { return failure_; }

private:
  core::failure failure_;
};

/// Document metadata as the file records it.
struct metadata {
  std::optional<std::string> title;
  std::optional<std::string> author;  ///< PDF Author or DOCX dc:creator
  std::optional<core::time_point> created;
};

/// {"title", "author", "created" (RFC 3339)}, each null when unknown: the
/// shape of the stored result's metadata and of the enrich request's.
boost::json::object metadata_json(const metadata& m);

struct keyword {
  std::string term;
  std::size_t count = 0;
};

/// What analysis yields from the text.
struct analysis {
  std::size_t char_count = 0;  ///< Unicode code points
  std::size_t word_count = 0;
  std::size_t line_count = 0;
  std::string language;            ///< BCP 47 ("en", "de", "pt", "zh", "zh-Hant", ...) or "und"
  double language_confidence = 0;  ///< in [0, 1]; 0 for "und"
  std::vector<keyword> keywords;   ///< most frequent first, stop-words removed, at most 10
};

/// Where a page's text came from.
enum class page_source {
  text_layer,  ///< the PDF's own text
  ocr,         ///< recognised from the rendered page or the image
  none,        ///< no text: a blank page, or one OCR was not asked to read
};

/// "text_layer", "ocr", "none".
const char* to_string(page_source s) noexcept;
std::optional<page_source> parse_page_source(std::string_view s) noexcept;

/// One page of a PDF or an image.
struct page_info {
  page_source source = page_source::none;
  std::size_t chars = 0;          ///< non-space characters of the page's text
  std::optional<int> confidence;  ///< Tesseract's mean word confidence (0-100), for OCR only
  /// The page has no text and draws nothing (one colour all over), so OCR
  /// would find nothing: never read by OCR. Judged only when OCR is on, for
  /// pages without text.
  bool blank = false;
};

/// The pages a run read by OCR, for the whole document.
struct ocr_summary {
  int pages = 0;
  double mean_confidence = 0;          ///< mean of the pages' confidences
  std::vector<std::string> languages;  ///< Tesseract's names ("eng", "deu")
};

/// [{"source", "chars", "confidence" (null unless OCR), "blank"}], one per page: the
/// shape of the stored result's page_sources and of the child's answer.
boost::json::array page_sources_json(const std::vector<page_info>& pages);

/// {"pages", "mean_confidence", "languages"} or null.
boost::json::value ocr_json(const std::optional<ocr_summary>& ocr);

/// What extraction yields, analysis of the text included: both run in the
/// sandboxed child, so the server never builds the word counts of a text it
/// did not write (6.25 million distinct words took the server past 1 GB).
struct extraction {
  std::optional<int> pages;  ///< PDF or image page count, or DOCX docProps/app.xml <Pages> when recorded
  std::string text;          ///< UTF-8, paragraphs separated by '\n'; at most the text limit
  bool truncated = false;    ///< the text was longer than the limit and is its beginning
  pipeline::metadata metadata;
  pipeline::analysis analysis;      ///< of the whole text, before any cut
  std::vector<page_info> per_page;  ///< one per page of a PDF or image; empty for DOCX
  std::optional<ocr_summary> ocr;   ///< set when a page was read by OCR
};

/// Everything a job produces, filled in stage by stage.
struct result_data {
  pipeline::extraction extraction;
  std::optional<std::string> ml_json;  ///< the enrich service's answer, as JSON text
};

/// Hears how far a run has got; may throw when the job was lost, as a
/// heartbeat does.
using progress_sink = std::function<void(const core::progress&)>;

/// The input of a run.
struct job_input {
  std::string document_id;
  core::file_kind kind = core::file_kind::pdf;
  std::string sha256;               ///< expected, lowercase hex
  std::filesystem::path file;       ///< a local file holding the stored bytes
  std::function<void()> heartbeat;  ///< call between steps; throws if the job was lost or cancelled
  /// A stage that reads pages one by one (OCR) reports them here; the
  /// caller reports each stage as it starts.
  progress_sink progress;
};

/// One step of processing. Stages are independent and replaceable; the
/// pipeline runs them in order. A stage throws stage_error for the outcomes
/// in the taxonomy; anything else it throws is a bug, reported as transient.
class stage {
public:
  virtual ~stage() = default;
  virtual const char* name() const noexcept = 0;
  virtual void run(const job_input& in, result_data& out) = 0;
};

}  // namespace docflow::pipeline
