#include "pipeline/extract.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-image.h>
#include <poppler/cpp/poppler-page-renderer.h>
#include <poppler/cpp/poppler-page.h>
#include <pugixml.hpp>

#include "pipeline/analyze.hpp"
#include "pipeline/ocr.hpp"
#include "pipeline/zip_archive.hpp"

namespace docflow::pipeline {

namespace {

[[noreturn]] void fail(core::errc code, std::string message) {
  throw stage_error(core::failure{code, std::move(message), false});
}
[[noreturn]] void unreadable(std::string message) {
  fail(core::errc::unreadable_document, std::move(message));
}
[[noreturn]] void too_complex(std::string message) {
  fail(core::errc::document_too_complex, std::move(message));
}

std::optional<std::string> non_empty(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return std::nullopt;
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

// ---------------------------------------------------------------------------
// PDF

std::string utf8(const poppler::ustring& s) {
  const auto bytes = s.to_utf8();
  return std::string(bytes.begin(), bytes.end());
}

// Poppler reports every syntax error of a broken file on stderr; the outcome
// is what matters to us, so the chatter is dropped.
void quiet_poppler() {
  static const bool once = [] {
    poppler::set_debug_error_function([](const std::string&, void*) {}, nullptr);
    return true;
  }();
  (void)once;
}

}  // namespace

void prepare_extractors() {
  quiet_poppler();
  // ":" + a path names the zone file, which glibc then reads once, now.
  ::setenv("TZ", ":/etc/localtime", 0);
  ::tzset();
  (void)poppler::ustring::from_latin1("docflow").to_utf8();
  // Poppler builds its global state (font tables, colour management) with
  // the first document and drops it with the last: one kept open keeps it,
  // so a zygote builds it once for every child it forks.
  static constexpr std::string_view one_page =
      "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count "
      "1>>endobj\n"
      "3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 1 1]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";
  static const std::unique_ptr<poppler::document> kept(
      poppler::document::load_from_raw_data(one_page.data(), static_cast<int>(one_page.size())));
  // The analysis of the text, which the child runs after extraction.
  prepare_analysis();
}

namespace {

// `dpi`, or less when the page drawn at `dpi` would pass `max_pixels` (a
// poster-sized page).
double fitting_dpi(const poppler::page& page, double dpi, double max_pixels) {
  const auto box = page.page_rect(poppler::media_box);
  const double inches = (box.width() / 72.0) * (box.height() / 72.0);
  return inches * dpi * dpi > max_pixels ? std::sqrt(max_pixels / inches) : dpi;
}

poppler::image render_gray(const poppler::page& page, double dpi) {
  poppler::page_renderer renderer;
  renderer.set_image_format(poppler::image::format_gray8);
  renderer.set_render_hints(poppler::page_renderer::antialiasing | poppler::page_renderer::text_antialiasing);
  return renderer.render_page(&page, dpi, dpi);
}

ocr_engine::page recognise_page(const poppler::page& page, ocr_engine& engine, unsigned dpi) {
  const double resolution = fitting_dpi(page, dpi, static_cast<double>(max_image_pixels));
  const auto image = render_gray(page, resolution);
  if (!image.is_valid()) return {};  // nothing drawable: a page without text
  return engine.recognise(reinterpret_cast<const unsigned char*>(image.const_data()), image.width(),
                          image.height(), image.bytes_per_row(), static_cast<int>(resolution));
}

// Whether the page, drawn at 36 dpi (a pixel is 2 points: any glyph of a
// readable size still darkens one), is a single grey all over. Costs about
// what decoding the page's images costs; a scan with any speck is not blank.
bool draws_nothing(const poppler::page& page) {
  const auto image = render_gray(page, fitting_dpi(page, 36, 4e6));
  if (!image.is_valid()) return true;
  const auto* row = reinterpret_cast<const unsigned char*>(image.const_data());
  const unsigned char first = row[0];
  for (int y = 0; y < image.height(); ++y, row += image.bytes_per_row()) {
    for (int x = 0; x < image.width(); ++x) {
      if (row[x] != first) return false;
    }
  }
  return true;
}

}  // namespace

extraction extract_pdf(std::string_view bytes, ocr_engine* engine, const std::vector<int>& ocr_pages,
                       unsigned dpi, unsigned blank_checks) {
  quiet_poppler();
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    too_complex("the PDF is larger than 2 GiB");
  }
  // Poppler reads the bytes in place, without a copy.
  const std::unique_ptr<poppler::document> doc(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!doc) unreadable("the PDF could not be parsed");
  // Locked means a user password is needed to read the content. A file
  // encrypted only with an owner password opens in every viewer, so do we.
  if (doc->is_locked()) unreadable("the PDF is encrypted with a password");
  const int pages = doc->pages();
  if (pages <= 0) unreadable("the PDF has no pages");

