// The pipeline's stages: analysis, PDF and DOCX extraction on committed
// fixtures (tests/fixtures/README.md records how each was made and what it
// holds), the zip-bomb bounds on archives built here, the child protocol,
// and the sandbox, which runs the real `docflow extract` child.
//
// Needs DOCFLOW_FIXTURES (compile definition: the fixtures directory) and the
// docflow binary: env DOCFLOW_BIN, else the compile definition
// DOCFLOW_BIN_DEFAULT.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/clock.hpp"
#include "pipeline/analyze.hpp"
#include "pipeline/extract.hpp"
#include "pipeline/lockdown.hpp"
#include "pipeline/ocr.hpp"
#include "pipeline/sandbox.hpp"
#include "pipeline/stages.hpp"
#include "pipeline/zygote.hpp"

#ifndef DOCFLOW_FIXTURES
#define DOCFLOW_FIXTURES "tests/fixtures"
#endif

using namespace docflow;
using namespace docflow::pipeline;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

fs::path fixture(std::string_view name) { return fs::path(DOCFLOW_FIXTURES) / name; }

// A file's bytes: what the parsers take (the sandboxed child maps its input).
std::string bytes_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

fs::path docflow_bin() {
  if (const char* bin = std::getenv("DOCFLOW_BIN"); bin && *bin) return bin;
#ifdef DOCFLOW_BIN_DEFAULT
  return DOCFLOW_BIN_DEFAULT;
#else
  throw std::runtime_error("set DOCFLOW_BIN to the docflow binary");
#endif
}

core::time_point utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
  using namespace std::chrono;
  return time_point_cast<core::time_point::duration>(sys_days(year_month_day{year(y), month(mo), day(d)}) +
                                                     hours(h) + minutes(mi) + seconds(s));
}

// The failure a call throws; fails the test when it throws none.
template <class F>
core::failure failure_of(F&& f) {
  try {
    f();
  } catch (const stage_error& e) {
    return e.failure();
  }
  ADD_FAILURE() << "no stage_error thrown";
  return {};
}

