#include "pipeline/analyze.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <textcat.h>
#include <unicode/brkiter.h>
#include <unicode/bytestream.h>
#include <unicode/casemap.h>
#include <unicode/locid.h>
#include <unicode/ubrk.h>
#include <unicode/uchar.h>
#include <unicode/uscript.h>
#include <unicode/utext.h>
#include <unicode/utf8.h>

namespace docflow::pipeline {

namespace {

// ---------------------------------------------------------------------------
// Characters and lines

// The length of the UTF-8 sequence at s[i], 1 for an invalid byte, so that
// every byte is consumed exactly once and counting stays total.
std::size_t sequence_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF && cont(1)) return 2;
  if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
    const char32_t v = (c & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
    if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) return 3;
  }
  if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    const char32_t v = (c & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
    if (v >= 0x10000 && v <= 0x10FFFF) return 4;
  }
  return 1;
}

std::size_t count_chars(std::string_view text) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < text.size(); i += sequence_length(text, i)) ++n;
  return n;
}

std::size_t count_lines(std::string_view text) {
  if (text.empty()) return 0;
  const auto breaks = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
  return breaks + (text.back() == '\n' ? 0 : 1);
}

bool all_digits(std::string_view w) {
  return std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// ---------------------------------------------------------------------------
// The libraries' state: ICU's word rules and the n-gram fingerprints of
// libexttextcat. Both are read once per process; the extraction child reads
// them before lock_down() (prepare_analysis), after which it can open no
// file.

struct textcat_closer {
  void operator()(void* handle) const { textcat_Done(handle); }
};

class text_tools {
public:
  text_tools() {
    UErrorCode status = U_ZERO_ERROR;
    words_.reset(icu::BreakIterator::createWordInstance(icu::Locale::getRoot(), status));
    if (U_FAILURE(status)) words_.reset();
    // ICU loads a script's dictionary (Chinese and Japanese, Thai, Lao,
    // Khmer, Burmese) when it first meets that script: meet them all now.
    if (words_) {
      const std::string_view sample = "中文 日本語 ไทย ລາວ ខ្មែរ မြန်မာ";
      UText* text = utext_openUTF8(nullptr, sample.data(), static_cast<std::int64_t>(sample.size()), &status);
      std::unique_ptr<icu::BreakIterator> warm(words_->clone());
      if (U_SUCCESS(status) && warm) {
        warm->setText(text, status);
        while (warm->next() != icu::BreakIterator::DONE) {
        }
      }
      utext_close(text);
    }
    // The list names each fingerprint file relative to a prefix.
    const std::string dir = std::string(DOCFLOW_TEXTCAT_DIR) + "/";
    languages_.reset(special_textcat_Init((dir + "fpdb.conf").c_str(), dir.c_str()));
  }

  // A word iterator of one's own: ICU's iterators keep their position.
  std::unique_ptr<icu::BreakIterator> word_iterator() const {
    if (!words_) return nullptr;
    const std::lock_guard lock(mutex_);
    return std::unique_ptr<icu::BreakIterator>(words_->clone());
  }

  void* language_model() const { return languages_.get(); }

private:
  mutable std::mutex mutex_;
  std::unique_ptr<icu::BreakIterator> words_;
  std::unique_ptr<void, textcat_closer> languages_;
};

const text_tools& tools() {
  static const text_tools t;
  return t;
}

// ---------------------------------------------------------------------------
// Words

// ICU's rule status of a word segment: numbers, ideographs, or letters
// (Latin, Cyrillic, Thai..., and kana). Spaces, punctuation and symbols are
// "none".
enum class word_kind { none, number, letters, ideographic };

word_kind kind_of(int32_t rule_status, std::string_view word) {
  if (rule_status >= UBRK_WORD_NUMBER && rule_status < UBRK_WORD_NUMBER_LIMIT) {
    // The rules also give a number's status to letters run into digits
    // ("b2b", "mp3"), which are words to keywords as they were before ICU.
    for (std::int32_t at = 0; at < static_cast<std::int32_t>(word.size());) {
      UChar32 c = 0;
      U8_NEXT(word.data(), at, static_cast<std::int32_t>(word.size()), c);
      if (u_isalpha(c)) return word_kind::letters;
    }
    return word_kind::number;
  }
  if (rule_status >= UBRK_WORD_LETTER && rule_status < UBRK_WORD_KANA_LIMIT) return word_kind::letters;
  if (rule_status >= UBRK_WORD_IDEO && rule_status < UBRK_WORD_IDEO_LIMIT) {
    // The Chinese and Japanese dictionary marks all its words ideographic,
    // those in kana too; the script of the first character tells them apart.
    std::int32_t at = 0;
    UChar32 first = 0;
    U8_NEXT(word.data(), at, static_cast<std::int32_t>(word.size()), first);
    UErrorCode status = U_ZERO_ERROR;
    return uscript_getScript(first, &status) == USCRIPT_HAN ? word_kind::ideographic : word_kind::letters;
  }
  return word_kind::none;
}

// The word as keywords and stop-words compare it: ICU's full lowercase of
// the root locale, and U+2019 folded to ' so "don’t" and "don't" are one term.
std::string normalise(std::string_view word) {
  std::string lower;
  icu::StringByteSink<std::string> sink(&lower);
  UErrorCode status = U_ZERO_ERROR;
  icu::CaseMap::utf8ToLower("", 0, icu::StringPiece(word.data(), static_cast<int32_t>(word.size())), sink,
                            nullptr, status);
  if (U_FAILURE(status)) lower.assign(word);
  for (std::size_t at; (at = lower.find("\xE2\x80\x99")) != std::string::npos;) lower.replace(at, 3, "'");
  return lower;
}

// Calls on_word(original bytes, kind) for each word of `text`, as ICU's word
// break rules of the root locale cut it: dictionaries split Chinese,
// Japanese and Thai, which write no spaces; an apostrophe between letters
// ("don't", "l'homme") and the separators of a number ("3.14", "1,000")
// stay inside the word; a hyphen separates. Invalid UTF-8 reads as U+FFFD,
// which is no word and separates words.
template <class F>
void for_each_word(std::string_view text, F&& on_word) {
  const auto words = tools().word_iterator();
  if (!words || text.empty()) return;
  UErrorCode status = U_ZERO_ERROR;
  UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<std::int64_t>(text.size()), &status);
  const std::unique_ptr<UText, decltype(&utext_close)> guard(utext, &utext_close);
  words->setText(utext, status);
  if (U_FAILURE(status)) return;
  for (auto start = words->first(), end = words->next(); end != icu::BreakIterator::DONE;
       start = end, end = words->next()) {
    const auto word = text.substr(static_cast<std::size_t>(start), static_cast<std::size_t>(end - start));
    const auto kind = kind_of(words->getRuleStatus(), word);
    if (kind != word_kind::none) on_word(word, kind);
  }
}