  extraction out;
  out.pages = pages;
  out.per_page.resize(static_cast<std::size_t>(pages));
  for (int i = 0; i < pages; ++i) {
    if (i > 0) out.text += '\n';
    const std::unique_ptr<poppler::page> page(doc->create_page(i));
    if (!page) continue;  // a broken page yields no text; the others still count
    auto& info = out.per_page[static_cast<std::size_t>(i)];
    if (engine && std::binary_search(ocr_pages.begin(), ocr_pages.end(), i)) {
      auto read = recognise_page(*page, *engine, dpi);
      info = {page_source::ocr, non_space_chars(read.text), read.confidence};
      out.text += read.text;
      continue;
    }
    // Reading order, the layout pdftotext uses without -layout: the physical
    // layout pads columns with runs of spaces.
    auto text = utf8(page->text(poppler::rectf(), poppler::page::non_raw_non_physical_layout));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\f')) text.pop_back();
    info.chars = non_space_chars(text);
    info.source = info.chars > 0 ? page_source::text_layer : page_source::none;
    // Worth it only while no page needs OCR: once one does, Tesseract's
    // set-up is paid, a blank page costs it little, and drawing every page
    // of a long scan twice would cost more.
    if (info.chars == 0 && blank_checks > 0) {
      --blank_checks;
      info.blank = draws_nothing(*page);
      if (!info.blank) blank_checks = 0;
    }
    out.text += text;
  }
  if (engine) out.ocr = summarise_ocr(out.per_page, engine->languages());
  out.metadata.title = non_empty(utf8(doc->info_key("Title")));
  out.metadata.author = non_empty(utf8(doc->info_key("Author")));
  // -1 when absent or malformed; 0 is what broken producers write for "unknown".
  if (const auto created = doc->info_date_t("CreationDate"); created > 0) {
    out.metadata.created = std::chrono::system_clock::from_time_t(created);
  }
  return out;
}

// ---------------------------------------------------------------------------
// DOCX: the central directory, read and bounded before libzip inflates a byte

namespace {

std::uint32_t le16(std::string_view b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8;
}
std::uint32_t le32(std::string_view b, std::size_t at) { return le16(b, at) | le16(b, at + 2) << 16; }

struct zip_entry {
  std::string name;
  std::uint64_t size = 0;       // declared uncompressed
  std::uint64_t comp_size = 0;  // declared compressed
  std::uint64_t offset = 0;     // of the local header
};

// Exactly `n` bytes of `b` at `at`; nullopt when `b` is shorter. Every read
// of the archive goes through here, so a lying offset cannot reach past it.
std::optional<std::string_view> slice(std::string_view b, std::uint64_t at, std::uint64_t n) {
  if (at > b.size() || n > b.size() - at) return std::nullopt;
  return b.substr(static_cast<std::size_t>(at), static_cast<std::size_t>(n));
}

constexpr std::size_t eocd_size = 22;
constexpr std::size_t cdh_size = 46;  // central directory file header, without its variable parts
constexpr std::size_t lfh_size = 30;  // local file header, likewise
constexpr std::uint32_t zip64_mark = 0xFFFFFFFF;

struct zip_directory {
  std::vector<zip_entry> entries;
  std::uint64_t offset = 0;  // where entry data must end
};

// Parses the central directory ourselves: libzip does not expose where each
// entry's local header lies, and the overlap check needs exactly that.
zip_directory read_directory(std::string_view zip, const docx_limits& limits) {
  const auto tail_size = std::min<std::uint64_t>(zip.size(), eocd_size + 0xFFFF);
  if (tail_size < eocd_size) unreadable("the DOCX is not a ZIP archive");
  const auto tail = slice(zip, zip.size() - tail_size, tail_size);
  if (!tail) unreadable("the DOCX could not be read");
  std::optional<std::size_t> eocd;
  for (auto at = tail->size() - eocd_size + 1; at-- > 0;) {
    if (tail->compare(at, 4, "PK\x05\x06", 4) == 0) {
      eocd = at;
      break;
    }
  }
  if (!eocd) unreadable("the DOCX is not a ZIP archive");
  const std::string_view e(*tail);
  const auto disk = le16(e, *eocd + 4);
  const auto directory_disk = le16(e, *eocd + 6);
  const auto entries = le16(e, *eocd + 10);
  const auto directory_size = le32(e, *eocd + 12);
  const auto directory_offset = le32(e, *eocd + 16);
  // ZIP64 exists for archives past 65535 entries or 4 GiB: never a DOCX.
  if (entries == 0xFFFF || directory_size == zip64_mark || directory_offset == zip64_mark) {
    too_complex("the DOCX is a ZIP64 archive");
  }
  if (entries > limits.max_entries) too_complex("the DOCX has too many entries");
  if (disk != 0 || directory_disk != 0) unreadable("the DOCX is a multi-part ZIP archive");
  if (directory_size > limits.max_directory_bytes) too_complex("the DOCX directory is too large");
  const auto eocd_offset = zip.size() - tail_size + *eocd;
  if (std::uint64_t{directory_offset} + directory_size > eocd_offset)
    unreadable("the DOCX directory is corrupt");
  const auto directory = slice(zip, directory_offset, directory_size);
  if (!directory) unreadable("the DOCX directory is corrupt");

  const std::string_view d(*directory);
  zip_directory out;
  out.offset = directory_offset;
  out.entries.reserve(entries);
  std::size_t at = 0;
  for (std::uint32_t i = 0; i < entries; ++i) {
    if (d.size() - at < cdh_size || d.compare(at, 4, "PK\x01\x02", 4) != 0) {
      unreadable("the DOCX directory is corrupt");
    }
    zip_entry entry;
    entry.comp_size = le32(d, at + 20);
    entry.size = le32(d, at + 24);
    entry.offset = le32(d, at + 42);
    const auto name_len = le16(d, at + 28);
    const auto variable = std::size_t{name_len} + le16(d, at + 30) + le16(d, at + 32);
    if (entry.comp_size == zip64_mark || entry.size == zip64_mark || entry.offset == zip64_mark) {
      too_complex("the DOCX is a ZIP64 archive");
    }
    if (d.size() - at - cdh_size < variable) unreadable("the DOCX directory is corrupt");
    entry.name.assign(d.substr(at + cdh_size, name_len));
    out.entries.push_back(std::move(entry));
    at += cdh_size + variable;
  }
  return out;
}

// The zip-bomb checks, all on declared sizes and offsets: nothing has been
// inflated yet. Overlap is what the "non-recursive" bombs use: many entries
// whose data all point into one shared compressed kernel.
void check_bounds(std::string_view zip, const zip_directory& directory, const docx_limits& limits) {
  const auto& entries = directory.entries;
  std::uint64_t total = 0;
  for (const auto& e : entries) {
    total += e.size;
    if (total > limits.max_total_size) too_complex("the DOCX inflates to too many bytes");
    if (e.size > limits.ratio_min_size && e.size > e.comp_size * limits.max_ratio) {
      too_complex("a DOCX part is compressed suspiciously well");
    }
  }
  struct span {
    std::uint64_t begin, end;
  };
  std::vector<span> spans;
  spans.reserve(entries.size());
  for (const auto& e : entries) {
    const auto header = slice(zip, e.offset, lfh_size);
    if (!header || header->compare(0, 4, "PK\x03\x04", 4) != 0) unreadable("a DOCX entry is corrupt");
    const auto end = e.offset + lfh_size + le16(*header, 26) + le16(*header, 28) + e.comp_size;
    if (end > directory.offset) too_complex("a DOCX entry overlaps the directory");
    spans.push_back({e.offset, end});
  }
  std::sort(spans.begin(), spans.end(), [](const span& a, const span& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end) too_complex("DOCX entries overlap");
  }
}

// ---------------------------------------------------------------------------
// DOCX: reading parts with a hard cap, whatever their declared sizes

struct zip_file_closer {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

class part_reader {
public:
  part_reader(std::string_view zip, const docx_limits& limits) : limits_(limits), archive_(open_zip(zip)) {
    if (!archive_) unreadable("the DOCX is not a valid ZIP archive");
  }