class temp_dir {
public:
  temp_dir() {
    path_ = fs::temp_directory_path() /
            ("docflow-pipeline-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~temp_dir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  fs::path write(std::string_view name, std::string_view bytes) const {
    const auto p = path_ / name;
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

private:
  static inline int counter_ = 0;
  fs::path path_;
};

// ------------------------------------------------------------ ZIP writing
// A small ZIP writer, so the tests can build archives no sane tool makes:
// lying sizes, shared data, overlapping entries.

struct zip_entry_spec {
  std::string name;
  std::string data;  // as stored (compressed when method is 8)
  std::uint16_t method = 0;
  std::uint32_t crc = 0;
  std::uint64_t size = 0;                  // declared uncompressed size
  std::optional<std::uint32_t> cd_offset;  // point the directory somewhere else
};

void put16(std::string& b, std::uint32_t v) {
  b += static_cast<char>(v & 0xFF);
  b += static_cast<char>(v >> 8 & 0xFF);
}
void put32(std::string& b, std::uint32_t v) {
  put16(b, v & 0xFFFF);
  put16(b, v >> 16);
}

zip_entry_spec stored(std::string name, std::string data) {
  zip_entry_spec e;
  e.name = std::move(name);
  e.crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
  e.size = data.size();
  e.data = std::move(data);
  return e;
}

std::string deflate_raw(std::string_view data) {
  z_stream s{};
  deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&s, data.size()), '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  s.avail_in = static_cast<uInt>(data.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  deflate(&s, Z_FINISH);
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

zip_entry_spec deflated(std::string name, std::string_view data) {
  auto e = stored(std::move(name), std::string(data));
  e.data = deflate_raw(data);
  e.method = 8;
  return e;
}

// A real deflate stream of `mib` MiB of zeros, built without holding them:
// after a full flush the compressor starts afresh, so each MiB compresses to
// the same byte-aligned block, and the blocks concatenate.
zip_entry_spec zeros(std::string name, std::uint32_t mib) {
  const std::string chunk(1 << 20, '\0');
  z_stream s{};
  deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
  std::string block(deflateBound(&s, chunk.size()) + 64, '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(chunk.data()));
  s.avail_in = static_cast<uInt>(chunk.size());
  s.next_out = reinterpret_cast<Bytef*>(block.data());
  s.avail_out = static_cast<uInt>(block.size());
  deflate(&s, Z_FULL_FLUSH);
  block.resize(s.total_out);
  deflateEnd(&s);
  zip_entry_spec e;
  e.name = std::move(name);
  e.method = 8;
  e.size = std::uint64_t{mib} << 20;
  e.data.reserve(block.size() * mib + 2);
  for (std::uint32_t i = 0; i < mib; ++i) e.data += block;
  e.data += std::string("\x03\x00", 2);  // an empty final fixed-Huffman block
  const auto chunk_crc =
      crc32(0, reinterpret_cast<const Bytef*>(chunk.data()), static_cast<uInt>(chunk.size()));
  uLong crc = crc32(0, nullptr, 0);
  for (std::uint32_t i = 0; i < mib; ++i)
    crc = crc32_combine(crc, chunk_crc, static_cast<z_off_t>(chunk.size()));
  e.crc = static_cast<std::uint32_t>(crc);
  return e;
}

std::string build_zip(const std::vector<zip_entry_spec>& entries) {
  std::string out;
  std::string directory;
  for (const auto& e : entries) {
    const auto offset = static_cast<std::uint32_t>(out.size());
    put32(out, 0x04034b50);
    put16(out, 20);
    put16(out, 0);
    put16(out, e.method);
    put16(out, 0);
    put16(out, 0x21);  // 1980-01-01
    put32(out, e.crc);
    put32(out, static_cast<std::uint32_t>(e.data.size()));
    put32(out, static_cast<std::uint32_t>(e.size));
    put16(out, static_cast<std::uint32_t>(e.name.size()));
    put16(out, 0);
    out += e.name;
    out += e.data;

    put32(directory, 0x02014b50);
    put16(directory, 20);
    put16(directory, 20);
    put16(directory, 0);
    put16(directory, e.method);
    put16(directory, 0);
    put16(directory, 0x21);
    put32(directory, e.crc);
    put32(directory, static_cast<std::uint32_t>(e.data.size()));
    put32(directory, static_cast<std::uint32_t>(e.size));
    put16(directory, static_cast<std::uint32_t>(e.name.size()));
    put16(directory, 0);
    put16(directory, 0);
    put16(directory, 0);
    put16(directory, 0);
    put32(directory, 0);
    put32(directory, e.cd_offset.value_or(offset));
    directory += e.name;
  }
  const auto directory_offset = static_cast<std::uint32_t>(out.size());
  out += directory;
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, static_cast<std::uint32_t>(entries.size() & 0xFFFF));
  put16(out, static_cast<std::uint32_t>(entries.size() & 0xFFFF));
  put32(out, static_cast<std::uint32_t>(directory.size()));
  put32(out, directory_offset);
  put16(out, 0);
  return out;
}

constexpr std::string_view content_types =
    R"(<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>)";

std::string document_xml(std::string_view body, std::string_view prefix = "w") {
  const std::string p(prefix);
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?><" + p + ":document xmlns:" + p +
         "=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><" + p + ":body>" +
         std::string(body) + "</" + p + ":body></" + p + ":document>";
}

// A minimal DOCX whose body is `body`, plus `extra` entries.
std::string minimal_docx(std::string_view body, std::vector<zip_entry_spec> extra = {}) {
  std::vector<zip_entry_spec> entries{stored("[Content_Types].xml", std::string(content_types)),
                                      deflated("word/document.xml", document_xml(body))};
  for (auto& e : extra) entries.push_back(std::move(e));
  return build_zip(entries);
}

// Sets an environment variable for the scope of a test.
class scoped_env {
public:
  scoped_env(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~scoped_env() { ::unsetenv(name_); }

private:
  const char* name_;
};

sandbox_limits test_limits() {
  sandbox_limits l;  // without RLIMIT_AS in sanitizer builds (default_address_space)
  l.wall = 20s;
  return l;
}

}  // namespace

// ================================================================ analyze

TEST(analyze_counts, empty_text) {
  const auto a = analyze("");
  EXPECT_EQ(a.char_count, 0u);
  EXPECT_EQ(a.word_count, 0u);
  EXPECT_EQ(a.line_count, 0u);
  EXPECT_EQ(a.language, "und");
  EXPECT_TRUE(a.keywords.empty());
}

TEST(analyze_counts, lines) {
  EXPECT_EQ(analyze("a").line_count, 1u);
  EXPECT_EQ(analyze("a\nb\n").line_count, 2u);
  EXPECT_EQ(analyze("a\nb").line_count, 2u);
  EXPECT_EQ(analyze("a\n\nb").line_count, 3u);
  EXPECT_EQ(analyze("\n").line_count, 1u);
}

TEST(analyze_counts, characters_are_code_points) {
  EXPECT_EQ(analyze("a\nb\n").char_count, 4u);
  EXPECT_EQ(analyze("café naïve").char_count, 10u);
  EXPECT_EQ(analyze("日本語").char_count, 3u);
  EXPECT_EQ(analyze("\xF0\x9F\x99\x82").char_count, 1u);  // one emoji, four bytes
  EXPECT_EQ(analyze("a\xFF"
                    "b")
                .char_count,
            3u);  // an invalid byte counts once
}

TEST(analyze_counts, words) {
  EXPECT_EQ(analyze("hello, world!").word_count, 2u);
  EXPECT_EQ(analyze("don't stop").word_count, 2u);
  EXPECT_EQ(analyze("l’homme est là").word_count, 3u);
  EXPECT_EQ(analyze("'quoted' words'").word_count, 2u);  // apostrophes at the edges are not inside
  // ICU's word rules: a hyphen separates ("well", "known") and a number
  // keeps its separators ("3.14"); `wc -w` would say 2, the rules before ICU 4.
  EXPECT_EQ(analyze("well-known 3.14").word_count, 3u);
  EXPECT_EQ(analyze("1,000.50 euros").word_count, 2u);
  EXPECT_EQ(analyze("café naïve Straße").word_count, 3u);
  EXPECT_EQ(analyze("αβγ δ кошка").word_count, 3u);
  EXPECT_EQ(analyze("日本語").word_count, 1u);
  EXPECT_EQ(analyze("— … « » \xF0\x9F\x99\x82 ¿").word_count, 0u);
  EXPECT_EQ(analyze("tab\tseparated\nlines\r\nhere").word_count, 4u);
  EXPECT_EQ(analyze("2024 x").word_count, 2u);
}

// Text without spaces: ICU's dictionaries find the words (ICU 72, Debian
// bookworm's; another ICU may cut a word differently).
TEST(analyze_counts, words_of_scripts_without_spaces) {
  EXPECT_EQ(analyze("我们今天去公园散步").word_count, 5u);  // 我们 今天 去 公园 散步
  EXPECT_EQ(analyze("私は東京に住んでいます").word_count, 8u);
  EXPECT_EQ(analyze("สวัสดีครับ ผมชื่อ").word_count, 4u);  // สวัสดี ครับ ผม ชื่อ
  EXPECT_EQ(analyze("我们今天去公园散步。").word_count, 5u) << "the full stop is no word";
  EXPECT_EQ(analyze("東京 2024 Tokyo").word_count, 3u);
}

TEST(analyze_keywords, words_of_ideographs_count_from_two_characters) {
  const auto a = analyze("公园很大。我们在公园散步。公园里有很多人。");
  ASSERT_FALSE(a.keywords.empty());
  EXPECT_EQ(a.keywords[0].term, "公园");
  EXPECT_EQ(a.keywords[0].count, 3u);
  for (const auto& k : a.keywords) EXPECT_NE(k.term, "在") << "one ideograph is too short";
  // Words in kana that short are particles and endings, not keywords.
  for (const auto& k : analyze("東京にいました。東京にいました。東京にいました。").keywords) {
    EXPECT_NE(k.term, "に");
    EXPECT_NE(k.term, "まし");
  }
}

TEST(analyze_language, english) {
  EXPECT_EQ(
      analyze("The committee met on Tuesday to discuss the new budget. Most of the members agreed that the "
              "plan was too expensive, but they could not find a better one. They will meet again next "
              "week to make a final decision.")
          .language,
      "en");
}

TEST(analyze_language, german) {
  EXPECT_EQ(
      analyze("Der Ausschuss hat sich am Dienstag getroffen, um über den neuen Haushalt zu sprechen. Die "
              "meisten Mitglieder waren der Meinung, dass der Plan zu teuer ist, aber sie konnten keinen "
              "besseren finden. Sie werden sich nächste Woche wieder treffen, um eine Entscheidung zu "
              "fällen.")
          .language,
      "de");
}

TEST(analyze_language, french) {
  EXPECT_EQ(
      analyze("Le comité s'est réuni mardi pour discuter du nouveau budget. La plupart des membres ont "
              "estimé que le plan était trop cher, mais ils n'ont pas trouvé de meilleure solution. Ils se "
              "réuniront de nouveau la semaine prochaine pour prendre une décision.")
          .language,
      "fr");
}

TEST(analyze_language, spanish) {
  EXPECT_EQ(
      analyze("El comité se reunió el martes para hablar del nuevo presupuesto. La mayoría de los miembros "
              "pensaron que el plan era demasiado caro, pero no encontraron una solución mejor. Se "
              "reunirán de nuevo la próxima semana para tomar una decisión.")
          .language,
      "es");
}

// Beyond the four languages of the stop-word lists: libexttextcat.
TEST(analyze_language, the_fingerprints_are_loaded) { EXPECT_TRUE(language_model_loaded()); }

TEST(analyze_language, italian) {
  EXPECT_EQ(analyze("Il comitato si è riunito martedì per discutere il nuovo bilancio. La maggior parte dei "
                    "membri ha ritenuto che il piano fosse troppo costoso, ma non è riuscita a trovarne uno "
                    "migliore. Si riuniranno di nuovo la prossima settimana per prendere una decisione.")
                .language,
            "it");
}

TEST(analyze_language, dutch) {
  EXPECT_EQ(analyze("De commissie kwam dinsdag bijeen om de nieuwe begroting te bespreken. De meeste leden "
                    "vonden het plan te duur, maar ze konden geen beter plan vinden. Ze komen volgende week "
                    "opnieuw bijeen om een definitief besluit te nemen.")
                .language,
            "nl");
}

TEST(analyze_language, portuguese_although_its_function_words_look_spanish) {
  const std::string_view text =
      "O comitê reuniu-se na terça-feira para discutir o novo orçamento. A maioria dos membros concordou "
      "que o plano era caro demais, mas não conseguiram encontrar um melhor. Eles vão se reunir novamente "
      "na próxima semana para tomar uma decisão final.";
  const auto a = analyze(text);
  EXPECT_EQ(a.language, "pt");
  // The stop-word judge said Spanish and was overruled: a contested answer.
  EXPECT_GT(a.language_confidence, 0.0);
  EXPECT_LT(a.language_confidence, 0.5);
}

TEST(analyze_language, russian) {
  EXPECT_EQ(analyze("Комитет собрался во вторник, чтобы обсудить новый бюджет. Большинство членов "
                    "согласились, что план слишком дорогой, но не смогли найти лучший. Они снова "
                    "встретятся на следующей неделе, чтобы принять окончательное решение.")
                .language,
            "ru");
}

TEST(analyze_language, chinese_japanese_thai) {
  EXPECT_EQ(analyze("委员会星期二开会讨论新的预算。大多数成员认为这个计划太贵了，但是他们找不到更好的方案。"
                    "他们下周将再次开会做出最后的决定。")
                .language,
            "zh");
  EXPECT_EQ(analyze("委員会は火曜日に新しい予算について話し合うために集まりました。ほとんどのメンバーは計画が"
                    "高すぎると考えましたが、より良い案は見つかりませんでした。")
                .language,
            "ja");
  EXPECT_EQ(analyze("คณะกรรมการประชุมกันในวันอังคารเพื่อหารือเกี่ยวกับงบประมาณใหม่ "
                    "สมาชิกส่วนใหญ่เห็นว่าแผนนี้แพงเกินไป")
                .language,
            "th");
}

TEST(analyze_language, confidence_is_a_fraction_that_grows_with_the_evidence) {
  const std::string one = "The committee met on Tuesday to discuss the new budget.";
  const std::string three = one +
                            " Most of the members agreed that the plan was too expensive, but they could not "
                            "find a better one. They will meet again next week to make a final decision.";
  const auto short_guess = detect_language(one);
  const auto long_guess = detect_language(three);
  EXPECT_EQ(short_guess.tag, "en");
  EXPECT_EQ(long_guess.tag, "en");
  EXPECT_GT(short_guess.confidence, 0.0);
  EXPECT_LT(short_guess.confidence, long_guess.confidence);
  EXPECT_LE(long_guess.confidence, 1.0);
  EXPECT_GT(long_guess.confidence, 0.9) << "two judges agree on three sentences";
  EXPECT_EQ(analyze(three).language_confidence, long_guess.confidence);
  EXPECT_EQ(detect_language("").confidence, 0.0);
}

TEST(analyze_language, undetermined_without_evidence) {
  EXPECT_EQ(analyze("12345").language, "und");
  EXPECT_EQ(analyze("").language, "und");
  EXPECT_EQ(analyze("Hello world").language, "und");                             // too short
  EXPECT_EQ(analyze("Quarterly revenue forecast spreadsheet").language, "und");  // no function words
  EXPECT_EQ(analyze("de la en que de la en que").language, "und");               // French or Spanish alike
  EXPECT_EQ(detect_language("1 2 3 4 5 6 7 8 9 10").tag, "und");
  // Too few words for n-grams, and no stop-word list of its own.
  EXPECT_EQ(analyze("Buongiorno a tutti").language, "und");
  EXPECT_EQ(analyze("Buongiorno a tutti").language_confidence, 0.0);
  EXPECT_EQ(analyze("我们今天去公园散步").language, "und");
}

TEST(analyze_keywords, ranked_by_count_then_alphabet) {
  const auto a = analyze("zeta apple banana apple cherry banana apple mango");
  ASSERT_EQ(a.keywords.size(), 5u);
  EXPECT_EQ(a.keywords[0].term, "apple");
  EXPECT_EQ(a.keywords[0].count, 3u);
  EXPECT_EQ(a.keywords[1].term, "banana");
  EXPECT_EQ(a.keywords[1].count, 2u);
  EXPECT_EQ(a.keywords[2].term, "cherry");
  EXPECT_EQ(a.keywords[3].term, "mango");
  EXPECT_EQ(a.keywords[4].term, "zeta");
}

TEST(analyze_keywords, lowercased_filtered_and_at_most_ten) {
  const auto a = analyze(
      "Apple APPLE apple the The and of 2024 2024 2024 ox ox ox Ärger ärger "
      "one1 two2 three3 four4 five5 six6 seven7 eight8 nine9 ten10 eleven11");
  ASSERT_EQ(a.keywords.size(), 10u);
  EXPECT_EQ(a.keywords[0].term, "apple");
  EXPECT_EQ(a.keywords[0].count, 3u);
  EXPECT_EQ(a.keywords[1].term, "ärger");
  EXPECT_EQ(a.keywords[1].count, 2u);
  for (const auto& k : a.keywords) {
    EXPECT_NE(k.term, "the");
    EXPECT_NE(k.term, "and");
    EXPECT_NE(k.term, "2024");  // digits only
    EXPECT_NE(k.term, "ox");    // shorter than 3
  }
  EXPECT_EQ(a.keywords[2].term, "eight8");  // the ties, alphabetically
  EXPECT_EQ(a.keywords[9].term, "six6");
}

TEST(analyze_keywords, stop_words_of_the_detected_language) {
  const auto a = analyze(
      "Die Stadt und die Stadt und der Park und die Bürger und die Stadt sind mit dem Park "
      "sehr zufrieden, weil der Park schön ist.");
  ASSERT_EQ(a.language, "de");
  ASSERT_GE(a.keywords.size(), 2u);
  EXPECT_EQ(a.keywords[0].term, "park");
  EXPECT_EQ(a.keywords[1].term, "stadt");
  for (const auto& k : a.keywords) {
    EXPECT_NE(k.term, "und");
    EXPECT_NE(k.term, "die");
    EXPECT_NE(k.term, "sind");
  }
}

TEST(analyze_keywords, french_elisions_and_english_possessives) {
  const auto fr = analyze("L'homme et l'homme de la ville ont vu que l'histoire de la ville est belle.");
  ASSERT_EQ(fr.language, "fr");
  ASSERT_FALSE(fr.keywords.empty());
  EXPECT_EQ(fr.keywords[0].term, "homme");
  EXPECT_EQ(fr.keywords[0].count, 2u);
  const auto en = analyze("The company's plan and the company's budget are on the table of the company.");
  ASSERT_EQ(en.language, "en");
  EXPECT_EQ(en.keywords[0].term, "company");
  EXPECT_EQ(en.keywords[0].count, 3u);
}

// ============================================================ extract: PDF

TEST(extract_pdf, one_page_with_metadata) {
  const auto e = extract_pdf(bytes_of(fixture("en-1page.pdf")));
  EXPECT_EQ(e.pages, 1);
  EXPECT_EQ(e.text,
            "The quarterly report describes the progress of the river survey. Our team measured the water "
            "quality at twelve stations along the river. The results show that the water is cleaner than it "
            "was last year, and the survey will continue\nnext spring.");
  EXPECT_EQ(e.metadata.title, "River Survey Report");
  EXPECT_EQ(e.metadata.author, "Jane Doe");
  EXPECT_EQ(e.metadata.created, utc(2024, 3, 15, 10, 30, 0));
  const auto a = analyze(e.text);
  EXPECT_EQ(a.word_count, 42u);  // pdftotext en-1page.pdf - | wc -w
  EXPECT_EQ(a.char_count, 244u);
  EXPECT_EQ(a.line_count, 2u);
  EXPECT_EQ(a.language, "en");
  ASSERT_GE(a.keywords.size(), 3u);
  EXPECT_EQ(a.keywords[0].term, "river");
  EXPECT_EQ(a.keywords[1].term, "survey");
  EXPECT_EQ(a.keywords[2].term, "water");
}

TEST(extract_pdf, pages_in_order_joined_by_newlines) {
  const auto e = extract_pdf(bytes_of(fixture("multipage.pdf")));
  EXPECT_EQ(e.pages, 3);
  EXPECT_EQ(e.text,
            "Page one introduces the annual budget plan.\n"
            "Page two lists the expected costs for travel and equipment.\n"
            "Page three summarises the budget and closes the plan.");
  EXPECT_EQ(e.metadata.title, "Budget Plan");
  EXPECT_EQ(e.metadata.author, std::nullopt);
  EXPECT_EQ(e.metadata.created, utc(2023, 1, 2, 3, 4, 5));
  EXPECT_EQ(analyze(e.text).word_count, 26u);
}

TEST(extract_pdf, german_with_a_time_zone) {
  const auto e = extract_pdf(bytes_of(fixture("de.pdf")));
  EXPECT_EQ(e.pages, 1);
  EXPECT_EQ(e.metadata.title, "Der neue Park");
  EXPECT_EQ(e.metadata.author, "Max Mustermann");
  EXPECT_EQ(e.metadata.created, utc(2022, 6, 7, 6, 9, 10));  // 08:09:10+02'00'
  EXPECT_NE(e.text.find("neuen Park für die Bürger"), std::string::npos);
  const auto a = analyze(e.text);
  EXPECT_EQ(a.word_count, 47u);
  EXPECT_EQ(a.language, "de");
  ASSERT_FALSE(a.keywords.empty());
  EXPECT_EQ(a.keywords[0].term, "park");
  EXPECT_EQ(a.keywords[0].count, 2u);
}

TEST(extract_pdf, scanned_page_has_no_text) {
  const auto e = extract_pdf(bytes_of(fixture("scanned.pdf")));
  EXPECT_EQ(e.pages, 1);
  EXPECT_EQ(e.text, "");
  EXPECT_EQ(e.metadata.title, std::nullopt);
  EXPECT_EQ(e.metadata.author, std::nullopt);
  EXPECT_EQ(e.metadata.created, std::nullopt);
  EXPECT_EQ(analyze(e.text).language, "und");
}

TEST(extract_pdf, encrypted_is_permanently_unreadable) {
  const auto f = failure_of([] { extract_pdf(bytes_of(fixture("encrypted.pdf"))); });
  EXPECT_EQ(f.code, core::name(core::errc::unreadable_document));
  EXPECT_FALSE(f.retryable);
}

TEST(extract_pdf, garbage_and_truncation_are_unreadable) {
  EXPECT_EQ(failure_of([] { extract_pdf("%PDF-1.4\nthis is not a PDF at all\n"); }).code,
            core::name(core::errc::unreadable_document));
  EXPECT_EQ(failure_of([] { extract_pdf(""); }).code, core::name(core::errc::unreadable_document));
  const auto whole = bytes_of(fixture("multipage.pdf"));
  EXPECT_EQ(failure_of([&] { extract_pdf(std::string_view(whole).substr(0, whole.size() / 3)); }).code,
            core::name(core::errc::unreadable_document));
}

// =========================================================== extract: DOCX

TEST(extract_docx, table_header_footer_and_core_properties) {
  const auto e = extract_docx(bytes_of(fixture("table-header-footer.docx")));
  EXPECT_EQ(e.pages, 1);
  EXPECT_EQ(e.text,
            "Sales grew in every region during the second quarter.\n"
            "Region\tTotalSecond line\nafter break\n"
            "North\n1200\nSouth\n950\n"
            "Sales in the south region need attention.\n"
            "ACME Corporation\n"
            "Confidential footer");
  EXPECT_EQ(e.metadata.title, "Quarterly Sales Summary");
  EXPECT_EQ(e.metadata.author, "John Smith");
  EXPECT_EQ(e.metadata.created, utc(2024, 5, 6, 7, 8, 9));
  const auto a = analyze(e.text);
  EXPECT_EQ(a.word_count, 29u);
  EXPECT_EQ(a.line_count, 10u);
  EXPECT_EQ(a.language, "en");
  ASSERT_GE(a.keywords.size(), 3u);
  EXPECT_EQ(a.keywords[0].term, "region");
  EXPECT_EQ(a.keywords[0].count, 3u);
}

TEST(extract_docx, german_from_pandoc) {
  const auto e = extract_docx(bytes_of(fixture("de.docx")));
  EXPECT_EQ(e.pages, 1);
  EXPECT_EQ(e.metadata.title, "Der neue Park");
  EXPECT_EQ(e.metadata.author, "Erika Mustermann");
  EXPECT_EQ(e.metadata.created, utc(2021, 9, 10, 10, 0, 0));
  EXPECT_EQ(
      e.text,
      "Der neue Park\nErika Mustermann\n"
      "Die Stadt hat im letzten Jahr einen neuen Park für die Bürger gebaut.\n"
      "Der Park liegt direkt an dem Fluss und ist von der Altstadt aus in wenigen Minuten zu erreichen.\n"
      "Viele Familien gehen am Wochenende mit ihren Kindern dorthin, weil es dort einen großen "
      "Spielplatz gibt.");
  const auto a = analyze(e.text);
  EXPECT_EQ(a.word_count, 52u);
  EXPECT_EQ(a.language, "de");
}

TEST(extract_docx, minimal_archive_without_properties) {
  const auto docx = minimal_docx(
      "<w:p><w:pPr><w:tabs><w:tab w:val=\"left\" w:pos=\"720\"/></w:tabs></w:pPr>"
      "<w:r><w:t>one</w:t></w:r><w:r><w:t xml:space=\"preserve\"> </w:t></w:r>"
      "<w:r><w:t>two</w:t><w:tab/><w:t>three</w:t></w:r></w:p>"
      "<w:p/><w:p><w:r><w:delText>gone</w:delText><w:t>&amp; four</w:t></w:r></w:p>");
  const auto e = extract_docx(docx);
  EXPECT_EQ(e.pages, std::nullopt);
  EXPECT_EQ(e.text, "one two\tthree\n\n& four");
  EXPECT_EQ(e.metadata.title, std::nullopt);
  EXPECT_EQ(e.metadata.created, std::nullopt);
}

TEST(extract_docx, text_box_read_once) {
  const auto docx = minimal_docx(
      "<w:p><w:r><w:t>before</w:t></w:r><w:r><mc:AlternateContent><mc:Choice>"
      "<w:drawing><w:txbxContent><w:p><w:r><w:t>boxed</w:t></w:r></w:p></w:txbxContent>"
      "</w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent><w:p><w:r>"
      "<w:t>boxed</w:t></w:r></w:p></w:txbxContent></w:pict></mc:Fallback>"
      "</mc:AlternateContent></w:r></w:p>");
  // The box's paragraph ends before the one holding it.
  EXPECT_EQ(extract_docx(docx).text, "boxed\nbefore");
}

TEST(extract_docx, any_namespace_prefix) {
  const std::vector<zip_entry_spec> entries{
      stored("[Content_Types].xml", std::string(content_types)),
      stored("word/document.xml", document_xml("<x:p><x:r><x:t>prefixed</x:t></x:r></x:p>", "x"))};
  EXPECT_EQ(extract_docx(build_zip(entries)).text, "prefixed");
}

TEST(extract_docx, entity_expansion_is_not_performed) {
  const std::string bomb =
      "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
      "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
      "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>"
      "<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>"
      "<w:p><w:r><w:t>&lol3;</w:t></w:r></w:p></w:body></w:document>";
  const std::vector<zip_entry_spec> entries{stored("[Content_Types].xml", std::string(content_types)),
                                            stored("word/document.xml", bomb)};
  const auto e = extract_docx(build_zip(entries));
  EXPECT_LT(e.text.size(), 20u);
}

TEST(extract_docx, broken_archives_and_xml_are_unreadable) {
  const auto expect_unreadable = [&](std::string_view name, const std::string& bytes) {
    const auto f = failure_of([&] { extract_docx(bytes); });
    EXPECT_EQ(f.code, core::name(core::errc::unreadable_document)) << name;
    EXPECT_FALSE(f.retryable) << name;
  };
  expect_unreadable("text.docx", "just some text, no ZIP here");
  expect_unreadable("empty.docx", "");
  const auto good = minimal_docx("<w:p><w:r><w:t>ok</w:t></w:r></w:p>");
  expect_unreadable("truncated.docx", good.substr(0, good.size() / 2));
  expect_unreadable("no-document.docx",
                    build_zip({stored("[Content_Types].xml", std::string(content_types))}));
  expect_unreadable("bad-xml.docx", build_zip({stored("[Content_Types].xml", std::string(content_types)),
                                               stored("word/document.xml", "<w:document><w:body>")}));
  auto corrupt = good;
  corrupt[corrupt.find("word/document.xml") + 40] ^= 0x55;  // flip bytes inside the deflated data
  corrupt[corrupt.find("word/document.xml") + 41] ^= 0x55;
  expect_unreadable("crc.docx", corrupt);
}

// ================================================================ zip bombs

TEST(docx_bounds, too_many_entries) {
  std::vector<zip_entry_spec> entries{stored("[Content_Types].xml", std::string(content_types)),
                                      stored("word/document.xml", document_xml("<w:p/>"))};
  while (entries.size() < 10001) entries.push_back(stored("e/" + std::to_string(entries.size()), ""));
  const auto f = failure_of([&] { extract_docx(build_zip(entries)); });
  EXPECT_EQ(f.code, core::name(core::errc::document_too_complex));
  EXPECT_FALSE(f.retryable);
  entries.pop_back();  // exactly the limit is fine
  EXPECT_EQ(extract_docx(build_zip(entries)).text, "");
}

TEST(docx_bounds, gigabyte_of_zeros) {
  const auto bomb = minimal_docx("<w:p/>", {zeros("word/media/zeros.bin", 1024)});
  ASSERT_LT(bomb.size(), 2u << 20);  // 1 GiB in about a megabyte
  const auto f = failure_of([&] { extract_docx(bomb); });
  EXPECT_EQ(f.code, core::name(core::errc::document_too_complex));
  EXPECT_FALSE(f.retryable);
}

TEST(docx_bounds, compression_ratio) {
  // 8 MiB of zeros: far under the total cap, far over 200:1.
  const auto f = failure_of([&] { extract_docx(minimal_docx("<w:p/>", {zeros("z", 8)})); });
  EXPECT_EQ(f.code, core::name(core::errc::document_too_complex));
  // The ratio is only judged above 1 MiB: a small, very compressible part is normal.
  EXPECT_NO_THROW(extract_docx(minimal_docx("<w:p/>", {zeros("z", 1)})));
}

TEST(docx_bounds, total_declared_size) {
  // 1 MiB entries escape the ratio rule; 257 of them exceed 256 MiB in total.
  const auto one = zeros("z", 1);
  std::vector<zip_entry_spec> extra;
  for (int i = 0; i < 257; ++i) {
    auto e = one;
    e.name = "z/" + std::to_string(i);
    extra.push_back(std::move(e));
  }
  const auto f = failure_of([&] { extract_docx(minimal_docx("<w:p/>", extra)); });
  EXPECT_EQ(f.code, core::name(core::errc::document_too_complex));
  extra.resize(250);
  const auto under = minimal_docx("<w:p/>", extra);
  EXPECT_NO_THROW(extract_docx(under));
  // A lower cap applies to the same archive.
  docx_limits tight;
  tight.max_total_size = 100ULL << 20;
  EXPECT_EQ(failure_of([&] { extract_docx(under, tight); }).code,
            core::name(core::errc::document_too_complex));
}

TEST(docx_bounds, overlapping_entries) {
  // Two directory entries sharing one local header and its data.
  std::vector<zip_entry_spec> entries{stored("[Content_Types].xml", std::string(content_types)),
                                      stored("word/document.xml", document_xml("<w:p/>"))};
  auto twin = entries[1];
  twin.name = "word/other.xml";
  twin.cd_offset = static_cast<std::uint32_t>(30 + entries[0].name.size() + entries[0].data.size());
  entries.push_back(twin);
  const auto f = failure_of([&] { extract_docx(build_zip(entries)); });
  EXPECT_EQ(f.code, core::name(core::errc::document_too_complex));
  EXPECT_FALSE(f.retryable);
}

TEST(docx_bounds, entry_reaching_into_another) {
  // The first entry's declared compressed size swallows the second's header:
  // the shape of the "non-recursive" zip bomb.
  std::vector<zip_entry_spec> entries{stored("[Content_Types].xml", std::string(content_types)),
                                      stored("word/document.xml", document_xml("<w:p/>"))};
  auto zip = build_zip(entries);
  // Patch the first central-directory entry's compressed size (offset 20).
  const auto cd = zip.find("PK\x01\x02");
  const auto grown = static_cast<std::uint32_t>(entries[0].data.size() + 40);
  std::string patch;
  put32(patch, grown);
  zip.replace(cd + 20, 4, patch);
  const auto f = failure_of([&] { extract_docx(zip); });
  EXPECT_EQ(f.code, core::name(core::errc::document_too_complex));
}

TEST(docx_bounds, declared_size_is_not_trusted_when_reading) {
  // The document claims 100 bytes but inflates to 2 MiB.
  std::string big = "<w:p><w:r><w:t>";
  big.append(2u << 20, 'a');
  big += "</w:t></w:r></w:p>";
  auto liar = deflated("word/document.xml", document_xml(big));
  liar.size = 100;
  const auto docx = build_zip({stored("[Content_Types].xml", std::string(content_types)), liar});
  docx_limits tight;
  tight.max_part_bytes = 1ULL << 20;
  const auto f = failure_of([&] { extract_docx(docx, tight); });
  // libzip may notice the lie itself (unreadable) or our cap does (too complex):
  // either way nothing past the cap is inflated into memory.
  EXPECT_TRUE(f.is(core::errc::document_too_complex) || f.is(core::errc::unreadable_document)) << f.code;
  EXPECT_FALSE(f.retryable);
}

TEST(docx_bounds, part_cap_applies_to_honest_parts) {
  // Letters from a simple generator: they compress about 2:1, like real text.
  std::string big = "<w:p><w:r><w:t>";
  std::uint32_t x = 1;
  for (std::size_t i = 0; i < (2u << 20); ++i) {
    x = x * 1664525u + 1013904223u;
    big += static_cast<char>('a' + (x >> 24) % 26);
  }
  big += "</w:t></w:r></w:p>";
  const auto docx = minimal_docx(big);
  docx_limits tight;
  tight.max_part_bytes = 1ULL << 20;
  EXPECT_EQ(failure_of([&] { extract_docx(docx, tight); }).code,
            core::name(core::errc::document_too_complex));
  EXPECT_EQ(extract_docx(docx).text.size(), 2u << 20);
}

// ================================================================ W3C-DTF

TEST(w3cdtf, formats) {
  EXPECT_EQ(parse_w3cdtf("2024-05-06T07:08:09Z"), utc(2024, 5, 6, 7, 8, 9));
  EXPECT_EQ(parse_w3cdtf("2024-05-06T07:08:09+02:00"), utc(2024, 5, 6, 5, 8, 9));
  EXPECT_EQ(parse_w3cdtf("2024-05-06T07:08-01:30"), utc(2024, 5, 6, 8, 38, 0));
  EXPECT_EQ(parse_w3cdtf("2024-05-06T07:08:09.5Z"), utc(2024, 5, 6, 7, 8, 9) + 500ms);
  EXPECT_EQ(parse_w3cdtf("2024-05-06T07:08:09"), utc(2024, 5, 6, 7, 8, 9));
  EXPECT_EQ(parse_w3cdtf("2024-05-06"), utc(2024, 5, 6));
  EXPECT_EQ(parse_w3cdtf("2024-05"), utc(2024, 5, 1));
  EXPECT_EQ(parse_w3cdtf("2024"), utc(2024, 1, 1));
  for (const auto* bad :
       {"", "24-05-06", "2024-13-01", "2024-02-30", "2024-05-06T25:00Z", "2024-05-06T07:08:09X",
        "2024-05-06 07:08:09Z", "2024-05-06T07:08:09.Z", "yesterday"}) {
    EXPECT_EQ(parse_w3cdtf(bad), std::nullopt) << bad;
  }
}

// ========================================================= child protocol

TEST(child_protocol, round_trip) {
  extraction e;
  e.pages = 7;
  e.text = "line one\nline \"two\"\twith ünïcödé and \x01 control";
  e.metadata.title = "A title";
  e.metadata.author = "An author";
  e.metadata.created = utc(2024, 3, 15, 10, 30, 0) + 123ms;
  e.truncated = true;
  e.analysis = {12, 3, 2, "en", 0.75, {{"alpha", 2}, {"beta", 1}}};
  const auto back = decode_child_output(encode_child_output(e));
  EXPECT_EQ(back.pages, e.pages);
  EXPECT_EQ(back.text, e.text);
  EXPECT_TRUE(back.truncated);
  EXPECT_EQ(back.analysis.char_count, 12u);
  EXPECT_EQ(back.analysis.word_count, 3u);
  EXPECT_EQ(back.analysis.line_count, 2u);
  EXPECT_EQ(back.analysis.language, "en");
  EXPECT_EQ(back.analysis.language_confidence, 0.75);
  ASSERT_EQ(back.analysis.keywords.size(), 2u);
  EXPECT_EQ(back.analysis.keywords[0].term, "alpha");
  EXPECT_EQ(back.analysis.keywords[0].count, 2u);
  EXPECT_EQ(back.metadata.title, e.metadata.title);
  EXPECT_EQ(back.metadata.author, e.metadata.author);
  EXPECT_EQ(back.metadata.created, e.metadata.created);
}

TEST(child_protocol, nulls_round_trip) {
  const auto back = decode_child_output(encode_child_output(extraction{}));
  EXPECT_EQ(back.pages, std::nullopt);
  EXPECT_EQ(back.text, "");
  EXPECT_EQ(back.metadata.title, std::nullopt);
  EXPECT_EQ(back.metadata.author, std::nullopt);
  EXPECT_EQ(back.metadata.created, std::nullopt);
}

TEST(child_protocol, invalid_utf8_is_replaced) {
  extraction e;
  e.text = "ok \xFF\xFE end";
  e.metadata.title = std::string("t\xC3");
  const auto back = decode_child_output(encode_child_output(e));
  EXPECT_EQ(back.text, "ok \xEF\xBF\xBD\xEF\xBF\xBD end");
  EXPECT_EQ(back.metadata.title, "t\xEF\xBF\xBD");
}

TEST(child_protocol, failure_round_trip) {
  const auto json = encode_child_failure({core::errc::unreadable_document, "the PDF is encrypted", false});
  const auto f = failure_of([&] { decode_child_output(json); });
  EXPECT_EQ(f.code, core::name(core::errc::unreadable_document));
  EXPECT_EQ(f.message, "the PDF is encrypted");
  EXPECT_FALSE(f.retryable);
  const auto g = failure_of([&] {
    decode_child_output(encode_child_failure({core::errc::document_too_complex, "too big", false}));
  });
  EXPECT_EQ(g.code, core::name(core::errc::document_too_complex));
}

TEST(child_protocol, garbage_is_a_crash) {
  for (const std::string_view bad :
       {"", "not json", "[]", "{}", "null", R"({"ok":"yes"})", R"({"ok":true})",
        R"({"ok":true,"pages":null,"text":5,"title":null,"author":null,"created_ms":null})",
        R"({"ok":true,"pages":-1,"text":"","title":null,"author":null,"created_ms":null})",
        R"({"ok":true,"pages":1.5,"text":"","title":null,"author":null,"created_ms":null})",
        R"({"ok":true,"pages":null,"text":"","title":null,"author":null,"created_ms":null} trailing)",
        R"({"ok":false,"code":"checksum_mismatch","message":"lies","retryable":true})",
        R"({"ok":false,"code":"unreadable_document","message":"no retryable"})",
        R"({"ok":true,"pages":null,"text":"cut)"}) {
    const auto f = failure_of([&] { decode_child_output(bad); });
    EXPECT_EQ(f.code, core::name(core::errc::extractor_crashed)) << bad;
    EXPECT_TRUE(f.retryable) << bad;
  }
}

// Found by tests/fuzz/child_answer_fuzz.cpp: a created_ms beyond what a
// time_point holds (about ±292 years) overflowed converting it, undefined
// behaviour on an answer a compromised child controls.
TEST(child_protocol, creation_times_beyond_a_time_point_are_a_crash) {
  const auto answer = [](std::string_view ms) {
    return R"({"ok":true,"pages":1,"text":"","truncated":false,"title":null,"author":null,"created_ms":)" +
           std::string(ms) +
           R"(,"analysis":{"chars":0,"words":0,"lines":0,"language":"und","language_confidence":0,"keywords":[]},)"
           R"("page_sources":[],"ocr":null})";
  };
  for (const std::string_view ms : {"1700000000000000", "9223372036855", "-9223372036855",
                                    "9223372036854775807", "-9223372036854775808"}) {
    const auto f = failure_of([&] { decode_child_output(answer(ms)); });
    EXPECT_EQ(f.code, core::name(core::errc::extractor_crashed)) << ms;
    EXPECT_TRUE(f.retryable) << ms;
  }
  const auto edge = decode_child_output(answer("9223372036854"));
  EXPECT_EQ(edge.metadata.created, core::time_point(std::chrono::milliseconds(9'223'372'036'854)));
}

TEST(child_protocol, language_tags_and_confidences) {
  const auto answer = [](std::string_view language, std::string_view confidence) {
    return R"({"ok":true,"pages":null,"text":"","truncated":false,"title":null,"author":null,"created_ms":null,)"
           R"("analysis":{"chars":0,"words":0,"lines":0,"language":")" +
           std::string(language) + R"(","language_confidence":)" + std::string(confidence) +
           R"(,"keywords":[]},"page_sources":[],"ocr":null})";
  };
  const auto longest = std::string(35, 'x');  // BCP 47's longest that readers must take
  EXPECT_EQ(decode_child_output(answer(longest, "0.5")).analysis.language, longest);
  EXPECT_EQ(decode_child_output(answer("zh-Hant", "1")).analysis.language_confidence, 1.0);
  EXPECT_EQ(decode_child_output(answer("und", "0")).analysis.language_confidence, 0.0);
  EXPECT_EQ(decode_child_output(answer("pt", "2.5E-1")).analysis.language_confidence, 0.25);
  for (const auto& [language, confidence] :
       std::vector<std::pair<std::string, std::string>>{{std::string(36, 'x'), "0.5"},
                                                        {"en", "1.5"},
                                                        {"en", "-0.1"},
                                                        {"en", "\"0.5\""},
                                                        {"en", "null"},
                                                        {"en", "1E400"}}) {
    const auto f = failure_of([&] { decode_child_output(answer(language, confidence)); });
    EXPECT_EQ(f.code, core::name(core::errc::extractor_crashed)) << language << " " << confidence;
  }
}

