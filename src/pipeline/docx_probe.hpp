#pragma once

#include <filesystem>

namespace docflow::pipeline {

/// Bounds on the ZIP directory we are willing to read while probing.
inline constexpr std::size_t max_zip_entries = 10000;
inline constexpr std::size_t max_zip_name_bytes = 1024;

/// True when `path` is a ZIP whose central directory holds
/// `[Content_Types].xml` and `word/document.xml`. Reads the end-of-directory
/// record first and refuses more than max_zip_entries entries or names longer
/// than max_zip_name_bytes before libzip parses anything. Blocks (disk
/// reads): call it on the blocking pool. Never throws for bad input.
bool is_docx(const std::filesystem::path& path);

}  // namespace docflow::pipeline