  zip_t* archive() const { return archive_.get(); }

  // The inflated bytes of `name`; nullopt when there is no such entry.
  std::optional<std::string> read(const std::string& name) {
    const auto index = zip_name_locate(archive_.get(), name.c_str(), 0);
    if (index < 0) return std::nullopt;
    const std::unique_ptr<zip_file_t, zip_file_closer> file(
        zip_fopen_index(archive_.get(), static_cast<zip_uint64_t>(index), 0));
    if (!file) unreadable("a DOCX part could not be opened");
    std::string out;
    char chunk[64 * 1024];
    for (;;) {
      const auto n = zip_fread(file.get(), chunk, sizeof chunk);
      if (n < 0) unreadable("a DOCX part is corrupt");
      if (n == 0) break;
      out.append(chunk, static_cast<std::size_t>(n));
      read_total_ += static_cast<std::uint64_t>(n);
      if (out.size() > limits_.max_part_bytes || read_total_ > limits_.max_total_size) {
        too_complex("a DOCX part inflates to too many bytes");
      }
    }
    return out;
  }

private:
  const docx_limits& limits_;
  zip_archive archive_;
  std::uint64_t read_total_ = 0;
};

// ---------------------------------------------------------------------------
// DOCX: XML

constexpr std::string_view wordml_ns = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
constexpr std::string_view markup_compatibility_ns =
    "http://schemas.openxmlformats.org/markup-compatibility/2006";
constexpr std::string_view dc_ns = "http://purl.org/dc/elements/1.1/";
constexpr std::string_view dcterms_ns = "http://purl.org/dc/terms/";
constexpr std::string_view app_ns =
    "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties";

// pugixml keeps whitespace-only text only when asked, and <w:t> " " </w:t>
// is how Word writes the space between two runs. DOCTYPEs are skipped, never
// expanded, so entity bombs and external entities do nothing.
constexpr unsigned xml_options = pugi::parse_default | pugi::parse_ws_pcdata;

void parse_xml(pugi::xml_document& doc, const std::string& bytes, const char* part) {
  if (!doc.load_buffer(bytes.data(), bytes.size(), xml_options)) {
    unreadable(std::string(part) + " is not well-formed XML");
  }
}

// pugixml does not resolve namespaces: find the prefix the root binds to
// `uri` (Word uses "w", but any prefix is legal) and qualify names with it.
class qualified_names {
public:
  qualified_names(pugi::xml_node root, std::string_view uri, std::string_view fallback) : prefix_(fallback) {
    for (const auto attr : root.attributes()) {
      const std::string_view name = attr.name();
      if (uri != attr.value()) continue;
      if (name == "xmlns") {
        prefix_.clear();
        break;
      }
      if (name.starts_with("xmlns:")) {
        prefix_ = name.substr(6);
        break;
      }
    }
  }
  std::string operator()(std::string_view local) const {
    return prefix_.empty() ? std::string(local) : prefix_ + ":" + std::string(local);
  }

private:
  std::string prefix_;
};

// Appends one line per paragraph of `root`'s subtree. The walk is iterative:
// a hostile part nests elements deep enough to overflow a recursive one.
void collect_paragraphs(pugi::xml_node root, std::vector<std::string>& lines) {
  const qualified_names w(root, wordml_ns, "w");
  const auto p = w("p"), t = w("t"), r = w("r"), tab = w("tab"), br = w("br"), cr = w("cr"),
             hyphen = w("noBreakHyphen");
  const auto fallback = qualified_names(root, markup_compatibility_ns, "mc")("Fallback");
  // Paragraphs nest (text boxes hold paragraphs inside a run), so each open
  // one has its own line.
  std::vector<std::string> open;
  // Returns whether to descend into `n`.
  const auto on_enter = [&](pugi::xml_node n) {
    if (n.type() == pugi::node_pcdata || n.type() == pugi::node_cdata) {
      if (!open.empty() && n.parent().name() == t) open.back() += n.value();
      return false;
    }
    if (n.type() != pugi::node_element) return false;
    const std::string_view name = n.name();
    // Word writes a text box twice, as DrawingML (mc:Choice) and as VML
    // (mc:Fallback) for old readers; reading both would double its text.
    if (name == fallback) return false;
    if (name == p) {
      open.emplace_back();
    } else if (!open.empty() && n.parent().name() == r) {
      // Only inside a run: <w:tabs><w:tab/> in paragraph properties are tab stops.
      if (name == tab) open.back() += '\t';
      if (name == br || name == cr) open.back() += '\n';
      if (name == hyphen) open.back() += '-';
    }
    return true;
  };
  const auto on_leave = [&](pugi::xml_node n) {
    if (n.type() == pugi::node_element && n.name() == p && !open.empty()) {
      lines.push_back(std::move(open.back()));
      open.pop_back();
    }
  };
  pugi::xml_node n = root.first_child();
  while (n) {
    const bool descend = on_enter(n);
    if (const auto child = n.first_child(); descend && child) {
      n = child;
      continue;
    }
    for (;;) {
      on_leave(n);
      if (const auto next = n.next_sibling()) {
        n = next;
        break;
      }
      n = n.parent();
      if (n == root) {
        n = pugi::xml_node();
        break;
      }
    }
  }
}

std::string element_text(pugi::xml_node n) {
  std::string out;
  for (const auto child : n.children()) {
    if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) out += child.value();
  }
  return out;
}

void read_core_properties(const std::string& bytes, metadata& meta) {
  pugi::xml_document doc;
  parse_xml(doc, bytes, "docProps/core.xml");
  const auto root = doc.document_element();
  const qualified_names dc(root, dc_ns, "dc");
  const qualified_names dcterms(root, dcterms_ns, "dcterms");
  meta.title = non_empty(element_text(root.child(dc("title").c_str())));
  meta.author = non_empty(element_text(root.child(dc("creator").c_str())));
  if (const auto created = non_empty(element_text(root.child(dcterms("created").c_str())))) {
    meta.created = parse_w3cdtf(*created);
  }
}

std::optional<int> read_pages(const std::string& bytes) {
  pugi::xml_document doc;
  parse_xml(doc, bytes, "docProps/app.xml");
  const auto root = doc.document_element();
  const qualified_names app(root, app_ns, "");
  const auto text = non_empty(element_text(root.child(app("Pages").c_str())));
  if (!text) return std::nullopt;
  int pages = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), pages);
  if (ec != std::errc() || end != text->data() + text->size() || pages < 0) return std::nullopt;
  return pages;
}