TEST(child_protocol, task_arguments) {
  for (const auto task :
       {child_task::extract_pdf, child_task::extract_docx, child_task::extract_image, child_task::ocr_pdf,
        child_task::ocr_image, child_task::check_docx, child_task::report_sandbox}) {
    EXPECT_EQ(parse_task_argument(task_argument(task)), task) << task_argument(task);
  }
  EXPECT_STREQ(task_argument(child_task::check_docx), "is-docx");
  EXPECT_STREQ(task_argument(child_task::ocr_image), "ocr-image");
  EXPECT_EQ(parse_task_argument("PDF"), std::nullopt);
  EXPECT_EQ(parse_task_argument(""), std::nullopt);
}

TEST(child_protocol, page_lists) {
  EXPECT_EQ(format_page_list({0, 3, 4}), "0,3,4");
  EXPECT_EQ(parse_page_list("0,3,4"), (std::vector<int>{0, 3, 4}));
  EXPECT_EQ(parse_page_list(""), std::vector<int>{});
  EXPECT_EQ(parse_page_list(format_page_list({7})), std::vector<int>{7});
  for (const std::string_view bad : {"3,1", "1,1", "-1", "a", "1,", ",1", "1,,2", " 1", "99999999999"}) {
    EXPECT_EQ(parse_page_list(bad), std::nullopt) << bad;
  }
}

