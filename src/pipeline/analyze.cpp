#include "pipeline/analyze.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace docflow::pipeline {

namespace {

// ---------------------------------------------------------------------------
// UTF-8

struct code_point {
  char32_t value;
  std::size_t length;  // bytes consumed; an invalid byte is consumed alone
};

constexpr char32_t invalid = 0xFFFD;

// Decodes one character at s[i]. Invalid input yields U+FFFD for a single
// byte, so every byte is consumed exactly once and counting stays total.
code_point decode(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return {c, 1};
  if (c >= 0xC2 && c <= 0xDF && cont(1)) return {static_cast<char32_t>((c & 0x1F) << 6 | (b(1) & 0x3F)), 2};
  if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
    const char32_t v = (c & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
    if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) return {v, 3};
  }
  if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    const char32_t v = (c & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
    if (v >= 0x10000 && v <= 0x10FFFF) return {v, 4};
  }
  return {invalid, 1};
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | c >> 6);
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | c >> 12);
    out += static_cast<char>(0x80 | (c >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | c >> 18);
    out += static_cast<char>(0x80 | (c >> 12 & 0x3F));
    out += static_cast<char>(0x80 | (c >> 6 & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Letters and digits. Without ICU we take every non-ASCII character as a
// letter except the blocks that hold spaces, punctuation and symbols, which
// is right for the European languages we detect and harmless for others.
bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  if (c < 0xA0) return false;                                // C1 controls
  if (c < 0xC0) return c == 0xAA || c == 0xB5 || c == 0xBA;  // ª µ º; the rest is punctuation
  if (c == 0xD7 || c == 0xF7) return false;                  // × ÷
  if (c >= 0x2000 && c <= 0x2BFF) return false;              // punctuation, symbols, arrows, shapes
  if (c >= 0x2E00 && c <= 0x2E7F) return false;              // supplemental punctuation
  if (c >= 0x3000 && c <= 0x303F) return false;              // CJK punctuation
  if (c >= 0xE000 && c <= 0xF8FF) return false;              // private use (unmapped PDF glyphs)
  if (c >= 0xFE10 && c <= 0xFE6F) return false;              // vertical and small forms
  if (c >= 0xFF00 && c <= 0xFF0F) return false;              // fullwidth punctuation
  if ((c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65))
    return false;
  if (c == 0xFEFF) return false;                   // byte order mark
  if (c >= 0xFFF0 && c <= 0xFFFF) return false;    // specials, including U+FFFD
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji and pictographs
  return true;
}

bool is_apostrophe(char32_t c) { return c == '\'' || c == 0x2019; }

// Simple lowercase mapping for the scripts whose text we analyse: Latin
// (Basic, Latin-1, Extended-A), Greek and Cyrillic. Anything else is kept.
char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if (c <= 0xDE) return c == 0xD7 ? c : c + 32;
  if (c >= 0x100 && c <= 0x137) return c | 1;
  if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
  if (c >= 0x14A && c <= 0x177) return c | 1;
  if (c == 0x178) return 0xFF;
  if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  return c;
}

// Calls on_word(lowercased word) for each word of `text`.
template <class F>
void for_each_word(std::string_view text, F&& on_word) {
  std::string word;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto cp = decode(text, i);
    if (is_word_char(cp.value)) {
      append_utf8(word, to_lower(cp.value));
    } else if (is_apostrophe(cp.value) && !word.empty() && i + cp.length < text.size() &&
               is_word_char(decode(text, i + cp.length).value)) {
      word += '\'';  // U+2019 folds to ' so "don’t" and "don't" are one term
    } else if (!word.empty()) {
      on_word(word);
      word.clear();
    }
    i += cp.length;
  }
  if (!word.empty()) on_word(word);
}

std::size_t count_chars(std::string_view text) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < text.size(); i += decode(text, i).length) ++n;
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

  std::string result() const {
    if (words_ < min_words) return "und";
    std::size_t best = 0;
    for (std::size_t l = 1; l < languages.size(); ++l) {
      if (scores_[l] > scores_[best]) best = l;
    }
    double second = 0;
    for (std::size_t l = 0; l < languages.size(); ++l) {
      if (l != best) second = std::max(second, scores_[l]);
    }
    if (scores_[best] < min_evidence || scores_[best] < min_lead * second) return "und";
    return languages[best].code;
  }

private:
  std::size_t words_ = 0;
  std::array<double, languages.size()> scores_{};
};

const word_set* stop_words_of(std::string_view code) {
  for (const auto& l : languages) {
    if (code == l.code) return &l.stop_words();
  }
  return nullptr;
}

constexpr std::size_t max_keywords = 10;
constexpr std::size_t min_keyword_chars = 3;
// Longer "words" are run-together garbage (base64, URLs without punctuation),
// never useful keywords, and would bloat the result.
constexpr std::size_t max_keyword_chars = 50;

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

std::vector<keyword> top_keywords(const std::unordered_map<std::string, std::size_t>& counts,
                                  std::string_view lang) {
  const word_set* own = stop_words_of(lang);
  std::unordered_map<std::string_view, std::size_t> terms;
  for (const auto& [word, n] : counts) {
    const auto term = keyword_term(word, lang);
    const auto chars = count_chars(term);
    if (chars < min_keyword_chars || chars > max_keyword_chars || all_digits(term)) continue;
    if (english().contains(term) || (own && own->contains(term))) continue;
    terms[term] += n;
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

std::string detect_language(std::string_view text) {
  language_scores scores;
  for_each_word(text, [&](const std::string& w) {
    if (!all_digits(w)) scores.add(w);
  });
  return scores.result();
}

analysis analyze(std::string_view text) {
  analysis a;
  a.char_count = count_chars(text);
  a.line_count = count_lines(text);
  std::unordered_map<std::string, std::size_t> counts;
  language_scores scores;
  for_each_word(text, [&](const std::string& w) {
    ++a.word_count;
    ++counts[w];
    if (!all_digits(w)) scores.add(w);
  });
  a.language = scores.result();
  a.keywords = top_keywords(counts, a.language);
  return a;
}

}  // namespace docflow::pipeline