// "word/header12.xml" → 12, so header2 sorts before header10.
bool numbered_part(std::string_view name, std::string_view stem, unsigned& number) {
  if (!name.starts_with(stem) || !name.ends_with(".xml")) return false;
  const auto digits = name.substr(stem.size(), name.size() - stem.size() - 4);
  if (digits.empty()) {
    number = 0;
    return true;
  }
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  return ec == std::errc() && end == digits.data() + digits.size();
}

std::vector<std::string> parts_named(const std::vector<zip_entry>& entries, std::string_view stem) {
  std::vector<std::pair<unsigned, std::string>> found;
  for (const auto& e : entries) {
    unsigned number = 0;
    if (numbered_part(e.name, stem, number)) found.emplace_back(number, e.name);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  out.reserve(found.size());
  for (auto& [number, name] : found) out.push_back(std::move(name));
  return out;
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += '\n';
    out += lines[i];
  }
  return out;
}

}  // namespace

extraction extract_docx(std::string_view bytes, const docx_limits& limits) {
  const auto directory = read_directory(bytes, limits);
  check_bounds(bytes, directory, limits);
  const auto& entries = directory.entries;
  part_reader parts(bytes, limits);
  // libzip must read the directory we checked: a disagreement (a second,
  // ZIP64 directory, say) means the archive is built to read differently in
  // different tools.
  if (zip_get_num_entries(parts.archive(), 0) != static_cast<zip_int64_t>(entries.size())) {
    unreadable("the DOCX directory is corrupt");
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    constexpr auto needed = ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE;
    if (zip_stat_index(parts.archive(), i, ZIP_FL_ENC_RAW, &st) != 0 || (st.valid & needed) != needed ||
        entries[i].name != st.name || entries[i].size != st.size || entries[i].comp_size != st.comp_size) {
      unreadable("the DOCX directory is corrupt");
    }
  }

  std::vector<std::string> lines;
  {
    const auto body = parts.read("word/document.xml");
    if (!body) unreadable("the DOCX has no word/document.xml");
    pugi::xml_document doc;
    parse_xml(doc, *body, "word/document.xml");
    collect_paragraphs(doc.document_element(), lines);
  }
  for (const auto* stem : {"word/header", "word/footer"}) {
    for (const auto& name : parts_named(entries, stem)) {
      const auto part = parts.read(name);
      if (!part) continue;
      pugi::xml_document doc;
      parse_xml(doc, *part, name.c_str());
      collect_paragraphs(doc.document_element(), lines);
    }
  }

  extraction out;
  out.text = join_lines(lines);
  if (const auto core = parts.read("docProps/core.xml")) read_core_properties(*core, out.metadata);
  if (const auto app = parts.read("docProps/app.xml")) out.pages = read_pages(*app);
  return out;
}