// ---------------------------------------------------------------------------
// Stop-words: the function words that make up a third or more of running
// text in each language. Content words are left out on purpose, so a hit is
// evidence of the language and not of the topic.

using word_set = std::unordered_set<std::string_view>;

const word_set& english() {
  static const word_set s{
      "a",       "about",   "above",   "after",   "again",  "against", "all",    "also",    "am",    "an",
      "and",     "any",     "are",     "aren't",  "as",     "at",      "be",     "because", "been",  "before",
      "being",   "below",   "between", "both",    "but",    "by",      "can",    "can't",   "could", "did",
      "do",      "does",    "doesn't", "doing",   "don't",  "down",    "during", "each",    "few",   "for",
      "from",    "further", "had",     "has",     "have",   "having",  "he",     "her",     "here",  "hers",
      "herself", "him",     "himself", "his",     "how",    "i",       "i'm",    "if",      "in",    "into",
      "is",      "isn't",   "it",      "it's",    "its",    "itself",  "just",   "let's",   "may",   "me",
      "might",   "more",    "most",    "must",    "my",     "myself",  "no",     "nor",     "not",   "now",
      "of",      "off",     "on",      "once",    "only",   "or",      "other",  "our",     "ours",  "out",
      "over",    "own",     "same",    "shall",   "she",    "should",  "so",     "some",    "such",  "than",
      "that",    "that's",  "the",     "their",   "theirs", "them",    "then",   "there",   "these", "they",
      "they're", "this",    "those",   "through", "to",     "too",     "under",  "until",   "up",    "upon",
      "very",    "was",     "wasn't",  "we",      "we're",  "were",    "what",   "when",    "where", "which",
      "while",   "who",     "whom",    "why",     "will",   "with",    "won't",  "would",   "you",   "you're",
      "your",    "yours",   "yourself"};
  return s;
}

