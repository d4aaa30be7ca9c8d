#include "blob/fs_blob_store.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include "core/ids.hpp"

namespace docflow::blob {

fs_blob_store::fs_blob_store(std::filesystem::path root) : root_(std::move(root)) {
  std::error_code ec;
  std::filesystem::create_directories(root_ / "tmp", ec);
  if (ec) {
    throw blob_error("create " + (root_ / "tmp").string() + ": " + ec.message());
  }
}

void fs_blob_store::check() {
  // Creating a file is the only honest test: permissions, a full disk and a
  // directory replaced by a file all show up here.
  const auto probe = root_ / "tmp" / (".ready-" + core::random_hex(8));
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    throw blob_error("cannot create a file in " + (root_ / "tmp").string() + ": " + std::strerror(errno));
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace docflow::blob