// ---------------------------------------------------------------------------
// W3C-DTF

namespace {

bool take_number(std::string_view& s, std::size_t digits, int& value) {
  if (s.size() < digits) return false;
  for (std::size_t i = 0; i < digits; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  std::from_chars(s.data(), s.data() + digits, value);
  s.remove_prefix(digits);
  return true;
}

bool take(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) return false;
  s.remove_prefix(1);
  return true;
}

}  // namespace

std::optional<core::time_point> parse_w3cdtf(std::string_view s) {
  using namespace std::chrono;
  int y = 0, mo = 1, d = 1, h = 0, mi = 0, sec = 0;
  milliseconds fraction{0};
  minutes offset{0};
  if (!take_number(s, 4, y)) return std::nullopt;
  if (take(s, '-')) {
    if (!take_number(s, 2, mo)) return std::nullopt;
    if (take(s, '-')) {
      if (!take_number(s, 2, d)) return std::nullopt;
      if (take(s, 'T')) {
        if (!take_number(s, 2, h) || !take(s, ':') || !take_number(s, 2, mi)) return std::nullopt;
        if (take(s, ':')) {
          if (!take_number(s, 2, sec)) return std::nullopt;
          if (take(s, '.')) {
            int scale = 100;
            std::size_t n = 0;
            for (; n < s.size() && s[n] >= '0' && s[n] <= '9'; ++n) {
              fraction += milliseconds((s[n] - '0') * scale);
              scale /= 10;
            }
            if (n == 0) return std::nullopt;
            s.remove_prefix(n);
          }
        }
        // The zone is mandatory in W3C-DTF; some writers omit it, and UTC is
        // the only reading that does not invent a local time zone.
        if (take(s, 'Z') || s.empty()) {
        } else if (s.front() == '+' || s.front() == '-') {
          const int sign = s.front() == '-' ? -1 : 1;
          s.remove_prefix(1);
          int oh = 0, om = 0;
          if (!take_number(s, 2, oh) || !take(s, ':') || !take_number(s, 2, om)) return std::nullopt;
          if (oh > 23 || om > 59) return std::nullopt;
          offset = minutes(sign * (oh * 60 + om));
        } else {
          return std::nullopt;
        }
      }
    }
  }
  if (!s.empty() || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  const year_month_day date{year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))};
  if (!date.ok()) return std::nullopt;
  const auto t = sys_days(date) + hours(h) + minutes(mi) + seconds(sec) + fraction - offset;
  return time_point_cast<core::time_point::duration>(t);
}

}  // namespace docflow::pipeline
