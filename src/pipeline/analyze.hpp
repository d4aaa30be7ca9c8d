#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pipeline/stage.hpp"

namespace docflow::pipeline {

/// Counts, language and keywords of UTF-8 text. Pure and total: invalid
/// UTF-8 bytes count as one character each and separate words.
/// - char_count: code points;
/// - word_count: maximal runs of letters and digits (any code point >= 0x80
///   that is not punctuation, a symbol or a space counts as a letter), an
///   apostrophe (' or U+2019) between two such characters joining them;
/// - line_count: lines as a reader sees them: "" has 0, "a" 1, "a\nb\n" 2,
///   "a\n\nb" 3 (a final line needs no terminating '\n');
/// - language: "en", "de", "fr" or "es" by stop-word frequency, "und" when
///   the text has too little evidence or two languages score alike;
/// - keywords: the 10 most frequent lowercased words of 3 or more
///   characters, stop-words of English and of the detected language and
///   digit-only words removed, ties in alphabetical (byte) order.
analysis analyze(std::string_view text);

/// Just the language guess of analyze(), for callers that need no counts.
std::string detect_language(std::string_view text);

}  // namespace docflow::pipeline