TEST(child_protocol, page_sources_and_ocr_round_trip) {
  extraction e;
  e.pages = 3;
  e.text = "a\nb";
  e.per_page = {{page_source::text_layer, 120, std::nullopt},
                {page_source::ocr, 40, 91},
                {page_source::none, 0, std::nullopt, true}};
  e.ocr = ocr_summary{1, 91.0, {"eng", "deu"}};
  const auto back = decode_child_output(encode_child_output(e));
  ASSERT_EQ(back.per_page.size(), 3u);
  EXPECT_EQ(back.per_page[0].source, page_source::text_layer);
  EXPECT_EQ(back.per_page[0].chars, 120u);
  EXPECT_EQ(back.per_page[0].confidence, std::nullopt);
  EXPECT_EQ(back.per_page[1].source, page_source::ocr);
  EXPECT_EQ(back.per_page[1].confidence, 91);
  EXPECT_EQ(back.per_page[2].source, page_source::none);
  EXPECT_FALSE(back.per_page[1].blank);
  EXPECT_TRUE(back.per_page[2].blank);
  ASSERT_TRUE(back.ocr);
  EXPECT_EQ(back.ocr->pages, 1);
  EXPECT_DOUBLE_EQ(back.ocr->mean_confidence, 91.0);
  EXPECT_EQ(back.ocr->languages, (std::vector<std::string>{"eng", "deu"}));

  e.ocr.reset();
  EXPECT_FALSE(decode_child_output(encode_child_output(e)).ocr);

  // A child's claims are checked like the rest of its answer.
  const auto with = [&](auto change) {
    auto bad = e;
    change(bad);
    return encode_child_output(bad);
  };
  const std::string bad_answers[] = {
      with([](extraction& x) { x.per_page[1].confidence = 101; }),
      with([](extraction& x) { x.pages = 2; }),  // more pages described than the document has
      with([](extraction& x) {
        x.ocr = ocr_summary{1, 100.5, {"eng"}};
      }),
  };
  for (const auto& answer : bad_answers) {
    EXPECT_EQ(failure_of([&] { decode_child_output(answer); }).code,
              core::name(core::errc::extractor_crashed))
        << answer;
  }
  auto unknown_source = encode_child_output(e);
  unknown_source.replace(unknown_source.find("\"none\""), 6, "\"nope\"");
  EXPECT_EQ(failure_of([&] { decode_child_output(unknown_source); }).code,
            core::name(core::errc::extractor_crashed));
  auto blank_not_a_bool = encode_child_output(e);
  blank_not_a_bool.replace(blank_not_a_bool.find("\"blank\":true"), 12, "\"blank\":1");
  EXPECT_EQ(failure_of([&] { decode_child_output(blank_not_a_bool); }).code,
            core::name(core::errc::extractor_crashed));
}