const word_set& german() {
  static const word_set s{
      "aber",    "alle",    "allem",  "allen",  "aller",  "alles",  "als",    "also",   "am",     "an",
      "andere",  "anderen", "auch",   "auf",    "aus",    "bei",    "bin",    "bis",    "bist",   "da",
      "damit",   "dann",    "das",    "dass",   "daß",    "dein",   "dem",    "den",    "denn",   "der",
      "des",     "dich",    "die",    "dies",   "diese",  "diesem", "diesen", "dieser", "dieses", "dir",
      "doch",    "dort",    "du",     "durch",  "ein",    "eine",   "einem",  "einen",  "einer",  "eines",
      "er",      "es",      "etwas",  "euch",   "für",    "gegen",  "hat",    "hatte",  "hatten", "hier",
      "ich",     "ihm",     "ihn",    "ihnen",  "ihr",    "ihre",   "ihrem",  "ihren",  "ihrer",  "im",
      "in",      "ist",     "jede",   "jedem",  "jeden",  "jeder",  "jedes",  "jetzt",  "kann",   "kein",
      "keine",   "können",  "man",    "mein",   "meine",  "mich",   "mir",    "mit",    "muss",   "nach",
      "nicht",   "nichts",  "noch",   "nun",    "nur",    "ob",     "oder",   "ohne",   "sehr",   "sein",
      "seine",   "seinem",  "seinen", "seiner", "sich",   "sie",    "sind",   "so",     "soll",   "sollte",
      "sondern", "um",      "und",    "uns",    "unser",  "unter",  "vom",    "von",    "vor",    "war",
      "waren",   "warum",   "was",    "weil",   "welche", "wenn",   "werden", "wie",    "wieder", "will",
      "wir",     "wird",    "wo",     "wurde",  "wurden", "zu",     "zum",    "zur",    "über"};
  return s;
}

const word_set& french() {
  static const word_set s{
      "a",       "ainsi", "alors", "après", "au",    "aussi", "aux",    "avant", "avec",  "bien",   "c'est",
      "ce",      "cela",  "celle", "ces",   "cette", "ceux",  "chez",   "comme", "dans",  "de",     "depuis",
      "des",     "donc",  "du",    "elle",  "elles", "en",    "encore", "entre", "est",   "et",     "eu",
      "été",     "était", "être",  "il",    "ils",   "je",    "la",     "le",    "les",   "leur",   "leurs",
      "lorsque", "lui",   "ma",    "mais",  "me",    "mes",   "moi",    "mon",   "même",  "ne",     "nos",
      "notre",   "nous",  "on",    "ont",   "ou",    "où",    "par",    "pas",   "peu",   "plus",   "pour",
      "quand",   "que",   "qui",   "sa",    "sans",  "se",    "ses",    "si",    "son",   "sont",   "sous",
      "sur",     "ta",    "te",    "tes",   "toi",   "ton",   "tous",   "tout",  "toute", "toutes", "très",
      "tu",      "un",    "une",   "vos",   "votre", "vous",  "y",      "à",     "ça"};
  return s;
}

