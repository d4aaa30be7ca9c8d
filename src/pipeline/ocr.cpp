#include "pipeline/ocr.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <mutex>
#include <utility>

#include <leptonica/allheaders.h>
#include <tesseract/capi.h>

namespace docflow::pipeline {

namespace {

[[noreturn]] void fail(core::errc code, std::string message, bool retryable = false) {
  throw stage_error(core::failure{code, std::move(message), retryable});
}

// Tesseract and leptonica are loaded at run time, by the processes that
// read images or pages by OCR and by no other. Linked in, they would be set
// up in every extraction child: Tesseract's static set-up alone cost a text
// PDF's extraction 7 ms of its 66 ms of CPU (bench/README.md, "OCR"). The
// names are the sonames of Debian bookworm's libtesseract5 and liblept5.
constexpr const char* tesseract_library = "libtesseract.so.5";
constexpr const char* leptonica_library = "liblept.so.5";

#define DOCFLOW_OCR_FUNCTIONS(X)               \
  X(tesseract, TessBaseAPICreate)              \
  X(tesseract, TessBaseAPIDelete)              \
  X(tesseract, TessBaseAPIInit4)               \
  X(tesseract, TessBaseAPISetImage)            \
  X(tesseract, TessBaseAPISetImage2)           \
  X(tesseract, TessBaseAPISetSourceResolution) \
  X(tesseract, TessBaseAPIGetUTF8Text)         \
  X(tesseract, TessBaseAPIMeanTextConf)        \
  X(tesseract, TessBaseAPIClear)               \
  X(tesseract, TessBaseAPIEnd)                 \
  X(tesseract, TessDeleteText)                 \
  X(leptonica, findFileFormatBuffer)           \
  X(leptonica, tiffGetCount)                   \
  X(leptonica, readHeaderMemTiff)              \
  X(leptonica, pixReadHeaderMem)               \
  X(leptonica, pixReadMemTiff)                 \
  X(leptonica, pixReadMem)                     \
  X(leptonica, pixDestroy)                     \
  X(leptonica, pixClone)                       \
  X(leptonica, pixConvertTo8)                  \
  X(leptonica, pixGetDepth)                    \
  X(leptonica, pixGetColormap)                 \
  X(leptonica, pixGetWidth)                    \
  X(leptonica, pixGetHeight)                   \
  X(leptonica, pixGetXRes)                     \
  X(leptonica, pixSetResolution)

struct ocr_library {
// A member named as the function it points to: no parentheses possible.
#define DOCFLOW_OCR_POINTER(library, name) \
  decltype(&::name) name = nullptr;  // NOLINT(bugprone-macro-parentheses)
  DOCFLOW_OCR_FUNCTIONS(DOCFLOW_OCR_POINTER)
#undef DOCFLOW_OCR_POINTER
};

// Loads both libraries once, every symbol bound now (RTLD_NOW): after the
// sandbox locks the process down, nothing may be left to resolve from disk.
const ocr_library& ocr() {
  static ocr_library lib;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    void* tesseract = ::dlopen(tesseract_library, RTLD_NOW | RTLD_LOCAL);
    void* leptonica = tesseract ? ::dlopen(leptonica_library, RTLD_NOW | RTLD_LOCAL) : nullptr;
    if (!tesseract || !leptonica) {
      error = ::dlerror();
      return;
    }
#define DOCFLOW_OCR_BIND(library, name)                                     \
  lib.name = reinterpret_cast<decltype(lib.name)>(::dlsym(library, #name)); \
  if (!lib.name) error = std::string("no ") + #name + " in the OCR libraries";
    DOCFLOW_OCR_FUNCTIONS(DOCFLOW_OCR_BIND)
#undef DOCFLOW_OCR_BIND
  });
  if (!error.empty()) fail(core::errc::extractor_crashed, "OCR is not available: " + error, true);
  return lib;
}

struct pix_deleter {
  void operator()(Pix* p) const { ocr().pixDestroy(&p); }
};
using pix_ptr = std::unique_ptr<Pix, pix_deleter>;

const auto* as_bytes(std::string_view s) { return reinterpret_cast<const l_uint8*>(s.data()); }

bool is_tiff(l_int32 format) { return L_FORMAT_IS_TIFF(format); }

// The number of pages of a TIFF; 1 for the other formats.
int image_pages(std::string_view bytes, l_int32 format) {
  if (!is_tiff(format)) return 1;
  // fmemopen reads the bytes in place: no file, no system call.
  const std::unique_ptr<FILE, int (*)(FILE*)> f(
      ::fmemopen(const_cast<char*>(bytes.data()), bytes.size(), "rb"), &std::fclose);
  l_int32 n = 0;
  if (!f || ocr().tiffGetCount(f.get(), &n) != 0 || n <= 0) {
    fail(core::errc::unreadable_document, "the TIFF could not be read");
  }
  if (n > max_image_pages) {
    fail(core::errc::document_too_complex,
         "the TIFF has more than " + std::to_string(max_image_pages) + " pages");
  }
  return n;
}

[[noreturn]] void too_many_pixels() {
  fail(core::errc::document_too_complex,
       "the image has more than " + std::to_string(max_image_pixels) + " pixels");
}

bool too_large(std::uint64_t width, std::uint64_t height) { return width * height > max_image_pixels; }

// Page `index` of the image, as 8-bit grey (what Tesseract thresholds).
// Its size is judged from its header before a pixel is decoded.
pix_ptr read_page(std::string_view bytes, l_int32 format, int index) {
  const auto& lib = ocr();
  const auto* data = as_bytes(bytes);
  l_int32 w = 0, h = 0, bps = 0, spp = 0;
  const bool header =
      is_tiff(format) ? lib.readHeaderMemTiff(data, bytes.size(), index, &w, &h, &bps, &spp, nullptr, nullptr,
                                              nullptr) == 0
                      : lib.pixReadHeaderMem(data, bytes.size(), nullptr, &w, &h, &bps, &spp, nullptr) == 0;
  if (!header) fail(core::errc::unreadable_document, "the image could not be decoded");
  if (too_large(static_cast<std::uint64_t>(w), static_cast<std::uint64_t>(h))) too_many_pixels();
  pix_ptr pix(is_tiff(format) ? lib.pixReadMemTiff(data, bytes.size(), index)
                              : lib.pixReadMem(data, bytes.size()));
  if (!pix) fail(core::errc::unreadable_document, "the image could not be decoded");
  if (too_large(static_cast<std::uint64_t>(lib.pixGetWidth(pix.get())),
                static_cast<std::uint64_t>(lib.pixGetHeight(pix.get())))) {
    too_many_pixels();
  }
  pix_ptr grey(lib.pixGetDepth(pix.get()) == 8 && !lib.pixGetColormap(pix.get())
                   ? lib.pixClone(pix.get())
                   : lib.pixConvertTo8(pix.get(), 0));
  if (!grey) fail(core::errc::document_too_complex, "the image needs more memory than extraction allows");
  // A scan that does not say its resolution is most likely 300 dpi; without
  // one, Tesseract guesses 70 and misjudges the size of the text.
  if (lib.pixGetXRes(grey.get()) < 70) lib.pixSetResolution(grey.get(), 300, 300);
  return grey;
}

}  // namespace

std::size_t non_space_chars(std::string_view text) {
  std::size_t n = 0;
  for (const char c : text) {
    // A UTF-8 continuation byte is part of the character before it.
    const auto b = static_cast<unsigned char>(c);
    if (b > ' ' && (b & 0xC0) != 0x80) ++n;
  }
  return n;
}

std::string page_text(std::string_view recognised) {
  std::string out;
  out.reserve(recognised.size());
  std::size_t at = 0;
  while (at < recognised.size()) {
    auto end = recognised.find('\n', at);
    if (end == std::string_view::npos) end = recognised.size();
    const auto line = recognised.substr(at, end - at);
    if (non_space_chars(line) > 0) {
      if (!out.empty()) out += '\n';
      out += line;
    }
    at = end + 1;
  }
  return out;
}

const char* to_string(ocr_mode m) noexcept {
  switch (m) {
    case ocr_mode::automatic: return "auto";
    case ocr_mode::always: return "always";
    case ocr_mode::never: return "never";
  }
  return "";
}

std::optional<ocr_mode> parse_ocr_mode(std::string_view s) noexcept {
  for (const auto m : {ocr_mode::automatic, ocr_mode::always, ocr_mode::never}) {
    if (s == to_string(m)) return m;
  }
  return std::nullopt;
}

std::vector<int> pages_to_recognise(const extraction& e, const ocr_settings& s) {
  std::vector<int> pages;
  if (s.mode == ocr_mode::never) return pages;
  for (std::size_t i = 0; i < e.per_page.size() && pages.size() < s.max_pages; ++i) {
    if (e.per_page[i].blank) continue;
    if (s.mode == ocr_mode::always || e.per_page[i].chars < s.min_page_chars)
      pages.push_back(static_cast<int>(i));
  }
  return pages;
}

namespace {

// "eng+deu" as {"eng", "deu"}.
std::vector<std::string> language_list(const std::string& languages) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at <= languages.size();) {
    const auto plus = std::min(languages.find('+', at), languages.size());
    if (plus > at) out.push_back(languages.substr(at, plus - at));
    at = plus + 1;
  }
  return out;
}

}  // namespace