TEST(child_protocol, progress_lines) {
  EXPECT_EQ(encode_child_progress(2, 5), "progress 2 5\n");
  EXPECT_EQ(decode_child_progress("progress 2 5", 5), 2u);
  EXPECT_EQ(decode_child_progress("progress 5 5", 5), 5u);
  for (const auto* bad :
       {"progress 0 5", "progress 6 5", "progress 2 4", "progress 2 5 ", "progress  2 5", "progress 2",
        "progress -1 5", "progress 2 5\n", "Progress 2 5", "progress a 5", "progress 99999999999 5", ""}) {
    EXPECT_FALSE(decode_child_progress(bad, 5)) << bad;
  }
  EXPECT_FALSE(decode_child_progress("progress 1 1", 0)) << "a child asked to read no page reports none";
}

TEST(child_protocol, docx_check_round_trip) {
  EXPECT_TRUE(decode_docx_check(encode_docx_check(true)));
  EXPECT_FALSE(decode_docx_check(encode_docx_check(false)));
  for (const std::string_view bad : {"", R"({"ok":true})", R"({"ok":true,"docx":"yes"})"}) {
    EXPECT_EQ(failure_of([&] { decode_docx_check(bad); }).code, core::name(core::errc::extractor_crashed))
        << bad;
  }
}

TEST(child_protocol, sandbox_report_round_trip) {
  sandbox_report r;
  r.no_new_privs = true;
  r.landlock_abi = 7;
  r.seccomp = true;
  r.seccomp_syscalls = 12;
  const auto back = decode_sandbox_report(encode_sandbox_report(r));
  EXPECT_TRUE(back.no_new_privs);
  EXPECT_FALSE(back.namespaces);
  EXPECT_EQ(back.landlock_abi, 7);
  EXPECT_TRUE(back.seccomp);
  EXPECT_EQ(back.seccomp_syscalls, 12u);
  EXPECT_EQ(back.missing(), std::vector<std::string>{"namespaces"});
  EXPECT_EQ(sandbox_report{}.missing(),
            (std::vector<std::string>{"no_new_privs", "namespaces", "landlock", "seccomp"}));
  EXPECT_EQ(failure_of([] { decode_sandbox_report(R"({"ok":true,"sandbox":{"seccomp":true}})"); }).code,
            core::name(core::errc::extractor_crashed));
}

TEST(child_protocol, strict_refusal_is_believed) {
  const auto f = failure_of([] {
    decode_child_output(encode_child_failure({core::errc::sandbox_unavailable, "missing: landlock", false}));
  });
  EXPECT_EQ(f.code, core::name(core::errc::sandbox_unavailable));
  EXPECT_FALSE(f.retryable);
}

// ================================================================ sandbox

TEST(sandbox, every_fixture_extracts_in_the_child_as_in_process) {
  // The child parses after lockdown, unable to open a file: what the parsers
  // read from disk is loaded before it (prepare_extractors), so nothing changes.
  const std::pair<const char*, core::file_kind> fixtures[] = {
      {"en-1page.pdf", core::file_kind::pdf}, {"multipage.pdf", core::file_kind::pdf},
      {"de.pdf", core::file_kind::pdf},       {"scanned.pdf", core::file_kind::pdf},
      {"de.docx", core::file_kind::docx},     {"table-header-footer.docx", core::file_kind::docx}};
  ocr_settings no_ocr;  // OCR would read scanned.pdf: the ocr tests' business
  no_ocr.mode = ocr_mode::never;
  for (const auto& [name, kind] : fixtures) {
    const auto child = extract_in_child(docflow_bin(), fixture(name), kind, test_limits(), {}, no_ocr);
    const auto bytes = bytes_of(fixture(name));
    const auto direct = kind == core::file_kind::pdf ? extract_pdf(bytes) : extract_docx(bytes);
    EXPECT_EQ(child.pages, direct.pages) << name;
    EXPECT_EQ(child.text, direct.text) << name;
    EXPECT_EQ(child.metadata.title, direct.metadata.title) << name;
    EXPECT_EQ(child.metadata.author, direct.metadata.author) << name;
    EXPECT_EQ(child.metadata.created, direct.metadata.created) << name;
  }
}

TEST(sandbox, extracts_a_pdf_in_the_child) {
  const auto e =
      extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  const auto direct = extract_pdf(bytes_of(fixture("en-1page.pdf")));
  EXPECT_EQ(e.pages, 1);
  EXPECT_EQ(e.text, direct.text);
  EXPECT_EQ(e.metadata.title, "River Survey Report");
  EXPECT_EQ(e.metadata.author, "Jane Doe");
  EXPECT_EQ(e.metadata.created, utc(2024, 3, 15, 10, 30, 0));
}

TEST(sandbox, extracts_a_docx_in_the_child) {
  const auto e = extract_in_child(docflow_bin(), fixture("table-header-footer.docx"), core::file_kind::docx,
                                  test_limits());
  EXPECT_EQ(e.text, extract_docx(bytes_of(fixture("table-header-footer.docx"))).text);
  EXPECT_EQ(e.metadata.author, "John Smith");
  EXPECT_EQ(e.pages, 1);
}

namespace {
// `text` as one paragraph of a DOCX, extracted and analysed in the child.
extraction paragraph_in_child(const std::string& text) {
  temp_dir dir;
  const auto file = dir.write("text.docx", minimal_docx("<w:p><w:r><w:t>" + text + "</w:t></w:r></w:p>"));
  return extract_in_child(docflow_bin(), file, core::file_kind::docx, test_limits());
}
}  // namespace

// ICU segments and libexttextcat judges inside the locked-down child as in
// this process: ICU's rules and dictionaries are in libicudata, mapped with
// the library, and the fingerprints are read before lock_down().
TEST(sandbox, analyses_chinese_in_the_child_as_in_process) {
  const std::string chinese =
      "委员会星期二开会讨论新的预算。大多数成员认为这个计划太贵了，但是他们找不到更好的方案。"
      "他们下周将再次开会做出最后的决定。";
  const auto e = paragraph_in_child(chinese);
  const auto direct = analyze(chinese);
  EXPECT_EQ(e.text, chinese);
  EXPECT_EQ(e.analysis.word_count, direct.word_count);
  EXPECT_GT(e.analysis.word_count, 20u);
  EXPECT_EQ(e.analysis.language, "zh");
  EXPECT_EQ(e.analysis.language_confidence, direct.language_confidence);
  ASSERT_FALSE(e.analysis.keywords.empty());
  EXPECT_EQ(e.analysis.keywords[0].term, direct.keywords[0].term);
}

TEST(sandbox, analyses_thai_and_italian_in_the_child) {
  const std::string text =
      "Il comitato si è riunito martedì per discutere il nuovo bilancio. La maggior parte dei membri ha "
      "ritenuto che il piano fosse troppo costoso. สวัสดีครับ ผมชื่อ";
  const auto e = paragraph_in_child(text);
  EXPECT_EQ(e.analysis.word_count, analyze(text).word_count);
  EXPECT_EQ(e.analysis.language, "it");
}

TEST(sandbox, child_failures_keep_their_code) {
  const auto f = failure_of(
      [] { extract_in_child(docflow_bin(), fixture("encrypted.pdf"), core::file_kind::pdf, test_limits()); });
  EXPECT_EQ(f.code, core::name(core::errc::unreadable_document));
  EXPECT_FALSE(f.retryable);
  const temp_dir dir;
  std::vector<zip_entry_spec> entries{stored("[Content_Types].xml", std::string(content_types)),
                                      stored("word/document.xml", document_xml("<w:p/>"))};
  while (entries.size() < 10001) entries.push_back(stored("e/" + std::to_string(entries.size()), ""));
  const auto many = dir.write("many.docx", build_zip(entries));
  const auto g =
      failure_of([&] { extract_in_child(docflow_bin(), many, core::file_kind::docx, test_limits()); });
  EXPECT_EQ(g.code, core::name(core::errc::document_too_complex));
}

TEST(sandbox, crash_is_transient) {
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "crash");
  const auto f = failure_of(
      [] { extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits()); });
  EXPECT_EQ(f.code, core::name(core::errc::extractor_crashed));
  EXPECT_TRUE(f.retryable);
}

TEST(sandbox, hang_times_out_and_is_killed) {
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "hang");
  auto limits = test_limits();
  limits.wall = 1500ms;  // past the first one-second poll slice
  const auto start = std::chrono::steady_clock::now();
  const auto f = failure_of(
      [&] { extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, limits); });
  EXPECT_EQ(f.code, core::name(core::errc::extractor_timeout));
  EXPECT_TRUE(f.retryable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(sandbox, memory_limit_stops_the_child) {
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "oom");
  auto limits = test_limits();
  const bool kernel_limit = limits.address_space != 0;
  if (kernel_limit) {
    limits.address_space = 256ULL << 20;
  } else {
    limits.wall = 3s;  // no RLIMIT_AS under sanitizers: the wall clock contains the child instead
  }
  const auto f = failure_of(
      [&] { extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, limits); });
  if (kernel_limit) {
    EXPECT_EQ(f.code, core::name(core::errc::extractor_crashed));
  } else {
    EXPECT_TRUE(f.is(core::errc::extractor_crashed) || f.is(core::errc::extractor_timeout)) << f.code;
  }
  EXPECT_TRUE(f.retryable);
}

TEST(sandbox, cpu_limit_stops_the_child) {
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "spin");
  auto limits = test_limits();
  limits.cpu_seconds = 1;
  const auto start = std::chrono::steady_clock::now();
  const auto f = failure_of(
      [&] { extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, limits); });
  EXPECT_EQ(f.code, core::name(core::errc::extractor_crashed));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST(sandbox, output_limit) {
  auto limits = test_limits();
  limits.max_output = 64;
  const auto f = failure_of(
      [&] { extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, limits); });
  EXPECT_EQ(f.code, core::name(core::errc::document_too_complex));
  EXPECT_FALSE(f.retryable);
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "flood");
  limits.max_output = 4ULL << 20;
  EXPECT_EQ(failure_of([&] {
              extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, limits);
            }).code,
            core::name(core::errc::document_too_complex));
}

TEST(sandbox, unreadable_input_is_a_storage_failure) {
  // The parent opens the file; the child only ever gets a descriptor.
  const auto f = failure_of(
      [] { extract_in_child(docflow_bin(), "/nonexistent/file.pdf", core::file_kind::pdf, test_limits()); });
  EXPECT_EQ(f.code, core::name(core::errc::storage_unavailable));
  EXPECT_TRUE(f.retryable);
}

TEST(sandbox, docx_check_runs_in_the_child) {
  const auto limits = docx_check_limits(false);
  EXPECT_TRUE(is_docx_in_child(docflow_bin(), fixture("de.docx"), limits));
  EXPECT_TRUE(is_docx_in_child(docflow_bin(), fixture("table-header-footer.docx"), limits));
  EXPECT_FALSE(is_docx_in_child(docflow_bin(), fixture("en-1page.pdf"), limits));
  const temp_dir dir;
  EXPECT_FALSE(
      is_docx_in_child(docflow_bin(), dir.write("plain.zip", build_zip({stored("a.txt", "a")})), limits));
  EXPECT_FALSE(is_docx_in_child(docflow_bin(), dir.write("empty.docx", ""), limits));
  EXPECT_EQ(failure_of([&] { is_docx_in_child(docflow_bin(), dir.path() / "missing.docx", limits); }).code,
            core::name(core::errc::storage_unavailable));
  // The test faults are extraction's: the check is not disturbed by them.
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "crash");
  EXPECT_TRUE(is_docx_in_child(docflow_bin(), fixture("de.docx"), limits));
}

namespace {

// A reader over `bytes`, as a blob_writer's read_at gives an upload; records
// the largest read asked for.
struct bytes_reader {
  std::string bytes;
  std::size_t largest_read = 0;
  std::size_t reads = 0;
  byte_reader reader() {
    return [this](std::uint64_t offset, char* out, std::size_t n) {
      largest_read = std::max(largest_read, n);
      ++reads;
      if (offset >= bytes.size()) return std::size_t{0};
      const auto got = std::min<std::size_t>(n, bytes.size() - offset);
      std::copy_n(bytes.data() + offset, got, out);
      return got;
    };
  }
  bool is_docx(const sandbox_limits& limits) {
    return is_docx_in_child(docflow_bin(), bytes.size(), reader(), limits);
  }
};

}  // namespace

