#pragma once

// The file calls both stores make on their local files (the local store's
// uploads and blobs, the S3 store's spools and workers' copies), with one
// mapping of errno to blob errors.

#include <cstdint>
#include <string>
#include <string_view>

namespace docflow::blob {

/// Throws blob_full for ENOSPC and EDQUOT (the client may come back),
/// blob_error otherwise; the message is `what` and strerror(err).
[[noreturn]] void throw_io_error(const std::string& what, int err);

/// Writes all of `bytes` to `fd` (EINTR and short writes retried). Throws
/// as throw_io_error, naming `what`.
void write_all(int fd, std::string_view bytes, const char* what);

/// Up to `n` bytes of the file `fd` from `offset`, fewer only at its end.
/// Throws blob_error.
std::size_t pread_fully(int fd, std::uint64_t offset, char* out, std::size_t n);

}  // namespace docflow::blob