std::optional<ocr_summary> summarise_ocr(const std::vector<page_info>& pages, const std::string& languages) {
  ocr_summary summary;
  double total = 0;
  for (const auto& p : pages) {
    if (p.source != page_source::ocr) continue;
    ++summary.pages;
    total += p.confidence.value_or(0);
  }
  if (summary.pages == 0) return std::nullopt;
  summary.mean_confidence = total / summary.pages;
  summary.languages = language_list(languages);
  return summary;
}

void load_ocr() { (void)ocr(); }

// One TessBaseAPI, ended and freed on every way out.
struct ocr_engine::impl {
  impl() : api(ocr().TessBaseAPICreate()) {}
  ~impl() {
    ocr().TessBaseAPIEnd(api);
    ocr().TessBaseAPIDelete(api);
  }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  // The LSTM engine alone: Debian's language data has no legacy models. A
  // missing file is explained on stderr unless `quiet`.
  bool init(const std::string& languages, bool quiet) const {
    char debug_file[] = "debug_file";
    char nowhere[] = "/dev/null";
    char* names[] = {debug_file};
    char* values[] = {nowhere};
    return ocr().TessBaseAPIInit4(api, nullptr, languages.c_str(), tesseract::OEM_LSTM_ONLY, nullptr, 0,
                                  names, values, quiet ? 1 : 0, 0) == 0;
  }