TEST(sandbox, docx_check_through_a_reader) {
  const auto limits = docx_check_limits(false);
  EXPECT_TRUE(bytes_reader{bytes_of(fixture("de.docx"))}.is_docx(limits));
  EXPECT_TRUE(bytes_reader{bytes_of(fixture("table-header-footer.docx"))}.is_docx(limits));
  EXPECT_FALSE(bytes_reader{build_zip({stored("a.txt", "a")})}.is_docx(limits));
  EXPECT_FALSE(bytes_reader{bytes_of(fixture("en-1page.pdf"))}.is_docx(limits));
  EXPECT_FALSE(bytes_reader{""}.is_docx(limits));
}

TEST(sandbox, docx_check_copies_in_bounded_reads) {
  // A DOCX of 1 MiB and more: its directory is at the end, so the child sees
  // it only if every byte was copied, and never in one read.
  bytes_reader big{minimal_docx("<w:p/>", {stored("word/media/padding.bin", std::string(1100 * 1024, 'p'))})};
  EXPECT_TRUE(big.is_docx(docx_check_limits(false)));
  EXPECT_LE(big.largest_read, 256u * 1024);
  EXPECT_GE(big.reads, 5u);
}

TEST(sandbox, docx_check_reader_failures_are_storage_failures) {
  const auto limits = docx_check_limits(false);
  const auto docx = bytes_of(fixture("de.docx"));
  const auto f = failure_of([&] {
    is_docx_in_child(
        docflow_bin(), docx.size(),
        [](std::uint64_t, char*, std::size_t) -> std::size_t { throw std::runtime_error("disk gone"); },
        limits);
  });
  EXPECT_EQ(f.code, core::name(core::errc::storage_unavailable));
  EXPECT_TRUE(f.retryable);
  // Fewer bytes than promised: the upload is not all there.
  bytes_reader short_one{docx};
  EXPECT_EQ(
      failure_of([&] { is_docx_in_child(docflow_bin(), docx.size() + 1, short_one.reader(), limits); }).code,
      core::name(core::errc::storage_unavailable));
}

TEST(sandbox, docx_check_through_a_reader_holds_under_strict) {
  // The child maps its memfd before lock_down(); after it, Landlock, seccomp
  // and RLIMIT_FSIZE 0 meet only page faults on that mapping.
  const auto missing = check_sandbox(docflow_bin()).missing();
  bytes_reader docx{bytes_of(fixture("de.docx"))};
  bytes_reader zip{build_zip({stored("a.txt", "a")})};
  if (missing.empty()) {
    EXPECT_TRUE(docx.is_docx(docx_check_limits(true)));
    EXPECT_FALSE(zip.is_docx(docx_check_limits(true)));
  } else {
    // Strict on this kernel refuses before parsing: no answer either way.
    EXPECT_EQ(failure_of([&] { docx.is_docx(docx_check_limits(true)); }).code,
              core::name(core::errc::sandbox_unavailable));
    std::cout << "[ sandbox  ] strict mode unproven on this kernel: it lacks part of the sandbox\n";
  }
}

TEST(sandbox, report_names_the_mechanisms_in_force) {
  const auto r = check_sandbox(docflow_bin());
  EXPECT_TRUE(r.no_new_privs);
  // Landlock as the kernel offers it (0 when it does not).
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, 1U);
  EXPECT_EQ(r.landlock_abi, abi > 0 ? static_cast<int>(abi) : 0);
  EXPECT_TRUE(r.seccomp);
  EXPECT_EQ(r.seccomp_syscalls, allowed_syscalls().size());
  std::cout << "[ sandbox  ] no_new_privs=" << r.no_new_privs << " namespaces=" << r.namespaces
            << " landlock_abi=" << r.landlock_abi << " seccomp=" << r.seccomp
            << " syscalls=" << r.seccomp_syscalls << '\n';
}

TEST(sandbox, locked_down_process_cannot_grow_a_file) {
  // lock_down() sets RLIMIT_FSIZE 0 itself: in TSan builds the parent cannot
  // (child_limits), as TSan's runtime writes a file while the child starts.
  // Even through a descriptor it may write on, no regular file grows.
  const temp_dir dir;
  const auto path = dir.path() / "out";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ::dup2(fd, 1) < 0) ::_exit(100);
    lock_down();
    ::_exit(::write(1, "x", 1) == 1 ? 0 : 101);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit code " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGXFSZ);
  EXPECT_EQ(fs::file_size(path), 0u);
}

namespace {

// A TCP listener on 127.0.0.1 for a hostile child to try to reach.
class tcp_listener {
public:
  tcp_listener() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 4) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &size) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(a.sin_port);
  }
  tcp_listener(const tcp_listener&) = delete;
  tcp_listener& operator=(const tcp_listener&) = delete;
  ~tcp_listener() { ::close(fd_); }
  std::uint16_t port() const { return port_; }
  // Whether anyone connected (the backlog holds the connection, accepted or not).
  bool reached() const {
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return false;
    ::close(c);
    return true;
  }

private:
  int fd_;
  std::uint16_t port_ = 0;
};

// The report of the hostile child (test_faults.hpp), by attempt.
std::map<std::string, std::string> attempts(const std::string& report) {
  std::map<std::string, std::string> out;
  std::size_t at = 0;
  while (at < report.size()) {
    const auto end = report.find('\n', at);
    const auto line = report.substr(at, end - at);
    out[line.substr(0, line.find(':'))] = line;
    at = end == std::string::npos ? report.size() : end + 1;
  }
  return out;
}

}  // namespace

TEST(sandbox, hostile_child_is_contained) {
  const temp_dir dir;
  const auto secret = dir.write("jwt.secret", "0123456789abcdef0123456789abcdef-the-data-dir-secret");
  const auto outside = dir.path() / "escaped.txt";
  const tcp_listener listener;
  const auto spec = "hostile:secret=" + secret.string() + ";write=" + outside.string() +
                    ";port=" + std::to_string(listener.port());
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", spec.c_str());
  auto limits = test_limits();
  if (limits.address_space > 0) limits.address_space = 256ULL << 20;

  // The job ends cleanly: the child answers, with its report as the text.
  const auto e = extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, limits);
  const auto report = attempts(e.text);
  for (const auto* attempt :
       {"read_secret", "read_parent_environ", "connect", "fork", "write_outside", "allocate", "exec"}) {
    ASSERT_TRUE(report.contains(attempt)) << attempt << " missing from:\n" << e.text;
    // Sanitizer builds' children have no RLIMIT_AS to meet (default_address_space).
    const auto expected = std::string_view(attempt) == "allocate" && limits.address_space == 0
                              ? ": not tried ("
                              : ": blocked (";
    EXPECT_TRUE(report.at(attempt).starts_with(attempt + std::string(expected))) << report.at(attempt);
  }
  EXPECT_EQ(report.size(), 7u) << e.text;
  EXPECT_FALSE(fs::exists(outside));
  EXPECT_FALSE(listener.reached());
  std::cout << e.text;
}

namespace {

// Runs `f` in a forked process in which the named system calls fail with
// `error`, as on a kernel without them or under a container's seccomp
// profile, and returns what `f` returned (its exit code; 200 when it died).
int on_a_kernel_without(const std::vector<std::string>& calls, int error, const std::function<int()>& f) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    for (const auto& name : calls) {
      if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(error), seccomp_syscall_resolve_name(name.c_str()), 0) != 0) {
        ::_exit(100);
      }
    }
    if (seccomp_load(ctx) != 0) ::_exit(101);
    ::_exit(f());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

}  // namespace

TEST(sandbox, strict_mode_refuses_what_best_effort_runs_without) {
  // No Landlock (before Linux 5.13) and no unshare (Docker's default profile).
  const int outcome = on_a_kernel_without({"landlock_create_ruleset", "unshare"}, ENOSYS, [] {
    const auto r = check_sandbox(docflow_bin());
    if (r.landlock_abi != 0 || r.namespaces || !r.seccomp || !r.no_new_privs) return 1;
    if (r.missing() != std::vector<std::string>{"namespaces", "landlock"}) return 2;
    auto strict = test_limits();
    strict.strict = true;
    try {
      extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, strict);
      return 3;
    } catch (const stage_error& e) {
      if (!e.failure().is(core::errc::sandbox_unavailable) || e.failure().retryable) return 4;
      if (e.failure().message.find("landlock") == std::string::npos) return 5;
    }
    try {
      is_docx_in_child(docflow_bin(), fixture("de.docx"), docx_check_limits(true));
      return 6;
    } catch (const stage_error& e) {
      if (!e.failure().is(core::errc::sandbox_unavailable)) return 7;
    }
    // Best effort goes on with seccomp and the rest, and extracts the same.
    const auto e =
        extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
    if (e.text != extract_pdf(bytes_of(fixture("en-1page.pdf"))).text) return 8;
    return is_docx_in_child(docflow_bin(), fixture("de.docx"), docx_check_limits(false)) ? 0 : 9;
  });
  EXPECT_EQ(outcome, 0);
}

TEST(sandbox, missing_executable_is_a_crash) {
  const auto f = failure_of([] {
    extract_in_child("/nonexistent/docflow", fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  });
  EXPECT_EQ(f.code, core::name(core::errc::extractor_crashed));
}

TEST(sandbox, heartbeat_failure_kills_the_child) {
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "hang");
  int beats = 0;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits(),
                                [&] {
                                  if (++beats == 1) throw std::runtime_error("lease lost");
                                }),
               std::runtime_error);
  EXPECT_EQ(beats, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

namespace {

// This process's children that are zygotes (`docflow extract --zygote`).
std::vector<pid_t> zygotes() {
  std::vector<pid_t> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto end_of_name = line.rfind(')');
    if (end_of_name == std::string::npos || line.size() < end_of_name + 5) continue;  // gone meanwhile
    const auto fields = line.substr(end_of_name + 2);                                 // state, then ppid
    if (std::stoi(fields.substr(2)) != ::getpid()) continue;
    std::ifstream cmdline(entry.path() / "cmdline");
    const std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    if (args.find("--zygote") != std::string::npos && fields[0] != 'Z') out.push_back(std::stoi(name));
  }
  return out;
}

// Whether `pid` has ended: gone, or a zombie (its descriptors closed).
bool ended(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  return !std::getline(stat, line) || line.substr(line.rfind(')') + 2, 1) == "Z";
}

// The children of `pid`.
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  for (pid_t child = 0; f >> child;) out.push_back(child);
  return out;
}

}  // namespace

TEST(sandbox, each_document_gets_a_fresh_process_from_one_zygote) {
  extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  const auto before = zygotes();
  ASSERT_EQ(before.size(), 1u) << "one zygote serves one caller at a time";
  const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "hang");
  std::vector<pid_t> seen;
  pid_t forked_by = 0;
  for (int run = 0; run < 2; ++run) {
    EXPECT_THROW(extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits(),
                                  [&] {
                                    // The hanging child, seen from outside while it runs.
                                    for (const pid_t z : zygotes()) {
                                      for (const pid_t child : children_of(z)) {
                                        seen.push_back(child);
                                        forked_by = z;
                                      }
                                    }
                                    throw std::runtime_error("enough");
                                  }),
                 std::runtime_error);
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(seen[0], seen[1]) << "a process per document";
  EXPECT_NE(forked_by, before[0]) << "another environment, another zygote";
  EXPECT_EQ(zygotes(), std::vector<pid_t>{forked_by}) << "the one of the old environment was stopped";
  EXPECT_TRUE(children_of(forked_by).empty()) << "the killed children were reaped";
}

TEST(sandbox, a_zygote_that_died_is_replaced) {
  extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  const auto first = zygotes();
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(::kill(first[0], SIGKILL), 0);
  while (!ended(first[0])) std::this_thread::sleep_for(10ms);
  const auto e =
      extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  EXPECT_EQ(e.text, extract_pdf(bytes_of(fixture("en-1page.pdf"))).text);
  const auto now = zygotes();
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0], first[0]);
}