const word_set& spanish() {
  static const word_set s{
      "a",      "al",     "algo",  "algunos",  "ante",  "antes",   "como", "con",   "contra", "cual",
      "cuando", "de",     "del",   "desde",    "donde", "durante", "e",    "el",    "ella",   "ellas",
      "ellos",  "en",     "entre", "era",      "es",    "esa",     "esas", "ese",   "eso",    "esos",
      "esta",   "estaba", "estas", "este",     "esto",  "estos",   "está", "están", "fue",    "fueron",
      "ha",     "había",  "han",   "hasta",    "hay",   "la",      "las",  "le",    "les",    "lo",
      "los",    "me",     "mi",    "mientras", "mucho", "muy",     "más",  "nada",  "ni",     "no",
      "nos",    "o",      "otra",  "otro",     "otros", "para",    "pero", "poco",  "por",    "porque",
      "que",    "qué",    "quien", "se",       "sea",   "según",   "ser",  "si",    "sido",   "sin",
      "sobre",  "son",    "su",    "sus",      "sí",    "también", "tan",  "te",    "tiene",  "todo",
      "todos",  "tu",     "tú",    "un",       "una",   "uno",     "unos", "y",     "ya",     "yo",
      "él"};
  return s;
}

// French elides articles and pronouns onto the next word: l'homme, qu'il.
const word_set& french_elisions() {
  static const word_set s{"c", "d", "j", "l", "m", "n", "s", "t", "qu", "jusqu", "lorsqu", "puisqu"};
  return s;
}

struct language {
  const char* code;
  const word_set& (*stop_words)();
};

constexpr std::array<language, 4> languages{{
    {"en", english},
    {"de", german},
    {"fr", french},
    {"es", spanish},
}};
constexpr std::size_t french_index = 2;

// The part of a word before an elision apostrophe, when it is one.
std::string_view elided_prefix(std::string_view word) {
  const auto apostrophe = word.find('\'');
  if (apostrophe == std::string_view::npos) return {};
  const auto prefix = word.substr(0, apostrophe);
  return french_elisions().contains(prefix) ? prefix : std::string_view{};
}

// Evidence thresholds, tuned on three-sentence samples: at least this many
// stop-word hits (weighted), and the winner this much ahead of the runner-up.
constexpr double min_evidence = 2.0;
constexpr double min_lead = 1.5;
constexpr std::size_t min_words = 3;

// A share of the evidence a judge needs before it is sure: 1 at `full`.
double support(double have, double full) { return std::min(1.0, have / full); }

// The stop-word judge, for the four languages whose function words it
// knows: more reliable than n-grams on a few sentences, blind to others.
class language_scores {
public:
  void add(std::string_view word) {
    ++words_;
    // A word that several languages share is weaker evidence for each.
    std::array<bool, languages.size()> hit{};
    int hits = 0;
    for (std::size_t l = 0; l < languages.size(); ++l) {
      hit[l] = languages[l].stop_words().contains(word);
      if (!hit[l] && l == french_index) hit[l] = !elided_prefix(word).empty();
      hits += hit[l] ? 1 : 0;
    }
    if (hits == 0) return;
    for (std::size_t l = 0; l < languages.size(); ++l) {
      if (hit[l]) scores_[l] += 1.0 / hits;
    }
  }

  // "und" with 0 without enough evidence or a clear lead. The confidence
  // grows with the lead over the runner-up and with the number of
  // stop-words met, up to 10.
  language_guess result() const {
    if (words_ < min_words) return {};
    std::size_t best = 0;
    for (std::size_t l = 1; l < languages.size(); ++l) {
      if (scores_[l] > scores_[best]) best = l;
    }
    double second = 0;
    for (std::size_t l = 0; l < languages.size(); ++l) {
      if (l != best) second = std::max(second, scores_[l]);
    }
    if (scores_[best] < min_evidence || scores_[best] < min_lead * second) return {};
    return {languages[best].code, (1.0 - second / scores_[best]) * support(scores_[best], 10.0)};
  }

private:
  std::size_t words_ = 0;
  std::array<double, languages.size()> scores_{};
};

// ---------------------------------------------------------------------------
// The n-gram judge: libexttextcat, for the 160-odd languages of its
// fingerprints. It reads the words only (no digits, no punctuation), joined
// by spaces.

