#pragma once

#include <span>
#include <string_view>

namespace docflow::api {

/// A file compiled into the binary at build time (cmake/embed_assets.cmake;
/// the list is in src/CMakeLists.txt). Every view points into the binary's
/// read-only data and lives as long as the process.
struct static_asset {
  std::string_view path;          ///< the URL path it is served at, e.g. /docs/init.js
  std::string_view content_type;  ///< from the file's extension
  std::string_view etag;          ///< a quoted strong entity tag: a prefix of the file's SHA-256
  std::string_view bytes;
  std::string_view gzip;  ///< the same bytes gzip-compressed at build time; empty for images
};

/// Every embedded asset, in the order of the list.
std::span<const static_asset> static_assets();

/// The asset served at URL path `path`; nullptr when none is.
const static_asset* find_static_asset(std::string_view path);

}  // namespace docflow::api
