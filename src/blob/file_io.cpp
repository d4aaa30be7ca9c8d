#include "blob/file_io.hpp"

#include <cerrno>
#include <cstring>

#include <unistd.h>

#include "blob/blob_store.hpp"

namespace docflow::blob {

void throw_io_error(const std::string& what, int err) {
  const std::string message = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) throw blob_full(message);
  throw blob_error(message);
}

void write_all(int fd, std::string_view bytes, const char* what) {
  while (!bytes.empty()) {
    const auto n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io_error(what, errno);
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::size_t pread_fully(int fd, std::uint64_t offset, char* out, std::size_t n) {
  std::size_t done = 0;
  while (done < n) {
    const auto got = ::pread(fd, out + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw_io_error("read blob", errno);
    }
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  return done;
}

}  // namespace docflow::blob
