#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pipeline/stage.hpp"

namespace docflow::pipeline {

/// Counts, language and keywords of UTF-8 text. Pure and total: invalid
/// UTF-8 bytes count as one character each and separate words.
/// - char_count: code points;
/// - word_count: the words of ICU's word break rules (root locale): the
///   segments whose rule status is letter, number, kana or ideograph, not
///   spaces, punctuation or symbols. Dictionaries cut Chinese, Japanese and
///   Thai, which need no spaces ("我们今天去公园散步" is 5 words); an
///   apostrophe inside a word ("don't", "l’homme") and the separators of a
///   number ("3.14", "1,000") keep it one word; a hyphen makes two;
/// - line_count: lines as a reader sees them: "" has 0, "a" 1, "a\nb\n" 2,
///   "a\n\nb" 3 (a final line needs no terminating '\n');
/// - language, language_confidence: detect_language();
/// - keywords: the 10 most frequent lowercased words of 3 or more
///   characters (2 for words of ideographs), stop-words of English and of
///   the detected language, numbers and digit-only words removed, ties in
///   alphabetical (byte) order.
analysis analyze(std::string_view text);

/// A language as a BCP 47 tag ("en", "pt", "zh", "zh-Hant", "uz-Cyrl"...),
/// "und" when undetermined, and a confidence in [0, 1] (0 for "und").
struct language_guess {
  std::string tag = "und";
  double confidence = 0;
};

/// The language of `text`, by two judges of its words (numbers left out):
/// stop-word frequency for en, de, fr and es, and libexttextcat's n-gram
/// fingerprints for its 160-odd languages, consulted from 60 bytes of words
/// on. "und" when neither has enough evidence, or the stop-words of two
/// languages score alike in a text too short for n-grams.
language_guess detect_language(std::string_view text);

/// Reads what analysis needs from disk (libexttextcat's fingerprints) and
/// loads ICU's word rules and dictionaries, once per process; analyze()
/// does it on first use otherwise. The extraction child calls it before
/// lock_down(), after which it can open no file. Without the fingerprints
/// (libexttextcat-data missing), only the stop-word judge answers.
void prepare_analysis();

/// Whether libexttextcat's fingerprints loaded (prepare_analysis).
bool language_model_loaded();

}  // namespace docflow::pipeline