// Its answers from fewer bytes of words are noise: a few words fit many
// languages' n-grams.
constexpr std::size_t min_ngram_bytes = 60;
// Its own advice: a few hundred bytes suffice; this is plenty, and keeps
// the cost of a 16 MB text to that of its beginning.
constexpr std::size_t max_ngram_bytes = 64 * 1024;
// The bytes at which its answer counts as fully supported.
constexpr double full_ngram_bytes = 400;

// libexttextcat's names, from fpdb.conf: "<language>-<country or
// script>-utf8", e.g. "en--utf8", "zh-CN-utf8", "uz-Cyrl-utf8",
// "az-cyrillic-utf8", "haw-utf8". BCP 47 keeps the language and a script,
// not the country, except that zh-TW is the traditional script's model.
std::string bcp47_tag(std::string_view name) {
  if (name.ends_with("-utf8")) name.remove_suffix(5);
  const auto dash = name.find('-');
  const auto language = name.substr(0, dash);
  const auto rest = dash == std::string_view::npos ? std::string_view{} : name.substr(dash + 1);
  if (language == "zh") return rest == "TW" ? "zh-Hant" : "zh";
  if (rest == "cyrillic" || rest == "Cyrl") return std::string(language) + "-Cyrl";
  if (rest == "Latn") return std::string(language) + "-Latn";
  return std::string(language);
}

struct candidates_releaser {
  void* model;
  void operator()(candidate_t* c) const { textcat_ReleaseClassifyFullOutput(model, c); }
};

struct ngram_verdict {
  std::vector<std::string> tags;  ///< libexttextcat's candidates, best first; empty: no answer
  double confidence = 0;
};

// libexttextcat lists every language whose distance is within 3% of the
// best one's, up to 5 (more: it answers "unknown"). The best of k such
// near-ties is right about 1 in k; the amount of text read sets the rest.
ngram_verdict judge_ngrams(std::string_view words) {
  void* model = tools().language_model();
  if (!model || words.size() < min_ngram_bytes) return {};
  const std::unique_ptr<candidate_t, candidates_releaser> candidates(textcat_GetClassifyFullOutput(model),
                                                                     candidates_releaser{model});
  if (!candidates) return {};
  const int n = textcat_ClassifyFull(model, words.data(), words.size(), candidates.get());
  if (n <= 0) return {};  // too short, or unknown
  ngram_verdict v;
  for (int i = 0; i < n; ++i) {
    auto tag = bcp47_tag(candidates.get()[i].name);
    if (std::find(v.tags.begin(), v.tags.end(), tag) == v.tags.end()) v.tags.push_back(std::move(tag));
  }
  v.confidence = support(static_cast<double>(words.size()), full_ngram_bytes) / static_cast<double>(n);
  return v;
}

// Both judges heard. The stop-word judge keeps its answer when the n-gram
// judge finds it among its near-ties: its four languages' short texts are
// where n-grams hesitate (English next to Scots). When the n-grams leave
// it out, it is at least 3% further from the text than their best, and
// the best overrules it: that is Italian or Portuguese read as French or
// Spanish by the function words they share. A judge overruled leaves half
// the confidence to the other; two that agree combine theirs as
// independent evidence.
language_guess decide(const language_guess& words, const ngram_verdict& ngrams) {
  if (ngrams.tags.empty()) return words;
  if (words.tag == "und") return {ngrams.tags.front(), ngrams.confidence};
  if (std::find(ngrams.tags.begin(), ngrams.tags.end(), words.tag) != ngrams.tags.end()) {
    return {words.tag, 1.0 - (1.0 - words.confidence) * (1.0 - ngrams.confidence)};
  }
  return {ngrams.tags.front(), ngrams.confidence / 2};
}

