#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>

#include "core/document.hpp"
#include "core/result.hpp"
#include "http/message.hpp"

namespace docflow::api {

struct services;

// The checks a file passes to become a Document, one set for both ways in
// (POST /documents and a resumable upload's last byte), so that the same
// fault gets the same problem either way. Listed in the order they apply.

/// The name and title the client gave: a document with its filename
/// (sanitized) and title set, or the problem (422: file, title).
core::result<core::document> name_file(std::string_view filename, const std::optional<std::string>& title);

/// A file of `size` bytes under a limit of `max`: 422 when empty, 413 over.
std::optional<core::error> size_problem(std::uint64_t size, std::uint64_t max);

/// The kind the filename claims (415 for neither .pdf nor .docx) and, given
/// the file's first bytes, that they agree (415); sets d.kind.
std::optional<core::error> kind_problem(core::document& d, std::optional<std::string_view> head);

/// For a DOCX, that the ZIP is a Word document (415), checked by the
/// sandboxed child (503 when it cannot run) on the bytes `read` gives (up to
/// `n` at `offset`, fewer only at the end). Nothing for a PDF.
boost::asio::awaitable<std::optional<core::error>> docx_problem(
    services& s, const http::request& req, const core::document& d,
    const std::function<std::size_t(std::uint64_t offset, char* out, std::size_t n)>& read);

/// What follows a document's row: the bytes counted and the
/// document.uploaded line.
void announce_upload(services& s, const http::request& req, const core::document& d);

}  // namespace docflow::api