TEST(sandbox, a_zygote_forks_a_hundred_children_then_is_replaced) {
  const auto run = [] {
    is_docx_in_child(docflow_bin(), fixture("de.docx"), docx_check_limits(false));
    const auto z = zygotes();
    return z.size() == 1 ? z[0] : pid_t{-1};
  };
  const pid_t first = run();
  ASSERT_GT(first, 0);
  for (int child = 2; child < 100; ++child) ASSERT_EQ(run(), first) << "child " << child;
  EXPECT_EQ(run(), pid_t{-1}) << "stopped after its hundredth child";
  const pid_t next = run();
  EXPECT_GT(next, 0);
  EXPECT_NE(next, first);
}

TEST(sandbox, a_zygote_outlives_the_thread_that_started_it) {
  // Threads share the pool: a worker thread that ends (a drain) must not
  // take with it the zygote another thread is using.
  std::thread([] {
    extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  }).join();
  const auto started = zygotes();
  ASSERT_EQ(started.size(), 1u);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(zygotes(), started) << "alive after its thread ended";
  extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  EXPECT_EQ(zygotes(), started) << "and used by another";
}

TEST(sandbox, a_zygote_and_its_child_end_when_the_server_dies) {
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  const pid_t server = ::fork();
  if (server == 0) {
    // A server with a hanging extraction, killed while it waits.
    ::setenv("DOCFLOW_TEST_EXTRACTOR_FAULT", "hang", 1);
    try {
      extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits(), [&] {
        for (const pid_t z : zygotes()) {
          for (const pid_t child : children_of(z)) {
            const pid_t pids[2] = {z, child};
            (void)!::write(report[1], pids, sizeof pids);
            ::kill(::getpid(), SIGKILL);
          }
        }
      });
    } catch (...) {
    }
    ::_exit(1);
  }
  ::close(report[1]);
  pid_t pids[2] = {0, 0};
  ASSERT_EQ(::read(report[0], pids, sizeof pids), static_cast<ssize_t>(sizeof pids));
  ::close(report[0]);
  ::waitpid(server, nullptr, 0);
  for (int i = 0; i < 500 && !(ended(pids[0]) && ended(pids[1])); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(ended(pids[0])) << "the zygote " << pids[0];
  EXPECT_TRUE(ended(pids[1])) << "its hanging child " << pids[1];
}

TEST(sandbox, a_zygote_whose_child_crashed_forks_no_more) {
  extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  {
    const scoped_env fault("DOCFLOW_TEST_EXTRACTOR_FAULT", "crash");
    failure_of([] {
      extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
    });
    EXPECT_EQ(zygotes(), std::vector<pid_t>{}) << "its child died of SIGABRT";
  }
}

TEST(sandbox, a_request_for_the_most_pages_ocr_may_read_reaches_the_child) {
  child_request request;
  request.task = child_task::ocr_pdf;
  for (int page = 0; page < 10000; ++page)
    request.ocr.pages.push_back(page);  // DOCFLOW_OCR_MAX_PAGES' maximum
  const int input = ::open(fixture("en-1page.pdf").c_str(), O_RDONLY | O_CLOEXEC);
  int out[2];
  ASSERT_TRUE(input >= 0 && ::pipe2(out, O_CLOEXEC) == 0);
  std::vector<std::string> env{"OMP_THREAD_LIMIT=1"};
  auto child = start_child(docflow_bin(), env, request, input, out[1]);
  ::close(out[1]);
  ::close(input);
  std::string answer;
  char buffer[4096];
  for (ssize_t n = 0; (n = ::read(out[0], buffer, sizeof buffer)) > 0;)
    answer.append(buffer, static_cast<std::size_t>(n));
  ::close(out[0]);
  const auto status = child.wait_until(std::chrono::steady_clock::now() + 60s);
  ASSERT_TRUE(status);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_NE(answer.find("progress 1 10000"), std::string::npos) << answer.substr(0, 200);
  const auto e = decode_child_output(answer.substr(answer.find('{')));
  ASSERT_EQ(e.per_page.size(), 1u);
  EXPECT_EQ(e.per_page[0].source, page_source::ocr);
}

TEST(sandbox, the_zygote_knows_no_secret) {
  const scoped_env secret("DOCFLOW_DATABASE_PASSWORD", "hunter2-the-database-password");
  extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits());
  const auto found = zygotes();
  ASSERT_EQ(found.size(), 1u);
  std::ifstream f("/proc/" + std::to_string(found[0]) + "/environ");
  const std::string environ_text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // The zygote is not dumpable: reading this takes root (as the suite runs).
  ASSERT_NE(environ_text.find("OMP_THREAD_LIMIT=1"), std::string::npos) << "unreadable or empty";
  EXPECT_EQ(environ_text.find("hunter2"), std::string::npos);
  std::istringstream entries(environ_text);
  for (std::string entry; std::getline(entries, entry, '\0');) {
    const auto name = entry.substr(0, entry.find('='));
    EXPECT_TRUE(name == "OMP_THREAD_LIMIT" || name == "DOCFLOW_TEST_EXTRACTOR_FAULT" ||
                name.ends_with("SAN_OPTIONS"))
        << entry;
  }
}

// ==================================================================== ocr
//
// Tesseract reads the committed scans and images (tests/fixtures/README.md)
// in the sandboxed child. OCR output is not exact layout: the tests look for
// the words a person reads on the page.

namespace {

// Lowercase words of `text`, letters and digits only.
std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  for (const char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!word.empty()) {
      out.push_back(std::exchange(word, {}));
    }
  }
  if (!word.empty()) out.push_back(word);
  return out;
}

// Whether `text` holds the words of `phrase`, in order, next to each other.
bool reads(std::string_view text, std::string_view phrase) {
  const auto have = words_of(text);
  const auto want = words_of(phrase);
  return std::search(have.begin(), have.end(), want.begin(), want.end()) != have.end();
}

ocr_settings ocr_mode_of(ocr_mode m) {
  ocr_settings s;
  s.mode = m;
  return s;
}

extraction extract_with(const char* name, core::file_kind kind, const ocr_settings& ocr = {}) {
  return extract_in_child(docflow_bin(), fixture(name), kind, test_limits(), {}, ocr);
}

}  // namespace

TEST(ocr, pages_to_recognise_follows_the_mode_the_threshold_and_the_bound) {
  extraction e;
  e.per_page = {
      {page_source::none, 0, {}}, {page_source::text_layer, 200, {}}, {page_source::text_layer, 3, {}}};
  ocr_settings s;
  EXPECT_EQ(pages_to_recognise(e, s), (std::vector<int>{0, 2}));
  s.min_page_chars = 0;
  EXPECT_EQ(pages_to_recognise(e, s), std::vector<int>{});
  s.mode = ocr_mode::always;
  EXPECT_EQ(pages_to_recognise(e, s), (std::vector<int>{0, 1, 2}));
  s.max_pages = 2;
  EXPECT_EQ(pages_to_recognise(e, s), (std::vector<int>{0, 1}));
  s.mode = ocr_mode::never;
  EXPECT_EQ(pages_to_recognise(e, s), std::vector<int>{});
  EXPECT_EQ(pages_to_recognise(extraction{}, ocr_settings{}), std::vector<int>{});  // a DOCX has no pages

  e.per_page[0].blank = true;  // nothing to read, whatever the mode
  EXPECT_EQ(pages_to_recognise(e, ocr_settings{}), std::vector<int>{2});
  s.mode = ocr_mode::always;
  s.max_pages = 100;
  EXPECT_EQ(pages_to_recognise(e, s), (std::vector<int>{1, 2}));
}

namespace {

// A PDF of one page per content stream, "" for a page without one, each
// 200 x 200 points; poppler rebuilds the missing cross-reference table.
std::string pdf_of_pages(const std::vector<std::string>& contents) {
  const auto count = contents.size();
  std::string kids;
  std::string objects;
  for (std::size_t i = 0; i < count; ++i) {
    const auto page = 3 + 2 * i;
    kids += std::to_string(page) + " 0 R ";
    objects += std::to_string(page) + " 0 obj <</Type /Page /Parent 2 0 R /MediaBox [0 0 200 200]";
    if (!contents[i].empty()) objects += " /Contents " + std::to_string(page + 1) + " 0 R";
    objects += ">> endobj\n";
    objects += std::to_string(page + 1) + " 0 obj <</Length " + std::to_string(contents[i].size()) +
               ">> stream\n" + contents[i] + "\nendstream endobj\n";
  }
  return "%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n2 0 obj <</Type /Pages /Kids [" + kids +
         "] /Count " + std::to_string(count) + ">> endobj\n" + objects + "trailer <</Root 1 0 R>>\n%%EOF\n";
}

}  // namespace

TEST(ocr, a_page_that_draws_nothing_is_not_read_by_ocr) {
  const temp_dir dir;
  const auto pdf = dir.write("blank.pdf", pdf_of_pages({
                                              "",                           // no content at all
                                              "1 1 1 rg 0 0 200 200 re f",  // white on white
                                              "0.5 g 0 0 200 200 re f",     // one grey all over
                                              "0 g 100 100 1.5 1.5 re f",   // a speck: not blank
                                              "",  // after a page that needs OCR: not looked at
                                          }));
  const auto e = extract_in_child(docflow_bin(), pdf, core::file_kind::pdf, test_limits());
  ASSERT_EQ(e.per_page.size(), 5u);
  const bool blank[] = {true, true, true, false, false};
  for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(e.per_page[i].blank, blank[i]) << "page " << i;
  EXPECT_EQ(e.per_page[0].source, page_source::none);
  EXPECT_EQ(e.per_page[3].source, page_source::ocr);  // drawn, so OCR looked (and found no word)
  EXPECT_EQ(e.per_page[4].source, page_source::ocr);
  ASSERT_TRUE(e.ocr);
  EXPECT_EQ(e.ocr->pages, 2);

  // A document of blank pages starts no OCR child at all; with OCR off,
  // no page is drawn to find out.
  const auto only_blank = dir.write("only-blank.pdf", pdf_of_pages({"", ""}));
  const auto none = extract_in_child(docflow_bin(), only_blank, core::file_kind::pdf, test_limits());
  EXPECT_FALSE(none.ocr);
  EXPECT_TRUE(none.per_page[0].blank && none.per_page[1].blank);
  const auto off = extract_in_child(docflow_bin(), only_blank, core::file_kind::pdf, test_limits(), {},
                                    ocr_mode_of(ocr_mode::never));
  EXPECT_FALSE(off.per_page[0].blank || off.per_page[1].blank);

  // Only the first max_pages pages without text are looked at.
  auto one = ocr_settings{};
  one.max_pages = 1;
  const auto bounded =
      extract_in_child(docflow_bin(), only_blank, core::file_kind::pdf, test_limits(), {}, one);
  EXPECT_TRUE(bounded.per_page[0].blank);
  EXPECT_FALSE(bounded.per_page[1].blank);
}

TEST(ocr, a_scanned_pdf_is_read_by_ocr) {
  const auto e = extract_with("scanned.pdf", core::file_kind::pdf);
  EXPECT_TRUE(reads(e.text, "Scanned page without a text layer")) << e.text;
  EXPECT_EQ(e.pages, 1);
  ASSERT_EQ(e.per_page.size(), 1u);
  EXPECT_EQ(e.per_page[0].source, page_source::ocr);
  EXPECT_GT(e.per_page[0].chars, 20u);
  ASSERT_TRUE(e.per_page[0].confidence);
  EXPECT_GT(*e.per_page[0].confidence, 60);
  EXPECT_LE(*e.per_page[0].confidence, 100);
  ASSERT_TRUE(e.ocr);
  EXPECT_EQ(e.ocr->pages, 1);
  EXPECT_DOUBLE_EQ(e.ocr->mean_confidence, *e.per_page[0].confidence);
  EXPECT_EQ(e.ocr->languages, std::vector<std::string>{"eng"});
  EXPECT_EQ(e.analysis.word_count, words_of(e.text).size());  // the analysis is of the recognised text
}

TEST(ocr, a_page_with_a_text_layer_is_not_read_by_ocr_in_auto_mode) {
  const auto e = extract_with("en-1page.pdf", core::file_kind::pdf);
  EXPECT_EQ(e.text, extract_pdf(bytes_of(fixture("en-1page.pdf"))).text);
  ASSERT_EQ(e.per_page.size(), 1u);
  EXPECT_EQ(e.per_page[0].source, page_source::text_layer);
  EXPECT_EQ(e.per_page[0].chars, 203u);  // 244 characters: 42 words, 40 spaces and a line break between
  EXPECT_EQ(e.per_page[0].confidence, std::nullopt);
  EXPECT_FALSE(e.ocr);
}

