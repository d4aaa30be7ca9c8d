#pragma once

#include <cstddef>

#include <boost/asio/awaitable.hpp>

#include "http/message.hpp"

namespace docflow::api {
struct services;
}

namespace docflow::api::documents {

/// What a POST /documents body may hold besides the file: the form's
/// framing and its small fields (spec §3).
inline constexpr std::size_t multipart_framing = 64 * 1024;

/// POST /documents: streams a multipart/form-data upload to the blob store.
/// 201 with Location and the Document; 400 malformed multipart, 413 too
/// large, 415 not PDF/DOCX (by content and extension), 422 invalid form,
/// 403 quota-exceeded (before the body is read when Content-Length less
/// multipart_framing already would not fit).
boost::asio::awaitable<http::response> upload(services& s, http::request& req);

/// GET /documents: the caller's documents, newest first, keyset paginated.
boost::asio::awaitable<http::response> list(services& s, http::request& req);

/// GET /documents/{id}: 404 for a malformed id or another user's document.
boost::asio::awaitable<http::response> get(services& s, http::request& req);

/// GET /documents/{id}/content: the original bytes, with ETag, 304 and Range.
boost::asio::awaitable<http::response> content(services& s, http::request& req);

/// DELETE /documents/{id}: 204; 409 while PROCESSING.
boost::asio::awaitable<http::response> remove(services& s, http::request& req);

void describe_metrics(services& s);

}  // namespace docflow::api::documents