  TessBaseAPI* api;
};

ocr_engine::ocr_engine(const std::string& languages)
    : impl_(std::make_unique<impl>()), languages_(languages) {
  if (!impl_->init(languages, false)) {
    fail(core::errc::extractor_crashed, "the OCR languages '" + languages + "' could not be loaded", true);
  }
}

ocr_engine::~ocr_engine() = default;

namespace {

ocr_engine::page read_text(TessBaseAPI* api) {
  const auto& lib = ocr();
  const std::unique_ptr<char, void (*)(const char*)> text(lib.TessBaseAPIGetUTF8Text(api),
                                                          lib.TessDeleteText);
  ocr_engine::page out;
  if (text) out.text = page_text(text.get());
  // Tesseract's confidence of nothing recognised is 0, as it should be.
  out.confidence = out.text.empty() ? 0 : lib.TessBaseAPIMeanTextConf(api);
  lib.TessBaseAPIClear(api);
  return out;
}

}  // namespace

ocr_engine::page ocr_engine::recognise(const unsigned char* grey, int width, int height, int bytes_per_line,
                                       int dpi) {
  ocr().TessBaseAPISetImage(impl_->api, grey, width, height, 1, bytes_per_line);
  ocr().TessBaseAPISetSourceResolution(impl_->api, dpi);
  return counted(read_text(impl_->api));
}

ocr_engine::page ocr_engine::recognise(Pix* image) {
  ocr().TessBaseAPISetImage2(impl_->api, image);
  return counted(read_text(impl_->api));
}

ocr_engine::page ocr_engine::counted(page p) {
  ++pages_read_;
  if (on_page_read_) on_page_read_(pages_read_);
  return p;
}

std::vector<std::string> missing_ocr_languages(const std::string& languages) {
  std::vector<std::string> missing;
  // Tesseract explains a missing file on stderr; the caller says it better.
  for (const auto& language : language_list(languages)) {
    if (!ocr_engine::impl().init(language, true)) missing.push_back(language);
  }
  return missing;
}

extraction extract_image(std::string_view bytes, ocr_engine* engine, const std::vector<int>& ocr_pages) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    fail(core::errc::document_too_complex, "the image is larger than 2 GiB");
  }
  l_int32 format = IFF_UNKNOWN;
  // findFileFormatBuffer reads 12 bytes whatever the buffer's size.
  if (bytes.size() < 12 || ocr().findFileFormatBuffer(as_bytes(bytes), &format) != 0 ||
      format == IFF_UNKNOWN) {
    fail(core::errc::unreadable_document, "the image could not be decoded");
  }
  const int pages = image_pages(bytes, format);
  extraction out;
  out.pages = pages;
  out.per_page.resize(static_cast<std::size_t>(pages));
  for (int i = 0; i < pages; ++i) {
    if (i > 0) out.text += '\n';  // as a PDF's pages, empty ones included
    if (!engine || !std::binary_search(ocr_pages.begin(), ocr_pages.end(), i)) continue;
    const auto grey = read_page(bytes, format, i);
    auto page = engine->recognise(grey.get());
    auto& info = out.per_page[static_cast<std::size_t>(i)];
    info = {page_source::ocr, non_space_chars(page.text), page.confidence};
    out.text += page.text;
  }
  if (engine) out.ocr = summarise_ocr(out.per_page, engine->languages());
  return out;
}

}  // namespace docflow::pipeline
