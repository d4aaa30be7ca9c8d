#pragma once

#include <memory>
#include <string_view>

#include <zip.h>

namespace docflow::pipeline {

struct zip_closer {
  void operator()(zip_t* z) const { zip_discard(z); }
};
using zip_archive = std::unique_ptr<zip_t, zip_closer>;

/// Opens `bytes` as a ZIP archive, read in place (libzip neither copies nor
/// frees them; they must outlive the archive), with libzip's consistency
/// checks. Null when libzip refuses it.
inline zip_archive open_zip(std::string_view bytes) {
  zip_error_t error;
  zip_error_init(&error);
  zip_archive archive;
  if (zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error)) {
    archive.reset(zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error));
    if (!archive) zip_source_free(source);  // the archive owns the source only once opened
  }
  zip_error_fini(&error);
  return archive;
}

}  // namespace docflow::pipeline