// What both judges read, gathered in one pass over the words.
class language_evidence {
public:
  void add(std::string_view original, const std::string& normalised, word_kind kind) {
    if (kind == word_kind::number || all_digits(normalised)) return;
    scores_.add(normalised);
    if (sample_.size() + original.size() + 1 > max_ngram_bytes) return;
    if (!sample_.empty()) sample_ += ' ';
    sample_.append(original);
  }

  // Three decimals: the judges' heuristics are no finer, and results read
  // better without the float's noise (0.976, not 0.97647058823529409).
  language_guess result() const {
    auto guess = decide(scores_.result(), judge_ngrams(sample_));
    guess.confidence = std::round(guess.confidence * 1000) / 1000;
    return guess;
  }

private:
  language_scores scores_;
  std::string sample_;
};

const word_set* stop_words_of(std::string_view code) {
  for (const auto& l : languages) {
    if (code == l.code) return &l.stop_words();
  }
  return nullptr;
}

constexpr std::size_t max_keywords = 10;
constexpr std::size_t min_keyword_chars = 3;
// Most words written in ideographs are two characters long; words in kana
// that short are mostly particles and endings (に, した), so they need 3.
constexpr std::size_t min_ideographic_keyword_chars = 2;
// Longer "words" are run-together garbage (base64, URLs without punctuation),
// never useful keywords, and would bloat the result.
constexpr std::size_t max_keyword_chars = 50;

struct word_tally {
  std::size_t count = 0;
  word_kind kind = word_kind::none;
};

// The term a word contributes to keywords: without a French elided article
// ("l'homme" → "homme") or an English possessive ("company's" → "company").
std::string_view keyword_term(std::string_view word, std::string_view lang) {
  if (lang == "fr") {
    if (const auto prefix = elided_prefix(word); !prefix.empty()) word.remove_prefix(prefix.size() + 1);
  } else if (lang == "en" && word.size() > 2 && word.ends_with("'s")) {
    word.remove_suffix(2);
  }
  return word;
}

std::vector<keyword> top_keywords(const std::unordered_map<std::string, word_tally>& counts,
                                  std::string_view lang) {
  const word_set* own = stop_words_of(lang);
  std::unordered_map<std::string_view, std::size_t> terms;
  for (const auto& [word, tally] : counts) {
    if (tally.kind == word_kind::number) continue;
    const auto term = keyword_term(word, lang);
    const auto chars = count_chars(term);
    const auto min_chars =
        tally.kind == word_kind::ideographic ? min_ideographic_keyword_chars : min_keyword_chars;
    if (chars < min_chars || chars > max_keyword_chars || all_digits(term)) continue;
    if (english().contains(term) || (own && own->contains(term))) continue;
    terms[term] += tally.count;
  }
  std::vector<std::pair<std::string_view, std::size_t>> ranked(terms.begin(), terms.end());
  const auto before = [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  };
  const auto keep = std::min(max_keywords, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(keep), ranked.end(), before);
  std::vector<keyword> out;
  out.reserve(keep);
  for (std::size_t i = 0; i < keep; ++i) out.push_back({std::string(ranked[i].first), ranked[i].second});
  return out;
}

}  // namespace

void prepare_analysis() { (void)tools(); }

bool language_model_loaded() { return tools().language_model() != nullptr; }

language_guess detect_language(std::string_view text) {
  language_evidence evidence;
  for_each_word(text, [&](std::string_view w, word_kind kind) { evidence.add(w, normalise(w), kind); });
  return evidence.result();
}

analysis analyze(std::string_view text) {
  analysis a;
  a.char_count = count_chars(text);
  a.line_count = count_lines(text);
  std::unordered_map<std::string, word_tally> counts;
  language_evidence evidence;
  for_each_word(text, [&](std::string_view w, word_kind kind) {
    ++a.word_count;
    auto word = normalise(w);
    evidence.add(w, word, kind);
    auto& tally = counts[std::move(word)];
    ++tally.count;
    tally.kind = kind;
  });
  const auto language = evidence.result();
  a.language = language.tag;
  a.language_confidence = language.confidence;
  a.keywords = top_keywords(counts, a.language);
  return a;
}

}  // namespace docflow::pipeline