TEST(ocr, always_reads_text_pages_by_ocr_too) {
  const auto e = extract_with("multipage.pdf", core::file_kind::pdf, ocr_mode_of(ocr_mode::always));
  ASSERT_EQ(e.per_page.size(), 3u);
  for (const auto& page : e.per_page) EXPECT_EQ(page.source, page_source::ocr);
  EXPECT_TRUE(reads(e.text, "Page two lists the expected costs for travel and equipment")) << e.text;
  ASSERT_TRUE(e.ocr);
  EXPECT_EQ(e.ocr->pages, 3);
  // The pages stay in order, one line apart at least.
  EXPECT_LT(e.text.find("one"), e.text.find("two"));
  EXPECT_LT(e.text.find("two"), e.text.find("three"));
}

TEST(ocr, never_leaves_a_scan_without_text) {
  const auto e = extract_with("scanned.pdf", core::file_kind::pdf, ocr_mode_of(ocr_mode::never));
  EXPECT_EQ(e.text, "");
  ASSERT_EQ(e.per_page.size(), 1u);
  EXPECT_EQ(e.per_page[0].source, page_source::none);
  EXPECT_FALSE(e.ocr);
  EXPECT_EQ(e.analysis.word_count, 0u);
}

TEST(ocr, a_page_stored_sideways_is_read_the_way_it_is_shown) {
  const auto e = extract_with("rotated.pdf", core::file_kind::pdf);  // /Rotate 90
  EXPECT_TRUE(reads(e.text, "This page was scanned sideways")) << e.text;
}

TEST(ocr, png_jpeg_and_a_two_page_tiff_are_read) {
  const auto png = extract_with("scan.png", core::file_kind::png);
  EXPECT_TRUE(reads(png.text, "Scanned page without a text layer")) << png.text;
  EXPECT_EQ(png.pages, 1);
  EXPECT_EQ(png.metadata.title, std::nullopt);

  const auto jpeg = extract_with("receipt.jpg", core::file_kind::jpeg);
  EXPECT_TRUE(reads(jpeg.text, "Photographed receipt from the harbour")) << jpeg.text;
  EXPECT_TRUE(reads(jpeg.text, "Total amount forty two euros")) << jpeg.text;

  const auto tiff = extract_with("two-pages.tiff", core::file_kind::tiff);
  EXPECT_EQ(tiff.pages, 2);
  ASSERT_EQ(tiff.per_page.size(), 2u);
  EXPECT_EQ(tiff.per_page[0].source, page_source::ocr);
  EXPECT_EQ(tiff.per_page[1].source, page_source::ocr);
  EXPECT_TRUE(reads(tiff.text, "First page of the survey")) << tiff.text;
  EXPECT_TRUE(reads(tiff.text, "Second page lists the results")) << tiff.text;
  EXPECT_LT(tiff.text.find("First"), tiff.text.find("Second"));
  ASSERT_TRUE(tiff.ocr);
  EXPECT_EQ(tiff.ocr->pages, 2);
}

TEST(ocr, each_page_read_is_reported_as_it_is_done) {
  std::vector<core::progress> heard;
  const auto sink = [&heard](const core::progress& p) { heard.push_back(p); };
  const auto tiff = extract_in_child(docflow_bin(), fixture("two-pages.tiff"), core::file_kind::tiff,
                                     test_limits(), {}, {}, sink);
  EXPECT_TRUE(reads(tiff.text, "Second page lists the results")) << tiff.text;
  const std::vector<core::progress> expected{{"ocr", 0u, 2u}, {"ocr", 1u, 2u}, {"ocr", 2u, 2u}};
  EXPECT_EQ(heard, expected);

  heard.clear();
  extract_in_child(docflow_bin(), fixture("en-1page.pdf"), core::file_kind::pdf, test_limits(), {}, {}, sink);
  EXPECT_TRUE(heard.empty()) << "a text layer needs no OCR, so no page is reported";

  // A sink that throws (the job was lost) stops the run, as a heartbeat does.
  struct lost {};
  EXPECT_THROW(
      extract_in_child(docflow_bin(), fixture("two-pages.tiff"), core::file_kind::tiff, test_limits(), {}, {},
                       [](const core::progress& p) {
                         if (p.pages_done == 1u) throw lost{};
                       }),
      lost);
}

TEST(ocr, max_pages_bounds_the_pages_read) {
  auto s = ocr_settings{};
  s.max_pages = 1;
  const auto e = extract_with("two-pages.tiff", core::file_kind::tiff, s);
  ASSERT_EQ(e.per_page.size(), 2u);
  EXPECT_EQ(e.per_page[0].source, page_source::ocr);
  EXPECT_EQ(e.per_page[1].source, page_source::none);
  EXPECT_TRUE(reads(e.text, "First page of the survey")) << e.text;
  EXPECT_FALSE(reads(e.text, "Second page")) << e.text;
  ASSERT_TRUE(e.ocr);
  EXPECT_EQ(e.ocr->pages, 1);
}

TEST(ocr, an_image_without_ocr_is_its_pages_and_no_text) {
  const auto e = extract_image(bytes_of(fixture("two-pages.tiff")));
  EXPECT_EQ(e.pages, 2);
  ASSERT_EQ(e.per_page.size(), 2u);
  EXPECT_EQ(e.per_page[0].source, page_source::none);
  EXPECT_EQ(e.text, "\n");  // two empty pages
}

namespace {

void put_be32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xFF);
}

// A PNG whose header claims `width` × `height` grey pixels, followed by one
// tiny image chunk: the size is judged before any pixel is decoded.
std::string png_claiming(std::uint32_t width, std::uint32_t height) {
  std::string png("\x89PNG\r\n\x1a\n", 8);
  const auto chunk = [&png](std::string_view type, std::string_view data) {
    put_be32(png, static_cast<std::uint32_t>(data.size()));
    std::string body(type);
    body += data;
    png += body;
    put_be32(png, static_cast<std::uint32_t>(
                      crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  };
  std::string ihdr;
  put_be32(ihdr, width);
  put_be32(ihdr, height);
  ihdr += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit grey, deflate, no interlace
  chunk("IHDR", ihdr);
  chunk("IDAT", std::string("\x78\x9c\x03\x00\x00\x00\x00\x01", 8));
  chunk("IEND", "");
  return png;
}

}  // namespace

TEST(ocr, an_image_too_large_or_broken_fails_permanently) {
  const temp_dir dir;
  const auto huge = dir.write("huge.png", png_claiming(20000, 20000));  // 400 megapixels
  auto f = failure_of([&] { extract_in_child(docflow_bin(), huge, core::file_kind::png, test_limits()); });
  EXPECT_EQ(f.code, core::name(core::errc::document_too_complex)) << f.message;
  EXPECT_FALSE(f.retryable);

  const auto broken = dir.write("broken.png", std::string("\x89PNG\r\n\x1a\n", 8) + std::string(64, 'x'));
  f = failure_of([&] { extract_in_child(docflow_bin(), broken, core::file_kind::png, test_limits()); });
  EXPECT_EQ(f.code, core::name(core::errc::unreadable_document)) << f.message;
  EXPECT_FALSE(f.retryable);

  const auto tiny = dir.write("tiny.png", "\x89PNG");
  f = failure_of([&] { extract_in_child(docflow_bin(), tiny, core::file_kind::png, test_limits()); });
  EXPECT_EQ(f.code, core::name(core::errc::unreadable_document)) << f.message;
}

TEST(ocr, every_language_docflow_detects_has_its_data_installed) {
  EXPECT_EQ(missing_ocr_languages("eng+deu+fra+spa"), std::vector<std::string>{});
  EXPECT_EQ(missing_ocr_languages("eng+xyz"), std::vector<std::string>{"xyz"});
}

TEST(ocr, the_document_summary_averages_the_pages_read) {
  const auto s = summarise_ocr(
      {{page_source::ocr, 10, 90}, {page_source::text_layer, 99, {}}, {page_source::ocr, 5, 70}}, "eng+deu");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->pages, 2);
  EXPECT_DOUBLE_EQ(s->mean_confidence, 80.0);
  EXPECT_EQ(s->languages, (std::vector<std::string>{"eng", "deu"}));
  EXPECT_FALSE(summarise_ocr({{page_source::text_layer, 99, {}}}, "eng"));
  EXPECT_EQ(page_text("\n  first line\n\n\nsecond\n \n\f"), "  first line\nsecond");
}

// ================================================================= stages

TEST(stages, default_order) {
  const auto stages = default_stages(docflow_bin(), test_limits());
  ASSERT_EQ(stages.size(), 2u);  // analysis runs inside extract's child
  EXPECT_STREQ(stages[0]->name(), "verify");
  EXPECT_STREQ(stages[1]->name(), "extract");
}

TEST(stages, verify_checks_checksum_and_kind) {
  const auto pdf = fixture("en-1page.pdf");
  const auto docx = fixture("de.docx");
  job_input in;
  in.file = pdf;
  in.kind = core::file_kind::pdf;
  in.sha256 = sha256_file(pdf);
  ASSERT_EQ(in.sha256.size(), 64u);
  result_data out;
  verify_stage verify(docflow_bin(), docx_check_limits(false));
  EXPECT_NO_THROW(verify.run(in, out));

  auto wrong = in;
  wrong.sha256[0] = wrong.sha256[0] == '0' ? '1' : '0';
  const auto f = failure_of([&] { verify.run(wrong, out); });
  EXPECT_EQ(f.code, core::name(core::errc::checksum_mismatch));
  EXPECT_TRUE(f.retryable);

  auto as_docx = in;
  as_docx.kind = core::file_kind::docx;
  const auto g = failure_of([&] { verify.run(as_docx, out); });
  EXPECT_EQ(g.code, core::name(core::errc::unreadable_document));
  EXPECT_FALSE(g.retryable);

  job_input d;
  d.file = docx;
  d.kind = core::file_kind::pdf;
  d.sha256 = sha256_file(docx);
  EXPECT_EQ(failure_of([&] { verify.run(d, out); }).code, core::name(core::errc::unreadable_document));
  d.kind = core::file_kind::docx;
  EXPECT_NO_THROW(verify.run(d, out));

  auto missing = in;
  missing.file = "/nonexistent/file.pdf";
  const auto h = failure_of([&] { verify.run(missing, out); });
  EXPECT_EQ(h.code, core::name(core::errc::storage_unavailable));
  EXPECT_TRUE(h.retryable);
}

TEST(stages, sha256_of_known_bytes) {
  const temp_dir dir;
  EXPECT_EQ(sha256_file(dir.write("abc", "abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_file(dir.write("empty", "")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(stages, full_pipeline_on_a_pdf) {
  job_input in;
  in.document_id = "doc-1";
  in.file = fixture("en-1page.pdf");
  in.kind = core::file_kind::pdf;
  in.sha256 = sha256_file(in.file);
  int beats = 0;
  in.heartbeat = [&] { ++beats; };
  result_data out;
  for (const auto& s : default_stages(docflow_bin(), test_limits())) s->run(in, out);
  EXPECT_GE(beats, 1);
  EXPECT_EQ(out.extraction.pages, 1);
  EXPECT_EQ(out.extraction.metadata.author, "Jane Doe");
  EXPECT_EQ(out.extraction.analysis.word_count, 42u);
  EXPECT_EQ(out.extraction.analysis.language, "en");
  ASSERT_FALSE(out.extraction.analysis.keywords.empty());
  EXPECT_EQ(out.extraction.analysis.keywords[0].term, "river");
  EXPECT_FALSE(out.extraction.truncated);
  EXPECT_FALSE(out.ml_json.has_value());
}

TEST(stages, the_child_analyses_the_whole_text_and_cuts_it_to_the_limit) {
  job_input in;
  in.document_id = "doc-1";
  in.file = fixture("en-1page.pdf");
  in.kind = core::file_kind::pdf;
  in.sha256 = sha256_file(in.file);
  auto limits = test_limits();
  limits.max_text_bytes = 100;
  result_data out;
  for (const auto& s : default_stages(docflow_bin(), limits)) s->run(in, out);
  EXPECT_TRUE(out.extraction.truncated);
  EXPECT_LE(out.extraction.text.size(), 100u);
  EXPECT_GT(out.extraction.text.size(), 90u);
  EXPECT_EQ(out.extraction.analysis.word_count, 42u) << "the counts describe the whole text";
}
