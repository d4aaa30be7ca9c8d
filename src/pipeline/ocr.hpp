#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/stage.hpp"

struct Pix;  // leptonica's image

namespace docflow::pipeline {

/// DOCFLOW_OCR: which pages are recognised. `automatic` reads a page by OCR
/// only when its text layer has fewer than ocr_settings::min_page_chars
/// characters (a scan; an image always); `always` reads every page of a PDF
/// or image by OCR; `never` reads none.
enum class ocr_mode { automatic, always, never };

/// "auto", "always", "never".
const char* to_string(ocr_mode m) noexcept;
std::optional<ocr_mode> parse_ocr_mode(std::string_view s) noexcept;

/// How OCR runs: what configuration says (docs/operations.md).
struct ocr_settings {
  ocr_mode mode = ocr_mode::automatic;
  /// Tesseract's language names joined by '+' (DOCFLOW_OCR_LANGUAGES is
  /// comma-separated): "eng", "eng+deu".
  std::string languages = "eng";
  unsigned dpi = 300;  ///< PDF pages are rendered at this resolution
  /// A page whose text layer has fewer non-space characters than this is a
  /// scan to `automatic`.
  std::size_t min_page_chars = 16;
  unsigned max_pages = 100;  ///< pages of one document read by OCR at most; the rest keep their text layer
  /// What one recognised page adds to the child's CPU and wall-clock limits.
  unsigned page_cpu_seconds = 30;
  std::chrono::seconds page_timeout{60};
};

/// The pages a run should read by OCR, given what the text layer gave
/// (page_info::chars), blank pages left out: at most s.max_pages of them, in
/// page order. Empty for `never`, and for a document without pages (DOCX).
std::vector<int> pages_to_recognise(const extraction& e, const ocr_settings& s);

/// Tesseract with its language data loaded: made before the sandbox locks
/// the process down (it reads the traineddata files), used after, on the
/// document's pages only. One per child process.
class ocr_engine {
public:
  /// Throws stage_error extractor_crashed (transient) when a language's
  /// data cannot be loaded (configuration is checked at start-up:
  /// check_ocr_languages).
  explicit ocr_engine(const std::string& languages);
  ~ocr_engine();
  ocr_engine(const ocr_engine&) = delete;
  ocr_engine& operator=(const ocr_engine&) = delete;

  /// The text of an 8-bit greyscale image `width` × `height` with
  /// `bytes_per_line` bytes per row, scanned at `dpi`, and Tesseract's mean
  /// word confidence (0-100).
  struct page {
    std::string text;
    int confidence = 0;
  };
  page recognise(const unsigned char* grey, int width, int height, int bytes_per_line, int dpi);
  /// The same for a leptonica image, at the resolution it records.
  page recognise(Pix* image);

  const std::string& languages() const noexcept { return languages_; }

  /// Called after each page this engine recognises, with how many it has:
  /// how the child reports its progress.
  void on_page_read(std::function<void(unsigned pages_read)> hook) { on_page_read_ = std::move(hook); }

  struct impl;

private:
  page counted(page p);

  std::unique_ptr<impl> impl_;
  std::string languages_;
  std::function<void(unsigned)> on_page_read_;
  unsigned pages_read_ = 0;
};

/// Loads Tesseract and leptonica (at run time: a process that reads no image
/// never pays for them). Call it before the sandbox locks the process down
/// when the task may decode an image or run OCR; the other functions here
/// load them when first needed. Throws stage_error extractor_crashed
/// (transient) when the libraries are missing.
void load_ocr();

/// The languages of `languages` ('+'-separated) whose data Tesseract cannot
/// load on this machine; empty when all load. For start-up checks. Throws
/// as load_ocr().
std::vector<std::string> missing_ocr_languages(const std::string& languages);

/// An image (PNG, JPEG, TIFF with any number of pages). Without `engine`:
/// the page count, and every page without text. With it: `ocr_pages`
/// (0-based, sorted) are recognised; their text, joined by '\n' in page
/// order, is the document's. Images have no metadata of their own.
/// Throws stage_error: unreadable_document (permanent) when the bytes do not
/// decode as an image; document_too_complex (permanent) for a page over
/// max_image_pixels or more than max_image_pages pages. Untrusted input:
/// call it only inside the sandbox, as extract_pdf.
extraction extract_image(std::string_view bytes, ocr_engine* engine = nullptr,
                         const std::vector<int>& ocr_pages = {});

/// Bounds on images: a bigger page or more pages is document_too_complex.
inline constexpr std::uint64_t max_image_pixels = 100'000'000;
inline constexpr int max_image_pages = 10'000;

/// The non-space characters of `text` (a page's, for page_info::chars).
std::size_t non_space_chars(std::string_view text);

/// A recognised page's text as a page of the document: without the blank
/// lines Tesseract puts between blocks and after the last.
std::string page_text(std::string_view recognised);

/// The document-level summary of the pages read by OCR: their count, mean
/// confidence and the languages used; nullopt when none was.
std::optional<ocr_summary> summarise_ocr(const std::vector<page_info>& pages, const std::string& languages);

}  // namespace docflow::pipeline
