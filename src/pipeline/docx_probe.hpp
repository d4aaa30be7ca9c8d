#pragma once

#include <cstddef>
#include <string_view>

namespace docflow::pipeline {

/// Bounds on the ZIP directory we are willing to read while probing.
inline constexpr std::size_t max_zip_entries = 10000;
inline constexpr std::size_t max_zip_name_bytes = 1024;

/// True when `bytes` are a ZIP whose central directory holds
/// `[Content_Types].xml` and `word/document.xml`. Reads the end-of-directory
/// record first and refuses more than max_zip_entries entries or names longer
/// than max_zip_name_bytes before libzip parses anything. Never throws for
/// bad input. libzip parses bytes an uploader chose: call it only inside the
/// extraction sandbox (is_docx_in_child in sandbox.hpp).
bool is_docx(std::string_view bytes);

}  // namespace docflow::pipeline
